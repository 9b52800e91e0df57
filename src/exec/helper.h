/*
 * Internal to the exec helper process (helper.c: the loop, requests,
 * deadlines, reaping; helper_cgroup.c: cgroup mode; helper_tree.c: tree
 * mode and nd__kill_tree). One thread: nothing here is shared.
 */
#ifndef ND_EXEC_HELPER_H
#define ND_EXEC_HELPER_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "exec/exec.h"

#define GRACE_DEFAULT_MS 2000
/* How long the helper, when it stops, waits for killed commands to be
 * reaped before it exits anyway (what is left goes to our own reaper). */
#define STOP_REAP_MS 2000
/* SIGTERM to SIGKILL when a lease runs out: short, so that a healthy
 * worker's renewals (every heartbeat) stay well ahead of the SIGTERM even
 * with the shortest lease the master allows (4 s). */
#define LEASE_GRACE_MS 1000
/* Bound on the reason string of an ExecExited; events stay small. */
#define REASON_MAX 512
/* How long an ended task's cgroup may stay populated (a process stuck in
 * the kernel) before the helper stops trying to remove it, and how often
 * it tries meanwhile. */
#define CG_REMOVE_MS 10000
#define CG_RETRY_MS 50
/* Emptied cgroups kept for the next tasks, not removed and made anew (a
 * cgroup's mkdir and rmdir cost more than the rest of a short task's
 * handling here; cgroup v2 cannot rename, so they are named c<n>, not for
 * a task). Beyond this many idle ones, they are removed. */
#define CG_POOL 16
/* Controllers of a task's limits (helper.cg_ctrl). */
#define CG_CTRL_MEMORY 1u
#define CG_CTRL_CPU 2u
#define CG_CTRL_PIDS 4u
/* The period of cpu.max (us): --cpus N is a quota of N times it. */
#define CG_CPU_PERIOD_US 100000
/* The environment variable that tags a task's processes (tree mode). */
#define TAG_KEY "NODED_TASK_TAG"

enum task_state {
	TASK_RUNNING, /* no signal sent yet */
	TASK_TERMED,  /* SIGTERM sent to the group; SIGKILL at the deadline */
	TASK_KILLED,  /* SIGKILL sent; waiting to reap */
};

/* One running command, from a successful spawn until its pid is reaped. */
struct task {
	struct task *next;
	uint64_t id;
	pid_t pid; /* also its process group id */
	enum task_state state;
	int64_t deadline; /* monotonic ms of the next kill step, -1: none */
	uint32_t timeout_ms;
	uint32_t grace_ms;
	bool timed_out;
	bool cancelled;
	int lost_errno; /* ExecStarted could not be sent, so we killed it */
	int64_t lease;  /* monotonic ms its lease ends, 0: no lease */
	bool lease_expired;
	uint64_t start_unix_ms;
	bool exited;    /* its process exited (a zombie until reaped) */
	int cg_fd;      /* its cgroup directory; -1: tree mode */
	int cg_events;  /* its cgroup.events, -1 if it could not be opened */
	unsigned cg_idx; /* its cgroup is c<cg_idx> */
	bool cg_killed;  /* cgroup.kill was written: never reuse it */
	bool limited;    /* its cgroup holds limits: a fresh one, never
			  * pooled after (nd__cgroup_limit) */
	uint64_t mem_max; /* its limits, for the reason of its end */
	uint32_t pids_max;
	char tag[64];   /* TAG_KEY=<helper pid>.<task id> */
};

/* An ended task's cgroup that was still populated: killed again and
 * removed once empty, or given up at give_up. */
struct cg_left {
	struct cg_left *next;
	int fd;
	unsigned idx;   /* c<idx> */
	int64_t give_up;
};

struct helper {
	int sock;
	int sigfd;
	int cg_base;       /* noded-<pid> directory fd; -1: tree mode */
	bool cg_off;       /* new tasks in tree mode (clone3 refused) */
	bool cg_has_kill;  /* cgroup.kill exists */
	unsigned cg_ctrl;  /* CG_CTRL_* enabled for the task cgroups */
	char cg_why[192];  /* why tasks get no cgroup, "" when they do */
	char cg_path[PATH_MAX];
	struct cg_left *cg_left;
	struct {           /* emptied cgroups, c<idx> */
		int fd, events;
		unsigned idx;
	} cg_pool[CG_POOL];
	unsigned cg_npool;
	unsigned cg_next;  /* the next new cgroup is c<cg_next> */
	struct task *tasks;
	uint8_t *buf;    /* ND_EXEC_MSG_MAX bytes: one request */
	bool warned;     /* a malformed request was logged */
	int stop_signal; /* SIGTERM/SIGINT/SIGHUP received, 0: none */
};

/* helper_cgroup.c (fuller contracts at the definitions) */
/* File name under dirfd, NUL-terminated, in a new buffer (free it), at
 * most max bytes, *len its length; NULL when unreadable or out of memory. */
char *nd__helper_read_all(int dirfd, const char *name, size_t max,
			  size_t *len);
/* Chooses cgroup or tree mode at start; logs the choice. */
void nd__cgroup_setup(struct helper *h);
/* clone3 refused a cgroup (err): tree mode for new tasks when it will
 * repeat. */
void nd__cgroup_refused(struct helper *h, int err);
/* Gives t a cgroup (pooled or new); t->cg_fd stays -1 when that fails. */
void nd__cgroup_make(struct helper *h, struct task *t);
/* sig to every process of cgroup fd; the count seen, or -errno. */
int nd__cgroup_signal(int fd, bool has_kill, int sig);
/* t was reaped: its cgroup back to the pool, or killed and removed. */
void nd__cgroup_release(struct helper *h, struct task *t);
/* Retries the removals left; next try (monotonic ms), -1: none left. */
int64_t nd__cgroup_sweep(struct helper *h);
/* Sets c's limits (memory, cpu, pids) in t's cgroup, enabling the
 * controllers they need first; 0, or a positive errno with reason (size
 * bytes) saying why they cannot be applied: then t must not run. */
int nd__cgroup_limit(struct helper *h, struct task *t,
		     const Noded__Command *c, char *reason, size_t size);
/* After t (limited) ended: what its limits did, as "out of memory: ..."
 * (note, size bytes; "" when they did nothing worth saying). */
void nd__cgroup_limit_note(const struct task *t, char *note, size_t size);

/* helper_tree.c */
/* sig to t's whole tree (either mode); t's pid must not be reaped yet.
 * With SIGKILL, all the mode can find is dead or dying on return. */
void nd__kill_tree(struct helper *h, struct task *t, int sig);

#endif
