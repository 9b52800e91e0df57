/*
 * The task ledger's snapshot and restore (ledger.h): the whole ledger as
 * one LedgerSnapshot message, and back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state/ledger.h"
#include "state/ledger_int.h"

/* ---- snapshot ---- */

/* The kept output of t as chunks in chunks[] (room for all of them);
 * returns how many. */
static size_t kept_chunks(const struct nd_ltask *t, Noded__OutputChunk *c,
			  Noded__OutputChunk **chunks)
{
	struct nd_lout_iter it = { 0 };
	Noded__OutputChunk one = NODED__OUTPUT_CHUNK__INIT;
	size_t n = 0;

	while (nd_ltask_output_next(t, &it, &one)) {
		c[n] = one;
		chunks[n] = &c[n];
		n++;
	}
	return n;
}

static size_t count_chunks(const struct nd_ltask *t)
{
	struct nd_lout_iter it = { 0 };
	Noded__OutputChunk c;
	size_t n = 0;

	while (nd_ltask_output_next(t, &it, &c))
		n++;
	return n;
}

void nd_ledger_attempts_msg(const struct nd_ltask *t, Noded__TaskAttempt *am,
			    Noded__TaskAttempt **ap)
{
	for (uint32_t i = 0; i < t->nattempts; i++) {
		const struct nd_lattempt *a = &t->attempts[i];

		noded__task_attempt__init(&am[i]);
		am[i].attempt = a->attempt;
		am[i].node = a->node;
		am[i].state = a->state;
		am[i].assigned_unix_ms = a->assigned_unix_ms;
		am[i].started_unix_ms = a->started_unix_ms;
		am[i].ended_unix_ms = a->ended_unix_ms;
		am[i].exit_code = a->exit_code;
		am[i].signal = a->signal;
		am[i].reason = a->reason ? a->reason : "";
		ap[i] = &am[i];
	}
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
	Noded__TaskAttempt *am = NULL, **aptrs = NULL;
	Noded__RaftMember *mm = NULL, **mptrs = NULL;
	Noded__LedgerSession *ss = NULL, **sptrs = NULL;
	size_t nchunks = 0, natt = 0, k = 0, c = 0, a = 0;
	int err = -ENOMEM;
	struct nd_list *it;

	*out = NULL;
	*len = 0;
	for (it = l->all.next; it != &l->all; it = it->next) {
		const struct nd_ltask *t = nd_container_of(it, struct nd_ltask,
							   all_link);

		nchunks += count_chunks(t);
		natt += t->nattempts;
	}
	msgs = calloc(l->ntasks ? l->ntasks : 1, sizeof(*msgs));
	ptrs = calloc(l->ntasks ? l->ntasks : 1, sizeof(*ptrs));
	chunks = calloc(nchunks ? nchunks : 1, sizeof(*chunks));
	cptrs = calloc(nchunks ? nchunks : 1, sizeof(*cptrs));
	am = calloc(natt ? natt : 1, sizeof(*am));
	aptrs = calloc(natt ? natt : 1, sizeof(*aptrs));
	mm = calloc(l->nmembers ? l->nmembers : 1, sizeof(*mm));
	mptrs = calloc(l->nmembers ? l->nmembers : 1, sizeof(*mptrs));
	ss = calloc(l->nsessions ? l->nsessions : 1, sizeof(*ss));
	sptrs = calloc(l->nsessions ? l->nsessions : 1, sizeof(*sptrs));
	if (!msgs || !ptrs || !chunks || !cptrs || !am || !aptrs || !mm ||
	    !mptrs || !ss || !sptrs)
		goto out;
	for (size_t i = 0; i < l->nsessions; i++) {
		const struct nd_lsession *ls = &l->sessions[
			(l->session_head + i) % ND_LEDGER_SESSIONS];

		noded__ledger_session__init(&ss[i]);
		ss[i].session = ls->session;
		ss[i].sequence = ls->sequence;
		ss[i].task_id = ls->task_id;
		ss[i].tasks = ls->tasks;
		ss[i].job_id = ls->job_id;
		sptrs[i] = &ss[i];
	}
	for (size_t i = 0; i < l->nmembers; i++) {
		noded__raft_member__init(&mm[i]);
		mm[i].id = l->members[i].id;
		mm[i].raft_address = l->members[i].raft;
		mm[i].client_address = l->members[i].client;
		mm[i].http_address = l->members[i].http;
		mptrs[i] = &mm[i];
	}
	for (it = l->all.next; it != &l->all; it = it->next, k++) {
		const struct nd_ltask *t = nd_container_of(it, struct nd_ltask,
							   all_link);

		task_to_msg(t, &msgs[k]);
		msgs[k].output = cptrs + c;
		msgs[k].n_output = kept_chunks(t, chunks + c, cptrs + c);
		c += msgs[k].n_output;
		nd_ledger_attempts_msg(t, am + a, aptrs + a);
		msgs[k].attempts = aptrs + a;
		msgs[k].n_attempts = t->nattempts;
		a += t->nattempts;
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
	s.cluster_id = l->cluster_id;
	s.n_members = l->nmembers;
	s.members = mptrs;
	s.n_sessions = l->nsessions;
	s.sessions = sptrs;
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
	free(am);
	free(aptrs);
	free(mm);
	free(mptrs);
	free(ss);
	free(sptrs);
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
	if (!t->spec || nd__ledger_dup(m->target_node, &t->target_node) ||
	    nd__ledger_dup(m->node, &t->node) ||
	    nd__ledger_dup(m->reason, &t->reason) ||
	    nd__ledger_dup(m->stop_reason, &t->stop_reason))
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

		if (c->data.len > UINT32_MAX || c->attempt > m->attempt) {
			*err = -EINVAL;
			goto fail;
		}
		if (nd__ltask_out_append(t, (uint8_t)(c->fd == 2 ? 2 : 1),
			       c->attempt ? c->attempt : 1, c->data.data,
			       c->data.len))
			goto fail;
	}
	if (m->n_attempts > ND_LEDGER_ATTEMPTS_KEPT) {
		*err = -EINVAL;
		goto fail;
	}
	if (m->n_attempts &&
	    !(t->attempts = calloc(m->n_attempts, sizeof(*t->attempts))))
		goto fail;
	for (size_t i = 0; i < m->n_attempts; i++) {
		const Noded__TaskAttempt *am = m->attempts[i];
		struct nd_lattempt *a = &t->attempts[i];

		t->nattempts++;
		if (!am->node[0] ||
		    am->state < NODED__TASK_STATE__TASK_ASSIGNED ||
		    am->state >= NSTATES) {
			*err = -EINVAL;
			goto fail;
		}
		if (nd__ledger_dup(am->node, &a->node) ||
		    nd__ledger_dup(am->reason, &a->reason))
			goto fail;
		a->attempt = am->attempt;
		a->state = am->state;
		a->assigned_unix_ms = am->assigned_unix_ms;
		a->started_unix_ms = am->started_unix_ms;
		a->ended_unix_ms = am->ended_unix_ms;
		a->exit_code = am->exit_code;
		a->signal = am->signal;
	}
	*err = 0;
	return t;
fail:
	nd__ltask_free(t);
	return NULL;
}

/* Does t's history keep the invariants of ledger.h? */
static bool history_valid(const struct nd_ltask *t)
{
	const struct nd_lattempt *cur = nd__ltask_current(t);

	for (uint32_t i = 0; i < t->nattempts; i++) {
		const struct nd_lattempt *a = &t->attempts[i];

		if (!a->attempt || a->attempt > t->attempt ||
		    (i && a->attempt <= t->attempts[i - 1].attempt) ||
		    (a != cur && !nd_ltask_ended(a->state)))
			return false;
	}
	if (nd__ltask_on_node(t))
		return cur && cur->state == t->state && t->node &&
		       !strcmp(cur->node, t->node);
	return !cur || cur->state == t->state;
}

/* Does t keep the invariants of ledger.h that concern it alone? */
static bool task_valid(const struct nd_ltask *t)
{
	return history_valid(t) &&
	       nd_ltask_ended(t->state) == (t->end_seq != 0) &&
	       (!nd__ltask_on_node(t) || t->node) &&
	       (!t->stop_reason || nd__ltask_on_node(t)) &&
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
			nd__ltask_free(t);
			t = NULL;
			err = -EINVAL;
		}
		if (t && nd_u64map_put(&fresh->tasks, t->id, t)) {
			nd__ltask_free(t);
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
	fresh->cluster_id = s->cluster_id;
	if (s->n_members) {
		fresh->members = calloc(s->n_members, sizeof(*fresh->members));
		if (!fresh->members) {
			err = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < s->n_members; i++) {
		if (!s->members[i]->id || nd_ledger_member(fresh,
							   s->members[i]->id)) {
			err = -EINVAL; /* none, or twice */
			goto out;
		}
		if (nd__lmember_set(&fresh->members[i], s->members[i])) {
			err = -ENOMEM;
			goto out;
		}
		fresh->nmembers++;
	}
	if (s->n_sessions > ND_LEDGER_SESSIONS) {
		err = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < s->n_sessions; i++) {
		const Noded__LedgerSession *ls = s->sessions[i];
		struct nd_lsession one = { ls->session, ls->sequence,
					   ls->task_id, ls->job_id, ls->tasks };

		if (!ls->session || nd_ledger_session(fresh, ls->session)) {
			err = -EINVAL; /* none, or twice */
			goto out;
		}
		if (nd__ledger_session_put(fresh, &one)) {
			err = -ENOMEM;
			goto out;
		}
	}
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
