/*
 * The task engine of the node service (on shard 0): the task table, the
 * pending queue and scheduler, worker updates, kept output and watchers.
 *
 * Life of a task: PENDING (queued here) -> ASSIGNED (pushed on its node's
 * AssignTask stream) -> RUNNING (the worker reported it started) -> exactly
 * one of SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, LOST. A task whose node dies
 * is LOST, or PENDING again while it has retries left, but only once its
 * attempt's lease is over (service.c, svc_tick): by then the node's exec
 * helpers have killed it, so a retry never overlaps it. An attempt its
 * node ended (lease expired, worker stopping) is treated the same way when
 * its end is reported. Updates for a task that
 * already ended, or for another attempt, are acknowledged and ignored, so a
 * late worker can never give a task a second ending.
 *
 * Scheduling: FIFO; each task goes to the eligible node (ALIVE, registered
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
 * Retention: ended tasks are kept in the order they ended (svc.done). Between
 * methods, the oldest are evicted while more than --task-history of them are
 * kept, or while all tasks together keep more than --output-budget bytes of
 * output. A task that has not ended is never evicted, and an ended one has no
 * watchers left. Ids are never reused, not even by a restarted master
 * (task_ids.h), so an id from this master's first to its next that is not in
 * the table was evicted, and the error says so.
 *
 * Watchers are linked from their task and from their connection (by serial
 * in svc.watching), so that a connection that closes drops its watchers at
 * once rather than when their tasks end.
 *
 * Cancel: a PENDING task ends CANCELLED at once; one on a worker is killed
 * there (TERM, grace, KILL) and ends when the worker reports it. The reply
 * to cancel_task waits for that end, so what the requester reads is the
 * state the cancel led to (CANCELLED, or whatever it reached first), not a
 * RUNNING of the moment before: it is a struct cancel_wait, answered from
 * finish(), or after CANCEL_WAIT_MS (a worker that cannot be reached) with
 * the record as it is, cancel_requested set. At most CANCEL_WAITS_MAX wait
 * per task; more are answered at once, so repeated cancels cost no memory.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "node/svc.h"
#include "noded/json.h"

#define LIST_DEFAULT 100
#define LIST_MAX 10000
/* Over the worker's TERM-to-KILL grace (2 s) and the report's way back. */
#define CANCEL_WAIT_MS 5000
#define CANCEL_WAITS_MAX 16

static bool terminal(Noded__TaskState st)
{
	return st >= NODED__TASK_STATE__TASK_SUCCEEDED;
}

static Noded__TaskSpec *spec_of(struct nd_svc *svc, const struct task *t)
{
	return noded__task_spec__unpack(&svc->s->arena.pc, t->spec_len,
					t->spec);
}

/* For a task queued for a named node that no worker holds now: what it
 * waits for, in the arena; else "". */
static char *wait_reason(struct nd_svc *svc, const struct task *t)
{
	const struct node *n;
	const char *what;
	char when[32], *buf;
	struct tm tm;
	time_t sec;

	if (t->state != NODED__TASK_STATE__TASK_PENDING || !t->target_node)
		return "";
	n = nd__node_find(svc, t->target_node);
	if (n && n->stream.serial && n->state != NODED__NODE_STATE__NODE_DEAD)
		return ""; /* registered: it waits for a free slot */
	buf = nd_arena_alloc(&svc->s->arena, strlen(t->target_node) + 96);
	if (!buf)
		return "";
	if (!n) {
		sprintf(buf, "waits for node %s, which has not registered",
			t->target_node);
		return buf;
	}
	what = n->state == NODED__NODE_STATE__NODE_DEAD ? "DEAD" :
							 "disconnected";
	sec = (time_t)(n->gone_unix_ms / 1000);
	gmtime_r(&sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	sprintf(buf, "waits for node %s, %s since %s", n->name, what,
		n->gone_unix_ms ? when : "?");
	return buf;
}

/* Fills r from t; strings point into t or the arena (valid this batch). */
static void record(struct nd_svc *svc, const struct task *t,
		   Noded__TaskRecord *r)
{
	noded__task_record__init(r);
	r->id = t->id;
	r->job_id = t->job_id;
	r->state = t->state;
	r->node = t->node ? t->node : (t->target_node ? t->target_node : "");
	r->spec = spec_of(svc, t);
	r->exit_code = t->exit_code;
	r->signal = t->signal;
	r->reason = t->reason ? t->reason : wait_reason(svc, t);
	r->submitted_unix_ms = t->submitted_unix_ms;
	r->started_unix_ms = t->started_unix_ms;
	r->ended_unix_ms = t->ended_unix_ms;
	r->utime_us = t->utime_us;
	r->stime_us = t->stime_us;
	r->max_rss_kib = t->max_rss_kib;
	r->attempt = t->attempt;
	r->output_bytes = t->produced;
	r->truncated = t->truncated;
	r->watchers = t->nwatchers;
	r->cancel_requested = t->cancel_requested && !terminal(t->state);
}

static void frame_record(struct nd_svc *svc, const struct task *t,
			 uint64_t id, Noded__FrameKind kind, struct nd_out *o)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__TaskRecord r;

	record(svc, t, &r);
	f.id = id;
	f.kind = kind;
	f.body_case = NODED__FRAME__BODY_TASK_RECORD;
	f.task_record = &r;
	nd__out_frame(o, &f);
}

void nd__out_error(struct nd_out *o, uint64_t id, Noded__FrameKind kind,
		   Noded__ErrorCode code, const char *fmt, ...)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__Error e = NODED__ERROR__INIT;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e.code = code;
	e.message = msg;
	f.id = id;
	f.kind = kind;
	f.body_case = NODED__FRAME__BODY_ERROR;
	f.error = &e;
	nd__out_frame(o, &f);
	o->errors++;
}

static void frame_end(struct nd_out *o, uint64_t id)
{
	Noded__Frame f = NODED__FRAME__INIT;

	f.id = id;
	f.kind = NODED__FRAME_KIND__STREAM_END;
	nd__out_frame(o, &f);
}

/* ---- watchers ---- */

static bool add_watcher(struct nd_svc *svc, struct task *t,
			const struct nd_dest *to, struct run_group *g)
{
	struct watcher *w = calloc(1, sizeof(*w));
	struct nd_list *conn = nd_u64map_get(&svc->watching, to->serial);

	if (!w)
		return false;
	if (!conn) {
		conn = malloc(sizeof(*conn));
		if (!conn || nd_u64map_put(&svc->watching, to->serial, conn)) {
			free(conn);
			free(w);
			return false;
		}
		nd_list_init(conn);
	}
	w->task = t;
	w->to = *to;
	w->group = g;
	nd_list_add_tail(&t->watchers, &w->task_link);
	nd_list_add_tail(conn, &w->conn_link);
	t->nwatchers++;
	return true;
}

/*
 * Unlinks and frees w. Returns true when w was the last watcher of its run
 * group (or had none): its stream is over. The connection's list goes with
 * its last watcher.
 */
static bool watcher_drop(struct nd_svc *svc, struct watcher *w)
{
	struct nd_list *conn = nd_u64map_get(&svc->watching, w->to.serial);
	bool last = !w->group || --w->group->left == 0;

	nd_list_del(&w->task_link);
	nd_list_del(&w->conn_link);
	w->task->nwatchers--;
	if (conn && nd_list_empty(conn)) {
		nd_u64map_del(&svc->watching, w->to.serial);
		free(conn);
	}
	if (last)
		free(w->group);
	free(w);
	return last;
}

/* The task ended: each watcher gets the record and the end of its stream. */
static void watchers_end(struct nd_svc *svc, struct task *t)
{
	while (!nd_list_empty(&t->watchers)) {
		struct watcher *w = nd_container_of(t->watchers.next,
						    struct watcher, task_link);
		struct nd_dest to = w->to;
		struct nd_out o = { 0 };

		frame_record(svc, t, to.stream_id,
			     NODED__FRAME_KIND__STREAM_ITEM, &o);
		/* A run's stream ends with the last of its tasks. */
		if (watcher_drop(svc, w))
			frame_end(&o, to.stream_id);
		nd__svc_push_raw(svc, &to, o.buf.data, o.buf.len);
		nd_buf_free(&o.buf);
	}
}

static void watchers_output(struct nd_svc *svc, struct task *t,
			    const Noded__OutputChunk *chunk)
{
	Noded__Frame f = NODED__FRAME__INIT;
	struct nd_list *l;

	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	f.body_case = NODED__FRAME__BODY_OUTPUT;
	f.output = (Noded__OutputChunk *)chunk;
	for (l = t->watchers.next; l != &t->watchers; l = l->next) {
		struct watcher *w = nd_container_of(l, struct watcher,
						    task_link);

		f.id = w->to.stream_id;
		nd__svc_push(svc, &w->to, &f);
	}
}

void nd__tasks_conn_gone(struct nd_svc *svc, uint64_t serial)
{
	struct nd_list *conn;

	/* The last drop frees the list and takes it out of the map. */
	while ((conn = nd_u64map_get(&svc->watching, serial)))
		watcher_drop(svc, nd_container_of(conn->next, struct watcher,
						  conn_link));
}

/* ---- cancel waits ---- */

/* Answers w's cancel_task with t's record as it is now, and frees w. */
static void cancel_wait_answer(struct nd_svc *svc, struct cancel_wait *w)
{
	struct nd_out o = { 0 };

	nd_list_del(&w->task_link);
	nd_list_del(&w->svc_link);
	w->task->ncancel_waits--;
	frame_record(svc, w->task, w->to.stream_id, NODED__FRAME_KIND__REPLY,
		     &o);
	nd__svc_push_raw(svc, &w->to, o.buf.data, o.buf.len);
	nd_buf_free(&o.buf);
	free(w);
}

void nd__tasks_tick(struct nd_svc *svc)
{
	while (!nd_list_empty(&svc->cancel_waits)) {
		struct cancel_wait *w = nd_container_of(
			svc->cancel_waits.next, struct cancel_wait, svc_link);

		if (w->deadline_ms > svc->s->now_ms)
			break;
		cancel_wait_answer(svc, w);
	}
}

/* ---- state changes ---- */

/* One line per ended task: info when it ran to its end (whatever its
 * status), warn when the system ended it (timeout, lost node). */
static void log_end(const struct task *t)
{
	bool bad = t->state == NODED__TASK_STATE__TASK_TIMED_OUT ||
		   t->state == NODED__TASK_STATE__TASK_LOST;
	uint64_t took_ms = t->ended_unix_ms > t->submitted_unix_ms ?
			   t->ended_unix_ms - t->submitted_unix_ms : 0;

	ND_LOG(bad ? ND_LOG_WARN : ND_LOG_INFO, "task.ended",
	       ND_U("task", t->id), ND_U("job", t->job_id),
	       ND_S("node", t->node), ND_S("state", nd_task_state_name(t->state)),
	       ND_I("exit_code", t->exit_code), ND_I("signal", t->signal),
	       ND_U("attempt", t->attempt),
	       ND_DUR("took_s", took_ms * 1000000ull),
	       ND_U("output_bytes", t->produced),
	       ND_S("reason", t->reason));
}

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
 * whatever the order the labels came in. sorted (sp->n_labels entries)
 * receives them in that order. malloc'd; NULL when out of memory.
 */
static char *class_key(const char *node, const Noded__TaskSpec *sp,
		       Noded__TaskSpec__LabelsEntry **sorted, size_t *len)
{
	size_t cap = 2, off = 1;
	char *k;

	if (node) {
		cap += strlen(node);
	} else {
		memcpy(sorted, sp->labels, sp->n_labels * sizeof(*sorted));
		qsort(sorted, sp->n_labels, sizeof(*sorted), label_cmp);
		for (size_t i = 0; i < sp->n_labels; i++)
			cap += strlen(sorted[i]->key) +
			       strlen(sorted[i]->value) + 48;
	}
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
static int enqueue(struct nd_svc *svc, struct task *t,
		   const Noded__TaskSpec *sp)
{
	struct nd_list *q = &svc->pending_any;

	t->cls = NULL;
	if (!t->any_node) {
		t->cls = class_get(svc, t->target_node, sp, true);
		if (!t->cls)
			return -ENOMEM;
		q = &t->cls->tasks;
	}
	nd_list_add_tail(q, &t->queue_link);
	svc->npending++;
	return 0;
}

/* Takes t off its queue; its class goes with its last task. */
static void unqueue(struct nd_svc *svc, struct task *t)
{
	struct pclass *c = t->cls;

	if (!nd_list_linked(&t->queue_link))
		return;
	nd_list_del(&t->queue_link);
	svc->npending--;
	t->cls = NULL;
	if (c && nd_list_empty(&c->tasks))
		class_free(svc, c);
}

static void finish(struct nd_svc *svc, struct task *t, Noded__TaskState st,
		   const char *reason)
{
	if (terminal(t->state))
		return;
	if (t->state == NODED__TASK_STATE__TASK_PENDING)
		unqueue(svc, t);
	if (nd_list_linked(&t->node_link)) {
		struct node *n = nd__node_find(svc, t->node);

		nd_list_del(&t->node_link);
		if (n && n->running)
			n->running--;
	}
	t->state = st;
	if ((unsigned)st < sizeof(svc->ended) / sizeof(svc->ended[0]))
		svc->ended[st]++;
	t->ended_unix_ms = nd_unix_ms();
	/* Kept for its history: give back what doubling left spare (a
	 * failure keeps the larger buffer). */
	nd_buf_resize(&t->out, t->out.len);
	if (reason && !t->reason)
		t->reason = strdup(reason);
	log_end(t);
	watchers_end(svc, t);
	while (!nd_list_empty(&t->cancel_waits))
		cancel_wait_answer(svc, nd_container_of(t->cancel_waits.next,
							struct cancel_wait,
							task_link));
	nd_list_add_tail(&svc->done, &t->done_link);
	svc->ndone++;
}

static void push_assignment(struct nd_svc *svc, struct task *t,
			    struct node *n)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__TaskAssignment a = NODED__TASK_ASSIGNMENT__INIT;
	Noded__TaskSpec *sp = spec_of(svc, t);

	if (!sp)
		return;
	a.task_id = t->id;
	a.n_argv = sp->n_argv;
	a.argv = sp->argv;
	a.shell = sp->shell;
	a.n_env = sp->n_env;
	a.env = (Noded__TaskAssignment__EnvEntry **)sp->env;
	a.cwd = sp->cwd;
	a.timeout_ms = sp->timeout_ms;
	a.output_cap_bytes = t->output_cap;
	a.attempt = t->attempt;
	a.lease_seq = n->hb_seq;
	f.id = n->stream.stream_id;
	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	f.body_case = NODED__FRAME__BODY_TASK;
	f.task = &a;
	nd__svc_push(svc, &n->stream, &f);
}

static bool has_labels(const struct node *n, const Noded__TaskSpec *sp)
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
	       n->hb_serial == n->stream.serial && !n->draining &&
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

			if (!has_room(n) || (c && !class_labels(n, c)))
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

/* Takes pending t off its queue and sends it to n. */
static void assign(struct nd_svc *svc, struct task *t, struct node *n)
{
	unqueue(svc, t);
	free(t->node);
	t->node = strdup(n->name);
	t->state = NODED__TASK_STATE__TASK_ASSIGNED;
	n->running++;
	nd_list_add_tail(&n->tasks, &t->node_link);
	nd_hist_add(&svc->dispatch, nd_mono_ns() - t->queued_ns);
	ND_LOG(ND_LOG_DEBUG, "task.assigned", ND_U("task", t->id),
	       ND_S("node", n->name), ND_U("attempt", t->attempt));
	push_assignment(svc, t, n);
}

void nd__tasks_schedule(struct nd_svc *svc)
{
	struct nd_list *l, *next;

	while (!nd_list_empty(&svc->pending_any)) {
		struct task *t = nd_container_of(svc->pending_any.next,
						 struct task, queue_link);
		struct node *n = pick(svc, NULL);

		if (!n)
			break; /* no free slot anywhere */
		assign(svc, t, n);
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

			assign(svc, t, n); /* the last one frees c */
			if (last)
				break;
		}
	}
}

void nd__tasks_held(struct nd_svc *svc, struct node *n, const uint64_t *ids,
		    size_t count)
{
	n->held = 0;
	for (size_t i = 0; i < count; i++) {
		const struct task *t = nd_u64map_get(&svc->tasks, ids[i]);

		/* Ended here, or running for us on another node (retried):
		 * either way this node's count does not have it. */
		if (!t || terminal(t->state) || !t->node ||
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
static bool retry_or_lose(struct nd_svc *svc, struct task *t, struct node *n,
			  const char *why)
{
	if (!t->retries_left || t->cancel_requested || t->target_node) {
		finish(svc, t, NODED__TASK_STATE__TASK_LOST, why);
		return false;
	}
	nd_list_del(&t->node_link);
	if (n && n->running)
		n->running--;
	t->retries_left--;
	t->attempt++;
	t->state = NODED__TASK_STATE__TASK_PENDING;
	t->queued_ns = nd_mono_ns();
	ND_LOG(ND_LOG_WARN, "task.retried", ND_U("task", t->id),
	       ND_S("node", t->node), ND_S("reason", why),
	       ND_U("attempt", t->attempt),
	       ND_U("retries_left", t->retries_left));
	if (enqueue(svc, t, t->any_node ? NULL : spec_of(svc, t)) < 0) {
		finish(svc, t, NODED__TASK_STATE__TASK_LOST,
		       "out of memory requeueing it");
		return false;
	}
	return true;
}

void nd__tasks_void(struct nd_svc *svc, struct node *n, const uint64_t *ids,
		    const uint32_t *attempts, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		const struct task *t = nd_u64map_get(&svc->tasks, ids[i]);
		Noded__Frame f = NODED__FRAME__INIT;
		Noded__TaskCancel tc = NODED__TASK_CANCEL__INIT;

		/* Still its attempt here (even on a DEAD node whose lease
		 * is not over: it carries on): leave it be. */
		if (t && !terminal(t->state) && t->node &&
		    t->attempt == attempts[i] && nd_list_linked(&t->node_link) &&
		    !strcmp(t->node, n->name))
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

		requeued |= retry_or_lose(svc, t, n, why);
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
		const Noded__TaskSpec *sp = t->job_id ? NULL : spec_of(svc, t);
		char lost[320];

		next = l->next;
		if (!t->job_id && (!dead || !sp || sp->wait_for_node)) {
			waiting++;
			continue;
		}
		if (!t->job_id)
			snprintf(lost, sizeof(lost), "%s before it ran (it did "
				 "not ask to wait for its node)", why);
		finish(svc, t, NODED__TASK_STATE__TASK_LOST,
		       t->job_id ? why : lost);
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

/* ---- methods ---- */

static struct task *task_new(struct nd_svc *svc, const uint8_t *spec,
			     size_t spec_len, const Noded__TaskSpec *sp,
			     const char *node, uint64_t job)
{
	struct task *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->spec = malloc(spec_len ? spec_len : 1);
	if (!t->spec || (node && !(t->target_node = strdup(node))) ||
	    nd_u64map_put(&svc->tasks, svc->next_task_id, t)) {
		free(t->target_node);
		free(t->spec);
		free(t);
		return NULL;
	}
	memcpy(t->spec, spec, spec_len);
	t->spec_len = spec_len;
	t->id = svc->next_task_id++;
	t->job_id = job;
	t->state = NODED__TASK_STATE__TASK_PENDING;
	t->attempt = 1;
	t->retries_left = sp->retries;
	t->output_cap = sp->output_cap_bytes ? sp->output_cap_bytes
					     : svc->output_cap;
	/* One task alone never keeps more than the whole budget. */
	if (t->output_cap > svc->output_budget)
		t->output_cap = svc->output_budget;
	t->submitted_unix_ms = nd_unix_ms();
	t->queued_ns = nd_mono_ns();
	nd_list_init(&t->watchers);
	nd_list_init(&t->cancel_waits);
	t->any_node = !t->target_node && !sp->n_labels;
	if (enqueue(svc, t, sp) < 0) {
		nd_u64map_del(&svc->tasks, t->id);
		svc->next_task_id--;
		free(t->target_node);
		free(t->spec);
		free(t);
		return NULL;
	}
	nd_list_add_tail(&svc->all, &t->all_link);
	return t;
}

/* Why spec can never run here, or NULL when some node could run it. */
static const char *unplaceable(struct nd_svc *svc, const Noded__TaskSpec *sp,
			       char *buf, size_t len)
{
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
	for (size_t i = 0; i < svc->nbuckets; i++)
		for (n = svc->buckets[i]; n; n = n->next)
			if (n->state != NODED__NODE_STATE__NODE_DEAD &&
			    n->state != NODED__NODE_STATE__NODE_LEFT &&
			    has_labels(n, sp))
				return NULL;
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
	return buf;
}

void nd__task_submit(struct nd_svc *svc, const Noded__Frame *f,
		     const struct nd_dest *from, struct nd_out *o)
{
	const Noded__TaskSpec *sp = from ? f->run : f->submit;
	Noded__FrameKind err_kind = from ? NODED__FRAME_KIND__STREAM_END
					 : NODED__FRAME_KIND__REPLY;
	struct run_group *g = NULL;
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__SubmitReply sr = NODED__SUBMIT_REPLY__INIT;
	uint8_t *packed;
	size_t len, k = 0, cap;
	char why[160];
	const char *bad;
	int err;

	if (svc->npending + (sp->all ? svc->count : 1) > svc->max_queue) {
		ND_LOG(ND_LOG_DEBUG, "task.refused", ND_S("err", "queue full"),
		       ND_U("queued", svc->npending));
		nd__out_error(o, f->id, err_kind,
			    NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			    "queue full: %zu tasks wait (--max-queue %zu)",
			    svc->npending, svc->max_queue);
		return;
	}
	if (!sp->n_argv && !sp->shell[0]) {
		nd__out_error(o, f->id, err_kind,
			    NODED__ERROR_CODE__BAD_REQUEST,
			    "nothing to run: give argv or a shell command");
		return;
	}
	if (sp->n_argv && sp->shell[0]) {
		nd__out_error(o, f->id, err_kind,
			    NODED__ERROR_CODE__BAD_REQUEST,
			    "give argv or a shell command, not both");
		return;
	}
	if ((sp->all && (sp->node[0] || sp->n_labels)) ||
	    (sp->node[0] && sp->n_labels)) {
		nd__out_error(o, f->id, err_kind,
			    NODED__ERROR_CODE__BAD_REQUEST,
			    "target one of: a node, labels, or all");
		return;
	}
	if (sp->all && sp->wait_for_node) {
		nd__out_error(o, f->id, err_kind,
			    NODED__ERROR_CODE__BAD_REQUEST,
			    "wait_for_node does not apply to all: a fan-out "
			    "runs on the nodes alive now");
		return;
	}
	bad = unplaceable(svc, sp, why, sizeof(why));
	if (bad && sp->wait_for_node) {
		sr.waiting = why;
	} else if (bad) {
		nd__out_error(o, f->id, err_kind,
			    NODED__ERROR_CODE__NOT_FOUND, "%s", bad);
		return;
	}
	cap = sp->all ? svc->count : 1;
	err = nd_task_ids_reserve(svc->ids, svc->next_task_id, cap);
	if (err) {
		ND_LOG(ND_LOG_ERROR, "task.ids_failed", ND_S("err", strerror(-err)),
		       ND_S("msg", "cannot reserve task ids in --data-dir: "
			    "submits are refused until it is writable"));
		nd__out_error(o, f->id, err_kind, NODED__ERROR_CODE__UNAVAILABLE,
			      "cannot reserve task ids in the master's "
			      "--data-dir (%s): refusing rather than risk "
			      "reusing an id", strerror(-err));
		return;
	}
	len = noded__task_spec__get_packed_size(sp);
	packed = nd_arena_alloc(&svc->s->arena, len ? len : 1);
	sr.task_ids = nd_arena_alloc(&svc->s->arena, cap * sizeof(uint64_t));
	sr.nodes = nd_arena_alloc(&svc->s->arena, cap * sizeof(char *));
	if (!packed || !sr.task_ids || !sr.nodes)
		goto oom;
	noded__task_spec__pack(sp, packed);
	if (sp->all) {
		/* a job's id is its first task's: unique as they are */
		sr.job_id = svc->next_task_id;
		for (size_t i = 0; i < svc->nbuckets; i++) {
			for (struct node *n = svc->buckets[i]; n; n = n->next) {
				struct task *t;

				/* a node whose stream closed is on its
				 * way to DEAD: it would get no task */
				if (n->state == NODED__NODE_STATE__NODE_DEAD ||
				    !n->stream.serial || n->draining)
					continue;
				t = task_new(svc, packed, len, sp, n->name,
					     sr.job_id);
				if (!t)
					goto oom;
				sr.task_ids[k] = t->id;
				sr.nodes[k++] = n->name;
			}
		}
	} else {
		struct task *t = task_new(svc, packed, len, sp,
					  sp->node[0] ? sp->node : NULL, 0);

		if (!t)
			goto oom;
		sr.task_ids[k] = t->id;
		sr.nodes[k++] = sp->node;
	}
	sr.n_task_ids = sr.n_nodes = k;
	if (!k)
		sr.job_id = 0; /* no task took that id */
	ND_LOG(ND_LOG_DEBUG, "task.submitted", ND_U("task", k ? sr.task_ids[0] : 0),
	       ND_U("job", sr.job_id), ND_U("tasks", k),
	       ND_B("follow", from != NULL));
	if (from) {
		/* Watch before anything can run: no output can be missed. */
		g = calloc(1, sizeof(*g));
		if (!g)
			goto oom;
		g->left = (unsigned)k;
		for (size_t i = 0; i < k; i++) {
			struct task *t = nd_u64map_get(&svc->tasks,
						       sr.task_ids[i]);

			if (!add_watcher(svc, t, from, g))
				g->left--; /* that task ends unwatched */
		}
		if (!g->left) {
			free(g);
			goto oom;
		}
	}
	nd__tasks_schedule(svc);
	/* Report where each went, when the scheduler placed it now. */
	for (size_t i = 0; i < k; i++) {
		struct task *t = nd_u64map_get(&svc->tasks, sr.task_ids[i]);

		if (t && t->node)
			sr.nodes[i] = t->node;
	}
	r.id = f->id;
	r.kind = from ? NODED__FRAME_KIND__STREAM_ITEM : NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_SUBMIT_REPLY;
	r.submit_reply = &sr;
	nd__out_frame(o, &r);
	return;
oom:
	nd__out_error(o, f->id, err_kind,
		    NODED__ERROR_CODE__RESOURCE_EXHAUSTED, "out of memory");
}

/* Task id, or NULL after answering NOT_FOUND: evicted (ids are never
 * reused, so a missing id below the next one was evicted) or never was. */
static struct task *find(struct nd_svc *svc, uint64_t id, uint64_t req,
			 Noded__FrameKind kind, struct nd_out *o)
{
	struct task *t = id ? nd_u64map_get(&svc->tasks, id) : NULL;

	if (t)
		return t;
	if (id >= svc->first_task_id && id < svc->next_task_id)
		nd__out_error(o, req, kind, NODED__ERROR_CODE__NOT_FOUND,
			      "task %llu was evicted from the master's history "
			      "(it keeps the last %llu ended tasks and %llu "
			      "bytes of output: --task-history, "
			      "--output-budget)", (unsigned long long)id,
			      (unsigned long long)svc->task_history,
			      (unsigned long long)svc->output_budget);
	else if (svc->next_task_id > svc->first_task_id)
		nd__out_error(o, req, kind, NODED__ERROR_CODE__NOT_FOUND,
			      "no task %llu (the newest is %llu)",
			      (unsigned long long)id,
			      (unsigned long long)(svc->next_task_id - 1));
	else
		nd__out_error(o, req, kind, NODED__ERROR_CODE__NOT_FOUND,
			      "no task %llu (none submitted yet)",
			      (unsigned long long)id);
	return NULL;
}

void nd__task_get(struct nd_svc *svc, const Noded__Frame *f, struct nd_out *o)
{
	struct task *t = find(svc, f->get_task->id, f->id,
			      NODED__FRAME_KIND__REPLY, o);

	if (t)
		frame_record(svc, t, f->id, NODED__FRAME_KIND__REPLY, o);
}

void nd__task_list(struct nd_svc *svc, const Noded__Frame *f,
		   struct nd_out *o)
{
	const Noded__TaskListRequest *q = f->list_tasks;
	size_t limit = q->limit ? q->limit : LIST_DEFAULT, k = 0;
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__TaskList tl = NODED__TASK_LIST__INIT;
	struct nd_list *l;

	if (limit > LIST_MAX)
		limit = LIST_MAX;
	tl.tasks = nd_arena_alloc(&svc->s->arena, limit * sizeof(*tl.tasks));
	/* newest first */
	for (l = svc->all.prev; tl.tasks && l != &svc->all && k < limit;
	     l = l->prev) {
		struct task *t = nd_container_of(l, struct task, all_link);
		Noded__TaskRecord *rec;

		if (q->state && t->state != q->state)
			continue;
		rec = nd_arena_alloc(&svc->s->arena, sizeof(*rec));
		if (!rec)
			break;
		record(svc, t, rec);
		tl.tasks[k++] = rec;
	}
	tl.n_tasks = k;
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_TASK_LIST;
	r.task_list = &tl;
	nd__out_frame(o, &r);
}

static void push_cancel(struct nd_svc *svc, struct task *t)
{
	struct node *n = t->node ? nd__node_find(svc, t->node) : NULL;
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__TaskCancel tc = NODED__TASK_CANCEL__INIT;

	if (!n || !n->stream.serial)
		return; /* it ends as LOST if the node does not come back */
	tc.task_id = t->id;
	f.id = n->stream.stream_id;
	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	f.body_case = NODED__FRAME__BODY_TASK_CANCEL;
	f.task_cancel = &tc;
	nd__svc_push(svc, &n->stream, &f);
}

void nd__task_cancel(struct nd_svc *svc, const Noded__Frame *f,
		     const struct nd_dest *from, struct nd_out *o)
{
	struct task *t = find(svc, f->cancel_task->id, f->id,
			      NODED__FRAME_KIND__REPLY, o);
	struct cancel_wait *w;

	if (!t)
		return;
	if (t->state == NODED__TASK_STATE__TASK_PENDING) {
		finish(svc, t, NODED__TASK_STATE__TASK_CANCELLED,
		       "cancelled before it started");
	} else if (!terminal(t->state) && !t->cancel_requested) {
		/* The worker kills the process group and reports the end. */
		t->cancel_requested = true;
		push_cancel(svc, t);
	}
	/* Answered when it ends (see "Cancel" at the top); now if it has,
	 * or if this one cannot wait. */
	if (terminal(t->state) || t->ncancel_waits >= CANCEL_WAITS_MAX ||
	    !from->serial || !(w = calloc(1, sizeof(*w)))) {
		frame_record(svc, t, f->id, NODED__FRAME_KIND__REPLY, o);
		return;
	}
	w->task = t;
	w->to = *from;
	w->deadline_ms = svc->s->now_ms + CANCEL_WAIT_MS;
	nd_list_add_tail(&t->cancel_waits, &w->task_link);
	nd_list_add_tail(&svc->cancel_waits, &w->svc_link);
	t->ncancel_waits++;
}

/* Replays the kept output as OutputChunk items. */
static void replay(const struct task *t, uint64_t id, struct nd_out *o)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__OutputChunk c = NODED__OUTPUT_CHUNK__INIT;
	size_t off = 0;

	f.id = id;
	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	f.body_case = NODED__FRAME__BODY_OUTPUT;
	f.output = &c;
	c.task_id = t->id;
	while (off + 5 <= t->out.len) {
		uint32_t len;

		memcpy(&len, t->out.data + off + 1, 4);
		c.fd = t->out.data[off];
		c.data.data = t->out.data + off + 5;
		c.data.len = len;
		nd__out_frame(o, &f);
		off += 5 + len;
	}
}

void nd__task_watch(struct nd_svc *svc, const Noded__Frame *f,
		    const struct nd_dest *from, struct nd_out *o)
{
	struct task *t = find(svc, f->watch->task_id, f->id,
			      NODED__FRAME_KIND__STREAM_END, o);

	if (!t)
		return;
	replay(t, f->id, o);
	if (terminal(t->state) || !f->watch->follow) {
		frame_record(svc, t, f->id, NODED__FRAME_KIND__STREAM_ITEM, o);
		frame_end(o, f->id);
		return;
	}
	if (!add_watcher(svc, t, from, NULL))
		nd__out_error(o, f->id, NODED__FRAME_KIND__STREAM_END,
			      NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			      "out of memory");
}

/* Keeps chunk up to the task's output cap; past it, marks truncated. */
static void keep_output(struct nd_svc *svc, struct task *t,
			const Noded__OutputChunk *c)
{
	size_t room, n;
	uint8_t *b;
	uint32_t len;

	t->produced += c->data.len;
	if (t->out_data >= t->output_cap) {
		t->truncated = t->truncated || c->data.len > 0;
		return;
	}
	room = (size_t)(t->output_cap - t->out_data);
	n = c->data.len < room ? c->data.len : room;
	if (n < c->data.len)
		t->truncated = true;
	if (nd_buf_reserve(&t->out, 5 + n))
		return;
	b = t->out.data + t->out.len;
	len = (uint32_t)n;
	b[0] = (uint8_t)(c->fd == 2 ? 2 : 1);
	memcpy(b + 1, &len, 4);
	memcpy(b + 5, c->data.data, n);
	t->out.len += 5 + n;
	t->out_data += n;
	svc->kept_bytes += n;
}

static void ack(struct nd_out *o, uint64_t id)
{
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__Ack a = NODED__ACK__INIT;

	r.id = id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_ACK;
	r.ack = &a;
	nd__out_frame(o, &r);
}

static void finished(struct nd_svc *svc, struct task *t,
		     const Noded__ExecExited *x)
{
	Noded__TaskState st;
	char why[128];
	const char *reason = x->reason[0] ? x->reason : NULL;

	t->exit_code = x->exit_code;
	t->signal = x->signal;
	if (x->start_unix_ms && !t->started_unix_ms)
		t->started_unix_ms = x->start_unix_ms;
	t->utime_us = x->utime_us;
	t->stime_us = x->stime_us;
	t->max_rss_kib = x->max_rss_kib;
	if (t->cancel_requested ||
	    (x->cancelled && !x->worker_stopping && !x->lease_expired)) {
		st = NODED__TASK_STATE__TASK_CANCELLED;
	} else if (x->worker_stopping || x->lease_expired) {
		/* Ended by its node, not by itself: as for a node that died
		 * (its end is reported, so a retry cannot overlap it). */
		struct node *n = t->node ? nd__node_find(svc, t->node) : NULL;

		retry_or_lose(svc, t, n, x->worker_stopping ? "worker stopping" :
				  reason ? reason : "lease expired");
		nd__tasks_schedule(svc);
		return;
	} else if (x->timed_out) {
		st = NODED__TASK_STATE__TASK_TIMED_OUT;
		if (!reason) {
			snprintf(why, sizeof(why), "timed out; killed by "
				 "signal %d", x->signal);
			reason = why;
		}
	} else if (x->exit_code == 0 && x->signal == 0 && !x->spawn_errno) {
		st = NODED__TASK_STATE__TASK_SUCCEEDED;
	} else {
		st = NODED__TASK_STATE__TASK_FAILED;
		if (!reason && x->signal) {
			snprintf(why, sizeof(why), "killed by signal %d",
				 x->signal);
			reason = why;
		}
	}
	finish(svc, t, st, reason);
	nd__tasks_schedule(svc); /* a slot is free */
}

void nd__task_update(struct nd_svc *svc, const Noded__Frame *f,
		     uint64_t conn_serial, struct nd_out *o)
{
	const Noded__TaskUpdate *u = f->task_update;
	struct task *t = nd_u64map_get(&svc->tasks, u->task_id);
	struct node *n = t && t->node ? nd__node_find(svc, t->node) : NULL;

	/* The worker only lets go of an ended task on this ack; it waits for
	 * nothing on it, so the ack rides with the next task we send it (or
	 * the tick) instead of waking it once more per task. Output acks are
	 * its flow control and go at once. */
	o->lazy = u->body_case == NODED__TASK_UPDATE__BODY_FINISHED;

	/* Only the node running this attempt may update it; anything else
	 * (a late worker, an old attempt, an ended task) is acknowledged and
	 * dropped so the worker can let go of it. */
	if (!t || !n || n->stream.serial != conn_serial ||
	    u->attempt != t->attempt || terminal(t->state)) {
		ack(o, f->id);
		return;
	}
	switch (u->body_case) {
	case NODED__TASK_UPDATE__BODY_STARTED:
		if (t->state == NODED__TASK_STATE__TASK_ASSIGNED)
			t->state = NODED__TASK_STATE__TASK_RUNNING;
		t->started_unix_ms = u->started->start_unix_ms;
		ND_LOG(ND_LOG_DEBUG, "task.started", ND_U("task", t->id),
		       ND_S("node", t->node));
		break;
	case NODED__TASK_UPDATE__BODY_OUTPUT:
		if (t->state == NODED__TASK_STATE__TASK_ASSIGNED)
			t->state = NODED__TASK_STATE__TASK_RUNNING;
		keep_output(svc, t, u->output);
		watchers_output(svc, t, u->output);
		if (nd__task_congested(svc, t->id))
			o->hold_task = t->id;
		break;
	case NODED__TASK_UPDATE__BODY_FINISHED:
		finished(svc, t, u->finished);
		break;
	default:
		break;
	}
	ack(o, f->id);
}

bool nd__task_congested(struct nd_svc *svc, uint64_t task_id)
{
	struct task *t = nd_u64map_get(&svc->tasks, task_id);

	if (!t || terminal(t->state))
		return false;
	for (struct nd_list *l = t->watchers.next; l != &t->watchers;
	     l = l->next) {
		struct watcher *w = nd_container_of(l, struct watcher,
						    task_link);

		if (nd_u64map_get(&svc->congested, w->to.serial))
			return true;
	}
	return false;
}

/* Unlinks t from everything and frees it with its watchers. */
static void task_free(struct nd_svc *svc, struct task *t)
{
	/* only a task that has not ended has any (at exit) */
	while (!nd_list_empty(&t->cancel_waits)) {
		struct cancel_wait *w = nd_container_of(t->cancel_waits.next,
							struct cancel_wait,
							task_link);

		nd_list_del(&w->task_link);
		nd_list_del(&w->svc_link);
		free(w);
	}
	while (!nd_list_empty(&t->watchers))
		watcher_drop(svc, nd_container_of(t->watchers.next,
						  struct watcher, task_link));
	nd_u64map_del(&svc->tasks, t->id);
	nd_list_del(&t->all_link);
	unqueue(svc, t);
	nd_list_del(&t->node_link);
	if (nd_list_linked(&t->done_link)) {
		nd_list_del(&t->done_link);
		svc->ndone--;
	}
	svc->kept_bytes -= t->out_data;
	free(t->spec);
	free(t->target_node);
	free(t->node);
	free(t->reason);
	nd_buf_free(&t->out);
	free(t);
}

void nd__tasks_trim(struct nd_svc *svc)
{
	while (!nd_list_empty(&svc->done) &&
	       (svc->ndone > svc->task_history ||
		svc->kept_bytes > svc->output_budget))
		task_free(svc, nd_container_of(svc->done.next, struct task,
					       done_link));
}

void nd__tasks_free(struct nd_svc *svc)
{
	while (!nd_list_empty(&svc->all))
		task_free(svc, nd_container_of(svc->all.next, struct task,
					       all_link));
	nd_u64map_free(&svc->tasks);
	nd_u64map_free(&svc->watching);
	nd_u64map_free(&svc->classes); /* empty: classes go with their tasks */
}

void nd__tasks_metrics(struct nd_svc *svc, FILE *f)
{
	uint64_t by_state[16] = { 0 }, queued = 0;
	struct nd_list *l;

	for (l = svc->all.next; l != &svc->all; l = l->next) {
		struct task *t = nd_container_of(l, struct task, all_link);

		if ((unsigned)t->state < 16)
			by_state[t->state]++;
	}
	queued = svc->npending;
	fprintf(f, "# HELP noded_tasks Tasks the master holds, by state.\n"
		"# TYPE noded_tasks gauge\n");
	for (unsigned st = 1; st <= NODED__TASK_STATE__TASK_LOST; st++)
		fprintf(f, "noded_tasks{state=\"%s\"} %llu\n",
			nd_task_state_name((Noded__TaskState)st),
			(unsigned long long)by_state[st]);
	fprintf(f, "# HELP noded_tasks_ended_total Tasks that reached a "
		"final state, by state.\n# TYPE noded_tasks_ended_total "
		"counter\n");
	for (unsigned st = NODED__TASK_STATE__TASK_SUCCEEDED;
	     st <= NODED__TASK_STATE__TASK_LOST; st++)
		fprintf(f, "noded_tasks_ended_total{state=\"%s\"} %llu\n",
			nd_task_state_name((Noded__TaskState)st),
			(unsigned long long)svc->ended[st]);
	fprintf(f, "# HELP noded_tasks_submitted_total Tasks submitted.\n"
		"# TYPE noded_tasks_submitted_total counter\n"
		"noded_tasks_submitted_total %llu\n",
		(unsigned long long)(svc->next_task_id - svc->first_task_id));
	fprintf(f, "# HELP noded_task_queue_length Tasks waiting for a "
		"node.\n# TYPE noded_task_queue_length gauge\n"
		"noded_task_queue_length %llu\n", (unsigned long long)queued);
	fprintf(f, "# HELP noded_dispatch_duration_seconds Task queued to "
		"sent to its worker.\n# TYPE noded_dispatch_duration_seconds "
		"histogram\n");
	nd_hist_write(f, "noded_dispatch_duration_seconds", "",
		      &svc->dispatch);
}
