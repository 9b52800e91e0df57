/*
 * Internal to the node service (service.c: tickets, pushes, life cycle;
 * registry.c: nodes, liveness, worker streams; tasks.c: the task table;
 * scheduler.c: waiting and placement; watch.c: watchers, kept output;
 * out.c: reply frames). Everything here lives on shard 0 and is touched
 * only by its thread.
 */
#ifndef ND_NODE_SVC_H
#define ND_NODE_SVC_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/list.h"
#include "core/shard.h"
#include "core/u64map.h"
#include "node/service.h"
#include "node/task_ids.h"
#include "raft/raft.h"
#include "noded/hostlist.h"
#include "state/ledger.h"
#include "wire/arena.h"

/* Where a stream's frames go: a connection on some shard, a request id. */
struct nd_dest {
	unsigned shard;
	uint64_t serial;              /* the connection (0: none) */
	uint64_t stream_id;           /* the request that opened the stream */
};

struct node {
	struct node *next;            /* hash chain */
	size_t hash;                  /* of name */
	char *name;
	char address[64];
	Noded__NodeState state;
	uint8_t *status;              /* the Frame of its last report,
				       * packed as received */
	size_t status_len, status_cap;
	char **label_k, **label_v;    /* from the last status */
	size_t nlabels;
	uint32_t slots;               /* from the last status */
	uint32_t running;             /* tasks we assigned that have not ended */
	uint32_t held;                /* tasks its worker reports running that
				       * are not among those (LOST while it was
				       * cut off): they hold slots until they
				       * end there */
	struct nd_list tasks;         /* those tasks (task.node_link) */
	uint64_t last_hb_ms;          /* monotonic; moved on by the time the
				       * master itself stalled (liveness) */
	/* Fencing (nd__svc_tick): the attempts of a node we no longer hear stay
	 * on it until lease_hb_ms + lease + LEASE_MARGIN_MS, by when its
	 * exec helpers have killed them; then they are LOST or retried. */
	uint64_t lease_hb_ms;         /* monotonic, when its last heartbeat
				       * was read; never moved on */
	uint64_t hb_seq;              /* that heartbeat's number (0: the
				       * worker takes no leases) */
	uint64_t hb_serial;           /* the connection it came on */
	uint64_t dead_quiet_ms;       /* silence when it was declared DEAD */
	bool release_due;             /* DEAD or LEFT, its tasks not yet
				       * released (nd__tasks_node_dead) */
	bool draining;                /* its worker said: no new tasks */
	bool leaving;                 /* its worker said it is stopping */
	uint64_t last_hb_unix_ms;
	uint64_t connected_unix_ms;
	struct nd_dest stream;        /* its AssignTask stream */
	uint8_t id[16];               /* its worker's node id (node_id.h) */
	uint8_t id_len;               /* 0: it sent none */
	uint64_t gone_unix_ms;        /* when its stream closed or it died;
				       * 0 while registered */
	/* An operator's drain (lifecycle.c): kept until `eligible`, across
	 * its worker's reconnections; in memory only, as the rest. */
	bool drain_op;
	bool drain_timed;             /* with a deadline */
	bool drain_fired;             /* the deadline passed: its attempts
				       * were stopped */
	uint64_t drain_deadline_ms;   /* monotonic, when drain_timed */
	uint64_t drain_told_serial;   /* the stream its worker was told of
				       * the stopped attempts on */
	uint64_t drain_deadline_unix_ms, drain_since_unix_ms;
	uint64_t down_ms;             /* monotonic, when it became DEAD or
				       * LEFT (--forget-dead counts from) */
	/* Known from the ledger only (replica.c: loaded after a restart or
	 * a change of leader): its worker may register with any node id,
	 * and its first report settles what it runs (reconcile). */
	bool restored;
	bool reconcile;
};

/* Slots of n in use: ours and those its worker still holds. */
static inline uint32_t nd__node_used(const struct node *n)
{
	return n->running + n->held;
}

/* Does n take no new task (its worker drains or stops, or an operator
 * drained it)? */
static inline bool nd__node_closed(const struct node *n)
{
	return n->draining || n->drain_op;
}

/* The tasks of one `run` request, sharing one stream. */
struct run_group {
	unsigned left;                /* tasks that have not ended */
};

/* A stream following one task's output (a `watch --follow`, or one task of
 * a `run`). It goes when the task ends or its connection closes. */
struct watcher {
	struct nd_list task_link;     /* task.watchers */
	struct nd_list conn_link;     /* its connection's, in svc.watching */
	struct task *task;
	struct nd_dest to;
	struct run_group *group;      /* NULL: a plain watch */
	bool records_only;            /* WatchRequest.records_only: no output */
};

/*
 * A cancel_task whose reply waits until its task ended (tasks.c, "Cancel"),
 * or until its deadline: then it answers with the record as it is.
 */
struct cancel_wait {
	struct nd_list task_link;     /* task.cancel_waits */
	struct nd_list svc_link;      /* svc.cancel_waits, soonest deadline
				       * first (all wait equally long) */
	struct task *task;
	struct nd_dest to;            /* to.stream_id: the request's id */
	uint64_t deadline_ms;
};

/*
 * Tasks waiting for the same target: one named node, or one set of labels
 * (scheduler.c). Created with its first waiting task, freed with
 * its last.
 */
struct pclass {
	struct pclass *next;          /* same hash (svc.classes) */
	struct nd_list link;          /* svc.class_list, oldest first */
	struct nd_list tasks;         /* task.queue_link, FIFO */
	uint64_t hash;
	char *key;                    /* the target, encoded; keylen bytes */
	size_t keylen;
	char *node;                   /* the named node, or NULL */
	char **label_k, **label_v;    /* else these labels */
	size_t nlabels;
	struct nd_hostlist excl;      /* and none of these nodes (exclude) */
};

/*
 * A task as the service holds it: the ledger's record (state/ledger.h,
 * which allocates the whole struct, zeroed) and, beside it, what only this
 * master's memory needs: who follows it, where it waits, which node's list
 * it is on. The ledger's fields change only by applied events
 * (nd__svc_apply); these follow from them (nd__sched_applied).
 */
struct task {
	struct nd_ltask l;            /* first: the ledger allocates us */
	struct nd_list watchers;      /* struct watcher.task_link */
	uint32_t nwatchers;
	struct nd_list cancel_waits;  /* struct cancel_wait.task_link */
	uint32_t ncancel_waits;
	bool any_node;                /* no target node, no labels */
	struct nd_list queue_link;    /* svc.pending_any or its class's tasks,
				       * while PENDING */
	struct pclass *cls;           /* that class, NULL: pending_any */
	bool stranded;                /* queue_link is on svc.stranded */
	struct nd_list node_link;     /* node.tasks while ASSIGNED/RUNNING */
	uint64_t queued_ns;           /* monotonic, when last queued */
};

/* May the ledger change here (without raft: always; with it: the leader,
 * its ledger loaded)? Nothing that applies an event runs otherwise. */
static inline bool nd__svc_serving(const struct nd_svc *svc);

static inline struct task *nd__task_of(struct nd_ltask *l)
{
	return nd_container_of(l, struct task, l);
}

/* What an applied event makes happen outside the ledger and the queues:
 * the assignment pushed, watchers told, cancels answered, logs
 * (nd__tasks_effects; a unit test puts its own). t is NULL for evict. */
typedef void nd__effects_fn(struct nd_svc *svc, const Noded__LedgerEvent *ev,
			    struct task *t);

struct nd_svc {
	struct nd_shard *s;
	const struct nd_svc_config *cfg;  /* the master's (service.h) */
	struct node **buckets;
	size_t nbuckets, count;
	struct nd_ledger ledger;      /* the tasks (state/ledger.h) */
	nd__effects_fn *effects;
	struct nd_arena *arena;       /* for unpacking (the shard's) */
	FILE *trace;                  /* --ledger-trace: applied events */
	const Noded__TaskSpec *submit_spec; /* while a submit made here is
				       * applied: its spec, decoded (spares
				       * decoding the event's copy again) */
	struct nd_list pending_any;   /* FIFO of tasks any node may run */
	struct nd_u64map classes;     /* hash of a key -> struct pclass */
	struct nd_list class_list;    /* those classes (pclass.link) */
	struct nd_list stranded;      /* PENDING tasks no queue could take (out
				       * of memory): LOST at the next pass */
	/* Retention: the oldest ended tasks are evicted while there are more
	 * than task_history of them or the output kept by all tasks is over
	 * output_budget. */
	uint64_t next_task_id;        /* the next id to give */
	struct nd_task_ids *ids;      /* their reservation (task_ids.h) */
	struct nd_task_ids own_ids;   /* that, when the master passed none */
	uint64_t output_cap;          /* default per task */
	uint64_t task_history, output_budget;
	struct nd_u64map congested;   /* serials of watchers behind */
	struct nd_u64map watching;    /* serial -> struct nd_list of watchers
				       * (conn_link), malloc'd */
	struct nd_list held;          /* tickets whose ack waits (held) */
	struct nd_list cancel_waits;  /* struct cancel_wait.svc_link */
	size_t npending, max_queue;   /* tasks PENDING; their bound */
	struct nd_hist dispatch;      /* queued to pushed to a worker */
	uint64_t last_tick_ms;        /* monotonic, of the last service tick */
	/* Replication (replica.c); raft NULL: none, the ledger lives in
	 * this master's memory only. */
	struct nd_shard *raft;        /* the raft shard */
	bool serving;                 /* methods and ticks run (always
				       * without raft; else: the leader, its
				       * ledger loaded) */
	bool loaded;                  /* the ledger holds committed state
				       * only: reads may be served */
	bool disk_full;               /* the last batch failed for space */
	bool load_asked;              /* a reload is on its way */
	enum nd_raft_role role;       /* as the raft shard last said */
	uint64_t leader_id;           /* the leader's member id (0: none) */
	char leader_client[128];      /* its client address, or "" */
	char leader_http[128];        /* its HTTP API's, or "" */
	uint64_t voters[ND_RAFT_MAX_VOTERS]; /* the log's configuration */
	unsigned nvoters;
	uint64_t term, commit_index;
	char last_raft_err[160];
	struct nd_raft_batch *batch;  /* events of this loop, not yet sent */
	uint32_t gen_sent, gen_done;  /* batches sent, come back (in order) */
	bool tainted;                 /* a batch failed: frames depending on
				       * batches up to taint_gen fail */
	uint32_t taint_gen;
	struct nd_msg *gate, **gate_tail; /* frames held for their batch */
	uint64_t gated, batches, proposals_failed;
	struct nd_list unready;       /* tickets waiting to be served
				       * (nd_ticket.held) */
	size_t nunready;
	bool judging_put_off;         /* the last tick came after a stall */
};

static inline bool nd__svc_serving(const struct nd_svc *svc)
{
	return !svc->raft || svc->serving;
}

/*
 * The one way a task changes: applies ev to the ledger, then what follows
 * from it here (queues and node counts: nd__sched_applied; the rest:
 * svc.effects), and appends it to the trace. Returns the ledger's 0 or
 * -errno (then nothing happened); *t (t may be NULL) is the task changed.
 */
int nd__svc_apply(struct nd_svc *svc, const Noded__LedgerEvent *ev,
		  struct task **t);
/*
 * Replication (replica.c). stage appends ev to this loop's batch (before
 * it is applied; *mark undoes it with unstage when the ledger refuses it);
 * flush sends the batch to the raft shard (after each loop of shard 0);
 * busy: a batch is out or open. news: what the raft shard says.
 */
int nd__replica_stage(struct nd_svc *svc, const Noded__LedgerEvent *ev,
		      size_t *mark);
void nd__replica_unstage(struct nd_svc *svc, size_t mark);
void nd__replica_flush(struct nd_shard *s0);
bool nd__replica_busy(const struct nd_svc *svc);
void nd__replica_news(struct nd_shard *s0, struct nd_raft_news *n);
/* A committed entry a follower's raft shard applied: into shard 0's copy,
 * when it holds the committed ledger and does not serve (stale reads). */
void nd__replica_entry(struct nd_shard *s0, struct nd_raft_entry *e);
/* The cluster (cluster.c): the leader's client address ("" when none is
 * known, or without raft); a NOT_LEADER error naming it, into o; the
 * LeaderRequest and RaftChange methods; this master's own addresses into
 * the ledger when they are not there (a new leader); a LedgerMember
 * event applied. */
const char *nd__replica_leader_client(const struct nd_svc *svc);
struct nd_out;
void nd__out_not_leader(struct nd_svc *svc, struct nd_out *o, uint64_t id);
void nd__cluster_leader(struct nd_svc *svc, const Noded__Frame *f,
			struct nd_out *o);
void nd__cluster_change(struct nd_svc *svc, const Noded__Frame *f,
			const struct nd_dest *from, struct nd_out *o);
void nd__cluster_self(struct nd_svc *svc);
int nd__cluster_member_event(struct nd_svc *svc, const Noded__RaftMember *mb,
			     bool remove);
/* Applies an operator's LedgerRestore and rebuilds the service around the
 * ledger (replica.c; nd__svc_apply leads there). 0 or -errno. */
int nd__svc_apply_restore(struct nd_svc *svc, const Noded__LedgerEvent *ev);
/* The snapshot methods (cluster.c): the ledger in chunks; a restore. */
void nd__cluster_snapshot(struct nd_svc *svc, const Noded__Frame *f,
			  struct nd_out *o);
void nd__cluster_restore(struct nd_svc *svc, const Noded__Frame *f,
			 struct nd_out *o);
/* The noded_raft_* series of /metrics. */
void nd__replica_metrics(struct nd_svc *svc, FILE *f);
/* Every message the service sends to a shard goes here: with raft, held
 * until the batches it depends on are committed (replica.c). */
void nd__svc_post(struct nd_svc *svc, struct nd_shard *to, struct nd_msg *m,
		  void (*fn)(struct nd_shard *, struct nd_msg *));
/* A held message whose batch failed (service.c): a reply becomes an
 * UNAVAILABLE error, anything else is dropped. */
void nd__svc_post_failed(struct nd_svc *svc, struct nd_msg *m);
/* Requests that may wait for a leader at once; past it, UNAVAILABLE. */
#define ND_UNREADY_MAX 65536
/* Frees a held registration answer that will not be sent (registry.c). */
void nd__registry_msg_drop(struct nd_msg *m);
/* Runs (or, not serving, answers) the tickets that waited (service.c). */
void nd__svc_run_unready(struct nd_svc *svc);
/* Unlinks every task from what the service holds of it (queues, nodes,
 * watchers, cancels), before the ledger is replaced (apply.c). */
void nd__tasks_release_all(struct nd_svc *svc);
/* Queues PENDING t again (scheduler.c; sp: its spec). */
void nd__task_requeue(struct nd_svc *svc, struct task *t,
		      const Noded__TaskSpec *sp);
/* The first report of a restored node n (running: ids, count): its tasks
 * it does not run are retried or LOST (scheduler.c). */
void nd__tasks_reconcile(struct nd_svc *svc, struct node *n,
			 const uint64_t *ids, size_t count);
/* The production effects (tasks.c). */
void nd__tasks_effects(struct nd_svc *svc, const Noded__LedgerEvent *ev,
		       struct task *t);
/* An empty task table and queues (tasks.c), nodes table (registry.c):
 * nothing here needs a shard, so a unit test can build a service. */
void nd__tasks_init(struct nd_svc *svc);
int nd__nodes_init(struct nd_svc *svc);

/* FNV-1a of p[0..n) */
uint64_t nd__hash(const void *p, size_t n);
struct node *nd__node_find(struct nd_svc *svc, const char *name);
/* The node of that name, created (unregistered, no slots) when there is
 * none; NULL when out of memory. */
struct node *nd__node_get(struct nd_svc *svc, const char *name);
/* Frees n and what it owns; n is not unlinked (the service ends). */
void nd__node_free(struct node *n);
/* The shard's service tick (registry.c): liveness of nodes, leases, then
 * nd__tasks_tick and nd__tasks_trim. */
void nd__svc_tick(struct nd_shard *s);
struct nd_out;
/* Registry methods (registry.c), run from a ticket t or a frame f: the
 * reply goes to o. */
void nd__node_report_status(struct nd_svc *svc, struct nd_ticket *t,
			    const Noded__Frame *f, struct nd_out *o);
void nd__node_leave(struct nd_svc *svc, struct nd_ticket *t,
		    const Noded__Frame *f, struct nd_out *o);
void nd__node_list(struct nd_svc *svc, const Noded__Frame *f,
		   struct nd_out *o);
/* n as the API shows it, in the shard's arena (NULL: no memory). */
Noded__NodeInfo *nd__node_info(struct nd_svc *svc, struct node *n);
/* Forgets DEAD or LEFT n (frees it; its AssignTask stream, if any is left,
 * ends with why so its worker registers afresh): 0, or -EBUSY while it
 * still holds attempts whose lease is not over. Tasks name nodes, never
 * point at them: nothing else holds n. */
int nd__node_forget(struct nd_svc *svc, struct node *n, const char *why);

/* An operator's node lifecycle (lifecycle.c): drain, eligible, remove,
 * answered into o; and, every tick, drain deadlines and forgetting nodes
 * DEAD or LEFT for --forget-dead. */
void nd__node_drain(struct nd_svc *svc, const Noded__Frame *f,
		    struct nd_out *o);
void nd__node_eligible(struct nd_svc *svc, const Noded__Frame *f,
		       struct nd_out *o);
void nd__node_remove(struct nd_svc *svc, const Noded__Frame *f,
		     struct nd_out *o);
void nd__nodes_lifecycle_tick(struct nd_svc *svc);

/* Sends f (or encoded frames) to a connection on any shard; dropped if the
 * connection has gone. */
void nd__svc_push(struct nd_svc *svc, const struct nd_dest *to,
		  const Noded__Frame *f);
void nd__svc_push_raw(struct nd_svc *svc, const struct nd_dest *to,
		      const uint8_t *frames, size_t len);

/* Methods (tasks.c, watch.c): fill r (the reply) or return frames through
 * out. */
struct nd_out {                   /* frames to queue on the requester */
	struct nd_buf buf;
	uint64_t hold_task;           /* nonzero: hold the reply (backpressure) */
	unsigned errors;              /* Error frames among them */
	bool lazy;                    /* an ack nobody waits on: it may wait
				       * for other output (nd_conn_write_lazy) */
};

/* Does any watcher of t lag behind? */
bool nd__task_congested(struct nd_svc *svc, uint64_t task_id);
/* Connection serial closed: its watchers go (their tasks go on). */
void nd__tasks_conn_gone(struct nd_svc *svc, uint64_t serial);
/* Evicts the oldest ended tasks beyond the history and the output budget.
 * Run between methods, never inside one (callers hold task pointers). */
void nd__tasks_trim(struct nd_svc *svc);
/* Frames into o (out.c); a frame that cannot be encoded (no memory) is
 * dropped. */
void nd__out_frame(struct nd_out *o, const Noded__Frame *f);
/* A STREAM_END for the stream id. */
void nd__out_end(struct nd_out *o, uint64_t id);
/* An Ack REPLY to id. */
void nd__out_ack(struct nd_out *o, uint64_t id);
/* An Error body (code, formatted message) in a frame of the given kind. */
void nd__out_error(struct nd_out *o, uint64_t id, Noded__FrameKind kind,
		   Noded__ErrorCode code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* submit, or run when from is set (the stream goes back there). */
void nd__task_submit(struct nd_svc *svc, const Noded__Frame *f,
		     const struct nd_dest *from, struct nd_out *o);
void nd__task_get(struct nd_svc *svc, const Noded__Frame *f, struct nd_out *o);
void nd__task_list(struct nd_svc *svc, const Noded__Frame *f,
		   struct nd_out *o);
/* cancel_task: the reply (the record) leaves once the task ended, or
 * after a bounded wait (nd__tasks_tick); from is the requester. */
void nd__task_cancel(struct nd_svc *svc, const Noded__Frame *f,
		     const struct nd_dest *from, struct nd_out *o);
/* Every tick: answers the cancels that waited their longest. */
void nd__tasks_tick(struct nd_svc *svc);
void nd__task_watch(struct nd_svc *svc, const Noded__Frame *f,
		    const struct nd_dest *from, struct nd_out *o);
void nd__task_update(struct nd_svc *svc, const Noded__Frame *f,
		     uint64_t conn_serial, struct nd_out *o);
/* A node became schedulable, or went away. */
void nd__tasks_schedule(struct nd_svc *svc);
/* From a status report of n: how many of the tasks its worker runs (ids,
 * count of them) are not running there for us (n->held). */
void nd__tasks_held(struct nd_svc *svc, struct node *n, const uint64_t *ids,
		    size_t count);
void nd__tasks_node_dead(struct nd_svc *svc, struct node *n,
			 const char *why);
/* From a status report of n on its AssignTask stream's connection: tells
 * its worker, with a TaskCancel naming the attempt, of each attempt it
 * reports running (ids, attempts: count of each) that the master no
 * longer counts as running there (LOST, retried, ended). */
void nd__tasks_void(struct nd_svc *svc, struct node *n, const uint64_t *ids,
		    const uint32_t *attempts, size_t count);
void nd__tasks_free(struct nd_svc *svc);
/* Task figures for /metrics. */
void nd__tasks_metrics(struct nd_svc *svc, FILE *f);

/* Has a task in state st ended? */
static inline bool nd__task_ended(Noded__TaskState st)
{
	return nd_ltask_ended(st);
}

/* t's TaskSpec, unpacked into the shard's arena (NULL: no memory). */
static inline Noded__TaskSpec *nd__task_spec(struct nd_svc *svc,
					     const struct task *t)
{
	return noded__task_spec__unpack(&svc->arena->pc, t->l.spec_len,
					t->l.spec);
}

/* The task table (tasks.c). */
/* t's record as the API shows it; its strings may live in the arena. */
void nd__task_record(struct nd_svc *svc, const struct task *t,
		     Noded__TaskRecord *r);
/* t's record in a frame (id, kind) into o. */
void nd__task_frame_record(struct nd_svc *svc, const struct task *t,
			   uint64_t id, Noded__FrameKind kind,
			   struct nd_out *o);
/* Ends t in state st (a no-op when it has ended): out of its queue and its
 * node, watchers and cancels answered, kept in svc.done. */
void nd__task_finish(struct nd_svc *svc, struct task *t, Noded__TaskState st,
		     const char *reason);
/* Task id, or NULL after answering NOT_FOUND (request req, kind) into o. */
struct task *nd__task_find(struct nd_svc *svc, uint64_t id, uint64_t req,
			   Noded__FrameKind kind, struct nd_out *o);

/* Waiting and placement (scheduler.c). */
/* What an applied event changes in the queues and the nodes' counts. */
void nd__sched_applied(struct nd_svc *svc, const Noded__LedgerEvent *ev,
		       struct task *t);
/* Queues PENDING t (spec sp) behind its target's tasks; 0 or -ENOMEM. */
int nd__task_enqueue(struct nd_svc *svc, struct task *t,
		     const Noded__TaskSpec *sp);
/* Sends ASSIGNED t its node's worker (the effect of its assign). */
void nd__push_assignment(struct nd_svc *svc, struct task *t);
/* Takes t out of its queue (its class goes with its last task). */
void nd__task_unqueue(struct nd_svc *svc, struct task *t);
/* Has n every label of sp? */
bool nd__node_has_labels(const struct node *n, const Noded__TaskSpec *sp);
/* Why sp can never run here (written in buf), or NULL when some node could. */
const char *nd__task_unplaceable(struct nd_svc *svc,
				 const Noded__TaskSpec *sp, char *buf,
				 size_t len);
/* The nodes of a job (targets.c). */
/* nodes[0..*n): the nodes a fan-out may use now; kept (in order, *n
 * updated) those with sp's labels and not in its exclude. NULL, or why
 * none is left (in buf). */
const char *nd__targets_all(struct nd_svc *svc, const Noded__TaskSpec *sp,
			    char **nodes, size_t *n, char *buf, size_t size);
/* sp's node list less its exclude into *out (arena; names live while the
 * submit is handled), *nout of them. NULL; or why it is refused (in buf):
 * nothing left, or nodes that cannot run a task, unless sp waits for its
 * nodes: then *waiting (arena) says for which, else it is NULL. */
const char *nd__targets_list(struct nd_svc *svc, const Noded__TaskSpec *sp,
			     char ***out, size_t *nout, char **waiting,
			     char *buf, size_t size);
/* t's attempt on n is over without an ending of its own: queued again
 * (true) while it has retries, else LOST with why. */
bool nd__task_retry_or_lose(struct nd_svc *svc, struct task *t,
			    struct node *n, const char *why);

/* Watchers and kept output (watch.c). */
/* Adds a watcher of t streaming to `to` (in run group g, or NULL); false:
 * no memory. */
bool nd__watcher_add(struct nd_svc *svc, struct task *t,
		     const struct nd_dest *to, struct run_group *g);
/* Unlinks and frees w; true when its stream is over (last of its group). */
bool nd__watcher_drop(struct nd_svc *svc, struct watcher *w);
/* t ended: each watcher gets its record and its stream's end. */
void nd__watchers_end(struct nd_svc *svc, struct task *t);
/* An output chunk of t, to its watchers. */
void nd__watchers_output(struct nd_svc *svc, struct task *t,
			 const Noded__OutputChunk *chunk);
/* t's record, to its watchers, their streams going on (an attempt was
 * retried, or a retry assigned). */
void nd__watchers_record(struct nd_svc *svc, struct task *t);
#endif
