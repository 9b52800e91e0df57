/*
 * The node registry of the node service (on shard 0): nodes by name, their
 * liveness (the service tick: heartbeats, stalls of the master, leases),
 * the methods on them (report_status, node_leave, list_nodes) and the
 * registration of workers' AssignTask streams. Tickets and pushes are
 * service.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/server.h"
#include "node/node_id.h"
#include "node/svc.h"
#include "noded/json.h"
#include "rpc/server.h"
#include "wire/text.h"

uint64_t nd__hash(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 14695981039346656037ull; /* FNV-1a */

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static size_t hash(const char *s)
{
	return (size_t)nd__hash(s, strlen(s));
}

struct node *nd__node_find(struct nd_svc *svc, const char *name)
{
	size_t h = hash(name);
	struct node *n = svc->buckets[h & (svc->nbuckets - 1)];

	/* the kept hash spares a visit to each other name's memory */
	while (n && (n->hash != h || strcmp(n->name, name)))
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
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	free(svc->buckets);
	svc->buckets = b;
	svc->nbuckets = nb;
	return 0;
}

int nd__nodes_init(struct nd_svc *svc)
{
	svc->buckets = calloc(64, sizeof(*svc->buckets));
	if (!svc->buckets)
		return -ENOMEM;
	svc->nbuckets = 64;
	return 0;
}

struct node *nd__node_get(struct nd_svc *svc, const char *name)
{
	struct node *n = nd__node_find(svc, name);
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
	n->connected_unix_ms = nd_unix_ms();
	n->last_hb_ms = svc->s->now_ms;
	nd_list_init(&n->tasks);
	n->hash = hash(name);
	i = n->hash & (svc->nbuckets - 1);
	n->next = svc->buckets[i];
	svc->buckets[i] = n;
	svc->count++;
	ND_LOG(ND_LOG_INFO, "node.joined", ND_S("node", name));
	return n;
}

static void labels_free(struct node *n)
{
	for (size_t i = 0; i < n->nlabels; i++) {
		free(n->label_k[i]);
		free(n->label_v[i]);
	}
	free(n->label_k);
	free(n->label_v);
	n->label_k = n->label_v = NULL;
	n->nlabels = 0;
}

void nd__node_free(struct node *n)
{
	labels_free(n);
	free(n->status);
	free(n->name);
	free(n);
}

/* ---- heartbeats ---- */

/* The service tick's period (the shard's timer) and what makes a gap
 * between two ticks a stall of the master itself. */
#define TICK_MS 250
#define STALL_MS (4 * TICK_MS)
/* Added to a lease before the master takes it as over: the exec helper's
 * wake-up, the kill's delivery, and clock rates that differ by a few ppm
 * between machines. */
#define LEASE_MARGIN_MS 1000

/*
 * The master itself did not run for gap ms (SIGSTOP, a paused VM, an
 * overloaded host): nothing it could have read in that time counts
 * against its nodes, so their silence is counted from gap later. The
 * leases are not moved: they run on the workers' clocks (see svc.h).
 */
static void stalled(struct nd_svc *svc, uint64_t gap)
{
	uint64_t credit = gap - TICK_MS;

	for (size_t i = 0; i < svc->nbuckets; i++)
		for (struct node *n = svc->buckets[i]; n; n = n->next)
			n->last_hb_ms = n->last_hb_ms + credit > svc->s->now_ms ?
						svc->s->now_ms :
						n->last_hb_ms + credit;
	ND_LOG(ND_LOG_WARN, "master.stalled", ND_U("stalled_ms", gap),
	       ND_S("msg", "the master did not run for a while; its nodes' "
		    "silence is counted from now"));
}

/* Has the lease of every attempt on n ended (n takes leases), so that
 * they may be LOST or run elsewhere? */
static bool lease_over(const struct nd_svc *svc, const struct node *n)
{
	return !n->hb_seq || svc->s->now_ms >= n->lease_hb_ms +
				 svc->cfg->lease_ms + LEASE_MARGIN_MS;
}

/* A node that is DEAD or LEFT gives up its attempts once their lease is
 * over (its helpers killed them by then). */
static void release(struct nd_svc *svc, struct node *n)
{
	char why[96];

	/* with nothing running there, nothing to wait for */
	if (!n->release_due || (n->running && !lease_over(svc, n)))
		return;
	n->release_due = false;
	if (n->state == NODED__NODE_STATE__NODE_LEFT)
		snprintf(why, sizeof(why), "worker stopping");
	else
		snprintf(why, sizeof(why), "node %s died: no heartbeat for "
			 "%llu ms", n->name,
			 (unsigned long long)n->dead_quiet_ms);
	nd__tasks_node_dead(svc, n, why);
}

/*
 * Liveness, every TICK_MS. A gap since the last tick far over it means
 * the master itself stalled: it first reads what arrived meanwhile (the
 * judging waits for the next tick) and counts its nodes' silence from
 * then, so it never blames them for its own stall.
 */
void nd__svc_tick(struct nd_shard *s)
{
	struct nd_svc *svc = s->svc;
	const struct nd_svc_config *cfg = svc->cfg;
	uint64_t gap = svc->last_tick_ms ? s->now_ms - svc->last_tick_ms : 0;

	if (!nd__svc_serving(svc))
		return; /* judging starts over once it serves */
	svc->last_tick_ms = s->now_ms;
	if (gap > STALL_MS) {
		stalled(svc, gap);
		/* Judged at the next tick, unless this one was already put
		 * off: a master whose every tick is late (it is swamped)
		 * still judges, each node's silence having been credited. */
		if (!svc->judging_put_off) {
			svc->judging_put_off = true;
			return;
		}
	}
	svc->judging_put_off = false;
	for (size_t i = 0; i < svc->nbuckets; i++) {
		for (struct node *n = svc->buckets[i]; n; n = n->next) {
			uint64_t quiet = s->now_ms - n->last_hb_ms;

			if (n->state == NODED__NODE_STATE__NODE_DEAD ||
			    n->state == NODED__NODE_STATE__NODE_LEFT) {
				release(svc, n);
				continue;
			}
			if (quiet >= cfg->heartbeat_timeout_ms) {
				uint64_t left = lease_over(svc, n) ? 0 :
					n->lease_hb_ms + cfg->lease_ms +
					LEASE_MARGIN_MS - s->now_ms;

				n->state = NODED__NODE_STATE__NODE_DEAD;
				n->dead_quiet_ms = quiet;
				n->down_ms = s->now_ms;
				n->release_due = true;
				ND_LOG(ND_LOG_WARN, "node.lost", ND_S("node", n->name),
				       ND_S("addr", n->address),
				       ND_U("silent_ms", quiet),
				       ND_U("running_tasks", n->running),
				       ND_U("lease_left_ms", left),
				       ND_S("msg", "no heartbeat: node is DEAD; "
					    "its running tasks are LOST (or "
					    "retried) once their lease is "
					    "over"));
				release(svc, n);
			} else if (quiet >= 2 * cfg->heartbeat_ms &&
				   n->state == NODED__NODE_STATE__NODE_ALIVE) {
				n->state = NODED__NODE_STATE__NODE_SUSPECT;
				ND_LOG(ND_LOG_WARN, "node.suspect",
				       ND_S("node", n->name),
				       ND_U("silent_ms", quiet));
			}
		}
	}
	nd__nodes_lifecycle_tick(svc);
	nd__tasks_tick(svc);
	nd__tasks_trim(svc); /* tasks lost above may be over the history */
}

/* ---- registry methods ---- */

/* The report's labels are the ones kept (most heartbeats). */
static bool labels_same(const struct node *n, const Noded__NodeStatus *ns)
{
	if (n->nlabels != ns->n_labels || !n->label_k)
		return false;
	for (size_t i = 0; i < ns->n_labels; i++)
		if (strcmp(n->label_k[i], ns->labels[i]->key) ||
		    strcmp(n->label_v[i], ns->labels[i]->value))
			return false;
	return true;
}

static void set_labels(struct node *n, const Noded__NodeStatus *ns)
{
	if (labels_same(n, ns))
		return;
	labels_free(n);
	n->label_k = calloc(ns->n_labels ? ns->n_labels : 1, sizeof(char *));
	n->label_v = calloc(ns->n_labels ? ns->n_labels : 1, sizeof(char *));
	if (!n->label_k || !n->label_v)
		return;
	for (size_t i = 0; i < ns->n_labels; i++) {
		n->label_k[i] = strdup(ns->labels[i]->key);
		n->label_v[i] = strdup(ns->labels[i]->value);
		n->nlabels = i + 1;
	}
}

void nd__node_report_status(struct nd_svc *svc, struct nd_ticket *t,
			    const Noded__Frame *f, struct nd_out *o)
{
	const Noded__NodeStatus *ns = f->report_status;
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__ReportStatusReply sr = NODED__REPORT_STATUS_REPLY__INIT;
	struct node *n = nd__node_find(svc, ns->name);
	bool was_usable;

	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	/* A report speaks for the node its connection registered, and for no
	 * other: nobody else can flip its labels, slots or address. */
	if (!n || n->stream.serial != t->conn_serial) {
		bool held = n && n->stream.serial;

		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      held ? NODED__ERROR_CODE__ALREADY_EXISTS :
				     NODED__ERROR_CODE__BAD_REQUEST,
			      held ? "node '%s' is registered on another "
				     "connection: only its worker reports "
				     "for it" :
				     "node '%s' is not registered on this "
				     "connection: open an AssignTask stream "
				     "for it first", ns->name);
		return;
	}
	/* Kept as the worker packed it (its frame, as received), not
	 * packed again: a fleet's reports outnumber the reads of them. */
	if (t->req_len > n->status_cap) {
		uint8_t *p = realloc(n->status, t->req_len);

		if (!p) {
			nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
				      NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
				      "out of memory");
			return;
		}
		n->status = p;
		n->status_cap = t->req_len;
	}
	memcpy(n->status, t->req, t->req_len);
	n->status_len = t->req_len;
	set_labels(n, ns);
	/* as scheduler.c's has_room: a node takes tasks once it has sent a
	 * heartbeat on its current connection (its leases count from one) */
	was_usable = n->state == NODED__NODE_STATE__NODE_ALIVE &&
		     n->hb_serial == n->stream.serial && !nd__node_closed(n) &&
		     nd__node_used(n) < n->slots;
	if (n->state == NODED__NODE_STATE__NODE_DEAD ||
	    n->state == NODED__NODE_STATE__NODE_LEFT) {
		ND_LOG(ND_LOG_INFO, "node.back", ND_S("node", n->name),
		       ND_S("addr", t->peer), ND_U("running_tasks", n->running));
		n->connected_unix_ms = nd_unix_ms();
		/* Back within the lease: its tasks were never given up. */
		n->release_due = false;
	}
	n->state = NODED__NODE_STATE__NODE_ALIVE;
	n->slots = ns->slots_total;
	nd__tasks_held(svc, n, ns->running_tasks, ns->n_running_tasks);
	n->last_hb_ms = svc->s->now_ms;
	n->lease_hb_ms = svc->s->now_ms;
	n->hb_seq = ns->heartbeat_seq;
	n->hb_serial = t->conn_serial;
	if (n->reconcile && nd__svc_serving(svc) &&
	    n->stream.serial == t->conn_serial) {
		n->reconcile = false;
		nd__tasks_reconcile(svc, n, ns->running_tasks,
				    ns->n_running_tasks);
	}
	if (n->stream.serial == t->conn_serial && ns->heartbeat_seq) {
		if (ns->n_running_attempts == ns->n_running_tasks)
			nd__tasks_void(svc, n, ns->running_tasks,
				       ns->running_attempts,
				       ns->n_running_tasks);
		/* Renews the leases of what it runs; an idle node needs none
		 * (and 10,000 of them cost no send). Lazy: it goes with our
		 * next frame to it or within the tick, well inside a lease. */
		if (n->running || ns->n_running_tasks) {
			Noded__Frame af = NODED__FRAME__INIT;
			Noded__HeartbeatAck ha = NODED__HEARTBEAT_ACK__INIT;

			ha.seq = ns->heartbeat_seq;
			af.id = n->stream.stream_id;
			af.kind = NODED__FRAME_KIND__STREAM_ITEM;
			af.body_case = NODED__FRAME__BODY_HEARTBEAT_ACK;
			af.heartbeat_ack = &ha;
			nd__out_frame(o, &af);
			o->lazy = f->kind == NODED__FRAME_KIND__NOTIFY;
		}
	}
	n->last_hb_unix_ms = nd_unix_ms();

	sr.server_time_ms = n->last_hb_unix_ms;
	sr.heartbeat_interval_ms = svc->cfg->heartbeat_ms;
	r.body_case = NODED__FRAME__BODY_STATUS_REPLY;
	r.status_reply = &sr;
	if (f->kind != NODED__FRAME_KIND__NOTIFY)
		nd__out_frame(o, &r); /* a notification wants no reply */
	if (!was_usable && nd__node_used(n) < n->slots && n->stream.serial &&
	    n->hb_serial == n->stream.serial && !nd__node_closed(n))
		nd__tasks_schedule(svc);
}

/*
 * NodeLeave: the worker of this connection drains (no new tasks) or stops
 * (its tasks end LOST "worker stopping" as it reports them; when the
 * connection closes the node is LEFT). Only the node whose AssignTask
 * stream runs on this connection may say so.
 */
void nd__node_leave(struct nd_svc *svc, struct nd_ticket *t,
		    const Noded__Frame *f, struct nd_out *o)
{
	const Noded__NodeLeave *nl = f->leave;
	struct node *n = nd__node_find(svc, nl->node_name);
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__Ack a = NODED__ACK__INIT;

	if (!n || !n->stream.serial || n->stream.serial != t->conn_serial) {
		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__BAD_REQUEST,
			      "leave: '%s' is not the node registered on "
			      "this connection", nl->node_name);
		return;
	}
	if (!nl->drain && !n->leaving) {
		n->leaving = n->draining = true;
		ND_LOG(ND_LOG_INFO, "node.leaving", ND_S("node", n->name),
		       ND_U("running_tasks", n->running),
		       ND_S("msg", "its worker is stopping: its tasks end "
			    "LOST (or are retried) as it reports them"));
	} else if (nl->drain && !n->draining) {
		n->draining = true;
		ND_LOG(ND_LOG_INFO, "node.draining", ND_S("node", n->name),
		       ND_U("running_tasks", n->running),
		       ND_S("msg", "its worker drains: no new tasks"));
	}
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_ACK;
	r.ack = &a;
	nd__out_frame(o, &r);
}

static int by_name(const void *a, const void *b)
{
	const Noded__NodeInfo *x = *(Noded__NodeInfo *const *)a;
	const Noded__NodeInfo *y = *(Noded__NodeInfo *const *)b;

	return strcmp(x->name, y->name);
}

Noded__NodeInfo *nd__node_info(struct nd_svc *svc, struct node *n)
{
	struct nd_arena *a = svc->arena;
	Noded__NodeInfo *ni = nd_arena_alloc(a, sizeof(*ni));
	Noded__NodeStatus *ns = NULL;

	if (!ni)
		return NULL;
	noded__node_info__init(ni);
	ni->name = n->name;
	ni->address = n->address;
	ni->state = n->state;
	ni->last_heartbeat_unix_ms = n->last_hb_unix_ms;
	ni->connected_unix_ms = n->connected_unix_ms;
	ni->running_tasks = n->running;
	ni->draining = nd__node_closed(n);
	ni->drain_operator = n->drain_op;
	ni->drain_worker = n->draining;
	ni->drain_deadline_unix_ms = n->drain_op && n->drain_timed ?
					     n->drain_deadline_unix_ms : 0;
	ni->drain_since_unix_ms = n->drain_op ? n->drain_since_unix_ms : 0;
	if (n->status_len) {
		Noded__Frame *rf = nd_frame_decode(n->status, n->status_len,
						   &a->pc);

		if (rf && rf->body_case == NODED__FRAME__BODY_REPORT_STATUS)
			ns = rf->report_status;
	}
	if (ns) {
		ni->n_labels = ns->n_labels;
		ni->labels = (Noded__NodeInfo__LabelsEntry **)ns->labels;
		ni->load1 = ns->load1;
		ni->mem_total_bytes = ns->mem_total_bytes;
		ni->mem_available_bytes = ns->mem_available_bytes;
		ni->slots_total = ns->slots_total;
		ni->slots_free = nd__node_used(n) < ns->slots_total ?
					 ns->slots_total - nd__node_used(n) : 0;
	}
	return ni;
}

/* Builds the list in the shard's arena (gone after this batch). */
void nd__node_list(struct nd_svc *svc, const Noded__Frame *f,
		   struct nd_out *o)
{
	struct nd_arena *a = &svc->s->arena;
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__NodeList nl = NODED__NODE_LIST__INIT;
	size_t k = 0;

	nl.nodes = nd_arena_alloc(a, (svc->count ? svc->count : 1) *
					     sizeof(*nl.nodes));
	for (size_t i = 0; nl.nodes && i < svc->nbuckets; i++) {
		for (struct node *n = svc->buckets[i]; n; n = n->next) {
			Noded__NodeInfo *ni = nd__node_info(svc, n);

			if (!ni)
				break;
			nl.nodes[k++] = ni;
		}
	}
	nl.n_nodes = k;
	if (k)
		qsort(nl.nodes, k, sizeof(*nl.nodes), by_name);
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_NODE_LIST;
	r.node_list = &nl;
	nd__out_frame(o, &r);
}

/* ---- worker streams ---- */

struct stream_msg {
	struct nd_msg msg;
	struct nd_dest dest;
	bool open;
	uint8_t id[16];
	uint8_t id_len;
	char peer[64];
	char node[];
};

/* The answer to a registration, or the end of a replaced one, for the
 * connection's shard. */
struct registered_msg {
	struct nd_msg post;
	uint64_t serial, stream_id;
	Noded__ErrorCode code;
	char leader[128];             /* NOT_LEADER: where it is, or "" */
	char msg[];
};

static void registered_deliver(struct nd_shard *s, struct nd_msg *msg)
{
	struct registered_msg *m = nd_container_of(msg, struct registered_msg,
						   post);
	struct nd_conn *c = nd_u64map_get(&s->serials, m->serial);

	if (c)
		nd__rpc_assign_registered(c, m->stream_id, m->code, m->msg,
					  m->leader);
	free(m);
}

static void registered(struct nd_svc *svc, const struct nd_dest *to,
		       Noded__ErrorCode code, const char *msg)
{
	size_t len = strlen(msg) + 1;
	struct registered_msg *m = malloc(sizeof(*m) + len);
	struct nd_shard *dst;

	if (!m || to->shard >= svc->s->srv->nshards) {
		free(m);
		return; /* the worker times out and retries */
	}
	m->serial = to->serial;
	m->stream_id = to->stream_id;
	m->code = code;
	snprintf(m->leader, sizeof(m->leader), "%s",
		 code == NODED__ERROR_CODE__NOT_LEADER ?
		 nd__replica_leader_client(svc) : "");
	memcpy(m->msg, msg, len);
	dst = &svc->s->srv->shards[to->shard];
	nd__svc_post(svc, dst, &m->post, registered_deliver);
}

void nd__registry_msg_drop(struct nd_msg *m)
{
	free(nd_container_of(m, struct registered_msg, post));
}

static bool same_id(const struct node *n, const struct stream_msg *m)
{
	return n->id_len && n->id_len == m->id_len &&
	       !memcmp(n->id, m->id, n->id_len);
}

/*
 * Who may register a name (proto: AssignTaskRequest.node_id):
 * - its own connection again (a new stream): yes;
 * - while another connection holds it and the node is not DEAD: only the
 *   same node id (a worker back before we saw its old connection go), which
 *   replaces the old registration and ends the old stream; another id (or
 *   none) gets ALREADY_EXISTS;
 * - when nobody holds it (disconnected, or DEAD): anyone. Another id than
 *   the node had is another worker: the tasks the old one ran are LOST (it
 *   will not report them), and it starts with no slots or labels until its
 *   first report.
 * Returns the node, or NULL after refusing.
 */
static struct node *stream_register(struct nd_svc *svc, struct stream_msg *m)
{
	struct node *n = nd__node_find(svc, m->node);
	char why[512], idhex[33];
	bool other;

	if (!n) {
		n = nd__node_get(svc, m->node);
		if (!n) {
			registered(svc, &m->dest,
				   NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
				   "out of memory");
			return NULL;
		}
		goto take;
	}
	if (n->stream.serial == m->dest.serial)
		goto take;
	/* known from the ledger only: its tasks name it, not an id */
	other = !same_id(n, m) && !n->restored;
	if (n->stream.serial && other &&
	    n->state != NODED__NODE_STATE__NODE_DEAD) {
		nd_node_id_hex(n->id, n->id_len, idhex);
		snprintf(why, sizeof(why), "node '%s' is registered by a live "
			 "worker at %s with another node id: pick another "
			 "--name, or stop that worker first", n->name,
			 n->address);
		ND_LOG(ND_LOG_WARN, "node.name_taken", ND_S("node", n->name),
		       ND_S("addr", m->peer), ND_S("holder", n->address),
		       ND_S("holder_id", idhex),
		       ND_S("msg", "refused: the name is held by another live "
			    "worker"));
		registered(svc, &m->dest, NODED__ERROR_CODE__ALREADY_EXISTS,
			   why);
		return NULL;
	}
	if (n->stream.serial) {
		snprintf(why, sizeof(why), "node '%s' registered again from %s "
			 "(%s): this stream is replaced", n->name, m->peer,
			 other ? "the node was DEAD" : "same node id");
		registered(svc, &n->stream, NODED__ERROR_CODE__ALREADY_EXISTS,
			   why);
	}
	if (other && (n->id_len || n->running || n->stream.serial)) {
		ND_LOG(ND_LOG_WARN, "node.replaced", ND_S("node", n->name),
		       ND_S("addr", m->peer), ND_S("old_addr", n->address),
		       ND_U("lost_tasks", n->running),
		       ND_S("msg", "another worker (another node id) took the "
			    "name"));
		snprintf(why, sizeof(why), "node %s was taken over by another "
			 "worker (from %s)", n->name, m->peer);
		labels_free(n);
		free(n->status);
		n->status = NULL;
		n->status_len = n->status_cap = 0;
		n->slots = n->held = 0;
		n->state = NODED__NODE_STATE__NODE_ALIVE;
		n->last_hb_ms = svc->s->now_ms;
		n->connected_unix_ms = nd_unix_ms();
		/* registered (not DEAD): its waiting tasks are for the name
		 * and stay; no slot until it reports, so none goes to it yet */
		n->stream = m->dest;
		if (n->running)
			nd__tasks_node_dead(svc, n, why);
	}
take:
	n->restored = false;
	n->stream = m->dest;
	/* a worker that drains or leaves says so again */
	n->draining = n->leaving = false;
	n->gone_unix_ms = 0;
	memcpy(n->id, m->id, m->id_len);
	n->id_len = m->id_len;
	snprintf(n->address, sizeof(n->address), "%s", m->peer);
	registered(svc, &m->dest, 0, "");
	return n;
}

static void stream_msg(struct nd_shard *s0, struct nd_msg *msg)
{
	struct stream_msg *m = nd_container_of(msg, struct stream_msg, msg);
	struct nd_svc *svc = s0->svc;
	struct node *n;

	if (!nd__svc_serving(svc)) {
		/* Not the leader (yet): the worker tries again, here or at
		 * the leader. A stream that closes is simply gone. */
		if (m->open)
			registered(svc, &m->dest, svc->role ==
				   ND_RAFT_FOLLOWER &&
				   *nd__replica_leader_client(svc) ?
				   NODED__ERROR_CODE__NOT_LEADER :
				   NODED__ERROR_CODE__UNAVAILABLE,
				   "this master does not lead the cluster "
				   "now; register again later");
		else if ((n = nd__node_find(svc, m->node)) &&
			 n->stream.serial == m->dest.serial)
			n->stream.serial = 0;
		free(m);
		return;
	}
	if (m->open) {
		if (stream_register(svc, m))
			nd__tasks_schedule(svc);
	} else if ((n = nd__node_find(svc, m->node)) &&
		   n->stream.serial == m->dest.serial) {
		n->stream.serial = 0;
		n->gone_unix_ms = nd_unix_ms();
		if (n->leaving && n->state != NODED__NODE_STATE__NODE_DEAD) {
			/* It said it was stopping: LEFT, not DEAD. What it
			 * did not report ended is released when its lease is
			 * over, as for a dead node. */
			n->state = NODED__NODE_STATE__NODE_LEFT;
			n->release_due = true;
			n->down_ms = s0->now_ms;
			ND_LOG(ND_LOG_INFO, "node.left", ND_S("node", n->name),
			       ND_S("addr", n->address),
			       ND_U("running_tasks", n->running));
			release(svc, n);
			free(m);
			return;
		}
		/* Gone: counted from its last heartbeat, it turns SUSPECT
		 * then DEAD (and its tasks LOST) unless it comes back. */
		if (n->state == NODED__NODE_STATE__NODE_ALIVE)
			n->state = NODED__NODE_STATE__NODE_SUSPECT;
		ND_LOG(n->running ? ND_LOG_WARN : ND_LOG_INFO, "node.disconnected",
		       ND_S("node", n->name),
		       ND_S("addr", n->address),
		       ND_U("running_tasks", n->running));
	}
	free(m);
}

int nd__node_forget(struct nd_svc *svc, struct node *n, const char *why)
{
	struct node **pp = &svc->buckets[n->hash & (svc->nbuckets - 1)];

	if (n->state != NODED__NODE_STATE__NODE_DEAD &&
	    n->state != NODED__NODE_STATE__NODE_LEFT)
		return -EBUSY;
	release(svc, n); /* what its lease no longer covers */
	if (n->release_due || !nd_list_empty(&n->tasks))
		return -EBUSY;
	while (*pp != n)
		pp = &(*pp)->next;
	*pp = n->next;
	svc->count--;
	ND_LOG(ND_LOG_INFO, "node.forgotten", ND_S("node", n->name),
	       ND_S("state", nd_node_state_name(n->state)),
	       ND_S("reason", why));
	if (n->stream.serial)
		registered(svc, &n->stream, NODED__ERROR_CODE__NOT_FOUND, why);
	nd__node_free(n);
	return 0;
}

static void post_stream(struct nd_shard *from, const char *node,
			const char *peer, const uint8_t *id, size_t id_len,
			uint64_t serial, uint64_t stream_id, bool open)
{
	size_t len = strlen(node) + 1;
	struct stream_msg *m = calloc(1, sizeof(*m) + len);
	struct nd_shard *s0 = &from->srv->shards[0];

	if (!m)
		return;
	m->dest.shard = from->id;
	m->dest.serial = serial;
	m->dest.stream_id = stream_id;
	m->open = open;
	if (id_len > sizeof(m->id))
		id_len = sizeof(m->id);
	if (id_len)
		memcpy(m->id, id, id_len);
	m->id_len = (uint8_t)id_len;
	snprintf(m->peer, sizeof(m->peer), "%s", peer ? peer : "");
	memcpy(m->node, node, len);
	nd_shard_post(from, s0, &m->msg, stream_msg);
}

void nd_svc_stream_opened(struct nd_conn *c, const char *node,
			  const uint8_t *id, size_t id_len,
			  uint64_t stream_id)
{
	struct nd_svc_peer *sp = nd_svc_peer(c);

	post_stream(c->shard, node, sp->peer, id, id_len, sp->serial,
		    stream_id, true);
}

void nd_svc_stream_closed(struct nd_shard *from, const char *node,
			  uint64_t serial)
{
	post_stream(from, node, NULL, NULL, 0, serial, 0, false);
}
