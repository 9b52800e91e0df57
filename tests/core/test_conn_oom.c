/*
 * Out of memory on a connection (src/core/conn.c, conn_out.c, buf.c): the
 * server's protocol (rpc/server.c) on a shard in this process (inproc.h),
 * driven through accept (nd_conn_adopt), Hello, a small Ping, a Ping of
 * BIG bytes (kept input and output that must grow) and close, and an
 * outbound connect (nd_conn_connect), with the n-th allocation failing,
 * for n = 1, 2, ... until the path makes fewer than n. Each time, the contract of conn.h ("Out of memory"): no crash;
 * every request is answered, or the connection is closed (with the
 * replies already whole, and nothing else, on the wire); another
 * connection on the same shard goes on working; and nothing leaks
 * (asked of LeakSanitizer at the end, in the sanitizer build).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "alloc_fail.h"
#include "inproc.h"
#include "noded/client.h"
#include "noded/errors.h"
#include "rpc/server.h"

#define BIG (100 * 1024)     /* over 16 receive buffers: kept, grown */
#define WIRE_MAX (1 << 20)
#define RUNS_MAX 10000       /* bound on n; the path makes far fewer */

static struct nd_inproc in;

/* What the server sent each connection (no allocation: static). */
static struct nd_conn *victim, *other;
static uint8_t wire_victim[WIRE_MAX], wire_other[WIRE_MAX];
static size_t wire_victim_len, wire_other_len;

static void on_sent(struct nd_conn *c, const uint8_t *p, size_t n)
{
	uint8_t *w = c == victim ? wire_victim : wire_other;
	size_t *len = c == victim ? &wire_victim_len : &wire_other_len;

	cr_assert(*len + n <= WIRE_MAX, "more output than expected");
	memcpy(w + *len, p, n);
	*len += n;
}

/* One request's outcome, as the client saw it. */
struct answer {
	bool got;
	int status;
	size_t payload_len;
	bool payload_ok;
	uint8_t fill;
};

/* Errors the server sent (code + 1; 0: none) that were not out-of-memory
 * ones: an allocation that fails must be told as such, not as, say, a bad
 * frame. */
static int wrong_error;

static void on_reply(struct nd_client *c, int status, const Noded__Frame *f,
		     bool done, void *arg)
{
	struct answer *a = arg;

	a->got = true;
	a->status = status;
	if (f && f->body_case == NODED__FRAME__BODY_ERROR &&
	    f->error->code != NODED__ERROR_CODE__RESOURCE_EXHAUSTED)
		wrong_error = f->error->code + 1;
	if (status == 0 && f && f->body_case == NODED__FRAME__BODY_PONG) {
		a->payload_len = f->pong->payload.len;
		a->payload_ok = true;
		for (size_t i = 0; i < f->pong->payload.len; i++)
			if (f->pong->payload.data[i] != a->fill)
				a->payload_ok = false;
	}
}

/* A sans-I/O client and the bytes of its requests. */
struct peer {
	struct nd_client *cl;
	uint8_t *req;
	size_t req_len;
};

static void peer_new(struct peer *p)
{
	cr_assert(nd_client_adopt(&p->cl, -1, NULL) == 0);
	p->req = NULL;
	p->req_len = 0;
}

/* Takes what the client queued since the last take. */
static void peer_take(struct peer *p)
{
	const uint8_t *d;
	size_t n = nd_client_output(p->cl, &d);

	p->req = realloc(p->req, p->req_len + n);
	cr_assert(p->req);
	memcpy(p->req + p->req_len, d, n);
	p->req_len += n;
	nd_client_consume(p->cl, n);
}

static void peer_ping(struct peer *p, size_t len, uint8_t fill,
		      struct answer *a)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__PingRequest ping = NODED__PING_REQUEST__INIT;
	uint8_t *payload = malloc(len ? len : 1);

	cr_assert(payload);
	memset(payload, fill, len);
	memset(a, 0, sizeof(*a));
	a->fill = fill;
	ping.payload.data = payload;
	ping.payload.len = len;
	f.body_case = NODED__FRAME__BODY_PING;
	f.ping = &ping;
	cr_assert(nd_client_start(p->cl, &f, on_reply, a) > 0);
	peer_take(p);
	free(payload);
}

static void peer_free(struct peer *p)
{
	nd_client_close(p->cl);
	free(p->req);
}

/* Hands bytes to c as the kernel would: in receive-buffer chunks, each
 * followed by the shard loop's flush and the sends' completions; stops
 * once c reads no more. */
static void deliver(struct nd_conn *c, const uint8_t *p, size_t n)
{
	size_t off = 0, k;

	while (off < n) {
		nd_inproc_settle(&in, c);
		if (!(c->flags & ND_CONN_RECV_ARMED) ||
		    (c->flags & (ND_CONN_CLOSING | ND_CONN_DEAD)))
			return;
		k = n - off < in.s.buf_size ? n - off : in.s.buf_size;
		nd_inproc_recv(&in, c, p + off, k);
		off += k;
	}
	nd_inproc_settle(&in, c);
}

static void setup(void)
{
	memset(&in, 0, sizeof(in));
	nd_config_defaults(&in.cfg);
	in.cfg.max_frame = 1 << 20;
	in.cfg.name = "oom-test";
	nd_svc_config_defaults(&in.svc_cfg);
	nd_inproc_init(&in);
	in.sent = on_sent;
	in.s.now_ms = nd_mono_coarse_ms();
}

TestSuite(conn_oom, .init = setup);

/* The other connection: a Ping answered in full. */
static void expect_other_works(struct peer *po, uint8_t fill)
{
	struct answer a;
	size_t from = po->req_len;

	peer_ping(po, 1000, fill, &a);
	wire_other_len = 0;
	deliver(other, po->req + from, po->req_len - from);
	cr_assert(!(other->flags & (ND_CONN_CLOSING | ND_CONN_DEAD)),
		  "the other connection was closed");
	cr_assert(nd_client_feed(po->cl, wire_other, wire_other_len) >= 0);
	cr_assert(a.got && a.status == 0 && a.payload_len == 1000 &&
		  a.payload_ok, "the other connection's Ping (fill %u) was "
		  "not answered", fill);
}

Test(conn_oom, every_allocation_of_a_connection_fails_once)
{
	struct peer po;
	struct answer hello, small, big, ho;
	long n, closed = 0, answered = 0;

	/* The other connection, before and after every failure. */
	peer_new(&po);
	cr_assert(nd_client_hello(po.cl, on_reply, &ho) == 0);
	peer_take(&po);
	other = nd_conn_adopt(&in.s, -1, &nd_rpc_server_ops, NULL, false);
	cr_assert(other);
	deliver(other, po.req, po.req_len);
	cr_assert(nd_client_feed(po.cl, wire_other, wire_other_len) >= 0);
	cr_assert(ho.got && ho.status == 0, "hello of the other connection");

	for (n = 1; n <= RUNS_MAX; n++) {
		struct peer pv;
		bool hit, gone;
		int r;

		peer_new(&pv);
		memset(&hello, 0, sizeof(hello));
		cr_assert(nd_client_hello(pv.cl, on_reply, &hello) == 0);
		peer_take(&pv);
		peer_ping(&pv, 10, 's', &small);
		peer_ping(&pv, BIG, 'b', &big);
		wire_victim_len = 0;

		nd_alloc_fail_at(n);
		victim = nd_conn_adopt(&in.s, -1, &nd_rpc_server_ops, NULL,
				       false);
		if (victim)
			deliver(victim, pv.req, pv.req_len);
		hit = nd_alloc_fail_off();

		if (!victim) {
			/* Refused at accept: nothing was made. */
			cr_assert(hit);
			cr_assert(in.s.nconns == 1);
			closed++;
		} else {
			gone = victim->flags & (ND_CONN_CLOSING | ND_CONN_DEAD);
			r = wire_victim_len ? nd_client_feed(pv.cl,
					wire_victim, wire_victim_len) : 0;
			/* ND_EREMOTE: a connection-fatal Error (id 0),
			 * the clear error of a connection it closes. */
			cr_assert(r >= 0 || (gone && r == ND_EREMOTE),
				  "n=%ld: the server sent bytes that are "
				  "not frames, or an error on an open "
				  "connection (%d)", n, r);
			cr_assert(!wrong_error, "n=%ld: the server said %d, "
				  "not RESOURCE_EXHAUSTED", n,
				  wrong_error - 1);
			if (gone && r >= 0) /* then the peer sees EOF */
				cr_assert(nd_client_feed(pv.cl, NULL, 0) ==
					  ND_ECLOSED);
			if (gone) {
				closed++;
			} else {
				cr_assert(hello.got && hello.status == 0,
					  "n=%ld: the connection is open but "
					  "its Hello was not answered", n);
				cr_assert(small.got && small.status == 0 &&
					  small.payload_len == 10 &&
					  small.payload_ok,
					  "n=%ld: the connection is open but "
					  "its Ping was not answered", n);
				cr_assert(big.got && big.status == 0 &&
					  big.payload_len == BIG &&
					  big.payload_ok,
					  "n=%ld: the connection is open but "
					  "its big Ping was not answered "
					  "(got %d, status %d, %zu bytes)", n,
					  big.got, big.status,
					  big.payload_len);
				answered++;
			}
			nd_inproc_drop(&in, victim);
			cr_assert(in.s.nconns == 1, "n=%ld: %u connections "
				  "left, not the other one alone", n,
				  in.s.nconns);
		}
		victim = NULL;
		peer_free(&pv);
		expect_other_works(&po, (uint8_t)n);
		if (!hit)
			break; /* the path made fewer than n allocations */
	}
	cr_assert(n <= RUNS_MAX, "the path never ran out of allocations");
	cr_assert(n > 3, "only %ld allocations on the path", n - 1);
	cr_log_info("%ld allocations on the path; %ld runs closed, %ld "
		    "answered in full", n - 1, closed, answered);
	nd_inproc_drop(&in, other);
	peer_free(&po);
	cr_assert(in.s.nconns == 0);
#if defined(__SANITIZE_ADDRESS__)
	/* A leak report at exit would not fail the test: ask now. */
	cr_assert(!__lsan_do_recoverable_leak_check(),
		  "memory leaked (LeakSanitizer's report is above)");
#endif
}

/* ---- outbound connects ---- */

struct connect_outcome {
	int calls;
	struct nd_conn *c;
	int err;
};

static void connect_done(void *arg, struct nd_conn *c, int err)
{
	struct connect_outcome *o = arg;

	o->calls++;
	o->c = c;
	o->err = err;
}

static void quiet_open(struct nd_conn *c)
{
}

static size_t quiet_data(struct nd_conn *c, const uint8_t *p, size_t len)
{
	return len;
}

static void quiet_close(struct nd_conn *c)
{
}

static const struct nd_conn_ops quiet_ops = {
	.open = quiet_open,
	.data = quiet_data,
	.close = quiet_close,
};

/* Runs the callbacks of the one-off operations that completed (waits for
 * one), as the shard loop would; drops the rest. */
static void run_ops(void)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	cr_assert(io_uring_submit_and_wait(&in.s.ring, 1) >= 0);
	io_uring_for_each_cqe(&in.s.ring, head, cqe) {
		uint64_t ud = io_uring_cqe_get_data64(cqe);

		if ((ud & ND_TAG_MASK) == ND_TAG_OP) {
			struct nd_op *op = (struct nd_op *)(uintptr_t)
						   (ud & ~(uint64_t)ND_TAG_MASK);

			op->cb(&in.s, op, cqe);
		}
		n++;
	}
	io_uring_cq_advance(&in.s.ring, n);
}

/* Each allocation of a connect fails in turn: nd_conn_connect says
 * -ENOMEM and nothing is left, or done runs once with (NULL, -ENOMEM) and
 * the socket closed; otherwise a connection is made. */
Test(conn_oom, every_allocation_of_a_connect_fails_once)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	socklen_t len = sizeof(*sin);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	long n, refused = 0;

	cr_assert(lfd >= 0);
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(!bind(lfd, (struct sockaddr *)sin, len));
	cr_assert(!listen(lfd, 64));
	cr_assert(!getsockname(lfd, (struct sockaddr *)sin, &len));

	for (n = 1; n <= RUNS_MAX; n++) {
		struct connect_outcome o = { 0 };
		bool hit;
		int r, afd;

		nd_alloc_fail_at(n);
		r = nd_conn_connect(&in.s, &ss, len, &quiet_ops, NULL,
				    connect_done, &o);
		if (!r)
			run_ops();
		hit = nd_alloc_fail_off();
		if (r) {
			cr_assert(hit && r == -ENOMEM, "n=%ld: %d", n, r);
			cr_assert(!o.calls);
			refused++;
		} else {
			cr_assert(o.calls == 1, "n=%ld: done ran %d times", n,
				  o.calls);
			if (!o.c) {
				cr_assert(hit && o.err == -ENOMEM,
					  "n=%ld: done(NULL, %d)", n, o.err);
				refused++;
			} else {
				cr_assert(!o.err);
				nd_inproc_drop(&in, o.c);
			}
			afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			cr_assert(afd >= 0, "n=%ld: the connect did not reach "
				  "the listener", n);
			close(afd);
		}
		cr_assert(in.s.nconns == 0, "n=%ld: %u connections left", n,
			  in.s.nconns);
		if (!hit)
			break;
	}
	cr_assert(n <= RUNS_MAX && refused >= 2, "n=%ld, refused %ld", n,
		  refused);
	close(lfd);
#if defined(__SANITIZE_ADDRESS__)
	cr_assert(!__lsan_do_recoverable_leak_check(),
		  "memory leaked (LeakSanitizer's report is above)");
#endif
}
