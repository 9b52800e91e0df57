/*
 * The node service on shard 0: the ticket round trip for forwarded
 * requests, pushes to connections on other shards, and its life cycle. The
 * node registry is registry.c's, the task engine tasks.c's (with
 * scheduler.c, watch.c, out.c). See service.h for the threading model.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/server.h"
#include "node/node_id.h"
#include "node/svc.h"
#include "noded/json.h"
#include "rpc/server.h"
#include "wire/text.h"

/* ---- pushes ---- */

struct push {
	struct nd_msg msg;
	uint64_t serial;
	size_t len;
	uint8_t data[];
};

/* Frames for c from the service, in c's protocol. */
static void deliver(struct nd_conn *c, const uint8_t *frames, size_t len)
{
	if (c->ops->deliver)
		c->ops->deliver(c, frames, len);
	else
		nd_conn_write(c, frames, len);
}

static void push_deliver(struct nd_shard *s, struct nd_msg *m)
{
	struct push *p = nd_container_of(m, struct push, msg);
	struct nd_conn *c = nd_u64map_get(&s->serials, p->serial);

	if (c) {
		deliver(c, p->data, p->len);
		if (nd_conn_queued(c) > s->cfg->max_output / 2)
			nd_svc_congested(c, true);
	}
	free(p);
}

/* Takes frames already encoded (len bytes, copied). */
void nd__svc_push_raw(struct nd_svc *svc, const struct nd_dest *to,
		      const uint8_t *frames, size_t len)
{
	struct nd_shard *dst;
	struct push *p;

	if (!to->serial || to->shard >= svc->s->srv->nshards || !len)
		return;
	p = malloc(sizeof(*p) + len);
	if (!p)
		return;
	p->serial = to->serial;
	p->len = len;
	memcpy(p->data, frames, len);
	dst = &svc->s->srv->shards[to->shard];
	nd__svc_post(svc, dst, &p->msg, push_deliver);
}

void nd__svc_push(struct nd_svc *svc, const struct nd_dest *to,
		  const Noded__Frame *f)
{
	struct nd_out o = { 0 };

	nd__out_frame(&o, f);
	nd__svc_push_raw(svc, to, o.buf.data, o.buf.len);
	nd_buf_free(&o.buf);
}

/* ---- tickets ---- */

static void ticket_free(struct nd_ticket *t)
{
	free(t->req);
	free(t->reply);
	free(t);
}

/* Back on the connection's shard: queue the reply if it is still there. */
static void ticket_done(struct nd_shard *s, struct nd_msg *m)
{
	struct nd_ticket *t = nd_container_of(m, struct nd_ticket, msg);

	if (t->method) {
		nd_hist_add(&s->m.rpc_latency[t->method], nd_mono_ns() - t->t0_ns);
		if (t->error)
			s->m.rpc_errors[t->method]++;
	}
	if (t->conn) {
		nd_list_del(&t->link);
		if (t->lazy && !t->conn->ops->deliver)
			nd_conn_write_lazy(t->conn, t->reply, t->reply_len);
		else if (t->reply_len)
			deliver(t->conn, t->reply, t->reply_len);
	}
	ticket_free(t);
}

static void ticket_send_home(struct nd_shard *s0, struct nd_ticket *t)
{
	nd__svc_post(s0->svc, t->home, &t->msg, ticket_done);
}

/* Empties the ticket's reply for an error; its request, decoded, when
 * someone waits for the answer (NULL: a notification, or no memory: the
 * requester times out). */
static const Noded__Frame *ticket_error_start(struct nd_svc *svc,
					      struct nd_ticket *t)
{
	Noded__Frame *f = nd_frame_decode(t->req, t->req_len,
					  &svc->s->arena.pc);

	free(t->reply);
	t->reply = NULL;
	t->reply_len = 0;
	t->lazy = false;
	t->error = true;
	return f && f->kind != NODED__FRAME_KIND__NOTIFY ? f : NULL;
}

/* The ticket's reply becomes an Error frame (code, msg), for its request's
 * id. */
static void ticket_error(struct nd_svc *svc, struct nd_ticket *t,
			 Noded__ErrorCode code, const char *msg)
{
	const Noded__Frame *f = ticket_error_start(svc, t);
	struct nd_out o = { 0 };

	if (!f)
		return;
	nd__out_error(&o, f->id, NODED__FRAME_KIND__REPLY, code, "%s", msg);
	t->reply = o.buf.data;
	t->reply_len = o.buf.len;
}

static bool reads_only(const Noded__Frame *f);

void nd__svc_post_failed(struct nd_svc *svc, struct nd_msg *m)
{
	if (m->fn == ticket_done) {
		struct nd_ticket *t = nd_container_of(m, struct nd_ticket, msg);
		Noded__Frame *f = nd_frame_decode(t->req, t->req_len,
						  &svc->s->arena.pc);

		if (f && reads_only(f)) {
			/* it changed nothing: asked again of the committed
			 * ledger, once loaded (nd__svc_run_unready) */
			free(t->reply);
			t->reply = NULL;
			t->reply_len = 0;
			nd_list_add_tail(&svc->unready, &t->held);
			svc->nunready++;
			return;
		}
		ticket_error(svc, t, NODED__ERROR_CODE__UNAVAILABLE,
			     "the master could not commit this to its log "
			     "(it lost the leadership, or its disk failed): "
			     "it may or may not have happened; check, then "
			     "retry");
		nd_shard_post(svc->s, m->to, m, ticket_done);
	} else if (m->fn == push_deliver) {
		free(nd_container_of(m, struct push, msg));
	} else {
		nd__registry_msg_drop(m);
	}
}

static void exec_ticket(struct nd_svc *svc, struct nd_ticket *t);

/* A read that any master may answer from its copy (--stale). */
static bool asks_stale(const Noded__Frame *f)
{
	return (f->body_case == NODED__FRAME__BODY_GET_TASK &&
		f->get_task->stale) ||
	       (f->body_case == NODED__FRAME__BODY_LIST_TASKS &&
		f->list_tasks->stale);
}

/*
 * What a master that does not serve (not the leader, or a leader that
 * cannot write its log) still answers: who leads, always; reads from its
 * committed ledger when they ask for it (stale) or when it leads but
 * cannot write (a full disk); other reads wait for a leader, or go to it
 * (its view is the current one); and, a leader that cannot write, its
 * workers' heartbeats, so
 * their leases are renewed and their tasks run on while it waits for
 * space (heartbeats change nothing in the log).
 */
static bool served_anyway(const struct nd_svc *svc, const Noded__Frame *f)
{
	/* a leader that cannot write: nobody else has a newer view */
	bool no_other = svc->role == ND_RAFT_STALLED;

	if (f->body_case == NODED__FRAME__BODY_LEADER)
		return true;
	if (!svc->loaded)
		return false;
	if (reads_only(f))
		return no_other || asks_stale(f);
	return svc->role == ND_RAFT_STALLED &&
	       f->body_case == NODED__FRAME__BODY_REPORT_STATUS;
}

/* Methods that change nothing: served from the committed ledger by a
 * master that does not lead (stale reads; replica.c). */
static bool reads_only(const Noded__Frame *f)
{
	return f->body_case == NODED__FRAME__BODY_LEADER ||
	       f->body_case == NODED__FRAME__BODY_GET_TASK ||
	       f->body_case == NODED__FRAME__BODY_LIST_TASKS ||
	       f->body_case == NODED__FRAME__BODY_LIST_NODES;
}

/* Not serving: the ticket waits for the leader to load its ledger, or is
 * told where the leader is. */
static void not_serving(struct nd_svc *svc, struct nd_ticket *t)
{
	char msg[320];

	if (svc->role == ND_RAFT_STOPPED) {
		snprintf(msg, sizeof(msg), "this master's log failed: %s",
			 svc->last_raft_err);
		ticket_error(svc, t, NODED__ERROR_CODE__UNAVAILABLE, msg);
	} else if (svc->disk_full) {
		snprintf(msg, sizeof(msg), "the master's log is out of disk "
			 "space (%s): nothing new is accepted until space is "
			 "freed in its --data-dir", svc->last_raft_err);
		ticket_error(svc, t, NODED__ERROR_CODE__RESOURCE_EXHAUSTED, msg);
	} else if (svc->role == ND_RAFT_STALLED) {
		snprintf(msg, sizeof(msg), "the master cannot write its log "
			 "(%s): retry later", svc->last_raft_err);
		ticket_error(svc, t, NODED__ERROR_CODE__UNAVAILABLE, msg);
	} else if (svc->role == ND_RAFT_FOLLOWER && svc->leader_id &&
		   *nd__replica_leader_client(svc)) {
		const Noded__Frame *f = ticket_error_start(svc, t);
		struct nd_out o = { 0 };

		if (f) {
			nd__out_not_leader(svc, &o, f->id);
			t->reply = o.buf.data;
			t->reply_len = o.buf.len;
		}
	} else if (svc->nunready >= ND_UNREADY_MAX) {
		ticket_error(svc, t, NODED__ERROR_CODE__UNAVAILABLE,
			     "the master has no leader yet and too many "
			     "requests wait for one; retry");
	} else {
		nd_list_add_tail(&svc->unready, &t->held);
		svc->nunready++;
		return;
	}
	ticket_send_home(svc->s, t);
}

void nd__svc_run_unready(struct nd_svc *svc)
{
	struct nd_list waiting;

	nd_list_init(&waiting);
	nd_list_take(&waiting, &svc->unready);
	svc->nunready = 0;
	while (!nd_list_empty(&waiting)) {
		struct nd_ticket *t = nd_container_of(waiting.next,
						      struct nd_ticket, held);

		nd_list_del(&t->held);
		exec_ticket(svc, t);
	}
}

/* On shard 0: run the method, pack the reply, send the ticket home. */
static void svc_exec(struct nd_shard *s0, struct nd_msg *m)
{
	exec_ticket(s0->svc, nd_container_of(m, struct nd_ticket, msg));
}

static void exec_ticket(struct nd_svc *svc, struct nd_ticket *t)
{
	struct nd_shard *s0 = svc->s;
	struct nd_out o = { 0 };
	struct nd_dest from = { t->home->id, t->conn_serial, 0 };
	/* decoded already when it comes from a connection of shard 0 (a
	 * worker's heartbeat, say), in the same arena */
	const Noded__Frame *f = t->req_f ? t->req_f :
		nd_frame_decode(t->req, t->req_len, &s0->arena.pc);

	t->req_f = NULL; /* a ticket that waits is decoded again */

	if (!nd__svc_serving(svc) && !(f && served_anyway(svc, f))) {
		not_serving(svc, t);
		return;
	}
	if (!f) {
		nd__out_error(&o, 0, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__INTERNAL,
			      "forwarded request did not decode");
		goto send;
	}
	from.stream_id = f->id;
	switch (f->body_case) {
	case NODED__FRAME__BODY_REPORT_STATUS:
		nd__node_report_status(svc, t, f, &o);
		break;
	case NODED__FRAME__BODY_LIST_NODES:
		nd__node_list(svc, f, &o);
		break;
	case NODED__FRAME__BODY_SUBMIT:
		nd__task_submit(svc, f, NULL, &o);
		break;
	case NODED__FRAME__BODY_RUN:
		nd__task_submit(svc, f, &from, &o);
		break;
	case NODED__FRAME__BODY_GET_TASK:
		nd__task_get(svc, f, &o);
		break;
	case NODED__FRAME__BODY_LIST_TASKS:
		nd__task_list(svc, f, &o);
		break;
	case NODED__FRAME__BODY_CANCEL_TASK:
		nd__task_cancel(svc, f, &from, &o);
		break;
	case NODED__FRAME__BODY_WATCH:
		nd__task_watch(svc, f, &from, &o);
		break;
	case NODED__FRAME__BODY_TASK_UPDATE:
		nd__task_update(svc, f, t->conn_serial, &o);
		break;
	case NODED__FRAME__BODY_LEAVE:
		nd__node_leave(svc, t, f, &o);
		break;
	case NODED__FRAME__BODY_NODE_DRAIN:
		nd__node_drain(svc, f, &o);
		break;
	case NODED__FRAME__BODY_NODE_ELIGIBLE:
		nd__node_eligible(svc, f, &o);
		break;
	case NODED__FRAME__BODY_NODE_REMOVE:
		nd__node_remove(svc, f, &o);
		break;
	case NODED__FRAME__BODY_LEADER:
		nd__cluster_leader(svc, f, &o);
		break;
	case NODED__FRAME__BODY_RAFT_CHANGE:
		nd__cluster_change(svc, f, &from, &o);
		break;
	case NODED__FRAME__BODY_SNAPSHOT:
		nd__cluster_snapshot(svc, f, &o);
		break;
	case NODED__FRAME__BODY_RESTORE:
		nd__cluster_restore(svc, f, &o);
		break;
	default:
		nd__out_error(&o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__UNKNOWN_METHOD,
			      "not a node service method");
		break;
	}
	nd__tasks_trim(svc);
send:
	t->reply = o.buf.data;      /* the ticket takes the memory */
	t->reply_len = o.buf.len;
	t->error = o.errors;
	t->lazy = o.lazy && !o.errors;
	if (o.hold_task) {
		/* A watcher lags: the worker gets this ack when it caught up,
		 * and reads no more output meanwhile. */
		t->held_task = o.hold_task;
		nd_list_add_tail(&svc->held, &t->held);
		return;
	}
	ticket_send_home(s0, t);
}

/* Releases the held acks whose tasks no longer have a lagging watcher. */
static void release_held(struct nd_svc *svc)
{
	struct nd_list *l, *next;

	for (l = svc->held.next; l != &svc->held; l = next) {
		struct nd_ticket *t = nd_container_of(l, struct nd_ticket, held);

		next = l->next;
		if (nd__task_congested(svc, t->held_task))
			continue;
		nd_list_del(&t->held);
		ticket_send_home(svc->s, t);
	}
}

struct congestion_msg {
	struct nd_msg msg;
	uint64_t serial;
	bool on;
};

static void congestion_msg(struct nd_shard *s0, struct nd_msg *msg)
{
	struct congestion_msg *m = nd_container_of(msg, struct congestion_msg,
						   msg);
	struct nd_svc *svc = s0->svc;

	if (m->on) {
		nd_u64map_put(&svc->congested, m->serial, (void *)1);
	} else {
		nd_u64map_del(&svc->congested, m->serial);
		release_held(svc);
	}
	free(m);
}

void nd_svc_congested(struct nd_conn *c, bool on)
{
	struct nd_svc_peer *rc = nd_svc_peer(c);
	struct nd_shard *s0 = &c->shard->srv->shards[0];
	struct congestion_msg *m;

	if (rc->congested == on)
		return;
	m = malloc(sizeof(*m));
	if (!m)
		return;
	rc->congested = on;
	if (on)
		nd_conn_want_drain(c);
	m->serial = rc->serial;
	m->on = on;
	nd_shard_post(c->shard, s0, &m->msg, congestion_msg);
}

int nd_svc_forward(struct nd_conn *c, const Noded__Frame *f,
		   const uint8_t *body, size_t len)
{
	struct nd_svc_peer *rc = nd_svc_peer(c);
	struct nd_shard *s0 = &c->shard->srv->shards[0];
	struct nd_ticket *t = calloc(1, sizeof(*t));

	if (!t || !(t->req = malloc(len))) {
		free(t);
		return -ENOMEM;
	}
	memcpy(t->req, body, len);
	t->req_len = len;
	t->conn = c;
	t->home = c->shard;
	t->t0_ns = nd_mono_ns();
	t->method = c->shard->cur_method;
	t->conn_serial = rc->serial;
	memcpy(t->peer, rc->peer, sizeof(t->peer));
	/* on shard 0 the post runs svc_exec now, while f lives */
	if (c->shard == s0)
		t->req_f = f;
	nd_list_add_tail(&rc->tickets, &t->link);
	nd_shard_post(c->shard, s0, &t->msg, svc_exec);
	return 0;
}

/* Allocated with the connection, so that its close needs no memory. */
struct nd_svc_gone {
	struct nd_msg msg;
	uint64_t serial;
};

/* On shard 0: a connection that watched tasks closed. Its watchers go now
 * (not when their tasks end), and with them anything its lag held back. */
static void conn_gone_msg(struct nd_shard *s0, struct nd_msg *m)
{
	struct nd_svc_gone *g = nd_container_of(m, struct nd_svc_gone, msg);
	struct nd_svc *svc = s0->svc;

	nd__tasks_conn_gone(svc, g->serial);
	nd_u64map_del(&svc->congested, g->serial);
	release_held(svc);
	free(g);
}

int nd_svc_peer_init(struct nd_conn *c)
{
	struct nd_svc_peer *rc = nd_svc_peer(c);

	nd_list_init(&rc->tickets);
	rc->serial = (uint64_t)c->shard->id << 48 | c->shard->st.accepted;
	nd_conn_peer_name(c, rc->peer, sizeof(rc->peer));
	rc->gone = malloc(sizeof(*rc->gone));
	if (!rc->gone)
		return -ENOMEM;
	rc->gone->serial = rc->serial;
	return nd_u64map_put(&c->shard->serials, rc->serial, c) ? -ENOMEM : 0;
}

void nd_svc_peer_close(struct nd_conn *c)
{
	struct nd_svc_peer *rc = nd_svc_peer(c);
	struct nd_shard *s0 = &c->shard->srv->shards[0];

	nd_u64map_del(&c->shard->serials, rc->serial);
	if (rc->watched && rc->gone)
		rc->congested = false; /* the gone message clears it too */
	else
		nd_svc_congested(c, false);
	while (rc->tickets.next && !nd_list_empty(&rc->tickets)) {
		struct nd_ticket *t = nd_container_of(rc->tickets.next,
						      struct nd_ticket, link);

		nd_list_del(&t->link);
		t->conn = NULL; /* the reply, when it comes, is dropped */
	}
	/* Posted after every ticket of this connection: shard 0 runs them
	 * first (nd_shard_post keeps the order), so no watcher is added
	 * after this. */
	if (rc->watched && rc->gone)
		nd_shard_post(c->shard, s0, &rc->gone->msg, conn_gone_msg);
	else
		free(rc->gone);
	rc->gone = NULL;
}

/* ---- life cycle ---- */

/*
 * After the drain barrier no shard posts to us any more, nor reads its
 * messages: free it all. Every connection is closed by then, so a held
 * ticket has no one to answer (t->conn is NULL); sending it home now would
 * reach a shard that no longer runs messages.
 */
static void svc_stop(struct nd_shard *s)
{
	struct nd_svc *svc = s->svc;

	while (!nd_list_empty(&svc->held)) {
		struct nd_ticket *t = nd_container_of(svc->held.next,
						      struct nd_ticket, held);

		nd_list_del(&t->held);
		ticket_free(t);
	}
	while (!nd_list_empty(&svc->unready)) {
		struct nd_ticket *t = nd_container_of(svc->unready.next,
						      struct nd_ticket, held);

		nd_list_del(&t->held);
		ticket_free(t);
	}
	while (svc->gate) {
		struct nd_msg *m = svc->gate;

		svc->gate = m->next;
		if (m->fn == ticket_done)
			ticket_free(nd_container_of(m, struct nd_ticket, msg));
		else if (m->fn == push_deliver)
			free(nd_container_of(m, struct push, msg));
		else
			nd__registry_msg_drop(m);
	}
	nd_raft_batch_free(svc->batch);
	nd_u64map_free(&svc->congested);
	nd__tasks_free(svc);
	for (size_t i = 0; i < svc->nbuckets; i++) {
		struct node *n = svc->buckets[i], *next;

		for (; n; n = next) {
			next = n->next;
			nd__node_free(n);
		}
	}
	free(svc->buckets);
	free(svc);
	s->svc = NULL;
	s->svc_tick = NULL;
	s->svc_stop = NULL;
	s->svc_flush = NULL;
	s->svc_drain = NULL;
}

/* Shard 0 drains only once its batches came back (their replies with
 * them). */
static bool svc_drain(struct nd_shard *s)
{
	return nd__replica_busy(s->svc);
}

/* On the raft shard. */
static void raft_shard_start(struct nd_shard *rs,
			     const struct nd_svc_config *cfg)
{
	struct nd_shard *s0 = &rs->srv->shards[0];
	char err[256];

	if (!nd_raft_start(rs, cfg->raft, s0, nd__replica_news,
			   nd__replica_entry, err,
			   sizeof(err)))
		return;
	ND_LOG(ND_LOG_ERROR, "raft.failed", ND_S("dir", cfg->raft->dir),
	       ND_S("err", err), ND_S("msg", "the master stops"));
	atomic_store(&rs->srv->failed, true);
	kill(getpid(), SIGTERM);
}

static const struct nd_svc_config svc_defaults = {
	.heartbeat_ms = 1000,
	.heartbeat_timeout_ms = 3000,
	.lease_ms = 10000,
	.output_cap = ND_OUTPUT_CAP_DEFAULT,
	.task_history = ND_TASK_HISTORY_DEFAULT,
	.output_budget = ND_OUTPUT_BUDGET_DEFAULT,
	.max_queue = 1000000,
	.forget_dead_ms = ND_FORGET_DEAD_DEFAULT_S * 1000ull,
};

void nd_svc_config_defaults(struct nd_svc_config *cfg)
{
	if (!cfg->heartbeat_ms)
		cfg->heartbeat_ms = svc_defaults.heartbeat_ms;
	if (!cfg->heartbeat_timeout_ms)
		cfg->heartbeat_timeout_ms = svc_defaults.heartbeat_timeout_ms;
	if (!cfg->lease_ms)
		cfg->lease_ms = cfg->heartbeat_timeout_ms > svc_defaults.lease_ms ?
					cfg->heartbeat_timeout_ms :
					svc_defaults.lease_ms;
	if (!cfg->output_cap)
		cfg->output_cap = svc_defaults.output_cap;
	if (!cfg->task_history)
		cfg->task_history = svc_defaults.task_history;
	if (!cfg->output_budget)
		cfg->output_budget = svc_defaults.output_budget;
	if (!cfg->max_queue)
		cfg->max_queue = svc_defaults.max_queue;
	if (!cfg->forget_dead_ms)
		cfg->forget_dead_ms = svc_defaults.forget_dead_ms;
}

const struct nd_svc_config *nd_svc_cfg(const struct nd_shard *s)
{
	const struct nd_svc_config *cfg = s->srv->shard_start_arg;

	/* Only a master's server hands the service its settings. */
	return cfg && s->srv->shard_start == nd_svc_shard_start ?
		       cfg : &svc_defaults;
}

void nd_svc_shard_start(struct nd_shard *s, void *arg)
{
	const struct nd_svc_config *cfg = arg ? arg : &svc_defaults;
	struct nd_svc *svc;

	if (cfg->raft && s->id == s->srv->nconn_shards) {
		raft_shard_start(s, cfg);
		return;
	}
	if (s->id != 0)
		return;
	svc = calloc(1, sizeof(*svc));
	if (!svc || nd__nodes_init(svc)) {
		ND_LOG(ND_LOG_ERROR, "service.failed", ND_S("err", "out of memory"));
		abort();
	}
	svc->s = s;
	svc->cfg = cfg;
	svc->arena = &s->arena;
	svc->effects = nd__tasks_effects;
	svc->ids = cfg->ids;
	if (!svc->ids) {
		nd_task_ids_open(&svc->own_ids, NULL, NULL, 0);
		svc->ids = &svc->own_ids;
	}
	svc->next_task_id = svc->ids->first;
	svc->output_cap = cfg->output_cap;
	svc->task_history = cfg->task_history;
	svc->output_budget = cfg->output_budget;
	svc->max_queue = cfg->max_queue;
	nd__tasks_init(svc);
	nd_list_init(&svc->held);
	nd_list_init(&svc->unready);
	svc->gate_tail = &svc->gate;
	svc->serving = true;
	if (cfg->raft) {
		/* serves once the raft shard says it leads (replica.c) */
		svc->raft = &s->srv->shards[s->srv->nconn_shards];
		svc->serving = false;
		svc->role = ND_RAFT_STARTING;
		s->svc_flush = nd__replica_flush;
		s->svc_drain = svc_drain;
	}
	if (cfg->ledger_trace && !(svc->trace = fopen(cfg->ledger_trace, "w")))
		ND_LOG(ND_LOG_ERROR, "ledger.trace_failed",
		       ND_S("path", cfg->ledger_trace), ND_S("err", strerror(errno)));
	s->svc = svc;
	s->svc_tick = nd__svc_tick;
	s->svc_stop = svc_stop;
}

void nd_svc_metrics(struct nd_shard *s0, FILE *f)
{
	struct nd_svc *svc = s0->svc;
	uint64_t by_state[5] = { 0 }, slots = 0, free_slots = 0, busy = 0;

	if (!svc)
		return;
	fprintf(f, "# HELP noded_node_slots Task slots (helper processes) a "
		"node reports.\n# TYPE noded_node_slots gauge\n");
	for (size_t b = 0; b < svc->nbuckets; b++)
		for (struct node *n = svc->buckets[b]; n; n = n->next) {
			if ((unsigned)n->state < 5)
				by_state[n->state]++;
			if (n->state == NODED__NODE_STATE__NODE_DEAD ||
			    n->state == NODED__NODE_STATE__NODE_LEFT)
				continue;
			slots += n->slots;
			busy += nd__node_used(n);
			free_slots += n->slots > nd__node_used(n) ?
					      n->slots - nd__node_used(n) : 0;
			fputs("noded_node_slots{node=\"", f);
			nd_text_fput_prom(f, n->name);
			fprintf(f, "\"} %u\n", n->slots);
		}
	fprintf(f, "# HELP noded_node_running_tasks Tasks the master has on "
		"a node.\n# TYPE noded_node_running_tasks gauge\n");
	for (size_t b = 0; b < svc->nbuckets; b++)
		for (struct node *n = svc->buckets[b]; n; n = n->next)
			if (n->state != NODED__NODE_STATE__NODE_DEAD &&
			    n->state != NODED__NODE_STATE__NODE_LEFT) {
				fputs("noded_node_running_tasks{node=\"", f);
				nd_text_fput_prom(f, n->name);
				fprintf(f, "\"} %u\n", n->running);
			}
	fprintf(f, "# HELP noded_nodes Nodes known, by state.\n"
		"# TYPE noded_nodes gauge\n");
	for (unsigned st = NODED__NODE_STATE__NODE_ALIVE;
	     st <= NODED__NODE_STATE__NODE_LEFT; st++)
		fprintf(f, "noded_nodes{state=\"%s\"} %llu\n",
			nd_node_state_name((Noded__NodeState)st),
			(unsigned long long)by_state[st]);
	fprintf(f, "# HELP noded_slots Task slots of live nodes, by use "
		"(the fleet's helper pool).\n# TYPE noded_slots gauge\n"
		"noded_slots{use=\"busy\"} %llu\nnoded_slots{use=\"free\"} "
		"%llu\nnoded_slots{use=\"total\"} %llu\n",
		(unsigned long long)busy, (unsigned long long)free_slots,
		(unsigned long long)slots);
	nd__tasks_metrics(svc, f);
	if (svc->raft)
		nd__replica_metrics(svc, f);
}
