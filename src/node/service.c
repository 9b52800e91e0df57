/* The node service on shard 0: see service.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/server.h"
#include "node/service.h"
#include "rpc/server.h"

struct node {
	struct node *next;            /* hash chain */
	char *name;
	char address[64];
	Noded__NodeState state;
	uint8_t *status;              /* last NodeStatus, packed */
	size_t status_len;
	uint64_t last_hb_ms;          /* monotonic */
	uint64_t last_hb_unix_ms;
	uint64_t connected_unix_ms;
	uint64_t stream_serial;       /* 0: no AssignTask stream */
};

struct nd_svc {
	struct nd_shard *s;
	struct node **buckets;
	size_t nbuckets, count;
};

static uint64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static size_t hash(const char *s)
{
	size_t h = 14695981039346656037ull; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static struct node *node_find(struct nd_svc *svc, const char *name)
{
	struct node *n = svc->buckets[hash(name) & (svc->nbuckets - 1)];

	while (n && strcmp(n->name, name))
		n = n->next;
	return n;
}

static int grow(struct nd_svc *svc)
{
	size_t nb = svc->nbuckets * 2;
	struct node **b = calloc(nb, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < svc->nbuckets; i++) {
		struct node *n = svc->buckets[i], *next;

		for (; n; n = next) {
			next = n->next;
			n->next = b[hash(n->name) & (nb - 1)];
			b[hash(n->name) & (nb - 1)] = n;
		}
	}
	free(svc->buckets);
	svc->buckets = b;
	svc->nbuckets = nb;
	return 0;
}

/* Finds or adds the node; NULL when out of memory. */
static struct node *node_get(struct nd_svc *svc, const char *name)
{
	struct node *n = node_find(svc, name);
	size_t i;

	if (n)
		return n;
	if (svc->count >= svc->nbuckets && grow(svc))
		return NULL;
	n = calloc(1, sizeof(*n));
	if (!n || !(n->name = strdup(name))) {
		free(n);
		return NULL;
	}
	n->state = NODED__NODE_STATE__NODE_ALIVE;
	n->connected_unix_ms = unix_ms();
	n->last_hb_ms = svc->s->now_ms;
	i = hash(name) & (svc->nbuckets - 1);
	n->next = svc->buckets[i];
	svc->buckets[i] = n;
	svc->count++;
	fprintf(stderr, "noded: node %s joined\n", name);
	return n;
}

/* ---- heartbeats ---- */

static void svc_tick(struct nd_shard *s)
{
	struct nd_svc *svc = s->svc;
	const struct nd_config *cfg = s->cfg;

	for (size_t i = 0; i < svc->nbuckets; i++) {
		for (struct node *n = svc->buckets[i]; n; n = n->next) {
			uint64_t quiet = s->now_ms - n->last_hb_ms;

			if (n->state == NODED__NODE_STATE__NODE_DEAD)
				continue;
			if (quiet >= cfg->heartbeat_timeout_ms) {
				n->state = NODED__NODE_STATE__NODE_DEAD;
				fprintf(stderr, "noded: node %s dead: no "
					"heartbeat for %llu ms\n", n->name,
					(unsigned long long)quiet);
			} else if (quiet >= 2 * cfg->heartbeat_ms &&
				   n->state == NODED__NODE_STATE__NODE_ALIVE) {
				n->state = NODED__NODE_STATE__NODE_SUSPECT;
			}
		}
	}
}

/* ---- methods ---- */

static void report_status(struct nd_svc *svc, struct nd_ticket *t,
			  const Noded__NodeStatus *ns, Noded__Frame *r,
			  Noded__ReportStatusReply *sr)
{
	struct node *n = node_get(svc, ns->name);
	size_t len = noded__node_status__get_packed_size(ns);
	uint8_t *copy = malloc(len ? len : 1);

	if (!n || !copy) {
		free(copy);
		r->body_case = NODED__FRAME__BODY__NOT_SET; /* error below */
		return;
	}
	noded__node_status__pack(ns, copy);
	free(n->status);
	n->status = copy;
	n->status_len = len;
	if (n->state == NODED__NODE_STATE__NODE_DEAD) {
		fprintf(stderr, "noded: node %s is back\n", n->name);
		n->connected_unix_ms = unix_ms();
	}
	n->state = NODED__NODE_STATE__NODE_ALIVE;
	n->last_hb_ms = svc->s->now_ms;
	n->last_hb_unix_ms = unix_ms();
	snprintf(n->address, sizeof(n->address), "%s", t->peer);

	sr->server_time_ms = n->last_hb_unix_ms;
	sr->heartbeat_interval_ms = svc->s->cfg->heartbeat_ms;
	r->body_case = NODED__FRAME__BODY_STATUS_REPLY;
	r->status_reply = sr;
}

static int by_name(const void *a, const void *b)
{
	const Noded__NodeInfo *x = *(Noded__NodeInfo *const *)a;
	const Noded__NodeInfo *y = *(Noded__NodeInfo *const *)b;

	return strcmp(x->name, y->name);
}

/* Builds the list in the shard's arena (gone after this batch). */
static void list_nodes(struct nd_svc *svc, Noded__Frame *r,
		       Noded__NodeList *nl)
{
	struct nd_arena *a = &svc->s->arena;
	size_t k = 0;

	nl->nodes = nd_arena_alloc(a, (svc->count ? svc->count : 1) *
					      sizeof(*nl->nodes));
	for (size_t i = 0; nl->nodes && i < svc->nbuckets; i++) {
		for (struct node *n = svc->buckets[i]; n; n = n->next) {
			Noded__NodeInfo *ni = nd_arena_alloc(a, sizeof(*ni));
			Noded__NodeStatus *ns = NULL;

			if (!ni)
				break;
			noded__node_info__init(ni);
			ni->name = n->name;
			ni->address = n->address;
			ni->state = n->state;
			ni->last_heartbeat_unix_ms = n->last_hb_unix_ms;
			ni->connected_unix_ms = n->connected_unix_ms;
			if (n->status)
				ns = noded__node_status__unpack(&a->pc,
								n->status_len,
								n->status);
			if (ns) {
				ni->n_labels = ns->n_labels;
				ni->labels = (Noded__NodeInfo__LabelsEntry **)
						     ns->labels;
				ni->load1 = ns->load1;
				ni->mem_total_bytes = ns->mem_total_bytes;
				ni->mem_available_bytes = ns->mem_available_bytes;
				ni->slots_total = ns->slots_total;
				ni->slots_free = ns->slots_free;
				ni->running_tasks = (uint32_t)ns->n_running_tasks;
			}
			nl->nodes[k++] = ni;
		}
	}
	nl->n_nodes = k;
	if (k)
		qsort(nl->nodes, k, sizeof(*nl->nodes), by_name);
	r->body_case = NODED__FRAME__BODY_NODE_LIST;
	r->node_list = nl;
}

/* ---- tickets ---- */

static void ticket_free(struct nd_ticket *t)
{
	free(t->req);
	free(t->reply);
	free(t);
}

/* Back on the connection's shard: queue the reply if it is still there. */
static void ticket_done(struct nd_shard *s, void *arg)
{
	struct nd_ticket *t = arg;
	uint8_t *p;

	if (t->conn) {
		nd_list_del(&t->link);
		p = t->reply ? nd_conn_reserve(t->conn, t->reply_len) : NULL;
		if (p) {
			memcpy(p, t->reply, t->reply_len);
			nd_conn_commit(t->conn, t->reply_len);
		}
	}
	ticket_free(t);
}

static void reply_error(Noded__Frame *r, Noded__Error *e,
			Noded__ErrorCode code, const char *msg)
{
	e->code = code;
	e->message = (char *)msg;
	r->body_case = NODED__FRAME__BODY_ERROR;
	r->error = e;
}

/* On shard 0: run the method, pack the reply, send the ticket home. */
static void svc_exec(struct nd_shard *s0, void *arg)
{
	struct nd_ticket *t = arg;
	struct nd_svc *svc = s0->svc;
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__Error e = NODED__ERROR__INIT;
	Noded__ReportStatusReply sr = NODED__REPORT_STATUS_REPLY__INIT;
	Noded__NodeList nl = NODED__NODE_LIST__INIT;
	Noded__Frame *f = nd_frame_decode(t->req, t->req_len, &s0->arena.pc);

	r.kind = NODED__FRAME_KIND__REPLY;
	if (!f) {
		reply_error(&r, &e, NODED__ERROR_CODE__INTERNAL,
			    "forwarded request did not decode");
		goto send;
	}
	r.id = f->id;
	switch (f->body_case) {
	case NODED__FRAME__BODY_REPORT_STATUS:
		report_status(svc, t, f->report_status, &r, &sr);
		if (r.body_case == NODED__FRAME__BODY__NOT_SET)
			reply_error(&r, &e, NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
				    "out of memory");
		break;
	case NODED__FRAME__BODY_LIST_NODES:
		list_nodes(svc, &r, &nl);
		break;
	default:
		reply_error(&r, &e, NODED__ERROR_CODE__UNKNOWN_METHOD,
			    "not a node service method");
		break;
	}
send:
	t->reply_len = nd_frame_size(&r);
	t->reply = malloc(t->reply_len);
	if (t->reply)
		nd_frame_encode(&r, t->reply);
	if (t->home == s0 || nd_shard_post(s0, t->home, ticket_done, t) < 0)
		ticket_done(t->home, t);
}

void nd_svc_forward(struct nd_conn *c, const uint8_t *body, size_t len)
{
	struct nd_rpc_conn *rc = nd_rpc(c);
	struct nd_shard *s0 = &c->shard->srv->shards[0];
	struct nd_ticket *t = calloc(1, sizeof(*t));

	if (!t || !(t->req = malloc(len))) {
		free(t);
		nd_rpc_error(c, 0, NODED__FRAME_KIND__REPLY,
			     NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			     "out of memory");
		return;
	}
	memcpy(t->req, body, len);
	t->req_len = len;
	t->conn = c;
	t->home = c->shard;
	t->conn_serial = rc->serial;
	memcpy(t->peer, rc->peer, sizeof(t->peer));
	nd_list_add_tail(&rc->tickets, &t->link);
	if (c->shard == s0 || nd_shard_post(c->shard, s0, svc_exec, t) < 0)
		svc_exec(s0, t);
}

void nd_svc_conn_closed(struct nd_conn *c)
{
	struct nd_rpc_conn *rc = nd_rpc(c);

	while (rc->tickets.next && !nd_list_empty(&rc->tickets)) {
		struct nd_ticket *t = nd_container_of(rc->tickets.next,
						      struct nd_ticket, link);

		nd_list_del(&t->link);
		t->conn = NULL; /* the reply, when it comes, is dropped */
	}
}

struct stream_msg {
	uint64_t serial;
	bool open;
	char node[];
};

static void stream_msg(struct nd_shard *s0, void *arg)
{
	struct stream_msg *m = arg;
	struct nd_svc *svc = s0->svc;
	struct node *n = m->open ? node_get(svc, m->node)
				 : node_find(svc, m->node);

	if (n) {
		if (m->open) {
			n->stream_serial = m->serial;
		} else if (n->stream_serial == m->serial) {
			n->stream_serial = 0;
			/* Gone: counted from its last heartbeat, it turns
			 * SUSPECT then DEAD unless it reconnects. */
			if (n->state == NODED__NODE_STATE__NODE_ALIVE)
				n->state = NODED__NODE_STATE__NODE_SUSPECT;
		}
	}
	free(m);
}

static void post_stream(struct nd_shard *from, const char *node,
			uint64_t serial, bool open)
{
	size_t len = strlen(node) + 1;
	struct stream_msg *m = malloc(sizeof(*m) + len);
	struct nd_shard *s0 = &from->srv->shards[0];

	if (!m)
		return;
	m->serial = serial;
	m->open = open;
	memcpy(m->node, node, len);
	if (from == s0 || nd_shard_post(from, s0, stream_msg, m) < 0)
		stream_msg(s0, m);
}

void nd_svc_stream_opened(struct nd_shard *from, const char *node,
			  uint64_t serial)
{
	post_stream(from, node, serial, true);
}

void nd_svc_stream_closed(struct nd_shard *from, const char *node,
			  uint64_t serial)
{
	post_stream(from, node, serial, false);
}

/* Nothing of its own to finish yet. */
static bool svc_drain(struct nd_shard *s)
{
	(void)s;
	return false;
}

/* After the drain barrier no shard posts to us any more: free it all. */
static void svc_stop(struct nd_shard *s)
{
	struct nd_svc *svc = s->svc;

	for (size_t i = 0; i < svc->nbuckets; i++) {
		struct node *n = svc->buckets[i], *next;

		for (; n; n = next) {
			next = n->next;
			free(n->status);
			free(n->name);
			free(n);
		}
		svc->buckets[i] = NULL;
	}
	svc->count = 0;
	free(svc->buckets);
	free(svc);
	s->svc = NULL;
	s->svc_tick = NULL;
	s->svc_drain = NULL;
	s->svc_stop = NULL;
}

void nd_svc_shard_start(struct nd_shard *s, void *arg)
{
	struct nd_svc *svc;

	(void)arg;
	if (s->id != 0)
		return;
	svc = calloc(1, sizeof(*svc));
	if (!svc || !(svc->buckets = calloc(64, sizeof(*svc->buckets)))) {
		fprintf(stderr, "noded: node service: out of memory\n");
		abort();
	}
	svc->nbuckets = 64;
	svc->s = s;
	s->svc = svc;
	s->svc_tick = svc_tick;
	s->svc_drain = svc_drain;
	s->svc_stop = svc_stop;
}
