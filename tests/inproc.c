/* See inproc.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "inproc.h"

void nd_inproc_init(struct nd_inproc *in)
{
	struct nd_shard *s = &in->s;

	s->cfg = &in->cfg;
	s->buf_count = 16;
	s->buf_size = 4096;
	s->bufs = calloc(s->buf_count, s->buf_size);
	s->br = calloc(s->buf_count, sizeof(struct io_uring_buf));
	if (!s->bufs || !s->br || nd_uring_init(&s->ring, 64, 128, NULL) ||
	    nd_arena_init(&s->arena, 0))
		abort();
	nd_shard_init_lists(s);
	/* A one-shard server, so node-service requests reach the service. */
	in->srv.shards = s;
	in->srv.nshards = 1;
	s->srv = &in->srv;
	in->srv.shard_start = nd_svc_shard_start;
	in->srv.shard_start_arg = &in->svc_cfg;
	nd_svc_shard_start(s, &in->svc_cfg);
}

void nd_inproc_drain_ring(struct nd_inproc *in)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_submit(&in->s.ring);
	io_uring_for_each_cqe(&in->s.ring, head, cqe)
		n++;
	io_uring_cq_advance(&in->s.ring, n);
}

void nd_inproc_settle(struct nd_inproc *in, struct nd_conn *c)
{
	struct io_uring_cqe cqe;

	while (!(c->flags & ND_CONN_DEAD)) {
		memset(&cqe, 0, sizeof(cqe));
		if ((c->flags & ND_CONN_PAUSED) &&
		    (c->flags & ND_CONN_RECV_ARMED)) {
			cqe.res = -ECANCELED;
			nd_conn_on_recv(c, &cqe);
			continue;
		}
		nd_conn_flush_all(&in->s);
		if (!(c->flags & ND_CONN_SENDING))
			break;
		cqe.res = (int)(c->tx.len - c->tx_off);
		if (in->sent)
			in->sent(c, c->tx.data + c->tx_off, (size_t)cqe.res);
		nd_conn_on_send(c, &cqe);
	}
	nd_inproc_drain_ring(in);
}

void nd_inproc_recv(struct nd_inproc *in, struct nd_conn *c, const void *p,
		    size_t n)
{
	struct io_uring_cqe cqe;

	memcpy(in->s.bufs, p, n);
	memset(&cqe, 0, sizeof(cqe));
	cqe.res = (int)n;
	cqe.flags = IORING_CQE_F_BUFFER | IORING_CQE_F_MORE;
	nd_conn_on_recv(c, &cqe);
	in->s.bufs_returned = 0;
	nd_arena_reset(&in->s.arena);
}

void nd_inproc_drop(struct nd_inproc *in, struct nd_conn *c)
{
	struct io_uring_cqe cqe;

	nd_conn_close(c, false);
	memset(&cqe, 0, sizeof(cqe));
	cqe.res = -ECANCELED;
	if (c->flags & ND_CONN_RECV_ARMED)
		nd_conn_on_recv(c, &cqe);
	if (c->flags & ND_CONN_SENDING)
		nd_conn_on_send(c, &cqe);
	nd_conn_reap(&in->s);
	nd_inproc_drain_ring(in);
	nd_arena_reset(&in->s.arena);
}
