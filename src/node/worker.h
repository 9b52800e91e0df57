/*
 * `noded worker`: keeps a connection to the master (reconnecting with
 * backoff), registers on an AssignTask stream, and reports its status every
 * heartbeat interval. Runs one shard with no listener.
 */
#ifndef ND_NODE_WORKER_H
#define ND_NODE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nd_worker_cfg {
	const char *master;        /* "HOST:PORT" */
	const char *name;          /* default: host name */
	const char **labels;       /* "KEY=VALUE" each */
	size_t nlabels;
	unsigned slots;            /* default: number of CPUs */
	const uint8_t *token;      /* the master's token, or NULL */
	size_t token_len;
	uint8_t node_id[16];       /* who it is (node_id.h): kept in its
				    * state dir, or random per process */
	bool drain;                /* SIGTERM lets running tasks finish */
	uint32_t drain_timeout_ms; /* bound on that wait; 0: none */
};

/*
 * Runs until SIGINT/SIGTERM; returns the process exit status. Stopping is
 * said to the master (NodeLeave), so the node ends LEFT, not DEAD: without
 * drain, the running tasks are stopped at once and end LOST "worker
 * stopping" (retried when they have retries); with drain, the master sends
 * no new task and the running ones finish first, until drain_timeout_ms or
 * a second signal.
 */
int nd_worker_run(const struct nd_worker_cfg *wc);

/* The same in parts, for running workers inside another process (noded
 * dev). wc must outlive the worker. new prints why it fails. */
struct nd_worker;
int nd_worker_new(struct nd_worker **out, const struct nd_worker_cfg *wc);
int nd_worker_start(struct nd_worker *w);
void nd_worker_stop(struct nd_worker *w);
void nd_worker_free(struct nd_worker *w);

#endif
