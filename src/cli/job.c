/*
 * noded job ID [--json]            a job's tasks, by state
 * noded wait ID | --job N [--timeout SECS]
 *                                  waits for a task (a job's tasks) to end,
 *                                  and exits with its status as run does
 * noded cancel --job N             (from noded cancel) cancels a job's tasks
 *
 * A job is the fan-out of `run --all` or `submit --all`: one task per node,
 * the job's id its first task's. Its tasks come from the master's task list
 * filtered by job (TaskListRequest.job_id), so a job is whatever of it the
 * master still holds (ended tasks past --task-history are gone).
 *
 * wait follows each task with a watch stream that carries no output
 * (WatchRequest.records_only): the master sends the record when an attempt
 * is retried, when a retry is placed, and when the task ends. Nothing is
 * polled.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "cli/task_opts.h"
#include "core/time.h"
#include "wire/text.h"

/* The most tasks one list request returns (the master's bound). */
#define JOB_TASKS_MAX 10000
/* How often wait looks at its deadline at the latest. */
#define WAIT_TICK_MS 100
/* How long cancel --job waits for the cancelled tasks to end, and how
 * often it asks (as noded cancel does for one). */
#define CANCEL_WAIT_MS 10000
#define CANCEL_POLL_MS 100

/* The states in the order job and wait show them. */
static const Noded__TaskState state_order[] = {
	NODED__TASK_STATE__TASK_PENDING, NODED__TASK_STATE__TASK_ASSIGNED,
	NODED__TASK_STATE__TASK_RUNNING, NODED__TASK_STATE__TASK_SUCCEEDED,
	NODED__TASK_STATE__TASK_FAILED, NODED__TASK_STATE__TASK_TIMED_OUT,
	NODED__TASK_STATE__TASK_CANCELLED, NODED__TASK_STATE__TASK_LOST,
};
#define NSTATE_ORDER (sizeof(state_order) / sizeof(state_order[0]))

/*
 * The tasks of job on c: 0 with *reply owning a TaskList of at least one
 * record (newest first), or ND_CLI_EXIT_FAIL after saying why (what: the
 * command, for the message).
 */
static int job_tasks(struct nd_client *c, uint64_t job, const char *what,
		     Noded__Frame **reply)
{
	Noded__TaskListRequest lr = NODED__TASK_LIST_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT;
	int r;

	lr.job_id = job;
	lr.limit = JOB_TASKS_MAX;
	f.body_case = NODED__FRAME__BODY_LIST_TASKS;
	f.list_tasks = &lr;
	r = nd_cli_call(c, &f, NODED__FRAME__BODY_TASK_LIST, what, reply);
	if (r)
		return r;
	if (!(*reply)->task_list->n_tasks) {
		fprintf(stderr, "noded %s: no job %" PRIu64 " on the master (a "
			"job is the fan-out of run or submit --all, its id its "
			"first task's; an ended one leaves with its tasks)\n",
			what, job);
		nd_frame_free(*reply, NULL);
		*reply = NULL;
		return ND_CLI_EXIT_FAIL;
	}
	return 0;
}

/* ---- noded job ---- */

static int job_json(uint64_t job, const Noded__TaskList *tl)
{
	json_t *o = json_object(), *by = json_object(), *arr = json_array();
	int err = !o || !by || !arr;

	for (size_t i = tl->n_tasks; !err && i-- > 0;) {
		const Noded__TaskRecord *t = tl->tasks[i];
		const char *st = nd_task_state_name(t->state);
		json_t *n = json_object_get(by, st);

		err = json_array_append_new(arr, nd_json_task(t)) ||
		      json_object_set_new(by, st, json_integer(
				  (n ? json_integer_value(n) : 0) + 1));
	}
	if (!err)
		err = json_object_set_new(o, "job_id",
					  json_integer((json_int_t)job)) ||
		      json_object_set_new(o, "count", json_integer(
				  (json_int_t)tl->n_tasks)) ||
		      json_object_set(o, "by_state", by) ||
		      json_object_set(o, "tasks", arr);
	json_decref(by);
	json_decref(arr);
	if (!err)
		err = json_dumpf(o, stdout, JSON_INDENT(2)) ||
		      printf("\n") < 0;
	json_decref(o);
	if (err)
		fprintf(stderr, "noded job: out of memory, or stdout failed\n");
	return err ? ND_CLI_EXIT_FAIL : 0;
}

/* "job 12: 3 tasks: 2 SUCCEEDED, 1 FAILED", then a table by state. */
static void job_print(uint64_t job, const Noded__TaskList *tl)
{
	const char *sep = ": ";
	char *cmd = nd_cli_command_string(tl->tasks[0]->spec);

	printf("job %" PRIu64 ": %zu task%s", job, tl->n_tasks,
	       tl->n_tasks == 1 ? "" : "s");
	for (size_t k = 0; k < NSTATE_ORDER; k++) {
		size_t n = 0;

		for (size_t i = 0; i < tl->n_tasks; i++)
			n += tl->tasks[i]->state == state_order[k];
		if (n) {
			printf("%s%zu %s", sep, n,
			       nd_task_state_name(state_order[k]));
			sep = ", ";
		}
	}
	printf("\ncommand: %s\n", cmd ? cmd : "?");
	free(cmd);
	printf("%-10s %-14s %-16s %-8s %s\n", "STATE", "TASK", "NODE", "EXIT",
	       "ATTEMPT");
	for (size_t k = 0; k < NSTATE_ORDER; k++)
		for (size_t i = tl->n_tasks; i-- > 0;) {
			const Noded__TaskRecord *t = tl->tasks[i];
			char *node;
			char ex[16] = "-";

			if (t->state != state_order[k])
				continue;
			if (nd_cli_state_terminal(t->state) &&
			    t->state != NODED__TASK_STATE__TASK_LOST)
				snprintf(ex, sizeof(ex), "%d",
					 nd_cli_exit_status(t));
			node = nd_text_escaped(t->node && t->node[0] ?
					       t->node : "-");
			printf("%-10s %-14" PRIu64 " %-16s %-8s %u\n",
			       nd_task_state_name(t->state), t->id,
			       node ? node : "?", ex, t->attempt);
			free(node);
		}
}

int nd_cli_job(int argc, char **argv)
{
	struct nd_cli_task_opts o;
	Noded__Frame *reply;
	struct nd_client *c;
	int r;

	r = nd_cli_task_opts_parse(argc, argv, TO_ID | TO_JSON,
		"usage: noded job ID [--master HOST:PORT] [--json] "
		"[--token-file FILE] "
		"[--tls-cert FILE --tls-key FILE --tls-ca FILE] [--config FILE]\n"
		"  The tasks of job ID (the fan-out of a run or submit to "
		"several nodes; its\n"
		"  id is its first task's), counted and listed by state, with "
		"each one's exit\n"
		"  status as run gives it.", &o);
	if (r >= 0)
		return r;
	c = nd_cli_connect(o.master);
	if (!c)
		return ND_CLI_EXIT_FAIL;
	r = job_tasks(c, o.id, "job", &reply);
	nd_client_close(c);
	if (r)
		return r;
	if (o.json) {
		r = job_json(o.id, reply->task_list);
	} else {
		job_print(o.id, reply->task_list);
		if (fflush(stdout))
			r = ND_CLI_EXIT_FAIL;
	}
	nd_frame_free(reply, NULL);
	return r;
}

/* ---- noded wait ---- */

struct waited {
	struct wait *w;
	uint64_t id;
	bool ended;             /* its terminal record came */
	bool done;              /* its stream is over */
	int status;             /* its exit status, once ended */
	Noded__TaskState state;
};

struct wait {
	struct waited *t;
	size_t n, open;         /* tasks; streams not over */
	uint64_t job;           /* --job, or 0 */
	int conn_err;
};

/* A task's end, as run says it: the end note for one task; for a job's,
 * the node of each that did not succeed. */
static void wait_ended(struct waited *t, const Noded__TaskRecord *r)
{
	char note[1024];

	t->ended = true;
	t->state = r->state;
	t->status = nd_cli_exit_status(r);
	if (t->w->job && r->state != NODED__TASK_STATE__TASK_SUCCEEDED) {
		fputs("noded: node ", stderr);
		nd_text_fput(stderr, r->node && r->node[0] ? r->node :
			     "(unknown)");
		fprintf(stderr, ": %s, exit status %d (task %" PRIu64 ")\n",
			nd_task_state_name(r->state), t->status, r->id);
	} else if (!t->w->job && nd_cli_end_note(r, note, sizeof(note))) {
		fputs("noded: ", stderr);
		nd_text_fput(stderr, note);
		fputc('\n', stderr);
	}
}

static void wait_cb(struct nd_client *c, int status, const Noded__Frame *f,
		    bool done, void *arg)
{
	struct waited *t = arg;
	char note[1024];

	(void)c;
	if (status == ND_EREMOTE) {
		fprintf(stderr, "noded wait: task %" PRIu64 ": %s\n", t->id,
			nd_cli_error_text(status, f));
		t->ended = true;
		t->status = ND_CLI_EXIT_FAIL;
	} else if (status < 0) {
		if (!t->w->conn_err)
			t->w->conn_err = status;
	} else if (f->body_case == NODED__FRAME__BODY_TASK_RECORD &&
		   f->task_record && !t->ended) {
		if (nd_cli_state_terminal(f->task_record->state)) {
			wait_ended(t, f->task_record);
		} else if (nd_cli_attempt_note(f->task_record, note,
					       sizeof(note))) {
			fputs("noded: ", stderr);
			nd_text_fput(stderr, note);
			fputc('\n', stderr);
		}
	}
	if (done && !t->done) {
		t->done = true;
		t->w->open--;
	}
}

/* Opens a records-only watch of every task of w. */
static int wait_start(struct nd_client *c, struct wait *w)
{
	Noded__WatchRequest wr = NODED__WATCH_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT;

	wr.follow = true;
	wr.records_only = true;
	f.body_case = NODED__FRAME__BODY_WATCH;
	f.watch = &wr;
	for (size_t i = 0; i < w->n; i++) {
		wr.task_id = w->t[i].id;
		if (nd_client_start(c, &f, wait_cb, &w->t[i]) < 0) {
			fprintf(stderr, "noded wait: out of memory\n");
			return ND_CLI_EXIT_FAIL;
		}
		w->open++;
	}
	return 0;
}

/* The exit status once every stream is over: the largest of the tasks',
 * 255 for one whose end never came (and the master is lost); with a job,
 * a summary line on stderr. */
static int wait_status(const struct wait *w, const char *master)
{
	size_t unknown = 0;
	int status = 0;

	for (size_t i = 0; i < w->n; i++) {
		int s = w->t[i].ended ? w->t[i].status : ND_CLI_EXIT_LOST;

		unknown += !w->t[i].ended;
		if (s > status)
			status = s;
	}
	if (unknown)
		fprintf(stderr, "noded: wait: %s the master %s while waiting "
			"for %zu task%s to end\n",
			w->conn_err ? "lost the connection to" :
				      "no end came from",
			master, unknown, unknown == 1 ? "" : "s");
	if (w->job) {
		const char *sep = ":";

		fprintf(stderr, "noded: job %" PRIu64 ", %zu task%s", w->job,
			w->n, w->n == 1 ? "" : "s");
		for (size_t k = 0; k < NSTATE_ORDER; k++) {
			size_t n = 0;

			for (size_t i = 0; i < w->n; i++)
				n += w->t[i].ended &&
				     w->t[i].state == state_order[k];
			if (n) {
				fprintf(stderr, "%s %zu %s", sep, n,
					nd_task_state_name(state_order[k]));
				sep = ";";
			}
		}
		if (unknown)
			fprintf(stderr, "%s %zu without a result", sep,
				unknown);
		fputc('\n', stderr);
	}
	return status;
}

/* Fills w's tasks: the one id, or every task of job o->job. */
static int wait_tasks(struct nd_client *c, const struct nd_cli_task_opts *o,
		      struct wait *w)
{
	Noded__Frame *reply = NULL;
	int r;

	if (!o->job) {
		w->t = calloc(1, sizeof(*w->t));
		if (!w->t)
			goto err_nomem;
		w->n = 1;
		w->t[0].id = o->id;
		w->t[0].w = w;
		return 0;
	}
	r = job_tasks(c, o->job, "wait", &reply);
	if (r)
		return r;
	w->job = o->job;
	w->n = reply->task_list->n_tasks;
	w->t = calloc(w->n, sizeof(*w->t));
	if (!w->t) {
		nd_frame_free(reply, NULL);
		goto err_nomem;
	}
	for (size_t i = 0; i < w->n; i++) {
		w->t[i].id = reply->task_list->tasks[w->n - 1 - i]->id;
		w->t[i].w = w;
	}
	nd_frame_free(reply, NULL);
	return 0;
err_nomem:
	fprintf(stderr, "noded wait: out of memory\n");
	return ND_CLI_EXIT_FAIL;
}

int nd_cli_wait(int argc, char **argv)
{
	struct nd_cli_task_opts o;
	struct wait w = { 0 };
	struct nd_client *c;
	int64_t pinged = 0, deadline;
	int r;

	r = nd_cli_task_opts_parse(argc, argv, TO_ID | TO_JOB | TO_ID_OR_JOB |
				   TO_TIMEOUT,
		"usage: noded wait ID | --job N [--timeout SECS] "
		"[--master HOST:PORT]\n"
		"                  [--token-file FILE] "
		"[--tls-cert FILE --tls-key FILE --tls-ca FILE] [--config FILE]\n"
		"  Waits for task ID (or every task of job N) to end and exits "
		"with its\n"
		"  status as run does: the command's, 128+N if killed by "
		"signal N, 124 on\n"
		"  timeout, 130 cancelled, 255 lost or the master lost, 1 no "
		"such task; for\n"
		"  a job the largest of its tasks'. Retries are said on stderr "
		"as run does.\n"
		"  --timeout SECS: stop waiting after SECS and exit 254 (the "
		"task goes on).", &o);
	if (r >= 0)
		return r;
	c = nd_cli_connect(o.master);
	if (!c)
		return ND_CLI_EXIT_FAIL;
	r = wait_tasks(c, &o, &w);
	if (!r)
		r = wait_start(c, &w);
	if (r)
		goto out;
	deadline = o.timeout_ms ? (int64_t)nd_mono_ms() + o.timeout_ms : 0;
	while (w.open && !w.conn_err) {
		int64_t left = deadline ? deadline - (int64_t)nd_mono_ms() : 0;

		if (deadline && left <= 0) {
			size_t n = 0;

			for (size_t i = 0; i < w.n; i++)
				n += !w.t[i].ended;
			fprintf(stderr, "noded: wait: %zu task%s not ended "
				"after --timeout %g s\n", n, n == 1 ? "" : "s",
				o.timeout_ms / 1000.0);
			r = ND_CLI_EXIT_WAIT_TIMEOUT;
			goto out;
		}
		nd_cli_keepalive(c, &pinged);
		r = nd_client_poll(c, deadline && left < WAIT_TICK_MS ?
				   (int)left : WAIT_TICK_MS);
		if (r < 0 && !w.conn_err)
			w.conn_err = r;
	}
	r = wait_status(&w, o.master);
out:
	nd_client_close(c);
	free(w.t);
	return r;
}

/* ---- noded cancel --job ---- */

static void cancel_cb(struct nd_client *c, int status, const Noded__Frame *f,
		      bool done, void *arg)
{
	Noded__TaskState *st = arg;

	(void)c;
	(void)done;
	if (status == 0 && f->body_case == NODED__FRAME__BODY_TASK_RECORD &&
	    f->task_record) {
		*st = f->task_record->state; /* what the cancel led to */
	} else if (status == ND_EREMOTE) {
		fprintf(stderr, "noded cancel: %s\n",
			nd_cli_error_text(status, f));
	}
}

/* Asks for task id's state until it ended or the wait is over. */
static Noded__TaskState cancel_settle(struct nd_client *c, uint64_t id,
				      Noded__TaskState st, int64_t deadline)
{
	Noded__TaskQuery q = NODED__TASK_QUERY__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *again;

	q.id = id;
	f.body_case = NODED__FRAME__BODY_GET_TASK;
	f.get_task = &q;
	while (!nd_cli_state_terminal(st) && (int64_t)nd_mono_ms() < deadline) {
		usleep(CANCEL_POLL_MS * 1000);
		if (nd_client_call(c, &f, &again, ND_CLI_CALL_TIMEOUT_MS) ||
		    again->body_case != NODED__FRAME__BODY_TASK_RECORD) {
			nd_frame_free(again, NULL);
			break;
		}
		st = again->task_record->state;
		nd_frame_free(again, NULL);
	}
	return st;
}

int nd_cli_cancel_job(const char *master, uint64_t job)
{
	Noded__TaskQuery q = NODED__TASK_QUERY__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *reply;
	const Noded__TaskList *tl;
	Noded__TaskState *st = NULL;  /* each cancel's answer (0: none) */
	struct nd_client *c = nd_cli_connect(master);
	size_t asked = 0;
	int64_t deadline;
	int r;

	if (!c)
		return ND_CLI_EXIT_FAIL;
	r = job_tasks(c, job, "cancel", &reply);
	if (r)
		goto out_client;
	tl = reply->task_list;
	st = calloc(tl->n_tasks, sizeof(*st));
	if (!st) {
		fprintf(stderr, "noded cancel: out of memory\n");
		r = ND_CLI_EXIT_FAIL;
		goto out_reply;
	}
	/* every cancel at once: each is answered when its task ended */
	f.body_case = NODED__FRAME__BODY_CANCEL_TASK;
	f.cancel_task = &q;
	for (size_t i = 0; i < tl->n_tasks; i++) {
		if (nd_cli_state_terminal(tl->tasks[i]->state))
			continue;
		q.id = tl->tasks[i]->id;
		if (nd_client_start(c, &f, cancel_cb, &st[i]) < 0) {
			fprintf(stderr, "noded cancel: out of memory\n");
			r = ND_CLI_EXIT_FAIL;
			goto out_st;
		}
		asked++;
	}
	/* the master answers each within its own bound (5 s) */
	deadline = (int64_t)nd_mono_ms() + ND_CLI_CALL_TIMEOUT_MS;
	while (nd_client_pending(c) && r >= 0 &&
	       (int64_t)nd_mono_ms() < deadline)
		r = nd_client_poll(c, CANCEL_POLL_MS);
	if (r >= 0 && nd_client_pending(c))
		r = -ETIMEDOUT;
	if (r < 0) {
		fprintf(stderr, "noded cancel: lost the connection to the "
			"master %s (%s)\n", master, nd_cli_error_text(r, NULL));
		r = ND_CLI_EXIT_FAIL;
		goto out_st;
	}
	r = 0;
	deadline = (int64_t)nd_mono_ms() + CANCEL_WAIT_MS;
	for (size_t i = tl->n_tasks; i-- > 0;) {
		const Noded__TaskRecord *t = tl->tasks[i];
		Noded__TaskState s;

		if (nd_cli_state_terminal(t->state))
			continue;
		s = cancel_settle(c, t->id, st[i] ? st[i] : t->state,
				  deadline);
		printf("task %" PRIu64 ": %s%s\n", t->id, nd_task_state_name(s),
		       nd_cli_state_terminal(s) ? "" :
		       " (cancel requested, not ended yet)");
	}
	if (!asked)
		printf("job %" PRIu64 ": nothing to cancel, its %zu task%s had "
		       "ended\n", job, tl->n_tasks, tl->n_tasks == 1 ? "" : "s");
out_st:
	free(st);
out_reply:
	nd_frame_free(reply, NULL);
out_client:
	nd_client_close(c);
	return r;
}
