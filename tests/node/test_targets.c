/*
 * Targeting and results by node, end to end: a real master and five real
 * `noded worker`s (w01..w04 labelled role=web, w05 role=db), driven through
 * the real CLI: --all with --label, node lists with ranges, --exclude, a
 * target that matches nobody, and run's results by node (the summary,
 * --group, --json).
 *
 * A task learns which node runs it from its worker's command line (its
 * parent is the exec helper, whose parent is the worker), so a command can
 * print something that depends on the node without anything else knowing.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "harness.h"

#define WORKERS 6

static struct nd_test_daemon d;
static char master[32];
static pid_t workers[WORKERS];
static pid_t bg_pid;
static int bg_out = -1, bg_err = -1;
static struct nd_test_cli R;
/* Each worker keeps its node id in a directory of its own here: workers
 * that make their first id at once in one directory race on its file. */
static char state_root[64];

/* Sets $n to the name of the node the shell runs on. */
#define NODE_SH                                                              \
	"n=$(tr '\\0' ' ' < /proc/$(cut -d' ' -f4 /proc/$PPID/stat)/cmdline" \
	"); n=${n#*--name }; n=${n%% *}; "

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	memset(workers, 0, sizeof(workers));
	bg_pid = 0;
	bg_out = bg_err = -1;
	snprintf(state_root, sizeof(state_root), "/tmp/noded-targets-XXXXXX");
	cr_assert(mkdtemp(state_root), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
	if (bg_pid > 0)
		nd_test_kill_pid(bg_pid);
	if (bg_out >= 0)
		close(bg_out);
	if (bg_err >= 0)
		close(bg_err);
	for (int i = 0; i < WORKERS; i++)
		if (workers[i] > 0)
			kill(workers[i], SIGTERM);
	for (int i = 0; i < WORKERS; i++)
		if (workers[i] > 0 &&
		    nd_test_wait_pid(workers[i], ND_TEST_TIMEOUT_MS) ==
		    -ETIMEDOUT)
			nd_test_kill_pid(workers[i]);
	nd_test_daemon_stop(&d);
	if (state_root[0]) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state_root);
		if (system(cmd) != 0)
			fprintf(stderr, "test_targets: could not remove %s\n",
				state_root);
	}
}

TestSuite(targets, .init = setup, .fini = teardown, .timeout = 60);

static void worker_start(int i, const char *name, const char *label)
{
	char dir[96];
	const char *argv[] = { nd_test_bin(), "worker", "--master", master,
			       "--name", name, "--slots", "2", "--label",
			       label, "--state-dir", dir, NULL };
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	snprintf(dir, sizeof(dir), "%s/%s", state_root, name);
	workers[i] = nd_test_spawn(argv, null_fd, null_fd,
				   getenv("ND_TEST_VERBOSE") ? -1 : null_fd);
	close(null_fd);
	cr_assert(workers[i] > 0, "starting worker %s: %s", name,
		  nd_test_why);
}

/* Waits until every node of names (NULL-terminated) is ALIVE and has
 * reported its slots. */
static void wait_alive(const char *const names[])
{
	int64_t deadline = nd_test_now_ms() + 15000;

	for (;;) {
		json_t *arr = CLI_JSON("nodes", "--json"), *n;
		size_t i, alive = 0, want = 0;

		for (const char *const *w = names; *w; w++) {
			want++;
			json_array_foreach(arr, i, n)
				if (!strcmp(json_string_value(json_object_get(
					    n, "name")), *w) &&
				    !strcmp(json_string_value(json_object_get(
					    n, "state")), "ALIVE") &&
				    json_integer_value(json_object_get(
					    n, "slots_total")))
					alive++;
		}
		json_decref(arr);
		if (alive == want)
			return;
		cr_assert(nd_test_now_ms() < deadline, "%zu of %zu nodes alive",
			  alive, want);
		nd_test_sleep_ms(50);
	}
}

/* The master and w01..w05 (w01..w04 role=web, w05 role=db), all alive. */
static void cluster(void)
{
	static const char *const names[] = { "w01", "w02", "w03", "w04",
					     "w05", NULL };

	DAEMON_START(&d);
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	for (int i = 0; i < 5; i++)
		worker_start(i, names[i], i < 4 ? "role=web" : "role=db");
	wait_alive(names);
}

/* The lines of s sorted, joined by '|' (static), for comparing output
 * whose order between nodes is not fixed. */
static int line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *sorted_lines(const char *s)
{
	static char out[8192];
	char copy[8192], *lines[256], *save = NULL;
	size_t n = 0, len = 0;

	snprintf(copy, sizeof(copy), "%s", s);
	for (char *l = strtok_r(copy, "\n", &save); l && n < 256;
	     l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	qsort(lines, n, sizeof(*lines), line_cmp);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%s",
					i ? "|" : "", lines[i]);
	return out;
}

#define EXPECT_LINES(r, want)                                                \
	cr_expect_str_eq(sorted_lines((r)->out), (want),                     \
			 "`%s` (stderr: %s)", (r)->cmd, (r)->err)

/* Does s hold want? */
#define EXPECT_HAS(s, want)                                                  \
	cr_expect(strstr((s), (want)) != NULL, "\"%s\" lacks \"%s\"", (s),   \
		  (want))

/* How many tasks the master holds. */
static size_t task_count(void)
{
	json_t *arr = CLI_JSON("tasks", "--json");
	size_t n = json_array_size(arr);

	json_decref(arr);
	return n;
}

/* ---- targets ---- */

Test(targets, all_with_labels_and_exclude)
{
	cluster();
	CLI(&R, "run", "--all", "--label", "role=web", "--", "echo", "hi");
	EXPECT_STATUS(&R, 0);
	EXPECT_LINES(&R, "w01: hi|w02: hi|w03: hi|w04: hi");
	EXPECT_HAS(R.err, " on 4 nodes: 4 SUCCEEDED\n");

	CLI(&R, "run", "--all", "--label", "role=web", "--exclude", "w[02-03]",
	    "--", "echo", "hi");
	EXPECT_STATUS(&R, 0);
	EXPECT_LINES(&R, "w01: hi|w04: hi");

	CLI(&R, "run", "--all", "--exclude", "w[01-04]", "--", "echo", "hi");
	EXPECT_STATUS(&R, 0);
	EXPECT_LINES(&R, "w05: hi");
}

Test(targets, node_list_runs_one_task_per_node_as_one_job)
{
	json_t *arr;
	size_t i;
	json_t *t;
	long long job = 0;

	cluster();
	/* ranges, a plain name, an exclude; a name given twice runs once */
	CLI(&R, "run", "--node", "w[01-03],w05,w01", "--exclude", "w02", "--",
	    "sh", "-c", NODE_SH "echo $n; [ $n != w03 ] || exit 3");
	EXPECT_STATUS(&R, 3);
	EXPECT_LINES(&R, "w01: w01|w03: w03|w05: w05");
	/* the summary of every job, not only --all */
	EXPECT_HAS(R.err, "noded: node w03: FAILED, exit status 3 (task ");
	EXPECT_HAS(R.err, " on 3 nodes: 2 SUCCEEDED; 1 FAILED: w03 (exit 3)\n");

	arr = CLI_JSON("tasks", "--json");
	cr_assert_eq(json_array_size(arr), 3, "one task per node");
	json_array_foreach(arr, i, t) {
		long long j = json_integer_value(json_object_get(t, "job_id"));

		cr_expect(j && (!job || j == job), "one job: %lld", j);
		job = j;
	}
	json_decref(arr);

	/* submit prints the job's tasks and where */
	CLI(&R, "submit", "--node", "w0[4-5]", "--", "true");
	EXPECT_STATUS(&R, 0);
	EXPECT_HAS(R.out, " on w04\n");
	EXPECT_HAS(R.out, " on w05\n");
	cr_expect(!strncmp(R.out, "job ", 4), "%s", R.out);
}

Test(targets, label_task_with_exclude_avoids_those_nodes)
{
	cluster();
	/* one task on any web node but w01..w03: always w04 */
	for (int i = 0; i < 6; i++) {
		CLI(&R, "run", "--label", "role=web", "--exclude", "w[01-03]",
		    "--", "sh", "-c", NODE_SH "echo $n");
		EXPECT_STATUS(&R, 0);
		cr_expect_str_eq(R.out, "w04\n");
	}
	/* and any node but these */
	for (int i = 0; i < 4; i++) {
		CLI(&R, "run", "--exclude", "w[01-04]", "--", "sh", "-c",
		    NODE_SH "echo $n");
		EXPECT_STATUS(&R, 0);
		cr_expect_str_eq(R.out, "w05\n");
	}
}

#define EXPECT_REFUSED(msg, ...)                                             \
	do {                                                                 \
		CLI(&R, "run", __VA_ARGS__, "--", "true");                   \
		EXPECT_STATUS(&R, 1);                                        \
		cr_expect_str_eq(R.err, "noded: submit: " msg "\n");          \
	} while (0)

Test(targets, a_target_that_matches_nobody_is_a_clear_error)
{
	cluster();
	EXPECT_REFUSED("nodes w[06-09],x1 (not registered): no task can run "
		       "there (leave them out with exclude, or wait for them "
		       "with wait_for_node)", "--node", "w[01-09],x1");
	EXPECT_REFUSED("nodes 'w[01-03]' less exclude 'w[01-03]' leaves no "
		       "node", "--node", "w[01-03]", "--exclude", "w[01-03]");
	EXPECT_REFUSED("no live node has the label role=nope", "--all",
		       "--label", "role=nope");
	EXPECT_REFUSED("every live node with the label role=db is excluded "
		       "(exclude 'w05')", "--all", "--label", "role=db",
		       "--exclude", "w05");
	EXPECT_REFUSED("every live node is excluded (exclude 'w0[1-5]')",
		       "--all", "--exclude", "w0[1-5]");
	EXPECT_REFUSED("no live node has the label role=db outside exclude "
		       "'w05'", "--label", "role=db", "--exclude", "w05");
	/* bad lists: the spec check's words, before anything is sent */
	CLI(&R, "run", "--node", "w[01-03", "--", "true");
	EXPECT_STATUS(&R, 2);
	cr_expect_str_eq(R.err, "noded run: nodes 'w[01-03': '[' not closed at "
			 "position 2\n");
	CLI(&R, "run", "--all", "--exclude", "w[9-1]", "--", "true");
	EXPECT_STATUS(&R, 2);
	cr_expect_str_eq(R.err, "noded run: exclude 'w[9-1]': range goes "
			 "backwards at position 3\n");
	CLI(&R, "submit", "--node", "n[1-100000]", "--", "true");
	EXPECT_STATUS(&R, 2);
	cr_expect_str_eq(R.err, "noded submit: nodes 'n[1-100000]': the list "
			 "makes more than 16384 names at position 2\n");
	cr_expect_eq(task_count(), 0, "refused targets made tasks");
}

Test(targets, a_list_waits_for_its_nodes_when_asked)
{
	static const char *const w06[] = { "w06", NULL };
	const char *argv[] = { nd_test_bin(), "run", "--master", master,
			       "--node", "w0[5-6]", "--wait-for-node", "--",
			       "echo", "hi", NULL };
	int st;

	cluster();
	argv[3] = master;
	bg_out = memfd_create("run-out", MFD_CLOEXEC);
	bg_err = memfd_create("run-err", MFD_CLOEXEC);
	cr_assert(bg_out >= 0 && bg_err >= 0);
	bg_pid = nd_test_spawn(argv, -1, bg_out, bg_err);
	cr_assert(bg_pid > 0, "%s", nd_test_why);
	nd_test_sleep_ms(500);
	cr_assert(nd_test_pid_alive(bg_pid), "run did not wait for w06");
	worker_start(5, "w06", "role=web");
	wait_alive(w06);
	st = nd_test_wait_pid(bg_pid, 20000);
	bg_pid = 0;
	{
		char out[512] = "", err[1024] = "";

		cr_assert(pread(bg_out, out, sizeof(out) - 1, 0) >= 0);
		cr_assert(pread(bg_err, err, sizeof(err) - 1, 0) >= 0);
		cr_expect_eq(st, 0, "run exited %d (stderr: %s)", st, err);
		cr_expect_str_eq(sorted_lines(out), "w05: hi|w06: hi",
				 "stderr: %s", err);
		EXPECT_HAS(err, ": tasks wait for their nodes (--wait-for-"
			   "node): waits for w06 (not registered)\n");
	}
}

/* ---- results by node ---- */

Test(targets, group_folds_equal_output_in_range_form)
{
	cluster();
	CLI(&R, "run", "--node", "w[01-05]", "--group", "--", "sh", "-c",
	    NODE_SH "case $n in w0[1-3]) echo A; echo a2;; *) echo B; "
	    "echo oops >&2; exit 3;; esac");
	EXPECT_STATUS(&R, 3);
	cr_expect_str_eq(R.out, "---------------\n"
				"w[01-03] (3)\n"
				"---------------\n"
				"A\n"
				"a2\n"
				"---------------\n"
				"w[04-05] (2)\n"
				"---------------\n"
				"B\n", "stderr: %s", R.err);
	EXPECT_HAS(R.err, "w[04-05]: oops\n");
	EXPECT_HAS(R.err, " on 5 nodes: 3 SUCCEEDED; 2 FAILED: ");

	/* every node different: a block each; none with output: nothing */
	CLI(&R, "run", "--all", "--label", "role=web", "--group", "--", "sh",
	    "-c", NODE_SH "echo $n");
	EXPECT_STATUS(&R, 0);
	cr_expect_str_eq(R.out, "---------------\nw01 (1)\n---------------\n"
			 "w01\n---------------\nw02 (1)\n---------------\n"
			 "w02\n---------------\nw03 (1)\n---------------\n"
			 "w03\n---------------\nw04 (1)\n---------------\n"
			 "w04\n");
	CLI(&R, "run", "--all", "--group", "--", "true");
	EXPECT_STATUS(&R, 0);
	cr_expect_str_eq(R.out, "");
	EXPECT_HAS(R.err, " on 5 nodes: 5 SUCCEEDED\n");
}

/* Reads fd (a pipe) until it holds want or timeout_ms pass; into buf. */
static bool read_until(int fd, char *buf, size_t size, const char *want,
		       int timeout_ms)
{
	int64_t deadline = nd_test_now_ms() + timeout_ms;
	size_t len = strlen(buf);

	while (!strstr(buf, want)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - nd_test_now_ms());
		ssize_t n;

		if (left <= 0 || len + 1 >= size)
			return false;
		if (poll(&p, 1, left) <= 0)
			continue;
		n = read(fd, buf + len, size - len - 1);
		if (n <= 0)
			return false;
		len += (size_t)n;
		buf[len] = '\0';
	}
	return true;
}

Test(targets, group_prints_results_as_they_arrive)
{
	const char *argv[] = { nd_test_bin(), "run", "--master", NULL,
			       "--node", "w0[1-3]", "--group", "--", "sh", "-c",
			       NODE_SH "if [ $n = w03 ]; then sleep 8; "
			       "echo late; else echo early; fi", NULL };
	char out[1024] = "";
	int op[2], st;
	int64_t t0;

	cluster();
	argv[3] = master;
	cr_assert(pipe2(op, O_CLOEXEC) == 0);
	bg_err = memfd_create("run-err", MFD_CLOEXEC);
	bg_pid = nd_test_spawn(argv, -1, op[1], bg_err);
	close(op[1]);
	bg_out = op[0];
	cr_assert(bg_pid > 0, "%s", nd_test_why);
	t0 = nd_test_now_ms();
	/* the two quick nodes' block comes while w03 still runs */
	cr_assert(read_until(bg_out, out, sizeof(out), "early\n", 6500),
		  "no block before the slow node ended: \"%s\"", out);
	cr_expect(nd_test_now_ms() - t0 < 7500);
	cr_expect_str_eq(out, "---------------\nw[01-02] (2)\n"
			 "---------------\nearly\n");
	cr_assert(read_until(bg_out, out, sizeof(out), "late\n", 20000),
		  "\"%s\"", out);
	cr_expect_str_eq(out, "---------------\nw[01-02] (2)\n"
			 "---------------\nearly\n---------------\nw03 (1)\n"
			 "---------------\nlate\n");
	st = nd_test_wait_pid(bg_pid, 10000);
	bg_pid = 0;
	cr_expect_eq(st, 0);
}

Test(targets, json_prints_one_object_per_node_result)
{
	json_t *o[4] = { 0 };
	char *save = NULL, *line;
	size_t n = 0;

	cluster();
	CLI(&R, "run", "--node", "w[01-03]", "--json", "--", "sh", "-c",
	    NODE_SH "case $n in w01) printf 'a\\377b';; w02) echo x; "
	    "echo e >&2; exit 4;; *) kill -9 $$;; esac");
	EXPECT_STATUS(&R, 137);
	for (line = strtok_r(R.out, "\n", &save); line && n < 4;
	     line = strtok_r(NULL, "\n", &save)) {
		json_error_t err;

		o[n] = json_loads(line, 0, &err);
		cr_assert(json_is_object(o[n]), "line %zu is not a JSON "
			  "object: %s (%s)", n, line, err.text);
		n++;
	}
	cr_assert_eq(n, 3, "one object per node");
	for (size_t i = 0; i < n; i++) {
		const char *node = json_string_value(json_object_get(o[i],
								     "node"));

		cr_assert(node);
		cr_expect(json_integer_value(json_object_get(o[i], "task")));
		cr_expect(json_integer_value(json_object_get(o[i], "job")));
		if (!strcmp(node, "w01")) {
			cr_expect_str_eq(json_string_value(json_object_get(
				o[i], "state")), "SUCCEEDED");
			cr_expect_str_eq(json_string_value(json_object_get(
				o[i], "stdout_base64")), "Yf9i");
			cr_expect_str_eq(json_string_value(json_object_get(
				o[i], "stdout")), "a\xef\xbf\xbd" "b");
		} else if (!strcmp(node, "w02")) {
			cr_expect_str_eq(json_string_value(json_object_get(
				o[i], "state")), "FAILED");
			cr_expect_eq(json_integer_value(json_object_get(
				o[i], "exit_code")), 4);
			cr_expect_eq(json_integer_value(json_object_get(
				o[i], "status")), 4);
			cr_expect_str_eq(json_string_value(json_object_get(
				o[i], "stdout")), "x\n");
			cr_expect_str_eq(json_string_value(json_object_get(
				o[i], "stderr")), "e\n");
			cr_expect_null(json_object_get(o[i], "stdout_base64"));
		} else {
			cr_expect_str_eq(node, "w03");
			cr_expect_eq(json_integer_value(json_object_get(
				o[i], "signal")), 9);
			cr_expect_eq(json_integer_value(json_object_get(
				o[i], "status")), 137);
		}
		json_decref(o[i]);
	}
}
