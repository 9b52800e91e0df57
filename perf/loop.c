/* Connections moved by one io_uring: the sending side (perf/loop.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "loop.h"
#include "util.h"

int nd_perf_loop_init(struct nd_perf_loop *l, unsigned nconns)
{
	int r;

	l->marked = calloc(nconns ? nconns : 1, sizeof(*l->marked));
	if (!l->marked)
		return -ENOMEM;
	r = nd_perf_ring_init(&l->ring, 2 * nconns);
	if (r) {
		free(l->marked);
		l->marked = NULL;
	}
	return r;
}

void nd_perf_loop_exit(struct nd_perf_loop *l)
{
	if (l->marked)
		io_uring_queue_exit(&l->ring);
	free(l->marked);
	l->marked = NULL;
}

void nd_perf_mark(struct nd_perf_loop *l, struct nd_perf_conn *pc)
{
	if (pc->marked || pc->dead)
		return;
	pc->marked = true;
	l->marked[l->nmarked++] = pc;
}

/* Queues the send of what is left of pc's buffer. */
static void prep(struct nd_perf_loop *l, struct nd_perf_conn *pc)
{
	struct io_uring_sqe *sqe = nd_perf_sqe(&l->ring);

	if (!sqe) {
		l->lost(pc, -EBUSY);
		return;
	}
	io_uring_prep_send(sqe, pc->fd, pc->buf.data + pc->off,
			   pc->buf.len - pc->off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, pc->ud);
	pc->sending = true;
	l->ops++;
}

/* Starts a send of everything pc's client has queued (consumed from it). */
static void kick(struct nd_perf_loop *l, struct nd_perf_conn *pc)
{
	const uint8_t *out;
	size_t n;

	if (pc->dead || pc->sending || l->finishing)
		return;
	n = nd_client_output(pc->c, &out);
	if (!n)
		return;
	nd_buf_reset(&pc->buf);
	if (pc->ssl) {
		/* the plaintext is encrypted into wb, which is what goes */
		size_t pend;

		if (SSL_write(pc->ssl, out, (int)n) != (int)n) {
			ERR_clear_error();
			l->lost(pc, -EPROTO);
			return;
		}
		nd_client_consume(pc->c, n);
		pend = BIO_ctrl_pending(pc->wb);
		if (nd_buf_reserve(&pc->buf, pend)) {
			l->lost(pc, -ENOMEM);
			return;
		}
		pc->buf.len = (size_t)BIO_read(pc->wb, pc->buf.data, (int)pend);
		pc->off = 0;
		prep(l, pc);
		return;
	}
	if (nd_buf_append(&pc->buf, out, n)) {
		l->lost(pc, -ENOMEM);
		return;
	}
	nd_client_consume(pc->c, n);
	pc->off = 0;
	prep(l, pc);
}

void nd_perf_sent(struct nd_perf_loop *l, struct nd_perf_conn *pc, int res)
{
	pc->sending = false;
	l->ops--;
	if (pc->dead || l->finishing)
		return;
	if (res == -EINTR || res == -EAGAIN) {
		prep(l, pc);
	} else if (res <= 0) {
		l->lost(pc, res < 0 ? res : -EPIPE);
	} else {
		pc->off += (size_t)res;
		if (pc->off < pc->buf.len)
			prep(l, pc); /* short send: the rest */
		else
			kick(l, pc);
	}
}

int nd_perf_loop_step(struct nd_perf_loop *l, int64_t wait_ns)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int r;

	for (unsigned i = 0; i < l->nmarked; i++) {
		l->marked[i]->marked = false;
		kick(l, l->marked[i]);
	}
	l->nmarked = 0;
	if (wait_ns < 0)
		wait_ns = 0;
	ts.tv_sec = wait_ns / 1000000000;
	ts.tv_nsec = wait_ns % 1000000000;
	r = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
	if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY &&
	    r != -EAGAIN)
		return r;
	io_uring_for_each_cqe(&l->ring, head, cqe) {
		n++;
		l->complete(l, cqe);
	}
	io_uring_cq_advance(&l->ring, n);
	return 0;
}

int nd_perf_tls_start(struct nd_perf_conn *pc)
{
	SSL *ssl = nd_client_tls_session(pc->c);

	if (!ssl)
		return 0;
	pc->rb = BIO_new(BIO_s_mem());
	pc->wb = BIO_new(BIO_s_mem());
	if (!pc->rb || !pc->wb) {
		BIO_free(pc->rb);
		BIO_free(pc->wb);
		pc->rb = pc->wb = NULL;
		return -ENOMEM;
	}
	SSL_set_bio(ssl, pc->rb, pc->wb); /* the SSL owns them now */
	pc->ssl = ssl;
	return 0;
}

int nd_perf_tls_feed(struct nd_perf_conn *pc, const uint8_t *p, size_t n)
{
	uint8_t buf[16384];
	int r, runs = 0;

	if (BIO_write(pc->rb, p, (int)n) != (int)n)
		return -ENOMEM;
	for (;;) {
		r = SSL_read(pc->ssl, buf, sizeof(buf));
		if (r <= 0) {
			if (SSL_get_error(pc->ssl, r) == SSL_ERROR_WANT_READ)
				return runs;
			ERR_clear_error();
			return -EPROTO;
		}
		r = nd_client_feed(pc->c, buf, (size_t)r);
		if (r < 0)
			return r;
		runs += r;
	}
}

void nd_perf_conn_free(struct nd_perf_conn *pc)
{
	nd_buf_free(&pc->buf);
}
