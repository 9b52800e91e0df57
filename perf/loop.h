/*
 * Many client-library connections moved by one io_uring from one thread,
 * the library used sans-I/O (noded-bench ping and workers). The owner arms
 * its own receives and feeds what arrives to each client; this module does
 * the sending, and runs the loop: a connection whose client has queued
 * output is marked; nd_perf_loop_step() starts the sends of the marked
 * ones, waits, and hands each completion to the owner. At
 * most one send per connection is in the kernel, of bytes copied out of the
 * client: callbacks keep queueing requests while a send is in flight, which
 * may move the client's own buffer.
 */
#ifndef ND_PERF_LOOP_H
#define ND_PERF_LOOP_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "noded/client.h"

/* The sending state of one connection, embedded in the owner's. A zeroed
 * struct is valid; the owner sets c, fd and ud. */
struct nd_perf_conn {
	struct nd_client *c;
	int fd;
	uint64_t ud;            /* user_data of its sends: the owner's tag */
	bool dead;              /* given up by the owner: nothing more is sent */
	bool marked;            /* on the loop's list */
	bool sending;           /* a send is in the kernel */
	struct nd_buf buf;      /* the bytes of that send; [off, len) left */
	size_t off;
	/* TLS (NULL: plaintext): the client's session, moved over memory
	 * BIOs by the loop (nd_perf_tls_start); rb takes what arrives. */
	struct ssl_st *ssl;
	struct bio_st *rb, *wb;
};

/* Moves pc's client onto memory BIOs when it is connected over TLS. 0, or
 * -ENOMEM. */
int nd_perf_tls_start(struct nd_perf_conn *pc);
/* Received ciphertext p[0..n) of pc: decrypted and fed to its client.
 * What nd_client_feed returns (< 0: the connection is lost), or -EPROTO
 * on a TLS error. */
int nd_perf_tls_feed(struct nd_perf_conn *pc, const uint8_t *p, size_t n);

struct nd_perf_loop {
	struct io_uring ring;
	/* Operations in the kernel. Sends are counted up and down here; the
	 * owner counts its own operations both ways. */
	unsigned ops;
	bool finishing;         /* tearing down: nothing more is sent */
	struct nd_perf_conn **marked;
	unsigned nmarked;
	/* A send failed or could not start (err: a negative errno; 0 bytes
	 * sent counts as -EPIPE): the owner gives the connection up (sets
	 * dead). Not called while finishing. */
	void (*lost)(struct nd_perf_conn *pc, int err);
	/* Each completion, in order; the owner finds its operation by
	 * user_data (a send's goes to nd_perf_sent()). */
	void (*complete)(struct nd_perf_loop *l, const struct io_uring_cqe *cqe);
};

/* Sets up the ring (nd_perf_ring_init, sized for nconns) and the marked
 * list (room for nconns). lost and complete are the caller's to set. 0 or
 * -errno;
 * nd_perf_loop_exit() is safe after a failure. */
int nd_perf_loop_init(struct nd_perf_loop *l, unsigned nconns);

/* Frees the ring (operations still in it are cancelled) and the list. */
void nd_perf_loop_exit(struct nd_perf_loop *l);

/* pc's client has queued output: sent at the next nd_perf_loop_wait(). */
void nd_perf_mark(struct nd_perf_loop *l, struct nd_perf_conn *pc);

/* A send of pc completed with res (the owner's reap found pc by its ud):
 * the rest of a short send, or the next one, is started. */
void nd_perf_sent(struct nd_perf_loop *l, struct nd_perf_conn *pc, int res);

/*
 * One turn of the loop: starts the sends of the marked connections,
 * submits, waits up to wait_ns (< 0: not at all) for one completion, and
 * hands every completion there is to l->complete (one batched
 * cq_advance). Returns 0 (also on timeout or a signal) or the io_uring
 * error.
 */
int nd_perf_loop_step(struct nd_perf_loop *l, int64_t wait_ns);

/* Frees pc's send buffer (after the loop's exit). */
void nd_perf_conn_free(struct nd_perf_conn *pc);

#endif
