/*
 * The client library's blocking side (include/noded/client.h): flush,
 * poll, call and ping as poll(2) + nonblocking read/write loops over the
 * sans-I/O core of client.c, and a client's life cycle (adopt, connect,
 * close, accessors).
 */

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "core/time.h"
#include "client/client.h"

/* ---- blocking helpers ---- */

int nd_client_flush(struct nd_client *c)
{
	ssize_t n;

	if (c->err)
		return c->err;
	if (c->werr)
		return c->werr;
	if (c->ssl)
		return nd__client_tls_flush(c);
	while (nd__client_out_queued(c)) {
		n = send(c->fd, c->out.data + c->out_off, nd__client_out_queued(c),
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

	for (i = 0; c->ssl && i < READS_PER_POLL; i++) {
		r = nd__client_tls_recv(c, buf, sizeof(buf));
		if (r == 0)
			return runs;
		if (r == ND_ECLOSED)
			return nd__client_feed_eof(c);
		if (r < 0)
			return r;
		n = r;
		r = nd_client_feed(c, buf, (size_t)n);
		if (r < 0)
			return r;
		runs += r;
	}
	for (i = 0; !c->ssl && i < READS_PER_POLL; i++) {
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* Reset or another socket error: the connection is
			 * gone; report it as closed, as the header says. */
			return nd__client_feed_eof(c);
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
	if (nd__client_tls_pending(c)) /* decrypted, not yet read */
		return read_some(c);
	pfd.fd = c->fd;
	pfd.events = POLLIN | (nd__client_out_queued(c) && !c->werr ? POLLOUT : 0);
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
	p = nd__client_pend_find(c, id);
	if (p)
		nd__client_pend_remove(c, p);
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
	id = nd__client_start(c, req, NULL, &w, flags | P_CALL);
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
	nd__client_fail_all(c, -ECANCELED, -ECANCELED, NULL, NULL, 0);
	nd__client_tls_free(c);
	if (c->fd >= 0)
		close(c->fd);
	free(c->addr);
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

int nd_client_reconnect(struct nd_client *c, const char *addr,
			int timeout_ms)
{
	struct nd_client_opts o = { .node_name = c->node_name,
				    .role = c->role, .max_frame = c->max_frame,
				    .timeout_ms = timeout_ms,
				    .token = c->token,
				    .token_len = c->token_len,
				    .tls_from = c };
	struct nd_client *n;
	int r;

	if (!addr)
		addr = c->addr;
	if (!addr)
		return -EINVAL;
	r = nd_client_connect(&n, addr, &o);
	if (r)
		return r;
	nd_client_replace(c, n);
	return 0;
}

int nd_client_follow_leader(struct nd_client *c, const Noded__Frame *reply,
			    int timeout_ms)
{
	if (!reply || reply->body_case != NODED__FRAME__BODY_ERROR ||
	    !reply->error ||
	    reply->error->code != NODED__ERROR_CODE__NOT_LEADER ||
	    !reply->error->leader[0])
		return -EINVAL;
	return nd_client_reconnect(c, reply->error->leader, timeout_ms);
}

void nd_client_replace(struct nd_client *c, struct nd_client *with)
{
	struct nd_client old = *c;

	/* with's allocation now holds what c was, and goes with it */
	*c = *with;
	*with = old;
	nd__client_tls_moved(c, with);
	nd_client_close(with);
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
	nd__client_why[0] = '\0';
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
	c->addr = strdup(addr);
	if (!c->addr) {
		nd_client_close(c);
		return -ENOMEM;
	}
	if (opts && (opts->tls_cert || opts->tls_key || opts->tls_ca ||
		     (opts->tls_from && opts->tls_from->tls))) {
		r = nd__client_tls_start(c, opts, deadline);
		if (r) {
			nd_client_close(c);
			return r;
		}
	}
	nd__client_hello_frame(c, &f, &h);
	left = deadline - (int64_t)nd_mono_ms();
	r = call(c, &f, &reply, left > 0 ? (int)left : 0, P_HELLO);
	/* The master refused our proof (or our Hello for want of one). */
	if (r == ND_EREMOTE && reply &&
	    reply->body_case == NODED__FRAME__BODY_ERROR &&
	    reply->error->code == NODED__ERROR_CODE__UNAUTHENTICATED)
		r = ND_EAUTH;
	if (r == ND_EREMOTE && reply &&
	    reply->body_case == NODED__FRAME__BODY_ERROR &&
	    reply->error->message)
		snprintf(nd__client_why, sizeof(nd__client_why), "%s",
			 reply->error->message);
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
