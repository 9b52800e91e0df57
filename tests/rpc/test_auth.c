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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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
	cr_assert(strstr(err, "did not prove it holds our token"), "%s", err);
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

/* The master answers a Hello: it is up (and handles SIGTERM). */
static void served(int port)
{
	uint8_t nonce[32] = { 1 };
	int fd = nd_test_connect(port);
	Noded__Frame *r;

	cr_assert(fd >= 0);
	r = hello_nonce(fd, nonce, sizeof(nonce));
	cr_assert_eq(r->body_case, NODED__FRAME__BODY_HELLO_REPLY, "%s",
		     nd_test_describe(r));
	nd_frame_free(r, NULL);
	close(fd);
}

Test(auth, http_off_loopback_needs_the_operator_to_accept_a_clear_token)
{
	char out[4096], err[4096];
	const char *open_http[] = { nd_test_bin(), "master", "--listen",
				    "127.0.0.1:0", "--token-file", good,
				    "--http", "0.0.0.0:0", NULL };
	int st;

	st = run(open_http, out, sizeof(out), err, sizeof(err));
	cr_assert_eq(st, 2, "--http off loopback without "
		     "--http-insecure-token: exit %d", st);
	cr_assert(strstr(err, "send the token in clear") &&
		  strstr(err, "--http-insecure-token"), "%s", err);
	/* said explicitly: it serves */
	ND_CHECK(nd_test_daemon_start(
		&d, (const char *const[]){ "--token-file", good, "--http",
					   "0.0.0.0:0", "--http-insecure-token",
					   NULL }));
	cr_assert(strstr(d.rest, "http on 0.0.0.0:"), "%.*s",
		  (int)d.rest_len, d.rest);
	served(d.port);
	STOP_OK(&d);
	/* on loopback nothing is asked */
	ND_CHECK(nd_test_daemon_start(
		&d, (const char *const[]){ "--token-file", good, "--http",
					   "127.0.0.1:0", NULL }));
	served(d.port);
	STOP_OK(&d);
}

/* ---- a listener that is not our master ---- */

/*
 * How the fake master answers a Hello: asking for no token (a downgrade, or
 * simply not a noded master with our token), with a proof made from another
 * token, or with something that is not a HelloReply at all.
 */
enum fake_mode { FAKE_NO_AUTH, FAKE_BAD_PROOF, FAKE_ACK };

static int fake_listen(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fd, 8), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static void send_reply(int fd, Noded__Frame *f, uint64_t id,
		       Noded__FrameKind kind)
{
	f->id = id;
	f->kind = kind;
	ND_CHECK(nd_test_send_frame(fd, f));
}

/*
 * Serves one connection on lfd as a master that does not prove it holds the
 * token: answers the Hello as mode says, then, to whatever request follows
 * (an AssignTask from a worker, a Submit from the CLI), answers as a master
 * would: an assignment of `touch MARKER`, or a SubmitReply. Returns the
 * number of requests that came after the Hello (0 when the peer distrusted
 * us and hung up, as it must).
 */
static int fake_master(int lfd, enum fake_mode mode, const char *marker)
{
	uint8_t nonce[32], proof[ND_PROOF_LEN];
	Noded__Frame *req = NULL, out = NODED__FRAME__INIT;
	Noded__HelloReply hr = NODED__HELLO_REPLY__INIT;
	Noded__Ack ack = NODED__ACK__INIT;
	int fd, requests = 0;
	struct timeval tv = { .tv_sec = 10 };

	setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert(fd >= 0, "nobody connected to the fake master: %s",
		  strerror(errno));
	ND_CHECK(nd_test_recv_frame(fd, 5000, &req));
	cr_assert_eq(req->body_case, NODED__FRAME__BODY_HELLO, "%s",
		     nd_test_describe(req));
	hr.protocol_version = ND_PROTOCOL_VERSION;
	hr.node_name = (char *)"impostor";
	hr.role = NODED__ROLE__ROLE_MASTER;
	hr.max_frame = 1 << 20;
	hr.heartbeat_interval_ms = 1000;
	out.body_case = NODED__FRAME__BODY_HELLO_REPLY;
	out.hello_reply = &hr;
	if (mode == FAKE_BAD_PROOF) {
		memset(nonce, 3, sizeof(nonce));
		ND_CHECK(nd_auth_proof((const uint8_t *)"not the right token",
				       19, "noded-server",
				       req->hello->client_nonce.data,
				       req->hello->client_nonce.len, nonce,
				       sizeof(nonce), proof));
		hr.auth_required = true;
		hr.server_nonce.data = nonce;
		hr.server_nonce.len = sizeof(nonce);
		hr.server_proof.data = proof;
		hr.server_proof.len = sizeof(proof);
	} else if (mode == FAKE_ACK) {
		out.body_case = NODED__FRAME__BODY_ACK;
		out.ack = &ack;
	}
	send_reply(fd, &out, req->id, NODED__FRAME_KIND__REPLY);
	nd_frame_free(req, NULL);
	/* Whatever comes next gets a master's answer; an Auth (the peer
	 * answering our bad challenge) gets an Ack as if it passed. */
	for (int64_t end = nd_test_now_ms() + 3000;
	     nd_test_now_ms() < end &&
	     nd_test_recv_frame(fd, 1000, &req) == 0;) {
		Noded__Frame f = NODED__FRAME__INIT;
		Noded__AssignTaskOpen ao = NODED__ASSIGN_TASK_OPEN__INIT;
		Noded__TaskAssignment ta = NODED__TASK_ASSIGNMENT__INIT;
		Noded__Command c = NODED__COMMAND__INIT;
		Noded__SubmitReply sr = NODED__SUBMIT_REPLY__INIT;
		uint64_t ids[1] = { 1 };
		char cmd[200];

		requests += req->body_case != NODED__FRAME__BODY_AUTH;
		switch (req->body_case) {
		case NODED__FRAME__BODY_AUTH:
			f.body_case = NODED__FRAME__BODY_ACK;
			f.ack = &ack;
			send_reply(fd, &f, req->id, NODED__FRAME_KIND__REPLY);
			break;
		case NODED__FRAME__BODY_ASSIGN_TASK:
			ao.heartbeat_interval_ms = 1000;
			ao.heartbeat_timeout_ms = 3000;
			ao.master_instance = 77;
			f.body_case = NODED__FRAME__BODY_ASSIGN_OPEN;
			f.assign_open = &ao;
			send_reply(fd, &f, req->id,
				   NODED__FRAME_KIND__STREAM_ITEM);
			snprintf(cmd, sizeof(cmd), "touch %s", marker);
			ta.task_id = 1;
			ta.attempt = 1;
			ta.command = &c;
			c.shell = cmd;
			f.body_case = NODED__FRAME__BODY_TASK;
			f.task = &ta;
			send_reply(fd, &f, req->id,
				   NODED__FRAME_KIND__STREAM_ITEM);
			break;
		case NODED__FRAME__BODY_SUBMIT:
		case NODED__FRAME__BODY_RUN:
			sr.task_ids = ids;
			sr.n_task_ids = 1;
			f.body_case = NODED__FRAME__BODY_SUBMIT_REPLY;
			f.submit_reply = &sr;
			send_reply(fd, &f, req->id, req->body_case ==
				   NODED__FRAME__BODY_RUN ?
				   NODED__FRAME_KIND__STREAM_ITEM :
				   NODED__FRAME_KIND__REPLY);
			break;
		default:
			break;
		}
		nd_frame_free(req, NULL);
	}
	close(fd);
	return requests;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* Reads what fd holds now (nonblocking) into buf. */
static void read_all(int fd, char *buf, size_t size)
{
	size_t len = strlen(buf);
	ssize_t n;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	while (len + 1 < size &&
	       (n = read(fd, buf + len, size - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
}

Test(auth, a_worker_with_a_token_never_obeys_an_unproven_master)
{
	static const enum fake_mode modes[] = { FAKE_NO_AUTH, FAKE_BAD_PROOF,
						 FAKE_ACK };
	static const char *const want[] = {
		"did not prove it holds the token", "proof does not match",
		"protocol violation",
	};
	char marker[96], master[32], log[8192];

	for (unsigned i = 0; i < 3; i++) {
		int port, lfd = fake_listen(&port), ep[2];
		const char *argv[] = { nd_test_bin(), "worker", "--master",
				       master, "--name", "victim",
				       "--token-file", good, NULL };
		pid_t pid;
		int n;

		snprintf(marker, sizeof(marker), "%s/ran-%u", dir, i);
		snprintf(master, sizeof(master), "127.0.0.1:%d", port);
		cr_assert_eq(pipe2(ep, O_CLOEXEC), 0);
		pid = nd_test_spawn(argv, -1, -1, ep[1]);
		cr_assert(pid > 0, "%s", nd_test_why);
		close(ep[1]);
		n = fake_master(lfd, modes[i], marker);
		nd_test_sleep_ms(300); /* a command, if run, has touched it */
		log[0] = '\0';
		read_all(ep[0], log, sizeof(log));
		nd_test_kill_pid(pid);
		close(ep[0]);
		close(lfd);
		cr_assert_not(exists(marker), "mode %u: the worker ran a "
			      "command from a master that proved nothing", i);
		unlink(marker);
		cr_assert_eq(n, 0, "mode %u: the worker sent %d requests to "
			     "an unproven master", i, n);
		cr_assert(strstr(log, "event=worker.master_unproven") ||
			  i == 2, "mode %u: %s", i, log);
		cr_assert(strstr(log, want[i]), "mode %u: %s", i, log);
	}
}

Test(auth, a_command_with_a_token_never_talks_to_an_unproven_master)
{
	static const enum fake_mode modes[] = { FAKE_NO_AUTH, FAKE_BAD_PROOF,
						 FAKE_ACK };
	static const char *const want[] = {
		"did not prove it holds the token (it asked for none)",
		"did not prove it holds our token (its proof does not match)",
		"protocol violation",
	};
	char master[32], out[4096], err[4096];

	for (unsigned i = 0; i < 3; i++) {
		int port, lfd = fake_listen(&port), op[2], ep[2];
		const char *argv[] = { nd_test_bin(), "submit", "--master",
				       master, "--token-file", good, "--",
				       "true", NULL };
		pid_t pid;
		int n, st;

		snprintf(master, sizeof(master), "127.0.0.1:%d", port);
		cr_assert_eq(pipe2(op, O_CLOEXEC), 0);
		cr_assert_eq(pipe2(ep, O_CLOEXEC), 0);
		pid = nd_test_spawn(argv, -1, op[1], ep[1]);
		cr_assert(pid > 0, "%s", nd_test_why);
		close(op[1]);
		close(ep[1]);
		n = fake_master(lfd, modes[i], "/nonexistent");
		st = nd_test_wait_pid(pid, 10000);
		out[0] = err[0] = '\0';
		read_all(op[0], out, sizeof(out));
		read_all(ep[0], err, sizeof(err));
		close(op[0]);
		close(ep[0]);
		close(lfd);
		cr_assert_eq(n, 0, "mode %u: the command sent %d requests to "
			     "an unproven master", i, n);
		cr_assert_eq(st, 1, "mode %u: exit %d, out %s err %s", i, st,
			     out, err);
		cr_assert(strstr(err, want[i]), "mode %u: %s", i, err);
	}
}

/* ---- refusals are logged, rate-limited ---- */

/* Sums the auth.refused lines in the log at path: lines, and refusals they
 * stand for (each line one, plus its suppressed=N). */
static void count_refusals(const char *path, int *lines, long *refusals,
			   const char *want_api)
{
	char line[4096];
	FILE *f = fopen(path, "r");

	cr_assert(f);
	*lines = 0;
	*refusals = 0;
	while (fgets(line, sizeof(line), f)) {
		const char *sup;

		if (!strstr(line, "event=auth.refused"))
			continue;
		cr_assert(strstr(line, "level=warn"), "%s", line);
		cr_assert(strstr(line, "peer=127.0.0.1:"), "%s", line);
		cr_assert(strstr(line, want_api), "%s", line);
		sup = strstr(line, " suppressed=");
		cr_assert(sup, "%s", line);
		(*lines)++;
		*refusals += 1 + atol(sup + 12);
	}
	fclose(f);
}

/* A connection that answers the challenge with a proof from another token. */
static void wrong_proof(int port)
{
	uint8_t nonce[32] = { 5 }, proof[ND_PROOF_LEN];
	Noded__Frame *r;
	int fd = nd_test_connect(port);

	cr_assert(fd >= 0);
	r = hello_nonce(fd, nonce, sizeof(nonce));
	ND_CHECK(nd_auth_proof((const uint8_t *)"another token entirely", 22,
			       "noded-client", r->hello_reply->server_nonce.data,
			       r->hello_reply->server_nonce.len, nonce,
			       sizeof(nonce), proof));
	send_auth(fd, 2, proof, sizeof(proof));
	ND_CHECK(nd_test_expect_error(fd, NODED__FRAME_KIND__REPLY,
				      NODED__ERROR_CODE__UNAUTHENTICATED, 2));
	nd_frame_free(r, NULL);
	close(fd);
}

Test(auth, refusals_are_logged_at_warn_once_a_second_per_address)
{
	char log[96];
	const char *argv[] = { nd_test_bin(), "master", "--listen",
			       "127.0.0.1:0", "--token-file", good, NULL };
	int fd, lines = 0;
	long refusals = 0;
	int64_t t0, took;

	snprintf(log, sizeof(log), "%s/master.log", dir);
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert(fd >= 0);
	ND_CHECK(nd_test_daemon_start_err(&d, argv, fd));
	close(fd);
	t0 = nd_test_now_ms();
	for (int i = 0; i < 40; i++)
		wrong_proof(d.port);
	took = nd_test_now_ms() - t0;
	nd_test_sleep_ms(1100);
	wrong_proof(d.port); /* a second later: logged, with the count */
	nd_test_sleep_ms(200);
	count_refusals(log, &lines, &refusals, "api=native");
	STOP_OK(&d);
	/* every refusal is accounted for, in at most a line a second */
	cr_assert_eq(refusals, 41, "%d lines stand for %ld refusals", lines,
		     refusals);
	cr_assert(lines >= 2 && lines <= 2 + took / 1000 + 1,
		  "%d lines for 41 refusals in %lld ms", lines,
		  (long long)took);
	unlink(log);
}
