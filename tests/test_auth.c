/*
 * Token authentication (master --token-file): the HMAC challenge on the
 * wire, workers and CLI commands with the right, a wrong and no token, and
 * the refusals around it (non-loopback listen, a token file others can read).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "noded/auth.h"

static struct nd_test_daemon d;
static char dir[] = "/tmp/noded-auth-XXXXXX";
static char good[64], bad[64], loose[64];
static const char token[] = "correct horse battery staple 42";

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	cr_assert(fd >= 0, "create %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	fchmod(fd, mode);
	close(fd);
}

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	strcpy(dir, "/tmp/noded-auth-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(good, sizeof(good), "%s/good", dir);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	snprintf(loose, sizeof(loose), "%s/loose", dir);
	write_file(good, "correct horse battery staple 42\n", 0600);
	write_file(bad, "incorrect horse battery staple 7\n", 0600);
	write_file(loose, "correct horse battery staple 42\n", 0644);
}

static void teardown(void)
{
	nd_test_daemon_stop(&d);
	unlink(good);
	unlink(bad);
	unlink(loose);
	rmdir(dir);
}

TestSuite(auth, .init = setup, .fini = teardown, .timeout = 30);

/* DAEMON_START's warm-up speaks without a token, so start it bare. */
#define START_WITH_TOKEN()                                                   \
	ND_CHECK(nd_test_daemon_start(                                       \
		&d, (const char *const[]){ "--token-file", good, NULL }))

static int run(const char *const argv[], char *out, size_t olen, char *err,
	       size_t elen)
{
	return nd_test_run(argv, out, olen, err, elen, 15000);
}

/* Hello with a client nonce; returns the HelloReply frame (caller frees). */
static Noded__Frame *hello_nonce(int fd, const uint8_t *nonce, size_t len)
{
	Noded__Frame f, *r = NULL;
	Noded__HelloRequest h;

	nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
	h.client_nonce.data = (uint8_t *)nonce;
	h.client_nonce.len = len;
	ND_CHECK(nd_test_send_frame(fd, &f));
	ND_CHECK(nd_test_recv_frame(fd, 5000, &r));
	return r;
}

static void send_auth(int fd, uint64_t id, const uint8_t *proof, size_t len)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__AuthRequest a = NODED__AUTH_REQUEST__INIT;

	a.proof.data = (uint8_t *)proof;
	a.proof.len = len;
	f.id = id;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_AUTH;
	f.auth = &a;
	ND_CHECK(nd_test_send_frame(fd, &f));
}

Test(auth, challenge_on_the_wire)
{
	uint8_t nonce[32], proof[ND_PROOF_LEN];
	Noded__Frame *r, *ack = NULL;
	const Noded__HelloReply *hr;
	int fd;

	START_WITH_TOKEN();
	memset(nonce, 7, sizeof(nonce));
	fd = nd_test_connect(d.port);
	cr_assert(fd >= 0);
	r = hello_nonce(fd, nonce, sizeof(nonce));
	cr_assert_eq(r->body_case, NODED__FRAME__BODY_HELLO_REPLY, "%s",
		     nd_test_describe(r));
	hr = r->hello_reply;
	cr_assert(hr->auth_required);
	cr_assert_eq(hr->server_nonce.len, 32);
	/* the master proves it holds the token */
	cr_assert(nd_auth_check((const uint8_t *)token, strlen(token),
				"noded-server", nonce, sizeof(nonce),
				hr->server_nonce.data, hr->server_nonce.len,
				hr->server_proof.data, hr->server_proof.len),
		  "server proof does not verify with the shared token");
	/* ... and we prove it back; then requests are served */
	ND_CHECK(nd_auth_proof((const uint8_t *)token, strlen(token),
			       "noded-client", hr->server_nonce.data,
			       hr->server_nonce.len, nonce, sizeof(nonce),
			       proof));
	send_auth(fd, 2, proof, sizeof(proof));
	ND_CHECK(nd_test_recv_frame(fd, 5000, &ack));
	cr_assert_eq(ack->body_case, NODED__FRAME__BODY_ACK, "%s",
		     nd_test_describe(ack));
	ND_CHECK(nd_test_ping(fd, 3, "x", 1));
	nd_frame_free(ack, NULL);
	nd_frame_free(r, NULL);
	close(fd);
	STOP_OK(&d);
}

Test(auth, wrong_proof_missing_nonce_and_early_requests_are_refused)
{
	uint8_t nonce[32], proof[ND_PROOF_LEN];
	Noded__Frame *r;
	int fd;

	START_WITH_TOKEN();
	memset(nonce, 9, sizeof(nonce));

	/* a proof made with another token */
	fd = nd_test_connect(d.port);
	r = hello_nonce(fd, nonce, sizeof(nonce));
	ND_CHECK(nd_auth_proof((const uint8_t *)"some other token!!",
			       18, "noded-client", r->hello_reply->server_nonce.data,
			       r->hello_reply->server_nonce.len, nonce,
			       sizeof(nonce), proof));
	send_auth(fd, 2, proof, sizeof(proof));
	ND_CHECK(nd_test_expect_error(fd, NODED__FRAME_KIND__REPLY,
				      NODED__ERROR_CODE__UNAUTHENTICATED, 2));
	ND_CHECK(nd_test_expect_closed(fd, 5000));
	nd_frame_free(r, NULL);
	close(fd);

	/* a ping after hello, without auth */
	fd = nd_test_connect(d.port);
	r = hello_nonce(fd, nonce, sizeof(nonce));
	nd_frame_free(r, NULL);
	{
		Noded__Frame pf;
		Noded__PingRequest pr;

		nd_test_frame_ping(&pf, &pr, 5, "p", 1);
		ND_CHECK(nd_test_send_frame(fd, &pf));
	}
	ND_CHECK(nd_test_expect_error(fd, NODED__FRAME_KIND__REPLY,
				      NODED__ERROR_CODE__UNAUTHENTICATED, 5));
	ND_CHECK(nd_test_expect_closed(fd, 5000));
	close(fd);

	/* a hello without a client nonce */
	fd = nd_test_connect(d.port);
	r = hello_nonce(fd, NULL, 0);
	cr_assert_eq(r->body_case, NODED__FRAME__BODY_ERROR, "%s",
		     nd_test_describe(r));
	cr_assert_eq(r->error->code, NODED__ERROR_CODE__UNAUTHENTICATED);
	ND_CHECK(nd_test_expect_closed(fd, 5000));
	nd_frame_free(r, NULL);
	close(fd);
	STOP_OK(&d);
}

static pid_t worker(int port, const char *name, const char *tok)
{
	char master[32];
	pid_t pid;

	snprintf(master, sizeof(master), "127.0.0.1:%d", port);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int null_fd = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null_fd, 2);
		if (tok)
			execl(nd_test_bin(), nd_test_bin(), "worker", "--master",
			      master, "--name", name, "--token-file", tok,
			      (char *)NULL);
		else
			execl(nd_test_bin(), nd_test_bin(), "worker", "--master",
			      master, "--name", name, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

Test(auth, workers_and_commands_need_the_right_token)
{
	char master[32], out[8192], err[4096];
	const char *nodes[] = { nd_test_bin(), "nodes", "--master", master,
				"--token-file", good, NULL };
	const char *run_good[] = { nd_test_bin(), "run", "--master", master,
				   "--token-file", good, "--", "echo", "ok",
				   NULL };
	const char *run_bad[] = { nd_test_bin(), "run", "--master", master,
				  "--token-file", bad, "--", "echo", "no",
				  NULL };
	const char *run_none[] = { nd_test_bin(), "run", "--master", master,
				   "--", "echo", "no", NULL };
	pid_t w1, w2, w3;
	int st = -1;

	START_WITH_TOKEN();
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	w1 = worker(d.port, "right", good);
	w2 = worker(d.port, "wrong", bad);
	w3 = worker(d.port, "none", NULL);
	/* the right one registers; the others never do */
	for (int i = 0; i < 50; i++) {
		st = run(nodes, out, sizeof(out), err, sizeof(err));
		if (st == 0 && strstr(out, "right"))
			break;
		nd_test_sleep_ms(100);
	}
	cr_assert(strstr(out, "right"), "worker with the token not listed: %s",
		  out);
	nd_test_sleep_ms(1500); /* give the others time to (fail to) join */
	st = run(nodes, out, sizeof(out), err, sizeof(err));
	cr_assert_eq(st, 0, "%s", err);
	cr_assert_null(strstr(out, "wrong"), "a wrong token joined: %s", out);
	cr_assert_null(strstr(out, "none"), "no token joined: %s", out);

	st = run(run_good, out, sizeof(out), err, sizeof(err));
	cr_assert_eq(st, 0, "run with the token: %d %s", st, err);
	cr_assert_str_eq(out, "ok\n");
	st = run(run_bad, out, sizeof(out), err, sizeof(err));
	cr_assert_eq(st, 1, "run with a wrong token: exit %d", st);
	cr_assert(strstr(err, "did not accept our token"), "%s", err);
	st = run(run_none, out, sizeof(out), err, sizeof(err));
	cr_assert_eq(st, 1, "run without a token: exit %d", st);
	cr_assert(strstr(err, "requires a token"), "%s", err);
	reap(w1);
	reap(w2);
	reap(w3);
	STOP_OK(&d);
}

Test(auth, refusals_around_the_token)
{
	char out[4096], err[4096];
	const char *open_listen[] = { nd_test_bin(), "master", "--listen",
				      "0.0.0.0:0", NULL };
	const char *loose_file[] = { nd_test_bin(), "master", "--listen",
				     "127.0.0.1:0", "--token-file", loose, NULL };
	const char *short_tok[] = { nd_test_bin(), "master", "--listen",
				    "127.0.0.1:0", "--token-file", dir, NULL };
	int st;

	st = run(open_listen, out, sizeof(out), err, sizeof(err));
	cr_assert_eq(st, 2, "non-loopback listen without a token: exit %d", st);
	cr_assert(strstr(err, "without --token-file"), "%s", err);
	st = run(loose_file, out, sizeof(out), err, sizeof(err));
	cr_assert_eq(st, 2, "token file mode 644: exit %d", st);
	cr_assert(strstr(err, "chmod 600"), "%s", err);
	st = run(short_tok, out, sizeof(out), err, sizeof(err));
	cr_assert_eq(st, 2, "a directory as token file: exit %d", st);
}
