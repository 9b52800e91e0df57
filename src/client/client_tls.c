/*
 * TLS for the client library: OpenSSL over the client's own nonblocking
 * socket (a client has one connection and blocks in poll, so a socket BIO
 * is all it needs; the server side runs over memory BIOs, tls/conn_tls.c).
 * The handshake completes inside nd_client_connect, bounded by its
 * timeout; after it, nd_client_flush and the reads go through SSL_write
 * and SSL_read.
 *
 * Resumption: the ticket a server sends after the handshake (read with
 * the HelloReply) is kept in c->sessions under the address connected to,
 * replacing the one before; a connect with opts.tls_from = c (as
 * nd_client_reconnect does) takes c's context and sessions and offers
 * the one for its address. The SSL's app data and its read BIO's
 * callback argument are its client, which nd_client_replace keeps true.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "client/client.h"
#include "core/time.h"
#include "noded/errors.h"
#include "tls/tls.h"

__thread char nd__client_why[512];

const char *nd_client_last_error(void)
{
	return nd__client_why;
}

/* Waits for fd to be ready for events by deadline: 0, -ETIMEDOUT. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		int64_t left = deadline - (int64_t)nd_mono_ms();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

/* Notes whether the server's first bytes start a TLS record: a server
 * without TLS on the port answers in plaintext (noded: an Error frame). */
static long first_read(BIO *b, int oper, const char *argp, size_t len,
		       int argi, long argl, int ret, size_t *processed)
{
	struct nd_client *c = (struct nd_client *)BIO_get_callback_arg(b);

	if (oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 && processed &&
	    *processed > 0 && !c->tls_seen) {
		c->tls_seen = true;
		c->tls_plain = !nd_tls_record_start((unsigned char)argp[0]);
	}
	return ret;
}

/* The session c keeps for addr, or NULL. */
static struct tls_session *session_for(struct nd_client *c, const char *addr)
{
	for (size_t i = 0; addr && i < TLS_SESSIONS; i++)
		if (c->sessions[i].addr && !strcmp(c->sessions[i].addr, addr))
			return &c->sessions[i];
	return NULL;
}

static void session_free(struct tls_session *s)
{
	SSL_SESSION_free(s->sess);
	free(s->addr);
	s->sess = NULL;
	s->addr = NULL;
}

/* Keeps sess (a reference taken here) as addr's, first; the least
 * recently used goes when all places are taken. Silent on ENOMEM: a
 * session is an optimisation. */
static void keep_session(struct nd_client *c, const char *addr,
			 SSL_SESSION *sess)
{
	struct tls_session *s = session_for(c, addr), n;
	size_t at = s ? (size_t)(s - c->sessions) : TLS_SESSIONS - 1;

	if (s) {
		n.addr = s->addr;
		SSL_SESSION_free(s->sess);
	} else {
		session_free(&c->sessions[at]);
		n.addr = strdup(addr);
		if (!n.addr)
			return;
	}
	SSL_SESSION_up_ref(sess);
	n.sess = sess;
	memmove(&c->sessions[1], &c->sessions[0], at * sizeof(n));
	c->sessions[0] = n;
}

/* A ticket from c's server (nd_tls_on_session). */
static void got_session(SSL *ssl, SSL_SESSION *sess)
{
	struct nd_client *c = SSL_get_app_data(ssl);

	if (c && c->addr)
		keep_session(c, c->addr, sess);
}

/* c takes from's context and sessions. */
static void take_tls(struct nd_client *c, struct nd_client *from)
{
	nd_tls_hold(from->tls);
	c->tls = from->tls;
	for (size_t i = TLS_SESSIONS; i-- > 0;)
		if (from->sessions[i].sess)
			keep_session(c, from->sessions[i].addr,
				     from->sessions[i].sess);
}

int nd__client_tls_start(struct nd_client *c,
			 const struct nd_client_opts *opts, int64_t deadline)
{
	struct nd_tls_files f = {
		.cert = opts->tls_cert, .key = opts->tls_key,
		.ca = opts->tls_ca,
	};
	struct tls_session *s;
	int r, err;

	nd__client_why[0] = '\0';
	if (opts->tls_from && opts->tls_from->tls) {
		take_tls(c, opts->tls_from);
	} else {
		r = nd_tls_open(&c->tls, &f, false);
		if (r) {
			snprintf(nd__client_why, sizeof(nd__client_why),
				 "cannot load the TLS files (said above)");
			return r == -ENOMEM ? r : ND_ETLS;
		}
	}
	c->ssl = nd_tls_new_ssl(c->tls);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
		ERR_clear_error();
		return -ENOMEM;
	}
	SSL_set_app_data(c->ssl, c);
	nd_tls_on_session(c->ssl, got_session);
	s = session_for(c, c->addr);
	/* an expired one would only cost its bytes: a full handshake */
	if (s && SSL_SESSION_is_resumable(s->sess) &&
	    !SSL_set_session(c->ssl, s->sess))
		ERR_clear_error();
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
		     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	BIO_set_callback_arg(SSL_get_rbio(c->ssl), (char *)c);
	BIO_set_callback_ex(SSL_get_rbio(c->ssl), first_read);
	for (;;) {
		r = SSL_connect(c->ssl);
		if (r == 1)
			return 0;
		err = SSL_get_error(c->ssl, r);
		if (err == SSL_ERROR_WANT_WRITE) {
			r = wait_fd(c->fd, POLLOUT, deadline);
		} else if (err == SSL_ERROR_WANT_READ) {
			r = wait_fd(c->fd, POLLIN, deadline);
		} else if (c->tls_plain) {
			ERR_clear_error();
			snprintf(nd__client_why, sizeof(nd__client_why),
				 "the server answered in plaintext: it does not "
				 "speak TLS on this port (drop --tls-*, or give "
				 "the port of a master started with "
				 "--tls-cert)");
			return ND_ETLSPLAIN;
		} else {
			if (err == SSL_ERROR_SYSCALL && !ERR_peek_error())
				snprintf(nd__client_why, sizeof(nd__client_why),
					 "the server closed the connection "
					 "during the TLS handshake");
			else
				nd_tls_why(c->ssl, nd__client_why,
					   sizeof(nd__client_why));
			return ND_ETLS;
		}
		if (r) {
			if (r == -ETIMEDOUT)
				snprintf(nd__client_why, sizeof(nd__client_why),
					 "the TLS handshake did not end in "
					 "time");
			return r;
		}
	}
}

void nd__client_tls_free(struct nd_client *c)
{
	/* our close_notify, best effort (the socket does not block) */
	if (c->ssl && SSL_is_init_finished(c->ssl))
		SSL_shutdown(c->ssl);
	ERR_clear_error();
	SSL_free(c->ssl);
	c->ssl = NULL;
	nd_tls_close(c->tls);
	c->tls = NULL;
	for (size_t i = 0; i < TLS_SESSIONS; i++)
		session_free(&c->sessions[i]);
}

/* ssl (of c, may be NULL) points at c again: its app data and its read
 * BIO's callback. */
static void point_at(SSL *ssl, struct nd_client *c)
{
	if (!ssl)
		return;
	SSL_set_app_data(ssl, c);
	BIO_set_callback_arg(SSL_get_rbio(ssl), (char *)c);
}

void nd__client_tls_moved(struct nd_client *c, struct nd_client *old)
{
	point_at(c->ssl, c);
	point_at(old->ssl, old);
	for (size_t i = TLS_SESSIONS; i-- > 0;)
		if (old->sessions[i].sess &&
		    !session_for(c, old->sessions[i].addr))
			keep_session(c, old->sessions[i].addr,
				     old->sessions[i].sess);
}

/* A TLS error after the handshake: its reason, and c is done. */
static int tls_failed(struct nd_client *c)
{
	nd_tls_why(c->ssl, nd__client_why, sizeof(nd__client_why));
	return nd__client_fail_all(c, ND_ETLS, ND_ETLS, NULL, NULL, 0);
}

int nd__client_tls_flush(struct nd_client *c)
{
	while (nd__client_out_queued(c)) {
		size_t n = nd__client_out_queued(c);
		int r = SSL_write(c->ssl, c->out.data + c->out_off,
				  n > (1u << 30) ? 1 << 30 : (int)n);

		if (r > 0) {
			nd_client_consume(c, (size_t)r);
			continue;
		}
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_WRITE:
		case SSL_ERROR_WANT_READ:
			return -EAGAIN;
		case SSL_ERROR_SYSCALL:
			ERR_clear_error();
			/* as nd_client_flush: keep reading, drop output */
			c->werr = errno ? -errno : -EPIPE;
			c->out_off = 0;
			nd_buf_reset(&c->out);
			return c->werr;
		default:
			return tls_failed(c);
		}
	}
	return 0;
}

int nd__client_tls_recv(struct nd_client *c, uint8_t *buf, size_t size)
{
	int r = SSL_read(c->ssl, buf, (int)size);

	if (r > 0)
		return r;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return ND_ECLOSED;
	case SSL_ERROR_SYSCALL:
		/* EOF or reset without close_notify: closed */
		ERR_clear_error();
		return ND_ECLOSED;
	default:
		return tls_failed(c);
	}
}

int nd_client_start_tls(struct nd_client *c, const struct nd_client_opts *opts,
			int timeout_ms)
{
	if (!c || !opts || c->fd < 0 || c->ssl ||
	    !(opts->tls_cert || opts->tls_key || opts->tls_ca ||
	      (opts->tls_from && opts->tls_from->tls)))
		return -EINVAL;
	return nd__client_tls_start(c, opts, (int64_t)nd_mono_ms() +
					     (timeout_ms > 0 ? timeout_ms : 5000));
}

void *nd_client_tls_session(struct nd_client *c)
{
	return c->ssl;
}

bool nd_client_tls_resumed(const struct nd_client *c)
{
	return c->ssl && SSL_session_reused(c->ssl);
}

bool nd__client_tls_pending(const struct nd_client *c)
{
	return c->ssl && SSL_pending(c->ssl) > 0;
}
