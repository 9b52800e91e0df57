/*
 * Starting one command and describing how it ended (src/exec/exec.h): the
 * part of the exec helper that a load generator running commands itself
 * (noded-bench workers --exec real) shares with it, so both spawn alike.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec/command_int.h"
#include "exec/exec.h"

/*
 * The argv to exec, NULL-terminated, in a new array whose strings are
 * c's (free only the array). Shell mode is `/bin/sh -c shell`, followed
 * by argv if any (the script's $0, $1, ...). Returns 0, -EINVAL (no
 * command at all) or -ENOMEM.
 */
static int build_argv(const Noded__Command *c, char ***out)
{
	bool shell = c->shell && c->shell[0];
	size_t k = 0;
	char **v;

	if (!shell && (c->n_argv == 0 || !c->argv[0][0]))
		return -EINVAL;
	v = malloc((3 + c->n_argv + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (shell) {
		v[k++] = "/bin/sh";
		v[k++] = "-c";
		v[k++] = c->shell;
	}
	for (size_t i = 0; i < c->n_argv; i++)
		v[k++] = c->argv[i];
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
 * The commands' stdin: one /dev/null opened at the first spawn and kept
 * (close-on-exec), dup2'ed into each child, which saves the child a path
 * lookup per spawn (it showed in profiles). -1 when it cannot be opened:
 * each child then opens its own. Callers are single-threaded (exec.h).
 */
static int devnull(void)
{
	static int fd = -2;

	if (fd == -2)
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd;
}

/*
 * What execvp does to find file in path, without running it: the first
 * dir/file that is a regular file we may execute, into buf (size bytes).
 * Returns 0, ENOENT (none), or EACCES (one exists but may not be run).
 */
static int find_in_path(const char *file, const char *path, char *buf,
			size_t size)
{
	size_t flen = strlen(file);
	bool eacces = false;

	for (const char *p = path;;) {
		const char *e = strchrnul(p, ':');
		size_t dlen = (size_t)(e - p);
		struct stat st;

		if ((dlen ? dlen : 1) + 1 + flen + 1 <= size) {
			memcpy(buf, dlen ? p : ".", dlen ? dlen : 1);
			dlen = dlen ? dlen : 1;
			buf[dlen] = '/';
			memcpy(buf + dlen + 1, file, flen + 1);
			if (stat(buf, &st) == 0 && S_ISREG(st.st_mode)) {
				if (access(buf, X_OK) == 0)
					return 0;
				eacces = true;
			}
		}
		if (!*e)
			break;
		p = e + 1;
	}
	return eacces ? EACCES : ENOENT;
}

/*
 * Runs argv/envp per c in a new process group, stdout and stderr on the
 * write ends out_w/err_w, stdin from /dev/null, default signal handling
 * and an empty signal mask (we block SIGCHLD; the command must not). A
 * command name without '/' is looked for in envp's PATH (the one the
 * command will see), not ours. Returns 0 with *pid set, or a positive
 * errno.
 */
static int spawn_command(const Noded__Command *c, char **argv, char **envp,
			 int out_w, int err_w, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t all, none;
	char file[PATH_MAX];
	const char *exe = argv[0];
	int err;

	if (!(c->shell && c->shell[0]) && !strchr(argv[0], '/')) {
		const char *path = nd__exec_env_path(envp);

		err = find_in_path(argv[0], path ? path : ND_EXEC_BASE_PATH, file,
				   sizeof(file));
		if (err)
			return err;
		exe = file;
	}
	err = posix_spawn_file_actions_init(&fa);
	if (err)
		return err;
	err = posix_spawnattr_init(&attr);
	if (err)
		goto destroy_actions;
	sigfillset(&all);
	sigemptyset(&none);
	if (devnull() >= 0)
		err = posix_spawn_file_actions_adddup2(&fa, devnull(), 0);
	else
		err = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null",
						       O_RDONLY, 0);
	if (!err)
		err = posix_spawn_file_actions_adddup2(&fa, out_w, 1);
	if (!err)
		err = posix_spawn_file_actions_adddup2(&fa, err_w, 2);
	if (!err && c->cwd && c->cwd[0])
		err = posix_spawn_file_actions_addchdir_np(&fa, c->cwd);
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
	do
		err = posix_spawn(pid, exe, &fa, &attr, argv, envp);
	while (err == EINTR);

destroy_attr:
	posix_spawnattr_destroy(&attr);
destroy_actions:
	posix_spawn_file_actions_destroy(&fa);
	return err;
}

/* clone3's argument as of Linux 5.7 (CLONE_INTO_CGROUP); declared here
 * because glibc 2.36 has no wrapper and <linux/sched.h> clashes with
 * <sched.h>. The layout is the kernel's ABI. */
struct clone_args_v2 {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal;
	uint64_t stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* In the child: what posix_spawnp does to find argv[0] in path (no
 * /bin/sh retry on ENOEXEC, as posix_spawnp since glibc 2.15). Returns
 * the errno that ends the search (only returns on failure). */
static int exec_search(char **argv, char **envp, const char *path)
{
	const char *file = argv[0];
	size_t flen = strlen(file);
	bool eacces = false;
	char buf[PATH_MAX];
	int err = ENOENT;

	if (strchr(file, '/')) {
		execve(file, argv, envp);
		return errno;
	}
	for (const char *p = path;;) {
		const char *e = strchrnul(p, ':');
		size_t dlen = (size_t)(e - p);

		if (dlen + 1 + flen + 1 <= sizeof(buf)) {
			memcpy(buf, dlen ? p : ".", dlen ? dlen : 1);
			dlen = dlen ? dlen : 1;
			buf[dlen] = '/';
			memcpy(buf + dlen + 1, file, flen + 1);
			execve(buf, argv, envp);
			err = errno;
			if (err == EACCES)
				eacces = true;
			else if (err != ENOENT && err != ENOTDIR &&
				 err != ENODEV && err != ESTALE &&
				 err != ETIMEDOUT)
				return err;
		}
		if (!*e)
			break;
		p = e + 1;
	}
	return eacces ? EACCES : err;
}

/* Closes every descriptor from `from` up, except keep. */
static void close_from(int from, int keep)
{
	if (keep > from && close_range((unsigned)from, (unsigned)keep - 1,
				       0) < 0)
		for (int fd = from; fd < keep; fd++)
			close(fd);
	if (close_range((unsigned)keep + 1, ~0u, 0) < 0) {
		long max = sysconf(_SC_OPEN_MAX);

		for (long fd = keep + 1; fd < (max > 0 && max < 65536 ? max :
					       65536); fd++)
			close((int)fd);
	}
}

/* Where the child of spawn_clone() failed (what it reports with its
 * errno). */
enum child_stage {
	STAGE_SETUP, /* process group, stdio */
	STAGE_USER,  /* setgroups, setresgid, setresuid */
	STAGE_CWD,
	STAGE_EXEC,
};

/* What the child of spawn_clone() writes on its error pipe. */
struct child_err {
	int err;
	int stage; /* enum child_stage */
};

/* What the child of spawn_clone() needs; it writes only to its pipe. */
struct child_ctx {
	const Noded__Command *c;
	const struct nd_exec_run_as *u; /* switch to it when u->set */
	char **argv, **envp;
	const char *path;
	int out_w, err_w, ep_w;
};

/*
 * The child: does by hand what spawn_command's attributes and file actions
 * do, in the same order, then execs. On failure it writes its errno to
 * ep_w (close-on-exec: EOF means exec worked) and exits 127. With CLONE_VM
 * it runs in our memory on its own stack while we are suspended, so it
 * only makes system calls and touches its own stack: no allocation, no
 * lock, nothing that another thread of ours could hold.
 */
static int child_main(void *arg)
{
	const struct child_ctx *cx = arg;
	const Noded__Command *c = cx->c;
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	struct child_err ce = { .stage = STAGE_SETUP };
	sigset_t none;

	/* every handler back to default while all signals are blocked:
	 * ours must never run in this process */
	for (int sig = 1; sig < _NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL);
	if (setpgid(0, 0) < 0)
		goto child_failed;
	if (devnull() >= 0 ? dup2(devnull(), 0) < 0 :
	    (close(0), open("/dev/null", O_RDONLY) != 0))
		goto child_failed;
	if (dup2(cx->out_w, 1) < 0 || dup2(cx->err_w, 2) < 0)
		goto child_failed;
	/* Raw system calls: glibc's wrappers would try to tell the other
	 * threads of a process whose memory we share. Groups first, the
	 * uid last: after it we could change neither. */
	ce.stage = STAGE_USER;
	if (cx->u && cx->u->set &&
	    (syscall(SYS_setgroups, (size_t)cx->u->ngroups, cx->u->groups) < 0 ||
	     syscall(SYS_setresgid, cx->u->gid, cx->u->gid, cx->u->gid) < 0 ||
	     syscall(SYS_setresuid, cx->u->uid, cx->u->uid, cx->u->uid) < 0))
		goto child_failed;
	/* as the user: a cwd it may not enter is refused */
	ce.stage = STAGE_CWD;
	if (c->cwd && c->cwd[0] && chdir(c->cwd) < 0)
		goto child_failed;
	ce.stage = STAGE_EXEC;
	close_from(3, cx->ep_w);
	sigemptyset(&none); /* we block SIGCHLD; the command must not */
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (c->shell && c->shell[0])
		execve(cx->argv[0], cx->argv, cx->envp);
	else
		errno = exec_search(cx->argv, cx->envp, cx->path);
child_failed:
	ce.err = errno;
	while (write(cx->ep_w, &ce, sizeof(ce)) < 0 && errno == EINTR)
		;
	_exit(127);
}

#if defined(__x86_64__)
/*
 * clone3(ca, size) whose child calls fn(arg) on the stack given in ca and
 * exits with its result; the parent gets the child's pid or -errno. In
 * assembly because the child starts on another stack, where C code of the
 * caller's frame cannot go on (glibc's own clone3 is internal in 2.36).
 * syscall keeps every register but rcx and r11, so fn and arg wait in
 * r8 and r9; a 16-byte aligned stack top keeps the call's ABI.
 */
long nd__clone3_call(struct clone_args_v2 *ca, size_t size,
		     int (*fn)(void *), void *arg)
	__attribute__((visibility("hidden")));
__asm__(".text\n"
	".globl nd__clone3_call\n"
	".hidden nd__clone3_call\n"
	".type nd__clone3_call, @function\n"
	"nd__clone3_call:\n"
	"	mov %rdx, %r8\n"
	"	mov %rcx, %r9\n"
	"	mov $435, %eax\n" /* SYS_clone3 */
	"	syscall\n"
	"	test %rax, %rax\n"
	"	jz 1f\n"
	"	ret\n"
	"1:	xor %ebp, %ebp\n"
	"	mov %r9, %rdi\n"
	"	call *%r8\n"
	"	mov %eax, %edi\n"
	"	mov $231, %eax\n" /* SYS_exit_group */
	"	syscall\n"
	"	hlt\n"
	".size nd__clone3_call, .-nd__clone3_call\n");
#define CHILD_STACK (64 * 1024)

/* The child's stack, made once (one child at a time: CLONE_VFORK). */
static void *child_stack(void)
{
	static void *stack;

	if (!stack) {
		void *p = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);

		stack = p == MAP_FAILED ? NULL : p;
	}
	return stack;
}
#endif

/*
 * spawn_command() by clone3, for what posix_spawn cannot do: with cgfd >=
 * 0 the child is born in that cgroup directory (CLONE_INTO_CGROUP), so it
 * is in its cgroup before its first instruction; with cx->u->set it
 * switches to that user before it changes directory and execs. Always
 * CLONE_VFORK: we resume once it has exec'd or died. On x86_64 also
 * CLONE_VM, as posix_spawn does: the child runs child_main() on a stack
 * of its own in our memory, and the spawn copies no page table (a
 * fork-like clone of the helper cost about 0.15 ms more of CPU per task,
 * in the copy and in the faults that follow it). Elsewhere the child runs
 * on a copy of our memory, as after fork. All signals are blocked around
 * the clone, so none of our handlers can run in the child. Only the exec
 * helper calls this, and it is single-threaded. Returns 0 with *pid set,
 * a positive errno (the command did not start; *stage says at which
 * step), or -errno when clone3 itself failed (nothing started; the caller
 * may use spawn_command instead).
 */
static int spawn_clone(struct child_ctx *cx, int cgfd, pid_t *pid,
		       int *stage)
{
	struct clone_args_v2 ca = {
		.flags = CLONE_VFORK,
		.exit_signal = SIGCHLD,
	};
	struct child_err ce = { 0 };
	sigset_t all, old;
	int ep[2], err = 0;
	ssize_t n;
	long child;

	if (cgfd >= 0) {
		ca.flags |= CLONE_INTO_CGROUP;
		ca.cgroup = (uint64_t)cgfd;
	}
	if (pipe2(ep, O_CLOEXEC) < 0)
		return errno;
	cx->ep_w = ep[1];
	(void)devnull(); /* opened here, not in each child */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
#if defined(__x86_64__)
	if (child_stack()) {
		ca.flags |= CLONE_VM;
		ca.stack = (uint64_t)(uintptr_t)child_stack();
		ca.stack_size = CHILD_STACK;
		child = nd__clone3_call(&ca, sizeof(ca), child_main, cx);
		if (child < 0) {
			errno = (int)-child;
			child = -1;
		}
	} else
#endif
	{
		child = syscall(SYS_clone3, &ca, sizeof(ca));
		if (child == 0)
			child_main(cx); /* does not return */
	}
	if (child < 0)
		err = -errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (err)
		goto close_pipe;
	close(ep[1]);
	ep[1] = -1;
	do
		n = read(ep[0], &ce, sizeof(ce));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(ce)) {
		while (waitpid((pid_t)child, NULL, 0) < 0 && errno == EINTR)
			;
		err = ce.err ? ce.err : EIO;
		*stage = ce.stage;
	} else {
		err = 0;
		*pid = (pid_t)child;
	}
close_pipe:
	close(ep[0]);
	if (ep[1] >= 0)
		close(ep[1]);
	return err;
}

/* Why the child of spawn_clone() failed with err at stage, into r. */
static void clone_reason(char *r, size_t size, int err, int stage,
			 const struct child_ctx *cx)
{
	switch (stage) {
	case STAGE_USER:
		snprintf(r, size, "cannot switch to user '%.100s': %s",
			 cx->u->name, strerror(err));
		break;
	case STAGE_CWD:
		snprintf(r, size, "cwd %.200s: %s", cx->c->cwd, strerror(err));
		break;
	case STAGE_EXEC:
		if (err == ENOENT)
			snprintf(r, size, "command not found: %.200s",
				 cx->argv[0]);
		else
			snprintf(r, size, "cannot run %.200s: %s", cx->argv[0],
				 strerror(err));
		break;
	default:
		snprintf(r, size, "cannot set up the command: %s",
			 strerror(err));
		break;
	}
}

int nd_exec_command_start(const Noded__ExecSpawn *sp, pid_t *pid,
			  int fds[2], char *reason, size_t reason_size)
{
	return nd_exec_command_start_opts(sp, NULL, pid, fds, reason,
					  reason_size);
}

int nd_exec_command_start_opts(const Noded__ExecSpawn *sp,
			       struct nd_exec_opts *o, pid_t *pid, int fds[2],
			       char *reason, size_t reason_size)
{
	static const Noded__Command none = NODED__COMMAND__INIT;
	const Noded__Command *c = sp->command ? sp->command : &none;
	struct child_ctx cx = { .c = c };
	struct nd_exec_run_as u;
	char **argv, **envp;
	int out[2], errp[2];
	int err, stage = STAGE_SETUP;
	bool by_clone = false;

	reason[0] = '\0';
	err = -build_argv(c, &argv);
	if (err) {
		snprintf(reason, reason_size, "%s",
			 err == EINVAL ? "no command: empty argv and no shell"
				       : strerror(err));
		return err;
	}
	if (o)
		o->cgroup_err = 0;
	/* limits live in the cgroup the caller made for them; a caller
	 * without one (noded-bench's simulated workers) must not run the
	 * task unlimited */
	if ((c->memory_max_bytes || c->cpu_millis || c->pids_max) &&
	    !(o && o->cgroup_required && o->cgroup_fd >= 0)) {
		free(argv);
		snprintf(reason, reason_size, "cannot apply its limits "
			 "(memory, cpus, pids): no cgroup to hold them");
		return EOPNOTSUPP;
	}
	err = nd__exec_who(c, &u, reason, reason_size);
	if (err)
		goto free_user;
	err = -nd__exec_envp(sp, c, &u, o ? o->tag : NULL, &envp, reason,
			     reason_size);
	if (err)
		goto free_user;
	if (pipe2(out, O_CLOEXEC) < 0) {
		err = errno;
		snprintf(reason, reason_size, "stdout pipe: %s",
			 strerror(err));
		goto free_envp;
	}
	if (pipe2(errp, O_CLOEXEC) < 0) {
		err = errno;
		snprintf(reason, reason_size, "stderr pipe: %s",
			 strerror(err));
		goto close_out_pipe;
	}
	cx.u = &u;
	cx.argv = argv;
	cx.envp = envp;
	cx.path = nd__exec_env_path(envp);
	if (!cx.path)
		cx.path = ND_EXEC_BASE_PATH;
	cx.out_w = out[1];
	cx.err_w = errp[1];
	err = -1;
	if (o && o->cgroup_fd >= 0) {
		err = spawn_clone(&cx, o->cgroup_fd, pid, &stage);
		by_clone = err >= 0;
		if (err < 0) {
			o->cgroup_err = -err;
			if (o->cgroup_required) {
				err = -err;
				snprintf(reason, reason_size, "cannot start it "
					 "in its cgroup (for its limits): "
					 "clone3: %s", strerror(err));
				goto close_err_pipe;
			}
			err = -1;
		}
	}
	/* posix_spawn cannot change the user */
	if (err < 0 && u.set) {
		err = spawn_clone(&cx, -1, pid, &stage);
		by_clone = err >= 0;
		if (err < 0) {
			err = -err;
			snprintf(reason, reason_size, "cannot start it as user "
				 "'%.100s': clone3: %s", u.name, strerror(err));
			goto close_err_pipe;
		}
	}
	if (err < 0)
		err = spawn_command(c, argv, envp, out[1], errp[1], pid);
	if (err) {
		if (by_clone)
			clone_reason(reason, reason_size, err, stage, &cx);
		else
			spawn_reason(reason, reason_size, &err, argv[0],
				     c->cwd);
		goto close_err_pipe;
	}
	close(out[1]);
	close(errp[1]);
	free(envp);
	nd__exec_run_as_free(&u);
	free(argv);
	fds[0] = out[0];
	fds[1] = errp[0];
	return 0;

close_err_pipe:
	close(errp[0]);
	close(errp[1]);
close_out_pipe:
	close(out[0]);
	close(out[1]);
free_envp:
	free(envp);
free_user:
	nd__exec_run_as_free(&u);
	free(argv);
	if (!reason[0])
		snprintf(reason, reason_size, "%s", strerror(err));
	return err;
}

void nd_exec_spawn_failed(Noded__ExecExited *x, int err, const char *reason)
{
	x->spawn_errno = err;
	x->exit_code = err == ENOENT ? 127 : 126;
	x->reason = (char *)reason;
}

static uint64_t tv_us(struct timeval tv)
{
	return (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
}

void nd_exec_exited_fill(Noded__ExecExited *x, int status,
			 const struct rusage *ru, uint32_t timeout_ms,
			 int lost_errno, char *reason, size_t reason_size)
{
	size_t n = 0;

	x->utime_us = tv_us(ru->ru_utime);
	x->stime_us = tv_us(ru->ru_stime);
	x->max_rss_kib = ru->ru_maxrss > 0 ? (uint64_t)ru->ru_maxrss : 0;
	if (WIFSIGNALED(status)) {
		x->signal = WTERMSIG(status);
		/* Not meaningful with a signal (see the proto); the shell's
		 * convention, for readers that look at exit_code alone. */
		x->exit_code = 128 + x->signal;
	} else {
		x->exit_code = WEXITSTATUS(status);
	}

	reason[0] = '\0';
	if (lost_errno)
		n += snprintf(reason + n, reason_size - n,
			      "could not pass its output pipes: %s; ",
			      strerror(lost_errno));
	else if (x->lease_expired)
		n += snprintf(reason + n, reason_size - n,
			      "lease expired (the master was not heard from "
			      "in time); ");
	else if (x->timed_out)
		n += snprintf(reason + n, reason_size - n,
			      "timed out after %u ms; ", timeout_ms);
	else if (x->cancelled)
		n += snprintf(reason + n, reason_size - n, "cancelled; ");
	if (n >= reason_size)
		n = reason_size - 1;
	if (x->signal)
		snprintf(reason + n, reason_size - n,
			 "killed by signal %d (%s)", x->signal,
			 strsignal(x->signal));
	else if (x->exit_code || n)
		snprintf(reason + n, reason_size - n,
			 "exited with status %d", x->exit_code);
	x->reason = reason;
}
