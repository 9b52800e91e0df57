/*
 * The task ledger (src/state/ledger.h) with no daemon: each event, what it
 * refuses, the invariants after every event of long random runs, snapshot
 * and restore, out-of-memory at every allocation; and the trace of a real
 * master replayed into an empty ledger, giving its snapshot byte for byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "alloc_fail.h"
#include "harness.h"
#include "state/ledger.h"

static struct nd_ledger L;

static void setup(void)
{
	nd_ledger_init(&L, 0);
}

static void teardown(void)
{
	nd_alloc_fail_off();
	nd_ledger_free(&L);
}

TestSuite(ledger, .init = setup, .fini = teardown, .timeout = 120);

/* ---- events, built on the stack ---- */

/* The ledger keeps a spec as opaque bytes: any will do. */
static const uint8_t SPEC[] = { 0x12, 0x04, 't', 'r', 'u', 'e' };

static int submit(uint64_t id, uint64_t job, const char *const *nodes,
		  size_t n, uint32_t retries, uint64_t cap)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerSubmit e = NODED__LEDGER_SUBMIT__INIT;

	e.task_id = id;
	e.job_id = job;
	e.spec.data = (uint8_t *)SPEC;
	e.spec.len = sizeof(SPEC);
	e.nodes = (char **)nodes;
	e.n_nodes = n;
	e.retries = retries;
	e.output_cap_bytes = cap;
	e.unix_ms = 1000 + id;
	ev.body_case = NODED__LEDGER_EVENT__BODY_SUBMIT;
	ev.submit = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

static int assign(uint64_t id, uint32_t attempt, const char *node)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerAssign e = NODED__LEDGER_ASSIGN__INIT;

	e.task_id = id;
	e.attempt = attempt;
	e.node = (char *)node;
	e.unix_ms = 3000 + id;
	ev.body_case = NODED__LEDGER_EVENT__BODY_ASSIGN;
	ev.assign = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

static int started(uint64_t id, uint32_t attempt)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerStarted e = NODED__LEDGER_STARTED__INIT;

	e.task_id = id;
	e.attempt = attempt;
	e.start_unix_ms = 5000 + id;
	ev.body_case = NODED__LEDGER_EVENT__BODY_STARTED;
	ev.started = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

static int output(uint64_t id, uint32_t attempt, uint32_t fd, const char *s)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerOutput e = NODED__LEDGER_OUTPUT__INIT;

	e.task_id = id;
	e.attempt = attempt;
	e.fd = fd;
	e.data.data = (uint8_t *)s;
	e.data.len = strlen(s);
	ev.body_case = NODED__LEDGER_EVENT__BODY_OUTPUT;
	ev.output = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

static int ended(uint64_t id, uint32_t attempt, Noded__TaskState st,
		 int code, const char *reason)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerEnded e = NODED__LEDGER_ENDED__INIT;

	e.task_id = id;
	e.attempt = attempt;
	e.state = st;
	e.exit_code = code;
	e.reason = (char *)reason;
	e.unix_ms = 9000 + id;
	e.utime_us = 7;
	ev.body_case = NODED__LEDGER_EVENT__BODY_ENDED;
	ev.ended = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

static int cancel(uint64_t id)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerCancel e = NODED__LEDGER_CANCEL__INIT;

	e.task_id = id;
	ev.body_case = NODED__LEDGER_EVENT__BODY_CANCEL;
	ev.cancel = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

/* The system stops attempt of id (an operator's drain deadline). */
static int stop(uint64_t id, uint32_t attempt, const char *why)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerCancel e = NODED__LEDGER_CANCEL__INIT;

	e.task_id = id;
	e.attempt = attempt;
	e.stop_reason = (char *)why;
	ev.body_case = NODED__LEDGER_EVENT__BODY_CANCEL;
	ev.cancel = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

static int retried(uint64_t id, uint32_t attempt)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerRetried e = NODED__LEDGER_RETRIED__INIT;

	e.task_id = id;
	e.attempt = attempt;
	e.reason = "node died";
	e.unix_ms = 7000 + id;
	ev.body_case = NODED__LEDGER_EVENT__BODY_RETRIED;
	ev.retried = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

static int lost(uint64_t id, uint32_t attempt, const char *reason)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerLost e = NODED__LEDGER_LOST__INIT;

	e.task_id = id;
	e.attempt = attempt;
	e.reason = (char *)reason;
	e.unix_ms = 8000 + id;
	ev.body_case = NODED__LEDGER_EVENT__BODY_LOST;
	ev.lost = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

static int evict(uint64_t id)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerEvict e = NODED__LEDGER_EVICT__INIT;

	e.task_id = id;
	ev.body_case = NODED__LEDGER_EVENT__BODY_EVICT;
	ev.evict = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

static struct nd_ltask *T(uint64_t id)
{
	struct nd_ltask *t = nd_ledger_get(&L, id);

	cr_assert(t, "task %llu is not in the ledger", (unsigned long long)id);
	return t;
}

/* ---- checks ---- */

/* The snapshot of l (malloc'd, *len). */
static uint8_t *snap(const struct nd_ledger *l, size_t *len)
{
	uint8_t *p;

	cr_assert_eq(nd_ledger_snapshot(l, &p, len), 0);
	return p;
}

static bool same_snap(const uint8_t *a, size_t alen, const uint8_t *b,
		      size_t blen)
{
	return alen == blen && !memcmp(a, b, alen);
}

/* The history invariants of ledger.h for t. */
static void check_history(const struct nd_ltask *t)
{
	const struct nd_lattempt *cur = NULL;
	bool on = t->state == NODED__TASK_STATE__TASK_ASSIGNED ||
		  t->state == NODED__TASK_STATE__TASK_RUNNING;
	struct nd_lout_iter it = { 0 };
	Noded__OutputChunk c;
	uint32_t last = 0;

	cr_assert_leq(t->nattempts, ND_LEDGER_ATTEMPTS_KEPT);
	for (uint32_t i = 0; i < t->nattempts; i++) {
		const struct nd_lattempt *a = &t->attempts[i];

		cr_assert_gt(a->attempt, last, "task %llu: attempts not rising",
			     (unsigned long long)t->id);
		cr_assert_leq(a->attempt, t->attempt);
		cr_assert(a->node && a->node[0]);
		last = a->attempt;
		if (a->attempt == t->attempt)
			cur = a;
		else
			cr_assert(nd_ltask_ended(a->state),
				  "task %llu: old attempt %u not ended (%d)",
				  (unsigned long long)t->id, a->attempt,
				  a->state);
	}
	if (on) {
		cr_assert(cur, "task %llu runs, its attempt is not in the "
			  "history", (unsigned long long)t->id);
		cr_assert_str_eq(cur->node, t->node);
	}
	if (cur)
		cr_assert_eq(cur->state, t->state,
			     "task %llu: attempt in %d, task in %d",
			     (unsigned long long)t->id, cur->state, t->state);
	/* kept output: every chunk names an attempt the task has had */
	while (nd_ltask_output_next(t, &it, &c))
		cr_assert(c.attempt >= 1 && c.attempt <= t->attempt);
}

/* Every invariant of ledger.h, recomputed from the tasks. */
static void check_invariants(const struct nd_ledger *l)
{
	uint64_t count[NODED__TASK_STATE__TASK_LOST + 1] = { 0 }, n = 0,
		 ndone = 0, kept = 0, last_id = 0, last_end = 0;
	const struct nd_list *it;

	for (it = l->all.next; it != &l->all; it = it->next, n++) {
		const struct nd_ltask *t = nd_container_of(it, struct nd_ltask,
							   all_link);

		cr_assert_gt(t->id, last_id, "all is in id order");
		last_id = t->id;
		cr_assert_lt(t->id, l->next_id);
		cr_assert_eq(nd_ledger_get(l, t->id), t);
		count[t->state]++;
		kept += t->out_data;
		cr_assert_leq(t->out_data, t->output_cap,
			      "task %llu keeps more than its cap",
			      (unsigned long long)t->id);
		cr_assert_eq(nd_ltask_ended(t->state), t->end_seq != 0);
		cr_assert_eq(nd_ltask_ended(t->state),
			     nd_list_linked(&t->done_link));
		if (t->state == NODED__TASK_STATE__TASK_ASSIGNED ||
		    t->state == NODED__TASK_STATE__TASK_RUNNING)
			cr_assert(t->node, "task %llu runs on no node",
				  (unsigned long long)t->id);
		else
			cr_assert(!t->stop_reason, "task %llu is stopped off "
				  "its node", (unsigned long long)t->id);
		if (t->node && t->target_node &&
		    t->state != NODED__TASK_STATE__TASK_PENDING)
			cr_assert_str_eq(t->node, t->target_node);
		cr_assert_geq(t->produced, t->out_data);
		check_history(t);
	}
	for (it = l->done.next; it != &l->done; it = it->next, ndone++) {
		const struct nd_ltask *t = nd_container_of(it, struct nd_ltask,
							   done_link);

		cr_assert(nd_ltask_ended(t->state));
		cr_assert_gt(t->end_seq, last_end, "done is in end order");
		last_end = t->end_seq;
	}
	cr_assert_eq(n, l->ntasks);
	cr_assert_eq(ndone, l->ndone);
	cr_assert_eq(kept, l->kept_bytes);
	for (int st = 0; st <= NODED__TASK_STATE__TASK_LOST; st++)
		cr_assert_eq(count[st], l->count[st], "count of state %d", st);
}

/* Applies ev expecting want; on a refusal, checks that nothing changed. */
#define REFUSED(want, call)                                                  \
	do {                                                                 \
		size_t blen_, alen_;                                         \
		uint8_t *b_ = snap(&L, &blen_), *a_;                         \
		int rc_ = (call);                                            \
		cr_assert_eq(rc_, (want), "%s: %d (%s), want %d", #call,     \
			     rc_, strerror(-rc_), (want));                   \
		a_ = snap(&L, &alen_);                                       \
		cr_assert(same_snap(b_, blen_, a_, alen_),                   \
			  "%s changed the ledger", #call);                   \
		free(a_);                                                    \
		free(b_);                                                    \
	} while (0)

/* ---- each event ---- */

Test(ledger, a_task_from_submit_to_its_end)
{
	struct nd_ltask *t;

	cr_assert_eq(submit(100, 0, NULL, 0, 0, 1024), 0);
	t = T(100);
	cr_assert_eq(t->state, NODED__TASK_STATE__TASK_PENDING);
	cr_assert_eq(t->attempt, 1);
	cr_assert_null(t->target_node);
	cr_assert_eq(t->spec_len, sizeof(SPEC));
	cr_assert_eq(t->submitted_unix_ms, 1100);
	cr_assert_eq(L.first_id, 100);
	cr_assert_eq(L.next_id, 101);
	cr_assert_eq(assign(100, 1, "w1"), 0);
	cr_assert_eq(t->state, NODED__TASK_STATE__TASK_ASSIGNED);
	cr_assert_str_eq(t->node, "w1");
	cr_assert_eq(started(100, 1), 0);
	cr_assert_eq(t->state, NODED__TASK_STATE__TASK_RUNNING);
	cr_assert_eq(t->started_unix_ms, 5100);
	cr_assert_eq(output(100, 1, 1, "hello\n"), 0);
	cr_assert_eq(output(100, 1, 2, "oops\n"), 0);
	cr_assert_eq(t->produced, 11);
	cr_assert_eq(t->out_data, 11);
	cr_assert_eq(L.kept_bytes, 11);
	cr_assert_eq(ended(100, 1, NODED__TASK_STATE__TASK_FAILED, 3, "exit 3"),
		     0);
	cr_assert_eq(t->state, NODED__TASK_STATE__TASK_FAILED);
	cr_assert_eq(t->exit_code, 3);
	cr_assert_str_eq(t->reason, "exit 3");
	cr_assert_eq(t->ended_unix_ms, 9100);
	cr_assert_eq(L.ended[NODED__TASK_STATE__TASK_FAILED], 1);
	cr_assert_eq(L.ndone, 1);
	cr_assert_eq(L.applied, 6);
	check_invariants(&L);
	cr_assert_eq(evict(100), 0);
	cr_assert_null(nd_ledger_get(&L, 100));
	cr_assert_eq(L.ntasks, 0);
	cr_assert_eq(L.kept_bytes, 0);
	cr_assert_eq(L.next_id, 101, "an evicted id is never given again");
	check_invariants(&L);
}

Test(ledger, a_fan_out_is_one_task_per_node)
{
	const char *nodes[] = { "a", "b", "c" };

	cr_assert_eq(submit(10, 10, nodes, 3, 0, 0), 0);
	for (int i = 0; i < 3; i++) {
		struct nd_ltask *t = T(10 + (uint64_t)i);

		cr_assert_eq(t->job_id, 10);
		cr_assert_str_eq(t->target_node, nodes[i]);
	}
	cr_assert_eq(L.next_id, 13);
	cr_assert_eq(L.count[NODED__TASK_STATE__TASK_PENDING], 3);
	/* a task for a named node runs there and nowhere else */
	REFUSED(-EINVAL, assign(11, 1, "a"));
	cr_assert_eq(assign(11, 1, "b"), 0);
	check_invariants(&L);
}

Test(ledger, output_past_the_cap_is_counted_not_kept)
{
	cr_assert_eq(submit(1, 0, NULL, 0, 0, 10), 0);
	cr_assert_eq(assign(1, 1, "w"), 0);
	cr_assert_eq(output(1, 1, 1, "123456"), 0);
	cr_assert_eq(output(1, 1, 1, "789abc"), 0);
	cr_assert_eq(output(1, 1, 1, "def"), 0);
	cr_assert_eq(T(1)->out_data, 10);
	cr_assert_eq(T(1)->produced, 15);
	cr_assert(T(1)->truncated);
	cr_assert_eq(T(1)->state, NODED__TASK_STATE__TASK_RUNNING,
		     "output means it runs");
	check_invariants(&L);
}

Test(ledger, a_retry_is_a_new_attempt_and_the_old_one_is_stale)
{
	cr_assert_eq(submit(1, 0, NULL, 0, 1, 100), 0);
	cr_assert_eq(assign(1, 1, "w1"), 0);
	cr_assert_eq(started(1, 1), 0);
	cr_assert_eq(retried(1, 1), 0);
	cr_assert_eq(T(1)->state, NODED__TASK_STATE__TASK_PENDING);
	cr_assert_eq(T(1)->attempt, 2);
	cr_assert_eq(T(1)->retries_left, 0);
	/* the old attempt's late reports change nothing */
	REFUSED(-ESTALE, output(1, 1, 1, "late"));
	REFUSED(-ESTALE, ended(1, 1, NODED__TASK_STATE__TASK_SUCCEEDED, 0, ""));
	REFUSED(-ESTALE, assign(1, 1, "w2"));
	cr_assert_eq(assign(1, 2, "w2"), 0);
	/* no retries left */
	REFUSED(-EINVAL, retried(1, 2));
	cr_assert_eq(lost(1, 2, "node w2 died"), 0);
	cr_assert_eq(T(1)->state, NODED__TASK_STATE__TASK_LOST);
	cr_assert_str_eq(T(1)->reason, "node w2 died");
	check_invariants(&L);
}

Test(ledger, every_attempt_is_in_the_history_and_its_output_marked)
{
	struct nd_lout_iter it = { 0 };
	Noded__OutputChunk c;
	const struct nd_lattempt *a;
	struct nd_ltask *t;
	uint8_t *p;
	size_t len;

	cr_assert_eq(submit(1, 0, NULL, 0, 2, 100), 0);
	t = T(1);
	cr_assert_eq(t->nattempts, 0, "no node yet, no attempt");
	cr_assert_eq(assign(1, 1, "w1"), 0);
	cr_assert_eq(started(1, 1), 0);
	cr_assert_eq(output(1, 1, 1, "one\n"), 0);
	cr_assert_eq(retried(1, 1), 0);
	cr_assert_eq(assign(1, 2, "w2"), 0);
	cr_assert_eq(output(1, 2, 2, "two\n"), 0);
	cr_assert_eq(ended(1, 2, NODED__TASK_STATE__TASK_FAILED, 4, "exit 4"),
		     0);
	cr_assert_eq(t->nattempts, 2);
	a = &t->attempts[0];
	cr_assert(a->attempt == 1 && !strcmp(a->node, "w1") &&
		  a->state == NODED__TASK_STATE__TASK_LOST &&
		  !strcmp(a->reason, "node died") && a->assigned_unix_ms == 3001 &&
		  a->started_unix_ms == 5001 && a->ended_unix_ms == 7001);
	a = &t->attempts[1];
	cr_assert(a->attempt == 2 && !strcmp(a->node, "w2") &&
		  a->state == NODED__TASK_STATE__TASK_FAILED &&
		  a->exit_code == 4 && !strcmp(a->reason, "exit 4") &&
		  a->started_unix_ms == 0 && a->ended_unix_ms == 9001);
	/* the output of each attempt, told apart */
	cr_assert(nd_ltask_output_next(t, &it, &c));
	cr_assert(c.attempt == 1 && c.fd == 1 && c.data.len == 4);
	cr_assert(nd_ltask_output_next(t, &it, &c));
	cr_assert(c.attempt == 2 && c.fd == 2 && !memcmp(c.data.data, "two\n", 4));
	cr_assert_not(nd_ltask_output_next(t, &it, &c));
	cr_assert_eq(t->out_data, 8, "a marker is no output");
	check_invariants(&L);
	/* all of it survives a snapshot and its restore */
	p = snap(&L, &len);
	cr_assert_eq(nd_ledger_restore(&L, p, len), 0);
	t = T(1);
	cr_assert_eq(t->nattempts, 2);
	cr_assert_str_eq(t->attempts[0].reason, "node died");
	check_invariants(&L);
	free(p);
}

Test(ledger, the_history_keeps_the_last_attempts_only)
{
	struct nd_ltask *t;
	uint32_t n = ND_LEDGER_ATTEMPTS_KEPT + 5;

	cr_assert_eq(submit(1, 0, NULL, 0, n, 100), 0);
	for (uint32_t at = 1; at <= n; at++) {
		cr_assert_eq(assign(1, at, at % 2 ? "w1" : "w2"), 0);
		cr_assert_eq(retried(1, at), 0);
		check_invariants(&L);
	}
	t = T(1);
	cr_assert_eq(t->nattempts, ND_LEDGER_ATTEMPTS_KEPT);
	cr_assert_eq(t->attempts[0].attempt, n - ND_LEDGER_ATTEMPTS_KEPT + 1);
	cr_assert_eq(t->attempts[ND_LEDGER_ATTEMPTS_KEPT - 1].attempt, n);
	/* a full history takes a new attempt without memory */
	nd_alloc_fail_at(3);
	cr_assert_eq(assign(1, n + 1, "w3"), 0);
	nd_alloc_fail_off();
	cr_assert_str_eq(t->attempts[ND_LEDGER_ATTEMPTS_KEPT - 1].node, "w3");
	check_invariants(&L);
}

/* A stop (LedgerCancel with a stop_reason) names the attempt on a node,
 * is no requester's cancel, lasts while that attempt does, and is in the
 * snapshot. */
Test(ledger, a_stop_names_its_attempt_and_ends_with_it)
{
	uint8_t *a, *b;
	size_t alen, blen;
	struct nd_ledger back;

	cr_assert_eq(submit(10, 0, NULL, 0, 1, 1024), 0);
	REFUSED(-EINVAL, stop(10, 1, "drain")); /* PENDING: on no node */
	cr_assert_eq(assign(10, 1, "n1"), 0);
	REFUSED(-ESTALE, stop(10, 2, "drain"));
	REFUSED(-EINVAL, stop(10, 0, "drain"));
	cr_assert_eq(stop(10, 1, "stopped at the drain deadline of node n1"),
		     0);
	cr_assert_str_eq(T(10)->stop_reason,
			 "stopped at the drain deadline of node n1");
	cr_assert(!T(10)->cancel_requested, "a stop is not a cancel");
	a = snap(&L, &alen);
	nd_ledger_init(&back, 0);
	cr_assert_eq(nd_ledger_restore(&back, a, alen), 0);
	cr_assert_str_eq(nd_ledger_get(&back, 10)->stop_reason,
			 "stopped at the drain deadline of node n1");
	b = snap(&back, &blen);
	cr_assert(same_snap(a, alen, b, blen));
	nd_ledger_free(&back);
	free(a);
	free(b);
	cr_assert_eq(retried(10, 1), 0);
	cr_assert_null(T(10)->stop_reason, "the new attempt is not stopped");
	cr_assert_eq(assign(10, 2, "n2"), 0);
	cr_assert_eq(stop(10, 2, "again"), 0);
	cr_assert_eq(lost(10, 2, "again"), 0);
	cr_assert_null(T(10)->stop_reason);
	REFUSED(-EINVAL, stop(10, 2, "ended"));
	check_invariants(&L);
}

Test(ledger, one_final_state_per_task)
{
	cr_assert_eq(submit(1, 0, NULL, 0, 3, 100), 0);
	cr_assert_eq(cancel(1), 0);
	cr_assert(T(1)->cancel_requested);
	cr_assert_eq(ended(1, 1, NODED__TASK_STATE__TASK_CANCELLED, 0,
			   "cancelled before it started"), 0);
	REFUSED(-EINVAL, ended(1, 1, NODED__TASK_STATE__TASK_SUCCEEDED, 0, ""));
	REFUSED(-EINVAL, lost(1, 1, "x"));
	REFUSED(-EINVAL, cancel(1));
	REFUSED(-EINVAL, assign(1, 1, "w"));
	REFUSED(-EINVAL, started(1, 1));
	REFUSED(-EINVAL, output(1, 1, 1, "x"));
	REFUSED(-EINVAL, retried(1, 1));
	cr_assert_eq(T(1)->state, NODED__TASK_STATE__TASK_CANCELLED);
	check_invariants(&L);
}

Test(ledger, refuses_what_does_not_apply)
{
	Noded__LedgerEvent empty = NODED__LEDGER_EVENT__INIT;

	cr_assert_eq(submit(50, 0, NULL, 0, 0, 100), 0);
	REFUSED(-EEXIST, submit(50, 0, NULL, 0, 0, 100));
	REFUSED(-EEXIST, submit(49, 0, NULL, 0, 0, 100));
	REFUSED(-EEXIST, submit(0, 0, NULL, 0, 0, 100));
	{
		const char *three[] = { "a", "b", "c" };

		/* ids that would wrap around */
		REFUSED(-EEXIST, submit(UINT64_MAX - 1, 1, three, 3, 0, 100));
	}
	REFUSED(-ENOENT, assign(7, 1, "w"));
	REFUSED(-ENOENT, evict(7));
	REFUSED(-EINVAL, assign(50, 0, "w"));
	REFUSED(-EINVAL, assign(50, 1, ""));
	REFUSED(-EINVAL, started(50, 1));
	REFUSED(-EINVAL, output(50, 1, 1, "x"));
	REFUSED(-EINVAL, retried(50, 1));
	REFUSED(-EINVAL, evict(50));
	REFUSED(-EINVAL, ended(50, 1, NODED__TASK_STATE__TASK_LOST, 0, ""));
	REFUSED(-EINVAL, ended(50, 1, NODED__TASK_STATE__TASK_RUNNING, 0, ""));
	REFUSED(-EINVAL, ended(50, 1, (Noded__TaskState)99, 0, ""));
	REFUSED(-ESTALE, ended(50, 2, NODED__TASK_STATE__TASK_FAILED, 0, ""));
	REFUSED(-EINVAL, nd_ledger_apply(&L, &empty, NULL));
	cr_assert_eq(assign(50, 1, "w"), 0);
	REFUSED(-EINVAL, assign(50, 1, "w"));
	REFUSED(-EINVAL, retried(50, 1)); /* no retries */
	check_invariants(&L);
}

/* ---- random runs: invariants, replay, snapshot ---- */

/* A deterministic generator (xorshift64*). */
static uint64_t rnd_state;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 2685821657736338717ull;
}

/* A live task's id picked at random, or 0. */
static uint64_t pick_task(const struct nd_ledger *l)
{
	uint64_t k;
	const struct nd_list *it;

	if (!l->ntasks)
		return 0;
	k = rnd() % l->ntasks;
	for (it = l->all.next; k--; it = it->next)
		;
	return nd_container_of(it, struct nd_ltask, all_link)->id;
}

/*
 * Packs one valid (or, now and then, refused) random event for l into
 * *out (malloc'd) and returns its length, or 0 when it drew nothing.
 */
static size_t random_event(const struct nd_ledger *l, uint8_t **out)
{
	static const char *const nodes[] = { "n1", "n2", "n3", "n4" };
	static const char *const words[] = { "", "a\n", "hello world\n",
					     "\xff\xfe binary", "0123456789" };
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerSubmit s = NODED__LEDGER_SUBMIT__INIT;
	Noded__LedgerAssign a = NODED__LEDGER_ASSIGN__INIT;
	Noded__LedgerStarted st = NODED__LEDGER_STARTED__INIT;
	Noded__LedgerOutput o = NODED__LEDGER_OUTPUT__INIT;
	Noded__LedgerEnded e = NODED__LEDGER_ENDED__INIT;
	Noded__LedgerCancel c = NODED__LEDGER_CANCEL__INIT;
	Noded__LedgerRetried r = NODED__LEDGER_RETRIED__INIT;
	Noded__LedgerLost lo = NODED__LEDGER_LOST__INIT;
	Noded__LedgerEvict ev_ = NODED__LEDGER_EVICT__INIT;
	uint64_t id = pick_task(l);
	const struct nd_ltask *t = id ? nd_ledger_get(l, id) : NULL;
	uint32_t attempt = t ? t->attempt : 1;
	unsigned kind = (unsigned)(rnd() % 10);
	size_t len;

	if (!t || kind == 0 || l->ntasks < 4) {
		s.task_id = l->next_id + 1 + rnd() % 3;
		s.job_id = rnd() % 4 ? 0 : s.task_id;
		s.spec.data = (uint8_t *)SPEC;
		s.spec.len = sizeof(SPEC);
		s.n_nodes = s.job_id ? 1 + rnd() % 4 :
					rnd() % 3 == 0 ? 1 : 0;
		s.nodes = (char **)nodes;
		/* now and then more retries than the history keeps */
		s.retries = (uint32_t)(rnd() % 8 ? rnd() % 3 : 40);
		s.output_cap_bytes = rnd() % 2 ? 16 : 1024;
		s.unix_ms = rnd() % 100000;
		ev.body_case = NODED__LEDGER_EVENT__BODY_SUBMIT;
		ev.submit = &s;
	} else if (kind == 1 || kind == 2) {
		a.task_id = id;
		a.attempt = attempt;
		a.node = t->target_node ? t->target_node :
					  (char *)nodes[rnd() % 4];
		a.unix_ms = rnd() % 100000;
		ev.body_case = NODED__LEDGER_EVENT__BODY_ASSIGN;
		ev.assign = &a;
	} else if (kind == 3) {
		st.task_id = id;
		st.attempt = attempt;
		st.start_unix_ms = rnd() % 100000;
		ev.body_case = NODED__LEDGER_EVENT__BODY_STARTED;
		ev.started = &st;
	} else if (kind == 4) {
		const char *w = words[rnd() % 5];

		o.task_id = id;
		o.attempt = attempt;
		o.fd = 1 + (uint32_t)(rnd() % 2);
		o.data.data = (uint8_t *)w;
		o.data.len = strlen(w);
		ev.body_case = NODED__LEDGER_EVENT__BODY_OUTPUT;
		ev.output = &o;
	} else if (kind == 5) {
		e.task_id = id;
		e.attempt = attempt - (rnd() % 8 == 0); /* now and then stale */
		e.state = NODED__TASK_STATE__TASK_SUCCEEDED + rnd() % 4;
		e.exit_code = (int32_t)(rnd() % 3);
		e.reason = rnd() % 2 ? "" : "done";
		e.unix_ms = rnd() % 100000;
		e.max_rss_kib = rnd() % 5000;
		ev.body_case = NODED__LEDGER_EVENT__BODY_ENDED;
		ev.ended = &e;
	} else if (kind == 6) {
		c.task_id = id;
		if (rnd() % 2) { /* the system stops the attempt (a drain) */
			c.attempt = attempt - (rnd() % 8 == 0);
			c.stop_reason = "stopped at the drain deadline";
		}
		ev.body_case = NODED__LEDGER_EVENT__BODY_CANCEL;
		ev.cancel = &c;
	} else if (kind == 7) {
		r.task_id = id;
		r.attempt = attempt;
		r.reason = rnd() % 2 ? "" : "node died";
		r.unix_ms = rnd() % 100000;
		ev.body_case = NODED__LEDGER_EVENT__BODY_RETRIED;
		ev.retried = &r;
	} else if (kind == 8) {
		lo.task_id = id;
		lo.attempt = attempt;
		lo.reason = "node left";
		lo.unix_ms = rnd() % 100000;
		ev.body_case = NODED__LEDGER_EVENT__BODY_LOST;
		ev.lost = &lo;
	} else {
		ev_.task_id = id;
		ev.body_case = NODED__LEDGER_EVENT__BODY_EVICT;
		ev.evict = &ev_;
	}
	len = noded__ledger_event__get_packed_size(&ev);
	*out = malloc(len);
	cr_assert(*out);
	noded__ledger_event__pack(&ev, *out);
	return len;
}

/* Applies a packed event to l: the ledger's result. */
static int apply_packed(struct nd_ledger *l, const uint8_t *p, size_t len)
{
	Noded__LedgerEvent *ev = noded__ledger_event__unpack(NULL, len, p);
	int rc;

	cr_assert(ev, "a recorded event does not decode");
	rc = nd_ledger_apply(l, ev, NULL);
	noded__ledger_event__free_unpacked(ev, NULL);
	return rc;
}

/* A recorded run: the packed events in order. */
struct run {
	uint8_t **ev;
	size_t *len;
	size_t n;
};

static void run_free(struct run *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->ev[i]);
	free(r->ev);
	free(r->len);
}

/* n random events applied to L (invariants checked after each), each
 * recorded in r; returns how many applied. */
static size_t random_run(uint64_t seed, size_t n, struct run *r)
{
	size_t applied = 0;

	rnd_state = seed;
	r->ev = calloc(n, sizeof(*r->ev));
	r->len = calloc(n, sizeof(*r->len));
	r->n = 0;
	cr_assert(r->ev && r->len);
	for (size_t i = 0; i < n; i++) {
		r->len[i] = random_event(&L, &r->ev[i]);
		r->n++;
		if (apply_packed(&L, r->ev[i], r->len[i]) == 0)
			applied++;
		check_invariants(&L);
	}
	return applied;
}

Test(ledger, replay_gives_a_byte_identical_snapshot)
{
	for (uint64_t seed = 1; seed <= 8; seed++) {
		struct nd_ledger fresh;
		struct run r;
		uint8_t *a, *b;
		size_t alen, blen, applied;

		nd_ledger_free(&L);
		applied = random_run(seed * 7919, 3000, &r);
		cr_assert_gt(applied, 1000, "seed %llu: only %zu of 3000 "
			     "events applied", (unsigned long long)seed,
			     applied);
		cr_assert_gt(L.ended[NODED__TASK_STATE__TASK_LOST] +
			     L.ended[NODED__TASK_STATE__TASK_SUCCEEDED], 0);
		nd_ledger_init(&fresh, 0);
		for (size_t i = 0; i < r.n; i++)
			apply_packed(&fresh, r.ev[i], r.len[i]);
		a = snap(&L, &alen);
		b = snap(&fresh, &blen);
		cr_assert(same_snap(a, alen, b, blen),
			  "seed %llu: replay differs (%zu vs %zu bytes)",
			  (unsigned long long)seed, alen, blen);
		free(a);
		free(b);
		nd_ledger_free(&fresh);
		run_free(&r);
	}
}

Test(ledger, restore_gives_back_the_same_ledger)
{
	struct nd_ledger fresh;
	struct run r;
	uint8_t *a, *b, *c;
	size_t alen, blen, clen;

	random_run(42, 4000, &r);
	a = snap(&L, &alen);
	nd_ledger_init(&fresh, 0);
	cr_assert_eq(nd_ledger_restore(&fresh, a, alen), 0);
	check_invariants(&fresh);
	b = snap(&fresh, &blen);
	cr_assert(same_snap(a, alen, b, blen), "restore, then snapshot: "
		  "%zu bytes, not the %zu restored", blen, alen);
	/* and it goes on the same way: the same events give the same state */
	rnd_state = 4242;
	for (int i = 0; i < 1000; i++) {
		uint8_t *ev;
		size_t len = random_event(&L, &ev);

		cr_assert_eq(apply_packed(&L, ev, len),
			     apply_packed(&fresh, ev, len));
		free(ev);
	}
	free(b);
	b = snap(&L, &blen);
	c = snap(&fresh, &clen);
	cr_assert(same_snap(b, blen, c, clen));
	free(a);
	free(b);
	free(c);
	nd_ledger_free(&fresh);
	run_free(&r);
}

Test(ledger, restore_refuses_a_bad_snapshot_and_keeps_what_it_had)
{
	static const uint8_t junk[] = { 0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01 };
	Noded__LedgerSnapshot s = NODED__LEDGER_SNAPSHOT__INIT;
	Noded__LedgerTask t1 = NODED__LEDGER_TASK__INIT;
	Noded__LedgerTask t2 = NODED__LEDGER_TASK__INIT;
	Noded__LedgerTask *ts[] = { &t1, &t2 };
	uint8_t buf[256];
	size_t len;

	cr_assert_eq(submit(5, 0, NULL, 0, 0, 100), 0);
	REFUSED(-EINVAL, nd_ledger_restore(&L, junk, sizeof(junk)));
	/* two tasks with one id */
	t1.id = t2.id = 3;
	t1.state = t2.state = NODED__TASK_STATE__TASK_PENDING;
	t1.attempt = t2.attempt = 1;
	s.tasks = ts;
	s.n_tasks = 2;
	s.next_id = 10;
	len = noded__ledger_snapshot__pack(&s, buf);
	REFUSED(-EINVAL, nd_ledger_restore(&L, buf, len));
	/* an id at or past next_id */
	t2.id = 12;
	len = noded__ledger_snapshot__pack(&s, buf);
	REFUSED(-EINVAL, nd_ledger_restore(&L, buf, len));
	/* an ended task with no place in the end order */
	t2.id = 4;
	t2.state = NODED__TASK_STATE__TASK_SUCCEEDED;
	len = noded__ledger_snapshot__pack(&s, buf);
	REFUSED(-EINVAL, nd_ledger_restore(&L, buf, len));
	/* no state */
	t2.state = 0;
	len = noded__ledger_snapshot__pack(&s, buf);
	REFUSED(-EINVAL, nd_ledger_restore(&L, buf, len));
	/* running, but on no node */
	t2.state = NODED__TASK_STATE__TASK_RUNNING;
	len = noded__ledger_snapshot__pack(&s, buf);
	REFUSED(-EINVAL, nd_ledger_restore(&L, buf, len));
	/* for node a, running on b */
	t2.target_node = "a";
	t2.node = "b";
	len = noded__ledger_snapshot__pack(&s, buf);
	REFUSED(-EINVAL, nd_ledger_restore(&L, buf, len));
	t2.node = "a";
	len = noded__ledger_snapshot__pack(&s, buf);
	/* running, its attempt not in its history */
	REFUSED(-EINVAL, nd_ledger_restore(&L, buf, len));
	{
		Noded__TaskAttempt a1 = NODED__TASK_ATTEMPT__INIT;
		Noded__TaskAttempt *as[] = { &a1 };

		a1.attempt = 1;
		a1.node = "b";
		a1.state = NODED__TASK_STATE__TASK_RUNNING;
		t2.attempts = as;
		t2.n_attempts = 1;
		len = noded__ledger_snapshot__pack(&s, buf);
		/* on another node than the task */
		REFUSED(-EINVAL, nd_ledger_restore(&L, buf, len));
		a1.node = "a";
		a1.attempt = 2;
		len = noded__ledger_snapshot__pack(&s, buf);
		/* an attempt past the task's */
		REFUSED(-EINVAL, nd_ledger_restore(&L, buf, len));
		a1.attempt = 1;
		len = noded__ledger_snapshot__pack(&s, buf);
		cr_assert(len <= sizeof(buf));
	}
	cr_assert_eq(nd_ledger_restore(&L, buf, len), 0);
	cr_assert_eq(L.ntasks, 2);
	cr_assert_null(nd_ledger_get(&L, 5));
	check_invariants(&L);
}

/* ---- out of memory ---- */

/*
 * Runs call with its 1st, 2nd, ... allocation failing until it makes no
 * more, each time on the ledger as it was before (restored from its
 * snapshot). A run whose failed allocation the call needed must return
 * -ENOMEM and leave the ledger as it was; one that could do without it
 * (giving back spare memory) must give what a run with no failure gives.
 */
#define OOM_EACH(call)                                                       \
	do {                                                                 \
		size_t blen_, alen_, rlen_;                                  \
		uint8_t *b_ = snap(&L, &blen_), *a_, *r_;                    \
		long n_;                                                     \
		int rc_;                                                     \
		cr_assert_eq((call), 0, "%s", #call);                        \
		r_ = snap(&L, &rlen_);                                       \
		for (n_ = 1;; n_++) {                                        \
			cr_assert_eq(nd_ledger_restore(&L, b_, blen_), 0);   \
			nd_alloc_fail_at(n_);                                \
			rc_ = (call);                                        \
			if (!nd_alloc_fail_off())                            \
				break;                                       \
			cr_assert(rc_ == -ENOMEM || rc_ == 0, "%s with "     \
				  "allocation %ld failing: %d", #call, n_,   \
				  rc_);                                      \
			a_ = snap(&L, &alen_);                               \
			cr_assert(rc_ ? same_snap(b_, blen_, a_, alen_) :    \
					same_snap(r_, rlen_, a_, alen_),     \
				  "%s with allocation %ld failing (%d) left " \
				  "the ledger changed", #call, n_, rc_);     \
			free(a_);                                            \
			check_invariants(&L);                                \
		}                                                            \
		cr_assert_eq(rc_, 0, "%s: %d", #call, rc_);                  \
		cr_assert_gt(n_, 1, "%s allocated nothing", #call);          \
		free(b_);                                                    \
		free(r_);                                                    \
	} while (0)

Test(ledger, out_of_memory_in_any_event_changes_nothing)
{
	const char *nodes[] = { "a", "b", "c", "d", "e" };

	/* enough tasks that the id map has to grow within the fan-out */
	for (uint64_t id = 1; id <= 12; id++)
		cr_assert_eq(submit(id, 0, NULL, 0, 0, 100), 0);
	OOM_EACH(submit(20, 20, nodes, 5, 0, 100));
	OOM_EACH(submit(30, 0, NULL, 0, 1, 100));
	OOM_EACH(assign(30, 1, "w1"));
	OOM_EACH(output(30, 1, 1, "some output"));
	OOM_EACH(ended(30, 1, NODED__TASK_STATE__TASK_FAILED, 1, "it failed"));
	OOM_EACH(lost(21, 1, "node b died"));
	/* the history: a new attempt, its retry, output of the next one */
	OOM_EACH(submit(40, 0, NULL, 0, 2, 100));
	OOM_EACH(assign(40, 1, "w1"));
	cr_assert_eq(started(40, 1), 0); /* takes no memory */
	OOM_EACH(retried(40, 1));
	OOM_EACH(assign(40, 2, "w2"));
	/* the first output, of attempt 2: its marker, then it */
	OOM_EACH(output(40, 2, 1, "second"));
	OOM_EACH(lost(40, 2, "node w2 died"));
	cr_assert_eq(T(40)->nattempts, 2);
	check_invariants(&L);
}

Test(ledger, out_of_memory_in_snapshot_and_restore)
{
	struct nd_ledger fresh;
	struct run r;
	uint8_t *a, *p = NULL;
	size_t alen, len = 0;
	long n;
	int rc;

	random_run(7, 300, &r);
	a = snap(&L, &alen);
	for (n = 1;; n++) {
		nd_alloc_fail_at(n);
		rc = nd_ledger_snapshot(&L, &p, &len);
		if (!nd_alloc_fail_off())
			break;
		cr_assert_eq(rc, -ENOMEM);
		cr_assert_null(p);
	}
	cr_assert_eq(rc, 0);
	cr_assert(same_snap(a, alen, p, len));
	free(p);
	/* restore into a ledger that has something: it keeps it on failure */
	nd_ledger_init(&fresh, 0);
	for (n = 1;; n++) {
		Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
		Noded__LedgerSubmit s = NODED__LEDGER_SUBMIT__INIT;

		if (!fresh.ntasks) {
			s.task_id = 1;
			s.spec.data = (uint8_t *)SPEC;
			s.spec.len = sizeof(SPEC);
			ev.body_case = NODED__LEDGER_EVENT__BODY_SUBMIT;
			ev.submit = &s;
			cr_assert_eq(nd_ledger_apply(&fresh, &ev, NULL), 0);
		}
		nd_alloc_fail_at(n);
		rc = nd_ledger_restore(&fresh, a, alen);
		if (!nd_alloc_fail_off())
			break;
		/* protobuf-c cannot tell a failed allocation from bad input */
		cr_assert(rc == -ENOMEM || rc == -EINVAL, "restore: %d", rc);
		cr_assert_eq(fresh.ntasks, 1, "a failed restore kept the old");
		cr_assert_not_null(nd_ledger_get(&fresh, 1));
	}
	cr_assert_eq(rc, 0);
	p = snap(&fresh, &len);
	cr_assert(same_snap(a, alen, p, len));
	free(p);
	free(a);
	nd_ledger_free(&fresh);
	run_free(&r);
}

/* ---- a real master's trace ---- */

/* `noded ARGS...` against master; its exit status. */
static int cli(const char *master, const char *const *args, char *out,
	       size_t out_size)
{
	const char *argv[24];
	char err[4096];
	int n = 0, st;

	argv[n++] = nd_test_bin();
	argv[n++] = args[0];
	argv[n++] = "--master";
	argv[n++] = master;
	for (int i = 1; args[i] && n < 23; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	st = nd_test_run(argv, out, out_size, err, sizeof(err), 30000);
	cr_assert_geq(st, 0, "%s: %s", args[0], nd_test_why);
	return st;
}

/* The whole file at path (malloc'd, *len). */
static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat sb;
	uint8_t *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(fstat(fd, &sb), 0);
	p = malloc((size_t)sb.st_size + 1);
	cr_assert(p);
	cr_assert_eq(read(fd, p, (size_t)sb.st_size), sb.st_size);
	close(fd);
	*len = (size_t)sb.st_size;
	return p;
}

Test(ledger, a_masters_trace_replays_to_its_snapshot)
{
	char dir[] = "/tmp/nd-ledger-XXXXXX", path[96], snap_path[128],
	     master[32], out[8192];
	const char *margs[] = { "--task-history", "4", "--output-cap", "64",
				"--ledger-trace", path, NULL };
	const char *wargv[] = { nd_test_bin(), "worker", "--master", master,
				"--name", "w1", "--slots", "2", NULL };
	const char *ok[] = { "run", "--node", "w1", "--wait-for-node", "--",
			     "sh", "-c", "echo hello; echo to-stderr >&2",
			     NULL };
	const char *fails[] = { "run", "--node", "w1", "--", "sh", "-c",
				"exit 3", NULL };
	const char *big[] = { "run", "--node", "w1", "--", "sh", "-c",
			      "seq 1 1000", NULL };
	const char *sleeper[] = { "submit", "--node", "w1", "--", "sleep",
				  "30", NULL };
	const char *queued[] = { "submit", "--label", "nobody=here",
				 "--wait-for-node", "--", "true", NULL };
	struct nd_test_daemon d = { 0 };
	struct nd_ledger fresh;
	uint8_t *trace, *want, *got;
	size_t tlen, wlen, glen, off = 0, events = 0;
	pid_t worker;
	char id[32];
	const char *cancel_args[] = { "cancel", id, NULL };

	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/trace", dir);
	snprintf(snap_path, sizeof(snap_path), "%s.snapshot", path);
	cr_assert_eq(nd_test_daemon_start(&d, margs), 0, "%s", nd_test_why);
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	worker = nd_test_spawn(wargv, -1, -1, -1);
	cr_assert_gt(worker, 0);
	cr_assert_eq(cli(master, ok, out, sizeof(out)), 0, "%s", out);
	cr_assert_eq(cli(master, fails, out, sizeof(out)), 3);
	cr_assert_eq(cli(master, big, out, sizeof(out)), 0);
	for (int i = 0; i < 4; i++) /* past --task-history: evictions */
		cr_assert_eq(cli(master, ok, out, sizeof(out)), 0);
	cr_assert_eq(cli(master, sleeper, out, sizeof(out)), 0);
	snprintf(id, sizeof(id), "%llu", strtoull(out, NULL, 10));
	cr_assert_eq(cli(master, cancel_args, out, sizeof(out)), 0);
	cr_assert_eq(cli(master, queued, out, sizeof(out)), 0);
	cr_assert_eq(nd_test_daemon_stop(&d), 0);
	nd_test_kill_pid(worker);

	trace = slurp(path, &tlen);
	want = slurp(snap_path, &wlen);
	nd_ledger_init(&fresh, 0);
	while (off + 4 <= tlen) {
		size_t len = (size_t)trace[off] | (size_t)trace[off + 1] << 8 |
			     (size_t)trace[off + 2] << 16 |
			     (size_t)trace[off + 3] << 24;

		cr_assert_leq(off + 4 + len, tlen, "a torn trace record");
		cr_assert_eq(apply_packed(&fresh, trace + off + 4, len), 0,
			     "event %zu of the trace does not apply", events);
		off += 4 + len;
		events++;
	}
	cr_assert_eq(off, tlen);
	cr_assert_gt(events, 30, "only %zu events traced", events);
	cr_assert_gt(fresh.ended[NODED__TASK_STATE__TASK_CANCELLED], 0);
	cr_assert_gt(fresh.ended[NODED__TASK_STATE__TASK_FAILED], 0);
	cr_assert_eq(fresh.ntasks, 4 + 1, "4 kept, 1 waiting");
	check_invariants(&fresh);
	got = snap(&fresh, &glen);
	cr_assert(same_snap(want, wlen, got, glen), "the replayed trace "
		  "gives %zu snapshot bytes, the master wrote %zu", glen, wlen);
	free(got);
	free(want);
	free(trace);
	nd_ledger_free(&fresh);
	unlink(snap_path);
	unlink(path);
	rmdir(dir);
}

/* ---- client sessions and members (replication) ---- */

static int submit_in(uint64_t id, uint64_t session, uint64_t seq)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerSubmit e = NODED__LEDGER_SUBMIT__INIT;

	e.task_id = id;
	e.spec.data = (uint8_t *)SPEC;
	e.spec.len = sizeof(SPEC);
	e.session = session;
	e.sequence = seq;
	ev.body_case = NODED__LEDGER_EVENT__BODY_SUBMIT;
	ev.submit = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

static int member(uint64_t id, const char *raft, const char *client,
		  bool remove)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerMember e = NODED__LEDGER_MEMBER__INIT;
	Noded__RaftMember m = NODED__RAFT_MEMBER__INIT;

	m.id = id;
	m.raft_address = (char *)raft;
	m.client_address = (char *)client;
	e.member = &m;
	e.remove = remove;
	ev.body_case = NODED__LEDGER_EVENT__BODY_MEMBER;
	ev.member = &e;
	return nd_ledger_apply(&L, &ev, NULL);
}

/* A session's submit is made once; the table survives a snapshot and a
 * restore, and keeps the last ND_LEDGER_SESSIONS sessions. */
Test(ledger, a_session_submits_once_and_is_kept)
{
	const struct nd_lsession *s;
	struct nd_ledger fresh;
	uint8_t *a, *b;
	size_t alen, blen;

	cr_assert_eq(submit_in(1, 77, 1), 0);
	cr_assert_eq(submit_in(2, 77, 1), -EALREADY);
	cr_assert_eq(L.ntasks, 1);
	s = nd_ledger_session(&L, 77);
	cr_assert(s && s->sequence == 1 && s->task_id == 1 && s->tasks == 1);
	cr_assert_eq(submit_in(2, 77, 2), 0);
	cr_assert_eq(nd_ledger_session(&L, 77)->task_id, 2);
	for (uint64_t i = 0; i < ND_LEDGER_SESSIONS; i++)
		cr_assert_eq(submit_in(3 + i, 1000 + i, 1), 0);
	/* the oldest (77) went with the one past the bound */
	cr_assert_null(nd_ledger_session(&L, 77));
	cr_assert_not_null(nd_ledger_session(&L, 1000));
	a = snap(&L, &alen);
	nd_ledger_init(&fresh, 0);
	cr_assert_eq(nd_ledger_restore(&fresh, a, alen), 0);
	b = snap(&fresh, &blen);
	cr_assert(same_snap(a, alen, b, blen));
	cr_assert_eq(nd_ledger_session(&fresh, 1000)->task_id, 3);
	free(a);
	free(b);
	nd_ledger_free(&fresh);
}

Test(ledger, members_are_added_replaced_and_removed)
{
	struct nd_ledger fresh;
	uint8_t *a;
	size_t alen;

	cr_assert_eq(member(0, "127.0.0.1:1", "", false), -EINVAL);
	cr_assert_eq(member(5, "", "", false), -EINVAL);
	cr_assert_eq(member(5, "127.0.0.1:1", "127.0.0.1:2", false), 0);
	cr_assert_eq(member(6, "127.0.0.1:3", "127.0.0.1:4", false), 0);
	cr_assert_eq(member(5, "127.0.0.1:1", "127.0.0.1:9", false), 0);
	cr_assert_eq(L.nmembers, 2);
	cr_assert_str_eq(nd_ledger_member(&L, 5)->client, "127.0.0.1:9");
	a = snap(&L, &alen);
	nd_ledger_init(&fresh, 0);
	cr_assert_eq(nd_ledger_restore(&fresh, a, alen), 0);
	cr_assert_str_eq(nd_ledger_member(&fresh, 6)->raft, "127.0.0.1:3");
	cr_assert_eq(member(7, "x", "", true), -ENOENT);
	cr_assert_eq(member(5, "", "", true), 0);
	cr_assert_null(nd_ledger_member(&L, 5));
	cr_assert_eq(L.nmembers, 1);
	free(a);
	nd_ledger_free(&fresh);
}
