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
#include <stdio.h>

#include "core/conn.h"
#include "core/list.h"
#include "noded/wire.h"

struct nd_svc;
struct nd_svc_gone;

/*
 * What the service knows of a connection: the first member of the state of
 * every protocol that talks to it (nd_conn_state), so it is found from the
 * conn. Set up by nd_svc_peer_init in ops->open, ended by nd_svc_peer_close
 * in ops->close.
 */
struct nd_svc_peer {
	uint64_t serial;              /* unique across shards */
	char peer[64];                /* "HOST:PORT" of the other end */
	struct nd_list tickets;       /* requests forwarded to the service */
	bool congested;               /* told the service we lag as a watcher */
	bool watched;                 /* sent run or watch: may have watchers */
	struct nd_svc_gone *gone;     /* posted at close when watched */
};

static inline struct nd_svc_peer *nd_svc_peer(struct nd_conn *c)
{
	return nd_conn_state(c);
}

/* Registers c's serial on its shard (pushes find it): 0 or -ENOMEM. */
int nd_svc_peer_init(struct nd_conn *c);
/* Unregisters c, drops its open tickets, clears its congestion; when it
 * sent run or watch, tells shard 0 to drop its watchers. */
void nd_svc_peer_close(struct nd_conn *c);

/* A request forwarded to the service, and its way back. */
struct nd_ticket {
	struct nd_msg msg;            /* to shard 0 and back (nd_shard_post) */
	struct nd_list link;          /* in the connection's open tickets */
	struct nd_conn *conn;         /* NULL once that connection closed */
	struct nd_shard *home;        /* the connection's shard */
	uint64_t conn_serial;         /* which connection (for node streams) */
	char peer[64];                /* the connection's peer address */
	uint8_t *req;                 /* the request Frame body, packed */
	size_t req_len;
	const Noded__Frame *req_f;    /* req decoded, while forwarded on
				       * shard 0 itself (nd_svc_forward) */
	uint8_t *reply;               /* a whole frame with its header */
	size_t reply_len;
	struct nd_list held;          /* svc.held: ack delayed by a watcher */
	uint64_t held_task;
	uint64_t t0_ns;               /* forwarded (monotonic) */
	unsigned method;              /* native method, for metrics; 0: other */
	bool error;                   /* the reply is an Error */
	bool lazy;                    /* nd_out.lazy */
};

#define ND_OUTPUT_CAP_DEFAULT (1ull << 20)
#define ND_TASK_HISTORY_DEFAULT 10000ull
#define ND_OUTPUT_BUDGET_DEFAULT (256ull << 20)

struct nd_task_ids;

/*
 * The node service's settings (the transport's are in core/config.h). A
 * zeroed struct takes every default (nd_svc_config_defaults). Read-only
 * once the shards run.
 */
struct nd_svc_config {
	uint32_t heartbeat_ms;       /* interval asked of workers; 1 s */
	uint32_t heartbeat_timeout_ms; /* silence before a node is dead; 3 s */
	uint32_t lease_ms;           /* an attempt's lease (fencing); the
				      * larger of 10 s and the timeout */
	uint64_t output_cap;         /* task output the master keeps; 1 MiB */
	uint64_t task_history;       /* finished tasks the master keeps; 10000 */
	uint64_t output_budget;      /* kept output over all tasks; 256 MiB */
	uint64_t max_queue;          /* tasks waiting on the master; 1000000 */
	uint64_t forget_dead_ms;     /* a node DEAD or LEFT this long is
				      * forgotten; 24 h; ND_FORGET_NEVER:
				      * never (--forget-dead 0) */
	const char *ledger_trace;    /* --ledger-trace: a file for every
				      * applied ledger event, and FILE.snapshot
				      * of the ledger at exit; NULL: none */
	/* Replication: the raft shard's settings (src/raft/raft.h), the
	 * server having one service shard for it; NULL: none. */
	const struct nd_raft_config *raft;
	const char *client_address;  /* this master's, as clients reach it
				      * (the members' table); NULL: none */
	const char *http_address;
	struct nd_task_ids *ids;     /* the reservation of task ids (not
				      * owned), or NULL: ids from the clock
				      * (task_ids.h) */
};

#define ND_FORGET_NEVER UINT64_MAX
#define ND_FORGET_DEAD_DEFAULT_S 86400

/* Fills every zero field with its default. */
void nd_svc_config_defaults(struct nd_svc_config *cfg);

/*
 * Hooks the master's server runs on each shard (nd_server.shard_start):
 * shard 0 creates the service and its heartbeat tick. arg: the service's
 * settings, defaults filled (const struct nd_svc_config *; the caller
 * keeps it for the server's life), or NULL for every default.
 */
void nd_svc_shard_start(struct nd_shard *s, void *arg);

/* The settings of the service that s's server runs (the shard_start arg),
 * from any of its shards. */
const struct nd_svc_config *nd_svc_cfg(const struct nd_shard *s);

/*
 * Sends the request frame body (len bytes, copied) from connection c to the
 * service; its reply frame is queued on c when it comes back. peer and serial
 * identify the connection to the service. f, when not NULL, is body as
 * nd_frame_decode gave it: on shard 0 the service takes it instead of
 * decoding body again (a frame built otherwise, as the HTTP API's, may hold
 * NULL where a decoded one has ""; pass NULL). 0, or -ENOMEM.
 */
int nd_svc_forward(struct nd_conn *c, const Noded__Frame *f,
		   const uint8_t *body, size_t len);

/*
 * Connection c (on its shard) asks to register node, with the worker's
 * node id (id_len bytes, 0..16; copied), on its AssignTask stream opened by
 * request stream_id. Shard 0 decides and answers on c's shard with
 * nd__rpc_assign_registered (rpc/server.h): accepted, or refused because a
 * live node of that name has another id. A registration that replaces an
 * older one (same id, another connection) ends the older stream the same
 * way.
 */
void nd_svc_stream_opened(struct nd_conn *c, const char *node,
			  const uint8_t *id, size_t id_len,
			  uint64_t stream_id);

/* The worker whose AssignTask stream ran on connection serial is gone. */
void nd_svc_stream_closed(struct nd_shard *from, const char *node,
			  uint64_t serial);

/* A watcher's connection fell behind (true) or caught up (false): output
 * acks to the workers feeding it wait meanwhile (backpressure). */
void nd_svc_congested(struct nd_conn *c, bool congested);

/* The service's figures (nodes, slots, tasks, queue, dispatch latency) in
 * the Prometheus text format; on shard 0 only. */
void nd_svc_metrics(struct nd_shard *s0, FILE *f);

#endif
