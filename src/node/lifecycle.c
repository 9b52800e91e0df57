/*
 * A node's lifecycle as an operator drives it (on shard 0): drain,
 * eligible, remove, and the tick's part (drain deadlines, forgetting nodes
 * long DEAD or LEFT). The registry and liveness are registry.c's.
 *
 * States (README "Node lifecycle"): ALIVE, SUSPECT (heartbeats late or
 * its connection gone), DEAD (silent for --heartbeat-timeout), LEFT (its
 * worker said it stopped, then went); forgotten (removed from the
 * registry: `node rm`, or --forget-dead after DEAD or LEFT). Draining is
 * not a state but a flag beside them, set by its worker (--drain, or
 * stopping: node.draining) or by an operator (drain_op here), which takes
 * no new task until `eligible`, whatever the node's state or however often
 * its worker reconnects. Like the rest of the registry it lives in memory:
 * a restarted master forgets it.
 *
 * A drain's deadline stops the attempts still on the node: each gets a
 * LedgerCancel with a stop_reason naming the drain (the effect sends the
 * worker a TaskCancel), and when the worker reports it killed, it is
 * retried elsewhere when it has retries, else LOST with that reason, as a
 * worker's own --drain-timeout does ("worker stopping"). One that ended by
 * itself before the kill keeps its own ending. A node that cannot be
 * reached then is told when its worker registers again (the attempts run
 * on there meanwhile), or, if it never does, they are LOST or retried once
 * their lease is over, as for any node that died.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "node/svc.h"
#include "noded/json.h"

/* The node named by a request, or NULL after answering NOT_FOUND. */
static struct node *named(struct nd_svc *svc, const Noded__Frame *f,
			  const char *name, struct nd_out *o)
{
	struct node *n = name && name[0] ? nd__node_find(svc, name) : NULL;

	if (!n)
		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__NOT_FOUND,
			      "no node named '%s'", name ? name : "");
	return n;
}

/* The reply of drain and eligible: the node as `nodes` shows it. */
static void reply_node(struct nd_svc *svc, const Noded__Frame *f,
		       struct node *n, struct nd_out *o)
{
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__NodeList nl = NODED__NODE_LIST__INIT;
	Noded__NodeInfo *ni = nd__node_info(svc, n);

	if (!ni) {
		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			      "out of memory");
		return;
	}
	nl.nodes = &ni;
	nl.n_nodes = 1;
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_NODE_LIST;
	r.node_list = &nl;
	nd__out_frame(o, &r);
}

/* Tells n's worker (again: it registered anew since) to kill each
 * attempt on it the drain stopped; the effect of each stop told the
 * stream of its moment. */
static void tell_stopped(struct nd_svc *svc, struct node *n)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__TaskCancel tc = NODED__TASK_CANCEL__INIT;

	n->drain_told_serial = n->stream.serial;
	f.id = n->stream.stream_id;
	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	f.body_case = NODED__FRAME__BODY_TASK_CANCEL;
	f.task_cancel = &tc;
	for (struct nd_list *l = n->tasks.next; l != &n->tasks; l = l->next) {
		struct task *t = nd_container_of(l, struct task, node_link);

		if (!t->l.stop_reason)
			continue;
		tc.task_id = t->l.id;
		nd__svc_push(svc, &n->stream, &f);
	}
}

/* The drain deadline of n passed: each attempt on it that is not being
 * cancelled or stopped already is stopped, by its event. */
static void deadline_passed(struct nd_svc *svc, struct node *n)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerCancel e = NODED__LEDGER_CANCEL__INIT;
	char why[160];
	uint32_t stopped = 0;

	n->drain_fired = true;
	n->drain_told_serial = n->stream.serial; /* by the effects below */
	snprintf(why, sizeof(why), "stopped at the drain deadline of node %s",
		 n->name);
	ev.body_case = NODED__LEDGER_EVENT__BODY_CANCEL;
	ev.cancel = &e;
	e.stop_reason = why;
	/* a cancel does not take a task off its node: the list holds */
	for (struct nd_list *l = n->tasks.next; l != &n->tasks; l = l->next) {
		struct task *t = nd_container_of(l, struct task, node_link);

		if (t->l.cancel_requested || t->l.stop_reason)
			continue;
		e.task_id = t->l.id;
		e.attempt = t->l.attempt;
		stopped += nd__svc_apply(svc, &ev, NULL) == 0;
	}
	ND_LOG(stopped ? ND_LOG_WARN : ND_LOG_INFO, "node.drain_deadline",
	       ND_S("node", n->name), ND_U("stopped_tasks", stopped),
	       ND_B("connected", n->stream.serial != 0),
	       ND_S("msg", "the drain deadline passed: its running tasks are "
		    "stopped (retried elsewhere, or LOST)"));
}

void nd__node_drain(struct nd_svc *svc, const Noded__Frame *f,
		    struct nd_out *o)
{
	const Noded__NodeDrainRequest *q = f->node_drain;
	struct node *n = named(svc, f, q->name, o);

	if (!n)
		return;
	if (q->with_deadline && q->deadline_ms > 365ull * 86400 * 1000) {
		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__BAD_REQUEST,
			      "drain deadline over a year: give at most "
			      "31536000 seconds, or none");
		return;
	}
	if (!n->drain_op)
		n->drain_since_unix_ms = nd_unix_ms();
	n->drain_op = true;
	/* asked again: the new deadline (or none) replaces the old one */
	n->drain_timed = q->with_deadline;
	n->drain_fired = false;
	n->drain_deadline_ms = svc->s->now_ms + q->deadline_ms;
	n->drain_deadline_unix_ms = nd_unix_ms() + q->deadline_ms;
	ND_LOG(ND_LOG_INFO, "node.drain", ND_S("node", n->name),
	       ND_S("state", nd_node_state_name(n->state)),
	       ND_U("running_tasks", n->running),
	       ND_I("deadline_ms", q->with_deadline ?
				  (int64_t)q->deadline_ms : -1),
	       ND_S("msg", "an operator drains it: no new tasks until "
		    "`node eligible`"));
	if (n->drain_timed && !q->deadline_ms)
		deadline_passed(svc, n);
	reply_node(svc, f, n, o);
}

void nd__node_eligible(struct nd_svc *svc, const Noded__Frame *f,
		       struct nd_out *o)
{
	struct node *n = named(svc, f, f->node_eligible->name, o);

	if (!n)
		return;
	if (n->drain_op)
		ND_LOG(ND_LOG_INFO, "node.eligible", ND_S("node", n->name),
		       ND_B("worker_drains", n->draining),
		       ND_S("msg", "the operator's drain is over"));
	n->drain_op = n->drain_timed = n->drain_fired = false;
	n->drain_deadline_ms = n->drain_deadline_unix_ms = 0;
	n->drain_since_unix_ms = 0;
	nd__tasks_schedule(svc); /* it may take what waits for it */
	reply_node(svc, f, n, o);
}

void nd__node_remove(struct nd_svc *svc, const Noded__Frame *f,
		     struct nd_out *o)
{
	const char *name = f->node_remove->name;
	struct node *n = named(svc, f, name, o);
	char why[160];

	if (!n)
		return;
	if (n->state != NODED__NODE_STATE__NODE_DEAD &&
	    n->state != NODED__NODE_STATE__NODE_LEFT) {
		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__FAILED_PRECONDITION,
			      "node '%s' is %s: only a DEAD or LEFT node can "
			      "be removed (stop its worker first; `node "
			      "drain` to let its tasks finish)", n->name,
			      nd_node_state_name(n->state));
		return;
	}
	snprintf(why, sizeof(why), "node %s was removed by an operator",
		 n->name);
	if (nd__node_forget(svc, n, why)) {
		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__FAILED_PRECONDITION,
			      "node '%s' is %s but %" PRIu32 " of its tasks "
			      "wait for their lease to end (--lease) before "
			      "they are LOST or retried: remove it after "
			      "that", n->name, nd_node_state_name(n->state),
			      n->running);
		return;
	}
	nd__out_ack(o, f->id);
}

void nd__nodes_lifecycle_tick(struct nd_svc *svc)
{
	uint64_t now = svc->s->now_ms, forget = svc->cfg->forget_dead_ms;
	char why[96];

	snprintf(why, sizeof(why), "DEAD or LEFT for %" PRIu64 " s "
		 "(--forget-dead)", forget / 1000);

	for (size_t i = 0; i < svc->nbuckets; i++) {
		struct node *n = svc->buckets[i], *next;

		for (; n; n = next) {
			bool down = n->state == NODED__NODE_STATE__NODE_DEAD ||
				    n->state == NODED__NODE_STATE__NODE_LEFT;

			next = n->next; /* n may be forgotten */
			if (n->drain_op && n->drain_timed && !n->drain_fired &&
			    now >= n->drain_deadline_ms)
				deadline_passed(svc, n);
			else if (n->drain_fired && n->stream.serial &&
				 n->drain_told_serial != n->stream.serial &&
				 n->hb_serial == n->stream.serial)
				tell_stopped(svc, n);
			if (down && forget != ND_FORGET_NEVER &&
			    now - n->down_ms >= forget)
				nd__node_forget(svc, n, why);
		}
	}
}
