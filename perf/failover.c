/*
 * noded-bench first: how long a master (or a cluster of them) took to
 * serve again, for scripts/bench.sh's failover and restart workloads.
 *
 *   noded-bench first --addr H:P[,H:P...] --since-ns NS
 *                     [--call submit|tasks] [--every-ms MS] [--timeout SECS]
 *                     [--node NAME]
 *
 * NS is a CLOCK_REALTIME time in nanoseconds the caller took (`date
 * +%s%N`) just before it killed a leader or started a master. From then,
 * every MS (default 10) each address gets a request: a one-task submit
 * (`--node NAME --wait-for-node -- true`, as noded-bench submit sends) or
 * a task list of one (tasks: the master serves reads). Requests overlap:
 * one may wait on a master that has not yet learned its leader is gone
 * while the next reaches the new one, so the figure is within MS of the
 * first success. An address that refuses the connection (the killed
 * master, one still starting) is tried again at the next round; a
 * connection that fails is dropped and made again. At most 500 requests
 * wait per address.
 *
 * Prints {"bench":"first","call":"submit","ms":...,"addr":"...",
 * "attempts":N} when one succeeds; exits 1 (saying the last error) when
 * none did within the timeout (default 30 s), 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/time.h"
#include "noded/client.h"
#include "cmds.h"
#include "util.h"

#define MAX_ADDRS 16
#define MAX_OUT 500

struct target {
	char addr[256];
	struct nd_client *c;
	unsigned out;           /* requests waiting for their reply */
};

struct first {
	struct target t[MAX_ADDRS];
	size_t n;
	bool submit;
	Noded__Frame frame;
	uint64_t ok_ns;         /* CLOCK_REALTIME of the first success */
	const char *ok_addr;
	uint64_t attempts;
	char last_err[512];
};

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct attempt {
	struct first *f;
	struct target *t;
};

static void on_reply(struct nd_client *c, int status, const Noded__Frame *fr,
		     bool done, void *arg)
{
	struct attempt *a = arg;
	struct first *f = a->f;
	bool ok = !status && fr &&
		  (f->submit ? fr->body_case ==
				       NODED__FRAME__BODY_SUBMIT_REPLY &&
				       fr->submit_reply->n_task_ids == 1
			     : fr->body_case == NODED__FRAME__BODY_TASK_LIST);

	(void)c;
	if (ok && !f->ok_ns) {
		f->ok_ns = real_ns();
		f->ok_addr = a->t->addr;
	} else if (!ok) {
		snprintf(f->last_err, sizeof(f->last_err), "%s: %s",
			 a->t->addr,
			 status == ND_EREMOTE && fr && fr->error ?
				 fr->error->message : nd_strerror(status));
	}
	if (!done)
		return;
	a->t->out--;
	free(a);
}

/* One request to t (connecting first when it has no connection). */
static void attempt(struct first *f, struct target *t)
{
	struct nd_client_opts co = {
		.node_name = "noded-bench",
		.role = NODED__ROLE__ROLE_CLIENT,
		.timeout_ms = 200,
	};
	struct attempt *a;
	int r;

	if (t->out >= MAX_OUT)
		return;
	if (!t->c) {
		r = nd_client_connect(&t->c, t->addr, &co);
		if (r) {
			t->c = NULL;
			snprintf(f->last_err, sizeof(f->last_err),
				 "%s: %s", t->addr, nd_strerror(r));
			return;
		}
	}
	a = malloc(sizeof(*a));
	if (!a)
		return;
	*a = (struct attempt){ .f = f, .t = t };
	f->attempts++;
	if (nd_client_start(t->c, &f->frame, on_reply, a) < 0) {
		free(a);
		return;
	}
	t->out++;
}

/* Sends, reads and runs callbacks on every connection for up to wait_ms;
 * a connection that fails is closed (its requests fail first). */
static void pump(struct first *f, int wait_ms)
{
	struct pollfd p[MAX_ADDRS];
	struct target *pt[MAX_ADDRS];
	nfds_t n = 0;

	for (size_t i = 0; i < f->n; i++) {
		struct target *t = &f->t[i];

		/* queued requests go out now */
		if (t->c && nd_client_poll(t->c, 0) < 0) {
			nd_client_close(t->c);
			t->c = NULL;
		}
		if (!t->c)
			continue;
		p[n] = (struct pollfd){ .fd = nd_client_fd(t->c),
					.events = POLLIN };
		pt[n++] = t;
	}
	if (n)
		poll(p, n, wait_ms);
	else
		nanosleep(&(struct timespec){ .tv_nsec = wait_ms * 1000000L },
			  NULL);
	for (nfds_t i = 0; i < n; i++) {
		if (!p[i].revents)
			continue;
		if (nd_client_poll(pt[i]->c, 0) < 0) {
			nd_client_close(pt[i]->c);
			pt[i]->c = NULL;
		}
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: noded-bench first --addr H:P[,H:P...] --since-ns NS "
		"[--call submit|tasks]\n"
		"                         [--every-ms MS] [--timeout SECS] "
		"[--node NAME]\n"
		"  Milliseconds from NS (CLOCK_REALTIME, e.g. `date +%%s%%N` "
		"before a kill\n"
		"  or a start) until the first one-task submit (or task list) "
		"any address\n"
		"  takes; a request every MS (default 10) to each, for up to "
		"SECS (30).\n");
}

int nd_bench_first(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "since-ns", required_argument, NULL, 's' },
		{ "call", required_argument, NULL, 'c' },
		{ "every-ms", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 't' },
		{ "node", required_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static char *true_argv[] = { "true" };
	Noded__TaskSpec spec = NODED__TASK_SPEC__INIT;
	Noded__Command cmd = NODED__COMMAND__INIT;
	Noded__TaskListRequest lr = NODED__TASK_LIST_REQUEST__INIT;
	struct first *f;
	const char *node = "noded-bench-absent";
	uint64_t since = 0, deadline, next = 0;
	long every_ms = 10;
	double timeout = 30;
	bool submit = true;
	char *addrs = NULL, *end;
	int opt, rc = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 'a': addrs = optarg; break;
		case 's':
			errno = 0;
			since = strtoull(optarg, &end, 10);
			if (errno || !optarg[0] || *end || !since) {
				fprintf(stderr, "noded-bench: --since-ns wants "
					"nanoseconds since the epoch\n");
				return 2;
			}
			break;
		case 'c':
			if (strcmp(optarg, "submit") &&
			    strcmp(optarg, "tasks")) {
				fprintf(stderr, "noded-bench: --call is submit "
					"or tasks\n");
				return 2;
			}
			submit = !strcmp(optarg, "submit");
			break;
		case 'm': every_ms = nd_perf_parse_num("--every-ms", optarg,
						       1, 1000); break;
		case 't': timeout = nd_perf_parse_secs("--timeout", optarg);
			  break;
		case 'N':
			if (!optarg[0]) {
				fprintf(stderr, "noded-bench: --node wants a "
					"name\n");
				return 2;
			}
			node = optarg;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!addrs || !since || optind != argc) {
		usage(stderr);
		return 2;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return 1;
	for (char *save = NULL, *a = strtok_r(addrs, ",", &save); a;
	     a = strtok_r(NULL, ",", &save)) {
		if (f->n == MAX_ADDRS || strlen(a) >= sizeof(f->t[0].addr)) {
			fprintf(stderr, "noded-bench: --addr: at most %d "
				"addresses\n", MAX_ADDRS);
			free(f);
			return 2;
		}
		strcpy(f->t[f->n++].addr, a);
	}
	if (!f->n) {
		usage(stderr);
		free(f);
		return 2;
	}
	f->submit = submit;
	noded__frame__init(&f->frame);
	if (submit) {
		cmd.argv = true_argv;
		cmd.n_argv = 1;
		spec.command = &cmd;
		spec.node = (char *)node;
		spec.wait_for_node = true;
		f->frame.body_case = NODED__FRAME__BODY_SUBMIT;
		f->frame.submit = &spec;
	} else {
		lr.limit = 1;
		f->frame.body_case = NODED__FRAME__BODY_LIST_TASKS;
		f->frame.list_tasks = &lr;
	}

	deadline = nd_mono_ns() + (uint64_t)(timeout * 1e9);
	while (!f->ok_ns && nd_mono_ns() < deadline) {
		uint64_t now = nd_mono_ns();

		if (now >= next) {
			for (size_t i = 0; i < f->n && !f->ok_ns; i++)
				attempt(f, &f->t[i]);
			next = now + (uint64_t)every_ms * 1000000ull;
		}
		if (!f->ok_ns)
			pump(f, 1);
	}
	if (f->ok_ns) {
		printf("{\"bench\":\"first\",\"call\":\"%s\",\"ms\":%.1f,"
		       "\"addr\":\"%s\",\"attempts\":%" PRIu64 "}\n",
		       submit ? "submit" : "tasks",
		       f->ok_ns > since ? (double)(f->ok_ns - since) / 1e6 : 0,
		       f->ok_addr, f->attempts);
		rc = 0;
	} else {
		fprintf(stderr, "noded-bench: nothing served within %g s "
			"(last: %s)\n", timeout,
			f->last_err[0] ? f->last_err : "no attempt");
	}
	/* closing fails what still waits: its attempts are freed */
	for (size_t i = 0; i < f->n; i++)
		nd_client_close(f->t[i].c);
	free(f);
	return rc;
}
