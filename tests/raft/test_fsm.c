/*
 * The Raft state machine (src/raft/fsm.c) under libraft's own in-memory
 * test fixture: three servers, each with its own ledger, driven step by
 * step (no sockets, no disk, no clock: deterministic). Checks that every
 * server's ledger ends byte-identical (its snapshot) and holds exactly
 * the committed entries, through a leader cut off from the others (its
 * proposals there are never applied), and through a server that missed so
 * much that it catches up from a snapshot (the FSM's restore).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <raft.h>
#include <raft/fixture.h>

#include "raft/fsm.h"

#define N 3

static struct raft_fixture F;
static struct nd_fsm fsm[N];
static const uint8_t SPEC[] = { 0x12, 0x04, 't', 'r', 'u', 'e' };

static void setup(void)
{
	struct raft_configuration conf;

	cr_assert_eq(raft_fixture_initialize(&F), 0);
	for (unsigned i = 0; i < N; i++) {
		nd_fsm_init(&fsm[i]);
		cr_assert_eq(raft_fixture_grow(&F, &fsm[i].fsm), 0);
		/* the fixture traces every step to stderr: quiet */
		raft_fixture_get(&F, i)->tracer = NULL;
	}
	cr_assert_eq(raft_fixture_configuration(&F, N, &conf), 0);
	cr_assert_eq(raft_fixture_bootstrap(&F, &conf), 0);
	raft_configuration_close(&conf);
	cr_assert_eq(raft_fixture_start(&F), 0);
	cr_assert(raft_fixture_step_until_has_leader(&F, 10000));
}

static void teardown(void)
{
	raft_fixture_close(&F);
	for (unsigned i = 0; i < N; i++)
		nd_fsm_close(&fsm[i]);
}

TestSuite(fsm, .init = setup, .fini = teardown, .timeout = 60);

/* A RaftEntry holding one submit of task id (raft_malloc'd, its length a
 * multiple of 8 as libraft's log wants: RaftEntry.pad fills it up). */
static struct raft_buffer entry(uint64_t id)
{
	Noded__RaftEntry e = NODED__RAFT_ENTRY__INIT;
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT, *evs[1] = { &ev };
	Noded__LedgerSubmit s = NODED__LEDGER_SUBMIT__INIT;
	static uint8_t zeros[16];
	struct raft_buffer b;
	size_t len;

	s.task_id = id;
	s.spec.data = (uint8_t *)SPEC;
	s.spec.len = sizeof(SPEC);
	s.unix_ms = 1000 + id;
	ev.body_case = NODED__LEDGER_EVENT__BODY_SUBMIT;
	ev.submit = &s;
	e.n_events = 1;
	e.events = evs;
	len = noded__raft_entry__get_packed_size(&e);
	/* a pad field is 2 bytes and its zeros */
	e.pad.data = zeros;
	e.pad.len = (8 - (len + 2) % 8) % 8;
	len = noded__raft_entry__get_packed_size(&e);
	cr_assert_eq(len % 8, 0);
	b.base = raft_malloc(len);
	b.len = len;
	noded__raft_entry__pack(&e, b.base);
	return b;
}

static void applied_cb(struct raft_apply *req, int status, void *result)
{
	*(int *)req->data = status;
}

/* Proposes a submit of id on server i; the request (caller frees). */
static struct raft_apply *propose(unsigned i, uint64_t id, int *status)
{
	struct raft_apply *req = calloc(1, sizeof(*req));
	struct raft_buffer b = entry(id);

	*status = 1; /* not yet */
	req->data = status;
	cr_assert_eq(raft_apply(raft_fixture_get(&F, i), req, &b, 1,
				applied_cb), 0);
	return req;
}

static uint8_t *snap(unsigned i, size_t *len)
{
	uint8_t *p;

	cr_assert_eq(nd_ledger_snapshot(&fsm[i].ledger, &p, len), 0);
	return p;
}

static void all_same(void)
{
	size_t len0, len;
	uint8_t *s0 = snap(0, &len0);

	for (unsigned i = 1; i < N; i++) {
		uint8_t *s = snap(i, &len);

		cr_assert(len == len0 && !memcmp(s, s0, len), "server %u's "
			  "ledger (%zu bytes) is not server 0's (%zu)", i, len,
			  len0);
		free(s);
	}
	free(s0);
}

static raft_index last_index(unsigned i)
{
	return raft_last_index(raft_fixture_get(&F, i));
}

/* Does a server other than *arg lead? */
static bool other_leads(struct raft_fixture *f, void *arg)
{
	unsigned not = *(unsigned *)arg;

	for (unsigned i = 0; i < N; i++)
		if (i != not &&
		    raft_state(raft_fixture_get(f, i)) == RAFT_LEADER)
			return true;
	return false;
}

Test(fsm, a_cut_off_leaders_proposals_are_never_applied)
{
	unsigned lead = raft_fixture_leader_index(&F), next;
	int st[40], lost[5];
	struct raft_apply *reqs[45];
	uint64_t id = 1;

	for (int k = 0; k < 20; k++)
		reqs[k] = propose(lead, id++, &st[k]);
	cr_assert(raft_fixture_step_until_applied(&F, N, last_index(lead),
						  10000));
	for (int k = 0; k < 20; k++)
		cr_assert_eq(st[k], 0);
	/* cut the leader off; it takes 5 more that cannot commit */
	for (unsigned j = 0; j < N; j++)
		if (j != lead) {
			raft_fixture_disconnect(&F, lead, j);
			raft_fixture_disconnect(&F, j, lead);
		}
	for (int k = 0; k < 5; k++)
		reqs[40 + k] = propose(lead, 1000 + (uint64_t)k, &lost[k]);
	/* the other two elect one of them and go on */
	cr_assert(raft_fixture_step_until_state_is(&F, lead, RAFT_FOLLOWER,
						   10000) ||
		  raft_state(raft_fixture_get(&F, lead)) == RAFT_CANDIDATE);
	cr_assert(raft_fixture_step_until(&F, other_leads, &lead, 20000),
		  "the two others elected no leader");
	for (next = 0; next < N; next++)
		if (next != lead &&
		    raft_state(raft_fixture_get(&F, next)) == RAFT_LEADER)
			break;
	for (int k = 20; k < 40; k++)
		reqs[k] = propose(next, id++, &st[k]);
	cr_assert(raft_fixture_step_until_applied(&F, next, last_index(next),
						  10000));
	for (unsigned j = 0; j < N; j++)
		if (j != lead) {
			raft_fixture_reconnect(&F, lead, j);
			raft_fixture_reconnect(&F, j, lead);
		}
	cr_assert(raft_fixture_step_until_applied(&F, N, last_index(next),
						  20000));
	for (int k = 0; k < 5; k++)
		cr_assert_neq(lost[k], 0, "a cut-off leader's entry was "
			      "reported applied");
	for (int k = 20; k < 40; k++)
		cr_assert_eq(st[k], 0);
	all_same();
	/* exactly the committed: 40 tasks, none of the cut-off 1000.. */
	cr_assert_eq(fsm[lead].ledger.ntasks, 40);
	cr_assert_null(nd_ledger_get(&fsm[lead].ledger, 1000));
	for (int k = 0; k < 45; k++)
		free(reqs[k]);
}

Test(fsm, a_server_far_behind_catches_up_from_a_snapshot)
{
	unsigned lead = raft_fixture_leader_index(&F),
		 late = (lead + 1) % N;
	int st[100];
	struct raft_apply *reqs[100];

	for (unsigned i = 0; i < N; i++) {
		raft_set_snapshot_threshold(raft_fixture_get(&F, i), 16);
		raft_set_snapshot_trailing(raft_fixture_get(&F, i), 4);
	}
	raft_fixture_kill(&F, late);
	for (int k = 0; k < 100; k++) {
		reqs[k] = propose(lead, (uint64_t)k + 1, &st[k]);
		raft_fixture_step_n(&F, 3);
	}
	cr_assert(raft_fixture_step_until_applied(&F, lead, last_index(lead),
						  20000));
	cr_assert(atomic_load(&fsm[lead].snapshots) > 0, "no snapshot taken");
	raft_fixture_revive(&F, late);
	cr_assert(raft_fixture_step_until_applied(&F, N, last_index(lead),
						  30000));
	cr_assert(atomic_load(&fsm[late].restores) > 0,
		  "it caught up without a snapshot");
	all_same();
	cr_assert_eq(fsm[late].ledger.ntasks, 100);
	for (int k = 0; k < 100; k++)
		free(reqs[k]);
}
