/*
 * `noded-bench submit` (perf/bench.c) against real masters: every submit it
 * counts is a task the master holds PENDING (in memory, and with
 * --data-dir still there after kill -9 and a restart: the figure is of
 * durable submits), the count bounds the run, a refusal (a full queue)
 * fails the run and says why, and bad usage exits 2.
 * Every test bounds its waits and stops what it started by pid.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "harness.h"

/* One bench run may take this long on a loaded machine. */
#define BENCH_MS 60000

static struct nd_test_daemon d;
static char master[32];
static char tmpdir[64], datadir[128];
static char out[8192], err[8192];

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	master[0] = '\0';
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/noded-submit-XXXXXX");
	cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
	snprintf(datadir, sizeof(datadir), "%s/data", tmpdir);
}

static void teardown(void)
{
	char cmd[160];

	nd_test_daemon_stop(&d);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd))
		cr_log_warn("could not remove %s", tmpdir);
}

TestSuite(submit, .init = setup, .fini = teardown, .timeout = 120);

static const char *bench_bin(void)
{
	const char *b = getenv("ND_BENCH");

	return b && b[0] ? b : "build/noded-bench";
}

/* `noded master --listen 127.0.0.1:PORT ARGS...` (PORT 0 the first time,
 * then the one it had, which may linger a moment after a kill). */
static void master_start(const char *const args[])
{
	static int port;
	char listen[32];
	const char *argv[16];
	size_t n = 0;

	if (!master[0])
		port = 0;
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	argv[n++] = nd_test_bin();
	argv[n++] = "master";
	argv[n++] = "--listen";
	argv[n++] = listen;
	for (size_t i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	for (int i = 0; i < 50; i++) {
		if (!nd_test_daemon_start_argv(&d, argv))
			break;
		cr_assert(port, "master did not start: %s", nd_test_why);
		nd_test_sleep_ms(100);
	}
	cr_assert(d.pid > 0, "master did not start: %s", nd_test_why);
	port = d.port;
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
}

#define MASTER_START(...)                                                    \
	master_start((const char *const[]){ __VA_ARGS__, NULL })

/* Runs `noded-bench submit --addr MASTER ARGS...`; stdout in out, stderr
 * in err; returns the exit status. */
static int bench_submit(const char *const args[])
{
	const char *argv[24];
	size_t n = 0;

	argv[n++] = bench_bin();
	argv[n++] = "submit";
	argv[n++] = "--addr";
	argv[n++] = master;
	for (size_t i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return nd_test_run(argv, out, sizeof(out), err, sizeof(err),
			   BENCH_MS);
}

#define BENCH_SUBMIT(...)                                                    \
	bench_submit((const char *const[]){ __VA_ARGS__, NULL })

/* Runs a submit of count tasks and checks its JSON: all taken, no error,
 * the shape bench.sh reads. */
static void submit_ok(const char *count, const char *conns)
{
	json_error_t je;
	json_t *j;
	int st = BENCH_SUBMIT("--conns", conns, "--depth", "2", "--count",
			      count, "--duration", "30", "--json");

	cr_assert(st == 0, "noded-bench submit exited %d; stdout: %s; "
		  "stderr: %s", st, out, err);
	j = json_loads(out, 0, &je);
	cr_assert(j, "not JSON (%s): %s", je.text, out);
	cr_assert(!strcmp(jstr(j, "bench"), "submit"), "%s", out);
	cr_assert(jint(j, "requests") == atoll(count) &&
			  jint(j, "errors") == 0 &&
			  jint(j, "concurrency") == 2 * atoll(conns),
		  "want %s requests, no errors: %s", count, out);
	cr_assert(json_real_value(json_object_get(j, "per_s")) > 0 &&
			  jint(j, "p50_us") > 0 &&
			  jint(j, "p99_us") >= jint(j, "p50_us"),
		  "rates and latencies: %s", out);
	json_decref(j);
}

/* The PENDING tasks waiting for the absent node; each must be one. */
static size_t pending_tasks(void)
{
	json_t *arr = CLI_JSON("tasks", "--state", "pending", "--limit",
			       "100000", "--json"), *t;
	size_t i, n = 0;

	cr_assert(json_is_array(arr), "tasks --json: %s", jdump(arr));
	json_array_foreach(arr, i, t) {
		cr_assert(!strcmp(jstr(t, "node"), "noded-bench-absent") &&
				  !strcmp(jstr(t, "state"), "PENDING"),
			  "not a waiting bench task: %s", jdump(t));
		n++;
	}
	json_decref(arr);
	return n;
}

Test(submit, counted_submits_are_pending_tasks_in_memory)
{
	MASTER_START("--log-level", "warn");
	submit_ok("300", "4");
	cr_assert_eq(pending_tasks(), 300);
	/* a second run adds its own count */
	submit_ok("7", "1");
	cr_assert_eq(pending_tasks(), 307);
}

Test(submit, durable_submits_survive_kill_9)
{
	MASTER_START("--log-level", "warn", "--data-dir", datadir);
	submit_ok("500", "8");
	cr_assert_eq(pending_tasks(), 500);
	kill(d.pid, SIGKILL);
	nd_test_daemon_wait(&d, ND_TEST_TIMEOUT_MS);
	MASTER_START("--log-level", "warn", "--data-dir", datadir);
	cr_assert_eq(pending_tasks(), 500,
		     "every acknowledged submit is back after kill -9");
}

Test(submit, a_full_queue_fails_the_run_and_says_why)
{
	MASTER_START("--log-level", "warn", "--max-queue", "10");
	int st = BENCH_SUBMIT("--count", "50", "--json");

	cr_assert(st == 1, "exited %d, want 1 (refused submits); stdout: %s; "
		  "stderr: %s", st, out, err);
	cr_assert(strstr(err, "queue"), "stderr does not say why: %s", err);
	cr_assert(strstr(out, "\"requests\":10,"), "want 10 taken: %s", out);
	cr_assert_eq(pending_tasks(), 10);
}

Test(submit, bad_usage_exits_2)
{
	static const char *const bad[][6] = {
		{ "--conns", "0" },
		{ "--count", "0" },
		{ "--count", "x" },
		{ "--node", "" },
		{ "--payload", "10" },   /* a ping option */
		{ "extra" },
	};

	MASTER_START("--log-level", "warn");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int st = bench_submit(bad[i]);

		cr_assert(st == 2, "`submit %s %s` exited %d, want 2; stderr: "
			  "%s", bad[i][0], bad[i][1] ? bad[i][1] : "", st,
			  err);
		cr_assert(err[0], "no message for `%s`", bad[i][0]);
	}
	{
		const char *argv[] = { bench_bin(), "submit", "--count", "1",
				       NULL };

		cr_assert_eq(nd_test_run(argv, NULL, 0, err, sizeof(err),
					 BENCH_MS), 2, "no --addr: %s", err);
	}
	cr_assert_eq(pending_tasks(), 0, "bad usage submitted nothing");
}
