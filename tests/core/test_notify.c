/*
 * The service manager's notifications (src/core/notify.c) from real daemons,
 * the way systemd receives them: each test binds a unix datagram socket,
 * names it in NOTIFY_SOCKET (and WATCHDOG_USEC when it asks for the
 * watchdog), starts `noded master` or `noded worker`, and reads what
 * arrives. READY=1 comes once the master serves (after its listening line)
 * and once a worker is registered; WATCHDOG=1 only when asked, and not
 * while a shard's thread is stopped; STOPPING=1 on SIGTERM. Without
 * NOTIFY_SOCKET, or with one nobody listens on, the daemons run as ever,
 * and no task inherits the variable.
 */
#include <dirent.h>
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

static char dir[64];
static char sock_path[96];
static int sock = -1;
static struct nd_test_daemon d;
static pid_t worker_pid;

/* A datagram socket in a fresh directory, named in NOTIFY_SOCKET. */
static void setup(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(dir, sizeof(dir), "/tmp/nd-notify-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/notify", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert(sock >= 0);
	cr_assert(bind(sock, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	setenv("NOTIFY_SOCKET", sock_path, 1);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

static void teardown(void)
{
	char cmd[128];

	nd_test_daemon_stop(&d);
	if (worker_pid > 0)
		nd_test_kill_pid(worker_pid);
	worker_pid = 0;
	if (sock >= 0)
		close(sock);
	sock = -1;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd)) {
		/* a leftover temporary directory fails nothing */
	}
}

/*
 * Reads datagrams for up to timeout_ms until one holds want (a line such
 * as "READY=1"); everything read is appended to log (size bytes) when
 * given. Returns true when it came.
 */
static bool await(const char *want, int timeout_ms, char *log, size_t size)
{
	int64_t end = nd_test_now_ms() + timeout_ms;
	char buf[4096];

	for (;;) {
		int64_t left = end - nd_test_now_ms();
		struct pollfd p = { .fd = sock, .events = POLLIN };
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return false;
		n = recv(sock, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		if (log)
			snprintf(log + strlen(log), size - strlen(log), "%s|",
				 buf);
		if (strstr(buf, want))
			return true;
	}
}

/* Counts the datagrams holding want that arrive within ms. */
static int count(const char *want, int ms)
{
	int64_t end = nd_test_now_ms() + ms;
	int n = 0;

	while (nd_test_now_ms() < end)
		if (await(want, (int)(end - nd_test_now_ms()), NULL, 0))
			n++;
	return n;
}

static void start_master(const char *shards)
{
	const char *argv[] = { nd_test_bin(), "master", "--listen",
			       "127.0.0.1:0", "--shards", shards, NULL };

	ND_CHECK(nd_test_daemon_start_argv(&d, argv));
}

static pid_t start_worker(const char *master)
{
	char sdir[128];
	const char *argv[] = { nd_test_bin(), "worker", "--master", master,
			       "--name", "nw1", "--slots", "1",
			       "--state-dir", sdir, NULL };
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	pid_t pid;

	snprintf(sdir, sizeof(sdir), "%s/state", dir);
	pid = nd_test_spawn(argv, null_fd, null_fd,
			    getenv("ND_TEST_VERBOSE") ? -1 : null_fd);
	close(null_fd);
	cr_assert(pid > 0, "%s", nd_test_why);
	return pid;
}

TestSuite(notify, .init = setup, .fini = teardown, .timeout = 60);

/* READY=1 with the address it serves, once it answers: the listening
 * line was printed before (nd_test_daemon_start_argv read it). */
Test(notify, master_ready_when_serving)
{
	char log[4096] = "", want[64];

	start_master("2");
	cr_assert(await("READY=1", 5000, log, sizeof(log)),
		  "no READY=1 within 5 s; got: %s", log);
	FRESH_PING(&d);
	snprintf(want, sizeof(want), "STATUS=listening on 127.0.0.1:%d",
		 d.port);
	cr_assert(strstr(log, want), "want '%s' in: %s", want, log);
	STOP_OK(&d);
}

Test(notify, master_stopping_on_sigterm)
{
	char log[4096] = "";

	start_master("1");
	cr_assert(await("READY=1", 5000, log, sizeof(log)), "%s", log);
	cr_assert(await("STOPPING=1", 300, NULL, 0) == false,
		  "STOPPING=1 before any signal");
	kill(d.pid, SIGTERM);
	cr_assert(await("STOPPING=1", 5000, log, sizeof(log)),
		  "no STOPPING=1 after SIGTERM; got: %s", log);
	cr_assert_eq(nd_test_daemon_wait(&d, 5000), 0);
}

/* WATCHDOG_USEC=1 s: a keep-alive every half second (at least 2 in 3 s,
 * however loaded the machine). */
Test(notify, watchdog_when_asked)
{
	int n;

	setenv("WATCHDOG_USEC", "1000000", 1);
	start_master("2");
	n = count("WATCHDOG=1", 3000);
	cr_assert(n >= 2, "%d WATCHDOG=1 in 3 s with WATCHDOG_USEC=1000000", n);
	STOP_OK(&d);
}

Test(notify, no_watchdog_unless_asked)
{
	start_master("1");
	cr_assert(await("READY=1", 5000, NULL, 0));
	cr_assert_eq(count("WATCHDOG=1", 1500), 0,
		     "WATCHDOG=1 without WATCHDOG_USEC");
	STOP_OK(&d);
}

/* The tid of the daemon's thread named name, or 0. */
static pid_t thread_named(pid_t pid, const char *name)
{
	char path[320], comm[32];
	struct dirent *e;
	pid_t found = 0;
	DIR *td;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	td = opendir(path);
	if (!td)
		return 0;
	while (!found && (e = readdir(td))) {
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid,
			 e->d_name);
		f = fopen(path, "re");
		if (f && fgets(comm, sizeof(comm), f)) {
			comm[strcspn(comm, "\n")] = '\0';
			if (!strcmp(comm, name))
				found = atoi(e->d_name);
		}
		if (f)
			fclose(f);
	}
	closedir(td);
	return found;
}

/* One shard's thread stopped (ptrace, the others run on): the keep-alive
 * stops until it runs again. */
Test(notify, watchdog_withheld_while_a_shard_stalls)
{
	pid_t tid;
	long r;
	int st, n;

	setenv("WATCHDOG_USEC", "1000000", 1);
	start_master("2");
	cr_assert(await("WATCHDOG=1", 5000, NULL, 0), "no first WATCHDOG=1");
	tid = thread_named(d.pid, "shard-1");
	cr_assert(tid > 0, "no thread named shard-1 in /proc/%d/task", d.pid);
	r = ptrace(PTRACE_SEIZE, tid, 0, 0);
	if (r && errno == EPERM)
		cr_skip_test("ptrace is not allowed here (kernel.yama."
			     "ptrace_scope 3, or a seccomp profile): cannot "
			     "stop one shard's thread");
	cr_assert(r == 0, "seize: %s", strerror(errno));
	cr_assert(ptrace(PTRACE_INTERRUPT, tid, 0, 0) == 0);
	cr_assert(waitpid(tid, &st, __WALL) == tid);
	/* what was sent before it stalled, then quiet */
	count("WATCHDOG=1", 1200);
	n = count("WATCHDOG=1", 2000);
	ptrace(PTRACE_DETACH, tid, 0, 0);
	cr_assert_eq(n, 0, "%d WATCHDOG=1 while shard 1 was stopped", n);
	cr_assert(await("WATCHDOG=1", 5000, NULL, 0),
		  "no WATCHDOG=1 once shard 1 runs again");
	FRESH_PING(&d);
	STOP_OK(&d);
}

/* A worker is ready once registered: by then the master lists it. */
Test(notify, worker_ready_once_registered)
{
	char log[4096] = "", master[32], out[8192], err[1024];
	const char *nodes[] = { nd_test_bin(), "nodes", "--master", master,
				NULL };
	int st;

	unsetenv("NOTIFY_SOCKET"); /* the master's is not ours */
	start_master("1");
	setenv("NOTIFY_SOCKET", sock_path, 1);
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	worker_pid = start_worker(master);
	cr_assert(await("READY=1", 10000, log, sizeof(log)),
		  "no READY=1 from the worker; got: %s", log);
	cr_assert(strstr(log, "STATUS=registered with master"), "%s", log);
	unsetenv("NOTIFY_SOCKET");
	st = nd_test_run(nodes, out, sizeof(out), err, sizeof(err), 10000);
	cr_assert_eq(st, 0, "%s", err);
	cr_assert(strstr(out, "nw1"), "READY=1 but nw1 not registered: %s",
		  out);
	kill(worker_pid, SIGTERM);
	cr_assert(await("STOPPING=1", 5000, log, sizeof(log)), "%s", log);
	cr_assert_eq(nd_test_wait_pid(worker_pid, 10000), 0);
	worker_pid = 0;
	STOP_OK(&d);
}

/* No master: not ready, and the status says why. */
Test(notify, worker_not_ready_without_master)
{
	char log[4096] = "";
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	char master[32];

	/* a port of ours that nobody listens on */
	cr_assert(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	snprintf(master, sizeof(master), "127.0.0.1:%d", ntohs(sa.sin_port));
	worker_pid = start_worker(master);
	cr_assert(await("STATUS=cannot reach master", 5000, log, sizeof(log)),
		  "%s", log);
	cr_assert(!await("READY=1", 1500, log, sizeof(log)),
		  "READY=1 without a master: %s", log);
	cr_assert(!strstr(log, "READY=1"), "%s", log);
	close(lfd);
}

/* A NOTIFY_SOCKET nobody listens on costs nothing. */
Test(notify, dead_socket_harmless)
{
	setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1);
	setenv("WATCHDOG_USEC", "1000000", 1);
	start_master("1");
	FRESH_PING(&d);
	nd_test_sleep_ms(1200);
	FRESH_PING(&d);
	STOP_OK(&d);
}

/* The daemon's line to the service manager is not passed to tasks. */
Test(notify, tasks_do_not_inherit_it)
{
	char master[32], out[1024], err[1024];
	const char *dev[] = { nd_test_bin(), "dev", "--listen", "127.0.0.1:0",
			      "--http", "none", "--workers", "1", NULL };
	const char *run[] = { nd_test_bin(), "run", "--master", master,
			      "--shell", "--", "echo NOTIFY_SOCKET=${NOTIFY_SOCKET-unset}"
			      " WATCHDOG_USEC=${WATCHDOG_USEC-unset}", NULL };
	int st;

	setenv("WATCHDOG_USEC", "1000000", 1);
	ND_CHECK(nd_test_daemon_start_argv(&d, dev));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	/* its worker registers and reports just after the line */
	for (int i = 0; i < 50; i++) {
		st = nd_test_run(run, out, sizeof(out), err, sizeof(err),
				 20000);
		if (st != 1 || !strstr(err, "no live nodes"))
			break;
		nd_test_sleep_ms(100);
	}
	cr_assert_eq(st, 0, "run exited %d: %s", st, err);
	cr_assert(strstr(out, "NOTIFY_SOCKET=unset WATCHDOG_USEC=unset"),
		  "a task saw: %s", out);
	STOP_OK(&d);
}

/* A master that refuses us (no token): not ready, and the status says so. */
Test(notify, worker_status_says_refused)
{
	char log[4096] = "", master[32], token[128];
	const char *argv[] = { nd_test_bin(), "master", "--listen",
			       "127.0.0.1:0", "--token-file", token, NULL };
	FILE *f;

	snprintf(token, sizeof(token), "%s/token", dir);
	f = fopen(token, "w");
	cr_assert(f);
	fputs("0123456789abcdef0123456789abcdef\n", f);
	fclose(f);
	chmod(token, 0600);
	unsetenv("NOTIFY_SOCKET");
	ND_CHECK(nd_test_daemon_start_argv(&d, argv));
	setenv("NOTIFY_SOCKET", sock_path, 1);
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	worker_pid = start_worker(master);
	cr_assert(await("STATUS=refused by master", 10000, log, sizeof(log)),
		  "%s", log);
	cr_assert(strstr(log, "token"), "the status does not say why: %s",
		  log);
	cr_assert(!await("READY=1", 1500, log, sizeof(log)), "%s", log);
	cr_assert(!strstr(log, "READY=1"), "%s", log);
}
