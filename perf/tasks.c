/*
 * noded-bench tasks: end-to-end task throughput and latency through a
 * master and its workers (submit -> assignment -> helper spawn -> exit ->
 * result back), and noded-bench spawn: the same command in a bare
 * posix_spawn + waitpid loop at the same concurrency, the floor to compare
 * with.
 *
 * tasks keeps C tasks in flight on one connection, each a `run` request
 * (submit and watch in one stream, as `noded run` does); the task's latency
 * runs from sending the request to receiving the end of its stream. With
 * --all each request is a fan-out (`noded run --all`): one task per live
 * node, and its latency runs until every node's result is back. It also
 * reports how fast the submissions were accepted (the first item of each
 * stream), which with C = N is the submit rate of N tasks sent at once.
 *
 * spawn keeps C children alive: each reaped child is replaced at once;
 * latency runs from posix_spawn to reap.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/time.h"
#include "noded/client.h"
#include "cmds.h"
#include "hist.h"

extern char **environ;

struct topts {
	const char *addr;
	long count, conc;
	bool json, all;
	char **argv;
	int argc;
	Noded__TaskSpec__LabelsEntry labels[8]; /* --label K=V */
	Noded__TaskSpec__LabelsEntry *label_ptrs[8];
	size_t nlabels;
};

static void usage(FILE *f, const char *cmd)
{
	fprintf(f, "usage: noded-bench %s %s--count N --concurrency C [--json] "
		   "-- CMD [ARG...]\n", cmd,
		!strcmp(cmd, "tasks") ? "--addr HOST:PORT [--all | --label "
					"KEY=VALUE]... " : "");
}

/* Parses the shared options; returns 0, or an exit status. */
static int parse(int argc, char **argv, const char *cmd, struct topts *o)
{
	static const struct option lo[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "count", required_argument, NULL, 'n' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "all", no_argument, NULL, 'A' },
		{ "label", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char *end;
	int c;

	*o = (struct topts){ .count = 1000, .conc = 1 };
	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		switch (c) {
		case 'a':
			o->addr = optarg;
			break;
		case 'n':
		case 'c': {
			long *dst = c == 'n' ? &o->count : &o->conc;

			errno = 0;
			*dst = strtol(optarg, &end, 10);
			if (errno || *end || *dst < 1) {
				fprintf(stderr, "noded-bench: --%s wants a "
					"positive number\n",
					c == 'n' ? "count" : "concurrency");
				return 2;
			}
			break;
		}
		case 'j':
			o->json = true;
			break;
		case 'A':
			o->all = true;
			break;
		case 'L': {
			Noded__TaskSpec__LabelsEntry *e = &o->labels[o->nlabels];
			char *eq = strchr(optarg, '=');

			if (!eq || eq == optarg || o->nlabels == 8) {
				fprintf(stderr, "noded-bench: --label wants "
					"KEY=VALUE (at most 8)\n");
				return 2;
			}
			noded__task_spec__labels_entry__init(e);
			*eq = '\0';
			e->key = optarg;
			e->value = eq + 1;
			o->label_ptrs[o->nlabels++] = e;
			break;
		}
		case 'h':
			usage(stdout, cmd);
			return -1;
		default:
			usage(stderr, cmd);
			return 2;
		}
	}
	if (optind >= argc || (!strcmp(cmd, "tasks") && !o->addr)) {
		usage(stderr, cmd);
		return 2;
	}
	o->argv = argv + optind;
	o->argc = argc - optind;
	return 0;
}

/* What a run measured besides its latencies (tasks only; zero for spawn). */
struct textra {
	long tasks;              /* task results received (fan-out: per node) */
	long submitted;          /* requests the master accepted */
	uint64_t submit_us;      /* from start to the last acceptance */
};

static void report(const char *what, const struct topts *o, long done,
		   long errors, uint64_t elapsed_us, const struct nd_hist *h,
		   const struct textra *x)
{
	double secs = (double)elapsed_us / 1e6;
	double rate = secs > 0 ? (double)done / secs : 0;
	double ssecs = (double)x->submit_us / 1e6;

	if (o->json) {
		printf("{\"bench\":\"%s\",\"count\":%ld,\"concurrency\":%ld,"
		       "\"all\":%s,\"completed\":%ld,\"errors\":%ld,"
		       "\"seconds\":%.3f,\"per_s\":%.1f,\"tasks\":%ld,"
		       "\"submitted\":%ld,\"submit_seconds\":%.3f,"
		       "\"submit_per_s\":%.1f,\"p50_us\":%llu,\"p90_us\":%llu,"
		       "\"p99_us\":%llu,\"p999_us\":%llu}\n", what, o->count,
		       o->conc, o->all ? "true" : "false", done, errors, secs,
		       rate, x->tasks, x->submitted, ssecs,
		       ssecs > 0 ? (double)x->submitted / ssecs : 0,
		       (unsigned long long)nd_hist_percentile(h, 50),
		       (unsigned long long)nd_hist_percentile(h, 90),
		       (unsigned long long)nd_hist_percentile(h, 99),
		       (unsigned long long)nd_hist_percentile(h, 99.9));
		return;
	}
	printf("%s: %ld of %ld done, %ld errors, concurrency %ld, %.3f s\n"
	       "  per second %.1f\n  latency us p50 %llu  p90 %llu  p99 %llu  "
	       "p99.9 %llu\n", what, done, o->count, errors, o->conc, secs,
	       rate, (unsigned long long)nd_hist_percentile(h, 50),
	       (unsigned long long)nd_hist_percentile(h, 90),
	       (unsigned long long)nd_hist_percentile(h, 99),
	       (unsigned long long)nd_hist_percentile(h, 99.9));
	if (x->submitted)
		printf("  accepted %ld requests in %.3f s (%.1f per second); "
		       "%ld task results\n", x->submitted, ssecs,
		       ssecs > 0 ? (double)x->submitted / ssecs : 0, x->tasks);
}

/* ---- tasks ---- */

struct tbench {
	struct nd_client *c;
	const struct topts *o;
	Noded__TaskSpec spec;
	Noded__Command command;         /* spec.command */
	long started, done, errors;
	uint64_t t0;
	struct textra x;
	struct nd_hist h;
};

/* One request in flight: its stream gives a SubmitReply (the task ids),
 * the output, then a TaskRecord per task as each ends. */
struct tslot {
	struct tbench *b;
	uint64_t t0;
	size_t expect, ended;    /* task ids in the reply; records seen */
	bool accepted, failed;
};

static void start_task(struct tslot *s);

static void on_watch(struct nd_client *c, int status, const Noded__Frame *f,
		     bool done, void *arg)
{
	struct tslot *s = arg;
	struct tbench *b = s->b;

	(void)c;
	if (status == 0 && f->body_case == NODED__FRAME__BODY_SUBMIT_REPLY &&
	    !s->accepted) {
		s->accepted = true;
		s->expect = f->submit_reply->n_task_ids;
		b->x.submitted++;
		b->x.submit_us = nd_mono_us() - b->t0;
	}
	/* (a record before the end says an attempt was retried) */
	if (status == 0 && f->body_case == NODED__FRAME__BODY_TASK_RECORD &&
	    f->task_record->state >= NODED__TASK_STATE__TASK_SUCCEEDED) {
		s->ended++;
		b->x.tasks++;
		if (f->task_record->state != NODED__TASK_STATE__TASK_SUCCEEDED)
			s->failed = true;
	}
	if (status == ND_EREMOTE && f && f->error && !b->errors)
		fprintf(stderr, "noded-bench: %s\n", f->error->message);
	if (!done)
		return;
	nd_hist_record(&b->h, nd_mono_us() - s->t0);
	b->done++;
	if (status || s->failed || !s->accepted || s->ended != s->expect ||
	    !s->expect)
		b->errors++;
	start_task(s);
}

static void start_task(struct tslot *s)
{
	struct tbench *b = s->b;
	Noded__Frame f = NODED__FRAME__INIT;

	if (b->started >= b->o->count)
		return;
	b->started++;
	s->t0 = nd_mono_us();
	s->expect = s->ended = 0;
	s->accepted = s->failed = false;
	f.body_case = NODED__FRAME__BODY_RUN;
	f.run = &b->spec;
	if (nd_client_start(b->c, &f, on_watch, s) < 0) {
		b->done++;
		b->errors++;
	}
}

int nd_bench_tasks(int argc, char **argv)
{
	struct topts o;
	struct tbench *b;
	struct tslot *slots;
	uint64_t t0, elapsed;
	int r = parse(argc, argv, "tasks", &o);

	if (r)
		return r < 0 ? 0 : r;
	b = calloc(1, sizeof(*b));
	slots = calloc((size_t)o.conc, sizeof(*slots));
	if (!b || !slots)
		return 1;
	r = nd_client_connect(&b->c, o.addr, NULL);
	if (r) {
		fprintf(stderr, "noded-bench: cannot reach %s: %s\n", o.addr,
			nd_strerror(r));
		return 1;
	}
	b->o = &o;
	noded__task_spec__init(&b->spec);
	noded__command__init(&b->command);
	b->command.argv = o.argv;
	b->command.n_argv = (size_t)o.argc;
	b->spec.command = &b->command;
	b->spec.all = o.all;
	b->spec.labels = o.label_ptrs;
	b->spec.n_labels = o.nlabels;
	nd_hist_init(&b->h);
	t0 = b->t0 = nd_mono_us();
	for (long i = 0; i < o.conc; i++) {
		slots[i].b = b;
		start_task(&slots[i]);
	}
	while (b->done < o.count) {
		r = nd_client_poll(b->c, 10000);
		if (r < 0) {
			fprintf(stderr, "noded-bench: connection lost: %s\n",
				nd_strerror(r));
			break;
		}
	}
	elapsed = nd_mono_us() - t0;
	report("tasks", &o, b->done, b->errors + (o.count - b->done), elapsed,
	       &b->h, &b->x);
	nd_client_close(b->c);
	r = b->done == o.count && !b->errors ? 0 : 1;
	free(slots);
	free(b);
	return r;
}

/* ---- spawn: the floor ---- */

int nd_bench_spawn(int argc, char **argv)
{
	struct topts o;
	struct nd_hist *h = calloc(1, sizeof(*h));
	struct { pid_t pid; uint64_t t0; } *run;
	long started = 0, done = 0, errors = 0, live = 0;
	uint64_t t0;
	int r = parse(argc, argv, "spawn", &o);

	if (r)
		return r < 0 ? 0 : r;
	run = calloc((size_t)o.conc, sizeof(*run));
	if (!h || !run)
		return 1;
	nd_hist_init(h);
	t0 = nd_mono_us();
	while (done < o.count) {
		int st;
		pid_t pid;

		while (live < o.conc && started < o.count) {
			long i;

			for (i = 0; run[i].pid; i++)
				;
			run[i].t0 = nd_mono_us();
			if (posix_spawnp(&run[i].pid, o.argv[0], NULL, NULL,
					 o.argv, environ)) {
				run[i].pid = 0;
				errors++;
				done++;
				started++;
				continue;
			}
			started++;
			live++;
		}
		pid = waitpid(-1, &st, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (long i = 0; i < o.conc; i++) {
			if (run[i].pid != pid)
				continue;
			nd_hist_record(h, nd_mono_us() - run[i].t0);
			run[i].pid = 0;
			live--;
			done++;
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				errors++;
			break;
		}
	}
	report("spawn", &o, done, errors, nd_mono_us() - t0, h,
	       &(struct textra){ 0 });
	free(run);
	free(h);
	return errors ? 1 : 0;
}
