/*
 * The Raft links between masters: libraft's TCP transport (raft_uv_tcp)
 * underneath, and before a connection is handed to libraft, two stages,
 * each when configured:
 *
 * 1. TLS (the master's --tls-cert/--tls-key; link_tls.c): the connector
 *    is the TLS client. With --tls-ca both ends present certificates,
 *    and each must carry the master role of our cluster (mutual TLS).
 *    libraft then reads and writes the plaintext end of a socketpair the
 *    link pumps through TLS.
 * 2. The token (master --token-file): both ends prove they hold it
 *    (HMAC-SHA256 over fresh nonces, as the native protocol's challenge;
 *    the token never crosses the wire), inside the TLS when there is one:
 *
 *   connector -> acceptor   (libraft's own handshake: id, address)
 *   acceptor  -> connector  nonce_a (32 bytes)
 *   connector -> acceptor   nonce_c (32), HMAC(token, "noded-raft-client",
 *                           nonce_a, nonce_c) (32)
 *   acceptor  -> connector  HMAC(token, "noded-raft-server", nonce_c,
 *                           nonce_a) (32)
 *
 * A connection that fails a stage, or does not finish both within
 * AUTH_TIMEOUT_MS, is closed, and logged (raft.auth_refused) at most once a
 * second. Without TLS the links are not encrypted (the proofs carry no
 * secret); libraft's own greeting (the connector's id and address) is in
 * clear either way, before TLS starts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "core/log.h"
#include "core/time.h"
#include "noded/auth.h"
#include "raft/link_tls.h"
#include "raft/transport.h"

#define AUTH_TIMEOUT_MS 5000
#define CLIENT_LABEL "noded-raft-client"
#define SERVER_LABEL "noded-raft-server"

struct auth {
	struct raft_uv_transport inner;  /* raft_uv_tcp */
	uv_loop_t *loop;
	uint8_t *token;               /* NULL: no token stage */
	size_t token_len;
	struct nd_tls *tls_server;    /* NULL: no TLS stage */
	struct nd_tls *tls_client;
	struct nd_raft_links *links;  /* the TLS links, while TLS is on */
	bool inner_closed, links_closed;
	raft_uv_accept_cb accept_cb;
	struct raft_uv_transport *outer;
	raft_uv_transport_close_cb close_cb;
	struct hs *pending;              /* handshakes under way */
	bool closing;
	uint64_t last_log_ms;
};

/* One connection proving itself, either way. */
struct hs {
	struct hs *next, **prev;
	struct auth *a;
	bool accepting;                  /* we accepted it */
	struct nd_raft_link *tl;         /* its TLS handshake, under way:
					  * the link owns the TCP stream */
	uv_stream_t *stream;             /* the stream libraft will get
					  * (TCP, or TLS's plaintext end) */
	uv_timer_t timer;
	uint8_t nonce_a[ND_NONCE_LEN], nonce_c[ND_NONCE_LEN];
	uint8_t in[ND_NONCE_LEN + ND_PROOF_LEN];
	size_t want, got;
	uint8_t out[2][ND_NONCE_LEN + ND_PROOF_LEN];
	uv_write_t wreq[2];
	unsigned nwrites;                /* started (at most 2) */
	unsigned writing;                /* not completed yet */
	bool proven;                     /* the peer proved itself: hand the
					  * stream on once writes are done */
	bool dead;                       /* failed while a write was out */
	bool nonce_read;                 /* connecting: the acceptor's nonce
					  * is in; its proof comes next */
	/* accepting: the peer's libraft identity */
	raft_id id;
	char address[128];
	/* connecting: libraft's request */
	struct raft_uv_connect ireq;
	struct raft_uv_connect *req;
	raft_uv_connect_cb cb;
};

static void refused(struct auth *a, const struct hs *h, const char *why)
{
	uint64_t now = nd_mono_ms();

	if (a->closing || now - a->last_log_ms < 1000)
		return;
	a->last_log_ms = now;
	ND_LOG(ND_LOG_WARN, "raft.auth_refused", ND_U("member", h->id),
	       ND_S("address", h->address), ND_S("err", why),
	       ND_S("msg", "a Raft link that does not prove it is a master's "
		    "(a master's certificate, the masters' token) is closed"));
}

static void free_after_close(uv_handle_t *handle)
{
	free(handle);
}

static void timer_closed(uv_handle_t *handle)
{
	struct hs *h = handle->data;

	free(h);
}

/* The handshake is over: the stream is the caller's (handed on), or
 * closed here (stream non-NULL). */
static void hs_end(struct hs *h, uv_stream_t *close_it)
{
	if (close_it)
		uv_close((uv_handle_t *)close_it, free_after_close);
	*h->prev = h->next;
	if (h->next)
		h->next->prev = h->prev;
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, timer_closed);
}

/* A connect that did not make it: libraft is told, the stream closed. */
static void connect_fail(struct hs *h, int status)
{
	raft_uv_connect_cb cb = h->cb;
	struct raft_uv_connect *req = h->req;

	h->cb = NULL;
	if (h->tl) {
		nd_raft_link_abort(h->tl);
		h->tl = NULL;
	}
	if (h->writing) {
		h->dead = true;
		uv_read_stop(h->stream);
		uv_timer_stop(&h->timer);
	} else {
		hs_end(h, h->stream);
	}
	if (cb)
		cb(req, NULL, status);
}

static void fail(struct hs *h, const char *why)
{
	refused(h->a, h, why);
	if (h->tl) {
		nd_raft_link_abort(h->tl);
		h->tl = NULL;
	}
	if (!h->accepting) {
		raft_uv_connect_cb cb = h->cb;
		struct raft_uv_connect *req = h->req;

		h->cb = NULL;
		if (cb)
			cb(req, NULL, RAFT_NOCONNECTION);
	}
	if (h->writing) {
		/* a write still refers to it: ended by its callback */
		h->dead = true;
		uv_read_stop(h->stream);
		uv_timer_stop(&h->timer);
		return;
	}
	hs_end(h, h->stream);
}

static void on_timeout(uv_timer_t *t)
{
	struct hs *h = t->data;

	if (!h->dead)
		fail(h, h->tl ? "no TLS handshake within 5 s (does every "
		     "master have --tls-cert?)" : "no proof within 5 s");
}

static void alloc_cb(uv_handle_t *handle, size_t size, uv_buf_t *buf)
{
	struct hs *h = handle->data;

	buf->base = (char *)h->in + h->got;
	buf->len = h->want - h->got;
}

/* Proven, and nothing of ours is still being written: the stream is
 * libraft's now (no callback of ours refers to it any more). */
static void hand_over(struct hs *h)
{
	uv_stream_t *s = h->stream;
	struct auth *a = h->a;

	if (!h->proven || h->writing)
		return;
	s->data = NULL;
	if (h->accepting) {
		raft_id id = h->id;
		char address[128];

		memcpy(address, h->address, sizeof(address));
		hs_end(h, NULL);
		a->accept_cb(a->outer, id, address, s);
	} else {
		raft_uv_connect_cb cb = h->cb;
		struct raft_uv_connect *req = h->req;

		hs_end(h, NULL);
		cb(req, s, 0);
	}
}

static void on_written(uv_write_t *w, int status)
{
	struct hs *h = w->data;

	h->writing--;
	if (h->dead) {
		/* failed meanwhile: the last write frees it */
		if (!h->writing)
			hs_end(h, h->stream);
		return;
	}
	if (status) {
		fail(h, "write failed");
		return;
	}
	hand_over(h);
}

static int send_bytes(struct hs *h, const void *p, size_t n)
{
	uv_buf_t b;
	int err;

	if (h->nwrites == 2)
		return UV_EINVAL;
	memcpy(h->out[h->nwrites], p, n);
	b = uv_buf_init((char *)h->out[h->nwrites], (unsigned)n);
	h->wreq[h->nwrites].data = h;
	err = uv_write(&h->wreq[h->nwrites], h->stream, &b, 1, on_written);
	if (!err) {
		h->nwrites++;
		h->writing++;
	}
	return err;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct hs *h = s->data;
	struct auth *a = h->a;

	if (n == 0)
		return;
	if (n < 0) {
		fail(h, n == UV_EOF ? "closed during the proof" :
			uv_strerror((int)n));
		return;
	}
	h->got += (size_t)n;
	if (h->got < h->want)
		return;
	uv_read_stop(s);
	if (h->accepting) {
		uint8_t proof[ND_PROOF_LEN];

		memcpy(h->nonce_c, h->in, ND_NONCE_LEN);
		if (!nd_auth_check(a->token, a->token_len, CLIENT_LABEL,
				   h->nonce_a, ND_NONCE_LEN, h->nonce_c,
				   ND_NONCE_LEN, h->in + ND_NONCE_LEN,
				   ND_PROOF_LEN)) {
			fail(h, !a->tls_server &&
				nd_tls_record_start(h->in[0]) &&
				h->in[1] == 0x03 ?
			     "it speaks TLS on its Raft link: give every "
			     "master the same --tls-cert and --tls-key" :
			     "its proof does not match our token");
			return;
		}
		if (nd_auth_proof(a->token, a->token_len, SERVER_LABEL,
				  h->nonce_c, ND_NONCE_LEN, h->nonce_a,
				  ND_NONCE_LEN, proof) ||
		    send_bytes(h, proof, ND_PROOF_LEN)) {
			fail(h, "cannot answer");
			return;
		}
		h->proven = true; /* handed on once written (on_written) */
		return;
	}
	/* connecting: the acceptor's nonce, then its proof */
	if (!h->nonce_read) {
		uint8_t msg[ND_NONCE_LEN + ND_PROOF_LEN];

		memcpy(h->nonce_a, h->in, ND_NONCE_LEN);
		memcpy(msg, h->nonce_c, ND_NONCE_LEN);
		if (nd_auth_proof(a->token, a->token_len, CLIENT_LABEL,
				  h->nonce_a, ND_NONCE_LEN, h->nonce_c,
				  ND_NONCE_LEN, msg + ND_NONCE_LEN) ||
		    send_bytes(h, msg, sizeof(msg))) {
			fail(h, "cannot answer");
			return;
		}
		h->nonce_read = true;
		h->got = 0;
		h->want = ND_PROOF_LEN;
		uv_read_start(s, alloc_cb, on_read);
		return;
	}
	if (!nd_auth_check(a->token, a->token_len, SERVER_LABEL, h->nonce_c,
			   ND_NONCE_LEN, h->nonce_a, ND_NONCE_LEN, h->in,
			   ND_PROOF_LEN)) {
		fail(h, "the master it reached does not prove it holds our "
		     "token");
		return;
	}
	h->proven = true;
	hand_over(h);
}

static struct hs *hs_new(struct auth *a, uv_stream_t *s, bool accepting)
{
	struct hs *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->a = a;
	h->accepting = accepting;
	h->stream = s;
	uv_timer_init(a->loop, &h->timer);
	h->timer.data = h;
	uv_timer_start(&h->timer, on_timeout, AUTH_TIMEOUT_MS, 0);
	h->next = a->pending;
	h->prev = &a->pending;
	if (a->pending)
		a->pending->prev = &h->next;
	a->pending = h;
	return h;
}

/* ---- the transport's methods ---- */

/* The token stage on h->stream (TCP, or TLS's plaintext end), or the
 * hand-over when there is no token. */
static void start_proof(struct hs *h)
{
	struct auth *a = h->a;

	if (!a->token) {
		h->proven = true;
		hand_over(h);
		return;
	}
	if (h->accepting) {
		h->want = ND_NONCE_LEN + ND_PROOF_LEN;
		if (nd_auth_nonce(h->nonce_a, ND_NONCE_LEN) ||
		    send_bytes(h, h->nonce_a, ND_NONCE_LEN) ||
		    uv_read_start(h->stream, alloc_cb, on_read))
			fail(h, "cannot start the proof");
		return;
	}
	h->want = ND_NONCE_LEN;
	if (nd_auth_nonce(h->nonce_c, ND_NONCE_LEN) ||
	    uv_read_start(h->stream, alloc_cb, on_read))
		fail(h, "cannot start the proof");
}

/* The TLS stage ended: on to the token with the plaintext end. */
static void tls_done(void *arg, uv_stream_t *plain, const char *why)
{
	struct hs *h = arg;

	h->tl = NULL;
	if (!plain) {
		if (h->accepting) {
			fail(h, why);
		} else {
			refused(h->a, h, why);
			connect_fail(h, RAFT_NOCONNECTION);
		}
		return;
	}
	h->stream = plain;
	plain->data = h;
	start_proof(h);
}

/* The stages on a new TCP stream (ours from here). */
static void start_stages(struct hs *h, uv_stream_t *tcp)
{
	struct auth *a = h->a;

	/* raft_uv_tcp leaves Nagle on: an AppendEntries written while the
	 * previous one is unacknowledged waited for the peer's delayed ACK
	 * (40 ms at p99 of 3-master submits) */
	if (tcp->type == UV_TCP)
		uv_tcp_nodelay((uv_tcp_t *)tcp, 1);

	if (a->tls_server) {
		struct nd_tls *tls = h->accepting ? a->tls_server
						  : a->tls_client;

		h->stream = NULL;
		/* the server end checks the peer's role itself; a client
		 * context checks the server's (tls.c) */
		if (nd_raft_link_start(a->links, tls, tcp,
				       h->accepting && nd_tls_verifies(tls),
				       tls_done, h, &h->tl))
			fail(h, "out of memory");
		return;
	}
	h->stream = tcp;
	tcp->data = h;
	start_proof(h);
}

/* ---- the transport's methods ---- */

static void inner_accept(struct raft_uv_transport *inner, raft_id id,
			 const char *address, struct uv_stream_s *stream)
{
	struct auth *a = inner->data;
	struct hs *h;

	if (a->closing || !(h = hs_new(a, NULL, true))) {
		uv_close((uv_handle_t *)stream, free_after_close);
		return;
	}
	h->id = id;
	snprintf(h->address, sizeof(h->address), "%s", address);
	start_stages(h, stream);
}

static void inner_connected(struct raft_uv_connect *ireq,
			    struct uv_stream_s *stream, int status)
{
	struct hs *h = ireq->data;

	if (status || h->a->closing) {
		h->stream = status ? NULL : stream;
		connect_fail(h, status ? status : RAFT_CANCELED);
		return;
	}
	start_stages(h, stream);
}

static int t_init(struct raft_uv_transport *t, raft_id id,
		  const char *address)
{
	struct auth *a = t->impl;

	return a->inner.init(&a->inner, id, address);
}

static int t_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
	struct auth *a = t->impl;

	a->accept_cb = cb;
	return a->inner.listen(&a->inner, inner_accept);
}

static int t_connect(struct raft_uv_transport *t, struct raft_uv_connect *req,
		     raft_id id, const char *address, raft_uv_connect_cb cb)
{
	struct auth *a = t->impl;
	struct hs *h = hs_new(a, NULL, false);
	int err;

	if (!h)
		return RAFT_NOMEM;
	h->id = id;
	snprintf(h->address, sizeof(h->address), "%s", address);
	h->req = req;
	h->cb = cb;
	h->ireq.data = h;
	err = a->inner.connect(&a->inner, &h->ireq, id, address,
			       inner_connected);
	if (err) {
		/* not started: no callback will come */
		hs_end(h, NULL);
		return err;
	}
	return 0;
}

/* The transport is closed once the TCP one and every TLS link are. */
static void maybe_closed(struct auth *a)
{
	if (a->inner_closed && a->links_closed)
		a->close_cb(a->outer);
}

static void inner_closed(struct raft_uv_transport *inner)
{
	struct auth *a = inner->data;

	a->inner_closed = true;
	maybe_closed(a);
}

static void links_closed(void *arg)
{
	struct auth *a = arg;

	a->links_closed = true;
	maybe_closed(a);
}

static void t_close(struct raft_uv_transport *t,
		    raft_uv_transport_close_cb cb)
{
	struct auth *a = t->impl;

	a->closing = true;
	a->close_cb = cb;
	/* handshakes under way end; libraft's connects are told so (one
	 * still connecting underneath is cancelled by the inner close,
	 * which calls inner_connected) */
	for (struct hs *h = a->pending, *next; h; h = next) {
		next = h->next;
		if (h->dead)
			continue;
		if (h->accepting)
			fail(h, "closing");
		else if (h->stream || h->tl)
			connect_fail(h, RAFT_CANCELED);
	}
	/* the links libraft had (it closed its ends already) */
	if (a->links)
		nd_raft_links_close(a->links, links_closed, a);
	else
		a->links_closed = true;
	a->inner.close(&a->inner, inner_closed);
}

int nd_raft_transport_init(struct raft_uv_transport *t, uv_loop_t *loop,
			   const struct nd_raft_link_auth *auth)
{
	struct auth *a = calloc(1, sizeof(*a));
	int err;

	if (!a)
		return RAFT_NOMEM;
	if (auth->token) {
		a->token = malloc(auth->token_len);
		if (!a->token)
			goto err_free_auth;
		memcpy(a->token, auth->token, auth->token_len);
		a->token_len = auth->token_len;
	}
	if (auth->tls_server) {
		if (nd_raft_links_new(&a->links, loop))
			goto err_free_token;
		a->tls_server = auth->tls_server;
		a->tls_client = auth->tls_client;
	}
	a->loop = loop;
	a->outer = t;
	a->inner.version = 1;
	err = raft_uv_tcp_init(&a->inner, loop);
	if (err) {
		nd_raft_links_free(a->links);
		free(a->token);
		free(a);
		return err;
	}
	a->inner.data = a;
	memset(t, 0, sizeof(*t));
	t->version = 1;
	t->impl = a;
	t->init = t_init;
	t->listen = t_listen;
	t->connect = t_connect;
	t->close = t_close;
	return 0;

err_free_token:
	free(a->token);
err_free_auth:
	free(a);
	return RAFT_NOMEM;
}

void nd_raft_transport_close(struct raft_uv_transport *t)
{
	struct auth *a = t->impl;

	if (!a)
		return;
	raft_uv_tcp_close(&a->inner);
	if (a->links)
		nd_raft_links_free(a->links);
	if (a->token) {
		memset(a->token, 0, a->token_len);
		free(a->token);
	}
	free(a);
	t->impl = NULL;
}
