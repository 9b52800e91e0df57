/*
 * Shared helpers for the integration tests: start and stop a real noded
 * daemon on an ephemeral loopback port, read its memory use, and talk to it
 * over raw sockets (without the client library, so the protocol tests do not
 * depend on src/client/client.c, client_io.c).
 *
 * Conventions: helpers return 0 or a negative errno / ND_E* code and, on
 * failure, describe what went wrong in nd_test_why (overwritten by the next
 * failing helper). The capitalised macros at the bottom wrap the common calls
 * in Criterion assertions, so a failure is reported at the test's own line
 * with that description.
 */
#ifndef ND_TESTS_HARNESS_H
#define ND_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <criterion/criterion.h>

#include "noded/errors.h"
#include "noded/wire.h"

/* Default bound on every wait for the daemon or a reply. */
#define ND_TEST_TIMEOUT_MS 5000
/* Allowed RSS growth over the baseline after a test case, in KiB. */
#define ND_TEST_RSS_SLACK_KIB (8 * 1024)

/* Description of the last helper failure (never NULL; "" when none). */
extern char nd_test_why[512];

/*
 * One daemon started by nd_test_daemon_start(). A zeroed struct is "not
 * running"; stop may be called on it (the fixture's .fini does so always).
 */
struct nd_test_daemon {
	pid_t pid;        /* 0 when not running */
	int port;         /* the port it printed on stdout */
	int out_fd;       /* read end of its stdout, kept open while it runs */
	long rss_base_kib; /* set by nd_test_daemon_baseline() */
	bool asan;        /* under AddressSanitizer: RSS not meaningful */
	char rest[256];   /* stdout read past the first line */
	size_t rest_len;
};

/*
 * Runs getenv("ND_BIN") (default "build/noded") as
 * `master --listen 127.0.0.1:0 <extra_args...>` (extra_args NULL-terminated,
 * may be NULL; without the default --listen when they have one), with stdout on a pipe and stderr inherited, and waits up to
 * ND_TEST_TIMEOUT_MS for the "listening on 127.0.0.1:PORT" line. The child
 * gets SIGKILL if the test process dies first, so a timed-out test leaves no
 * daemon behind. Returns 0 with d->pid and d->port set, or a negative errno
 * with nd_test_why saying why (exec failed, exited early, no line in time).
 */
int nd_test_daemon_start(struct nd_test_daemon *d,
			 const char *const extra_args[]);

/*
 * Same with a whole command line: argv[0] a path (usually nd_test_bin()),
 * e.g. `noded dev --listen 127.0.0.1:0`. Any program that prints
 * "listening on 127.0.0.1:PORT" as its first stdout line will do.
 */
int nd_test_daemon_start_argv(struct nd_test_daemon *d,
			      const char *const argv[]);
/* Same with the daemon's stderr on err_fd (-1: inherited). */
int nd_test_daemon_start_err(struct nd_test_daemon *d,
			     const char *const argv[], int err_fd);
/*
 * The PORT of the "http on 127.0.0.1:PORT" line d printed after its first
 * (a master with --http), read from its stdout for up to
 * ND_TEST_TIMEOUT_MS into d->rest; 0 with nd_test_why set when it did not
 * come.
 */
int nd_test_daemon_http_port(struct nd_test_daemon *d);
/* Same, tried again for up to 5 s while it fails: a port the daemon
 * takes may linger a moment after a kill. */
int nd_test_daemon_restart(struct nd_test_daemon *d,
			   const char *const argv[], int err_fd);

/*
 * Sends SIGTERM, waits up to ND_TEST_TIMEOUT_MS, then SIGKILLs and reaps.
 * Returns the exit status (0..255) when the daemon exited by itself,
 * 128 + signal when it died of a signal (137 after our SIGKILL), or -1 when
 * nothing was running. Leaves d zeroed. Safe to call twice.
 */
int nd_test_daemon_stop(struct nd_test_daemon *d);

/*
 * Waits up to timeout_ms for the daemon to exit by itself (after the test
 * signalled it), then SIGKILLs it. Returns what nd_test_daemon_stop()
 * returns. Leaves d zeroed.
 */
int nd_test_daemon_wait(struct nd_test_daemon *d, int timeout_ms);

/*
 * Warms the daemon up (about 3,000 Ping round trips over 16 short-lived
 * connections, two at a time, so its preallocated receive pools are
 * resident), lets it settle and records its RSS in d->rss_base_kib. Sets d->asan when libasan is mapped
 * into the daemon: its quarantine keeps freed memory resident, so the RSS
 * checks are skipped there (they run against the normal build). Returns 0
 * or a negative error.
 */
int nd_test_daemon_baseline(struct nd_test_daemon *d);

/* What fd (a memfd a daemon's stderr went to) holds, NUL-terminated
 * (static, overwritten by the next call). */
const char *nd_test_memfd_text(int fd);
/* The number of lines of the file at path (0 when it does not exist). */
int nd_test_file_lines(const char *path);

/* VmRSS of pid in KiB from /proc/PID/status, or -1. */
long nd_test_rss_kib(pid_t pid);

/*
 * Polls the RSS of pid every 50 ms for up to timeout_ms until it is at most
 * limit_kib. Returns the last value read (so the caller compares it with
 * limit_kib), or -1 when it could not be read.
 */
long nd_test_rss_wait_below(pid_t pid, long limit_kib, int timeout_ms);

/* Monotonic clock in milliseconds. */
int64_t nd_test_now_ms(void);
void nd_test_sleep_ms(int ms);

/*
 * Decodes standard base64 (padding optional; NULL is ""), independently of
 * the code under test, for checking its round trip. Fails the test on a
 * character that is not base64. Returns a NUL-terminated malloc'd copy of
 * the bytes (free it).
 */
char *nd_test_unbase64(const char *b);

/*
 * Runs argv (argv[0] a path) directly, with stdin from /dev/null, capturing
 * stdout and stderr into out/err (NUL-terminated, truncated to the sizes
 * given; either may be NULL), and waits up to timeout_ms for it to exit.
 * Returns the exit status as nd_test_daemon_stop() does, or -ETIMEDOUT
 * (after killing it) when it did not exit in time.
 */
int nd_test_run(const char *const argv[], char *out, size_t out_size,
		char *err, size_t err_size, int timeout_ms);

/*
 * Same as nd_test_run(), and *out_bytes (may be NULL) receives the number of
 * stdout bytes read, including those beyond out_size that were dropped: for
 * counting large or binary output without keeping it.
 */
int nd_test_run_counted(const char *const argv[], char *out, size_t out_size,
			uint64_t *out_bytes, char *err, size_t err_size,
			int timeout_ms);

/*
 * Forks and execs argv (argv[0] a path) with in_fd/out_fd/err_fd as its
 * stdin/stdout/stderr (-1: inherit) and every other fd closed; the child gets
 * SIGKILL if the test process dies. Returns the pid (the caller reaps it) or
 * a negative errno, exec failure included, with nd_test_why set.
 */
pid_t nd_test_spawn(const char *const argv[], int in_fd, int out_fd,
		    int err_fd);

/*
 * Waits up to timeout_ms for child pid to exit. Returns its status as
 * nd_test_daemon_stop() does, or -ETIMEDOUT (it is left running).
 */
int nd_test_wait_pid(pid_t pid, int timeout_ms);

/* SIGKILLs child pid and reaps it; returns its status (137 usually). */
int nd_test_kill_pid(pid_t pid);

/*
 * True while process pid exists and is not a zombie (any process, not only
 * our children: a zombie left to a PID 1 that does not reap counts as gone).
 */
bool nd_test_pid_alive(pid_t pid);

/* Path of the daemon binary under test. */
const char *nd_test_bin(void);

/* ---- raw sockets ---- */

/*
 * Connects a blocking TCP socket to 127.0.0.1:port with TCP_NODELAY and
 * SO_RCVTIMEO/SO_SNDTIMEO of ND_TEST_TIMEOUT_MS. Returns the fd or a
 * negative errno.
 */
int nd_test_connect(int port);

/* Same, but with SO_RCVBUF set to rcvbuf bytes before connecting (0: keep). */
int nd_test_connect_opts(int port, int rcvbuf);

/* Writes all len bytes (MSG_NOSIGNAL). Returns 0 or a negative errno. */
int nd_test_send_raw(int fd, const void *buf, size_t len);

/* Encodes f with nd_frame_encode() and sends it. Returns 0 or an error. */
int nd_test_send_frame(int fd, const Noded__Frame *f);

/*
 * Appends the encoded f to buf (capacity cap, *len bytes used), for
 * pipelining several frames in one send. Returns 0 or -ENOSPC.
 */
int nd_test_encode_append(uint8_t *buf, size_t cap, size_t *len,
			  const Noded__Frame *f);

/*
 * Reads one frame within timeout_ms: the 4-byte header, then the body,
 * decoded with nd_frame_decode(). On 0, *out owns the frame (free with
 * nd_frame_free(*out, NULL)). Errors: -ETIMEDOUT, ND_ECLOSED (clean EOF),
 * -ECONNRESET or another negative errno, ND_EEMPTYFRAME/ND_EFRAMETOOBIG
 * (header over 16 MiB), ND_EBADFRAME (body did not decode).
 */
int nd_test_recv_frame(int fd, int timeout_ms, Noded__Frame **out);

/*
 * Checks that nothing arrives and the connection stays open for quiet_ms.
 * Returns 0, or ND_EPROTO (a frame arrived; nd_test_why describes it) or
 * ND_ECLOSED / a negative errno.
 */
int nd_test_expect_quiet(int fd, int quiet_ms);

/*
 * Waits up to timeout_ms for the peer to close: returns 0 on EOF or
 * ECONNRESET, -ETIMEDOUT when the connection is still open, or
 * ND_EPROTO when data arrived instead (nd_test_why describes it).
 */
int nd_test_expect_closed(int fd, int timeout_ms);

/* A loopback TCP port free now (bound to port 0, then closed: start what
 * takes it right after), or 0 with nd_test_why set. */
int nd_test_free_port(void);

/* For n masters on loopback (n <= 16): a free client port and a free Raft
 * port each, all different, and the clients' "127.0.0.1:P,..." list
 * (--master) in list. 0, or -1 with nd_test_why set. */
int nd_test_cluster_ports(int n, int *client_port, int *raft_port,
			  char *list, size_t len);

/* "DIR/NAME" in one of 16 static buffers used in turn: valid until 16
 * more calls (paths under a test's temporary directory). */
const char *nd_test_path(const char *dir, const char *name);

/*
 * Reads and discards whatever arrives until the peer closes (0), or until
 * nothing arrives for quiet_ms (-ETIMEDOUT), within timeout_ms overall.
 * *bytes_seen (may be NULL) receives the number of bytes read.
 */
int nd_test_drain_until_closed(int fd, int quiet_ms, int timeout_ms,
			       size_t *bytes_seen);

/* True when the kernel says the peer has closed (FIN or RST received). */
bool nd_test_peer_closed(int fd);

/* ---- frames ---- */

/* Fills a REQUEST frame for the given body; sub-messages are the caller's. */
void nd_test_frame_hello(Noded__Frame *f, Noded__HelloRequest *h, uint64_t id,
			 uint32_t version);
void nd_test_frame_ping(Noded__Frame *f, Noded__PingRequest *p, uint64_t id,
			const void *payload, size_t len);
/* With the same fixed node id always (the same worker by any name). */
void nd_test_frame_assign(Noded__Frame *f, Noded__AssignTaskRequest *a,
			  uint64_t id, const char *node_name);
void nd_test_frame_cancel(Noded__Frame *f, uint64_t id);

/*
 * Sends Hello (protocol 1, id) and checks the REPLY hello_reply. *out (may be
 * NULL) receives the reply frame, owned by the caller. Returns 0 or -1/errno
 * with nd_test_why set.
 */
int nd_test_hello(int fd, uint64_t id, Noded__Frame **out);

/*
 * Sends a Ping (id, payload) and checks that a REPLY pong with the same id
 * and payload comes back within timeout. Returns 0 or an error.
 */
int nd_test_ping(int fd, uint64_t id, const void *payload, size_t len);

/*
 * Reads one frame and checks it is kind `kind` with body error code `code`
 * and id `id` (id < 0: any). Returns 0 or an error.
 */
int nd_test_expect_error(int fd, Noded__FrameKind kind, Noded__ErrorCode code,
			 int64_t id);

/*
 * Connect + Hello + Ping + close on a fresh connection. Returns 0 or an
 * error.
 */
int nd_test_fresh_ping(int port);

/*
 * Opens n connections (plain blocking connects with a Hello pipelined after
 * each), then reads all the HelloReplies. On 0, fds[0..n) are open. On error
 * the opened ones are closed. Used by the many-connections tests.
 */
int nd_test_open_many(int port, int *fds, int n);

/* Raises RLIMIT_NOFILE's soft limit to at least want (up to the hard one). */
int nd_test_raise_nofile(rlim_t want);

/* One-line description of f (static buffers, a few calls may be live). */
const char *nd_test_describe(const Noded__Frame *f);
const char *nd_test_code_name(int code);
const char *nd_test_kind_name(int kind);

/* ---- action macros (assert at the caller's line) ---- */

#define ND_CHECK(expr, ...)                                                  \
	do {                                                                 \
		int nd_r_ = (expr);                                          \
		cr_assert(nd_r_ == 0, "%s -> %d (%s): %s", #expr, nd_r_,     \
			  nd_strerror(nd_r_), nd_test_why);                  \
	} while (0)

/*
 * Starts daemon d with the extra arguments given (none is fine) and records
 * its baseline RSS after a warm-up.
 */
#define DAEMON_START(d, ...)                                                 \
	do {                                                                 \
		ND_CHECK(nd_test_daemon_start(                               \
			(d), ((const char *const[]){ "", ##__VA_ARGS__,      \
						     NULL }) + 1));          \
		ND_CHECK(nd_test_daemon_baseline(d));                        \
	} while (0)

/* Connect to the daemon d; evaluates to the fd. */
#define CONNECT(d)                                                           \
	({                                                                   \
		int nd_fd_ = nd_test_connect((d)->port);                     \
		cr_assert(nd_fd_ >= 0, "connect to port %d: %s", (d)->port,  \
			  nd_strerror(nd_fd_));                              \
		nd_fd_;                                                      \
	})

/* Read one frame (must arrive in time); evaluates to the frame. */
#define RECV(fd)                                                             \
	({                                                                   \
		Noded__Frame *nd_f_ = NULL;                                  \
		int nd_rr_ = nd_test_recv_frame((fd), ND_TEST_TIMEOUT_MS,    \
						&nd_f_);                     \
		cr_assert(nd_rr_ == 0, "reading a frame: %s", nd_test_why);  \
		nd_f_;                                                       \
	})

/* Assert frame f has this kind, id and body case. */
#define EXPECT_FRAME(f, k, i, body)                                          \
	cr_assert((f)->kind == (k) && (f)->id == (uint64_t)(i) &&            \
			  (f)->body_case == (body),                          \
		  "expected kind=%s id=%llu body=%s, got %s",                \
		  nd_test_kind_name(k), (unsigned long long)(i),             \
		  nd_frame_method_name(body), nd_test_describe(f))

/* Assert frame f carries an Error body with code c. */
#define EXPECT_ERROR_BODY(f, c)                                              \
	cr_assert((f)->body_case == NODED__FRAME__BODY_ERROR &&              \
			  (f)->error->code == (c),                           \
		  "expected an Error %s, got %s", nd_test_code_name(c),      \
		  nd_test_describe(f))

#define EXPECT_QUIET(fd, ms) ND_CHECK(nd_test_expect_quiet((fd), (ms)))

#define HELLO(fd) ND_CHECK(nd_test_hello((fd), 1, NULL))
#define PING(fd, id) ND_CHECK(nd_test_ping((fd), (id), "ping", 4))
#define SEND_RAW(fd, buf, len) ND_CHECK(nd_test_send_raw((fd), (buf), (len)))
#define SEND_FRAME(fd, f) ND_CHECK(nd_test_send_frame((fd), (f)))
#define FRESH_PING(d) ND_CHECK(nd_test_fresh_ping((d)->port))

/* Expect one REPLY Error frame with `code` and `id` (-1: any), then close. */
#define EXPECT_FATAL(fd, code, id)                                           \
	do {                                                                 \
		ND_CHECK(nd_test_expect_error((fd), NODED__FRAME_KIND__REPLY, \
					      (code), (id)));                \
		ND_CHECK(nd_test_expect_closed((fd), ND_TEST_TIMEOUT_MS));   \
	} while (0)

#define EXPECT_CLOSED(fd)                                                    \
	ND_CHECK(nd_test_expect_closed((fd), ND_TEST_TIMEOUT_MS))

/*
 * The daemon is healthy: a fresh connection pings, and its RSS comes back
 * within ND_TEST_RSS_SLACK_KIB of the baseline within a few seconds.
 */
#define EXPECT_HEALTHY(d) EXPECT_HEALTHY_WITHIN(d, ND_TEST_TIMEOUT_MS)
#define EXPECT_HEALTHY_WITHIN(d, ms)                                         \
	do {                                                                 \
		FRESH_PING(d);                                               \
		if ((d)->asan) {                                             \
			cr_log_info("RSS check skipped: daemon runs under "  \
				    "ASan");                                 \
			break;                                               \
		}                                                            \
		long nd_lim_ = (d)->rss_base_kib + ND_TEST_RSS_SLACK_KIB;    \
		long nd_rss_ = nd_test_rss_wait_below((d)->pid, nd_lim_,     \
						      (ms));                 \
		cr_assert(nd_rss_ >= 0 && nd_rss_ <= nd_lim_,                \
			  "daemon RSS %ld KiB, baseline %ld KiB, limit %ld " \
			  "KiB (+%d KiB slack)",                             \
			  nd_rss_, (d)->rss_base_kib, nd_lim_,               \
			  ND_TEST_RSS_SLACK_KIB);                            \
	} while (0)

/* Stop the daemon and assert it exited 0 on SIGTERM. */
#define STOP_OK(d)                                                           \
	do {                                                                 \
		int nd_st_ = nd_test_daemon_stop(d);                         \
		cr_assert(nd_st_ == 0,                                       \
			  "daemon exit status %d on SIGTERM, want 0 (>128: " \
			  "killed by signal status-128; 137: did not exit "  \
			  "within %d ms)",                                   \
			  nd_st_, ND_TEST_TIMEOUT_MS);                       \
	} while (0)

#endif
