/*
 * Transport connections: see conn.h for the contract.
 *
 * Input: one multishot recv per connection, filled from the shard's provided
 * buffer ring, so an idle connection holds no receive buffer. Bytes are handed
 * to the protocol straight from the ring buffer; only what it leaves (a frame
 * spanning buffers) is copied into c->in. The buffer goes back to the ring at
 * once.
 *
 * Kept input is bounded twice: per connection by max_frame plus one receive
 * ring (in_limit), and over the whole server by cfg->input_budget, counted
 * in srv->input_bytes by buffer capacity. A connection that would pass
 * either is refused (ops->input_full) and closed; the protocol keeps the
 * frame limit small until the peer is authenticated, so strangers cannot
 * use the budget up alone. A held connection stops reading at HOLD_KEEP.
 * Buffers shrink as they empty, and the memory of big ones that were freed
 * goes back to the system on the next tick (nd_shard_trim).
 *
 * Output (conn_out.c): the protocol appends to c->out; before each submit
 * the shard starts one send per dirty connection (all replies of an
 * iteration coalesced). While a send is in flight new output collects in
 * c->out; the two buffers swap.
 *
 * Backpressure: once queued output passes max_output the connection is paused
 * (its recv cancelled, so the kernel's receive window closes on the peer) and
 * resumed when output falls below a quarter of it. A connection paused longer
 * than the stall timeout is dropped.
 *
 * Closing with flush: input is discarded, output sent, then FIN (SHUT_WR) and
 * we linger until the peer's EOF or the stall timeout, so the peer reads our
 * last frame instead of an RST. Freeing waits until no io_uring operation
 * refers to the connection; that happens in nd_conn_reap(), never inside a
 * callback.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/conn_int.h"
#include "core/log.h"
#include "core/server.h"
#include "tls/conn_tls.h"
#include "tls/tls.h"

#define IN_MIN 512
#define HOLD_KEEP (64 * 1024)  /* input kept while held before reading stops */
#define TRIM_AFTER (4u << 20)  /* freed buffer bytes before nd_shard_trim */
/* mimalloc decommits freed pages only once they have been free for its
 * delays (25 ms for pages, 500 ms for segments): collecting sooner finds
 * nothing to return. */
#define TRIM_DELAY_MS 1000

size_t nd__conn_queued(const struct nd_conn *c)
{
	return c->out.len + (c->tx.len - c->tx_off) +
	       (c->tls ? nd__tls_queued(c) : 0);
}

size_t nd_conn_queued(const struct nd_conn *c)
{
	return nd__conn_queued(c);
}

void nd_conn_want_drain(struct nd_conn *c)
{
	c->flags |= ND_CONN_WANT_DRAIN;
}

static size_t in_limit(const struct nd_shard *s)
{
	return (size_t)s->cfg->max_frame + 4 +
	       (size_t)s->buf_count * s->buf_size;
}

/* Charges n more bytes of kept input to the server's budget; false (nothing
 * charged) when that would pass it. */
static bool budget_take(struct nd_conn *c, size_t n)
{
	struct nd_server *srv = c->shard->srv;
	uint64_t was = atomic_fetch_add_explicit(&srv->input_bytes, n,
						 memory_order_relaxed);

	if (was + n <= c->shard->cfg->input_budget)
		return true;
	atomic_fetch_sub_explicit(&srv->input_bytes, n, memory_order_relaxed);
	return false;
}

static void budget_give(struct nd_conn *c, size_t n)
{
	if (n)
		atomic_fetch_sub_explicit(&c->shard->srv->input_bytes, n,
					  memory_order_relaxed);
}

bool nd__conn_budget_take(struct nd_conn *c, size_t n)
{
	return budget_take(c, n);
}

void nd__conn_budget_give(struct nd_conn *c, size_t n)
{
	budget_give(c, n);
}

static void buf_return(struct nd_shard *s, unsigned bid)
{
	io_uring_buf_ring_add(s->br, s->bufs + (size_t)bid * s->buf_size,
			      s->buf_size, (unsigned short)bid,
			      io_uring_buf_ring_mask(s->buf_count),
			      (int)s->bufs_returned++);
}

static void arm_recv(struct nd_conn *c)
{
	struct io_uring_sqe *sqe = nd_shard_sqe(c->shard);

	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, ND_UD(c, ND_TAG_RECV));
	c->flags |= ND_CONN_RECV_ARMED;
	c->inflight++;
}

static void cancel_op(struct nd_conn *c, unsigned tag)
{
	struct io_uring_sqe *sqe = nd_shard_sqe(c->shard);

	io_uring_prep_cancel64(sqe, ND_UD(c, tag), 0);
	io_uring_sqe_set_data64(sqe, ND_UD(NULL, ND_TAG_IGNORE));
}

/* Drop the connection now; it is freed by nd_conn_reap(). */
void nd__conn_kill(struct nd_conn *c)
{
	struct nd_shard *s = c->shard;

	if (c->flags & ND_CONN_DEAD)
		return;
	c->flags |= ND_CONN_DEAD;
	/* shutdown() ends a pending recv or send at once; the cancels are for
	 * the rare op that is not waiting on the socket. */
	shutdown(c->fd, SHUT_RDWR);
	if (c->flags & ND_CONN_RECV_ARMED)
		cancel_op(c, ND_TAG_RECV);
	if (c->flags & ND_CONN_SENDING)
		cancel_op(c, ND_TAG_SEND);
	nd_list_del(&c->dirty);
	nd_list_del(&c->lazy);
	nd_list_del(&c->rearm);
	nd_list_del(&c->stall);
	nd_list_del(&c->timed);
	nd_list_move_tail(&s->dead, &c->link);
}

static void stall_start(struct nd_conn *c)
{
	if (!nd_list_linked(&c->stall)) {
		c->stall_since_ms = c->shard->now_ms;
		nd_list_add_tail(&c->shard->stalled, &c->stall);
	}
}

/* Input kept while held has reached its bound: reading waits for release. */
static bool hold_full(const struct nd_conn *c)
{
	return (c->flags & ND_CONN_HELD) && c->in.len >= HOLD_KEEP;
}

void nd__conn_want_recv(struct nd_conn *c)
{
	if (!(c->flags & (ND_CONN_RECV_ARMED | ND_CONN_DEAD | ND_CONN_EOF)) &&
	    !nd_list_linked(&c->rearm))
		nd_list_add_tail(&c->shard->rearm, &c->rearm);
}

/*
 * Keeps p[0..n) for later. 0, -EMSGSIZE (over in_limit), -ENOBUFS (over the
 * server's input budget) or -ENOMEM; nothing is kept on failure.
 */
static int in_append(struct nd_conn *c, const uint8_t *p, size_t n)
{
	size_t need = c->in.len + n, limit = in_limit(c->shard);

	if (need > limit)
		return -EMSGSIZE;
	if (need > c->in.cap) {
		/* The growth is charged to the budget before it is made. */
		size_t cap = nd_buf_grow_cap(c->in.cap, need, IN_MIN), was;

		if (cap > limit)
			cap = limit;
		if (!budget_take(c, cap - c->in.cap))
			return -ENOBUFS;
		was = c->in.cap;
		if (nd_buf_resize(&c->in, cap)) {
			budget_give(c, cap - was);
			return -ENOMEM;
		}
	}
	memcpy(c->in.data + c->in.len, p, n);
	c->in.len = need;
	return 0;
}

/* Big buffers freed count toward giving memory back (nd_conn_reap). */
void nd__conn_note_freed(struct nd_shard *s, size_t cap)
{
	if (cap > OUT_KEEP)
		s->freed_bytes += cap;
}

static void in_free(struct nd_conn *c)
{
	budget_give(c, c->in.cap);
	nd__conn_note_freed(c->shard, c->in.cap);
	nd_buf_free(&c->in);
}

/* Drops the first n kept bytes; a big buffer that is mostly empty shrinks,
 * so one large frame does not pin its buffer for the connection's life. */
static void in_consume(struct nd_conn *c, size_t n)
{
	size_t cap = c->in.cap, was = c->in.cap;

	if (n == c->in.len) {
		in_free(c);
		return;
	}
	nd_buf_consume(&c->in, n);
	if (cap <= OUT_KEEP || c->in.len > cap / 4)
		return;
	while (cap > IN_MIN && cap / 2 >= 2 * c->in.len)
		cap /= 2;
	if (nd_buf_resize(&c->in, cap))
		return; /* keeps the larger one */
	budget_give(c, was - cap);
	nd__conn_note_freed(c->shard, was - cap);
}

static void pause_input(struct nd_conn *c)
{
	c->flags |= ND_CONN_PAUSED;
	c->shard->st.paused++;
	stall_start(c);
	if (c->flags & ND_CONN_RECV_ARMED)
		cancel_op(c, ND_TAG_RECV);
	nd_list_del(&c->rearm);
}

/* Held connections pause too: holding is the protocol's, this is ours. */
static void check_watermark(struct nd_conn *c)
{
	if (nd__conn_queued(c) > c->shard->cfg->max_output &&
	    !(c->flags & (ND_CONN_PAUSED | ND_CONN_CLOSING | ND_CONN_DEAD)))
		pause_input(c);
}

void nd_conn_check_output(struct nd_conn *c)
{
	check_watermark(c);
}

/* Closes c (with flush) from outside ops->data; its kept input, which is
 * discarded from now on, is freed at once. */
static void end_unread(struct nd_conn *c)
{
	nd_conn_close(c, true);
	if (c->in.len)
		in_free(c);
}

/* Kept input could not grow (err from in_append): refuse the peer. */
static void input_refused(struct nd_conn *c, int err)
{
	char peer[64];

	nd_conn_peer_name(c, peer, sizeof(peer));
	ND_LOG(ND_LOG_WARN, "conn.dropped", ND_U("shard", c->shard->id),
	       ND_S("peer", peer),
	       ND_S("msg", err == -ENOBUFS ?
			   "input budget of the server used up (--input-budget): "
			   "closing the connection that would pass it" :
		    err == -EMSGSIZE ? "too much input kept: closing" :
				       "out of memory for input: closing"),
	       ND_U("limit_bytes", err == -ENOBUFS ?
					   c->shard->cfg->input_budget :
					   (uint64_t)in_limit(c->shard)));
	if (!c->ops->input_full) {
		nd__conn_kill(c);
		in_free(c);
		return;
	}
	c->ops->input_full(c, err);
	end_unread(c);
}

/* Hands kept input to the protocol (after a resume, or with new bytes). */
static void feed_kept(struct nd_conn *c)
{
	size_t used;

	if (!c->in.len || !nd_conn_readable(c))
		return;
	used = c->ops->data(c, c->in.data, c->in.len);
	if (c->flags & (ND_CONN_CLOSING | ND_CONN_DEAD)) {
		in_free(c); /* discarded from now on */
		return;
	}
	in_consume(c, used);
	check_watermark(c);
}

void nd__conn_input(struct nd_conn *c, const uint8_t *p, size_t n)
{
	size_t used = 0;
	bool direct = !c->in.len && nd_conn_readable(c);
	int err;

	if (direct) {
		used = c->ops->data(c, p, n);
		check_watermark(c);
	}
	if (used == n || (c->flags & (ND_CONN_CLOSING | ND_CONN_DEAD)))
		return; /* all consumed, or the rest is discarded */
	err = in_append(c, p + used, n - used);
	if (err) {
		input_refused(c, err);
		return;
	}
	if (!direct)
		feed_kept(c);
	if (hold_full(c) && (c->flags & ND_CONN_RECV_ARMED))
		cancel_op(c, ND_TAG_RECV);
}

void nd__conn_resume(struct nd_conn *c)
{
	c->flags &= ~ND_CONN_PAUSED;
	nd_list_del(&c->stall);
	feed_kept(c);
	if (nd_conn_readable(c) ||
	    ((c->flags & ND_CONN_HELD) && !hold_full(c)))
		nd__conn_want_recv(c);
}

/* nd_conn_adopt, with TLS (tls not NULL) or not; sniff: an accepted
 * plaintext connection, whose first bytes are checked for TLS. */
static struct nd_conn *adopt(struct nd_shard *s, int fd,
			     const struct nd_conn_ops *ops, void *ctx,
			     bool overload, struct nd_tls *tls, bool sniff)
{
	struct nd_conn *c;
	int one = 1;

	c = calloc(1, sizeof(*c) + ops->state_size);
	if (!c) {
		close(fd);
		return NULL;
	}
	if (tls && nd__tls_attach(c, tls)) {
		free(c);
		close(fd);
		return NULL;
	}
	if (!tls && sniff)
		c->flags |= ND_CONN_SNIFF;
	c->shard = s;
	c->ops = ops;
	c->ctx = ctx;
	c->fd = fd;
	c->last_active_ms = s->now_ms;
	if (overload)
		c->flags |= ND_CONN_OVERLOAD;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	nd_list_add_tail(&s->conns, &c->link);
	s->nconns++;
	atomic_store_explicit(&s->load, s->nconns, memory_order_relaxed);
	s->st.accepted++;
	c->ops->open(c);
	if (c->tls && !(c->flags & (ND_CONN_CLOSING | ND_CONN_DEAD)))
		nd__tls_input(c, NULL, 0); /* a client's hello goes out */
	if (s->draining && !(c->flags & ND_CONN_CLOSING)) {
		c->ops->drain(c);
		nd_conn_close(c, true);
	}
	if (!(c->flags & ND_CONN_DEAD))
		arm_recv(c);
	return c;
}

struct nd_conn *nd_conn_adopt(struct nd_shard *s, int fd,
			      const struct nd_conn_ops *ops, void *ctx,
			      bool overload)
{
	return adopt(s, fd, ops, ctx, overload, NULL, false);
}

struct nd_conn *nd_conn_adopt_accepted(struct nd_shard *s, int fd,
				       const struct nd_conn_ops *ops,
				       void *ctx, bool overload,
				       struct nd_tls *tls)
{
	return adopt(s, fd, ops, ctx, overload, tls, true);
}

/* A TLS ClientHello on a plaintext port: the protocol says so, in
 * plaintext, and the connection closes. */
static void tls_on_plain(struct nd_conn *c)
{
	char peer[64];

	nd_conn_peer_name(c, peer, sizeof(peer));
	ND_LOG(ND_LOG_INFO, "tls.on_plaintext_port", ND_S("peer", peer),
	       ND_S("msg", "a TLS handshake on a plaintext port (this server "
		    "runs without --tls-cert): connection closed"));
	if (c->ops->wrong_transport)
		c->ops->wrong_transport(c, false);
	end_unread(c);
}

/* Received bytes: through TLS, or checked once for a TLS client on a
 * plaintext port, then to the protocol. */
static void input(struct nd_conn *c, const uint8_t *p, size_t n)
{
	if (c->tls) {
		nd__tls_input(c, p, n);
		return;
	}
	if (c->flags & ND_CONN_SNIFF) {
		c->flags &= ~ND_CONN_SNIFF;
		/* a TLS record of type handshake, version 3.x */
		if (n >= 2 && p[0] == 0x16 && p[1] == 0x03) {
			tls_on_plain(c);
			return;
		}
	}
	nd__conn_input(c, p, n);
}

struct pending_connect {
	struct nd_op op;
	int fd;
	struct sockaddr_storage addr;
	const struct nd_conn_ops *ops;
	void *ctx;
	void (*done)(void *arg, struct nd_conn *c, int err);
	void *arg;
};

static void connected(struct nd_shard *s, struct nd_op *op,
		      struct io_uring_cqe *cqe)
{
	struct pending_connect *pc = nd_container_of(op, struct pending_connect,
						     op);
	struct nd_conn *c = NULL;
	int err = cqe->res;

	if (err == 0) {
		c = adopt(s, pc->fd, pc->ops, pc->ctx, false,
			  s->cfg->tls_connect ? s->cfg->tls_connect :
						nd_tls_connect_default(), false);
		if (!c)
			err = -ENOMEM;
	} else {
		close(pc->fd);
	}
	pc->done(pc->arg, c, err);
	free(pc);
}

int nd_conn_connect(struct nd_shard *s, const struct sockaddr_storage *addr,
		    socklen_t addrlen, const struct nd_conn_ops *ops,
		    void *ctx,
		    void (*done)(void *arg, struct nd_conn *c, int err),
		    void *arg)
{
	struct pending_connect *pc = calloc(1, sizeof(*pc));
	struct io_uring_sqe *sqe;

	if (!pc)
		return -ENOMEM;
	pc->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (pc->fd < 0) {
		free(pc);
		return -errno;
	}
	memcpy(&pc->addr, addr, addrlen);
	pc->op.cb = connected;
	pc->ops = ops;
	pc->ctx = ctx;
	pc->done = done;
	pc->arg = arg;
	sqe = nd_shard_sqe(s);
	io_uring_prep_connect(sqe, pc->fd, (struct sockaddr *)&pc->addr,
			      addrlen);
	io_uring_sqe_set_data64(sqe, ND_UD(&pc->op, ND_TAG_OP));
	return 0;
}

void nd_conn_on_recv(struct nd_conn *c, struct io_uring_cqe *cqe)
{
	struct nd_shard *s = c->shard;
	int res = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		c->flags &= ~ND_CONN_RECV_ARMED;
		c->inflight--;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		if (res > 0) {
			s->st.bytes_in += (unsigned)res;
			/* closing or dead conns discard what arrives */
			if (!(c->flags & (ND_CONN_DEAD | ND_CONN_CLOSING))) {
				c->last_active_ms = s->now_ms;
				nd_list_move_tail(&s->conns, &c->link);
				input(c, s->bufs + (size_t)bid * s->buf_size,
				      (size_t)res);
			}
		}
		buf_return(s, bid);
	}
	if (c->flags & ND_CONN_DEAD)
		return;
	if (res == 0) {
		c->flags |= ND_CONN_EOF;
		if (c->flags & ND_CONN_WR_SHUT)
			nd__conn_kill(c);
		else
			nd_conn_close(c, true); /* a half-close still gets replies */
		return;
	}
	if (res < 0) {
		if (res == -ENOBUFS) {
			s->st.recv_enobufs++;
		} else if (res != -ECANCELED) {
			nd__conn_kill(c);
			return;
		}
	}
	if (!(c->flags & ND_CONN_RECV_ARMED) &&
	    (nd_conn_readable(c) || (c->flags & ND_CONN_CLOSING) ||
	     ((c->flags & ND_CONN_HELD) && !(c->flags & ND_CONN_PAUSED) &&
	      !hold_full(c))))
		nd__conn_want_recv(c);
}

void nd_conn_hold(struct nd_conn *c, bool hold)
{
	if (hold == !!(c->flags & ND_CONN_HELD))
		return;
	if (hold) {
		c->flags |= ND_CONN_HELD;
		return;
	}
	c->flags &= ~ND_CONN_HELD;
	feed_kept(c);
	if (nd_conn_readable(c))
		nd__conn_want_recv(c);
}

void nd_conn_deadline(struct nd_conn *c, uint32_t ms)
{
	if (!ms) {
		nd_list_del(&c->timed);
		return;
	}
	c->deadline_ms = c->shard->now_ms + ms;
	if (!nd_list_linked(&c->timed) && !(c->flags & (ND_CONN_CLOSING |
							ND_CONN_DEAD)))
		nd_list_add_tail(&c->shard->timed, &c->timed);
}

void nd_conn_close(struct nd_conn *c, bool flush)
{
	if (c->flags & ND_CONN_DEAD)
		return;
	if (!flush) {
		nd__conn_kill(c);
		return;
	}
	if (c->flags & ND_CONN_CLOSING)
		return;
	c->flags |= ND_CONN_CLOSING;
	c->flags &= ~ND_CONN_PAUSED;
	if (c->tls)
		nd__tls_closing(c);
	nd_list_del(&c->timed);
	if (nd_list_linked(&c->lazy))
		nd_conn_commit(c, 0);
	stall_start(c);
	if (!nd__conn_queued(c))
		nd__conn_flushed(c);
	else if (!(c->flags & ND_CONN_RECV_ARMED))
		nd__conn_want_recv(c); /* to see the peer's EOF while we flush */
}

void nd_conn_flush_all(struct nd_shard *s)
{
	while (!nd_list_empty(&s->dirty)) {
		struct nd_conn *c = nd_container_of(s->dirty.next,
						    struct nd_conn, dirty);

		nd_list_del(&c->dirty);
		nd__conn_start_send(c);
	}
	while (!nd_list_empty(&s->rearm)) {
		struct nd_conn *c = nd_container_of(s->rearm.next,
						    struct nd_conn, rearm);

		nd_list_del(&c->rearm);
		if (!(c->flags & (ND_CONN_RECV_ARMED | ND_CONN_DEAD |
				  ND_CONN_PAUSED | ND_CONN_EOF)))
			arm_recv(c);
	}
}

static void conn_free(struct nd_conn *c)
{
	struct nd_shard *s = c->shard;

	c->ops->close(c);
	nd__tls_free(c);
	close(c->fd);
	nd_list_del(&c->link);
	budget_give(c, c->in.cap);
	nd__conn_note_freed(s, c->in.cap);
	nd__conn_note_freed(s, c->out.cap);
	nd__conn_note_freed(s, c->tx.cap);
	nd_buf_free(&c->in);
	nd_buf_free(&c->out);
	nd_buf_free(&c->tx);
	s->nconns--;
	atomic_store_explicit(&s->load, s->nconns, memory_order_relaxed);
	s->st.closed++;
	free(c);
}

void nd_conn_reap(struct nd_shard *s)
{
	struct nd_list *n = s->dead.next, *next;

	for (; n != &s->dead; n = next) {
		struct nd_conn *c = nd_container_of(n, struct nd_conn, link);

		next = n->next;
		if (!c->inflight)
			conn_free(c);
	}
	if (s->freed_bytes >= TRIM_AFTER && !s->trim_due_ms)
		s->trim_due_ms = s->now_ms + TRIM_DELAY_MS;
}

void nd_conn_sweep(struct nd_shard *s)
{
	const struct nd_config *cfg = s->cfg;
	struct nd_list *n, *next;

	while (!nd_list_empty(&s->lazy))
		nd_conn_commit(nd_container_of(s->lazy.next, struct nd_conn,
					       lazy), 0);
	for (n = s->stalled.next; n != &s->stalled; n = next) {
		struct nd_conn *c = nd_container_of(n, struct nd_conn, stall);

		next = n->next;
		if (s->now_ms - c->stall_since_ms >= cfg->stall_timeout_ms)
			nd__conn_kill(c);
	}
	for (n = s->timed.next; n != &s->timed; n = next) {
		struct nd_conn *c = nd_container_of(n, struct nd_conn, timed);

		next = n->next;
		if (s->now_ms < c->deadline_ms || !nd_conn_readable(c))
			continue; /* not due, or we are the ones not reading */
		nd_list_del(&c->timed);
		if (c->ops->expired)
			c->ops->expired(c);
		end_unread(c);
	}
	nd__tls_sweep(s);
	if (!cfg->idle_timeout_ms)
		return;
	for (n = s->conns.next; n != &s->conns; n = next) {
		struct nd_conn *c = nd_container_of(n, struct nd_conn, link);

		next = n->next;
		if (s->now_ms - c->last_active_ms < cfg->idle_timeout_ms)
			break; /* ordered by activity: the rest are younger */
		if (c->flags & ND_CONN_CLOSING)
			continue;
		c->ops->idle(c);
		end_unread(c);
	}
}

void nd_conn_drain_all(struct nd_shard *s)
{
	struct nd_list *n, *next;

	for (n = s->conns.next; n != &s->conns; n = next) {
		struct nd_conn *c = nd_container_of(n, struct nd_conn, link);

		next = n->next;
		if (c->flags & ND_CONN_CLOSING)
			continue;
		c->ops->drain(c);
		nd_conn_close(c, true);
	}
}

void nd_conn_kill_all(struct nd_shard *s)
{
	while (!nd_list_empty(&s->conns))
		nd__conn_kill(nd_container_of(s->conns.next, struct nd_conn, link));
}

void nd_conn_peer_name(const struct nd_conn *c, char *buf, size_t len)
{
	int fd = c->fd;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	buf[0] = '\0';
	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl))
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
	}
	snprintf(buf, len, "%s:%u", host, port);
}
