/*
 * Transport connections, output (see conn.c's header and conn.h): the
 * protocol's writes into c->out, the sends of the shard's flush, and their
 * completions.
 */

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/conn.h"
#include "core/conn_int.h"
#include "core/log.h"
#include "tls/conn_tls.h"

/*
 * The output could not grow by n bytes: the frame that needed them is lost,
 * and a peer left waiting for it would wait for ever, so c is closed with
 * flush (what is queued is whole frames; they go out, then FIN). Kept input
 * is left to the input path (it may be what ops->data is reading now).
 */
static void output_refused(struct nd_conn *c, size_t n)
{
	char peer[64];

	nd_conn_peer_name(c, peer, sizeof(peer));
	ND_LOG(ND_LOG_WARN, "conn.dropped", ND_U("shard", c->shard->id),
	       ND_S("peer", peer), ND_U("bytes", n),
	       ND_S("msg", "out of memory for output: closing"));
	nd_conn_close(c, true);
}

uint8_t *nd_conn_reserve(struct nd_conn *c, size_t n)
{
	if (c->flags & (ND_CONN_DEAD | ND_CONN_WR_SHUT))
		return NULL;
	if (nd_buf_reserve(&c->out, n)) {
		output_refused(c, n);
		return NULL;
	}
	return c->out.data + c->out.len;
}

/* Copies p[0..n) (n > 0) after the queued output, not yet counted. */
static bool copy_out(struct nd_conn *c, const void *p, size_t n)
{
	uint8_t *dst = nd_conn_reserve(c, n);

	if (dst)
		memcpy(dst, p, n);
	return dst;
}

bool nd_conn_write(struct nd_conn *c, const void *p, size_t n)
{
	if (!n)
		return true;
	if (!copy_out(c, p, n))
		return false;
	nd_conn_commit(c, n);
	return true;
}

void nd_conn_commit(struct nd_conn *c, size_t n)
{
	c->out.len += n;
	nd_list_del(&c->lazy);
	if (!(c->flags & ND_CONN_SENDING) && !nd_list_linked(&c->dirty))
		nd_list_add_tail(&c->shard->dirty, &c->dirty);
}

bool nd_conn_write_lazy(struct nd_conn *c, const void *p, size_t n)
{
	if (!n)
		return true;
	if (!copy_out(c, p, n))
		return false;
	c->out.len += n;
	/* A send in flight takes it when it completes (nd_conn_on_send). */
	if (!(c->flags & ND_CONN_SENDING) && !nd_list_linked(&c->dirty) &&
	    !nd_list_linked(&c->lazy))
		nd_list_add_tail(&c->shard->lazy, &c->lazy);
	return true;
}

static void send_tx(struct nd_conn *c)
{
	struct io_uring_sqe *sqe = nd_shard_sqe(c->shard);

	io_uring_prep_send(sqe, c->fd, c->tx.data + c->tx_off,
			   c->tx.len - c->tx_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ND_UD(c, ND_TAG_SEND));
	c->flags |= ND_CONN_SENDING;
	c->inflight++;
	c->shard->st.sends++;
}

/* All output is out: finish a flushing close with FIN, then linger. */
void nd__conn_flushed(struct nd_conn *c)
{
	if (!(c->flags & ND_CONN_CLOSING) || (c->flags & ND_CONN_WR_SHUT))
		return;
	/* TLS ends with close_notify, so the peer tells our end from a cut */
	if (c->tls && nd__tls_close_notify(c)) {
		nd__conn_start_send(c);
		return;
	}
	c->flags |= ND_CONN_WR_SHUT;
	/* Draining, we do not wait for the peer: its unread input, if any,
	 * turns our close into a reset, which a stopping server may do. */
	if (c->flags & ND_CONN_EOF || c->shard->draining) {
		nd__conn_kill(c);
		return;
	}
	shutdown(c->fd, SHUT_WR);
	nd__conn_want_recv(c);
}

/* With TLS: the plaintext queued is encrypted, and the ciphertext is
 * what goes (the sent buffer becomes the next ciphertext buffer). */
static void start_send_tls(struct nd_conn *c)
{
	struct nd_buf b = c->tx, *ct = nd__tls_out(c);

	if (!ct->len || (c->flags & (ND_CONN_SENDING | ND_CONN_DEAD)))
		return;
	nd_list_del(&c->lazy);
	c->tx = *ct;
	c->tx_off = 0;
	*ct = b;
	nd_buf_reset(ct);
	send_tx(c);
}

void nd__conn_start_send(struct nd_conn *c)
{
	struct nd_buf b = c->tx;   /* sent: its memory is reused */

	if (c->flags & (ND_CONN_SENDING | ND_CONN_DEAD))
		return;
	if (c->tls) {
		start_send_tls(c);
		return;
	}
	if (!c->out.len)
		return;
	nd_list_del(&c->lazy);
	c->tx = c->out;
	c->tx_off = 0;
	c->out = b;
	nd_buf_reset(&c->out);
	send_tx(c);
}

void nd_conn_on_send(struct nd_conn *c, struct io_uring_cqe *cqe)
{
	struct nd_shard *s = c->shard;

	c->inflight--;
	c->flags &= ~ND_CONN_SENDING;
	if (c->flags & ND_CONN_DEAD)
		return;
	if (cqe->res < 0) {
		if (cqe->res != -EPIPE && cqe->res != -ECONNRESET)
			ND_LOG(ND_LOG_WARN, "conn.error", ND_U("shard", s->id),
			       ND_S("op", "send"),
			       ND_S("err", strerror(-cqe->res)));
		nd__conn_kill(c);
		return;
	}
	s->st.bytes_out += (unsigned)cqe->res;
	c->tx_off += (unsigned)cqe->res;
	if (c->tx_off < c->tx.len) {
		send_tx(c);
		return;
	}
	nd_buf_reset(&c->tx);
	c->tx_off = 0;
	if (c->tx.cap > OUT_KEEP) {
		nd__conn_note_freed(s, c->tx.cap);
		nd_buf_free(&c->tx);
	}
	if (c->out.len || (c->tls && nd__tls_queued(c)))
		nd__conn_start_send(c);
	if (!nd__conn_queued(c))
		nd__conn_flushed(c);
	if ((c->flags & ND_CONN_PAUSED) &&
	    nd__conn_queued(c) <= s->cfg->max_output / 4)
		nd__conn_resume(c);
	if ((c->flags & ND_CONN_WANT_DRAIN) &&
	    nd__conn_queued(c) <= s->cfg->max_output / 4 && c->ops->drained) {
		c->flags &= ~ND_CONN_WANT_DRAIN;
		c->ops->drained(c);
	}
}
