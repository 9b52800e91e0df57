/*
 * A partitioned leader, on a network the test makes: three network
 * namespaces, each with one master, joined by veth pairs to a bridge in
 * the test's namespace (the test reaches every master through it). The
 * leader's link is cut: the other two elect a leader and take writes; the
 * cut-off one steps down and acknowledges no write; healed, it follows.
 * Skipped where network namespaces cannot be made (not root).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli.h"
#include "harness.h"
#include "noded/client.h"

#define N 3
#define TOKEN "partition-test-token-0123456789"

static pid_t pids[N];
static int errfd[N] = { -1, -1, -1 };
static char tmpdir[64], token[128], ns[N][24], veth[N][16], br[16];
static char addr[N][32], raft[N][32], list[128], net[16];
static bool made;
static struct nd_test_cli R;

/* Runs a shell command; its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void net_down(void)
{
	for (int i = 0; i < N; i++) {
		sh("ip netns del %s 2>/dev/null", ns[i]);
		sh("ip link del %s 2>/dev/null", veth[i]);
	}
	sh("ip link del %s 2>/dev/null", br);
}

/* The bridge and the three namespaces; false when they cannot be made. */
static bool net_up(void)
{
	unsigned p = (unsigned)getpid();

	snprintf(br, sizeof(br), "ndb%u", p % 100000);
	snprintf(net, sizeof(net), "10.213.%u", p % 250);
	if (sh("ip link add %s type bridge 2>/dev/null", br))
		return false;
	made = true;
	if (sh("ip addr add %s.1/24 dev %s && ip link set %s up", net, br, br))
		return false;
	for (int i = 0; i < N; i++) {
		snprintf(ns[i], sizeof(ns[i]), "ndp%u-%d", p, i);
		snprintf(veth[i], sizeof(veth[i]), "ndv%u%d", p % 100000, i);
		snprintf(addr[i], sizeof(addr[i]), "%s.%d:7070", net, i + 2);
		snprintf(raft[i], sizeof(raft[i]), "%s.%d:7170", net, i + 2);
		if (sh("ip netns add %s && ip link add %s type veth peer name "
		       "eth0 netns %s && ip link set %s master %s && ip link "
		       "set %s up && ip -n %s addr add %s.%d/24 dev eth0 && "
		       "ip -n %s link set eth0 up && ip -n %s link set lo up",
		       ns[i], veth[i], ns[i], veth[i], br, veth[i], ns[i], net,
		       i + 2, ns[i], ns[i]))
			return false;
	}
	snprintf(list, sizeof(list), "%s,%s,%s", addr[0], addr[1], addr[2]);
	return true;
}

static void setup(void)
{
	int fd;

	memset(pids, 0, sizeof(pids));
	made = false;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/noded-part-XXXXXX");
	cr_assert(mkdtemp(tmpdir));
	snprintf(token, sizeof(token), "%s/token", tmpdir);
	fd = open(token, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	cr_assert(fd >= 0 && write(fd, TOKEN "\n", sizeof(TOKEN)) ==
			     (ssize_t)sizeof(TOKEN));
	close(fd);
	setenv("NODED_TOKEN_FILE", token, 1);
}

static void teardown(void)
{
	for (int i = 0; i < N; i++)
		if (pids[i] > 0)
			nd_test_kill_pid(pids[i]);
	if (made)
		net_down();
	sh("rm -rf '%s'", tmpdir);
}

TestSuite(partition, .init = setup, .fini = teardown, .timeout = 180);

static const struct nd_client_opts opts = {
	.token = (const uint8_t *)TOKEN, .token_len = sizeof(TOKEN) - 1,
	.timeout_ms = 1000,
};

/* ip(8), for running a master in a namespace (exec takes no PATH). */
static const char *ip_path(void)
{
	return access("/usr/sbin/ip", X_OK) ? "/sbin/ip" : "/usr/sbin/ip";
}

/* Master i in its namespace: the first bootstraps, the others join. */
static void master_start(int i)
{
	char dir[128];
	const char *argv[24] = { ip_path(), "netns", "exec", ns[i],
				 nd_test_bin(), "master", "--listen", addr[i],
				 "--data-dir", dir, "--raft-listen", raft[i],
				 "--token-file", token };
	int n = 14, null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	snprintf(dir, sizeof(dir), "%s/m%d", tmpdir, i);
	if (i) {
		argv[n++] = "--join";
		argv[n++] = addr[0];
	}
	argv[n] = NULL;
	if (errfd[i] < 0)
		errfd[i] = memfd_create("master-stderr", MFD_CLOEXEC);
	pids[i] = nd_test_spawn(argv, null_fd, null_fd, errfd[i]);
	close(null_fd);
	cr_assert(pids[i] > 0);
}

/* Does master i say it leads (false: it does not, or cannot be asked)? */
static bool leads(int i)
{
	Noded__Frame f = NODED__FRAME__INIT, *reply = NULL;
	Noded__LeaderRequest lr = NODED__LEADER_REQUEST__INIT;
	struct nd_client *c;
	bool yes = false;

	f.body_case = NODED__FRAME__BODY_LEADER;
	f.leader = &lr;
	if (nd_client_connect(&c, addr[i], &opts))
		return false;
	if (!nd_client_call(c, &f, &reply, 1000))
		yes = reply->leader_info->is_leader;
	nd_frame_free(reply, NULL);
	nd_client_close(c);
	return yes;
}

/* The master that leads with every voter in, waited for: its index. */
static int leader_of(int skip, int ms)
{
	for (int64_t end = nd_test_now_ms() + ms; nd_test_now_ms() < end;) {
		for (int i = 0; i < N; i++)
			if (i != skip && leads(i))
				return i;
		nd_test_sleep_ms(100);
	}
	return -1;
}

static uint64_t submit(const char *master)
{
	const char *argv[] = { "submit", "--node", "absent", "--wait-for-node",
			       "--", "true", NULL };

	nd_test_cli_run(&R, master, ND_TEST_CLI_MS, argv);
	EXPECT_STATUS(&R, 0);
	return strtoull(R.out, NULL, 10);
}

Test(partition, a_cut_off_leader_steps_down_and_acknowledges_no_write)
{
	char cmd[600];
	int lead, next, st;
	uint64_t a, b;
	json_t *arr;
	const char *tasks[] = { "tasks", "--json", NULL };

	if (getuid() || !net_up()) {
		cr_skip_test("cannot make network namespaces here (needs "
			     "root and ip netns)");
		return;
	}
	master_start(0);
	cr_assert(leader_of(-1, 15000) == 0, "no first leader: %s",
		  nd_test_memfd_text(errfd[0]));
	for (int i = 1; i < N; i++)
		master_start(i);
	nd_test_sleep_ms(3000); /* both join */
	a = submit(list);
	lead = leader_of(-1, 5000);
	cr_assert(lead >= 0);

	/* cut its link: the others elect one of them */
	cr_assert_eq(sh("ip link set %s down", veth[lead]), 0);
	next = leader_of(lead, 20000);
	cr_assert(next >= 0 && next != lead, "no leader among the majority");
	b = submit(addr[next]);
	cr_assert(b > a);
	/* the cut-off one, asked from inside its namespace, acknowledges
	 * nothing (it cannot commit; it steps down) */
	snprintf(cmd, sizeof(cmd), "ip netns exec %s '%s' submit --master %s "
		 "--token-file %s --node absent --wait-for-node -- true "
		 ">/dev/null 2>&1", ns[lead], nd_test_bin(), addr[lead], token);
	st = system(cmd);
	cr_assert_neq(st, 0, "a partitioned minority acknowledged a write");

	/* healed: it follows, and the cluster has exactly what it said */
	cr_assert_eq(sh("ip link set %s up", veth[lead]), 0);
	for (int i = 0;; i++) {
		if (!leads(lead) && leader_of(lead, 1000) >= 0)
			break;
		cr_assert(i < 30, "the old leader did not step down");
	}
	nd_test_cli_run(&R, list, ND_TEST_CLI_MS, tasks);
	EXPECT_STATUS(&R, 0);
	arr = json_loads(R.out, 0, NULL);
	cr_assert_eq(json_array_size(arr), 2, "%s", R.out);
	json_decref(arr);
}
