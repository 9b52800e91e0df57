/*
 * The Raft links between masters (transport.c): a libraft transport
 * (raft_uv_transport) over its own TCP one, where the links run TLS
 * (mutual, with the master role, when the masters have a CA) and both ends
 * prove they hold the masters' token, as configured, before libraft gets
 * the connection.
 */
#ifndef ND_RAFT_TRANSPORT_H
#define ND_RAFT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <raft/uv.h>
#include <uv.h>

#include "tls/tls.h"

/* How the links prove they are the masters' (neither: they do not, and
 * are taken on loopback only). Not owned: they outlive the transport. */
struct nd_raft_link_auth {
	const uint8_t *token;         /* the masters' token (copied), or
				       * NULL */
	size_t token_len;
	struct nd_tls *tls_server;    /* TLS on the links: the master's
				       * server context (accepted links) */
	struct nd_tls *tls_client;    /* and a client one with the same
				       * files (links we open) */
};

/* Sets t up on loop. 0, or a raft error. */
int nd_raft_transport_init(struct raft_uv_transport *t, uv_loop_t *loop,
			   const struct nd_raft_link_auth *auth);
/* Frees it (after libraft closed it). */
void nd_raft_transport_close(struct raft_uv_transport *t);

#endif
