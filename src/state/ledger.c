/*
 * The task ledger (ledger.h): events applied in order (snapshot and restore
 * are in ledger_snap.c).
 * Each apply_* first checks the event against the task, then gets every
 * piece of memory it needs, and only then changes anything, so a refused
 * or failed event leaves the ledger as it was.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state/ledger.h"
#include "state/ledger_int.h"

void nd_ledger_init(struct nd_ledger *l, size_t task_size)
{
	memset(l, 0, sizeof(*l));
	nd_list_init(&l->all);
	nd_list_init(&l->done);
	l->task_size = task_size > sizeof(struct nd_ltask) ?
			       task_size : sizeof(struct nd_ltask);
}

static void attempt_free(struct nd_lattempt *a)
{
	free(a->node);
	free(a->reason);
}

void nd__ltask_free(struct nd_ltask *t)
{
	for (uint32_t i = 0; i < t->nattempts; i++)
		attempt_free(&t->attempts[i]);
	free(t->attempts);
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
		nd__ltask_free(t);
	}
	nd_u64map_free(&l->tasks);
	for (size_t i = 0; i < l->nmembers; i++)
		nd__lmember_clear(&l->members[i]);
	free(l->members);
	free(l->sessions);
	nd_u64map_free(&l->session_map);
	nd_ledger_init(l, task_size);
}

void nd__lmember_clear(struct nd_lmember *m)
{
	free(m->raft);
	free(m->client);
	free(m->http);
	m->raft = m->client = m->http = NULL;
}

const struct nd_lmember *nd_ledger_member(const struct nd_ledger *l,
					  uint64_t id)
{
	for (size_t i = 0; i < l->nmembers; i++)
		if (l->members[i].id == id)
			return &l->members[i];
	return NULL;
}

int nd__lmember_set(struct nd_lmember *m, const Noded__RaftMember *mb)
{
	struct nd_lmember n = { mb->id, strdup(mb->raft_address),
				strdup(mb->client_address),
				strdup(mb->http_address) };

	if (!n.raft || !n.client || !n.http) {
		nd__lmember_clear(&n);
		return -ENOMEM;
	}
	nd__lmember_clear(m);
	*m = n;
	return 0;
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
int nd__ledger_dup(const char *s, char **out)
{
	*out = NULL;
	if (!s || !s[0])
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

/*
 * The task an event names into *t: 0, -ENOENT, or -ESTALE when the event
 * names an attempt (not 0) that is not the task's. id_off and at_off are
 * where the event's message holds its task_id and attempt (at_off 0: it
 * has none), from the events table, so each event's function starts from
 * its task.
 */
static int target(struct nd_ledger *l, const void *m, size_t id_off,
		  size_t at_off, struct nd_ltask **t)
{
	uint64_t task_id;
	uint32_t attempt = 0;

	memcpy(&task_id, (const char *)m + id_off, sizeof(task_id));
	if (at_off)
		memcpy(&attempt, (const char *)m + at_off, sizeof(attempt));
	*t = nd_ledger_get(l, task_id);
	if (!*t)
		return -ENOENT;
	return attempt && attempt != (*t)->attempt ? -ESTALE : 0;
}

bool nd__ltask_on_node(const struct nd_ltask *t)
{
	return t->state == NODED__TASK_STATE__TASK_ASSIGNED ||
	       t->state == NODED__TASK_STATE__TASK_RUNNING;
}

/* The record of t's current attempt in its history, or NULL (it has not
 * reached a node). */
struct nd_lattempt *nd__ltask_current(const struct nd_ltask *t)
{
	struct nd_lattempt *a = t->nattempts ?
					&t->attempts[t->nattempts - 1] : NULL;

	return a && a->attempt == t->attempt ? a : NULL;
}

/* The current attempt (a, may be NULL) ends in state st with reason
 * (taken; NULL: none) at unix_ms. */
static void attempt_end(struct nd_lattempt *a, Noded__TaskState st,
			uint64_t unix_ms, char *reason)
{
	if (!a) {
		free(reason);
		return;
	}
	a->state = st;
	a->ended_unix_ms = unix_ms;
	free(a->reason);
	a->reason = reason;
}

/* Copies of why for the task and, when it has one (a), for its current
 * attempt: 0, or -ENOMEM with none made. */
static int reasons(const char *why, const struct nd_lattempt *a,
		   char **task, char **attempt)
{
	if (nd__ledger_dup(why, task))
		return -ENOMEM;
	if (nd__ledger_dup(a ? why : NULL, attempt)) {
		free(*task);
		*task = NULL;
		return -ENOMEM;
	}
	return 0;
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
	if (!t->spec || nd__ledger_dup(node, &t->target_node)) {
		nd__ltask_free(t);
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

int nd__ledger_session_put(struct nd_ledger *l,
			   const struct nd_lsession *s)
{
	struct nd_lsession *slot = nd_u64map_get(&l->session_map, s->session);

	if (slot) {
		*slot = *s;
		return 0;
	}
	if (!l->sessions &&
	    !(l->sessions = calloc(ND_LEDGER_SESSIONS, sizeof(*l->sessions))))
		return -ENOMEM;
	slot = &l->sessions[(l->session_head + l->nsessions) %
			    ND_LEDGER_SESSIONS];
	if (l->nsessions == ND_LEDGER_SESSIONS)
		slot = &l->sessions[l->session_head]; /* the oldest goes */
	/* the map first: it may need memory, and nothing changed yet */
	if (nd_u64map_put(&l->session_map, s->session, slot))
		return -ENOMEM;
	if (l->nsessions == ND_LEDGER_SESSIONS) {
		nd_u64map_del(&l->session_map, slot->session);
		l->session_head = (l->session_head + 1) % ND_LEDGER_SESSIONS;
	} else {
		l->nsessions++;
	}
	*slot = *s;
	return 0;
}

static int apply_submit(struct nd_ledger *l, struct nd_ltask *none,
			const void *m, struct nd_ltask **first)
{
	const Noded__LedgerSubmit *e = m;
	size_t n = e->n_nodes ? e->n_nodes : 1, made = 0;
	struct nd_ltask **ts;
	const struct nd_lsession *last = nd_ledger_session(l, e->session);

	if (!e->task_id || e->task_id < l->next_id ||
	    e->task_id + n < e->task_id)
		return -EEXIST;
	/* once per session and sequence (a resent submit is answered, not
	 * applied: tasks.c) */
	if (last && e->sequence <= last->sequence)
		return -EALREADY;
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
	if (e->session) {
		struct nd_lsession s = { e->session, e->sequence, e->task_id,
					 e->job_id, (uint32_t)n };

		if (nd__ledger_session_put(l, &s))
			goto undo_all;
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
undo_all:
	made = n - 1;
undo:
	for (size_t i = 0; i <= made && i < n; i++) {
		if (!ts[i])
			continue;
		if (nd_u64map_get(&l->tasks, ts[i]->id) == ts[i])
			nd_u64map_del(&l->tasks, ts[i]->id);
		nd__ltask_free(ts[i]);
	}
	free(ts);
	return -ENOMEM;
}

static int apply_assign(struct nd_ledger *l, struct nd_ltask *t,
			const void *m, struct nd_ltask **out)
{
	const Noded__LedgerAssign *e = m;
	char *node;

	struct nd_lattempt *as, *a;
	char *anode;

	if (!e->attempt || t->state != NODED__TASK_STATE__TASK_PENDING ||
	    !e->node[0] || (t->target_node && strcmp(t->target_node, e->node)))
		return -EINVAL;
	if (!(node = strdup(e->node)))
		return -ENOMEM;
	if (!(anode = strdup(e->node)))
		goto err_node;
	as = t->attempts;
	if (t->nattempts < ND_LEDGER_ATTEMPTS_KEPT) {
		as = realloc(t->attempts, (t->nattempts + 1) * sizeof(*as));
		if (!as)
			goto err_anode;
		t->attempts = as;
	} else {
		/* full: the oldest goes */
		attempt_free(&as[0]);
		memmove(as, as + 1, --t->nattempts * sizeof(*as));
	}
	a = &as[t->nattempts++];
	memset(a, 0, sizeof(*a));
	a->attempt = e->attempt;
	a->state = NODED__TASK_STATE__TASK_ASSIGNED;
	a->node = anode;
	a->assigned_unix_ms = e->unix_ms;
	free(t->node);
	t->node = node;
	set_state(l, t, NODED__TASK_STATE__TASK_ASSIGNED);
	*out = t;
	return 0;
err_anode:
	free(anode);
err_node:
	free(node);
	return -ENOMEM;
}

static int apply_started(struct nd_ledger *l, struct nd_ltask *t,
			 const void *m, struct nd_ltask **out)
{
	const Noded__LedgerStarted *e = m;
	struct nd_lattempt *a;

	if (!e->attempt || !nd__ltask_on_node(t))
		return -EINVAL;
	if (t->state != NODED__TASK_STATE__TASK_RUNNING)
		set_state(l, t, NODED__TASK_STATE__TASK_RUNNING);
	t->started_unix_ms = e->start_unix_ms;
	if ((a = nd__ltask_current(t))) {
		a->state = NODED__TASK_STATE__TASK_RUNNING;
		a->started_unix_ms = e->start_unix_ms;
	}
	*out = t;
	return 0;
}

/* Appends n bytes of fd from attempt to t's kept output, after a marker
 * when attempt is not the last kept chunk's (or, first, not 1): 0, or
 * -ENOMEM with nothing changed. */
int nd__ltask_out_append(struct nd_ltask *t, uint8_t fd, uint32_t attempt,
			 const uint8_t *data, size_t n)
{
	uint32_t last = t->out_attempt ? t->out_attempt : 1,
		 len = (uint32_t)n;
	size_t mark = attempt != last ? 5 : 0;
	uint8_t *b;

	if (nd_buf_reserve(&t->out, mark + 5 + n))
		return -ENOMEM;
	b = t->out.data + t->out.len;
	if (mark) {
		b[0] = 0;
		memcpy(b + 1, &attempt, 4);
		b += 5;
	}
	b[0] = fd;
	memcpy(b + 1, &len, 4);
	if (n)
		memcpy(b + 5, data, n);
	t->out.len += mark + 5 + n;
	t->out_data += n;
	t->out_attempt = attempt;
	return 0;
}

bool nd_ltask_output_next(const struct nd_ltask *t, struct nd_lout_iter *it,
			  Noded__OutputChunk *c)
{
	if (!it->attempt)
		it->attempt = 1;
	while (it->off + 5 <= t->out.len) {
		const uint8_t *b = t->out.data + it->off;
		uint32_t len;

		memcpy(&len, b + 1, 4);
		if (!b[0]) {
			it->attempt = len;
			it->off += 5;
			continue;
		}
		c->fd = b[0];
		c->attempt = it->attempt;
		c->data.data = (uint8_t *)b + 5;
		c->data.len = len;
		it->off += 5 + len;
		return true;
	}
	return false;
}

static int apply_output(struct nd_ledger *l, struct nd_ltask *t,
			const void *m, struct nd_ltask **out)
{
	const Noded__LedgerOutput *e = m;
	struct nd_lattempt *a;
	size_t n = 0;

	if (!e->attempt || !nd__ltask_on_node(t))
		return -EINVAL;
	if (t->out_data < t->output_cap) {
		size_t room = (size_t)(t->output_cap - t->out_data);

		n = e->data.len < room ? e->data.len : room;
		if (nd__ltask_out_append(t, (uint8_t)(e->fd == 2 ? 2 : 1), e->attempt,
			       e->data.data, n))
			return -ENOMEM;
		l->kept_bytes += n;
	}
	if (n < e->data.len || e->dropped)
		t->truncated = true;
	t->produced += e->data.len + e->dropped;
	if (t->state != NODED__TASK_STATE__TASK_RUNNING) {
		set_state(l, t, NODED__TASK_STATE__TASK_RUNNING);
		if ((a = nd__ltask_current(t)))
			a->state = NODED__TASK_STATE__TASK_RUNNING;
	}
	*out = t;
	return 0;
}

static int apply_ended(struct nd_ledger *l, struct nd_ltask *t,
		       const void *m, struct nd_ltask **out)
{
	const Noded__LedgerEnded *e = m;
	struct nd_lattempt *a;
	char *reason, *areason;

	if (!e->attempt || nd_ltask_ended(t->state) ||
	    !nd_ltask_ended(e->state) ||
	    e->state == NODED__TASK_STATE__TASK_LOST || e->state >= NSTATES)
		return -EINVAL;
	a = nd__ltask_current(t);
	if (reasons(e->reason, a, &reason, &areason))
		return -ENOMEM;
	if (a) {
		a->exit_code = e->exit_code;
		a->signal = e->signal;
		if (e->start_unix_ms && !a->started_unix_ms)
			a->started_unix_ms = e->start_unix_ms;
	}
	attempt_end(a, e->state, e->unix_ms, areason);
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

static int apply_cancel(struct nd_ledger *l, struct nd_ltask *t,
			const void *m, struct nd_ltask **out)
{
	const Noded__LedgerCancel *e = m;
	bool stop = e->stop_reason && e->stop_reason[0];
	char *why;

	if (nd_ltask_ended(t->state) ||
	    (stop && (!e->attempt || !nd__ltask_on_node(t))))
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

static int apply_retried(struct nd_ledger *l, struct nd_ltask *t,
			 const void *m, struct nd_ltask **out)
{
	const Noded__LedgerRetried *e = m;
	char *reason;

	if (!e->attempt || !nd__ltask_on_node(t) || !t->retries_left)
		return -EINVAL;
	if (nd__ledger_dup(e->reason, &reason))
		return -ENOMEM;
	attempt_end(nd__ltask_current(t), NODED__TASK_STATE__TASK_LOST,
		    e->unix_ms, reason);
	t->retries_left--;
	t->attempt++;
	free(t->stop_reason); /* that attempt is over */
	t->stop_reason = NULL;
	set_state(l, t, NODED__TASK_STATE__TASK_PENDING);
	*out = t;
	return 0;
}

static int apply_lost(struct nd_ledger *l, struct nd_ltask *t,
		      const void *m, struct nd_ltask **out)
{
	const Noded__LedgerLost *e = m;
	struct nd_lattempt *a;
	char *reason, *areason;

	if (!e->attempt || nd_ltask_ended(t->state))
		return -EINVAL;
	a = nd__ltask_current(t);
	if (reasons(e->reason, a, &reason, &areason))
		return -ENOMEM;
	attempt_end(a, NODED__TASK_STATE__TASK_LOST, e->unix_ms, areason);
	end(l, t, NODED__TASK_STATE__TASK_LOST, e->unix_ms, reason);
	*out = t;
	return 0;
}

static int apply_evict(struct nd_ledger *l, struct nd_ltask *t,
		       const void *m, struct nd_ltask **out)
{
	/* all an evict says is its task's id */
	if (!nd_ltask_ended(t->state))
		return -EINVAL;
	nd_u64map_del(&l->tasks, t->id);
	nd_list_del(&t->all_link);
	nd_list_del(&t->done_link);
	l->ndone--;
	l->ntasks--;
	l->count[t->state]--;
	l->kept_bytes -= t->out_data;
	nd__ltask_free(t);
	*out = NULL;
	return 0;
}

static int apply_cluster(struct nd_ledger *l, struct nd_ltask *t,
			 const void *m, struct nd_ltask **out)
{
	const Noded__LedgerCluster *e = m;

	if (!e->id)
		return -EINVAL;
	if (l->cluster_id)
		return -EEXIST;
	l->cluster_id = e->id;
	*out = NULL;
	return 0;
}

static int apply_member(struct nd_ledger *l, struct nd_ltask *t,
			const void *msg, struct nd_ltask **out)
{
	const Noded__LedgerMember *e = msg;
	const Noded__RaftMember *mb = e->member;
	struct nd_lmember *m = NULL, *grown;
	size_t i;

	if (!mb || !mb->id || (!e->remove && !mb->raft_address[0]))
		return -EINVAL;
	for (i = 0; i < l->nmembers && l->members[i].id != mb->id; i++)
		;
	*out = NULL;
	if (e->remove) {
		if (i == l->nmembers)
			return -ENOENT;
		nd__lmember_clear(&l->members[i]);
		memmove(&l->members[i], &l->members[i + 1],
			(l->nmembers - i - 1) * sizeof(*l->members));
		l->nmembers--;
		return 0;
	}
	if (i < l->nmembers)
		return nd__lmember_set(&l->members[i], mb);
	grown = realloc(l->members, (l->nmembers + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	l->members = grown;
	m = &l->members[l->nmembers];
	memset(m, 0, sizeof(*m));
	if (nd__lmember_set(m, mb))
		return -ENOMEM; /* the array only grew: nothing changed */
	l->nmembers++;
	return 0;
}

/* The events: each case of LedgerEvent.body, its name, its function (given
 * the case's message: the oneof's members share one pointer; and, but for
 * submit, the task it names, found by target()) and where its message
 * names the task. */
static const struct {
	const char *name;
	int (*apply)(struct nd_ledger *l, struct nd_ltask *t, const void *m,
		     struct nd_ltask **out);
	size_t id_off, at_off;          /* task_id, attempt (0: none) */
} events[] = {
#define EV(c, n, f, T, at) [NODED__LEDGER_EVENT__BODY_##c] = \
	{ n, f, offsetof(T, task_id), at }
#define AT(T) offsetof(T, attempt)
	[NODED__LEDGER_EVENT__BODY_SUBMIT] = { "submit", apply_submit, 0, 0 },
	EV(ASSIGN, "assign", apply_assign, Noded__LedgerAssign,
	   AT(Noded__LedgerAssign)),
	EV(STARTED, "started", apply_started, Noded__LedgerStarted,
	   AT(Noded__LedgerStarted)),
	EV(OUTPUT, "output", apply_output, Noded__LedgerOutput,
	   AT(Noded__LedgerOutput)),
	EV(ENDED, "ended", apply_ended, Noded__LedgerEnded,
	   AT(Noded__LedgerEnded)),
	EV(CANCEL, "cancel", apply_cancel, Noded__LedgerCancel,
	   AT(Noded__LedgerCancel)),
	EV(RETRIED, "retried", apply_retried, Noded__LedgerRetried,
	   AT(Noded__LedgerRetried)),
	EV(LOST, "lost", apply_lost, Noded__LedgerLost, AT(Noded__LedgerLost)),
	EV(EVICT, "evict", apply_evict, Noded__LedgerEvict, 0),
	[NODED__LEDGER_EVENT__BODY_CLUSTER] = { "cluster", apply_cluster, 0, 0 },
	[NODED__LEDGER_EVENT__BODY_MEMBER] = { "member", apply_member, 0, 0 },
#undef AT
#undef EV
};

#define NEVENTS (sizeof(events) / sizeof(events[0]))

int nd_ledger_apply(struct nd_ledger *l, const Noded__LedgerEvent *ev,
		    struct nd_ltask **task)
{
	unsigned c = (unsigned)ev->body_case;
	const void *m = ev->submit;
	struct nd_ltask *t = NULL, *named = NULL;
	int err = -EINVAL;

	if (c < NEVENTS && events[c].apply && m)
		err = c == NODED__LEDGER_EVENT__BODY_SUBMIT ||
		      c == NODED__LEDGER_EVENT__BODY_CLUSTER ||
		      c == NODED__LEDGER_EVENT__BODY_MEMBER ? 0 :
		      target(l, m, events[c].id_off, events[c].at_off, &named);
	if (!err)
		err = events[c].apply(l, named, m, &t);
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

