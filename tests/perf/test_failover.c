/*
 * `noded-bench first` (perf/failover.c) against real masters: started
 * while the master is down, it keeps trying and reports the time until the
 * master, restarted after kill -9 on its --data-dir, serves again (a task
 * list, or a submit that is then there); with nothing listening it gives
 * up at its timeout saying the last error; bad usage exits 2.
 * Every test bounds its waits and stops what it started by pid.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "harness.h"

#define PROBE_MS 60000

static struct nd_test_daemon d;
static char master[32];
static int port;
static char tmpdir[64], datadir[128];
static char out[8192], err[8192];
static pid_t probe;

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	master[0] = '\0';
	port = 0;
	probe = 0;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/noded-first-XXXXXX");
	cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
	snprintf(datadir, sizeof(datadir), "%s/data", tmpdir);
}

static void teardown(void)
{
	char cmd[160];

	if (probe > 0)
		nd_test_kill_pid(probe);
	nd_test_daemon_stop(&d);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd))
		cr_log_warn("could not remove %s", tmpdir);
}

TestSuite(first, .init = setup, .fini = teardown, .timeout = 120);

static const char *bench_bin(void)
{
	const char *b = getenv("ND_BENCH");

	return b && b[0] ? b : "build/noded-bench";
}

/* `noded master --data-dir DATADIR` on the port it had (any the first
 * time; a port may linger a moment after a kill). */
static void master_start(void)
{
	char listen[32];
	const char *argv[] = { nd_test_bin(), "master", "--listen", listen,
			       "--log-level", "warn", "--data-dir", datadir,
			       NULL };

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
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

static void master_kill9(void)
{
	kill(d.pid, SIGKILL);
	nd_test_daemon_wait(&d, ND_TEST_TIMEOUT_MS);
}

static char *since_now(char *buf, size_t size)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(buf, size, "%lld%09ld", (long long)ts.tv_sec, ts.tv_nsec);
	return buf;
}

/* Starts `noded-bench first --addr MASTER --since-ns SINCE ARGS...` with
 * stdout and stderr in memfds; returns them in *ofd and *efd. */
static void probe_start(const char *since, const char *const args[],
			int *ofd, int *efd)
{
	const char *argv[24];
	size_t n = 0;

	argv[n++] = bench_bin();
	argv[n++] = "first";
	argv[n++] = "--addr";
	argv[n++] = master;
	argv[n++] = "--since-ns";
	argv[n++] = since;
	for (size_t i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	*ofd = memfd_create("probe-out", MFD_CLOEXEC);
	*efd = memfd_create("probe-err", MFD_CLOEXEC);
	cr_assert(*ofd >= 0 && *efd >= 0);
	probe = nd_test_spawn(argv, -1, *ofd, *efd);
	cr_assert(probe > 0, "starting %s: %s", bench_bin(), nd_test_why);
}

/* Waits for the probe; its exit status, output in out and err. */
static int probe_wait(int ofd, int efd)
{
	int st = nd_test_wait_pid(probe, PROBE_MS);
	ssize_t n;

	cr_assert(st != -ETIMEDOUT, "the probe did not end in %d ms",
		  PROBE_MS);
	probe = 0;
	n = pread(ofd, out, sizeof(out) - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	n = pread(efd, err, sizeof(err) - 1, 0);
	err[n > 0 ? n : 0] = '\0';
	close(ofd);
	close(efd);
	return st;
}

#define PROBE_START(since, ofd, efd, ...)                                    \
	probe_start((since), (const char *const[]){ __VA_ARGS__, NULL },     \
		    (ofd), (efd))

/* Fills the log so the restart has something to load. */
static void submit_some(const char *count)
{
	const char *argv[] = { bench_bin(), "submit", "--addr", master,
			       "--conns", "4", "--count", count, "--json",
			       NULL };
	int st = nd_test_run(argv, out, sizeof(out), err, sizeof(err),
			     PROBE_MS);

	cr_assert(st == 0, "noded-bench submit: %d: %s %s", st, out, err);
}

/* The probe's JSON: call as given, ms in (0, max_ms), our address. */
static double probe_ms(const char *call, double max_ms)
{
	json_error_t je;
	json_t *j = json_loads(out, 0, &je);
	double ms;

	cr_assert(j, "not JSON (%s): %s; stderr: %s", je.text, out, err);
	cr_assert(!strcmp(jstr(j, "bench"), "first") &&
			  !strcmp(jstr(j, "call"), call) &&
			  !strcmp(jstr(j, "addr"), master) &&
			  jint(j, "attempts") >= 1,
		  "%s", out);
	ms = json_number_value(json_object_get(j, "ms"));
	cr_assert(ms > 0 && ms < max_ms, "ms %f not in (0, %f): %s", ms,
		  max_ms, out);
	json_decref(j);
	return ms;
}

static size_t pending_tasks(void)
{
	json_t *arr = CLI_JSON("tasks", "--state", "pending", "--limit",
			       "10000", "--json");
	size_t n = json_array_size(arr);

	json_decref(arr);
	return n;
}

Test(first, tasks_waits_for_a_master_restarted_after_kill_9)
{
	char since[32];
	int ofd, efd, st;

	master_start();
	submit_some("3000");
	master_kill9();
	/* the probe starts while nothing listens: refusals, then the
	 * restarted master loading its log, then a task list */
	PROBE_START(since_now(since, sizeof(since)), &ofd, &efd, "--call",
		    "tasks", "--every-ms", "5");
	nd_test_sleep_ms(300);
	master_start();
	st = probe_wait(ofd, efd);
	cr_assert(st == 0, "probe exited %d: %s %s", st, out, err);
	cr_assert(probe_ms("tasks", PROBE_MS) >= 300,
		  "served before the master was started again: %s", out);
	cr_assert_eq(pending_tasks(), 3000);
}

Test(first, submit_is_taken_by_the_restarted_master)
{
	char since[32];
	int ofd, efd, st;

	master_start();
	/* (a master killed before its log has a first entry does not come
	 * back by itself: kill one that has served) */
	submit_some("1");
	master_kill9();
	PROBE_START(since_now(since, sizeof(since)), &ofd, &efd, "--node",
		    "probe-node");
	master_start();
	st = probe_wait(ofd, efd);
	cr_assert(st == 0, "probe exited %d: %s %s", st, out, err);
	probe_ms("submit", PROBE_MS);
	{
		json_t *arr = CLI_JSON("tasks", "--node", "probe-node",
				       "--json");

		/* requests overlap: at least the one that was answered
		 * first, and each only once */
		cr_assert(json_array_size(arr) >= 1, "%s", jdump(arr));
		json_decref(arr);
	}
}

Test(first, nothing_listening_times_out_with_the_last_error)
{
	char since[32];
	int ofd, efd, st;

	master_start();
	master_kill9();
	PROBE_START(since_now(since, sizeof(since)), &ofd, &efd, "--timeout",
		    "0.5");
	st = probe_wait(ofd, efd);
	cr_assert(st == 1, "exited %d, want 1: %s %s", st, out, err);
	cr_assert(!out[0], "printed a figure: %s", out);
	cr_assert(strstr(err, "nothing served within 0.5 s") &&
			  strstr(err, master),
		  "stderr: %s", err);
}

Test(first, bad_usage_exits_2)
{
	static const char *const bad[][8] = {
		{ "first", "--addr", "127.0.0.1:1" },
		{ "first", "--addr", "127.0.0.1:1", "--since-ns", "x" },
		{ "first", "--addr", "127.0.0.1:1", "--since-ns", "1",
		  "--call", "ping" },
		{ "first", "--since-ns", "1" },
		{ "first", "--addr", ",", "--since-ns", "1" },
		{ "first", "--addr", "127.0.0.1:1", "--since-ns", "1",
		  "--every-ms", "0" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *argv[10] = { bench_bin() };
		int st;

		for (size_t k = 0; bad[i][k]; k++)
			argv[k + 1] = bad[i][k];
		st = nd_test_run(argv, NULL, 0, err, sizeof(err), PROBE_MS);
		cr_assert(st == 2, "case %zu exited %d, want 2: %s", i, st,
			  err);
		cr_assert(err[0], "case %zu: no message", i);
	}
}
