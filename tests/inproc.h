/*
 * A shard in the test's own process: an io_uring but no thread, whose
 * completions the test posts itself the way the kernel would, and the node
 * service on it (a one-shard server, so service requests are answered
 * synchronously). The libFuzzer harness (fuzz/conn_harness.c) and the
 * in-process connection tests (core/test_conn_oom.c) drive connections
 * through it; connections have fd -1, so what the ring does with their
 * SQEs is dropped (nd_inproc_drain_ring).
 */
#ifndef ND_TEST_INPROC_H
#define ND_TEST_INPROC_H

#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"
#include "core/server.h"
#include "node/service.h"

struct nd_inproc {
	struct nd_shard s;
	struct nd_server srv;
	struct nd_config cfg;           /* filled by the caller before init */
	struct nd_svc_config svc_cfg;   /* likewise */
	/* Optional: sees each send's bytes as the kernel takes them. */
	void (*sent)(struct nd_conn *c, const uint8_t *p, size_t n);
};

/* Sets up in->s with in->cfg and in->svc_cfg (the caller's, defaults
 * applied) and starts the node service on it; aborts when it cannot. */
void nd_inproc_init(struct nd_inproc *in);

/* Drops whatever the kernel answered for the SQEs queued (fd -1). */
void nd_inproc_drain_ring(struct nd_inproc *in);

/* Completes c's cancels and sends (each taken whole) as the kernel
 * would, until nothing moves. */
void nd_inproc_settle(struct nd_inproc *in, struct nd_conn *c);

/* Delivers p[0..n) (n at most one receive buffer) to c's multishot recv,
 * as one completion from buffer 0; the shard's arena is reset after, as
 * its loop does. */
void nd_inproc_recv(struct nd_inproc *in, struct nd_conn *c, const void *p,
		    size_t n);

/* Ends c (the peer resets it): closed without flush, its pending
 * operations completed as cancelled, freed (nd_conn_reap). */
void nd_inproc_drop(struct nd_inproc *in, struct nd_conn *c);

#endif
