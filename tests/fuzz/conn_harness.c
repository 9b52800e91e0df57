/* See conn_harness.h. */
#include <stdlib.h>

#include "core/conn.h"
#include "inproc.h"
#include "conn_harness.h"

static struct nd_inproc in;

static void setup(void)
{
	nd_config_defaults(&in.cfg);
	in.cfg.max_output = 4096; /* small, so backpressure paths run */
	in.cfg.max_frame = 1 << 20;
	/* The service outlives each input: bounded, so memory stays flat over
	 * millions of runs, and the queue-full and history paths run. */
	in.svc_cfg.max_queue = 256;
	in.svc_cfg.task_history = 256;
	nd_svc_config_defaults(&in.svc_cfg);
	nd_inproc_init(&in);
}

/* tls: a TLS port's connection (NULL with plain: a plaintext port's). */
static void run(const struct nd_conn_ops *ops, struct nd_tls *tls, bool plain,
		const uint8_t *data, size_t size)
{
	static const uint8_t token[] = "fuzz-token";
	struct nd_conn *c;
	size_t chunk, off, n;

	if (!in.s.cfg)
		setup();
	if (size < 1)
		return;
	chunk = 1 + (data[0] & 0x7f);
	in.cfg.token = !tls && !plain && data[0] & 0x80 ? token : NULL;
	in.cfg.token_len = in.cfg.token ? sizeof(token) - 1 : 0;
	if (tls && data[0] & 0x80) {
		tls = NULL;
		plain = true;
	}
	data++;
	size--;
	in.s.now_ms = nd_mono_coarse_ms();
	c = tls || plain ? nd_conn_adopt_accepted(&in.s, -1, ops, NULL, false,
						  tls)
			 : nd_conn_adopt(&in.s, -1, ops, NULL, false);
	if (!c)
		abort();
	for (off = 0; off < size; off += n) {
		nd_inproc_settle(&in, c);
		if (!(c->flags & ND_CONN_RECV_ARMED))
			break; /* the kernel would deliver nothing more */
		n = size - off < chunk ? size - off : chunk;
		nd_inproc_recv(&in, c, data + off, n);
	}
	nd_inproc_settle(&in, c);
	/* Tear down: the peer resets; pending ops complete as cancelled. */
	nd_inproc_drop(&in, c);
	if (in.s.nconns != 0)
		abort(); /* a connection that can never be freed */
}

void nd_fuzz_conn(const struct nd_conn_ops *ops, const uint8_t *data,
		  size_t size)
{
	run(ops, NULL, false, data, size);
}

void nd_fuzz_conn_tls(const struct nd_conn_ops *ops, struct nd_tls *tls,
		      const uint8_t *data, size_t size)
{
	run(ops, tls, false, data, size);
}
