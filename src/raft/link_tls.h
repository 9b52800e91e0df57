/*
 * TLS on a Raft link (link_tls.c): libraft reads and writes a libuv
 * stream, so a link runs TLS on the TCP stream libraft's transport made,
 * and hands libraft a plaintext stream instead: one end of a socketpair,
 * whose other end this module pumps through OpenSSL (memory BIOs) to and
 * from the TCP stream, on the raft shard's loop.
 *
 *   libraft <-> [plain end | our end] <-> SSL <-> TCP <-> peer
 *
 * Either side ending (EOF, an error, libraft closing the plain end) ends
 * the whole link. Each direction holds at most LINK_QUEUE_MAX bytes
 * waiting to be written: past it, reading the other side stops until the
 * writes drain, so a peer that reads slowly cannot grow our memory.
 */
#ifndef ND_RAFT_LINK_TLS_H
#define ND_RAFT_LINK_TLS_H

#include <stdbool.h>

#include <uv.h>

#include "tls/tls.h"

struct nd_raft_links;
struct nd_raft_link;

/*
 * The handshake's end: plain is the plaintext stream (a uv_pipe_t
 * allocated with raft_malloc, closed and freed by whoever it is handed
 * to, as libraft does with its streams), or NULL and why says what
 * failed (valid during the call only).
 */
typedef void (*nd_raft_link_cb)(void *arg, uv_stream_t *plain,
				const char *why);

/* Every link of one transport, so that closing the transport can end
 * them all. Allocated; 0 or -ENOMEM. */
int nd_raft_links_new(struct nd_raft_links **out, uv_loop_t *loop);

/*
 * Ends every link (their handles close) and calls done(arg) once the
 * last is gone, from the loop (or at once when there is none). No link
 * may be started after.
 */
void nd_raft_links_close(struct nd_raft_links *set, void (*done)(void *),
			 void *arg);

/* Frees set, whose links are all gone (after the close's done). */
void nd_raft_links_free(struct nd_raft_links *set);

/*
 * Starts TLS on tcp (a connected stream, allocated with raft_malloc; the
 * link owns it from here, whatever happens) as the server end when tls
 * is a server's, else the client. need_master: the peer's certificate
 * must carry the master role (the server end's check; a client context
 * checks the server's role itself). cb comes once, from the loop, unless
 * the link is aborted first. 0 (*out set until cb), or -ENOMEM (tcp
 * closed; no cb).
 */
int nd_raft_link_start(struct nd_raft_links *set, struct nd_tls *tls,
		       uv_stream_t *tcp, bool need_master,
		       nd_raft_link_cb cb, void *arg,
		       struct nd_raft_link **out);

/* Ends a link whose cb has not come (a handshake timed out); no cb. */
void nd_raft_link_abort(struct nd_raft_link *l);

#endif
