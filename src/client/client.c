/*
 * noded client library (include/noded/client.h).
 *
 * The core is sans-I/O: requests are encoded at once into an output buffer
 * (c->out), bytes read from the socket go through nd_client_feed(), which
 * reassembles frames (c->in holds at most one partial frame), decodes them
 * with the protobuf-c default allocator and runs the callback registered for
 * the frame's id in an open-addressed table (c->slots). The blocking helpers
 * (connect, call, poll, flush; in client_io.c) are thin poll(2) +
 * nonblocking read/write loops over that core, so an event loop (the
 * benchmark's io_uring driver) and the blocking API share every line of
 * protocol code.
 *
 * Failure model: the first fatal condition (connection lost, bad bytes from
 * the server, a connection-fatal Error with id 0, close) is stored in c->err;
 * every pending call is then failed exactly once and every later action
 * returns c->err. Callbacks may call nd_client_start(), nd_client_cancel()
 * and nd_client_flush(); they must not call nd_client_close() nor the waiting
 * functions (nd_client_call/ping/poll/feed return -EDEADLK when they try).
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"

/* ---- pending table ---- */

/*
 * Ids are allocated sequentially, so the low bits are already a perfect
 * hash: the requests in flight land in consecutive slots without collisions.
 */
static size_t slot_of(const struct nd_client *c, uint64_t id)
{
	return (size_t)id & (c->cap - 1);
}

struct pend *nd__client_pend_find(struct nd_client *c, uint64_t id)
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
void nd__client_pend_remove(struct nd_client *c, struct pend *p)
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
int nd__client_fail_all(struct nd_client *c, int err, int status,
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

size_t nd__client_out_queued(const struct nd_client *c)
{
	return c->out.len - c->out_off;
}

/* Makes room for n more bytes at c->out.data + c->out.len. */
static int out_reserve(struct nd_client *c, size_t n)
{
	size_t queued = nd__client_out_queued(c);

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
	return c->werr ? 0 : nd__client_out_queued(c);
}

void nd_client_consume(struct nd_client *c, size_t n)
{
	if (n > nd__client_out_queued(c))
		n = nd__client_out_queued(c);
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
	       m == NODED__FRAME__BODY_WATCH || m == NODED__FRAME__BODY_RUN ||
	       m == NODED__FRAME__BODY_SNAPSHOT;
}

/* *f = req as a frame of kind with the next id: a shallow copy, the caller
 * keeps req and its sub-messages. 0, c->err, or -EINVAL (no body). */
static int frame_from(struct nd_client *c, const Noded__Frame *req,
		      Noded__FrameKind kind, Noded__Frame *f)
{
	if (c->err)
		return c->err;
	if (!req || req->body_case == NODED__FRAME__BODY__NOT_SET)
		return -EINVAL;
	*f = *req;
	f->id = c->next_id;
	f->kind = kind;
	return 0;
}

int64_t nd__client_start(struct nd_client *c, const Noded__Frame *req,
			 nd_reply_cb cb, void *arg, unsigned flags)
{
	Noded__Frame f;
	struct pend p;
	int r;

	r = frame_from(c, req, NODED__FRAME_KIND__REQUEST, &f);
	if (r)
		return r;
	p.id = f.id;
	p.cb = cb;
	p.arg = arg;
	p.flags = flags | (method_streams(req->body_case) ? P_STREAM : 0);
	r = pend_add(c, &p);
	if (r)
		return r;
	r = out_frame(c, &f);
	if (r) {
		nd__client_pend_remove(c, nd__client_pend_find(c, p.id));
		return r;
	}
	c->next_id++;
	return (int64_t)p.id;
}

int64_t nd_client_start(struct nd_client *c, const Noded__Frame *req,
			nd_reply_cb cb, void *arg)
{
	return nd__client_start(c, req, cb, arg, 0);
}

int nd_client_notify(struct nd_client *c, const Noded__Frame *req)
{
	Noded__Frame f;
	int r;

	r = frame_from(c, req, NODED__FRAME_KIND__NOTIFY, &f);
	if (!r)
		r = out_frame(c, &f);
	if (!r)
		c->next_id++;
	return r;
}

void nd__client_hello_frame(const struct nd_client *c, Noded__Frame *f,
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

	nd__client_hello_frame(c, &f, &h);
	id = nd__client_start(c, &f, cb, arg, P_HELLO);
	return id < 0 ? (int)id : 0;
}

int nd_client_cancel(struct nd_client *c, uint64_t id)
{
	Noded__Frame f;
	struct pend *p;

	if (c->err)
		return c->err;
	p = nd__client_pend_find(c, id);
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
	id = nd__client_start(c, &f, p->cb, p->arg, p->flags & ~P_HELLO);
	return id < 0 ? (int)id : 1;
}

/* A protocol error: pending calls fail with it, frame NULL. */
static int proto_fail(struct nd_client *c, int err)
{
	nd__client_fail_all(c, err, err, NULL, NULL, 0);
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
		nd__client_fail_all(c, ND_EREMOTE, ND_EREMOTE, f, body, len);
		nd_frame_free(f, NULL);
		return ND_EREMOTE;
	}
	slot = nd__client_pend_find(c, f->id);
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
		nd__client_pend_remove(c, slot);
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
			nd__client_fail_all(c, r, r, NULL, NULL, 0);
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

int nd__client_feed_eof(struct nd_client *c)
{
	nd__client_fail_all(c, ND_ECLOSED, -ECONNRESET, NULL, NULL, 0);
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
		return nd__client_feed_eof(c);

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
