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
static char tmpdir[64], token[128];
static struct nd_test_cli R;

static void setup(void)
{
	int fd;

	memset(m, 0, sizeof(m));
	worker = 0;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/noded-cluster-XXXXXX");
	cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
	cr_assert(!nd_test_cluster_ports(N, client_port, raft_port, list,
					 sizeof(list)), "%s", nd_test_why);
	/* the masters share a token: their Raft links prove it
	 * (src/raft/transport.c); the CLI and the worker take it from the
	 * environment */
	snprintf(token, sizeof(token), "%s/token", tmpdir);
	fd = open(token, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	cr_assert(fd >= 0);
	cr_assert(write(fd, "cluster-test-token-0123456789\n", 30) == 30);
	close(fd);
	setenv("NODED_TOKEN_FILE", token, 1);
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

/* Master i: the first bootstraps, the others join it (or, restarted,
 * come back with their log). */
static void master_start(int i, bool join)
{
	char listen[32], raft[32], dir[128], to[32];
	const char *argv[18] = { nd_test_bin(), "master", "--listen", listen,
				 "--data-dir", dir, "--raft-listen", raft,
				 "--heartbeat-timeout", "3", "--lease", "6",
				 "--token-file", token };
	int n = 14;

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
	cr_assert(!nd_test_daemon_restart(&m[i], argv, errfd[i]),
		  "master %d did not start: %s; %s", i, nd_test_why,
		  nd_test_memfd_text(errfd[i]));
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
	return nd_test_raft_leader(&R, list, m, client_port, N, voters, ms);
}

static void cluster_start(void)
{
	master_start(0, false);
	for (int i = 1; i < N; i++)
		master_start(i, true);
	cr_assert(leader_index(N, 20000) >= 0, "no leader with 3 voters: "
		  "%s\n%s\n%s", nd_test_memfd_text(errfd[0]), nd_test_memfd_text(errfd[1]),
		  nd_test_memfd_text(errfd[2]));
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
	return nd_test_task_state(&R, list, id, buf, len);
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
	for (int i = 0; i < 200 && nd_test_file_lines(acked) < 30; i++)
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
	cr_assert_eq(nd_test_file_lines(ran), 1, "ran %d times", nd_test_file_lines(ran));
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
		struct nd_client_opts o = {
			.token = (const uint8_t *)"cluster-test-token-0123456789",
			.token_len = 29 };

		if (!nd_client_connect(&c, old, &o)) {
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

/* A Raft link that does not prove the masters' token: libraft's own
 * handshake, then a wrong proof, or none; each is closed (a wrong proof at
 * once, silence within 5 s), said in the log, and the master serves on. */
Test(cluster, a_raft_link_without_the_token_is_refused)
{
	/* libraft's handshake: protocol 1, id 99, address length 16 */
	uint8_t hs[24 + 16] = { 1, 0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0,
				0, 16 };
	uint8_t nonce[32], junk[64];
	int fd[2];

	memcpy(hs + 24, "127.0.0.1:9\0\0\0\0\0", 16);
	memset(junk, 0x5a, sizeof(junk));
	master_start(0, false);
	cr_assert(leader_index(1, 15000) >= 0);
	for (int k = 0; k < 2; k++) {
		struct sockaddr_in sa = { .sin_family = AF_INET };

		fd[k] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa.sin_port = htons((uint16_t)raft_port[0]);
		cr_assert(!connect(fd[k], (struct sockaddr *)&sa, sizeof(sa)));
		cr_assert(write(fd[k], hs, sizeof(hs)) == sizeof(hs));
		/* the acceptor's nonce comes first */
		cr_assert_eq(recv(fd[k], nonce, sizeof(nonce), MSG_WAITALL),
			     (ssize_t)sizeof(nonce));
	}
	cr_assert(write(fd[0], junk, sizeof(junk)) == sizeof(junk));
	ND_CHECK(nd_test_expect_closed(fd[0], 5000));
	ND_CHECK(nd_test_expect_closed(fd[1], 8000)); /* silent: timed out */
	close(fd[0]);
	close(fd[1]);
	cr_assert(strstr(nd_test_memfd_text(errfd[0]), "raft.auth_refused"), "%s",
		  nd_test_memfd_text(errfd[0]));
	cr_assert(submit_pending() > 0);
}

/* ---- 1,000 submits in flight ---- */

#define INFLIGHT 1000

struct sent {
	uint64_t id;                  /* the task the reply named */
	int status;                   /* 1: no reply yet */
};

static void on_submitted(struct nd_client *c, int status,
			 const Noded__Frame *f, bool done, void *arg)
{
	struct sent *s = arg;

	s->status = status;
	if (!status && f->body_case == NODED__FRAME__BODY_SUBMIT_REPLY &&
	    f->submit_reply->n_task_ids)
		s->id = f->submit_reply->task_ids[0];
}

static const struct nd_client_opts token_opts = {
	.token = (const uint8_t *)"cluster-test-token-0123456789",
	.token_len = 29,
};

/* A client of master i. */
static struct nd_client *client_of(int i)
{
	struct nd_client *c;
	char addr[32];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", client_port[i]);
	cr_assert_eq(nd_client_connect(&c, addr, &token_opts), 0);
	return c;
}

/* kill -9 of the leader with 1,000 submits in flight on one connection
 * (each with a session of its own, as `noded submit` sends them): every
 * acknowledged one is there after the failover; each unanswered one, sent
 * again with its session to the new leader, is made exactly once (or
 * answered with the task it made before the kill); the cluster holds
 * exactly 1,000 tasks, one per submit. */
Test(cluster, leader_kill9_with_1000_submits_in_flight)
{
	static struct sent sent[INFLIGHT];
	char *argv[] = { "true" };
	Noded__Command cmd = NODED__COMMAND__INIT;
	Noded__TaskSpec sp = NODED__TASK_SPEC__INIT;
	Noded__Frame f = NODED__FRAME__INIT;
	struct nd_client *c;
	uint64_t base = (uint64_t)nd_test_now_ms() << 12, acked = 0;
	int lead, next, answered = 0;
	json_t *arr;

	cluster_start();
	lead = leader_index(N, 5000);
	c = client_of(lead);
	cmd.n_argv = 1;
	cmd.argv = argv;
	sp.command = &cmd;
	sp.node = "absent";
	sp.wait_for_node = true;
	sp.sequence = 1;
	f.body_case = NODED__FRAME__BODY_SUBMIT;
	f.submit = &sp;
	for (int i = 0; i < INFLIGHT; i++) {
		sent[i].status = 1;
		sp.session = base + (uint64_t)i;
		cr_assert(nd_client_start(c, &f, on_submitted, &sent[i]) > 0);
	}
	/* some answered, then the kill, the rest in flight */
	while (answered < 200) {
		int r = nd_client_poll(c, 5000);

		cr_assert(r >= 0, "poll: %d", r);
		answered = 0;
		for (int i = 0; i < INFLIGHT; i++)
			answered += sent[i].status != 1;
	}
	kill9(lead);
	while (nd_client_poll(c, 2000) >= 0 && nd_client_pending(c))
		;
	nd_client_close(c); /* fails what is left: -ECANCELED */
	next = leader_index(N - 1, 15000);
	cr_assert(next >= 0 && next != lead);
	c = client_of(next);
	for (int i = 0; i < INFLIGHT; i++) {
		Noded__Frame *reply = NULL;
		int r;

		if (!sent[i].status && sent[i].id) {
			acked++;
			continue;
		}
		sp.session = base + (uint64_t)i;
		r = nd_client_call(c, &f, &reply, 10000);
		cr_assert_eq(r, 0, "submit %d sent again: %s", i, reply &&
			     reply->error ? reply->error->message : "");
		sent[i].id = reply->submit_reply->task_ids[0];
		nd_frame_free(reply, NULL);
	}
	nd_client_close(c);
	cr_assert(acked >= 200, "%" PRIu64 " acknowledged", acked);
	/* one task per submit, no more */
	CLUSTER("tasks", "--json", "--limit", "5000");
	EXPECT_STATUS(&R, 0);
	arr = json_loads(R.out, 0, NULL);
	cr_assert_eq(json_array_size(arr), INFLIGHT, "%zu tasks for %d "
		     "submits", json_array_size(arr), INFLIGHT);
	json_decref(arr);
	for (int i = 0; i < INFLIGHT; i++)
		for (int k = i + 1; k < INFLIGHT; k++)
			cr_assert_neq(sent[i].id, sent[k].id);
}

/* --stale: a follower answers from its copy of the ledger, which follows
 * the log (the tasks submitted at the leader show there within moments);
 * without it the leader answers. */
Test(cluster, a_follower_answers_stale_reads_from_a_copy_that_follows)
{
	char follower[32], ids[32];
	const char *stale[] = { "task", ids, "--stale", "--json", NULL };
	int lead, f;
	uint64_t id;

	cluster_start();
	lead = leader_index(N, 5000);
	f = (lead + 1) % N;
	snprintf(follower, sizeof(follower), "127.0.0.1:%d", client_port[f]);
	id = submit_pending();
	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	for (int i = 0;; i++) {
		nd_test_cli_run(&R, follower, ND_TEST_CLI_MS, stale);
		if (!R.st)
			break;
		cr_assert(i < 50, "the follower never had task %s: %s", ids,
			  R.err);
		nd_test_sleep_ms(100);
	}
	cr_assert(strstr(R.out, "\"PENDING\""), "%s", R.out);
	kill9(lead); /* the copy stays readable */
	nd_test_cli_run(&R, follower, ND_TEST_CLI_MS, stale);
	EXPECT_STATUS(&R, 0);
}

/* The client library follows a follower's NOT_LEADER to the leader, with
 * its credentials (the token), and the request then succeeds there. */
Test(cluster, the_client_library_follows_not_leader)
{
	Noded__Frame f = NODED__FRAME__INIT, *reply = NULL;
	Noded__TaskListRequest lr = NODED__TASK_LIST_REQUEST__INIT;
	struct nd_client *c;
	int lead, r;

	cluster_start();
	lead = leader_index(N, 5000);
	c = client_of((lead + 1) % N);
	f.body_case = NODED__FRAME__BODY_LIST_TASKS;
	f.list_tasks = &lr;
	r = nd_client_call(c, &f, &reply, 5000);
	cr_assert_eq(r, ND_EREMOTE);
	cr_assert_eq(reply->error->code, NODED__ERROR_CODE__NOT_LEADER);
	cr_assert_eq(nd_client_follow_leader(c, reply, 5000), 0);
	nd_frame_free(reply, NULL);
	reply = NULL;
	cr_assert_eq(nd_client_call(c, &f, &reply, 5000), 0);
	cr_assert_eq(reply->body_case, NODED__FRAME__BODY_TASK_LIST);
	nd_frame_free(reply, NULL);
	/* a reply that names no leader is not followed */
	cr_assert_eq(nd_client_follow_leader(c, NULL, 5000), -EINVAL);
	nd_client_close(c);
}

/* A worker given one master, a follower, is told where the leader is and
 * registers there. */
Test(cluster, a_worker_given_a_follower_finds_the_leader)
{
	char dir[128], follower[32];
	const char *argv[] = { nd_test_bin(), "worker", "--master", follower,
			       "--name", "w1", "--state-dir", dir, NULL };
	int lead, null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	cluster_start();
	lead = leader_index(N, 5000);
	snprintf(follower, sizeof(follower), "127.0.0.1:%d",
		 client_port[(lead + 1) % N]);
	snprintf(dir, sizeof(dir), "%s/worker", tmpdir);
	worker = nd_test_spawn(argv, null_fd, null_fd, null_fd);
	close(null_fd);
	cr_assert(worker > 0);
	wait_worker();
	CLUSTER("run", "--", "echo", "found");
	EXPECT_STATUS(&R, 0);
	cr_assert_str_eq(R.out, "found\n");
}
