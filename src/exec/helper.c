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
 * (nd__kill_tree), found one of two ways, chosen when the helper starts:
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
 * Limits (command.memory_max_bytes, cpu_millis, pids_max) are written in
 * a new cgroup of the task's own before it is born there
 * (nd__cgroup_limit); a task whose limits cannot be applied (tree mode, a
 * controller the host does not offer) does not run, and its ExecExited
 * says why. What the limits did (an OOM kill, refused forks) is read from
 * the cgroup's events when it ends and leads its reason.
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
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/notify.h"
#include "core/log.h"
#include "core/time.h"
#include "exec/helper.h"

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
	const Noded__Command *c = sp->command;
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
	t->limited = c && (c->memory_max_bytes || c->cpu_millis ||
			   c->pids_max);
	nd__cgroup_make(h, t);
	/* limits are applied, or the task does not run: never unlimited */
	if (t->limited) {
		err = nd__cgroup_limit(h, t, c, reason, sizeof(reason));
		if (err) {
			if (t->cg_fd >= 0)
				nd__cgroup_release(h, t);
			free(t);
			goto report;
		}
		o.cgroup_required = true;
	}
	o.cgroup_fd = t->cg_fd;
	o.tag = t->tag;
	err = nd_exec_command_start_opts(sp, &o, &t->pid, fds, reason,
					 sizeof(reason));
	if (o.cgroup_err && t->cg_fd >= 0) {
		/* born outside it, or not at all: tree mode for this task */
		nd__cgroup_release(h, t);
		nd__cgroup_refused(h, o.cgroup_err);
	}
	if (err) {
		if (t->cg_fd >= 0)
			nd__cgroup_release(h, t);
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
		nd__kill_tree(h, t, SIGKILL);
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
	nd__kill_tree(h, t, SIGTERM);
	nd__kill_tree(h, t, SIGCONT);
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
				nd__kill_tree(h, t, SIGKILL);
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
	char reason[REASON_MAX], note[REASON_MAX / 2], both[REASON_MAX];

	x.task_id = t->id;
	x.timed_out = t->timed_out;
	x.cancelled = t->cancelled;
	x.lease_expired = t->lease_expired;
	x.start_unix_ms = t->start_unix_ms;
	x.end_unix_ms = nd_unix_ms();
	nd_exec_exited_fill(&x, status, ru, t->timeout_ms, t->lost_errno,
			    reason, sizeof(reason));
	if (t->limited) {
		nd__cgroup_limit_note(t, note, sizeof(note));
		if (note[0]) {
			snprintf(both, sizeof(both), "%s%s", note, x.reason);
			x.reason = both;
		}
	}
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
		 * (nd__cgroup_release: most commands leave nothing). */
		if (t) {
			t->exited = true;
			if (t->cg_fd < 0)
				nd__kill_tree(h, t, SIGKILL);
		}
		while (wait4(si.si_pid, &status, 0, &ru) < 0 && errno == EINTR)
			;
		if (t) {
			task_exited(h, t, status, &ru);
			if (t->cg_fd >= 0)
				nd__cgroup_release(h, t);
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
		nd__kill_tree(h, t, SIGKILL);
		t->state = TASK_KILLED;
	}
	while (reap(h) || h->cg_left) {
		int64_t left = end - (int64_t)nd_mono_ms();

		if (left <= 0)
			break;
		nd__cgroup_sweep(h);
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
	nd_notify_env_clear(); /* the daemon's line to systemd, not a task's */
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
	nd__cgroup_setup(&h);

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = h.sock, .events = POLLIN | POLLRDHUP },
			{ .fd = h.sigfd, .events = POLLIN },
		};
		int64_t next = run_deadlines(&h), wait_ms = -1;
		int64_t sweep = h.cg_left ? nd__cgroup_sweep(&h) : -1;

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
