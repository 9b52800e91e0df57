/*
 * noded task ID [--json]       one task's record, with its attempts
 * noded tasks [--state S] [--job N] [--node X] [--limit N] [--json]
 *                              the task table (filtered by the master)
 * noded logs ID [--follow]     a task's kept output, then live with
 *                              --follow (then it exits like run)
 * noded cancel ID | --job N    cancel a task (or a job's), print its state
 * The commands' common options: nd_cli_task_opts_parse() (task_opts.h).
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "cli/task_opts.h"
#include "wire/text.h"

int nd_cli_task_opts_parse(int argc, char **argv, unsigned allowed,
			   const char *usage, struct nd_cli_task_opts *o)
{
	static const struct option opts[] = {
		{ "master", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "state", required_argument, NULL, 's' },
		{ "limit", required_argument, NULL, 'n' },
		{ "follow", no_argument, NULL, 'f' },
		{ "job", required_argument, NULL, 'J' },
		{ "node", required_argument, NULL, 'N' },
		{ "timeout", required_argument, NULL, 't' },
		{ "stale", no_argument, NULL, 'S' },
		{ "token-file", required_argument, NULL, 'T' },
		ND_CLI_TLS_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *seen[sizeof(opts) / sizeof(opts[0])] = { 0 };
	char name[64], *saved0 = argv[0];
	unsigned bit;
	uint64_t v;
	int c, li, ret = nd_cli_config(argv[0], "hf", opts, &argc, &argv);

	memset(o, 0, sizeof(*o));
	if (ret >= 0)
		return ret;
	ret = ND_CLI_EXIT_USAGE;
	saved0 = argv[0];
	o->master = ND_CLI_MASTER;
	snprintf(name, sizeof(name), "noded %s", argv[0]);
	argv[0] = name;
	optind = 0;
	while ((li = -1, c = nd_cli_getopt(argc, argv, "hf", opts, &li)) != -1) {
		bit = c == 'j' ? TO_JSON : c == 's' ? TO_STATE :
		      c == 'n' ? TO_LIMIT : c == 'f' ? TO_FOLLOW :
		      c == 'J' ? TO_JOB : c == 'N' ? TO_NODE :
		      c == 't' ? TO_TIMEOUT : c == 'S' ? TO_STALE : 0;
		if (bit && !(allowed & bit)) {
			fprintf(stderr, "%s: %s does not apply here\n", name,
				argv[optind - 1]);
			goto err_usage;
		}
		if (!nd_cli_once(saved0, opts, seen, li, optarg))
			goto err_usage;
		if (nd_cli_conn_opt(c, optarg, &o->master))
			continue;
		switch (c) {
		case 'j':
			o->json = true;
			break;
		case 'f':
			o->follow = true;
			break;
		case 'S':
			/* any master of --master answers, from its copy */
			o->stale = true;
			nd_cli_stale = true;
			break;
		case 's':
			if (!nd_task_state_parse(optarg, &o->state)) {
				fprintf(stderr, "%s: --state wants one of "
					"pending, assigned, running, succeeded, "
					"failed, timed_out, cancelled, lost; not "
					"'%s'\n", name, optarg);
				goto err_usage;
			}
			break;
		case 'n':
			if (!nd_cli_uint("--limit", optarg, 1, UINT32_MAX, &v))
				goto err_usage;
			o->limit = (uint32_t)v;
			break;
		case 'J':
			if (!nd_cli_uint("--job", optarg, 1, UINT64_MAX, &v))
				goto err_usage;
			o->job = v;
			break;
		case 'N':
			if (!*optarg) {
				fprintf(stderr, "%s: --node wants a name\n", name);
				goto err_usage;
			}
			o->node = optarg;
			break;
		case 't':
			if (!nd_cli_timeout_ms(optarg, &o->timeout_ms))
				goto err_usage;
			break;
		case 'h':
			printf("%s\n", usage);
			ret = 0;
			goto out;
		default:
			goto err_usage;
		}
	}
	if ((allowed & TO_ID_OR_JOB) && o->job) {
		if (optind < argc) {
			fprintf(stderr, "%s: a task ID or --job, not both\n",
				name);
			goto err_usage;
		}
	} else if (allowed & TO_ID) {
		if (optind >= argc) {
			fprintf(stderr, "%s: which %s? give its ID\n", name,
				allowed & TO_ID_OR_JOB ? "task (or --job N)" :
				!strcmp(saved0, "job") ? "job" : "task");
			goto err_usage;
		}
		if (!nd_cli_task_id(argv[optind], &o->id))
			goto err_usage;
		optind++;
	}
	if (!nd_cli_no_more_args(name, argc, argv))
		goto err_usage;
	argv[0] = saved0;
	return -1;

err_usage:
	fprintf(stderr, "%s\n", usage);
out:
	argv[0] = saved0;
	return ret;
}

/* Prints one JSON value on stdout and drops it. */
static int print_json(json_t *j)
{
	int r;

	if (!j) {
		fprintf(stderr, "noded: out of memory\n");
		return ND_CLI_EXIT_FAIL;
	}
	r = json_dumpf(j, stdout, JSON_INDENT(2));
	json_decref(j);
	if (r || printf("\n") < 0)
		return ND_CLI_EXIT_FAIL;
	return 0;
}

int nd_cli_task(int argc, char **argv)
{
	struct nd_cli_task_opts o;
	Noded__TaskQuery q = NODED__TASK_QUERY__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *reply;
	int r;

	r = nd_cli_task_opts_parse(argc, argv, TO_ID | TO_JSON | TO_STALE,
		       "usage: noded task ID [--master HOST:PORT] [--json] [--stale] [--token-file FILE] "
		"[--tls-cert FILE --tls-key FILE --tls-ca FILE] [--config FILE]\n"
		       "  --stale: the first master of --master answers from its copy of\n"
		       "           the ledger (a follower's may lag), not the leader", &o);
	if (r >= 0)
		return r;
	q.id = o.id;
	q.stale = o.stale;
	f.body_case = NODED__FRAME__BODY_GET_TASK;
	f.get_task = &q;
	r = nd_cli_request(o.master, &f, NODED__FRAME__BODY_TASK_RECORD,
			   "task", &reply);
	if (r)
		return r;
	if (o.json)
		r = print_json(nd_json_task(reply->task_record));
	else
		nd_cli_task_print(stdout, reply->task_record);
	nd_frame_free(reply, NULL);
	return r;
}

/* The EXIT column: the code, the killing signal, or "-" while unknown. */
static const char *exit_column(const Noded__TaskRecord *r, char *buf,
			       size_t size)
{
	const char *abbrev;

	if (!nd_cli_state_terminal(r->state) ||
	    r->state == NODED__TASK_STATE__TASK_LOST)
		return "-";
	if (r->signal) {
		abbrev = sigabbrev_np(r->signal);
		if (abbrev)
			snprintf(buf, size, "SIG%s", abbrev);
		else
			snprintf(buf, size, "sig%d", r->signal);
	} else {
		snprintf(buf, size, "%d", r->exit_code);
	}
	return buf;
}

int nd_cli_tasks(int argc, char **argv)
{
	struct nd_cli_task_opts o;
	Noded__TaskListRequest lr = NODED__TASK_LIST_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *reply;
	Noded__TaskList *tl;
	int r;

	r = nd_cli_task_opts_parse(argc, argv, TO_STATE | TO_LIMIT | TO_JSON |
		       TO_JOB | TO_NODE | TO_STALE,
		       "usage: noded tasks [--master HOST:PORT] [--state STATE] "
		       "[--job N] [--node NAME]\n"
		       "                   [--limit N] [--json] [--stale] "
		       "[--token-file FILE] "
		"[--tls-cert FILE --tls-key FILE --tls-ca FILE] [--config FILE]\n"
		       "  --stale: the first master of --master answers from its "
		       "copy of the ledger\n"
		       "           (a follower's may lag), not the leader\n"
		       "  STATE: pending, assigned, running, succeeded, failed, "
		       "timed_out, cancelled, lost\n"
		       "  --job N: only the tasks of job N (the fan-out of a run or "
		       "submit)\n"
		       "  --node NAME: only the tasks that run or ran there (or "
		       "wait for it)\n"
		       "  N: how many, newest first (the master's default: 100)",
		       &o);
	if (r >= 0)
		return r;
	lr.state = o.state;
	lr.limit = o.limit;
	lr.job_id = o.job;
	lr.node = (char *)(o.node ? o.node : "");
	lr.stale = o.stale;
	f.body_case = NODED__FRAME__BODY_LIST_TASKS;
	f.list_tasks = &lr;
	r = nd_cli_request(o.master, &f, NODED__FRAME__BODY_TASK_LIST,
			   "tasks", &reply);
	if (r)
		return r;
	tl = reply->task_list;
	if (o.json) {
		json_t *arr = json_array();

		for (size_t i = 0; arr && i < tl->n_tasks; i++) {
			if (json_array_append_new(arr,
						  nd_json_task(tl->tasks[i]))) {
				json_decref(arr);
				arr = NULL;
			}
		}
		r = print_json(arr);
	} else {
		printf("%-10s %-10s %-16s %-8s %s\n", "ID", "STATE", "NODE",
		       "EXIT", "COMMAND");
		for (size_t i = 0; i < tl->n_tasks; i++) {
			const Noded__TaskRecord *t = tl->tasks[i];
			char *cmd = nd_cli_command_string(t->spec);
			char *node = nd_text_escaped(t->node && t->node[0] ?
						     t->node : "-");
			char ex[32];

			printf("%-10" PRIu64 " %-10s %-16s %-8s %s\n", t->id,
			       nd_task_state_name(t->state), node ? node : "?",
			       exit_column(t, ex, sizeof(ex)),
			       cmd ? cmd : "?");
			free(node);
			free(cmd);
		}
	}
	nd_frame_free(reply, NULL);
	return r;
}

/* State of noded logs while its watch stream runs. */
struct logs {
	struct nd_cli_sink sink;
	bool done;
	bool follow;
	bool ended;             /* its terminal record came */
	int status;             /* exit status */
	int conn_err;
	uint64_t id;
	uint32_t attempt;       /* of the output before (nd_cli_attempt_begins) */
};

/* A record on the stream: a retry's note while the task runs; its end
 * (the exit status with --follow), and whether its output was cut. */
static void logs_record(struct logs *l, const Noded__TaskRecord *r)
{
	char note[1024];

	fflush(stdout);
	if (!nd_cli_state_terminal(r->state)) {
		if (nd_cli_attempt_note(r, note, sizeof(note))) {
			fputs("noded: ", stderr);
			nd_text_fput(stderr, note);
			fputc('\n', stderr);
		}
		return;
	}
	l->ended = true;
	if (l->follow)
		l->status = nd_cli_exit_status(r);
	if (r->truncated)
		fprintf(stderr, "noded: task %" PRIu64 " wrote %" PRIu64
			" bytes; the master kept only part of them\n",
			r->id, r->output_bytes);
}

static void logs_cb(struct nd_client *c, int status, const Noded__Frame *f,
		    bool done, void *arg)
{
	struct logs *l = arg;

	if (status == ND_EREMOTE) {
		fprintf(stderr, "noded: logs: %s\n",
			nd_cli_error_text(status, f));
		l->status = ND_CLI_EXIT_FAIL;
	} else if (status < 0) {
		l->conn_err = status;
		l->status = l->follow ? ND_CLI_EXIT_LOST : ND_CLI_EXIT_FAIL;
	} else if (f->kind == NODED__FRAME_KIND__STREAM_ITEM &&
		   f->body_case == NODED__FRAME__BODY_OUTPUT && f->output) {
		if (nd_cli_attempt_begins(&l->attempt, f->output->attempt)) {
			nd_cli_sink_flush(&l->sink);
			fflush(stdout);
			nd_cli_attempt_marker(stderr, l->id, f->output->attempt);
		}
		nd_cli_sink_write(&l->sink, f->output->fd,
				  f->output->data.data, f->output->data.len);
	} else if (f->kind == NODED__FRAME_KIND__STREAM_ITEM &&
		   f->body_case == NODED__FRAME__BODY_TASK_RECORD &&
		   f->task_record) {
		logs_record(l, f->task_record);
	}
	if (done)
		l->done = true;
}

int nd_cli_logs(int argc, char **argv)
{
	struct nd_cli_task_opts o;
	Noded__WatchRequest w = NODED__WATCH_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT;
	struct logs l = { .status = 0 };
	struct nd_client *c;
	int64_t pinged = 0;
	int r;

	r = nd_cli_task_opts_parse(argc, argv, TO_ID | TO_FOLLOW,
		       "usage: noded logs ID [--master HOST:PORT] [--follow] [--token-file FILE] "
		"[--tls-cert FILE --tls-key FILE --tls-ca FILE] [--config FILE]\n"
		       "  Prints the output the master kept (each attempt's after a marker line\n"
		       "  on stderr). With --follow, then the live output until the task ends,\n"
		       "  and exits with its status as run does (255 when the master is lost).",
		       &o);
	if (r >= 0)
		return r;
	c = nd_cli_connect(o.master);
	if (!c)
		return ND_CLI_EXIT_FAIL;
	l.follow = o.follow;
	l.id = o.id;
	nd_cli_sink_init(&l.sink, stdout, stderr, NULL);
	w.task_id = o.id;
	w.follow = o.follow;
	f.body_case = NODED__FRAME__BODY_WATCH;
	f.watch = &w;
	if (nd_client_start(c, &f, logs_cb, &l) < 0) {
		fprintf(stderr, "noded: logs: out of memory\n");
		l.status = ND_CLI_EXIT_FAIL;
		l.done = true;
	}
	while (!l.done) {
		if (o.follow)
			nd_cli_keepalive(c, &pinged);
		r = nd_client_poll(c, ND_CLI_KEEPALIVE_MS);
		fflush(stdout);
		if (r < 0) {
			if (!l.conn_err)
				l.conn_err = r;
			l.status = o.follow ? ND_CLI_EXIT_LOST :
					      ND_CLI_EXIT_FAIL;
			break;
		}
	}
	/* the stream ended with no end of the task: as run, 255 */
	if (o.follow && !l.ended && l.status == 0)
		l.status = ND_CLI_EXIT_LOST;
	fflush(stdout);
	if (l.conn_err)
		fprintf(stderr, "noded: logs: lost the connection to the master "
			"%s (%s)\n", o.master,
			nd_cli_error_text(l.conn_err, NULL));
	nd_cli_sink_free(&l.sink);
	nd_client_close(c);
	return l.status;
}

/* How long noded cancel waits for a cancelled task to end (the worker's
 * TERM-to-KILL grace is 2 s by default). */
#define CANCEL_WAIT_MS 10000
#define CANCEL_POLL_MS 100

/*
 * Sends cancel_task, which the master answers once the task ended (or
 * after 5 s, its worker out of reach, with cancel_requested set); while it
 * is still winding down, asks for its record until it ends (or
 * CANCEL_WAIT_MS), so the state printed is the one the cancel led to
 * rather than a transient RUNNING.
 */
int nd_cli_cancel(int argc, char **argv)
{
	struct nd_cli_task_opts o;
	Noded__TaskQuery q = NODED__TASK_QUERY__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *reply;
	struct nd_client *c;
	int r, waited = 0;

	r = nd_cli_task_opts_parse(argc, argv, TO_ID | TO_JOB | TO_ID_OR_JOB,
		       "usage: noded cancel ID | --job N [--master HOST:PORT] [--token-file FILE] "
		"[--tls-cert FILE --tls-key FILE --tls-ca FILE]\n"
		       "                    [--config FILE]\n"
		       "  Waits until the task ended (up to 10 s) and prints "
		       "the state it reached;\n"
		       "  with --job, does so for every task of job N that had "
		       "not ended.", &o);
	if (r >= 0)
		return r;
	if (o.job)
		return nd_cli_cancel_job(o.master, o.job);
	c = nd_cli_connect(o.master);
	if (!c)
		return ND_CLI_EXIT_FAIL;
	q.id = o.id;
	f.body_case = NODED__FRAME__BODY_CANCEL_TASK;
	f.cancel_task = &q;
	r = nd_cli_call(c, &f, NODED__FRAME__BODY_TASK_RECORD, "cancel",
			&reply);
	f.body_case = NODED__FRAME__BODY_GET_TASK;
	f.get_task = &q;
	while (!r && !nd_cli_state_terminal(reply->task_record->state) &&
	       waited < CANCEL_WAIT_MS) {
		Noded__Frame *again;

		usleep(CANCEL_POLL_MS * 1000);
		waited += CANCEL_POLL_MS;
		if (nd_client_call(c, &f, &again, ND_CLI_CALL_TIMEOUT_MS) ||
		    again->body_case != NODED__FRAME__BODY_TASK_RECORD) {
			/* The cancel went through; only the wait failed. */
			nd_frame_free(again, NULL);
			break;
		}
		nd_frame_free(reply, NULL);
		reply = again;
	}
	nd_client_close(c);
	if (r)
		return r;
	printf("task %" PRIu64 ": %s%s\n", reply->task_record->id,
	       nd_task_state_name(reply->task_record->state),
	       nd_cli_state_terminal(reply->task_record->state) ? "" :
		       " (cancel requested, not ended yet)");
	nd_frame_free(reply, NULL);
	return 0;
}
