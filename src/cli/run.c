/*
 * noded run: submit a command, stream its output, exit with its status.
 * noded submit: submit a command and print its task id(s).
 *
 * run keeps one connection to the master: after the submit reply it opens a
 * watch stream {task_id, follow} per task, all pipelined, and serves them
 * with nd_client_poll() until every stream has ended. The first SIGINT sends
 * cancel_task for the tasks still running and keeps waiting for their end;
 * the second exits 130 at once.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/common.h"

/* How often the wait loop looks at the SIGINT flag at the latest. */
#define RUN_TICK_MS 100

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
};

struct run {
	const char *master;
	struct nd_client *c;
	struct run_task *t;
	size_t n;
	size_t open;            /* watch streams not over yet */
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

/* A terminal record: the task's exit status, and its note on stderr after
 * its last output. */
static void run_task_ended(struct run_task *t, const Noded__TaskRecord *r)
{
	char note[1024];

	if (t->ended || !nd_cli_state_terminal(r->state))
		return;
	t->ended = true;
	t->status = nd_cli_exit_status(r);
	if (!t->named && r->node && r->node[0] &&
	    !nd_cli_sink_set_prefix(&t->sink, r->node))
		t->named = true;
	nd_cli_sink_flush(&t->sink);
	fflush(stdout);
	if (nd_cli_end_note(r, note, sizeof(note)))
		fprintf(stderr, "noded: %s\n", note);
}

static void run_watch_cb(struct nd_client *c, int status,
			 const Noded__Frame *f, bool done, void *arg)
{
	struct run_task *t = arg;

	if (status == ND_EREMOTE) {
		fprintf(stderr, "noded: task %" PRIu64 ": %s\n", t->id,
			nd_cli_error_text(status, f));
	} else if (status < 0) {
		/* The connection is gone; the loop says so once. */
		if (!t->run->conn_err)
			t->run->conn_err = status;
	} else if (f->kind == NODED__FRAME_KIND__STREAM_ITEM &&
		   f->body_case == NODED__FRAME__BODY_OUTPUT && f->output) {
		/* Once stdout is gone the rest is dropped (and the tasks
		 * cancelled by the loop). */
		if (!t->run->broken &&
		    nd_cli_sink_write(&t->sink, f->output->fd,
				      f->output->data.data,
				      f->output->data.len))
			t->run->broken = true;
	} else if (f->kind == NODED__FRAME_KIND__STREAM_ITEM &&
		   f->body_case == NODED__FRAME__BODY_TASK_RECORD &&
		   f->task_record) {
		run_task_ended(t, f->task_record);
	}
	if (!done)
		return;
	t->done = true;
	t->run->open--;
	if (!t->ended && status == 0)
		fprintf(stderr, "noded: task %" PRIu64 ": the master ended the "
			"watch before the task ended\n", t->id);
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

/* Opens the watch streams and serves them until all are over. */
static void run_wait(struct run *run)
{
	Noded__WatchRequest w = NODED__WATCH_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT;
	bool cancelled = false;
	int r;

	f.body_case = NODED__FRAME__BODY_WATCH;
	f.watch = &w;
	w.follow = true;
	for (size_t i = 0; i < run->n; i++) {
		w.task_id = run->t[i].id;
		if (nd_client_start(run->c, &f, run_watch_cb, &run->t[i]) < 0) {
			run->t[i].done = true;
			continue;
		}
		run->open++;
	}
	while (run->open) {
		/* Nobody reads the output any more, or the user asked: the
		 * tasks are cancelled rather than left running unwatched. */
		if ((run_interrupted || run->broken) && !cancelled) {
			cancelled = true;
			run_cancel(run, run_interrupted);
		}
		r = nd_client_poll(run->c, RUN_TICK_MS);
		if (fflush(stdout) == EOF)
			run->broken = true;
		if (r < 0) {
			if (!run->conn_err)
				run->conn_err = r;
			break;
		}
	}
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
	}
	fflush(stdout);
	if (run->conn_err && unknown)
		fprintf(stderr, "noded: lost the connection to the master %s "
			"(%s) while waiting for the task%s to end\n",
			run->master, nd_cli_error_text(run->conn_err, NULL),
			unknown > 1 ? "s" : "");
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
	Noded__Frame *reply = NULL;
	Noded__SubmitReply *sr;
	int status;

	if (!nd_cli_task_args_parse(&a, argc, argv, &status))
		return status;
	run.master = a.master;
	run.c = nd_cli_connect(a.master);
	if (!run.c) {
		status = ND_CLI_EXIT_FAIL;
		goto out_args;
	}
	status = run_submit(run.c, &a, &reply);
	if (status)
		goto out_client;
	sr = reply->submit_reply;
	run.n = sr->n_task_ids;
	run.t = calloc(run.n, sizeof(*run.t));
	if (!run.t) {
		fprintf(stderr, "noded: out of memory\n");
		status = ND_CLI_EXIT_FAIL;
		goto out_reply;
	}
	for (size_t i = 0; i < run.n; i++) {
		struct run_task *t = &run.t[i];
		char fallback[32];
		const char *node = i < sr->n_nodes && sr->nodes[i][0] ?
			sr->nodes[i] : NULL;

		t->run = &run;
		t->id = sr->task_ids[i];
		t->named = node != NULL;
		snprintf(fallback, sizeof(fallback), "task %" PRIu64, t->id);
		if (nd_cli_sink_init(&t->sink, stdout, stderr,
				     !a.spec.all ? NULL : node ? node :
				     fallback)) {
			fprintf(stderr, "noded: out of memory\n");
			status = ND_CLI_EXIT_FAIL;
			goto out_tasks;
		}
	}

	/* No SA_RESTART: poll() returns at once on Ctrl-C. A closed stdout
	 * shows as EPIPE (then the tasks are cancelled), not as SIGPIPE. */
	run_interrupted = 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_sa);
	old_pipe = signal(SIGPIPE, SIG_IGN);
	run_wait(&run);
	signal(SIGPIPE, old_pipe);
	sigaction(SIGINT, &old_sa, NULL);
	status = run_status(&run);

out_tasks:
	for (size_t i = 0; i < run.n; i++)
		nd_cli_sink_free(&run.t[i].sink);
	free(run.t);
out_reply:
	nd_frame_free(reply, NULL);
out_client:
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
	for (size_t i = 0; i < sr->n_task_ids; i++) {
		const char *node = i < sr->n_nodes && sr->nodes[i][0] ?
			sr->nodes[i] : NULL;

		if (!a.spec.all)
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
