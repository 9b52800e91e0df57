/*
 * noded run: submit a command, stream its output, exit with its status.
 * noded submit: submit a command and print its task id(s).
 *
 * run sends one `run` request: a stream that starts with the submit reply,
 * then carries every task's output and its record as it ends (the master
 * watches the tasks before they can start, so no output is missed), and
 * ends after the last task. It is served with nd_client_poll(). The first
 * SIGINT sends cancel_task for the tasks still running and keeps waiting for
 * their end; the second exits 130 at once.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "noded/auth.h"
#include "cli/common.h"
#include "cli/results.h"
#include "core/time.h"
#include "wire/text.h"

/* How often the wait loop looks at the SIGINT flag at the latest. */
#define RUN_TICK_MS 100
/* --group: ended results are printed once no other has ended for
 * GROUP_QUIET_MS, or once the oldest has waited GROUP_HOLD_MS, or at the
 * end; results that end together fold together. */
#define GROUP_QUIET_MS 2000
#define GROUP_HOLD_MS 10000

/* One task of the job and its watch stream. */
struct run_task {
	struct run *run;
	uint64_t id;
	struct nd_cli_sink sink;
	bool named;             /* the prefix is a node name, not "task N" */
	bool ended;             /* its terminal TaskRecord arrived */
	bool done;              /* its watch stream is over */
	bool cancelling;        /* cancel_task sent */
	int status;             /* exit status once ended */
	Noded__TaskState state; /* its terminal state once ended */
	char *node;             /* where it ran, when known (owned) */
	uint32_t attempt;       /* of its output before (nd_cli_attempt_begins) */
	struct nd_cli_held held; /* --group, --json: its output until it ends */
};

struct run {
	const char *master;
	struct nd_client *c;
	struct run_task *t;
	size_t n;
	uint64_t job;           /* the fan-out's job id (--all) */
	size_t open;            /* 1 while the run stream is not over */
	bool all;               /* a job (--all, a node list): prefix lines
				 * with the node, end with a summary */
	bool group, json;       /* --group, --json: output held per task */
	size_t pending;         /* --group: ended tasks not printed yet */
	uint64_t first_pending_ms, last_end_ms; /* monotonic */
	bool print_id;          /* --print-id */
	bool refused;           /* the master refused the submission */
	int conn_err;           /* why the connection went, 0 while it is up */
	bool broken;            /* stdout or stderr failed (say, a closed pipe) */
};

static volatile sig_atomic_t run_interrupted;

/* First SIGINT: noted, the loop cancels; second: leave now. */
static void run_on_sigint(int sig)
{
	(void)sig;
	if (run_interrupted)
		_exit(130);
	run_interrupted = 1;
}

/* With --all, a task that did not succeed is named by its node as its
 * result arrives: "noded: node dev-2: FAILED, exit status 3 (task 7)", with
 * the reason after the task id when there is one. */
static void run_node_note(const struct run_task *t, const Noded__TaskRecord *r)
{
	char plain[48];

	/* the master's reason for a plain non-zero exit says no more */
	snprintf(plain, sizeof(plain), "exited with status %d", r->exit_code);
	fputs("noded: node ", stderr);
	nd_text_fput(stderr, t->node ? t->node : "(unknown)");
	fprintf(stderr, ": %s, exit status %d (task %" PRIu64,
		nd_task_state_name(r->state), t->status, t->id);
	if (r->reason && r->reason[0] && strcmp(r->reason, plain)) {
		fputs(": ", stderr);
		nd_text_fput(stderr, r->reason);
	}
	fputs(")\n", stderr);
}

/* A terminal record: the task's exit status, and its note on stderr after
 * its last output. */
static void run_task_ended(struct run_task *t, const Noded__TaskRecord *r)
{
	char note[1024];

	if (t->ended || !nd_cli_state_terminal(r->state))
		return;
	t->ended = true;
	t->status = nd_cli_exit_status(r);
	t->state = r->state;
	if (r->node && r->node[0] && (!t->node || strcmp(t->node, r->node))) {
		free(t->node);
		t->node = strdup(r->node);
	}
	if (!t->named && r->node && r->node[0] &&
	    !nd_cli_sink_set_prefix(&t->sink, r->node))
		t->named = true;
	nd_cli_sink_flush(&t->sink);
	if (t->run->json) {
		if (nd_cli_held_json(stdout, &t->held, t->node, t->id,
				     t->run->job, r, t->status))
			t->run->broken = true;
		nd_cli_held_free(&t->held);
	} else if (t->run->group) {
		uint64_t now = nd_mono_ms();

		if (!t->run->pending++)
			t->run->first_pending_ms = now;
		t->run->last_end_ms = now;
	}
	fflush(stdout);
	if (t->run->all) {
		if (r->state != NODED__TASK_STATE__TASK_SUCCEEDED)
			run_node_note(t, r);
	} else if (nd_cli_end_note(r, note, sizeof(note))) {
		fputs("noded: ", stderr);
		nd_text_fput(stderr, note);
		fputc('\n', stderr);
	}
}

static struct run_task *run_find(struct run *run, uint64_t id)
{
	for (size_t i = 0; i < run->n; i++)
		if (run->t[i].id == id)
			return &run->t[i];
	return NULL;
}

/* The submit reply: one run_task per task, with its output sink. */
static int run_tasks_init(struct run *run, const Noded__SubmitReply *sr)
{
	run->t = calloc(sr->n_task_ids ? sr->n_task_ids : 1, sizeof(*run->t));
	if (!run->t)
		return -ENOMEM;
	run->n = sr->n_task_ids;
	run->job = sr->job_id;
	if (sr->job_id)
		run->all = true; /* --all, or a node list */
	for (size_t i = 0; i < run->n; i++) {
		struct run_task *t = &run->t[i];
		char fallback[32];
		const char *node = i < sr->n_nodes && sr->nodes[i][0] ?
			sr->nodes[i] : NULL;

		t->run = run;
		t->id = sr->task_ids[i];
		t->named = node != NULL;
		if (node && !(t->node = strdup(node)))
			return -ENOMEM;
		snprintf(fallback, sizeof(fallback), "task %" PRIu64, t->id);
		if (nd_cli_sink_init(&t->sink, stdout, stderr,
				     !run->all ? NULL : node ? node : fallback))
			return -ENOMEM;
	}
	return 0;
}

/* --print-id: the task's id, or the job's, on stderr as soon as known,
 * for another terminal (noded wait, cancel, logs). */
static void run_print_id(const struct run *run, const Noded__SubmitReply *sr)
{
	if (!run->print_id || !sr->n_task_ids)
		return;
	if (sr->job_id)
		fprintf(stderr, "noded: job %" PRIu64 "\n", sr->job_id);
	else
		fprintf(stderr, "noded: task %" PRIu64 "\n", sr->task_ids[0]);
	fflush(stderr);
}

/* A record before the task's end: the master says an attempt was
 * retried, or where the retry runs. */
static void run_attempt_note(struct run_task *t, const Noded__TaskRecord *r)
{
	char note[1024];

	if (!nd_cli_attempt_note(r, note, sizeof(note)))
		return;
	nd_cli_sink_flush(&t->sink);
	fflush(stdout);
	fputs("noded: ", stderr);
	nd_text_fput(stderr, note);
	fputc('\n', stderr);
}

static void run_stream_cb(struct nd_client *c, int status,
			  const Noded__Frame *f, bool done, void *arg)
{
	struct run *run = arg;
	struct run_task *t;

	(void)c;
	if (status == ND_EREMOTE) {
		/* Before the submit reply: the submission was refused. */
		fprintf(stderr, "noded: %s%s\n", run->t ? "" : "submit: ",
			nd_cli_error_text(status, f));
		run->refused = !run->t;
	} else if (status < 0) {
		/* The connection is gone; the loop says so once. */
		if (!run->conn_err)
			run->conn_err = status;
	} else if (f->body_case == NODED__FRAME__BODY_SUBMIT_REPLY &&
		   f->submit_reply && !run->t) {
		if (run_tasks_init(run, f->submit_reply)) {
			fprintf(stderr, "noded: out of memory\n");
			run->refused = true;
		}
		run_print_id(run, f->submit_reply);
		nd_cli_waiting_note(f->submit_reply);
	} else if (f->body_case == NODED__FRAME__BODY_OUTPUT && f->output) {
		t = run_find(run, f->output->task_id);
		if (t && !run->broken &&
		    nd_cli_attempt_begins(&t->attempt, f->output->attempt)) {
			nd_cli_sink_flush(&t->sink);
			fflush(stdout);
			nd_cli_attempt_marker(stderr, t->id, f->output->attempt);
		}
		/* Once stdout is gone the rest is dropped (and the tasks
		 * cancelled by the loop). */
		if (t && !run->broken && (run->group || run->json) &&
		    nd_cli_held_add(&t->held, f->output->fd,
				    f->output->data.data,
				    f->output->data.len))
			run->broken = true; /* out of memory */
		else if (t && !run->broken && !run->group && !run->json &&
			 nd_cli_sink_write(&t->sink, f->output->fd,
					   f->output->data.data,
					   f->output->data.len))
			run->broken = true;
	} else if (f->body_case == NODED__FRAME__BODY_TASK_RECORD &&
		   f->task_record) {
		t = run_find(run, f->task_record->id);
		if (t && nd_cli_state_terminal(f->task_record->state))
			run_task_ended(t, f->task_record);
		else if (t)
			run_attempt_note(t, f->task_record);
	}
	if (!done)
		return;
	run->open = 0;
	for (size_t i = 0; i < run->n; i++) {
		run->t[i].done = true;
		if (!run->t[i].ended && status == 0)
			fprintf(stderr, "noded: task %" PRIu64 ": the master "
				"ended the stream before the task ended\n",
				run->t[i].id);
	}
}

static void run_cancel_cb(struct nd_client *c, int status,
			  const Noded__Frame *f, bool done, void *arg)
{
	struct run_task *t = arg;

	if (status == ND_EREMOTE)
		fprintf(stderr, "noded: cancel task %" PRIu64 ": %s\n", t->id,
			nd_cli_error_text(status, f));
}

/* Sends cancel_task for every task that has not ended, after a Ctrl-C
 * (interrupted) or because the output was closed. */
static void run_cancel(struct run *run, bool interrupted)
{
	Noded__TaskQuery q = NODED__TASK_QUERY__INIT;
	Noded__Frame f = NODED__FRAME__INIT;
	size_t n = 0;

	f.body_case = NODED__FRAME__BODY_CANCEL_TASK;
	f.cancel_task = &q;
	for (size_t i = 0; i < run->n; i++) {
		struct run_task *t = &run->t[i];

		if (t->ended || t->done || t->cancelling)
			continue;
		q.id = t->id;
		if (nd_client_start(run->c, &f, run_cancel_cb, t) < 0)
			continue;
		t->cancelling = true;
		n++;
	}
	if (n && interrupted)
		fprintf(stderr, "noded: cancelling %zu task%s (Ctrl-C again to "
			"stop waiting)\n", n, n > 1 ? "s" : "");
	else if (n)
		fprintf(stderr, "noded: the output is closed: cancelling %zu "
			"task%s\n", n, n > 1 ? "s" : "");
}

/* --group: prints the ended results not printed yet, folded, when it is
 * time (see GROUP_QUIET_MS); with force (at the end), those of tasks whose
 * end never arrived too. */
static void run_group_flush(struct run *run, bool force)
{
	uint64_t now = nd_mono_ms();
	struct nd_cli_held **h;
	char **nodes;
	size_t k = 0;

	if (!run->group || (!run->pending && !force) ||
	    (!force && now - run->last_end_ms < GROUP_QUIET_MS &&
	     now - run->first_pending_ms < GROUP_HOLD_MS))
		return;
	h = calloc(run->n ? run->n : 1, sizeof(*h));
	nodes = calloc(run->n ? run->n : 1, sizeof(*nodes));
	for (size_t i = 0; h && nodes && i < run->n; i++) {
		struct run_task *t = &run->t[i];

		if ((t->ended || force) && !t->held.shown) {
			h[k] = &t->held;
			nodes[k++] = t->node;
		}
	}
	fflush(stdout);
	if (!h || !nodes || nd_cli_group_print(stdout, stderr, h, nodes, k))
		run->broken = true;
	for (size_t i = 0; i < k; i++)
		nd_cli_held_free(h[i]);
	run->pending = 0;
	free(h);
	free(nodes);
	if (fflush(stdout) == EOF)
		run->broken = true;
}

/* Sends the run request and serves its stream until it is over. */
static void run_wait(struct run *run, Noded__TaskSpec *spec)
{
	Noded__Frame f = NODED__FRAME__INIT;
	bool cancelled = false;
	int64_t pinged = 0;
	int r;

	f.body_case = NODED__FRAME__BODY_RUN;
	f.run = spec;
	if (nd_client_start(run->c, &f, run_stream_cb, run) < 0)
		return;
	run->open = 1;
	while (run->open) {
		/* Nobody reads the output any more, or the user asked: the
		 * tasks are cancelled rather than left running unwatched. */
		/* (Not before the submit reply: there is nothing to cancel
		 * yet, and the interruption must not be spent.) */
		if ((run_interrupted || run->broken) && !cancelled && run->t) {
			cancelled = true;
			run_cancel(run, run_interrupted);
		}
		/* A silent task (or one waiting for a node) is no idle
		 * connection. */
		nd_cli_keepalive(run->c, &pinged);
		r = nd_client_poll(run->c, RUN_TICK_MS);
		run_group_flush(run, false);
		if (fflush(stdout) == EOF)
			run->broken = true;
		if (r < 0) {
			if (!run->conn_err)
				run->conn_err = r;
			break;
		}
	}
}

/* Nodes named per state in the summary; the rest are counted. */
#define SUMMARY_NAMES 20

/*
 * The last line of run --all, on stderr: the count of nodes per ending and,
 * for each ending but SUCCEEDED (always exit status 0), the nodes with their
 * exit status (the first SUMMARY_NAMES; the per-node lines above named each):
 *   noded: job 4 on 3 nodes: 2 SUCCEEDED; 1 FAILED: dev-2 (exit 3)
 * A task whose end never arrived (the master was lost) counts as "no
 * result" with 255.
 */
static void run_summary(const struct run *run)
{
	static const Noded__TaskState order[] = {
		NODED__TASK_STATE__TASK_SUCCEEDED,
		NODED__TASK_STATE__TASK_FAILED,
		NODED__TASK_STATE__TASK_TIMED_OUT,
		NODED__TASK_STATE__TASK_CANCELLED,
		NODED__TASK_STATE__TASK_LOST,
		NODED__TASK_STATE__TASK_PENDING, /* stands for "no result" */
	};
	const char *sep = "";

	fprintf(stderr, "noded: job %" PRIu64 " on %zu node%s:", run->job,
		run->n, run->n == 1 ? "" : "s");
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
		bool none = order[k] == NODED__TASK_STATE__TASK_PENDING;
		size_t count = 0, named = 0;

		for (size_t i = 0; i < run->n; i++)
			count += none ? !run->t[i].ended :
				 run->t[i].ended && run->t[i].state == order[k];
		if (!count)
			continue;
		fprintf(stderr, "%s %zu %s", sep, count,
			none ? "without a result" : nd_task_state_name(order[k]));
		sep = ";";
		if (order[k] == NODED__TASK_STATE__TASK_SUCCEEDED)
			continue;
		for (size_t i = 0; i < run->n && named < SUMMARY_NAMES; i++) {
			const struct run_task *t = &run->t[i];

			if (none ? t->ended :
			    !t->ended || t->state != order[k])
				continue;
			fputs(named++ ? ", " : ": ", stderr);
			if (t->node)
				nd_text_fput(stderr, t->node);
			else
				fprintf(stderr, "task %" PRIu64, t->id);
			fprintf(stderr, " (exit %d)",
				t->ended ? t->status : ND_CLI_EXIT_LOST);
		}
		if (count > named)
			fprintf(stderr, " and %zu more", count - named);
	}
	fputc('\n', stderr);
}

/* Exit status of the whole run: the largest of the tasks', 255 for a task
 * whose end we never learnt. */
static int run_status(struct run *run)
{
	size_t unknown = 0;
	int status = 0;

	for (size_t i = 0; i < run->n; i++) {
		struct run_task *t = &run->t[i];
		int s = t->ended ? t->status : ND_CLI_EXIT_LOST;

		nd_cli_sink_flush(&t->sink);
		unknown += !t->ended;
		if (s > status)
			status = s;
		/* --json: one object per task, a missing end too */
		if (run->json && !t->ended)
			nd_cli_held_json(stdout, &t->held, t->node, t->id,
					 run->job, NULL, s);
	}
	run_group_flush(run, true);
	fflush(stdout);
	if (run->conn_err && unknown)
		fprintf(stderr, "noded: lost the connection to the master %s "
			"(%s) while waiting for the task%s to end\n",
			run->master, nd_cli_error_text(run->conn_err, NULL),
			unknown > 1 ? "s" : "");
	if (run->all)
		run_summary(run);
	return status;
}

/* Submits a->spec on c. Returns 0 with *reply owning the SubmitReply frame,
 * or ND_CLI_EXIT_FAIL after saying why. */
static int run_submit(struct nd_client *c, struct nd_cli_task_args *a,
		      Noded__Frame **reply)
{
	Noded__Frame f = NODED__FRAME__INIT;
	int r;

	f.body_case = NODED__FRAME__BODY_SUBMIT;
	f.submit = &a->spec;
	/* sent again after a leader change, it makes no second task */
	if (nd_auth_nonce((uint8_t *)&a->spec.session,
			  sizeof(a->spec.session)) || !a->spec.session)
		a->spec.session = (uint64_t)getpid() << 32 ^ nd_unix_ms();
	a->spec.sequence = 1;
	r = nd_cli_call(c, &f, NODED__FRAME__BODY_SUBMIT_REPLY, "submit",
			reply);
	if (r)
		return r;
	if (!(*reply)->submit_reply || !(*reply)->submit_reply->n_task_ids) {
		fprintf(stderr, "noded: submit: the master created no task%s\n",
			a->spec.all ? " (no live node?)" : "");
		nd_frame_free(*reply, NULL);
		*reply = NULL;
		return ND_CLI_EXIT_FAIL;
	}
	return 0;
}

int nd_cli_run(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = run_on_sigint }, old_sa;
	void (*old_pipe)(int);
	struct nd_cli_task_args a;
	struct run run = { 0 };
	int status;

	if (!nd_cli_task_args_parse(&a, argc, argv, &status))
		return status;
	run.master = a.master;
	run.all = a.spec.all;
	run.print_id = a.print_id;
	run.group = a.group;
	run.json = a.json;
	run.c = nd_cli_connect(a.master);
	if (!run.c) {
		status = ND_CLI_EXIT_FAIL;
		goto out_args;
	}

	/* No SA_RESTART: poll() returns at once on Ctrl-C. A closed stdout
	 * shows as EPIPE (then the tasks are cancelled), not as SIGPIPE. */
	run_interrupted = 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_sa);
	old_pipe = signal(SIGPIPE, SIG_IGN);
	run_wait(&run, &a.spec);
	signal(SIGPIPE, old_pipe);
	sigaction(SIGINT, &old_sa, NULL);
	if (run.refused) {
		status = ND_CLI_EXIT_FAIL;
	} else if (!run.t) {
		fprintf(stderr, "noded: lost the connection to the master %s "
			"(%s) before it took the task\n", run.master,
			nd_cli_error_text(run.conn_err ? run.conn_err : ND_EPROTO,
					  NULL));
		status = ND_CLI_EXIT_LOST;
	} else if (!run.n) {
		fprintf(stderr, "noded: the master created no task%s\n",
			run.all ? " (no live node?)" : "");
		status = ND_CLI_EXIT_FAIL;
	} else {
		status = run_status(&run);
	}
	for (size_t i = 0; i < run.n; i++) {
		nd_cli_sink_free(&run.t[i].sink);
		nd_cli_held_free(&run.t[i].held);
		free(run.t[i].node);
	}
	free(run.t);
	nd_client_close(run.c);
out_args:
	nd_cli_task_args_free(&a);
	return status;
}

int nd_cli_submit(int argc, char **argv)
{
	struct nd_cli_task_args a;
	Noded__Frame *reply = NULL;
	Noded__SubmitReply *sr;
	struct nd_client *c;
	int status;

	if (!nd_cli_task_args_parse(&a, argc, argv, &status))
		return status;
	c = nd_cli_connect(a.master);
	if (!c) {
		status = ND_CLI_EXIT_FAIL;
		goto out_args;
	}
	status = run_submit(c, &a, &reply);
	if (status)
		goto out_client;
	sr = reply->submit_reply;
	nd_cli_waiting_note(sr);
	for (size_t i = 0; i < sr->n_task_ids; i++) {
		const char *node = i < sr->n_nodes && sr->nodes[i][0] ?
			sr->nodes[i] : NULL;

		if (!sr->job_id)
			printf("%" PRIu64 "\n", sr->task_ids[i]);
		else
			printf("job %" PRIu64 ": task %" PRIu64 " on %s\n",
			       sr->job_id, sr->task_ids[i],
			       node ? node : "(not chosen yet)");
	}
	if (fflush(stdout)) {
		fprintf(stderr, "noded: writing to stdout: %s\n",
			strerror(errno));
		status = ND_CLI_EXIT_FAIL;
	}
	nd_frame_free(reply, NULL);
out_client:
	nd_client_close(c);
out_args:
	nd_cli_task_args_free(&a);
	return status;
}
