/*
 * A node's lifecycle as an operator drives it (src/node/lifecycle.c), end
 * to end: a real master and real `noded worker` processes on loopback,
 * through the real CLI (`noded node drain|eligible|rm`, `nodes`, `submit`,
 * `task`) and the HTTP API (POST /v1/nodes/NAME/drain, /eligible, DELETE
 * /v1/nodes/NAME), each verb and each bad case.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "harness.h"

#define MAX_WORKERS 3

static struct nd_test_daemon d;
static char master[32];
static int http_port;
static pid_t workers[MAX_WORKERS];
static struct nd_test_cli R;

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	memset(workers, 0, sizeof(workers));
	master[0] = '\0';
	http_port = 0;
}

/* Kills what is left of the `sleep ARG` commands this file runs (their
 * args start with 31.). */
static size_t sleeps(const char *arg, bool kill_them);

static void teardown(void)
{
	for (int i = 0; i < MAX_WORKERS; i++)
		if (workers[i] > 0)
			nd_test_kill_pid(workers[i]);
	nd_test_daemon_stop(&d);
	sleeps("31.", true);
}

TestSuite(lifecycle, .init = setup, .fini = teardown, .timeout = 90);

/* ---- daemons ---- */

/* Reads the "http on 127.0.0.1:PORT" line that follows "listening on". */
static void read_http_port(void)
{
	http_port = nd_test_daemon_http_port(&d);
	cr_assert(http_port > 0, "%s", nd_test_why);
}

#define MASTER_START(...)                                                    \
	do {                                                                 \
		DAEMON_START(&d, ##__VA_ARGS__);                             \
		snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);    \
	} while (0)

/* `noded worker --master M --name NAME --slots SLOTS` into workers[i]. */
static void worker_start(int i, const char *name, int slots)
{
	char slots_s[16];
	const char *argv[] = { nd_test_bin(), "worker", "--master", master,
			       "--name", name, "--slots", slots_s, NULL };
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	cr_assert(i >= 0 && i < MAX_WORKERS && workers[i] == 0);
	snprintf(slots_s, sizeof(slots_s), "%d", slots);
	workers[i] = nd_test_spawn(argv, null_fd, null_fd,
				   getenv("ND_TEST_VERBOSE") ? -1 : null_fd);
	close(null_fd);
	cr_assert(workers[i] > 0, "starting worker %s: %s", name, nd_test_why);
}

/* ---- the CLI ---- */

static json_t *task_get(uint64_t id)
{
	char ids[32];

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	return CLI_JSON("task", ids, "--json");
}

static bool terminal(const char *s)
{
	return !strcmp(s, "SUCCEEDED") || !strcmp(s, "FAILED") ||
	       !strcmp(s, "TIMED_OUT") || !strcmp(s, "CANCELLED") ||
	       !strcmp(s, "LOST");
}

/* Polls task id until it is in state want (and, attempt > 0, at that
 * attempt); returns the record (caller decrefs). */
static json_t *wait_task(uint64_t id, const char *want, int attempt,
			 int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;

	for (;;) {
		json_t *t = task_get(id);
		const char *st = jstr(t, "state");

		if (!strcmp(st, want) && (!attempt || jint(t, "attempt") ==
						      attempt))
			return t;
		cr_assert(!terminal(st), "task %" PRIu64 " ended %s, want %s: "
			  "%s", id, st, want, jdump(t));
		cr_assert(nd_test_now_ms() < deadline, "task %" PRIu64 " not "
			  "%s (attempt %d) within %d ms: %s", id, want, attempt,
			  timeout_ms, jdump(t));
		json_decref(t);
		nd_test_sleep_ms(50);
	}
}

static uint64_t submit_v(const char *const args[])
{
	static struct nd_test_cli s;
	uint64_t id;
	char *end;

	nd_test_cli_run(&s, master, ND_TEST_CLI_MS, args);
	EXPECT_STATUS(&s, 0);
	id = strtoull(s.out, &end, 10);
	cr_assert(id > 0 && *end == '\n', "`%s` printed \"%s\"", s.cmd,
		  s.out);
	return id;
}

#define SUBMIT(...) submit_v((const char *const[]){ "submit", __VA_ARGS__, NULL })

/* The node of that name in `nodes --json` (caller decrefs), or NULL. */
static json_t *node_get(const char *name)
{
	json_t *arr = CLI_JSON("nodes", "--json"), *n, *found = NULL;
	size_t i;

	cr_assert(json_is_array(arr), "nodes --json: %s", jdump(arr));
	json_array_foreach(arr, i, n)
		if (!strcmp(jstr(n, "name"), name))
			found = json_incref(n);
	json_decref(arr);
	return found;
}

/* Polls until node name is in state want ("absent": not listed). */
static void wait_node(const char *name, const char *want, int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;

	for (;;) {
		json_t *n = node_get(name);
		const char *st = n ? jstr(n, "state") : "absent";
		bool ok = !strcmp(st, want) &&
			  (strcmp(want, "ALIVE") || jint(n, "slots_total"));

		if (ok) {
			json_decref(n);
			return;
		}
		cr_assert(nd_test_now_ms() < deadline, "node %s not %s within "
			  "%d ms: %s", name, want, timeout_ms,
			  n ? jdump(n) : "absent");
		json_decref(n);
		nd_test_sleep_ms(100);
	}
}

/* Asserts the last command's stderr has want. */
#define EXPECT_ERR_HAS(r, want)                                              \
	cr_assert(strstr((r)->err, (want)), "`%s` printed \"%s\" on stderr, " \
		  "want it to say \"%s\"", (r)->cmd, (r)->err, (want))
#define EXPECT_OUT_HAS(r, want)                                              \
	cr_assert(strstr((r)->out, (want)), "`%s` printed \"%s\" on stdout, " \
		  "want it to say \"%s\"", (r)->cmd, (r)->out, (want))

static size_t sleeps(const char *arg, bool kill_them)
{
	DIR *dir = opendir("/proc");
	struct dirent *e;
	size_t n = 0;

	while (dir && (e = readdir(dir))) {
		char path[64], buf[128];
		pid_t pid = (pid_t)atoi(e->d_name);
		ssize_t len;
		int fd;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		/* "sleep\0ARG\0", ARG starting with arg */
		if (len < 7 || memcmp(buf, "sleep", 6) ||
		    strncmp(buf + 6, arg, strlen(arg)) ||
		    !nd_test_pid_alive(pid))
			continue;
		n++;
		if (kill_them)
			kill(pid, SIGKILL);
	}
	if (dir)
		closedir(dir);
	return n;
}

/* Polls until exactly want `sleep ARG` processes run. */
static void wait_sleeps(const char *arg, size_t want, int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;
	size_t n;

	while ((n = sleeps(arg, false)) != want) {
		cr_assert(nd_test_now_ms() < deadline, "%zu `sleep %s` "
			  "processes run, want %zu", n, arg, want);
		nd_test_sleep_ms(50);
	}
}

/* ---- drain and eligible ---- */

/*
 * An operator's drain: the node takes no new task (any-node tasks go
 * elsewhere, one for it by name waits), the running one finishes, the
 * drain outlives its worker's restart, and `eligible` undoes it.
 */
Test(lifecycle, drain_takes_no_new_task_until_eligible)
{
	uint64_t a, b, c[3];
	json_t *n, *t;

	MASTER_START();
	/* one at a time: two new workers would race to make the node id
	 * file of their shared state directory */
	worker_start(0, "w1", 2);
	wait_node("w1", "ALIVE", 5000);
	worker_start(1, "w2", 2);
	wait_node("w2", "ALIVE", 5000);
	a = SUBMIT("--node", "w1", "--", "sleep", "2");
	json_decref(wait_task(a, "RUNNING", 0, 5000));

	CLI(&R, "node", "drain", "w1");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "node w1: ALIVE, drained by an operator, 1 task "
		   "running\n");
	n = node_get("w1");
	cr_assert(n && !strcmp(jstr(n, "state"), "ALIVE") &&
			  json_is_true(json_object_get(n, "draining")) &&
			  json_is_true(json_object_get(n, "drain_operator")) &&
			  json_is_false(json_object_get(n, "drain_worker")) &&
			  jint(n, "drain_deadline_unix_ms") == 0 &&
			  jint(n, "drain_since_unix_ms") > 0,
		  "want w1 ALIVE, drained by the operator, no deadline: %s",
		  jdump(n));
	json_decref(n);
	n = node_get("w2");
	cr_assert(json_is_false(json_object_get(n, "drain_operator")) &&
			  json_is_false(json_object_get(n, "draining")),
		  "%s", jdump(n));
	json_decref(n);
	CLI(&R, "nodes");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT_HAS(&R, "DRAIN");
	EXPECT_OUT_HAS(&R, " operator ");

	/* tasks for any node go elsewhere; one for w1 waits */
	for (int i = 0; i < 3; i++)
		c[i] = SUBMIT("--", "true");
	for (int i = 0; i < 3; i++) {
		t = wait_task(c[i], "SUCCEEDED", 0, 10000);
		cr_assert(!strcmp(jstr(t, "node"), "w2"), "a drained node got "
			  "a new task: %s", jdump(t));
		json_decref(t);
	}
	b = SUBMIT("--node", "w1", "--wait-for-node", "--", "true");
	nd_test_sleep_ms(600);
	t = task_get(b);
	cr_assert(!strcmp(jstr(t, "state"), "PENDING"), "a drained node got "
		  "a new task: %s", jdump(t));
	json_decref(t);
	/* and a fan-out leaves it out */
	CLI(&R, "run", "--all", "--", "true");
	EXPECT_STATUS(&R, 0);
	cr_assert(strstr(R.err, "on 1 node") && !strstr(R.out, "w1:"),
		  "a fan-out ran on the drained node: %s / %s", R.out, R.err);
	/* its running task finishes */
	json_decref(wait_task(a, "SUCCEEDED", 0, 10000));

	/* the drain is the operator's, not the worker's: it stays across a
	 * restart of the worker (LEFT, then back) */
	cr_assert_eq(kill(workers[0], SIGTERM), 0);
	cr_assert_eq(nd_test_wait_pid(workers[0], 10000), 0);
	workers[0] = 0;
	wait_node("w1", "LEFT", 5000);
	worker_start(0, "w1", 2);
	wait_node("w1", "ALIVE", 5000);
	nd_test_sleep_ms(500);
	n = node_get("w1");
	cr_assert(json_is_true(json_object_get(n, "drain_operator")),
		  "the operator's drain was lost when its worker came back: "
		  "%s", jdump(n));
	json_decref(n);
	t = task_get(b);
	cr_assert(!strcmp(jstr(t, "state"), "PENDING"), "%s", jdump(t));
	json_decref(t);

	/* drain again: fine, and still one drain */
	CLI(&R, "node", "drain", "w1", "--json");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT_HAS(&R, "\"drain_operator\": true");

	CLI(&R, "node", "eligible", "w1");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT_HAS(&R, "node w1: ALIVE, eligible, ");
	t = wait_task(b, "SUCCEEDED", 0, 10000);
	cr_assert(!strcmp(jstr(t, "node"), "w1"), "%s", jdump(t));
	json_decref(t);
	n = node_get("w1");
	cr_assert(json_is_false(json_object_get(n, "drain_operator")) &&
			  json_is_false(json_object_get(n, "draining")) &&
			  jint(n, "drain_since_unix_ms") == 0,
		  "%s", jdump(n));
	json_decref(n);
	/* eligible again: nothing to undo, still fine */
	CLI(&R, "node", "eligible", "w1");
	EXPECT_STATUS(&R, 0);
	STOP_OK(&d);
}

/*
 * At its deadline a drain stops the tasks still running on the node: one
 * with retries runs again elsewhere, one for that node by name ends LOST
 * with a reason naming the drain, one that ended by itself first keeps
 * its own ending, and no process of a stopped attempt is left.
 */
Test(lifecycle, drain_deadline_stops_tasks_retried_or_lost)
{
	uint64_t a, b, c;
	json_t *t, *n;
	int64_t t0;

	MASTER_START();
	worker_start(0, "w1", 3);
	wait_node("w1", "ALIVE", 5000);
	a = SUBMIT("--retries", "1", "--", "sleep", "31.1");
	b = SUBMIT("--node", "w1", "--", "sleep", "31.2");
	c = SUBMIT("--node", "w1", "--", "sleep", "1");
	json_decref(wait_task(a, "RUNNING", 0, 5000));
	json_decref(wait_task(b, "RUNNING", 0, 5000));
	json_decref(wait_task(c, "RUNNING", 0, 5000));
	worker_start(1, "w2", 2);
	wait_node("w2", "ALIVE", 5000);

	t0 = nd_test_now_ms();
	CLI(&R, "node", "drain", "w1", "--deadline", "2");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT_HAS(&R, "drained by an operator (deadline in 2 s)");
	n = node_get("w1");
	cr_assert(jint(n, "drain_deadline_unix_ms") >
			  jint(n, "drain_since_unix_ms") + 1000,
		  "want the deadline 2 s on: %s", jdump(n));
	json_decref(n);

	/* ended by itself before the deadline: its own ending */
	t = wait_task(c, "SUCCEEDED", 0, 10000);
	json_decref(t);
	t = wait_task(b, "LOST", 0, 15000);
	cr_assert(!strcmp(jstr(t, "reason"), "stopped at the drain deadline "
			  "of node w1"), "want the drain named: %s", jdump(t));
	cr_assert(nd_test_now_ms() - t0 >= 1500, "stopped before the "
		  "deadline: %lld ms", (long long)(nd_test_now_ms() - t0));
	json_decref(t);
	t = wait_task(a, "RUNNING", 2, 10000);
	cr_assert(!strcmp(jstr(t, "node"), "w2"), "want the retry on w2: %s",
		  jdump(t));
	json_decref(t);
	wait_sleeps("31.2", 0, 5000);
	wait_sleeps("31.1", 1, 5000); /* attempt 2's, on w2 */
	CLI(&R, "nodes");
	EXPECT_OUT_HAS(&R, "operator stop");

	/* a deadline of 0 stops at once; the retry has no retries left */
	CLI(&R, "node", "drain", "w2", "--deadline", "0");
	EXPECT_STATUS(&R, 0);
	t = wait_task(a, "LOST", 0, 10000);
	cr_assert(!strcmp(jstr(t, "reason"), "stopped at the drain deadline "
			  "of node w2") && jint(t, "attempt") == 2,
		  "%s", jdump(t));
	json_decref(t);
	wait_sleeps("31.", 0, 5000);
	STOP_OK(&d);
}

/* ---- rm and forgetting ---- */

/*
 * rm forgets a DEAD node once its tasks' lease is over (they are not
 * changed by it) and a LEFT one; refuses a live one, an unknown one, and
 * a DEAD one whose tasks still wait for their lease; the CLI's bad cases.
 */
Test(lifecycle, rm_forgets_dead_or_left_and_refuses_the_rest)
{
	uint64_t a;
	json_t *t, *n;

	/* (--forget-dead 0: never by itself, only by rm) */
	MASTER_START("--heartbeat-timeout", "2", "--lease", "5",
		     "--forget-dead", "0");
	/* one at a time: two new workers would race to make the node id
	 * file of their shared state directory */
	worker_start(0, "w1", 2);
	wait_node("w1", "ALIVE", 5000);
	worker_start(1, "w2", 2);
	wait_node("w2", "ALIVE", 5000);

	CLI(&R, "node", "rm", "w1");
	EXPECT_STATUS(&R, 1);
	EXPECT_ERR(&R, "noded: rm: node 'w1' is ALIVE: only a DEAD or LEFT "
		   "node can be removed (stop its worker first; `node drain` "
		   "to let its tasks finish)\n");
	CLI(&R, "node", "rm", "nope");
	EXPECT_STATUS(&R, 1);
	EXPECT_ERR(&R, "noded: rm: no node named 'nope'\n");
	CLI(&R, "node", "drain", "nope", "--deadline", "5");
	EXPECT_STATUS(&R, 1);
	EXPECT_ERR(&R, "noded: drain: no node named 'nope'\n");
	CLI(&R, "node", "eligible", "nope");
	EXPECT_STATUS(&R, 1);
	EXPECT_ERR(&R, "noded: eligible: no node named 'nope'\n");

	/* usage: exit 2, nothing sent */
	CLI(&R, "node");
	EXPECT_STATUS(&R, 2);
	EXPECT_ERR_HAS(&R, "give a verb (drain, eligible, rm) and a node name");
	CLI(&R, "node", "drain");
	EXPECT_STATUS(&R, 2);
	CLI(&R, "node", "frob", "w1");
	EXPECT_STATUS(&R, 2);
	EXPECT_ERR_HAS(&R, "unknown verb 'frob'");
	CLI(&R, "node", "rm", "w1", "w2");
	EXPECT_STATUS(&R, 2);
	CLI(&R, "node", "rm", "w1", "--deadline", "3");
	EXPECT_STATUS(&R, 2);
	EXPECT_ERR_HAS(&R, "--deadline is for drain only");
	CLI(&R, "node", "drain", "w1", "--deadline", "-1");
	EXPECT_STATUS(&R, 2);
	CLI(&R, "node", "drain", "w1", "--deadline", "1", "--deadline", "2");
	EXPECT_STATUS(&R, 2);
	CLI(&R, "node", "drain", "");
	EXPECT_STATUS(&R, 2);
	n = node_get("w1");
	cr_assert(json_is_false(json_object_get(n, "drain_operator")),
		  "a refused command drained it: %s", jdump(n));
	json_decref(n);

	/* DEAD with a task whose lease is not over: refused, then removed */
	a = SUBMIT("--node", "w1", "--", "sleep", "31.3");
	json_decref(wait_task(a, "RUNNING", 0, 5000));
	nd_test_kill_pid(workers[0]);
	workers[0] = 0;
	wait_node("w1", "DEAD", 6000);
	t = task_get(a);
	if (!strcmp(jstr(t, "state"), "RUNNING")) { /* the usual case */
		CLI(&R, "node", "rm", "w1");
		EXPECT_STATUS(&R, 1);
		EXPECT_ERR_HAS(&R, "node 'w1' is DEAD but 1 of its tasks wait "
			       "for their lease to end");
	}
	json_decref(t);
	t = wait_task(a, "LOST", 0, 15000);
	json_decref(t);
	CLI(&R, "node", "rm", "w1");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "node w1 removed\n");
	n = node_get("w1");
	cr_assert_null(n, "w1 is still listed: %s", jdump(n));
	t = task_get(a);
	cr_assert(!strcmp(jstr(t, "state"), "LOST") &&
			  strstr(jstr(t, "reason"), "node w1 died"),
		  "its task changed: %s", jdump(t));
	json_decref(t);
	CLI(&R, "node", "rm", "w1");
	EXPECT_STATUS(&R, 1);
	EXPECT_ERR(&R, "noded: rm: no node named 'w1'\n");
	/* a task for it by name is now refused as for any unknown name */
	CLI(&R, "submit", "--node", "w1", "--", "true");
	EXPECT_STATUS(&R, 1);
	EXPECT_ERR_HAS(&R, "no node named 'w1'");

	/* LEFT: removed at once */
	cr_assert_eq(kill(workers[1], SIGTERM), 0);
	cr_assert_eq(nd_test_wait_pid(workers[1], 10000), 0);
	workers[1] = 0;
	wait_node("w2", "LEFT", 5000);
	CLI(&R, "node", "rm", "w2");
	EXPECT_STATUS(&R, 0);
	wait_node("w2", "absent", 100);
	/* and a worker may take a removed name again */
	worker_start(1, "w2", 2);
	wait_node("w2", "ALIVE", 5000);
	STOP_OK(&d);
}

/* --forget-dead: a DEAD node goes by itself; a worker back under its name
 * registers afresh. Bad values of the option are refused. */
Test(lifecycle, dead_nodes_are_forgotten_after_forget_dead)
{
	const char *bad[] = { nd_test_bin(), "master", "--forget-dead", "x",
			      NULL };
	int st;

	st = nd_test_run(bad, NULL, 0, R.err, sizeof(R.err), 10000);
	cr_assert_eq(st, 2, "--forget-dead x: exit %d (%s)", st, R.err);
	cr_assert(strstr(R.err, "--forget-dead wants a whole number"), "%s",
		  R.err);

	MASTER_START("--heartbeat-timeout", "2", "--forget-dead", "1");
	/* one at a time: two new workers would race to make the node id
	 * file of their shared state directory */
	worker_start(0, "w1", 1);
	wait_node("w1", "ALIVE", 5000);
	worker_start(1, "w2", 1);
	wait_node("w2", "ALIVE", 5000);
	nd_test_kill_pid(workers[0]);
	workers[0] = 0;
	wait_node("w1", "DEAD", 6000);
	wait_node("w1", "absent", 5000);
	wait_node("w2", "ALIVE", 100); /* a live node is never forgotten */
	worker_start(0, "w1", 1);
	wait_node("w1", "ALIVE", 5000);
	STOP_OK(&d);
}

/* ---- the HTTP API ---- */

/* One request on its own connection (Connection: close): the status, and
 * the body parsed as JSON into *j (caller decrefs; NULL: not JSON). */
static int http(const char *method, const char *path, const char *body,
		json_t **j)
{
	char req[1024], resp[16384];
	size_t len = 0;
	int fd = nd_test_connect(http_port), status = 0;
	const char *b;

	cr_assert(fd >= 0, "connect to the HTTP port: %s", nd_strerror(fd));
	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\nConnection: "
		 "close\r\nContent-Length: %zu\r\n\r\n%s", method, path,
		 body ? strlen(body) : 0, body ? body : "");
	ND_CHECK(nd_test_send_raw(fd, req, strlen(req)));
	for (;;) {
		ssize_t n = read(fd, resp + len, sizeof(resp) - 1 - len);

		cr_assert(n >= 0, "reading the response: %s", strerror(errno));
		if (n == 0 || len + (size_t)n >= sizeof(resp) - 1) {
			len += (size_t)n;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	resp[len] = '\0';
	cr_assert(sscanf(resp, "HTTP/1.1 %d", &status) == 1, "not HTTP: %s",
		  resp);
	b = strstr(resp, "\r\n\r\n");
	*j = b ? json_loads(b + 4, 0, NULL) : NULL;
	return status;
}

#define EXPECT_HTTP(want, method, path, body, j)                             \
	do {                                                                 \
		int st_ = http((method), (path), (body), (j));               \
		cr_assert_eq(st_, (want), "%s %s: %d, want %d: %s",          \
			     (method), (path), st_, (want), jdump(*(j)));    \
	} while (0)

Test(lifecycle, http_drain_eligible_and_delete)
{
	json_t *j = NULL;
	int64_t now;

	MASTER_START("--http", "127.0.0.1:0", "--heartbeat-timeout", "2",
		     "--lease", "4");
	read_http_port();
	worker_start(0, "w1", 1);
	wait_node("w1", "ALIVE", 5000);

	now = (int64_t)time(NULL) * 1000;
	EXPECT_HTTP(200, "POST", "/v1/nodes/w1/drain", "{\"deadline_s\": 60}",
		    &j);
	cr_assert(!strcmp(jstr(j, "name"), "w1") &&
			  json_is_true(json_object_get(j, "drain_operator")) &&
			  json_is_true(json_object_get(j, "draining")) &&
			  jint(j, "drain_deadline_unix_ms") > now + 55000 &&
			  jint(j, "drain_deadline_unix_ms") < now + 65000,
		  "%s", jdump(j));
	json_decref(j);
	EXPECT_HTTP(200, "GET", "/v1/nodes/w1", NULL, &j);
	cr_assert(json_is_true(json_object_get(j, "drain_operator")), "%s",
		  jdump(j));
	json_decref(j);
	/* no body: no deadline */
	EXPECT_HTTP(200, "POST", "/v1/nodes/w1/drain", NULL, &j);
	cr_assert(jint(j, "drain_deadline_unix_ms") == 0, "%s", jdump(j));
	json_decref(j);
	EXPECT_HTTP(200, "POST", "/v1/nodes/w1/eligible", NULL, &j);
	cr_assert(json_is_false(json_object_get(j, "drain_operator")) &&
			  json_is_false(json_object_get(j, "draining")),
		  "%s", jdump(j));
	json_decref(j);

	/* bad cases */
	EXPECT_HTTP(404, "POST", "/v1/nodes/nope/drain", NULL, &j);
	cr_assert(!strcmp(jstr(j, "error"), "no node named 'nope'"), "%s",
		  jdump(j));
	json_decref(j);
	EXPECT_HTTP(404, "POST", "/v1/nodes/nope/eligible", NULL, &j);
	json_decref(j);
	EXPECT_HTTP(404, "DELETE", "/v1/nodes/nope", NULL, &j);
	json_decref(j);
	EXPECT_HTTP(409, "DELETE", "/v1/nodes/w1", NULL, &j);
	cr_assert(strstr(jstr(j, "error"), "only a DEAD or LEFT node can be "
			 "removed"), "%s", jdump(j));
	json_decref(j);
	EXPECT_HTTP(405, "GET", "/v1/nodes/w1/drain", NULL, &j);
	json_decref(j);
	EXPECT_HTTP(405, "DELETE", "/v1/nodes/w1/eligible", NULL, &j);
	json_decref(j);
	EXPECT_HTTP(405, "DELETE", "/v1/nodes", NULL, &j);
	json_decref(j);
	EXPECT_HTTP(400, "POST", "/v1/nodes/w1/drain", "{\"deadline\": 5}",
		    &j);
	cr_assert(strstr(jstr(j, "error"), "unknown field"), "%s", jdump(j));
	json_decref(j);
	EXPECT_HTTP(400, "POST", "/v1/nodes/w1/drain",
		    "{\"deadline_s\": -1}", &j);
	json_decref(j);
	EXPECT_HTTP(400, "POST", "/v1/nodes/w1/drain",
		    "{\"deadline_s\": \"5\"}", &j);
	json_decref(j);
	EXPECT_HTTP(400, "POST", "/v1/nodes/w1/drain", "[1]", &j);
	json_decref(j);
	EXPECT_HTTP(400, "POST", "/v1/nodes/w1/drain", "{nope", &j);
	json_decref(j);
	EXPECT_HTTP(200, "GET", "/v1/nodes/w1", NULL, &j);
	cr_assert(json_is_false(json_object_get(j, "drain_operator")),
		  "a refused drain drained it: %s", jdump(j));
	json_decref(j);

	/* DEAD (nothing ran there): DELETE forgets it */
	nd_test_kill_pid(workers[0]);
	workers[0] = 0;
	wait_node("w1", "DEAD", 6000);
	EXPECT_HTTP(200, "DELETE", "/v1/nodes/w1", NULL, &j);
	cr_assert(!strcmp(jstr(j, "removed"), "w1"), "%s", jdump(j));
	json_decref(j);
	EXPECT_HTTP(404, "GET", "/v1/nodes/w1", NULL, &j);
	json_decref(j);
	EXPECT_HTTP(404, "DELETE", "/v1/nodes/w1", NULL, &j);
	json_decref(j);
	STOP_OK(&d);
}

/* ---- a worker cut off at the deadline, on the wire ---- */

/* A raw worker "raw": connects, registers, and reports running the
 * attempts given (n of them) as heartbeat seq; returns the fd. */
static int raw_worker(uint64_t seq, uint64_t *ids, uint32_t *attempts,
		      size_t n)
{
	Noded__Frame f = NODED__FRAME__INIT, *r;
	Noded__AssignTaskRequest ar;
	Noded__NodeStatus ns = NODED__NODE_STATUS__INIT;
	int fd = CONNECT(&d);

	HELLO(fd);
	nd_test_frame_assign(&f, &ar, 2, "raw");
	SEND_FRAME(fd, &f);
	r = RECV(fd);
	EXPECT_FRAME(r, NODED__FRAME_KIND__STREAM_ITEM, 2,
		     NODED__FRAME__BODY_ASSIGN_OPEN);
	nd_frame_free(r, NULL);
	ns.name = "raw";
	ns.slots_total = 1;
	ns.heartbeat_seq = seq;
	ns.n_running_tasks = ns.n_running_attempts = n;
	ns.running_tasks = ids;
	ns.running_attempts = attempts;
	noded__frame__init(&f);
	f.id = 100 + seq;
	f.kind = NODED__FRAME_KIND__NOTIFY;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &ns;
	SEND_FRAME(fd, &f);
	return fd;
}

/* The next stream item of body case want on fd, skipping heartbeat acks;
 * fails when none comes within ms. */
static Noded__Frame *raw_expect(int fd, Noded__Frame__BodyCase want, int ms)
{
	int64_t deadline = nd_test_now_ms() + ms;

	for (;;) {
		Noded__Frame *r = NULL;
		int left = (int)(deadline - nd_test_now_ms());
		int rc = left > 0 ? nd_test_recv_frame(fd, left, &r) :
				    -ETIMEDOUT;

		cr_assert(rc == 0, "no %s within %d ms: %s",
			  nd_frame_method_name(want), ms, nd_test_why);
		if (r->body_case == want)
			return r;
		cr_assert(r->body_case == NODED__FRAME__BODY_HEARTBEAT_ACK,
			  "want %s, got %s", nd_frame_method_name(want),
			  nd_test_describe(r));
		nd_frame_free(r, NULL);
	}
}

/*
 * The deadline passes while the node's worker is cut off (its connection
 * closed, within the lease): the attempt runs on there, and the worker is
 * told to stop it once it registers again; its report of the kill ends
 * the task LOST with the drain's reason.
 */
Test(lifecycle, drain_deadline_reaches_a_worker_that_comes_back)
{
	Noded__Frame f = NODED__FRAME__INIT, *r;
	Noded__TaskUpdate tu = NODED__TASK_UPDATE__INIT;
	Noded__ExecExited x = NODED__EXEC_EXITED__INIT;
	uint64_t id;
	uint32_t attempt;
	json_t *t;
	int fd;

	MASTER_START("--lease", "30");
	fd = raw_worker(1, NULL, NULL, 0);
	wait_node("raw", "ALIVE", 5000);
	id = SUBMIT("--node", "raw", "--", "sleep", "1");
	r = raw_expect(fd, NODED__FRAME__BODY_TASK, 5000);
	cr_assert_eq(r->task->task_id, id);
	attempt = r->task->attempt;
	nd_frame_free(r, NULL);
	close(fd);
	wait_node("raw", "SUSPECT", 5000);

	CLI(&R, "node", "drain", "raw", "--deadline", "0");
	EXPECT_STATUS(&R, 0);
	t = task_get(id);
	cr_assert(!strcmp(jstr(t, "state"), "ASSIGNED"), "%s", jdump(t));
	json_decref(t);

	fd = raw_worker(2, &id, &attempt, 1);
	r = raw_expect(fd, NODED__FRAME__BODY_TASK_CANCEL, 5000);
	cr_assert(r->task_cancel->task_id == id && !r->task_cancel->attempt,
		  "want a cancel of task %" PRIu64 ", got %s", id,
		  nd_test_describe(r));
	nd_frame_free(r, NULL);

	/* the worker killed it and says so */
	x.task_id = id;
	x.cancelled = true;
	x.signal = 15;
	tu.task_id = id;
	tu.attempt = attempt;
	tu.body_case = NODED__TASK_UPDATE__BODY_FINISHED;
	tu.finished = &x;
	f.id = 50;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_TASK_UPDATE;
	f.task_update = &tu;
	SEND_FRAME(fd, &f);
	t = wait_task(id, "LOST", 0, 5000);
	cr_assert(!strcmp(jstr(t, "reason"), "stopped at the drain deadline "
			  "of node raw"), "%s", jdump(t));
	json_decref(t);
	close(fd);
	STOP_OK(&d);
}
