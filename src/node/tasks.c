/*
 * The task table of the node service (on shard 0): tasks, their records,
 * their methods (submit, get, list, cancel, update) and their retention.
 * Placement is scheduler.c's, output and watchers watch.c's, frame helpers
 * out.c's, nodes registry.c's.
 *
 * Life of a task: PENDING (queued here) -> ASSIGNED (pushed on its node's
 * AssignTask stream) -> RUNNING (the worker reported it started) -> exactly
 * one of SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, LOST. A task whose node dies
 * is LOST, or PENDING again while it has retries left, but only once its
 * attempt's lease is over (registry.c, nd__svc_tick): by then the node's
 * exec helpers have killed it, so a retry never overlaps it. An attempt its
 * node ended (lease expired, worker stopping) is treated the same way when
 * its end is reported. Updates for a task that
 * already ended, or for another attempt, are acknowledged and ignored, so a
 * late worker can never give a task a second ending.
 *
 * Retention: ended tasks are kept in the order they ended (svc.done). Between
 * methods, the oldest are evicted while more than --task-history of them are
 * kept, or while all tasks together keep more than --output-budget bytes of
 * output. A task that has not ended is never evicted, and an ended one has no
 * watchers left. Ids are never reused, not even by a restarted master
 * (task_ids.h), so an id from this master's first to its next that is not in
 * the table was evicted, and the error says so.
 *
 * Cancel: a PENDING task ends CANCELLED at once; one on a worker is killed
 * there (TERM, grace, KILL) and ends when the worker reports it. The reply
 * to cancel_task waits for that end, so what the requester reads is the
 * state the cancel led to (CANCELLED, or whatever it reached first), not a
 * RUNNING of the moment before: it is a struct cancel_wait, answered from
 * nd__task_finish(), or after CANCEL_WAIT_MS (a worker that cannot be
 * reached) with the record as it is, cancel_requested set. At most
 * CANCEL_WAITS_MAX wait per task; more are answered at once, so repeated
 * cancels cost no memory.
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
#include "noded/taskspec.h"

#define LIST_DEFAULT 100
#define LIST_MAX 10000
/* Over the worker's TERM-to-KILL grace (2 s) and the report's way back. */
#define CANCEL_WAIT_MS 5000
#define CANCEL_WAITS_MAX 16

/* For a task queued for a named node that no worker holds now: what it
 * waits for, in the arena; else "". */
static char *wait_reason(struct nd_svc *svc, const struct task *t)
{
	const struct node *n;
	const char *what;
	char when[32], *buf;
	struct tm tm;
	time_t sec;

	if (t->l.state != NODED__TASK_STATE__TASK_PENDING || !t->l.target_node)
		return "";
	n = nd__node_find(svc, t->l.target_node);
	if (n && n->stream.serial && n->state != NODED__NODE_STATE__NODE_DEAD)
		return ""; /* registered: it waits for a free slot */
	buf = nd_arena_alloc(svc->arena, strlen(t->l.target_node) + 96);
	if (!buf)
		return "";
	if (!n) {
		sprintf(buf, "waits for node %s, which has not registered",
			t->l.target_node);
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

/* t's history into r (arena; none when out of memory). */
static void record_attempts(struct nd_svc *svc, const struct nd_ltask *t,
			    Noded__TaskRecord *r)
{
	Noded__TaskAttempt *am, **ap;

	if (!t->nattempts)
		return;
	am = nd_arena_alloc(svc->arena, t->nattempts * sizeof(*am));
	ap = nd_arena_alloc(svc->arena, t->nattempts * sizeof(*ap));
	if (!am || !ap)
		return;
	nd_ledger_attempts_msg(t, am, ap);
	r->attempts = ap;
	r->n_attempts = t->nattempts;
}

/* Fills r from t; strings point into t or the arena (valid this batch). */
void nd__task_record(struct nd_svc *svc, const struct task *t,
		     Noded__TaskRecord *r)
{
	const struct nd_ltask *l = &t->l;

	noded__task_record__init(r);
	r->id = l->id;
	r->job_id = l->job_id;
	r->state = l->state;
	r->node = l->node ? l->node : (l->target_node ? l->target_node : "");
	r->spec = nd__task_spec(svc, t);
	r->exit_code = l->exit_code;
	r->signal = l->signal;
	r->reason = l->reason ? l->reason : wait_reason(svc, t);
	r->submitted_unix_ms = l->submitted_unix_ms;
	r->started_unix_ms = l->started_unix_ms;
	r->ended_unix_ms = l->ended_unix_ms;
	r->utime_us = l->utime_us;
	r->stime_us = l->stime_us;
	r->max_rss_kib = l->max_rss_kib;
	r->attempt = l->attempt;
	r->output_bytes = l->produced;
	r->truncated = l->truncated;
	r->watchers = t->nwatchers;
	r->cancel_requested = l->cancel_requested && !nd__task_ended(l->state);
	record_attempts(svc, l, r);
}

void nd__task_frame_record(struct nd_svc *svc, const struct task *t,
			   uint64_t id, Noded__FrameKind kind, struct nd_out *o)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__TaskRecord r;

	nd__task_record(svc, t, &r);
	f.id = id;
	f.kind = kind;
	f.body_case = NODED__FRAME__BODY_TASK_RECORD;
	f.task_record = &r;
	nd__out_frame(o, &f);
}

/* ---- cancel waits ---- */

/* Answers w's cancel_task with t's record as it is now, and frees w. */
static void cancel_wait_answer(struct nd_svc *svc, struct cancel_wait *w)
{
	struct nd_out o = { 0 };

	nd_list_del(&w->task_link);
	nd_list_del(&w->svc_link);
	w->task->ncancel_waits--;
	nd__task_frame_record(svc, w->task, w->to.stream_id,
			      NODED__FRAME_KIND__REPLY, &o);
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
static void log_end(const struct nd_ltask *t)
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

void nd__task_finish(struct nd_svc *svc, struct task *t, Noded__TaskState st,
		     const char *reason)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerEnded e = NODED__LEDGER_ENDED__INIT;
	Noded__LedgerLost lost = NODED__LEDGER_LOST__INIT;

	if (nd__task_ended(t->l.state))
		return;
	if (st == NODED__TASK_STATE__TASK_LOST) {
		lost.task_id = t->l.id;
		lost.attempt = t->l.attempt;
		lost.reason = (char *)(reason ? reason : "");
		lost.unix_ms = nd_unix_ms();
		ev.body_case = NODED__LEDGER_EVENT__BODY_LOST;
		ev.lost = &lost;
	} else {
		e.task_id = t->l.id;
		e.attempt = t->l.attempt;
		e.state = st;
		e.reason = (char *)(reason ? reason : "");
		e.unix_ms = nd_unix_ms();
		ev.body_case = NODED__LEDGER_EVENT__BODY_ENDED;
		ev.ended = &e;
	}
	if (nd__svc_apply(svc, &ev, NULL) == -ENOMEM && reason) {
		/* the reason is the only memory these take: end it without */
		lost.reason = e.reason = "";
		nd__svc_apply(svc, &ev, NULL);
	}
}

/* The part of the effects of t's end outside the queues: the log line, its
 * watchers' records and stream ends, its waiting cancels answered. */
static void ended(struct nd_svc *svc, struct task *t)
{
	log_end(&t->l);
	nd__watchers_end(svc, t);
	while (!nd_list_empty(&t->cancel_waits))
		cancel_wait_answer(svc, nd_container_of(t->cancel_waits.next,
							struct cancel_wait,
							task_link));
}

static void push_cancel(struct nd_svc *svc, struct task *t)
{
	struct node *n = t->l.node ? nd__node_find(svc, t->l.node) : NULL;
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__TaskCancel tc = NODED__TASK_CANCEL__INIT;

	if (!n || !n->stream.serial || !nd_list_linked(&t->node_link))
		return; /* it ends as LOST if the node does not come back */
	tc.task_id = t->l.id;
	f.id = n->stream.stream_id;
	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	f.body_case = NODED__FRAME__BODY_TASK_CANCEL;
	f.task_cancel = &tc;
	nd__svc_push(svc, &n->stream, &f);
}

void nd__tasks_effects(struct nd_svc *svc, const Noded__LedgerEvent *ev,
		       struct task *t)
{
	switch (ev->body_case) {
	case NODED__LEDGER_EVENT__BODY_ASSIGN:
		nd__push_assignment(svc, t);
		if (t->l.attempt > 1) /* where the retry runs */
			nd__watchers_record(svc, t);
		break;
	case NODED__LEDGER_EVENT__BODY_STARTED:
		ND_LOG(ND_LOG_DEBUG, "task.started", ND_U("task", t->l.id),
		       ND_S("node", t->l.node));
		break;
	case NODED__LEDGER_EVENT__BODY_OUTPUT: {
		Noded__OutputChunk c = NODED__OUTPUT_CHUNK__INIT;

		c.task_id = ev->output->task_id;
		c.fd = ev->output->fd;
		c.data = ev->output->data;
		c.attempt = ev->output->attempt;
		nd__watchers_output(svc, t, &c);
		break;
	}
	case NODED__LEDGER_EVENT__BODY_ENDED:
	case NODED__LEDGER_EVENT__BODY_LOST:
		ended(svc, t);
		break;
	case NODED__LEDGER_EVENT__BODY_CANCEL:
		push_cancel(svc, t);
		break;
	case NODED__LEDGER_EVENT__BODY_RETRIED:
		ND_LOG(ND_LOG_WARN, "task.retried", ND_U("task", t->l.id),
		       ND_S("node", t->l.node), ND_S("reason", ev->retried->reason),
		       ND_U("attempt", t->l.attempt),
		       ND_U("retries_left", t->l.retries_left));
		nd__watchers_record(svc, t);
		break;
	default:
		break;
	}
}

/* ---- methods ---- */

/* Refuses a submit (into o) when the queue is full. */
static bool queue_room(struct nd_svc *svc, const Noded__Frame *f,
		       size_t k, Noded__FrameKind err_kind, struct nd_out *o)
{
	size_t npending = svc->ledger.count[NODED__TASK_STATE__TASK_PENDING];

	if (npending + k <= svc->max_queue)
		return true;
	ND_LOG(ND_LOG_DEBUG, "task.refused", ND_S("err", "queue full"),
	       ND_U("queued", npending));
	nd__out_error(o, f->id, err_kind, NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
		      "queue full: %zu tasks wait (--max-queue %zu)", npending,
		      svc->max_queue);
	return false;
}

/* Reserves the k ids the submit takes (task_ids.h), or refuses it. */
static bool ids_reserved(struct nd_svc *svc, const Noded__Frame *f,
			 size_t k, Noded__FrameKind err_kind,
			 struct nd_out *o)
{
	int err = nd_task_ids_reserve(svc->ids, svc->next_task_id, k);

	if (!err)
		return true;
	ND_LOG(ND_LOG_ERROR, "task.ids_failed", ND_S("err", strerror(-err)),
	       ND_S("msg", "cannot reserve task ids in --data-dir: "
		    "submits are refused until it is writable"));
	nd__out_error(o, f->id, err_kind, NODED__ERROR_CODE__UNAVAILABLE,
		      "cannot reserve task ids in the master's --data-dir "
		      "(%s): refusing rather than risk reusing an id",
		      strerror(-err));
	return false;
}

/* The nodes a fan-out runs on: every live registered node that takes
 * tasks (a node whose stream closed is on its way to DEAD: it would get
 * none). Into nodes (room for svc.count); returns how many. */
static size_t fan_out_nodes(struct nd_svc *svc, char **nodes)
{
	size_t k = 0;

	for (size_t i = 0; i < svc->nbuckets; i++)
		for (struct node *n = svc->buckets[i]; n; n = n->next)
			if (n->state != NODED__NODE_STATE__NODE_DEAD &&
			    n->stream.serial && !nd__node_closed(n))
				nodes[k++] = n->name;
	return k;
}

/* The nodes of a job (sp all or nodes) into e->nodes, e->n_nodes (see
 * targets.c). NULL, or why there are none (buf, or "out of memory");
 * *waiting: for which nodes its tasks wait (wait_for_node), or NULL. */
static const char *job_nodes(struct nd_svc *svc, const Noded__TaskSpec *sp,
			     Noded__LedgerSubmit *e, char **waiting,
			     char *buf, size_t size)
{
	*waiting = NULL;
	if (!sp->all)
		return nd__targets_list(svc, sp, &e->nodes, &e->n_nodes,
					waiting, buf, size);
	e->nodes = nd_arena_alloc(svc->arena, (svc->count ? svc->count : 1) *
				  sizeof(char *));
	if (!e->nodes)
		return "out of memory";
	e->n_nodes = fan_out_nodes(svc, e->nodes);
	return nd__targets_all(svc, sp, e->nodes, &e->n_nodes, buf, size);
}

/* The submit event of sp (packed in packed, len bytes) into e; false when
 * out of memory. */
static bool submit_event(struct nd_svc *svc, const Noded__TaskSpec *sp,
			 uint8_t *packed, size_t len, Noded__LedgerSubmit *e)
{
	e->task_id = svc->next_task_id;
	e->spec.data = packed;
	e->spec.len = len;
	e->retries = sp->retries;
	e->output_cap_bytes = sp->output_cap_bytes ? sp->output_cap_bytes :
						     svc->output_cap;
	/* One task alone never keeps more than the whole budget. */
	if (e->output_cap_bytes > svc->output_budget)
		e->output_cap_bytes = svc->output_budget;
	e->unix_ms = nd_unix_ms();
	e->session = sp->session;
	e->sequence = sp->session ? sp->sequence : 0;
	if (sp->all || sp->nodes[0]) {
		/* a job's id is its first task's: unique as they are; its
		 * nodes are set (job_nodes) */
		e->job_id = e->task_id;
	} else if (sp->node[0]) {
		e->nodes = nd_arena_alloc(svc->arena, sizeof(char *));
		if (!e->nodes)
			return false;
		e->nodes[0] = sp->node;
		e->n_nodes = 1;
	}
	return true;
}

/* The run's watchers, before anything can run: no output can be missed.
 * false when out of memory for all of them. */
static bool run_watch(struct nd_svc *svc, const Noded__SubmitReply *sr,
		      const struct nd_dest *from)
{
	struct run_group *g = calloc(1, sizeof(*g));

	if (!g)
		return false;
	g->left = (unsigned)sr->n_task_ids;
	for (size_t i = 0; i < sr->n_task_ids; i++) {
		struct task *t = nd__task_of(nd_ledger_get(&svc->ledger,
							   sr->task_ids[i]));

		if (!nd__watcher_add(svc, t, from, g))
			g->left--; /* that task ends unwatched */
	}
	if (!g->left) {
		free(g);
		return false;
	}
	return true;
}

/*
 * A submit sent again (its session and sequence already made tasks: the
 * reply was lost to a leader change or a dropped connection): answered
 * with those tasks, none made. true when it was one.
 */
static bool resent(struct nd_svc *svc, const Noded__Frame *f,
		   const Noded__TaskSpec *sp, const struct nd_dest *from,
		   struct nd_out *o)
{
	const struct nd_lsession *last = nd_ledger_session(&svc->ledger,
							   sp->session);
	Noded__FrameKind kind = from ? NODED__FRAME_KIND__STREAM_END :
				       NODED__FRAME_KIND__REPLY;
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__SubmitReply sr = NODED__SUBMIT_REPLY__INIT;

	if (!last || sp->sequence > last->sequence)
		return false;
	if (sp->sequence < last->sequence || from) {
		nd__out_error(o, f->id, kind, NODED__ERROR_CODE__ALREADY_EXISTS,
			      "%s (session %llu, submit %llu)", from ?
			      "this run was submitted already: follow its "
			      "tasks with `noded logs --follow`" :
			      "an older submit of this session, sent again "
			      "after a newer one", (unsigned long long)
			      sp->session, (unsigned long long)sp->sequence);
		return true;
	}
	sr.task_ids = nd_arena_alloc(svc->arena, last->tasks *
				     sizeof(uint64_t));
	sr.nodes = nd_arena_alloc(svc->arena, last->tasks * sizeof(char *));
	if (!sr.task_ids || !sr.nodes) {
		nd__out_error(o, f->id, kind,
			      NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			      "out of memory");
		return true;
	}
	for (uint32_t i = 0; i < last->tasks; i++) {
		const struct nd_ltask *t = nd_ledger_get(&svc->ledger,
							 last->task_id + i);

		sr.task_ids[i] = last->task_id + i;
		sr.nodes[i] = t && t->node ? t->node :
			      t && t->target_node ? t->target_node : "";
	}
	sr.n_task_ids = sr.n_nodes = last->tasks;
	sr.job_id = last->job_id;
	ND_LOG(ND_LOG_DEBUG, "task.resubmitted", ND_U("task", last->task_id),
	       ND_U("session", sp->session), ND_U("sequence", sp->sequence));
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_SUBMIT_REPLY;
	r.submit_reply = &sr;
	nd__out_frame(o, &r);
	return true;
}

void nd__task_submit(struct nd_svc *svc, const Noded__Frame *f,
		     const struct nd_dest *from, struct nd_out *o)
{
	const Noded__TaskSpec *sp = from ? f->run : f->submit;
	Noded__FrameKind err_kind = from ? NODED__FRAME_KIND__STREAM_END
					 : NODED__FRAME_KIND__REPLY;
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__SubmitReply sr = NODED__SUBMIT_REPLY__INIT;
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerSubmit e = NODED__LEDGER_SUBMIT__INIT;
	bool job = sp->all || sp->nodes[0];
	uint8_t *packed;
	size_t len, k;
	char why[512], *waiting;
	const char *bad;
	int err;

	bad = nd_task_spec_check(sp, why, sizeof(why));
	if (bad) {
		nd__out_error(o, f->id, err_kind,
			    NODED__ERROR_CODE__BAD_REQUEST, "%s", bad);
		return;
	}
	if (resent(svc, f, sp, from, o))
		return;
	if (job) {
		bad = job_nodes(svc, sp, &e, &waiting, why, sizeof(why));
		if (bad && !strcmp(bad, "out of memory"))
			goto oom;
		if (waiting)
			sr.waiting = waiting;
	} else {
		bad = nd__task_unplaceable(svc, sp, why, sizeof(why));
	}
	if (bad && sp->wait_for_node && !job) {
		sr.waiting = why;
	} else if (bad) {
		nd__out_error(o, f->id, err_kind,
			    NODED__ERROR_CODE__NOT_FOUND, "%s", bad);
		return;
	}
	k = job ? e.n_nodes : 1;
	if (!queue_room(svc, f, k, err_kind, o) ||
	    !ids_reserved(svc, f, k, err_kind, o))
		return;
	len = noded__task_spec__get_packed_size(sp);
	packed = nd_arena_alloc(svc->arena, len ? len : 1);
	if (!packed || !submit_event(svc, sp, packed, len, &e))
		goto oom;
	noded__task_spec__pack(sp, packed);
	sr.task_ids = nd_arena_alloc(svc->arena, (k ? k : 1) * sizeof(uint64_t));
	sr.nodes = nd_arena_alloc(svc->arena, (k ? k : 1) * sizeof(char *));
	if (!sr.task_ids || !sr.nodes)
		goto oom;
	if (k) {
		ev.body_case = NODED__LEDGER_EVENT__BODY_SUBMIT;
		ev.submit = &e;
		svc->submit_spec = sp;
		err = nd__svc_apply(svc, &ev, NULL);
		svc->submit_spec = NULL;
		if (err)
			goto oom;
		svc->next_task_id += k;
		sr.job_id = e.job_id;
	}
	for (size_t i = 0; i < k; i++) {
		sr.task_ids[i] = e.task_id + i;
		sr.nodes[i] = e.n_nodes ? e.nodes[i] : sp->node;
	}
	sr.n_task_ids = sr.n_nodes = k;
	ND_LOG(ND_LOG_DEBUG, "task.submitted", ND_U("task", k ? e.task_id : 0),
	       ND_U("job", sr.job_id), ND_U("tasks", k),
	       ND_B("follow", from != NULL));
	if (from && k && !run_watch(svc, &sr, from))
		goto oom;
	nd__tasks_schedule(svc);
	/* Report where each went, when the scheduler placed it now. */
	for (size_t i = 0; i < k; i++) {
		struct nd_ltask *t = nd_ledger_get(&svc->ledger, sr.task_ids[i]);

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
struct task *nd__task_find(struct nd_svc *svc, uint64_t id, uint64_t req,
			   Noded__FrameKind kind, struct nd_out *o)
{
	const struct nd_ledger *l = &svc->ledger;
	struct nd_ltask *t = nd_ledger_get(l, id);

	if (t)
		return nd__task_of(t);
	if (l->first_id && id >= l->first_id && id < l->next_id)
		nd__out_error(o, req, kind, NODED__ERROR_CODE__NOT_FOUND,
			      "task %llu was evicted from the master's history "
			      "(it keeps the last %llu ended tasks and %llu "
			      "bytes of output: --task-history, "
			      "--output-budget)", (unsigned long long)id,
			      (unsigned long long)svc->task_history,
			      (unsigned long long)svc->output_budget);
	else if (l->first_id)
		nd__out_error(o, req, kind, NODED__ERROR_CODE__NOT_FOUND,
			      "no task %llu (the newest is %llu)",
			      (unsigned long long)id,
			      (unsigned long long)(l->next_id - 1));
	else
		nd__out_error(o, req, kind, NODED__ERROR_CODE__NOT_FOUND,
			      "no task %llu (none submitted yet)",
			      (unsigned long long)id);
	return NULL;
}

void nd__task_get(struct nd_svc *svc, const Noded__Frame *f, struct nd_out *o)
{
	struct task *t = nd__task_find(svc, f->get_task->id, f->id,
				       NODED__FRAME_KIND__REPLY, o);

	if (t)
		nd__task_frame_record(svc, t, f->id, NODED__FRAME_KIND__REPLY,
				      o);
}

/* Is t's node (where it runs or ran, else the one it waits for) name? */
static bool on_node_named(const struct task *t, const char *name)
{
	const char *n = t->l.node ? t->l.node : t->l.target_node;

	return n && !strcmp(n, name);
}

void nd__task_list(struct nd_svc *svc, const Noded__Frame *f,
		   struct nd_out *o)
{
	const Noded__TaskListRequest *q = f->list_tasks;
	const struct nd_list *all = &svc->ledger.all;
	size_t limit = q->limit ? q->limit : LIST_DEFAULT, k = 0;
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__TaskList tl = NODED__TASK_LIST__INIT;
	struct nd_list *l;

	if (limit > LIST_MAX)
		limit = LIST_MAX;
	tl.tasks = nd_arena_alloc(svc->arena, limit * sizeof(*tl.tasks));
	/* newest first */
	for (l = all->prev; tl.tasks && l != all && k < limit; l = l->prev) {
		struct task *t = nd__task_of(nd_container_of(l, struct nd_ltask,
							     all_link));
		Noded__TaskRecord *rec;

		if ((q->state && t->l.state != q->state) ||
		    (q->job_id && t->l.job_id != q->job_id) ||
		    (q->node && q->node[0] && !on_node_named(t, q->node)))
			continue;
		rec = nd_arena_alloc(svc->arena, sizeof(*rec));
		if (!rec)
			break;
		nd__task_record(svc, t, rec);
		tl.tasks[k++] = rec;
	}
	tl.n_tasks = k;
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_TASK_LIST;
	r.task_list = &tl;
	nd__out_frame(o, &r);
}

void nd__task_cancel(struct nd_svc *svc, const Noded__Frame *f,
		     const struct nd_dest *from, struct nd_out *o)
{
	struct task *t = nd__task_find(svc, f->cancel_task->id, f->id,
				       NODED__FRAME_KIND__REPLY, o);
	struct cancel_wait *w;

	if (!t)
		return;
	if (t->l.state == NODED__TASK_STATE__TASK_PENDING) {
		nd__task_finish(svc, t, NODED__TASK_STATE__TASK_CANCELLED,
				"cancelled before it started");
	} else if (!nd__task_ended(t->l.state) && !t->l.cancel_requested) {
		/* The worker kills the process group and reports the end. */
		Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
		Noded__LedgerCancel e = NODED__LEDGER_CANCEL__INIT;

		e.task_id = t->l.id;
		ev.body_case = NODED__LEDGER_EVENT__BODY_CANCEL;
		ev.cancel = &e;
		nd__svc_apply(svc, &ev, NULL);
	}
	/* Answered when it ends (see "Cancel" at the top); now if it has,
	 * or if this one cannot wait. */
	if (nd__task_ended(t->l.state) || t->ncancel_waits >= CANCEL_WAITS_MAX ||
	    !from->serial || !(w = calloc(1, sizeof(*w)))) {
		nd__task_frame_record(svc, t, f->id, NODED__FRAME_KIND__REPLY,
				      o);
		return;
	}
	w->task = t;
	w->to = *from;
	w->deadline_ms = svc->s->now_ms + CANCEL_WAIT_MS;
	nd_list_add_tail(&t->cancel_waits, &w->task_link);
	nd_list_add_tail(&svc->cancel_waits, &w->svc_link);
	t->ncancel_waits++;
}

/* The worker's account of how the attempt ended, as the task's end: a
 * state (and why), or a retry when its node ended it. */
static void finished(struct nd_svc *svc, struct task *t,
		     const Noded__ExecExited *x)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerEnded e = NODED__LEDGER_ENDED__INIT;
	char why[128], stop[256];
	const char *reason = x->reason[0] ? x->reason : NULL;
	/* killed because the system stopped it (lifecycle.c: a drain's
	 * deadline), not because it ended by itself first */
	bool stopped = t->l.stop_reason && x->cancelled;

	if (!t->l.cancel_requested &&
	    (x->worker_stopping || x->lease_expired || stopped)) {
		/* Ended by its node, not by itself: as for a node that died
		 * (its end is reported, so a retry cannot overlap it). The
		 * reason is copied: the event that ends the attempt frees
		 * stop_reason. */
		struct node *n = nd__node_find(svc, t->l.node);

		snprintf(stop, sizeof(stop), "%s",
			 x->worker_stopping ? "worker stopping" :
			 stopped ? t->l.stop_reason :
			 reason ? reason : "lease expired");
		nd__task_retry_or_lose(svc, t, n, stop);
		nd__tasks_schedule(svc);
		return;
	}
	if (t->l.cancel_requested || x->cancelled) {
		e.state = NODED__TASK_STATE__TASK_CANCELLED;
	} else if (x->timed_out) {
		e.state = NODED__TASK_STATE__TASK_TIMED_OUT;
		if (!reason) {
			snprintf(why, sizeof(why), "timed out; killed by "
				 "signal %d", x->signal);
			reason = why;
		}
	} else if (x->exit_code == 0 && x->signal == 0 && !x->spawn_errno) {
		e.state = NODED__TASK_STATE__TASK_SUCCEEDED;
	} else {
		e.state = NODED__TASK_STATE__TASK_FAILED;
		if (!reason && x->signal) {
			snprintf(why, sizeof(why), "killed by signal %d",
				 x->signal);
			reason = why;
		}
	}
	e.task_id = t->l.id;
	e.attempt = t->l.attempt;
	e.exit_code = x->exit_code;
	e.signal = x->signal;
	e.reason = (char *)(reason ? reason : "");
	e.start_unix_ms = x->start_unix_ms;
	e.unix_ms = nd_unix_ms();
	e.utime_us = x->utime_us;
	e.stime_us = x->stime_us;
	e.max_rss_kib = x->max_rss_kib;
	ev.body_case = NODED__LEDGER_EVENT__BODY_ENDED;
	ev.ended = &e;
	if (nd__svc_apply(svc, &ev, NULL) == -ENOMEM) {
		e.reason = ""; /* the only memory an end takes */
		nd__svc_apply(svc, &ev, NULL);
	}
	nd__tasks_schedule(svc); /* a slot is free */
}

/* A worker's started or output report as its event. */
static void running(struct nd_svc *svc, struct task *t,
		    const Noded__TaskUpdate *u)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerStarted st = NODED__LEDGER_STARTED__INIT;
	Noded__LedgerOutput out = NODED__LEDGER_OUTPUT__INIT;

	if (u->body_case == NODED__TASK_UPDATE__BODY_STARTED) {
		st.task_id = t->l.id;
		st.attempt = t->l.attempt;
		st.start_unix_ms = u->started->start_unix_ms;
		ev.body_case = NODED__LEDGER_EVENT__BODY_STARTED;
		ev.started = &st;
	} else {
		out.task_id = t->l.id;
		out.attempt = t->l.attempt;
		out.fd = u->output->fd;
		out.data = u->output->data;
		ev.body_case = NODED__LEDGER_EVENT__BODY_OUTPUT;
		ev.output = &out;
	}
	if (nd__svc_apply(svc, &ev, NULL) == -ENOMEM)
		ND_LOG(ND_LOG_WARN, "task.output_dropped", ND_U("task", t->l.id),
		       ND_U("bytes", out.data.len),
		       ND_S("err", "out of memory"));
}

void nd__task_update(struct nd_svc *svc, const Noded__Frame *f,
		     uint64_t conn_serial, struct nd_out *o)
{
	const Noded__TaskUpdate *u = f->task_update;
	struct nd_ltask *l = nd_ledger_get(&svc->ledger, u->task_id);
	struct task *t = l ? nd__task_of(l) : NULL;
	struct node *n = t && t->l.node ? nd__node_find(svc, t->l.node) : NULL;

	/* The worker only lets go of an ended task on this ack; it waits for
	 * nothing on it, so the ack rides with the next task we send it (or
	 * the tick) instead of waking it once more per task. Output acks are
	 * its flow control and go at once. */
	o->lazy = u->body_case == NODED__TASK_UPDATE__BODY_FINISHED;

	/* Only the node running this attempt may update it; anything else
	 * (a late worker, an old attempt, an ended task) is acknowledged and
	 * dropped so the worker can let go of it. */
	if (!t || !n || n->stream.serial != conn_serial ||
	    u->attempt != t->l.attempt || nd__task_ended(t->l.state)) {
		nd__out_ack(o, f->id);
		return;
	}
	switch (u->body_case) {
	case NODED__TASK_UPDATE__BODY_STARTED:
		running(svc, t, u);
		break;
	case NODED__TASK_UPDATE__BODY_OUTPUT:
		running(svc, t, u);
		if (nd__task_congested(svc, t->l.id))
			o->hold_task = t->l.id;
		break;
	case NODED__TASK_UPDATE__BODY_FINISHED:
		finished(svc, t, u->finished);
		break;
	default:
		break;
	}
	nd__out_ack(o, f->id);
}
