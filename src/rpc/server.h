/*
 * The server side of the noded protocol on a transport connection: frame
 * parsing, the Hello gate, method dispatch and replies. One file per method
 * (hello.c, ping.c, report_status.c, assign_task.c).
 *
 * Decoded frames live in the shard's arena and are gone after the current
 * batch: a handler copies whatever it keeps.
 */
#ifndef ND_RPC_SERVER_H
#define ND_RPC_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/conn.h"
#include "core/list.h"
#include "node/service.h"
#include "noded/wire.h"

/* Protocol state of one connection (nd_conn_state(c)). */
struct nd_rpc_conn {
	struct nd_svc_peer sp;       /* first: the service's view of us */
	bool hello;                  /* handshake done */
	bool authed;                 /* proved the token (or none is needed) */
	uint8_t client_nonce[64];
	size_t client_nonce_len;
	uint8_t server_nonce[32];
	bool stream_open;            /* an AssignTask stream is open */
	uint64_t stream_id;
	char *stream_node;           /* the node that stream registered; owned */
	char *peer_name;             /* from Hello; owned */
	const uint8_t *body;         /* the frame being handled, packed */
	size_t body_len;
};

#define ND_NAME_MAX 253

/*
 * Largest frame taken before the peer is authenticated (Hello, then Auth
 * with a token; Hello alone without one): both fit with room to spare
 * (a Hello is at most about 600 bytes). --max-frame applies after, or here
 * when it is smaller. So a stranger can make the master keep at most this
 * much of a partial frame, and only until --handshake-timeout.
 */
#define ND_PREAUTH_MAX_FRAME 4096u

/* The server side of the noded protocol, for nd_conn_adopt/nd_server. */
extern const struct nd_conn_ops nd_rpc_server_ops;

static inline struct nd_rpc_conn *nd_rpc(struct nd_conn *c)
{
	return nd_conn_state(c);
}

/* Queues f on c. 0, or -ENOMEM / -EPIPE (connection already closing). */
int nd_rpc_send(struct nd_conn *c, const Noded__Frame *f);

/* Queues an Error body in a frame of the given kind answering id. */
void nd_rpc_error(struct nd_conn *c, uint64_t id, Noded__FrameKind kind,
		  Noded__ErrorCode code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* A protocol violation: Error reply, then the connection is closed (after
 * the reply is flushed). */
void nd_rpc_fatal(struct nd_conn *c, uint64_t id, Noded__ErrorCode code,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Method handlers: f is a REQUEST whose body case names the method. */
void nd__rpc_hello(struct nd_conn *c, const Noded__Frame *f);
void nd__rpc_auth(struct nd_conn *c, const Noded__Frame *f);
void nd__rpc_ping(struct nd_conn *c, const Noded__Frame *f);
void nd__rpc_report_status(struct nd_conn *c, const Noded__Frame *f);
void nd__rpc_forward(struct nd_conn *c, const Noded__Frame *f);
void nd__rpc_assign_task(struct nd_conn *c, const Noded__Frame *f);
/* May the peer's certificate role send f (rpc/roles.c)? false after
 * answering PERMISSION_DENIED (the connection goes on, but for a worker
 * certificate's Hello under another node's name, which closes it). */
bool nd__rpc_role_allows(struct nd_conn *c, const Noded__Frame *f);
/* Does the --acl policy let the peer send f (rpc/acl.h)? false after
 * answering PERMISSION_DENIED naming the action and object (the
 * connection goes on). */
bool nd__rpc_acl_allows(struct nd_conn *c, const Noded__Frame *f);
/* ops->wrong_transport: an Error in plaintext saying which to use. */
void nd__rpc_wrong_transport(struct nd_conn *c, bool tls_expected);
/* A CANCEL frame: ends the AssignTask stream it names. */
void nd__rpc_assign_cancel(struct nd_conn *c, const Noded__Frame *f);
/* The node service's answer to the registration on stream stream_id of c:
 * code 0 sends the AssignTaskOpen item; else the stream ends with an Error
 * (code, msg; leader: the leader's client address for NOT_LEADER, or NULL)
 * and the connection holds no node any more. Ignored when that stream is
 * no longer open. */
void nd__rpc_assign_registered(struct nd_conn *c, uint64_t stream_id,
			       Noded__ErrorCode code, const char *msg,
			       const char *leader);
/* Ends an open AssignTask stream with an Error (drain, close). */
void nd__rpc_assign_end(struct nd_conn *c, Noded__ErrorCode code,
			const char *msg);

#endif
