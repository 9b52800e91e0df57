/*
 * The exec helper process: `noded exec-helper`, started by
 * nd_exec_helper_spawn() with its socket on fd 3 (src/exec/exec.h,
 * ../shared/DESIGN.md "Running commands").
 *
 * One thread, blocking calls, one poll() loop over three things: the
 * socket (one ExecRequest per datagram), a signalfd (SIGCHLD, and the
 * signals that stop the helper) and the nearest kill deadline as the poll
 * timeout. Each command runs in a process group of its own, whose id is
 * the command's pid; every signal the helper sends goes to that whole
 * group. The helper is a child subreaper, so whatever a command leaves
 * behind is reparented here and reaped: the helper never leaves zombies.
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
#include <spawn.h>
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

#include "core/log.h"
#include "exec/exec.h"

#define GRACE_DEFAULT_MS 2000
/* How long the helper, when it stops, waits for killed commands to be
 * reaped before it exits anyway (what is left goes to our own reaper). */
#define STOP_REAP_MS 2000
/* Bound on the reason string of an ExecExited; events stay small. */
#define REASON_MAX 512

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
	uint64_t start_unix_ms;
};

struct helper {
	int sock;
	int sigfd;
	struct task *tasks;
	uint8_t *buf;    /* ND_EXEC_MSG_MAX bytes: one request */
	bool warned;     /* a malformed request was logged */
	int stop_signal; /* SIGTERM/SIGINT/SIGHUP received, 0: none */
};

static int64_t clock_ms(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
	x.spawn_errno = err;
	x.exit_code = err == ENOENT ? 127 : 126;
	x.reason = (char *)reason;
	x.start_unix_ms = x.end_unix_ms = (uint64_t)clock_ms(CLOCK_REALTIME);
	send_exited(h, &x);
}

/*
 * The argv to exec, NULL-terminated, in a new array whose strings are
 * sp's (free only the array). Shell mode is `/bin/sh -c shell`, followed
 * by argv if any (the script's $0, $1, ...). Returns 0, -EINVAL (no
 * command at all) or -ENOMEM.
 */
static int build_argv(const Noded__ExecSpawn *sp, char ***out)
{
	bool shell = sp->shell && sp->shell[0];
	size_t k = 0;
	char **v;

	if (!shell && (sp->n_argv == 0 || !sp->argv[0][0]))
		return -EINVAL;
	v = malloc((3 + sp->n_argv + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (shell) {
		v[k++] = "/bin/sh";
		v[k++] = "-c";
		v[k++] = sp->shell;
	}
	for (size_t i = 0; i < sp->n_argv; i++)
		v[k++] = sp->argv[i];
	v[k] = NULL;
	*out = v;
	return 0;
}

/* Same variable: equal up to and including the '=' (or the end). */
static bool same_key(const char *a, const char *b)
{
	size_t n = strcspn(a, "=");

	return !strncmp(a, b, n) && (b[n] == '=' || b[n] == '\0');
}

static bool set_later(const Noded__ExecSpawn *sp, const char *e, size_t from)
{
	for (size_t i = from; i < sp->n_env; i++)
		if (same_key(e, sp->env[i]))
			return true;
	return false;
}

/*
 * The command's environment: ours, plus sp's "KEY=VALUE" entries, which
 * win over ours and over earlier entries of their own. A new array of
 * borrowed strings (free only the array). Returns 0, -EINVAL with reason
 * set (an entry without a key and '='), or -ENOMEM.
 */
static int build_envp(const Noded__ExecSpawn *sp, char ***out, char *reason,
		      size_t reason_size)
{
	size_t n = 0, k = 0;
	char **v;

	for (size_t i = 0; i < sp->n_env; i++) {
		const char *eq = strchr(sp->env[i], '=');

		if (!eq || eq == sp->env[i]) {
			snprintf(reason, reason_size,
				 "bad env entry '%.200s' (want KEY=VALUE)",
				 sp->env[i]);
			return -EINVAL;
		}
	}
	for (char **e = environ; e && *e; e++)
		n++;
	v = malloc((n + sp->n_env + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (char **e = environ; e && *e; e++)
		if (!set_later(sp, *e, 0))
			v[k++] = *e;
	for (size_t i = 0; i < sp->n_env; i++)
		if (!set_later(sp, sp->env[i], i + 1))
			v[k++] = sp->env[i];
	v[k] = NULL;
	*out = v;
	return 0;
}

/*
 * Why posix_spawn failed with err, as "command not found: x" or the like.
 * A bad cwd fails with the same errno as a missing command (chdir happens
 * in the child), so a failed spawn with a cwd looks at the cwd first;
 * *err becomes the cwd's errno when it is the culprit.
 */
static void spawn_reason(char *r, size_t size, int *err, const char *cmd,
			 const char *cwd)
{
	struct stat st;
	int cerr = 0;

	if (cwd && cwd[0]) {
		if (stat(cwd, &st) < 0)
			cerr = errno;
		else if (!S_ISDIR(st.st_mode))
			cerr = ENOTDIR;
		else if (access(cwd, X_OK) < 0)
			cerr = errno;
	}
	if (cerr) {
		*err = cerr;
		snprintf(r, size, "cwd %.200s: %s", cwd, strerror(cerr));
	} else if (*err == ENOENT) {
		snprintf(r, size, "command not found: %.200s", cmd);
	} else {
		snprintf(r, size, "cannot run %.200s: %s", cmd, strerror(*err));
	}
}

/*
 * Runs argv/envp per sp in a new process group, stdout and stderr on the
 * write ends out_w/err_w, stdin from /dev/null, default signal handling
 * and an empty signal mask (we block SIGCHLD; the command must not).
 * Returns 0 with *pid set, or a positive errno.
 */
static int spawn_command(const Noded__ExecSpawn *sp, char **argv, char **envp,
			 int out_w, int err_w, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t all, none;
	int err;

	err = posix_spawn_file_actions_init(&fa);
	if (err)
		return err;
	err = posix_spawnattr_init(&attr);
	if (err)
		goto destroy_actions;
	sigfillset(&all);
	sigemptyset(&none);
	err = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY,
					       0);
	if (!err)
		err = posix_spawn_file_actions_adddup2(&fa, out_w, 1);
	if (!err)
		err = posix_spawn_file_actions_adddup2(&fa, err_w, 2);
	if (!err && sp->cwd && sp->cwd[0])
		err = posix_spawn_file_actions_addchdir_np(&fa, sp->cwd);
	if (!err)
		err = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	if (!err)
		err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
						      POSIX_SPAWN_SETSIGDEF |
						      POSIX_SPAWN_SETSIGMASK);
	if (!err)
		err = posix_spawnattr_setpgroup(&attr, 0);
	if (!err)
		err = posix_spawnattr_setsigdefault(&attr, &all);
	if (!err)
		err = posix_spawnattr_setsigmask(&attr, &none);
	if (err)
		goto destroy_attr;

	/* glibc's posix_spawn reports exec (and chdir) failures of the child
	 * as its return value; no error pipe of our own is needed. */
	do {
		if (sp->shell && sp->shell[0])
			err = posix_spawn(pid, argv[0], &fa, &attr, argv, envp);
		else
			err = posix_spawnp(pid, argv[0], &fa, &attr, argv, envp);
	} while (err == EINTR);

destroy_attr:
	posix_spawnattr_destroy(&attr);
destroy_actions:
	posix_spawn_file_actions_destroy(&fa);
	return err;
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
	char reason[REASON_MAX] = "";
	char **argv, **envp;
	int out[2], errp[2], fds[2];
	struct task *t;
	int err;

	if (find_id(h, sp->task_id)) {
		err = EEXIST;
		snprintf(reason, sizeof(reason),
			 "task %llu is already running",
			 (unsigned long long)sp->task_id);
		goto report;
	}
	err = -build_argv(sp, &argv);
	if (err) {
		snprintf(reason, sizeof(reason), "%s",
			 err == EINVAL ? "no command: empty argv and no shell"
				       : strerror(err));
		goto report;
	}
	err = -build_envp(sp, &envp, reason, sizeof(reason));
	if (err)
		goto free_argv;
	/* Allocated before the spawn: a command must never run untracked. */
	t = calloc(1, sizeof(*t));
	if (!t) {
		err = ENOMEM;
		goto free_envp;
	}
	if (pipe2(out, O_CLOEXEC) < 0) {
		err = errno;
		snprintf(reason, sizeof(reason), "stdout pipe: %s",
			 strerror(err));
		goto free_task;
	}
	if (pipe2(errp, O_CLOEXEC) < 0) {
		err = errno;
		snprintf(reason, sizeof(reason), "stderr pipe: %s",
			 strerror(err));
		goto close_out_pipe;
	}
	err = spawn_command(sp, argv, envp, out[1], errp[1], &t->pid);
	if (err) {
		spawn_reason(reason, sizeof(reason), &err, argv[0], sp->cwd);
		goto close_err_pipe;
	}
	close(out[1]);
	close(errp[1]);
	free(envp);
	free(argv);

	t->id = sp->task_id;
	t->state = TASK_RUNNING;
	t->timeout_ms = sp->timeout_ms;
	t->grace_ms = sp->grace_ms ? sp->grace_ms : GRACE_DEFAULT_MS;
	t->deadline = sp->timeout_ms ?
		clock_ms(CLOCK_MONOTONIC) + sp->timeout_ms : -1;
	t->start_unix_ms = (uint64_t)clock_ms(CLOCK_REALTIME);
	t->next = h->tasks;
	h->tasks = t;

	st.task_id = t->id;
	st.pid = t->pid;
	st.start_unix_ms = t->start_unix_ms;
	ev.body_case = NODED__EXEC_EVENT__BODY_STARTED;
	ev.started = &st;
	fds[0] = out[0];
	fds[1] = errp[0];
	err = -send_event(h, &ev, fds, 2);
	if (err) {
		/* Nobody can read its output or know it runs: stop it now.
		 * Its ExecExited still follows, saying why. */
		t->lost_errno = err;
		t->state = TASK_KILLED;
		t->deadline = -1;
		kill(-t->pid, SIGKILL);
	}
	close(out[0]);
	close(errp[0]);
	return;

close_err_pipe:
	close(errp[0]);
	close(errp[1]);
close_out_pipe:
	close(out[0]);
	close(out[1]);
free_task:
	free(t);
free_envp:
	free(envp);
free_argv:
	free(argv);
report:
	if (!reason[0])
		snprintf(reason, sizeof(reason), "%s", strerror(err));
	spawn_failed(h, sp->task_id, err, reason);
}

/* Starts terminating t's process group: SIGTERM now (and SIGCONT, so a
 * stopped group gets it), SIGKILL after the grace period. */
static void terminate(struct task *t, int64_t now)
{
	kill(-t->pid, SIGTERM);
	kill(-t->pid, SIGCONT);
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
	terminate(t, clock_ms(CLOCK_MONOTONIC));
}

/* Takes the steps whose deadline has come; returns the nearest deadline
 * left (monotonic ms), or -1 when there is none. */
static int64_t run_deadlines(struct helper *h)
{
	int64_t now = clock_ms(CLOCK_MONOTONIC), next = -1;

	for (struct task *t = h->tasks; t; t = t->next) {
		if (t->deadline >= 0 && t->deadline <= now) {
			if (t->state == TASK_RUNNING) {
				t->timed_out = true;
				terminate(t, now);
			} else {
				kill(-t->pid, SIGKILL);
				t->state = TASK_KILLED;
				t->deadline = -1;
			}
		}
		if (t->deadline >= 0 && (next < 0 || t->deadline < next))
			next = t->deadline;
	}
	return next;
}

static uint64_t tv_us(struct timeval tv)
{
	return (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
}

/* Sends the ExecExited of a reaped task. */
static void task_exited(struct helper *h, const struct task *t, int status,
			const struct rusage *ru)
{
	Noded__ExecExited x = NODED__EXEC_EXITED__INIT;
	char reason[REASON_MAX] = "";
	size_t n = 0;

	x.task_id = t->id;
	x.timed_out = t->timed_out;
	x.cancelled = t->cancelled;
	x.start_unix_ms = t->start_unix_ms;
	x.end_unix_ms = (uint64_t)clock_ms(CLOCK_REALTIME);
	x.utime_us = tv_us(ru->ru_utime);
	x.stime_us = tv_us(ru->ru_stime);
	x.max_rss_kib = ru->ru_maxrss > 0 ? (uint64_t)ru->ru_maxrss : 0;
	if (WIFSIGNALED(status)) {
		x.signal = WTERMSIG(status);
		/* Not meaningful with a signal (see the proto); the shell's
		 * convention, for readers that look at exit_code alone. */
		x.exit_code = 128 + x.signal;
	} else {
		x.exit_code = WEXITSTATUS(status);
	}

	if (t->lost_errno)
		n += snprintf(reason + n, sizeof(reason) - n,
			      "could not pass its output pipes: %s; ",
			      strerror(t->lost_errno));
	else if (t->timed_out)
		n += snprintf(reason + n, sizeof(reason) - n,
			      "timed out after %u ms; ", t->timeout_ms);
	else if (t->cancelled)
		n += snprintf(reason + n, sizeof(reason) - n, "cancelled; ");
	if (x.signal)
		snprintf(reason + n, sizeof(reason) - n,
			 "killed by signal %d (%s)", x.signal,
			 strsignal(x.signal));
	else if (x.exit_code || n)
		snprintf(reason + n, sizeof(reason) - n,
			 "exited with status %d", x.exit_code);
	x.reason = reason;
	send_exited(h, &x);
}

/*
 * Reaps every child that has exited. For a task, its process group is
 * killed while the exited leader still holds the group id (so the id
 * cannot have been reused), then ExecExited is sent. Other children are
 * orphans left by tasks and reparented to us: reaped silently. Returns
 * false when we have no children at all.
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
		if (t)
			kill(-t->pid, SIGKILL);
		while (wait4(si.si_pid, &status, 0, &ru) < 0 && errno == EINTR)
			;
		if (t) {
			task_exited(h, t, status, &ru);
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
	int64_t end = clock_ms(CLOCK_MONOTONIC) + STOP_REAP_MS;
	struct pollfd p = { .fd = h->sigfd, .events = POLLIN };

	for (struct task *t = h->tasks; t; t = t->next) {
		kill(-t->pid, SIGKILL);
		t->state = TASK_KILLED;
	}
	while (reap(h)) {
		int64_t left = end - clock_ms(CLOCK_MONOTONIC);

		if (left <= 0)
			break;
		poll(&p, 1, (int)left);
		drain_signals(h);
	}
	while (h->tasks) {
		struct task *t = h->tasks;

		h->tasks = t->next;
		free(t);
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
	struct helper h = { .sock = fd, .sigfd = -1 };
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

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = h.sock, .events = POLLIN | POLLRDHUP },
			{ .fd = h.sigfd, .events = POLLIN },
		};
		int64_t next = run_deadlines(&h), wait_ms = -1;

		if (next >= 0) {
			wait_ms = next - clock_ms(CLOCK_MONOTONIC);
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
