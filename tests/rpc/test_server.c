/*
 * Protocol behaviour of `noded master` (SERVER_CONTRACT.md): the handshake,
 * unary calls, pipelining, the AssignTask stream and its cancellation,
 * several connections and shards, shutdown on SIGTERM and bad arguments.
 * Each test starts a real daemon on an ephemeral loopback port and talks to
 * it over raw sockets (tests/harness.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <poll.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "harness.h"
#include "noded/client.h"

static struct nd_test_daemon d;

static void setup(void)
{
	memset(&d, 0, sizeof(d));
}

static void teardown(void)
{
	nd_test_daemon_stop(&d);
}

TestSuite(server, .init = setup, .fini = teardown, .timeout = 30);

/* Connect and do the Hello handshake; evaluates to the fd. */
#define CONNECT_HELLO(d)                                                     \
	({                                                                   \
		int nd_c_ = CONNECT(d);                                      \
		HELLO(nd_c_);                                                \
		nd_c_;                                                       \
	})

/* Open an AssignTask stream with request id `id` for node `name` and check
 * the open item. */
#define ASSIGN_OPEN(fd, id) ASSIGN_OPEN_AS(fd, id, "worker-test")
#define ASSIGN_OPEN_AS(fd, id, name)                                         \
	do {                                                                 \
		Noded__Frame af_, *ar_;                                      \
		Noded__AssignTaskRequest aa_;                                \
		nd_test_frame_assign(&af_, &aa_, (id), (name));              \
		SEND_FRAME((fd), &af_);                                      \
		ar_ = RECV(fd);                                              \
		EXPECT_FRAME(ar_, NODED__FRAME_KIND__STREAM_ITEM, (id),      \
			     NODED__FRAME__BODY_ASSIGN_OPEN);                \
		nd_frame_free(ar_, NULL);                                    \
	} while (0)

/* CANCEL stream `id` and expect its STREAM_END with Error CANCELLED. */
#define CANCEL_EXPECT_END(fd, id)                                            \
	do {                                                                 \
		Noded__Frame cf_;                                            \
		nd_test_frame_cancel(&cf_, (id));                            \
		SEND_FRAME((fd), &cf_);                                      \
		ND_CHECK(nd_test_expect_error((fd),                          \
					      NODED__FRAME_KIND__STREAM_END, \
					      NODED__ERROR_CODE__CANCELLED,  \
					      (int64_t)(id)));               \
	} while (0)

Test(server, hello_reply_fields)
{
	Noded__Frame f, *r;
	Noded__HelloRequest h;
	int fd;

	DAEMON_START(&d, "--name", "node-under-test");
	fd = CONNECT(&d);
	nd_test_frame_hello(&f, &h, 77, ND_PROTOCOL_VERSION);
	SEND_FRAME(fd, &f);
	r = RECV(fd);
	EXPECT_FRAME(r, NODED__FRAME_KIND__REPLY, 77,
		     NODED__FRAME__BODY_HELLO_REPLY);
	cr_expect_eq(r->hello_reply->protocol_version, 2,
		     "protocol_version %u, want 2",
		     r->hello_reply->protocol_version);
	cr_expect_str_eq(r->hello_reply->node_name, "node-under-test",
			 "node_name \"%s\", want the --name given",
			 r->hello_reply->node_name);
	cr_expect_eq(r->hello_reply->role, NODED__ROLE__ROLE_MASTER,
		     "role %d, want ROLE_MASTER", r->hello_reply->role);
	cr_expect_eq(r->hello_reply->max_frame, ND_MAX_FRAME_DEFAULT,
		     "max_frame %u, want the default %u",
		     r->hello_reply->max_frame, ND_MAX_FRAME_DEFAULT);
	cr_expect_gt(r->hello_reply->heartbeat_interval_ms, 0,
		     "heartbeat_interval_ms is 0");
	nd_frame_free(r, NULL);
	PING(fd, 78);
	close(fd);
	STOP_OK(&d);
}

Test(server, ping_echoes_payload_and_id)
{
	static uint8_t big[65536];
	uint8_t payload[1000];
	int fd;

	DAEMON_START(&d);
	fd = CONNECT_HELLO(&d);
	srand(42);
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)rand();
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	/* an id over 32 bits, an empty payload, binary and 64 KiB payloads */
	ND_CHECK(nd_test_ping(fd, 0x123456789abcULL, payload, sizeof(payload)));
	ND_CHECK(nd_test_ping(fd, 2, "", 0));
	ND_CHECK(nd_test_ping(fd, UINT64_MAX, "\0\1\2\377", 4));
	ND_CHECK(nd_test_ping(fd, 3, big, sizeof(big)));
	close(fd);
	STOP_OK(&d);
}

Test(server, hundred_pipelined_pings_in_one_send)
{
	enum { N = 100, BASE = 1000 };
	static uint8_t buf[N * 64];
	char payloads[N][16];
	bool seen[N] = { false };
	size_t len = 0;
	int fd;

	DAEMON_START(&d);
	fd = CONNECT_HELLO(&d);
	for (int i = 0; i < N; i++) {
		Noded__Frame f;
		Noded__PingRequest p;

		snprintf(payloads[i], sizeof(payloads[i]), "p%d", BASE + i);
		nd_test_frame_ping(&f, &p, BASE + i, payloads[i],
				   strlen(payloads[i]));
		ND_CHECK(nd_test_encode_append(buf, sizeof(buf), &len, &f));
	}
	SEND_RAW(fd, buf, len);
	for (int n = 0; n < N; n++) {
		Noded__Frame *r = RECV(fd);
		uint64_t i = r->id - BASE;

		cr_assert(r->kind == NODED__FRAME_KIND__REPLY &&
				  r->body_case == NODED__FRAME__BODY_PONG &&
				  r->id >= BASE && i < N,
			  "reply %d of %d: got %s", n + 1, N,
			  nd_test_describe(r));
		cr_assert(!seen[i], "id %llu answered twice",
			  (unsigned long long)r->id);
		seen[i] = true;
		cr_assert(r->pong->payload.len == strlen(payloads[i]) &&
				  memcmp(r->pong->payload.data, payloads[i],
					 r->pong->payload.len) == 0,
			  "id %llu: pong payload does not match its ping",
			  (unsigned long long)r->id);
		nd_frame_free(r, NULL);
	}
	EXPECT_QUIET(fd, 200);
	PING(fd, 1);
	close(fd);
	STOP_OK(&d);
}

Test(server, report_status_reply_fields)
{
	Noded__NodeStatus__LabelsEntry l1, l2, *labels[] = { &l1, &l2 };
	uint64_t tasks[] = { 1, 2, 3 };
	Noded__NodeStatus st = NODED__NODE_STATUS__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *hello, *r;
	struct timespec now;
	uint32_t hb;
	int64_t now_ms, skew;
	int fd;

	DAEMON_START(&d);
	fd = CONNECT(&d);
	ND_CHECK(nd_test_hello(fd, 1, &hello));
	hb = hello->hello_reply->heartbeat_interval_ms;
	nd_frame_free(hello, NULL);
	ASSIGN_OPEN_AS(fd, 2, "worker-1"); /* reports need a registration */

	noded__node_status__labels_entry__init(&l1);
	noded__node_status__labels_entry__init(&l2);
	l1.key = "rack";
	l1.value = "r1";
	l2.key = "gpu";
	l2.value = "none";
	st.name = "worker-1";
	st.n_labels = 2;
	st.labels = labels;
	st.load1 = 0.5;
	st.load5 = 0.25;
	st.load15 = 0.125;
	st.mem_total_bytes = 8ull << 30;
	st.mem_available_bytes = 4ull << 30;
	st.slots_total = 4;
	st.slots_free = 1;
	st.n_running_tasks = 3;
	st.running_tasks = tasks;
	st.uptime_ms = 123456;
	f.id = 5;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &st;

	for (int round = 0; round < 2; round++) {
		SEND_FRAME(fd, &f);
		r = RECV(fd);
		EXPECT_FRAME(r, NODED__FRAME_KIND__REPLY, f.id,
			     NODED__FRAME__BODY_STATUS_REPLY);
		clock_gettime(CLOCK_REALTIME, &now);
		now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
		skew = (int64_t)r->status_reply->server_time_ms - now_ms;
		cr_expect(skew > -60000 && skew < 60000,
			  "server_time_ms %llu is %lld ms from our clock; want "
			  "unix time in ms",
			  (unsigned long long)r->status_reply->server_time_ms,
			  (long long)skew);
		cr_expect_gt(r->status_reply->heartbeat_interval_ms, 0,
			     "status heartbeat_interval_ms is 0");
		cr_expect_eq(r->status_reply->heartbeat_interval_ms, hb,
			     "status heartbeat_interval_ms %u differs from "
			     "Hello's %u",
			     r->status_reply->heartbeat_interval_ms, hb);
		nd_frame_free(r, NULL);
		f.id++;
	}
	PING(fd, 9);
	close(fd);
	STOP_OK(&d);
}

/* The node's entry in ListNodes on fd (request id), from a fresh frame the
 * caller frees with *r. */
static const Noded__NodeInfo *listed(int fd, uint64_t id, const char *name,
				     Noded__Frame **r)
{
	Noded__NodeListRequest lr = NODED__NODE_LIST_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT;

	f.id = id;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_LIST_NODES;
	f.list_nodes = &lr;
	SEND_FRAME(fd, &f);
	*r = RECV(fd);
	EXPECT_FRAME(*r, NODED__FRAME_KIND__REPLY, id,
		     NODED__FRAME__BODY_NODE_LIST);
	for (size_t i = 0; i < (*r)->node_list->n_nodes; i++)
		if (!strcmp((*r)->node_list->nodes[i]->name, name))
			return (*r)->node_list->nodes[i];
	cr_assert_fail("node %s is not listed", name);
	return NULL;
}

/* The node list shows the latest report, whole: a report that grows (more
 * labels, a longer value) and one that shrinks after it (none) each
 * replace the one before, notifications as calls. */
Test(server, node_list_shows_the_latest_report)
{
	Noded__NodeStatus__LabelsEntry l[3], *labels[] = { &l[0], &l[1], &l[2] };
	static const char *const kv[3][2] = {
		{ "rack", "r1" }, { "zone", "a-very-long-zone-name-for-growth" },
		{ "gpu", "none" },
	};
	Noded__NodeStatus st = NODED__NODE_STATUS__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *r;
	const Noded__NodeInfo *ni;
	int fd;

	DAEMON_START(&d);
	fd = CONNECT_HELLO(&d);
	ASSIGN_OPEN_AS(fd, 2, "worker-list");
	for (int i = 0; i < 3; i++) {
		noded__node_status__labels_entry__init(&l[i]);
		l[i].key = (char *)kv[i][0];
		l[i].value = (char *)kv[i][1];
	}
	st.name = "worker-list";
	st.slots_total = 4;
	st.slots_free = 4;
	st.mem_total_bytes = 8ull << 30;
	st.mem_available_bytes = 2ull << 30;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &st;
	for (unsigned round = 0; round < 3; round++) {
		/* 1 label, then 3, then none */
		st.n_labels = round == 0 ? 1 : round == 1 ? 3 : 0;
		st.labels = st.n_labels ? labels : NULL;
		st.load1 = 0.25 * (round + 1);
		st.slots_total = 4 + round;
		st.slots_free = st.slots_total;
		f.id = 10 + round;
		f.kind = round == 0 ? NODED__FRAME_KIND__REQUEST
				    : NODED__FRAME_KIND__NOTIFY;
		SEND_FRAME(fd, &f);
		if (round == 0) {
			r = RECV(fd);
			EXPECT_FRAME(r, NODED__FRAME_KIND__REPLY, f.id,
				     NODED__FRAME__BODY_STATUS_REPLY);
			nd_frame_free(r, NULL);
		}
		/* the list comes after the notification on the same
		 * connection, so it sees it */
		ni = listed(fd, 20 + round, "worker-list", &r);
		cr_expect_eq(ni->n_labels, st.n_labels, "round %u: %zu labels",
			     round, ni->n_labels);
		for (size_t i = 0; i < ni->n_labels && i < st.n_labels; i++) {
			cr_expect_str_eq(ni->labels[i]->key, kv[i][0]);
			cr_expect_str_eq(ni->labels[i]->value, kv[i][1]);
		}
		cr_expect_eq(ni->load1, st.load1, "round %u: load1 %g",
			     round, ni->load1);
		cr_expect_eq(ni->slots_total, st.slots_total);
		cr_expect_eq(ni->mem_total_bytes, 8ull << 30);
		cr_expect_eq(ni->mem_available_bytes, 2ull << 30);
		nd_frame_free(r, NULL);
	}
	PING(fd, 30);
	close(fd);
	STOP_OK(&d);
}

/* A heartbeat sent as a notification is taken and not answered; any other
 * method sent so is refused and the connection closed. */
Test(server, report_status_notification_gets_no_reply)
{
	Noded__NodeStatus st = NODED__NODE_STATUS__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *r;
	Noded__PingRequest p;
	int fd;

	DAEMON_START(&d);
	fd = CONNECT_HELLO(&d);
	ASSIGN_OPEN_AS(fd, 2, "worker-notify");
	st.name = "worker-notify";
	st.slots_total = 2;
	st.slots_free = 2;
	f.id = 7;
	f.kind = NODED__FRAME_KIND__NOTIFY;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &st;
	SEND_FRAME(fd, &f);
	SEND_FRAME(fd, &f);
	/* the next frame is the Ping's reply: nothing came for the two */
	PING(fd, 8);
	EXPECT_QUIET(fd, 300);
	/* an inconsistent one is refused with an Error */
	st.slots_free = 3;
	f.id = 9;
	SEND_FRAME(fd, &f);
	r = RECV(fd);
	EXPECT_FRAME(r, NODED__FRAME_KIND__REPLY, 9, NODED__FRAME__BODY_ERROR);
	cr_expect_eq(r->error->code, NODED__ERROR_CODE__BAD_REQUEST);
	nd_frame_free(r, NULL);
	PING(fd, 10);
	close(fd);

	fd = CONNECT_HELLO(&d);
	nd_test_frame_ping(&f, &p, 11, "one-way", 7);
	f.kind = NODED__FRAME_KIND__NOTIFY;
	SEND_FRAME(fd, &f);
	r = RECV(fd);
	EXPECT_FRAME(r, NODED__FRAME_KIND__REPLY, 11, NODED__FRAME__BODY_ERROR);
	cr_expect_eq(r->error->code, NODED__ERROR_CODE__BAD_REQUEST);
	cr_expect(strstr(r->error->message, "only report_status"), "%s",
		  r->error->message);
	nd_frame_free(r, NULL);
	EXPECT_CLOSED(fd);
	close(fd);
	STOP_OK(&d);
}

Test(server, assign_task_opens_stream)
{
	Noded__Frame f, *r;
	Noded__AssignTaskRequest a;
	int fd;

	DAEMON_START(&d);
	fd = CONNECT_HELLO(&d);
	nd_test_frame_assign(&f, &a, 10, "worker-1");
	SEND_FRAME(fd, &f);
	r = RECV(fd);
	EXPECT_FRAME(r, NODED__FRAME_KIND__STREAM_ITEM, 10,
		     NODED__FRAME__BODY_ASSIGN_OPEN);
	cr_expect_gt(r->assign_open->heartbeat_interval_ms, 0,
		     "assign_open heartbeat_interval_ms is 0");
	cr_expect_geq(r->assign_open->heartbeat_timeout_ms,
		      r->assign_open->heartbeat_interval_ms,
		      "assign_open heartbeat_timeout_ms %u < interval %u",
		      r->assign_open->heartbeat_timeout_ms,
		      r->assign_open->heartbeat_interval_ms);
	nd_frame_free(r, NULL);
	/* the stream stays open: no STREAM_END, connection not closed */
	EXPECT_QUIET(fd, 500);
	close(fd);
	STOP_OK(&d);
}

Test(server, pings_multiplexed_with_open_stream)
{
	enum { N = 10 };
	Noded__NodeStatus st = NODED__NODE_STATUS__INIT;
	Noded__Frame f = NODED__FRAME__INIT;
	uint8_t buf[2048];
	bool seen[N + 1] = { false };
	size_t len = 0;
	int fd;

	DAEMON_START(&d);
	fd = CONNECT_HELLO(&d);
	ASSIGN_OPEN(fd, 100);
	for (int i = 0; i < N; i++) {
		Noded__Frame pf;
		Noded__PingRequest p;

		nd_test_frame_ping(&pf, &p, 200 + i, "mux", 3);
		ND_CHECK(nd_test_encode_append(buf, sizeof(buf), &len, &pf));
	}
	st.name = "worker-test";
	f.id = 200 + N;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &st;
	ND_CHECK(nd_test_encode_append(buf, sizeof(buf), &len, &f));
	SEND_RAW(fd, buf, len);
	for (int n = 0; n <= N; n++) {
		Noded__Frame *r = RECV(fd);
		uint64_t i = r->id - 200;

		cr_assert(r->kind == NODED__FRAME_KIND__REPLY && r->id >= 200 &&
				  i <= N && !seen[i] &&
				  r->body_case == (i == N ?
					NODED__FRAME__BODY_STATUS_REPLY :
					NODED__FRAME__BODY_PONG),
			  "reply %d: got %s", n + 1, nd_test_describe(r));
		seen[i] = true;
		nd_frame_free(r, NULL);
	}
	/* the stream is still open and can be cancelled */
	EXPECT_QUIET(fd, 200);
	CANCEL_EXPECT_END(fd, 100);
	close(fd);
	STOP_OK(&d);
}

Test(server, cancel_ends_stream_with_cancelled)
{
	int fd;

	DAEMON_START(&d);
	fd = CONNECT_HELLO(&d);
	ASSIGN_OPEN(fd, 10);
	CANCEL_EXPECT_END(fd, 10);
	/* the connection stays usable and the stream slot is free again */
	PING(fd, 11);
	ASSIGN_OPEN(fd, 12);
	CANCEL_EXPECT_END(fd, 12);
	EXPECT_QUIET(fd, 200);
	close(fd);
	STOP_OK(&d);
}

Test(server, second_assign_task_already_exists)
{
	Noded__Frame f;
	Noded__AssignTaskRequest a;
	int fd;

	DAEMON_START(&d);
	fd = CONNECT_HELLO(&d);
	ASSIGN_OPEN(fd, 10);
	nd_test_frame_assign(&f, &a, 11, "worker-test");
	SEND_FRAME(fd, &f);
	ND_CHECK(nd_test_expect_error(fd, NODED__FRAME_KIND__STREAM_END,
				      NODED__ERROR_CODE__ALREADY_EXISTS, 11));
	/* the connection stays open and usable, the first stream too */
	PING(fd, 12);
	EXPECT_QUIET(fd, 200);
	CANCEL_EXPECT_END(fd, 10);
	PING(fd, 13);
	close(fd);
	STOP_OK(&d);
}

Test(server, several_connections_at_once)
{
	enum { C = 8, ROUNDS = 5 };
	int fds[C];

	DAEMON_START(&d);
	for (int c = 0; c < C; c++)
		fds[c] = CONNECT_HELLO(&d);
	for (int c = 0; c < C; c++) {
		char name[32];

		snprintf(name, sizeof(name), "worker-%d", c);
		ASSIGN_OPEN_AS(fds[c], 1000 + c, name);
	}
	for (int round = 0; round < ROUNDS; round++) {
		for (int c = 0; c < C; c++) {
			Noded__Frame f;
			Noded__PingRequest p;
			char pl[32];

			snprintf(pl, sizeof(pl), "c%d r%d", c, round);
			nd_test_frame_ping(&f, &p, (uint64_t)round + 1, pl,
					   strlen(pl));
			SEND_FRAME(fds[c], &f);
		}
		for (int c = 0; c < C; c++) {
			Noded__Frame *r = RECV(fds[c]);
			char pl[32];

			snprintf(pl, sizeof(pl), "c%d r%d", c, round);
			EXPECT_FRAME(r, NODED__FRAME_KIND__REPLY, round + 1,
				     NODED__FRAME__BODY_PONG);
			cr_assert(r->pong->payload.len == strlen(pl) &&
					  !memcmp(r->pong->payload.data, pl,
						  strlen(pl)),
				  "connection %d got another connection's "
				  "payload", c);
			nd_frame_free(r, NULL);
		}
	}
	for (int c = 0; c < C; c++) {
		CANCEL_EXPECT_END(fds[c], 1000 + c);
		close(fds[c]);
	}
	STOP_OK(&d);
}

/*
 * SIGTERM drains: open streams end with STREAM_END + UNAVAILABLE (the
 * contract; a plain close fails), every connection is closed, exit status 0.
 */
Test(server, sigterm_drains_and_exits_zero)
{
	Noded__Frame *r;
	int idle, plain, streaming, st;
	int64_t t0;

	DAEMON_START(&d);
	idle = CONNECT(&d); /* no Hello yet */
	plain = CONNECT_HELLO(&d);
	streaming = CONNECT_HELLO(&d);
	ASSIGN_OPEN(streaming, 10);
	PING(plain, 2);

	t0 = nd_test_now_ms();
	cr_assert_eq(kill(d.pid, SIGTERM), 0, "kill: %s", strerror(errno));

	r = RECV(streaming); /* a close instead fails here */
	EXPECT_FRAME(r, NODED__FRAME_KIND__STREAM_END, 10,
		     NODED__FRAME__BODY_ERROR);
	EXPECT_ERROR_BODY(r, NODED__ERROR_CODE__UNAVAILABLE);
	nd_frame_free(r, NULL);
	EXPECT_CLOSED(streaming);
	EXPECT_CLOSED(plain);
	EXPECT_CLOSED(idle);
	st = nd_test_daemon_wait(&d, ND_TEST_TIMEOUT_MS);
	cr_assert_eq(st, 0, "exit status %d after SIGTERM, want 0", st);
	cr_log_info("drained and exited in %lld ms",
		    (long long)(nd_test_now_ms() - t0));
	close(idle);
	close(plain);
	close(streaming);
}

Test(server, two_shards_serve_twenty_connections)
{
	enum { C = 20 };
	int fds[C];

	DAEMON_START(&d, "--shards", "2");
	ND_CHECK(nd_test_open_many(d.port, fds, C));
	for (int round = 0; round < 3; round++) {
		for (int c = 0; c < C; c++) {
			Noded__Frame f;
			Noded__PingRequest p;

			nd_test_frame_ping(&f, &p, 100 + c, &c, sizeof(c));
			SEND_FRAME(fds[c], &f);
		}
		for (int c = 0; c < C; c++) {
			Noded__Frame *r = RECV(fds[c]);

			EXPECT_FRAME(r, NODED__FRAME_KIND__REPLY, 100 + c,
				     NODED__FRAME__BODY_PONG);
			cr_assert(r->pong->payload.len == sizeof(c) &&
					  !memcmp(r->pong->payload.data, &c,
						  sizeof(c)),
				  "connection %d: wrong pong payload", c);
			nd_frame_free(r, NULL);
		}
	}
	for (int c = 0; c < C; c++)
		close(fds[c]);
	FRESH_PING(&d);
	STOP_OK(&d);
}

/*
 * Cross-shard messages the kernel refuses (NODED_FAULT_MSG_RING: the first
 * 4 MSG_RINGs of each shard fail) are sent again and run on their target
 * shard: connections handed to shard 1, their registrations with the
 * service on shard 0, the answers and the closes all arrive, and the
 * drain exits 0. Before, a refused message ran on its sender: a refused
 * hand-off kept the connection on shard 0, and once shard 0's refusals
 * were used up, the next connections went to shard 1, whose refused
 * registrations then ran the service there, where there is none (a crash).
 */
Test(server, two_shards_retry_refused_ring_messages)
{
	enum { C = 12 };
	const char *argv[] = { nd_test_bin(), "master", "--listen",
			       "127.0.0.1:0", "--shards", "2", NULL };
	static char log[1 << 16];
	int fds[C], lf;
	ssize_t n;

	lf = memfd_create("master-stderr", MFD_CLOEXEC);
	cr_assert(lf >= 0, "memfd_create: %s", strerror(errno));
	setenv("NODED_FAULT_MSG_RING", "4", 1);
	ND_CHECK(nd_test_daemon_start_err(&d, argv, lf));
	unsetenv("NODED_FAULT_MSG_RING");
	ND_CHECK(nd_test_open_many(d.port, fds, C));
	for (int c = 0; c < C; c++) {
		char name[32];

		snprintf(name, sizeof(name), "worker-%d", c);
		ASSIGN_OPEN_AS(fds[c], 100 + c, name);
	}
	for (int c = 0; c < C; c++) {
		PING(fds[c], 200 + c);
		CANCEL_EXPECT_END(fds[c], 100 + c);
		close(fds[c]);
	}
	FRESH_PING(&d);
	STOP_OK(&d);
	n = pread(lf, log, sizeof(log) - 1, 0);
	close(lf);
	cr_assert(n >= 0, "reading the master's log: %s", strerror(errno));
	log[n] = '\0';
	cr_assert(strstr(log, "shard.msg_ring_failed"),
		  "no MSG_RING was refused: the fault hook did not engage");
	cr_assert(!strstr(log, "shard.msgs_dropped"), "messages dropped");
}

/* Runs the binary with args; asserts a non-zero exit and a message. */
static void expect_bad_args(const char *const args[])
{
	const char *argv[16];
	char cmd[256] = "", err[4096], out[1024];
	size_t n = 0;
	int st;

	argv[n++] = nd_test_bin();
	for (size_t i = 0; args[i]; i++) {
		argv[n++] = args[i];
		snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " %s",
			 args[i]);
	}
	argv[n] = NULL;
	st = nd_test_run(argv, out, sizeof(out), err, sizeof(err),
			 ND_TEST_TIMEOUT_MS);
	cr_assert(st != -ETIMEDOUT,
		  "`noded%s` did not exit within %d ms (stdout: \"%s\")", cmd,
		  ND_TEST_TIMEOUT_MS, out);
	cr_assert(st > 0 && st < 128,
		  "`noded%s` exited with status %d, want a non-zero exit "
		  "(not a signal)", cmd, st);
	cr_assert(err[strspn(err, " \t\r\n")] != '\0',
		  "`noded%s` exited %d with nothing on stderr", cmd, st);
	cr_assert(strstr(out, "listening on") == NULL,
		  "`noded%s` printed \"%s\" although it failed", cmd, out);
}

#define BAD_ARGS(...)                                                        \
	expect_bad_args((const char *const[]){ __VA_ARGS__, NULL })

Test(server, bad_arguments_fail_with_message)
{
	char busy[64];

	BAD_ARGS("master", "--listen", "10.0.0.1:bogus");
	BAD_ARGS("master", "--listen", "127.0.0.1");
	BAD_ARGS("master", "--listen", "127.0.0.1:99999");
	BAD_ARGS("master", "--listen", "127.0.0.1:-1");
	BAD_ARGS("master", "--listen", "not an address:80");
	BAD_ARGS("master", "--shards", "abc");
	BAD_ARGS("master", "--max-frame", "12x");
	BAD_ARGS("master", "--idle-timeout");
	BAD_ARGS("master", "--no-such-option", "1");
	BAD_ARGS("no-such-command");
	/* a well-formed address that cannot be bound */
	BAD_ARGS("master", "--listen", "192.0.2.1:7070");
	/* the port of a running daemon is taken */
	DAEMON_START(&d);
	snprintf(busy, sizeof(busy), "127.0.0.1:%d", d.port);
	BAD_ARGS("master", "--listen", busy);
	FRESH_PING(&d);
	STOP_OK(&d);
}

/* ---- through the client library (src/client/) ---- */

struct pipelined {
	int replies, bad;
};

static void on_pong(struct nd_client *c, int status, const Noded__Frame *f,
		    bool done, void *arg)
{
	struct pipelined *pl = arg;

	if (status == 0 && done && f && f->body_case == NODED__FRAME__BODY_PONG)
		pl->replies++;
	else
		pl->bad++;
}

Test(server, client_library_pipelined_pings)
{
	enum { N = 1000 };
	struct nd_client *c;
	struct pipelined pl = { 0, 0 };
	Noded__Frame f;
	Noded__PingRequest p;
	char addr[64];
	int64_t deadline;
	int err;

	DAEMON_START(&d, "--name", "lib-test");
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", d.port);
	err = nd_client_connect(&c, addr, NULL);
	cr_assert_eq(err, 0, "nd_client_connect %s: %s", addr,
		     nd_strerror(err));
	cr_expect_str_eq(nd_client_server_name(c), "lib-test");
	cr_expect_eq(nd_client_server_max_frame(c), ND_MAX_FRAME_DEFAULT);
	for (int i = 0; i < N; i++) {
		int64_t id;

		nd_test_frame_ping(&f, &p, 0, "lib", 3);
		id = nd_client_start(c, &f, on_pong, &pl);
		cr_assert_gt(id, 0, "nd_client_start: %s",
			     nd_strerror((int)id));
	}
	deadline = nd_test_now_ms() + ND_TEST_TIMEOUT_MS;
	while (nd_client_pending(c) > 0 && nd_test_now_ms() < deadline) {
		err = nd_client_poll(c, 100);
		cr_assert_geq(err, 0, "nd_client_poll: %s", nd_strerror(err));
	}
	cr_assert_eq(pl.replies, N, "%d pongs of %d (%d bad, %zu pending)",
		     pl.replies, N, pl.bad, nd_client_pending(c));
	cr_assert_eq(pl.bad, 0, "%d bad replies", pl.bad);
	cr_assert_eq(nd_client_ping(c, ND_TEST_TIMEOUT_MS), 0,
		     "blocking ping");
	nd_client_close(c);
	STOP_OK(&d);
}

/* ---- io_uring unavailable: refused by a seccomp filter ---- */

/* In the child: io_uring_setup fails with EPERM, as under a container's
 * default seccomp profile; everything else is allowed. */
static int deny_io_uring(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

Test(server, no_io_uring_exits_1_with_message, .timeout = 30)
{
	char err[4096] = "";
	size_t len = 0;
	int pipefd[2], status = -1;
	ssize_t n;
	pid_t pid;

	cr_assert_eq(pipe(pipefd), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		dup2(pipefd[1], 2);
		close(pipefd[0]);
		if (deny_io_uring())
			_exit(99);
		execl(nd_test_bin(), nd_test_bin(), "master", "--listen",
		      "127.0.0.1:0", (char *)NULL);
		_exit(98);
	}
	close(pipefd[1]);
	while (len < sizeof(err) - 1 &&
	       (n = read(pipefd[0], err + len, sizeof(err) - 1 - len)) > 0)
		len += (size_t)n;
	err[len] = '\0';
	close(pipefd[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "daemon did not exit normally");
	cr_assert_neq(WEXITSTATUS(status), 99, "seccomp filter not installed");
	cr_assert_eq(WEXITSTATUS(status), 1,
		     "want exit 1 without io_uring, got %d; stderr: %s",
		     WEXITSTATUS(status), err);
	cr_assert(strstr(err, "io_uring is not available"),
		  "stderr does not say io_uring is unavailable: %s", err);
	cr_assert(strstr(err, "seccomp"),
		  "stderr does not say what to check: %s", err);
}
