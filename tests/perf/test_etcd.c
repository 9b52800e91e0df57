/*
 * build/etcd-bench (perf/etcd_bench.cc) against a real etcd: every put it
 * counts is a key etcd holds (read back through etcd's own JSON gateway, so
 * the hand-encoded PutRequest is checked by etcd, not by us), its JSON has
 * noded-bench submit's shape, first-put waits for a member started after
 * it and gives up at its timeout when none serves, bad usage exits 2.
 *
 * etcd-bench is built only by `make bench` (it needs libgrpc++-dev and
 * etcd-server, scripts/deps.sh bench): where either is missing every test
 * here is skipped, so `make test` needs neither.
 * Every test bounds its waits and stops what it started by pid.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "harness.h"

#define ETCD_MS 30000

static pid_t etcd;
static char tmpdir[64];
static char ep[32], peer[32];
static char out[16384], err[16384];

static const char *etcd_bench(void)
{
	const char *b = getenv("ND_ETCD_BENCH");

	return b && b[0] ? b : "build/etcd-bench";
}

/* Skips the test unless etcd-bench and etcd (and curl) are here. */
static void need_etcd(void)
{
	const char *which[] = { "/bin/sh", "-c",
				"command -v etcd && command -v curl", NULL };

	if (access(etcd_bench(), X_OK))
		cr_skip_test("%s not built (make build/etcd-bench; needs "
			     "libgrpc++-dev)", etcd_bench());
	if (nd_test_run(which, NULL, 0, NULL, 0, ND_TEST_TIMEOUT_MS))
		cr_skip_test("etcd or curl not installed (scripts/deps.sh "
			     "bench)");
	/* made only now: a skipped test does not reach .fini */
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/noded-etcd-XXXXXX");
	cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

static void setup(void)
{
	etcd = 0;
	ep[0] = '\0';
	tmpdir[0] = '\0';
}

static void teardown(void)
{
	char cmd[160];

	if (etcd > 0)
		nd_test_kill_pid(etcd);
	if (!tmpdir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd))
		cr_log_warn("could not remove %s", tmpdir);
}

TestSuite(etcd, .init = setup, .fini = teardown, .timeout = 120);

/* One etcd member on free loopback ports (its client address ep when
 * already chosen), not yet waited for. */
static void etcd_spawn(void)
{
	char data[128], curl[64], purl[64], cluster[96];
	const char *argv[] = { "/bin/sh", "-c", "exec etcd \"$@\"", "etcd",
			       "--name", "e0", "--data-dir", data,
			       "--listen-client-urls", curl,
			       "--advertise-client-urls", curl,
			       "--listen-peer-urls", purl,
			       "--initial-advertise-peer-urls", purl,
			       "--initial-cluster", cluster,
			       "--logger", "zap", "--log-level", "error",
			       NULL };

	if (!ep[0])
		snprintf(ep, sizeof(ep), "127.0.0.1:%d", nd_test_free_port());
	snprintf(peer, sizeof(peer), "127.0.0.1:%d", nd_test_free_port());
	snprintf(data, sizeof(data), "%s/e0", tmpdir);
	snprintf(curl, sizeof(curl), "http://%s", ep);
	snprintf(purl, sizeof(purl), "http://%s", peer);
	snprintf(cluster, sizeof(cluster), "e0=%s", purl);
	etcd = nd_test_spawn(argv, -1, -1, -1);
	cr_assert(etcd > 0, "starting etcd: %s", nd_test_why);
}

/* Runs curl with args; its stdout in out; asserts it exits 0. */
static int curl(const char *const args[])
{
	const char *argv[16] = { "/bin/sh", "-c", "exec curl \"$@\"", "curl",
				 "-s", "-m", "2" };
	size_t n = 7;

	for (size_t i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return nd_test_run(argv, out, sizeof(out), NULL, 0, ETCD_MS);
}

static void etcd_wait_healthy(void)
{
	char url[64];
	int64_t deadline = nd_test_now_ms() + ETCD_MS;

	snprintf(url, sizeof(url), "http://%s/health", ep);
	while (nd_test_now_ms() < deadline) {
		if (!curl((const char *const[]){ url, NULL }) &&
		    strstr(out, "\"health\":\"true\""))
			return;
		cr_assert(nd_test_pid_alive(etcd), "etcd exited");
		nd_test_sleep_ms(100);
	}
	cr_assert_fail("etcd not healthy within %d ms", ETCD_MS);
}

static int run_bench(const char *const args[])
{
	const char *argv[24] = { etcd_bench() };
	size_t n = 1;

	for (size_t i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return nd_test_run(argv, out, sizeof(out), err, sizeof(err), ETCD_MS);
}

#define RUN_BENCH(...) run_bench((const char *const[]){ __VA_ARGS__, NULL })

Test(etcd, every_counted_put_is_a_key_etcd_holds)
{
	json_error_t je;
	json_t *j;
	char url[96];
	int st;

	need_etcd();
	etcd_spawn();
	etcd_wait_healthy();
	st = RUN_BENCH("put", "--endpoints", ep, "--conns", "4", "--count",
		       "250", "--duration", "30", "--json");
	cr_assert(st == 0, "etcd-bench put exited %d: %s %s", st, out, err);
	j = json_loads(out, 0, &je);
	cr_assert(j, "not JSON (%s): %s", je.text, out);
	cr_assert(!strcmp(jstr(j, "bench"), "etcd-put") &&
			  jint(j, "requests") == 250 && jint(j, "errors") == 0 &&
			  jint(j, "concurrency") == 4 &&
			  jint(j, "p99_us") >= jint(j, "p50_us") &&
			  jint(j, "p50_us") > 0 &&
			  json_real_value(json_object_get(j, "per_s")) > 0,
		  "%s", out);
	json_decref(j);

	/* keys in ["noded-bench/", "noded-bench0"), counted by etcd */
	snprintf(url, sizeof(url), "http://%s/v3/kv/range", ep);
	cr_assert_eq(curl((const char *const[]){ "-X", "POST", url, "-d",
		"{\"key\":\"bm9kZWQtYmVuY2gv\",\"range_end\":"
		"\"bm9kZWQtYmVuY2gw\",\"count_only\":true}", NULL }), 0);
	cr_assert(strstr(out, "\"count\":\"250\""),
		  "etcd does not hold the 250 keys: %s", out);
}

Test(etcd, first_put_waits_for_a_member_started_after_it)
{
	struct timespec ts;
	char since[32];
	const char *argv[12];
	pid_t probe;
	int ofd = memfd_create("out", 0), st;
	ssize_t n;

	need_etcd();
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(since, sizeof(since), "%lld%09ld", (long long)ts.tv_sec,
		 ts.tv_nsec);
	/* the ports are chosen first, the probe started, then etcd */
	snprintf(ep, sizeof(ep), "127.0.0.1:%d", nd_test_free_port());
	argv[0] = etcd_bench();
	argv[1] = "first-put";
	argv[2] = "--endpoints";
	argv[3] = ep;
	argv[4] = "--since-ns";
	argv[5] = since;
	argv[6] = "--timeout";
	argv[7] = "60";
	argv[8] = NULL;
	probe = nd_test_spawn(argv, -1, ofd, -1);
	cr_assert(probe > 0, "%s", nd_test_why);
	nd_test_sleep_ms(300);
	etcd_spawn();
	st = nd_test_wait_pid(probe, 90000);
	cr_assert(st == 0, "first-put exited %d", st);
	n = pread(ofd, out, sizeof(out) - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	cr_assert(strstr(out, "\"bench\":\"etcd-first-put\""), "%s", out);
	cr_assert(atof(strstr(out, "\"ms\":") + 5) >= 300,
		  "accepted before etcd started: %s", out);
}

Test(etcd, first_put_gives_up_at_its_timeout)
{
	char addr[32];
	int st;

	need_etcd();
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", nd_test_free_port());
	st = RUN_BENCH("first-put", "--endpoints", addr, "--since-ns", "1",
		       "--timeout", "0.5");
	cr_assert(st == 1, "exited %d, want 1: %s %s", st, out, err);
	cr_assert(strstr(err, "no put accepted within 0.5 s"), "%s", err);
}

Test(etcd, bad_usage_exits_2)
{
	static const char *const bad[][6] = {
		{ "put" },
		{ "put", "--endpoints", "127.0.0.1:1", "--conns", "0" },
		{ "put", "--endpoints", "127.0.0.1:1", "--count", "x" },
		{ "first-put", "--endpoints", "127.0.0.1:1" },
		{ "first-put", "--endpoints", "127.0.0.1:1", "--since-ns", "x" },
		{ "get", "--endpoints", "127.0.0.1:1" },
	};

	need_etcd();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int st = run_bench(bad[i]);

		cr_assert(st == 2, "case %zu exited %d, want 2: %s", i, st,
			  err);
		cr_assert(err[0], "case %zu: no message", i);
	}
}
