/*
 * The node service on the master: the registry of worker nodes (this file's
 * stage), then the task table and the scheduler.
 *
 * Ownership: all service state lives on shard 0 (the service shard) and is
 * touched only by its thread. A request that arrives on another shard travels
 * there as a ticket over MSG_RING (nd_svc_forward) and its packed reply comes
 * back the same way; the ticket is dropped if its connection closed meanwhile.
 * Node events (a worker's stream closing) are posted the same way.
 */
#ifndef ND_NODE_SERVICE_H
#define ND_NODE_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"
#include "core/list.h"
#include "noded/wire.h"

struct nd_svc;

/* A request forwarded to the service, and its way back. */
struct nd_ticket {
	struct nd_list link;          /* in the connection's open tickets */
	struct nd_conn *conn;         /* NULL once that connection closed */
	struct nd_shard *home;        /* the connection's shard */
	uint64_t conn_serial;         /* which connection (for node streams) */
	char peer[64];                /* the connection's peer address */
	uint8_t *req;                 /* the request Frame body, packed */
	size_t req_len;
	uint8_t *reply;               /* a whole frame with its header */
	size_t reply_len;
	struct nd_list held;          /* svc.held: ack delayed by a watcher */
	uint64_t held_task;
};

/*
 * Hooks the master's server runs on each shard (nd_server.shard_start):
 * shard 0 creates the service and its heartbeat tick.
 */
void nd_svc_shard_start(struct nd_shard *s, void *arg);

/*
 * Sends the request frame body (len bytes, copied) from connection c to the
 * service; its reply frame is queued on c when it comes back. peer and serial
 * identify the connection to the service.
 */
void nd_svc_forward(struct nd_conn *c, const uint8_t *body, size_t len);

/* A worker registered node on its AssignTask stream (connection serial,
 * opened by request stream_id). */
void nd_svc_stream_opened(struct nd_shard *from, const char *node,
			  uint64_t serial, uint64_t stream_id);

/* The worker whose AssignTask stream ran on connection serial is gone. */
void nd_svc_stream_closed(struct nd_shard *from, const char *node,
			  uint64_t serial);

/* Drops the connection from every ticket it still has open; when it sent
 * run or watch, tells shard 0 to drop its watchers and their congestion. */
void nd_svc_conn_closed(struct nd_conn *c);

/* A watcher's connection fell behind (true) or caught up (false): output
 * acks to the workers feeding it wait meanwhile (backpressure). */
void nd_svc_congested(struct nd_conn *c, bool congested);

#endif
