/*
 * The replicated ledger of a lone master (master --data-dir: a Raft
 * cluster of one, src/raft and src/node/replica.c), end to end: real
 * masters killed with SIGKILL and restarted on the same data directory,
 * real workers, the real CLI, a real full disk (a small tmpfs).
 *
 * - Every task is back after kill -9 and a restart: ended ones with their
 *   output, waiting ones waiting, running ones still running on their
 *   worker, ending once.
 * - Every submit the master acknowledged before kill -9 is there after it.
 * - A batch the log could not take fails its requests with a clear error
 *   (and nothing of it remains); the master goes on.
 * - A full disk refuses submits with RESOURCE_EXHAUSTED while reads go
 *   on, and the master recovers once space is freed.
 * - A corrupt log stops the master at start with a clear error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "harness.h"
#include "noded/client.h"

static struct nd_test_daemon d;
static char master[32];
static int master_port;
static pid_t worker;
static int master_err = -1, worker_err = -1;
static char tmpdir[64], datadir[128];
static bool mounted;
static struct nd_test_cli R;

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	worker = 0;
	master_port = 0;
	mounted = false;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/noded-raft-XXXXXX");
	cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
	snprintf(datadir, sizeof(datadir), "%s/data", tmpdir);
}

static void teardown(void)
{
	char cmd[160];

	if (worker > 0)
		nd_test_kill_pid(worker);
	nd_test_daemon_stop(&d);
	if (mounted && umount2(datadir, MNT_DETACH))
		cr_log_warn("umount %s: %s", datadir, strerror(errno));
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd))
		cr_log_warn("could not remove %s", tmpdir);
}

TestSuite(raft, .init = setup, .fini = teardown, .timeout = 120);

/* ---- daemons ---- */

/* `noded master --data-dir DATADIR ...` on the port it had before (the
 * worker's --master stays right), stderr kept in master_err. */
static void master_start_env(const char *fault)
{
	char listen[32];
	const char *argv[] = { nd_test_bin(), "master", "--listen", listen,
			       "--data-dir", datadir, "--heartbeat-timeout",
			       "2", "--lease", "4", NULL };

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", master_port);
	if (master_err < 0)
		master_err = memfd_create("master-stderr", MFD_CLOEXEC);
	cr_assert(master_err >= 0);
	if (fault)
		setenv("NODED_FAULT_RAFT_APPLY", fault, 1);
	nd_test_daemon_restart(&d, argv, master_err);
	unsetenv("NODED_FAULT_RAFT_APPLY");
	cr_assert(d.pid > 0, "master did not start again on port %d: %s",
		  master_port, nd_test_why);
	master_port = d.port;
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
}

static void master_start(void)
{
	master_start_env(NULL);
}

static void master_kill9(void)
{
	cr_assert(d.pid > 0);
	kill(d.pid, SIGKILL);
	nd_test_daemon_wait(&d, 5000);
}

static void worker_start(void)
{
	char dir[128];
	const char *argv[] = { nd_test_bin(), "worker", "--master", master,
			       "--name", "w1", "--slots", "2", "--state-dir",
			       dir, NULL };
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	snprintf(dir, sizeof(dir), "%s/worker", tmpdir);
	if (worker_err < 0)
		worker_err = memfd_create("worker-stderr", MFD_CLOEXEC);
	worker = nd_test_spawn(argv, null_fd, null_fd, worker_err);
	close(null_fd);
	cr_assert(worker > 0, "starting the worker: %s", nd_test_why);
}

static void wait_worker(void);

/* Waits until the worker registered and reported (its node ALIVE). */
static void wait_worker(void)
{
	int64_t deadline = nd_test_now_ms() + 10000;

	for (;;) {
		json_t *arr = CLI_JSON("nodes", "--json"), *n;
		size_t i;
		bool alive = false;

		json_array_foreach(arr, i, n)
			alive |= !strcmp(json_string_value(json_object_get(
					 n, "state")) ?: "", "ALIVE") &&
				 json_integer_value(json_object_get(
					 n, "slots_total")) > 0;
		json_decref(arr);
		if (alive)
			return;
		cr_assert(nd_test_now_ms() < deadline, "the worker never "
			  "came: %s", nd_test_memfd_text(worker_err));
		nd_test_sleep_ms(50);
	}
}

/* ---- tasks, through the CLI ---- */

/* `noded submit ARGS...`: the new id (asserting success). */
static uint64_t submit_v(const char *const args[])
{
	const char *argv[24] = { "submit" };
	size_t n = 1;

	for (; *args; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	nd_test_cli_run(&R, master, ND_TEST_CLI_MS, argv);
	EXPECT_STATUS(&R, 0);
	return strtoull(R.out, NULL, 10);
}

#define SUBMIT(...) submit_v((const char *const[]){ __VA_ARGS__, NULL })

/* The task's record (caller decrefs). */
static json_t *task_json(uint64_t id)
{
	char ids[32];

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	return CLI_JSON("task", ids, "--json");
}

static const char *state_of(json_t *t)
{
	const char *s = json_string_value(json_object_get(t, "state"));

	return s ? s : "?";
}

/* Waits for task id to be in state (e.g. "RUNNING"), up to ms. */
static void wait_state(uint64_t id, const char *state, int ms)
{
	int64_t deadline = nd_test_now_ms() + ms;

	for (;;) {
		json_t *t = task_json(id);
		bool ok = !strcmp(state_of(t), state);
		char now[32];

		snprintf(now, sizeof(now), "%s", state_of(t));
		json_decref(t);
		if (ok)
			return;
		cr_assert(nd_test_now_ms() < deadline, "task %" PRIu64 " is "
			  "%s, not %s, after %d ms; master: %s", id, now, state,
			  ms, nd_test_memfd_text(master_err));
		nd_test_sleep_ms(50);
	}
}

/* ---- tests ---- */

Test(raft, restart_restores_every_task)
{
	char ran[160], script[256], ids[32];
	uint64_t a, b, c, e;
	json_t *t;

	snprintf(ran, sizeof(ran), "%s/ran", tmpdir);
	snprintf(script, sizeof(script), "echo once >> %s; sleep 2", ran);
	master_start();
	worker_start();
	wait_worker();
	a = SUBMIT("--", "echo", "kept-output");
	wait_state(a, "SUCCEEDED", 10000);
	b = SUBMIT("--", "sh", "-c", script);
	wait_state(b, "RUNNING", 10000);
	c = SUBMIT("--node", "absent", "--wait-for-node", "--", "true");
	cr_assert(c > b && b > a);

	master_kill9();
	master_start();

	/* ended, with its output */
	t = task_json(a);
	cr_assert_str_eq(state_of(t), "SUCCEEDED");
	json_decref(t);
	snprintf(ids, sizeof(ids), "%" PRIu64, a);
	CLI(&R, "logs", ids);
	EXPECT_STATUS(&R, 0);
	cr_assert_str_eq(R.out, "kept-output\n");
	/* still waiting for its node */
	t = task_json(c);
	cr_assert_str_eq(state_of(t), "PENDING");
	json_decref(t);
	/* ran on across the restart, reported to the new master, once */
	wait_state(b, "SUCCEEDED", 15000);
	cr_assert_eq(nd_test_file_lines(ran), 1, "task %" PRIu64 " ran %d times",
		     b, nd_test_file_lines(ran));
	/* ids go on above the old ones */
	e = SUBMIT("--", "true");
	cr_assert(e > c, "new id %" PRIu64 " after %" PRIu64, e, c);
	wait_state(e, "SUCCEEDED", 10000);
	STOP_OK(&d);
}

/* Every id `noded submit` printed before the master was killed (the
 * master answers only once the submit is in its log) is there after. */
Test(raft, acknowledged_submits_survive_kill9)
{
	char acked[160], cmd[512], line[64];
	uint64_t n = 0, found = 0;
	FILE *f;
	pid_t loop;

	master_start();
	snprintf(acked, sizeof(acked), "%s/acked", tmpdir);
	/* a bounded loop of submits, stopped by the kill */
	snprintf(cmd, sizeof(cmd), "for i in $(seq 1 2000); do '%s' submit "
		 "--master %s --node absent --wait-for-node -- true >> '%s' "
		 "2>/dev/null || exit 0; done", nd_test_bin(), master, acked);
	loop = nd_test_spawn((const char *const[]){ "/bin/sh", "-c", cmd,
						  NULL }, -1, -1, -1);
	cr_assert(loop > 0);
	/* kill once some are in */
	for (int i = 0; i < 200 && nd_test_file_lines(acked) < 40; i++)
		nd_test_sleep_ms(50);
	master_kill9();
	cr_assert(nd_test_wait_pid(loop, 30000) >= 0);
	cr_assert(nd_test_file_lines(acked) >= 40, "only %d submits before the kill",
		  nd_test_file_lines(acked));

	master_start();
	f = fopen(acked, "r");
	cr_assert(f);
	while (fgets(line, sizeof(line), f)) {
		uint64_t id = strtoull(line, NULL, 10);
		json_t *t;
		char ids[32];

		if (!id)
			continue; /* a line cut by the kill */
		n++;
		snprintf(ids, sizeof(ids), "%" PRIu64, id);
		CLI(&R, "task", ids, "--json");
		cr_assert_eq(R.st, 0, "acknowledged task %s is gone after "
			     "kill -9: %s", ids, R.err);
		t = json_loads(R.out, 0, NULL);
		cr_assert(t);
		found += !strcmp(state_of(t), "PENDING");
		json_decref(t);
	}
	fclose(f);
	cr_assert(n >= 40 && found == n, "%" PRIu64 " of %" PRIu64
		  " acknowledged tasks back and PENDING", found, n);
	STOP_OK(&d);
}

/* A submit of (session, seq) over a client of its own, sent once: 0 with
 * *id, or the library's error (raw_err: the master's message). */
static char raw_err[512];

static int submit_raw(uint64_t session, uint64_t seq, uint64_t *id)
{
	char *argv[] = { "true" };
	Noded__Command cmd = NODED__COMMAND__INIT;
	Noded__TaskSpec sp = NODED__TASK_SPEC__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *reply = NULL;
	struct nd_client *c;
	int r;

	cmd.n_argv = 1;
	cmd.argv = argv;
	sp.command = &cmd;
	sp.node = "absent";
	sp.wait_for_node = true;
	sp.session = session;
	sp.sequence = seq;
	f.body_case = NODED__FRAME__BODY_SUBMIT;
	f.submit = &sp;
	raw_err[0] = '\0';
	cr_assert_eq(nd_client_connect(&c, master, NULL), 0);
	r = nd_client_call(c, &f, &reply, 5000);
	if (!r && reply->body_case == NODED__FRAME__BODY_SUBMIT_REPLY &&
	    reply->submit_reply->n_task_ids)
		*id = reply->submit_reply->task_ids[0];
	else if (r == ND_EREMOTE && reply && reply->error)
		snprintf(raw_err, sizeof(raw_err), "%s",
			 reply->error->message);
	nd_frame_free(reply, NULL);
	nd_client_close(c);
	return r;
}

/* The log refuses a batch (an I/O error injected after the first entry):
 * the submit in it gets UNAVAILABLE saying so, and no trace of it
 * remains; sent again with its session, it is made once; `noded submit`
 * does that by itself. The master goes on, before and after a restart. */
Test(raft, failed_log_write_fails_the_submit_and_the_master_goes_on)
{
	uint64_t first, again, cli;
	json_t *arr;

	master_start_env("1:2"); /* the cluster's naming passes, then two
				  * batches fail */
	/* answered once the naming is committed: the submit is alone in
	 * the next batch */
	json_decref(CLI_JSON("tasks", "--json"));
	cr_assert_eq(submit_raw(77, 1, &first), ND_EREMOTE);
	cr_assert(strstr(raw_err, "could not commit"), "%s", raw_err);
	arr = CLI_JSON("tasks", "--json");
	cr_assert_eq(json_array_size(arr), 0, "%s", R.out);
	json_decref(arr);
	/* the CLI's submit meets the second failure and sends it again */
	cli = SUBMIT("--node", "absent", "--wait-for-node", "--", "true");
	cr_assert_eq(submit_raw(77, 1, &again), 0);
	arr = CLI_JSON("tasks", "--json");
	cr_assert_eq(json_array_size(arr), 2, "%s", R.out);
	json_decref(arr);
	cr_assert_eq(submit_raw(77, 1, &first), 0);
	cr_assert_eq(first, again, "sent again, a second task");
	cr_assert(strstr(nd_test_memfd_text(master_err), "raft.propose_failed"));

	master_kill9();
	master_start();
	arr = CLI_JSON("tasks", "--json");
	cr_assert_eq(json_array_size(arr), 2);
	json_decref(arr);
	cr_assert(cli != again);
	STOP_OK(&d);
}

/* Fills the tmpfs under the data directory (all but a little). */
static void fill(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	static char block[1 << 16];

	cr_assert(fd >= 0);
	while (write(fd, block, sizeof(block)) > 0)
		;
	close(fd);
}

Test(raft, full_disk_refuses_submits_and_recovers)
{
	char filler[192];
	uint64_t last = 0, after;
	int refused = 0;
	json_t *arr;

	cr_assert(mkdir(datadir, 0700) == 0);
	if (mount("tmpfs", datadir, "tmpfs", 0, "size=40m,mode=0700")) {
		cr_skip_test("cannot mount a tmpfs here (%s): needs root",
			     strerror(errno));
		return;
	}
	mounted = true;
	master_start();
	worker_start();
	wait_worker();
	snprintf(filler, sizeof(filler), "%s/filler", datadir);
	fill(filler);
	/* each task logs 1 MB of output: the log's preallocated segments
	 * fill, then it needs a new one */
	for (int i = 0; i < 80 && !refused; i++) {
		CLI(&R, "submit", "--", "sh", "-c",
		    "head -c 1000000 /dev/zero | tr '\\0' x");
		if (R.st == 0) {
			last = strtoull(R.out, NULL, 10);
			nd_test_sleep_ms(100);
			continue;
		}
		cr_assert(strstr(R.err, "disk") || strstr(R.err, "commit"),
			  "refused without saying why: %s; master: %s", R.err,
			  nd_test_memfd_text(master_err));
		refused++;
	}
	cr_assert(refused, "never refused on a full disk");
	/* reads go on meanwhile */
	CLI(&R, "submit", "--", "true");
	cr_assert_neq(R.st, 0);
	cr_assert(strstr(R.err, "disk space"), "%s", R.err);
	arr = CLI_JSON("tasks", "--json");
	cr_assert(json_array_size(arr) > 0);
	json_decref(arr);

	/* space again: submits are taken again, in time */
	cr_assert(unlink(filler) == 0);
	for (int i = 0;; i++) {
		CLI(&R, "submit", "--", "true");
		if (R.st == 0)
			break;
		cr_assert(i < 100, "still refused 20 s after space was freed: "
			  "%s", R.err);
		nd_test_sleep_ms(200);
	}
	after = strtoull(R.out, NULL, 10);
	cr_assert(after > last);
	wait_state(after, "SUCCEEDED", 10000);
	/* the tasks whose reports the full log refused were reported again
	 * (the worker reconnects to resend them): each one ended */
	for (uint64_t id = 1; id <= last; id++) {
		json_t *t;
		char ids[32];

		snprintf(ids, sizeof(ids), "%" PRIu64, id);
		CLI(&R, "task", ids, "--json");
		if (R.st)
			continue; /* an id the failed batch took */
		t = json_loads(R.out, 0, NULL);
		cr_assert(t);
		if (strcmp(state_of(t), "SUCCEEDED"))
			wait_state(id, "SUCCEEDED", 15000);
		json_decref(t);
	}
	/* and what was acknowledged is kept */
	master_kill9();
	master_start();
	wait_state(last, "SUCCEEDED", 5000);
	wait_state(after, "SUCCEEDED", 5000);
	STOP_OK(&d);
}

/* A log whose files were overwritten: the master does not start, and
 * says where and why. */
Test(raft, corrupt_log_stops_the_start)
{
	char seg[256], out[256], err[4096];
	const char *argv[] = { nd_test_bin(), "master", "--listen",
			       "127.0.0.1:0", "--data-dir", datadir, NULL };
	int fd, st;

	master_start();
	SUBMIT("--node", "absent", "--wait-for-node", "--", "true");
	master_kill9();
	snprintf(seg, sizeof(seg), "%s/raft/metadata1", datadir);
	fd = open(seg, O_WRONLY);
	cr_assert(fd >= 0, "%s: %s", seg, strerror(errno));
	cr_assert(write(fd, "garbage-garbage-garbage-garbage!", 32) == 32);
	close(fd);
	st = nd_test_run(argv, out, sizeof(out), err, sizeof(err), 10000);
	cr_assert(st != 0, "a corrupt log started: %s", out);
	cr_assert(strstr(err, "raft"), "no word of the log: %s", err);
}

/* The first task id a submit of (session, seq) got (asserting it did). */
static uint64_t submit_session(uint64_t session, uint64_t seq)
{
	uint64_t id = 0;

	cr_assert_eq(submit_raw(session, seq, &id), 0, "%s", raw_err);
	return id;
}

/* A submit sent again with its session and sequence (its reply lost) is
 * answered with the task the first made, before and after a restart; the
 * next sequence makes a new one. */
Test(raft, a_resent_submit_makes_no_second_task)
{
	uint64_t a, b;
	json_t *arr;

	master_start();
	a = submit_session(4242, 1);
	cr_assert_eq(submit_session(4242, 1), a);
	arr = CLI_JSON("tasks", "--json");
	cr_assert_eq(json_array_size(arr), 1);
	json_decref(arr);
	master_kill9();
	master_start();
	cr_assert_eq(submit_session(4242, 1), a, "a resent submit made "
		     "another task after a restart");
	b = submit_session(4242, 2);
	cr_assert(b > a);
	arr = CLI_JSON("tasks", "--json");
	cr_assert_eq(json_array_size(arr), 2);
	json_decref(arr);
	STOP_OK(&d);
}

/* A data directory whose log was emptied (its member id left): the master
 * does not start as if nothing happened (every task would be gone without
 * a word); --bootstrap begins anew, empty. A wholly empty directory is a
 * new master. */
Test(raft, emptied_log_needs_bootstrap_to_begin_anew)
{
	char cmd[300], out[256], err[2048];
	const char *argv[] = { nd_test_bin(), "master", "--listen",
			       "127.0.0.1:0", "--data-dir", datadir, NULL };
	const char *boot[] = { nd_test_bin(), "master", "--listen",
			       "127.0.0.1:0", "--data-dir", datadir,
			       "--bootstrap", NULL };
	json_t *arr;
	int st;

	master_start();
	SUBMIT("--node", "absent", "--wait-for-node", "--", "true");
	master_kill9();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'/raft/*", datadir);
	cr_assert_eq(system(cmd), 0);
	st = nd_test_run(argv, out, sizeof(out), err, sizeof(err), 10000);
	cr_assert_eq(st, 1, "started on an emptied log: %s", out);
	cr_assert(strstr(err, "--bootstrap") && strstr(err, "no Raft log"),
		  "%s", err);
	ND_CHECK(nd_test_daemon_start_argv(&d, boot));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	arr = CLI_JSON("tasks", "--json");
	cr_assert_eq(json_array_size(arr), 0);
	json_decref(arr);
	STOP_OK(&d);
	/* a directory never used: a new master, no flag needed */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", datadir);
	cr_assert_eq(system(cmd), 0);
	ND_CHECK(nd_test_daemon_start_argv(&d, argv));
	STOP_OK(&d);
}

/* noded operator snapshot save, inspect, restore: a master's ledger to a
 * file, what it holds, and another master's ledger replaced by it (through
 * its log: still there after kill -9); a file that is no snapshot is
 * refused and changes nothing. */
Test(raft, snapshot_save_inspect_and_restore)
{
	char file[160], bad[160];
	uint64_t a, b;
	json_t *arr, *j;
	FILE *f;

	snprintf(file, sizeof(file), "%s/ledger.snap", tmpdir);
	snprintf(bad, sizeof(bad), "%s/bad.snap", tmpdir);
	master_start();
	a = SUBMIT("--node", "absent", "--wait-for-node", "--", "echo", "a");
	b = SUBMIT("--node", "absent", "--wait-for-node", "--", "echo", "b");
	CLI(&R, "operator", "snapshot", "save", file);
	EXPECT_STATUS(&R, 0);
	CLI(&R, "operator", "snapshot", "save", file);
	cr_assert_eq(R.st, 1, "a snapshot overwrote a file");
	CLI(&R, "operator", "snapshot", "inspect", file, "--json");
	EXPECT_STATUS(&R, 0);
	j = json_loads(R.out, 0, NULL);
	cr_assert_eq(json_integer_value(json_object_get(j, "tasks")), 2);
	cr_assert_eq(json_integer_value(json_object_get(j, "pending")), 2);
	json_decref(j);
	master_kill9();

	/* another master, with a task of its own */
	snprintf(datadir, sizeof(datadir), "%s/other", tmpdir);
	master_port = 0;
	master_start();
	SUBMIT("--node", "elsewhere", "--wait-for-node", "--", "true");
	f = fopen(bad, "w");
	cr_assert(f && fputs("not a snapshot", f) >= 0 && !fclose(f));
	CLI(&R, "operator", "snapshot", "restore", bad);
	cr_assert_eq(R.st, 1);
	cr_assert(strstr(R.err, "not a snapshot"), "%s", R.err);
	arr = CLI_JSON("tasks", "--json");
	cr_assert_eq(json_array_size(arr), 1);
	json_decref(arr);
	CLI(&R, "operator", "snapshot", "restore", file);
	EXPECT_STATUS(&R, 0);
	master_kill9();
	master_start();
	arr = CLI_JSON("tasks", "--json");
	cr_assert_eq(json_array_size(arr), 2, "%s", R.out);
	json_decref(arr);
	{
		char ids[32];

		snprintf(ids, sizeof(ids), "%" PRIu64, b);
		j = CLI_JSON("task", ids, "--json");
		cr_assert_str_eq(json_string_value(json_array_get(
			json_object_get(j, "argv"), 1)) ?: "?", "b");
		json_decref(j);
	}
	cr_assert(b > a);
	STOP_OK(&d);
}
