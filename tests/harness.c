/*
 * Test harness: real daemons on ephemeral loopback ports, stopped by pid, and
 * raw-socket protocol helpers. See harness.h for the contracts.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "harness.h"

/*
 * Workers started by the tests keep their node id (noded worker: its state
 * directory, default $STATE_DIRECTORY) in a directory of this test run, not
 * in the machine's /var/lib/noded or the user's home. Removed at exit by
 * the process that made it.
 */
static char state_dir[] = "/tmp/noded-test-state-XXXXXX";
static pid_t state_dir_owner;

static void state_dir_remove(void)
{
	char path[sizeof(state_dir) + 16];

	if (getpid() != state_dir_owner)
		return;
	snprintf(path, sizeof(path), "%s/node-id", state_dir);
	unlink(path);
	rmdir(state_dir);
}

__attribute__((constructor)) static void state_dir_setup(void)
{
	if (getenv("STATE_DIRECTORY") || !mkdtemp(state_dir))
		return;
	setenv("STATE_DIRECTORY", state_dir, 1);
	state_dir_owner = getpid();
	atexit(state_dir_remove);
}

/*
 * The daemons and commands the tests run read no configuration of the
 * machine or the user running the tests (noded.conf, NODED_MASTER,
 * NODED_TOKEN_FILE): a test that wants some sets it itself.
 */
__attribute__((constructor)) static void config_isolate(void)
{
	setenv("NODED_CONFIG_SYSTEM", "", 1);
	setenv("XDG_CONFIG_HOME", "/nonexistent/noded-tests", 1);
	unsetenv("NODED_MASTER");
	unsetenv("NODED_TOKEN_FILE");
}

char nd_test_why[512];

/* Records why a helper failed; returns err so callers can `return why(...)`. */
__attribute__((format(printf, 2, 3))) static int why(int err,
						     const char *fmt, ...)
{
	char tmp[sizeof(nd_test_why)];
	va_list ap;

	/* through tmp: the arguments may include nd_test_why itself */
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	memcpy(nd_test_why, tmp, sizeof(tmp));
	return err;
}

int64_t nd_test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void nd_test_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int remaining_ms(int64_t deadline)
{
	int64_t left = deadline - nd_test_now_ms();

	return left < 0 ? 0 : (int)left;
}

const char *nd_test_bin(void)
{
	const char *bin = getenv("ND_BIN");

	return bin && *bin ? bin : "build/noded";
}

const char *nd_test_code_name(int code)
{
	const ProtobufCEnumDescriptor *e = &noded__error_code__descriptor;
	const ProtobufCEnumValue *v;

	v = protobuf_c_enum_descriptor_get_value(e, code);
	return v ? v->name : "?";
}

const char *nd_test_kind_name(int kind)
{
	const ProtobufCEnumDescriptor *e = &noded__frame_kind__descriptor;
	const ProtobufCEnumValue *v;

	v = protobuf_c_enum_descriptor_get_value(e, kind);
	return v ? v->name : "?";
}

/* One-line description of a frame for failure messages. */
static const char *describe_into(const Noded__Frame *f, char *buf, size_t size)
{
	if (!f) {
		snprintf(buf, size, "(no frame)");
	} else if (f->body_case == NODED__FRAME__BODY_ERROR && f->error) {
		snprintf(buf, size, "kind=%s id=%llu body=error(%s: \"%s\")",
			 nd_test_kind_name(f->kind), (unsigned long long)f->id,
			 nd_test_code_name(f->error->code),
			 f->error->message ? f->error->message : "");
	} else {
		snprintf(buf, size, "kind=%s id=%llu body=%s",
			 nd_test_kind_name(f->kind), (unsigned long long)f->id,
			 nd_frame_method_name(f->body_case));
	}
	return buf;
}

const char *nd_test_describe(const Noded__Frame *f)
{
	static char bufs[4][256];
	static unsigned next;

	return describe_into(f, bufs[next++ % 4], sizeof(bufs[0]));
}

/* exit status as the shell reports it */
static int status_code(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

/* Waits up to timeout_ms for pid; returns status_code or -ETIMEDOUT. */
static int wait_exit(pid_t pid, int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return status_code(st);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (nd_test_now_ms() >= deadline)
			return -ETIMEDOUT;
		nd_test_sleep_ms(10);
	}
}

static int kill_and_reap(pid_t pid)
{
	int st;

	kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return status_code(st);
}

/*
 * Child side of a spawn, between fork and exec: only async-signal-safe
 * calls. Dies with the test process, drops every inherited fd above stderr
 * (client sockets of the test must not be kept open by the daemon), and
 * reports an exec failure as -errno on errfd.
 */
static void __attribute__((noreturn))
child_exec(const char *const argv[], pid_t parent, int in_fd, int out_fd,
	   int err_fd, int errpipe)
{
	sigset_t none;
	int e;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	if (in_fd >= 0 && in_fd != 0)
		dup2(in_fd, 0);
	if (out_fd >= 0 && out_fd != 1)
		dup2(out_fd, 1);
	if (err_fd >= 0 && err_fd != 2)
		dup2(err_fd, 2);
	/* keep errpipe (close-on-exec) for the report below */
	if (errpipe > 3)
		close_range(3, (unsigned)errpipe - 1, 0);
	close_range((unsigned)errpipe + 1, ~0u, 0);
	execv(argv[0], (char *const *)argv);
	e = -errno;
	while (write(errpipe, &e, sizeof(e)) < 0 && errno == EINTR)
		;
	_exit(127);
}

/*
 * Forks and execs argv with the given fds as stdin/stdout/stderr (-1:
 * inherit). Returns the pid, or a negative errno (exec failure included:
 * the close-on-exec pipe is at EOF when exec worked).
 */
static pid_t spawn(const char *const argv[], int in_fd, int out_fd, int err_fd)
{
	pid_t parent = getpid(), pid;
	int ep[2], e = 0;
	ssize_t n;

	if (pipe2(ep, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		e = -errno;
		close(ep[0]);
		close(ep[1]);
		return e;
	}
	if (pid == 0)
		child_exec(argv, parent, in_fd, out_fd, err_fd, ep[1]);
	close(ep[1]);
	do
		n = read(ep[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n == sizeof(e)) {
		kill_and_reap(pid);
		return e;
	}
	return pid;
}

pid_t nd_test_spawn(const char *const argv[], int in_fd, int out_fd,
		    int err_fd)
{
	pid_t pid = spawn(argv, in_fd, out_fd, err_fd);

	if (pid < 0)
		why((int)pid, "cannot run %s: %s", argv[0],
		    strerror((int)-pid));
	return pid;
}

int nd_test_wait_pid(pid_t pid, int timeout_ms)
{
	return wait_exit(pid, timeout_ms);
}

int nd_test_kill_pid(pid_t pid)
{
	return kill_and_reap(pid);
}

bool nd_test_pid_alive(pid_t pid)
{
	char path[64], buf[512], *rp;
	ssize_t n;
	int fd;

	if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
		return false;
	/* A zombie nobody reaps (PID 1 in a container may not) is dead. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno != ENOENT;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* "pid (comm) S ...": comm may hold spaces and parentheses */
	rp = strrchr(buf, ')');
	return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

int nd_test_daemon_start(struct nd_test_daemon *d,
			 const char *const extra_args[])
{
	const char *argv[64];
	size_t argc = 0;
	bool listen = false;

	memset(d, 0, sizeof(*d));
	argv[argc++] = nd_test_bin();
	argv[argc++] = "master";
	/* (an option given twice is refused: the caller's --listen wins) */
	for (size_t i = 0; extra_args && extra_args[i]; i++)
		listen = listen || !strcmp(extra_args[i], "--listen");
	if (!listen) {
		argv[argc++] = "--listen";
		argv[argc++] = "127.0.0.1:0";
	}
	for (size_t i = 0; extra_args && extra_args[i]; i++) {
		if (argc + 1 >= sizeof(argv) / sizeof(argv[0]))
			return why(-E2BIG, "too many daemon arguments");
		argv[argc++] = extra_args[i];
	}
	argv[argc] = NULL;
	return nd_test_daemon_start_argv(d, argv);
}

int nd_test_daemon_start_argv(struct nd_test_daemon *d,
			      const char *const argv[])
{
	return nd_test_daemon_start_err(d, argv, -1);
}

int nd_test_daemon_start_err(struct nd_test_daemon *d,
			     const char *const argv[], int err_fd)
{
	char line[256];
	size_t len = 0;
	int outp[2], null_fd, err, st;
	int64_t deadline;
	pid_t pid;
	char *nl, *colon, *end;
	long port;

	memset(d, 0, sizeof(*d));
	if (pipe2(outp, O_CLOEXEC) < 0)
		return why(-errno, "pipe: %s", strerror(errno));
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pid = spawn(argv, null_fd, outp[1], err_fd);
	if (null_fd >= 0)
		close(null_fd);
	close(outp[1]);
	if (pid < 0) {
		close(outp[0]);
		return why((int)pid, "cannot run %s: %s (set ND_BIN, run make)",
			   argv[0], strerror((int)-pid));
	}

	/* Read the "listening on" line. */
	deadline = nd_test_now_ms() + ND_TEST_TIMEOUT_MS;
	for (;;) {
		struct pollfd p = { .fd = outp[0], .events = POLLIN };
		ssize_t n;
		int r;

		line[len] = '\0';
		if ((nl = strchr(line, '\n')))
			break;
		if (len + 1 >= sizeof(line)) {
			err = why(-EPROTO, "%s printed a line over %zu bytes",
				  argv[0], sizeof(line));
			goto err_kill;
		}
		r = poll(&p, 1, remaining_ms(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			err = why(-ETIMEDOUT,
				  "%s printed no \"listening on\" line within "
				  "%d ms (got \"%s\")",
				  argv[0], ND_TEST_TIMEOUT_MS, line);
			goto err_kill;
		}
		n = read(outp[0], line + len, sizeof(line) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			st = wait_exit(pid, 1000);
			if (st == -ETIMEDOUT)
				st = kill_and_reap(pid);
			close(outp[0]);
			return why(-ECHILD,
				   "%s closed stdout before printing "
				   "\"listening on\" (status %d, got \"%s\")",
				   argv[0], st, line);
		}
		len += (size_t)n;
	}
	*nl = '\0';
	colon = strrchr(line, ':');
	if (strncmp(line, "listening on 127.0.0.1:", 23) != 0 || !colon) {
		err = why(-EPROTO, "unexpected first line from %s: \"%s\"",
			  argv[0], line);
		goto err_kill;
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || *end || port <= 0 || port > 65535) {
		err = why(-EPROTO, "bad port in \"%s\"", line);
		goto err_kill;
	}
	d->pid = pid;
	d->port = (int)port;
	d->out_fd = outp[0];
	d->rest_len = len - (size_t)(nl + 1 - line);
	memcpy(d->rest, nl + 1, d->rest_len);
	return 0;

err_kill:
	kill_and_reap(pid);
	close(outp[0]);
	return err;
}

int nd_test_daemon_http_port(struct nd_test_daemon *d)
{
	static const char tag[] = "http on 127.0.0.1:";
	int64_t until = nd_test_now_ms() + ND_TEST_TIMEOUT_MS;
	const char *p;

	/* the whole line: the tag, then its newline */
	while (!(p = memmem(d->rest, d->rest_len, tag, sizeof(tag) - 1)) ||
	       !memchr(p, '\n', d->rest_len - (size_t)(p - d->rest))) {
		struct pollfd pfd = { .fd = d->out_fd, .events = POLLIN };
		int64_t left = until - nd_test_now_ms();
		ssize_t n;

		if (left <= 0 || d->rest_len >= sizeof(d->rest) - 1)
			return why(0, "no '%s' line: %.*s", tag,
				   (int)d->rest_len, d->rest);
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		n = read(d->out_fd, d->rest + d->rest_len,
			 sizeof(d->rest) - 1 - d->rest_len);
		if (n <= 0)
			return why(0, "stdout closed before '%s'", tag);
		d->rest_len += (size_t)n;
		d->rest[d->rest_len] = '\0';
	}
	return atoi(p + sizeof(tag) - 1);
}

int nd_test_daemon_restart(struct nd_test_daemon *d,
			   const char *const argv[], int err_fd)
{
	for (int k = 0;; k++) {
		if (!nd_test_daemon_start_err(d, argv, err_fd))
			return 0;
		if (k == 49)
			return -1;
		nd_test_sleep_ms(100);
	}
}

int nd_test_daemon_stop(struct nd_test_daemon *d)
{
	int st;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, SIGTERM);
	st = wait_exit(d->pid, ND_TEST_TIMEOUT_MS);
	if (st == -ETIMEDOUT) {
		fprintf(stderr, "harness: daemon %d ignored SIGTERM for %d ms; "
			"sending SIGKILL\n", (int)d->pid, ND_TEST_TIMEOUT_MS);
		st = kill_and_reap(d->pid);
	}
	if (d->out_fd > 0)
		close(d->out_fd);
	memset(d, 0, sizeof(*d));
	return st;
}

int nd_test_daemon_wait(struct nd_test_daemon *d, int timeout_ms)
{
	int st;

	if (d->pid <= 0)
		return -1;
	st = wait_exit(d->pid, timeout_ms);
	if (st == -ETIMEDOUT) {
		fprintf(stderr, "harness: daemon %d did not exit within %d ms; "
			"sending SIGKILL\n", (int)d->pid, timeout_ms);
		st = kill_and_reap(d->pid);
	}
	if (d->out_fd > 0)
		close(d->out_fd);
	memset(d, 0, sizeof(*d));
	return st;
}

long nd_test_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	}
	fclose(f);
	return kib;
}

long nd_test_rss_wait_below(pid_t pid, long limit_kib, int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;
	long rss;

	for (;;) {
		rss = nd_test_rss_kib(pid);
		if (rss < 0 || rss <= limit_kib || nd_test_now_ms() >= deadline)
			return rss;
		nd_test_sleep_ms(50);
	}
}

static bool maps_contain(pid_t pid, const char *what)
{
	char path[64], line[512];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, what) != NULL;
	fclose(f);
	return found;
}

/*
 * Sequential Ping round trips on pairs of connections (at most two open at
 * once, so --max-conns stays out of the way). The daemon receives into
 * preallocated pools (io_uring provided buffers: 1024 x 4 KiB a shard) whose
 * pages become resident only as the kernel cycles through them; about 3,000
 * receives spread over the shards touch them all, so that the baseline is a
 * warmed-up daemon and later growth is real growth.
 */
static int warm_up(int port)
{
	enum { PAIRS = 8, ROUNDS = 200 };
	int err = 0;

	for (int pair = 0; pair < PAIRS && !err; pair++) {
		int64_t deadline = nd_test_now_ms() + ND_TEST_TIMEOUT_MS;
		int a, b;

		/* A small --max-conns may still count the previous pair for a
		 * moment after we closed it: retry the handshake until then. */
		for (;;) {
			a = nd_test_connect(port);
			if (a < 0)
				return a;
			b = nd_test_connect(port);
			if (b < 0) {
				close(a);
				return b;
			}
			err = nd_test_hello(a, 1, NULL);
			if (!err)
				err = nd_test_hello(b, 1, NULL);
			if (!err || nd_test_now_ms() >= deadline)
				break;
			close(a);
			close(b);
			nd_test_sleep_ms(20);
		}
		for (int i = 0; i < ROUNDS && !err; i++) {
			err = nd_test_ping(a, 2 + i, "warm", 4);
			if (!err)
				err = nd_test_ping(b, 2 + i, "warm", 4);
		}
		close(a);
		close(b);
	}
	return err;
}

int nd_test_daemon_baseline(struct nd_test_daemon *d)
{
	int err;

	err = warm_up(d->port);
	if (err)
		return why(err, "warm-up: %.480s", nd_test_why);
	nd_test_sleep_ms(100);
	d->asan = maps_contain(d->pid, "libasan");
	d->rss_base_kib = nd_test_rss_kib(d->pid);
	if (d->rss_base_kib < 0)
		return why(-ESRCH, "cannot read VmRSS of pid %d", (int)d->pid);
	return 0;
}

int nd_test_run(const char *const argv[], char *out, size_t out_size,
		char *err, size_t err_size, int timeout_ms)
{
	return nd_test_run_counted(argv, out, out_size, NULL, err, err_size,
				   timeout_ms);
}

int nd_test_run_counted(const char *const argv[], char *out, size_t out_size,
			uint64_t *out_bytes, char *err, size_t err_size,
			int timeout_ms)
{
	int op[2], ep[2], null_fd, st;
	size_t olen = 0, elen = 0;
	uint64_t total = 0;
	int64_t deadline = nd_test_now_ms() + timeout_ms;
	struct pollfd p[2];
	pid_t pid;

	if (out && out_size)
		out[0] = '\0';
	if (err && err_size)
		err[0] = '\0';
	if (out_bytes)
		*out_bytes = 0;
	if (pipe2(op, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(ep, O_CLOEXEC) < 0) {
		close(op[0]);
		close(op[1]);
		return -errno;
	}
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pid = spawn(argv, null_fd, op[1], ep[1]);
	if (null_fd >= 0)
		close(null_fd);
	close(op[1]);
	close(ep[1]);
	if (pid < 0) {
		close(op[0]);
		close(ep[0]);
		return why((int)pid, "cannot run %s: %s", argv[0],
			   strerror((int)-pid));
	}
	p[0] = (struct pollfd){ .fd = op[0], .events = POLLIN };
	p[1] = (struct pollfd){ .fd = ep[0], .events = POLLIN };
	while (p[0].fd >= 0 || p[1].fd >= 0) {
		int r = poll(p, 2, remaining_ms(deadline));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (int i = 0; i < 2; i++) {
			char tmp[4096];
			char *buf = i ? err : out;
			size_t size = i ? err_size : out_size;
			size_t *len = i ? &elen : &olen;
			ssize_t n;

			if (p[i].fd < 0 || !p[i].revents)
				continue;
			n = read(p[i].fd, tmp, sizeof(tmp));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(p[i].fd);
				p[i].fd = -1;
				continue;
			}
			if (!i)
				total += (uint64_t)n;
			if (buf && size > *len + 1) {
				size_t k = (size_t)n;

				if (k > size - 1 - *len)
					k = size - 1 - *len;
				memcpy(buf + *len, tmp, k);
				*len += k;
				buf[*len] = '\0';
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	if (out_bytes)
		*out_bytes = total;
	st = wait_exit(pid, remaining_ms(deadline));
	if (st == -ETIMEDOUT) {
		kill_and_reap(pid);
		return why(-ETIMEDOUT, "%s did not exit within %d ms",
			   argv[0], timeout_ms);
	}
	return st;
}

/* ---- raw sockets ---- */

int nd_test_connect_opts(int port, int rcvbuf)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port) };
	struct timeval tv = { ND_TEST_TIMEOUT_MS / 1000,
			      (ND_TEST_TIMEOUT_MS % 1000) * 1000 };
	int one = 1, fd, e;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return why(-errno, "socket: %s", strerror(errno));
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EINTR)
			continue;
		e = -errno;
		close(fd);
		return why(e, "connect 127.0.0.1:%d: %s", port, strerror(-e));
	}
	return fd;
}

int nd_test_connect(int port)
{
	return nd_test_connect_opts(port, 0);
}

int nd_test_send_raw(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return why(-errno, "send %zu bytes on fd %d: %s", len,
				   fd, strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int nd_test_encode_append(uint8_t *buf, size_t cap, size_t *len,
			  const Noded__Frame *f)
{
	size_t n = nd_frame_size(f);

	if (n > cap - *len)
		return why(-ENOSPC, "frame of %zu bytes does not fit", n);
	*len += nd_frame_encode(f, buf + *len);
	return 0;
}

int nd_test_send_frame(int fd, const Noded__Frame *f)
{
	size_t n = nd_frame_size(f);
	uint8_t stack[4096], *buf = n <= sizeof(stack) ? stack : malloc(n);
	int err;

	if (!buf)
		return why(-ENOMEM, "malloc %zu", n);
	nd_frame_encode(f, buf);
	err = nd_test_send_raw(fd, buf, n);
	if (buf != stack)
		free(buf);
	return err;
}

/* Reads exactly n bytes before deadline. */
static int read_exact(int fd, uint8_t *buf, size_t n, int64_t deadline)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;
		int pr = poll(&p, 1, remaining_ms(deadline));

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return why(-errno, "poll: %s", strerror(errno));
		if (pr == 0)
			return why(-ETIMEDOUT,
				   "no data within the timeout (had %zu of %zu "
				   "bytes)", got, n);
		r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return why(-errno, "recv after %zu of %zu bytes: %s",
				   got, n, strerror(errno));
		}
		if (r == 0)
			return why(ND_ECLOSED,
				   "connection closed by the server after %zu "
				   "of %zu bytes", got, n);
		got += (size_t)r;
	}
	return 0;
}

int nd_test_recv_frame(int fd, int timeout_ms, Noded__Frame **out)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;
	uint8_t hdr[ND_FRAME_HDR], *body;
	uint32_t n;
	int err;

	*out = NULL;
	err = read_exact(fd, hdr, sizeof(hdr), deadline);
	if (err)
		return err;
	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
	    (uint32_t)hdr[2] << 8 | hdr[3];
	if (n == 0)
		return why(ND_EEMPTYFRAME, "server sent a zero-length frame");
	if (n > ND_MAX_FRAME_DEFAULT)
		return why(ND_EFRAMETOOBIG, "server sent a frame of %u bytes",
			   n);
	body = malloc(n);
	if (!body)
		return why(-ENOMEM, "malloc %u", n);
	err = read_exact(fd, body, n, deadline);
	if (!err) {
		*out = nd_frame_decode(body, n, NULL);
		if (!*out)
			err = why(ND_EBADFRAME,
				  "server sent %u bytes that do not decode "
				  "as a Frame", n);
	}
	free(body);
	return err;
}

int nd_test_expect_closed(int fd, int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;
	uint8_t buf[64];

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;
		int pr = poll(&p, 1, remaining_ms(deadline));

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0)
			return why(-ETIMEDOUT,
				   "the server did not close the connection "
				   "within %d ms", timeout_ms);
		r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r == 0)
			return 0;
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno == ECONNRESET)
				return 0;
			return why(-errno, "recv: %s", strerror(errno));
		}
		{
			char hex[3 * 16 + 1] = "";

			for (ssize_t i = 0; i < r && i < 16; i++)
				snprintf(hex + 3 * i, 4, "%02x ", buf[i]);
			return why(ND_EPROTO,
				   "expected the connection to be closed, got "
				   "%zd more bytes: %s", r, hex);
		}
	}
}

int nd_test_expect_quiet(int fd, int quiet_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	Noded__Frame *f;
	int r, err;

	do
		r = poll(&p, 1, quiet_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return 0;
	err = nd_test_recv_frame(fd, ND_TEST_TIMEOUT_MS, &f);
	if (err)
		return why(err == -ECONNRESET ? ND_ECLOSED : err,
			   "expected silence for %d ms: %.400s", quiet_ms,
			   nd_test_why);
	err = why(ND_EPROTO, "expected silence for %d ms, got %s", quiet_ms,
		  nd_test_describe(f));
	nd_frame_free(f, NULL);
	return err;
}

int nd_test_drain_until_closed(int fd, int quiet_ms, int timeout_ms,
			       size_t *bytes_seen)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;
	static uint8_t buf[65536];
	size_t total = 0;
	int err;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = remaining_ms(deadline);
		int pr = poll(&p, 1, left < quiet_ms ? left : quiet_ms);
		ssize_t r;

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0) {
			err = why(-ETIMEDOUT,
				  "connection still open: %s after %zu bytes",
				  left <= quiet_ms ? "overall timeout"
						   : "server went quiet",
				  total);
			break;
		}
		r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r > 0) {
			total += (size_t)r;
			continue;
		}
		if (r == 0 || errno == ECONNRESET) {
			err = 0;
			break;
		}
		if (errno == EINTR || errno == EAGAIN)
			continue;
		err = why(-errno, "recv: %s", strerror(errno));
		break;
	}
	if (bytes_seen)
		*bytes_seen = total;
	return err;
}

bool nd_test_peer_closed(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return true;
	return ti.tcpi_state != TCP_ESTABLISHED;
}

/* ---- frames ---- */

void nd_test_frame_hello(Noded__Frame *f, Noded__HelloRequest *h, uint64_t id,
			 uint32_t version)
{
	noded__frame__init(f);
	noded__hello_request__init(h);
	h->protocol_version = version;
	h->node_name = "noded-tests";
	h->role = NODED__ROLE__ROLE_CLIENT;
	h->software = "noded tests/harness";
	f->id = id;
	f->kind = NODED__FRAME_KIND__REQUEST;
	f->body_case = NODED__FRAME__BODY_HELLO;
	f->hello = h;
}

void nd_test_frame_ping(Noded__Frame *f, Noded__PingRequest *p, uint64_t id,
			const void *payload, size_t len)
{
	noded__frame__init(f);
	noded__ping_request__init(p);
	p->payload.data = (uint8_t *)payload;
	p->payload.len = len;
	f->id = id;
	f->kind = NODED__FRAME_KIND__REQUEST;
	f->body_case = NODED__FRAME__BODY_PING;
	f->ping = p;
}

void nd_test_frame_assign(Noded__Frame *f, Noded__AssignTaskRequest *a,
			  uint64_t id, const char *node_name)
{
	noded__frame__init(f);
	static uint8_t test_id[16] = "noded-test-node";

	noded__assign_task_request__init(a);
	a->node_name = (char *)node_name;
	/* one worker identity for all raw test workers: the same name
	 * registered again replaces the old registration */
	a->node_id.data = test_id;
	a->node_id.len = sizeof(test_id);
	f->id = id;
	f->kind = NODED__FRAME_KIND__REQUEST;
	f->body_case = NODED__FRAME__BODY_ASSIGN_TASK;
	f->assign_task = a;
}

void nd_test_frame_cancel(Noded__Frame *f, uint64_t id)
{
	noded__frame__init(f);
	f->id = id;
	f->kind = NODED__FRAME_KIND__CANCEL;
}

int nd_test_hello(int fd, uint64_t id, Noded__Frame **out)
{
	Noded__Frame f, *r;
	Noded__HelloRequest h;
	char desc[256];
	int err;

	if (out)
		*out = NULL;
	nd_test_frame_hello(&f, &h, id, ND_PROTOCOL_VERSION);
	err = nd_test_send_frame(fd, &f);
	if (err)
		return err;
	err = nd_test_recv_frame(fd, ND_TEST_TIMEOUT_MS, &r);
	if (err)
		return why(err, "no HelloReply: %.400s", nd_test_why);
	if (r->kind != NODED__FRAME_KIND__REPLY || r->id != id ||
	    r->body_case != NODED__FRAME__BODY_HELLO_REPLY) {
		err = why(ND_EPROTO, "Hello id %llu answered with %s",
			  (unsigned long long)id,
			  describe_into(r, desc, sizeof(desc)));
	} else if (r->hello_reply->protocol_version != ND_PROTOCOL_VERSION) {
		err = why(ND_EPROTO, "HelloReply protocol_version %u, want %u",
			  r->hello_reply->protocol_version,
			  ND_PROTOCOL_VERSION);
	}
	if (err || !out)
		nd_frame_free(r, NULL);
	else
		*out = r;
	return err;
}

int nd_test_ping(int fd, uint64_t id, const void *payload, size_t len)
{
	Noded__Frame f, *r;
	Noded__PingRequest p;
	char desc[256];
	int err;

	nd_test_frame_ping(&f, &p, id, payload, len);
	err = nd_test_send_frame(fd, &f);
	if (err)
		return err;
	err = nd_test_recv_frame(fd, ND_TEST_TIMEOUT_MS, &r);
	if (err)
		return why(err, "no pong for ping id %llu: %.400s",
			   (unsigned long long)id, nd_test_why);
	if (r->kind != NODED__FRAME_KIND__REPLY || r->id != id ||
	    r->body_case != NODED__FRAME__BODY_PONG)
		err = why(ND_EPROTO, "ping id %llu answered with %s",
			  (unsigned long long)id,
			  describe_into(r, desc, sizeof(desc)));
	else if (r->pong->payload.len != len ||
		 (len && memcmp(r->pong->payload.data, payload, len) != 0))
		err = why(ND_EPROTO,
			  "pong payload differs (%zu bytes, sent %zu)",
			  r->pong->payload.len, len);
	nd_frame_free(r, NULL);
	return err;
}

int nd_test_expect_error(int fd, Noded__FrameKind kind, Noded__ErrorCode code,
			 int64_t id)
{
	Noded__Frame *r;
	char desc[256];
	int err;

	err = nd_test_recv_frame(fd, ND_TEST_TIMEOUT_MS, &r);
	if (err)
		return why(err, "expected %s with error %s: %.400s",
			   nd_test_kind_name(kind), nd_test_code_name(code),
			   nd_test_why);
	if (r->kind != kind || r->body_case != NODED__FRAME__BODY_ERROR ||
	    r->error->code != code || (id >= 0 && r->id != (uint64_t)id))
		err = why(ND_EPROTO, "expected %s id %lld error %s, got %s",
			  nd_test_kind_name(kind), (long long)id,
			  nd_test_code_name(code),
			  describe_into(r, desc, sizeof(desc)));
	nd_frame_free(r, NULL);
	return err;
}

int nd_test_fresh_ping(int port)
{
	int fd = nd_test_connect(port), err;

	if (fd < 0)
		return fd;
	err = nd_test_hello(fd, 1, NULL);
	if (!err)
		err = nd_test_ping(fd, 2, "fresh", 5);
	close(fd);
	if (err)
		return why(err, "fresh connection: %.450s", nd_test_why);
	return 0;
}

int nd_test_open_many(int port, int *fds, int n)
{
	Noded__Frame f;
	Noded__HelloRequest h;
	uint8_t buf[256];
	size_t len = 0;
	int i, err = 0;

	nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
	nd_test_encode_append(buf, sizeof(buf), &len, &f);
	for (i = 0; i < n; i++) {
		fds[i] = nd_test_connect(port);
		if (fds[i] < 0) {
			err = why(fds[i], "connection %d of %d: %.400s", i, n,
				  nd_test_why);
			goto err_close;
		}
		err = nd_test_send_raw(fds[i], buf, len);
		if (err) {
			why(err, "Hello on connection %d of %d: %.400s", i, n,
			    nd_test_why);
			i++;
			goto err_close;
		}
	}
	for (int j = 0; j < n; j++) {
		Noded__Frame *r;
		char desc[256];

		err = nd_test_recv_frame(fds[j], ND_TEST_TIMEOUT_MS, &r);
		if (err) {
			why(err, "HelloReply on connection %d of %d: %.400s", j,
			    n, nd_test_why);
			goto err_close;
		}
		if (r->kind != NODED__FRAME_KIND__REPLY || r->id != 1 ||
		    r->body_case != NODED__FRAME__BODY_HELLO_REPLY) {
			err = why(ND_EPROTO,
				  "connection %d: Hello answered with %s", j,
				  describe_into(r, desc, sizeof(desc)));
			nd_frame_free(r, NULL);
			goto err_close;
		}
		nd_frame_free(r, NULL);
	}
	return 0;

err_close:
	while (i-- > 0)
		close(fds[i]);
	return err;
}

int nd_test_raise_nofile(rlim_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return why(-errno, "getrlimit: %s", strerror(errno));
	if (rl.rlim_cur >= want)
		return 0;
	if (rl.rlim_max < want) {
		/* only root may raise the hard limit */
		struct rlimit hard = { want, want };

		if (setrlimit(RLIMIT_NOFILE, &hard) == 0)
			return 0;
		return why(-EPERM, "RLIMIT_NOFILE hard limit %llu < %llu",
			   (unsigned long long)rl.rlim_max,
			   (unsigned long long)want);
	}
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return why(-errno, "setrlimit NOFILE %llu: %s",
			   (unsigned long long)want, strerror(errno));
	return 0;
}

char *nd_test_unbase64(const char *b)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = b ? strlen(b) : 0, o = 0;
	char *out = calloc(1, n + 1);
	unsigned acc = 0, bits = 0;

	cr_assert(out);
	for (size_t i = 0; i < n && b[i] != '='; i++) {
		const char *p = strchr(tab, b[i]);

		cr_assert(p && b[i], "not base64: %s", b);
		acc = (acc << 6) | (unsigned)(p - tab);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	return out;
}

const char *nd_test_memfd_text(int fd)
{
	static char buf[1 << 16];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

int nd_test_file_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

int nd_test_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

	if (fd < 0)
		return why(0, "socket: %s", strerror(errno));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len))
		why(0, "a free loopback port: %s", strerror(errno));
	else
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* A free port none of the n in taken[] (0 with nd_test_why set): the
 * kernel may hand out a port it just handed out, once that closed. */
static int other_free_port(const int *taken, int n)
{
	for (int tries = 0; tries < 100; tries++) {
		int port = nd_test_free_port(), k = 0;

		if (!port)
			return 0;
		while (k < n && taken[k] != port)
			k++;
		if (k == n)
			return port;
	}
	return why(0, "no free port apart from the %d taken", n);
}

int nd_test_cluster_ports(int n, int *client_port, int *raft_port,
			  char *list, size_t len)
{
	int taken[32];
	size_t at = 0;

	if (n > 16)
		return why(-1, "at most 16 masters, not %d", n);
	for (int i = 0; i < n; i++) {
		client_port[i] = taken[2 * i] = other_free_port(taken, 2 * i);
		raft_port[i] = taken[2 * i + 1] =
			other_free_port(taken, 2 * i + 1);
		if (!client_port[i] || !raft_port[i])
			return -1;
		at += (size_t)snprintf(list + at, at < len ? len - at : 0,
				       "%s127.0.0.1:%d", i ? "," : "",
				       client_port[i]);
	}
	return at < len ? 0 : why(-1, "%d masters' list is over %zu bytes",
				  n, len);
}

const char *nd_test_path(const char *dir, const char *name)
{
	static char bufs[16][256];
	static unsigned n;
	char *b = bufs[n++ % 16];

	snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
	return b;
}
