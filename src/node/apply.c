/*
 * Where every change of a task goes through (on shard 0): an event is
 * applied to the ledger (state/ledger.h), then the queues and node counts
 * follow (scheduler.c, nd__sched_applied), then the effects
 * (svc.effects: tasks.c's in the master). With --ledger-trace, every applied
 * event is also appended to a file, and the ledger's snapshot written
 * beside it when the master stops: replaying the one into an empty ledger
 * must give the other, byte for byte (tests/state/test_ledger.c).
 *
 * Also here: the table's life (init, retention, free) and its metrics.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/server.h"
#include "node/svc.h"
#include "noded/json.h"

/* Appends ev as [length, 4 bytes little-endian][LedgerEvent]. A trace that
 * cannot be written is closed, and said so once. */
static void trace(struct nd_svc *svc, const Noded__LedgerEvent *ev)
{
	size_t len = noded__ledger_event__get_packed_size(ev);
	uint8_t hdr[4] = { (uint8_t)len, (uint8_t)(len >> 8),
			   (uint8_t)(len >> 16), (uint8_t)(len >> 24) };
	uint8_t *buf = malloc(len ? len : 1);

	if (buf) {
		noded__ledger_event__pack(ev, buf);
		if (fwrite(hdr, 1, 4, svc->trace) == 4 &&
		    fwrite(buf, 1, len, svc->trace) == len) {
			free(buf);
			return;
		}
	}
	free(buf);
	ND_LOG(ND_LOG_ERROR, "ledger.trace_failed",
	       ND_S("err", buf ? strerror(errno) : "out of memory"),
	       ND_S("msg", "--ledger-trace stops here"));
	fclose(svc->trace);
	svc->trace = NULL;
}

int nd__svc_apply(struct nd_svc *svc, const Noded__LedgerEvent *ev,
		  struct task **out)
{
	struct nd_ltask *l;
	struct task *t;
	size_t mark = 0;
	int err = 0;

	if (out)
		*out = NULL;
	/* with raft: logged in the order applied (replica.c) */
	if (!nd__svc_serving(svc))
		err = -EAGAIN; /* the callers run only while serving */
	else if (svc->raft)
		err = nd__replica_stage(svc, ev, &mark);
	if (!err) {
		err = nd_ledger_apply(&svc->ledger, ev, &l);
		if (err && svc->raft)
			nd__replica_unstage(svc, mark);
	}
	if (err) {
		/* the callers check first: only memory should fail here */
		ND_LOG(err == -ENOMEM ? ND_LOG_WARN : ND_LOG_DEBUG,
		       "ledger.refused", ND_S("event", nd_ledger_event_name(ev)),
		       ND_S("err", strerror(-err)));
		return err;
	}
	t = l ? nd__task_of(l) : NULL;
	if (svc->trace)
		trace(svc, ev);
	if (ev->body_case == NODED__LEDGER_EVENT__BODY_CLUSTER) {
		/* workers know the cluster as their master's instance */
		atomic_store(&svc->s->srv->instance, svc->ledger.cluster_id);
		return 0;
	}
	nd__sched_applied(svc, ev, t);
	if (svc->effects)
		svc->effects(svc, ev, t);
	if (out)
		*out = t;
	return 0;
}

void nd__tasks_init(struct nd_svc *svc)
{
	nd_ledger_init(&svc->ledger, sizeof(struct task));
	nd_list_init(&svc->class_list);
	nd_list_init(&svc->pending_any);
	nd_list_init(&svc->stranded);
	nd_list_init(&svc->cancel_waits);
}

/* Evicts the oldest ended tasks while there are more than the history or
 * they keep more output than the budget. Ended tasks are on no queue or
 * node and have no watchers: nothing else holds them. */
void nd__tasks_trim(struct nd_svc *svc)
{
	const struct nd_ledger *l = &svc->ledger;
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerEvict e = NODED__LEDGER_EVICT__INIT;

	ev.body_case = NODED__LEDGER_EVENT__BODY_EVICT;
	ev.evict = &e;
	while (!nd_list_empty(&l->done) &&
	       (l->ndone > svc->task_history ||
		l->kept_bytes > svc->output_budget)) {
		e.task_id = nd_container_of(l->done.next, struct nd_ltask,
					    done_link)->id;
		if (nd__svc_apply(svc, &ev, NULL))
			break; /* cannot happen: it has ended */
	}
}

/* Writes the ledger's snapshot beside the trace (path.snapshot). */
static void trace_snapshot(struct nd_svc *svc)
{
	const char *path = svc->cfg->ledger_trace;
	char *snap_path = NULL;
	uint8_t *snap = NULL;
	size_t len;
	FILE *f = NULL;
	int err = nd_ledger_snapshot(&svc->ledger, &snap, &len);

	if (!err && asprintf(&snap_path, "%s.snapshot", path) < 0) {
		snap_path = NULL;
		err = -ENOMEM;
	}
	if (!err && (!(f = fopen(snap_path, "w")) ||
		     fwrite(snap, 1, len, f) != len))
		err = -errno;
	if (f && fclose(f) && !err)
		err = -errno;
	if (err)
		ND_LOG(ND_LOG_ERROR, "ledger.snapshot_failed",
		       ND_S("path", snap_path ? snap_path : path),
		       ND_S("err", strerror(-err)));
	free(snap_path);
	free(snap);
}

/* Unlinks t from what this master holds of it (its queue, node, watchers,
 * cancels): the ledger frees it next. */
static void task_release(struct nd_svc *svc, struct task *t)
{
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
	nd__task_unqueue(svc, t);
	nd_list_del(&t->node_link);
}

void nd__tasks_release_all(struct nd_svc *svc)
{
	for (struct nd_list *l = svc->ledger.all.next;
	     l != &svc->ledger.all; l = l->next)
		task_release(svc, nd__task_of(nd_container_of(l,
				struct nd_ltask, all_link)));
}

void nd__tasks_free(struct nd_svc *svc)
{
	if (svc->trace) {
		trace_snapshot(svc);
		fclose(svc->trace);
		svc->trace = NULL;
	}
	nd__tasks_release_all(svc);
	nd_ledger_free(&svc->ledger);
	nd_u64map_free(&svc->watching);
	nd_u64map_free(&svc->classes); /* empty: classes go with their tasks */
}

void nd__tasks_metrics(struct nd_svc *svc, FILE *f)
{
	const struct nd_ledger *l = &svc->ledger;

	fprintf(f, "# HELP noded_tasks Tasks the master holds, by state.\n"
		"# TYPE noded_tasks gauge\n");
	for (unsigned st = 1; st <= NODED__TASK_STATE__TASK_LOST; st++)
		fprintf(f, "noded_tasks{state=\"%s\"} %llu\n",
			nd_task_state_name((Noded__TaskState)st),
			(unsigned long long)l->count[st]);
	fprintf(f, "# HELP noded_tasks_ended_total Tasks that reached a "
		"final state, by state.\n# TYPE noded_tasks_ended_total "
		"counter\n");
	for (unsigned st = NODED__TASK_STATE__TASK_SUCCEEDED;
	     st <= NODED__TASK_STATE__TASK_LOST; st++)
		fprintf(f, "noded_tasks_ended_total{state=\"%s\"} %llu\n",
			nd_task_state_name((Noded__TaskState)st),
			(unsigned long long)l->ended[st]);
	fprintf(f, "# HELP noded_tasks_submitted_total Tasks submitted.\n"
		"# TYPE noded_tasks_submitted_total counter\n"
		"noded_tasks_submitted_total %llu\n",
		(unsigned long long)l->submitted);
	fprintf(f, "# HELP noded_task_queue_length Tasks waiting for a "
		"node.\n# TYPE noded_task_queue_length gauge\n"
		"noded_task_queue_length %llu\n",
		(unsigned long long)svc->npending);
	fprintf(f, "# HELP noded_ledger_events_total Events applied to the "
		"task ledger.\n# TYPE noded_ledger_events_total counter\n"
		"noded_ledger_events_total %llu\n",
		(unsigned long long)l->applied);
	fprintf(f, "# HELP noded_dispatch_duration_seconds Task queued to "
		"sent to its worker.\n# TYPE noded_dispatch_duration_seconds "
		"histogram\n");
	nd_hist_write(f, "noded_dispatch_duration_seconds", "",
		      &svc->dispatch);
}
