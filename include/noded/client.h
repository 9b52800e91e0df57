/*
 * noded client library.
 *
 * One struct nd_client is one TCP connection to a noded server, after the
 * Hello handshake. It is not thread-safe: use one client per thread.
 *
 * Three ways to use it:
 *   - blocking:  nd_client_call() / nd_client_ping() send one request and
 *                wait for its reply;
 *   - pipelined: nd_client_start() queues requests with a callback each,
 *                nd_client_poll() sends, receives and runs callbacks;
 *   - sans-I/O:  an external event loop (the benchmark drives io_uring) moves
 *                the bytes itself with nd_client_output()/nd_client_consume()
 *                and nd_client_feed(); the library only frames, encodes,
 *                decodes and matches replies to callbacks.
 *
 * Errors: 0 or a negative errno / ND_E* code (include/noded/errors.h).
 */
#ifndef NODED_CLIENT_H
#define NODED_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "noded/errors.h"
#include "noded/wire.h"

struct nd_client;

struct nd_client_opts {
	const char *node_name;  /* sent in Hello; NULL: "client" */
	Noded__Role role;       /* 0: NODED__ROLE__ROLE_CLIENT */
	uint32_t max_frame;     /* largest reply accepted; 0: 16 MiB */
	int timeout_ms;         /* connect + Hello; 0: 5000 */
	/* The shared token (master --token-file), or NULL. Copied. With a
	 * token, the Hello completes only after the challenge is answered and
	 * the master has proved it holds the same token: a master that asks
	 * for none fails it with ND_EAUTHNOPROOF, a proof that does not
	 * verify with ND_EAUTHBADPROOF, and the client is then unusable.
	 * Without a token, a master that requires one fails it with
	 * ND_EAUTH. */
	const uint8_t *token;
	size_t token_len;
	/*
	 * TLS 1.3 (any of the three set), paths read at connect. With ca,
	 * the server must present a certificate signed by it that names the
	 * master role (tls/tls.h): ND_ETLS otherwise. cert and key: ours, for
	 * a master that asks for one (mutual TLS). A server that answers in
	 * plaintext fails the connect with ND_ETLSPLAIN.
	 */
	const char *tls_cert, *tls_key, *tls_ca;
	/*
	 * A client of this thread, open, whose TLS this connect takes on
	 * (NULL: none): its context (the files it read; tls_* above are
	 * then not read again) and the TLS sessions it keeps, one per
	 * server address, the last its server gave. The one for addr is
	 * offered: TLS 1.3 resumption, where the server skips the
	 * certificates (a ticket carries what the full handshake that made
	 * it verified). A server that does not take it (restarted, reloaded
	 * with SIGHUP, or the ticket older than 2 hours) makes it a full
	 * handshake. The new client keeps from's sessions too.
	 * nd_client_reconnect does this.
	 */
	struct nd_client *tls_from;
};

/*
 * Why the last nd_client_connect of this thread failed, beyond its code:
 * the TLS reason (ND_ETLS), or the server's Error message (ND_EREMOTE);
 * "" when there is nothing more to say. Valid until the next connect.
 */
const char *nd_client_last_error(void);

/*
 * For a sans-I/O driver of a client connected over TLS: the OpenSSL SSL
 * (an SSL *) under c after its handshake, or NULL without TLS. The driver
 * then moves the records itself (for instance SSL_set_bio with memory
 * BIOs: SSL_write what nd_client_output gives, SSL_read what arrives before
 * nd_client_feed) and no longer calls c's blocking functions. c keeps
 * ownership.
 */
void *nd_client_tls_session(struct nd_client *c);

/* Did c's TLS handshake resume a session (opts.tls_from) instead of a
 * full one? false without TLS. */
bool nd_client_tls_resumed(const struct nd_client *c);

/*
 * Called once for the reply of a unary call, and once per frame of a stream
 * (STREAM_ITEMs, then the STREAM_END). status is 0 with frame set for a normal
 * reply or stream frame; ND_EREMOTE with frame holding an Error body when the
 * server answered with an Error; a negative errno with frame NULL when the
 * call could not complete (-ECONNRESET: connection lost, -ECANCELED: client
 * closed). frame and everything it points to are valid only during the call.
 * done is true on the last call for this request id.
 */
typedef void (*nd_reply_cb)(struct nd_client *c, int status,
			    const Noded__Frame *frame, bool done, void *arg);

/*
 * Connects to addr ("HOST:PORT", IPv4 or a name), sends Hello and waits for
 * the HelloReply. On success *out owns a new client (free with
 * nd_client_close) and 0 is returned. opts may be NULL; it is copied.
 */
int nd_client_connect(struct nd_client **out, const char *addr,
		      const struct nd_client_opts *opts);

/*
 * Wraps an already connected socket fd (ownership passes to the client, also
 * on failure) without doing the handshake; call nd_client_hello() or feed the
 * reply through the sans-I/O functions. Used by event-loop drivers. fd -1
 * makes a client that only does sans-I/O (the blocking calls then fail).
 */
int nd_client_adopt(struct nd_client **out, int fd,
		    const struct nd_client_opts *opts);

/*
 * TLS 1.3 on a client made by nd_client_adopt from a connected socket, as
 * nd_client_connect does it: opts' tls_* files, or tls_from's context.
 * The handshake is done when it returns 0 (it waits on the socket, up to
 * timeout_ms; 0: 5000); then nd_client_tls_session gives the SSL to a
 * driver that moves the records itself. A negative code otherwise
 * (ND_ETLS, ND_ETLSPLAIN, -ETIMEDOUT; nd_client_last_error says why), and
 * c is only good for nd_client_close. -EINVAL: no fd, TLS already, or
 * nothing in opts that asks for it.
 */
int nd_client_start_tls(struct nd_client *c, const struct nd_client_opts *opts,
			int timeout_ms);

/* Queues a Hello request (done automatically by nd_client_connect). */
int nd_client_hello(struct nd_client *c, nd_reply_cb cb, void *arg);

/* Fails every call still pending with -ECANCELED, closes the socket, frees. */
void nd_client_close(struct nd_client *c);
/* Makes c the connection with is (a client from nd_client_connect, freed
 * here), closing what c was connected to (its pending requests fail with
 * -ECANCELED): how a caller holding c follows a NOT_LEADER to the leader. */
void nd_client_replace(struct nd_client *c, struct nd_client *with);
/*
 * reply is a NOT_LEADER error naming the leader (a follower of a cluster
 * of masters answered): c is connected there instead, with the same
 * credentials (name, role, token, TLS: nd_client_reconnect), and the
 * request may be sent again (a follower applies nothing). 0, -EINVAL
 * when reply names no leader, or nd_client_connect's error (c unchanged
 * then).
 */
int nd_client_follow_leader(struct nd_client *c, const Noded__Frame *reply,
			    int timeout_ms);
/*
 * Connects c again, to addr (NULL: the address c was connected to with
 * nd_client_connect), with the credentials it was made with (name, role,
 * token, TLS context) and offering the TLS session c keeps for addr (see
 * nd_client_opts.tls_from); then as nd_client_replace. timeout_ms as the
 * opts'. 0, -EINVAL (no address), or nd_client_connect's error (c
 * unchanged then).
 */
int nd_client_reconnect(struct nd_client *c, const char *addr,
			int timeout_ms);

int nd_client_fd(const struct nd_client *c);

/* The server's HelloReply fields, after the handshake. */
const char *nd_client_server_name(const struct nd_client *c);
uint32_t nd_client_server_max_frame(const struct nd_client *c);

/*
 * Blocking unary call: sends req (its id and kind are set by the library; the
 * caller keeps ownership of req) and waits up to timeout_ms (< 0: forever)
 * for the reply. On 0 or ND_EREMOTE, *reply owns the decoded reply frame
 * (free it with nd_frame_free(*reply, NULL)). Pending asynchronous calls keep
 * being served while it waits.
 */
int nd_client_call(struct nd_client *c, const Noded__Frame *req,
		   Noded__Frame **reply, int timeout_ms);

/* Blocking Ping with an empty payload. */
int nd_client_ping(struct nd_client *c, int timeout_ms);

/*
 * Queues req (encoded at once; the caller keeps req) and registers cb for its
 * reply or stream frames (cb NULL: the reply is discarded). Returns the request id (> 0) or a negative error.
 * Nothing is sent until nd_client_flush()/nd_client_poll() or, with the
 * sans-I/O functions, until the driver sends nd_client_output().
 */
int64_t nd_client_start(struct nd_client *c, const Noded__Frame *req,
			nd_reply_cb cb, void *arg);

/*
 * Queues req as a notification (FrameKind NOTIFY): no reply comes and none
 * is waited for. Only report_status may be sent so (a worker's heartbeat);
 * the server refuses any other method and closes the connection. Returns 0
 * or a negative error.
 */
int nd_client_notify(struct nd_client *c, const Noded__Frame *req);

/* Queues a CANCEL for the stream opened by request id. */
int nd_client_cancel(struct nd_client *c, uint64_t id);

/* Writes queued output without blocking: 0 when all written, -EAGAIN when
 * some remains, or an error. */
int nd_client_flush(struct nd_client *c);

/*
 * Waits up to timeout_ms (< 0: forever, 0: do not wait) for the socket, sends
 * what is queued, reads what arrived and runs callbacks. Returns the number of
 * callbacks run (0 on timeout) or an error (ND_ECLOSED when the server closed
 * the connection; pending calls have then been failed with -ECONNRESET).
 */
int nd_client_poll(struct nd_client *c, int timeout_ms);

/* Requests sent or queued whose final reply has not arrived. */
size_t nd_client_pending(const struct nd_client *c);

/* sans-I/O: bytes queued for sending (pointer valid until the next call). */
size_t nd_client_output(struct nd_client *c, const uint8_t **data);
/* sans-I/O: n bytes from nd_client_output() were sent. */
void nd_client_consume(struct nd_client *c, size_t n);
/*
 * sans-I/O: len bytes read from the socket; complete frames run their
 * callbacks. Returns the number of callbacks run, or a protocol error
 * (ND_EFRAMETOOBIG, ND_EBADFRAME, ...) after which the client is unusable.
 * Pass len 0 for end of file: pending calls fail with -ECONNRESET.
 */
int nd_client_feed(struct nd_client *c, const uint8_t *data, size_t len);

#endif
