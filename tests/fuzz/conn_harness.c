/* See conn_harness.h. */
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "core/server.h"
#include "node/service.h"
#include "conn_harness.h"

static struct nd_shard s;
static struct nd_server srv;
static struct nd_config cfg;
static struct nd_svc_config svc_cfg;

static void setup(void)
{
	nd_config_defaults(&cfg);
	cfg.max_output = 4096; /* small, so backpressure paths run */
	cfg.max_frame = 1 << 20;
	/* The service outlives each input: bounded, so memory stays flat over
	 * millions of runs, and the queue-full and history paths run. */
	svc_cfg.max_queue = 256;
	svc_cfg.task_history = 256;
	nd_svc_config_defaults(&svc_cfg);
	s.cfg = &cfg;
	s.buf_count = 16;
	s.buf_size = 4096;
	s.bufs = calloc(s.buf_count, s.buf_size);
	s.br = calloc(s.buf_count, sizeof(struct io_uring_buf));
	if (!s.bufs || !s.br || nd_uring_init(&s.ring, 64, 128, NULL) ||
	    nd_arena_init(&s.arena, 0))
		abort();
	nd_list_init(&s.conns);
	nd_list_init(&s.dirty);
	nd_list_init(&s.lazy);
	nd_list_init(&s.rearm);
	nd_list_init(&s.stalled);
	nd_list_init(&s.timed);
	nd_list_init(&s.dead);
	/* A one-shard server, so node-service requests reach the service. */
	srv.shards = &s;
	srv.nshards = 1;
	s.srv = &srv;
	srv.shard_start = nd_svc_shard_start;
	srv.shard_start_arg = &svc_cfg;
	nd_svc_shard_start(&s, &svc_cfg);
}

/* Drops whatever the kernel answered for the SQEs we queued (fd -1). */
static void drain_ring(void)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_submit(&s.ring);
	io_uring_for_each_cqe(&s.ring, head, cqe)
		n++;
	io_uring_cq_advance(&s.ring, n);
}

/* Completes cancels and sends as the kernel would, until nothing moves. */
static void settle(struct nd_conn *c)
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
		nd_conn_flush_all(&s);
		if (!(c->flags & ND_CONN_SENDING))
			break;
		cqe.res = (int)(c->tx.len - c->tx_off);
		nd_conn_on_send(c, &cqe);
	}
	drain_ring();
}

void nd_fuzz_conn(const struct nd_conn_ops *ops, const uint8_t *data,
		  size_t size)
{
	static const uint8_t token[] = "fuzz-token";
	struct io_uring_cqe cqe;
	struct nd_conn *c;
	size_t chunk, off, n;

	if (!s.cfg)
		setup();
	if (size < 1)
		return;
	chunk = 1 + (data[0] & 0x7f);
	cfg.token = data[0] & 0x80 ? token : NULL;
	cfg.token_len = cfg.token ? sizeof(token) - 1 : 0;
	data++;
	size--;
	s.now_ms = nd_mono_coarse_ms();
	c = nd_conn_adopt(&s, -1, ops, NULL, false);
	if (!c)
		abort();
	for (off = 0; off < size; off += n) {
		settle(c);
		if (!(c->flags & ND_CONN_RECV_ARMED))
			break; /* the kernel would deliver nothing more */
		n = size - off < chunk ? size - off : chunk;
		memcpy(s.bufs, data + off, n);
		memset(&cqe, 0, sizeof(cqe));
		cqe.res = (int)n;
		cqe.flags = IORING_CQE_F_BUFFER | IORING_CQE_F_MORE;
		nd_conn_on_recv(c, &cqe);
		s.bufs_returned = 0;
		nd_arena_reset(&s.arena);
	}
	settle(c);
	/* Tear down: the peer resets; pending ops complete as cancelled. */
	nd_conn_close(c, false);
	memset(&cqe, 0, sizeof(cqe));
	cqe.res = -ECANCELED;
	if (c->flags & ND_CONN_RECV_ARMED)
		nd_conn_on_recv(c, &cqe);
	if (c->flags & ND_CONN_SENDING)
		nd_conn_on_send(c, &cqe);
	nd_conn_reap(&s);
	drain_ring();
	nd_arena_reset(&s.arena);
	if (s.nconns != 0)
		abort(); /* a connection that can never be freed */
}
