/*
 * TLS on a Raft link (see link_tls.h): a TCP stream, an SSL over two
 * memory BIOs, and a socketpair whose one end libraft gets.
 *
 * The life of a link:
 *   HANDSHAKE  ciphertext from tcp feeds SSL_do_handshake; its output is
 *              written to tcp. The server end then checks the peer's
 *              role. Done: the socketpair is made, cb gets the plain end.
 *   PUMP       tcp -> SSL_read -> our end (libraft reads the plain end);
 *              our end -> SSL_write -> tcp.
 *   END        any EOF or error: every handle of ours is closed (pending
 *              writes are cancelled by libuv), the SSL freed, the link
 *              freed once the last handle's close callback ran. libraft
 *              sees EOF on the plain end and drops its side.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <raft.h>

#include "raft/link_tls.h"

/* Bytes waiting to be written on one side before reading the other side
 * stops (an InstallSnapshot is written by libraft in one go). */
#define LINK_QUEUE_MAX (4u << 20)
#define LINK_READ 16384

struct nd_raft_links {
	uv_loop_t *loop;
	struct nd_raft_link *head;
	bool closing;
	void (*done)(void *);
	void *done_arg;
	uv_idle_t idle;               /* calls done from the loop */
	bool idle_open;
};

struct nd_raft_link {
	struct nd_raft_link *next, **prev;
	struct nd_raft_links *set;
	SSL *ssl;
	BIO *rbio, *wbio;             /* ciphertext in, out (SSL owns both) */
	uv_stream_t *tcp;
	uv_pipe_t ours;               /* our end of the socketpair */
	uv_pipe_t *plain;             /* libraft's end, until handed on */
	bool ours_open;
	bool handshaking;
	bool ended;
	bool need_master;
	bool tcp_paused, ours_paused; /* reading stopped: the other side's
				       * writes are queued past the max */
	unsigned handles;             /* open handles of ours */
	nd_raft_link_cb cb;
	void *arg;
	char why[256];
	char buf[LINK_READ];          /* one read at a time, either side */
};

struct wreq {
	uv_write_t req;
	struct nd_raft_link *l;
	char data[];
};

static void maybe_done(struct nd_raft_links *set);

static void link_free(struct nd_raft_link *l)
{
	struct nd_raft_links *set = l->set;

	*l->prev = l->next;
	if (l->next)
		l->next->prev = l->prev;
	SSL_free(l->ssl);
	free(l);
	maybe_done(set);
}

static void handle_closed(uv_handle_t *h)
{
	struct nd_raft_link *l = h->data;

	if (h != (uv_handle_t *)&l->ours)
		raft_free(h);
	if (!--l->handles)
		link_free(l);
}

static void close_handle(struct nd_raft_link *l, uv_handle_t *h)
{
	h->data = l;
	uv_close(h, handle_closed);
}

/* Ends l: everything of ours closes. why: for a handshake's cb. */
static void link_end(struct nd_raft_link *l, const char *why, bool tell)
{
	nd_raft_link_cb cb = l->cb;

	if (l->ended)
		return;
	l->ended = true;
	l->cb = NULL;
	if (tell && cb && l->handshaking)
		cb(l->arg, NULL, why);
	close_handle(l, (uv_handle_t *)l->tcp);
	l->tcp = NULL;
	if (l->ours_open)
		close_handle(l, (uv_handle_t *)&l->ours);
	if (l->plain) {
		close_handle(l, (uv_handle_t *)l->plain);
		l->plain = NULL;
	}
}

static void fail_ssl(struct nd_raft_link *l, const char *what)
{
	char why[200];

	nd_tls_why(l->ssl, why, sizeof(why));
	snprintf(l->why, sizeof(l->why), "%s: %s", what, why);
	link_end(l, l->why, true);
}

static void resume(struct nd_raft_link *l);

static void on_written(uv_write_t *w, int status)
{
	struct wreq *r = (struct wreq *)w;
	struct nd_raft_link *l = r->l;

	free(r);
	if (l->ended)
		return;
	if (status) {
		link_end(l, uv_strerror(status), true);
		return;
	}
	resume(l);
}

/* Writes n bytes of p to s (copied). 0, or ends the link and -1. */
static int write_to(struct nd_raft_link *l, uv_stream_t *s, const void *p,
		    size_t n)
{
	struct wreq *r = malloc(sizeof(*r) + n);
	uv_buf_t b;
	int err;

	if (!r) {
		link_end(l, "out of memory", true);
		return -1;
	}
	memcpy(r->data, p, n);
	r->l = l;
	b = uv_buf_init(r->data, (unsigned)n);
	err = uv_write(&r->req, s, &b, 1, on_written);
	if (err) {
		free(r);
		link_end(l, uv_strerror(err), true);
		return -1;
	}
	return 0;
}

/* What OpenSSL wrote goes to tcp. 0 or -1 (ended). */
static int flush_tcp(struct nd_raft_link *l)
{
	char *p;
	long n = BIO_get_mem_data(l->wbio, &p);
	int r;

	if (n <= 0)
		return 0;
	r = write_to(l, l->tcp, p, (size_t)n);
	if (!l->ended)
		(void)BIO_reset(l->wbio);
	return r;
}

static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_ours_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	struct nd_raft_link *l = h->data;

	(void)size;
	buf->base = l->buf;
	buf->len = sizeof(l->buf);
}

/* Stops reading a side whose output side is queued past the max, and
 * starts it again once below half of it. */
static void resume(struct nd_raft_link *l)
{
	if (l->tcp_paused && l->ours_open &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&l->ours) <
		    LINK_QUEUE_MAX / 2) {
		l->tcp_paused = false;
		if (uv_read_start(l->tcp, alloc_cb, on_tcp_read)) {
			link_end(l, "cannot read", true);
			return;
		}
	}
	if (l->ours_paused &&
	    uv_stream_get_write_queue_size(l->tcp) < LINK_QUEUE_MAX / 2) {
		l->ours_paused = false;
		if (uv_read_start((uv_stream_t *)&l->ours, alloc_cb,
				  on_ours_read))
			link_end(l, "cannot read", true);
	}
}

/* Plaintext from the peer: everything SSL can decrypt goes to our end. */
static void pump_in(struct nd_raft_link *l)
{
	char out[LINK_READ];

	for (;;) {
		size_t n;

		if (SSL_read_ex(l->ssl, out, sizeof(out), &n) == 1) {
			if (write_to(l, (uv_stream_t *)&l->ours, out, n))
				return;
			continue;
		}
		switch (SSL_get_error(l->ssl, 0)) {
		case SSL_ERROR_WANT_READ:
			break;
		case SSL_ERROR_ZERO_RETURN:
			link_end(l, "closed", true);
			return;
		default:
			fail_ssl(l, "TLS");
			return;
		}
		break;
	}
	/* a key update's answer, tickets' acks: whatever SSL said */
	if (flush_tcp(l))
		return;
	if (uv_stream_get_write_queue_size((uv_stream_t *)&l->ours) >=
	    LINK_QUEUE_MAX && !l->tcp_paused) {
		l->tcp_paused = true;
		uv_read_stop(l->tcp);
	}
}

/* The handshake is done: the peer's role, then the socketpair. */
static void established(struct nd_raft_link *l)
{
	int sv[2];
	nd_raft_link_cb cb = l->cb;

	if (l->need_master) {
		char name[ND_TLS_NAME_MAX];
		enum nd_tls_role role = nd_tls_peer_role(l->ssl, name,
							 sizeof(name));

		if (role != ND_TLS_ROLE_MASTER) {
			snprintf(l->why, sizeof(l->why), "its certificate is "
				 "a %s's, not a master's",
				 nd_tls_role_name(role));
			link_end(l, l->why, true);
			return;
		}
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		link_end(l, strerror(errno), true);
		return;
	}
	l->plain = raft_malloc(sizeof(*l->plain));
	if (!l->plain) {
		close(sv[0]);
		close(sv[1]);
		link_end(l, "out of memory", true);
		return;
	}
	uv_pipe_init(l->set->loop, &l->ours, 0);
	uv_pipe_init(l->set->loop, l->plain, 0);
	l->ours.data = l;
	l->plain->data = l;
	l->ours_open = true;
	l->handles += 2;
	if (uv_pipe_open(&l->ours, sv[0])) {
		close(sv[0]);
		close(sv[1]);
		link_end(l, "cannot open the socketpair", true);
		return;
	}
	if (uv_pipe_open(l->plain, sv[1])) {
		close(sv[1]);
		link_end(l, "cannot open the socketpair", true);
		return;
	}
	if (uv_read_start((uv_stream_t *)&l->ours, alloc_cb, on_ours_read)) {
		link_end(l, "cannot read", true);
		return;
	}
	/* libraft's from here: it closes and frees it */
	l->handles--;
	l->handshaking = false;
	l->cb = NULL;
	{
		uv_stream_t *plain = (uv_stream_t *)l->plain;

		l->plain = NULL;
		plain->data = NULL;
		cb(l->arg, plain, NULL);
	}
	if (!l->ended)
		pump_in(l); /* application data that came with the Finished */
}

static void handshake(struct nd_raft_link *l)
{
	int r = SSL_do_handshake(l->ssl);

	if (flush_tcp(l))
		return;
	if (r == 1) {
		established(l);
		return;
	}
	if (SSL_get_error(l->ssl, r) != SSL_ERROR_WANT_READ)
		fail_ssl(l, "TLS handshake");
}

static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct nd_raft_link *l = s->data;

	if (n == 0)
		return;
	if (n < 0) {
		link_end(l, n == UV_EOF ? "closed during the TLS handshake" :
			 uv_strerror((int)n), true);
		return;
	}
	if (BIO_write(l->rbio, buf->base, (int)n) != (int)n) {
		link_end(l, "out of memory", true);
		return;
	}
	if (l->handshaking)
		handshake(l);
	else
		pump_in(l);
}

/* Plaintext from libraft: encrypted to tcp. */
static void on_ours_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct nd_raft_link *l = s->data;
	size_t w;

	if (n == 0)
		return;
	if (n < 0) {
		link_end(l, "closed", true);
		return;
	}
	if (SSL_write_ex(l->ssl, buf->base, (size_t)n, &w) != 1 ||
	    w != (size_t)n) {
		fail_ssl(l, "TLS");
		return;
	}
	if (flush_tcp(l))
		return;
	if (uv_stream_get_write_queue_size(l->tcp) >= LINK_QUEUE_MAX &&
	    !l->ours_paused) {
		l->ours_paused = true;
		uv_read_stop((uv_stream_t *)&l->ours);
	}
}

int nd_raft_link_start(struct nd_raft_links *set, struct nd_tls *tls,
		       uv_stream_t *tcp, bool need_master,
		       nd_raft_link_cb cb, void *arg,
		       struct nd_raft_link **out)
{
	struct nd_raft_link *l = calloc(1, sizeof(*l));

	*out = NULL;
	if (!l)
		goto err_close_tcp;
	l->ssl = nd_tls_new_ssl(tls);
	l->rbio = BIO_new(BIO_s_mem());
	l->wbio = BIO_new(BIO_s_mem());
	if (!l->ssl || !l->rbio || !l->wbio) {
		BIO_free(l->rbio);
		BIO_free(l->wbio);
		SSL_free(l->ssl);
		ERR_clear_error();
		goto err_free_link;
	}
	/* an empty memory BIO asks to be retried, not EOF */
	BIO_set_mem_eof_return(l->rbio, -1);
	SSL_set_bio(l->ssl, l->rbio, l->wbio);
	l->set = set;
	l->tcp = tcp;
	l->need_master = need_master;
	l->handshaking = true;
	l->handles = 1;
	l->cb = cb;
	l->arg = arg;
	tcp->data = l;
	l->next = set->head;
	l->prev = &set->head;
	if (set->head)
		set->head->prev = &l->next;
	set->head = l;
	*out = l;
	if (uv_read_start(tcp, alloc_cb, on_tcp_read)) {
		*out = NULL;
		link_end(l, "cannot read", false);
		return -ENOMEM;
	}
	if (!nd_tls_is_server(tls))
		handshake(l); /* the ClientHello */
	return 0;

err_free_link:
	free(l);
err_close_tcp:
	uv_close((uv_handle_t *)tcp, (uv_close_cb)raft_free);
	return -ENOMEM;
}

void nd_raft_link_abort(struct nd_raft_link *l)
{
	link_end(l, NULL, false);
}

/* ---- the set ---- */

static void idle_closed(uv_handle_t *h)
{
	struct nd_raft_links *set = h->data;
	void (*done)(void *) = set->done;

	set->idle_open = false;
	set->done = NULL;
	if (done)
		done(set->done_arg);
}

static void on_idle(uv_idle_t *idle)
{
	uv_idle_stop(idle);
	uv_close((uv_handle_t *)idle, idle_closed);
}

static void maybe_done(struct nd_raft_links *set)
{
	if (!set->closing || set->head || !set->idle_open ||
	    uv_is_closing((uv_handle_t *)&set->idle))
		return;
	uv_idle_start(&set->idle, on_idle);
}

int nd_raft_links_new(struct nd_raft_links **out, uv_loop_t *loop)
{
	struct nd_raft_links *set = calloc(1, sizeof(*set));

	*out = set;
	if (!set)
		return -ENOMEM;
	set->loop = loop;
	return 0;
}

void nd_raft_links_close(struct nd_raft_links *set, void (*done)(void *),
			 void *arg)
{
	set->closing = true;
	set->done = done;
	set->done_arg = arg;
	uv_idle_init(set->loop, &set->idle);
	set->idle.data = set;
	set->idle_open = true;
	for (struct nd_raft_link *l = set->head; l; l = l->next)
		link_end(l, "closing", true);
	maybe_done(set);
}

void nd_raft_links_free(struct nd_raft_links *set)
{
	free(set);
}
