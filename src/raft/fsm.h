/*
 * The Raft state machine (fsm.c): the task ledger (state/ledger.h), each
 * log entry a RaftEntry (proto) of ledger events applied in order, its
 * snapshot the ledger's snapshot. Pure: no I/O beyond what libraft hands
 * it, so libraft's in-memory test fixture drives it as the raft shard does
 * (tests/raft/test_fsm.c).
 */
#ifndef ND_RAFT_FSM_H
#define ND_RAFT_FSM_H

#include <stdatomic.h>
#include <stdint.h>

#include <raft.h>

#include "state/ledger.h"

struct nd_fsm {
	struct raft_fsm fsm;          /* for raft_init (data: this) */
	struct nd_ledger ledger;      /* the committed state */
	_Atomic uint64_t entries;     /* applied */
	_Atomic uint64_t snapshots;   /* taken */
	_Atomic uint64_t restores;
	/* After each entry applied (NULL: nothing): the raft shard sends it
	 * on to shard 0 on a follower, which keeps its copy current. */
	void (*applied)(struct nd_fsm *f, const struct raft_buffer *buf);
};

void nd_fsm_init(struct nd_fsm *f);
void nd_fsm_close(struct nd_fsm *f);

#endif
