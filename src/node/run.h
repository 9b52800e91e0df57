/*
 * The worker's task runner: runs assigned tasks through the exec helper pool
 * and reports them to the master, all on the worker's shard with io_uring.
 *
 * - Spawn requests go to a helper of the pool (exec/pool.h) over its
 *   SOCK_SEQPACKET socket; events come back with the command's pipes
 *   attached.
 * - Each pipe has one read in flight; a chunk read is sent as a TaskUpdate
 *   and the next read waits for the master's ack. A command that prints
 *   faster than the master takes it blocks on its pipe: memory stays at one
 *   chunk per pipe.
 * - The end (ExecExited) is reported once both pipes reached EOF, so all
 *   output precedes it. The helper kills a task's whole tree before it
 *   sends ExecExited, so EOF follows at once, unless a process it could
 *   not find or kill still holds a pipe: PIPE_LINGER_MS after ExecExited
 *   the pipes are read without waiting, what they hold is sent, and the
 *   task ends (whatever such a process writes later is lost).
 * - Without a master connection nothing is sent; what was not acknowledged
 *   is sent again after the next registration (output may then repeat; an
 *   end is applied once by the master).
 * - A task (id, attempt) is run at most once per master instance: while it
 *   runs and until the master took its end by its id, then among the last
 *   RAN_RECENT ended ones (a master sends each once; this is a margin). A
 *   master that restarted knows none of the old one's tasks: they are
 *   stopped, never reported, and their ids forgotten.
 * - The helper knows each task by a key of ours, unique in this process, so
 *   a task of the old master and one of the new with the same id never mix.
 * - Fencing: an attempt runs under a lease that its helper enforces
 *   (ExecSpawn.lease_deadline_mono_ms), renewed by nd_runner_lease when the
 *   master acknowledges a heartbeat (worker.c). An attempt the master says
 *   is void (nd_runner_void) is stopped like an orphan and never reported.
 */
#ifndef ND_NODE_RUN_H
#define ND_NODE_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"
#include "noded/wire.h"

struct nd_runner;

/* Starts nhelpers helper processes of exe (before the shard runs).
 * Returns 0 or -errno. */
int nd_runner_new(struct nd_runner **out, unsigned nhelpers, unsigned slots,
		  const char *exe);

/* On the shard, once: arms the helper sockets. *conn is where the runner
 * finds the master connection (NULL while there is none). */
void nd_runner_start(struct nd_runner *r, struct nd_shard *s,
		     struct nd_conn **conn);

/*
 * A task from the master's AssignTask stream. lease_deadline: monotonic ms
 * its lease ends (0: no lease; negative: already over, so it is not run
 * and ends "lease expired"). An earlier attempt of the same task still
 * here is void: stopped and never reported.
 */
void nd_runner_assign(struct nd_runner *r, const Noded__TaskAssignment *a,
		      int64_t lease_deadline);
void nd_runner_cancel(struct nd_runner *r, uint64_t task_id);

/* The node name the tasks see as NODED_NODE (borrowed: it must outlive
 * r). */
void nd_runner_set_node(struct nd_runner *r, const char *node);

/* The master no longer counts (task_id, attempt) as running here (a
 * TaskCancel naming the attempt): stop it, never report it, forget it. */
void nd_runner_void(struct nd_runner *r, uint64_t task_id, uint32_t attempt);

/* Renews the lease of every leased attempt running (not void) to deadline
 * (monotonic ms; never shortened): one ExecLease per helper running any. */
void nd_runner_lease(struct nd_runner *r, int64_t deadline);

/* Registered with the master (again): send what is owed. instance is the
 * master's (AssignTaskOpen; 0: unknown, taken as the same). */
void nd_runner_connected(struct nd_runner *r, uint64_t instance);

/* Every 250 ms: reports "started" for tasks that are still running (a task
 * that ends sooner reports only its end, which carries its start time). */
void nd_runner_tick(struct nd_runner *r);

/* Tasks running now, and their ids and attempts (up to max; attempts may
 * be NULL). */
size_t nd_runner_running(const struct nd_runner *r, uint64_t *ids,
			 uint32_t *attempts, size_t max);

/* Task ids remembered to refuse a second run (bounded: running ones plus
 * RAN_RECENT); *accepted (may be NULL) gets the tasks accepted so far. */
size_t nd_runner_remembered(const struct nd_runner *r, uint64_t *accepted);

/* The worker stops (gracefully): every task is stopped (TERM, grace,
 * KILL) and its end reported as the worker's stopping (ExecExited.
 * worker_stopping); a task assigned from now on ends so at once. */
void nd_runner_stop_all(struct nd_runner *r);

/* Tasks of this master whose end it has not yet taken (acknowledged). */
size_t nd_runner_unfinished(const struct nd_runner *r);

/* Server stopping: kill every task, stop the helpers. True while operations
 * are still in flight. */
bool nd_runner_drain(struct nd_runner *r);

/* After the shard stopped. */
void nd_runner_free(struct nd_runner *r);

#endif
