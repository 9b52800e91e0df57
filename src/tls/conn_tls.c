/*
 * TLS under a transport connection (core/conn.h): OpenSSL over a BIO of
 * ours that reads the ciphertext straight from the receive buffer the
 * shard's ring filled and writes ciphertext into a buffer the send path
 * takes as it takes plaintext output. The protocol above sees plaintext
 * only and does not know TLS is there, except for the peer's role
 * (nd_conn_tls_peer).
 *
 * Input: each received buffer is offered to OpenSSL (handshake, then
 * SSL_read until it wants more); each decrypted run goes to the
 * connection's usual input path (nd__conn_input), so kept input, its
 * limits and backpressure are those of plaintext. OpenSSL keeps at most
 * one partial record itself.
 *
 * Record buffers: OpenSSL's read and write buffers (about 17 KiB each)
 * stay with a connection while it is busy; one that has not sent or
 * received for TLS_IDLE_MS gives them back (SSL_free_buffers, from the
 * shard's tick), so idle connections hold none, as plaintext ones hold
 * no receive buffer. (SSL_MODE_RELEASE_BUFFERS did it after every
 * record: a malloc and a free of each buffer per request, 4.5% of the
 * master's instructions per TLS ping at C=50, D=1.) A connection heard
 * from after TLS_IDLE_MS of silence gives them back as soon as its input
 * is read: a worker's heartbeat every second then holds them for no time
 * rather than half of it. shard->tls_held lists the connections that may
 * hold them, by last use. Reads ahead:
 * OpenSSL takes all the ciphertext offered in one read of our BIO.
 *
 * Output: the protocol queues plaintext in c->out as ever; when the shard
 * starts a send, the plaintext is encrypted into t->ct, which becomes
 * c->tx. Queued output is the plaintext not yet encrypted plus the
 * ciphertext not yet sent (nd__conn_queued), so max_output bounds both.
 * Plaintext waits in c->out until the handshake is done.
 *
 * Nothing here blocks: a handshake advances only when bytes arrive, and
 * a peer that never finishes one is closed by the protocol's handshake
 * deadline (or the idle timeout), costing one SSL until then.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "core/conn.h"
#include "core/conn_int.h"
#include "core/log.h"
#include "tls/conn_tls.h"

#define TLS_CONN_BYTES (32u << 10)
/* An SSL's two record buffers, as freed memory to give back. */
#define TLS_BUF_BYTES (34u << 10)
/* Idle this long, a connection gives its record buffers back: below a
 * worker's heartbeat interval (1 s), so a fleet of idle workers holds
 * none between heartbeats (a malloc and a free of each a second is
 * nothing); above the gaps of a connection in use. Checked each tick
 * (250 ms). */
#define TLS_IDLE_MS 500
/* The largest record: a 5-byte header and 2^14 + 256 bytes (RFC 8446
 * 5.2: TLSCiphertext). */
#define FIRST_MAX (5 + 16384 + 256)

struct nd_tls_conn {
	SSL *ssl;
	const uint8_t *in_p;          /* ciphertext offered now */
	size_t in_n;
	struct nd_buf ct;             /* ciphertext to send */
	bool done, failed, oom, sniffed, notified;
	struct nd_list held;          /* shard->tls_held, while ssl may hold
				       * record buffers */
	uint64_t used_ms;             /* last input or output */
	struct nd_tls *tls;           /* the context, until ssl is made */
	struct nd_buf first;          /* a server's first record, until whole */
	enum nd_tls_role role;
	char name[ND_TLS_NAME_MAX];
	char peer[64];                /* "HOST:PORT", for messages */
};

static BIO_METHOD *bio_meth;
static pthread_once_t meth_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *p, int n)
{
	struct nd_conn *c = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (n <= 0)
		return 0;
	if (nd_buf_append(&c->tls->ct, p, (size_t)n)) {
		c->tls->oom = true;
		return -1;
	}
	return n;
}

static int bio_read(BIO *b, char *p, int n)
{
	struct nd_tls_conn *t = ((struct nd_conn *)BIO_get_data(b))->tls;
	size_t m;

	BIO_clear_retry_flags(b);
	if (!t->in_n) {
		BIO_set_retry_read(b);
		return -1;
	}
	m = t->in_n < (size_t)n ? t->in_n : (size_t)n;
	memcpy(p, t->in_p, m);
	t->in_p += m;
	t->in_n -= m;
	return (int)m;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void make_meth(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "noded conn");

	if (m && BIO_meth_set_write(m, bio_write) &&
	    BIO_meth_set_read(m, bio_read) &&
	    BIO_meth_set_ctrl(m, bio_ctrl) &&
	    BIO_meth_set_create(m, bio_create))
		bio_meth = m;
	else
		BIO_meth_free(m);
}

/* ssl was used now (it may hold record buffers): c goes to the end of
 * the shard's tls_held, once per now_ms. */
static void used(struct nd_conn *c)
{
	struct nd_tls_conn *t = c->tls;

	if (t->used_ms == c->shard->now_ms && nd_list_linked(&t->held))
		return;
	t->used_ms = c->shard->now_ms;
	nd_list_move_tail(&c->shard->tls_held, &t->held);
}

void nd__tls_sweep(struct nd_shard *s)
{
	while (!nd_list_empty(&s->tls_held)) {
		struct nd_tls_conn *t = nd_container_of(s->tls_held.next,
							struct nd_tls_conn,
							held);

		if (s->now_ms - t->used_ms < TLS_IDLE_MS)
			break; /* by last use: the rest are younger */
		nd_list_del(&t->held);
		/* Refused while a record is half read or not yet written
		 * out: then the connection is not idle, and its next input
		 * or output lists it again. */
		if (t->ssl && SSL_free_buffers(t->ssl))
			s->freed_bytes += TLS_BUF_BYTES;
	}
}

/* The first record's bytes are handed over: their budget goes back. */
static void free_first(struct nd_conn *c)
{
	struct nd_tls_conn *t = c->tls;

	nd__conn_budget_give(c, t->first.cap);
	nd_buf_free(&t->first);
}

/* The SSL of c, on our BIO. 0 or -ENOMEM. */
static int make_ssl(struct nd_conn *c)
{
	struct nd_tls_conn *t = c->tls;
	BIO *b;

	t->ssl = nd_tls_new_ssl(t->tls);
	b = t->ssl ? BIO_new(bio_meth) : NULL;
	if (!b) {
		SSL_free(t->ssl);
		t->ssl = NULL;
		ERR_clear_error();
		return -ENOMEM;
	}
	BIO_set_data(b, c);
	SSL_set_bio(t->ssl, b, b);
	/* One read of our BIO takes all the ciphertext offered, not a
	 * record's header and then its body: fewer calls per record.
	 * (What it took and did not decrypt yet is SSL_has_pending.) */
	SSL_set_read_ahead(t->ssl, 1);
	return 0;
}

/*
 * A server makes its SSL only once the client's first record (its
 * ClientHello) is whole: a peer that sends part of one, or nothing, holds
 * the bytes it sent and no more, not OpenSSL's state and buffers (tens of
 * KiB). A client makes it at once: it speaks first.
 */
int nd__tls_attach(struct nd_conn *c, struct nd_tls *tls)
{
	struct nd_tls_conn *t;

	pthread_once(&meth_once, make_meth);
	if (!bio_meth)
		return -ENOMEM;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->tls = tls;
	c->tls = t;
	if (!nd_tls_is_server(tls) && make_ssl(c)) {
		free(t);
		c->tls = NULL;
		return -ENOMEM;
	}
	return 0;
}

void nd__tls_free(struct nd_conn *c)
{
	struct nd_tls_conn *t = c->tls;

	if (!t)
		return;
	/* OpenSSL's memory for a connection (the SSL, its handshake and
	 * record buffers: tens of KiB while a handshake is under way) counts
	 * towards giving freed memory back, as big buffers do. */
	if (t->ssl)
		c->shard->freed_bytes += TLS_CONN_BYTES;
	nd_list_del(&t->held);
	SSL_free(t->ssl);
	free_first(c);
	nd__conn_note_freed(c->shard, t->ct.cap);
	nd_buf_free(&t->ct);
	free(t);
	c->tls = NULL;
}

size_t nd__tls_queued(const struct nd_conn *c)
{
	return c->tls->ct.len;
}

bool nd__tls_ready(const struct nd_conn *c)
{
	return c->tls->done && !c->tls->failed;
}

/* The handshake or a record failed: say why (rate-limited per peer), drop
 * the plaintext that can no longer go, send OpenSSL's alert, close. */
static void fail(struct nd_conn *c, const char *what)
{
	struct nd_tls_conn *t = c->tls;
	uint64_t suppressed, others;
	char why[512];

	t->failed = true;
	nd_tls_why(t->ssl, why, sizeof(why));
	if (!t->peer[0])
		nd_conn_peer_name(c, t->peer, sizeof(t->peer));
	if (nd_log_on(ND_LOG_WARN) &&
	    nd_log_limit(t->peer, c->shard->now_ms, &suppressed, &others))
		ND_LOG(ND_LOG_WARN, "tls.failed", ND_S("peer", t->peer),
		       ND_S("stage", what), ND_S("err", why),
		       ND_U("suppressed", suppressed),
		       ND_U("suppressed_others", others),
		       ND_S("msg", "TLS failed: connection closed"));
	nd_buf_reset(&c->out);
	nd_conn_close(c, true);
}

/* Plaintext where TLS was expected: the protocol answers in plaintext
 * (ops->wrong_transport) and the connection closes. */
static void plaintext_peer(struct nd_conn *c)
{
	char peer[64];

	nd_conn_peer_name(c, peer, sizeof(peer));
	ND_LOG(ND_LOG_INFO, "tls.plaintext_peer", ND_S("peer", peer),
	       ND_S("msg", "plaintext on a TLS port: connection closed"));
	nd__tls_free(c);
	nd_buf_reset(&c->out);
	if (c->ops->wrong_transport)
		c->ops->wrong_transport(c, true);
	nd_conn_close(c, true);
}

static void handshake_done(struct nd_conn *c)
{
	struct nd_tls_conn *t = c->tls;

	t->done = true;
	t->role = nd_tls_peer_role(t->ssl, t->name, sizeof(t->name));
	if (nd_log_on(ND_LOG_DEBUG)) {
		char peer[64];

		nd_conn_peer_name(c, peer, sizeof(peer));
		ND_LOG(ND_LOG_DEBUG, "tls.established", ND_S("peer", peer),
		       ND_S("role", nd_tls_role_name(t->role)),
		       ND_S("name", t->name));
	}
}

/* Not a record a client starts with: said, and c closed. */
static void bad_first(struct nd_conn *c, const char *why)
{
	struct nd_tls_conn *t = c->tls;
	uint64_t suppressed, others;

	t->failed = true;
	nd_conn_peer_name(c, t->peer, sizeof(t->peer));
	if (nd_log_on(ND_LOG_WARN) &&
	    nd_log_limit(t->peer, c->shard->now_ms, &suppressed, &others))
		ND_LOG(ND_LOG_WARN, "tls.failed", ND_S("peer", t->peer),
		       ND_S("stage", "handshake"), ND_S("err", why),
		       ND_U("suppressed", suppressed),
		       ND_U("suppressed_others", others),
		       ND_S("msg", "TLS failed: connection closed"));
	nd_buf_reset(&c->out);
	nd_conn_close(c, true);
}

/*
 * A server's input before its SSL exists: keeps p[0..n) until the first
 * record is whole (*p, *n then name all the bytes kept), or refuses.
 * true when the SSL is made and the bytes are to go to it.
 */
static bool first_record(struct nd_conn *c, const uint8_t **p, size_t *n)
{
	struct nd_tls_conn *t = c->tls;
	size_t need, cap;

	if (!*n)
		return false;
	/* A client's first byte starts a handshake record. */
	if (!t->sniffed) {
		t->sniffed = true;
		if ((*p)[0] != 0x16) {
			plaintext_peer(c);
			return false;
		}
	}
	/* kept like any partial input: within the server's budget */
	need = t->first.len + *n;
	if (need > FIRST_MAX + c->shard->buf_size) {
		bad_first(c, "the first record is longer than TLS allows");
		return false;
	}
	if (need > t->first.cap) {
		cap = nd_buf_grow_cap(t->first.cap, need, 512);
		if (!nd__conn_budget_take(c, cap - t->first.cap)) {
			bad_first(c, "the server's input budget is used up "
				  "(--input-budget)");
			return false;
		}
		if (nd_buf_resize(&t->first, cap)) {
			nd__conn_budget_give(c, cap - t->first.cap);
			bad_first(c, "out of memory for the first record");
			return false;
		}
	}
	memcpy(t->first.data + t->first.len, *p, *n);
	t->first.len = need;
	if (t->first.len < 5)
		return false;
	need = 5 + ((size_t)t->first.data[3] << 8 | t->first.data[4]);
	if (need > FIRST_MAX) {
		bad_first(c, "the first record is longer than TLS allows");
		return false;
	}
	if (t->first.len < need)
		return false;
	if (make_ssl(c)) {
		bad_first(c, "out of memory for the handshake");
		return false;
	}
	*p = t->first.data;
	*n = t->first.len;
	return true;
}

void nd__tls_input(struct nd_conn *c, const uint8_t *p, size_t n)
{
	struct nd_tls_conn *t = c->tls;
	uint8_t buf[16384];
	int r, err;
	/* heard from after a silence (a worker's heartbeat): likely silent
	 * as long again, so its buffers go back now, not half a second on */
	bool sparse = t->done && c->shard->now_ms - t->used_ms >= TLS_IDLE_MS;

	if (t->failed)
		return;
	if (!t->ssl && !first_record(c, &p, &n))
		return;
	/* the peer's address while it is there, for a failure later */
	if (!t->done && !t->peer[0] && n)
		nd_conn_peer_name(c, t->peer, sizeof(t->peer));
	t->in_p = p;
	t->in_n = n;
	used(c);
	if (!t->done) {
		r = SSL_do_handshake(t->ssl);
		if (r == 1) {
			handshake_done(c);
			if (c->out.len)
				nd_conn_commit(c, 0); /* what waited for it */
		} else {
			err = SSL_get_error(t->ssl, r);
			if (err != SSL_ERROR_WANT_READ || t->oom) {
				fail(c, "handshake");
				goto out;
			}
		}
	}
	while (t->done && !(c->flags & (ND_CONN_CLOSING | ND_CONN_DEAD))) {
		r = SSL_read(t->ssl, buf, sizeof(buf));
		if (r > 0) {
			nd__conn_input(c, buf, (size_t)r);
			/* all taken and no record begun: another SSL_read
			 * would only say it wants more */
			if (!t->in_n && !SSL_has_pending(t->ssl))
				break;
			continue;
		}
		err = SSL_get_error(t->ssl, r);
		if (err == SSL_ERROR_WANT_READ && !t->oom)
			break;
		if (err == SSL_ERROR_ZERO_RETURN) { /* close_notify */
			nd_conn_close(c, true);
			break;
		}
		fail(c, "record");
		break;
	}
out:
	t->in_p = NULL;
	t->in_n = 0;
	if (c->tls && t->first.cap)
		free_first(c);
	if (t->ct.len && !(c->flags & ND_CONN_DEAD))
		nd_conn_commit(c, 0);
	/* (refused while a record is half read or a reply not yet sent:
	 * the sweep then does it) */
	if (sparse && c->tls && !(c->flags & ND_CONN_DEAD) && !c->out.len &&
	    SSL_free_buffers(t->ssl)) {
		nd_list_del(&t->held);
		c->shard->freed_bytes += TLS_BUF_BYTES;
	}
}

struct nd_buf *nd__tls_out(struct nd_conn *c)
{
	struct nd_tls_conn *t = c->tls;
	size_t off = 0;
	int r;

	if (t->done && !t->failed) {
		if (c->out.len)
			used(c);
		while (off < c->out.len) {
			size_t n = c->out.len - off;

			r = SSL_write(t->ssl, c->out.data + off,
				      n > (1u << 30) ? 1 << 30 : (int)n);
			if (r <= 0) {
				fail(c, "write");
				return &t->ct;
			}
			off += (size_t)r;
		}
		nd_buf_reset(&c->out);
		if (c->out.cap > OUT_KEEP) {
			nd__conn_note_freed(c->shard, c->out.cap);
			nd_buf_free(&c->out);
		}
	}
	return &t->ct;
}

bool nd__tls_close_notify(struct nd_conn *c)
{
	struct nd_tls_conn *t = c->tls;

	if (!t->done || t->failed || t->notified)
		return false;
	t->notified = true;
	SSL_shutdown(t->ssl); /* our close_notify: into t->ct */
	ERR_clear_error();
	return t->ct.len > 0;
}

void nd__tls_closing(struct nd_conn *c)
{
	/* Plaintext queued before the handshake ended can never go. */
	if (!c->tls->done || c->tls->failed)
		nd_buf_reset(&c->out);
}

enum nd_tls_role nd_conn_tls_peer(const struct nd_conn *c, const char **name)
{
	if (name)
		*name = c->tls ? c->tls->name : "";
	return c->tls ? c->tls->role : ND_TLS_ROLE_NONE;
}

bool nd_conn_is_tls(const struct nd_conn *c)
{
	return c->tls != NULL;
}
