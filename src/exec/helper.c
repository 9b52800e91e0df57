/*
 * The exec helper process: `noded exec-helper`, started by
 * nd_exec_helper_spawn() with its socket on fd 3 (src/exec/exec.h,
 * ../shared/DESIGN.md "Running commands").
 *
 * One thread, blocking calls, one poll() loop over three things: the
 * socket (one ExecRequest per datagram), a signalfd (SIGCHLD, and the
 * signals that stop the helper) and the nearest kill deadline as the poll
 * timeout. Each command runs in a process group of its own, whose id is
 * the command's pid. The helper is a child subreaper, so whatever a
 * command leaves behind is reparented here and reaped: the helper never
 * leaves zombies.
 *
 * Every signal the helper sends to a task goes to its whole tree
 * (kill_tree), found one of two ways, chosen when the helper starts:
 * - cgroup mode: each task is born in a cgroup v2 of its own (clone3
 *   with CLONE_INTO_CGROUP: in it before its first instruction, see
 *   spawn_in_cgroup in command.c),
 *   <our cgroup>/noded-<helper pid>/c<n> (emptied ones serve again), so whatever it forks,
 *   setsid or double-fork included, stays in it (only a privileged
 *   process that writes itself into another cgroup leaves). SIGKILL is
 *   one write to cgroup.kill (Linux 5.14; before, each pid of
 *   cgroup.procs, again until it is empty); other signals go to each pid
 *   of cgroup.procs. The cgroup is removed once empty.
 * - tree mode, without a usable cgroup v2 (none mounted, not writable, no
 *   clone3 CLONE_INTO_CGROUP, or NODED_CGROUP=off in the environment):
 *   the group, every descendant of the task's pid (a ppid walk of /proc:
 *   setsid does not change a parent), and every process reparented to us
 *   (its parent died: a double fork) whose environment still carries the
 *   task's NODED_TASK_TAG, with their descendants. Missed: a process
 *   whose chain to the task was cut (it was reparented to us) and that
 *   also exec'd with a cleared or changed NODED_TASK_TAG; and, being a
 *   walk and not atomic, children forked faster than two walks see.
 * When a task's process ends, for whatever reason, its tree is killed
 * with SIGKILL before its ExecExited is sent.
 *
 * Fencing: a command spawned with a lease (ExecSpawn.lease_deadline_mono_ms)
 * gets SIGTERM LEASE_GRACE_MS (or its grace_ms if shorter) before the
 * lease ends and SIGKILL when it ends (to its whole tree, as above),
 * unless an ExecLease moved the end on first; an ended lease is never
 * renewed. The helper does this on its own clock, so a worker that is
 * frozen (SIGSTOP) or cut off from its master cannot keep an attempt
 * running past its lease; a worker that dies closes our socket, and EOF
 * kills everything at once (stop_all).
 *
 * Every descriptor the helper opens is close-on-exec, and commands are
 * spawned with closefrom(3) as well, so a command sees exactly its
 * stdin (/dev/null), stdout and stderr (pipes).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/time.h"
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

static struct task *find_id(struct helper *h, uint64_t id)
{
	for (struct task *t = h->tasks; t; t = t->next)
		if (t->id == id)
			return t;
	return NULL;
}

/* Unlinks the task of pid and returns it (the caller frees it), or NULL. */
static struct task *take_pid(struct helper *h, pid_t pid)
{
	for (struct task **p = &h->tasks; *p; p = &(*p)->next) {
		struct task *t = *p;

		if (t->pid == pid) {
			*p = t->next;
			return t;
		}
	}
	return NULL;
}

/* ---- a task's tree: cgroup mode ---- */

/* The whole of file name (relative to dirfd), NUL-terminated, in a new
 * buffer (free it), *len its length; at most max bytes. NULL when it
 * cannot be opened or memory is short. */
static char *read_all(int dirfd, const char *name, size_t max, size_t *len)
{
	struct nd_buf b = { 0 };
	ssize_t n = 0;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

	*len = 0;
	if (fd < 0)
		return NULL;
	do {
		/* Grows by 16 KiB steps (not doubling): the bound stays
		 * within a step of max. */
		if (b.cap - b.len < 4096 + 1 &&
		    (b.cap >= max || nd_buf_resize(&b, b.cap + 16384)))
			break;
		n = read(fd, b.data + b.len, b.cap - b.len - 1);
		b.len += n > 0 ? (size_t)n : 0;
	} while (n > 0 || (n < 0 && errno == EINTR));
	close(fd);
	if (b.data)
		b.data[b.len] = '\0';
	*len = b.len;
	return (char *)b.data;
}

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' &&
		    r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 +
				      (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/*
 * The directory of our own cgroup v2 into dir (size bytes): our "0::/path"
 * line of /proc/self/cgroup under a cgroup2 mount of /proc/self/mountinfo
 * whose root contains it (/sys/fs/cgroup on a unified host,
 * /sys/fs/cgroup/unified on a hybrid one). Returns 0, -ENOENT when there is
 * no cgroup2 mount or our cgroup is not under one, or another -errno.
 */
static int own_cgroup_dir(char *dir, size_t size)
{
	char line[4096], cg[PATH_MAX] = "";
	int ret = -ENOENT;
	FILE *f;

	f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(cg, sizeof(cg), "%s", line + 3);
		}
	fclose(f);
	if (cg[0] != '/')
		return -ENOENT;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (ret == -ENOENT && fgets(line, sizeof(line), f)) {
		char *fld[6], *sep = strstr(line, " - "), *save = NULL;
		const char *rest;
		size_t rlen;
		int n = 0;

		if (!sep || strncmp(sep + 3, "cgroup2 ", 8))
			continue;
		*sep = '\0';
		for (char *w = strtok_r(line, " ", &save); w && n < 6;
		     w = strtok_r(NULL, " ", &save))
			fld[n++] = w;
		if (n < 5)
			continue;
		unescape(fld[3]); /* the mount's root in the hierarchy */
		unescape(fld[4]); /* where it is mounted */
		rlen = strcmp(fld[3], "/") ? strlen(fld[3]) : 0;
		if (strncmp(cg, fld[3], rlen) ||
		    (cg[rlen] != '/' && cg[rlen] != '\0'))
			continue;
		rest = cg + rlen;
		if ((size_t)snprintf(dir, size, "%s%s", fld[4],
				     strcmp(rest, "/") ? rest : "") >= size)
			ret = -ENAMETOOLONG;
		else
			ret = 0;
	}
	fclose(f);
	return ret;
}

static int cgroup_signal(int fd, bool has_kill, int sig);

/*
 * Kills and removes what a helper that died (SIGKILL, a crash) left in
 * dir: each noded-<pid> whose pid no longer exists, its task cgroups first
 * (their processes are killed; a cgroup still populated after that is
 * left for the next helper that starts). A pid that was reused keeps its
 * directory: it is left alone. Its tasks already ended as failed on the
 * worker that ran them ("the exec helper died").
 */
static void cgroup_sweep_dead(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		long pid;
		char *end;
		int base;
		DIR *td;
		struct dirent *te;

		if (strncmp(de->d_name, "noded-", 6))
			continue;
		pid = strtol(de->d_name + 6, &end, 10);
		if (*end || pid <= 0 || kill((pid_t)pid, 0) == 0 ||
		    errno != ESRCH)
			continue;
		base = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY |
			      O_CLOEXEC);
		if (base < 0)
			continue;
		td = fdopendir(dup(base));
		while (td && (te = readdir(td))) {
			int fd;

			if (te->d_name[0] != 'c' || te->d_name[1] < '0' ||
			    te->d_name[1] > '9')
				continue;
			fd = openat(base, te->d_name, O_RDONLY | O_DIRECTORY |
				    O_CLOEXEC);
			if (fd < 0)
				continue;
			cgroup_signal(fd, true, SIGKILL);
			close(fd);
			for (int i = 0; i < 20 && unlinkat(base, te->d_name,
							  AT_REMOVEDIR) < 0 &&
			     errno == EBUSY; i++)
				usleep(10000);
		}
		if (td)
			closedir(td);
		close(base);
		if (!unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR))
			ND_LOG(ND_LOG_INFO, "helper.cgroup_swept",
			       ND_S("cgroup", de->d_name),
			       ND_S("msg", "removed what a dead exec helper "
				    "left"));
	}
	closedir(d);
}

/*
 * Chooses the kill mode: cgroup mode when NODED_CGROUP is not "off" (the
 * variable is removed from our environment, so commands do not see it) and
 * we can make <our cgroup>/noded-<pid> (root, or a delegated cgroup);
 * whether tasks can really be born there is learnt at the first spawn.
 * Logs the choice. Tree mode needs nothing.
 */
static void cgroup_setup(struct helper *h)
{
	const char *knob = getenv("NODED_CGROUP");
	bool off = knob && !strcmp(knob, "off");
	char dir[PATH_MAX];
	int ret;

	/* the daemon's knob, not the commands' (as NODED_LOG_*) */
	unsetenv("NODED_CGROUP");
	h->cg_base = -1;
	if (off) {
		ND_LOG(ND_LOG_DEBUG, "helper.kill_mode", ND_S("mode", "tree"),
		       ND_S("why", "NODED_CGROUP=off"));
		return;
	}
	ret = own_cgroup_dir(dir, sizeof(dir));
	if (!ret)
		cgroup_sweep_dead(dir);
	if (!ret && (size_t)snprintf(h->cg_path, sizeof(h->cg_path),
				     "%s/noded-%d", dir, (int)getpid()) >=
			    sizeof(h->cg_path))
		ret = -ENAMETOOLONG;
	if (!ret && mkdir(h->cg_path, 0755) < 0 && errno != EEXIST)
		ret = -errno;
	if (!ret) {
		h->cg_base = open(h->cg_path, O_RDONLY | O_DIRECTORY |
				  O_CLOEXEC);
		if (h->cg_base < 0)
			ret = -errno;
	}
	if (ret) {
		ND_LOG(ND_LOG_DEBUG, "helper.kill_mode", ND_S("mode", "tree"),
		       ND_S("why", ret == -ENOENT ? "no cgroup v2 mounted"
						  : strerror(-ret)));
		return;
	}
	h->cg_has_kill = faccessat(h->cg_base, "cgroup.kill", F_OK, 0) == 0;
	ND_LOG(ND_LOG_DEBUG, "helper.kill_mode", ND_S("mode", "cgroup"),
	       ND_S("path", h->cg_path), ND_B("cgroup_kill", h->cg_has_kill));
}

/*
 * clone3 refused to start a command in its cgroup with err: when that will
 * repeat (a kernel without CLONE_INTO_CGROUP, a cgroup that cannot take
 * processes, not allowed), new tasks use tree mode from now on; tasks
 * already in cgroups keep them (cg_base stays open for their removal).
 */
static void cgroup_refused(struct helper *h, int err)
{
	if (err == EAGAIN || err == ENOMEM || err == EINTR || h->cg_off)
		return;
	h->cg_off = true;
	ND_LOG(ND_LOG_WARN, "helper.kill_mode", ND_S("mode", "tree"),
	       ND_S("path", h->cg_path), ND_S("why", strerror(err)),
	       ND_S("msg", "cannot start commands in a cgroup; killing "
		    "their process trees found in /proc instead"));
}

/* Gives t a cgroup: an emptied one of the pool, or a new one, c<n>;
 * t->cg_fd stays -1 (tree mode for t) when that fails. */
static void cgroup_make(struct helper *h, struct task *t)
{
	char name[32];

	t->cg_fd = t->cg_events = -1;
	if (h->cg_base < 0 || h->cg_off)
		return;
	if (h->cg_npool) {
		unsigned i = --h->cg_npool;

		t->cg_fd = h->cg_pool[i].fd;
		t->cg_events = h->cg_pool[i].events;
		t->cg_idx = h->cg_pool[i].idx;
		return;
	}
	t->cg_idx = h->cg_next++;
	snprintf(name, sizeof(name), "c%u", t->cg_idx);
	if (mkdirat(h->cg_base, name, 0755) < 0 && errno != EEXIST) {
		ND_LOG(ND_LOG_WARN, "helper.cgroup_failed", ND_U("task", t->id),
		       ND_S("op", "mkdir"), ND_S("err", strerror(errno)));
		return;
	}
	t->cg_fd = openat(h->cg_base, name, O_RDONLY | O_DIRECTORY |
			  O_CLOEXEC);
	if (t->cg_fd >= 0)
		t->cg_events = openat(t->cg_fd, "cgroup.events",
				      O_RDONLY | O_CLOEXEC);
}

/* Whether the cgroup of events fd ev still holds a process (true when it
 * cannot be read: assume so). */
static bool cgroup_populated(int ev)
{
	char buf[128];
	ssize_t n = ev >= 0 ? pread(ev, buf, sizeof(buf) - 1, 0) : -1;

	if (n <= 0)
		return true;
	buf[n] = '\0';
	return !strstr(buf, "populated 0");
}

/*
 * Sends sig to every process in cgroup directory fd: one write of "1" to
 * cgroup.kill for SIGKILL where there is one, each pid of cgroup.procs
 * otherwise. Returns the number of processes seen in cgroup.procs (0 after
 * a cgroup.kill), or -errno.
 */
static int cgroup_signal(int fd, bool has_kill, int sig)
{
	char *buf, *p, *end;
	int seen = 0;
	size_t len;

	if (sig == SIGKILL && has_kill) {
		int kfd = openat(fd, "cgroup.kill", O_WRONLY | O_CLOEXEC);
		ssize_t n = kfd >= 0 ? write(kfd, "1", 1) : -1;

		if (kfd >= 0)
			close(kfd);
		if (n == 1)
			return 0;
	}
	buf = read_all(fd, "cgroup.procs", 1u << 20, &len);
	if (!buf)
		return -errno;
	for (p = buf;; p = end) {
		long pid = strtol(p, &end, 10);

		if (end == p)
			break;
		if (pid > 0) {
			kill((pid_t)pid, sig);
			seen++;
		}
	}
	free(buf);
	return seen;
}

/* ---- a task's tree: tree mode ---- */

struct pent {
	pid_t pid, ppid;
	bool in;
};

static int pent_cmp(const void *a, const void *b)
{
	const struct pent *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* The parent of pid from /proc/pid/stat, or -1. */
static pid_t stat_ppid(pid_t pid)
{
	char path[64], buf[1024], *rp;
	int fd, ppid = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	rp = strrchr(buf, ')'); /* the name may hold anything, ')' too */
	if (!rp || sscanf(rp + 1, " %*c %d", &ppid) != 1)
		return -1;
	return (pid_t)ppid;
}

/* Every process of /proc with its parent, sorted by pid, in a new array
 * (*out, free it). Returns the count or -errno. */
static ssize_t proc_list(struct pent **out)
{
	struct pent *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d = opendir("/proc");

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		long pid = strtol(de->d_name, NULL, 10);
		pid_t ppid;

		if (pid <= 0 || (ppid = stat_ppid((pid_t)pid)) < 0)
			continue;
		if (n == cap) {
			/* An array of structs, not bytes: no nd_buf. */
			struct pent *nv;

			cap = cap ? 2 * cap : 256;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = (struct pent){ .pid = (pid_t)pid, .ppid = ppid };
	}
	closedir(d);
	qsort(v, n, sizeof(*v), pent_cmp);
	*out = v;
	return (ssize_t)n;
}

/* True when tag ("KEY=VALUE") is an entry of pid's environment. */
static bool has_tag(pid_t pid, const char *tag)
{
	size_t tlen = strlen(tag) + 1, len;
	bool found = false;
	char path[64], *buf;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	buf = read_all(AT_FDCWD, path, 1u << 20, &len);
	/* entries are NUL-terminated: match a whole one, NUL included */
	for (size_t i = 0; buf && i + tlen <= len; i++) {
		if ((i == 0 || buf[i - 1] == '\0') &&
		    !memcmp(buf + i, tag, tlen)) {
			found = true;
			break;
		}
	}
	free(buf);
	return found;
}

static bool is_task_pid(const struct helper *h, pid_t pid)
{
	for (const struct task *t = h->tasks; t; t = t->next)
		if (t->pid == pid)
			return true;
	return false;
}

/* Our children (pids) from /proc/self/task/<tid>/children into v (max);
 * returns the count, or -errno when the kernel lacks that file. */
static ssize_t own_children(pid_t *v, size_t max)
{
	char path[64], buf[8192], *p;
	size_t k = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/children",
		 (int)gettid());
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0 || n == (ssize_t)sizeof(buf) - 1)
		return -EOVERFLOW; /* walk /proc instead */
	buf[n] = '\0';
	for (p = buf; *p && k < max;) {
		char *e;
		long pid = strtol(p, &e, 10);

		if (e == p)
			break;
		v[k++] = (pid_t)pid;
		p = e;
	}
	return (ssize_t)k;
}

/*
 * Tree mode: sends sig to t's process (unless reaped), its descendants,
 * and the processes reparented to us that carry t's tag, with their
 * descendants; returns how many processes other than t's got it. Once t's
 * process has exited its children are ours, so a look at our own children
 * settles the common case (none tagged) without walking /proc.
 */
static int tree_signal(struct helper *h, struct task *t, int sig)
{
	pid_t self = getpid(), kids[256];
	struct pent *v = NULL;
	bool changed, any = false;
	int signalled = 0;
	ssize_t n;

	if (t->exited) {
		n = own_children(kids, sizeof(kids) / sizeof(kids[0]));
		for (ssize_t i = 0; i < n && !any; i++)
			any = !is_task_pid(h, kids[i]) &&
			      has_tag(kids[i], t->tag);
		if (n >= 0 && (size_t)n < sizeof(kids) / sizeof(kids[0]) &&
		    !any)
			return 0;
	}
	n = proc_list(&v);
	if (n < 0)
		return 0;
	for (ssize_t i = 0; i < n; i++)
		v[i].in = (!t->exited && v[i].pid == t->pid) ||
			  (v[i].ppid == self && !is_task_pid(h, v[i].pid) &&
			   has_tag(v[i].pid, t->tag));
	do {
		changed = false;
		for (ssize_t i = 0; i < n; i++) {
			struct pent key = { .pid = v[i].ppid }, *parent;

			if (v[i].in)
				continue;
			parent = bsearch(&key, v, (size_t)n, sizeof(*v),
					 pent_cmp);
			if (parent && parent->in) {
				v[i].in = true;
				changed = true;
			}
		}
	} while (changed);
	for (ssize_t i = 0; i < n; i++)
		if (v[i].in && v[i].pid != self && kill(v[i].pid, sig) == 0 &&
		    v[i].pid != t->pid)
			signalled++;
	free(v);
	return signalled;
}

/*
 * Sends sig to the whole tree of task t: its process group and, in cgroup
 * mode, every process of its cgroup (atomically for SIGKILL with
 * cgroup.kill), in tree mode what tree_signal finds (twice for SIGKILL
 * when it found any, for the children forked meanwhile).
 * The contract callers rely on: t's pid is not yet reaped (a zombie is
 * fine: set t->exited), so its group id cannot have been reused; with
 * SIGKILL, every process of the tree that the mode can find is dead or
 * dying when it returns (a cgroup that is not yet empty is killed again
 * by cgroup_remove). Errors are ignored: what is gone needs no signal.
 */
static void kill_tree(struct helper *h, struct task *t, int sig)
{
	kill(-t->pid, sig);
	if (t->cg_fd >= 0) {
		cgroup_signal(t->cg_fd, h->cg_has_kill, sig);
		t->cg_killed |= sig == SIGKILL && h->cg_has_kill;
	}
	else if (tree_signal(h, t, sig) > 0 && sig == SIGKILL)
		tree_signal(h, t, sig); /* what forked during the first walk */
}

/* ---- a task's cgroup, once it ended ---- */

/* Removes an ended task's cgroup (fd, closed here or kept in h->cg_left
 * while populated: its processes are killed again at each retry). */
static void cgroup_remove(struct helper *h, int fd, unsigned idx);

/*
 * t's process was reaped: its cgroup, when nothing is left in it, goes to
 * the pool for a next task; otherwise what is left is killed (cgroup.kill)
 * and the cgroup removed once empty (cgroup_remove).
 */
static void cgroup_release(struct helper *h, struct task *t)
{
	/* Not one that had a cgroup.kill: on some kernels (6.18 here) a
	 * process later born into it by CLONE_INTO_CGROUP is killed at once
	 * (the kill is remembered by the cgroup). */
	if (!t->cg_killed && !cgroup_populated(t->cg_events) &&
	    h->cg_npool < CG_POOL) {
		h->cg_pool[h->cg_npool].fd = t->cg_fd;
		h->cg_pool[h->cg_npool].events = t->cg_events;
		h->cg_pool[h->cg_npool].idx = t->cg_idx;
		h->cg_npool++;
	} else {
		cgroup_signal(t->cg_fd, h->cg_has_kill, SIGKILL);
		if (t->cg_events >= 0)
			close(t->cg_events);
		cgroup_remove(h, t->cg_fd, t->cg_idx);
	}
	t->cg_fd = t->cg_events = -1;
}

static void cgroup_remove(struct helper *h, int fd, unsigned idx)
{
	struct cg_left *l;
	char name[32];

	snprintf(name, sizeof(name), "c%u", idx);
	if (!unlinkat(h->cg_base, name, AT_REMOVEDIR) || errno != EBUSY) {
		close(fd);
		return;
	}
	l = malloc(sizeof(*l));
	if (!l) {
		close(fd);
		return;
	}
	cgroup_signal(fd, h->cg_has_kill, SIGKILL);
	l->fd = fd;
	l->idx = idx;
	l->give_up = (int64_t)nd_mono_ms() + CG_REMOVE_MS;
	l->next = h->cg_left;
	h->cg_left = l;
}

/* Retries the removals left; returns when to try again (monotonic ms),
 * or -1 when none is left. */
static int64_t cgroup_sweep(struct helper *h)
{
	int64_t now = (int64_t)nd_mono_ms();

	for (struct cg_left **pp = &h->cg_left; *pp;) {
		struct cg_left *l = *pp;
		char name[32];
		bool done;

		snprintf(name, sizeof(name), "c%u", l->idx);
		done = !unlinkat(h->cg_base, name, AT_REMOVEDIR) ||
		       errno != EBUSY;
		if (!done && now >= l->give_up) {
			ND_LOG(ND_LOG_WARN, "helper.cgroup_left",
			       ND_S("path", h->cg_path), ND_S("cgroup", name),
			       ND_S("msg", "processes of an ended task are "
				    "still there after SIGKILL; giving up "
				    "removing its cgroup"));
			done = true;
		}
		if (done) {
			*pp = l->next;
			close(l->fd);
			free(l);
			continue;
		}
		cgroup_signal(l->fd, h->cg_has_kill, SIGKILL);
		pp = &l->next;
	}
	return h->cg_left ? now + CG_RETRY_MS : -1;
}

/*
 * Sends one event, with fds (nfds of them, 0 or 2) as SCM_RIGHTS; the
 * caller keeps its copies. Blocks while the daemon's receive queue is
 * full. Returns 0 or -errno (-EPIPE once the daemon is gone: the poll loop
 * then sees the hangup and stops).
 */
static int send_event(struct helper *h, const Noded__ExecEvent *ev,
		      const int *fds, int nfds)
{
	uint8_t buf[REASON_MAX + 256];
	union {
		struct cmsghdr hdr;
		char space[CMSG_SPACE(2 * sizeof(int))];
	} cm;
	struct iovec iov = { .iov_base = buf };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	size_t len = noded__exec_event__get_packed_size(ev);

	if (len > sizeof(buf) || nfds < 0 || nfds > 2)
		return -EMSGSIZE;
	iov.iov_len = noded__exec_event__pack(ev, buf);
	if (nfds) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		msg.msg_control = cm.space;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	while (sendmsg(h->sock, &msg, MSG_NOSIGNAL) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* Sends x as an ExecExited. A send error is dropped on purpose: it means
 * the daemon is gone, which the poll loop notices and acts on. */
static void send_exited(struct helper *h, Noded__ExecExited *x)
{
	Noded__ExecEvent ev = NODED__EXEC_EVENT__INIT;

	ev.body_case = NODED__EXEC_EVENT__BODY_EXITED;
	ev.exited = x;
	send_event(h, &ev, NULL, 0);
}

/* Reports a spawn that did not happen (err > 0): no ExecStarted was sent,
 * and this ExecExited says why. */
static void spawn_failed(struct helper *h, uint64_t id, int err,
			 const char *reason)
{
	Noded__ExecExited x = NODED__EXEC_EXITED__INIT;

	x.task_id = id;
	nd_exec_spawn_failed(&x, err, reason);
	x.start_unix_ms = x.end_unix_ms = nd_unix_ms();
	send_exited(h, &x);
}

/*
 * ExecSpawn: starts the command and sends ExecStarted with the read ends of
 * its pipes (we keep no pipe end), or sends ExecExited with spawn_errno
 * when it could not start (then nothing runs).
 */
static void start_task(struct helper *h, const Noded__ExecSpawn *sp)
{
	Noded__ExecEvent ev = NODED__EXEC_EVENT__INIT;
	Noded__ExecStarted st = NODED__EXEC_STARTED__INIT;
	struct nd_exec_opts o = { .cgroup_fd = -1 };
	char reason[REASON_MAX] = "";
	int fds[2];
	struct task *t;
	int err;

	if (find_id(h, sp->task_id)) {
		err = EEXIST;
		snprintf(reason, sizeof(reason),
			 "task %llu is already running",
			 (unsigned long long)sp->task_id);
		goto report;
	}
	/* Allocated before the spawn: a command must never run untracked. */
	t = calloc(1, sizeof(*t));
	if (!t) {
		err = ENOMEM;
		goto report;
	}
	t->id = sp->task_id;
	snprintf(t->tag, sizeof(t->tag), TAG_KEY "=%d.%llu", (int)getpid(),
		 (unsigned long long)t->id);
	cgroup_make(h, t);
	o.cgroup_fd = t->cg_fd;
	o.tag = t->tag;
	err = nd_exec_command_start_opts(sp, &o, &t->pid, fds, reason,
					 sizeof(reason));
	if (o.cgroup_err && t->cg_fd >= 0) {
		/* born outside it, or not at all: tree mode for this task */
		cgroup_release(h, t);
		cgroup_refused(h, o.cgroup_err);
	}
	if (err) {
		if (t->cg_fd >= 0)
			cgroup_release(h, t);
		free(t);
		goto report;
	}

	t->state = TASK_RUNNING;
	t->timeout_ms = sp->command->timeout_ms; /* started: it has one */
	t->grace_ms = sp->grace_ms ? sp->grace_ms : GRACE_DEFAULT_MS;
	t->deadline = t->timeout_ms ?
		(int64_t)nd_mono_ms() + t->timeout_ms : -1;
	t->start_unix_ms = nd_unix_ms();
	t->lease = sp->lease_deadline_mono_ms > 0 ? sp->lease_deadline_mono_ms
						  : 0;
	t->next = h->tasks;
	h->tasks = t;

	st.task_id = t->id;
	st.pid = t->pid;
	st.start_unix_ms = t->start_unix_ms;
	ev.body_case = NODED__EXEC_EVENT__BODY_STARTED;
	ev.started = &st;
	err = -send_event(h, &ev, fds, 2);
	if (err) {
		/* Nobody can read its output or know it runs: stop it now.
		 * Its ExecExited still follows, saying why. */
		t->lost_errno = err;
		t->state = TASK_KILLED;
		t->deadline = -1;
		kill_tree(h, t, SIGKILL);
	}
	close(fds[0]);
	close(fds[1]);
	return;

report:
	if (!reason[0])
		snprintf(reason, sizeof(reason), "%s", strerror(err));
	spawn_failed(h, sp->task_id, err, reason);
}

/* Starts terminating t's tree: SIGTERM now (and SIGCONT, so a stopped
 * process gets it), SIGKILL after the grace period. */
static void terminate(struct helper *h, struct task *t, int64_t now)
{
	kill_tree(h, t, SIGTERM);
	kill_tree(h, t, SIGCONT);
	t->state = TASK_TERMED;
	t->deadline = now + t->grace_ms;
}

/* ExecKill: cancels a task that is not already being killed. Unknown ids
 * are ignored: the task may have ended while the request was in flight. */
static void cancel_task(struct helper *h, const Noded__ExecKill *k)
{
	struct task *t = find_id(h, k->task_id);

	if (!t || t->state != TASK_RUNNING)
		return;
	t->cancelled = true;
	terminate(h, t, (int64_t)nd_mono_ms());
}

/*
 * When t's lease calls for a step: SIGTERM a little before its end while
 * it runs, SIGKILL at its end once terminating. -1: none.
 */
static int64_t lease_step(const struct task *t)
{
	uint32_t grace = t->grace_ms < LEASE_GRACE_MS ? t->grace_ms
						      : LEASE_GRACE_MS;

	if (!t->lease || t->state == TASK_KILLED)
		return -1;
	return t->state == TASK_RUNNING ? t->lease - grace : t->lease;
}

/*
 * The lease of t ran out (or is about to: within its grace): terminate it
 * by the usual path, with the SIGKILL no later than the lease's end, so
 * that nothing of it runs past the lease (see the header).
 */
static void lease_expire(struct helper *h, struct task *t, int64_t now)
{
	if (t->state == TASK_RUNNING) {
		t->lease_expired = true;
		terminate(h, t, now);
	}
	if (t->deadline < 0 || t->deadline > t->lease)
		t->deadline = t->lease;
}

/* Takes the steps whose deadline has come; returns the nearest deadline
 * left (monotonic ms), or -1 when there is none. */
static int64_t run_deadlines(struct helper *h)
{
	int64_t now = (int64_t)nd_mono_ms(), next = -1;

	for (struct task *t = h->tasks; t; t = t->next) {
		int64_t ls = lease_step(t);

		if (ls >= 0 && ls <= now)
			lease_expire(h, t, now);
		if (t->deadline >= 0 && t->deadline <= now) {
			if (t->state == TASK_RUNNING) {
				t->timed_out = true;
				terminate(h, t, now);
			} else {
				kill_tree(h, t, SIGKILL);
				t->state = TASK_KILLED;
				t->deadline = -1;
			}
		}
		if (t->deadline >= 0 && (next < 0 || t->deadline < next))
			next = t->deadline;
		ls = lease_step(t);
		if (ls >= 0 && (next < 0 || ls < next))
			next = ls;
	}
	return next;
}

/*
 * ExecLease: moves the lease of every leased command on to the deadline
 * (never back). Steps already due are taken first, so a lease that ran
 * out while we did not run (a stopped helper) is not renewed after the
 * fact.
 */
static void renew_leases(struct helper *h, const Noded__ExecLease *l)
{
	run_deadlines(h);
	for (struct task *t = h->tasks; t; t = t->next)
		if (t->lease && t->state == TASK_RUNNING &&
		    l->deadline_mono_ms > t->lease)
			t->lease = l->deadline_mono_ms;
}

/* Sends the ExecExited of a reaped task. */
static void task_exited(struct helper *h, const struct task *t, int status,
			const struct rusage *ru)
{
	Noded__ExecExited x = NODED__EXEC_EXITED__INIT;
	char reason[REASON_MAX];

	x.task_id = t->id;
	x.timed_out = t->timed_out;
	x.cancelled = t->cancelled;
	x.lease_expired = t->lease_expired;
	x.start_unix_ms = t->start_unix_ms;
	x.end_unix_ms = nd_unix_ms();
	nd_exec_exited_fill(&x, status, ru, t->timeout_ms, t->lost_errno,
			    reason, sizeof(reason));
	send_exited(h, &x);
}

/*
 * Reaps every child that has exited. For a task, its tree is killed
 * while the exited leader still holds the group id (so the id cannot have
 * been reused), then ExecExited is sent and its cgroup removed (once
 * empty). Other children are orphans left by tasks and reparented to us:
 * reaped silently. Returns false when we have no children at all.
 */
static bool reap(struct helper *h)
{
	for (;;) {
		siginfo_t si = { 0 };
		struct rusage ru;
		struct task *t;
		int status;

		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
			if (errno == EINTR)
				continue;
			return errno != ECHILD;
		}
		if (si.si_pid == 0)
			return true;
		t = take_pid(h, si.si_pid);
		/* What it left is killed: in tree mode now, while its
		 * group id cannot be reused; in cgroup mode once it is
		 * reaped, and only if its cgroup still holds something
		 * (cgroup_release: most commands leave nothing). */
		if (t) {
			t->exited = true;
			if (t->cg_fd < 0)
				kill_tree(h, t, SIGKILL);
		}
		while (wait4(si.si_pid, &status, 0, &ru) < 0 && errno == EINTR)
			;
		if (t) {
			task_exited(h, t, status, &ru);
			if (t->cg_fd >= 0)
				cgroup_release(h, t);
			free(t);
		}
	}
}

/* Reads what the signalfd holds; notes a stop signal. */
static void drain_signals(struct helper *h)
{
	struct signalfd_siginfo si[8];
	ssize_t n;

	while ((n = read(h->sigfd, si, sizeof(si))) > 0) {
		for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++)
			if (si[i].ssi_signo != SIGCHLD)
				h->stop_signal = (int)si[i].ssi_signo;
	}
}

static void malformed(struct helper *h, const char *what, ssize_t len)
{
	if (h->warned)
		return;
	h->warned = true;
	ND_LOG(ND_LOG_ERROR, "helper.bad_request", ND_S("what", what),
	       ND_I("bytes", len),
	       ND_S("msg", "ignoring a malformed request; later ones are "
		    "ignored silently"));
}

/* True when the daemon has closed or shut down its end. */
static bool peer_gone(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) > 0 &&
	       (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/*
 * Receives and carries out one request. Descriptors sent along with it
 * (the daemon never should) are closed. Returns 0, or -EPIPE when the
 * daemon is gone (or the socket failed).
 */
static int handle_request(struct helper *h)
{
	union {
		struct cmsghdr hdr;
		char space[CMSG_SPACE(8 * sizeof(int))];
	} cm;
	struct iovec iov = { .iov_base = h->buf, .iov_len = ND_EXEC_MSG_MAX };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cm.space,
		.msg_controllen = sizeof(cm.space),
	};
	Noded__ExecRequest *r;
	ssize_t n;

	n = recvmsg(h->sock, &msg, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -EPIPE;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
	     c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int fd;

			for (size_t i = 0; i < k; i++) {
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int),
				       sizeof(fd));
				close(fd);
			}
		}
	}
	/* 0 bytes is either EOF or an empty datagram (not a request). */
	if (n == 0) {
		if (peer_gone(h->sock))
			return -EPIPE;
		malformed(h, "empty", 0);
		return 0;
	}
	if (msg.msg_flags & MSG_TRUNC) {
		malformed(h, "over ND_EXEC_MSG_MAX", n);
		return 0;
	}
	r = noded__exec_request__unpack(NULL, (size_t)n, h->buf);
	if (!r) {
		malformed(h, "not an ExecRequest", n);
		return 0;
	}
	switch (r->body_case) {
	case NODED__EXEC_REQUEST__BODY_SPAWN:
		start_task(h, r->spawn);
		break;
	case NODED__EXEC_REQUEST__BODY_KILL:
		cancel_task(h, r->kill);
		break;
	case NODED__EXEC_REQUEST__BODY_LEASE:
		renew_leases(h, r->lease);
		break;
	default:
		malformed(h, "no body", n);
		break;
	}
	noded__exec_request__free_unpacked(r, NULL);
	return 0;
}

/*
 * Stopping (EOF or a stop signal): SIGKILL every task's group, then reap
 * for up to STOP_REAP_MS, until we have no child left. ExecExited is
 * still attempted for each task (the daemon may be alive when a signal
 * stopped us). Frees the task list.
 */
static void stop_all(struct helper *h)
{
	int64_t end = (int64_t)nd_mono_ms() + STOP_REAP_MS;
	struct pollfd p = { .fd = h->sigfd, .events = POLLIN };

	for (struct task *t = h->tasks; t; t = t->next) {
		kill_tree(h, t, SIGKILL);
		t->state = TASK_KILLED;
	}
	while (reap(h) || h->cg_left) {
		int64_t left = end - (int64_t)nd_mono_ms();

		if (left <= 0)
			break;
		cgroup_sweep(h);
		poll(&p, 1, (int)(left < CG_RETRY_MS ? left : CG_RETRY_MS));
		drain_signals(h);
	}
	while (h->tasks) {
		struct task *t = h->tasks;

		h->tasks = t->next;
		if (t->cg_fd >= 0)
			close(t->cg_fd);
		if (t->cg_events >= 0)
			close(t->cg_events);
		free(t);
	}
	while (h->cg_npool) {
		unsigned i = --h->cg_npool;
		char name[32];

		snprintf(name, sizeof(name), "c%u", h->cg_pool[i].idx);
		close(h->cg_pool[i].fd);
		if (h->cg_pool[i].events >= 0)
			close(h->cg_pool[i].events);
		unlinkat(h->cg_base, name, AT_REMOVEDIR);
	}
	while (h->cg_left) {
		struct cg_left *l = h->cg_left;

		h->cg_left = l->next;
		close(l->fd);
		free(l);
	}
	if (h->cg_base >= 0) {
		unlinkat(AT_FDCWD, h->cg_path, AT_REMOVEDIR);
		close(h->cg_base);
		h->cg_base = -1;
	}
}

/* Opens /dev/null on any of fds 0-2 that is closed, so the pipes we create
 * later can never land there and be mixed up with the command's stdio. */
static void fill_stdio(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
			int nfd = open("/dev/null", O_RDWR);

			if (nfd >= 0 && nfd != fd)
				close(nfd);
		}
	}
}

/*
 * The helper: sets itself up (subreaper, signals on a signalfd), serves
 * requests until the daemon closes the socket or a SIGTERM/SIGINT/SIGHUP
 * arrives, then kills what still runs. Returns 0 after EOF, 128 + signal
 * after a stop signal, 1 or 2 when it could not start.
 */
int nd_exec_helper_main(int fd)
{
	struct helper h = { .sock = fd, .sigfd = -1, .cg_base = -1 };
	static const int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP };
	sigset_t set;
	int ret = 1;

	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		fprintf(stderr, "noded exec-helper: fd %d: %s (this command "
			"is started by the daemon itself)\n", fd,
			strerror(errno));
		return 2;
	}
	fill_stdio();
	nd_log_import();
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		ND_LOG(ND_LOG_ERROR, "helper.failed", ND_S("op", "PR_SET_CHILD_SUBREAPER"),
		       ND_S("err", strerror(errno)));
		return 1;
	}
	/* Whatever the daemon had: an ignored SIGCHLD would auto-reap (and
	 * hide exit statuses), an ignored stop signal would never queue. */
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		signal(sigs[i], SIG_DFL);
		sigaddset(&set, sigs[i]);
	}
	if (sigprocmask(SIG_SETMASK, &set, NULL) < 0) {
		ND_LOG(ND_LOG_ERROR, "helper.failed", ND_S("op", "sigprocmask"),
		       ND_S("err", strerror(errno)));
		return 1;
	}
	h.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (h.sigfd < 0) {
		ND_LOG(ND_LOG_ERROR, "helper.failed", ND_S("op", "signalfd"),
		       ND_S("err", strerror(errno)));
		return 1;
	}
	h.buf = malloc(ND_EXEC_MSG_MAX);
	if (!h.buf) {
		ND_LOG(ND_LOG_ERROR, "helper.failed", ND_S("op", "malloc"),
		       ND_S("err", strerror(errno)));
		goto close_sigfd;
	}
	cgroup_setup(&h);

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = h.sock, .events = POLLIN | POLLRDHUP },
			{ .fd = h.sigfd, .events = POLLIN },
		};
		int64_t next = run_deadlines(&h), wait_ms = -1;
		int64_t sweep = h.cg_left ? cgroup_sweep(&h) : -1;

		if (sweep >= 0 && (next < 0 || sweep < next))
			next = sweep;
		if (next >= 0) {
			wait_ms = next - (int64_t)nd_mono_ms();
			wait_ms = wait_ms < 0 ? 0 : wait_ms > INT_MAX ? INT_MAX
								      : wait_ms;
		}
		if (poll(p, 2, (int)wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			ND_LOG(ND_LOG_ERROR, "helper.failed", ND_S("op", "poll"),
			       ND_S("err", strerror(errno)));
			ret = 1;
			break;
		}
		if (p[1].revents) {
			drain_signals(&h);
			reap(&h);
		}
		if (h.stop_signal) {
			ret = 128 + h.stop_signal;
			break;
		}
		/* Requests still queued behind a hangup are dropped: nobody
		 * would read their events. */
		if (p[0].revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) {
			ret = 0;
			break;
		}
		if ((p[0].revents & POLLIN) && handle_request(&h) < 0) {
			ret = 0;
			break;
		}
	}

	stop_all(&h);
	free(h.buf);
close_sigfd:
	close(h.sigfd);
	return ret;
}
