/*
 * The exec helper's tree mode (see helper.c's header): a task's tree
 * found by a walk of /proc (descendants, and reparented processes that
 * carry the task's tag), and nd__kill_tree, which signals a task's whole tree
 * in either mode.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec/helper.h"

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
	buf = nd__helper_read_all(AT_FDCWD, path, 1u << 20, &len);
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
void nd__kill_tree(struct helper *h, struct task *t, int sig)
{
	kill(-t->pid, sig);
	if (t->cg_fd >= 0) {
		nd__cgroup_signal(t->cg_fd, h->cg_has_kill, sig);
		t->cg_killed |= sig == SIGKILL && h->cg_has_kill;
	}
	else if (tree_signal(h, t, sig) > 0 && sig == SIGKILL)
		tree_signal(h, t, sig); /* what forked during the first walk */
}
