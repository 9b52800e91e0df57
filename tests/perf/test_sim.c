/*
 * The simulated fleet, `noded-bench workers`, against a real master: its
 * workers register and heartbeat, `noded run --all` reaches every one, fake
 * tasks honour the slots, real tasks report their exit codes and output,
 * the master going away ends the sim with status 1, and bad usage exits 2.
 * Every test bounds its waits and stops what it started by pid.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "harness.h"

/* How long a fleet may take to say it registered. */
#define REGISTER_MS 20000

/* One `noded-bench workers` process: stdout on a pipe, stderr in a memfd. */
struct sim {
	pid_t pid;
	int out;
	int err;
};

static struct nd_test_daemon d;
static char master[32];
static struct sim sims[2];
static struct nd_test_cli R;

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	memset(sims, 0, sizeof(sims));
	master[0] = '\0';
}

static void teardown(void)
{
	for (size_t i = 0; i < sizeof(sims) / sizeof(sims[0]); i++) {
		if (sims[i].pid > 0) {
			kill(sims[i].pid, SIGTERM);
			if (nd_test_wait_pid(sims[i].pid, ND_TEST_TIMEOUT_MS) ==
			    -ETIMEDOUT)
				nd_test_kill_pid(sims[i].pid);
		}
		if (sims[i].out > 0)
			close(sims[i].out);
		if (sims[i].err > 0)
			close(sims[i].err);
	}
	nd_test_daemon_stop(&d);
}

TestSuite(sim, .init = setup, .fini = teardown, .timeout = 90);

static const char *bench_bin(void)
{
	const char *b = getenv("ND_BENCH");

	return b && b[0] ? b : "build/noded-bench";
}

static void master_start(void)
{
	ND_CHECK(nd_test_daemon_start(&d, NULL));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
}

static const char *sim_stderr(const struct sim *s);

/*
 * Starts `noded-bench workers --addr MASTER ARGS...` (NULL-terminated) into
 * s and waits for its "workers N registered" line.
 */
static void sim_start(struct sim *s, const char *const args[])
{
	const char *argv[32];
	char line[128] = "", want[64];
	size_t n = 0, len = 0;
	int op[2], count = 0;
	int64_t deadline = nd_test_now_ms() + REGISTER_MS;

	argv[n++] = bench_bin();
	argv[n++] = "workers";
	argv[n++] = "--addr";
	argv[n++] = master;
	for (size_t i = 0; args[i]; i++) {
		cr_assert(n + 1 < sizeof(argv) / sizeof(argv[0]));
		if (!strcmp(args[i], "--count") && args[i + 1])
			count = atoi(args[i + 1]);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	cr_assert(pipe2(op, O_CLOEXEC) == 0);
	s->err = memfd_create("sim-stderr", MFD_CLOEXEC);
	cr_assert(s->err >= 0, "memfd_create: %s", strerror(errno));
	s->pid = nd_test_spawn(argv, -1, op[1], s->err);
	close(op[1]);
	s->out = op[0];
	cr_assert(s->pid > 0, "starting %s: %s", bench_bin(), nd_test_why);
	snprintf(want, sizeof(want), "workers %d registered\n", count);
	while (len < sizeof(line) - 1 && !strchr(line, '\n')) {
		struct pollfd p = { .fd = s->out, .events = POLLIN };
		int left = (int)(deadline - nd_test_now_ms());
		ssize_t r;

		cr_assert(left > 0 && poll(&p, 1, left) > 0,
			  "no \"%.*s\" from the sim within %d ms",
			  (int)strlen(want) - 1, want, REGISTER_MS);
		r = read(s->out, line + len, sizeof(line) - 1 - len);
		cr_assert(r > 0, "the sim closed its stdout (exited?) before "
			  "registering; printed \"%s\"; stderr: %s", line,
			  sim_stderr(s));
		len += (size_t)r;
		line[len] = '\0';
	}
	cr_assert(!strcmp(line, want), "sim printed \"%s\", want \"%s\"",
		  line, want);
}

#define SIM_START(s, ...)                                                    \
	sim_start((s), (const char *const[]){ __VA_ARGS__, NULL })

/* What the sim wrote on stderr (static buffer). */
static const char *sim_stderr(const struct sim *s)
{
	static char buf[16384];
	ssize_t n = pread(s->err, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* SIGTERMs the sim and returns its exit status (it must exit in time). */
static int sim_stop(struct sim *s)
{
	int st;

	kill(s->pid, SIGTERM);
	st = nd_test_wait_pid(s->pid, ND_TEST_TIMEOUT_MS);
	cr_assert(st != -ETIMEDOUT, "the sim did not exit on SIGTERM");
	s->pid = 0;
	return st;
}

/* Counts the nodes whose name starts with prefix; each must be ALIVE with
 * the slots given. */
static size_t alive_nodes(const char *prefix, long long slots)
{
	json_t *arr = CLI_JSON("nodes", "--json"), *n;
	size_t i, count = 0;

	cr_assert(json_is_array(arr), "nodes --json: %s", jdump(arr));
	json_array_foreach(arr, i, n) {
		if (strncmp(jstr(n, "name"), prefix, strlen(prefix)))
			continue;
		cr_assert(!strcmp(jstr(n, "state"), "ALIVE") &&
				  jint(n, "slots_total") == slots,
			  "node not ALIVE with %lld slots: %s", slots,
			  jdump(n));
		count++;
	}
	json_decref(arr);
	return count;
}

/* Runs noded-bench with args; returns its status, stderr in err. */
static int bench_run(const char *const args[], char *err, size_t size)
{
	const char *argv[16];
	size_t n = 0;

	argv[n++] = bench_bin();
	for (size_t i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return nd_test_run(argv, NULL, 0, err, size, ND_TEST_TIMEOUT_MS);
}

Test(sim, two_hundred_fake_workers_register_and_fan_out)
{
	char name[32];

	master_start();
	SIM_START(&sims[0], "--count", "200", "--label", "rack=sim");

	cr_assert_eq(alive_nodes("sim-", 4), 200);
	{
		json_t *arr = CLI_JSON("nodes", "--json");
		json_t *labels = json_object_get(json_array_get(arr, 0),
						 "labels");

		cr_assert(!strcmp(jstr(labels, "rack"), "sim"),
			  "labels: %s", jdump(labels));
		json_decref(arr);
	}

	CLI(&R, "run", "--all", "--", "true");
	EXPECT_STATUS(&R, 0);
	/* one "NODE: ok" line per worker, each worker once */
	for (int i = 1; i <= 200; i++) {
		char *hit;

		snprintf(name, sizeof(name), "sim-%05d: ok\n", i);
		hit = strstr(R.out, name);
		cr_assert(hit && !strstr(hit + 1, name),
			  "want one \"%.*s\" line in: %.300s",
			  (int)strlen(name) - 1, name, R.out);
	}
	cr_assert_eq(R.out_bytes, 200 * strlen("sim-00001: ok\n"));

	/* heartbeats keep them alive past the heartbeat timeout (3 s) */
	nd_test_sleep_ms(3500);
	cr_assert_eq(alive_nodes("sim-", 4), 200);

	cr_assert_eq(sim_stop(&sims[0]), 0, "stderr: %s",
		     sim_stderr(&sims[0]));
	cr_assert(strstr(sim_stderr(&sims[0]), "tasks received 200, "
				   "completed 200 (failed 0), over slots 0"),
		  "summary: %s", sim_stderr(&sims[0]));
	STOP_OK(&d);
}

Test(sim, slots_are_honoured)
{
	json_t *arr, *t;
	size_t i, n = 0;
	int64_t deadline;

	master_start();
	/* 5 workers x 2 slots, each task 100 ms: 50 tasks queue on the
	 * master and run 10 at a time */
	SIM_START(&sims[0], "--count", "5", "--slots", "2", "--task-ms", "100",
		  "--label", "pool=a", "--name-prefix", "slot-");
	cr_assert_eq(alive_nodes("slot-", 2), 5);
	for (int k = 0; k < 50; k++) {
		CLI(&R, "submit", "--label", "pool=a", "--", "true");
		EXPECT_STATUS(&R, 0);
	}
	deadline = nd_test_now_ms() + 20000;
	for (;;) {
		size_t done = 0;

		arr = CLI_JSON("tasks", "--json", "--limit", "100");
		json_array_foreach(arr, i, t) {
			cr_assert(!strcmp(jstr(t, "state"), "SUCCEEDED") ||
					  !strcmp(jstr(t, "state"), "PENDING") ||
					  !strcmp(jstr(t, "state"), "ASSIGNED") ||
					  !strcmp(jstr(t, "state"), "RUNNING"),
				  "task not succeeded: %s", jdump(t));
			done += !strcmp(jstr(t, "state"), "SUCCEEDED");
		}
		n = json_array_size(arr);
		json_decref(arr);
		if (done == 50)
			break;
		cr_assert(nd_test_now_ms() < deadline, "%zu of 50 tasks "
			  "succeeded after 20 s", done);
		nd_test_sleep_ms(100);
	}
	cr_assert_eq(n, 50);
	cr_assert_eq(sim_stop(&sims[0]), 0);
	cr_assert(strstr(sim_stderr(&sims[0]),
			 "completed 50 (failed 0), over slots 0"),
		  "summary: %s", sim_stderr(&sims[0]));
	STOP_OK(&d);
}

/*
 * A fan-out's task for a node that is busy waits on the master; when that
 * node dies before it could take it, the task is LOST and `run --all` ends
 * (it used to wait for ever).
 */
Test(sim, fan_out_to_a_node_that_dies_first_ends)
{
	int64_t t0;
	int st;

	ND_CHECK(nd_test_daemon_start(&d, (const char *const[]){
		"--heartbeat-timeout", "1", NULL }));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	SIM_START(&sims[0], "--count", "3", "--slots", "1", "--task-ms",
		  "60000", "--name-prefix", "busy-");
	cr_assert_eq(alive_nodes("busy-", 1), 3);
	for (int k = 0; k < 3; k++) {
		CLI(&R, "submit", "--", "true");
		EXPECT_STATUS(&R, 0);
	}
	nd_test_sleep_ms(300); /* the three now hold every slot */
	cr_assert(kill(sims[0].pid, SIGSTOP) == 0);
	t0 = nd_test_now_ms();
	st = CLI(&R, "run", "--all", "--", "true");
	cr_expect_eq(st, 255, "run --all: exit %d, stderr %s", st, R.err);
	cr_expect(strstr(R.err, "LOST") || strstr(R.err, "lost") ||
			  strstr(R.err, "died"),
		  "stderr: %s", R.err);
	cr_expect(nd_test_now_ms() - t0 < 8000, "run --all took %lld ms",
		  (long long)(nd_test_now_ms() - t0));
	kill(sims[0].pid, SIGCONT);
	sim_stop(&sims[0]);
	STOP_OK(&d);
}

Test(sim, real_commands)
{
	json_t *arr, *t;

	master_start();
	SIM_START(&sims[0], "--count", "2", "--exec", "real");

	CLI(&R, "run", "--node", "sim-00001", "--shell", "--", "exit 3");
	EXPECT_STATUS(&R, 3);
	arr = CLI_JSON("tasks", "--json", "--limit", "1");
	t = json_array_get(arr, 0);
	cr_assert(!strcmp(jstr(t, "state"), "FAILED") &&
			  jint(t, "exit_code") == 3,
		  "want FAILED with exit code 3: %s", jdump(t));
	json_decref(arr);

	CLI(&R, "run", "--node", "sim-00002", "--", "echo", "hello", "world");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "hello world\n");

	CLI(&R, "run", "--node", "sim-00002", "--env", "FOO=bar", "--cwd",
	    "/tmp", "--shell", "--", "echo $FOO; pwd; echo oops >&2");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "bar\n/tmp\n");
	cr_assert(strstr(R.err, "oops\n"), "stderr: %s", R.err);

	CLI(&R, "run", "--node", "sim-00001", "--", "no-such-command-here");
	EXPECT_STATUS(&R, 127);

	/* it spawns as the exec helpers do: the task's variables, and no
	 * limit it cannot hold (it has no cgroups) */
	CLI(&R, "run", "--node", "sim-00002", "--shell", "--",
	    "echo $NODED_NODE $NODED_ATTEMPT");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "sim-00002 1\n");
	CLI(&R, "run", "--node", "sim-00002", "--memory", "64M", "--", "true");
	EXPECT_STATUS(&R, 126);
	cr_assert(strstr(R.err, "cannot apply its limits (memory, cpus, pids): "
			 "no cgroup to hold them"), "stderr: %s", R.err);

	CLI(&R, "run", "--node", "sim-00001", "--timeout", "0.3", "--",
	    "sleep", "30");
	EXPECT_STATUS(&R, 124);

	cr_assert_eq(sim_stop(&sims[0]), 0, "stderr: %s",
		     sim_stderr(&sims[0]));
	STOP_OK(&d);
}

Test(sim, token)
{
	char tok[] = "/tmp/noded-sim-token-XXXXXX";
	const char *const margs[] = { "--token-file", tok, NULL };
	static const char *const a[] = { "workers", "--addr", NULL, "--count",
					  "3", "--duration", "5", NULL };
	const char *argv[8];
	char err[2048];
	int fd = mkstemp(tok), st;

	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	cr_assert(write(fd, "0123456789abcdef0123456789abcdef\n", 33) == 33);
	close(fd);
	ND_CHECK(nd_test_daemon_start(&d, margs));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	setenv("NODED_TOKEN_FILE", tok, 1); /* for the CLI (this process) */

	SIM_START(&sims[0], "--count", "20", "--token-file", tok);
	cr_assert_eq(alive_nodes("sim-", 4), 20);
	CLI(&R, "run", "--all", "--", "true");
	EXPECT_STATUS(&R, 0);
	cr_assert_eq(sim_stop(&sims[0]), 0);

	/* without the token: refused, status 1 */
	memcpy(argv, a, sizeof(a));
	argv[2] = master;
	st = bench_run(argv, err, sizeof(err));
	unlink(tok);
	cr_assert(st == 1 && strstr(err, "token"),
		  "status %d, want 1; stderr: %s", st, err);
	STOP_OK(&d);
}

/* The fleet over TLS 1.3 (a master with a certificate that asks none of its
 * peers): it registers, heartbeats and runs tasks through memory BIOs on
 * its ring; without TLS, or trusting another CA, it is refused with
 * status 1 and says why. */
Test(sim, tls)
{
	char dir[] = "/tmp/noded-sim-tls-XXXXXX", ca[64], other[64], crt[64],
	     key[64], cmd[128], err[2048];
	const char *const margs[] = { "--tls-cert", crt, "--tls-key", key,
				      NULL };
	const char *argv[12] = { "workers", "--addr", master, "--count", "3",
				 "--duration", "5", NULL };
	int st;

	cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(ca, sizeof(ca), "%s/ca", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	snprintf(crt, sizeof(crt), "%s/master-m.crt", dir);
	snprintf(key, sizeof(key), "%s/master-m.key", dir);
	cr_assert_eq(nd_test_run((const char *const[]){ nd_test_bin(), "tls",
				 "ca", "create", "--dir", ca, NULL }, NULL, 0,
				 err, sizeof(err), ND_TEST_TIMEOUT_MS), 0,
		     "%s", err);
	cr_assert_eq(nd_test_run((const char *const[]){ nd_test_bin(), "tls",
				 "ca", "create", "--dir", other, NULL }, NULL,
				 0, err, sizeof(err), ND_TEST_TIMEOUT_MS), 0,
		     "%s", err);
	cr_assert_eq(nd_test_run((const char *const[]){ nd_test_bin(), "tls",
				 "cert", "create", "--master", "m", "--ca-dir",
				 ca, "--out-dir", dir, NULL }, NULL, 0, err,
				 sizeof(err), ND_TEST_TIMEOUT_MS), 0, "%s",
		     err);
	ND_CHECK(nd_test_daemon_start(&d, margs));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	snprintf(cmd, sizeof(cmd), "%s/ca.crt", ca);
	setenv("NODED_TLS_CA", cmd, 1); /* for the CLI (this process) */

	SIM_START(&sims[0], "--count", "50", "--tls-ca", cmd);
	cr_assert_eq(alive_nodes("sim-", 4), 50);
	CLI(&R, "run", "--all", "--", "true");
	EXPECT_STATUS(&R, 0);
	/* one "NODE: ok" line per worker */
	cr_assert_eq(R.out_bytes, 50 * strlen("sim-00001: ok\n"), "%s",
		     R.out);
	/* heartbeats keep them alive past the heartbeat timeout (3 s) */
	nd_test_sleep_ms(3500);
	cr_assert_eq(alive_nodes("sim-", 4), 50);
	cr_assert_eq(sim_stop(&sims[0]), 0, "stderr: %s",
		     sim_stderr(&sims[0]));
	cr_assert(strstr(sim_stderr(&sims[0]), "tasks received 50, "
				   "completed 50 (failed 0)"),
		  "summary: %s", sim_stderr(&sims[0]));

	/* plaintext to the TLS port: refused, status 1 */
	st = bench_run(argv, err, sizeof(err));
	cr_assert(st == 1 && strstr(err, "no reconnect"),
		  "plaintext: status %d, want 1; stderr: %s", st, err);
	/* trusting another CA: the handshake fails, status 1 */
	snprintf(cmd, sizeof(cmd), "%s/ca.crt", other);
	argv[7] = "--tls-ca";
	argv[8] = cmd;
	argv[9] = NULL;
	st = bench_run(argv, err, sizeof(err));
	cr_assert(st == 1 && strstr(err, "TLS"),
		  "another CA: status %d, want 1; stderr: %s", st, err);
	unsetenv("NODED_TLS_CA");
	STOP_OK(&d);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		cr_log_warn("could not remove %s", dir);
}

Test(sim, master_gone_ends_the_sim)
{
	int st;

	master_start();
	SIM_START(&sims[0], "--count", "20");
	STOP_OK(&d);
	st = nd_test_wait_pid(sims[0].pid, ND_TEST_TIMEOUT_MS);
	cr_assert_eq(st, 1, "sim exit status %d, want 1; stderr: %s", st,
		     sim_stderr(&sims[0]));
	sims[0].pid = 0;
	cr_assert(strstr(sim_stderr(&sims[0]), "no reconnect"), "stderr: %s",
		  sim_stderr(&sims[0]));
}

#define EXPECT_USAGE(...)                                                    \
	do {                                                                 \
		static const char *const a_[] = { "workers", __VA_ARGS__,    \
						  NULL };                    \
		char e_[2048];                                               \
		int st_ = bench_run(a_, e_, sizeof(e_));                     \
		cr_assert(st_ == 2 && e_[0],                                 \
			  "noded-bench workers %s: status %d, want 2 with "  \
			  "a message; stderr: %s", #__VA_ARGS__, st_, e_);   \
	} while (0)

Test(sim, bad_usage_exits_2)
{
	EXPECT_USAGE("--count", "10");
	EXPECT_USAGE("--addr", "127.0.0.1:1");
	EXPECT_USAGE("--addr", "127.0.0.1:1", "--count", "0");
	EXPECT_USAGE("--addr", "127.0.0.1:1", "--count", "x");
	EXPECT_USAGE("--addr", "127.0.0.1:1", "--count", "100001");
	EXPECT_USAGE("--addr", "127.0.0.1:1", "--count", "1", "--slots", "0");
	EXPECT_USAGE("--addr", "127.0.0.1:1", "--count", "1", "--exec",
		     "bogus");
	EXPECT_USAGE("--addr", "127.0.0.1:1", "--count", "1", "--label",
		     "novalue");
	EXPECT_USAGE("--addr", "127.0.0.1:1", "--count", "1", "--label", "=v");
	EXPECT_USAGE("--addr", "127.0.0.1:1", "--count", "1", "--exec",
		     "real", "--output", "x");
	EXPECT_USAGE("--addr", "127.0.0.1:1", "--count", "1", "--duration",
		     "-1");
	EXPECT_USAGE("--addr", "127.0.0.1:1", "--count", "1", "--bogus");
	EXPECT_USAGE("--addr", "127.0.0.1:1", "--count", "1", "extra");
	EXPECT_USAGE("--addr", "no-port", "--count", "1");
}

Test(sim, nothing_listening_exits_1)
{
	static const char *const a[] = { "workers", "--addr", "127.0.0.1:1",
					  "--count", "3", NULL };
	char err[2048];
	int st = bench_run(a, err, sizeof(err));

	cr_assert(st == 1 && strstr(err, "cannot connect"),
		  "status %d, want 1; stderr: %s", st, err);
}
