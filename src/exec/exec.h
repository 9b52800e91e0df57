/*
 * The exec helper pool: small helper processes that spawn commands for the
 * shards, so a shard never blocks in fork/exec. See ../shared/DESIGN.md,
 * "Running commands".
 *
 * A helper is `noded exec-helper` (this same binary, re-executed), connected
 * to its shard by a SOCK_SEQPACKET socket on fd 3. The shard sends
 * ExecRequest messages (proto/noded.proto), one per datagram; the helper
 * answers with ExecEvent messages: ExecStarted (with the read ends of the
 * command's stdout and stderr pipes attached as SCM_RIGHTS) and, when the
 * command ends, ExecExited. The shard reads the pipes itself.
 *
 * Everything in this header is implemented in src/exec/.
 */
#ifndef ND_EXEC_H
#define ND_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "noded.pb-c.h"

/* Largest ExecRequest/ExecEvent datagram (an argv/env larger is refused). */
#define ND_EXEC_MSG_MAX (256 * 1024)

/*
 * Starts one helper: `exe exec-helper` with one end of a new SOCK_SEQPACKET
 * socketpair as its fd 3. exe is the noded binary ("/proc/self/exe" in the
 * daemon). Safe to call from a threaded process (posix_spawn). On success
 * *fd is our end (close-on-exec, blocking) and *pid the helper's pid.
 * Returns 0 or -errno.
 */
int nd_exec_helper_spawn(const char *exe, int *fd, pid_t *pid);

/* The helper process's main loop on socket fd; returns the exit status.
 * Runs until the socket closes (EOF), then kills what it still runs. */
int nd_exec_helper_main(int fd);

/*
 * Starts the command of sp (argv, searched in the PATH it will see; or
 * `/bin/sh -c shell` followed by argv) with the base environment (PATH,
 * LANG, and HOME, USER, LOGNAME, SHELL of its user), or ours with
 * command.inherit_env, then its env as KEY=VALUE entries, then the task's
 * NODED_TASK_ID, NODED_JOB_ID, NODED_NODE, NODED_ATTEMPT when
 * sp->master_task_id is set (each later one wins); as command.user when
 * set (we must be root for another user than ours: setgroups to its
 * groups, setresgid, setresuid in the child), in sp's cwd (entered as
 * that user), in a new process group whose id is its pid,
 * stdin /dev/null, stdout and stderr on two new pipes, default signal
 * dispositions, an empty signal mask and no other descriptor. It blocks
 * for the spawn: callers are the helper processes and the load generator,
 * never a shard. Returns 0 with *pid set and fds[0] (stdout), fds[1]
 * (stderr) the read ends, close-on-exec, blocking, owned by the caller; or
 * a positive errno with nothing left running and reason (reason_size
 * bytes) saying why, as "command not found: x" (see nd_exec_spawn_failed).
 */
int nd_exec_command_start(const Noded__ExecSpawn *sp, pid_t *pid, int fds[2],
			  char *reason, size_t reason_size);

/* What the exec helper asks of a start beyond what the ExecSpawn says. */
struct nd_exec_opts {
	/* >= 0: a cgroup v2 directory (open, O_DIRECTORY) the command is
	 * born in, with clone3(CLONE_INTO_CGROUP): it is in the cgroup
	 * before it runs an instruction, so nothing it forks can be left
	 * outside. -1: none (posix_spawn, as nd_exec_command_start). */
	int cgroup_fd;
	/* "KEY=VALUE" added last to the command's environment (it wins over
	 * sp's entries), or NULL. Borrowed for the call. */
	const char *tag;
	/* Out: nonzero when clone3 itself failed with this errno (kernel
	 * without CLONE_INTO_CGROUP, cgroup refused); the command was then
	 * started by posix_spawn outside the cgroup, or not at all when the
	 * function failed. */
	int cgroup_err;
	/* The command must not run outside cgroup_fd (it holds its limits):
	 * when clone3 cannot start it there, it is not started at all. */
	bool cgroup_required;
};

/* nd_exec_command_start() with o (may be NULL: none). A command with
 * limits (memory, cpu, pids) is refused (EOPNOTSUPP, reason set) unless o
 * gives the cgroup that holds them, with cgroup_required. */
int nd_exec_command_start_opts(const Noded__ExecSpawn *sp,
			       struct nd_exec_opts *o, pid_t *pid, int fds[2],
			       char *reason, size_t reason_size);

/* Fills x for a command that could not start with err (> 0): spawn_errno,
 * exit code 127 when it was not found (ENOENT), 126 otherwise, and reason
 * (borrowed: it must outlive x). */
void nd_exec_spawn_failed(Noded__ExecExited *x, int err, const char *reason);

/*
 * Fills x for a reaped command from its wait status and resource use: the
 * exit code, or the signal (and 128 + signal as the exit code), CPU times
 * and peak RSS, and a reason written into reason (reason_size bytes; x
 * points to it) that says why it ended when not by exit 0: lost_errno
 * (nonzero: its pipes could not be handed on, so it was killed), then
 * x->lease_expired, x->timed_out (timeout_ms) and x->cancelled, which the
 * caller sets first.
 */
void nd_exec_exited_fill(Noded__ExecExited *x, int status,
			 const struct rusage *ru, uint32_t timeout_ms,
			 int lost_errno, char *reason, size_t reason_size);

/*
 * Encodes a request into buf (cap bytes). Returns its length, or -EMSGSIZE
 * when it does not fit.
 */
ssize_t nd_exec_encode_request(const Noded__ExecRequest *r, uint8_t *buf,
			       size_t cap);

/*
 * Decodes an event datagram. fds/nfds are the descriptors that came with it
 * (SCM_RIGHTS), which the caller owns in any case. Returns NULL when the bytes
 * are not an ExecEvent, or an ExecStarted came without exactly two fds.
 * Free with noded__exec_event__free_unpacked(ev, NULL).
 */
Noded__ExecEvent *nd_exec_decode_event(const uint8_t *buf, size_t len,
				       int nfds);

#endif
