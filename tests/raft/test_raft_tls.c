/*
 * The Raft links on mutual TLS (src/raft/link_tls.c, transport.c): three
 * real masters with master certificates from `noded tls` and no token,
 * a real worker and the real CLI on their own certificates.
 *
 * - the cluster forms (two --join over TLS), runs tasks, and fails over
 *   after kill -9 of the leader with every acknowledged task kept;
 * - a member far behind catches up by a snapshot larger than a link's
 *   queue bound;
 * - a Raft link with a worker's certificate, a certificate of another CA,
 *   or no TLS at all is closed and said in the log, while one with a
 *   master's certificate is kept (the check is the role, not just the CA);
 * - a master on the token alone names a TLS peer for what it is;
 * - off loopback, mutual TLS is enough for the Raft links (no token).
 *
 * The raw Raft-link clients here speak libraft's greeting and then
 * OpenSSL's TLS, written for the test.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cli.h"
#include "harness.h"

#define N 3

static struct nd_test_daemon m[N];
static int client_port[N], raft_port[N], errfd[N] = { -1, -1, -1 };
static char list[128];
static pid_t worker;
static char dir[64];
static char out[65536], err[65536];
static struct nd_test_cli R;
/* More options for master_start (NULL-terminated), or NULL. */
static const char *const *extra;

/* dir/NAME */
static const char *path(const char *name)
{
	return nd_test_path(dir, name);
}

#define NODED(...)                                                           \
	nd_test_run((const char *const[]){ nd_test_bin(), __VA_ARGS__, NULL }, \
		    out, sizeof(out), err, sizeof(err), 20000)

static void setup(void)
{
	char ca[128], other[128];

	memset(m, 0, sizeof(m));
	worker = 0;
	extra = NULL;
	snprintf(dir, sizeof(dir), "/tmp/noded-rafttls-XXXXXX");
	cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	cr_assert(!nd_test_cluster_ports(N, client_port, raft_port, list,
					 sizeof(list)), "%s", nd_test_why);
	snprintf(ca, sizeof(ca), "%s/ca", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	cr_assert_eq(NODED("tls", "ca", "create", "--dir", ca, "--cluster",
			   "rt"), 0, "%s", err);
	for (int i = 0; i < N; i++) {
		char name[8];

		snprintf(name, sizeof(name), "m%d", i);
		cr_assert_eq(NODED("tls", "cert", "create", "--master", name,
				   "--ca-dir", ca, "--out-dir", dir), 0, "%s",
			     err);
	}
	cr_assert_eq(NODED("tls", "cert", "create", "--worker", "w1",
			   "--ca-dir", ca, "--out-dir", dir), 0, "%s", err);
	cr_assert_eq(NODED("tls", "cert", "create", "--client", "alice",
			   "--ca-dir", ca, "--out-dir", dir), 0, "%s", err);
	cr_assert_eq(NODED("tls", "ca", "create", "--dir", other, "--cluster",
			   "rt"), 0, "%s", err);
	cr_assert(!mkdir(path("o"), 0700));
	cr_assert_eq(NODED("tls", "cert", "create", "--master", "mallory",
			   "--ca-dir", other, "--out-dir", path("o")), 0, "%s",
		     err);
	/* the CLI is a client of the cluster: alice */
	setenv("NODED_TLS_CERT", path("client-alice.crt"), 1);
	setenv("NODED_TLS_KEY", path("client-alice.key"), 1);
	setenv("NODED_TLS_CA", path("ca/ca.crt"), 1);
	unsetenv("NODED_TOKEN_FILE");
}

static void teardown(void)
{
	char cmd[128];

	unsetenv("NODED_TLS_CERT");
	unsetenv("NODED_TLS_KEY");
	unsetenv("NODED_TLS_CA");
	if (worker > 0)
		nd_test_kill_pid(worker);
	for (int i = 0; i < N; i++) {
		nd_test_daemon_stop(&m[i]);
		if (errfd[i] >= 0)
			close(errfd[i]);
		errfd[i] = -1;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		cr_log_warn("could not remove %s", dir);
}

TestSuite(raft_tls, .init = setup, .fini = teardown, .timeout = 180);

/* Master i on mutual TLS with its certificate mI (token: also prove
 * that token file, instead of TLS when tls is false). */
static void master_start(int i, bool join, bool tls, const char *token)
{
	char listen[32], raft[32], data[128], to[32], crt[128], key[128];
	const char *argv[32] = { nd_test_bin(), "master", "--listen", listen,
				 "--data-dir", data, "--raft-listen", raft,
				 "--heartbeat-timeout", "3", "--lease", "6" };
	int n = 12;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", client_port[i]);
	snprintf(raft, sizeof(raft), "127.0.0.1:%d", raft_port[i]);
	snprintf(data, sizeof(data), "%s/m%d", dir, i);
	snprintf(to, sizeof(to), "127.0.0.1:%d", client_port[0]);
	snprintf(crt, sizeof(crt), "%s/master-m%d.crt", dir, i);
	snprintf(key, sizeof(key), "%s/master-m%d.key", dir, i);
	if (tls) {
		argv[n++] = "--tls-cert";
		argv[n++] = crt;
		argv[n++] = "--tls-key";
		argv[n++] = key;
		argv[n++] = "--tls-ca";
		argv[n++] = path("ca/ca.crt");
	}
	if (token) {
		argv[n++] = "--token-file";
		argv[n++] = token;
	}
	if (join) {
		argv[n++] = "--join";
		argv[n++] = to;
	}
	for (int k = 0; extra && extra[k]; k++)
		argv[n++] = extra[k];
	argv[n] = NULL;
	if (errfd[i] < 0)
		errfd[i] = memfd_create("master-stderr", MFD_CLOEXEC);
	cr_assert(!nd_test_daemon_restart(&m[i], argv, errfd[i]),
		  "master %d did not start: %s; %s", i, nd_test_why,
		  nd_test_memfd_text(errfd[i]));
}

#define CLUSTER(...)                                                         \
	nd_test_cli_run(&R, list, ND_TEST_CLI_MS,                            \
			(const char *const[]){ __VA_ARGS__, NULL })

/* The leader's index once `voters` voters are in, within ms; -1 never. */
static int leader_index(int voters, int ms)
{
	return nd_test_raft_leader(&R, list, m, client_port, N, voters, ms);
}

static const char *logs(void)
{
	static char buf[3 * 65536];
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; i < N; i++)
		if (errfd[i] >= 0)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n,
					      "--- master %d\n%.60000s", i,
					      nd_test_memfd_text(errfd[i]));
	return buf;
}

static const char *task_state(uint64_t id, char *buf, size_t len)
{
	return nd_test_task_state(&R, list, id, buf, len);
}

/* `noded run -- echo WORD` once the worker is with the leader. */
static void run_echo(const char *word)
{
	char want[64];

	for (int k = 0; k < 200; k++) {
		CLUSTER("run", "--", "echo", word);
		if (!R.st || !strstr(R.err, "no live nodes"))
			break;
		nd_test_sleep_ms(100);
	}
	EXPECT_STATUS(&R, 0);
	snprintf(want, sizeof(want), "%s\n", word);
	cr_assert_str_eq(R.out, want);
}

/* Waits up to ms for what in the masters' logs. */
static bool logged(const char *what, int ms)
{
	for (int k = 0; k < ms / 100 && !strstr(logs(), what); k++)
		nd_test_sleep_ms(100);
	return strstr(logs(), what) != NULL;
}

Test(raft_tls, a_cluster_on_mutual_tls_runs_tasks_and_fails_over)
{
	char wdir[128], st[256];
	const char *wargv[] = { nd_test_bin(), "worker", "--master", list,
				"--name", "w1", "--slots", "2", "--state-dir",
				wdir, "--tls-cert", path("worker-w1.crt"),
				"--tls-key", path("worker-w1.key"), "--tls-ca",
				path("ca/ca.crt"), NULL };
	int null_fd, lead, next;
	uint64_t pending;

	master_start(0, false, true, NULL);
	for (int i = 1; i < N; i++)
		master_start(i, true, true, NULL);
	lead = leader_index(N, 30000);
	cr_assert(lead >= 0, "no leader with 3 voters over TLS:\n%s", logs());
	snprintf(wdir, sizeof(wdir), "%s/worker", dir);
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	worker = nd_test_spawn(wargv, null_fd, null_fd, null_fd);
	close(null_fd);
	cr_assert(worker > 0);
	run_echo("over-tls");
	CLUSTER("submit", "--node", "absent", "--wait-for-node", "--", "true");
	EXPECT_STATUS(&R, 0);
	pending = strtoull(R.out, NULL, 10);
	cr_assert(pending > 0);

	/* the entries travelled on the TLS links: the new leader has them */
	kill(m[lead].pid, SIGKILL);
	nd_test_daemon_wait(&m[lead], 5000);
	next = leader_index(N - 1, 20000);
	cr_assert(next >= 0 && next != lead, "no new leader:\n%s", logs());
	cr_assert_str_eq(task_state(pending, st, sizeof(st)), "PENDING");
	/* the worker finds the new leader (it has its heartbeat timeout) */
	run_echo("after");
	cr_assert_null(strstr(logs(), "raft.auth_refused"), "%s", logs());
}

/*
 * A member far behind catches up by InstallSnapshot over the TLS links: a
 * snapshot every 32 entries, one member down while 200 tasks of 30,000
 * bytes each go in (a snapshot of about 6 MB, more than a link's 4 MiB
 * of queued writes: its pump stops and starts reading), then back: it has
 * the last task whole.
 */
Test(raft_tls, a_member_far_behind_catches_up_by_snapshot_over_tls)
{
	static char big[30001];
	static const char *const snap[] = { "--raft-snapshot-threshold", "32",
					    "--raft-snapshot-trailing", "8",
					    NULL };
	char follower[32], ids[32], want[64];
	int lead, f;
	uint64_t last = 0;

	extra = snap;
	memset(big, 'x', sizeof(big) - 1);
	memcpy(big, "marker-", 7);
	master_start(0, false, true, NULL);
	for (int i = 1; i < N; i++)
		master_start(i, true, true, NULL);
	lead = leader_index(N, 30000);
	cr_assert(lead >= 0, "no leader with 3 voters over TLS:\n%s", logs());
	f = (lead + 1) % N;
	kill(m[f].pid, SIGKILL);
	nd_test_daemon_wait(&m[f], 5000);
	for (int i = 0; i < 200; i++) {
		CLUSTER("submit", "--node", "absent", "--wait-for-node", "--",
			"echo", big);
		EXPECT_STATUS(&R, 0);
		last = strtoull(R.out, NULL, 10);
	}
	master_start(f, false, true, NULL);
	snprintf(follower, sizeof(follower), "127.0.0.1:%d", client_port[f]);
	snprintf(ids, sizeof(ids), "%" PRIu64, last);
	for (int i = 0;; i++) {
		nd_test_cli_run(&R, follower, ND_TEST_CLI_MS,
				(const char *const[]){ "task", ids, "--stale",
						       "--json", NULL });
		if (!R.st)
			break;
		cr_assert(i < 300, "the member never caught up to task %s: "
			  "%s\n%s", ids, R.err, logs());
		nd_test_sleep_ms(100);
	}
	snprintf(want, sizeof(want), "marker-xxxxxxxx");
	cr_assert(strstr(R.out, want) && R.out_bytes > sizeof(big),
		  "task %s is not whole on the member: %.300s", ids, R.out);
}

/* ---- raw Raft-link clients ---- */

/* Connects to master i's Raft port and sends libraft's greeting (protocol
 * 1, id 99, its address). */
static int raft_connect(int i)
{
	uint8_t hs[24 + 16] = { 1, 0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0,
				0, 16 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 8 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memcpy(hs + 24, "127.0.0.1:9\0\0\0\0\0", 16);
	cr_assert(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)raft_port[i]);
	cr_assert(!connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	cr_assert(send(fd, hs, sizeof(hs), MSG_NOSIGNAL) == sizeof(hs));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* A TLS client on fd as the certificate crt/key (trusting our CA);
 * *done: the handshake completed on our side. */
static SSL *raft_tls(int fd, const char *crt, const char *key, bool *done)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;

	cr_assert(ctx);
	cr_assert_eq(SSL_CTX_use_certificate_file(ctx, crt,
						  SSL_FILETYPE_PEM), 1);
	cr_assert_eq(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM),
		     1);
	cr_assert_eq(SSL_CTX_load_verify_locations(ctx, path("ca/ca.crt"),
						   NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	cr_assert(ssl);
	SSL_set_fd(ssl, fd);
	*done = SSL_connect(ssl) == 1;
	ERR_clear_error();
	return ssl;
}

/* Does the master close the link (EOF, reset or an alert) within the
 * socket's timeout? */
static bool closed_by_master(SSL *ssl)
{
	char b[64];
	int r = SSL_read(ssl, b, sizeof(b));
	int e = r <= 0 ? SSL_get_error(ssl, r) : SSL_ERROR_NONE;
	/* a blocking read that timed out asks to be retried */
	bool timed_out = e == SSL_ERROR_WANT_READ ||
			 (e == SSL_ERROR_SYSCALL &&
			  (errno == EAGAIN || errno == EWOULDBLOCK));

	ERR_clear_error();
	return r <= 0 && !timed_out;
}

Test(raft_tls, a_raft_link_needs_a_masters_certificate)
{
	struct timeval tv = { .tv_sec = 1 };
	int fd[4];
	SSL *ssl[3];
	bool done[3];
	char b[16];

	master_start(0, false, true, NULL);
	cr_assert(leader_index(1, 20000) >= 0, "%s", logs());

	/* a worker's certificate of our CA: the TLS is fine, the role not */
	fd[0] = raft_connect(0);
	ssl[0] = raft_tls(fd[0], path("worker-w1.crt"), path("worker-w1.key"),
			  &done[0]);
	cr_assert(closed_by_master(ssl[0]), "a worker's link stayed open");
	/* a master's certificate of another CA */
	fd[1] = raft_connect(0);
	ssl[1] = raft_tls(fd[1], path("o/master-mallory.crt"),
			  path("o/master-mallory.key"), &done[1]);
	cr_assert(!done[1] || closed_by_master(ssl[1]),
		  "another CA's master link stayed open");
	/* no TLS: the token proof's bytes, in clear */
	fd[2] = raft_connect(0);
	memset(b, 0x5a, sizeof(b));
	cr_assert(send(fd[2], b, sizeof(b), MSG_NOSIGNAL) == sizeof(b));
	ND_CHECK(nd_test_expect_closed(fd[2], 8000));
	/* a master's certificate of our CA: kept (libraft has it, and waits
	 * for messages) */
	fd[3] = raft_connect(0);
	ssl[2] = raft_tls(fd[3], path("master-m1.crt"), path("master-m1.key"),
			  &done[2]);
	cr_assert(done[2], "a master's certificate was refused:\n%s", logs());
	setsockopt(fd[3], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert(!closed_by_master(ssl[2]), "a master's link was closed:\n%s",
		  logs());

	cr_assert(logged("a worker's, not a master's", 5000), "%s", logs());
	cr_assert(strstr(logs(), "raft.auth_refused"), "%s", logs());
	for (int k = 0; k < 3; k++)
		SSL_free(ssl[k]);
	for (int k = 0; k < 4; k++)
		close(fd[k]);
	/* and the master serves on */
	CLUSTER("submit", "--node", "absent", "--wait-for-node", "--", "true");
	EXPECT_STATUS(&R, 0);
}

/* A master on the token alone, reached by a TLS Raft link: it says so. */
Test(raft_tls, a_token_master_names_a_tls_peer)
{
	char token[128];
	int fd = -1;
	bool done;
	SSL *ssl;

	snprintf(token, sizeof(token), "%s/token", dir);
	fd = open(token, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	cr_assert(fd >= 0);
	cr_assert(write(fd, "raft-tls-test-token-0123456789\n", 31) == 31);
	close(fd);
	unsetenv("NODED_TLS_CERT");
	unsetenv("NODED_TLS_KEY");
	unsetenv("NODED_TLS_CA");
	setenv("NODED_TOKEN_FILE", token, 1);
	master_start(0, false, false, token);
	cr_assert(leader_index(1, 20000) >= 0, "%s", logs());
	fd = raft_connect(0);
	ssl = raft_tls(fd, path("master-m1.crt"), path("master-m1.key"),
		       &done);
	cr_assert(!done, "a TLS handshake with a token-only master");
	cr_assert(logged("it speaks TLS on its Raft link", 5000), "%s",
		  logs());
	SSL_free(ssl);
	close(fd);
	unsetenv("NODED_TOKEN_FILE");
}

/* Off loopback, the Raft links must be authenticated: mutual TLS is
 * enough, nothing is not. */
Test(raft_tls, off_loopback_raft_needs_mutual_tls_or_the_token)
{
	char data[128];

	snprintf(data, sizeof(data), "%s/d", dir);
	cr_assert_eq(NODED("master", "--listen", "127.0.0.1:0", "--data-dir",
			   data, "--raft-listen", "192.0.2.1:7000"), 2);
	cr_assert(strstr(err, "must then be authenticated"), "%s", err);
	cr_assert(strstr(err, "--tls-ca"), "%s", err);
	/* with mutual TLS it gets past that rule (and then cannot bind an
	 * address this machine does not have) */
	NODED("master", "--listen", "127.0.0.1:0", "--data-dir", data,
	      "--raft-listen", "192.0.2.1:7000", "--tls-cert",
	      path("master-m0.crt"), "--tls-key", path("master-m0.key"),
	      "--tls-ca", path("ca/ca.crt"));
	cr_assert_null(strstr(err, "must then be authenticated"), "%s", err);
}
