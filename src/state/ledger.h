/*
 * The task ledger: the master's task table as a pure state machine. No I/O,
 * no clock, no randomness, no shard or connection: every change to a task is
 * one typed event (proto/noded.proto, LedgerEvent), applied in order by
 * nd_ledger_apply(). Times, ids and nodes are fields of the event, decided
 * by the caller before it applies it. The same events in the same order give
 * the same ledger, and nd_ledger_snapshot() the same bytes, anywhere: that
 * is what lets a consensus log drive it, and what tests/state checks.
 *
 * Who reacts: the node service (src/node/) decides (the scheduler picks a
 * node, a worker's report becomes started/output/ended, retention picks
 * what to evict), applies the event, and only then acts on what was applied
 * (pushes the assignment, tells watchers, answers cancels).
 *
 * Events, and what each may change (anything else: refused, nothing
 * changed):
 *   submit   new tasks, PENDING, attempt 1: one per node named, or one with
 *            no node. Ids must be above every id the ledger has seen (ids
 *            are never reused), consecutive from task_id. With a client
 *            session, that session's last submit is recorded (sequence,
 *            tasks): a submit is made once per session and sequence (the
 *            caller checks nd_ledger_session first). The last
 *            ND_LEDGER_SESSIONS sessions are kept, the oldest dropped.
 *   assign   PENDING -> ASSIGNED on a node; the attempt must be the task's,
 *            and a task for a named node goes only there. Adds the
 *            attempt to the task's history (below).
 *   started  ASSIGNED or RUNNING -> RUNNING; the start time.
 *   output   ASSIGNED or RUNNING -> RUNNING; output counted, and kept up to
 *            the task's cap (past it: truncated), marked with its attempt.
 *   ended    not ended -> SUCCEEDED, FAILED, TIMED_OUT or CANCELLED, with
 *            its result (exit, signal, reason, times, usage).
 *   cancel   not ended: cancel_requested. With a stop_reason (the system
 *            stops an attempt: an operator's drain deadline), ASSIGNED or
 *            RUNNING, of the attempt named: stop_reason kept until the
 *            attempt is over (retried or ended).
 *   retried  ASSIGNED or RUNNING with retries left -> PENDING, attempt + 1,
 *            one retry fewer. Its node stays as where it last ran; the
 *            attempt that ran there ends LOST in the history, with why.
 *   lost     not ended -> LOST, with why.
 *   evict    ended -> gone (its output with it).
 *   cluster  the cluster's id, once: nonzero, refused (-EEXIST) when one
 *            is set. It names no task.
 *   member   a master's addresses, added or replaced by its id (nonzero,
 *            with a Raft address), or removed (-ENOENT: unknown). It
 *            names no task.
 * started, output, ended, retried and lost name an attempt: an event for
 * another attempt than the task's is refused (-ESTALE), so a late report
 * of an old attempt never changes the task.
 *
 * Invariants (tests/state/test_ledger.c checks them after every event):
 * - A task reaches exactly one final state (SUCCEEDED, FAILED, TIMED_OUT,
 *   CANCELLED, LOST), and after it only evict applies.
 * - A task is on at most one node: node is set from assign on, and a task
 *   ASSIGNED or RUNNING runs on that node only. A task for a named node is
 *   assigned only there.
 * - Slots: the ledger does not know a node's slots (the registry does, in
 *   memory); the scheduler assigns a task only to a node with a free slot,
 *   counting the ASSIGNED and RUNNING tasks the ledger puts on it
 *   (tests/node/test_scheduler.c).
 * - count[st] is the number of tasks in state st; kept_bytes the output
 *   kept by all; done lists exactly the ended tasks, in the order they
 *   ended; all lists every task, in the order submitted.
 * - History: attempts[] holds the task's attempts that reached a node (an
 *   assign each), oldest first, attempt numbers rising, none above the
 *   task's attempt; at most ND_LEDGER_ATTEMPTS_KEPT of them (the oldest
 *   are dropped first: retries are not bounded by the protocol, a task's
 *   memory must be). The current one (numbered the task's attempt) is the
 *   last; while the task is ASSIGNED or RUNNING it is there, on the task's
 *   node, in the task's state, and once the task ended it has the task's
 *   final state. Every other one has ended (LOST when retried). assign
 *   adds one; started, output, ended, retried and lost change the current
 *   one only.
 * - Kept output: a chunk of another attempt than the last kept one (or,
 *   at first, than attempt 1) is preceded by a marker naming its attempt,
 *   so a replay can tell where each attempt's output begins.
 *
 * Memory: each task is one allocation of the size given to nd_ledger_init()
 * (at least sizeof(struct nd_ltask), which must come first), zeroed, so a
 * user can keep its own fields beside the ledger's (src/node/svc.h). An
 * event that cannot get memory returns -ENOMEM and changes nothing.
 */
#ifndef ND_STATE_LEDGER_H
#define ND_STATE_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/list.h"
#include "core/u64map.h"
#include "noded.pb-c.h"

/* One attempt of a task in its history (see the invariants above). */
struct nd_lattempt {
	uint32_t attempt;
	Noded__TaskState state;
	char *node;
	char *reason;                 /* NULL: none */
	int32_t exit_code, signal;
	uint64_t assigned_unix_ms, started_unix_ms, ended_unix_ms;
};

#define ND_LEDGER_ATTEMPTS_KEPT 16

struct nd_ltask {
	uint64_t id, job_id;
	Noded__TaskState state;
	uint8_t *spec;                /* the packed TaskSpec */
	size_t spec_len;
	char *target_node;            /* the node it must run on, or NULL */
	char *node;                   /* where it runs or last ran, or NULL */
	uint32_t attempt, retries_left;
	bool cancel_requested;
	char *stop_reason;            /* the system stops this attempt (see
				       * cancel above); NULL: not; set only
				       * while ASSIGNED or RUNNING */
	bool truncated;               /* output past the cap was dropped */
	int32_t exit_code, signal;
	char *reason;
	uint64_t submitted_unix_ms, started_unix_ms, ended_unix_ms;
	uint64_t utime_us, stime_us, max_rss_kib;
	uint64_t output_cap, produced;
	struct nd_buf out;            /* kept output: [fd][len32][data]...;
				       * fd 0: a marker, len32 the attempt
				       * of the chunks after it, no data */
	size_t out_data;              /* bytes of data in out */
	uint32_t out_attempt;         /* of the last kept chunk (0: none) */
	struct nd_lattempt *attempts; /* the history, oldest first */
	uint32_t nattempts;
	uint64_t queue_seq;           /* when it last became PENDING */
	uint64_t end_seq;             /* when it ended (0: it has not) */
	struct nd_list all_link;      /* ledger.all */
	struct nd_list done_link;     /* ledger.done, once ended */
};

/* A client session's last submit (LedgerSubmit.session). */
#define ND_LEDGER_SESSIONS 4096
struct nd_lsession {
	uint64_t session, sequence;
	uint64_t task_id, job_id;     /* its first task; its job */
	uint32_t tasks;
};

/* A master of the cluster (LedgerMember). */
struct nd_lmember {
	uint64_t id;
	char *raft, *client, *http;   /* addresses; "" when not given */
};

struct nd_ledger {
	struct nd_u64map tasks;       /* id -> struct nd_ltask */
	struct nd_list all;           /* every task, in submission order */
	struct nd_list done;          /* ended tasks, in the order they ended */
	size_t task_size;             /* bytes allocated per task */
	uint64_t ntasks, ndone;
	uint64_t count[NODED__TASK_STATE__TASK_LOST + 1]; /* by state */
	uint64_t ended[NODED__TASK_STATE__TASK_LOST + 1]; /* ever, by state */
	uint64_t kept_bytes;          /* output kept by all tasks */
	uint64_t first_id;            /* of the first task (0: none yet) */
	uint64_t next_id;             /* one past the newest */
	uint64_t submitted;           /* tasks ever */
	uint64_t queue_seq, end_seq;  /* counters of the two orders */
	uint64_t applied;             /* events applied */
	uint64_t cluster_id;          /* LedgerCluster (0: not set) */
	struct nd_lmember *members;   /* LedgerMember, in the order added */
	size_t nmembers;
	struct nd_lsession *sessions; /* ring of ND_LEDGER_SESSIONS (NULL
				       * until the first), oldest at head */
	size_t session_head, nsessions;
	struct nd_u64map session_map; /* session -> its nd_lsession */
};

/* Has a task in state st ended? */
static inline bool nd_ltask_ended(Noded__TaskState st)
{
	return st >= NODED__TASK_STATE__TASK_SUCCEEDED;
}

/* Walks the kept output of a task: start with it zeroed. */
struct nd_lout_iter {
	size_t off;
	uint32_t attempt;
};

/* The next kept chunk of t into c (fd, attempt, data pointing into t;
 * task_id untouched): true, or false at the end. */
bool nd_ltask_output_next(const struct nd_ltask *t, struct nd_lout_iter *it,
			  Noded__OutputChunk *c);

/* An empty ledger whose tasks take task_size bytes each (0: the ledger's
 * own size). */
void nd_ledger_init(struct nd_ledger *l, size_t task_size);
/* Frees every task and the ledger's own memory; l is empty after. */
void nd_ledger_free(struct nd_ledger *l);
/*
 * Applies ev. Returns 0, or, having changed nothing: -ENOENT (no such
 * task), -EEXIST (a submit's id is not above every id seen), -ESTALE (the
 * event names another attempt), -EINVAL (not allowed in the task's state,
 * or malformed), -ENOMEM. *task (when task is not NULL) is the task
 * changed (a submit's first; NULL for evict or on error).
 */
int nd_ledger_apply(struct nd_ledger *l, const Noded__LedgerEvent *ev,
		    struct nd_ltask **task);
static inline struct nd_ltask *nd_ledger_get(const struct nd_ledger *l,
					     uint64_t id)
{
	return id ? nd_u64map_get(&l->tasks, id) : NULL;
}
/* The whole ledger as a packed LedgerSnapshot (malloc'd, *len bytes):
 * 0 or -ENOMEM. */
int nd_ledger_snapshot(const struct nd_ledger *l, uint8_t **out,
		       size_t *len);
/* Replaces the contents of l (initialised) with the snapshot's: 0, or
 * -EINVAL (it does not decode, or breaks an invariant) or -ENOMEM, with l
 * as it was. */
int nd_ledger_restore(struct nd_ledger *l, const uint8_t *p, size_t len);
/* t's attempt history as messages in am[] (room for t->nattempts),
 * pointed at by ap[]; their strings point into t. */
void nd_ledger_attempts_msg(const struct nd_ltask *t, Noded__TaskAttempt *am,
			    Noded__TaskAttempt **ap);
/* The name of an event's kind ("submit", ...), for logs and tests. */
const char *nd_ledger_event_name(const Noded__LedgerEvent *ev);

/* The last submit of a client session, or NULL. */
static inline const struct nd_lsession *
nd_ledger_session(const struct nd_ledger *l, uint64_t session)
{
	return session ? nd_u64map_get(&l->session_map, session) : NULL;
}

/* The member of that id, or NULL. */
const struct nd_lmember *nd_ledger_member(const struct nd_ledger *l,
					  uint64_t id);

#endif
