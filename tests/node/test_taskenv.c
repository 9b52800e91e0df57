/*
 * A task's environment, user and limits end to end (README, "The task's
 * environment, user and limits"): a real master and real `noded worker`
 * processes on loopback, driven through the real CLI. What a task sees is
 * what it prints (`env`, `id -un`, its cgroup's files).
 *
 * The limit tests that need a cgroup v2 controller (memory, cpu, pids)
 * run where the worker can use it (offered to the root cgroup, which the
 * worker is in) and are skipped, saying so, where it cannot (a host that
 * keeps it in a cgroup v1 hierarchy, or a worker in a cgroup that holds
 * processes); the refusal there is tested instead (limits_refused_where_
 * the_controller_is_missing), so either way a test covers the host it
 * runs on.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "harness.h"

#define MAX_WORKERS 2
/* A variable of the worker's environment that no task may see unless it
 * asks for the worker's environment. */
#define SECRET_KEY "ND_TEST_WORKER_SECRET"
#define SECRET_VAL "hunter2-not-for-tasks"

static struct nd_test_daemon d;
static char master[32];
static pid_t workers[MAX_WORKERS];
static char tmpdir[64];
static struct nd_test_cli R;

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	memset(workers, 0, sizeof(workers));
	master[0] = '\0';
	tmpdir[0] = '\0';
}

static void teardown(void)
{
	for (int i = 0; i < MAX_WORKERS; i++)
		if (workers[i] > 0)
			kill(workers[i], SIGTERM);
	for (int i = 0; i < MAX_WORKERS; i++) {
		if (workers[i] <= 0)
			continue;
		if (nd_test_wait_pid(workers[i], ND_TEST_TIMEOUT_MS) ==
		    -ETIMEDOUT)
			nd_test_kill_pid(workers[i]);
		workers[i] = 0;
	}
	nd_test_daemon_stop(&d);
	unsetenv(SECRET_KEY);
	unsetenv("NODED_CGROUP");
	if (tmpdir[0]) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "test_taskenv: could not remove %s\n",
				tmpdir);
	}
}

TestSuite(taskenv, .init = setup, .fini = teardown, .timeout = 60);

/* ---- daemons ---- */

static void master_start(void)
{
	DAEMON_START(&d);
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
}

/* Polls `nodes --json` until node name is ALIVE with its slots reported. */
static void wait_alive(const char *name)
{
	int64_t end = nd_test_now_ms() + 10000;

	for (;;) {
		json_t *arr = CLI_JSON("nodes", "--json"), *n;
		bool ok = false;
		size_t i;

		json_array_foreach(arr, i, n)
			if (!strcmp(jstr(n, "name"), name) &&
			    !strcmp(jstr(n, "state"), "ALIVE") &&
			    jint(n, "slots_total"))
				ok = true;
		json_decref(arr);
		if (ok)
			return;
		cr_assert(nd_test_now_ms() < end, "node %s not ALIVE in 10 s",
			  name);
		nd_test_sleep_ms(50);
	}
}

/*
 * Starts worker i named name with the test's environment plus SECRET_KEY
 * (and NODED_CGROUP=off for tree mode when !cgroup); prefix (NULL: none)
 * runs before it, e.g. setpriv to drop root. Waits until it is ALIVE.
 */
static void worker_start(int i, const char *name, bool cgroup,
			 const char *const prefix[], const char *state_dir)
{
	const char *argv[24];
	size_t n = 0;
	int null_fd = -1;

	cr_assert(i >= 0 && i < MAX_WORKERS && workers[i] == 0);
	for (; prefix && prefix[n]; n++)
		argv[n] = prefix[n];
	argv[n++] = nd_test_bin();
	argv[n++] = "worker";
	argv[n++] = "--master";
	argv[n++] = master;
	argv[n++] = "--name";
	argv[n++] = name;
	argv[n++] = "--slots";
	argv[n++] = "2";
	if (state_dir) {
		argv[n++] = "--state-dir";
		argv[n++] = state_dir;
	}
	argv[n] = NULL;
	setenv(SECRET_KEY, SECRET_VAL, 1);
	if (!cgroup)
		setenv("NODED_CGROUP", "off", 1);
	if (!getenv("ND_TEST_VERBOSE"))
		null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	workers[i] = nd_test_spawn(argv, null_fd, null_fd, null_fd);
	if (null_fd >= 0)
		close(null_fd);
	unsetenv("NODED_CGROUP");
	unsetenv(SECRET_KEY);
	cr_assert(workers[i] > 0, "starting worker %s: %s", name, nd_test_why);
	wait_alive(name);
}

/* ---- what a task printed ---- */

/* The value of KEY in `env` output (static copy), or NULL when absent. */
static const char *env_get(const char *out, const char *key)
{
	static char val[4][1024];
	static unsigned next;
	size_t klen = strlen(key);

	for (const char *p = out; *p; p += strcspn(p, "\n"), p += *p == '\n') {
		if (!strncmp(p, key, klen) && p[klen] == '=') {
			char *v = val[next++ % 4];
			size_t n = strcspn(p + klen + 1, "\n");

			snprintf(v, sizeof(val[0]), "%.*s", (int)n, p + klen + 1);
			return v;
		}
	}
	return NULL;
}

#define EXPECT_ENV(out, key, want)                                           \
	do {                                                                 \
		const char *v_ = env_get((out), (key));                      \
		cr_assert(v_ && !strcmp(v_, (want)),                         \
			  "%s is '%s' in the task's environment, want '%s' "  \
			  "(env: %.2000s)", (key), v_ ? v_ : "(absent)",      \
			  (want), (out));                                    \
	} while (0)

/* The newest task's record (caller decrefs). */
static json_t *latest_task(void)
{
	json_t *arr = CLI_JSON("tasks", "--json", "--limit", "1"), *t;

	cr_assert(json_is_array(arr) && json_array_size(arr) == 1,
		  "tasks --json --limit 1: %s", jdump(arr));
	t = json_incref(json_array_get(arr, 0));
	json_decref(arr);
	return t;
}

/* The last `run` ended FAILED with a reason holding want (in its record
 * and in what run printed). */
static void expect_failed_with(const char *want)
{
	json_t *t = latest_task();

	cr_assert(R.st != 0, "`%s` exited 0; stdout: %s", R.cmd, R.out);
	cr_assert(!strcmp(jstr(t, "state"), "FAILED") &&
			  strstr(jstr(t, "reason"), want),
		  "want FAILED with a reason holding \"%s\", got %s", want,
		  jdump(t));
	cr_assert(strstr(R.err, want), "`%s` did not say \"%s\": %s", R.cmd,
		  want, R.err);
	json_decref(t);
}

/* The worker's base environment, as the README lists it, for uid's user. */
static void expect_base_env(const char *out, const char *user,
			    const char *home, const char *shell)
{
	EXPECT_ENV(out, "PATH",
		   "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	EXPECT_ENV(out, "LANG", "C.UTF-8");
	EXPECT_ENV(out, "HOME", home);
	EXPECT_ENV(out, "USER", user);
	EXPECT_ENV(out, "LOGNAME", user);
	EXPECT_ENV(out, "SHELL", shell);
}

/* ---- the environment ---- */

/*
 * A task gets the base environment and its NODED_* variables, not the
 * worker's: a secret in the worker's environment does not reach it.
 */
Test(taskenv, base_environment_not_the_workers)
{
	struct passwd *pw = getpwuid(geteuid());
	json_t *t;
	char id[64];
	size_t nvars = 0;

	cr_assert(pw, "no passwd entry for our uid");
	master_start();
	worker_start(0, "w1", true, NULL, NULL);

	CLI(&R, "run", "--", "env");
	EXPECT_STATUS(&R, 0);
	cr_assert(!env_get(R.out, SECRET_KEY),
		  "the worker's %s reached the task: %s", SECRET_KEY, R.out);
	expect_base_env(R.out, pw->pw_name, pw->pw_dir,
			pw->pw_shell[0] ? pw->pw_shell : "/bin/sh");
	t = latest_task();
	snprintf(id, sizeof(id), "%lld", jint(t, "id"));
	json_decref(t);
	EXPECT_ENV(R.out, "NODED_TASK_ID", id);
	EXPECT_ENV(R.out, "NODED_JOB_ID", "0");
	EXPECT_ENV(R.out, "NODED_NODE", "w1");
	EXPECT_ENV(R.out, "NODED_ATTEMPT", "1");
	/* nothing else but the tree-mode tag */
	for (const char *p = R.out; *p; p += strcspn(p, "\n"),
	     p += *p == '\n')
		nvars++;
	cr_assert(nvars == 11, "the task saw %zu variables, want 11: %s",
		  nvars, R.out);

	/* a fan-out's tasks see their job */
	CLI(&R, "run", "--all", "--", "sh", "-c",
	    "echo \"$NODED_JOB_ID $NODED_TASK_ID\"");
	EXPECT_STATUS(&R, 0);
	t = latest_task();
	snprintf(id, sizeof(id), "w1: %lld %lld\n", jint(t, "job_id"),
		 jint(t, "id"));
	cr_assert(jint(t, "job_id") > 0, "no job id: %s", jdump(t));
	json_decref(t);
	EXPECT_OUT(&R, id);
	STOP_OK(&d);
}

/* --inherit-env gives the worker's environment back; --env still wins
 * over it, and the NODED_* variables over --env. */
Test(taskenv, inherit_env_restores_the_workers)
{
	master_start();
	worker_start(0, "w1", true, NULL, NULL);

	CLI(&R, "run", "--inherit-env", "--env", "LANG=xx_YY.UTF-8", "--env",
	    "NODED_NODE=forged", "--", "env");
	EXPECT_STATUS(&R, 0);
	EXPECT_ENV(R.out, SECRET_KEY, SECRET_VAL);
	EXPECT_ENV(R.out, "LANG", "xx_YY.UTF-8");
	EXPECT_ENV(R.out, "NODED_NODE", "w1");
	STOP_OK(&d);
}

/* --env overrides the base, PATH included: the command is looked for in
 * the PATH it will see, in either kill mode. */
Test(taskenv, env_overrides_the_base_and_its_path_is_searched)
{
	master_start();
	worker_start(0, "w1", true, NULL, NULL);
	worker_start(1, "w2", false, NULL, NULL);

	for (int i = 0; i < 2; i++) {
		const char *node = i ? "w2" : "w1";

		CLI(&R, "run", "--node", node, "--env", "HOME=/elsewhere",
		    "--env", "LANG=C", "--", "env");
		EXPECT_STATUS(&R, 0);
		EXPECT_ENV(R.out, "HOME", "/elsewhere");
		EXPECT_ENV(R.out, "LANG", "C");
		CLI(&R, "run", "--node", node, "--env", "PATH=/nonexistent",
		    "--", "env");
		EXPECT_STATUS(&R, 127);
		expect_failed_with("command not found: env");
	}
	STOP_OK(&d);
}

/* ---- the user ---- */

/* --user runs the command as that user, with its groups, home and shell,
 * in cgroup and tree mode alike; an unknown user is a clear failure. */
Test(taskenv, user_runs_the_command_as_that_user)
{
	struct passwd *pw;
	char shell[256], home[256];

	if (geteuid() != 0)
		cr_skip_test("needs root: the worker switches users as root");
	pw = getpwnam("nobody");
	cr_assert(pw, "no user nobody here");
	snprintf(home, sizeof(home), "%s", pw->pw_dir);
	snprintf(shell, sizeof(shell), "%s", pw->pw_shell);
	master_start();
	worker_start(0, "w1", true, NULL, NULL);
	worker_start(1, "w2", false, NULL, NULL);

	for (int i = 0; i < 2; i++) {
		const char *node = i ? "w2" : "w1";

		CLI(&R, "run", "--node", node, "--user", "nobody", "--", "id",
		    "-un");
		EXPECT_STATUS(&R, 0);
		EXPECT_OUT(&R, "nobody\n");
		CLI(&R, "run", "--node", node, "--user", "nobody", "--", "sh",
		    "-c", "id -u; id -G; env");
		EXPECT_STATUS(&R, 0);
		cr_assert(!strncmp(R.out, "65534\n", 6) ||
				  (unsigned)atoi(R.out) == pw->pw_uid,
			  "uid: %s", R.out);
		cr_assert(!strstr(R.out, "\n0\n") && !strstr(R.out, " 0\n") &&
				  !strstr(R.out, " 0 "),
			  "root's group kept: %s", R.out);
		expect_base_env(R.out, "nobody", home, shell);
		/* the cwd is entered as the user */
		CLI(&R, "run", "--node", node, "--user", "nobody", "--cwd",
		    "/root", "--", "true");
		expect_failed_with("cwd /root: Permission denied");
		CLI(&R, "run", "--node", node, "--user", "nd-no-such-user",
		    "--", "true");
		EXPECT_STATUS(&R, 126);
		expect_failed_with("no user 'nd-no-such-user' on this node");
	}
	STOP_OK(&d);
}

/* A worker that is not root cannot run a command as another user: the task
 * fails saying so (and runs as itself when it names itself). */
Test(taskenv, user_refused_when_the_worker_is_not_root)
{
	const char *const drop[] = { "/usr/bin/setpriv", "--reuid=nobody",
				     "--regid=nogroup", "--clear-groups",
				     NULL };

	if (geteuid() != 0 || access(drop[0], X_OK))
		cr_skip_test("needs root and setpriv to start a worker as "
			     "nobody");
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/nd-taskenv-XXXXXX");
	cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
	cr_assert(!chmod(tmpdir, 0777));
	master_start();
	worker_start(0, "w1", true, drop, tmpdir);

	CLI(&R, "run", "--user", "root", "--", "true");
	EXPECT_STATUS(&R, 126);
	expect_failed_with("cannot run as user 'root': the worker runs as "
			   "'nobody'");
	CLI(&R, "run", "--user", "nobody", "--", "id", "-un");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "nobody\n");
	STOP_OK(&d);
}

/* ---- limits ---- */

/*
 * Whether the cgroup v2 controller name is offered to our cgroup (the
 * worker's, as we start it): listed in cgroup.controllers of our cgroup
 * v2 directory; *root (may be NULL) tells whether that is the root
 * cgroup. False without a cgroup v2.
 */
static bool controller_offered(const char *name, bool *root)
{
	char line[4096], cg[PATH_MAX] = "", dir[2 * PATH_MAX] = "", buf[512];
	FILE *f = fopen("/proc/self/cgroup", "re");
	ssize_t n;
	int fd;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(cg, sizeof(cg), "%s", line + 3);
		}
	fclose(f);
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		char mroot[PATH_MAX], mnt[PATH_MAX];
		const char *sep = strstr(line, " - cgroup2 ");

		if (!sep || sscanf(line, "%*s %*s %*s %4095s %4095s", mroot,
				   mnt) != 2)
			continue;
		if (!strcmp(mroot, "/"))
			snprintf(dir, sizeof(dir), "%s%s", mnt,
				 strcmp(cg, "/") ? cg : "");
		else if (!strncmp(cg, mroot, strlen(mroot)))
			snprintf(dir, sizeof(dir), "%s%s", mnt,
				 cg + strlen(mroot));
	}
	fclose(f);
	if (root)
		*root = !strcmp(cg, "/");
	if (!dir[0] || !cg[0])
		return false;
	strncat(dir, "/cgroup.controllers", sizeof(dir) - strlen(dir) - 1);
	fd = open(dir, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	for (char *w = strtok(buf, " \n"); w; w = strtok(NULL, " \n"))
		if (!strcmp(w, name))
			return true;
	return false;
}

/* Whether a worker we start can limit with controller name: it is offered
 * to our cgroup and that is the root cgroup (any other holds processes,
 * ours, so it cannot enable controllers for its children). */
static bool controller_here(const char *name)
{
	bool root = false;

	return controller_offered(name, &root) && root;
}

/* Limits where the worker makes no cgroups (NODED_CGROUP=off): each is
 * refused, the task FAILED with the reason, never run unlimited. */
Test(taskenv, limits_refused_without_a_cgroup)
{
	static const char *const opts[][2] = {
		{ "--memory", "64M" }, { "--cpus", "0.5" }, { "--pids", "16" },
	};

	master_start();
	worker_start(0, "w1", false, NULL, NULL);
	for (size_t i = 0; i < 3; i++) {
		CLI(&R, "run", opts[i][0], opts[i][1], "--", "sh", "-c",
		    "echo ran");
		EXPECT_STATUS(&R, 126);
		cr_assert(!strstr(R.out, "ran"), "it ran: %s", R.out);
		expect_failed_with("cannot apply its limits (memory, cpus, "
				   "pids): the worker runs tasks without "
				   "cgroups (NODED_CGROUP=off)");
	}
	STOP_OK(&d);
}

/* A worker that sees no cgroup v2 (its mount namespace has none): limits
 * are refused saying so. */
Test(taskenv, limits_refused_without_a_cgroup_v2)
{
	const char *const no_cgroup2[] = {
		"/usr/bin/unshare", "--mount", "--propagation", "private",
		"/bin/sh", "-c",
		"for m in $(awk '{ for (i = 1; i < NF; i++) if ($i == \"-\" "
		"&& $(i + 1) == \"cgroup2\") print $5 }' /proc/self/mountinfo);"
		" do umount -l \"$m\" || exit 1; done; exec \"$@\"", "sh",
		NULL,
	};

	if (geteuid() != 0 || access(no_cgroup2[0], X_OK))
		cr_skip_test("needs root and unshare for a mount namespace "
			     "without cgroup v2");
	master_start();
	worker_start(0, "w1", true, no_cgroup2, NULL);
	CLI(&R, "run", "--pids", "16", "--", "sh", "-c", "echo ran");
	EXPECT_STATUS(&R, 126);
	cr_assert(!strstr(R.out, "ran"), "it ran: %s", R.out);
	expect_failed_with("cannot apply its limits (memory, cpus, pids): the "
			   "worker cannot make cgroups: no cgroup v2 mounted");
	/* what needs no cgroup still runs */
	CLI(&R, "run", "--", "sh", "-c", "echo ran");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "ran\n");
	STOP_OK(&d);
}

/* A host whose cgroup v2 lacks a controller (kept by cgroup v1), or where
 * the worker's cgroup holds processes and is not the root: a limit that
 * needs it is refused with the reason; skipped where all can be used. */
Test(taskenv, limits_refused_where_the_controller_is_missing)
{
	static const char *const opts[][3] = {
		{ "--memory", "64M", "memory" },
		{ "--cpus", "0.5", "cpu" },
		{ "--pids", "16", "pids" },
	};
	char want[128];
	int tried = 0;

	if (geteuid() != 0)
		cr_skip_test("needs root: the worker's cgroups");
	master_start();
	worker_start(0, "w1", true, NULL, NULL);
	for (size_t i = 0; i < 3; i++) {
		if (controller_here(opts[i][2]))
			continue;
		tried++;
		CLI(&R, "run", opts[i][0], opts[i][1], "--", "sh", "-c",
		    "echo ran");
		EXPECT_STATUS(&R, 126);
		cr_assert(!strstr(R.out, "ran"), "it ran: %s", R.out);
		if (controller_offered(opts[i][2], NULL))
			snprintf(want, sizeof(want), "cannot apply its limits: "
				 "cannot enable the %s controller for the "
				 "worker's cgroup", opts[i][2]);
		else
			snprintf(want, sizeof(want), "cannot apply its limits: "
				 "the %s controller is not available",
				 opts[i][2]);
		expect_failed_with(want);
	}
	STOP_OK(&d);
	if (!tried)
		cr_skip_test("every controller can be used here");
}

/* --memory: a task that allocates past it is killed by the kernel in its
 * cgroup, FAILED with a reason saying so; one under it runs. */
Test(taskenv, memory_limit_kills_past_it)
{
	json_t *t;

	if (geteuid() != 0 || !controller_here("memory"))
		cr_skip_test("needs root, and the memory controller in the "
			     "root cgroup v2, which the worker is in");
	master_start();
	worker_start(0, "w1", true, NULL, NULL);

	/* tail -n 1 keeps a line without a newline whole: 256 MiB of it */
	CLI(&R, "run", "--memory", "32M", "--", "sh", "-c",
	    "head -c 268435456 /dev/zero | tail -n 1 | wc -c");
	cr_assert(R.st != 0, "it ran to the end under 32M: %s", R.out);
	t = latest_task();
	cr_assert(!strcmp(jstr(t, "state"), "FAILED") &&
			  strstr(jstr(t, "reason"), "out of memory: killed by "
					 "the kernel at its memory limit "
					 "(33554432 bytes)"),
		  "want FAILED, out of memory: %s", jdump(t));
	json_decref(t);
	CLI(&R, "run", "--memory", "32M", "--", "sh", "-c",
	    "d=$(grep '^0::' /proc/self/cgroup | cut -d: -f3); "
	    "cat /sys/fs/cgroup$d/memory.max 2>/dev/null || "
	    "cat /sys/fs/cgroup/unified$d/memory.max");
	EXPECT_STATUS(&R, 0);
	EXPECT_OUT(&R, "33554432\n");
	STOP_OK(&d);
}

/* --pids: forks past it are refused (the shell says so), and the reason
 * counts them; --cpus lands in cpu.max. */
Test(taskenv, pids_limit_refuses_forks)
{
	json_t *t;

	if (geteuid() != 0 || !controller_here("pids"))
		cr_skip_test("needs root, and the pids controller in the "
			     "root cgroup v2, which the worker is in");
	master_start();
	worker_start(0, "w1", true, NULL, NULL);

	CLI(&R, "run", "--pids", "4", "--", "sh", "-c",
	    "for i in 1 2 3 4 5 6 7 8; do sleep 3 & done; wait; exit 3");
	cr_assert(R.st != 0, "all forks worked under --pids 4: %s", R.out);
	t = latest_task();
	cr_assert(!strcmp(jstr(t, "state"), "FAILED") &&
			  strstr(jstr(t, "reason"), "refused at its pids "
					 "limit (4)"),
		  "want FAILED, forks refused: %s", jdump(t));
	json_decref(t);
	if (controller_here("cpu")) {
		CLI(&R, "run", "--cpus", "0.25", "--", "sh", "-c",
		    "d=$(grep '^0::' /proc/self/cgroup | cut -d: -f3); "
		    "cat /sys/fs/cgroup$d/cpu.max 2>/dev/null || "
		    "cat /sys/fs/cgroup/unified$d/cpu.max");
		EXPECT_STATUS(&R, 0);
		EXPECT_OUT(&R, "25000 100000\n");
	}
	STOP_OK(&d);
}

/* ---- the spec ---- */

/* Bad users and limits are refused before anything is sent (exit 2),
 * with the spec check's message. */
Test(taskenv, bad_user_and_limits_refused_by_the_cli)
{
	static const char *const bad[][3] = {
		{ "--memory", "10", "--memory wants bytes" },
		{ "--memory", "12Q", "--memory wants bytes" },
		{ "--cpus", "0.001", "--cpus wants a number of CPUs" },
		{ "--cpus", "x", "--cpus wants a number of CPUs" },
		{ "--pids", "0", "--pids wants a whole number" },
		{ "--user", "a:b", "user is not a user name" },
		{ "--user", "-root", "user is not a user name" },
	};

	master_start();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CLI(&R, "run", bad[i][0], bad[i][1], "--", "true");
		EXPECT_STATUS(&R, 2);
		cr_assert(strstr(R.err, bad[i][2]), "%s %s: %s", bad[i][0],
			  bad[i][1], R.err);
	}
	CLI(&R, "run", "--memory", "1G", "--memory", "2G", "--", "true");
	EXPECT_STATUS(&R, 2);
	STOP_OK(&d);
}
