/*
 * The scheduler of the node service (on shard 0): where PENDING tasks wait
 * (pending_any, and a class per target), placing them on nodes, and what
 * becomes of a node's tasks when it dies or leaves. The task table is
 * tasks.c's.
 *
 * FIFO; each task goes to the eligible node (ALIVE, registered
 * stream, matching target) with the lowest share of its slots in use. Tasks
 * any node may run wait in svc.pending_any: when its head finds no node
 * with a free slot, none behind it would, so a pass stops there and costs
 * O(nodes) per task placed, whatever the queue's length. Tasks for a named
 * node or for labels wait in a class per target (struct pclass: one node
 * name, or one set of labels), first in first out within it; a pass tries
 * each class's head, so one target's tasks never wait behind another's,
 * and a pass costs O(classes x nodes), whatever the queue's length (walking
 * every waiting task, as this once did, made 20,000 tasks for one label
 * take minutes of CPU). A task no node could ever run is refused at
 * submission, unless it asked to wait for one (wait_for_node): then it stays
 * PENDING until such a node joins.
 *
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "node/svc.h"

/* ---- waiting classes ---- */

static int label_cmp(const void *a, const void *b)
{
	const Noded__TaskSpec__LabelsEntry *x =
		*(Noded__TaskSpec__LabelsEntry *const *)a;
	const Noded__TaskSpec__LabelsEntry *y =
		*(Noded__TaskSpec__LabelsEntry *const *)b;
	int c = strcmp(x->key, y->key);

	return c ? c : strcmp(x->value, y->value);
}

/*
 * The key of a target: 'n' and the node's name, or 'l' and each label as
 * "KEYLEN:KEY VALLEN:VALUE", sorted, so that equal targets have equal keys
 * whatever the order the labels came in, then "xLEN:EXCLUDE" when sp has
 * an exclude. sorted (sp->n_labels entries) receives them in that order.
 * malloc'd; NULL when out of memory.
 */
static char *class_key(const char *node, const Noded__TaskSpec *sp,
		       Noded__TaskSpec__LabelsEntry **sorted, size_t *len)
{
	size_t cap = 2, off = 1;
	char *k;

	if (node) {
		cap += strlen(node);
	} else if (sp->n_labels) { /* (a class of exclude alone has none) */
		memcpy(sorted, sp->labels, sp->n_labels * sizeof(*sorted));
		qsort(sorted, sp->n_labels, sizeof(*sorted), label_cmp);
		for (size_t i = 0; i < sp->n_labels; i++)
			cap += strlen(sorted[i]->key) +
			       strlen(sorted[i]->value) + 48;
	}
	if (!node)
		cap += strlen(sp->exclude) + 24;
	k = malloc(cap);
	if (!k)
		return NULL;
	k[0] = node ? 'n' : 'l';
	if (node) {
		memcpy(k + 1, node, cap - 2);
		off = cap - 1;
	}
	for (size_t i = 0; !node && i < sp->n_labels; i++)
		off += (size_t)snprintf(k + off, cap - off, "%zu:%s %zu:%s",
					strlen(sorted[i]->key), sorted[i]->key,
					strlen(sorted[i]->value),
					sorted[i]->value);
	if (!node && sp->exclude[0])
		off += (size_t)snprintf(k + off, cap - off, "x%zu:%s",
					strlen(sp->exclude), sp->exclude);
	*len = off;
	return k;
}

static uint64_t class_slot(uint64_t hash)
{
	return hash ? hash : 1; /* 0 is no key in an nd_u64map */
}

/* Frees c, which is on no list and in no map. */
static void class_destroy(struct pclass *c)
{
	for (size_t i = 0; i < c->nlabels; i++) {
		free(c->label_k[i]);
		free(c->label_v[i]);
	}
	free(c->label_k);
	free(c->label_v);
	nd_hostlist_free(&c->excl);
	free(c->node);
	free(c->key);
	free(c);
}

/* Takes c out of svc's map and list, and frees it. */
static void class_free(struct nd_svc *svc, struct pclass *c)
{
	uint64_t slot = class_slot(c->hash);
	struct pclass **pp, *head;

	head = nd_u64map_get(&svc->classes, slot);
	if (head == c) {
		if (c->next) /* a replacement: cannot fail */
			nd_u64map_put(&svc->classes, slot, c->next);
		else
			nd_u64map_del(&svc->classes, slot);
	} else {
		for (pp = &head->next; *pp != c; pp = &(*pp)->next)
			;
		*pp = c->next;
	}
	nd_list_del(&c->link);
	class_destroy(c);
}

/* The class of node (non-NULL) or of sp's labels; created when create is
 * set and there is none. NULL when there is none or out of memory. */
static struct pclass *class_get(struct nd_svc *svc, const char *node,
				const Noded__TaskSpec *sp, bool create)
{
	size_t n = node ? 0 : sp->n_labels, len = 0;
	Noded__TaskSpec__LabelsEntry **sorted = NULL;
	struct pclass *c = NULL, *head;
	uint64_t h;
	char *key;

	if ((!node && !sp) || (n && !(sorted = malloc(n * sizeof(*sorted)))))
		return NULL;
	key = class_key(node, sp, sorted, &len);
	if (!key)
		goto out;
	h = nd__hash(key, len);
	head = nd_u64map_get(&svc->classes, class_slot(h));
	for (c = head; c; c = c->next)
		if (c->hash == h && c->keylen == len &&
		    !memcmp(c->key, key, len))
			goto out;
	if (!create || !(c = calloc(1, sizeof(*c))))
		goto out;
	c->hash = h;
	c->key = key;
	c->keylen = len;
	key = NULL;
	nd_list_init(&c->tasks);
	c->node = node ? strdup(node) : NULL;
	c->label_k = calloc(n ? n : 1, sizeof(char *));
	c->label_v = calloc(n ? n : 1, sizeof(char *));
	if ((node && !c->node) || !c->label_k || !c->label_v)
		goto fail;
	/* checked at submission: only memory can fail here */
	if (!node && sp->exclude[0] &&
	    nd_hostlist_expand(sp->exclude, &c->excl, NULL, 0))
		goto fail;
	for (size_t i = 0; i < n; i++) {
		c->label_k[i] = strdup(sorted[i]->key);
		c->label_v[i] = strdup(sorted[i]->value);
		c->nlabels = i + 1;
		if (!c->label_k[i] || !c->label_v[i])
			goto fail;
	}
	c->next = head;
	if (nd_u64map_put(&svc->classes, class_slot(h), c)) /* fails only */
		goto fail;                                  /* without head */
	nd_list_add_tail(&svc->class_list, &c->link);
	goto out;
fail:
	class_destroy(c);
	c = NULL;
out:
	free(key);
	free(sorted);
	return c;
}

/* Queues pending t at the tail of its class (sp: its spec, for labels), or
 * of pending_any. -ENOMEM when its class could not be made. */
int nd__task_enqueue(struct nd_svc *svc, struct task *t,
		     const Noded__TaskSpec *sp)
{
	struct nd_list *q = &svc->pending_any;

	t->cls = NULL;
	if (!t->any_node) {
		t->cls = class_get(svc, t->l.target_node, sp, true);
		if (!t->cls)
			return -ENOMEM;
		q = &t->cls->tasks;
	}
	nd_list_add_tail(q, &t->queue_link);
	svc->npending++;
	return 0;
}

/* Takes t off its queue; its class goes with its last task. */
void nd__task_unqueue(struct nd_svc *svc, struct task *t)
{
	struct pclass *c = t->cls;

	if (!nd_list_linked(&t->queue_link))
		return;
	nd_list_del(&t->queue_link);
	if (t->stranded) {
		t->stranded = false;
		return;
	}
	svc->npending--;
	t->cls = NULL;
	if (c && nd_list_empty(&c->tasks))
		class_free(svc, c);
}

/* Queues t (PENDING again, or new); when no queue can take it (out of
 * memory for its class) it is stranded, and LOST at the next pass. */
static void queue(struct nd_svc *svc, struct task *t,
		  const Noded__TaskSpec *sp)
{
	t->queued_ns = nd_mono_ns();
	if (nd__task_enqueue(svc, t, sp) < 0) {
		t->stranded = true;
		nd_list_add_tail(&svc->stranded, &t->queue_link);
	}
}

void nd__task_requeue(struct nd_svc *svc, struct task *t,
		      const Noded__TaskSpec *sp)
{
	queue(svc, t, sp);
}

/* New tasks of a submit: set up, and queued in id order. */
static void submitted(struct nd_svc *svc, const Noded__LedgerSubmit *e)
{
	size_t n = e->n_nodes ? e->n_nodes : 1;
	const Noded__TaskSpec *sp = NULL;

	/* labels are in the spec, and only a task for no node has them; the
	 * submit that made the event has it decoded already */
	if (!e->n_nodes)
		sp = svc->submit_spec ? svc->submit_spec :
		     noded__task_spec__unpack(&svc->arena->pc, e->spec.len,
					      e->spec.data);
	for (size_t i = 0; i < n; i++) {
		struct task *t = nd__task_of(nd_ledger_get(&svc->ledger,
							   e->task_id + i));

		nd_list_init(&t->watchers);
		nd_list_init(&t->cancel_waits);
		t->any_node = !t->l.target_node &&
			      (!sp || (!sp->n_labels && !sp->exclude[0]));
		if (!t->l.target_node && !sp) { /* its spec did not unpack */
			t->stranded = true;
			nd_list_add_tail(&svc->stranded, &t->queue_link);
		} else {
			queue(svc, t, sp);
		}
	}
}

/* t left the node it was on. */
static void off_node(struct nd_svc *svc, struct task *t)
{
	struct node *n;

	if (!nd_list_linked(&t->node_link))
		return;
	nd_list_del(&t->node_link);
	n = nd__node_find(svc, t->l.node);
	if (n && n->running)
		n->running--;
}

void nd__sched_applied(struct nd_svc *svc, const Noded__LedgerEvent *ev,
		       struct task *t)
{
	struct node *n;

	switch (ev->body_case) {
	case NODED__LEDGER_EVENT__BODY_SUBMIT:
		submitted(svc, ev->submit);
		break;
	case NODED__LEDGER_EVENT__BODY_ASSIGN:
		nd__task_unqueue(svc, t);
		n = nd__node_find(svc, t->l.node);
		if (n) {
			n->running++;
			nd_list_add_tail(&n->tasks, &t->node_link);
		}
		nd_hist_add(&svc->dispatch, nd_mono_ns() - t->queued_ns);
		break;
	case NODED__LEDGER_EVENT__BODY_RETRIED:
		off_node(svc, t);
		queue(svc, t, t->any_node ? NULL : nd__task_spec(svc, t));
		break;
	case NODED__LEDGER_EVENT__BODY_ENDED:
	case NODED__LEDGER_EVENT__BODY_LOST:
		nd__task_unqueue(svc, t);
		off_node(svc, t);
		break;
	default:
		break;
	}
}

void nd__push_assignment(struct nd_svc *svc, struct task *t)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__TaskAssignment a = NODED__TASK_ASSIGNMENT__INIT;
	Noded__TaskSpec *sp = nd__task_spec(svc, t);
	struct node *n = nd__node_find(svc, t->l.node);

	ND_LOG(ND_LOG_DEBUG, "task.assigned", ND_U("task", t->l.id),
	       ND_S("node", t->l.node), ND_U("attempt", t->l.attempt));
	if (!sp || !n)
		return;
	a.task_id = t->l.id;
	a.command = sp->command;
	a.output_cap_bytes = t->l.output_cap;
	a.attempt = t->l.attempt;
	a.lease_seq = n->hb_seq;
	a.job_id = t->l.job_id;
	f.id = n->stream.stream_id;
	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	f.body_case = NODED__FRAME__BODY_TASK;
	f.task = &a;
	nd__svc_push(svc, &n->stream, &f);
}

bool nd__node_has_labels(const struct node *n, const Noded__TaskSpec *sp)
{
	for (size_t i = 0; i < sp->n_labels; i++) {
		size_t j;

		for (j = 0; j < n->nlabels; j++)
			if (!strcmp(n->label_k[j], sp->labels[i]->key) &&
			    !strcmp(n->label_v[j], sp->labels[i]->value))
				break;
		if (j == n->nlabels)
			return false;
	}
	return true;
}

/* Has n every label of class c? */
static bool class_labels(const struct node *n, const struct pclass *c)
{
	for (size_t i = 0; i < c->nlabels; i++) {
		size_t j;

		for (j = 0; j < n->nlabels; j++)
			if (!strcmp(n->label_k[j], c->label_k[i]) &&
			    !strcmp(n->label_v[j], c->label_v[i]))
				break;
		if (j == n->nlabels)
			return false;
	}
	return true;
}

/* Can n take a task now (ignoring its target)? It must have sent a
 * heartbeat on its current connection: an attempt's lease counts from one
 * (push_assignment), and a worker knows only its own. */
static bool has_room(const struct node *n)
{
	return n->state == NODED__NODE_STATE__NODE_ALIVE && n->stream.serial &&
	       n->hb_serial == n->stream.serial && !nd__node_closed(n) &&
	       nd__node_used(n) < n->slots;
}

/* The least-loaded node that can take the head of class c now (NULL c:
 * of pending_any), or NULL. */
static struct node *pick(struct nd_svc *svc, const struct pclass *c)
{
	struct node *best = NULL;

	if (c && c->node) {
		struct node *n = nd__node_find(svc, c->node);

		return n && has_room(n) ? n : NULL;
	}
	for (size_t i = 0; i < svc->nbuckets; i++) {
		for (struct node *n = svc->buckets[i]; n; n = n->next) {
			uint32_t used = nd__node_used(n);

			if (!has_room(n) || (c && !class_labels(n, c)) ||
			    (c && nd_hostlist_has(&c->excl, n->name)))
				continue;
			if (!used)
				return n; /* idle: none is less loaded */
			/* lower used/slots wins: compare cross-multiplied */
			if (!best || (uint64_t)used * best->slots <
					     (uint64_t)nd__node_used(best) *
						     n->slots)
				best = n;
		}
	}
	return best;
}

/* Pending t goes to n: decided here, done by its event. false when it
 * could not be applied (out of memory): the pass stops. */
static bool assign(struct nd_svc *svc, struct task *t, struct node *n)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerAssign e = NODED__LEDGER_ASSIGN__INIT;

	e.task_id = t->l.id;
	e.attempt = t->l.attempt;
	e.node = n->name;
	e.unix_ms = nd_unix_ms();
	ev.body_case = NODED__LEDGER_EVENT__BODY_ASSIGN;
	ev.assign = &e;
	return nd__svc_apply(svc, &ev, NULL) == 0;
}

void nd__tasks_schedule(struct nd_svc *svc)
{
	struct nd_list *l, *next;

	if (!nd__svc_serving(svc))
		return; /* nothing may change: no event would apply */
	while (!nd_list_empty(&svc->stranded))
		nd__task_finish(svc, nd_container_of(svc->stranded.next,
						     struct task, queue_link),
				NODED__TASK_STATE__TASK_LOST,
				"out of memory queueing it");
	while (!nd_list_empty(&svc->pending_any)) {
		struct task *t = nd_container_of(svc->pending_any.next,
						 struct task, queue_link);
		struct node *n = pick(svc, NULL);

		if (!n || !assign(svc, t, n))
			break; /* no free slot anywhere */
	}
	for (l = svc->class_list.next; l != &svc->class_list; l = next) {
		struct pclass *c = nd_container_of(l, struct pclass, link);
		struct node *n;

		next = l->next;
		while ((n = pick(svc, c))) {
			struct task *t = nd_container_of(c->tasks.next,
							 struct task,
							 queue_link);
			bool last = t->queue_link.next == &c->tasks;

			/* the last one frees c */
			if (!assign(svc, t, n) || last)
				break;
		}
	}
}

void nd__tasks_held(struct nd_svc *svc, struct node *n, const uint64_t *ids,
		    size_t count)
{
	n->held = 0;
	for (size_t i = 0; i < count; i++) {
		const struct nd_ltask *t = nd_ledger_get(&svc->ledger, ids[i]);

		/* Ended here, or running for us on another node (retried):
		 * either way this node's count does not have it. */
		if (!t || nd__task_ended(t->state) || !t->node ||
		    strcmp(t->node, n->name))
			n->held++;
	}
}

/*
 * The attempt of t on n is over without an ending of its own (its node
 * died or left, its lease expired): t runs again elsewhere as a new
 * attempt while it has retries (not a cancelled one, nor one for a named
 * node), else it is LOST with why. Returns true when it was queued again.
 */
bool nd__task_retry_or_lose(struct nd_svc *svc, struct task *t, struct node *n,
			    const char *why)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerRetried e = NODED__LEDGER_RETRIED__INIT;

	if (!t->l.retries_left || t->l.cancel_requested || t->l.target_node) {
		nd__task_finish(svc, t, NODED__TASK_STATE__TASK_LOST, why);
		return false;
	}
	e.task_id = t->l.id;
	e.attempt = t->l.attempt;
	e.reason = (char *)why;
	e.unix_ms = nd_unix_ms();
	ev.body_case = NODED__LEDGER_EVENT__BODY_RETRIED;
	ev.retried = &e;
	return nd__svc_apply(svc, &ev, NULL) == 0;
}

void nd__tasks_reconcile(struct nd_svc *svc, struct node *n,
			 const uint64_t *ids, size_t count)
{
	struct nd_list *l, *next;
	char why[160];
	bool requeued = false;

	snprintf(why, sizeof(why), "not running on node %s when it came back "
		 "to the restarted or new leader", n->name);
	for (l = n->tasks.next; l != &n->tasks; l = next) {
		struct task *t = nd_container_of(l, struct task, node_link);
		size_t i;

		next = l->next;
		for (i = 0; i < count && ids[i] != t->l.id; i++)
			;
		if (i < count)
			continue;
		/* never reached it, or ended there unreported: once */
		ND_LOG(ND_LOG_WARN, "task.reconciled", ND_U("task", t->l.id),
		       ND_S("node", n->name), ND_S("reason", why));
		requeued |= nd__task_retry_or_lose(svc, t, n, why);
	}
	if (requeued)
		nd__tasks_schedule(svc);
}

void nd__tasks_void(struct nd_svc *svc, struct node *n, const uint64_t *ids,
		    const uint32_t *attempts, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		const struct nd_ltask *l = nd_ledger_get(&svc->ledger, ids[i]);
		const struct task *t = l ? nd__task_of((struct nd_ltask *)l) :
					   NULL;
		Noded__Frame f = NODED__FRAME__INIT;
		Noded__TaskCancel tc = NODED__TASK_CANCEL__INIT;

		/* Still its attempt here (even on a DEAD node whose lease
		 * is not over: it carries on): leave it be. */
		if (t && !nd__task_ended(t->l.state) && t->l.node &&
		    t->l.attempt == attempts[i] &&
		    nd_list_linked(&t->node_link) && !strcmp(t->l.node, n->name))
			continue;
		tc.task_id = ids[i];
		tc.attempt = attempts[i] ? attempts[i] : 1;
		f.id = n->stream.stream_id;
		f.kind = NODED__FRAME_KIND__STREAM_ITEM;
		f.body_case = NODED__FRAME__BODY_TASK_CANCEL;
		f.task_cancel = &tc;
		nd__svc_push(svc, &n->stream, &f);
	}
}

void nd__tasks_node_dead(struct nd_svc *svc, struct node *n, const char *why)
{
	/* a node that said it left is as gone as a dead one */
	bool requeued = false,
	     dead = n->state == NODED__NODE_STATE__NODE_DEAD ||
		    n->state == NODED__NODE_STATE__NODE_LEFT;
	uint64_t waiting = 0;
	struct pclass *c;

	if (!n->gone_unix_ms)
		n->gone_unix_ms = nd_unix_ms();

	while (!nd_list_empty(&n->tasks)) {
		struct task *t = nd_container_of(n->tasks.next, struct task,
						 node_link);

		requeued |= nd__task_retry_or_lose(svc, t, n, why);
	}
	n->running = 0;
	/* Tasks queued for this node by name that it never got. A fan-out's
	 * can run nowhere else: LOST, or its `run --all` would wait for ever.
	 * So is one that did not ask to wait for its node, once the node is
	 * DEAD (it was accepted because the node lived; waiting silently for
	 * ever would be worse; not when another worker took the name). One that asked to wait waits,
	 * its record saying for what, and is logged here once. */
	c = class_get(svc, n->name, NULL, false);
	for (struct nd_list *l = c ? c->tasks.next : NULL, *next;
	     l && l != &c->tasks; l = next) {
		struct task *t = nd_container_of(l, struct task, queue_link);
		bool only = l->prev == &c->tasks && l->next == &c->tasks;
		const Noded__TaskSpec *sp = nd__task_spec(svc, t);
		char lost[320];

		next = l->next;
		/* (a job's task waits only when it asked to: a node list
		 * with wait_for_node) */
		if ((!t->l.job_id && (!dead || !sp || sp->wait_for_node)) ||
		    (t->l.job_id && sp && sp->wait_for_node)) {
			waiting++;
			continue;
		}
		if (!t->l.job_id)
			snprintf(lost, sizeof(lost), "%s before it ran (it did "
				 "not ask to wait for its node)", why);
		nd__task_finish(svc, t, NODED__TASK_STATE__TASK_LOST,
				t->l.job_id ? why : lost);
		if (only)
			break; /* c went with it */
	}
	if (waiting && dead)
		ND_LOG(ND_LOG_WARN, "task.waiting_node", ND_S("node", n->name),
		       ND_U("tasks", waiting), ND_S("reason", why),
		       ND_S("msg", "tasks wait (wait_for_node) for a node "
			    "that is DEAD or LEFT"));
	if (requeued)
		nd__tasks_schedule(svc);
}

/* Why spec can never run here, or NULL when some node could run it. */
const char *nd__task_unplaceable(struct nd_svc *svc, const Noded__TaskSpec *sp,
				 char *buf, size_t len)
{
	struct nd_hostlist excl = { 0 };
	struct node *n;

	if (sp->node[0]) {
		n = nd__node_find(svc, sp->node);
		if (!n)
			snprintf(buf, len, "no node named '%s'", sp->node);
		else if (n->state == NODED__NODE_STATE__NODE_DEAD)
			snprintf(buf, len, "node '%s' is dead", sp->node);
		else if (n->state == NODED__NODE_STATE__NODE_LEFT)
			snprintf(buf, len, "node '%s' has left", sp->node);
		else
			return NULL;
		return buf;
	}
	if (sp->exclude[0] &&
	    nd_hostlist_expand(sp->exclude, &excl, NULL, 0))
		return NULL; /* out of memory: the submit finds out */
	for (size_t i = 0; i < svc->nbuckets; i++)
		for (n = svc->buckets[i]; n; n = n->next)
			if (n->state != NODED__NODE_STATE__NODE_DEAD &&
			    n->state != NODED__NODE_STATE__NODE_LEFT &&
			    nd__node_has_labels(n, sp) &&
			    !nd_hostlist_has(&excl, n->name)) {
				nd_hostlist_free(&excl);
				return NULL;
			}
	nd_hostlist_free(&excl);
	if (sp->n_labels) {
		size_t off = (size_t)snprintf(buf, len, "no live node has the "
					      "label%s", sp->n_labels > 1 ?
					      "s" : "");

		for (size_t i = 0; i < sp->n_labels && off < len; i++)
			off += (size_t)snprintf(buf + off, len - off, "%s%s=%s",
						i ? ", " : " ",
						sp->labels[i]->key,
						sp->labels[i]->value);
	} else
		snprintf(buf, len, "no live nodes");
	if (sp->exclude[0] && strlen(buf) + 1 < len)
		snprintf(buf + strlen(buf), len - strlen(buf), " outside "
			 "exclude '%.64s%s'", sp->exclude,
			 strlen(sp->exclude) > 64 ? "..." : "");
	return buf;
}
