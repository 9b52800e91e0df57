/*
 * A shard: one thread, pinned to one CPU, with its own io_uring, provided
 * buffer ring, decode arena and connections. Nothing in a shard is touched by
 * another thread except the atomics marked so; cross-shard work travels as
 * IORING_OP_MSG_RING completions (nd_shard_post), and runs on the target
 * shard's thread only, never on the sender's.
 */
#ifndef ND_CORE_SHARD_H
#define ND_CORE_SHARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <liburing.h>

#include "core/config.h"
#include "core/list.h"
#include "core/metrics.h"
#include "core/time.h"
#include "core/u64map.h"
#include "wire/arena.h"

struct nd_server;
struct nd_shard;
struct nd_conn;

/* What a completion's user_data points at, in its low 3 bits. */
enum nd_tag {
	ND_TAG_IGNORE = 0,  /* nothing to do (cancel results, sent messages) */
	ND_TAG_ACCEPT,      /* multishot accept on the listener */
	ND_TAG_RECV,        /* multishot recv; pointer: conn */
	ND_TAG_SEND,        /* send; pointer: conn */
	ND_TAG_MSG,         /* cross-shard message; pointer: struct nd_msg */
	ND_TAG_TIMER,       /* periodic sweep */
	ND_TAG_WAKE,        /* eventfd read: the main thread wants attention */
	ND_TAG_OP,          /* pointer: struct nd_op, whose callback runs */
};

/*
 * A one-off operation with its own completion callback (connects, helper
 * sockets, pipes, timers of the node service). Embed it in the operation's
 * context and use ND_UD(&ctx->op, ND_TAG_OP) as user_data.
 */
struct nd_op {
	void (*cb)(struct nd_shard *s, struct nd_op *op,
		   struct io_uring_cqe *cqe);
};

#define ND_TAG_MASK 7u
#define ND_UD(ptr, tag) ((uint64_t)(uintptr_t)(ptr) | (tag))

/* Counters a shard keeps for itself; summed by whoever reports them. */
struct nd_shard_stats {
	uint64_t accepted;
	uint64_t closed;
	uint64_t requests;
	uint64_t errors;          /* error replies sent */
	uint64_t bytes_in, bytes_out;
	uint64_t recv_enobufs;    /* buffer ring ran dry */
	uint64_t sends;
	uint64_t paused;          /* backpressure engaged */
	uint64_t loops;
};

/*
 * A function to run on another shard's thread, embedded in the object it
 * carries (a ticket, a push, a handed-off connection...), so that posting
 * allocates nothing and cannot fail. The fields are nd_shard_post's: the
 * caller only provides the storage.
 */
struct nd_msg {
	void (*fn)(struct nd_shard *to, struct nd_msg *m);
	struct nd_msg *next;            /* sender: refused, to send again;
					 * target: arrived ahead of its turn */
	struct nd_shard *to;
	unsigned from;                  /* the sender's shard id */
	uint32_t seq;                   /* its order from `from` to `to` */
};

struct nd_shard {
	unsigned id;
	struct nd_server *srv;
	const struct nd_config *cfg;
	pthread_t thread;
	int setup_err;                  /* thread start-up result */
	struct io_uring ring;
	unsigned ring_flags;            /* setup flags the kernel accepted */

	struct io_uring_buf_ring *br;   /* provided receive buffers, group 0 */
	uint8_t *bufs;
	unsigned buf_count, buf_size;
	unsigned bufs_returned;         /* added since the last advance */

	struct nd_arena arena;          /* protobuf-c decoding, reset per batch */

	struct nd_list conns;           /* by last activity, oldest first */
	struct nd_list dirty;           /* output queued, no send in flight */
	struct nd_list lazy;            /* only lazy output queued */
	struct nd_list rearm;           /* recv to re-arm after ENOBUFS/resume */
	struct nd_list stalled;         /* paused or closing with output left */
	struct nd_list timed;           /* with a protocol deadline armed */
	struct nd_list dead;            /* killed, waiting for their ops */
	struct nd_list tls_held;        /* TLS conns whose OpenSSL holds its
					 * record buffers, by last use
					 * (tls/conn_tls.c) */
	struct nd_u64map serials;       /* protocol connection serial -> conn */
	unsigned nconns;
	size_t freed_bytes;             /* big connection buffers freed since
					 * the last nd_shard_trim */
	uint64_t trim_due_ms;           /* when to call it (0: not due) */
	_Atomic unsigned load;          /* nconns, for the acceptor (atomic) */

	int wake_fd;                    /* eventfd, written by the main thread */
	uint64_t wake_val;
	uint64_t now_ms;                /* nd_mono_coarse_ms(), each loop */
	bool draining;
	uint64_t drain_deadline_ms;
	struct __kernel_timespec tick;

	/* What runs on this shard besides connections (the node service):
	 * start after set-up, tick every 250 ms, drain on SIGTERM (return
	 * true while it still has work to finish), stop once no shard can
	 * send it anything any more. */
	void *svc;
	void (*svc_tick)(struct nd_shard *s);
	bool (*svc_drain)(struct nd_shard *s);
	void (*svc_stop)(struct nd_shard *s);  /* after every shard drained */
	void (*svc_flush)(struct nd_shard *s); /* before each wait */
	bool drained;
	/* The HTTP API's state on this shard (its counters), or NULL: made
	 * by the API on this thread (malloc), freed with the shard. */
	void *api;

	/* Cross-shard messages (nd_shard_post); the arrays have one entry
	 * per shard. */
	uint32_t *tx_seq;               /* next seq to each target */
	uint32_t *rx_seq;               /* next seq expected from each sender */
	struct nd_msg *early;           /* delivered ahead of their turn, by
					 * (from, seq); run once it comes */
	struct nd_msg *retry;           /* refused by their target's ring */
	struct nd_msg **retry_tail;
	struct nd_op retry_op;          /* the timer that sends them again */
	struct __kernel_timespec retry_ts;
	bool retry_armed;
	uint64_t retry_log_ms;          /* last shard.msg_ring_failed */
	unsigned fault_msg_ring;        /* test hook: MSG_RINGs left to spoil
					 * (NODED_FAULT_MSG_RING) */
	_Atomic uint64_t msgs_sent;     /* posted to another shard (atomic) */
	_Atomic uint64_t msgs_run;      /* run here from another (atomic) */
	/* now_ms of this shard's last tick (atomic): the service manager's
	 * watchdog is fed only while every shard's stamp is fresh
	 * (core/notify.h). UINT64_MAX once its loop has ended (drained). */
	_Atomic uint64_t alive_ms;

	struct nd_shard_stats st;
	struct nd_metrics m;
	unsigned cur_method;            /* native method being handled */
};

/* Returns an SQE, submitting first when the SQ is full. Never NULL. */
struct io_uring_sqe *nd_shard_sqe(struct nd_shard *s);

/*
 * Runs fn(to, m) on shard to's thread, exactly once. Called on from's thread;
 * m is storage inside the object that travels (the caller recovers it with
 * nd_container_of in fn). It cannot fail: nothing is allocated, and a
 * MSG_RING the target's ring refuses (a full or overflowing CQ, -EAGAIN,
 * a fault injected for tests) is kept on from's retry list and sent again
 * about a millisecond later, as often as it takes; it never runs on from.
 * Messages from one shard to another run in the order they were posted,
 * retried or not (the target holds one that overtook a retried one until
 * its turn). to == from: fn runs before nd_shard_post returns.
 *
 * Ownership: from the call until fn runs, the object belongs to the
 * messaging layer; the caller must not touch it, and fn owns it (frees it
 * or posts it on). One object carries one message at a time.
 *
 * Shutdown: the drain barrier (shard.c, all_drained) lets no shard exit
 * while a message is posted but not yet run, retries included, so every
 * message posted before the last shard drained is delivered. For that, a
 * shard that counted itself drained posts only in answer to a message (its
 * svc_tick no longer runs); svc_stop, after the barrier, posts nothing. A
 * shard that still holds messages when it stops anyway (its ring failed)
 * logs shard.msgs_dropped and drops them without running them (their
 * objects are not freed).
 *
 * Test hook: NODED_FAULT_MSG_RING=N in the environment makes each shard's
 * first N MSG_RING submissions fail in the kernel (they are aimed at a
 * descriptor that is not a ring: -EBADFD), as a refusing target would.
 */
void nd_shard_post(struct nd_shard *from, struct nd_shard *to,
		   struct nd_msg *m,
		   void (*fn)(struct nd_shard *, struct nd_msg *));

/*
 * Runs visit(s, arg) on every shard's own thread in turn (0, 1, ...), then
 * done(from, arg) back on from: how a scrape reads counters that only their
 * shard writes. 0, or -ENOMEM (nothing runs).
 */
int nd_shard_tour(struct nd_shard *from,
		  void (*visit)(struct nd_shard *s, void *arg),
		  void (*done)(struct nd_shard *from, void *arg), void *arg);

/* Sets up the ring with the best flags this kernel takes. Returns 0 or
 * -errno; *flags_out gets the flags used. */
int nd_uring_init(struct io_uring *ring, unsigned entries, unsigned cq_entries,
		  unsigned *flags_out);

/*
 * Asks the allocator to give the free memory of this thread back to the
 * system (mimalloc keeps freed pages committed until something collects
 * them; a shard that goes quiet after a burst would hold them for good).
 * A no-op in the sanitizer build, which has its own allocator.
 */
void nd_shard_trim(struct nd_shard *s);

/* Makes s's connection lists empty (conns, dirty, lazy, rearm, stalled,
 * timed, dead): one step of setting up a shard. */
void nd_shard_init_lists(struct nd_shard *s);

#endif
