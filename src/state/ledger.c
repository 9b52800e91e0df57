/*
 * The task ledger (ledger.h): events applied in order, snapshot, restore.
 * Each apply_* first checks the event against the task, then gets every
 * piece of memory it needs, and only then changes anything, so a refused
 * or failed event leaves the ledger as it was.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state/ledger.h"

#define NSTATES (NODED__TASK_STATE__TASK_LOST + 1)

void nd_ledger_init(struct nd_ledger *l, size_t task_size)
{
	memset(l, 0, sizeof(*l));
	nd_list_init(&l->all);
	nd_list_init(&l->done);
	l->task_size = task_size > sizeof(struct nd_ltask) ?
			       task_size : sizeof(struct nd_ltask);
}

static void task_free(struct nd_ltask *t)
{
	free(t->spec);
	free(t->target_node);
	free(t->node);
	free(t->reason);
	free(t->stop_reason);
	nd_buf_free(&t->out);
	free(t);
}

void nd_ledger_free(struct nd_ledger *l)
{
	size_t task_size = l->task_size;

	while (!nd_list_empty(&l->all)) {
		struct nd_ltask *t = nd_container_of(l->all.next,
						     struct nd_ltask, all_link);

		nd_list_del(&t->all_link);
		task_free(t);
	}
	nd_u64map_free(&l->tasks);
	nd_ledger_init(l, task_size);
}

/* A state change of t, counted. */
static void set_state(struct nd_ledger *l, struct nd_ltask *t,
		      Noded__TaskState st)
{
	l->count[t->state]--;
	l->count[st]++;
	t->state = st;
	if (st == NODED__TASK_STATE__TASK_PENDING)
		t->queue_seq = ++l->queue_seq;
}

/* t reached final state st (the caller set its result). */
static void end(struct nd_ledger *l, struct nd_ltask *t, Noded__TaskState st,
		uint64_t unix_ms, char *reason)
{
	set_state(l, t, st);
	l->ended[st]++;
	free(t->stop_reason); /* its attempt is over */
	t->stop_reason = NULL;
	t->ended_unix_ms = unix_ms;
	t->end_seq = ++l->end_seq;
	if (reason) {
		free(t->reason);
		t->reason = reason;
	}
	/* Kept for its history: give back what doubling left spare (a
	 * failure keeps the larger buffer; nothing else changes). */
	nd_buf_resize(&t->out, t->out.len);
	nd_list_add_tail(&l->done, &t->done_link);
	l->ndone++;
}

/* "" is no string in these messages: NULL, else a copy in *out (0 or
 * -ENOMEM). */
static int dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (!s || !s[0])
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

/* A task, or NULL after setting *err (-ENOENT, or -ESTALE when it is not
 * attempt's). attempt 0: any. */
static struct nd_ltask *task_at(struct nd_ledger *l, uint64_t id,
				uint32_t attempt, int *err)
{
	struct nd_ltask *t = nd_ledger_get(l, id);

	*err = !t ? -ENOENT : attempt && attempt != t->attempt ? -ESTALE : 0;
	return *err ? NULL : t;
}

static bool on_node(const struct nd_ltask *t)
{
	return t->state == NODED__TASK_STATE__TASK_ASSIGNED ||
	       t->state == NODED__TASK_STATE__TASK_RUNNING;
}

/* ---- events ---- */

static struct nd_ltask *task_new(struct nd_ledger *l,
				 const Noded__LedgerSubmit *e, uint64_t id,
				 const char *node)
{
	struct nd_ltask *t = calloc(1, l->task_size);

	if (!t)
		return NULL;
	t->spec = malloc(e->spec.len ? e->spec.len : 1);
	if (!t->spec || dup_opt(node, &t->target_node)) {
		task_free(t);
		return NULL;
	}
	if (e->spec.len)
		memcpy(t->spec, e->spec.data, e->spec.len);
	t->spec_len = e->spec.len;
	t->id = id;
	t->job_id = e->job_id;
	t->state = NODED__TASK_STATE__TASK_PENDING;
	t->attempt = 1;
	t->retries_left = e->retries;
	t->output_cap = e->output_cap_bytes;
	t->submitted_unix_ms = e->unix_ms;
	return t;
}

static int apply_submit(struct nd_ledger *l, const void *m,
			struct nd_ltask **first)
{
	const Noded__LedgerSubmit *e = m;
	size_t n = e->n_nodes ? e->n_nodes : 1, made = 0;
	struct nd_ltask **ts;

	if (!e->task_id || e->task_id < l->next_id ||
	    e->task_id + n < e->task_id)
		return -EEXIST;
	ts = calloc(n, sizeof(*ts));
	if (!ts)
		return -ENOMEM;
	for (; made < n; made++) {
		uint64_t id = e->task_id + made;

		ts[made] = task_new(l, e, id,
				    e->n_nodes ? e->nodes[made] : NULL);
		if (!ts[made] || nd_u64map_put(&l->tasks, id, ts[made]))
			goto undo;
	}
	for (size_t i = 0; i < n; i++) {
		nd_list_add_tail(&l->all, &ts[i]->all_link);
		ts[i]->queue_seq = ++l->queue_seq;
	}
	if (!l->first_id)
		l->first_id = e->task_id;
	l->next_id = e->task_id + n;
	l->ntasks += n;
	l->submitted += n;
	l->count[NODED__TASK_STATE__TASK_PENDING] += n;
	*first = ts[0];
	free(ts);
	return 0;
undo:
	for (size_t i = 0; i <= made && i < n; i++) {
		if (!ts[i])
			continue;
		if (nd_u64map_get(&l->tasks, ts[i]->id) == ts[i])
			nd_u64map_del(&l->tasks, ts[i]->id);
		task_free(ts[i]);
	}
	free(ts);
	return -ENOMEM;
}

static int apply_assign(struct nd_ledger *l, const void *m,
			struct nd_ltask **out)
{
	const Noded__LedgerAssign *e = m;
	int err;
	struct nd_ltask *t = task_at(l, e->task_id, e->attempt, &err);
	char *node;

	if (!t)
		return err;
	if (!e->attempt || t->state != NODED__TASK_STATE__TASK_PENDING ||
	    !e->node[0] || (t->target_node && strcmp(t->target_node, e->node)))
		return -EINVAL;
	if (!(node = strdup(e->node)))
		return -ENOMEM;
	free(t->node);
	t->node = node;
	set_state(l, t, NODED__TASK_STATE__TASK_ASSIGNED);
	*out = t;
	return 0;
}

static int apply_started(struct nd_ledger *l, const void *m,
			 struct nd_ltask **out)
{
	const Noded__LedgerStarted *e = m;
	int err;
	struct nd_ltask *t = task_at(l, e->task_id, e->attempt, &err);

	if (!t)
		return err;
	if (!e->attempt || !on_node(t))
		return -EINVAL;
	if (t->state != NODED__TASK_STATE__TASK_RUNNING)
		set_state(l, t, NODED__TASK_STATE__TASK_RUNNING);
	t->started_unix_ms = e->start_unix_ms;
	*out = t;
	return 0;
}

static int apply_output(struct nd_ledger *l, const void *m,
			struct nd_ltask **out)
{
	const Noded__LedgerOutput *e = m;
	int err;
	struct nd_ltask *t = task_at(l, e->task_id, e->attempt, &err);
	size_t n = 0;
	uint32_t len;
	uint8_t *b;

	if (!t)
		return err;
	if (!e->attempt || !on_node(t))
		return -EINVAL;
	if (t->out_data < t->output_cap) {
		size_t room = (size_t)(t->output_cap - t->out_data);

		n = e->data.len < room ? e->data.len : room;
		if (nd_buf_reserve(&t->out, 5 + n))
			return -ENOMEM;
		b = t->out.data + t->out.len;
		len = (uint32_t)n;
		b[0] = (uint8_t)(e->fd == 2 ? 2 : 1);
		memcpy(b + 1, &len, 4);
		if (n)
			memcpy(b + 5, e->data.data, n);
		t->out.len += 5 + n;
		t->out_data += n;
		l->kept_bytes += n;
	}
	if (n < e->data.len)
		t->truncated = true;
	t->produced += e->data.len;
	if (t->state != NODED__TASK_STATE__TASK_RUNNING)
		set_state(l, t, NODED__TASK_STATE__TASK_RUNNING);
	*out = t;
	return 0;
}

static int apply_ended(struct nd_ledger *l, const void *m,
		       struct nd_ltask **out)
{
	const Noded__LedgerEnded *e = m;
	int err;
	struct nd_ltask *t = task_at(l, e->task_id, e->attempt, &err);
	char *reason;

	if (!t)
		return err;
	if (!e->attempt || nd_ltask_ended(t->state) ||
	    !nd_ltask_ended(e->state) ||
	    e->state == NODED__TASK_STATE__TASK_LOST || e->state >= NSTATES)
		return -EINVAL;
	if (dup_opt(e->reason, &reason))
		return -ENOMEM;
	t->exit_code = e->exit_code;
	t->signal = e->signal;
	if (e->start_unix_ms && !t->started_unix_ms)
		t->started_unix_ms = e->start_unix_ms;
	t->utime_us = e->utime_us;
	t->stime_us = e->stime_us;
	t->max_rss_kib = e->max_rss_kib;
	end(l, t, e->state, e->unix_ms, reason);
	*out = t;
	return 0;
}

static int apply_cancel(struct nd_ledger *l, const void *m,
			struct nd_ltask **out)
{
	const Noded__LedgerCancel *e = m;
	bool stop = e->stop_reason && e->stop_reason[0];
	int err;
	struct nd_ltask *t = task_at(l, e->task_id, stop ? e->attempt : 0,
				     &err);
	char *why;

	if (!t)
		return err;
	if (nd_ltask_ended(t->state) || (stop && (!e->attempt || !on_node(t))))
		return -EINVAL;
	if (!stop) {
		t->cancel_requested = true;
		*out = t;
		return 0;
	}
	if (!(why = strdup(e->stop_reason)))
		return -ENOMEM;
	free(t->stop_reason);
	t->stop_reason = why;
	*out = t;
	return 0;
}

static int apply_retried(struct nd_ledger *l, const void *m,
			 struct nd_ltask **out)
{
	const Noded__LedgerRetried *e = m;
	int err;
	struct nd_ltask *t = task_at(l, e->task_id, e->attempt, &err);

	if (!t)
		return err;
	if (!e->attempt || !on_node(t) || !t->retries_left)
		return -EINVAL;
	t->retries_left--;
	t->attempt++;
	free(t->stop_reason); /* that attempt is over */
	t->stop_reason = NULL;
	set_state(l, t, NODED__TASK_STATE__TASK_PENDING);
	*out = t;
	return 0;
}

static int apply_lost(struct nd_ledger *l, const void *m,
		      struct nd_ltask **out)
{
	const Noded__LedgerLost *e = m;
	int err;
	struct nd_ltask *t = task_at(l, e->task_id, e->attempt, &err);
	char *reason;

	if (!t)
		return err;
	if (!e->attempt || nd_ltask_ended(t->state))
		return -EINVAL;
	if (dup_opt(e->reason, &reason))
		return -ENOMEM;
	end(l, t, NODED__TASK_STATE__TASK_LOST, e->unix_ms, reason);
	*out = t;
	return 0;
}

static int apply_evict(struct nd_ledger *l, const void *m,
		       struct nd_ltask **out)
{
	const Noded__LedgerEvict *e = m;
	int err;
	struct nd_ltask *t = task_at(l, e->task_id, 0, &err);

	if (!t)
		return err;
	if (!nd_ltask_ended(t->state))
		return -EINVAL;
	nd_u64map_del(&l->tasks, t->id);
	nd_list_del(&t->all_link);
	nd_list_del(&t->done_link);
	l->ndone--;
	l->ntasks--;
	l->count[t->state]--;
	l->kept_bytes -= t->out_data;
	task_free(t);
	*out = NULL;
	return 0;
}

/* The events: each case of LedgerEvent.body, its name and its function
 * (given the case's message: the oneof's members share one pointer). */
static const struct {
	const char *name;
	int (*apply)(struct nd_ledger *l, const void *m, struct nd_ltask **t);
} events[] = {
	[NODED__LEDGER_EVENT__BODY_SUBMIT] = { "submit", apply_submit },
	[NODED__LEDGER_EVENT__BODY_ASSIGN] = { "assign", apply_assign },
	[NODED__LEDGER_EVENT__BODY_STARTED] = { "started", apply_started },
	[NODED__LEDGER_EVENT__BODY_OUTPUT] = { "output", apply_output },
	[NODED__LEDGER_EVENT__BODY_ENDED] = { "ended", apply_ended },
	[NODED__LEDGER_EVENT__BODY_CANCEL] = { "cancel", apply_cancel },
	[NODED__LEDGER_EVENT__BODY_RETRIED] = { "retried", apply_retried },
	[NODED__LEDGER_EVENT__BODY_LOST] = { "lost", apply_lost },
	[NODED__LEDGER_EVENT__BODY_EVICT] = { "evict", apply_evict },
};

#define NEVENTS (sizeof(events) / sizeof(events[0]))

int nd_ledger_apply(struct nd_ledger *l, const Noded__LedgerEvent *ev,
		    struct nd_ltask **task)
{
	unsigned c = (unsigned)ev->body_case;
	struct nd_ltask *t = NULL;
	int err = -EINVAL;

	if (c < NEVENTS && events[c].apply && ev->submit)
		err = events[c].apply(l, ev->submit, &t);
	if (!err)
		l->applied++;
	if (task)
		*task = err ? NULL : t;
	return err;
}

const char *nd_ledger_event_name(const Noded__LedgerEvent *ev)
{
	unsigned c = (unsigned)ev->body_case;

	return c < NEVENTS && events[c].name ? events[c].name : "?";
}

/* ---- snapshot ---- */

/* The kept output of t as chunks in chunks[] (room for all of them);
 * returns how many. */
static size_t kept_chunks(const struct nd_ltask *t, Noded__OutputChunk *c,
			  Noded__OutputChunk **chunks)
{
	size_t off = 0, n = 0;

	while (off + 5 <= t->out.len) {
		uint32_t len;

		memcpy(&len, t->out.data + off + 1, 4);
		noded__output_chunk__init(&c[n]);
		c[n].fd = t->out.data[off];
		c[n].data.data = t->out.data + off + 5;
		c[n].data.len = len;
		chunks[n] = &c[n];
		n++;
		off += 5 + len;
	}
	return n;
}

static size_t count_chunks(const struct nd_ltask *t)
{
	size_t off = 0, n = 0;

	while (off + 5 <= t->out.len) {
		uint32_t len;

		memcpy(&len, t->out.data + off + 1, 4);
		off += 5 + len;
		n++;
	}
	return n;
}

static void task_to_msg(const struct nd_ltask *t, Noded__LedgerTask *m)
{
	noded__ledger_task__init(m);
	m->id = t->id;
	m->job_id = t->job_id;
	m->state = t->state;
	m->spec.data = t->spec;
	m->spec.len = t->spec_len;
	m->target_node = t->target_node ? t->target_node : "";
	m->node = t->node ? t->node : "";
	m->attempt = t->attempt;
	m->retries_left = t->retries_left;
	m->cancel_requested = t->cancel_requested;
	m->stop_reason = t->stop_reason ? t->stop_reason : "";
	m->exit_code = t->exit_code;
	m->signal = t->signal;
	m->reason = t->reason ? t->reason : "";
	m->submitted_unix_ms = t->submitted_unix_ms;
	m->started_unix_ms = t->started_unix_ms;
	m->ended_unix_ms = t->ended_unix_ms;
	m->utime_us = t->utime_us;
	m->stime_us = t->stime_us;
	m->max_rss_kib = t->max_rss_kib;
	m->output_cap_bytes = t->output_cap;
	m->output_bytes = t->produced;
	m->truncated = t->truncated;
	m->queue_seq = t->queue_seq;
	m->end_seq = t->end_seq;
}

int nd_ledger_snapshot(const struct nd_ledger *l, uint8_t **out, size_t *len)
{
	Noded__LedgerSnapshot s = NODED__LEDGER_SNAPSHOT__INIT;
	Noded__LedgerTask *msgs = NULL, **ptrs = NULL;
	Noded__OutputChunk *chunks = NULL, **cptrs = NULL;
	size_t nchunks = 0, k = 0, c = 0;
	int err = -ENOMEM;
	struct nd_list *it;

	*out = NULL;
	*len = 0;
	for (it = l->all.next; it != &l->all; it = it->next)
		nchunks += count_chunks(nd_container_of(it, struct nd_ltask,
							all_link));
	msgs = calloc(l->ntasks ? l->ntasks : 1, sizeof(*msgs));
	ptrs = calloc(l->ntasks ? l->ntasks : 1, sizeof(*ptrs));
	chunks = calloc(nchunks ? nchunks : 1, sizeof(*chunks));
	cptrs = calloc(nchunks ? nchunks : 1, sizeof(*cptrs));
	if (!msgs || !ptrs || !chunks || !cptrs)
		goto out;
	for (it = l->all.next; it != &l->all; it = it->next, k++) {
		const struct nd_ltask *t = nd_container_of(it, struct nd_ltask,
							   all_link);

		task_to_msg(t, &msgs[k]);
		msgs[k].output = cptrs + c;
		msgs[k].n_output = kept_chunks(t, chunks + c, cptrs + c);
		c += msgs[k].n_output;
		ptrs[k] = &msgs[k];
	}
	s.n_tasks = k;
	s.tasks = ptrs;
	s.first_id = l->first_id;
	s.next_id = l->next_id;
	s.submitted = l->submitted;
	s.n_ended = NSTATES;
	s.ended = (uint64_t *)l->ended;
	s.queue_seq = l->queue_seq;
	s.end_seq = l->end_seq;
	s.applied = l->applied;
	*len = noded__ledger_snapshot__get_packed_size(&s);
	*out = malloc(*len ? *len : 1);
	if (!*out)
		goto out;
	noded__ledger_snapshot__pack(&s, *out);
	err = 0;
out:
	if (err)
		*len = 0;
	free(msgs);
	free(ptrs);
	free(chunks);
	free(cptrs);
	return err;
}

/* ---- restore ---- */

/* A task from its snapshot message, or NULL (*err: -ENOMEM, -EINVAL). */
static struct nd_ltask *task_from_msg(struct nd_ledger *l,
				      const Noded__LedgerTask *m, int *err)
{
	struct nd_ltask *t;

	*err = -EINVAL;
	if (!m->id || m->state < NODED__TASK_STATE__TASK_PENDING ||
	    m->state >= NSTATES || !m->attempt)
		return NULL;
	*err = -ENOMEM;
	t = calloc(1, l->task_size);
	if (!t)
		return NULL;
	t->spec = malloc(m->spec.len ? m->spec.len : 1);
	if (!t->spec || dup_opt(m->target_node, &t->target_node) ||
	    dup_opt(m->node, &t->node) || dup_opt(m->reason, &t->reason) ||
	    dup_opt(m->stop_reason, &t->stop_reason))
		goto fail;
	if (m->spec.len)
		memcpy(t->spec, m->spec.data, m->spec.len);
	t->spec_len = m->spec.len;
	t->id = m->id;
	t->job_id = m->job_id;
	t->state = m->state;
	t->attempt = m->attempt;
	t->retries_left = m->retries_left;
	t->cancel_requested = m->cancel_requested;
	t->exit_code = m->exit_code;
	t->signal = m->signal;
	t->submitted_unix_ms = m->submitted_unix_ms;
	t->started_unix_ms = m->started_unix_ms;
	t->ended_unix_ms = m->ended_unix_ms;
	t->utime_us = m->utime_us;
	t->stime_us = m->stime_us;
	t->max_rss_kib = m->max_rss_kib;
	t->output_cap = m->output_cap_bytes;
	t->produced = m->output_bytes;
	t->truncated = m->truncated;
	t->queue_seq = m->queue_seq;
	t->end_seq = m->end_seq;
	for (size_t i = 0; i < m->n_output; i++) {
		const Noded__OutputChunk *c = m->output[i];
		uint32_t len = (uint32_t)c->data.len;
		uint8_t *b;

		if (c->data.len > UINT32_MAX) {
			*err = -EINVAL;
			goto fail;
		}
		if (nd_buf_reserve(&t->out, 5 + c->data.len))
			goto fail;
		b = t->out.data + t->out.len;
		b[0] = (uint8_t)(c->fd == 2 ? 2 : 1);
		memcpy(b + 1, &len, 4);
		if (len)
			memcpy(b + 5, c->data.data, len);
		t->out.len += 5 + len;
		t->out_data += len;
	}
	*err = 0;
	return t;
fail:
	task_free(t);
	return NULL;
}

/* Does t keep the invariants of ledger.h that concern it alone? */
static bool task_valid(const struct nd_ltask *t)
{
	return nd_ltask_ended(t->state) == (t->end_seq != 0) &&
	       (!on_node(t) || t->node) && (!t->stop_reason || on_node(t)) &&
	       (!t->node || !t->target_node ||
		t->state == NODED__TASK_STATE__TASK_PENDING ||
		!strcmp(t->node, t->target_node)) &&
	       t->out_data <= t->output_cap && t->out_data <= t->produced;
}

static int by_end_seq(const void *a, const void *b)
{
	const struct nd_ltask *x = *(struct nd_ltask *const *)a;
	const struct nd_ltask *y = *(struct nd_ltask *const *)b;

	return x->end_seq < y->end_seq ? -1 : x->end_seq > y->end_seq;
}

/* Fills fresh (empty) from the decoded snapshot s: 0, -EINVAL, -ENOMEM. */
static int restore_into(struct nd_ledger *fresh,
			const Noded__LedgerSnapshot *s)
{
	struct nd_ltask **ended;
	size_t nended = 0;
	uint64_t last = 0;
	int err = 0;

	ended = calloc(s->n_tasks ? s->n_tasks : 1, sizeof(*ended));
	if (!ended)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_tasks; i++) {
		struct nd_ltask *t = task_from_msg(fresh, s->tasks[i], &err);

		if (t && (t->id <= last || t->id >= s->next_id ||
			  !task_valid(t))) {
			task_free(t);
			t = NULL;
			err = -EINVAL;
		}
		if (t && nd_u64map_put(&fresh->tasks, t->id, t)) {
			task_free(t);
			t = NULL;
			err = -ENOMEM;
		}
		if (!t)
			goto out;
		last = t->id;
		nd_list_add_tail(&fresh->all, &t->all_link);
		fresh->ntasks++;
		fresh->count[t->state]++;
		fresh->kept_bytes += t->out_data;
		if (nd_ltask_ended(t->state))
			ended[nended++] = t;
	}
	qsort(ended, nended, sizeof(*ended), by_end_seq);
	for (size_t i = 0; i < nended; i++)
		nd_list_add_tail(&fresh->done, &ended[i]->done_link);
	fresh->ndone = nended;
	fresh->first_id = s->first_id;
	fresh->next_id = s->next_id;
	fresh->submitted = s->submitted;
	for (size_t i = 0; i < s->n_ended && i < NSTATES; i++)
		fresh->ended[i] = s->ended[i];
	fresh->queue_seq = s->queue_seq;
	fresh->end_seq = s->end_seq;
	fresh->applied = s->applied;
out:
	free(ended);
	return err;
}

int nd_ledger_restore(struct nd_ledger *l, const uint8_t *p, size_t len)
{
	Noded__LedgerSnapshot *s = noded__ledger_snapshot__unpack(NULL, len, p);
	struct nd_ledger fresh;
	int err;

	if (!s)
		return -EINVAL; /* or out of memory: protobuf-c does not say */
	nd_ledger_init(&fresh, l->task_size);
	err = restore_into(&fresh, s);
	noded__ledger_snapshot__free_unpacked(s, NULL);
	if (err) {
		nd_ledger_free(&fresh);
		return err;
	}
	nd_ledger_free(l);
	*l = fresh;
	/* the lists' heads move from fresh to l */
	nd_list_take(&l->all, &fresh.all);
	nd_list_take(&l->done, &fresh.done);
	return 0;
}
