/*
 * Unit tests for the client library (src/client/client.c, client_io.c).
 * The "server" is the other end of a socketpair: the test reads the
 * client's requests from it and writes hand-made frames back, so every
 * reply order, split and malformed byte sequence can be produced on
 * purpose. No daemon involved; the connect tests use a tiny listener
 * thread.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "noded/client.h"

/* ---- fixture: a client on one end of a socketpair ---- */

static struct nd_client *cl;
static int srv = -1;

#define MAX_EV 4096

/* One callback invocation, copied out of the (short-lived) frame. */
struct ev {
	int status;
	bool done;
	bool has_frame;
	uint64_t id;
	int kind;
	int body;
	int err_code;
	uintptr_t arg;
	size_t payload_len;
};

static struct ev evs[MAX_EV];
static int nev;

static void record(struct nd_client *c, int status, const Noded__Frame *f,
		   bool done, void *arg)
{
	struct ev *e;

	cr_assert_lt(nev, MAX_EV);
	e = &evs[nev++];
	memset(e, 0, sizeof(*e));
	e->status = status;
	e->done = done;
	e->arg = (uintptr_t)arg;
	e->has_frame = f != NULL;
	if (f) {
		e->id = f->id;
		e->kind = f->kind;
		e->body = f->body_case;
		if (f->body_case == NODED__FRAME__BODY_ERROR)
			e->err_code = f->error->code;
		if (f->body_case == NODED__FRAME__BODY_PONG)
			e->payload_len = f->pong->payload.len;
	}
}

static void open_pair(uint32_t max_frame)
{
	struct nd_client_opts o = { .node_name = "t", .max_frame = max_frame };
	struct timeval tv = { .tv_sec = 2 };
	int sv[2];

	nev = 0;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	srv = sv[1];
	/* A test that waits for a frame that never comes fails, not hangs. */
	setsockopt(srv, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert_eq(nd_client_adopt(&cl, sv[0], &o), 0);
	cr_assert_not_null(cl);
	cr_assert_eq(nd_client_fd(cl), sv[0]);
}

static void setup(void)
{
	open_pair(0);
}

static void teardown(void)
{
	nd_client_close(cl);
	cl = NULL;
	if (srv >= 0)
		close(srv);
	srv = -1;
}

/* ---- frame helpers ---- */

static void frame_ping(Noded__Frame *f, Noded__PingRequest *p,
		       const char *payload)
{
	noded__frame__init(f);
	noded__ping_request__init(p);
	p->payload.data = (uint8_t *)payload;
	p->payload.len = payload ? strlen(payload) : 0;
	f->body_case = NODED__FRAME__BODY_PING;
	f->ping = p;
}

static int64_t start_ping(const char *payload, uintptr_t arg)
{
	Noded__PingRequest p;
	Noded__Frame f;

	frame_ping(&f, &p, payload);
	return nd_client_start(cl, &f, record, (void *)arg);
}

static int64_t start_assign(uintptr_t arg)
{
	Noded__AssignTaskRequest a = NODED__ASSIGN_TASK_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT;

	a.node_name = "w1";
	f.body_case = NODED__FRAME__BODY_ASSIGN_TASK;
	f.assign_task = &a;
	return nd_client_start(cl, &f, record, (void *)arg);
}

/* Appends the encoding of f to buf at *len (buf holds cap bytes). */
static void put_frame(uint8_t *buf, size_t cap, size_t *len,
		      const Noded__Frame *f)
{
	size_t n = nd_frame_size(f);

	cr_assert_leq(*len + n, cap);
	*len += nd_frame_encode(f, buf + *len);
}

static void put_pong(uint8_t *buf, size_t cap, size_t *len, uint64_t id,
		     const char *payload)
{
	Noded__PingReply q = NODED__PING_REPLY__INIT;
	Noded__Frame f = NODED__FRAME__INIT;

	q.payload.data = (uint8_t *)payload;
	q.payload.len = strlen(payload);
	f.id = id;
	f.kind = NODED__FRAME_KIND__REPLY;
	f.body_case = NODED__FRAME__BODY_PONG;
	f.pong = &q;
	put_frame(buf, cap, len, &f);
}

static void put_error(uint8_t *buf, size_t cap, size_t *len, uint64_t id,
		      Noded__FrameKind kind, Noded__ErrorCode code)
{
	Noded__Error e = NODED__ERROR__INIT;
	Noded__Frame f = NODED__FRAME__INIT;

	e.code = code;
	e.message = "test error";
	f.id = id;
	f.kind = kind;
	f.body_case = NODED__FRAME__BODY_ERROR;
	f.error = &e;
	put_frame(buf, cap, len, &f);
}

static void put_open(uint8_t *buf, size_t cap, size_t *len, uint64_t id)
{
	Noded__AssignTaskOpen o = NODED__ASSIGN_TASK_OPEN__INIT;
	Noded__Frame f = NODED__FRAME__INIT;

	o.heartbeat_interval_ms = 1000;
	f.id = id;
	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	f.body_case = NODED__FRAME__BODY_ASSIGN_OPEN;
	f.assign_open = &o;
	put_frame(buf, cap, len, &f);
}

static void srv_write(const void *buf, size_t len)
{
	cr_assert_eq(write(srv, buf, len), (ssize_t)len);
}

static void srv_read_all(void *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(srv, (uint8_t *)buf + got, len - got);
		cr_assert_gt(n, 0, "server end: read %zd (%s)", n,
			     strerror(errno));
		got += (size_t)n;
	}
}

/* Reads one frame the client sent; the caller frees it. */
static Noded__Frame *srv_read_frame(void)
{
	uint8_t hdr[ND_FRAME_HDR], *body;
	Noded__Frame *f;
	size_t need;
	int64_t n;

	srv_read_all(hdr, sizeof(hdr));
	n = nd_frame_peek(hdr, sizeof(hdr), ND_MAX_FRAME_DEFAULT, &need);
	cr_assert_gt(n, 0, "client sent a bad header (%lld)", (long long)n);
	body = malloc((size_t)n);
	cr_assert_not_null(body);
	srv_read_all(body, (size_t)n);
	f = nd_frame_decode(body, (size_t)n, NULL);
	free(body);
	cr_assert_not_null(f, "client sent an undecodable frame");
	return f;
}

/* Polls until at least want callbacks in total ran (bounded). */
static void poll_until(int want)
{
	for (int i = 0; i < 200 && nev < want; i++) {
		int r = nd_client_poll(cl, 10);

		cr_assert_geq(r, 0, "poll: %d (%s)", r, nd_strerror(r));
	}
	cr_assert_geq(nev, want, "only %d of %d callbacks ran", nev, want);
}

/* Polls until poll() returns an error; returns it. */
static int poll_error(void)
{
	int r = 0;

	for (int i = 0; i < 200; i++) {
		r = nd_client_poll(cl, 10);
		if (r < 0)
			return r;
	}
	cr_assert_fail("poll never reported the error");
	return 0;
}

/* ---- pipelining and matching ---- */

Test(client, pipelined_requests_are_encoded_in_order, .init = setup,
     .fini = teardown)
{
	Noded__Frame *f;

	cr_assert_eq(start_ping("a", 10), 1);
	cr_assert_eq(start_ping("bb", 11), 2);
	cr_assert_eq(start_ping("ccc", 12), 3);
	cr_assert_eq(nd_client_pending(cl), 3);
	/* Nothing is sent before a flush. */
	cr_assert_eq(nd_client_flush(cl), 0);
	for (uint64_t id = 1; id <= 3; id++) {
		f = srv_read_frame();
		cr_assert_eq(f->id, id);
		cr_assert_eq(f->kind, NODED__FRAME_KIND__REQUEST);
		cr_assert_eq(f->body_case, NODED__FRAME__BODY_PING);
		cr_assert_eq(f->ping->payload.len, id);
		nd_frame_free(f, NULL);
	}
	cr_assert_eq(nev, 0);
}

Test(client, out_of_order_replies_reach_their_callbacks, .init = setup,
     .fini = teardown)
{
	uint8_t buf[512];
	size_t len = 0;

	cr_assert_eq(start_ping("a", 10), 1);
	cr_assert_eq(start_ping("bb", 11), 2);
	cr_assert_eq(start_ping("ccc", 12), 3);
	cr_assert_eq(nd_client_flush(cl), 0);
	put_pong(buf, sizeof(buf), &len, 3, "ccc");
	put_pong(buf, sizeof(buf), &len, 1, "a");
	put_pong(buf, sizeof(buf), &len, 2, "bb");
	srv_write(buf, len);
	poll_until(3);
	cr_assert_eq(nev, 3);
	cr_assert_eq(evs[0].arg, 12);
	cr_assert_eq(evs[0].id, 3);
	cr_assert_eq(evs[0].payload_len, 3);
	cr_assert_eq(evs[1].arg, 10);
	cr_assert_eq(evs[2].arg, 11);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(evs[i].status, 0);
		cr_assert(evs[i].done);
		cr_assert_eq(evs[i].body, NODED__FRAME__BODY_PONG);
	}
	cr_assert_eq(nd_client_pending(cl), 0);
}

Test(client, late_reply_for_unknown_id_is_ignored, .init = setup,
     .fini = teardown)
{
	uint8_t buf[256];
	size_t len = 0;

	cr_assert_eq(start_ping("x", 1), 1);
	put_pong(buf, sizeof(buf), &len, 99, "late");
	put_pong(buf, sizeof(buf), &len, 1, "x");
	put_pong(buf, sizeof(buf), &len, 1, "dup"); /* already answered */
	cr_assert_eq(nd_client_feed(cl, buf, len), 1);
	cr_assert_eq(nev, 1);
	cr_assert_eq(evs[0].arg, 1);
	/* Still usable. */
	cr_assert_eq(start_ping("y", 2), 2);
}

Test(client, stream_items_then_end, .init = setup, .fini = teardown)
{
	Noded__Frame *f;
	uint8_t buf[512];
	size_t len = 0;

	cr_assert_eq(start_assign(7), 1);
	cr_assert_eq(nd_client_flush(cl), 0);
	f = srv_read_frame();
	cr_assert_eq(f->body_case, NODED__FRAME__BODY_ASSIGN_TASK);
	cr_assert_str_eq(f->assign_task->node_name, "w1");
	nd_frame_free(f, NULL);

	put_open(buf, sizeof(buf), &len, 1);
	put_open(buf, sizeof(buf), &len, 1);
	srv_write(buf, len);
	poll_until(2);
	cr_assert_eq(nd_client_pending(cl), 1, "stream items keep it pending");
	cr_assert_not(evs[0].done);
	cr_assert_not(evs[1].done);
	cr_assert_eq(evs[0].kind, NODED__FRAME_KIND__STREAM_ITEM);
	cr_assert_eq(evs[0].body, NODED__FRAME__BODY_ASSIGN_OPEN);

	/* Cancel goes out as a CANCEL frame with the stream's id. */
	cr_assert_eq(nd_client_cancel(cl, 1), 0);
	cr_assert_eq(nd_client_flush(cl), 0);
	f = srv_read_frame();
	cr_assert_eq(f->kind, NODED__FRAME_KIND__CANCEL);
	cr_assert_eq(f->id, 1);
	nd_frame_free(f, NULL);
	cr_assert_eq(nd_client_pending(cl), 1, "cancel waits for STREAM_END");

	len = 0;
	put_error(buf, sizeof(buf), &len, 1, NODED__FRAME_KIND__STREAM_END,
		  NODED__ERROR_CODE__CANCELLED);
	srv_write(buf, len);
	poll_until(3);
	cr_assert(evs[2].done);
	cr_assert_eq(evs[2].status, ND_EREMOTE);
	cr_assert_eq(evs[2].err_code, NODED__ERROR_CODE__CANCELLED);
	cr_assert_eq(evs[2].arg, 7);
	cr_assert_eq(nd_client_pending(cl), 0);
	cr_assert_eq(nd_client_cancel(cl, 1), -ENOENT);
}

Test(client, stream_end_without_body_is_success, .init = setup,
     .fini = teardown)
{
	Noded__Frame end = NODED__FRAME__INIT;
	uint8_t buf[256];
	size_t len = 0;

	cr_assert_eq(start_assign(1), 1);
	put_open(buf, sizeof(buf), &len, 1);
	end.id = 1;
	end.kind = NODED__FRAME_KIND__STREAM_END;
	put_frame(buf, sizeof(buf), &len, &end);
	cr_assert_eq(nd_client_feed(cl, buf, len), 2);
	cr_assert_eq(evs[1].status, 0);
	cr_assert(evs[1].done);
	cr_assert_eq(evs[1].body, NODED__FRAME__BODY__NOT_SET);
}

Test(client, cancel_of_unary_or_unknown_id_is_refused, .init = setup,
     .fini = teardown)
{
	cr_assert_eq(start_ping("a", 1), 1);
	cr_assert_eq(nd_client_cancel(cl, 1), -EINVAL);
	cr_assert_eq(nd_client_cancel(cl, 2), -ENOENT);
	cr_assert_eq(nd_client_cancel(cl, 0), -ENOENT);
}

Test(client, stream_item_for_unary_call_is_protocol_error, .init = setup,
     .fini = teardown)
{
	uint8_t buf[256];
	size_t len = 0;

	cr_assert_eq(start_ping("a", 1), 1);
	put_open(buf, sizeof(buf), &len, 1);
	cr_assert_eq(nd_client_feed(cl, buf, len), ND_EPROTO);
	cr_assert_eq(nev, 1);
	cr_assert_eq(evs[0].status, ND_EPROTO);
	cr_assert_not(evs[0].has_frame);
}

Test(client, error_reply_is_eremote, .init = setup, .fini = teardown)
{
	uint8_t buf[256];
	size_t len = 0;

	cr_assert_eq(start_ping("a", 5), 1);
	cr_assert_eq(start_ping("b", 6), 2);
	put_error(buf, sizeof(buf), &len, 1, NODED__FRAME_KIND__REPLY,
		  NODED__ERROR_CODE__BAD_REQUEST);
	srv_write(buf, len);
	poll_until(1);
	cr_assert_eq(evs[0].status, ND_EREMOTE);
	cr_assert(evs[0].has_frame);
	cr_assert(evs[0].done);
	cr_assert_eq(evs[0].err_code, NODED__ERROR_CODE__BAD_REQUEST);
	cr_assert_eq(evs[0].arg, 5);
	/* An Error for one request leaves the others and the client alone. */
	cr_assert_eq(nd_client_pending(cl), 1);
	cr_assert_eq(start_ping("c", 7), 3);
}

Test(client, fatal_error_id0_fails_all_pending, .init = setup,
     .fini = teardown)
{
	uint8_t buf[256];
	size_t len = 0;

	cr_assert_eq(start_ping("a", 1), 1);
	cr_assert_eq(start_ping("b", 2), 2);
	cr_assert_eq(start_assign(3), 3);
	put_error(buf, sizeof(buf), &len, 0, NODED__FRAME_KIND__REPLY,
		  NODED__ERROR_CODE__FRAME_TOO_LARGE);
	put_pong(buf, sizeof(buf), &len, 1, "a"); /* after a fatal: unread */
	cr_assert_eq(nd_client_feed(cl, buf, len), ND_EREMOTE);
	cr_assert_eq(nev, 3);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(evs[i].status, ND_EREMOTE);
		cr_assert(evs[i].done);
		cr_assert_eq(evs[i].err_code, NODED__ERROR_CODE__FRAME_TOO_LARGE);
	}
	cr_assert_eq(nd_client_pending(cl), 0);
	cr_assert_eq(start_ping("c", 4), ND_EREMOTE);
	cr_assert_eq(nd_client_poll(cl, 0), ND_EREMOTE);
}

/* ---- reassembly ---- */

Test(client, replies_split_into_one_byte_feeds, .init = setup,
     .fini = teardown)
{
	uint8_t buf[512];
	size_t len = 0, first;
	int r;

	cr_assert_eq(start_ping("a", 1), 1);
	cr_assert_eq(start_assign(2), 2);
	put_pong(buf, sizeof(buf), &len, 1, "0123456789");
	first = len;
	put_open(buf, sizeof(buf), &len, 2);
	put_error(buf, sizeof(buf), &len, 2, NODED__FRAME_KIND__STREAM_END,
		  NODED__ERROR_CODE__UNAVAILABLE);
	for (size_t i = 0; i < len; i++) {
		r = nd_client_feed(cl, buf + i, 1);
		cr_assert_geq(r, 0, "feed byte %zu: %d", i, r);
		/* The callback runs exactly with the frame's last byte. */
		if (i == first - 1)
			cr_assert_eq(r, 1);
		if (i < first - 1)
			cr_assert_eq(nev, 0, "callback before byte %zu", i);
	}
	cr_assert_eq(nev, 3);
	cr_assert_eq(evs[0].payload_len, 10);
	cr_assert_eq(evs[1].body, NODED__FRAME__BODY_ASSIGN_OPEN);
	cr_assert_eq(evs[2].err_code, NODED__ERROR_CODE__UNAVAILABLE);
	cr_assert(evs[2].done);
	cr_assert_eq(nd_client_pending(cl), 0);
}

Test(client, feeds_at_every_split_point, .init = setup, .fini = teardown)
{
	uint8_t buf[512];
	size_t len;
	uint64_t id;

	for (size_t cut = 0; cut < 64; cut++) {
		nev = 0;
		id = (uint64_t)start_ping("p", 1);
		cr_assert_gt(start_ping("p", 2), 0);
		cr_assert_gt(start_ping("p", 3), 0);
		len = 0;
		put_pong(buf, sizeof(buf), &len, id, "hello");
		put_pong(buf, sizeof(buf), &len, id + 1, "world!");
		put_pong(buf, sizeof(buf), &len, id + 2, "");
		if (cut > len)
			break;
		if (cut)  /* a feed of 0 bytes means end of file */
			cr_assert_geq(nd_client_feed(cl, buf, cut), 0);
		if (cut < len)
			cr_assert_geq(nd_client_feed(cl, buf + cut, len - cut),
				      0);
		cr_assert_eq(nev, 3, "cut %zu", cut);
		cr_assert_eq(evs[0].arg, 1);
		cr_assert_eq(evs[2].arg, 3);
		cr_assert_eq(nd_client_pending(cl), 0);
	}
}

Test(client, large_reply_reassembled)
{
	size_t plen = 3u << 20, len = 0, cap = plen + 64;
	uint8_t *buf = malloc(cap);
	char *payload = malloc(plen + 1);

	open_pair(0);
	cr_assert_not_null(buf);
	cr_assert_not_null(payload);
	memset(payload, 'z', plen);
	payload[plen] = '\0';
	cr_assert_eq(start_ping("big", 1), 1);
	put_pong(buf, cap, &len, 1, payload);
	for (size_t off = 0; off < len; off += 4093)
		cr_assert_geq(nd_client_feed(cl, buf + off,
					     len - off < 4093 ? len - off
							      : 4093), 0);
	cr_assert_eq(nev, 1);
	cr_assert_eq(evs[0].payload_len, plen);
	free(buf);
	free(payload);
	teardown();
}

/* ---- bad bytes ---- */

Test(client, frame_over_max_frame_is_an_error)
{
	uint8_t hdr[4] = { 0, 0, 0, 65 };

	open_pair(64);
	cr_assert_eq(start_ping("a", 1), 1);
	/* Decided from the header alone, before the body arrives. */
	srv_write(hdr, sizeof(hdr));
	cr_assert_eq(poll_error(), ND_EFRAMETOOBIG);
	cr_assert_eq(nev, 1);
	cr_assert_eq(evs[0].status, ND_EFRAMETOOBIG);
	cr_assert_not(evs[0].has_frame);
	cr_assert(evs[0].done);
	cr_assert_eq(nd_client_pending(cl), 0);
	cr_assert_eq(start_ping("b", 2), ND_EFRAMETOOBIG);
	cr_assert_eq(nd_client_feed(cl, hdr, 4), ND_EFRAMETOOBIG);
	teardown();
}

Test(client, frame_at_max_frame_is_accepted)
{
	uint8_t buf[256];
	size_t len = 0;

	open_pair(0);
	put_pong(buf, sizeof(buf), &len, 1, "abcdefgh");
	teardown();
	/* Now with max_frame equal to that body length. */
	open_pair((uint32_t)(len - ND_FRAME_HDR));
	cr_assert_eq(start_ping("a", 1), 1);
	cr_assert_eq(nd_client_feed(cl, buf, len), 1);
	cr_assert_eq(evs[0].status, 0);
	teardown();
}

Test(client, header_over_max_split_across_feeds)
{
	uint8_t hdr[4] = { 0x7f, 0, 0, 0 };

	open_pair(0);
	cr_assert_eq(start_ping("a", 1), 1);
	cr_assert_eq(nd_client_feed(cl, hdr, 2), 0);
	cr_assert_eq(nd_client_feed(cl, hdr + 2, 2), ND_EFRAMETOOBIG);
	cr_assert_eq(evs[0].status, ND_EFRAMETOOBIG);
	teardown();
}

Test(client, zero_length_frame_is_an_error, .init = setup, .fini = teardown)
{
	uint8_t hdr[4] = { 0 };

	cr_assert_eq(start_ping("a", 1), 1);
	cr_assert_eq(nd_client_feed(cl, hdr, 4), ND_EEMPTYFRAME);
	cr_assert_eq(evs[0].status, ND_EEMPTYFRAME);
}

Test(client, undecodable_frame_is_an_error, .init = setup, .fini = teardown)
{
	uint8_t bad[] = { 0, 0, 0, 3, 0x17, 0xff, 0xff };

	cr_assert_eq(start_ping("a", 1), 1);
	cr_assert_eq(start_ping("b", 2), 2);
	srv_write(bad, sizeof(bad));
	cr_assert_eq(poll_error(), ND_EBADFRAME);
	cr_assert_eq(nev, 2);
	cr_assert_eq(evs[0].status, ND_EBADFRAME);
	cr_assert_eq(evs[1].status, ND_EBADFRAME);
	cr_assert_eq(nd_client_pending(cl), 0);
}

/* ---- end of connection ---- */

Test(client, eof_fails_pending_with_econnreset, .init = setup,
     .fini = teardown)
{
	uint8_t buf[256];
	size_t len = 0;

	cr_assert_eq(start_ping("a", 1), 1);
	cr_assert_eq(start_ping("b", 2), 2);
	cr_assert_eq(start_assign(3), 3);
	cr_assert_eq(nd_client_flush(cl), 0);
	/* One answer, then half a frame, then the server goes away. */
	put_pong(buf, sizeof(buf), &len, 2, "b");
	put_pong(buf, sizeof(buf), &len, 1, "a");
	srv_write(buf, len - 3);
	close(srv);
	srv = -1;
	cr_assert_eq(poll_error(), ND_ECLOSED);
	cr_assert_eq(nev, 3);
	cr_assert_eq(evs[0].status, 0);
	cr_assert_eq(evs[0].arg, 2);
	for (int i = 1; i < 3; i++) {
		cr_assert_eq(evs[i].status, -ECONNRESET);
		cr_assert_not(evs[i].has_frame);
		cr_assert(evs[i].done);
	}
	cr_assert_eq(nd_client_pending(cl), 0);
	cr_assert_eq(nd_client_poll(cl, 0), ND_ECLOSED);
	cr_assert_eq(start_ping("c", 4), ND_ECLOSED);
}

Test(client, feed_of_zero_bytes_is_eof, .init = setup, .fini = teardown)
{
	cr_assert_eq(start_ping("a", 1), 1);
	cr_assert_eq(nd_client_feed(cl, NULL, 0), ND_ECLOSED);
	cr_assert_eq(evs[0].status, -ECONNRESET);
}

Test(client, close_cancels_pending)
{
	open_pair(0);
	cr_assert_eq(start_ping("a", 1), 1);
	cr_assert_eq(start_assign(2), 2);
	nd_client_close(cl);
	cl = NULL;
	cr_assert_eq(nev, 2);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(evs[i].status, -ECANCELED);
		cr_assert(evs[i].done);
		cr_assert_not(evs[i].has_frame);
	}
	teardown();
	nd_client_close(NULL); /* no-op */
}

/* ---- callbacks that start more work ---- */

static int chain_left;

static void chain_cb(struct nd_client *c, int status, const Noded__Frame *f,
		     bool done, void *arg)
{
	Noded__PingRequest p;
	Noded__Frame req;

	record(c, status, f, done, arg);
	if (status || chain_left-- <= 0)
		return;
	frame_ping(&req, &p, "again");
	cr_assert_gt(nd_client_start(c, &req, chain_cb, arg), 0);
	/* Waiting from inside a callback would recurse: refused. */
	cr_assert_eq(nd_client_poll(c, 0), -EDEADLK);
	cr_assert_eq(nd_client_ping(c, 0), -EDEADLK);
}

Test(client, callback_can_start_requests, .init = setup, .fini = teardown)
{
	Noded__PingRequest p;
	Noded__Frame req;
	uint8_t buf[256];
	size_t len;

	chain_left = 5;
	frame_ping(&req, &p, "first");
	cr_assert_eq(nd_client_start(cl, &req, chain_cb, (void *)1), 1);
	for (uint64_t id = 1; id <= 6; id++) {
		len = 0;
		put_pong(buf, sizeof(buf), &len, id, "x");
		cr_assert_eq(nd_client_feed(cl, buf, len), 1);
		cr_assert_eq(nev, (int)id);
		cr_assert_eq(nd_client_pending(cl), id < 6 ? 1 : 0);
	}
	/* Every request reached the output queue, in order. */
	cr_assert_eq(nd_client_flush(cl), 0);
	for (uint64_t id = 1; id <= 6; id++) {
		Noded__Frame *f = srv_read_frame();

		cr_assert_eq(f->id, id);
		nd_frame_free(f, NULL);
	}
}

/* ---- the pending table under churn ---- */

Test(client, pending_table_random_churn, .init = setup, .fini = teardown)
{
	enum { N = 3000 };
	static uint64_t live[N];
	static int calls[N * 4];
	uint8_t buf[64];
	const uint8_t *out;
	size_t nlive = 0, len, started = 0;
	unsigned seed = 12345;

	for (int step = 0; step < 40000; step++) {
		bool add = nlive == 0 ||
			   (nlive < N && (rand_r(&seed) % 100) < 52);

		if (add && started < N * 4 - 1) {
			int64_t id = start_ping("", started + 1);

			cr_assert_eq(id, (int64_t)started + 1);
			live[nlive++] = (uint64_t)id;
			started++;
		} else if (nlive) {
			size_t k = rand_r(&seed) % nlive;
			uint64_t id = live[k];

			live[k] = live[--nlive];
			len = 0;
			put_pong(buf, sizeof(buf), &len, id, "");
			cr_assert_eq(nd_client_feed(cl, buf, len), 1);
			cr_assert_eq(evs[nev - 1].arg, id);
			calls[id]++;
			nev = 0;
		}
		cr_assert_eq(nd_client_pending(cl), nlive);
		/* Discard the output as a driver that sent it would. */
		nd_client_consume(cl, nd_client_output(cl, &out));
	}
	for (size_t i = 1; i <= started; i++) {
		bool is_live = false;

		for (size_t k = 0; k < nlive; k++)
			is_live |= live[k] == i;
		cr_assert_eq(calls[i], is_live ? 0 : 1, "id %zu", i);
	}
}

/* ---- sans-I/O output ---- */

Test(client, output_and_consume, .init = setup, .fini = teardown)
{
	const uint8_t *out;
	size_t n, need;
	Noded__Frame *f;

	cr_assert_eq(nd_client_output(cl, &out), 0);
	cr_assert_eq(start_ping("abc", 1), 1);
	n = nd_client_output(cl, &out);
	cr_assert_gt(n, ND_FRAME_HDR);
	cr_assert_eq(nd_frame_peek(out, n, ND_MAX_FRAME_DEFAULT, &need),
		     (int64_t)(n - ND_FRAME_HDR));
	f = nd_frame_decode(out + ND_FRAME_HDR, n - ND_FRAME_HDR, NULL);
	cr_assert_not_null(f);
	cr_assert_eq(f->id, 1);
	nd_frame_free(f, NULL);
	nd_client_consume(cl, 2);
	cr_assert_eq(nd_client_output(cl, &out), n - 2);
	nd_client_consume(cl, n - 2);
	cr_assert_eq(nd_client_output(cl, &out), 0);
	cr_assert_eq(nd_client_pending(cl), 1);
}

Test(client, request_without_body_is_refused, .init = setup,
     .fini = teardown)
{
	Noded__Frame f = NODED__FRAME__INIT;

	cr_assert_eq(nd_client_start(cl, &f, record, NULL), -EINVAL);
	cr_assert_eq(nd_client_pending(cl), 0);
}

/* ---- hello ---- */

static void put_hello_reply(uint8_t *buf, size_t cap, size_t *len,
			    uint64_t id, uint32_t max_frame)
{
	Noded__HelloReply h = NODED__HELLO_REPLY__INIT;
	Noded__Frame f = NODED__FRAME__INIT;

	h.protocol_version = 1;
	h.node_name = "master-x";
	h.role = NODED__ROLE__ROLE_MASTER;
	h.max_frame = max_frame;
	f.id = id;
	f.kind = NODED__FRAME_KIND__REPLY;
	f.body_case = NODED__FRAME__BODY_HELLO_REPLY;
	f.hello_reply = &h;
	put_frame(buf, cap, len, &f);
}

Test(client, hello_stores_server_fields, .init = setup, .fini = teardown)
{
	uint8_t buf[256];
	size_t len = 0;
	Noded__Frame *f;
	char big[200];

	cr_assert_str_eq(nd_client_server_name(cl), "");
	cr_assert_eq(nd_client_hello(cl, record, (void *)9), 0);
	cr_assert_eq(nd_client_flush(cl), 0);
	f = srv_read_frame();
	cr_assert_eq(f->body_case, NODED__FRAME__BODY_HELLO);
	cr_assert_eq(f->hello->protocol_version, ND_PROTOCOL_VERSION);
	cr_assert_str_eq(f->hello->node_name, "t");
	cr_assert_eq(f->hello->role, NODED__ROLE__ROLE_CLIENT);
	cr_assert_str_eq(f->hello->software, "noded 0.1");
	put_hello_reply(buf, sizeof(buf), &len, f->id, 100);
	nd_frame_free(f, NULL);
	srv_write(buf, len);
	poll_until(1);
	cr_assert_eq(evs[0].body, NODED__FRAME__BODY_HELLO_REPLY);
	cr_assert_str_eq(nd_client_server_name(cl), "master-x");
	cr_assert_eq(nd_client_server_max_frame(cl), 100);
	/* Requests over the server's limit are refused locally. */
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(start_ping(big, 1), ND_EFRAMETOOBIG);
	cr_assert_eq(nd_client_pending(cl), 0);
	cr_assert_gt(start_ping("small", 1), 0);
}

/*
 * A client holding a token, over the sans-I/O interface (as the worker
 * drives it): a HelloReply that asks for no token fails the Hello with
 * ND_EAUTHNOPROOF, and nothing more can be sent; the stream items that
 * follow (an assignment) reach no one.
 */
Test(client, token_holder_refuses_hello_reply_without_proof)
{
	static const uint8_t token[] = "0123456789abcdef-token";
	struct nd_client_opts o = { .node_name = "t", .token = token,
				    .token_len = sizeof(token) - 1 };
	Noded__AssignTaskOpen ao = NODED__ASSIGN_TASK_OPEN__INIT;
	Noded__Frame f = NODED__FRAME__INIT;
	uint8_t buf[512];
	const uint8_t *out;
	size_t len = 0;

	nev = 0;
	cr_assert_eq(nd_client_adopt(&cl, -1, &o), 0);
	cr_assert_eq(nd_client_hello(cl, record, NULL), 0);
	nd_client_consume(cl, nd_client_output(cl, &out));
	put_hello_reply(buf, sizeof(buf), &len, 1, 0);
	f.id = 2; /* where an AssignTask would be */
	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	f.body_case = NODED__FRAME__BODY_ASSIGN_OPEN;
	f.assign_open = &ao;
	put_frame(buf, sizeof(buf), &len, &f);
	cr_assert_eq(nd_client_feed(cl, buf, len), ND_EAUTHNOPROOF);
	cr_assert_eq(nev, 1);
	cr_assert_eq(evs[0].status, ND_EAUTHNOPROOF);
	cr_assert(evs[0].done);
	/* unusable: nothing reaches the impostor */
	cr_assert_eq(start_ping("x", 1), ND_EAUTHNOPROOF);
	cr_assert_eq(nd_client_output(cl, &out), 0);
	cr_assert(strstr(nd_strerror(ND_EAUTHNOPROOF),
			 "did not prove it holds the token"));
	nd_client_close(cl);
	cl = NULL;
}

/* ---- blocking calls ---- */

Test(client, call_returns_reply_and_serves_async, .init = setup,
     .fini = teardown)
{
	Noded__PingRequest p;
	Noded__Frame req, *reply = NULL;
	uint8_t buf[256];
	size_t len = 0;

	cr_assert_eq(start_ping("async", 4), 1);
	/* Ids are predictable: the call will be id 2. Answer both ahead. */
	put_pong(buf, sizeof(buf), &len, 2, "sync");
	put_pong(buf, sizeof(buf), &len, 1, "async");
	srv_write(buf, len);
	frame_ping(&req, &p, "sync");
	cr_assert_eq(nd_client_call(cl, &req, &reply, 2000), 0);
	cr_assert_not_null(reply);
	cr_assert_eq(reply->id, 2);
	cr_assert_eq(reply->body_case, NODED__FRAME__BODY_PONG);
	cr_assert_eq(reply->pong->payload.len, 4);
	nd_frame_free(reply, NULL);
	/* The async reply arrived in the same read: poll once more. */
	poll_until(1);
	cr_assert_eq(evs[0].arg, 4);
	cr_assert_eq(nd_client_pending(cl), 0);
}

Test(client, call_error_reply_gives_frame, .init = setup, .fini = teardown)
{
	Noded__PingRequest p;
	Noded__Frame req, *reply = NULL;
	uint8_t buf[256];
	size_t len = 0;

	put_error(buf, sizeof(buf), &len, 1, NODED__FRAME_KIND__REPLY,
		  NODED__ERROR_CODE__HELLO_REQUIRED);
	srv_write(buf, len);
	frame_ping(&req, &p, NULL);
	cr_assert_eq(nd_client_call(cl, &req, &reply, 2000), ND_EREMOTE);
	cr_assert_not_null(reply);
	cr_assert_eq(reply->error->code, NODED__ERROR_CODE__HELLO_REQUIRED);
	nd_frame_free(reply, NULL);
}

Test(client, call_fatal_error_gives_frame, .init = setup, .fini = teardown)
{
	Noded__PingRequest p;
	Noded__Frame req, *reply = NULL;
	uint8_t buf[256];
	size_t len = 0;

	cr_assert_eq(start_ping("async", 4), 1);
	put_error(buf, sizeof(buf), &len, 0, NODED__FRAME_KIND__REPLY,
		  NODED__ERROR_CODE__BAD_FRAME);
	srv_write(buf, len);
	frame_ping(&req, &p, NULL);
	cr_assert_eq(nd_client_call(cl, &req, &reply, 2000), ND_EREMOTE);
	cr_assert_not_null(reply);
	cr_assert_eq(reply->error->code, NODED__ERROR_CODE__BAD_FRAME);
	nd_frame_free(reply, NULL);
	cr_assert_eq(nev, 1);
	cr_assert_eq(evs[0].status, ND_EREMOTE);
}

Test(client, call_times_out_and_late_reply_is_ignored, .init = setup,
     .fini = teardown)
{
	Noded__Frame *reply = (Noded__Frame *)1;
	struct timespec a, b;
	uint8_t buf[256];
	size_t len = 0;
	long ms;

	clock_gettime(CLOCK_MONOTONIC, &a);
	cr_assert_eq(nd_client_ping(cl, 100), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	cr_assert_geq(ms, 90);
	cr_assert_lt(ms, 1500);
	cr_assert_eq(nd_client_pending(cl), 0);
	put_pong(buf, sizeof(buf), &len, 1, "");
	srv_write(buf, len);
	cr_assert_eq(nd_client_poll(cl, 200), 0);
	/* A call that times out reports no reply. */
	{
		Noded__PingRequest p;
		Noded__Frame req;

		frame_ping(&req, &p, NULL);
		cr_assert_eq(nd_client_call(cl, &req, &reply, 0), -ETIMEDOUT);
		cr_assert_null(reply);
	}
}

Test(client, call_on_stream_takes_first_frame, .init = setup,
     .fini = teardown)
{
	Noded__AssignTaskRequest a = NODED__ASSIGN_TASK_REQUEST__INIT;
	Noded__Frame req = NODED__FRAME__INIT, *reply = NULL;
	uint8_t buf[256];
	size_t len = 0;

	put_open(buf, sizeof(buf), &len, 1);
	srv_write(buf, len);
	req.body_case = NODED__FRAME__BODY_ASSIGN_TASK;
	req.assign_task = &a;
	cr_assert_eq(nd_client_call(cl, &req, &reply, 2000), 0);
	cr_assert_eq(reply->body_case, NODED__FRAME__BODY_ASSIGN_OPEN);
	nd_frame_free(reply, NULL);
	/* The stream stays open, can be cancelled, and ends quietly. */
	cr_assert_eq(nd_client_pending(cl), 1);
	cr_assert_eq(nd_client_cancel(cl, 1), 0);
	len = 0;
	put_open(buf, sizeof(buf), &len, 1);
	put_error(buf, sizeof(buf), &len, 1, NODED__FRAME_KIND__STREAM_END,
		  NODED__ERROR_CODE__CANCELLED);
	cr_assert_eq(nd_client_feed(cl, buf, len), 2);
	cr_assert_eq(nd_client_pending(cl), 0);
	cr_assert_eq(nev, 0);
}

Test(client, call_after_eof_fails, .init = setup, .fini = teardown)
{
	close(srv);
	srv = -1;
	cr_assert_eq(nd_client_ping(cl, 2000), -ECONNRESET);
	cr_assert_eq(nd_client_ping(cl, 2000), ND_ECLOSED);
}

/* ---- connect against a scripted listener ---- */

struct fake {
	int lfd;
	int port;
	int mode;       /* 0: answer Hello; 1: never answer; 2: Error reply */
	pthread_t th;
	char seen_name[64];
};

static void *fake_main(void *arg)
{
	struct fake *fk = arg;
	uint8_t hdr[4], body[512], out[256];
	struct timeval tv = { .tv_sec = 3 };
	size_t len = 0, need;
	Noded__Frame *f;
	int fd;
	int64_t n;

	fd = accept(fk->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (recv(fd, hdr, 4, MSG_WAITALL) != 4)
		goto out;
	n = nd_frame_peek(hdr, 4, sizeof(body), &need);
	if (n <= 0 || recv(fd, body, (size_t)n, MSG_WAITALL) != n)
		goto out;
	f = nd_frame_decode(body, (size_t)n, NULL);
	if (!f)
		goto out;
	if (f->body_case == NODED__FRAME__BODY_HELLO)
		snprintf(fk->seen_name, sizeof(fk->seen_name), "%s",
			 f->hello->node_name);
	if (fk->mode == 0) {
		Noded__HelloReply h = NODED__HELLO_REPLY__INIT;
		Noded__Frame r = NODED__FRAME__INIT;

		h.protocol_version = 1;
		h.node_name = "fake";
		h.max_frame = 4096;
		r.id = f->id;
		r.kind = NODED__FRAME_KIND__REPLY;
		r.body_case = NODED__FRAME__BODY_HELLO_REPLY;
		r.hello_reply = &h;
		len = nd_frame_encode(&r, out);
	} else if (fk->mode == 2) {
		Noded__Error e = NODED__ERROR__INIT;
		Noded__Frame r = NODED__FRAME__INIT;

		e.code = NODED__ERROR_CODE__VERSION_MISMATCH;
		r.id = f->id;
		r.kind = NODED__FRAME_KIND__REPLY;
		r.body_case = NODED__FRAME__BODY_ERROR;
		r.error = &e;
		len = nd_frame_encode(&r, out);
	}
	nd_frame_free(f, NULL);
	if (len && write(fd, out, len) != (ssize_t)len)
		goto out;
	/* Hold the connection until the client closes it. */
	recv(fd, body, sizeof(body), 0);
out:
	close(fd);
	return NULL;
}

static void fake_start(struct fake *fk, int mode)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);

	memset(fk, 0, sizeof(*fk));
	fk->mode = mode;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fk->lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fk->lfd, 0);
	cr_assert_eq(bind(fk->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fk->lfd, 8), 0);
	cr_assert_eq(getsockname(fk->lfd, (struct sockaddr *)&sa, &sl), 0);
	fk->port = ntohs(sa.sin_port);
	cr_assert_eq(pthread_create(&fk->th, NULL, fake_main, fk), 0);
}

static void fake_stop(struct fake *fk)
{
	pthread_join(fk->th, NULL);
	close(fk->lfd);
}

Test(client_connect, handshake_with_fake_server)
{
	struct nd_client_opts o = { .node_name = "bench-1" };
	struct nd_client *c = NULL;
	struct fake fk;
	char addr[64];

	fake_start(&fk, 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", fk.port);
	cr_assert_eq(nd_client_connect(&c, addr, &o), 0);
	cr_assert_not_null(c);
	cr_assert_str_eq(nd_client_server_name(c), "fake");
	cr_assert_eq(nd_client_server_max_frame(c), 4096);
	cr_assert_eq(nd_client_pending(c), 0);
	nd_client_close(c);
	fake_stop(&fk);
	cr_assert_str_eq(fk.seen_name, "bench-1");
}

Test(client_connect, name_resolution)
{
	struct nd_client *c = NULL;
	struct fake fk;
	char addr[64];

	fake_start(&fk, 0);
	snprintf(addr, sizeof(addr), "localhost:%d", fk.port);
	cr_assert_eq(nd_client_connect(&c, addr, NULL), 0);
	nd_client_close(c);
	fake_stop(&fk);
	cr_assert_str_eq(fk.seen_name, "client");
}

Test(client_connect, hello_timeout)
{
	struct nd_client_opts o = { .timeout_ms = 150 };
	struct nd_client *c = (struct nd_client *)1;
	struct fake fk;
	char addr[64];

	fake_start(&fk, 1);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", fk.port);
	cr_assert_eq(nd_client_connect(&c, addr, &o), -ETIMEDOUT);
	cr_assert_null(c);
	fake_stop(&fk);
}

Test(client_connect, hello_error_is_eremote)
{
	struct nd_client *c = NULL;
	struct fake fk;
	char addr[64];

	fake_start(&fk, 2);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", fk.port);
	cr_assert_eq(nd_client_connect(&c, addr, NULL), ND_EREMOTE);
	cr_assert_null(c);
	fake_stop(&fk);
}

Test(client_connect, refused_and_bad_addresses)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	struct nd_client *c = NULL;
	char addr[64];
	int fd, port, r;

	/* A port nobody listens on: bind one, note it, close it. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	cr_assert_eq(nd_client_connect(&c, addr, NULL), -ECONNREFUSED);
	cr_assert_eq(nd_client_connect(&c, "127.0.0.1", NULL), ND_EADDR);
	cr_assert_eq(nd_client_connect(&c, ":80", NULL), ND_EADDR);
	cr_assert_eq(nd_client_connect(&c, "127.0.0.1:", NULL), ND_EADDR);
	/* glibc refuses this name without asking DNS; a resolver that
	 * cannot be reached says "try again" instead. */
	r = nd_client_connect(&c, "no such host.invalid:1", NULL);
	cr_assert(r == ND_EADDR || r == -EAGAIN, "got %d", r);
	cr_assert_null(c);
}

/* TLS on an adopted socket: refused without a socket, without anything in
 * the options that asks for it; files that do not load
 * are ND_ETLS, said why. (tests/perf/test_sim.c runs it against a master.) */
Test(client_connect, start_tls_bad_cases)
{
	struct nd_client_opts none = { 0 };
	struct nd_client_opts o = { .tls_ca = "/nonexistent/ca.crt" };
	struct nd_client *c = NULL;
	int sv[2];

	cr_assert_eq(nd_client_adopt(&c, -1, NULL), 0);
	cr_assert_eq(nd_client_start_tls(c, &o, 100), -EINVAL);
	nd_client_close(c);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(nd_client_adopt(&c, sv[0], NULL), 0);
	cr_assert_eq(nd_client_start_tls(c, &none, 100), -EINVAL);
	cr_assert_eq(nd_client_start_tls(c, NULL, 100), -EINVAL);
	cr_assert_eq(nd_client_start_tls(c, &o, 100), ND_ETLS);
	cr_assert(strstr(nd_client_last_error(), "TLS files"), "%s",
		  nd_client_last_error());
	nd_client_close(c);
	close(sv[1]);
}
