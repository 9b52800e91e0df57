/*
 * Access control (--acl, src/rpc/acl.c): the policy parser and the
 * decision function on their own (every subject and object kind, deny by
 * default, bad files named FILE:LINE), then end to end against a real
 * master and workers on mutual TLS with certificates made by `noded tls`:
 * a client allowed to submit only to node:web* is refused another node
 * (native and HTTP 403, the connection going on), may read, may not drain;
 * a worker's or a master's certificate may not submit; the audit lines
 * appear; a SIGHUP with a bad file keeps the old policy, with a good one
 * takes the new; without TLS, a token holder is token:shared.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "harness.h"
#include "noded/wire.h"
#include "rpc/acl.h"

/* ---- the parser and the decision ---- */

static struct nd_acl *parse_ok(const char *text)
{
	struct nd_acl *acl = NULL;
	char err[512] = "";
	int ret = nd_acl_parse(&acl, text, strlen(text), "p.acl", err,
			       sizeof(err));

	cr_assert_eq(ret, 0, "parse: %d %s", ret, err);
	return acl;
}

/* The error parsing text gives (static). */
static const char *parse_err(const char *text)
{
	static char err[512];
	struct nd_acl *acl = NULL;

	err[0] = '\0';
	cr_assert_eq(nd_acl_parse(&acl, text, strlen(text), "p.acl", err,
				  sizeof(err)), -EINVAL, "parsed: %s", text);
	cr_assert_null(acl);
	return err;
}

static const struct nd_acl_object any = { .kind = ND_ACL_OBJ_ANY };

static struct nd_acl_object node(const char *name)
{
	return (struct nd_acl_object){ .kind = ND_ACL_OBJ_NODE, .name = name };
}

static const struct nd_acl_who alice = { ND_TLS_ROLE_CLIENT, "alice", false };
static const struct nd_acl_who bob = { ND_TLS_ROLE_CLIENT, "bob", false };
static const struct nd_acl_who w1 = { ND_TLS_ROLE_WORKER, "web1", false };
static const struct nd_acl_who m1 = { ND_TLS_ROLE_MASTER, "m1", false };
static const struct nd_acl_who tok = { ND_TLS_ROLE_NONE, "", true };
static const struct nd_acl_who anon = { ND_TLS_ROLE_NONE, "", false };

Test(acl_policy, no_policy_allows_everything)
{
	struct nd_acl_object o = node("db1");

	cr_assert(nd_acl_allows(NULL, &anon, ND_ACL_OPERATOR, &any));
	cr_assert(nd_acl_allows(NULL, &w1, ND_ACL_TASK_SUBMIT, &o));
}

Test(acl_policy, deny_by_default)
{
	struct nd_acl *acl = parse_ok("# nothing allowed\n\n");
	struct nd_acl_object o = node("web1");

	cr_assert_eq(nd_acl_rules(acl), 0);
	cr_assert_not(nd_acl_allows(acl, &alice, ND_ACL_TASK_READ, &any));
	cr_assert_not(nd_acl_allows(acl, &m1, ND_ACL_TASK_SUBMIT, &o));
	nd_acl_free(acl);
}

Test(acl_policy, subjects)
{
	struct nd_acl *acl = parse_ok(
		"allow client:alice * task.read\n"
		"allow client:b* * task.cancel   # a glob\n"
		"allow role:worker * node.read\n"
		"allow token:shared * kv.read\n"
		"allow anonymous * log.consume\n"
		"group ops master:m1 client:bob\n"
		"allow @ops * operator\n"
		"allow * * log.produce\n");

	cr_assert_eq(nd_acl_rules(acl), 7);
	cr_assert(nd_acl_allows(acl, &alice, ND_ACL_TASK_READ, &any));
	cr_assert_not(nd_acl_allows(acl, &bob, ND_ACL_TASK_READ, &any));
	cr_assert(nd_acl_allows(acl, &bob, ND_ACL_TASK_CANCEL, &any));
	cr_assert_not(nd_acl_allows(acl, &alice, ND_ACL_TASK_CANCEL, &any));
	/* a worker named alice is not the client alice */
	cr_assert_not(nd_acl_allows(acl, &(struct nd_acl_who){
		ND_TLS_ROLE_WORKER, "alice", false }, ND_ACL_TASK_READ, &any));
	cr_assert(nd_acl_allows(acl, &w1, ND_ACL_NODE_READ, &any));
	cr_assert_not(nd_acl_allows(acl, &alice, ND_ACL_NODE_READ, &any));
	cr_assert(nd_acl_allows(acl, &tok, ND_ACL_KV_READ, &any));
	cr_assert_not(nd_acl_allows(acl, &alice, ND_ACL_KV_READ, &any));
	cr_assert(nd_acl_allows(acl, &anon, ND_ACL_LOG_CONSUME, &any));
	cr_assert_not(nd_acl_allows(acl, &tok, ND_ACL_LOG_CONSUME, &any));
	cr_assert(nd_acl_allows(acl, &m1, ND_ACL_OPERATOR, &any));
	cr_assert(nd_acl_allows(acl, &bob, ND_ACL_OPERATOR, &any));
	cr_assert_not(nd_acl_allows(acl, &alice, ND_ACL_OPERATOR, &any));
	cr_assert(nd_acl_allows(acl, &anon, ND_ACL_LOG_PRODUCE, &any));
	nd_acl_free(acl);
}

Test(acl_policy, objects)
{
	struct nd_acl *acl = parse_ok(
		"allow client:alice node:web* task.submit,task.read\n"
		"allow client:alice label:rack=b task.submit\n"
		"allow client:alice kv:/a/ kv.read,kv.write\n"
		"allow client:alice log:app.* log.produce\n"
		"allow client:bob node:* task.submit\n");
	const char *keys[] = { "os", "rack" }, *vals[] = { "linux", "b" };
	const char *vals_a[] = { "linux", "a" };
	struct nd_acl_object o;

	o = node("web1");
	cr_assert(nd_acl_allows(acl, &alice, ND_ACL_TASK_SUBMIT, &o));
	o = node("db1");
	cr_assert_not(nd_acl_allows(acl, &alice, ND_ACL_TASK_SUBMIT, &o));
	/* node:web* is not every node; node:* is */
	cr_assert_not(nd_acl_allows(acl, &alice, ND_ACL_TASK_SUBMIT, &any));
	cr_assert(nd_acl_allows(acl, &bob, ND_ACL_TASK_SUBMIT, &any));
	o = (struct nd_acl_object){ .kind = ND_ACL_OBJ_LABELS, .nlabels = 2,
				    .keys = keys, .values = vals };
	cr_assert(nd_acl_allows(acl, &alice, ND_ACL_TASK_SUBMIT, &o));
	cr_assert(nd_acl_allows(acl, &bob, ND_ACL_TASK_SUBMIT, &o));
	o.values = vals_a;
	cr_assert_not(nd_acl_allows(acl, &alice, ND_ACL_TASK_SUBMIT, &o));
	o = (struct nd_acl_object){ .kind = ND_ACL_OBJ_KV, .name = "/a/b/c" };
	cr_assert(nd_acl_allows(acl, &alice, ND_ACL_KV_WRITE, &o));
	o.name = "/ab";
	cr_assert_not(nd_acl_allows(acl, &alice, ND_ACL_KV_READ, &o));
	o = (struct nd_acl_object){ .kind = ND_ACL_OBJ_LOG, .name = "app.web" };
	cr_assert(nd_acl_allows(acl, &alice, ND_ACL_LOG_PRODUCE, &o));
	cr_assert_not(nd_acl_allows(acl, &alice, ND_ACL_LOG_CONSUME, &o));
	o.name = "sys";
	cr_assert_not(nd_acl_allows(acl, &alice, ND_ACL_LOG_PRODUCE, &o));
	nd_acl_free(acl);
}

Test(acl_policy, every_action_by_name_and_star)
{
	struct nd_acl *acl = parse_ok(
		"allow client:alice * task.submit,task.read,task.cancel,"
		"node.read,kv.read,kv.write,log.produce,log.consume,operator\n"
		"allow client:bob * *\n");
	int a;

	for (a = 0; a < ND_ACL_NACTIONS; a++) {
		cr_assert(nd_acl_allows(acl, &alice, a, &any), "%d", a);
		cr_assert(nd_acl_allows(acl, &bob, a, &any), "%d", a);
	}
	nd_acl_free(acl);
}

/* The README's example, as written there. */
Test(acl_policy, readme_example)
{
	struct nd_acl *acl = parse_ok(
		"# the ops group runs anything anywhere and drains nodes\n"
		"group ops client:alice client:bob\n"
		"allow @ops * *\n"
		"# a deploy bot: submit to the web nodes and rack b, read tasks "
		"and nodes\n"
		"allow client:deploy node:web* task.submit\n"
		"allow client:deploy label:rack=b task.submit\n"
		"allow client:deploy * task.read,node.read\n"
		"# every client certificate may look\n"
		"allow role:client * task.read,node.read\n"
		"# peers holding the --token-file token may read tasks\n"
		"allow token:shared * task.read\n");
	const struct nd_acl_who deploy = { ND_TLS_ROLE_CLIENT, "deploy", false };
	const struct nd_acl_who carol = { ND_TLS_ROLE_CLIENT, "carol", false };
	struct nd_acl_object web = node("web3"), db = node("db1");

	cr_assert_eq(nd_acl_rules(acl), 6);
	cr_assert(nd_acl_allows(acl, &bob, ND_ACL_OPERATOR, &db));
	cr_assert(nd_acl_allows(acl, &deploy, ND_ACL_TASK_SUBMIT, &web));
	cr_assert_not(nd_acl_allows(acl, &deploy, ND_ACL_TASK_SUBMIT, &db));
	cr_assert_not(nd_acl_allows(acl, &deploy, ND_ACL_OPERATOR, &web));
	cr_assert(nd_acl_allows(acl, &carol, ND_ACL_NODE_READ, &any));
	cr_assert_not(nd_acl_allows(acl, &carol, ND_ACL_TASK_CANCEL, &any));
	cr_assert(nd_acl_allows(acl, &tok, ND_ACL_TASK_READ, &any));
	cr_assert_not(nd_acl_allows(acl, &tok, ND_ACL_NODE_READ, &any));
	nd_acl_free(acl);
}

Test(acl_policy, bad_files_say_file_and_line)
{
	cr_assert_str_eq(parse_err("allow client:alice * task.read\n"
				   "permit client:bob * task.read\n"),
			 "p.acl:2: unknown rule 'permit' (want 'allow SUBJECT "
			 "OBJECT ACTIONS' or 'group NAME SUBJECT...'; what no "
			 "rule allows is denied)");
	cr_assert(strstr(parse_err("\n\nallow client:alice * task.write\n"),
			 "p.acl:3: unknown action 'task.write'"));
	cr_assert(strstr(parse_err("allow user:alice * task.read\n"),
			 "p.acl:1: unknown subject 'user:alice'"));
	cr_assert(strstr(parse_err("allow role:admin * task.read\n"),
			 "p.acl:1: unknown role 'admin'"));
	cr_assert(strstr(parse_err("allow token:ci * task.read\n"),
			 "p.acl:1: unknown token 'ci'"));
	cr_assert(strstr(parse_err("allow client:alice host:x task.read\n"),
			 "p.acl:1: unknown object 'host:x'"));
	cr_assert(strstr(parse_err("allow client:alice label:rack task.read\n"),
			 "p.acl:1: unknown object 'label:rack'"));
	cr_assert(strstr(parse_err("allow client:alice *\n"),
			 "p.acl:1: 'allow' wants three words"));
	cr_assert(strstr(parse_err("allow @ops * operator\n"),
			 "p.acl:1: unknown group 'ops'"));
	cr_assert(strstr(parse_err("group ops\n"),
			 "p.acl:1: 'group' wants a name"));
	cr_assert(strstr(parse_err("group a client:x\ngroup a client:y\n"),
			 "p.acl:2: group 'a' is defined twice"));
	cr_assert(strstr(parse_err("group a client:x\ngroup b @a\n"),
			 "p.acl:2: a group may not hold a group"));
	cr_assert(strstr(parse_err("allow client: * task.read\n"),
			 "p.acl:1: 'client:' names no certificate"));
}

Test(acl_policy, load_names_the_file)
{
	struct nd_acl *acl = NULL;
	char err[512];

	cr_assert_eq(nd_acl_load(&acl, "/nonexistent/p.acl", err,
				 sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "/nonexistent/p.acl: No such file"), "%s", err);
}

/* ---- methods to actions and objects ---- */

/* The decision for frame f from who under acl: 0 or -EACCES. */
static int check(const struct nd_acl *acl, const struct nd_acl_who *who,
		 const Noded__Frame *f, char *why)
{
	return nd_acl_check_frame(acl, who, f, why, 512);
}

Test(acl_policy, methods_map_to_actions_and_objects)
{
	struct nd_acl *acl = parse_ok(
		"allow client:alice node:web* task.submit\n"
		"allow client:alice label:rack=b task.submit\n"
		"allow client:alice * task.read\n"
		"allow client:bob node:web1 operator\n");
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__TaskSpec sp = NODED__TASK_SPEC__INIT;
	Noded__TaskSpec__LabelsEntry le = NODED__TASK_SPEC__LABELS_ENTRY__INIT;
	Noded__TaskSpec__LabelsEntry *lp = &le;
	Noded__TaskListRequest lt = NODED__TASK_LIST_REQUEST__INIT;
	Noded__NodeDrainRequest dr = NODED__NODE_DRAIN_REQUEST__INIT;
	Noded__PingRequest ping = NODED__PING_REQUEST__INIT;
	Noded__LeaderRequest lr = NODED__LEADER_REQUEST__INIT;
	Noded__NodeListRequest ln = NODED__NODE_LIST_REQUEST__INIT;
	char why[512];

	f.body_case = NODED__FRAME__BODY_SUBMIT;
	f.submit = &sp;
	sp.node = "web7";
	cr_assert_eq(check(acl, &alice, &f, why), 0);
	sp.node = "db1";
	cr_assert_eq(check(acl, &alice, &f, why), -EACCES);
	cr_assert_str_eq(why, "permission denied: task.submit on node:db1 for "
			 "client:alice (--acl)");
	/* a spec for any node is object * */
	sp.node = "";
	cr_assert_eq(check(acl, &alice, &f, why), -EACCES);
	cr_assert(strstr(why, "task.submit on * for client:alice"), "%s", why);
	/* a fan-out to named nodes needs each */
	sp.nodes = "web[1-3]";
	cr_assert_eq(check(acl, &alice, &f, why), 0);
	sp.nodes = "web1,db2,web3";
	cr_assert_eq(check(acl, &alice, &f, why), -EACCES);
	cr_assert(strstr(why, "task.submit on node:db2"), "%s", why);
	sp.nodes = "";
	/* labels */
	le.key = "rack";
	le.value = "b";
	sp.n_labels = 1;
	sp.labels = &lp;
	sp.all = true;
	cr_assert_eq(check(acl, &alice, &f, why), 0);
	le.value = "c";
	cr_assert_eq(check(acl, &alice, &f, why), -EACCES);
	cr_assert(strstr(why, "label:rack=c"), "%s", why);
	/* run: the same as submit */
	f.body_case = NODED__FRAME__BODY_RUN;
	f.run = &sp;
	cr_assert_eq(check(acl, &bob, &f, why), -EACCES);
	/* list: task.read */
	f.body_case = NODED__FRAME__BODY_LIST_TASKS;
	f.list_tasks = &lt;
	cr_assert_eq(check(acl, &alice, &f, why), 0);
	cr_assert_eq(check(acl, &bob, &f, why), -EACCES);
	cr_assert(strstr(why, "task.read on *"), "%s", why);
	/* drain: operator on that node */
	f.body_case = NODED__FRAME__BODY_NODE_DRAIN;
	f.node_drain = &dr;
	dr.name = "web1";
	cr_assert_eq(check(acl, &bob, &f, why), 0);
	cr_assert_eq(check(acl, &alice, &f, why), -EACCES);
	cr_assert(strstr(why, "operator on node:web1"), "%s", why);
	dr.name = "web2";
	cr_assert_eq(check(acl, &bob, &f, why), -EACCES);
	/* ping and the leader query are no action: they pass */
	f.body_case = NODED__FRAME__BODY_PING;
	f.ping = &ping;
	cr_assert_eq(check(acl, &anon, &f, why), 0);
	f.body_case = NODED__FRAME__BODY_LEADER;
	f.leader = &lr;
	cr_assert_eq(check(acl, &anon, &f, why), 0);
	/* node list: node.read, which nobody has here */
	f.body_case = NODED__FRAME__BODY_LIST_NODES;
	f.list_nodes = &ln;
	cr_assert_eq(check(acl, &alice, &f, why), -EACCES);
	cr_assert(strstr(why, "node.read on *"), "%s", why);
	nd_acl_free(acl);
}

/* ---- end to end ---- */

static struct nd_test_daemon d;
static pid_t workers[2];
static int master_err = -1;
static char dir[64];
static char addr[64];
static int http_port;
static char out[65536], err[65536];

static const char *path(const char *name)
{
	return nd_test_path(dir, name);
}

#define NODED(...)                                                           \
	nd_test_run((const char *const[]){ nd_test_bin(), __VA_ARGS__, NULL }, \
		    out, sizeof(out), err, sizeof(err), 20000)

#define AS(who) "--tls-cert", path(who ".crt"), "--tls-key", path(who ".key"), \
		"--tls-ca", path("ca/ca.crt")

static void write_file(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");

	cr_assert(f, "%s: %s", p, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

static void e2e_setup(void)
{
	char ca[128];

	snprintf(dir, sizeof(dir), "/tmp/noded-acl-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(ca, sizeof(ca), "%s/ca", dir);
	cr_assert_eq(NODED("tls", "ca", "create", "--dir", ca, "--cluster",
			   "t1"), 0, "%s", err);
	cr_assert_eq(NODED("tls", "cert", "create", "--master", "m1",
			   "--ca-dir", ca, "--out-dir", dir), 0, "%s", err);
	cr_assert_eq(NODED("tls", "cert", "create", "--worker", "web1",
			   "--ca-dir", ca, "--out-dir", dir), 0, "%s", err);
	cr_assert_eq(NODED("tls", "cert", "create", "--worker", "db1",
			   "--ca-dir", ca, "--out-dir", dir), 0, "%s", err);
	cr_assert_eq(NODED("tls", "cert", "create", "--client", "alice",
			   "--ca-dir", ca, "--out-dir", dir), 0, "%s", err);
}

static void e2e_teardown(void)
{
	char cmd[128];
	int i;

	for (i = 0; i < 2; i++) {
		if (workers[i] > 0)
			nd_test_kill_pid(workers[i]);
		workers[i] = 0;
	}
	nd_test_daemon_stop(&d);
	if (master_err >= 0)
		close(master_err);
	master_err = -1;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		cr_log_warn("could not remove %s", dir);
}

TestSuite(acl, .init = e2e_setup, .fini = e2e_teardown, .timeout = 180);

/* Polls the master's stderr until it holds needle n times. */
static void wait_log(const char *needle, int n)
{
	int64_t until = nd_test_now_ms() + 15000;
	const char *t, *p;
	int k;

	for (;;) {
		t = nd_test_memfd_text(master_err);
		for (k = 0, p = t; (p = strstr(p, needle)); p++)
			k++;
		if (k >= n)
			return;
		cr_assert(nd_test_now_ms() < until, "the master never said "
			  "\"%s\" %d times: %s", needle, n, t);
		nd_test_sleep_ms(50);
	}
}

/* A master on mutual TLS with --acl FILE and --http, its stderr kept. */
static void master_start(const char *acl)
{
	const char *argv[] = {
		nd_test_bin(), "master", "--listen", "127.0.0.1:0",
		"--tls-cert", path("master-m1.crt"), "--tls-key",
		path("master-m1.key"), "--tls-ca", path("ca/ca.crt"), "--acl",
		acl, "--http", "127.0.0.1:0", NULL,
	};
	master_err = memfd_create("master-stderr", MFD_CLOEXEC);
	cr_assert(master_err >= 0);
	ND_CHECK(nd_test_daemon_start_err(&d, argv, master_err));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", d.port);
	http_port = nd_test_daemon_http_port(&d);
	cr_assert(http_port, "%s", nd_test_why);
}

static void worker_start(int i, const char *name)
{
	char cert[64];
	const char *argv[] = {
		nd_test_bin(), "worker", "--master", addr, "--name", name,
		"--tls-cert", NULL, "--tls-key", NULL, "--tls-ca",
		path("ca/ca.crt"), "--state-dir", NULL, NULL,
	};
	char key[64], state[64];

	snprintf(cert, sizeof(cert), "worker-%s.crt", name);
	snprintf(key, sizeof(key), "worker-%s.key", name);
	snprintf(state, sizeof(state), "state-%s", name);
	argv[7] = path(cert);
	argv[9] = path(key);
	argv[13] = path(state);
	workers[i] = nd_test_spawn(argv, -1, -1, -1);
	cr_assert(workers[i] > 0, "%s", nd_test_why);
}

/* ---- HTTP over TLS as a client certificate (OpenSSL, blocking) ---- */

static SSL *tls_conn(const char *who, int port, int *fdp)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char cert[64], key[64];
	SSL *ssl;
	int fd;

	cr_assert(ctx);
	snprintf(cert, sizeof(cert), "%s.crt", who);
	snprintf(key, sizeof(key), "%s.key", who);
	cr_assert_eq(SSL_CTX_use_certificate_chain_file(ctx, path(cert)), 1);
	cr_assert_eq(SSL_CTX_use_PrivateKey_file(ctx, path(key),
						 SSL_FILETYPE_PEM), 1);
	cr_assert_eq(SSL_CTX_load_verify_locations(ctx, path("ca/ca.crt"),
						   NULL), 1);
	fd = nd_test_connect(port);
	cr_assert(fd >= 0);
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	SSL_set_fd(ssl, fd);
	cr_assert_eq(SSL_connect(ssl), 1, "handshake");
	*fdp = fd;
	return ssl;
}

static SSL *https_open(const char *who, int *fdp)
{
	return tls_conn(who, http_port, fdp);
}

/* ---- the native protocol over TLS ---- */

static void tls_send_frame(SSL *ssl, const Noded__Frame *f)
{
	uint8_t buf[4096];
	size_t n = nd_frame_size(f);

	cr_assert(n <= sizeof(buf));
	nd_frame_encode(f, buf);
	cr_assert_eq(SSL_write(ssl, buf, (int)n), (int)n);
}

static void tls_read_all(SSL *ssl, uint8_t *p, size_t n)
{
	while (n) {
		int r = SSL_read(ssl, p, (int)n);

		cr_assert(r > 0, "the master closed the connection");
		p += r;
		n -= (size_t)r;
	}
}

/* The next frame (the caller frees it with nd_frame_free). */
static Noded__Frame *tls_recv_frame(SSL *ssl)
{
	uint8_t hdr[4], *body;
	uint32_t len;
	Noded__Frame *f;

	tls_read_all(ssl, hdr, 4);
	len = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
	body = malloc(len ? len : 1);
	cr_assert(body);
	tls_read_all(ssl, body, len);
	f = nd_frame_decode(body, len, NULL);
	free(body);
	cr_assert(f);
	return f;
}

/* Sends req and reads one response (Content-Length bodies) into buf. */
static const char *https_do(SSL *ssl, const char *req, char *buf, size_t size)
{
	size_t n = 0;
	const char *cl, *body;
	int r;

	cr_assert_eq(SSL_write(ssl, req, (int)strlen(req)), (int)strlen(req));
	for (;;) {
		r = SSL_read(ssl, buf + n, (int)(size - 1 - n));
		cr_assert(r > 0, "the connection ended: %.*s", (int)n, buf);
		n += (size_t)r;
		buf[n] = '\0';
		body = strstr(buf, "\r\n\r\n");
		cl = strcasestr(buf, "Content-Length:");
		if (body && cl &&
		    n >= (size_t)(body + 4 - buf) + (size_t)atoi(cl + 15))
			return buf;
	}
}

static void wait_nodes_alive(void)
{
	int64_t until = nd_test_now_ms() + 20000;

	do {
		nd_test_sleep_ms(100);
		NODED("nodes", "--master", addr, AS("client-alice"));
	} while ((!strstr(out, "web1") || !strstr(out, "db1")) &&
		 nd_test_now_ms() < until);
	cr_assert(strstr(out, "web1") && strstr(out, "db1"),
		  "the workers did not register: %s %s", out, err);
}

static const char policy[] =
	"# alice submits to the web nodes only, and reads everything\n"
	"group readers client:alice\n"
	"allow client:alice node:web* task.submit\n"
	"allow @readers * task.read,node.read\n";

Test(acl, client_limited_to_web_nodes)
{
	char buf[8192], req[512];
	const char *body = "{\"argv\":[\"true\"],\"node\":\"db1\"}";
	const char *t, *p;
	SSL *ssl;
	int fd, i;

	write_file(path("p.acl"), policy);
	master_start(path("p.acl"));
	wait_log("acl.loaded", 1);
	worker_start(0, "web1");
	worker_start(1, "db1");
	wait_nodes_alive(); /* node.read: allowed */
	/* task.submit on node:web1: allowed, runs, audited */
	cr_assert_eq(NODED("run", "--master", addr, AS("client-alice"),
			   "--node", "web1", "--", "echo", "on-web"), 0,
		     "run: %s", err);
	cr_assert(strstr(out, "on-web"), "%s", out);
	wait_log("audit.submit", 1);
	cr_assert(strstr(nd_test_memfd_text(master_err), "who=client:alice"),
		  "%s", nd_test_memfd_text(master_err));
	cr_assert(strstr(nd_test_memfd_text(master_err), "target=node:web1"),
		  "%s", nd_test_memfd_text(master_err));
	/* native: another node is refused, naming action and object */
	cr_assert_eq(NODED("run", "--master", addr, AS("client-alice"),
			   "--node", "db1", "--", "true"), 1);
	cr_assert(strstr(err, "permission denied: task.submit on node:db1"),
		  "stderr: %s", err);
	wait_log("audit.denied", 1);
	/* any node is object *: refused too */
	cr_assert_eq(NODED("submit", "--master", addr, AS("client-alice"),
			   "--", "true"), 1);
	cr_assert(strstr(err, "permission denied: task.submit on *"), "%s",
		  err);
	/* reading is allowed */
	cr_assert_eq(NODED("tasks", "--master", addr, AS("client-alice")), 0,
		     "tasks: %s", err);
	cr_assert(strstr(out, "echo"), "%s", out);
	/* an operator's verb is not */
	cr_assert_neq(NODED("node", "drain", "web1", "--master", addr,
			    AS("client-alice")), 0);
	cr_assert(strstr(err, "permission denied: operator on node:web1"),
		  "%s", err);
	/* a worker's certificate may not submit; nor a master's without a
	 * rule (its role alone allows everything) */
	cr_assert_eq(NODED("run", "--master", addr, AS("worker-web1"), "--",
			   "true"), 1);
	cr_assert(strstr(err, "permission denied"), "%s", err);
	cr_assert_eq(NODED("run", "--master", addr, AS("master-m1"),
			   "--node", "web1", "--", "true"), 1);
	cr_assert(strstr(err, "permission denied: task.submit on node:web1 "
			 "for master:m1"), "%s", err);
	/* native, one connection: the denied submit costs nothing else */
	{
		Noded__Frame f, *r;
		Noded__HelloRequest h;
		Noded__PingRequest pr;
		Noded__TaskSpec sp = NODED__TASK_SPEC__INIT;
		Noded__Command cmd = NODED__COMMAND__INIT;
		Noded__TaskListRequest lt = NODED__TASK_LIST_REQUEST__INIT;
		char *argv1[] = { "true" };

		ssl = tls_conn("client-alice", d.port, &fd);
		nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
		tls_send_frame(ssl, &f);
		r = tls_recv_frame(ssl);
		cr_assert_eq(r->body_case, NODED__FRAME__BODY_HELLO_REPLY);
		nd_frame_free(r, NULL);
		cmd.n_argv = 1;
		cmd.argv = argv1;
		sp.command = &cmd;
		sp.node = "db1";
		memset(&f, 0, sizeof(f));
		noded__frame__init(&f);
		f.id = 2;
		f.kind = NODED__FRAME_KIND__REQUEST;
		f.body_case = NODED__FRAME__BODY_SUBMIT;
		f.submit = &sp;
		tls_send_frame(ssl, &f);
		r = tls_recv_frame(ssl);
		cr_assert_eq(r->id, 2);
		cr_assert_eq(r->body_case, NODED__FRAME__BODY_ERROR, "%s",
			     nd_test_describe(r));
		cr_assert_eq(r->error->code,
			     NODED__ERROR_CODE__PERMISSION_DENIED);
		cr_assert(strstr(r->error->message, "task.submit on node:db1"),
			  "%s", r->error->message);
		nd_frame_free(r, NULL);
		noded__frame__init(&f);
		f.id = 3;
		f.kind = NODED__FRAME_KIND__REQUEST;
		f.body_case = NODED__FRAME__BODY_LIST_TASKS;
		f.list_tasks = &lt;
		tls_send_frame(ssl, &f);
		r = tls_recv_frame(ssl);
		cr_assert_eq(r->id, 3);
		cr_assert_eq(r->body_case, NODED__FRAME__BODY_TASK_LIST, "%s",
			     nd_test_describe(r));
		nd_frame_free(r, NULL);
		nd_test_frame_ping(&f, &pr, 4, "x", 1);
		tls_send_frame(ssl, &f);
		r = tls_recv_frame(ssl);
		cr_assert_eq(r->body_case, NODED__FRAME__BODY_PONG);
		nd_frame_free(r, NULL);
		SSL_free(ssl);
		close(fd);
	}
	/* HTTP: 403 naming the action; the connection goes on */
	ssl = https_open("client-alice", &fd);
	snprintf(req, sizeof(req), "POST /v1/tasks HTTP/1.1\r\nHost: x\r\n"
		 "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
	https_do(ssl, req, buf, sizeof(buf));
	cr_assert(strstr(buf, "HTTP/1.1 403"), "%s", buf);
	cr_assert(strstr(buf, "task.submit on node:db1"), "%s", buf);
	https_do(ssl, "GET /v1/tasks HTTP/1.1\r\nHost: x\r\n\r\n", buf,
		 sizeof(buf));
	cr_assert(strstr(buf, "HTTP/1.1 200"), "%s", buf);
	body = "{\"argv\":[\"true\"],\"node\":\"web1\"}";
	snprintf(req, sizeof(req), "POST /v1/tasks HTTP/1.1\r\nHost: x\r\n"
		 "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
	https_do(ssl, req, buf, sizeof(buf));
	cr_assert(strstr(buf, "HTTP/1.1 20"), "%s", buf);
	wait_log("api=http method=submit", 1);
	/* denials are logged at a bounded rate: 300 cost a few lines */
	body = "{\"argv\":[\"true\"],\"node\":\"db1\"}";
	snprintf(req, sizeof(req), "POST /v1/tasks HTTP/1.1\r\nHost: x\r\n"
		 "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
	for (i = 0; i < 300; i++) {
		https_do(ssl, req, buf, sizeof(buf));
		cr_assert(strstr(buf, "HTTP/1.1 403"), "%s", buf);
	}
	/* a second later the next one is logged, with the count */
	nd_test_sleep_ms(1100);
	https_do(ssl, req, buf, sizeof(buf));
	cr_assert(strstr(buf, "HTTP/1.1 403"), "%s", buf);
	SSL_free(ssl);
	close(fd);
	wait_log("api=http method=submit err=", 1);
	t = nd_test_memfd_text(master_err);
	for (i = 0, p = t; (p = strstr(p, "audit.denied")); p++)
		i++;
	cr_assert(i >= 2 && i < 10, "%d audit.denied lines: %s", i, t);
	p = strstr(t, "api=http method=submit err=");
	cr_assert(p && !strstr(p, "suppressed=0 suppressed_others=0"),
		  "no count of the lines left out: %s", t);
	/* the master is fine */
	cr_assert(nd_test_pid_alive(d.pid));
}

Test(acl, sighup_keeps_the_old_policy_when_the_new_is_bad)
{
	write_file(path("p.acl"), policy);
	master_start(path("p.acl"));
	wait_log("acl.loaded", 1);
	worker_start(0, "web1");
	worker_start(1, "db1");
	wait_nodes_alive();
	write_file(path("p.acl"), "allow client:alice node:* task.submit\n"
		   "allow client:alice * task.red\n");
	cr_assert_eq(kill(d.pid, SIGHUP), 0);
	wait_log("acl.reload_failed", 1);
	cr_assert(strstr(nd_test_memfd_text(master_err), "p.acl:2: unknown "
			 "action 'task.red'"), "%s",
		  nd_test_memfd_text(master_err));
	/* the old policy still holds: db1 refused, web1 and reads allowed */
	cr_assert_eq(NODED("run", "--master", addr, AS("client-alice"),
			   "--node", "db1", "--", "true"), 1);
	cr_assert(strstr(err, "permission denied: task.submit on node:db1"),
		  "stderr: %s", err);
	cr_assert_eq(NODED("run", "--master", addr, AS("client-alice"),
			   "--node", "web1", "--", "true"), 0, "%s", err);
	/* a good file is taken */
	write_file(path("p.acl"), "allow client:alice node:* "
		   "task.submit,task.read,node.read\n");
	cr_assert_eq(kill(d.pid, SIGHUP), 0);
	wait_log("acl.loaded", 2);
	cr_assert_eq(NODED("run", "--master", addr, AS("client-alice"),
			   "--node", "db1", "--", "echo", "on-db"), 0,
		     "%s", err);
	cr_assert(strstr(out, "on-db"), "%s", out);
}

Test(acl, bad_file_at_start_is_refused)
{
	char conf[256];

	write_file(path("bad.acl"), "allow client:alice node:web*\n");
	cr_assert_eq(NODED("master", "--listen", "127.0.0.1:0", "--acl",
			   path("bad.acl")), 2);
	cr_assert(strstr(err, "bad.acl:1: 'allow' wants three words"), "%s",
		  err);
	/* the same from the [master] section of a config file */
	snprintf(conf, sizeof(conf), "[master]\nacl = %s\n", path("bad.acl"));
	write_file(path("noded.conf"), conf);
	cr_assert_eq(NODED("master", "--listen", "127.0.0.1:0", "--config",
			   path("noded.conf")), 2);
	cr_assert(strstr(err, "bad.acl:1: 'allow' wants three words"), "%s",
		  err);
}

/* Sends req over plain HTTP to the master's --http port; the response. */
static const char *http_do(const char *req, char *buf, size_t size)
{
	int fd = nd_test_connect(http_port);
	size_t n = 0;
	ssize_t r;

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (n < size - 1 && (r = read(fd, buf + n, size - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(fd);
	return buf;
}

/* Without TLS: the subject is token:shared for a peer that proved the
 * --token-file token (native) or sent it (HTTP bearer). */
Test(acl, token_subject)
{
	static const char secret[] = "correct horse battery staple 42";
	const char *argv[] = {
		nd_test_bin(), "master", "--listen", "127.0.0.1:0",
		"--token-file", NULL, "--acl", NULL, "--http", "127.0.0.1:0",
		NULL,
	};
	char buf[4096], req[512];

	write_file(path("token"), secret);
	cr_assert_eq(chmod(path("token"), 0600), 0);
	write_file(path("p.acl"), "allow token:shared * task.read\n");
	argv[5] = path("token");
	argv[7] = path("p.acl");
	master_err = memfd_create("master-stderr", MFD_CLOEXEC);
	cr_assert(master_err >= 0);
	ND_CHECK(nd_test_daemon_start_err(&d, argv, master_err));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", d.port);
	http_port = nd_test_daemon_http_port(&d);
	cr_assert(http_port, "%s", nd_test_why);
	/* native: reads allowed, submits not */
	cr_assert_eq(NODED("tasks", "--master", addr, "--token-file",
			   path("token")), 0, "%s", err);
	cr_assert_eq(NODED("submit", "--master", addr, "--token-file",
			   path("token"), "--", "true"), 1);
	cr_assert(strstr(err, "permission denied: task.submit on * for "
			 "token:shared"), "%s", err);
	/* HTTP with the bearer token: the same */
	snprintf(req, sizeof(req), "GET /v1/tasks HTTP/1.1\r\nHost: x\r\n"
		 "Authorization: Bearer %s\r\nConnection: close\r\n\r\n", secret);
	cr_assert(strstr(http_do(req, buf, sizeof(buf)), "HTTP/1.1 200"),
		  "%s", buf);
	snprintf(req, sizeof(req), "POST /v1/tasks HTTP/1.1\r\nHost: x\r\n"
		 "Authorization: Bearer %s\r\nConnection: close\r\n"
		 "Content-Length: 14\r\n\r\n{\"argv\":[\"x\"]}", secret);
	http_do(req, buf, sizeof(buf));
	cr_assert(strstr(buf, "HTTP/1.1 403") &&
		  strstr(buf, "task.submit on * for token:shared"), "%s", buf);
	/* node.read is not given: /metrics is refused */
	snprintf(req, sizeof(req), "GET /metrics HTTP/1.1\r\nHost: x\r\n"
		 "Authorization: Bearer %s\r\nConnection: close\r\n\r\n", secret);
	http_do(req, buf, sizeof(buf));
	cr_assert(strstr(buf, "HTTP/1.1 403") &&
		  strstr(buf, "node.read on *"), "%s", buf);
}
