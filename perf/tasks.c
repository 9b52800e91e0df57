/*
 * noded-bench tasks: end-to-end task throughput and latency through a
 * master and its workers (submit -> assignment -> helper spawn -> exit ->
 * result back), and noded-bench spawn: the same command in a bare
 * posix_spawn + waitpid loop at the same concurrency, the floor to compare
 * with.
 *
 * tasks keeps C tasks in flight on one connection, each a `run` request
 * (submit and watch in one stream, as `noded run` does); the task's latency
 * runs from sending the request to receiving the end of its stream. spawn keeps C children alive: each
 * reaped child is replaced at once; latency runs from posix_spawn to reap.
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

#include "noded/client.h"
#include "cmds.h"
#include "hist.h"

extern char **environ;

struct topts {
	const char *addr;
	long count, conc;
	bool json;
	char **argv;
	int argc;
};

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void usage(FILE *f, const char *cmd)
{
	fprintf(f, "usage: noded-bench %s %s--count N --concurrency C [--json] "
		   "-- CMD [ARG...]\n", cmd,
		!strcmp(cmd, "tasks") ? "--addr HOST:PORT " : "");
}

/* Parses the shared options; returns 0, or an exit status. */
static int parse(int argc, char **argv, const char *cmd, struct topts *o)
{
	static const struct option lo[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "count", required_argument, NULL, 'n' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
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

static void report(const char *what, const struct topts *o, long done,
		   long errors, uint64_t elapsed_us, const struct nd_hist *h)
{
	double secs = (double)elapsed_us / 1e6;
	double rate = secs > 0 ? (double)done / secs : 0;

	if (o->json) {
		printf("{\"bench\":\"%s\",\"count\":%ld,\"concurrency\":%ld,"
		       "\"completed\":%ld,\"errors\":%ld,\"seconds\":%.3f,"
		       "\"per_s\":%.1f,\"p50_us\":%llu,\"p90_us\":%llu,"
		       "\"p99_us\":%llu,\"p999_us\":%llu}\n", what, o->count,
		       o->conc, done, errors, secs, rate,
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
}

/* ---- tasks ---- */

struct tbench {
	struct nd_client *c;
	const struct topts *o;
	Noded__TaskSpec spec;
	long started, done, errors;
	struct nd_hist h;
};

struct tslot {
	struct tbench *b;
	uint64_t t0;
	bool ok;
};

static void start_task(struct tslot *s);

static void on_watch(struct nd_client *c, int status, const Noded__Frame *f,
		     bool done, void *arg)
{
	struct tslot *s = arg;
	struct tbench *b = s->b;

	(void)c;
	if (status == 0 && f->body_case == NODED__FRAME__BODY_TASK_RECORD)
		s->ok = f->task_record->state ==
			NODED__TASK_STATE__TASK_SUCCEEDED;
	if (status == ND_EREMOTE && f && f->error && !b->errors)
		fprintf(stderr, "noded-bench: %s\n", f->error->message);
	if (!done)
		return;
	nd_hist_record(&b->h, mono_us() - s->t0);
	b->done++;
	if (status || !s->ok)
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
	s->t0 = mono_us();
	s->ok = false;
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
	b->spec.argv = o.argv;
	b->spec.n_argv = (size_t)o.argc;
	nd_hist_init(&b->h);
	t0 = mono_us();
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
	elapsed = mono_us() - t0;
	report("tasks", &o, b->done, b->errors + (o.count - b->done), elapsed,
	       &b->h);
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
	t0 = mono_us();
	while (done < o.count) {
		int st;
		pid_t pid;

		while (live < o.conc && started < o.count) {
			long i;

			for (i = 0; run[i].pid; i++)
				;
			run[i].t0 = mono_us();
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
			nd_hist_record(h, mono_us() - run[i].t0);
			run[i].pid = 0;
			live--;
			done++;
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				errors++;
			break;
		}
	}
	report("spawn", &o, done, errors, mono_us() - t0, h);
	free(run);
	free(h);
	return errors ? 1 : 0;
}
