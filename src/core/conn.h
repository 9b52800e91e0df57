/*
 * A transport connection on a shard: a socket driven by io_uring (multishot
 * recv from the shard's buffer ring, coalesced sends), with bounded output,
 * backpressure, idle and stall timeouts, deadlines set by the protocol, and
 * a server-wide budget for kept input. The protocol on top (src/rpc) sees
 * only bytes in (nd_conn_ops.data) and bytes out (nd_conn_reserve/commit),
 * never the socket, so another transport can replace this one.
 *
 * Lifecycle: the shard adopts an accepted fd (nd_conn_adopt); the protocol's
 * state lives right after struct nd_conn in the same allocation
 * (nd_conn_state). nd_conn_close() starts the end; the conn is freed once no
 * io_uring operation refers to it any more, after ops->close ran.
 *
 * Out of memory costs only the connection it happens on, and never leaves
 * it half working: at accept, nd_conn_adopt returns NULL (fd closed);
 * kept input that cannot grow is refused (ops->input_full says why, then
 * close with flush); output that cannot grow closes the connection with
 * flush, so its peer sees the replies already queued, then EOF, never a
 * reply that silently does not come. What the protocol allocates itself
 * follows the same rule (rpc/server.c answers RESOURCE_EXHAUSTED and
 * closes). Other connections of the shard go on; nothing leaks
 * (tests/core/test_conn_oom.c fails each allocation of that path in turn).
 */
#ifndef ND_CORE_CONN_H
#define ND_CORE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "core/list.h"
#include "core/shard.h"

enum {
	ND_CONN_RECV_ARMED = 1 << 0,  /* a multishot recv is in the kernel */
	ND_CONN_SENDING = 1 << 1,     /* a send is in the kernel */
	ND_CONN_PAUSED = 1 << 2,      /* output over the watermark: not reading */
	ND_CONN_CLOSING = 1 << 3,     /* no more input; close once flushed */
	ND_CONN_DEAD = 1 << 4,        /* shut down; freed when ops reach 0 */
	ND_CONN_EOF = 1 << 5,         /* the peer closed its side */
	ND_CONN_WR_SHUT = 1 << 6,     /* closing: flushed, FIN sent, lingering */
	ND_CONN_OVERLOAD = 1 << 7,    /* over max_conns: refuse in ops->open */
	ND_CONN_WANT_DRAIN = 1 << 8,  /* call ops->drained when output is low */
	ND_CONN_HELD = 1 << 9,        /* the protocol takes no input for now */
	ND_CONN_SNIFF = 1 << 10,      /* accepted in plaintext, no byte yet */
};

struct nd_conn_ops;
struct nd_tls;
struct nd_tls_conn;

struct nd_conn {
	struct nd_shard *shard;
	const struct nd_conn_ops *ops;  /* the protocol on top */
	void *ctx;                    /* the protocol's, from nd_conn_adopt */
	int fd;
	unsigned flags;
	unsigned inflight;            /* io_uring operations referring to us */
	uint64_t last_active_ms;
	uint64_t stall_since_ms;
	uint64_t deadline_ms;         /* see nd_conn_deadline */
	struct nd_list link;          /* shard->conns, by activity */
	struct nd_list dirty;         /* shard->dirty */
	struct nd_list lazy;          /* shard->lazy */
	struct nd_list rearm;         /* shard->rearm */
	struct nd_list stall;         /* shard->stalled */
	struct nd_list timed;         /* shard->timed: a deadline is set */

	struct nd_buf in;             /* unconsumed input (partial frame) */
	struct nd_buf out;            /* queued output */
	struct nd_buf tx;             /* output being sent: tx.data[tx_off..) */
	size_t tx_off;
	struct nd_tls_conn *tls;      /* TLS under us (src/tls), or NULL */
};

/* What the protocol on top of a connection provides. */
struct nd_conn_ops {
	size_t state_size;            /* bytes of protocol state per conn */
	/* A new connection; state is zeroed. */
	void (*open)(struct nd_conn *c);
	/*
	 * Bytes received. Returns how many it consumed; it stops early (leaving
	 * a partial frame, or more) when !nd_conn_readable(c). The rest is kept
	 * and handed back with more bytes later.
	 */
	size_t (*data)(struct nd_conn *c, const uint8_t *p, size_t len);
	/* The connection was silent for idle_timeout; it is closed after. */
	void (*idle)(struct nd_conn *c);
	/* The server is stopping: say goodbye; it is closed after. */
	void (*drain)(struct nd_conn *c);
	/* Last call: release protocol state. */
	void (*close)(struct nd_conn *c);
	/* Queued output fell to a quarter of max_output after the protocol
	 * asked with nd_conn_want_drain() (optional). */
	void (*drained)(struct nd_conn *c);
	/* Encoded noded frames for this connection from elsewhere in the
	 * server (the node service's replies and stream items); optional:
	 * without it they are queued as they are. */
	void (*deliver)(struct nd_conn *c, const uint8_t *frames, size_t len);
	/* The deadline set with nd_conn_deadline() passed: say why
	 * (optional). The connection is closed after, with flush. */
	void (*expired)(struct nd_conn *c);
	/* Input it left could not be kept (optional): err is -EMSGSIZE
	 * (over this connection's limit, max_frame plus one receive ring),
	 * -ENOBUFS (the server's input_budget is used up by the kept input
	 * of all connections) or -ENOMEM. Say why; the connection is closed
	 * after, with flush. Without it the connection is dropped. */
	void (*input_full)(struct nd_conn *c, int err);
	/* The peer speaks the other transport (optional): plaintext on a
	 * TLS port (tls_expected; TLS is gone, output is plaintext) or a TLS
	 * ClientHello on a plaintext port. Say so in plaintext; the
	 * connection is closed after, with flush. */
	void (*wrong_transport)(struct nd_conn *c, bool tls_expected);
};

static inline void *nd_conn_state(struct nd_conn *c)
{
	return c + 1;
}

/*
 * Takes ownership of fd, runs ops->open and starts reading; ctx is left in
 * c->ctx for the protocol. With overload, ops->open sees ND_CONN_OVERLOAD and
 * refuses the peer. Returns the connection, or NULL (fd closed) when out of
 * memory. The connection may already be closing when returned.
 */
struct nd_conn *nd_conn_adopt(struct nd_shard *s, int fd,
			      const struct nd_conn_ops *ops, void *ctx,
			      bool overload);

/*
 * nd_conn_adopt for a connection accepted on a listener: with tls (the
 * server end), TLS runs under the protocol; without, a peer whose first
 * bytes are a TLS ClientHello is told (ops->wrong_transport) and closed.
 */
struct nd_conn *nd_conn_adopt_accepted(struct nd_shard *s, int fd,
				       const struct nd_conn_ops *ops,
				       void *ctx, bool overload,
				       struct nd_tls *tls);

/*
 * Connects to addr from shard s with io_uring (over TLS, client end, when
 * the server's cfg->tls_connect is set). done(arg, c, 0) runs with the
 * adopted connection (ops/ctx as for nd_conn_adopt), or done(arg, NULL, err)
 * when the socket or the connect failed (err is -errno). Returns 0 when the
 * attempt started (done will run exactly once), or -errno.
 */
int nd_conn_connect(struct nd_shard *s, const struct sockaddr_storage *addr,
		    socklen_t addrlen, const struct nd_conn_ops *ops,
		    void *ctx,
		    void (*done)(void *arg, struct nd_conn *c, int err),
		    void *arg);

/* May the protocol consume more input now (not paused, not closing)? */
static inline bool nd_conn_readable(const struct nd_conn *c)
{
	return !(c->flags & (ND_CONN_PAUSED | ND_CONN_CLOSING | ND_CONN_DEAD |
			     ND_CONN_HELD));
}

/*
 * The protocol takes no more input until released (hold false), for its own
 * reasons (an HTTP client pipelining more than it will queue). Reading goes
 * on, so a peer's close is still seen, until 64 KiB are kept; then it stops
 * until the release, which hands the kept input over.
 */
void nd_conn_hold(struct nd_conn *c, bool hold);

/*
 * Arms (ms > 0: that many ms from now, replacing any earlier one) or clears
 * (ms == 0) the protocol's deadline on c: when it passes while c is readable,
 * ops->expired runs and c is closed. For handshakes and requests that must
 * arrive whole in time however slowly their bytes trickle (the idle timeout
 * is reset by every byte). Checked on the shard's 250 ms tick.
 */
void nd_conn_deadline(struct nd_conn *c, uint32_t ms);

/* Is a deadline armed on c? */
static inline bool nd_conn_has_deadline(const struct nd_conn *c)
{
	return nd_list_linked(&c->timed);
}

/*
 * Pauses reading c when its queued output is over max_output (backpressure,
 * then the stall timeout), as happens by itself after each call to
 * ops->data; for protocols that also queue output at other times (HTTP
 * responses that complete later).
 */
void nd_conn_check_output(struct nd_conn *c);

/*
 * Room for n bytes of output; write them and call nd_conn_commit(c, n).
 * Returns NULL when out of memory or when the conn is dead (or its output
 * shut). Out of memory closes c with flush (see "Out of memory" above).
 */
uint8_t *nd_conn_reserve(struct nd_conn *c, size_t n);
void nd_conn_commit(struct nd_conn *c, size_t n);

/* Copies p[0..n) into the output (reserve + commit). false when the conn is
 * dead or out of memory (which closes it, as nd_conn_reserve). */
bool nd_conn_write(struct nd_conn *c, const void *p, size_t n);

/*
 * Queues p[0..n) like nd_conn_write, but starts no send for it: it leaves
 * with the next output that does, or at the next tick (nd_conn_sweep), or
 * when the conn closes. For acknowledgements the peer does not wait on,
 * which then cost it no wake-up and no read of their own.
 */
bool nd_conn_write_lazy(struct nd_conn *c, const void *p, size_t n);

/* Bytes queued for sending (not yet taken by the kernel). */
size_t nd_conn_queued(const struct nd_conn *c);

/* Asks for one ops->drained call once queued output is low again. */
void nd_conn_want_drain(struct nd_conn *c);

/*
 * Ends the connection. With flush, queued output is sent first (bounded by
 * the stall timeout) and no more input is read; without, it is dropped.
 */
void nd_conn_close(struct nd_conn *c, bool flush);

/* Completion handlers, called by the shard loop. */
void nd_conn_on_recv(struct nd_conn *c, struct io_uring_cqe *cqe);
void nd_conn_on_send(struct nd_conn *c, struct io_uring_cqe *cqe);
/* Before each submit: start sends for dirty conns, re-arm receives. */
void nd_conn_flush_all(struct nd_shard *s);
/* On each tick: lazy output goes out; idle and stall timeouts. */
void nd_conn_sweep(struct nd_shard *s);
/* Frees the conns that died and that no operation refers to any more.
 * Once a few MiB of buffers were freed, the allocator is asked to return
 * its free memory to the system (nd_shard_trim). */
void nd_conn_reap(struct nd_shard *s);
/* "HOST:PORT" of the peer ("" when unknown). */
void nd_conn_peer_name(const struct nd_conn *c, char *buf, size_t len);
/* Server stopping: tell every conn. */
void nd_conn_drain_all(struct nd_shard *s);
/* Drain deadline passed: drop everything. */
void nd_conn_kill_all(struct nd_shard *s);

#endif
