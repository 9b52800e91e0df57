/*
 * Bad input and resource cases for `noded master` (SERVER_CONTRACT.md):
 * malformed frames, protocol violations, truncated and vanishing peers, idle
 * and stalled connections, 10,000 connections. After every case a fresh
 * connection must still Ping, the daemon's RSS must come back near its
 * baseline, and SIGTERM must still exit 0. Raw sockets only
 * (tests/harness.h): these tests do not use the client library.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "harness.h"

static struct nd_test_daemon d;

static void setup(void)
{
	memset(&d, 0, sizeof(d));
}

static void teardown(void)
{
	nd_test_daemon_stop(&d);
}

TestSuite(badinput, .init = setup, .fini = teardown, .timeout = 30);

#define CONNECT_HELLO(d)                                                     \
	({                                                                   \
		int nd_c_ = CONNECT(d);                                      \
		HELLO(nd_c_);                                                \
		nd_c_;                                                       \
	})

/* The end of every case: fresh Ping, RSS near baseline, clean exit. */
#define FINISH(d)                                                            \
	do {                                                                 \
		EXPECT_HEALTHY(d);                                           \
		STOP_OK(d);                                                  \
	} while (0)

/*
 * After one case: a fresh connection pings and the RSS is near the baseline
 * (EXPECT_HEALTHY, with the case's line in the message).
 */
static void check_healthy(int line)
{
	long lim = d.rss_base_kib + ND_TEST_RSS_SLACK_KIB, rss;
	int r = nd_test_fresh_ping(d.port);

	cr_assert(r == 0, "after the case at line %d: %s", line, nd_test_why);
	if (d.asan)
		return;
	rss = nd_test_rss_wait_below(d.pid, lim, ND_TEST_TIMEOUT_MS);
	cr_assert(rss >= 0 && rss <= lim,
		  "after the case at line %d: daemon RSS %ld KiB, baseline "
		  "%ld KiB, limit %ld KiB", line, rss, d.rss_base_kib, lim);
}

#define HEALTHY() check_healthy(__LINE__)

/*
 * Sends raw bytes on a fresh connection (Hello first when `hello`), then
 * expects the connection-fatal Error `code` with id `id` (-1: any) and a
 * close. `line` is the caller's, for the failure message.
 */
static void fatal_case(int line, bool hello, const void *bytes, size_t len,
		       Noded__ErrorCode code, int64_t id)
{
	int fd = CONNECT(&d), r;

	if (hello) {
		r = nd_test_hello(fd, 1, NULL);
		cr_assert(r == 0, "line %d: Hello: %s", line, nd_test_why);
	}
	r = nd_test_send_raw(fd, bytes, len);
	cr_assert(r == 0, "line %d: %s", line, nd_test_why);
	r = nd_test_expect_error(fd, NODED__FRAME_KIND__REPLY, code, id);
	cr_assert(r == 0, "line %d: %s", line, nd_test_why);
	r = nd_test_expect_closed(fd, ND_TEST_TIMEOUT_MS);
	cr_assert(r == 0, "line %d: after the %s Error: %s", line,
		  nd_test_code_name(code), nd_test_why);
	close(fd);
	check_healthy(line);
}

/* Same with an encoded frame. */
static void fatal_frame(int line, bool hello, const Noded__Frame *f,
			Noded__ErrorCode code, int64_t id)
{
	uint8_t buf[4096];
	size_t len = 0;

	ND_CHECK(nd_test_encode_append(buf, sizeof(buf), &len, f));
	fatal_case(line, hello, buf, len, code, id);
}

#define FATAL_BYTES(...) fatal_case(__LINE__, __VA_ARGS__)
#define FATAL_FRAME(...) fatal_frame(__LINE__, __VA_ARGS__)

static void set_linger0(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0,
		     "SO_LINGER: %s", strerror(errno));
}

/* ---- framing ---- */

Test(badinput, zero_length_frame)
{
	static const uint8_t zero[4] = { 0, 0, 0, 0 };

	DAEMON_START(&d);
	FATAL_BYTES(true, zero, 4, NODED__ERROR_CODE__EMPTY_FRAME, 0);
	FATAL_BYTES(false, zero, 4, NODED__ERROR_CODE__EMPTY_FRAME, 0);
	FINISH(&d);
}

Test(badinput, length_over_default_maximum)
{
	/* 16 MiB + 1: only the header is sent, it alone must decide */
	static const uint8_t over[4] = { 0x01, 0x00, 0x00, 0x01 };
	static const uint8_t huge[4] = { 0xff, 0xff, 0xff, 0xff };
	/* an HTTP client: "GET " is a length of 0x47455420 */
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	DAEMON_START(&d);
	FATAL_BYTES(true, over, 4, NODED__ERROR_CODE__FRAME_TOO_LARGE, 0);
	FATAL_BYTES(true, huge, 4, NODED__ERROR_CODE__FRAME_TOO_LARGE, 0);
	FATAL_BYTES(false, huge, 4, NODED__ERROR_CODE__FRAME_TOO_LARGE, 0);
	FATAL_BYTES(false, http, sizeof(http) - 1,
		   NODED__ERROR_CODE__FRAME_TOO_LARGE, 0);
	FINISH(&d);
}

/* Fills f as a Ping whose packed body is exactly body_len bytes. */
static void ping_of_size(Noded__Frame *f, Noded__PingRequest *p, uint64_t id,
			 uint8_t *payload, size_t body_len)
{
	size_t n;

	for (n = body_len; n > 0; n--) {
		nd_test_frame_ping(f, p, id, payload, n);
		if (nd_frame_size(f) - ND_FRAME_HDR <= body_len)
			break;
	}
	cr_assert_eq(nd_frame_size(f) - ND_FRAME_HDR, body_len,
		     "cannot build a ping of exactly %zu bytes", body_len);
}

Test(badinput, small_max_frame_boundary)
{
	static uint8_t payload[2048];
	Noded__Frame f, *r;
	Noded__PingRequest p;
	int fd;

	memset(payload, 'x', sizeof(payload));
	DAEMON_START(&d, "--max-frame", "1024");
	fd = CONNECT(&d);
	ND_CHECK(nd_test_hello(fd, 1, &r));
	cr_expect_eq(r->hello_reply->max_frame, 1024,
		     "HelloReply max_frame %u, want the --max-frame 1024",
		     r->hello_reply->max_frame);
	nd_frame_free(r, NULL);
	/* exactly max-frame is accepted */
	ping_of_size(&f, &p, 2, payload, 1024);
	ND_CHECK(nd_test_ping(fd, 2, payload, p.payload.len));
	close(fd);
	/* 2000 bytes is refused */
	ping_of_size(&f, &p, 3, payload, 2000);
	FATAL_FRAME(true, &f, NODED__ERROR_CODE__FRAME_TOO_LARGE, 0);
	/* 1025 too */
	ping_of_size(&f, &p, 4, payload, 1025);
	FATAL_FRAME(true, &f, NODED__ERROR_CODE__FRAME_TOO_LARGE, 0);
	FINISH(&d);
}

Test(badinput, truncated_frame_then_close)
{
	uint8_t buf[14] = { 0, 0, 0, 100 };
	int fd;

	memset(buf + 4, 0xab, 10);
	DAEMON_START(&d);
	/* header says 100, 10 arrive, then FIN */
	fd = CONNECT_HELLO(&d);
	SEND_RAW(fd, buf, sizeof(buf));
	close(fd);
	HEALTHY();
	/* same before Hello */
	fd = CONNECT(&d);
	SEND_RAW(fd, buf, sizeof(buf));
	close(fd);
	HEALTHY();
	/* same, then RST */
	fd = CONNECT_HELLO(&d);
	SEND_RAW(fd, buf, sizeof(buf));
	set_linger0(fd);
	close(fd);
	HEALTHY();
	/* half a header, then FIN */
	fd = CONNECT_HELLO(&d);
	SEND_RAW(fd, buf, 2);
	close(fd);
	HEALTHY();
	/* the start of a valid frame, then FIN */
	{
		Noded__Frame f;
		Noded__PingRequest p;
		uint8_t enc[64];
		size_t len = 0;

		nd_test_frame_ping(&f, &p, 9, "truncated", 9);
		ND_CHECK(nd_test_encode_append(enc, sizeof(enc), &len, &f));
		fd = CONNECT_HELLO(&d);
		SEND_RAW(fd, enc, len - 3);
		close(fd);
		HEALTHY();
	}
	FINISH(&d);
}

Test(badinput, truncated_frame_idle_times_out)
{
	static const uint8_t buf[14] = { 0, 0, 0, 100, 1, 2, 3, 4, 5,
					 6, 7, 8, 9, 10 };
	int64_t t0;
	int fd;

	DAEMON_START(&d, "--idle-timeout", "1");
	fd = CONNECT_HELLO(&d);
	SEND_RAW(fd, buf, sizeof(buf));
	t0 = nd_test_now_ms();
	EXPECT_FATAL(fd, NODED__ERROR_CODE__TIMEOUT, -1);
	cr_expect(nd_test_now_ms() - t0 >= 500,
		  "TIMEOUT after %lld ms with --idle-timeout 1",
		  (long long)(nd_test_now_ms() - t0));
	close(fd);
	FINISH(&d);
}

Test(badinput, idle_connections_time_out)
{
	int64_t t0, elapsed;
	int silent, idle, busy;

	DAEMON_START(&d, "--idle-timeout", "1");
	t0 = nd_test_now_ms();
	silent = CONNECT(&d);     /* never says Hello */
	idle = CONNECT_HELLO(&d); /* says Hello, then nothing */
	busy = CONNECT_HELLO(&d); /* pings every 250 ms: must survive */
	for (int i = 0; i < 10; i++) {
		nd_test_sleep_ms(250);
		PING(busy, 100 + i);
	}
	EXPECT_FATAL(silent, NODED__ERROR_CODE__TIMEOUT, -1);
	EXPECT_FATAL(idle, NODED__ERROR_CODE__TIMEOUT, -1);
	elapsed = nd_test_now_ms() - t0;
	cr_expect(elapsed < 6000, "idle connections closed after %lld ms "
		  "with --idle-timeout 1", (long long)elapsed);
	PING(busy, 200);
	close(silent);
	close(idle);
	close(busy);
	FINISH(&d);
}

/* ---- bodies ---- */

Test(badinput, body_not_protobuf)
{
	uint8_t ff[24] = { 0, 0, 0, 20 };
	/* field 1 varint whose continuation never ends */
	static const uint8_t bad_varint[] = { 0, 0, 0, 2, 0x08, 0xff };
	/* field 9 (error) length-delimited, length 100 > what follows */
	static const uint8_t bad_len[] = { 0, 0, 0, 3, 0x4a, 0x64, 0x00 };

	memset(ff + 4, 0xff, 20);
	DAEMON_START(&d);
	FATAL_BYTES(true, ff, sizeof(ff), NODED__ERROR_CODE__BAD_FRAME, 0);
	FATAL_BYTES(true, bad_varint, sizeof(bad_varint),
		   NODED__ERROR_CODE__BAD_FRAME, 0);
	FATAL_BYTES(true, bad_len, sizeof(bad_len),
		    NODED__ERROR_CODE__BAD_FRAME, 0);
	FINISH(&d);
}

Test(badinput, unknown_method)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__PingReply pong = NODED__PING_REPLY__INIT;
	Noded__HelloReply hr = NODED__HELLO_REPLY__INIT;
	/* id 9, kind REQUEST, field 50 (length-delimited, empty) */
	static const uint8_t field50[] = { 0, 0, 0, 7, 0x08, 0x09, 0x10,
					   0x01, 0x92, 0x03, 0x00 };
	/* id 10, kind REQUEST, field 99 varint 1 */
	static const uint8_t field99[] = { 0, 0, 0, 7, 0x08, 0x0a, 0x10,
					   0x01, 0x98, 0x06, 0x01 };

	DAEMON_START(&d);
	/* a REQUEST with no body */
	f.id = 7;
	f.kind = NODED__FRAME_KIND__REQUEST;
	FATAL_FRAME(true, &f, NODED__ERROR_CODE__UNKNOWN_METHOD, 7);
	/* unknown field numbers only */
	FATAL_BYTES(true, field50, sizeof(field50),
		   NODED__ERROR_CODE__UNKNOWN_METHOD, 9);
	FATAL_BYTES(true, field99, sizeof(field99),
		   NODED__ERROR_CODE__UNKNOWN_METHOD, 10);
	/* reply bodies are not methods */
	f.id = 11;
	f.body_case = NODED__FRAME__BODY_PONG;
	f.pong = &pong;
	FATAL_FRAME(true, &f, NODED__ERROR_CODE__UNKNOWN_METHOD, 11);
	f.id = 12;
	f.body_case = NODED__FRAME__BODY_HELLO_REPLY;
	f.hello_reply = &hr;
	FATAL_FRAME(true, &f, NODED__ERROR_CODE__UNKNOWN_METHOD, 12);
	FINISH(&d);
}

Test(badinput, request_before_hello)
{
	Noded__Frame f;
	Noded__PingRequest p;
	Noded__AssignTaskRequest a;
	Noded__NodeStatus st = NODED__NODE_STATUS__INIT;

	DAEMON_START(&d);
	nd_test_frame_ping(&f, &p, 5, "early", 5);
	FATAL_FRAME(false, &f, NODED__ERROR_CODE__HELLO_REQUIRED, 5);
	nd_test_frame_assign(&f, &a, 6, "early-worker");
	FATAL_FRAME(false, &f, NODED__ERROR_CODE__HELLO_REQUIRED, 6);
	f.id = 7;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &st;
	FATAL_FRAME(false, &f, NODED__ERROR_CODE__HELLO_REQUIRED, 7);
	FINISH(&d);
}

Test(badinput, wrong_protocol_version)
{
	Noded__Frame f;
	Noded__HelloRequest h;

	DAEMON_START(&d);
	nd_test_frame_hello(&f, &h, 3, ND_PROTOCOL_VERSION + 1);
	FATAL_FRAME(false, &f, NODED__ERROR_CODE__VERSION_MISMATCH, -1);
	/* 1: before Command (argv, env, ... as fields of their own) */
	nd_test_frame_hello(&f, &h, 6, 1);
	FATAL_FRAME(false, &f, NODED__ERROR_CODE__VERSION_MISMATCH, -1);
	nd_test_frame_hello(&f, &h, 4, 0);
	FATAL_FRAME(false, &f, NODED__ERROR_CODE__VERSION_MISMATCH, -1);
	nd_test_frame_hello(&f, &h, 5, 0xffffffffu);
	FATAL_FRAME(false, &f, NODED__ERROR_CODE__VERSION_MISMATCH, -1);
	FINISH(&d);
}

Test(badinput, bad_request_kinds_and_second_hello)
{
	static const Noded__FrameKind kinds[] = {
		NODED__FRAME_KIND__REPLY, NODED__FRAME_KIND__STREAM_ITEM,
		NODED__FRAME_KIND__STREAM_END,
		NODED__FRAME_KIND__FRAME_KIND_UNSPECIFIED, (Noded__FrameKind)99,
	};
	Noded__Frame f;
	Noded__PingRequest p;
	Noded__HelloRequest h;

	DAEMON_START(&d);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		nd_test_frame_ping(&f, &p, 20 + i, "kind", 4);
		f.kind = kinds[i];
		FATAL_FRAME(true, &f, NODED__ERROR_CODE__BAD_REQUEST, -1);
	}
	nd_test_frame_hello(&f, &h, 30, ND_PROTOCOL_VERSION);
	FATAL_FRAME(true, &f, NODED__ERROR_CODE__BAD_REQUEST, -1);
	FINISH(&d);
}

Test(badinput, frames_one_byte_at_a_time)
{
	Noded__Frame f, *r;
	Noded__HelloRequest h;
	Noded__PingRequest p;
	uint8_t buf[256];
	size_t len = 0;
	int fd;

	DAEMON_START(&d);
	nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
	ND_CHECK(nd_test_encode_append(buf, sizeof(buf), &len, &f));
	nd_test_frame_ping(&f, &p, 2, "dribble", 7);
	ND_CHECK(nd_test_encode_append(buf, sizeof(buf), &len, &f));
	fd = CONNECT(&d);
	for (size_t i = 0; i < len; i++) {
		SEND_RAW(fd, buf + i, 1);
		nd_test_sleep_ms(2);
	}
	r = RECV(fd);
	EXPECT_FRAME(r, NODED__FRAME_KIND__REPLY, 1,
		     NODED__FRAME__BODY_HELLO_REPLY);
	nd_frame_free(r, NULL);
	r = RECV(fd);
	EXPECT_FRAME(r, NODED__FRAME_KIND__REPLY, 2, NODED__FRAME__BODY_PONG);
	cr_assert(r->pong->payload.len == 7 &&
			  !memcmp(r->pong->payload.data, "dribble", 7),
		  "pong payload differs");
	nd_frame_free(r, NULL);
	PING(fd, 3);
	close(fd);
	FINISH(&d);
}

/* ---- resources ---- */

/*
 * A client that sends pings and never reads: the server must stop reading it
 * at --max-output (RSS bounded), close it after --stall-timeout, and keep
 * serving others meanwhile.
 */
Test(badinput, slow_reader_bounded_then_closed, .timeout = 45)
{
	enum { BATCH = 64, PAYLOAD = 1000 };
	static uint8_t payload[PAYLOAD], buf[BATCH * (PAYLOAD + 32)];
	size_t len = 0, off = 0, sent = 0;
	uint64_t next_id = 10;
	int64_t t0, first_block = 0, closed_at = 0, last_sample = 0;
	long rss, max_rss = 0;
	bool closed = false, other_pinged = false;
	int slow, other, fl;

	memset(payload, 'z', sizeof(payload));
	DAEMON_START(&d, "--max-output", "65536", "--stall-timeout", "2");
	slow = nd_test_connect_opts(d.port, 4096);
	cr_assert(slow >= 0, "connect: %s", nd_test_why);
	HELLO(slow);
	other = CONNECT_HELLO(&d);
	fl = fcntl(slow, F_GETFL);
	fcntl(slow, F_SETFL, fl | O_NONBLOCK);

	t0 = nd_test_now_ms();
	while (!closed && nd_test_now_ms() - t0 < 10000) {
		ssize_t n;

		if (off == len) {
			off = len = 0;
			for (int i = 0; i < BATCH; i++) {
				Noded__Frame f;
				Noded__PingRequest p;

				nd_test_frame_ping(&f, &p, next_id++, payload,
						   sizeof(payload));
				ND_CHECK(nd_test_encode_append(buf, sizeof(buf),
							       &len, &f));
			}
		}
		n = send(slow, buf + off, len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			sent += (size_t)n;
		} else if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			closed = true;
		} else if (n < 0 && errno == EAGAIN) {
			if (!first_block)
				first_block = nd_test_now_ms();
			nd_test_sleep_ms(20);
		} else {
			cr_assert_fail("send: %s", strerror(errno));
		}
		if (nd_test_now_ms() - last_sample >= 100) {
			last_sample = nd_test_now_ms();
			rss = nd_test_rss_kib(d.pid);
			if (rss > max_rss)
				max_rss = rss;
			if (nd_test_peer_closed(slow))
				closed = true;
		}
		if (first_block && !other_pinged &&
		    nd_test_now_ms() - first_block >= 1000) {
			/* the stalled connection must not block the others */
			PING(other, 1);
			other_pinged = true;
		}
	}
	closed_at = nd_test_now_ms();
	cr_log_info("slow reader: sent %zu bytes, blocked after %lld ms, "
		    "closed=%d after %lld ms, RSS max %ld KiB (baseline %ld)",
		    sent, first_block ? (long long)(first_block - t0) : -1LL,
		    closed, (long long)(closed_at - t0), max_rss,
		    d.rss_base_kib);
	cr_assert(first_block,
		  "the server kept reading %zu bytes of pings for 10 s "
		  "without pushing back (--max-output 65536)", sent);
	if (!d.asan)
		cr_assert(max_rss - d.rss_base_kib < ND_TEST_RSS_SLACK_KIB,
			  "RSS grew by %ld KiB while a client did not read "
			  "(limit %d KiB, --max-output 65536)",
			  max_rss - d.rss_base_kib, ND_TEST_RSS_SLACK_KIB);
	if (!closed) {
		/* The server may have closed with our window at zero, so the
		 * FIN waits behind its data: read, and it must end. */
		size_t got = 0;
		int err = nd_test_drain_until_closed(slow, 3000, 8000, &got);

		cr_assert(err == 0,
			  "a client stuck over --max-output for 10 s was not "
			  "closed (--stall-timeout 2): %s", nd_test_why);
	}
	PING(other, 2);
	close(slow);
	close(other);
	FINISH(&d);
}

/*
 * 10,000 connections at once, each with a Hello; a fresh connection still
 * pings; after they close the RSS comes back near the baseline. Four
 * rounds: a leak per connection makes every round end higher than the one
 * before (by N times the leak), which tells it apart from memory the
 * allocator merely keeps or hands back a little later (mimalloc's purge
 * and the master's collect, about a second after the closes, waited out
 * before each reading). Readings move by 1-2 MiB either way between
 * rounds here, so a leak is three rises in a row adding up to over 4 MiB
 * (about 140 bytes a connection); smaller leaks are LeakSanitizer's to
 * find (the sanitizer build checks the daemon at exit).
 */
Test(badinput, ten_thousand_connections, .timeout = 60)
{
	enum { N = 10000, ROUNDS = 4 };
	static int fds[N];
	long after[ROUNDS];

	ND_CHECK(nd_test_raise_nofile(N + 1024));
	DAEMON_START(&d);
	for (int round = 0; round < ROUNDS; round++) {
		int64_t t0 = nd_test_now_ms();
		long peak;

		ND_CHECK(nd_test_open_many(d.port, fds, N));
		peak = nd_test_rss_kib(d.pid);
		cr_log_info("round %d: %d connections with Hello in %lld ms, "
			    "daemon RSS %ld KiB (baseline %ld KiB)", round, N,
			    (long long)(nd_test_now_ms() - t0), peak,
			    d.rss_base_kib);
		FRESH_PING(&d);
		/* a sample of the open ones still answers */
		for (int i = 0; i < N; i += 997)
			ND_CHECK(nd_test_ping(fds[i], 2, "many", 4));
		for (int i = 0; i < N; i++)
			close(fds[i]);
		FRESH_PING(&d);
		nd_test_sleep_ms(1500); /* the collect of freed buffers */
		after[round] = nd_test_rss_wait_below(
			d.pid, d.rss_base_kib + ND_TEST_RSS_SLACK_KIB, 3000);
		cr_log_info("round %d: RSS %ld KiB after closing them", round,
			    after[round]);
	}
	if (!d.asan)
		cr_assert(after[1] <= after[0] || after[2] <= after[1] ||
				  after[3] <= after[2] ||
				  after[3] - after[0] <= 4096,
			  "RSS after each round of %d connections grew, by "
			  "over 4 MiB in all: %ld, %ld, %ld, %ld KiB: memory "
			  "leaks per connection", N, after[0], after[1],
			  after[2], after[3]);
	EXPECT_HEALTHY_WITHIN(&d, 10000);
	STOP_OK(&d);
}

Test(badinput, max_conns_limit_holds)
{
	enum { N = 10, MAX = 4 };
	Noded__Frame f;
	Noded__HelloRequest h;
	int fds[N], served = 0, refused = 0, err;

	DAEMON_START(&d, "--max-conns", "4");
	nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
	for (int i = 0; i < N; i++) {
		fds[i] = CONNECT(&d);
		SEND_FRAME(fds[i], &f);
	}
	for (int i = 0; i < N; i++) {
		Noded__Frame *r;

		err = nd_test_recv_frame(fds[i], 1000, &r);
		if (err == 0) {
			if (r->body_case == NODED__FRAME__BODY_HELLO_REPLY)
				served++;
			else
				refused++;
			cr_log_info("connection %d: %s", i,
				    nd_test_describe(r));
			nd_frame_free(r, NULL);
		} else if (err != -ETIMEDOUT) {
			refused++;
		}
	}
	cr_log_info("--max-conns 4, %d connections: %d served, %d refused",
		    N, served, refused);
	cr_assert(served >= 1 && served <= MAX,
		  "%d of %d connections got a HelloReply with --max-conns %d",
		  served, N, MAX);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	/* slots come back once the clients are gone */
	{
		int64_t deadline = nd_test_now_ms() + ND_TEST_TIMEOUT_MS;

		while ((err = nd_test_fresh_ping(d.port)) != 0 &&
		       nd_test_now_ms() < deadline)
			nd_test_sleep_ms(100);
		cr_assert(err == 0, "no new connection served after closing "
			  "the others: %s", nd_test_why);
	}
	FINISH(&d);
}

/* ---- vanishing stream clients ---- */

/* Opens an AssignTask stream on a fresh connection; reads the open item
 * when `read_open`. Returns the fd. */
static int open_stream(bool read_open, uint64_t id)
{
	Noded__Frame f, *r;
	Noded__AssignTaskRequest a;
	int fd = CONNECT(&d);

	HELLO(fd);
	nd_test_frame_assign(&f, &a, id, "vanishing-worker");
	SEND_FRAME(fd, &f);
	if (read_open) {
		r = RECV(fd);
		EXPECT_FRAME(r, NODED__FRAME_KIND__STREAM_ITEM, id,
			     NODED__FRAME__BODY_ASSIGN_OPEN);
		nd_frame_free(r, NULL);
	}
	return fd;
}

static void stream_vanish(bool rst)
{
	Noded__Frame f, *r;
	Noded__AssignTaskRequest a;
	Noded__PingRequest p;
	int fd;

	DAEMON_START(&d);
	for (int i = 0; i < 200; i++) {
		fd = open_stream(i % 2 == 0, 10 + i);
		if (rst)
			set_linger0(fd);
		if (i % 3 == 0) {
			/* also leave a request in flight */
			nd_test_frame_ping(&f, &p, 5000 + i, "bye", 3);
			SEND_FRAME(fd, &f);
		}
		close(fd);
	}
	/* the same node name can register again on a new connection */
	fd = CONNECT_HELLO(&d);
	nd_test_frame_assign(&f, &a, 1, "vanishing-worker");
	SEND_FRAME(fd, &f);
	r = RECV(fd);
	EXPECT_FRAME(r, NODED__FRAME_KIND__STREAM_ITEM, 1,
		     NODED__FRAME__BODY_ASSIGN_OPEN);
	nd_frame_free(r, NULL);
	PING(fd, 2);
	close(fd);
	FINISH(&d);
}

Test(badinput, stream_client_vanishes_with_fin)
{
	stream_vanish(false);
}

Test(badinput, stream_client_vanishes_with_rst)
{
	stream_vanish(true);
}

/* ---- memory before authentication, partial frames, deadlines ---- */

/* Highest RSS seen so far, sampled now (0 under ASan, where it means
 * nothing). */
static long rss_peak(long peak)
{
	long rss = d.asan ? 0 : nd_test_rss_kib(d.pid);

	return rss > peak ? rss : peak;
}

/*
 * Before Hello a frame may be 4 KiB, whatever --max-frame says: a longer
 * length prefix is refused from its 4 bytes; after Hello (no token here)
 * --max-frame applies.
 */
Test(badinput, frame_limit_is_small_before_hello)
{
	static uint8_t junk[4 + 8192];
	static const uint8_t max16[4] = { 0x01, 0x00, 0x00, 0x00 };

	memset(junk, 0xff, sizeof(junk));
	DAEMON_START(&d);
	/* 16 MiB is the default --max-frame: refused before Hello */
	FATAL_BYTES(false, max16, 4, NODED__ERROR_CODE__FRAME_TOO_LARGE, 0);
	junk[0] = 0, junk[1] = 0, junk[2] = 0x10, junk[3] = 0x01; /* 4097 */
	FATAL_BYTES(false, junk, 4, NODED__ERROR_CODE__FRAME_TOO_LARGE, 0);
	/* 4096 bytes is taken (and then is not a Frame) */
	junk[2] = 0x10, junk[3] = 0x00;
	FATAL_BYTES(false, junk, 4 + 4096, NODED__ERROR_CODE__BAD_FRAME, 0);
	/* after Hello, 8192 bytes is taken too */
	junk[2] = 0x20;
	FATAL_BYTES(true, junk, 4 + 8192, NODED__ERROR_CODE__BAD_FRAME, 0);
	FINISH(&d);
}

/*
 * 40 connections send a 16 MiB length prefix and 2 MiB of body before
 * Hello. Each gets FRAME_TOO_LARGE from the prefix alone; the master's RSS
 * does not grow, a connection opened before is served throughout, and the
 * RSS is near the baseline after.
 */
Test(badinput, unauthenticated_big_frames_cost_nothing, .timeout = 60)
{
	enum { N = 40, CHUNK = 256 * 1024, BODY = 2 << 20 };
	static const uint8_t prefix[4] = { 0x01, 0x00, 0x00, 0x00 };
	static uint8_t chunk[CHUNK];
	int fds[N], other;
	long peak = 0;

	memset(chunk, 0xab, sizeof(chunk));
	DAEMON_START(&d);
	other = CONNECT_HELLO(&d);
	for (int i = 0; i < N; i++) {
		fds[i] = CONNECT(&d);
		SEND_RAW(fds[i], prefix, sizeof(prefix));
		/* refused or not, the rest is sent; a refused connection
		 * discards it (or resets, which is fine too) */
		for (size_t off = 0; off < BODY; off += CHUNK)
			if (nd_test_send_raw(fds[i], chunk, CHUNK))
				break;
		peak = rss_peak(peak);
		if (i == N / 2)
			PING(other, 1);
	}
	nd_test_sleep_ms(300);
	peak = rss_peak(peak);
	cr_log_info("40 x (16 MiB prefix + 2 MiB) before Hello: RSS peak %ld "
		    "KiB, baseline %ld KiB", peak, d.rss_base_kib);
	if (!d.asan)
		cr_assert(peak - d.rss_base_kib < ND_TEST_RSS_SLACK_KIB,
			  "RSS grew by %ld KiB while strangers sent big frames "
			  "before Hello (limit %d KiB)", peak - d.rss_base_kib,
			  ND_TEST_RSS_SLACK_KIB);
	ND_CHECK(nd_test_expect_error(fds[0], NODED__FRAME_KIND__REPLY,
				      NODED__ERROR_CODE__FRAME_TOO_LARGE, 0));
	PING(other, 2);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	close(other);
	FINISH(&d);
}

/*
 * After Hello the frames may be large, but what all connections keep of
 * their partial frames is bounded by --input-budget: the connections that
 * would pass it get RESOURCE_EXHAUSTED; RSS stays within the budget and
 * comes back after they close; others are served throughout.
 */
Test(badinput, input_budget_bounds_partial_frames, .timeout = 60)
{
	enum { N = 10, CHUNK = 256 * 1024, BODY = 1536 * 1024 };
	/* frames of 2 MiB; 4 MiB for all partial ones */
	static const uint8_t prefix[4] = { 0x00, 0x20, 0x00, 0x00 };
	static uint8_t chunk[CHUNK];
	int fds[N], other, refused = 0;
	long peak = 0;

	memset(chunk, 0xab, sizeof(chunk));
	DAEMON_START(&d, "--max-frame", "2097152", "--input-budget", "4194304");
	other = CONNECT_HELLO(&d);
	for (int i = 0; i < N; i++) {
		fds[i] = CONNECT_HELLO(&d);
		SEND_RAW(fds[i], prefix, sizeof(prefix));
		for (size_t off = 0; off < BODY; off += CHUNK)
			if (nd_test_send_raw(fds[i], chunk, CHUNK))
				break;
		peak = rss_peak(peak);
	}
	PING(other, 1);
	for (int i = 0; i < N; i++) {
		Noded__Frame *f = NULL;

		if (nd_test_recv_frame(fds[i], 1000, &f))
			continue; /* kept: its frame is within the budget */
		cr_assert(f->body_case == NODED__FRAME__BODY_ERROR &&
				  f->error->code ==
					  NODED__ERROR_CODE__RESOURCE_EXHAUSTED &&
				  strstr(f->error->message, "--input-budget"),
			  "connection %d: want RESOURCE_EXHAUSTED naming "
			  "--input-budget, got %s", i, nd_test_describe(f));
		nd_frame_free(f, NULL);
		refused++;
	}
	peak = rss_peak(peak);
	cr_log_info("%d x (2 MiB prefix + 1.5 MiB) after Hello, budget 4 "
		    "MiB: %d refused, RSS peak %ld KiB, baseline %ld KiB", N,
		    refused, peak, d.rss_base_kib);
	cr_assert(refused >= N - 2,
		  "only %d of %d connections were refused; 1.5 MiB partial "
		  "frames each, --input-budget 4 MiB keeps at most 2", refused,
		  N);
	if (!d.asan)
		cr_assert(peak - d.rss_base_kib < 4096 + ND_TEST_RSS_SLACK_KIB,
			  "RSS grew by %ld KiB with --input-budget 4 MiB",
			  peak - d.rss_base_kib);
	PING(other, 2);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	close(other);
	FINISH(&d);
}

/* Reads the connection-fatal TIMEOUT and checks its message names what. */
static void expect_timeout(int fd, const char *what)
{
	Noded__Frame *f = NULL;
	int r = nd_test_recv_frame(fd, ND_TEST_TIMEOUT_MS, &f);

	cr_assert(r == 0, "waiting for TIMEOUT (%s): %s", what, nd_test_why);
	cr_assert(f->body_case == NODED__FRAME__BODY_ERROR &&
			  f->error->code == NODED__ERROR_CODE__TIMEOUT &&
			  strstr(f->error->message, what),
		  "want TIMEOUT naming %s, got %s", what, nd_test_describe(f));
	nd_frame_free(f, NULL);
	EXPECT_CLOSED(fd);
}

/* Sends buf one byte every gap_ms until done or the peer is gone; returns
 * the bytes sent. */
static size_t trickle(int fd, const uint8_t *buf, size_t len, int gap_ms)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (nd_test_peer_closed(fd) || nd_test_send_raw(fd, buf + i, 1))
			break;
		nd_test_sleep_ms(gap_ms);
	}
	return i;
}

/*
 * A slowloris: bytes that trickle in reset the idle timeout, so deadlines
 * end it. Hello (and auth) must be done within --handshake-timeout, a
 * connection silent from the start included; after it, a frame must be
 * whole within --idle-timeout of its start.
 */
Test(badinput, trickled_handshake_and_frames_are_cut_off)
{
	Noded__Frame f;
	Noded__HelloRequest h;
	uint8_t hello[256], big[30] = { 0, 0, 0, 100 };
	size_t len = 0, sent;
	int silent, slow;

	DAEMON_START(&d, "--handshake-timeout", "1", "--idle-timeout", "2");
	/* silent from the start: the handshake deadline, before idle */
	silent = CONNECT(&d);
	/* Hello one byte every 400 ms: each byte beats --idle-timeout */
	nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
	ND_CHECK(nd_test_encode_append(hello, sizeof(hello), &len, &f));
	slow = CONNECT(&d);
	sent = trickle(slow, hello, len, 400);
	cr_assert(sent < len, "a Hello trickled over %zu ms was taken",
		  len * 400);
	expect_timeout(silent, "--handshake-timeout");
	expect_timeout(slow, "--handshake-timeout");
	close(silent);
	close(slow);
	/* after Hello: a 100-byte frame, one byte every 300 ms (30 of them
	 * at most: it is never whole, what matters is that it is cut off) */
	slow = CONNECT_HELLO(&d);
	sent = trickle(slow, big, 30, 300);
	cr_assert(sent < 30, "a frame still trickled in after 9 s "
		  "(--idle-timeout 2)");
	expect_timeout(slow, "--idle-timeout");
	close(slow);
	FINISH(&d);
}
