/*
 * Who a node is, and which task an id names, end to end: a real master,
 * real `noded worker` processes and raw protocol connections on loopback.
 *
 * - A live node's name belongs to the worker that holds it (its node id):
 *   another id is refused, the same id replaces the old registration, and
 *   only the registering connection reports for the node.
 * - A task queued for a node that died does not wait silently for ever.
 * - A master never gives an id twice, restarted or not.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cli.h"
#include "harness.h"
#include "node/node_id.h"

#define MAX_WORKERS 2

static struct nd_test_daemon d;
static char master[32];
static pid_t workers[MAX_WORKERS];
static int worker_errs[MAX_WORKERS];
static int master_err = -1;
static char tmpdir[64];
static struct nd_test_cli R;

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	memset(workers, 0, sizeof(workers));
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/noded-ident-XXXXXX");
	cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
	char cmd[128];

	for (int i = 0; i < MAX_WORKERS; i++)
		if (workers[i] > 0)
			nd_test_kill_pid(workers[i]);
	nd_test_daemon_stop(&d);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd))
		cr_log_warn("could not remove %s", tmpdir);
}

TestSuite(ident, .init = setup, .fini = teardown, .timeout = 90);

/* ---- daemons ---- */

/* `noded master --listen 127.0.0.1:0 ARGS...` with its stderr kept in
 * master_err; sets `master`. */
static void master_start_v(const char *const args[])
{
	const char *argv[16] = { nd_test_bin(), "master", "--listen",
				 "127.0.0.1:0" };
	size_t n = 4;

	for (; args && *args; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	if (master_err < 0)
		master_err = memfd_create("master-stderr", MFD_CLOEXEC);
	cr_assert(master_err >= 0, "memfd_create: %s", strerror(errno));
	ND_CHECK(nd_test_daemon_start_err(&d, argv, master_err));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
}

#define MASTER_START(...)                                                    \
	master_start_v((const char *const[]){ "", ##__VA_ARGS__, NULL } + 1)

/* Polls fd's text until it holds needle; fails after timeout_ms. */
static void wait_text(int fd, const char *needle, int timeout_ms,
		      const char *what)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;

	while (!strstr(nd_test_memfd_text(fd), needle)) {
		cr_assert(nd_test_now_ms() < deadline, "%s never said \"%s\" "
			  "within %d ms: %s", what, needle, timeout_ms,
			  nd_test_memfd_text(fd));
		nd_test_sleep_ms(50);
	}
}

/* `noded worker --name NAME --label LABEL --state-dir TMP/STATE` into
 * workers[i], stderr kept. */
static void worker_start(int i, const char *name, const char *label,
			 const char *state)
{
	char dir[128];
	const char *argv[] = { nd_test_bin(), "worker", "--master", master,
			       "--name", name, "--slots", "1", "--label", label,
			       "--state-dir", dir, NULL };
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	snprintf(dir, sizeof(dir), "%s/%s", tmpdir, state);
	if (worker_errs[i] <= 0)
		worker_errs[i] = memfd_create("worker-stderr", MFD_CLOEXEC);
	cr_assert(worker_errs[i] > 0);
	workers[i] = nd_test_spawn(argv, null_fd, null_fd, worker_errs[i]);
	close(null_fd);
	cr_assert(workers[i] > 0, "starting worker %s: %s", name, nd_test_why);
}

/* ---- the registry, seen by `noded nodes --json` ---- */

/* The node's record (caller decrefs), or NULL when it is not listed. */
static json_t *node_get(const char *name)
{
	json_t *arr = CLI_JSON("nodes", "--json"), *n, *found = NULL;
	size_t i;

	json_array_foreach(arr, i, n)
		if (!strcmp(jstr(n, "name"), name))
			found = json_incref(n);
	json_decref(arr);
	return found;
}

static const char *label_of(json_t *n, const char *key)
{
	const char *v = json_string_value(
		json_object_get(json_object_get(n, "labels"), key));

	return v ? v : "";
}

/* Polls until node name is in state st with label key=value; returns its
 * record (caller decrefs). */
static json_t *wait_node(const char *name, const char *st, const char *key,
			 const char *value, int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;

	for (;;) {
		json_t *n = node_get(name);

		if (n && !strcmp(jstr(n, "state"), st) &&
		    !strcmp(label_of(n, key), value))
			return n;
		cr_assert(nd_test_now_ms() < deadline, "node %s not %s with "
			  "%s=%s within %d ms: %s", name, st, key, value,
			  timeout_ms, n ? jdump(n) : "absent");
		json_decref(n);
		nd_test_sleep_ms(100);
	}
}

/* ---- tasks, through the CLI ---- */

/* `noded submit ARGS...`: exit 0 and the id printed. */
static uint64_t submit_v(const char *const args[])
{
	char *end;
	uint64_t id;

	nd_test_cli_run(&R, master, ND_TEST_CLI_MS, args);
	EXPECT_STATUS(&R, 0);
	errno = 0;
	id = strtoull(R.out, &end, 10);
	cr_assert(!errno && id && *end == '\n', "`%s` printed \"%s\", want "
		  "a task id", R.cmd, R.out);
	return id;
}

#define SUBMIT(...) submit_v((const char *const[]){ "submit", __VA_ARGS__, NULL })

static json_t *task_get(uint64_t id)
{
	char ids[32];

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	return CLI_JSON("task", ids, "--json");
}

static json_t *wait_task(uint64_t id, const char *st, int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;

	for (;;) {
		json_t *t = task_get(id);

		if (!strcmp(jstr(t, "state"), st))
			return t;
		cr_assert(nd_test_now_ms() < deadline, "task %" PRIu64 " not "
			  "%s within %d ms: %s", id, st, timeout_ms, jdump(t));
		json_decref(t);
		nd_test_sleep_ms(100);
	}
}

/* ---- raw workers ---- */

/* Connect, Hello, and register node `name` with node id `id` (16 bytes)
 * on stream `sid`; the open item must come. Returns the fd. */
static int raw_register(const char *name, const char *id, uint64_t sid)
{
	Noded__Frame f, *r;
	Noded__AssignTaskRequest a;
	int fd = nd_test_connect(d.port);

	cr_assert(fd >= 0, "connect: %s", nd_strerror(fd));
	HELLO(fd);
	nd_test_frame_assign(&f, &a, sid, name);
	a.node_id.data = (uint8_t *)id;
	a.node_id.len = 16;
	SEND_FRAME(fd, &f);
	r = RECV(fd);
	EXPECT_FRAME(r, NODED__FRAME_KIND__STREAM_ITEM, sid,
		     NODED__FRAME__BODY_ASSIGN_OPEN);
	nd_frame_free(r, NULL);
	return fd;
}

/* Sends a status report for name (slots, label who=who) as request rid;
 * returns the reply frame (caller frees). */
static Noded__Frame *raw_report(int fd, uint64_t rid, const char *name,
				uint32_t slots, const char *who)
{
	Noded__NodeStatus st = NODED__NODE_STATUS__INIT;
	Noded__NodeStatus__LabelsEntry l, *labels[] = { &l };
	Noded__Frame f = NODED__FRAME__INIT;

	noded__node_status__labels_entry__init(&l);
	l.key = "who";
	l.value = (char *)who;
	st.name = (char *)name;
	st.n_labels = 1;
	st.labels = labels;
	st.slots_total = st.slots_free = slots;
	f.id = rid;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &st;
	SEND_FRAME(fd, &f);
	return RECV(fd);
}

#define EXPECT_REPORT_OK(fd, rid, name, slots, who)                          \
	do {                                                                 \
		Noded__Frame *rr_ = raw_report((fd), (rid), (name), (slots), \
					       (who));                       \
		EXPECT_FRAME(rr_, NODED__FRAME_KIND__REPLY, (rid),           \
			     NODED__FRAME__BODY_STATUS_REPLY);               \
		nd_frame_free(rr_, NULL);                                    \
	} while (0)

#define EXPECT_REPORT_REFUSED(fd, rid, name, who, code)                      \
	do {                                                                 \
		Noded__Frame *rr_ = raw_report((fd), (rid), (name), 4, (who)); \
		EXPECT_FRAME(rr_, NODED__FRAME_KIND__REPLY, (rid),           \
			     NODED__FRAME__BODY_ERROR);                      \
		EXPECT_ERROR_BODY(rr_, (code));                              \
		nd_frame_free(rr_, NULL);                                    \
	} while (0)

/* "127.0.0.1:PORT" of our end of fd: the address the master sees. */
static void local_addr(int fd, char *buf, size_t len)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);

	cr_assert(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	snprintf(buf, len, "127.0.0.1:%u", ntohs(sa.sin_port));
}

/* ---- a live name ---- */

/*
 * A second `noded worker --name w1` (another state dir: another node id)
 * is refused while the first lives, and the node keeps the first one's
 * labels and address. Once the first is gone, the second takes the name.
 */
Test(ident, live_name_refused_to_another_worker)
{
	json_t *n;
	char addr[64];

	MASTER_START();
	worker_start(0, "w1", "who=a", "a");
	n = wait_node("w1", "ALIVE", "who", "a", 10000);
	snprintf(addr, sizeof(addr), "%s", jstr(n, "address"));
	json_decref(n);

	worker_start(1, "w1", "who=b", "b");
	wait_text(worker_errs[1], "registered by a live worker", 10000,
		  "the second worker");
	wait_text(master_err, "event=node.name_taken node=w1", 2000,
		  "the master");
	/* a few heartbeats later, and after its retries: unchanged */
	nd_test_sleep_ms(1500);
	n = node_get("w1");
	cr_assert(n && !strcmp(jstr(n, "state"), "ALIVE") &&
			  !strcmp(label_of(n, "who"), "a") &&
			  !strcmp(jstr(n, "address"), addr),
		  "node w1 changed hands while its worker lived (was ALIVE "
		  "who=a at %s): %s", addr, n ? jdump(n) : "absent");
	json_decref(n);

	/* the holder goes: the name is free for the other worker */
	nd_test_kill_pid(workers[0]);
	workers[0] = 0;
	json_decref(wait_node("w1", "ALIVE", "who", "b", 20000));
	wait_text(master_err, "event=node.replaced node=w1", 2000,
		  "the master");
	STOP_OK(&d);
}

/*
 * The same node id from another connection replaces the registration (a
 * worker back before the master saw its old connection die): the old
 * stream ends, the old connection's reports are refused and its close does
 * not unregister the new one, which gets the node's tasks. Another id is
 * refused meanwhile.
 */
Test(ident, same_id_replaces_old_registration)
{
	static const char id[16] = "same-worker-id!", other[16] = "other-worker-id";
	Noded__Frame f, *r;
	Noded__AssignTaskRequest a;
	json_t *n;
	int c1, c2, c3;
	char addr2[64];
	uint64_t tid;

	MASTER_START();
	c1 = raw_register("w1", id, 10);
	EXPECT_REPORT_OK(c1, 11, "w1", 0, "old");

	c2 = raw_register("w1", id, 20);
	local_addr(c2, addr2, sizeof(addr2));
	ND_CHECK(nd_test_expect_error(c1, NODED__FRAME_KIND__STREAM_END,
				      NODED__ERROR_CODE__ALREADY_EXISTS, 10));
	EXPECT_REPORT_OK(c2, 21, "w1", 1, "new");
	EXPECT_REPORT_REFUSED(c1, 12, "w1", "old",
			      NODED__ERROR_CODE__ALREADY_EXISTS);

	/* another id, while c2 holds it */
	c3 = nd_test_connect(d.port);
	HELLO(c3);
	nd_test_frame_assign(&f, &a, 30, "w1");
	a.node_id.data = (uint8_t *)other;
	a.node_id.len = 16;
	SEND_FRAME(c3, &f);
	r = RECV(c3);
	EXPECT_FRAME(r, NODED__FRAME_KIND__STREAM_END, 30,
		     NODED__FRAME__BODY_ERROR);
	EXPECT_ERROR_BODY(r, NODED__ERROR_CODE__ALREADY_EXISTS);
	cr_assert(strstr(r->error->message, "w1"), "%s", r->error->message);
	nd_frame_free(r, NULL);
	close(c3);

	/* the old connection goes: the node stays the new one's */
	close(c1);
	nd_test_sleep_ms(500);
	n = node_get("w1");
	cr_assert(n && !strcmp(jstr(n, "state"), "ALIVE") &&
			  !strcmp(label_of(n, "who"), "new") &&
			  !strcmp(jstr(n, "address"), addr2),
		  "want w1 ALIVE who=new at %s after the replaced connection "
		  "closed: %s", addr2, n ? jdump(n) : "absent");
	json_decref(n);
	tid = SUBMIT("--node", "w1", "--", "true");
	r = RECV(c2);
	EXPECT_FRAME(r, NODED__FRAME_KIND__STREAM_ITEM, 20,
		     NODED__FRAME__BODY_TASK);
	cr_assert_eq(r->task->task_id, tid);
	nd_frame_free(r, NULL);
	close(c2);
	STOP_OK(&d);
}

/* A status report from a connection that did not register the node is
 * refused: nobody else can flip its labels or address. */
Test(ident, report_from_another_connection_refused)
{
	static const char id[16] = "the-worker-id..";
	json_t *n;
	char addr[64];
	int c1, c2;

	MASTER_START();
	c1 = raw_register("w1", id, 1);
	local_addr(c1, addr, sizeof(addr));
	EXPECT_REPORT_OK(c1, 2, "w1", 2, "a");

	c2 = nd_test_connect(d.port);
	HELLO(c2);
	EXPECT_REPORT_REFUSED(c2, 3, "w1", "b",
			      NODED__ERROR_CODE__ALREADY_EXISTS);
	EXPECT_REPORT_REFUSED(c2, 4, "ghost", "b",
			      NODED__ERROR_CODE__BAD_REQUEST);
	PING(c2, 5); /* the connection is still fine */

	n = node_get("w1");
	cr_assert(n && !strcmp(label_of(n, "who"), "a") &&
			  !strcmp(jstr(n, "address"), addr),
		  "want w1 who=a at %s: %s", addr, n ? jdump(n) : "absent");
	json_decref(n);
	n = node_get("ghost");
	cr_assert(!n, "a report made up node ghost: %s", jdump(n));
	close(c1);
	close(c2);
	STOP_OK(&d);
}

/* ---- tasks waiting for a node that left ---- */

/*
 * A task queued for a named node whose worker went away: when the node is
 * DEAD it is LOST, saying why, unless it asked to wait for its node; then
 * it waits, and its record says for what. Either way it is logged.
 */
Test(ident, task_for_node_that_died)
{
	static const char id[16] = "short-lived-id.";
	json_t *t;
	uint64_t plain, waiting, never;
	int c;

	MASTER_START("--heartbeat-timeout", "1");
	c = raw_register("w9", id, 1);
	EXPECT_REPORT_OK(c, 2, "w9", 0, "x"); /* no slots: tasks queue */
	plain = SUBMIT("--node", "w9", "--", "true");
	waiting = SUBMIT("--node", "w9", "--wait-for-node", "--", "true");
	never = SUBMIT("--node", "nobody", "--wait-for-node", "--", "true");
	close(c);

	t = wait_task(plain, "LOST", 10000);
	cr_assert(strstr(jstr(t, "reason"), "w9") &&
			  strstr(jstr(t, "reason"), "before it ran"),
		  "%s", jdump(t));
	json_decref(t);
	t = task_get(waiting);
	cr_assert(!strcmp(jstr(t, "state"), "PENDING") &&
			  strstr(jstr(t, "reason"),
				 "waits for node w9, DEAD since "),
		  "%s", jdump(t));
	json_decref(t);
	t = task_get(never);
	cr_assert(!strcmp(jstr(t, "state"), "PENDING") &&
			  strstr(jstr(t, "reason"),
				 "waits for node nobody, which has not "
				 "registered"),
		  "%s", jdump(t));
	json_decref(t);
	wait_text(master_err, "event=task.waiting_node node=w9 tasks=1", 2000,
		  "the master");
	STOP_OK(&d);
}

/* ---- task ids ---- */

/* Submits a task that waits for a node nobody runs; its id. */
static uint64_t submit_one(void)
{
	return SUBMIT("--node", "nobody", "--wait-for-node", "--", "true");
}

static void master_kill9(void)
{
	nd_test_kill_pid(d.pid);
	memset(&d, 0, sizeof(d));
}

/* The old master's id, asked of the new one: not some other task. */
static void expect_unknown(uint64_t id)
{
	char ids[32];

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	CLI(&R, "task", ids);
	EXPECT_STATUS(&R, 1);
	cr_assert(strstr(R.err, "no task"), "%s", R.err);
}

/* The old master's task, asked of the restarted one on the same
 * --data-dir: still there. */
static void expect_known(uint64_t id)
{
	char ids[32];

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	CLI(&R, "task", ids);
	EXPECT_STATUS(&R, 0);
}

Test(ident, task_ids_not_reused_after_kill_with_data_dir)
{
	char dir[128], file[160];
	struct stat st;
	uint64_t a, b, c;

	snprintf(dir, sizeof(dir), "%s/data/master", tmpdir);
	MASTER_START("--data-dir", dir);
	a = submit_one();
	b = submit_one();
	cr_assert(b > a);
	cr_assert(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700,
		  "--data-dir not made 0700: %o", st.st_mode & 0777);
	snprintf(file, sizeof(file), "%s/task-ids", dir);
	cr_assert(stat(file, &st) == 0, "no %s", file);
	master_kill9();

	MASTER_START("--data-dir", dir);
	c = submit_one();
	cr_assert(c > b, "a master restarted on the same --data-dir gave id "
		  "%" PRIu64 ", its predecessor had given up to %" PRIu64, c,
		  b);
	expect_known(b); /* its ledger is durable (tests/raft) */
	master_kill9();
	MASTER_START("--data-dir", dir);
	cr_assert(submit_one() > c);
	STOP_OK(&d);
}

Test(ident, task_ids_not_reused_after_kill_without_data_dir)
{
	uint64_t a, b;

	MASTER_START();
	a = submit_one();
	master_kill9();
	MASTER_START();
	b = submit_one();
	cr_assert(b > a, "a restarted master gave id %" PRIu64 " again (or "
		  "below: its predecessor gave %" PRIu64 ")", b, a);
	expect_unknown(a);
	cr_assert(b < (1ull << 53), "id %" PRIu64 " not exact in JSON", b);
	STOP_OK(&d);
}

/* A --data-dir that cannot be made: the master does not start. */
Test(ident, unwritable_data_dir_refuses_start)
{
	char file[128], under[160], out[256], err[1024];
	const char *bad[] = { file, under, "/proc/noded-no-such-dir" };
	int fd;

	snprintf(file, sizeof(file), "%s/a-file", tmpdir);
	snprintf(under, sizeof(under), "%s/a-file/data", tmpdir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	cr_assert(fd >= 0);
	close(fd);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *argv[] = { nd_test_bin(), "master", "--listen",
				       "127.0.0.1:0", "--data-dir", bad[i],
				       NULL };
		int st = nd_test_run(argv, out, sizeof(out), err, sizeof(err),
				     10000);

		cr_assert(st == 1 && strstr(err, "--data-dir") &&
				  strstr(err, bad[i]) && !strstr(out, "listening"),
			  "master --data-dir %s: exit %d, stdout \"%s\", "
			  "stderr \"%s\"; want exit 1 naming the directory",
			  bad[i], st, out, err);
	}
}

/* The data dir goes away at run time: when the next block of ids cannot be
 * reserved, submits are refused (UNAVAILABLE), never given a reused id. */
Test(ident, lost_data_dir_refuses_submits)
{
	char dir[128], cmd[200];

	snprintf(dir, sizeof(dir), "%s/data", tmpdir);
	setenv("NODED_ID_BLOCK", "2", 1); /* a reservation every few ids */
	MASTER_START("--data-dir", dir);
	unsetenv("NODED_ID_BLOCK");
	submit_one();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert(system(cmd) == 0);
	for (int i = 0; i < 4; i++) {
		CLI(&R, "submit", "--node", "nobody", "--wait-for-node", "--",
		    "true");
		if (R.st)
			break;
	}
	cr_assert(R.st == 1 && strstr(R.err, "cannot reserve task ids"),
		  "`%s` exited %d: \"%s\"; want it refused", R.cmd, R.st,
		  R.err);
	wait_text(master_err, "event=task.ids_failed", 2000, "the master");
	CLI(&R, "submit", "--node", "nobody", "--wait-for-node", "--", "true");
	EXPECT_STATUS(&R, 1);
	FRESH_PING(&d);
	STOP_OK(&d);
}

/*
 * The node id is kept in the state dir (0600, made once): a second process
 * with the same state dir is the same worker and takes the name over at
 * once, even while the first (frozen) still holds its connection. A state
 * dir holding something else than an id stops the worker.
 */
Test(ident, state_dir_keeps_the_node_id)
{
	char path[160], id1[64], id2[64], out[256], err[1024];
	const char *bad_argv[] = { nd_test_bin(), "worker", "--master", master,
				   "--name", "w2", "--state-dir", path, NULL };
	struct stat st;
	FILE *f;
	int st_code;

	MASTER_START();
	worker_start(0, "w1", "who=first", "s");
	json_decref(wait_node("w1", "ALIVE", "who", "first", 10000));
	snprintf(path, sizeof(path), "%s/s/node-id", tmpdir);
	cr_assert(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 &&
			  st.st_size == 33,
		  "%s: mode %o size %lld, want 0600 and 32 hex digits", path,
		  st.st_mode & 0777, (long long)st.st_size);
	f = fopen(path, "r");
	cr_assert(f && fgets(id1, sizeof(id1), f));
	fclose(f);

	cr_assert(kill(workers[0], SIGSTOP) == 0);
	worker_start(1, "w1", "who=second", "s");
	json_decref(wait_node("w1", "ALIVE", "who", "second", 10000));
	f = fopen(path, "r");
	cr_assert(f && fgets(id2, sizeof(id2), f));
	fclose(f);
	cr_assert_str_eq(id1, id2, "the node id changed");
	nd_test_kill_pid(workers[0]);
	workers[0] = 0;

	snprintf(path, sizeof(path), "%s/bad", tmpdir);
	cr_assert(mkdir(path, 0700) == 0);
	snprintf(path, sizeof(path), "%s/bad/node-id", tmpdir);
	f = fopen(path, "w");
	cr_assert(f && fputs("not an id\n", f) >= 0);
	fclose(f);
	snprintf(path, sizeof(path), "%s/bad", tmpdir);
	st_code = nd_test_run(bad_argv, out, sizeof(out), err, sizeof(err),
			      10000);
	cr_assert(st_code == 1 && strstr(err, "is not a node id"),
		  "worker with a damaged node-id: exit %d, stderr \"%s\"",
		  st_code, err);
	STOP_OK(&d);
}

/*
 * Another worker takes a disconnected node's name: the tasks the old one
 * had are LOST at once (the newcomer will never report them), not left
 * ASSIGNED for as long as the newcomer heartbeats.
 */
Test(ident, takeover_loses_the_old_workers_tasks)
{
	static const char old_id[16] = "old-worker-id..", new_id[16] = "new-worker-id..";
	Noded__Frame *r;
	json_t *t;
	uint64_t tid;
	int c1, c2;

	MASTER_START();
	c1 = raw_register("w1", old_id, 1);
	EXPECT_REPORT_OK(c1, 2, "w1", 1, "old");
	tid = SUBMIT("--node", "w1", "--", "true");
	r = RECV(c1);
	EXPECT_FRAME(r, NODED__FRAME_KIND__STREAM_ITEM, 1,
		     NODED__FRAME__BODY_TASK);
	nd_frame_free(r, NULL);
	close(c1);
	nd_test_sleep_ms(300); /* the master sees it disconnected */

	c2 = raw_register("w1", new_id, 1);
	EXPECT_REPORT_OK(c2, 2, "w1", 1, "new");
	t = wait_task(tid, "LOST", 3000);
	cr_assert(strstr(jstr(t, "reason"), "taken over"), "%s", jdump(t));
	json_decref(t);
	wait_text(master_err, "event=node.replaced node=w1", 2000,
		  "the master");
	close(c2);
	STOP_OK(&d);
}

/*
 * Workers started at the same moment on one fresh --state-dir: each makes
 * a node id and the first to store it wins; the others read it back, so
 * all of them start, with the one id (each used to write the same
 * temporary file, and all but one failed to start).
 */
Test(ident, workers_racing_on_a_fresh_state_dir_share_its_id)
{
	enum { N = 8 };
	char dir[] = "/tmp/nd-ident-race-XXXXXX", path[64];
	char got[N][2 * ND_NODE_ID_LEN + 1];
	int go[2], out[2];
	pid_t pids[N];

	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state", dir);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(out), 0);
	for (int i = 0; i < N; i++) {
		pids[i] = fork();
		cr_assert_geq(pids[i], 0);
		if (pids[i] == 0) {
			uint8_t id[ND_NODE_ID_LEN];
			char err[256], line[2 * ND_NODE_ID_LEN + 2] = { 0 }, c;

			close(go[1]);
			if (read(go[0], &c, 1) < 0) /* EOF: all start at once */
				_exit(3);
			if (nd_node_id_load(path, id, err, sizeof(err)))
				_exit(1);
			nd_node_id_hex(id, ND_NODE_ID_LEN, line);
			line[2 * ND_NODE_ID_LEN] = '\n';
			_exit(write(out[1], line, sizeof(line) - 1) ==
			      (ssize_t)sizeof(line) - 1 ? 0 : 2);
		}
	}
	close(go[0]);
	close(go[1]);
	close(out[1]);
	for (int i = 0; i < N; i++) {
		int st;

		cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "worker %d could not load its node id (exit %d)", i,
			  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	}
	for (int i = 0; i < N; i++) {
		char line[2 * ND_NODE_ID_LEN + 1];

		cr_assert_eq(read(out[0], line, sizeof(line)),
			     (ssize_t)sizeof(line));
		memcpy(got[i], line, 2 * ND_NODE_ID_LEN);
		got[i][2 * ND_NODE_ID_LEN] = '\0';
		cr_assert_str_eq(got[i], got[0], "two ids for one directory");
	}
	close(out[0]);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	cr_assert_eq(system(path), 0);
}
