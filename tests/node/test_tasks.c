/*
 * The node service end to end: a real master, real `noded worker` processes
 * on loopback, driven through the real CLI (`noded run/submit/task/tasks/
 * logs/cancel/nodes`) as a user would, plus the client library where a test
 * needs to pipeline a thousand submits. Every test bounds its own waits,
 * stops what it started by pid, and kills any task process it saw that
 * outlived its task (and fails when it finds one).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "harness.h"
#include "noded/client.h"

#define MAX_WORKERS 4
#define MAX_BG 4
#define MAX_STRAYS 32

/* One CLI command left running in the background. */
struct bg {
	pid_t pid;
	int out;                /* read end of its stdout */
	int err;                /* memfd holding its stderr */
	char cmd[512];
};

static struct nd_test_daemon d;
static char master[32];
static pid_t workers[MAX_WORKERS];
static int worker_errs[MAX_WORKERS];    /* memfds of kept worker stderr */
static struct bg bgs[MAX_BG];
static pid_t strays[MAX_STRAYS];
static char stray_args[4][32];          /* `sleep ARG` a test started */
static char tmpdir[64];
static struct nd_test_cli R;            /* scratch result, one per test process */

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	memset(workers, 0, sizeof(workers));
	memset(worker_errs, 0, sizeof(worker_errs));
	memset(bgs, 0, sizeof(bgs));
	memset(strays, 0, sizeof(strays));
	memset(stray_args, 0, sizeof(stray_args));
	master[0] = '\0';
	tmpdir[0] = '\0';
}

/* True when what is in /proc/pid/cmdline (its words joined by spaces). */
static bool cmdline_has(pid_t pid, const char *what)
{
	char path[64], buf[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	for (ssize_t i = 0; i < n; i++)
		if (!buf[i])
			buf[i] = ' ';
	return strstr(buf, what) != NULL;
}

static size_t sleeps_running(const char *arg, pid_t *out, size_t max);

static void teardown(void)
{
	/* `sleep ARG` processes of a test that failed before it saw them */
	for (int i = 0; i < 4; i++)
		if (stray_args[i][0])
			sleeps_running(stray_args[i], NULL, 0);
	for (int i = 0; i < MAX_BG; i++) {
		if (bgs[i].pid > 0)
			nd_test_kill_pid(bgs[i].pid);
		if (bgs[i].out > 0)
			close(bgs[i].out);
		if (bgs[i].err > 0)
			close(bgs[i].err);
	}
	/* SIGTERM every worker first, then reap: they drain in parallel */
	for (int i = 0; i < MAX_WORKERS; i++)
		if (workers[i] > 0)
			kill(workers[i], SIGTERM);
	for (int i = 0; i < MAX_WORKERS; i++) {
		if (workers[i] <= 0)
			continue;
		if (nd_test_wait_pid(workers[i], ND_TEST_TIMEOUT_MS) ==
		    -ETIMEDOUT)
			nd_test_kill_pid(workers[i]);
		workers[i] = 0;
	}
	for (int i = 0; i < MAX_WORKERS; i++)
		if (worker_errs[i] > 0)
			close(worker_errs[i]);
	nd_test_daemon_stop(&d);
	/* task processes a test saw outlive their task (the test failed) */
	for (int i = 0; i < MAX_STRAYS; i++)
		if (strays[i] > 0 && nd_test_pid_alive(strays[i]) &&
		    (cmdline_has(strays[i], "sleep") ||
		     cmdline_has(strays[i], "exec-helper")))
			kill(strays[i], SIGKILL);
	if (tmpdir[0]) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "test_tasks: could not remove %s\n",
				tmpdir);
	}
}

TestSuite(tasks, .init = setup, .fini = teardown, .timeout = 60);

/* ---- daemons ---- */

/* Starts the master with the extra arguments given; sets `master`. */
#define MASTER_START(...)                                                    \
	do {                                                                 \
		DAEMON_START(&d, ##__VA_ARGS__);                             \
		snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);    \
	} while (0)

/*
 * `noded worker --master M --name NAME --slots SLOTS [--label LABEL]` into
 * workers[i]; its output goes to /dev/null unless ND_TEST_VERBOSE is set,
 * or, with keep_err, its stderr into a memfd (worker_stderr()).
 */
static void worker_start_v(int i, const char *name, int slots,
			   const char *label, bool keep_err)
{
	char slots_s[16];
	const char *argv[] = { nd_test_bin(), "worker", "--master", master,
			       "--name", name, "--slots", slots_s,
			       label ? "--label" : NULL, label, NULL };
	int null_fd = -1, err_fd;

	cr_assert(i >= 0 && i < MAX_WORKERS && workers[i] == 0);
	snprintf(slots_s, sizeof(slots_s), "%d", slots);
	if (!getenv("ND_TEST_VERBOSE"))
		null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	err_fd = null_fd;
	if (keep_err) {
		if (worker_errs[i] <= 0)
			worker_errs[i] = memfd_create("worker-stderr",
						      MFD_CLOEXEC);
		cr_assert(worker_errs[i] > 0, "memfd_create: %s",
			  strerror(errno));
		err_fd = worker_errs[i];
	}
	workers[i] = nd_test_spawn(argv, null_fd, null_fd, err_fd);
	if (null_fd >= 0)
		close(null_fd);
	cr_assert(workers[i] > 0, "starting worker %s: %s", name, nd_test_why);
}

static void worker_start(int i, const char *name, int slots,
			 const char *label)
{
	worker_start_v(i, name, slots, label, false);
}

/* What workers[i] (started with keep_err) wrote on stderr (static). */
static const char *worker_stderr(int i)
{
	static char buf[16384];
	ssize_t n = pread(worker_errs[i], buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* SIGKILLs workers[i] and reaps it. */
static void worker_kill(int i)
{
	cr_assert(workers[i] > 0);
	nd_test_kill_pid(workers[i]);
	workers[i] = 0;
}

/* ---- the CLI ---- */

static bool state_terminal(const char *s)
{
	return !strcmp(s, "SUCCEEDED") || !strcmp(s, "FAILED") ||
	       !strcmp(s, "TIMED_OUT") || !strcmp(s, "CANCELLED") ||
	       !strcmp(s, "LOST");
}

/* `noded task ID --json` (caller decrefs). */
static json_t *task_get(uint64_t id)
{
	char ids[32];
	json_t *t;

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	t = CLI_JSON("task", ids, "--json");
	cr_assert(json_is_object(t) && (uint64_t)jint(t, "id") == id,
		  "task %s --json: %s", ids, jdump(t));
	return t;
}

/*
 * Polls task id until it is in state want (returns the record, caller
 * decrefs). Fails on timeout, and on any other terminal state: a task has
 * exactly one.
 */
static json_t *wait_task(uint64_t id, const char *want, int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;

	for (;;) {
		json_t *t = task_get(id);
		const char *st = jstr(t, "state");

		if (!strcmp(st, want))
			return t;
		cr_assert(!state_terminal(st),
			  "task %" PRIu64 " ended %s, want %s: %s", id, st,
			  want, jdump(t));
		cr_assert(nd_test_now_ms() < deadline,
			  "task %" PRIu64 " not %s within %d ms: %s", id, want,
			  timeout_ms, jdump(t));
		json_decref(t);
		nd_test_sleep_ms(50);
	}
}

/* The newest task's record (`tasks --json --limit 1`; caller decrefs),
 * checked to run argv0 (NULL: any). */
static json_t *latest_task(const char *argv0)
{
	json_t *arr = CLI_JSON("tasks", "--json", "--limit", "1"), *t;

	cr_assert(json_is_array(arr) && json_array_size(arr) == 1,
		  "tasks --json --limit 1: %s", jdump(arr));
	t = json_incref(json_array_get(arr, 0));
	json_decref(arr);
	if (argv0) {
		json_t *argv = json_object_get(t, "argv");

		cr_assert(json_is_array(argv) &&
				  !strcmp(json_string_value(
						  json_array_get(argv, 0)),
					  argv0),
			  "newest task does not run %s: %s", argv0, jdump(t));
	}
	return t;
}

/* Asserts record t has state st and exit_code code. */
#define EXPECT_RECORD(t, st, code)                                           \
	cr_assert(!strcmp(jstr((t), "state"), (st)) &&                      \
			  jint((t), "exit_code") == (code),                  \
		  "want state %s exit_code %d, got %s", (st), (code),        \
		  jdump(t))

/* `noded submit ARGS...`: asserts exit 0, returns the task id printed. */
static uint64_t submit_v(const char *const args[])
{
	static struct nd_test_cli s;
	char *end;
	uint64_t id;

	nd_test_cli_run(&s, master, ND_TEST_CLI_MS, args);
	EXPECT_STATUS(&s, 0);
	errno = 0;
	id = strtoull(s.out, &end, 10);
	cr_assert(!errno && id > 0 && end != s.out && *end == '\n' &&
			  !end[1],
		  "`%s` printed \"%s\", want one task id", s.cmd, s.out);
	return id;
}

#define SUBMIT(...) submit_v((const char *const[]){ "submit", __VA_ARGS__, NULL })

/* ---- nodes ---- */

static json_t *nodes_get(void)
{
	json_t *arr = CLI_JSON("nodes", "--json");

	cr_assert(json_is_array(arr), "nodes --json: %s", jdump(arr));
	return arr;
}

static json_t *node_find(json_t *arr, const char *name)
{
	size_t i;
	json_t *n;

	json_array_foreach(arr, i, n)
		if (!strcmp(jstr(n, "name"), name))
			return n;
	return NULL;
}

/* Polls `nodes --json` until node name is in state want; returns ms. */
static int64_t wait_node(const char *name, const char *want, int timeout_ms)
{
	int64_t t0 = nd_test_now_ms();
	char last[512] = "absent";

	for (;;) {
		json_t *arr = nodes_get(), *n = node_find(arr, name);
		/* ALIVE also means reported: a node has no slots before its
		 * first report, which follows its registration */
		bool ok = n && !strcmp(jstr(n, "state"), want) &&
			  (strcmp(want, "ALIVE") ||
			   json_integer_value(json_object_get(n, "slots_total")));

		snprintf(last, sizeof(last), "%s", n ? jdump(n) : "absent");
		json_decref(arr);
		if (ok)
			return nd_test_now_ms() - t0;
		cr_assert(nd_test_now_ms() - t0 < timeout_ms,
			  "node %s not %s within %d ms (last: %s)", name, want,
			  timeout_ms, last);
		nd_test_sleep_ms(50);
	}
}

#define WAIT_ALIVE(name) wait_node((name), "ALIVE", 10000)

/* ---- background CLI commands ---- */

/* Starts `noded CMD --master M ARGS...` with stdout on a pipe, stderr kept
 * in a memfd. */
static struct bg *bg_start(const char *const args[])
{
	const char *argv[64];
	struct bg *b = NULL;
	size_t n = 0, len = 0;
	int op[2], null_fd;

	for (int i = 0; i < MAX_BG && !b; i++)
		if (bgs[i].pid == 0)
			b = &bgs[i];
	cr_assert(b, "too many background commands");
	argv[n++] = nd_test_bin();
	argv[n++] = args[0];
	argv[n++] = "--master";
	argv[n++] = master;
	for (size_t i = 1; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	for (size_t i = 1; i < n && len < sizeof(b->cmd); i++)
		len += (size_t)snprintf(b->cmd + len, sizeof(b->cmd) - len,
					"%s%s", i > 1 ? " " : "noded ",
					argv[i]);
	cr_assert(pipe2(op, O_CLOEXEC) == 0);
	b->err = memfd_create("bg-stderr", MFD_CLOEXEC);
	cr_assert(b->err >= 0, "memfd_create: %s", strerror(errno));
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	b->pid = nd_test_spawn(argv, null_fd, op[1], b->err);
	close(null_fd);
	close(op[1]);
	b->out = op[0];
	cr_assert(b->pid > 0, "starting `%s`: %s", b->cmd, nd_test_why);
	return b;
}

#define BG(...) bg_start((const char *const[]){ __VA_ARGS__, NULL })

/* What b wrote on stderr so far (static buffer). */
static const char *bg_stderr(struct bg *b)
{
	static char buf[8192];
	ssize_t n = pread(b->err, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* Reads one line of b's stdout (without the newline) within timeout_ms. */
static void bg_line(struct bg *b, char *line, size_t size, int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;
	size_t len = 0;

	for (;;) {
		struct pollfd p = { .fd = b->out, .events = POLLIN };
		int left = (int)(deadline - nd_test_now_ms());
		ssize_t n;

		cr_assert(left > 0 && len + 1 < size,
			  "`%s`: no line on stdout within %d ms (got \"%.*s\"; "
			  "stderr: %s)", b->cmd, timeout_ms, (int)len, line,
			  bg_stderr(b));
		if (poll(&p, 1, left) <= 0)
			continue;
		/* one byte at a time: the rest stays in the pipe */
		n = read(b->out, line + len, 1);
		if (n < 0 && errno == EINTR)
			continue;
		cr_assert(n == 1, "`%s` closed stdout before a full line "
			  "(got \"%.*s\"; stderr: %s)", b->cmd, (int)len, line,
			  bg_stderr(b));
		if (line[len] == '\n') {
			line[len] = '\0';
			return;
		}
		len++;
	}
}

/* Waits up to timeout_ms for b to exit; returns its status. */
static int bg_wait(struct bg *b, int timeout_ms)
{
	int st = nd_test_wait_pid(b->pid, timeout_ms);

	cr_assert(st != -ETIMEDOUT, "`%s` still running after %d ms "
		  "(stderr: %s)", b->cmd, timeout_ms, bg_stderr(b));
	b->pid = 0;
	return st;
}

/* ---- processes the tasks start ---- */

static void stray_add(pid_t pid)
{
	for (int i = 0; i < MAX_STRAYS; i++) {
		if (strays[i] == 0) {
			strays[i] = pid;
			return;
		}
	}
}

/* Parses a pid printed by a task. */
static pid_t parse_pid(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	cr_assert(!errno && v > 1 && end != s && (*end == '\0' || *end == '\n'),
		  "expected a pid, got \"%s\"", s);
	stray_add((pid_t)v);
	return (pid_t)v;
}

/* Waits up to timeout_ms for pid to be gone; returns the ms it took or -1. */
static int64_t wait_pid_gone(pid_t pid, int timeout_ms)
{
	int64_t t0 = nd_test_now_ms();

	for (;;) {
		if (!nd_test_pid_alive(pid))
			return nd_test_now_ms() - t0;
		if (nd_test_now_ms() - t0 >= timeout_ms)
			return -1;
		nd_test_sleep_ms(20);
	}
}

#define EXPECT_PID_GONE(pid, ms, ...)                                        \
	cr_assert(wait_pid_gone((pid), (ms)) >= 0,                           \
		  "process %d (a task's `sleep`) still running %d ms later: " \
		  __VA_ARGS__, (int)(pid), (ms))

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/noded-test-XXXXXX");
	cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

/* ---- running commands ---- */

Test(tasks, echo_round_trip_and_argv_kept_as_is)
{
	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");

	CLI(&R, "run", "--", "echo", "hello", "world");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "hello world\n");
	EXPECT_ERR(&R, "");

	/* one argument with a space stays one argument */
	CLI(&R, "run", "--", "printf", "%s\\n", "a b");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "a b\n");

	/* no shell: no expansion, no globbing */
	CLI(&R, "run", "--", "echo", "$HOME", "*", "a;b");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "$HOME * a;b\n");

	/* --shell: the words run with /bin/sh -c */
	CLI(&R, "run", "--shell", "--", "echo a b | wc -w");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "2\n");
	STOP_OK(&d);
}

Test(tasks, env_and_cwd)
{
	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");

	CLI(&R, "run", "--env", "FOO=bar", "--env", "BAZ=x y", "--cwd", "/tmp",
	    "--", "sh", "-c", "echo \"$FOO|$BAZ\"; pwd");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "bar|x y\n/tmp\n");
	STOP_OK(&d);
}

Test(tasks, exit_codes_and_records)
{
	json_t *t;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");

	CLI(&R, "run", "--", "sh", "-c", "exit 3");
	EXPECT_STATUS(&R, 3);
	t = latest_task("sh");
	EXPECT_RECORD(t, "FAILED", 3);
	cr_assert_eq(jint(t, "signal"), 0, "%s", jdump(t));
	cr_assert_str_eq(jstr(t, "node"), "w1", "%s", jdump(t));
	cr_assert_eq(jint(t, "attempt"), 1, "%s", jdump(t));
	cr_assert(jint(t, "ended_unix_ms") >= jint(t, "started_unix_ms") &&
			  jint(t, "started_unix_ms") >=
				  jint(t, "submitted_unix_ms") &&
			  jint(t, "submitted_unix_ms") > 0,
		  "timestamps out of order: %s", jdump(t));
	json_decref(t);

	CLI(&R, "run", "--", "true");
	EXPECT_STATUS(&R, 0);
	EXPECT_ERR(&R, "");
	t = latest_task("true");
	EXPECT_RECORD(t, "SUCCEEDED", 0);
	json_decref(t);

	CLI(&R, "run", "--", "noded-no-such-command", "arg");
	EXPECT_STATUS(&R, 127);
	cr_assert(strstr(R.err, "noded-no-such-command"),
		  "run of a missing command: stderr \"%s\" does not name it",
		  R.err);
	t = latest_task("noded-no-such-command");
	EXPECT_RECORD(t, "FAILED", 127);
	cr_assert(strstr(jstr(t, "reason"), "noded-no-such-command"),
		  "reason does not name the command: %s", jdump(t));
	json_decref(t);

	CLI(&R, "run", "--", "sh", "-c", "kill -9 $$");
	EXPECT_STATUS(&R, 137);
	t = latest_task("sh");
	cr_assert(!strcmp(jstr(t, "state"), "FAILED") &&
			  jint(t, "signal") == 9,
		  "want FAILED with signal 9: %s", jdump(t));
	json_decref(t);
	STOP_OK(&d);
}

Test(tasks, stdout_and_stderr_kept_apart)
{
	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");

	CLI(&R, "run", "--", "sh", "-c", "echo out; echo err >&2; echo out2");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "out\nout2\n");
	EXPECT_ERR(&R, "err\n");
	STOP_OK(&d);
}

Test(tasks, streamed_output_is_exact)
{
	static char want[ND_TEST_CLI_OUT_KEEP];
	size_t len = 0;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");

	for (int i = 1; i <= 200000; i++)
		len += (size_t)snprintf(want + len, sizeof(want) - len, "%d\n",
					i);
	CLI(&R, "run", "--", "seq", "1", "200000");
	EXPECT_STATUS(&R, 0);
	cr_assert(R.out_bytes == len && !memcmp(R.out, want, len),
		  "`seq 1 200000` through noded run: %" PRIu64 " bytes, want "
		  "%zu%s", R.out_bytes, len,
		  R.out_bytes == len ? " (same length, different bytes)" : "");
	STOP_OK(&d);
}

/* ---- timeout and cancel ---- */

Test(tasks, timeout_kills_the_task)
{
	json_t *t;
	pid_t pid;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");

	CLI(&R, "run", "--timeout", "1", "--", "sleep", "30");
	EXPECT_STATUS(&R, 124);
	cr_assert(R.ms >= 900 && R.ms <= 4000,
		  "run --timeout 1 -- sleep 30 took %lld ms", (long long)R.ms);
	cr_assert(strstr(R.err, "timed out"), "stderr: \"%s\"", R.err);
	t = latest_task("sleep");
	cr_assert_str_eq(jstr(t, "state"), "TIMED_OUT", "%s", jdump(t));
	json_decref(t);

	/* TERM ignored by the whole group: KILL after the grace period */
	CLI(&R, "run", "--timeout", "1", "--", "sh", "-c",
	    "trap '' TERM; sleep 30 & echo $!; wait");
	EXPECT_STATUS(&R, 124);
	pid = parse_pid(R.out);
	cr_assert(R.ms >= 900 && R.ms <= 1000 + 2000 + 2000,
		  "a task ignoring TERM with --timeout 1 ended after %lld ms "
		  "(want within timeout + 2 s grace + 2 s slack)",
		  (long long)R.ms);
	t = latest_task("sh");
	cr_assert_str_eq(jstr(t, "state"), "TIMED_OUT", "%s", jdump(t));
	json_decref(t);
	EXPECT_PID_GONE(pid, 1000, "the timeout did not kill the process "
			"group");
	STOP_OK(&d);
}

Test(tasks, cancel_running_task)
{
	char ids[32];
	int64_t t0, took;
	json_t *t;
	uint64_t id;
	pid_t pid;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");

	id = SUBMIT("--", "sh", "-c", "echo $$; exec sleep 30");
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	json_decref(wait_task(id, "RUNNING", 5000));
	/* the task's pid, from the output the master keeps */
	t0 = nd_test_now_ms();
	for (;;) {
		CLI(&R, "logs", ids);
		EXPECT_STATUS(&R, 0);
		if (strchr(R.out, '\n'))
			break;
		cr_assert(nd_test_now_ms() - t0 < 5000,
			  "logs %s: no output within 5 s (\"%s\")", ids, R.out);
		nd_test_sleep_ms(50);
	}
	pid = parse_pid(R.out);
	cr_assert(nd_test_pid_alive(pid), "task process %d not running",
		  (int)pid);

	t0 = nd_test_now_ms();
	CLI(&R, "cancel", ids);
	EXPECT_STATUS(&R, 0);
	t = wait_task(id, "CANCELLED", 2000);
	took = nd_test_now_ms() - t0;
	cr_log_info("running task CANCELLED %lld ms after cancel",
		    (long long)took);
	json_decref(t);
	EXPECT_PID_GONE(pid, 1000, "cancel did not kill the task");

	/* cancelling it again is harmless and it stays CANCELLED */
	CLI(&R, "cancel", ids);
	t = task_get(id);
	cr_assert_str_eq(jstr(t, "state"), "CANCELLED", "%s", jdump(t));
	json_decref(t);
	STOP_OK(&d);
}

Test(tasks, cancel_pending_task_never_runs)
{
	char marker[128], script[192], ids[32], busy_ids[32];
	uint64_t busy, queued, after;
	json_t *t;

	make_tmpdir();
	snprintf(marker, sizeof(marker), "%s/ran", tmpdir);
	snprintf(script, sizeof(script), "touch '%s'", marker);
	MASTER_START();
	worker_start(0, "w1", 1, NULL);
	WAIT_ALIVE("w1");

	busy = SUBMIT("--", "sleep", "30");
	json_decref(wait_task(busy, "RUNNING", 5000));
	queued = SUBMIT("--", "sh", "-c", script);
	nd_test_sleep_ms(300);
	t = task_get(queued);
	cr_assert_str_eq(jstr(t, "state"), "PENDING",
			 "second task with the only slot busy: %s", jdump(t));
	json_decref(t);

	snprintf(ids, sizeof(ids), "%" PRIu64, queued);
	CLI(&R, "cancel", ids);
	EXPECT_STATUS(&R, 0);
	t = task_get(queued);
	cr_assert(!strcmp(jstr(t, "state"), "CANCELLED") &&
			  jint(t, "started_unix_ms") == 0,
		  "a PENDING task right after cancel: %s", jdump(t));
	json_decref(t);

	/* free the slot: the queue moves on past the cancelled task */
	snprintf(busy_ids, sizeof(busy_ids), "%" PRIu64, busy);
	CLI(&R, "cancel", busy_ids);
	EXPECT_STATUS(&R, 0);
	json_decref(wait_task(busy, "CANCELLED", 3000));
	after = SUBMIT("--", "true");
	json_decref(wait_task(after, "SUCCEEDED", 5000));
	t = task_get(queued);
	cr_assert(!strcmp(jstr(t, "state"), "CANCELLED") &&
			  jint(t, "started_unix_ms") == 0,
		  "cancelled PENDING task later: %s", jdump(t));
	json_decref(t);
	cr_assert(access(marker, F_OK) != 0,
		  "the cancelled PENDING task ran anyway (%s exists)", marker);
	STOP_OK(&d);
}

/* ---- targeting ---- */

/* Splits s into its lines (at most max, in place) and sorts them. */
static size_t split_lines(char *s, char *lines[], size_t max)
{
	size_t n = 0;

	for (char *p = s; *p && n < max;) {
		char *nl = strchr(p, '\n');

		lines[n++] = p;
		if (!nl)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(lines[j - 1], lines[j]) > 0;
		     j--) {
			char *tmp = lines[j];

			lines[j] = lines[j - 1];
			lines[j - 1] = tmp;
		}
	return n;
}

Test(tasks, fan_out_over_three_workers)
{
	char script[256], *lines[16];
	size_t n;

	make_tmpdir();
	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	worker_start(1, "w2", 2, NULL);
	worker_start(2, "w3", 2, NULL);
	WAIT_ALIVE("w1");
	WAIT_ALIVE("w2");
	WAIT_ALIVE("w3");

	CLI(&R, "run", "--all", "--", "sh", "-c", "echo hi");
	EXPECT_STATUS(&R, 0);
	n = split_lines(R.out, lines, 16);
	cr_assert(n == 3 && !strcmp(lines[0], "w1: hi") &&
			  !strcmp(lines[1], "w2: hi") &&
			  !strcmp(lines[2], "w3: hi"),
		  "run --all -- sh -c 'echo hi': %zu lines, want one "
		  "\"wN: hi\" per worker (first: \"%s\")", n,
		  n ? lines[0] : "");

	CLI(&R, "run", "--all", "--", "sh", "-c", "exit 4");
	EXPECT_STATUS(&R, 4);

	/* the largest status wins, wherever it comes from: one node makes
	 * the directory first (mkdir is atomic) and exits differently */
	snprintf(script, sizeof(script),
		 "mkdir '%s/a' 2>/dev/null && exit 7 || exit 3", tmpdir);
	CLI(&R, "run", "--all", "--shell", "--", script);
	EXPECT_STATUS(&R, 7);
	snprintf(script, sizeof(script),
		 "mkdir '%s/b' 2>/dev/null && exit 3 || exit 7", tmpdir);
	CLI(&R, "run", "--all", "--shell", "--", script);
	EXPECT_STATUS(&R, 7);

	/* submit --all: one task per node */
	CLI(&R, "submit", "--all", "--", "true");
	EXPECT_STATUS(&R, 0);
	n = split_lines(R.out, lines, 16);
	cr_assert_eq(n, 3, "submit --all: %zu lines, want one per node", n);
	for (int w = 1; w <= 3; w++) {
		char on[16];
		int seen = 0;

		snprintf(on, sizeof(on), " on w%d", w);
		for (size_t i = 0; i < n; i++) {
			size_t ll = strlen(lines[i]), ol = strlen(on);

			cr_assert(!strncmp(lines[i], "job ", 4) &&
					  strstr(lines[i], ": task "),
				  "submit --all printed \"%s\", want 'job J: "
				  "task T on NODE'", lines[i]);
			seen += ll > ol && !strcmp(lines[i] + ll - ol, on);
		}
		cr_assert_eq(seen, 1, "submit --all: %d lines for w%d", seen,
			     w);
	}
	STOP_OK(&d);
}

Test(tasks, labels_and_nodes_target_and_refuse)
{
	uint64_t ids[4];
	json_t *t, *arr;
	size_t before;

	MASTER_START();
	worker_start(0, "w1", 2, "rack=a");
	worker_start(1, "w2", 2, "rack=b");
	WAIT_ALIVE("w1");
	WAIT_ALIVE("w2");

	for (int i = 0; i < 4; i++)
		ids[i] = SUBMIT("--label", "rack=b", "--", "true");
	for (int i = 0; i < 4; i++) {
		t = wait_task(ids[i], "SUCCEEDED", 5000);
		cr_assert_str_eq(jstr(t, "node"), "w2",
				 "--label rack=b ran on another node: %s",
				 jdump(t));
		json_decref(t);
	}
	CLI(&R, "run", "--label", "rack=b", "--", "echo", "x");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "x\n");
	t = latest_task("echo");
	cr_assert_str_eq(jstr(t, "node"), "w2", "%s", jdump(t));
	json_decref(t);
	CLI(&R, "run", "--node", "w1", "--", "true");
	EXPECT_STATUS(&R, 0);
	t = latest_task("true");
	cr_assert_str_eq(jstr(t, "node"), "w1", "%s", jdump(t));
	json_decref(t);

	arr = CLI_JSON("tasks", "--json");
	before = json_array_size(arr);
	json_decref(arr);

	CLI(&R, "run", "--label", "rack=z", "--", "true");
	EXPECT_STATUS(&R, 1);
	cr_assert(strstr(R.err, "label"), "refused label: stderr \"%s\"",
		  R.err);
	CLI(&R, "submit", "--label", "rack=z", "--", "true");
	EXPECT_STATUS(&R, 1);
	cr_assert(R.out[0] == '\0', "refused submit printed \"%s\"", R.out);
	CLI(&R, "run", "--node", "nope", "--", "true");
	EXPECT_STATUS(&R, 1);
	cr_assert(strstr(R.err, "nope"), "refused --node nope: stderr \"%s\"",
		  R.err);

	arr = CLI_JSON("tasks", "--json");
	cr_assert_eq(json_array_size(arr), before,
		     "refused submissions created tasks: %zu before, %zu after",
		     before, json_array_size(arr));
	json_decref(arr);
	STOP_OK(&d);
}

/*
 * One spec check (noded/taskspec.h) behind every surface: the master
 * answers a bad spec sent straight through the client library (no CLI
 * check before it) with the same words the CLI prints (and the HTTP API
 * answers, tests/api/test_http.c), and no task is made.
 */
static void expect_submit_refused(struct nd_client *c, Noded__TaskSpec *sp,
				  const char *msg)
{
	Noded__Frame f = NODED__FRAME__INIT, *rf = NULL;
	int r;

	f.body_case = NODED__FRAME__BODY_SUBMIT;
	f.submit = sp;
	r = nd_client_call(c, &f, &rf, 10000);
	cr_assert(r == ND_EREMOTE && rf &&
			  rf->body_case == NODED__FRAME__BODY_ERROR,
		  "submit of a bad spec: %s %s", nd_strerror(r),
		  rf ? nd_test_describe(rf) : "");
	cr_expect_eq(rf->error->code, NODED__ERROR_CODE__BAD_REQUEST,
		     "code %d", rf->error->code);
	cr_expect_str_eq(rf->error->message, msg);
	nd_frame_free(rf, NULL);
}

#define EXPECT_CLI_REFUSED(cmd, msg, ...)                                     \
	do {                                                                  \
		CLI(&R, cmd, __VA_ARGS__);                                    \
		EXPECT_STATUS(&R, 2);                                         \
		cr_expect_str_eq(R.err, "noded " cmd ": " msg "\n");          \
	} while (0)

Test(tasks, a_bad_spec_gets_one_message_from_master_and_cli)
{
	static const char targets[] =
		"node, nodes and all exclude each other: target one of them";
	static const char wait_all[] = "wait_for_node does not apply to all: "
				       "a fan-out runs on the nodes alive now";
	Noded__Command cmd = NODED__COMMAND__INIT;
	Noded__TaskSpec spec = NODED__TASK_SPEC__INIT;
	Noded__Command__EnvEntry e = NODED__COMMAND__ENV_ENTRY__INIT;
	Noded__Command__EnvEntry *ep[] = { &e };
	char *argv[] = { "true" }, *empty[] = { "" };
	struct nd_client *c;
	json_t *arr;
	int r;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");
	r = nd_client_connect(&c, master, NULL);
	cr_assert(r == 0, "nd_client_connect %s: %s", master, nd_strerror(r));

	expect_submit_refused(c, &spec, "nothing to run: give argv or a shell "
			      "command");
	spec.command = &cmd;
	cmd.argv = argv;
	cmd.n_argv = 1;
	cmd.shell = "true";
	expect_submit_refused(c, &spec, "give argv or a shell command, not "
			      "both");
	cmd.shell = "";
	cmd.argv = empty;
	expect_submit_refused(c, &spec, "argv[0], the command name, is empty");
	cmd.argv = argv;
	e.key = "A=B";
	e.value = "x";
	cmd.env = ep;
	cmd.n_env = 1;
	expect_submit_refused(c, &spec, "env key 'A=B' is not a variable name: "
			      "it must be non-empty, without '='");
	cmd.n_env = 0;
	spec.node = "w1";
	spec.all = true;
	expect_submit_refused(c, &spec, targets);
	spec.node = "";
	spec.wait_for_node = true;
	expect_submit_refused(c, &spec, wait_all);
	/* node lists: the master checks them as the CLI does */
	spec.all = false;
	spec.wait_for_node = false;
	spec.nodes = "w[1-";
	expect_submit_refused(c, &spec, "nodes 'w[1-': range without its end "
			      "at position 4");
	spec.nodes = "w1";
	spec.exclude = "w1,";
	expect_submit_refused(c, &spec, "exclude 'w1,': empty name at "
			      "position 3");
	spec.nodes = "";
	spec.exclude = "";
	nd_client_close(c);

	EXPECT_CLI_REFUSED("submit", "node, nodes and all exclude each other: "
			   "target one of them", "--node", "w1", "--all", "--",
			   "true");
	EXPECT_CLI_REFUSED("run", "wait_for_node does not apply to all: a "
			   "fan-out runs on the nodes alive now", "--all",
			   "--wait-for-node", "--", "true");
	EXPECT_CLI_REFUSED("submit", "argv[0], the command name, is empty",
			   "--", "");

	arr = CLI_JSON("tasks", "--json");
	cr_expect_eq(json_array_size(arr), 0, "refused specs made tasks: %s",
		     jdump(arr));
	json_decref(arr);
	STOP_OK(&d);
}

/* ---- many tasks at once (client library) ---- */

#define BULK 1000

struct bulk {
	size_t replies, errors;
	uint64_t ids[BULK];
	char first_err[256];
};

static void bulk_submit_cb(struct nd_client *c, int status,
			   const Noded__Frame *f, bool done, void *arg)
{
	struct bulk *b = arg;

	if (!done)
		return;
	if (status == 0 && f->body_case == NODED__FRAME__BODY_SUBMIT_REPLY &&
	    f->submit_reply->n_task_ids == 1 && b->replies < BULK) {
		b->ids[b->replies] = f->submit_reply->task_ids[0];
	} else {
		if (!b->errors++)
			snprintf(b->first_err, sizeof(b->first_err),
				 "status %d (%s): %s", status,
				 nd_strerror(status),
				 f ? nd_test_describe(f) : "no frame");
	}
	b->replies++;
}

/* Pipelines n submits of spec on c; waits for every reply. */
static void bulk_submit(struct nd_client *c, Noded__TaskSpec *spec,
			struct bulk *b, size_t n)
{
	Noded__Frame f = NODED__FRAME__INIT;
	int64_t deadline;

	f.body_case = NODED__FRAME__BODY_SUBMIT;
	f.submit = spec;
	for (size_t i = 0; i < n; i++) {
		int64_t id = nd_client_start(c, &f, bulk_submit_cb, b);

		cr_assert(id > 0, "nd_client_start submit %zu: %s", i,
			  nd_strerror((int)id));
	}
	deadline = nd_test_now_ms() + 30000;
	while (b->replies < n) {
		int r = nd_client_poll(c, 1000);

		cr_assert(r >= 0, "nd_client_poll: %s after %zu of %zu replies",
			  nd_strerror(r), b->replies, n);
		cr_assert(nd_test_now_ms() < deadline,
			  "%zu of %zu SubmitReplies within 30 s", b->replies,
			  n);
	}
	cr_assert(b->errors == 0, "%zu of %zu submits failed; first: %s",
		  b->errors, n, b->first_err);
}

/* list_tasks through the client (limit 10000); caller frees the frame. */
static Noded__TaskList *client_tasks(struct nd_client *c, Noded__Frame **rf)
{
	Noded__TaskListRequest q = NODED__TASK_LIST_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT;
	int r;

	q.limit = 10000;
	f.body_case = NODED__FRAME__BODY_LIST_TASKS;
	f.list_tasks = &q;
	r = nd_client_call(c, &f, rf, 10000);
	cr_assert(r == 0 && (*rf)->body_case == NODED__FRAME__BODY_TASK_LIST,
		  "list_tasks: %s %s", nd_strerror(r),
		  *rf ? nd_test_describe(*rf) : "");
	return (*rf)->task_list;
}

static Noded__NodeList *client_nodes(struct nd_client *c, Noded__Frame **rf)
{
	Noded__NodeListRequest q = NODED__NODE_LIST_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT;
	int r;

	f.body_case = NODED__FRAME__BODY_LIST_NODES;
	f.list_nodes = &q;
	r = nd_client_call(c, &f, rf, 10000);
	cr_assert(r == 0 && (*rf)->body_case == NODED__FRAME__BODY_NODE_LIST,
		  "list_nodes: %s %s", nd_strerror(r),
		  *rf ? nd_test_describe(*rf) : "");
	return (*rf)->node_list;
}

/* Asserts no node reports more running tasks than slots; returns the
 * largest running count seen. */
static uint32_t check_slots(struct nd_client *c)
{
	Noded__Frame *rf = NULL;
	Noded__NodeList *nl = client_nodes(c, &rf);
	uint32_t most = 0;

	for (size_t i = 0; i < nl->n_nodes; i++) {
		Noded__NodeInfo *n = nl->nodes[i];

		cr_assert(n->running_tasks <= n->slots_total &&
				  n->slots_free <= n->slots_total,
			  "node %s runs %u tasks with %u slots (%u free)",
			  n->name, n->running_tasks, n->slots_total,
			  n->slots_free);
		if (n->running_tasks > most)
			most = n->running_tasks;
	}
	nd_frame_free(rf, NULL);
	return most;
}

Test(tasks, thousand_tasks_all_succeed_within_slots, .timeout = 180)
{
	static struct bulk b;
	char *argv[] = { "true" };
	Noded__Command cmd = NODED__COMMAND__INIT;
	Noded__TaskSpec spec = NODED__TASK_SPEC__INIT;
	struct nd_client *c;
	int64_t t0, deadline;
	uint32_t most = 0, running;
	size_t samples = 0, on_w1 = 0, on_w2 = 0;
	json_t *arr, *t;
	size_t i;
	int r;

	MASTER_START();
	worker_start(0, "w1", 4, NULL);
	worker_start(1, "w2", 4, NULL);
	WAIT_ALIVE("w1");
	WAIT_ALIVE("w2");
	r = nd_client_connect(&c, master, NULL);
	cr_assert(r == 0, "nd_client_connect %s: %s", master, nd_strerror(r));

	spec.command = &cmd;
	cmd.n_argv = 1;
	cmd.argv = argv;
	t0 = nd_test_now_ms();
	bulk_submit(c, &spec, &b, BULK);
	cr_log_info("%d submits answered in %lld ms", BULK,
		    (long long)(nd_test_now_ms() - t0));

	deadline = t0 + 60000;
	for (;;) {
		Noded__Frame *rf = NULL;
		Noded__TaskList *tl;
		size_t done = 0;

		running = check_slots(c);
		most = running > most ? running : most;
		samples++;
		tl = client_tasks(c, &rf);
		for (i = 0; i < tl->n_tasks; i++) {
			Noded__TaskRecord *rec = tl->tasks[i];

			cr_assert(rec->state != NODED__TASK_STATE__TASK_FAILED &&
					  rec->state !=
						  NODED__TASK_STATE__TASK_LOST &&
					  rec->state !=
						  NODED__TASK_STATE__TASK_CANCELLED &&
					  rec->state !=
						  NODED__TASK_STATE__TASK_TIMED_OUT,
				  "task %" PRIu64 " ended in state %d on %s: "
				  "%s (exit %d)", rec->id, rec->state,
				  rec->node, rec->reason, rec->exit_code);
			done += rec->state == NODED__TASK_STATE__TASK_SUCCEEDED;
		}
		nd_frame_free(rf, NULL);
		if (done == BULK)
			break;
		cr_assert(nd_test_now_ms() < deadline,
			  "%zu of %d tasks SUCCEEDED within 60 s", done, BULK);
		nd_test_sleep_ms(20);
	}
	cr_log_info("%d tasks SUCCEEDED in %lld ms; %zu samples, at most %u "
		    "running on a node", BULK,
		    (long long)(nd_test_now_ms() - t0), samples, most);
	nd_client_close(c);

	/* the same through the CLI */
	arr = CLI_JSON("tasks", "--json", "--limit", "10000");
	cr_assert_eq(json_array_size(arr), BULK, "tasks --json: %zu records",
		     json_array_size(arr));
	json_array_foreach(arr, i, t) {
		cr_assert_str_eq(jstr(t, "state"), "SUCCEEDED", "%s",
				 jdump(t));
		on_w1 += !strcmp(jstr(t, "node"), "w1");
		on_w2 += !strcmp(jstr(t, "node"), "w2");
	}
	json_decref(arr);
	cr_assert_eq(on_w1 + on_w2, BULK, "tasks on w1 %zu, on w2 %zu", on_w1,
		     on_w2);
	cr_log_info("w1 ran %zu tasks, w2 %zu", on_w1, on_w2);
	STOP_OK(&d);
}

/* Max number of intervals [start, end) of one node that overlap. */
static int max_overlap(const Noded__TaskList *tl, const char *node)
{
	int64_t ev[64][2];
	size_t n = 0;
	int cur = 0, most = 0;

	for (size_t i = 0; i < tl->n_tasks && n + 2 <= 64; i++) {
		const Noded__TaskRecord *r = tl->tasks[i];

		if (strcmp(r->node, node))
			continue;
		ev[n][0] = (int64_t)r->started_unix_ms;
		ev[n++][1] = +1;
		ev[n][0] = (int64_t)r->ended_unix_ms;
		ev[n++][1] = -1;
	}
	/* by time; an end before a start at the same millisecond */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && (ev[j - 1][0] > ev[j][0] ||
					     (ev[j - 1][0] == ev[j][0] &&
					      ev[j - 1][1] > ev[j][1]));
		     j--) {
			int64_t a = ev[j][0], b = ev[j][1];

			ev[j][0] = ev[j - 1][0];
			ev[j][1] = ev[j - 1][1];
			ev[j - 1][0] = a;
			ev[j - 1][1] = b;
		}
	for (size_t i = 0; i < n; i++) {
		cur += (int)ev[i][1];
		if (cur > most)
			most = cur;
	}
	return most;
}

Test(tasks, excess_tasks_wait_in_the_queue)
{
	static struct bulk b;
	char *argv[] = { "sleep", "0.4" };
	Noded__Command cmd = NODED__COMMAND__INIT;
	Noded__TaskSpec spec = NODED__TASK_SPEC__INIT;
	Noded__Frame *rf = NULL;
	Noded__TaskList *tl;
	struct nd_client *c;
	size_t pending = 0, done;
	int64_t t0, deadline;
	int r, o1, o2;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	worker_start(1, "w2", 2, NULL);
	WAIT_ALIVE("w1");
	WAIT_ALIVE("w2");
	r = nd_client_connect(&c, master, NULL);
	cr_assert(r == 0, "nd_client_connect %s: %s", master, nd_strerror(r));
	spec.command = &cmd;
	cmd.n_argv = 2;
	cmd.argv = argv;
	t0 = nd_test_now_ms();
	bulk_submit(c, &spec, &b, 12);
	tl = client_tasks(c, &rf);
	for (size_t i = 0; i < tl->n_tasks; i++)
		pending += tl->tasks[i]->state ==
			   NODED__TASK_STATE__TASK_PENDING;
	nd_frame_free(rf, NULL);
	cr_assert(pending >= 4, "12 tasks of 0.4 s on 4 slots: only %zu "
		  "PENDING right after submission", pending);

	deadline = t0 + 15000;
	for (;;) {
		check_slots(c);
		tl = client_tasks(c, &rf);
		done = 0;
		for (size_t i = 0; i < tl->n_tasks; i++) {
			/* SUCCEEDED, or not ended yet */
			cr_assert(tl->tasks[i]->state <=
					  NODED__TASK_STATE__TASK_SUCCEEDED,
				  "task %" PRIu64 " ended in state %d: %s",
				  tl->tasks[i]->id, tl->tasks[i]->state,
				  tl->tasks[i]->reason);
			done += tl->tasks[i]->state ==
				NODED__TASK_STATE__TASK_SUCCEEDED;
		}
		if (done == 12)
			break;
		nd_frame_free(rf, NULL);
		cr_assert(nd_test_now_ms() < deadline,
			  "%zu of 12 tasks SUCCEEDED within 15 s", done);
		nd_test_sleep_ms(50);
	}
	o1 = max_overlap(tl, "w1");
	o2 = max_overlap(tl, "w2");
	nd_frame_free(rf, NULL);
	cr_assert(o1 <= 2 && o2 <= 2,
		  "by their records, w1 ran %d and w2 ran %d tasks at once "
		  "with 2 slots each", o1, o2);
	cr_assert(nd_test_now_ms() - t0 >= 3 * 400,
		  "12 tasks of 0.4 s on 4 slots took only %lld ms",
		  (long long)(nd_test_now_ms() - t0));
	nd_client_close(c);
	STOP_OK(&d);
}

/*
 * Tasks for a target wait in a queue of that target (a node, or a set of
 * labels): one target's tasks never wait behind another's, each target's
 * are first in first out, and labels given in another order are the same
 * target.
 */
Test(tasks, each_target_waits_in_its_own_queue_in_order)
{
	char slots_s[] = "1";
	const char *argv[] = { nd_test_bin(), "worker", "--master", master,
			       "--name", "w3", "--slots", slots_s,
			       "--label", "pool=c", "--label", "zone=x", NULL };
	int null_fd = getenv("ND_TEST_VERBOSE") ? -1 :
		      open("/dev/null", O_RDWR | O_CLOEXEC);
	uint64_t t1, t2, t3, t4, t5, t6, t7;
	json_t *a, *b;

	MASTER_START();
	worker_start(0, "w1", 1, "pool=a");
	worker_start(1, "w2", 1, "pool=b");
	workers[2] = nd_test_spawn(argv, null_fd, null_fd, null_fd);
	if (null_fd >= 0)
		close(null_fd);
	cr_assert(workers[2] > 0, "starting worker w3: %s", nd_test_why);
	WAIT_ALIVE("w1");
	WAIT_ALIVE("w2");
	WAIT_ALIVE("w3");

	/* pool=a is busy: its second task waits, pool=b's does not */
	t1 = SUBMIT("--label", "pool=a", "--", "sleep", "1.5");
	json_decref(wait_task(t1, "RUNNING", 5000));
	t2 = SUBMIT("--label", "pool=a", "--", "true");
	t3 = SUBMIT("--label", "pool=b", "--", "true");
	json_decref(wait_task(t3, "SUCCEEDED", 5000));
	a = task_get(t1);
	b = task_get(t2);
	cr_assert(!strcmp(jstr(a, "state"), "RUNNING") &&
			  !strcmp(jstr(b, "state"), "PENDING"),
		  "pool=b's task ended while pool=a's first one runs and its "
		  "second waits, but: %s / %s", jdump(a), jdump(b));
	json_decref(a);
	json_decref(b);
	json_decref(wait_task(t2, "SUCCEEDED", 10000));

	/* one queue for pool=c,zone=x whatever the order: first in, first
	 * out on w3's one slot (t5 waits in it before t6 and t7 come) */
	t4 = SUBMIT("--label", "pool=c", "--label", "zone=x", "--", "sleep",
		    "1");
	json_decref(wait_task(t4, "RUNNING", 5000));
	t5 = SUBMIT("--label", "pool=c", "--label", "zone=x", "--", "true");
	t6 = SUBMIT("--label", "zone=x", "--label", "pool=c", "--", "true");
	t7 = SUBMIT("--label", "pool=c", "--label", "zone=x", "--", "true");
	json_decref(wait_task(t5, "SUCCEEDED", 10000));
	a = wait_task(t6, "SUCCEEDED", 10000);
	b = wait_task(t7, "SUCCEEDED", 10000);
	cr_assert(jint(a, "ended_unix_ms") <= jint(b, "started_unix_ms"),
		  "the task submitted first ran second: %s then %s", jdump(a),
		  jdump(b));
	json_decref(a);
	json_decref(b);
	STOP_OK(&d);
}

/* ---- workers dying and coming back ---- */

/* The pids whose parent is ppid (from /proc), at most max. */
static size_t children_of(pid_t ppid, pid_t *out, size_t max)
{
	char path[64], buf[512], *rp;
	struct dirent *e;
	size_t n = 0;
	DIR *dir = opendir("/proc");

	cr_assert(dir, "opendir /proc: %s", strerror(errno));
	while ((e = readdir(dir)) && n < max) {
		long pid = strtol(e->d_name, &rp, 10), pp;
		ssize_t len;
		int fd;

		if (pid <= 0 || *rp)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		/* "pid (comm) S ppid ..." */
		rp = strrchr(buf, ')');
		if (rp && sscanf(rp + 1, " %*c %ld", &pp) == 1 && pp == ppid)
			out[n++] = (pid_t)pid;
	}
	closedir(dir);
	return n;
}

Test(tasks, worker_sigkill_mid_task_loses_it)
{
	pid_t helpers[16];
	size_t nhelpers;
	char line[64];
	struct bg *b;
	int64_t t0, ms;
	json_t *t;
	uint64_t id;
	pid_t pid;
	int st;

	MASTER_START("--heartbeat-timeout", "2", "--lease", "4");
	worker_start(0, "victim", 2, NULL);
	worker_start(1, "survivor", 2, NULL);
	WAIT_ALIVE("victim");
	WAIT_ALIVE("survivor");

	b = BG("run", "--node", "victim", "--", "sh", "-c",
	       "echo $$; exec sleep 30");
	bg_line(b, line, sizeof(line), 10000);
	pid = parse_pid(line);
	t = latest_task("sh");
	id = (uint64_t)jint(t, "id");
	cr_assert_str_eq(jstr(t, "state"), "RUNNING", "%s", jdump(t));
	json_decref(t);
	/* the worker's exec helpers (the task's parent among them) */
	nhelpers = children_of(workers[0], helpers, 16);
	for (size_t i = 0; i < nhelpers; i++)
		stray_add(helpers[i]);
	cr_log_info("the worker has %zu child processes", nhelpers);

	t0 = nd_test_now_ms();
	worker_kill(0);
	/* the task itself must not outlive its worker */
	ms = wait_pid_gone(pid, 3000);
	cr_assert(ms >= 0, "the task's `sleep 30` (pid %d) is still running "
		  "3 s after its worker was SIGKILLed", (int)pid);
	cr_log_info("task process gone %lld ms after the worker's SIGKILL",
		    (long long)ms);
	for (size_t i = 0; i < nhelpers; i++)
		cr_assert(wait_pid_gone(helpers[i], 3000) >= 0,
			  "process %d, a child of the SIGKILLed worker, still "
			  "runs 3 s later", (int)helpers[i]);

	wait_node("victim", "DEAD", 6000);
	ms = nd_test_now_ms() - t0;
	cr_assert(ms <= 2000 + 1000 + 1500,
		  "node DEAD %lld ms after SIGKILL, heartbeat timeout 2 s",
		  (long long)ms);
	/* LOST once its lease (4 s from the last heartbeat, plus the
	 * master's 1 s margin) is over too */
	t = wait_task(id, "LOST", 4000);
	cr_log_info("node DEAD within %lld ms, task LOST %lld ms after the "
		    "worker's SIGKILL: %s", (long long)ms,
		    (long long)(nd_test_now_ms() - t0), jstr(t, "reason"));
	json_decref(t);

	st = bg_wait(b, 3000);
	cr_assert(st == 255 && strstr(bg_stderr(b), "lost"),
		  "the waiting `%s` exited %d, want 255 with a note that the "
		  "task was lost; stderr: \"%s\"", b->cmd, st, bg_stderr(b));
	wait_node("survivor", "ALIVE", 1000);
	STOP_OK(&d);
}

/* Index in workers[] of the node named name ("w1" -> 0, "w2" -> 1). */
static int worker_index(const char *name)
{
	cr_assert(name[0] == 'w' && name[1] >= '1' && name[1] <= '4' &&
			  !name[2],
		  "unexpected node name \"%s\"", name);
	return name[1] - '1';
}

Test(tasks, lost_task_retried_on_another_worker)
{
	char first[32];
	json_t *t;
	uint64_t id;

	MASTER_START("--heartbeat-timeout", "2", "--lease", "4");
	worker_start(0, "w1", 2, NULL);
	worker_start(1, "w2", 2, NULL);
	WAIT_ALIVE("w1");
	WAIT_ALIVE("w2");

	id = SUBMIT("--retries", "1", "--", "sleep", "3");
	t = wait_task(id, "RUNNING", 5000);
	snprintf(first, sizeof(first), "%s", jstr(t, "node"));
	cr_assert_eq(jint(t, "attempt"), 1, "%s", jdump(t));
	json_decref(t);
	worker_kill(worker_index(first));

	/* retried once its lease is over (~5 s), then 3 s of sleep on the
	 * other node */
	t = wait_task(id, "SUCCEEDED", 4000 + 1000 + 3000 + 4000);
	cr_assert(strcmp(jstr(t, "node"), first) != 0 &&
			  jint(t, "attempt") == 2,
		  "after %s died: want SUCCEEDED on the other node with "
		  "attempt 2, got %s", first, jdump(t));
	json_decref(t);
	STOP_OK(&d);
}

Test(tasks, worker_restarted_after_dead_runs_tasks)
{
	MASTER_START("--heartbeat-timeout", "2");
	worker_start(0, "phoenix", 2, NULL);
	WAIT_ALIVE("phoenix");
	CLI(&R, "run", "--node", "phoenix", "--", "echo", "one");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "one\n");

	worker_kill(0);
	wait_node("phoenix", "DEAD", 6000);
	worker_start(0, "phoenix", 2, NULL);
	WAIT_ALIVE("phoenix");
	CLI(&R, "run", "--node", "phoenix", "--", "echo", "back");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "back\n");
	STOP_OK(&d);
}

/* ---- fencing: leases ---- */

/* The pids a task's shell wrote, one line each ("PID"), into path; up to
 * max of them into pids. Returns how many lines there are. */
static size_t read_pids(const char *path, pid_t *pids, size_t max)
{
	char buf[512];
	size_t n = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	while (fgets(buf, sizeof(buf), f)) {
		if (n < max)
			pids[n] = (pid_t)atoi(buf);
		n++;
	}
	fclose(f);
	return n;
}

/*
 * A worker frozen past the heartbeat timeout (SIGSTOP): its node is DEAD,
 * but its task is not LOST until its lease is over, by when the worker's
 * exec helpers (which still run) have killed it. When the worker comes
 * back, the old attempt's late end changes nothing, and the next task for
 * that node runs.
 */
Test(tasks, frozen_worker_task_killed_before_it_is_lost)
{
	char marks[128], script[256];
	pid_t pids[4];
	uint64_t t1, t2;
	int64_t gone_at = 0;
	json_t *t;

	make_tmpdir();
	snprintf(marks, sizeof(marks), "%s/marks", tmpdir);
	snprintf(script, sizeof(script), "echo $$ >> %s; exec sleep 30", marks);
	MASTER_START("--heartbeat-timeout", "2", "--lease", "4");
	worker_start(0, "frozen", 1, NULL);
	WAIT_ALIVE("frozen");
	t1 = SUBMIT("--node", "frozen", "--shell", "--", script);
	json_decref(wait_task(t1, "RUNNING", 5000));
	for (int i = 0; i < 100 && read_pids(marks, pids, 4) < 1; i++)
		nd_test_sleep_ms(50);
	cr_assert_eq(read_pids(marks, pids, 4), 1);
	stray_add(pids[0]);
	/* it waits for its node through its death (else it is LOST then) */
	t2 = SUBMIT("--node", "frozen", "--wait-for-node", "--", "true");
	cr_assert(kill(workers[0], SIGSTOP) == 0, "SIGSTOP: %s",
		  strerror(errno));
	wait_node("frozen", "DEAD", 5000);
	/* until LOST: note when its process went, which must be first */
	for (int64_t end = nd_test_now_ms() + 8000;;) {
		t = task_get(t1);
		if (!gone_at && !nd_test_pid_alive(pids[0]))
			gone_at = nd_test_now_ms();
		if (!strcmp(jstr(t, "state"), "LOST"))
			break;
		cr_assert(!strcmp(jstr(t, "state"), "RUNNING") &&
				  nd_test_now_ms() < end,
			  "want RUNNING until the lease is over, then LOST: %s",
			  jdump(t));
		json_decref(t);
		nd_test_sleep_ms(50);
	}
	cr_assert(gone_at && !nd_test_pid_alive(pids[0]),
		  "task 1 is LOST while its process %d still runs on the "
		  "frozen worker: %s", (int)pids[0], jdump(t));
	json_decref(t);
	cr_assert(kill(workers[0], SIGCONT) == 0, "SIGCONT: %s",
		  strerror(errno));
	WAIT_ALIVE("frozen");
	t = wait_task(t2, "SUCCEEDED", 10000);
	json_decref(t);
	t = task_get(t1);
	cr_assert(!strcmp(jstr(t, "state"), "LOST") &&
			  strstr(jstr(t, "reason"), "no heartbeat"),
		  "the old attempt's late end changed its record: %s",
		  jdump(t));
	json_decref(t);
	cr_assert_eq(read_pids(marks, pids, 4), 1, "task 1 ran again");
	STOP_OK(&d);
}

/*
 * The case: a frozen worker's task is retried on another worker.
 * The retry must not start before the frozen worker's attempt was killed
 * (by its exec helpers, when its lease ran out), and when the worker
 * comes back the old attempt neither runs on nor reports: the task ends
 * once, by its retry.
 */
Test(tasks, retry_never_overlaps_the_frozen_attempt)
{
	char marks[128], script[256], first[32], ids[32];
	int64_t gone_at = 0, second_at = 0;
	pid_t pids[4];
	uint64_t id;
	json_t *t;
	int victim;

	make_tmpdir();
	snprintf(marks, sizeof(marks), "%s/marks", tmpdir);
	snprintf(script, sizeof(script), "echo $$ >> %s; exec sleep 60", marks);
	MASTER_START("--heartbeat-timeout", "2", "--lease", "4");
	worker_start(0, "w1", 2, NULL);
	worker_start(1, "w2", 2, NULL);
	WAIT_ALIVE("w1");
	WAIT_ALIVE("w2");
	id = SUBMIT("--retries", "1", "--shell", "--", script);
	t = wait_task(id, "RUNNING", 5000);
	snprintf(first, sizeof(first), "%s", jstr(t, "node"));
	json_decref(t);
	for (int i = 0; i < 100 && read_pids(marks, pids, 4) < 1; i++)
		nd_test_sleep_ms(50);
	cr_assert_eq(read_pids(marks, pids, 4), 1);
	stray_add(pids[0]);
	victim = worker_index(first);
	cr_assert(kill(workers[victim], SIGSTOP) == 0, "SIGSTOP: %s",
		  strerror(errno));

	/* the retry's start (a second line), and the old process's end */
	for (int64_t end = nd_test_now_ms() + 12000; !second_at;) {
		size_t n;

		if (!gone_at && !nd_test_pid_alive(pids[0]))
			gone_at = nd_test_now_ms();
		n = read_pids(marks, pids, 4);
		if (n >= 2) {
			second_at = nd_test_now_ms();
			stray_add(pids[1]);
		}
		cr_assert(nd_test_now_ms() < end, "no retry within 12 s");
		nd_test_sleep_ms(10);
	}
	cr_assert(gone_at && gone_at < second_at,
		  "the retry started while the frozen attempt (pid %d) still "
		  "ran", (int)pids[0]);
	cr_log_info("old attempt gone %lld ms before the retry started",
		    (long long)(second_at - gone_at));
	t = wait_task(id, "RUNNING", 5000);
	cr_assert(strcmp(jstr(t, "node"), first) && jint(t, "attempt") == 2,
		  "want attempt 2 on the other node: %s", jdump(t));
	json_decref(t);

	/* back: the old attempt stays dead and silent */
	cr_assert(kill(workers[victim], SIGCONT) == 0);
	WAIT_ALIVE(first);
	nd_test_sleep_ms(1500);
	t = task_get(id);
	cr_assert(!strcmp(jstr(t, "state"), "RUNNING") &&
			  jint(t, "attempt") == 2,
		  "the frozen attempt's late end touched the task: %s",
		  jdump(t));
	json_decref(t);
	cr_assert_eq(read_pids(marks, pids, 4), 2, "the command ran again");
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	CLI(&R, "cancel", ids);
	EXPECT_STATUS(&R, 0);
	t = wait_task(id, "CANCELLED", 5000);
	json_decref(t);
	EXPECT_PID_GONE(pids[1], 3000, "the retry, after its cancel");
	STOP_OK(&d);
}

/*
 * The master itself stopped for 5 s (SIGSTOP) with three healthy workers
 * running tasks: when it resumes it must not blame them for its own
 * stall. No node is lost, and each task ends once, SUCCEEDED.
 */
Test(tasks, master_stall_does_not_lose_healthy_nodes)
{
	const char *names[3] = { "w1", "w2", "w3" };
	uint64_t ids[3];
	char log[65536];
	ssize_t n;
	int err = memfd_create("master-stderr", MFD_CLOEXEC);

	cr_assert(err >= 0);
	ND_CHECK(nd_test_daemon_start_err(&d, (const char *const[]){
		nd_test_bin(), "master", "--listen", "127.0.0.1:0", NULL },
		err));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	for (int i = 0; i < 3; i++)
		worker_start(i, names[i], 1, NULL);
	for (int i = 0; i < 3; i++)
		WAIT_ALIVE(names[i]);
	for (int i = 0; i < 3; i++)
		ids[i] = SUBMIT("--node", names[i], "--", "sleep", "8");
	for (int i = 0; i < 3; i++)
		json_decref(wait_task(ids[i], "RUNNING", 5000));

	cr_assert(kill(d.pid, SIGSTOP) == 0, "SIGSTOP: %s", strerror(errno));
	nd_test_sleep_ms(5000);
	cr_assert(kill(d.pid, SIGCONT) == 0, "SIGCONT: %s", strerror(errno));
	nd_test_sleep_ms(1000);
	for (int i = 0; i < 3; i++) {
		json_t *t = task_get(ids[i]);

		cr_assert(!strcmp(jstr(t, "state"), "RUNNING"),
			  "after the master's stall: %s", jdump(t));
		json_decref(t);
	}
	for (int i = 0; i < 3; i++) {
		json_t *t = wait_task(ids[i], "SUCCEEDED", 10000);

		cr_assert_eq(jint(t, "attempt"), 1, "%s", jdump(t));
		json_decref(t);
	}
	n = pread(err, log, sizeof(log) - 1, 0);
	log[n > 0 ? n : 0] = '\0';
	close(err);
	cr_assert(!strstr(log, "event=node.lost") &&
			  !strstr(log, "event=task.retried"),
		  "the master blamed its nodes for its own stall:\n%s", log);
	cr_assert(strstr(log, "event=master.stalled"),
		  "the master did not notice its stall:\n%s", log);
	STOP_OK(&d);
}

Test(tasks, worker_restarted_at_once_runs_tasks)
{
	json_t *t;

	MASTER_START("--heartbeat-timeout", "2");
	worker_start(0, "phoenix", 2, NULL);
	WAIT_ALIVE("phoenix");
	CLI(&R, "run", "--node", "phoenix", "--", "echo", "one");
	EXPECT_STATUS(&R, 0);

	/* back before the master noticed it was gone */
	worker_kill(0);
	worker_start(0, "phoenix", 2, NULL);
	nd_test_sleep_ms(1500);
	WAIT_ALIVE("phoenix");
	CLI(&R, "run", "--node", "phoenix", "--", "echo", "back");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "back\n");
	t = latest_task("echo");
	EXPECT_RECORD(t, "SUCCEEDED", 0);
	json_decref(t);
	STOP_OK(&d);
}

/* ---- output ---- */

Test(tasks, output_over_the_cap)
{
	char ids[32];
	json_t *t;

	MASTER_START("--output-cap", "65536");
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");

	CLI(&R, "run", "--", "head", "-c", "1000000", "/dev/zero");
	EXPECT_STATUS(&R, 0);
	cr_assert_eq(R.out_bytes, 1000000,
		     "run streamed %" PRIu64 " bytes of 1000000", R.out_bytes);
	t = latest_task("head");
	cr_assert(json_is_true(json_object_get(t, "truncated")) &&
			  jint(t, "output_bytes") == 1000000,
		  "want truncated=true output_bytes=1000000: %s", jdump(t));
	snprintf(ids, sizeof(ids), "%lld", jint(t, "id"));
	json_decref(t);
	CLI(&R, "logs", ids);
	EXPECT_STATUS(&R, 0);
	cr_assert_eq(R.out_bytes, 65536, "logs %s: %" PRIu64 " bytes, want "
		     "the 65536 kept", ids, R.out_bytes);

	/*
	 * A per-task cap below the master's. Output comes out at once here,
	 * so this also checks that nothing produced between the submit and
	 * the watch request of `noded run` is lost: a few times, as that is
	 * a race.
	 */
	for (int i = 0; i < 10; i++) {
		CLI(&R, "run", "--output-cap", "1000", "--", "head", "-c",
		    "5000", "/dev/zero");
		EXPECT_STATUS(&R, 0);
		cr_assert_eq(R.out_bytes, 5000,
			     "run %d of `%s`: streamed %" PRIu64 " bytes of "
			     "5000 (the output past the task's cap that "
			     "came before the watch started was dropped?)",
			     i + 1, R.cmd, R.out_bytes);
	}
	t = latest_task("head");
	cr_assert(json_is_true(json_object_get(t, "truncated")) &&
			  jint(t, "output_bytes") == 5000,
		  "%s", jdump(t));
	snprintf(ids, sizeof(ids), "%lld", jint(t, "id"));
	json_decref(t);
	CLI(&R, "logs", ids);
	EXPECT_STATUS(&R, 0);
	cr_assert_eq(R.out_bytes, 1000, "logs %s: %" PRIu64 " bytes, want "
		     "1000", ids, R.out_bytes);

	/* under the cap: kept whole, not truncated */
	CLI(&R, "run", "--", "head", "-c", "1000", "/dev/zero");
	t = latest_task("head");
	cr_assert(json_is_false(json_object_get(t, "truncated")) &&
			  jint(t, "output_bytes") == 1000,
		  "%s", jdump(t));
	json_decref(t);
	STOP_OK(&d);
}

Test(tasks, huge_output_keeps_memory_flat, .timeout = 120)
{
	static char buf[1 << 16];
	const uint64_t want = 200ull << 20;
	long m0, w0, m_peak, w_peak;
	uint64_t got = 0;
	int64_t t0, last = 0;
	struct bg *b;
	pid_t wpid;
	int st;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");
	wpid = workers[0];
	/* warm the pipe, output and watch paths up once */
	CLI(&R, "run", "--", "head", "-c", "4194304", "/dev/zero");
	EXPECT_STATUS(&R, 0);
	nd_test_sleep_ms(200);
	m0 = m_peak = nd_test_rss_kib(d.pid);
	w0 = w_peak = nd_test_rss_kib(wpid);

	t0 = nd_test_now_ms();
	b = BG("run", "--", "head", "-c", "209715200", "/dev/zero");
	for (;;) {
		struct pollfd p = { .fd = b->out, .events = POLLIN };
		ssize_t n;

		cr_assert(nd_test_now_ms() - t0 < 60000,
			  "200 MiB not through within 60 s (%" PRIu64
			  " bytes; stderr: %s)", got, bg_stderr(b));
		if (nd_test_now_ms() - last >= 20) {
			long m = nd_test_rss_kib(d.pid),
			     w = nd_test_rss_kib(wpid);

			last = nd_test_now_ms();
			m_peak = m > m_peak ? m : m_peak;
			w_peak = w > w_peak ? w : w_peak;
		}
		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(b->out, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		cr_assert(n >= 0, "read: %s", strerror(errno));
		if (n == 0)
			break;
		got += (uint64_t)n;
	}
	st = bg_wait(b, 10000);
	cr_log_info("200 MiB through noded run in %lld ms; master RSS %ld -> "
		    "peak %ld KiB, worker %ld -> peak %ld KiB",
		    (long long)(nd_test_now_ms() - t0), m0, m_peak, w0,
		    w_peak);
	cr_assert(st == 0 && got == want,
		  "`%s` exited %d after %" PRIu64 " bytes, want 0 after %"
		  PRIu64 "; stderr: %s", b->cmd, st, got, want, bg_stderr(b));
	if (d.asan) {
		cr_log_info("RSS checks skipped: daemon runs under ASan");
	} else {
		cr_assert(m_peak - m0 < 32 * 1024,
			  "master RSS grew from %ld to %ld KiB while 200 MiB "
			  "went through", m0, m_peak);
		cr_assert(w_peak - w0 < 32 * 1024,
			  "worker RSS grew from %ld to %ld KiB while 200 MiB "
			  "went through", w0, w_peak);
	}
	STOP_OK(&d);
}

Test(tasks, background_child_killed_when_task_ends)
{
	int64_t gone;
	pid_t pid;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");

	CLI(&R, "run", "--", "sh", "-c", "sleep 300 & echo $!");
	EXPECT_STATUS(&R, 0);
	pid = parse_pid(R.out);
	cr_assert(R.ms < 5000,
		  "run of a command leaving a background child took %lld ms",
		  (long long)R.ms);
	gone = wait_pid_gone(pid, 2000);
	cr_assert(gone >= 0,
		  "background child %d of a finished task still running 2 s "
		  "after `noded run` returned", (int)pid);
	cr_log_info("background child gone %lld ms after run returned",
		    (long long)gone);
	STOP_OK(&d);
}

/* ---- whole trees: setsid, double fork ---- */

/* A unique `sleep` argument for this test (into arg, 32 bytes): base and
 * our pid; the teardown kills what still runs `sleep arg`. */
static void sleep_arg(char *arg, int base)
{
	snprintf(arg, 32, "%d.%d", base, (int)getpid());
	for (int i = 0; i < 4; i++)
		if (!stray_args[i][0]) {
			snprintf(stray_args[i], sizeof(stray_args[i]), "%s", arg);
			break;
		}
}

/* Pids of the processes whose command line is exactly `sleep arg` (each
 * noted as a stray, killed by the teardown if the test fails). */
static size_t sleeps_running(const char *arg, pid_t *out, size_t max)
{
	char want[64], path[64], buf[128];
	DIR *dir = opendir("/proc");
	struct dirent *de;
	size_t n = 0;
	int wlen;

	cr_assert_not_null(dir);
	wlen = snprintf(want, sizeof(want), "sleep%c%s", '\0', arg) + 1;
	while ((de = readdir(dir))) {
		pid_t pid = (pid_t)atoi(de->d_name);
		ssize_t len;
		int fd;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf));
		close(fd);
		if (len == wlen && !memcmp(buf, want, (size_t)wlen) &&
		    nd_test_pid_alive(pid)) {
			stray_add(pid);
			if (n < max)
				out[n] = pid;
			n++;
		}
	}
	closedir(dir);
	return n;
}

/* Waits up to ms for `sleep arg` to run; returns its pid or 0. */
static pid_t wait_sleep(const char *arg, int ms)
{
	int64_t end = nd_test_now_ms() + ms;
	pid_t pid = 0;

	while (!sleeps_running(arg, &pid, 1) && nd_test_now_ms() < end)
		nd_test_sleep_ms(20);
	return pid;
}

/* Starts worker w1 with its helpers in cgroup mode (the default where a
 * cgroup v2 is writable) or tree mode (NODED_CGROUP=off). */
static void worker_in_mode(bool cgroup)
{
	if (!cgroup)
		setenv("NODED_CGROUP", "off", 1);
	else
		unsetenv("NODED_CGROUP");
	worker_start(0, "w1", 2, NULL);
	unsetenv("NODED_CGROUP");
	WAIT_ALIVE("w1");
}

/*
 * The commands: a grandchild that moved to its own session holds
 * the output pipes; --timeout 2 must still end the task TIMED_OUT, and
 * cancel CANCELLED, with the grandchild dead. Same for a double fork.
 */
static void escaped_tree(bool cgroup)
{
	char a1[32], a2[32], a3[32], c1[128], c2[128], c3[160], ids[32];
	pid_t pid;
	json_t *t;
	uint64_t id;

	MASTER_START();
	worker_in_mode(cgroup);
	sleep_arg(a1, 1001);
	sleep_arg(a2, 1002);
	sleep_arg(a3, 1003);
	snprintf(c1, sizeof(c1), "setsid sh -c 'sleep %s' & sleep 30", a1);
	snprintf(c2, sizeof(c2), "(setsid sh -c \"sleep %s &\" &) ; sleep 30",
		 a2);
	snprintf(c3, sizeof(c3), "setsid sh -c 'sleep %s' & sleep 30", a3);

	/* timeout, setsid */
	CLI_WITHIN(&R, 15000, "run", "--timeout", "2", "--", "sh", "-c", c1);
	EXPECT_STATUS(&R, 124);
	cr_assert(R.ms >= 1900 && R.ms < 2000 + 2000 + 4000,
		  "run --timeout 2 took %lld ms", (long long)R.ms);
	t = latest_task("sh");
	cr_assert_str_eq(jstr(t, "state"), "TIMED_OUT", "%s", jdump(t));
	json_decref(t);
	nd_test_sleep_ms(300);
	cr_assert(sleeps_running(a1, NULL, 0) == 0,
		  "`sleep %s` (setsid'd) outlived its timed-out task", a1);

	/* timeout, double fork */
	CLI_WITHIN(&R, 15000, "run", "--timeout", "2", "--", "sh", "-c", c2);
	EXPECT_STATUS(&R, 124);
	nd_test_sleep_ms(300);
	cr_assert(sleeps_running(a2, NULL, 0) == 0,
		  "`sleep %s` (double-forked) outlived its timed-out task",
		  a2);

	/* cancel, setsid */
	id = SUBMIT("--", "sh", "-c", c3);
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	json_decref(wait_task(id, "RUNNING", 5000));
	pid = wait_sleep(a3, 5000);
	cr_assert(pid > 0, "`sleep %s` never started", a3);
	CLI(&R, "cancel", ids);
	EXPECT_STATUS(&R, 0);
	json_decref(wait_task(id, "CANCELLED", 2000 + 4000));
	EXPECT_PID_GONE(pid, 2000, "cancel left the setsid'd grandchild");
	STOP_OK(&d);
}

Test(tasks, escaped_grandchildren_killed_on_timeout_and_cancel_cgroup)
{
	escaped_tree(true);
}

Test(tasks, escaped_grandchildren_killed_on_timeout_and_cancel_tree)
{
	escaped_tree(false);
}

/*
 * A process that left the tree and cleared its environment (tree mode
 * cannot find it) keeps the pipes open after the command exited: the task
 * still ends, about PIPE_LINGER_MS later, with all the output written
 * before the exit. In cgroup mode the process is found and killed.
 */
static void pipes_held(bool cgroup)
{
	char arg[32], cmd[256];
	pid_t pid;
	size_t n;

	MASTER_START();
	worker_in_mode(cgroup);
	sleep_arg(arg, 1005);
	snprintf(cmd, sizeof(cmd),
		 "(setsid env -i sleep %s &); sleep 0.5; "
		 "head -c 300000 /dev/zero | tr '\\0' x", arg);
	CLI_WITHIN(&R, 15000, "run", "--", "sh", "-c", cmd);
	EXPECT_STATUS(&R, 0);
	cr_assert_eq(R.out_bytes, 300000, "%llu bytes of output, want 300000",
		     (unsigned long long)R.out_bytes);
	cr_assert(R.ms < 500 + 1000 + 4000, "run took %lld ms",
		  (long long)R.ms);
	n = sleeps_running(arg, &pid, 1);
	if (cgroup) {
		cr_assert(n == 0, "`sleep %s` outlived its task in cgroup "
			  "mode", arg);
	} else {
		/* out of tree mode's reach, as the README says */
		cr_assert(n == 1, "`sleep %s` not found", arg);
		kill(pid, SIGKILL);
	}
	STOP_OK(&d);
}

Test(tasks, task_ends_when_an_escaped_process_holds_its_pipes_cgroup)
{
	pipes_held(true);
}

Test(tasks, task_ends_when_an_escaped_process_holds_its_pipes_tree)
{
	pipes_held(false);
}

/* ---- noded dev ---- */

Test(tasks, dev_mode_runs_tasks_on_its_workers)
{
	const char *argv[] = { nd_test_bin(), "dev", "--listen", "127.0.0.1:0", "--http", "none",
			       "--workers", "2", NULL };
	char want[2][80], *lines[16];
	int64_t t0;
	json_t *arr, *n;
	size_t i, nl, alive;

	ND_CHECK(nd_test_daemon_start_argv(&d, argv));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	t0 = nd_test_now_ms();
	for (;;) {
		arr = nodes_get();
		alive = 0;
		json_array_foreach(arr, i, n)
			alive += !strcmp(jstr(n, "state"), "ALIVE");
		if (alive == 2 && json_array_size(arr) == 2)
			break;
		cr_assert(nd_test_now_ms() - t0 < 10000,
			  "noded dev --workers 2: nodes %s", jdump(arr));
		json_decref(arr);
		nd_test_sleep_ms(50);
	}
	for (i = 0; i < 2; i++)
		snprintf(want[i], sizeof(want[i]), "%s: hi",
			 jstr(json_array_get(arr, i), "name"));
	json_decref(arr);

	CLI(&R, "run", "--all", "--", "echo", "hi");
	EXPECT_STATUS(&R, 0);
	nl = split_lines(R.out, lines, 16);
	cr_assert(nl == 2 &&
			  ((!strcmp(lines[0], want[0]) &&
			    !strcmp(lines[1], want[1])) ||
			   (!strcmp(lines[0], want[1]) &&
			    !strcmp(lines[1], want[0]))),
		  "run --all -- echo hi on noded dev: %zu lines, want \"%s\" "
		  "and \"%s\"", nl, want[0], want[1]);
	STOP_OK(&d);
}

/* ---- retention, master restarts, stale watchers, waiting for a node ---- */

/* Asserts `noded CMD ID` exits 1 saying that task id was evicted. */
static void expect_evicted(const char *cmd, uint64_t id)
{
	char ids[32];

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	CLI(&R, cmd, ids);
	EXPECT_STATUS(&R, 1);
	cr_assert(strstr(R.err, "evicted from the master's history"),
		  "`%s`: stderr \"%s\", want it to say the task was evicted",
		  R.cmd, R.err);
}

/* Records the master keeps now (`tasks --json --limit 10000`). */
static size_t records_kept(void)
{
	json_t *arr = CLI_JSON("tasks", "--json", "--limit", "10000");
	size_t n = json_array_size(arr);

	json_decref(arr);
	return n;
}

static uint64_t latest_id(const char *argv0)
{
	json_t *t = latest_task(argv0);
	uint64_t id = (uint64_t)jint(t, "id");

	json_decref(t);
	return id;
}

Test(tasks, retention_evicts_oldest_ended_tasks_by_count)
{
	uint64_t sleeper, last;
	char ids[32];
	json_t *t;

	MASTER_START("--task-history", "5");
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");
	sleeper = SUBMIT("--", "sleep", "30");
	json_decref(wait_task(sleeper, "RUNNING", 5000));
	for (int i = 0; i < 10; i++) {
		char word[16];

		snprintf(word, sizeof(word), "n%d", i);
		CLI(&R, "run", "--", "echo", word);
		EXPECT_STATUS(&R, 0);
	}
	last = latest_id("echo");
	cr_assert_eq(last, sleeper + 10);

	/* the 5 newest ended tasks, and the running one whatever its age */
	cr_assert_eq(records_kept(), 6, "want 5 ended records and 1 running");
	for (uint64_t id = last - 4; id <= last; id++) {
		t = task_get(id);
		EXPECT_RECORD(t, "SUCCEEDED", 0);
		json_decref(t);
	}
	t = task_get(sleeper);
	cr_assert_str_eq(jstr(t, "state"), "RUNNING", "%s", jdump(t));
	json_decref(t);
	expect_evicted("task", sleeper + 1);
	expect_evicted("task", last - 5);
	expect_evicted("logs", sleeper + 3);
	expect_evicted("cancel", sleeper + 1);

	/* an id never given is not "evicted" */
	snprintf(ids, sizeof(ids), "%" PRIu64, last + 100);
	CLI(&R, "task", ids);
	EXPECT_STATUS(&R, 1);
	cr_assert(strstr(R.err, "no task") && !strstr(R.err, "evicted"),
		  "`%s`: stderr \"%s\"", R.cmd, R.err);

	/* once it ends it is the newest ended task: the oldest kept goes */
	snprintf(ids, sizeof(ids), "%" PRIu64, sleeper);
	CLI(&R, "cancel", ids);
	EXPECT_STATUS(&R, 0);
	json_decref(wait_task(sleeper, "CANCELLED", 5000));
	cr_assert_eq(records_kept(), 5);
	expect_evicted("task", last - 4);
	STOP_OK(&d);
}

Test(tasks, retention_evicts_by_output_budget_and_bounds_memory,
     .timeout = 180)
{
	uint64_t first, last, big;
	long m0, m1;
	char ids[32];
	json_t *t;

	/* 3 outputs of 1 MiB fit, a 4th does not */
	MASTER_START("--output-budget", "3500000");
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");
	for (int i = 0; i < 6; i++) {
		CLI(&R, "run", "--", "head", "-c", "1048576", "/dev/zero");
		EXPECT_STATUS(&R, 0);
	}
	nd_test_sleep_ms(200);
	m0 = nd_test_rss_kib(d.pid);
	first = latest_id("head") + 1;
	for (int i = 0; i < 60; i++) {
		CLI(&R, "run", "--", "head", "-c", "1048576", "/dev/zero");
		EXPECT_STATUS(&R, 0);
		cr_assert_eq(R.out_bytes, 1048576);
	}
	nd_test_sleep_ms(200);
	m1 = nd_test_rss_kib(d.pid);
	last = latest_id("head");
	cr_assert_eq(last, first + 59);
	cr_log_info("60 MiB of task output through the master: RSS %ld -> "
		    "%ld KiB", m0, m1);
	cr_assert_eq(records_kept(), 3, "want the 3 newest (3 MiB of "
		     "output within the 3500000-byte budget)");
	expect_evicted("task", last - 3);
	expect_evicted("logs", first);
	snprintf(ids, sizeof(ids), "%" PRIu64, last);
	CLI(&R, "logs", ids);
	EXPECT_STATUS(&R, 0);
	cr_assert_eq(R.out_bytes, 1048576, "logs of a kept task: %" PRIu64
		     " bytes", R.out_bytes);
	if (d.asan)
		cr_log_info("RSS check skipped: daemon runs under ASan");
	else
		cr_assert(m1 - m0 < 16 * 1024,
			  "master RSS grew from %ld to %ld KiB over 60 MiB of "
			  "output with a 3.5 MB budget", m0, m1);

	/* a task's own cap is clamped to the budget: it alone fills it */
	CLI(&R, "run", "--output-cap", "8000000", "--", "head", "-c",
	    "5000000", "/dev/zero");
	EXPECT_STATUS(&R, 0);
	big = latest_id("head");
	t = task_get(big);
	cr_assert(json_is_true(json_object_get(t, "truncated")) &&
			  jint(t, "output_bytes") == 5000000,
		  "%s", jdump(t));
	json_decref(t);
	snprintf(ids, sizeof(ids), "%" PRIu64, big);
	CLI(&R, "logs", ids);
	EXPECT_STATUS(&R, 0);
	cr_assert_eq(R.out_bytes, 3500000, "logs: %" PRIu64 " bytes, want "
		     "the budget", R.out_bytes);
	cr_assert_eq(records_kept(), 1);
	STOP_OK(&d);
}

/* Tasks in state st the master keeps (client library). */
static size_t client_count(struct nd_client *c, Noded__TaskState st)
{
	Noded__TaskListRequest q = NODED__TASK_LIST_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *rf = NULL;
	size_t n;
	int r;

	q.limit = 10000;
	q.state = st;
	f.body_case = NODED__FRAME__BODY_LIST_TASKS;
	f.list_tasks = &q;
	r = nd_client_call(c, &f, &rf, 10000);
	cr_assert(r == 0 && rf->body_case == NODED__FRAME__BODY_TASK_LIST,
		  "list_tasks: %s", nd_strerror(r));
	n = rf->task_list->n_tasks;
	nd_frame_free(rf, NULL);
	return n;
}

/* Must match RAN_RECENT in src/node/run_int.h. */
#define WORKER_RAN_RECENT 1024

Test(tasks, worker_ran_ids_stay_bounded, .timeout = 180)
{
	static struct bulk b;
	char *argv[] = { "true" };
	Noded__Command cmd = NODED__COMMAND__INIT;
	Noded__TaskSpec spec = NODED__TASK_SPEC__INIT;
	unsigned long long accepted = 0;
	size_t kept = 0, rounds = 3, open;
	struct nd_client *c;
	const char *line;
	int64_t deadline;
	int r, st;

	MASTER_START("--task-history", "100");
	worker_start_v(0, "w1", 4, NULL, true);
	WAIT_ALIVE("w1");
	r = nd_client_connect(&c, master, NULL);
	cr_assert(r == 0, "nd_client_connect %s: %s", master, nd_strerror(r));
	spec.command = &cmd;
	cmd.n_argv = 1;
	cmd.argv = argv;
	for (size_t i = 0; i < rounds; i++) {
		memset(&b, 0, sizeof(b));
		bulk_submit(c, &spec, &b, 500);
	}
	deadline = nd_test_now_ms() + 60000;
	do {
		cr_assert(nd_test_now_ms() < deadline,
			  "tasks not all ended within 60 s");
		nd_test_sleep_ms(50);
		open = client_count(c, NODED__TASK_STATE__TASK_PENDING) +
		       client_count(c, NODED__TASK_STATE__TASK_ASSIGNED) +
		       client_count(c, NODED__TASK_STATE__TASK_RUNNING);
	} while (open);
	cr_assert_eq(client_count(c, NODED__TASK_STATE__TASK_SUCCEEDED), 100,
		     "want the 100 newest ended tasks, all SUCCEEDED");
	nd_client_close(c);
	cr_assert_eq(records_kept(), 100);

	/* The master acks the last ends lazily: with its next frame to the
	 * worker, here none, or at its 250 ms tick. Only then may the worker
	 * forget those tasks' entries. */
	nd_test_sleep_ms(600);
	kill(workers[0], SIGTERM);
	st = nd_test_wait_pid(workers[0], ND_TEST_TIMEOUT_MS);
	workers[0] = 0;
	cr_assert_eq(st, 0, "worker exit status %d on SIGTERM", st);
	line = strstr(worker_stderr(0), "event=worker.stopped ");
	cr_assert(line && (line = strstr(line, " accepted_tasks=")) &&
			  sscanf(line, " accepted_tasks=%llu remembered_ids=%zu",
				 &accepted, &kept) == 2,
		  "no stats line on the worker's stderr: %s",
		  worker_stderr(0));
	cr_log_info("worker accepted %llu tasks, remembers %zu ids", accepted,
		    kept);
	cr_assert_eq(accepted, rounds * 500);
	cr_assert(kept <= WORKER_RAN_RECENT + 4,
		  "worker remembers %zu task ids after %llu tasks, want at "
		  "most %d", kept, accepted, WORKER_RAN_RECENT + 4);
	STOP_OK(&d);
}

Test(tasks, master_restart_worker_takes_new_task_ids)
{
	uint64_t old_id;
	char listen[32], line[64];
	struct bg *b;
	json_t *t;
	pid_t pid;
	int port, st;

	MASTER_START();
	port = d.port;
	worker_start_v(0, "w1", 2, NULL, true);
	WAIT_ALIVE("w1");
	CLI(&R, "run", "--", "echo", "one");
	EXPECT_STATUS(&R, 0);
	b = BG("run", "--", "sh", "-c", "echo $$; exec sleep 60");
	bg_line(b, line, sizeof(line), 5000);
	pid = parse_pid(line);
	old_id = latest_id("sh");

	STOP_OK(&d);
	st = bg_wait(b, 10000);
	cr_assert_eq(st, 255, "run whose master stopped exited %d", st);
	cr_assert(nd_test_pid_alive(pid), "a task must outlive a master "
		  "that is away (it may come back)");
	nd_test_sleep_ms(300);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	MASTER_START("--listen", listen);
	cr_assert_eq(d.port, port);
	WAIT_ALIVE("w1");

	/* The new master knows nothing of the old one's tasks and gives
	 * other ids (never reused): its tasks run. */
	CLI(&R, "run", "--", "echo", "two");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "two\n");
	CLI(&R, "run", "--", "echo", "three");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "three\n");
	t = latest_task("echo");
	EXPECT_RECORD(t, "SUCCEEDED", 0);
	cr_assert_str_eq(json_string_value(json_array_get(
				 json_object_get(t, "argv"), 1)), "three",
			 "%s", jdump(t));
	cr_assert((uint64_t)jint(t, "id") > old_id, "the new master gave id "
		  "%lld, not above the old one's %llu", jint(t, "id"),
		  (unsigned long long)old_id);
	json_decref(t);

	/* nobody can take the old task's end any more: it was stopped */
	EXPECT_PID_GONE(pid, 5000, "the old master's task outlived it");
	cr_assert(strstr(worker_stderr(0), "the master restarted"),
		  "worker stderr: %s", worker_stderr(0));
	STOP_OK(&d);
}

/*
 * Polls task id (which may not exist yet) until it has `want` watchers;
 * returns its record (caller decrefs). Fails after timeout_ms, saying why.
 */
static json_t *wait_watchers(uint64_t id, long long want, int timeout_ms,
			     const char *why)
{
	int64_t t0 = nd_test_now_ms();
	char ids[32];

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	for (;;) {
		json_t *t = NULL;

		CLI(&R, "task", ids, "--json");
		if (R.st == 0)
			t = json_loads(R.out, 0, NULL);
		if (t && jint(t, "watchers") == want)
			return t;
		cr_assert(nd_test_now_ms() - t0 < timeout_ms,
			  "task %s: %s within %d ms (want %lld watchers): %s",
			  ids, why, timeout_ms, want, t ? jdump(t) : R.err);
		json_decref(t);
		nd_test_sleep_ms(20);
	}
}

Test(tasks, follower_that_disconnects_is_dropped_and_frees_the_worker,
     .timeout = 90)
{
	const uint64_t total = 100000000;
	long long o1, o2;
	char ids[32];
	uint64_t id;
	int64_t t0;
	struct bg *b;
	json_t *t;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");
	id = SUBMIT("--shell", "--", "sleep 1; head -c 100000000 /dev/zero; "
		    "sleep 3");
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	/* a follower that never reads what it is sent */
	b = BG("logs", ids, "--follow");
	json_decref(wait_watchers(id, 1, 5000, "the follower never watched"));
	/* it lags, so the worker is held back */
	json_decref(wait_task(id, "RUNNING", 5000));
	nd_test_sleep_ms(1500);
	t = task_get(id);
	o1 = jint(t, "output_bytes");
	json_decref(t);
	nd_test_sleep_ms(1000);
	t = task_get(id);
	o2 = jint(t, "output_bytes");
	cr_assert(o1 == o2 && (uint64_t)o2 < total &&
			  !strcmp(jstr(t, "state"), "RUNNING"),
		  "a follower that does not read did not hold the task back "
		  "(output %lld then %lld bytes): %s", o1, o2, jdump(t));
	json_decref(t);

	/* it goes away: its watcher goes at once, not at the task's end,
	 * and the worker runs on */
	nd_test_kill_pid(b->pid);
	b->pid = 0;
	t0 = nd_test_now_ms();
	t = wait_watchers(id, 0, 3000, "the watcher of a closed connection "
			  "is still there");
	cr_assert_str_eq(jstr(t, "state"), "RUNNING",
			 "want the watcher gone while the task still runs: %s",
			 jdump(t));
	json_decref(t);
	t = wait_task(id, "SUCCEEDED", 20000);
	cr_assert_eq(jint(t, "output_bytes"), (long long)total, "%s",
		     jdump(t));
	cr_log_info("task ended %lld ms after its only follower went",
		    (long long)(nd_test_now_ms() - t0));
	json_decref(t);

	/* the same for the stream of a `run` whose client goes away: the
	 * task runs on, unwatched, until cancelled */
	b = BG("run", "--", "sleep", "30");
	id++;
	json_decref(wait_watchers(id, 1, 5000, "the run never watched"));
	nd_test_kill_pid(b->pid);
	b->pid = 0;
	t = wait_watchers(id, 0, 3000, "the run stream of a closed "
			  "connection still watches");
	cr_assert(!state_terminal(jstr(t, "state")),
		  "want the watcher gone while the task still runs: %s",
		  jdump(t));
	json_decref(t);
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	CLI(&R, "cancel", ids);
	EXPECT_STATUS(&R, 0);
	STOP_OK(&d);
}

/* `noded submit ARGS...` that must succeed: the id, stderr in R.err. */
static uint64_t submit_noting(const char *const args[])
{
	char *end;
	uint64_t id;

	nd_test_cli_run(&R, master, ND_TEST_CLI_MS, args);
	EXPECT_STATUS(&R, 0);
	id = strtoull(R.out, &end, 10);
	cr_assert(id > 0 && *end == '\n', "`%s` printed \"%s\"", R.cmd, R.out);
	return id;
}

static size_t count_of(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

Test(tasks, wait_for_node_waits_until_the_node_joins)
{
	uint64_t id, gpu;
	char ids[32], line[64];
	struct bg *b;
	json_t *t;
	int st;

	/* a waiting run sends nothing but its keepalive pings */
	MASTER_START("--idle-timeout", "2");
	/* without the flag a node nobody has is refused, and nothing is
	 * created */
	CLI(&R, "submit", "--node", "later", "--", "true");
	EXPECT_STATUS(&R, 1);
	cr_assert(strstr(R.err, "no node named 'later'"), "stderr: %s", R.err);
	cr_assert_eq(records_kept(), 0);

	id = submit_noting((const char *const[]){ "submit", "--node", "later",
						  "--wait-for-node", "--",
						  "echo", "hi", NULL });
	cr_assert(strstr(R.err, "is waiting for a node") &&
			  strstr(R.err, "no node named 'later'"),
		  "submit --wait-for-node: stderr \"%s\"", R.err);
	gpu = submit_noting((const char *const[]){ "submit", "--label",
						   "gpu=yes",
						   "--wait-for-node", "--",
						   "true", NULL });
	b = BG("run", "--node", "later", "--wait-for-node", "--", "echo",
	       "ran");
	nd_test_sleep_ms(3000); /* longer than the idle timeout */
	t = task_get(id);
	cr_assert_str_eq(jstr(t, "state"), "PENDING", "%s", jdump(t));
	json_decref(t);

	worker_start(0, "later", 2, NULL);
	t = wait_task(id, "SUCCEEDED", 10000);
	cr_assert_str_eq(jstr(t, "node"), "later", "%s", jdump(t));
	json_decref(t);
	bg_line(b, line, sizeof(line), 10000);
	cr_assert_str_eq(line, "ran");
	st = bg_wait(b, 10000);
	cr_assert_eq(st, 0, "run --wait-for-node exited %d: %s", st,
		     bg_stderr(b));
	cr_assert_eq(count_of(bg_stderr(b), "is waiting for a node"), 1,
		     "run --wait-for-node should say once that it waits: %s",
		     bg_stderr(b));

	/* the node that joined lacks the label: that one waits on, and a
	 * cancel ends it */
	t = task_get(gpu);
	cr_assert_str_eq(jstr(t, "state"), "PENDING", "%s", jdump(t));
	json_decref(t);
	snprintf(ids, sizeof(ids), "%" PRIu64, gpu);
	CLI(&R, "cancel", ids);
	EXPECT_STATUS(&R, 0);
	cr_assert(strstr(R.out, "CANCELLED"), "cancel printed \"%s\"", R.out);
	json_decref(wait_task(gpu, "CANCELLED", 5000));
	CLI(&R, "run", "--label", "gpu=yes", "--", "true");
	EXPECT_STATUS(&R, 1);
	cr_assert(strstr(R.err, "gpu=yes"), "stderr: %s", R.err);
	STOP_OK(&d);
}

/* Runs `noded ARGS...` (no --master), expects exit want and needle in
 * its stderr (or stdout for want 0). */
static void expect_cli_exit(int want, const char *needle,
			    const char *const args[])
{
	const char *argv[24];
	size_t n = 0;
	int st;

	argv[n++] = nd_test_bin();
	for (size_t i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	st = nd_test_run(argv, R.out, sizeof(R.out), R.err, sizeof(R.err),
			 ND_TEST_CLI_MS);
	cr_assert(st == want && strstr(want ? R.err : R.out, needle),
		  "`noded %s %s %s`: exit %d (want %d), stdout \"%.300s\", "
		  "stderr \"%.500s\", want \"%s\" in it", args[0],
		  args[1] ? args[1] : "", args[1] && args[2] ? args[2] : "",
		  st, want, R.out, R.err, needle);
}

#define EXPECT_CLI_EXIT(want, needle, ...)                                    \
	expect_cli_exit((want), (needle),                                     \
			(const char *const[]){ __VA_ARGS__, NULL })

Test(tasks, retention_and_wait_options_refused_clearly)
{
	EXPECT_CLI_EXIT(2, "--task-history wants a whole number from 1 to "
			"100000000, not '0'", "master", "--task-history", "0");
	EXPECT_CLI_EXIT(2, "--task-history wants a whole number",
			"master", "--task-history", "ten");
	EXPECT_CLI_EXIT(2, "--task-history wants a whole number",
			"master", "--task-history", "-1");
	EXPECT_CLI_EXIT(2, "--task-history wants a whole number",
			"master", "--task-history", "100000001");
	EXPECT_CLI_EXIT(2, "--output-budget wants a whole number",
			"master", "--output-budget", "0");
	EXPECT_CLI_EXIT(2, "--output-budget wants a whole number",
			"master", "--output-budget", "1MB");
	EXPECT_CLI_EXIT(2, "--output-cap 1048576 is over --output-budget "
			"1000", "master", "--output-budget", "1000");
	EXPECT_CLI_EXIT(2, "--output-cap 5000 is over --output-budget 4000",
			"master", "--output-cap", "5000", "--output-budget",
			"4000");
	EXPECT_CLI_EXIT(2, "--task-history wants a whole number",
			"dev", "--task-history", "");
	EXPECT_CLI_EXIT(2, "--output-cap 1048576 is over --output-budget 10",
			"dev", "--output-budget", "10");
	EXPECT_CLI_EXIT(2, "wait_for_node does not apply to all",
			"submit", "--all", "--wait-for-node", "--", "true");
	EXPECT_CLI_EXIT(2, "usage: noded run", "run", "--wait-for-node=1",
			"--", "true");
	EXPECT_CLI_EXIT(0, "--task-history N", "master", "--help");
	EXPECT_CLI_EXIT(0, "--output-budget BYTES", "dev", "--help");
	EXPECT_CLI_EXIT(0, "--wait-for-node", "run", "--help");
}

/* master and dev set a master up with one function: a bad address is a
 * usage error (exit 2) for both, on --listen and on --http alike. */
Test(tasks, dev_and_master_refuse_a_bad_address_alike)
{
	EXPECT_CLI_EXIT(2, "bad address", "master", "--listen", "nocolon");
	EXPECT_CLI_EXIT(2, "bad address", "dev", "--listen", "nocolon");
	EXPECT_CLI_EXIT(2, "bad address", "master", "--listen", "127.0.0.1:0",
			"--http", "nocolon");
	EXPECT_CLI_EXIT(2, "bad address", "dev", "--listen", "127.0.0.1:0",
			"--http", "nocolon");
}

Test(tasks, dev_mode_takes_retention_options)
{
	const char *argv[] = { nd_test_bin(), "dev", "--listen", "127.0.0.1:0",
			       "--workers", "1", "--task-history", "2", NULL };
	uint64_t first = 0;

	ND_CHECK(nd_test_daemon_start_argv(&d, argv));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	WAIT_ALIVE("dev-1");
	for (int i = 0; i < 3; i++) {
		CLI(&R, "run", "--", "true");
		EXPECT_STATUS(&R, 0);
		if (!i)
			first = latest_id("true");
	}
	cr_assert_eq(records_kept(), 2);
	expect_evicted("task", first);
	STOP_OK(&d);
}

/*
 * run --all with one failing node: the node is named as its result arrives,
 * and a summary line per ending closes the run on stderr; the exit status
 * is still the largest.
 */
Test(tasks, fan_out_names_the_failing_node_and_sums_up)
{
	char script[256], line[128], *fail;
	json_t *arr, *t;
	size_t i;

	make_tmpdir();
	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	worker_start(1, "w2", 2, NULL);
	WAIT_ALIVE("w1");
	WAIT_ALIVE("w2");

	/* exactly one node makes the directory first (mkdir is atomic) */
	snprintf(script, sizeof(script),
		 "mkdir '%s/a' 2>/dev/null && exit 0 || exit 3", tmpdir);
	CLI(&R, "run", "--all", "--shell", "--", script);
	EXPECT_STATUS(&R, 3);
	fail = strstr(R.err, "noded: node w");
	cr_assert(fail, "no line names the failing node: %s", R.err);
	cr_assert(!strstr(fail + 1, "noded: node w"),
		  "one node failed, more were named: %s", R.err);
	/* which one: the master's records say */
	arr = CLI_JSON("tasks", "--state", "failed", "--json");
	cr_assert_eq(json_array_size(arr), 1, "%s", jdump(arr));
	t = json_array_get(arr, 0);
	snprintf(line, sizeof(line), "noded: node %s: FAILED, exit status 3 "
		 "(task %lld)\n", jstr(t, "node"), jint(t, "id"));
	cr_expect(!strncmp(fail, line, strlen(line)), "want \"%s\" in: %s",
		  line, R.err);
	snprintf(line, sizeof(line), "noded: job %lld on 2 nodes: 1 SUCCEEDED; "
		 "1 FAILED: %s (exit 3)\n", jint(t, "job_id"), jstr(t, "node"));
	i = strlen(R.err);
	cr_expect(i >= strlen(line) && !strcmp(R.err + i - strlen(line), line),
		  "want the last line \"%s\", stderr: %s", line, R.err);
	json_decref(arr);
	STOP_OK(&d);
}

/* ---- leaving on purpose ---- */

/*
 * A worker stopped with SIGTERM says so: its running tasks end at once
 * with the reason "worker stopping" (LOST, or run again elsewhere when
 * they have retries), and its node is LEFT, not DEAD.
 */
Test(tasks, worker_sigterm_leaves_and_ends_its_tasks_with_a_reason)
{
	uint64_t a, b;
	int64_t t0;
	json_t *t;
	int st;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");
	a = SUBMIT("--retries", "1", "--", "sleep", "30");
	b = SUBMIT("--", "sleep", "30");
	json_decref(wait_task(a, "RUNNING", 5000));
	json_decref(wait_task(b, "RUNNING", 5000));
	worker_start(1, "w2", 2, NULL);
	WAIT_ALIVE("w2");

	t0 = nd_test_now_ms();
	cr_assert(kill(workers[0], SIGTERM) == 0);
	st = nd_test_wait_pid(workers[0], 5000);
	cr_assert_eq(st, 0, "the stopping worker exited %d", st);
	workers[0] = 0;
	t = wait_task(b, "LOST", 2000);
	cr_assert(!strcmp(jstr(t, "reason"), "worker stopping"),
		  "want the reason \"worker stopping\": %s", jdump(t));
	json_decref(t);
	t = wait_task(a, "RUNNING", 3000);
	while (jint(t, "attempt") != 2 && nd_test_now_ms() - t0 < 3000) {
		json_decref(t);
		nd_test_sleep_ms(50);
		t = task_get(a);
	}
	cr_assert(!strcmp(jstr(t, "node"), "w2") && jint(t, "attempt") == 2,
		  "want its retry running on w2: %s", jdump(t));
	json_decref(t);
	/* LEFT at once: well before a heartbeat timeout (3 s) */
	wait_node("w1", "LEFT", 1000);
	cr_assert(nd_test_now_ms() - t0 < 2500, "LEFT after %lld ms",
		  (long long)(nd_test_now_ms() - t0));
	nd_test_sleep_ms(3500);
	wait_node("w1", "LEFT", 100); /* not DEAD later either */
	STOP_OK(&d);
}

/*
 * `noded worker --drain`: SIGTERM makes the node take no new task while
 * its running one finishes; then the worker leaves (LEFT) and exits 0.
 */
Test(tasks, worker_drain_lets_the_running_task_finish)
{
	const char *argv[] = { nd_test_bin(), "worker", "--master", master,
			       "--name", "w1", "--slots", "2", "--drain",
			       NULL };
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	uint64_t a, b;
	json_t *arr, *t;
	int st;

	MASTER_START();
	workers[0] = nd_test_spawn(argv, null_fd, null_fd,
				   getenv("ND_TEST_VERBOSE") ? -1 : null_fd);
	close(null_fd);
	cr_assert(workers[0] > 0, "%s", nd_test_why);
	WAIT_ALIVE("w1");
	a = SUBMIT("--", "sleep", "3");
	json_decref(wait_task(a, "RUNNING", 5000));
	cr_assert(kill(workers[0], SIGTERM) == 0);
	nd_test_sleep_ms(700);
	arr = nodes_get();
	t = node_find(arr, "w1");
	cr_assert(t && !strcmp(jstr(t, "state"), "ALIVE") &&
			  json_is_true(json_object_get(t, "draining")),
		  "want w1 ALIVE and draining: %s", jdump(arr));
	json_decref(arr);
	b = SUBMIT("--node", "w1", "--wait-for-node", "--", "true");
	nd_test_sleep_ms(500);
	t = task_get(b);
	cr_assert(!strcmp(jstr(t, "state"), "PENDING"),
		  "a draining node got a new task: %s", jdump(t));
	json_decref(t);
	t = wait_task(a, "SUCCEEDED", 5000);
	json_decref(t);
	st = nd_test_wait_pid(workers[0], 5000);
	cr_assert_eq(st, 0, "the draining worker exited %d", st);
	workers[0] = 0;
	wait_node("w1", "LEFT", 2000);
	t = task_get(b);
	cr_assert(!strcmp(jstr(t, "state"), "PENDING"), "%s", jdump(t));
	json_decref(t);
	STOP_OK(&d);
}

/* ---- jobs, waiting and attempts ---- */

/* The id b printed on stderr as "noded: WHAT ID" (run --print-id), waited
 * for up to timeout_ms. */
static uint64_t bg_printed_id(struct bg *b, const char *what, int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;
	char want[32];

	snprintf(want, sizeof(want), "noded: %s ", what);
	for (;;) {
		const char *e = bg_stderr(b), *p = strstr(e, want);

		if (p && strchr(p, '\n'))
			return strtoull(p + strlen(want), NULL, 10);
		cr_assert(nd_test_now_ms() < deadline, "`%s` printed no \"%s"
			  "ID\" line within %d ms; stderr: %s", b->cmd, want,
			  timeout_ms, e);
		nd_test_sleep_ms(20);
	}
}

/* `noded submit --all ...` of two nodes: the job id it printed. */
static uint64_t submit_job(const char *const args[])
{
	static struct nd_test_cli s;
	unsigned long long job = 0;

	nd_test_cli_run(&s, master, ND_TEST_CLI_MS, args);
	EXPECT_STATUS(&s, 0);
	cr_assert(sscanf(s.out, "job %llu:", &job) == 1 && job,
		  "`%s` printed \"%s\", want job lines", s.cmd, s.out);
	return job;
}

/* `tasks --json ARGS...` as an array (caller decrefs). */
#define TASKS_JSON(...) CLI_JSON("tasks", "--json", __VA_ARGS__)

Test(tasks, job_shows_a_fan_out_by_state_and_tasks_filter_by_job_and_node)
{
	char script[256], job_s[32];
	uint64_t job, other;
	json_t *j, *arr, *t;
	size_t i;

	make_tmpdir();
	MASTER_START();
	/* one after the other: two workers making their shared state
	 * directory's node id at the same time can collide */
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");
	worker_start(1, "w2", 2, NULL);
	WAIT_ALIVE("w2");
	/* exactly one node makes the directory first (mkdir is atomic) */
	snprintf(script, sizeof(script),
		 "mkdir '%s/a' 2>/dev/null && exit 0 || exit 3", tmpdir);
	job = submit_job((const char *const[]){ "submit", "--all", "--shell",
						"--", script, NULL });
	snprintf(job_s, sizeof(job_s), "%" PRIu64, job);
	other = SUBMIT("--node", "w1", "--", "true");

	/* wait --job: the largest status of its tasks, as run --all */
	CLI(&R, "wait", "--job", job_s);
	EXPECT_STATUS(&R, 3);
	cr_expect(strstr(R.err, ": FAILED, exit status 3 (task "),
		  "the failed node is named: %s", R.err);
	cr_expect(strstr(R.err, "1 SUCCEEDED; 1 FAILED"), "%s", R.err);

	CLI(&R, "job", job_s);
	EXPECT_STATUS(&R, 0);
	cr_expect(!strncmp(R.out, "job ", 4) &&
		  strstr(R.out, ": 2 tasks: 1 SUCCEEDED, 1 FAILED\n"),
		  "job %s printed: %s", job_s, R.out);
	cr_expect(strstr(R.out, "SUCCEEDED ") && strstr(R.out, "FAILED "),
		  "%s", R.out);
	j = CLI_JSON("job", job_s, "--json");
	cr_expect_eq(jint(j, "job_id"), (long long)job, "%s", jdump(j));
	cr_expect_eq(jint(j, "count"), 2, "%s", jdump(j));
	cr_expect_eq(jint(json_object_get(j, "by_state"), "SUCCEEDED"), 1);
	cr_expect_eq(jint(json_object_get(j, "by_state"), "FAILED"), 1);
	cr_expect_eq(json_array_size(json_object_get(j, "tasks")), 2);
	json_decref(j);

	/* the master filters: by job, by node, by both, with the state */
	arr = TASKS_JSON("--job", job_s);
	cr_assert_eq(json_array_size(arr), 2, "%s", jdump(arr));
	json_array_foreach(arr, i, t)
		cr_expect_eq(jint(t, "job_id"), (long long)job, "%s", jdump(t));
	json_decref(arr);
	arr = TASKS_JSON("--node", "w1");
	cr_assert_eq(json_array_size(arr), 2, "the job's task and the other "
		     "one on w1: %s", jdump(arr));
	json_array_foreach(arr, i, t)
		cr_expect_str_eq(jstr(t, "node"), "w1");
	cr_expect_eq(jint(json_array_get(arr, 0), "id"), (long long)other,
		     "newest first");
	json_decref(arr);
	arr = TASKS_JSON("--job", job_s, "--node", "w2");
	cr_assert_eq(json_array_size(arr), 1, "%s", jdump(arr));
	cr_expect_str_eq(jstr(json_array_get(arr, 0), "node"), "w2");
	json_decref(arr);
	arr = TASKS_JSON("--job", job_s, "--state", "failed");
	cr_assert_eq(json_array_size(arr), 1, "%s", jdump(arr));
	json_decref(arr);
	arr = TASKS_JSON("--node", "nobody");
	cr_expect_eq(json_array_size(arr), 0, "%s", jdump(arr));
	json_decref(arr);

	/* a job that is not one: a clear error */
	CLI(&R, "job", "12345");
	EXPECT_STATUS(&R, 1);
	cr_expect(strstr(R.err, "no job 12345"), "%s", R.err);
	CLI(&R, "wait", "--job", "12345");
	EXPECT_STATUS(&R, 1);
	CLI(&R, "tasks", "--job", "x");
	EXPECT_STATUS(&R, 2);
	CLI(&R, "wait", "5", "--job", job_s);
	EXPECT_STATUS(&R, 2);
	cr_expect(strstr(R.err, "not both"), "%s", R.err);
	STOP_OK(&d);
}

Test(tasks, wait_exits_with_the_status_and_times_out_and_run_prints_its_id)
{
	char id_s[32];
	struct bg *b;
	uint64_t id;
	int64_t t0;
	int st;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");

	/* run --print-id says the id at once; another terminal waits on it */
	b = BG("run", "--print-id", "--", "sh", "-c", "sleep 2; exit 7");
	id = bg_printed_id(b, "task", 10000);
	snprintf(id_s, sizeof(id_s), "%" PRIu64, id);
	t0 = nd_test_now_ms();
	CLI(&R, "wait", id_s, "--timeout", "0.3");
	EXPECT_STATUS(&R, 254);
	cr_expect(strstr(R.err, "not ended after --timeout 0.3 s"), "%s",
		  R.err);
	cr_expect(nd_test_now_ms() - t0 < 1900, "--timeout 0.3 took %lld ms",
		  (long long)(nd_test_now_ms() - t0));
	CLI(&R, "wait", id_s);
	EXPECT_STATUS(&R, 7);
	EXPECT_OUT(&R, "");
	st = bg_wait(b, 5000);
	cr_expect_eq(st, 7, "run exited %d", st);
	/* an ended task: at once, the same status */
	CLI(&R, "wait", id_s, "--timeout", "5");
	EXPECT_STATUS(&R, 7);

	/* killed by a signal, as run: 128+N, with the end note */
	id = SUBMIT("--", "sh", "-c", "kill -9 $$");
	snprintf(id_s, sizeof(id_s), "%" PRIu64, id);
	CLI(&R, "wait", id_s);
	EXPECT_STATUS(&R, 128 + 9);
	cr_expect(strstr(R.err, "killed by signal 9"), "%s", R.err);
	CLI(&R, "wait", "999999999");
	EXPECT_STATUS(&R, 1);
	CLI(&R, "wait");
	EXPECT_STATUS(&R, 2);
	STOP_OK(&d);
}

Test(tasks, cancel_job_cancels_each_task_that_has_not_ended)
{
	char job_s[32];
	uint64_t job;
	json_t *arr, *t;
	size_t i;

	MASTER_START();
	/* one after the other: two workers making their shared state
	 * directory's node id at the same time can collide */
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");
	worker_start(1, "w2", 2, NULL);
	WAIT_ALIVE("w2");
	job = submit_job((const char *const[]){ "submit", "--all", "--",
						"sleep", "30", NULL });
	snprintf(job_s, sizeof(job_s), "%" PRIu64, job);
	arr = TASKS_JSON("--job", job_s);
	json_array_foreach(arr, i, t)
		json_decref(wait_task((uint64_t)jint(t, "id"), "RUNNING",
				      5000));
	json_decref(arr);

	CLI(&R, "cancel", "--job", job_s);
	EXPECT_STATUS(&R, 0);
	cr_expect_eq(count_of(R.out, ": CANCELLED\n"), 2,
		     "want a CANCELLED line per task: %s", R.out);
	arr = TASKS_JSON("--job", job_s);
	cr_assert_eq(json_array_size(arr), 2);
	json_array_foreach(arr, i, t)
		cr_expect_str_eq(jstr(t, "state"), "CANCELLED", "%s", jdump(t));
	json_decref(arr);
	/* the job's summary agrees; nothing is left to cancel */
	CLI(&R, "job", job_s);
	cr_expect(strstr(R.out, ": 2 tasks: 2 CANCELLED\n"), "%s", R.out);
	CLI(&R, "cancel", "--job", job_s);
	EXPECT_STATUS(&R, 0);
	cr_expect(strstr(R.out, "nothing to cancel"), "%s", R.out);
	/* as run: a cancelled task killed by SIGTERM is 128+15 */
	CLI(&R, "wait", "--job", job_s);
	EXPECT_STATUS(&R, 128 + 15);
	STOP_OK(&d);
}

Test(tasks, logs_follow_exits_with_the_task_status_and_255_without_master)
{
	char id_s[32], line[64];
	struct bg *b;
	uint64_t id;
	int st;

	MASTER_START();
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");
	id = SUBMIT("--", "sh", "-c", "echo hi; sleep 0.5; exit 4");
	snprintf(id_s, sizeof(id_s), "%" PRIu64, id);
	CLI(&R, "logs", id_s, "--follow");
	EXPECT_STATUS(&R, 4);
	EXPECT_OUT(&R, "hi\n");
	/* without --follow: the output, and 0 */
	CLI(&R, "logs", id_s);
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "hi\n");

	/* the master goes while logs --follow waits: 255, as run */
	id = SUBMIT("--", "sh", "-c", "echo waiting; exec sleep 30");
	snprintf(id_s, sizeof(id_s), "%" PRIu64, id);
	b = BG("logs", id_s, "--follow");
	bg_line(b, line, sizeof(line), 10000);
	cr_assert_str_eq(line, "waiting");
	cr_assert(kill(d.pid, SIGKILL) == 0);
	st = bg_wait(b, 10000);
	cr_expect_eq(st, 255, "logs --follow exited %d when the master was "
		     "lost; stderr: %s", st, bg_stderr(b));
	cr_expect(strstr(bg_stderr(b), "lost the connection to the master"),
		  "%s", bg_stderr(b));
	nd_test_daemon_stop(&d);
}

Test(tasks, retried_task_lists_both_attempts_and_run_says_where)
{
	char first[32], second[32], id_s[32], want[160];
	const char *err;
	json_t *t, *as, *a;
	struct bg *b;
	uint64_t id;
	int st;

	MASTER_START("--heartbeat-timeout", "2", "--lease", "4");
	/* one after the other: two workers making their shared state
	 * directory's node id at the same time can collide */
	worker_start(0, "w1", 2, NULL);
	WAIT_ALIVE("w1");
	worker_start(1, "w2", 2, NULL);
	WAIT_ALIVE("w2");

	b = BG("run", "--print-id", "--retries", "1", "--", "sh", "-c",
	       "echo started; sleep 3; echo done");
	id = bg_printed_id(b, "task", 10000);
	snprintf(id_s, sizeof(id_s), "%" PRIu64, id);
	t = wait_task(id, "RUNNING", 5000);
	snprintf(first, sizeof(first), "%s", jstr(t, "node"));
	json_decref(t);
	bg_line(b, want, sizeof(want), 5000);
	cr_assert_str_eq(want, "started");
	worker_kill(worker_index(first));
	snprintf(second, sizeof(second), "%s", strcmp(first, "w1") ? "w1" :
		 "w2");

	/* retried once its lease is over (~5 s), 3 s more on the other */
	st = bg_wait(b, 4000 + 1000 + 3000 + 5000);
	err = bg_stderr(b);
	cr_expect_eq(st, 0, "run exited %d; stderr: %s", st, err);
	snprintf(want, sizeof(want), "noded: task %s: attempt 1 on %s was "
		 "lost (node %s died", id_s, first, first);
	cr_expect(strstr(err, want), "run did not say \"%s\": %s", want, err);
	cr_expect(strstr(err, "); retrying as attempt 2\n"), "%s", err);
	snprintf(want, sizeof(want), "noded: task %s: attempt 2 runs on %s\n",
		 id_s, second);
	cr_expect(strstr(err, want), "run did not say \"%s\": %s", want, err);
	snprintf(want, sizeof(want), "noded: --- task %s: output of attempt 2 "
		 "---\n", id_s);
	cr_expect(strstr(err, want), "no marker \"%s\": %s", want, err);
	bg_line(b, want, sizeof(want), 1000);
	cr_expect_str_eq(want, "started", "attempt 2's output");
	bg_line(b, want, sizeof(want), 1000);
	cr_expect_str_eq(want, "done");

	/* task: every attempt, where, how it ended and why */
	t = task_get(id);
	as = json_object_get(t, "attempts");
	cr_assert_eq(json_array_size(as), 2, "%s", jdump(t));
	a = json_array_get(as, 0);
	cr_expect(jint(a, "attempt") == 1 && !strcmp(jstr(a, "node"), first) &&
		  !strcmp(jstr(a, "state"), "LOST") &&
		  strstr(jstr(a, "reason"), "died") &&
		  jint(a, "assigned_unix_ms") && jint(a, "ended_unix_ms") >=
		  jint(a, "assigned_unix_ms") + 2000, "attempt 1: %s", jdump(a));
	a = json_array_get(as, 1);
	cr_expect(jint(a, "attempt") == 2 && !strcmp(jstr(a, "node"), second) &&
		  !strcmp(jstr(a, "state"), "SUCCEEDED") &&
		  jint(a, "exit_code") == 0 && jint(a, "started_unix_ms") &&
		  jint(a, "ended_unix_ms") >= jint(a, "started_unix_ms") + 2500,
		  "attempt 2: %s", jdump(a));
	json_decref(t);
	CLI(&R, "task", id_s);
	EXPECT_STATUS(&R, 0);
	/* (its start may be unknown: a worker reports it with the end, or
	 * after a second) */
	snprintf(want, sizeof(want), "attempt 1:  %s, LOST, ", first);
	cr_expect(strstr(R.out, want), "want \"%s\" in: %s", want, R.out);
	snprintf(want, sizeof(want), "attempt 2:  %s, SUCCEEDED, started ",
		 second);
	cr_expect(strstr(R.out, want), "want \"%s\" in: %s", want, R.out);
	/* the kept output: both attempts', the second after its marker */
	CLI(&R, "logs", id_s);
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "started\nstarted\ndone\n");
	snprintf(want, sizeof(want), "noded: --- task %s: output of attempt 2 "
		 "---\n", id_s);
	EXPECT_ERR(&R, want);
	STOP_OK(&d);
}
