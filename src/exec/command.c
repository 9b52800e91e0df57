/*
 * Starting one command and describing how it ended (src/exec/exec.h): the
 * part of the exec helper that a load generator running commands itself
 * (noded-bench workers --exec real) shares with it, so both spawn alike.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec/exec.h"

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
	if (devnull() >= 0)
		err = posix_spawn_file_actions_adddup2(&fa, devnull(), 0);
	else
		err = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null",
						       O_RDONLY, 0);
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

int nd_exec_command_start(const Noded__ExecSpawn *sp, pid_t *pid,
			  int fds[2], char *reason, size_t reason_size)
{
	char **argv, **envp;
	int out[2], errp[2];
	int err;

	reason[0] = '\0';
	err = -build_argv(sp, &argv);
	if (err) {
		snprintf(reason, reason_size, "%s",
			 err == EINVAL ? "no command: empty argv and no shell"
				       : strerror(err));
		return err;
	}
	err = -build_envp(sp, &envp, reason, reason_size);
	if (err)
		goto free_argv;
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
	err = spawn_command(sp, argv, envp, out[1], errp[1], pid);
	if (err) {
		spawn_reason(reason, reason_size, &err, argv[0], sp->cwd);
		goto close_err_pipe;
	}
	close(out[1]);
	close(errp[1]);
	free(envp);
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
free_argv:
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
