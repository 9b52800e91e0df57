/*
 * The client side of the protocol on a core connection: a sans-I/O
 * nd_client (include/noded/client.h) whose bytes the shard moves with
 * io_uring. A worker talks to its master through this.
 *
 * Use nd_conn_connect(..., &nd_peer_ops, hooks, ...): hooks (the connection's
 * ctx) must outlive the connection.
 */
#ifndef ND_CLIENT_PEER_H
#define ND_CLIENT_PEER_H

#include "core/conn.h"
#include "noded/client.h"

struct nd_peer_hooks {
	struct nd_client_opts opts;
	/* The connection is up: queue Hello and the first requests. */
	void (*opened)(struct nd_conn *c, struct nd_client *cl, void *arg);
	/* It ended; pending calls have had their callbacks (-ECANCELED). */
	void (*closed)(void *arg);
	void *arg;
};

extern const struct nd_conn_ops nd_peer_ops;

struct nd_client *nd_peer_client(struct nd_conn *c);

/* Moves what the client queued into the connection's output. Call after
 * starting requests outside a callback of this connection. */
void nd_peer_flush(struct nd_conn *c);

#endif
