/*
 * TLS 1.3 and mutual TLS on every link (src/tls, core/conn.c), against real
 * daemons, with certificates made by `noded tls` in a temporary directory:
 * tasks end to end with master, worker and CLI on mutual TLS; each bad
 * input (wrong CA, expired, wrong role, no certificate, truncated or
 * one-byte-at-a-time handshakes, a thousand unfinished ones, garbage after
 * the handshake, a TLS 1.2 client, the wrong transport) gets a clear error,
 * its connection closed, and every other connection served; SIGHUP re-reads
 * the files without dropping connections; a client library reconnecting
 * resumes its session (the role and name kept), until a reload.
 *
 * The raw TLS clients here are OpenSSL's, written for the test: they do
 * not go through the client library under test.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "harness.h"
#include "noded/client.h"
#include "noded/wire.h"

static struct nd_test_daemon d;
static pid_t worker;
static char dir[64];
static char addr[64];
static char out[65536], err[65536];

/* dir/NAME */
static const char *path(const char *name)
{
	return nd_test_path(dir, name);
}

/* Runs noded with args (NULL-terminated); its status. */
#define NODED(...)                                                           \
	nd_test_run((const char *const[]){ nd_test_bin(), __VA_ARGS__, NULL }, \
		    out, sizeof(out), err, sizeof(err), 20000)

static void make_certs(void)
{
	char ca[128], other[128];

	snprintf(ca, sizeof(ca), "%s/ca", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	cr_assert_eq(NODED("tls", "ca", "create", "--dir", ca, "--cluster",
			   "t1"), 0, "%s", err);
	cr_assert_eq(NODED("tls", "cert", "create", "--master", "m1",
			   "--ca-dir", ca, "--out-dir", dir), 0, "%s", err);
	cr_assert_eq(NODED("tls", "cert", "create", "--worker", "w1",
			   "--ca-dir", ca, "--out-dir", dir), 0, "%s", err);
	cr_assert_eq(NODED("tls", "cert", "create", "--client", "alice",
			   "--ca-dir", ca, "--out-dir", dir), 0, "%s", err);
	cr_assert_eq(NODED("tls", "cert", "create", "--client", "old",
			   "--days", "0", "--ca-dir", ca, "--out-dir", dir), 0,
		     "%s", err);
	cr_assert_eq(NODED("tls", "ca", "create", "--dir", other, "--cluster",
			   "t1"), 0, "%s", err);
	cr_assert_eq(NODED("tls", "cert", "create", "--client", "mallory",
			   "--ca-dir", other, "--out-dir", dir), 0, "%s", err);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/noded-tls-XXXXXX");
	cr_assert(mkdtemp(dir));
	make_certs();
}

static void teardown(void)
{
	char cmd[128];

	if (worker > 0)
		nd_test_kill_pid(worker);
	worker = 0;
	nd_test_daemon_stop(&d);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		cr_log_warn("could not remove %s", dir);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 120);

/* A master on mutual TLS with its certificate m1; extra args after. */
#define MASTER_TLS(...)                                                      \
	do {                                                                 \
		ND_CHECK(nd_test_daemon_start(&d, (const char *const[]){     \
			"--tls-cert", path("master-m1.crt"), "--tls-key",    \
			path("master-m1.key"), "--tls-ca", path("ca/ca.crt"), \
			##__VA_ARGS__, NULL }));                             \
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", d.port);        \
	} while (0)

/* The client certificate options for noded commands. */
#define AS(who) "--tls-cert", path(who ".crt"), "--tls-key", path(who ".key"), \
		"--tls-ca", path("ca/ca.crt")

/* ---- a raw TLS client (OpenSSL, blocking socket) ---- */

static SSL_CTX *client_ctx(const char *who, int max_version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char crt[160], key[160];

	cr_assert(ctx);
	SSL_CTX_set_max_proto_version(ctx, max_version);
	if (who) {
		snprintf(crt, sizeof(crt), "%s/%s.crt", dir, who);
		snprintf(key, sizeof(key), "%s/%s.key", dir, who);
		cr_assert_eq(SSL_CTX_use_certificate_file(ctx, crt,
							  SSL_FILETYPE_PEM), 1);
		cr_assert_eq(SSL_CTX_use_PrivateKey_file(ctx, key,
							 SSL_FILETYPE_PEM), 1);
	}
	cr_assert_eq(SSL_CTX_load_verify_locations(ctx, path("ca/ca.crt"),
						   NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

/* Connects and completes a handshake as who; NULL when it failed. */
static SSL *tls_open(const char *who, int max_version, int *fdp)
{
	SSL_CTX *ctx = client_ctx(who, max_version);
	SSL *ssl = SSL_new(ctx);
	int fd = CONNECT(&d);

	SSL_CTX_free(ctx);
	SSL_set_fd(ssl, fd);
	*fdp = fd;
	if (SSL_connect(ssl) != 1) {
		ERR_clear_error();
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

static int tls_send_frame(SSL *ssl, const Noded__Frame *f)
{
	uint8_t buf[4096];
	size_t n = nd_frame_size(f);

	cr_assert(n <= sizeof(buf));
	nd_frame_encode(f, buf);
	return SSL_write(ssl, buf, (int)n) == (int)n ? 0 : -EIO;
}

/* Reads whole n bytes: 0, or -EIO (error or EOF). */
static int tls_read_all(SSL *ssl, uint8_t *p, size_t n)
{
	while (n) {
		int r = SSL_read(ssl, p, (int)n);

		if (r <= 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static Noded__Frame *tls_recv_frame(SSL *ssl)
{
	uint8_t hdr[4], *body;
	uint32_t len;
	Noded__Frame *f;

	if (tls_read_all(ssl, hdr, 4))
		return NULL;
	len = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
	body = malloc(len ? len : 1);
	if (!body || tls_read_all(ssl, body, len)) {
		free(body);
		return NULL;
	}
	f = nd_frame_decode(body, len, NULL);
	free(body);
	return f;
}

/* Hello then a Ping over ssl: 0 when both are answered. */
static int tls_hello_ping(SSL *ssl)
{
	Noded__Frame f, *r;
	Noded__HelloRequest h;
	Noded__PingRequest p;
	int ok;

	nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
	if (tls_send_frame(ssl, &f) || !(r = tls_recv_frame(ssl)))
		return -EIO;
	ok = r->body_case == NODED__FRAME__BODY_HELLO_REPLY;
	nd_frame_free(r, NULL);
	if (!ok)
		return -EPROTO;
	nd_test_frame_ping(&f, &p, 2, "x", 1);
	if (tls_send_frame(ssl, &f) || !(r = tls_recv_frame(ssl)))
		return -EIO;
	ok = r->body_case == NODED__FRAME__BODY_PONG && r->id == 2;
	nd_frame_free(r, NULL);
	return ok ? 0 : -EPROTO;
}

/* Another client, with a good certificate, is served. */
static void good_client_served(void)
{
	int fd;
	SSL *ssl = tls_open("client-alice", TLS1_3_VERSION, &fd);

	cr_assert(ssl, "a good client's handshake failed");
	cr_assert_eq(tls_hello_ping(ssl), 0, "a good client was not served");
	SSL_free(ssl);
	close(fd);
	cr_assert_eq(NODED("nodes", "--master", addr, AS("client-alice")), 0,
		     "noded nodes with a good certificate: %s", err);
}

/* The ClientHello bytes a TLS 1.3 client sends first (made with a
 * memory BIO). */
static size_t client_hello(uint8_t *buf, size_t size)
{
	SSL_CTX *ctx = client_ctx("client-alice", TLS1_3_VERSION);
	SSL *ssl = SSL_new(ctx);
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	int n;

	SSL_set_bio(ssl, rb, wb);
	SSL_connect(ssl);
	n = BIO_read(wb, buf, (int)size);
	cr_assert(n > 100, "no ClientHello made");
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return (size_t)n;
}

/* ---- tests ---- */

Test(tls, tasks_end_to_end_on_mutual_tls)
{
	const char *wargv[] = {
		nd_test_bin(), "worker", "--master", addr, "--name", "w1",
		AS("worker-w1"), "--state-dir", path("wstate"), NULL,
	};
	int64_t until;

	MASTER_TLS();
	worker = nd_test_spawn(wargv, -1, -1, -1);
	cr_assert(worker > 0, "%s", nd_test_why);
	until = nd_test_now_ms() + 15000;
	do {
		nd_test_sleep_ms(100);
		NODED("nodes", "--master", addr, AS("client-alice"));
	} while (!strstr(out, "w1") && nd_test_now_ms() < until);
	cr_assert(strstr(out, "ALIVE"), "the worker did not register over "
		  "TLS: %s %s", out, err);
	cr_assert_eq(NODED("run", "--master", addr, AS("client-alice"), "--",
			   "echo", "over-tls"), 0, "run: %s", err);
	cr_assert(strstr(out, "over-tls"), "output: %s", out);
	/* a worker certificate cannot submit */
	cr_assert_eq(NODED("run", "--master", addr, AS("worker-w1"), "--",
			   "true"), 1);
	cr_assert(strstr(err, "permission denied"), "stderr: %s", err);
}

Test(tls, wrong_ca_is_refused)
{
	MASTER_TLS();
	cr_assert_eq(NODED("nodes", "--master", addr, "--tls-cert",
			   path("client-mallory.crt"), "--tls-key",
			   path("client-mallory.key"), "--tls-ca",
			   path("ca/ca.crt")), 1);
	cr_assert(strstr(err, "TLS with the master") &&
		  strstr(err, "unknown ca"), "stderr: %s", err);
	good_client_served();
}

Test(tls, expired_certificate_is_refused)
{
	MASTER_TLS();
	cr_assert_eq(NODED("nodes", "--master", addr, AS("client-old")), 1);
	cr_assert(strstr(err, "expired"), "stderr: %s", err);
	good_client_served();
}

Test(tls, no_client_certificate_is_refused)
{
	MASTER_TLS();
	cr_assert_eq(NODED("nodes", "--master", addr, "--tls-ca",
			   path("ca/ca.crt")), 1);
	cr_assert(strstr(err, "certificate required") &&
		  strstr(err, "--tls-cert"), "stderr: %s", err);
	good_client_served();
}

Test(tls, wrong_role_is_refused)
{
	struct nd_test_daemon fake = { 0 };
	char fake_addr[64];

	MASTER_TLS();
	/* a worker's certificate as a client */
	cr_assert_eq(NODED("tasks", "--master", addr, AS("worker-w1")), 1);
	cr_assert(strstr(err, "permission denied"), "stderr: %s", err);
	/* a client's certificate cannot register as a worker */
	{
		const char *wargv[] = {
			nd_test_bin(), "worker", "--master", addr, "--name",
			"alice", AS("client-alice"), "--state-dir", path("ws"),
			NULL,
		};

		worker = nd_test_spawn(wargv, -1, -1, -1);
		cr_assert(worker > 0, "%s", nd_test_why);
		nd_test_sleep_ms(2000);
	}
	nd_test_kill_pid(worker);
	/* a worker's certificate registers only under its own name */
	{
		const char *wargv[] = {
			nd_test_bin(), "worker", "--master", addr, "--name",
			"w2", AS("worker-w1"), "--state-dir", path("ws2"),
			NULL,
		};

		worker = nd_test_spawn(wargv, -1, -1, -1);
		cr_assert(worker > 0, "%s", nd_test_why);
		nd_test_sleep_ms(2000);
	}
	cr_assert_eq(NODED("nodes", "--master", addr, AS("client-alice")), 0);
	cr_assert(!strstr(out, "alice") && !strstr(out, "w2"),
		  "a node registered against its certificate: %s", out);
	/* a worker's certificate cannot act as a master */
	ND_CHECK(nd_test_daemon_start(&fake, (const char *const[]){
		"--tls-cert", path("worker-w1.crt"), "--tls-key",
		path("worker-w1.key"), "--tls-ca", path("ca/ca.crt"), NULL }));
	snprintf(fake_addr, sizeof(fake_addr), "127.0.0.1:%d", fake.port);
	cr_assert_eq(NODED("nodes", "--master", fake_addr,
			   AS("client-alice")), 1);
	nd_test_daemon_stop(&fake);
	cr_assert(strstr(err, "a worker's, not a master's"), "stderr: %s",
		  err);
	good_client_served();
}

Test(tls, truncated_handshake_is_closed)
{
	uint8_t hello[4096];
	size_t n = client_hello(hello, sizeof(hello));
	int fd, fd2;

	MASTER_TLS("--handshake-timeout", "1");
	/* half a ClientHello, then EOF */
	fd = CONNECT(&d);
	ND_CHECK(nd_test_send_raw(fd, hello, n / 2));
	shutdown(fd, SHUT_WR);
	ND_CHECK(nd_test_expect_closed(fd, ND_TEST_TIMEOUT_MS));
	close(fd);
	/* half a ClientHello, then silence: closed by the deadline */
	fd2 = CONNECT(&d);
	ND_CHECK(nd_test_send_raw(fd2, hello, n / 2));
	ND_CHECK(nd_test_expect_closed(fd2, 4000));
	close(fd2);
	good_client_served();
}

/* A full TLS session whose every byte goes in a send of its own. */
Test(tls, handshake_one_byte_at_a_time)
{
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *rb, *wb;
	uint8_t buf[16384], fb[256];
	Noded__Frame f, *r = NULL;
	Noded__HelloRequest h;
	size_t fl, got = 0;
	int fd, n, done = 0;
	int64_t until;

	MASTER_TLS();
	ctx = client_ctx("client-alice", TLS1_3_VERSION);
	ssl = SSL_new(ctx);
	rb = BIO_new(BIO_s_mem());
	wb = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl, rb, wb);
	fd = CONNECT(&d);
	nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
	fl = nd_frame_size(&f);
	nd_frame_encode(&f, fb);
	until = nd_test_now_ms() + 20000;
	while (!r && nd_test_now_ms() < until) {
		if (!done && SSL_connect(ssl) == 1) {
			done = 1;
			cr_assert_eq(SSL_write(ssl, fb, (int)fl), (int)fl);
		}
		while ((n = BIO_read(wb, buf, sizeof(buf))) > 0)
			for (int i = 0; i < n; i++) {
				ND_CHECK(nd_test_send_raw(fd, buf + i, 1));
				usleep(200);
			}
		n = (int)recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			BIO_write(rb, buf, n);
		else if (n == 0)
			cr_assert_fail("closed by the server");
		else
			usleep(2000);
		if (done) {
			n = SSL_read(ssl, buf + got, (int)(sizeof(buf) - got));
			if (n > 0)
				got += (size_t)n;
			if (got >= 4) {
				uint32_t len = (uint32_t)buf[0] << 24 |
					       buf[1] << 16 | buf[2] << 8 |
					       buf[3];

				if (got >= 4 + len)
					r = nd_frame_decode(buf + 4, len, NULL);
			}
		}
	}
	cr_assert(r && r->body_case == NODED__FRAME__BODY_HELLO_REPLY,
		  "no HelloReply over a byte-at-a-time TLS session");
	nd_frame_free(r, NULL);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	good_client_served();
}

/* Is libasan in pid (its quarantine keeps freed memory resident)? */
static bool asan_in(pid_t pid)
{
	char p[64], line[512];
	FILE *f;
	bool yes = false;

	snprintf(p, sizeof(p), "/proc/%d/maps", (int)pid);
	f = fopen(p, "r");
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "libasan"))
			yes = true;
	if (f)
		fclose(f);
	return yes;
}

#define MANY 1000

Test(tls, thousand_unfinished_handshakes)
{
	static int fds[MANY];
	uint8_t hello[4096];
	size_t n = client_hello(hello, sizeof(hello));
	long base, peak, after;

	ND_CHECK(nd_test_raise_nofile(MANY + 256));
	MASTER_TLS("--handshake-timeout", "60", "--idle-timeout", "0");
	for (int i = 0; i < 20; i++)
		good_client_served();
	nd_test_sleep_ms(1500);
	base = nd_test_rss_kib(d.pid);
	for (int i = 0; i < MANY; i++) {
		fds[i] = nd_test_connect(d.port);
		cr_assert(fds[i] >= 0, "connect %d: %s", i,
			  nd_strerror(fds[i]));
		/* most of a ClientHello: the server holds its handshake */
		ND_CHECK(nd_test_send_raw(fds[i], hello, n - 10));
	}
	nd_test_sleep_ms(500);
	good_client_served();
	peak = nd_test_rss_kib(d.pid);
	for (int i = 0; i < MANY; i += 97)
		cr_assert(!nd_test_peer_closed(fds[i]),
			  "an unfinished handshake was closed early");
	for (int i = 0; i < MANY; i++)
		close(fds[i]);
	good_client_served();
	if (asan_in(d.pid))
		return;
	after = nd_test_rss_wait_below(d.pid, base + ND_TEST_RSS_SLACK_KIB,
				       10000);
	cr_log_info("RSS KiB: base %ld, %d unfinished handshakes %ld, after "
		    "%ld", base, MANY, peak, after);
	cr_assert(after >= 0 && after <= base + ND_TEST_RSS_SLACK_KIB,
		  "RSS did not come back: base %ld KiB, peak %ld, after %ld",
		  base, peak, after);
}

Test(tls, garbage_after_the_handshake_is_closed)
{
	/* an application-data record of 25 bytes that are no ciphertext */
	static const char junk[] = "\x17\x03\x03\x00\x19garbage garbage garbage !";
	int fd;
	SSL *ssl = NULL;

	MASTER_TLS();
	ssl = tls_open("client-alice", TLS1_3_VERSION, &fd);
	cr_assert(ssl);
	cr_assert_eq(tls_hello_ping(ssl), 0);
	/* a record that does not decrypt, straight on the socket */
	ND_CHECK(nd_test_send_raw(fd, junk, sizeof(junk) - 1));
	ND_CHECK(nd_test_drain_until_closed(fd, 4000, ND_TEST_TIMEOUT_MS,
					    NULL));
	SSL_free(ssl);
	close(fd);
	/* and bytes that are not TLS at all */
	ssl = tls_open("client-alice", TLS1_3_VERSION, &fd);
	cr_assert(ssl);
	ND_CHECK(nd_test_send_raw(fd, "GET / HTTP/1.1\r\n\r\n", 18));
	ND_CHECK(nd_test_drain_until_closed(fd, 4000, ND_TEST_TIMEOUT_MS,
					    NULL));
	SSL_free(ssl);
	close(fd);
	good_client_served();
}

/* TLS 1.3 has no renegotiation; a client that would do TLS 1.2 (where it
 * lives) is refused with a protocol_version alert. */
Test(tls, tls12_client_is_refused)
{
	int fd;
	SSL *ssl;

	MASTER_TLS();
	ssl = tls_open("client-alice", TLS1_2_VERSION, &fd);
	cr_assert_null(ssl, "a TLS 1.2 handshake succeeded");
	close(fd);
	cr_assert_eq(NODED("nodes", "--master", addr, AS("client-alice")), 0);
	good_client_served();
}

Test(tls, plaintext_client_on_tls_port_is_told)
{
	int fd;
	Noded__Frame f, *r;
	Noded__HelloRequest h;

	MASTER_TLS();
	fd = CONNECT(&d);
	nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
	ND_CHECK(nd_test_send_frame(fd, &f));
	r = RECV(fd);
	cr_assert(r->body_case == NODED__FRAME__BODY_ERROR &&
		  strstr(r->error->message, "speaks TLS"), "got %s",
		  nd_test_describe(r));
	nd_frame_free(r, NULL);
	ND_CHECK(nd_test_expect_closed(fd, ND_TEST_TIMEOUT_MS));
	close(fd);
	cr_assert_eq(NODED("nodes", "--master", addr), 1);
	cr_assert(strstr(err, "speaks TLS"), "stderr: %s", err);
	good_client_served();
}

Test(tls, tls_client_on_plaintext_port_is_told)
{
	ND_CHECK(nd_test_daemon_start(&d, NULL));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", d.port);
	cr_assert_eq(NODED("nodes", "--master", addr, AS("client-alice")), 1);
	cr_assert(strstr(err, "answered in plaintext"), "stderr: %s", err);
	ND_CHECK(nd_test_fresh_ping(d.port));
}

static void served_digest(SSL *ssl, unsigned char *md)
{
	unsigned n;

	X509_digest(SSL_get0_peer_certificate(ssl), EVP_sha256(), md, &n);
}

Test(tls, sighup_rereads_the_files_and_keeps_connections)
{
	unsigned char before[EVP_MAX_MD_SIZE], now[EVP_MAX_MD_SIZE];
	int fd, fd2;
	SSL *old, *fresh;

	MASTER_TLS();
	old = tls_open("client-alice", TLS1_3_VERSION, &fd);
	cr_assert(old);
	cr_assert_eq(tls_hello_ping(old), 0);
	served_digest(old, before);
	unlink(path("master-m1.crt"));
	unlink(path("master-m1.key"));
	cr_assert_eq(NODED("tls", "cert", "create", "--master", "m1",
			   "--ca-dir", path("ca"), "--out-dir", dir), 0);
	cr_assert_eq(kill(d.pid, SIGHUP), 0);
	nd_test_sleep_ms(500);
	fresh = tls_open("client-alice", TLS1_3_VERSION, &fd2);
	cr_assert(fresh, "no handshake after SIGHUP");
	served_digest(fresh, now);
	cr_assert(memcmp(before, now, 32), "the old certificate is still "
		  "served after SIGHUP");
	cr_assert_eq(tls_hello_ping(fresh), 0);
	/* the connection from before is still up */
	{
		Noded__Frame f, *r;
		Noded__PingRequest p;

		nd_test_frame_ping(&f, &p, 3, "y", 1);
		cr_assert_eq(tls_send_frame(old, &f), 0);
		r = tls_recv_frame(old);
		cr_assert(r && r->body_case == NODED__FRAME__BODY_PONG,
			  "the connection from before SIGHUP was dropped");
		nd_frame_free(r, NULL);
	}
	SSL_free(old);
	SSL_free(fresh);
	close(fd);
	close(fd2);
	cr_assert(nd_test_pid_alive(d.pid));
}

Test(tls, https_api_with_client_certificates)
{
	char req[256];
	uint8_t buf[4096];
	int fd, n, port;
	SSL *ssl;

	ND_CHECK(nd_test_daemon_start(&d, (const char *const[]){
		"--tls-cert", path("master-m1.crt"), "--tls-key",
		path("master-m1.key"), "--tls-ca", path("ca/ca.crt"), "--http",
		"127.0.0.1:0", NULL }));
	port = nd_test_daemon_http_port(&d);
	cr_assert(port, "%s", nd_test_why);
	/* the client's certificate: GET works */
	{
		int saved = d.port;

		d.port = port;
		ssl = tls_open("client-alice", TLS1_3_VERSION, &fd);
		d.port = saved;
	}
	cr_assert(ssl);
	snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
	SSL_write(ssl, req, (int)strlen(req));
	n = SSL_read(ssl, buf, sizeof(buf) - 1);
	cr_assert(n > 0);
	buf[n] = '\0';
	cr_assert(strstr((char *)buf, "200 OK"), "%s", buf);
	SSL_free(ssl);
	close(fd);
	/* a worker's certificate may not submit */
	{
		int saved = d.port;

		d.port = port;
		ssl = tls_open("worker-w1", TLS1_3_VERSION, &fd);
		d.port = saved;
	}
	cr_assert(ssl);
	snprintf(req, sizeof(req), "POST /v1/tasks HTTP/1.1\r\nHost: x\r\n"
		 "Content-Length: 2\r\n\r\n{}");
	SSL_write(ssl, req, (int)strlen(req));
	n = SSL_read(ssl, buf, sizeof(buf) - 1);
	cr_assert(n > 0);
	buf[n] = '\0';
	cr_assert(strstr((char *)buf, "403"), "%s", buf);
	SSL_free(ssl);
	close(fd);
}

Test(tls, off_loopback_with_mutual_tls_needs_no_token)
{
	const char *argv[] = {
		nd_test_bin(), "master", "--listen", "0.0.0.0:0", "--tls-cert",
		path("master-m1.crt"), "--tls-key", path("master-m1.key"),
		"--tls-ca", path("ca/ca.crt"), NULL,
	};
	char line[256] = "";
	int pfd[2], port = 0;
	pid_t pid;
	FILE *f;

	cr_assert_eq(pipe(pfd), 0);
	pid = nd_test_spawn(argv, -1, pfd[1], -1);
	close(pfd[1]);
	cr_assert(pid > 0, "%s", nd_test_why);
	f = fdopen(pfd[0], "r");
	cr_assert(f && fgets(line, sizeof(line), f), "no first line");
	cr_assert_eq(sscanf(line, "listening on 0.0.0.0:%d", &port), 1,
		     "%s", line);
	d.port = port;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	good_client_served();
	d.port = 0;
	nd_test_kill_pid(pid);
	fclose(f);
	/* TLS without --tls-ca authenticates nobody: still refused */
	cr_assert_neq(NODED("master", "--listen", "0.0.0.0:0", "--tls-cert",
			    path("master-m1.crt"), "--tls-key",
			    path("master-m1.key")), 0);
	cr_assert(strstr(err, "refusing to listen off loopback"), "%s", err);
}

Test(tls, files_from_the_environment_and_config)
{
	char conf[160];
	FILE *f;

	MASTER_TLS();
	setenv("NODED_TLS_CERT", path("client-alice.crt"), 1);
	setenv("NODED_TLS_KEY", path("client-alice.key"), 1);
	setenv("NODED_TLS_CA", path("ca/ca.crt"), 1);
	cr_assert_eq(NODED("nodes", "--master", addr), 0, "%s", err);
	unsetenv("NODED_TLS_CERT");
	unsetenv("NODED_TLS_KEY");
	unsetenv("NODED_TLS_CA");
	cr_assert_eq(NODED("nodes", "--master", addr), 1);
	snprintf(conf, sizeof(conf), "%s/noded.conf", dir);
	f = fopen(conf, "w");
	cr_assert(f);
	fprintf(f, "[common]\ntls-cert = %s\ntls-key = %s\ntls-ca = %s\n",
		path("client-alice.crt"), path("client-alice.key"),
		path("ca/ca.crt"));
	fclose(f);
	cr_assert_eq(NODED("tasks", "--master", addr, "--config", conf), 0,
		     "%s", err);
}

/* A connection the master ends (here: idle) ends with close_notify, so the
 * client tells it from a cut connection. */
Test(tls, server_close_sends_close_notify)
{
	Noded__Frame *r;
	uint8_t b;
	int fd, n;
	SSL *ssl;

	MASTER_TLS("--idle-timeout", "1");
	ssl = tls_open("client-alice", TLS1_3_VERSION, &fd);
	cr_assert(ssl);
	cr_assert_eq(tls_hello_ping(ssl), 0);
	r = tls_recv_frame(ssl);   /* the idle timeout's Error */
	cr_assert(r && r->body_case == NODED__FRAME__BODY_ERROR,
		  "no Error before the close");
	nd_frame_free(r, NULL);
	n = SSL_read(ssl, &b, 1);
	cr_assert(n <= 0 && SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN,
		  "the connection ended without close_notify (%d)",
		  SSL_get_error(ssl, n));
	SSL_free(ssl);
	close(fd);
	good_client_served();
}

/* The records ssl would send for frames f[0..n), into buf (not sent):
 * its write side goes through a memory BIO meanwhile. Their length. */
static size_t records_of(SSL *ssl, int fd, const Noded__Frame *const *f,
			 size_t n, uint8_t *buf, size_t size)
{
	BIO *mb = BIO_new(BIO_s_mem());
	int len;

	cr_assert(mb);
	SSL_set0_wbio(ssl, mb);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(tls_send_frame(ssl, f[i]), 0);
	len = BIO_read(mb, buf, (int)size);
	cr_assert(len > 0 && (size_t)len < size);
	SSL_set0_wbio(ssl, BIO_new_socket(fd, BIO_NOCLOSE));
	return (size_t)len;
}

/*
 * The master gives an idle connection's OpenSSL record buffers back after
 * half a second (tls/conn_tls.c) and keeps them while it is busy: a
 * record half received when that time passes is kept whole and served
 * when the rest comes, and a connection whose buffers went is served as
 * before, here two records in one segment (read ahead together).
 */
Test(tls, idle_connection_gives_buffers_back_and_is_served)
{
	Noded__Frame f1, f2, *r;
	const Noded__Frame *both[2] = { &f1, &f2 };
	Noded__PingRequest p1, p2;
	uint8_t rec[4096];
	size_t n;
	int fd;
	SSL *ssl;

	MASTER_TLS();
	ssl = tls_open("client-alice", TLS1_3_VERSION, &fd);
	cr_assert(ssl);
	cr_assert_eq(tls_hello_ping(ssl), 0);

	/* a record cut in two across the idle sweep */
	nd_test_frame_ping(&f1, &p1, 10, "half", 4);
	n = records_of(ssl, fd, both, 1, rec, sizeof(rec));
	ND_CHECK(nd_test_send_raw(fd, rec, 8));
	usleep(1700 * 1000);
	ND_CHECK(nd_test_send_raw(fd, rec + 8, n - 8));
	r = tls_recv_frame(ssl);
	cr_assert(r && r->body_case == NODED__FRAME__BODY_PONG && r->id == 10,
		  "a record split across the idle sweep was not served");
	nd_frame_free(r, NULL);

	/* idle (the buffers go), then two records in one segment */
	usleep(1700 * 1000);
	nd_test_frame_ping(&f1, &p1, 11, "one", 3);
	nd_test_frame_ping(&f2, &p2, 12, "two", 3);
	n = records_of(ssl, fd, both, 2, rec, sizeof(rec));
	ND_CHECK(nd_test_send_raw(fd, rec, n));
	for (uint64_t id = 11; id <= 12; id++) {
		r = tls_recv_frame(ssl);
		cr_assert(r && r->body_case == NODED__FRAME__BODY_PONG &&
			  r->id == id, "ping %llu after the idle sweep was not "
			  "served", (unsigned long long)id);
		nd_frame_free(r, NULL);
	}
	SSL_free(ssl);
	close(fd);
	good_client_served();
}

/* The TLS options of the client library as who (dir/who.crt, .key). */
static struct nd_client_opts lib_opts(const char *who)
{
	static char crt[160], key[160];

	snprintf(crt, sizeof(crt), "%s/%s.crt", dir, who);
	snprintf(key, sizeof(key), "%s/%s.key", dir, who);
	return (struct nd_client_opts){ .tls_cert = crt, .tls_key = key,
					.tls_ca = path("ca/ca.crt") };
}

/* A list of tasks on c: its status (ND_EREMOTE: *code says why). */
static int list_tasks(struct nd_client *c, int *code)
{
	Noded__TaskListRequest l = NODED__TASK_LIST_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *r = NULL;
	int st;

	f.body_case = NODED__FRAME__BODY_LIST_TASKS;
	f.list_tasks = &l;
	st = nd_client_call(c, &f, &r, ND_TEST_TIMEOUT_MS);
	*code = st == ND_EREMOTE && r &&
		r->body_case == NODED__FRAME__BODY_ERROR ? (int)r->error->code
							 : 0;
	nd_frame_free(r, NULL);
	return st;
}

/*
 * The client library keeps the ticket the master gives after a handshake
 * and offers it when it connects there again: the handshake is resumed
 * (SSL_session_reused), each time with the ticket the last connection
 * got, and the peer keeps its certificate's role and name (a worker's
 * may still not list tasks); another client can take it over; after a
 * SIGHUP (new ticket key) the next handshake is a full one, and served.
 */
Test(tls, reconnect_resumes_the_session)
{
	struct nd_client_opts o = lib_opts("client-alice");
	struct nd_client *c, *c2, *w;
	int code;
	bool resumed = true;
	int64_t until;

	MASTER_TLS();
	cr_assert_eq(nd_client_connect(&c, addr, &o), 0, "%s",
		     nd_client_last_error());
	cr_assert_not(nd_client_tls_resumed(c), "a first connection resumed");
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(nd_client_reconnect(c, NULL, 0), 0, "%s",
			     nd_client_last_error());
		cr_assert(nd_client_tls_resumed(c), "reconnect %d did not "
			  "resume the TLS session", i + 1);
		cr_assert_eq(nd_client_ping(c, ND_TEST_TIMEOUT_MS), 0);
		cr_assert_eq(list_tasks(c, &code), 0, "a resumed client "
			     "may not list tasks (%d)", code);
	}
	o = (struct nd_client_opts){ .tls_from = c };
	cr_assert_eq(nd_client_connect(&c2, addr, &o), 0, "%s",
		     nd_client_last_error());
	cr_assert(nd_client_tls_resumed(c2), "tls_from did not resume");
	cr_assert_eq(nd_client_ping(c2, ND_TEST_TIMEOUT_MS), 0);
	nd_client_close(c2);

	/* a worker's certificate, resumed, is still a worker's */
	o = lib_opts("worker-w1");
	o.role = NODED__ROLE__ROLE_WORKER;
	o.node_name = "w1";
	cr_assert_eq(nd_client_connect(&w, addr, &o), 0, "%s",
		     nd_client_last_error());
	cr_assert_eq(nd_client_reconnect(w, NULL, 0), 0, "%s",
		     nd_client_last_error());
	cr_assert(nd_client_tls_resumed(w), "the worker did not resume");
	cr_assert_eq(list_tasks(w, &code), ND_EREMOTE, "a resumed worker "
		     "certificate could list tasks");
	cr_assert_eq(code, NODED__ERROR_CODE__PERMISSION_DENIED);
	nd_client_close(w);

	/* a reload makes a new ticket key: a full handshake, served */
	cr_assert_eq(kill(d.pid, SIGHUP), 0);
	until = nd_test_now_ms() + ND_TEST_TIMEOUT_MS;
	while (resumed && nd_test_now_ms() < until) {
		nd_test_sleep_ms(100);
		cr_assert_eq(nd_client_reconnect(c, NULL, 0), 0, "%s",
			     nd_client_last_error());
		resumed = nd_client_tls_resumed(c);
	}
	cr_assert_not(resumed, "tickets from before SIGHUP still resume");
	cr_assert_eq(nd_client_ping(c, ND_TEST_TIMEOUT_MS), 0);
	nd_client_close(c);
}
