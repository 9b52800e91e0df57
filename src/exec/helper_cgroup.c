/*
 * The exec helper's cgroup mode (see helper.c's header): finding our own
 * cgroup v2, making the helper's noded-<pid> directory and one cgroup per
 * task (pooled once emptied), signalling a cgroup's processes, sweeping
 * what a dead helper left, and removing an ended task's cgroup.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/time.h"
#include "exec/helper.h"

/* ---- a task's tree: cgroup mode ---- */

/* The whole of file name (relative to dirfd), NUL-terminated, in a new
 * buffer (free it), *len its length; at most max bytes. NULL when it
 * cannot be opened or memory is short. */
char *nd__helper_read_all(int dirfd, const char *name, size_t max, size_t *len)
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
			nd__cgroup_signal(fd, true, SIGKILL);
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
void nd__cgroup_setup(struct helper *h)
{
	const char *knob = getenv("NODED_CGROUP");
	bool off = knob && !strcmp(knob, "off");
	char dir[PATH_MAX];
	int ret;

	/* the daemon's knob, not the commands' (as NODED_LOG_*) */
	unsetenv("NODED_CGROUP");
	h->cg_base = -1;
	if (off) {
		snprintf(h->cg_why, sizeof(h->cg_why), "the worker runs "
			 "tasks without cgroups (NODED_CGROUP=off)");
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
		snprintf(h->cg_why, sizeof(h->cg_why), "the worker cannot "
			 "make cgroups: %s", ret == -ENOENT ?
			 "no cgroup v2 mounted" : strerror(-ret));
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
void nd__cgroup_refused(struct helper *h, int err)
{
	if (err == EAGAIN || err == ENOMEM || err == EINTR || h->cg_off)
		return;
	h->cg_off = true;
	snprintf(h->cg_why, sizeof(h->cg_why), "the worker cannot start "
		 "commands in a cgroup: clone3: %s", strerror(err));
	ND_LOG(ND_LOG_WARN, "helper.kill_mode", ND_S("mode", "tree"),
	       ND_S("path", h->cg_path), ND_S("why", strerror(err)),
	       ND_S("msg", "cannot start commands in a cgroup; killing "
		    "their process trees found in /proc instead"));
}

/* Gives t a cgroup: an emptied one of the pool, or a new one, c<n>;
 * t->cg_fd stays -1 (tree mode for t) when that fails. */
void nd__cgroup_make(struct helper *h, struct task *t)
{
	char name[32];

	t->cg_fd = t->cg_events = -1;
	if (h->cg_base < 0 || h->cg_off)
		return;
	/* a limited task's cgroup is new: no limits or counts of another */
	if (h->cg_npool && !t->limited) {
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
int nd__cgroup_signal(int fd, bool has_kill, int sig)
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
	buf = nd__helper_read_all(fd, "cgroup.procs", 1u << 20, &len);
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

/* ---- a task's cgroup, once it ended ---- */

/* Removes an ended task's cgroup (fd, closed here or kept in h->cg_left
 * while populated: its processes are killed again at each retry). */
static void cgroup_remove(struct helper *h, int fd, unsigned idx);

/*
 * t's process was reaped: its cgroup, when nothing is left in it, goes to
 * the pool for a next task; otherwise what is left is killed (cgroup.kill)
 * and the cgroup removed once empty (cgroup_remove).
 */
void nd__cgroup_release(struct helper *h, struct task *t)
{
	/* Not one that had a cgroup.kill: on some kernels (6.18 here) a
	 * process later born into it by CLONE_INTO_CGROUP is killed at once
	 * (the kill is remembered by the cgroup). */
	if (!t->cg_killed && !t->limited && !cgroup_populated(t->cg_events) &&
	    h->cg_npool < CG_POOL) {
		h->cg_pool[h->cg_npool].fd = t->cg_fd;
		h->cg_pool[h->cg_npool].events = t->cg_events;
		h->cg_pool[h->cg_npool].idx = t->cg_idx;
		h->cg_npool++;
	} else {
		nd__cgroup_signal(t->cg_fd, h->cg_has_kill, SIGKILL);
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
	nd__cgroup_signal(fd, h->cg_has_kill, SIGKILL);
	l->fd = fd;
	l->idx = idx;
	l->give_up = (int64_t)nd_mono_ms() + CG_REMOVE_MS;
	l->next = h->cg_left;
	h->cg_left = l;
}

/* Retries the removals left; returns when to try again (monotonic ms),
 * or -1 when none is left. */
int64_t nd__cgroup_sweep(struct helper *h)
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
		nd__cgroup_signal(l->fd, h->cg_has_kill, SIGKILL);
		pp = &l->next;
	}
	return h->cg_left ? now + CG_RETRY_MS : -1;
}

/* ---- a task's limits ---- */

static const struct {
	unsigned bit;
	const char *name;
} controllers[] = {
	{ CG_CTRL_MEMORY, "memory" },
	{ CG_CTRL_CPU, "cpu" },
	{ CG_CTRL_PIDS, "pids" },
};

/* Whether the space-separated list holds word. */
static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; p && *p;) {
		p += strspn(p, " \n");
		if (!strncmp(p, word, n) && (p[n] == ' ' || p[n] == '\n' ||
					     p[n] == '\0'))
			return true;
		p += strcspn(p, " \n");
	}
	return false;
}

/* Writes s to file name under dirfd; 0 or -errno. */
static int write_file(int dirfd, const char *name, const char *s)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
	ssize_t n;
	int err;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	err = n == (ssize_t)strlen(s) ? 0 : n < 0 ? -errno : -EIO;
	close(fd);
	return err;
}

/* Whether controller name is listed in dirfd's cgroup.controllers (its
 * text into list, size bytes, for messages). */
static bool available(int dirfd, const char *name, char *list, size_t size)
{
	size_t len;
	char *s = nd__helper_read_all(dirfd, "cgroup.controllers", 4096, &len);
	bool yes = s && has_word(s, name);

	snprintf(list, size, "%s", s ? s : "");
	list[strcspn(list, "\n")] = '\0';
	free(s);
	return yes;
}

/*
 * Enables the controllers of want for the task cgroups: in our
 * noded-<pid>'s cgroup.subtree_control, after, when noded-<pid> does not
 * have one, in its parent's (the worker's cgroup: allowed when that is the
 * root, or holds no process). Once enabled, a controller stays so for the
 * helper's life. Returns 0, or a positive errno with why (size bytes).
 */
static int enable(struct helper *h, unsigned want, char *why, size_t size)
{
	char parent[PATH_MAX], list[256];
	int pfd = -1, ret = 0;

	snprintf(parent, sizeof(parent), "%s", h->cg_path);
	*strrchr(parent, '/') = '\0';
	for (size_t i = 0; i < sizeof(controllers) / sizeof(controllers[0]);
	     i++) {
		const char *name = controllers[i].name;
		char plus[16];
		int err;

		if (!(want & controllers[i].bit) || (h->cg_ctrl &
						     controllers[i].bit))
			continue;
		snprintf(plus, sizeof(plus), "+%s", name);
		if (!available(h->cg_base, name, list, sizeof(list))) {
			if (pfd < 0)
				pfd = open(parent, O_RDONLY | O_DIRECTORY |
					   O_CLOEXEC);
			if (pfd < 0 || !available(pfd, name, list,
						  sizeof(list))) {
				snprintf(why, size, "the %s controller is not "
					 "available in the worker's cgroup v2 "
					 "(%.150s/cgroup.controllers: \"%.100s\"): "
					 "the host has it in a cgroup v1 "
					 "hierarchy, or did not delegate it",
					 name, parent, list);
				ret = EOPNOTSUPP;
				break;
			}
			err = write_file(pfd, "cgroup.subtree_control", plus);
			if (err) {
				snprintf(why, size, "cannot enable the %s "
					 "controller for the worker's cgroup "
					 "(%.150s/cgroup.subtree_control: %s)%s",
					 name, parent, strerror(-err),
					 err == -EBUSY ? ": it holds processes "
					 "itself; run the worker in a cgroup "
					 "of its own with the controller "
					 "enabled in the one above" : "");
				ret = -err;
				break;
			}
		}
		err = write_file(h->cg_base, "cgroup.subtree_control", plus);
		if (err) {
			snprintf(why, size, "cannot enable the %s controller "
				 "(%.150s/cgroup.subtree_control: %s)", name,
				 h->cg_path, strerror(-err));
			ret = -err;
			break;
		}
		h->cg_ctrl |= controllers[i].bit;
	}
	if (pfd >= 0)
		close(pfd);
	return ret;
}

int nd__cgroup_limit(struct helper *h, struct task *t,
		     const Noded__Command *c, char *reason, size_t size)
{
	unsigned want = (c->memory_max_bytes ? CG_CTRL_MEMORY : 0) |
			(c->cpu_millis ? CG_CTRL_CPU : 0) |
			(c->pids_max ? CG_CTRL_PIDS : 0);
	char why[448], v[48];
	const char *file = NULL;
	int err = 0;

	if (t->cg_fd < 0) {
		snprintf(reason, size, "cannot apply its limits (memory, cpus, "
			 "pids): %s", h->cg_why[0] ? h->cg_why :
			 "its cgroup could not be made");
		return EOPNOTSUPP;
	}
	err = enable(h, want, why, sizeof(why));
	if (err) {
		snprintf(reason, size, "cannot apply its limits: %s", why);
		return err;
	}
	if (c->memory_max_bytes) {
		snprintf(v, sizeof(v), "%llu",
			 (unsigned long long)c->memory_max_bytes);
		file = "memory.max";
		err = write_file(t->cg_fd, file, v);
		/* a limit, not a push into swap; the whole task goes at
		 * once when it is reached (either may be absent: no swap
		 * accounting, an old kernel) */
		if (!err) {
			(void)write_file(t->cg_fd, "memory.swap.max", "0");
			(void)write_file(t->cg_fd, "memory.oom.group", "1");
		}
	}
	if (!err && c->cpu_millis) {
		snprintf(v, sizeof(v), "%llu %u",
			 (unsigned long long)c->cpu_millis *
				 (CG_CPU_PERIOD_US / 1000), CG_CPU_PERIOD_US);
		file = "cpu.max";
		err = write_file(t->cg_fd, file, v);
	}
	if (!err && c->pids_max) {
		snprintf(v, sizeof(v), "%u", c->pids_max);
		file = "pids.max";
		err = write_file(t->cg_fd, file, v);
	}
	if (err) {
		snprintf(reason, size, "cannot apply its limits: %s %s in "
			 "%s/c%u: %s", file, v, h->cg_path, t->cg_idx,
			 strerror(-err));
		return -err;
	}
	t->mem_max = c->memory_max_bytes;
	t->pids_max = c->pids_max;
	return 0;
}

/* The count after key in a flat-keyed file such as memory.events, or 0. */
static unsigned long long event_count(int dirfd, const char *file,
				      const char *key)
{
	size_t len, klen = strlen(key);
	char *s = nd__helper_read_all(dirfd, file, 4096, &len);
	unsigned long long n = 0;

	for (char *p = s; p && *p; p += strcspn(p, "\n"), p += *p == '\n')
		if (!strncmp(p, key, klen) && p[klen] == ' ')
			n = strtoull(p + klen + 1, NULL, 10);
	free(s);
	return n;
}

void nd__cgroup_limit_note(const struct task *t, char *note, size_t size)
{
	size_t k = 0;

	note[0] = '\0';
	if (t->cg_fd < 0)
		return;
	if (t->mem_max && event_count(t->cg_fd, "memory.events", "oom_kill"))
		k += (size_t)snprintf(note, size, "out of memory: killed by "
				      "the kernel at its memory limit (%llu "
				      "bytes); ",
				      (unsigned long long)t->mem_max);
	if (k < size && t->pids_max) {
		unsigned long long n = event_count(t->cg_fd, "pids.events",
						   "max");

		if (n)
			snprintf(note + k, size - k, "%llu fork%s refused at "
				 "its pids limit (%u); ", n, n == 1 ? "" : "s",
				 t->pids_max);
	}
}
