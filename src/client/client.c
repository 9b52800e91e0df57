/*
 * noded client library (include/noded/client.h).
 *
 * The core is sans-I/O: requests are encoded at once into an output buffer
 * (c->out), bytes read from the socket go through nd_client_feed(), which
 * reassembles frames (c->in holds at most one partial frame), decodes them
 * with the protobuf-c default allocator and runs the callback registered for
 * the frame's id in an open-addressed table (c->slots). The blocking helpers
 * (connect, call, poll, flush) are thin poll(2) + nonblocking read/write
 * loops over that core, so an event loop (the benchmark's io_uring driver)
 * and the blocking API share every line of protocol code.
 *
 * Failure model: the first fatal condition (connection lost, bad bytes from
 * the server, a connection-fatal Error with id 0, close) is stored in c->err;
 * every pending call is then failed exactly once and every later action
 * returns c->err. Callbacks may call nd_client_start(), nd_client_cancel()
 * and nd_client_flush(); they must not call nd_client_close() nor the waiting
 * functions (nd_client_call/ping/poll/feed return -EDEADLK when they try).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/buf.h"
#include "core/time.h"
#include "noded/auth.h"
#include "noded/client.h"

#define SOFTWARE "noded 0.1"
#define DEFAULT_TIMEOUT_MS 5000
#define SLOTS_MIN 16
/* Queued output past which nd_client_start() refuses (-ENOBUFS): a caller
 * that queues faster than the server reads must not grow without bound. */
#define OUT_LIMIT (64u << 20)
/* An input buffer grown past this for a large frame is released once the
 * frame is consumed, so one big reply does not pin memory forever. */
#define IN_KEEP (64u << 10)
/* Bytes read per read(2) and reads per nd_client_poll(): bounds the time
 * one poll spends before returning to its caller. */
#define READ_CHUNK (16u << 10)
#define READS_PER_POLL 64

enum {
	P_HELLO = 1 << 0,   /* store the HelloReply fields before the callback */
	P_CALL = 1 << 1,    /* arg is a struct call_wait: hand the frame over */
	P_STREAM = 1 << 2,  /* the method answers with a stream (may be cancelled) */
};

/* One request whose final frame has not arrived. id 0 marks a free slot. */
struct pend {
	uint64_t id;
	nd_reply_cb cb;
	void *arg;
	unsigned flags;
};

/* nd_client_call()'s result slot, on its stack while it waits. */
struct call_wait {
	bool done;
	int status;
	Noded__Frame *frame;    /* owned by the waiter once done */
};

struct nd_client {
	int fd;
	int err;                /* 0 while usable, else what every action returns */
	int werr;               /* write side failed: output is dropped */
	unsigned dispatching;   /* > 0 while a callback runs */
	uint32_t max_frame;     /* largest frame we accept from the server */
	char *node_name;        /* copied from the opts */
	Noded__Role role;

	uint8_t *token;         /* copied from the opts, or NULL */
	size_t token_len;
	uint8_t nonce[ND_NONCE_LEN]; /* our Hello's client nonce */

	char *server_name;      /* from the HelloReply; NULL before */
	uint32_t server_max_frame;

	uint64_t next_id;

	struct pend *slots;     /* open addressing, linear probing, cap 2^k */
	size_t cap, npending;

	struct nd_buf out;      /* queued bytes are out.data[out_off, out.len):
				 * sends advance out_off, compacted when
				 * room is needed */
	size_t out_off;

	struct nd_buf in;       /* a partial frame: in.data[0, in.len) */
};

/* ---- pending table ---- */

/*
 * Ids are allocated sequentially, so the low bits are already a perfect
 * hash: the requests in flight land in consecutive slots without collisions.
 */
static size_t slot_of(const struct nd_client *c, uint64_t id)
{
	return (size_t)id & (c->cap - 1);
}

static struct pend *pend_find(struct nd_client *c, uint64_t id)
{
	size_t i;

	if (!c->cap || !id)
		return NULL;
	for (i = slot_of(c, id);; i = (i + 1) & (c->cap - 1)) {
		if (c->slots[i].id == id)
			return &c->slots[i];
		if (!c->slots[i].id)
			return NULL;
	}
}

static void pend_place(struct pend *slots, size_t cap, const struct pend *p)
{
	size_t i = (size_t)p->id & (cap - 1);

	while (slots[i].id)
		i = (i + 1) & (cap - 1);
	slots[i] = *p;
}

/* Keeps the load factor at most 1/2. Returns 0 or -ENOMEM (table intact). */
static int pend_reserve(struct nd_client *c)
{
	struct pend *slots;
	size_t cap, i;

	if ((c->npending + 1) * 2 <= c->cap)
		return 0;
	cap = c->cap ? c->cap * 2 : SLOTS_MIN;
	slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (i = 0; i < c->cap; i++)
		if (c->slots[i].id)
			pend_place(slots, cap, &c->slots[i]);
	free(c->slots);
	c->slots = slots;
	c->cap = cap;
	return 0;
}

static int pend_add(struct nd_client *c, const struct pend *p)
{
	int r = pend_reserve(c);

	if (r)
		return r;
	pend_place(c->slots, c->cap, p);
	c->npending++;
	return 0;
}

/* Backward-shift deletion: no tombstones, so lookups stay short forever. */
static void pend_remove(struct nd_client *c, struct pend *p)
{
	size_t mask = c->cap - 1, hole = (size_t)(p - c->slots), i, home;

	for (i = (hole + 1) & mask; c->slots[i].id; i = (i + 1) & mask) {
		home = slot_of(c, c->slots[i].id);
		/* Move slot i into the hole unless its home lies cyclically
		 * in (hole, i]: then it is already as close as it can be. */
		if (((i - home) & mask) >= ((i - hole) & mask)) {
			c->slots[hole] = c->slots[i];
			hole = i;
		}
	}
	c->slots[hole].id = 0;
	c->npending--;
}

/* ---- failing ---- */

static void run_cb(struct nd_client *c, const struct pend *p, int status,
		   const Noded__Frame *f, bool done)
{
	if (!p->cb)
		return;
	c->dispatching++;
	p->cb(c, status, f, done, p->arg);
	c->dispatching--;
}

/*
 * Makes the client unusable with err and ends every pending call with
 * status (frame f, borrowed, may be NULL; for nd_client_call's waiter a copy
 * is decoded from body/len when given). The table is detached first, so the
 * callbacks see an empty client and their nd_client_start() calls fail with
 * err instead of adding entries. Returns the number of callbacks run.
 */
static int fail_all(struct nd_client *c, int err, int status,
		    const Noded__Frame *f, const uint8_t *body, size_t len)
{
	struct pend *slots = c->slots;
	size_t cap = c->cap, i;
	int runs = 0;

	if (!c->err)
		c->err = err;
	c->slots = NULL;
	c->cap = 0;
	c->npending = 0;
	for (i = 0; i < cap; i++) {
		struct pend *p = &slots[i];
		struct call_wait *w;

		if (!p->id)
			continue;
		runs++;
		if (!(p->flags & P_CALL)) {
			run_cb(c, p, status, f, true);
			continue;
		}
		w = p->arg;
		w->done = true;
		w->status = status;
		w->frame = body ? nd_frame_decode(body, len, NULL) : NULL;
		if (body && !w->frame)
			w->status = -ENOMEM;
	}
	free(slots);
	return runs;
}

/* ---- output ---- */

static size_t out_queued(const struct nd_client *c)
{
	return c->out.len - c->out_off;
}

/* Makes room for n more bytes at c->out.data + c->out.len. */
static int out_reserve(struct nd_client *c, size_t n)
{
	size_t queued = out_queued(c);

	if (queued && queued + n > OUT_LIMIT)
		return -ENOBUFS;
	if (n <= c->out.cap - c->out.len)
		return 0;
	if (c->out_off) {
		nd_buf_consume(&c->out, c->out_off);
		c->out_off = 0;
	}
	return nd_buf_reserve(&c->out, n);
}

/* Encodes f (id and kind already set) onto the output queue. */
static int out_frame(struct nd_client *c, const Noded__Frame *f)
{
	size_t size = nd_frame_size(f);
	uint32_t limit = c->server_max_frame ? c->server_max_frame : UINT32_MAX;
	int r;

	if (size - ND_FRAME_HDR > limit)
		return ND_EFRAMETOOBIG;
	r = out_reserve(c, size);
	if (r)
		return r;
	c->out.len += nd_frame_encode(f, c->out.data + c->out.len);
	return 0;
}

size_t nd_client_output(struct nd_client *c, const uint8_t **data)
{
	*data = c->out.data + c->out_off;
	return c->werr ? 0 : out_queued(c);
}

void nd_client_consume(struct nd_client *c, size_t n)
{
	if (n > out_queued(c))
		n = out_queued(c);
	c->out_off += n;
	if (c->out_off == c->out.len) {
		c->out_off = 0;
		nd_buf_reset(&c->out);
	}
	/* A burst of large requests leaves a big buffer behind: give it back
	 * once it is empty, as the input side does. */
	if (!c->out.len && c->out.cap > IN_KEEP)
		nd_buf_free(&c->out);
}

/* ---- requests ---- */

static bool method_streams(Noded__Frame__BodyCase m)
{
	/* Server streams; add new streaming methods here. */
	return m == NODED__FRAME__BODY_ASSIGN_TASK ||
	       m == NODED__FRAME__BODY_WATCH || m == NODED__FRAME__BODY_RUN;
}

static int64_t start(struct nd_client *c, const Noded__Frame *req,
		     nd_reply_cb cb, void *arg, unsigned flags)
{
	Noded__Frame f;
	struct pend p;
	int r;

	if (c->err)
		return c->err;
	if (!req || req->body_case == NODED__FRAME__BODY__NOT_SET)
		return -EINVAL;
	/* Shallow copy: the caller keeps req and its sub-messages. */
	f = *req;
	f.id = c->next_id;
	f.kind = NODED__FRAME_KIND__REQUEST;
	p.id = f.id;
	p.cb = cb;
	p.arg = arg;
	p.flags = flags | (method_streams(req->body_case) ? P_STREAM : 0);
	r = pend_add(c, &p);
	if (r)
		return r;
	r = out_frame(c, &f);
	if (r) {
		pend_remove(c, pend_find(c, p.id));
		return r;
	}
	c->next_id++;
	return (int64_t)p.id;
}

int64_t nd_client_start(struct nd_client *c, const Noded__Frame *req,
			nd_reply_cb cb, void *arg)
{
	return start(c, req, cb, arg, 0);
}

int nd_client_notify(struct nd_client *c, const Noded__Frame *req)
{
	Noded__Frame f;
	int r;

	if (c->err)
		return c->err;
	if (!req || req->body_case == NODED__FRAME__BODY__NOT_SET)
		return -EINVAL;
	f = *req;
	f.id = c->next_id;
	f.kind = NODED__FRAME_KIND__NOTIFY;
	r = out_frame(c, &f);
	if (!r)
		c->next_id++;
	return r;
}

static void hello_frame(const struct nd_client *c, Noded__Frame *f,
			Noded__HelloRequest *h)
{
	noded__frame__init(f);
	noded__hello_request__init(h);
	h->protocol_version = ND_PROTOCOL_VERSION;
	h->node_name = c->node_name;
	h->role = c->role;
	h->software = (char *)SOFTWARE;
	h->client_nonce.data = (uint8_t *)c->nonce;
	h->client_nonce.len = sizeof(c->nonce);
	f->body_case = NODED__FRAME__BODY_HELLO;
	f->hello = h;
}

int nd_client_hello(struct nd_client *c, nd_reply_cb cb, void *arg)
{
	Noded__HelloRequest h;
	Noded__Frame f;
	int64_t id;

	hello_frame(c, &f, &h);
	id = start(c, &f, cb, arg, P_HELLO);
	return id < 0 ? (int)id : 0;
}

int nd_client_cancel(struct nd_client *c, uint64_t id)
{
	Noded__Frame f;
	struct pend *p;

	if (c->err)
		return c->err;
	p = pend_find(c, id);
	if (!p)
		return -ENOENT;
	if (!(p->flags & P_STREAM))
		return -EINVAL;
	/* The entry stays: the server ends the stream with STREAM_END
	 * (CANCELLED), which reaches the callback with done set. */
	noded__frame__init(&f);
	f.id = id;
	f.kind = NODED__FRAME_KIND__CANCEL;
	return out_frame(c, &f);
}

size_t nd_client_pending(const struct nd_client *c)
{
	return c->npending;
}

/* ---- input ---- */

static void store_hello(struct nd_client *c, const Noded__HelloReply *h)
{
	char *name = strdup(h->node_name ? h->node_name : "");

	/* Out of memory only loses the name, which is informational. */
	if (name) {
		free(c->server_name);
		c->server_name = name;
	}
	c->server_max_frame = h->max_frame ? h->max_frame : ND_MAX_FRAME_DEFAULT;
}

/*
 * The HelloReply arrived: run the token challenge. Holding a token, we
 * trust the peer only once it proved it holds the same one, so a reply
 * that asks for no token (a listener that is not our master, or a
 * downgrade) is refused (ND_EAUTHNOPROOF), as is a proof that does not
 * verify (ND_EAUTHBADPROOF); there is no fall back to no authentication.
 * Otherwise our Auth is queued and takes over the Hello's callback (p), so
 * the caller learns of the Hello only once the challenge is done. Returns
 * 1 when chained, 0 when neither side has a token, or a negative error.
 */
static int auth_chain(struct nd_client *c, const Noded__HelloReply *h,
		      const struct pend *p)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__AuthRequest a = NODED__AUTH_REQUEST__INIT;
	uint8_t proof[ND_PROOF_LEN];
	int64_t id;

	if (!h->auth_required)
		return c->token ? ND_EAUTHNOPROOF : 0;
	if (!c->token)
		return ND_EAUTH;
	if (!nd_auth_check(c->token, c->token_len, "noded-server", c->nonce,
			   sizeof(c->nonce), h->server_nonce.data,
			   h->server_nonce.len, h->server_proof.data,
			   h->server_proof.len))
		return ND_EAUTHBADPROOF;
	if (nd_auth_proof(c->token, c->token_len, "noded-client",
			  h->server_nonce.data, h->server_nonce.len, c->nonce,
			  sizeof(c->nonce), proof))
		return ND_EAUTH;
	a.proof.data = proof;
	a.proof.len = sizeof(proof);
	f.body_case = NODED__FRAME__BODY_AUTH;
	f.auth = &a;
	id = start(c, &f, p->cb, p->arg, p->flags & ~P_HELLO);
	return id < 0 ? (int)id : 1;
}

/* A protocol error: pending calls fail with it, frame NULL. */
static int proto_fail(struct nd_client *c, int err)
{
	fail_all(c, err, err, NULL, NULL, 0);
	return err;
}

/*
 * Decodes one frame body and delivers it. Returns the callbacks run (0 or
 * 1, or all of them for a fatal Error) or a negative error once the client
 * became unusable.
 */
static int dispatch(struct nd_client *c, const uint8_t *body, size_t len)
{
	Noded__Frame *f = nd_frame_decode(body, len, NULL);
	struct pend *slot, p;
	bool done, is_error;
	int status;

	if (!f)
		return proto_fail(c, ND_EBADFRAME);
	is_error = f->body_case == NODED__FRAME__BODY_ERROR;
	if (f->id == 0 && is_error) {
		/* Connection-fatal: the server closes after this frame. */
		fail_all(c, ND_EREMOTE, ND_EREMOTE, f, body, len);
		nd_frame_free(f, NULL);
		return ND_EREMOTE;
	}
	slot = pend_find(c, f->id);
	if (!slot || (f->kind != NODED__FRAME_KIND__REPLY &&
		      f->kind != NODED__FRAME_KIND__STREAM_ITEM &&
		      f->kind != NODED__FRAME_KIND__STREAM_END)) {
		/* Not ours any more (late reply after a timed-out call) or
		 * not a reply at all: nothing waits for it. */
		nd_frame_free(f, NULL);
		return 0;
	}
	done = f->kind != NODED__FRAME_KIND__STREAM_ITEM;
	if (!done && !(slot->flags & P_STREAM)) {
		nd_frame_free(f, NULL);
		return proto_fail(c, ND_EPROTO);
	}
	status = is_error ? ND_EREMOTE : 0;
	/* Copy out before the callback, which may grow the table. */
	p = *slot;
	if (done) {
		pend_remove(c, slot);
	} else if (p.flags & P_CALL) {
		/* nd_client_call() takes the first frame of a stream; the
		 * rest of the stream is consumed without a callback. */
		slot->flags &= ~P_CALL;
		slot->cb = NULL;
		slot->arg = NULL;
	}
	if ((p.flags & P_HELLO) && !status) {
		/* Only a HelloReply answers a Hello: anything else would
		 * skip the challenge. */
		int r = ND_EPROTO;

		if (f->body_case == NODED__FRAME__BODY_HELLO_REPLY) {
			store_hello(c, f->hello_reply);
			r = auth_chain(c, f->hello_reply, &p);
		}
		if (r == 1) {
			nd_frame_free(f, NULL);
			return 0; /* the Auth reply completes the Hello */
		}
		if (r < 0) {
			/* Nothing from this peer may be trusted: the client
			 * is done, and the Hello fails with why. */
			nd_frame_free(f, NULL);
			fail_all(c, r, r, NULL, NULL, 0);
			if (p.flags & P_CALL) {
				struct call_wait *w = p.arg;

				w->done = true;
				w->status = r;
				w->frame = NULL;
			} else {
				run_cb(c, &p, r, NULL, true);
			}
			return r;
		}
	}
	if (p.flags & P_CALL) {
		struct call_wait *w = p.arg;

		w->done = true;
		w->status = status;
		w->frame = f;
		return 1;
	}
	run_cb(c, &p, status, f, done);
	nd_frame_free(f, NULL);
	return 1;
}

/* Room for a frame of n bytes in all (with what c->in holds). */
static int in_reserve(struct nd_client *c, size_t n)
{
	return n <= c->in.len ? 0 : nd_buf_reserve(&c->in, n - c->in.len);
}

static void in_release(struct nd_client *c)
{
	nd_buf_reset(&c->in);
	if (c->in.cap > IN_KEEP)
		nd_buf_free(&c->in);
}

static int feed_eof(struct nd_client *c)
{
	fail_all(c, ND_ECLOSED, -ECONNRESET, NULL, NULL, 0);
	return ND_ECLOSED;
}

/*
 * Frames are decoded straight from data when they are whole there; only a
 * frame split across feeds is copied into c->in, and only up to its end.
 */
int nd_client_feed(struct nd_client *c, const uint8_t *data, size_t len)
{
	int64_t n;
	size_t need, take;
	int runs = 0, r;

	if (c->err)
		return c->err;
	if (c->dispatching)
		return -EDEADLK;
	if (!len)
		return feed_eof(c);

	/* First finish the frame held in c->in. */
	while (c->in.len && len) {
		n = nd_frame_peek(c->in.data, c->in.len, c->max_frame, &need);
		if (!n) {
			/* Complete the header, then judge it at once. */
			take = need - c->in.len < len ? need - c->in.len : len;
			memcpy(c->in.data + c->in.len, data, take);
			c->in.len += take;
			data += take;
			len -= take;
			if (c->in.len < ND_FRAME_HDR)
				break;
			n = nd_frame_peek(c->in.data, c->in.len, c->max_frame,
					  &need);
		}
		if (n < 0)
			return proto_fail(c, (int)n);
		r = in_reserve(c, need);
		if (r)
			return proto_fail(c, r);
		take = need - c->in.len < len ? need - c->in.len : len;
		memcpy(c->in.data + c->in.len, data, take);
		c->in.len += take;
		data += take;
		len -= take;
		if (c->in.len < need)
			break;
		r = dispatch(c, c->in.data + ND_FRAME_HDR, need - ND_FRAME_HDR);
		if (r < 0)
			return r;
		runs += r;
		in_release(c);
	}

	while (len) {
		n = nd_frame_peek(data, len, c->max_frame, &need);
		if (n < 0)
			return proto_fail(c, (int)n);
		if (!n || need > len) {
			/* Keep the partial frame. Its header, if complete,
			 * passed the max_frame check above. */
			r = in_reserve(c, n ? need : ND_FRAME_HDR);
			if (r)
				return proto_fail(c, r);
			memcpy(c->in.data, data, len);
			c->in.len = len;
			break;
		}
		r = dispatch(c, data + ND_FRAME_HDR, need - ND_FRAME_HDR);
		if (r < 0)
			return r;
		runs += r;
		data += need;
		len -= need;
	}
	return runs;
}

/* ---- blocking helpers ---- */

int nd_client_flush(struct nd_client *c)
{
	ssize_t n;

	if (c->err)
		return c->err;
	if (c->werr)
		return c->werr;
	while (out_queued(c)) {
		n = send(c->fd, c->out.data + c->out_off, out_queued(c),
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -EAGAIN;
			/*
			 * The peer may have sent an Error and closed: keep
			 * reading so that frame still reaches its callback;
			 * the read side reports the end. Output is dropped.
			 */
			c->werr = -errno;
			c->out_off = 0;
			nd_buf_reset(&c->out);
			return c->werr;
		}
		nd_client_consume(c, (size_t)n);
	}
	return 0;
}

/* Reads what the socket holds (bounded) and feeds it. */
static int read_some(struct nd_client *c)
{
	uint8_t buf[READ_CHUNK];
	int runs = 0, r, i;
	ssize_t n;

	for (i = 0; i < READS_PER_POLL; i++) {
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* Reset or another socket error: the connection is
			 * gone; report it as closed, as the header says. */
			return feed_eof(c);
		}
		r = nd_client_feed(c, buf, (size_t)n);
		if (r < 0)
			return r;
		runs += r;
		if ((size_t)n < sizeof(buf))
			break;
	}
	return runs;
}

int nd_client_poll(struct nd_client *c, int timeout_ms)
{
	struct pollfd pfd;
	int r;

	if (c->err)
		return c->err;
	if (c->dispatching)
		return -EDEADLK;
	r = nd_client_flush(c);
	if (r && r != -EAGAIN && !c->werr)
		return r;
	pfd.fd = c->fd;
	pfd.events = POLLIN | (out_queued(c) && !c->werr ? POLLOUT : 0);
	pfd.revents = 0;
	r = poll(&pfd, 1, timeout_ms);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	if (!r)
		return 0;
	if (pfd.revents & POLLOUT) {
		r = nd_client_flush(c);
		if (r && r != -EAGAIN && !c->werr)
			return r;
	}
	if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
		return read_some(c);
	return 0;
}

/* Waits for w; on timeout or error the entry for id is dropped, so a late
 * reply is ignored instead of writing to the caller's dead stack frame. */
static int call_wait(struct nd_client *c, uint64_t id, struct call_wait *w,
		     int timeout_ms)
{
	int64_t deadline = (int64_t)nd_mono_ms() + timeout_ms;
	struct pend *p;
	int r = 0, wait;

	while (!w->done) {
		wait = -1;
		if (timeout_ms >= 0) {
			int64_t left = deadline - (int64_t)nd_mono_ms();

			if (left <= 0) {
				r = -ETIMEDOUT;
				break;
			}
			wait = left > 60000 ? 60000 : (int)left;
		}
		r = nd_client_poll(c, wait);
		if (r < 0 && !w->done)
			break;
	}
	if (w->done)
		return w->status;
	p = pend_find(c, id);
	if (p)
		pend_remove(c, p);
	return r;
}

static int call(struct nd_client *c, const Noded__Frame *req,
		Noded__Frame **reply, int timeout_ms, unsigned flags)
{
	struct call_wait w = { 0 };
	int64_t id;
	int r;

	*reply = NULL;
	if (c->dispatching)
		return -EDEADLK;
	id = start(c, req, NULL, &w, flags | P_CALL);
	if (id < 0)
		return (int)id;
	r = call_wait(c, (uint64_t)id, &w, timeout_ms);
	if (r == 0 || r == ND_EREMOTE)
		*reply = w.frame;
	else
		nd_frame_free(w.frame, NULL);
	return r;
}

int nd_client_call(struct nd_client *c, const Noded__Frame *req,
		   Noded__Frame **reply, int timeout_ms)
{
	return call(c, req, reply, timeout_ms, 0);
}

int nd_client_ping(struct nd_client *c, int timeout_ms)
{
	Noded__PingRequest ping = NODED__PING_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *reply;
	int r;

	f.body_case = NODED__FRAME__BODY_PING;
	f.ping = &ping;
	r = nd_client_call(c, &f, &reply, timeout_ms);
	if (!r && reply->body_case != NODED__FRAME__BODY_PONG)
		r = ND_EPROTO;
	nd_frame_free(reply, NULL);
	return r;
}

/* ---- lifecycle ---- */

int nd_client_adopt(struct nd_client **out, int fd,
		    const struct nd_client_opts *opts)
{
	const char *name = opts && opts->node_name ? opts->node_name : "client";
	struct nd_client *c;
	int fl, r = -ENOMEM;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		goto err_close_fd;
	c->node_name = strdup(name);
	if (!c->node_name)
		goto err_free_client;
	/* The blocking helpers rely on nonblocking reads and writes; an
	 * io_uring driver does not mind either way. */
	fl = fd < 0 ? 0 : fcntl(fd, F_GETFL);
	if (fl < 0 || (fd >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
		r = -errno;
		goto err_free_name;
	}
	if (opts && opts->token && opts->token_len) {
		c->token = malloc(opts->token_len);
		if (!c->token)
			goto err_free_name;
		memcpy(c->token, opts->token, opts->token_len);
		c->token_len = opts->token_len;
	}
	if (nd_auth_nonce(c->nonce, sizeof(c->nonce))) {
		r = -EIO;
		free(c->token);
		goto err_free_name;
	}
	c->fd = fd;
	c->role = opts && opts->role ? opts->role : NODED__ROLE__ROLE_CLIENT;
	c->max_frame = opts && opts->max_frame ? opts->max_frame
					       : ND_MAX_FRAME_DEFAULT;
	c->next_id = 1;
	*out = c;
	return 0;

err_free_name:
	free(c->node_name);
err_free_client:
	free(c);
err_close_fd:
	if (fd >= 0)
		close(fd);
	return r;
}

void nd_client_close(struct nd_client *c)
{
	if (!c)
		return;
	fail_all(c, -ECANCELED, -ECANCELED, NULL, NULL, 0);
	if (c->fd >= 0)
		close(c->fd);
	nd_buf_free(&c->out);
	nd_buf_free(&c->in);
	free(c->server_name);
	free(c->node_name);
	if (c->token) {
		OPENSSL_cleanse(c->token, c->token_len);
		free(c->token);
	}
	free(c);
}

int nd_client_fd(const struct nd_client *c)
{
	return c->fd;
}

const char *nd_client_server_name(const struct nd_client *c)
{
	return c->server_name ? c->server_name : "";
}

uint32_t nd_client_server_max_frame(const struct nd_client *c)
{
	return c->server_max_frame;
}

/* Splits "HOST:PORT" (HOST may be "[v6]"); host and port point into buf. */
static int split_addr(const char *addr, char *buf, size_t size, char **host,
		      char **port)
{
	char *colon;

	if (!addr || strlen(addr) >= size)
		return ND_EADDR;
	strcpy(buf, addr);
	colon = strrchr(buf, ':');
	if (!colon || colon == buf || !colon[1])
		return ND_EADDR;
	*colon = '\0';
	*host = buf;
	*port = colon + 1;
	if (buf[0] == '[') {
		size_t n = strlen(buf);

		if (n < 3 || buf[n - 1] != ']')
			return ND_EADDR;
		buf[n - 1] = '\0';
		*host = buf + 1;
	}
	return 0;
}

/* Nonblocking connect bounded by deadline. Returns the fd or an error. */
static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
	struct pollfd pfd;
	socklen_t len = sizeof(int);
	int fd, r, soerr = 0, one = 1;
	int64_t left;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    ai->ai_protocol);
	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			r = -errno;
			goto err_close;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		for (;;) {
			left = deadline - (int64_t)nd_mono_ms();
			if (left <= 0) {
				r = -ETIMEDOUT;
				goto err_close;
			}
			r = poll(&pfd, 1, (int)left);
			if (r > 0)
				break;
			if (r < 0 && errno != EINTR) {
				r = -errno;
				goto err_close;
			}
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
			r = -errno;
			goto err_close;
		}
		if (soerr) {
			r = -soerr;
			goto err_close;
		}
	}
	/* Small request/reply frames: do not let Nagle hold them back. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;

err_close:
	close(fd);
	return r;
}

int nd_client_connect(struct nd_client **out, const char *addr,
		      const struct nd_client_opts *opts)
{
	struct addrinfo hints = { 0 }, *res, *ai;
	Noded__HelloRequest h;
	Noded__Frame f, *reply;
	struct nd_client *c;
	char buf[512], *host, *port;
	int timeout = opts && opts->timeout_ms > 0 ? opts->timeout_ms
						   : DEFAULT_TIMEOUT_MS;
	int64_t deadline = (int64_t)nd_mono_ms() + timeout, left;
	int r, fd = -ECONNREFUSED;

	*out = NULL;
	r = split_addr(addr, buf, sizeof(buf), &host, &port);
	if (r)
		return r;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	r = getaddrinfo(host, port, &hints, &res);
	if (r)
		return r == EAI_AGAIN ? -EAGAIN
		     : r == EAI_MEMORY ? -ENOMEM
		     : r == EAI_SYSTEM ? -errno : ND_EADDR;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_one(ai, deadline);
		if (fd >= 0 || fd == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return fd;

	r = nd_client_adopt(&c, fd, opts);
	if (r)
		return r;
	hello_frame(c, &f, &h);
	left = deadline - (int64_t)nd_mono_ms();
	r = call(c, &f, &reply, left > 0 ? (int)left : 0, P_HELLO);
	/* The master refused our proof (or our Hello for want of one). */
	if (r == ND_EREMOTE && reply &&
	    reply->body_case == NODED__FRAME__BODY_ERROR &&
	    reply->error->code == NODED__ERROR_CODE__UNAUTHENTICATED)
		r = ND_EAUTH;
	if (r)
		goto err_free_reply;
	/* The HelloReply, or the Ack of our Auth when we hold a token. */
	if (reply->body_case != (c->token ? NODED__FRAME__BODY_ACK :
			       NODED__FRAME__BODY_HELLO_REPLY)) {
		r = ND_EPROTO;
		goto err_free_reply;
	}
	nd_frame_free(reply, NULL);
	*out = c;
	return 0;

err_free_reply:
	nd_frame_free(reply, NULL);
	nd_client_close(c);
	return r;
}
