/*
 * The Raft links between masters, authenticated with the masters' shared
 * token (transport.c): a libraft transport (raft_uv_transport) over its own
 * TCP one, where both ends prove they hold the token before libraft gets
 * the connection.
 */
#ifndef ND_RAFT_TRANSPORT_H
#define ND_RAFT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <raft/uv.h>
#include <uv.h>

/* Sets t up on loop with token (copied). 0, or a raft error. */
int nd_raft_transport_init(struct raft_uv_transport *t, uv_loop_t *loop,
			   const uint8_t *token, size_t token_len);
/* Frees it (after libraft closed it). */
void nd_raft_transport_close(struct raft_uv_transport *t);

#endif
