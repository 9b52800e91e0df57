/*
 * The raft shard: one more shard thread (after the connection shards; it
 * takes no connections) that owns a libraft instance, its libuv loop and
 * its on-disk log (raft_uv: segments, snapshots, fsync) in the master's
 * data directory. It waits like every shard, on its io_uring: a multishot
 * poll on the loop's backend fd and a timeout for the loop's next timer,
 * after either of which the loop runs without blocking. Nothing else calls
 * libraft. Proposals arrive, and results and role changes leave, as
 * cross-shard messages (nd_shard_post).
 *
 * The state machine (FSM) is the task ledger (state/ledger.h): each log
 * entry is a RaftEntry (proto), the events one batch of shard 0 applied,
 * applied here to the raft shard's own copy of the ledger, which is the
 * committed state. A snapshot is that ledger's snapshot; a restore replaces
 * it. Shard 0 keeps the serving copy (see node/replica.c for how the two
 * stay the same).
 */
#ifndef ND_RAFT_RAFT_H
#define ND_RAFT_RAFT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/shard.h"

/* Defaults of the settings below (README, "Replication"). */
/* The election timeout: a follower waits [T, 2T) without a leader before
 * it stands. libraft keeps a follower loyal to its leader until its own
 * timer runs out (a vote asked earlier is refused), so after a leader dies
 * the later of two followers' timers decides: 1.67 T on average. 600 ms
 * gives about 1 s (etcd's 1 s default gives about 1.2 s: there the first
 * timer decides); heartbeats are a tenth of it. */
#define ND_RAFT_ELECTION_MS 600
#define ND_RAFT_HEARTBEAT_MS 60
#define ND_RAFT_SNAPSHOT_THRESHOLD 16384
#define ND_RAFT_SNAPSHOT_TRAILING 4096

struct nd_tls;

struct nd_raft_config {
	const char *dir;              /* the log's directory (exists) */
	const char *address;          /* this member's raft link, HOST:PORT */
	uint64_t id;                  /* this member's id, nonzero */
	bool bootstrap;               /* an empty log: start a cluster of one */
	unsigned election_ms, heartbeat_ms;
	unsigned snapshot_threshold;  /* entries between snapshots */
	unsigned snapshot_trailing;   /* entries kept behind a snapshot */
	const char *id_dir;           /* set: write "raft-id" (the id) there
				       * once the bootstrap is in the log */
	const uint8_t *token;         /* the masters' token: the links prove
				       * it (transport.c) */
	size_t token_len;
	struct nd_tls *tls_server;    /* TLS on the links (transport.c):
				       * the master's own context */
	struct nd_tls *tls_client;    /* the same files, client end */
	/* none of the three: plain TCP (loopback only) */
};

/*
 * A batch of ledger events shard 0 applied (data: a RaftEntry, packed),
 * travelling to the raft shard and back. gen numbers the batches shard 0
 * sent, in order; status is 0 once the entry is committed and applied to
 * the raft shard's ledger, else a raft error (err says it).
 */
struct nd_raft_batch {
	struct nd_msg msg;
	uint32_t gen;
	int status;
	char err[128];
	uint64_t index;               /* its log index, when committed */
	uint64_t t0_ns;               /* proposed (monotonic) */
	uint8_t *data;                /* raft_malloc'd; raft owns it once
				       * proposed */
	size_t len, cap;
	void (*done)(struct nd_shard *s0, struct nd_raft_batch *b);
	struct nd_shard *home;
	void *req;                    /* libraft's request (raft.c) */
};

/* What the raft shard tells shard 0: the role of this member changed.
 * A leader's message comes once every entry of earlier terms is applied
 * (a barrier), with the committed ledger's snapshot to serve from. */
enum nd_raft_role {
	ND_RAFT_STARTING = 0,
	ND_RAFT_FOLLOWER,
	ND_RAFT_LEADER,
	ND_RAFT_STOPPED,              /* failed: its log could not be used */
	ND_RAFT_STALLED,              /* leads, but cannot write its log
				       * (err says why): the committed
				       * ledger comes with it, for reads */
};

#define ND_RAFT_MAX_VOTERS 16

/* A committed entry a follower applied, for shard 0's copy (raft.c). */
struct nd_raft_entry {
	struct nd_msg msg;
	void (*deliver)(struct nd_shard *s0, struct nd_raft_entry *e);
	size_t len;
	uint8_t data[];
};

struct nd_raft_news {
	struct nd_msg msg;
	void (*deliver)(struct nd_shard *s0, struct nd_raft_news *n);
	enum nd_raft_role role;
	bool config_only;             /* only the configuration changed: the
				       * role is as before (no snapshot) */
	uint64_t term;
	uint64_t leader_id;           /* 0: none known */
	char leader[64];              /* the leader's raft address, or "" */
	char leader_client[128];      /* its client address (the committed
				       * ledger's member table), or "" */
	char leader_http[128];        /* its HTTP API's, or "" */
	uint64_t voters[ND_RAFT_MAX_VOTERS]; /* the log's configuration */
	unsigned nvoters;
	uint8_t *snap;                /* LEADER: the ledger's snapshot */
	size_t snap_len;
	char err[160];                /* STOPPED: why */
};

/*
 * A change of the cluster (RaftChange.Op: 0 add as a voter, 1 remove,
 * 2 transfer the leadership; id 0 with transfer: to the best voter), sent
 * by shard 0 to the raft shard and back through done, exactly once.
 * status: 0, or a raft error, err saying it.
 */
struct nd_raft_change {
	struct nd_msg msg;
	int op;
	uint64_t id;
	char address[128];
	int status;
	char err[256];
	void (*done)(struct nd_shard *s0, struct nd_raft_change *c);
	struct nd_shard *home;
	void *arg;                    /* the caller's */
	void *req;                    /* libraft's request (raft.c) */
};

/* c must be the start of a malloc'd block: a raft shard that closes with
 * the change out (after the drain barrier: nobody to tell) frees it. */
void nd_raft_change(struct nd_shard *s0, struct nd_shard *rs,
		    struct nd_raft_change *c);

/* Figures for /metrics, written by the raft shard only (atomics). */
struct nd_raft_stats {
	_Atomic uint64_t term, commit_index, applied_index, last_index;
	_Atomic uint64_t leader_changes, entries, snapshots, restores;
	_Atomic uint64_t last_contact_ms;  /* unix ms, the leader's last
					    * message (ours, as leader) */
	_Atomic int state;            /* enum raft_state */
	_Atomic uint64_t append_ns_sum, append_count;  /* propose->applied */
};

/*
 * Starts raft on its shard (on that shard's thread: the shard_start hook),
 * reporting to s0 through news(s0, n) (n freed by the callee, snap with
 * it). Returns 0, or -errno with why in err; the master must stop then.
 */
int nd_raft_start(struct nd_shard *rs, const struct nd_raft_config *cfg,
		  struct nd_shard *s0,
		  void (*news)(struct nd_shard *s0, struct nd_raft_news *n),
		  void (*entry)(struct nd_shard *s0, struct nd_raft_entry *e),
		  char *err, size_t errlen);

/* A new empty batch (NULL: out of memory). */
struct nd_raft_batch *nd_raft_batch_new(void);
void nd_raft_batch_free(struct nd_raft_batch *b);

/* Sends b (nonempty) from s0 to the raft shard to be proposed; b comes
 * back through b->done on s0, exactly once. */
void nd_raft_propose(struct nd_shard *s0, struct nd_shard *rs,
		     struct nd_raft_batch *b);

/* Asks the raft shard for the committed ledger again (after a failed
 * batch): it answers with news, as at a change of role. */
void nd_raft_resync(struct nd_shard *s0, struct nd_shard *rs);

/* The raft shard's figures (any thread). */
const struct nd_raft_stats *nd_raft_stats(const struct nd_shard *rs);

#endif
