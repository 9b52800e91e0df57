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
void nd__task_record(struct nd_svc *svc, const struct task *t,
		     Noded__TaskRecord *r)
{
	noded__task_record__init(r);
	r->id = t->id;
	r->job_id = t->job_id;
	r->state = t->state;
	r->node = t->node ? t->node : (t->target_node ? t->target_node : "");
	r->spec = nd__task_spec(svc, t);
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
	r->cancel_requested = t->cancel_requested && !nd__task_ended(t->state);
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

void nd__task_finish(struct nd_svc *svc, struct task *t, Noded__TaskState st,
		     const char *reason)
{
	if (nd__task_ended(t->state))
		return;
	if (t->state == NODED__TASK_STATE__TASK_PENDING)
		nd__task_unqueue(svc, t);
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
	nd__watchers_end(svc, t);
	while (!nd_list_empty(&t->cancel_waits))
		cancel_wait_answer(svc, nd_container_of(t->cancel_waits.next,
							struct cancel_wait,
							task_link));
	nd_list_add_tail(&svc->done, &t->done_link);
	svc->ndone++;
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
	if (nd__task_enqueue(svc, t, sp) < 0) {
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
	bad = nd_task_spec_check(sp, why, sizeof(why));
	if (bad) {
		nd__out_error(o, f->id, err_kind,
			    NODED__ERROR_CODE__BAD_REQUEST, "%s", bad);
		return;
	}
	bad = nd__task_unplaceable(svc, sp, why, sizeof(why));
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

			if (!nd__watcher_add(svc, t, from, g))
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
struct task *nd__task_find(struct nd_svc *svc, uint64_t id, uint64_t req,
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
	struct task *t = nd__task_find(svc, f->get_task->id, f->id,
				       NODED__FRAME_KIND__REPLY, o);

	if (t)
		nd__task_frame_record(svc, t, f->id, NODED__FRAME_KIND__REPLY,
				      o);
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
	struct task *t = nd__task_find(svc, f->cancel_task->id, f->id,
				       NODED__FRAME_KIND__REPLY, o);
	struct cancel_wait *w;

	if (!t)
		return;
	if (t->state == NODED__TASK_STATE__TASK_PENDING) {
		nd__task_finish(svc, t, NODED__TASK_STATE__TASK_CANCELLED,
				"cancelled before it started");
	} else if (!nd__task_ended(t->state) && !t->cancel_requested) {
		/* The worker kills the process group and reports the end. */
		t->cancel_requested = true;
		push_cancel(svc, t);
	}
	/* Answered when it ends (see "Cancel" at the top); now if it has,
	 * or if this one cannot wait. */
	if (nd__task_ended(t->state) || t->ncancel_waits >= CANCEL_WAITS_MAX ||
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

		nd__task_retry_or_lose(svc, t, n,
				       x->worker_stopping ? "worker stopping" :
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
	nd__task_finish(svc, t, st, reason);
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
	    u->attempt != t->attempt || nd__task_ended(t->state)) {
		nd__out_ack(o, f->id);
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
		nd__task_keep_output(svc, t, u->output);
		nd__watchers_output(svc, t, u->output);
		if (nd__task_congested(svc, t->id))
			o->hold_task = t->id;
		break;
	case NODED__TASK_UPDATE__BODY_FINISHED:
		finished(svc, t, u->finished);
		break;
	default:
		break;
	}
	nd__out_ack(o, f->id);
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
		nd__watcher_drop(svc, nd_container_of(t->watchers.next,
				 struct watcher, task_link));
	nd_u64map_del(&svc->tasks, t->id);
	nd_list_del(&t->all_link);
	nd__task_unqueue(svc, t);
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
