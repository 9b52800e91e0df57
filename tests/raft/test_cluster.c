/*
 * A cluster of three masters (tests/raft/test_raft.c has the lone one),
 * end to end on loopback: real masters (one bootstraps, two --join), a
 * real worker given all three, the real CLI given all three.
 *
 * - kill -9 of the leader while submits stream in: every acknowledged
 *   submit is there on the new leader, a running task runs on and ends
 *   once, and the worker follows the new leader;
 * - kill -9 of a follower: the others go on; it comes back and catches up;
 * - every master killed and restarted: a leader again, every task back;
 * - a member removed while tasks run: the rest go on;
 * - the leader frozen (SIGSTOP): replaced, and back it takes no write.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cli.h"
#include "harness.h"
#include "noded/client.h"

#define N 3

static struct nd_test_daemon m[N];
static int client_port[N], raft_port[N], errfd[N] = { -1, -1, -1 };
static char list[128];
static pid_t worker;
static char tmpdir[64];
static struct nd_test_cli R;

/* A free loopback port (bound, then closed: the test starts its masters
 * right after). */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	cr_assert(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(!bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	cr_assert(!getsockname(fd, (struct sockaddr *)&sa, &len));
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static void setup(void)
{
	memset(m, 0, sizeof(m));
	worker = 0;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/noded-cluster-XXXXXX");
	cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
	for (int i = 0; i < N; i++) {
		client_port[i] = free_port();
		raft_port[i] = free_port();
	}
	snprintf(list, sizeof(list), "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d",
		 client_port[0], client_port[1], client_port[2]);
}

static void teardown(void)
{
	char cmd[128];

	if (worker > 0)
		nd_test_kill_pid(worker);
	for (int i = 0; i < N; i++)
		nd_test_daemon_stop(&m[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd))
		cr_log_warn("could not remove %s", tmpdir);
}

TestSuite(cluster, .init = setup, .fini = teardown, .timeout = 180);

static const char *memfd_text(int fd)
{
	static char buf[1 << 16];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* Master i: the first bootstraps, the others join it (or, restarted,
 * come back with their log). */
static void master_start(int i, bool join)
{
	char listen[32], raft[32], dir[128], to[32];
	const char *argv[16] = { nd_test_bin(), "master", "--listen", listen,
				 "--data-dir", dir, "--raft-listen", raft,
				 "--heartbeat-timeout", "3", "--lease", "6" };
	int n = 12;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", client_port[i]);
	snprintf(raft, sizeof(raft), "127.0.0.1:%d", raft_port[i]);
	snprintf(dir, sizeof(dir), "%s/m%d", tmpdir, i);
	snprintf(to, sizeof(to), "127.0.0.1:%d", client_port[0]);
	if (join) {
		argv[n++] = "--join";
		argv[n++] = to;
	}
	argv[n] = NULL;
	if (errfd[i] < 0)
		errfd[i] = memfd_create("master-stderr", MFD_CLOEXEC);
	for (int k = 0; k < 50; k++) {
		if (!nd_test_daemon_start_err(&m[i], argv, errfd[i]))
			return;
		nd_test_sleep_ms(100); /* the port may linger after a kill */
	}
	cr_assert_fail("master %d did not start: %s; %s", i, nd_test_why,
		       memfd_text(errfd[i]));
}

/* The peers as list-peers --json gives them (caller decrefs), asked of
 * the cluster; NULL when it does not answer. */
static json_t *peers(void)
{
	const char *argv[] = { "operator", "raft", "list-peers", "--json",
			       NULL };

	nd_test_cli_run(&R, list, ND_TEST_CLI_MS, argv);
	return R.st ? NULL : json_loads(R.out, 0, NULL);
}

/* Which master leads (its index), waiting up to ms for one that every
 * voter is in: -1 never. */
static int leader_index(int voters, int ms)
{
	int64_t deadline = nd_test_now_ms() + ms;

	for (;;) {
		json_t *arr = peers(), *p;
		size_t k;
		int lead = -1, nvoters = 0;

		json_array_foreach(arr, k, p) {
			const char *client = json_string_value(
				json_object_get(p, "client_address"));

			nvoters += json_is_true(json_object_get(p, "voter"));
			if (strcmp(json_string_value(json_object_get(
				   p, "state")), "leader"))
				continue;
			for (int i = 0; i < N; i++)
				if (m[i].pid && client &&
				    atoi(strrchr(client, ':') + 1) ==
					    client_port[i])
					lead = i;
		}
		json_decref(arr);
		if (lead >= 0 && nvoters >= voters)
			return lead;
		if (nd_test_now_ms() >= deadline)
			return -1;
		nd_test_sleep_ms(100);
	}
}

static void cluster_start(void)
{
	master_start(0, false);
	for (int i = 1; i < N; i++)
		master_start(i, true);
	cr_assert(leader_index(N, 20000) >= 0, "no leader with 3 voters: "
		  "%s\n%s\n%s", memfd_text(errfd[0]), memfd_text(errfd[1]),
		  memfd_text(errfd[2]));
}

static void kill9(int i)
{
	kill(m[i].pid, SIGKILL);
	nd_test_daemon_wait(&m[i], 5000);
}

static void worker_start(void)
{
	char dir[128];
	const char *argv[] = { nd_test_bin(), "worker", "--master", list,
			       "--name", "w1", "--slots", "4", "--state-dir",
			       dir, NULL };
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	snprintf(dir, sizeof(dir), "%s/worker", tmpdir);
	worker = nd_test_spawn(argv, null_fd, null_fd, null_fd);
	close(null_fd);
	cr_assert(worker > 0);
}

/* `noded ARGS...` against the cluster. */
static void cli_v(const char *const args[])
{
	nd_test_cli_run(&R, list, ND_TEST_CLI_MS, args);
}

#define CLUSTER(...) cli_v((const char *const[]){ __VA_ARGS__, NULL })

/* Waits until the leader has the worker, ALIVE with its slots. */
static void wait_worker(void)
{
	int64_t deadline = nd_test_now_ms() + 15000;

	for (;;) {
		json_t *arr, *n;
		size_t k;
		bool alive = false;

		CLUSTER("nodes", "--json");
		arr = R.st ? NULL : json_loads(R.out, 0, NULL);
		json_array_foreach(arr, k, n)
			alive |= !strcmp(json_string_value(json_object_get(
					 n, "state")) ?: "", "ALIVE") &&
				 json_integer_value(json_object_get(
					 n, "slots_total")) > 0;
		json_decref(arr);
		if (alive)
			return;
		cr_assert(nd_test_now_ms() < deadline, "the worker never "
			  "registered with the leader");
		nd_test_sleep_ms(100);
	}
}

static uint64_t submit_pending(void)
{
	CLUSTER("submit", "--node", "absent", "--wait-for-node", "--", "true");
	EXPECT_STATUS(&R, 0);
	return strtoull(R.out, NULL, 10);
}

static const char *task_state(uint64_t id, char *buf, size_t len)
{
	char ids[32];
	json_t *t;

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	CLUSTER("task", ids, "--json");
	if (R.st) {
		snprintf(buf, len, "(none: %.200s)", R.err);
		return buf;
	}
	t = json_loads(R.out, 0, NULL);
	snprintf(buf, len, "%s", t ? json_string_value(json_object_get(
						   t, "state")) : "?");
	json_decref(t);
	return buf;
}

static void wait_state(uint64_t id, const char *want, int ms)
{
	int64_t deadline = nd_test_now_ms() + ms;
	char st[512];

	while (strcmp(task_state(id, st, sizeof(st)), want)) {
		cr_assert(nd_test_now_ms() < deadline, "task %" PRIu64 " is %s,"
			  " not %s", id, st, want);
		nd_test_sleep_ms(100);
	}
}

static int lines_of(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

Test(cluster, leader_kill9_loses_no_acknowledged_submit)
{
	char acked[160], cmd[640], ran[160], script[256], line[64], st[256];
	uint64_t running, n = 0;
	int lead, next;
	pid_t loop;
	FILE *f;

	cluster_start();
	worker_start();
	wait_worker();
	snprintf(ran, sizeof(ran), "%s/ran", tmpdir);
	snprintf(script, sizeof(script), "echo once >> %s; sleep 3", ran);
	CLUSTER("submit", "--", "sh", "-c", script);
	EXPECT_STATUS(&R, 0);
	running = strtoull(R.out, NULL, 10);
	wait_state(running, "RUNNING", 15000);

	snprintf(acked, sizeof(acked), "%s/acked", tmpdir);
	snprintf(cmd, sizeof(cmd), "for i in $(seq 1 400); do '%s' submit "
		 "--master %s --node absent --wait-for-node -- true >> '%s' "
		 "2>/dev/null; done", nd_test_bin(), list, acked);
	loop = nd_test_spawn((const char *const[]){ "/bin/sh", "-c", cmd,
						  NULL }, -1, -1, -1);
	cr_assert(loop > 0);
	for (int i = 0; i < 200 && lines_of(acked) < 30; i++)
		nd_test_sleep_ms(50);
	lead = leader_index(N, 5000);
	cr_assert(lead >= 0);
	kill9(lead);
	next = leader_index(N - 1, 15000);
	cr_assert(next >= 0 && next != lead, "no new leader after the kill");
	cr_assert(nd_test_wait_pid(loop, 120000) >= 0);

	/* every id a submit printed is there, PENDING */
	f = fopen(acked, "r");
	cr_assert(f);
	while (fgets(line, sizeof(line), f)) {
		uint64_t id = strtoull(line, NULL, 10);

		if (!id)
			continue;
		n++;
		cr_assert_str_eq(task_state(id, st, sizeof(st)), "PENDING",
				 "acknowledged task %" PRIu64 " after the "
				 "leader's kill -9", id);
	}
	fclose(f);
	cr_assert(n >= 30, "only %" PRIu64 " submits acknowledged", n);
	/* the running task ran on, reported to the new leader, once */
	wait_state(running, "SUCCEEDED", 30000);
	cr_assert_eq(lines_of(ran), 1, "ran %d times", lines_of(ran));
	/* the worker follows: new tasks run */
	CLUSTER("run", "--", "echo", "after");
	EXPECT_STATUS(&R, 0);
	cr_assert_str_eq(R.out, "after\n");
}

Test(cluster, follower_kill9_and_return)
{
	uint64_t a, b;
	int lead, f;
	char st[256];

	cluster_start();
	lead = leader_index(N, 5000);
	f = (lead + 1) % N;
	a = submit_pending();
	kill9(f);
	b = submit_pending(); /* two of three: still a majority */
	cr_assert(b > a);
	master_start(f, false); /* back with its log */
	/* caught up: with the old leader gone, it has every task */
	cr_assert(leader_index(N, 15000) >= 0);
	nd_test_sleep_ms(500);
	kill9(lead);
	cr_assert(leader_index(N - 1, 15000) >= 0);
	cr_assert_str_eq(task_state(a, st, sizeof(st)), "PENDING");
	cr_assert_str_eq(task_state(b, st, sizeof(st)), "PENDING");
}

Test(cluster, all_masters_killed_and_restarted)
{
	uint64_t ids[5];
	char st[256];

	cluster_start();
	for (int i = 0; i < 5; i++)
		ids[i] = submit_pending();
	for (int i = 0; i < N; i++)
		kill9(i);
	for (int i = 0; i < N; i++)
		master_start(i, false);
	cr_assert(leader_index(N, 20000) >= 0, "no leader after a restart");
	for (int i = 0; i < 5; i++)
		cr_assert_str_eq(task_state(ids[i], st, sizeof(st)), "PENDING");
	cr_assert(submit_pending() > ids[4]);
}

Test(cluster, member_removed_while_tasks_run)
{
	char id[32], ids[32];
	int lead, gone;
	json_t *arr, *p;
	size_t k;
	uint64_t t;

	cluster_start();
	worker_start();
	wait_worker();
	CLUSTER("submit", "--", "sleep", "2");
	EXPECT_STATUS(&R, 0);
	t = strtoull(R.out, NULL, 10);
	lead = leader_index(N, 5000);
	gone = (lead + 1) % N;
	arr = peers();
	json_array_foreach(arr, k, p)
		if (atoi(strrchr(json_string_value(json_object_get(
			p, "client_address")), ':') + 1) == client_port[gone])
			snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT,
				 json_integer_value(json_object_get(p, "id")));
	json_decref(arr);
	CLUSTER("operator", "raft", "remove-peer", id);
	EXPECT_STATUS(&R, 0);
	arr = peers();
	cr_assert_eq(json_array_size(arr), N - 1, "%s", R.out);
	json_decref(arr);
	kill9(gone);
	snprintf(ids, sizeof(ids), "%" PRIu64, t);
	wait_state(t, "SUCCEEDED", 20000);
	cr_assert(submit_pending() > t);
	/* a bad id is refused, the cluster unchanged */
	CLUSTER("operator", "raft", "remove-peer", "12345");
	cr_assert_neq(R.st, 0);
	cr_assert(strstr(R.err, "no member 12345"), "%s", R.err);
}

/* The leader frozen (SIGSTOP, as a partition looks from the others): the
 * other two elect a leader and take writes; the old one, back (SIGCONT),
 * has lost the leadership and takes no write, and its acknowledged
 * tasks are all there. */
Test(cluster, frozen_leader_is_replaced_and_steps_down)
{
	char old[32], st[256];
	uint64_t a, b;
	int lead, next;
	const char *argv[] = { "submit", "--node", "absent", "--wait-for-node",
			       "--", "true", NULL };

	cluster_start();
	a = submit_pending();
	lead = leader_index(N, 5000);
	cr_assert(lead >= 0);
	cr_assert_eq(kill(m[lead].pid, SIGSTOP), 0);
	/* the cluster goes on without it (the CLI finds the new leader) */
	b = submit_pending();
	cr_assert(b > a);
	next = leader_index(N, 15000);
	cr_assert(next >= 0 && next != lead);
	cr_assert_eq(kill(m[lead].pid, SIGCONT), 0);
	/* back: it follows; asked directly, it refuses to write */
	snprintf(old, sizeof(old), "127.0.0.1:%d", client_port[lead]);
	for (int i = 0;; i++) {
		Noded__Frame f = NODED__FRAME__INIT, *reply = NULL;
		Noded__LeaderRequest lr = NODED__LEADER_REQUEST__INIT;
		struct nd_client *c;
		bool follows = false;

		f.body_case = NODED__FRAME__BODY_LEADER;
		f.leader = &lr;
		if (!nd_client_connect(&c, old, NULL)) {
			if (!nd_client_call(c, &f, &reply, 2000))
				follows = !reply->leader_info->is_leader;
			nd_frame_free(reply, NULL);
			nd_client_close(c);
		}
		if (follows)
			break;
		cr_assert(i < 100, "the old leader still says it leads");
		nd_test_sleep_ms(100);
	}
	nd_test_cli_run(&R, old, ND_TEST_CLI_MS, argv);
	/* followed to the new leader: made there, once */
	EXPECT_STATUS(&R, 0);
	cr_assert(strtoull(R.out, NULL, 10) > b);
	cr_assert_str_eq(task_state(a, st, sizeof(st)), "PENDING");
	cr_assert_str_eq(task_state(b, st, sizeof(st)), "PENDING");
}
