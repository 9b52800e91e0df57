/* Client protocol over a core connection: see peer.h. */
#include <string.h>

#include "client/peer.h"

struct peer {
	struct nd_client *cl;
};

struct nd_client *nd_peer_client(struct nd_conn *c)
{
	return ((struct peer *)nd_conn_state(c))->cl;
}

void nd_peer_flush(struct nd_conn *c)
{
	struct nd_client *cl = nd_peer_client(c);
	const uint8_t *d;
	size_t n;

	if (!cl)
		return;
	n = nd_client_output(cl, &d);
	if (!n)
		return;
	if (!nd_conn_write(c, d, n))
		return; /* closing: the close hook fails the calls */
	nd_client_consume(cl, n);
}

static void peer_open(struct nd_conn *c)
{
	struct nd_peer_hooks *h = c->ctx;
	struct peer *p = nd_conn_state(c);

	if (nd_client_adopt(&p->cl, -1, &h->opts)) {
		nd_conn_close(c, false);
		return;
	}
	h->opened(c, p->cl, h->arg);
	nd_peer_flush(c);
}

static size_t peer_data(struct nd_conn *c, const uint8_t *d, size_t len)
{
	struct peer *p = nd_conn_state(c);

	if (nd_client_feed(p->cl, d, len) < 0) {
		nd_conn_close(c, false);
		return len;
	}
	nd_peer_flush(c);
	return len;
}

static void peer_nothing(struct nd_conn *c)
{
	(void)c;
}

static void peer_close(struct nd_conn *c)
{
	struct nd_peer_hooks *h = c->ctx;
	struct peer *p = nd_conn_state(c);

	nd_client_close(p->cl);
	p->cl = NULL;
	h->closed(h->arg);
}

const struct nd_conn_ops nd_peer_ops = {
	.state_size = sizeof(struct peer),
	.open = peer_open,
	.data = peer_data,
	.idle = peer_nothing,
	.drain = peer_nothing,
	.close = peer_close,
};
