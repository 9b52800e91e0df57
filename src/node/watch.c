/*
 * Following tasks (on shard 0): their watchers, the output a task keeps for
 * watchers to come, and its replay. The task table is tasks.c's.
 *
 * Watchers are linked from their task and from their connection (by serial
 * in svc.watching), so that a connection that closes drops its watchers at
 * once rather than when their tasks end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "node/svc.h"

/* ---- watchers ---- */

bool nd__watcher_add(struct nd_svc *svc, struct task *t,
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
bool nd__watcher_drop(struct nd_svc *svc, struct watcher *w)
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
void nd__watchers_end(struct nd_svc *svc, struct task *t)
{
	while (!nd_list_empty(&t->watchers)) {
		struct watcher *w = nd_container_of(t->watchers.next,
						    struct watcher, task_link);
		struct nd_dest to = w->to;
		struct nd_out o = { 0 };

		nd__task_frame_record(svc, t, to.stream_id,
				      NODED__FRAME_KIND__STREAM_ITEM, &o);
		/* A run's stream ends with the last of its tasks. */
		if (nd__watcher_drop(svc, w))
			nd__out_end(&o, to.stream_id);
		nd__svc_push_raw(svc, &to, o.buf.data, o.buf.len);
		nd_buf_free(&o.buf);
	}
}

void nd__watchers_output(struct nd_svc *svc, struct task *t,
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

		if (w->records_only)
			continue;
		f.id = w->to.stream_id;
		nd__svc_push(svc, &w->to, &f);
	}
}

void nd__watchers_record(struct nd_svc *svc, struct task *t)
{
	struct nd_list *l;

	for (l = t->watchers.next; l != &t->watchers; l = l->next) {
		struct watcher *w = nd_container_of(l, struct watcher,
						    task_link);
		struct nd_out o = { 0 };

		nd__task_frame_record(svc, t, w->to.stream_id,
				      NODED__FRAME_KIND__STREAM_ITEM, &o);
		nd__svc_push_raw(svc, &w->to, o.buf.data, o.buf.len);
		nd_buf_free(&o.buf);
	}
}

void nd__tasks_conn_gone(struct nd_svc *svc, uint64_t serial)
{
	struct nd_list *conn;

	/* The last drop frees the list and takes it out of the map. */
	while ((conn = nd_u64map_get(&svc->watching, serial)))
		nd__watcher_drop(svc, nd_container_of(conn->next,
						      struct watcher,
						      conn_link));
}

/* Replays the kept output as OutputChunk items (each naming its
 * attempt). */
static void replay(const struct task *t, uint64_t id, struct nd_out *o)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__OutputChunk c = NODED__OUTPUT_CHUNK__INIT;
	struct nd_lout_iter it = { 0 };

	f.id = id;
	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	f.body_case = NODED__FRAME__BODY_OUTPUT;
	f.output = &c;
	c.task_id = t->l.id;
	while (nd_ltask_output_next(&t->l, &it, &c))
		nd__out_frame(o, &f);
}

void nd__task_watch(struct nd_svc *svc, const Noded__Frame *f,
		    const struct nd_dest *from, struct nd_out *o)
{
	struct task *t = nd__task_find(svc, f->watch->task_id, f->id,
				       NODED__FRAME_KIND__STREAM_END, o);

	if (!t)
		return;
	if (!f->watch->records_only)
		replay(t, f->id, o);
	if (nd__task_ended(t->l.state) || !f->watch->follow) {
		nd__task_frame_record(svc, t, f->id,
				      NODED__FRAME_KIND__STREAM_ITEM, o);
		nd__out_end(o, f->id);
		return;
	}
	if (!nd__watcher_add(svc, t, from, NULL)) {
		nd__out_error(o, f->id, NODED__FRAME_KIND__STREAM_END,
			      NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			      "out of memory");
		return;
	}
	/* the one just added is the last of t's */
	nd_container_of(t->watchers.prev, struct watcher,
			task_link)->records_only = f->watch->records_only;
}

bool nd__task_congested(struct nd_svc *svc, uint64_t task_id)
{
	struct nd_ltask *lt = nd_ledger_get(&svc->ledger, task_id);
	struct task *t = lt ? nd__task_of(lt) : NULL;

	if (!t || nd__task_ended(t->l.state))
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
