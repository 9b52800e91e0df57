/*
 * POST /v1/tasks takes every task option `noded run` has, with the CLI's
 * bounds: a test per option against a real master (--http) and real
 * workers, each checking what the option does to the task.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "harness.h"

static struct nd_test_daemon d;
static int http_port;
static char master[32];
static pid_t workers[2];
static char dirs[2][64];

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	memset(workers, 0, sizeof(workers));
	memset(dirs, 0, sizeof(dirs));
}

static void teardown(void)
{
	char path[160];

	for (int i = 0; i < 2; i++) {
		if (workers[i] > 0)
			nd_test_kill_pid(workers[i]);
		if (!dirs[i][0])
			continue;
		snprintf(path, sizeof(path), "%s/node-id", dirs[i]);
		unlink(path);
		rmdir(dirs[i]);
	}
	nd_test_daemon_stop(&d);
}

TestSuite(routes, .init = setup, .fini = teardown, .timeout = 60);

/* Starts worker i named name with one label (and a state directory of
 * its own: two workers making their node id at once in one would race). */
static void start_worker(int i, const char *name, const char *label)
{
	const char *argv[] = { nd_test_bin(), "worker", "--master", master,
			       "--name", name, "--slots", "2", "--label",
			       label, "--state-dir", dirs[i], NULL };
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	snprintf(dirs[i], sizeof(dirs[i]), "/tmp/noded-routes-XXXXXX");
	cr_assert(mkdtemp(dirs[i]));

	workers[i] = nd_test_spawn(argv, null_fd, null_fd, null_fd);
	close(null_fd);
	cr_assert(workers[i] > 0, "%s", nd_test_why);
}

/* A master with --http on a free port (read from its "http on" line). */
static void start_master(const char *const extra[])
{
	const char *args[12] = { "--http", "127.0.0.1:0" };
	size_t n = 2;
	char *p;

	for (size_t i = 0; extra && extra[i]; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	ND_CHECK(nd_test_daemon_start(&d, args));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	for (int64_t end = nd_test_now_ms() + ND_TEST_TIMEOUT_MS;
	     !memchr(d.rest, '\n', d.rest_len);) {
		ssize_t r;

		cr_assert(nd_test_now_ms() < end, "no 'http on' line");
		r = read(d.out_fd, d.rest + d.rest_len,
			 sizeof(d.rest) - 1 - d.rest_len);
		cr_assert(r > 0);
		d.rest_len += (size_t)r;
	}
	d.rest[d.rest_len] = '\0';
	p = strstr(d.rest, "http on 127.0.0.1:");
	cr_assert(p, "got '%s'", d.rest);
	http_port = atoi(p + 18);
	cr_assert(http_port > 0);
}

/* curl METHOD path [body]: the status, and the body parsed into *j
 * (NULL when it is not JSON). */
static int http(const char *method, const char *path, const char *body,
		json_t **j)
{
	char url[128], out[65536];
	const char *argv[] = { "/usr/bin/curl", "-s", "-X", method, "-w",
			       "\n%{http_code}", "-H",
			       "Content-Type: application/json", url,
			       body ? "--data-binary" : NULL, body, NULL };
	char *nl;
	int st;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", http_port, path);
	st = nd_test_run(argv, out, sizeof(out), NULL, 0, 20000);
	cr_assert_eq(st, 0, "curl %s %s: status %d", method, path, st);
	nl = strrchr(out, '\n');
	cr_assert(nl, "curl printed no status: '%s'", out);
	*nl = '\0';
	*j = json_loads(out, 0, NULL);
	return atoi(nl + 1);
}

static long long submit(const char *body, json_t **reply)
{
	json_t *j;
	int st = http("POST", "/v1/tasks", body, &j);
	long long id;

	cr_assert_eq(st, 201, "POST %s: %d %s", body, st,
		     j ? json_dumps(j, 0) : "(not JSON)");
	id = json_integer_value(json_object_get(j, "id"));
	if (reply)
		*reply = j;
	else
		json_decref(j);
	return id;
}

/* The record of task id (a new reference). */
static json_t *record(long long id)
{
	char path[64];
	json_t *j;
	int st;

	snprintf(path, sizeof(path), "/v1/tasks/%lld", id);
	st = http("GET", path, NULL, &j);
	cr_assert_eq(st, 200, "GET %s: %d", path, st);
	return j;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

static bool final(const char *st)
{
	return strcmp(st, "PENDING") && strcmp(st, "ASSIGNED") &&
	       strcmp(st, "RUNNING");
}

/* Waits (up to 20 s) for task id to reach state want, or any final
 * state when want is NULL; returns its record. */
static json_t *wait_state(long long id, const char *want)
{
	int64_t end = nd_test_now_ms() + 20000;

	for (;;) {
		json_t *j = record(id);
		const char *st = jstr(j, "state");

		if (want ? !strcmp(st, want) : final(st))
			return j;
		cr_assert(nd_test_now_ms() < end, "task %lld stays %s (want "
			  "%s)", id, st, want ? want : "an end");
		json_decref(j);
		nd_test_sleep_ms(50);
	}
}

/* Waits until the master lists n nodes with slots. */
static void wait_nodes(size_t n)
{
	int64_t end = nd_test_now_ms() + 10000;

	for (;;) {
		json_t *j, *nodes;
		size_t ok = 0, i;
		json_t *v;

		cr_assert_eq(http("GET", "/v1/nodes", NULL, &j), 200);
		nodes = json_object_get(j, "nodes");
		json_array_foreach(nodes, i, v)
			if (!strcmp(jstr(v, "state"), "ALIVE") &&
			    json_integer_value(json_object_get(v,
							       "slots_total")))
				ok++;
		json_decref(j);
		if (ok >= n)
			return;
		cr_assert(nd_test_now_ms() < end, "%zu of %zu nodes up", ok, n);
		nd_test_sleep_ms(50);
	}
}

/* A master and two workers, a (role=x) and b (role=y). */
static void cluster(void)
{
	start_master(NULL);
	start_worker(0, "a", "role=x");
	start_worker(1, "b", "role=y");
	wait_nodes(2);
}

/* The output of a task that ended (its record's "output"). */
static void expect_output(long long id, const char *want)
{
	json_t *j = wait_state(id, "SUCCEEDED");

	cr_expect_str_eq(jstr(j, "output"), want, "task %lld", id);
	json_decref(j);
}

Test(routes, argv_and_cmd)
{
	cluster();
	expect_output(submit("{\"argv\": [\"echo\", \"a  b\"]}", NULL),
		      "a  b\n");
	expect_output(submit("{\"cmd\": \"echo x | tr x y\"}", NULL), "y\n");
}

Test(routes, node)
{
	json_t *j;

	cluster();
	for (int i = 0; i < 4; i++) {
		j = wait_state(submit("{\"argv\": [\"true\"], \"node\": "
				      "\"b\"}", NULL), "SUCCEEDED");
		cr_expect_str_eq(jstr(j, "node"), "b");
		json_decref(j);
	}
}

Test(routes, labels)
{
	json_t *j;

	cluster();
	for (int i = 0; i < 4; i++) {
		j = wait_state(submit("{\"argv\": [\"true\"], \"labels\": "
				      "{\"role\": \"x\"}}", NULL), "SUCCEEDED");
		cr_expect_str_eq(jstr(j, "node"), "a");
		json_decref(j);
	}
}

Test(routes, all)
{
	json_t *j;
	int st;

	cluster();
	st = http("POST", "/v1/tasks", "{\"argv\": [\"true\"], \"all\": true}",
		  &j);
	cr_assert_eq(st, 201);
	cr_expect_eq(json_array_size(json_object_get(j, "task_ids")), 2);
	cr_expect_eq(json_array_size(json_object_get(j, "nodes")), 2);
	json_decref(j);
}

Test(routes, timeout_s)
{
	json_t *j;

	cluster();
	j = wait_state(submit("{\"argv\": [\"sleep\", \"30\"], \"timeout_s\": "
			      "0.3}", NULL), NULL);
	cr_expect_str_eq(jstr(j, "state"), "TIMED_OUT");
	json_decref(j);
}

Test(routes, env)
{
	cluster();
	expect_output(submit("{\"cmd\": \"echo $ROUTES_X\", \"env\": "
			     "{\"ROUTES_X\": \"from-api\"}}", NULL),
		      "from-api\n");
}

Test(routes, cwd)
{
	cluster();
	expect_output(submit("{\"argv\": [\"pwd\"], \"cwd\": \"/usr\"}", NULL),
		      "/usr\n");
}

/* retries as the CLI takes them (0 to 1000): a task with retries whose
 * worker stops is run again, one without ends LOST. */
Test(routes, retries)
{
	long long with, without;
	json_t *j;

	start_master(NULL);
	start_worker(0, "a", "role=x");
	wait_nodes(1);
	with = submit("{\"argv\": [\"sleep\", \"30\"], \"retries\": 1000}",
		      NULL);
	without = submit("{\"argv\": [\"sleep\", \"30\"]}", NULL);
	json_decref(wait_state(with, "RUNNING"));
	json_decref(wait_state(without, "RUNNING"));
	kill(workers[0], SIGTERM); /* its tasks end "worker stopping" */
	cr_assert_geq(nd_test_wait_pid(workers[0], 10000), 0);
	workers[0] = 0;
	j = wait_state(without, NULL);
	cr_expect_str_eq(jstr(j, "state"), "LOST");
	json_decref(j);
	j = wait_state(with, "PENDING");
	cr_expect_eq(json_integer_value(json_object_get(j, "attempt")), 2);
	json_decref(j);
	cr_expect_eq(http("POST", "/v1/tasks", "{\"argv\": [\"true\"], "
			  "\"retries\": 1001}", &j), 400);
	cr_expect(strstr(jstr(j, "error"), "0 to 1000"), "%s",
		  jstr(j, "error"));
	json_decref(j);
}

/* output_cap: the master keeps that many bytes of the task's output. */
Test(routes, output_cap)
{
	json_t *j;

	cluster();
	j = wait_state(submit("{\"cmd\": \"seq 1000\", \"output_cap\": 10}",
			      NULL), "SUCCEEDED");
	cr_expect_eq(json_is_true(json_object_get(j, "truncated")), 1);
	cr_expect_eq(strlen(jstr(j, "output")), 10, "'%s'",
		     jstr(j, "output"));
	json_decref(j);
	cr_expect_eq(http("POST", "/v1/tasks", "{\"argv\": [\"true\"], "
			  "\"output_cap\": 0}", &j), 400);
	cr_expect(strstr(jstr(j, "error"), "output_cap"));
	json_decref(j);
}

/* wait_for_node: a task for a node nobody has waits (saying why) and
 * runs when that node joins; without it, it is refused. */
Test(routes, wait_for_node)
{
	json_t *j;
	long long id;
	int st;

	start_master(NULL);
	st = http("POST", "/v1/tasks", "{\"argv\": [\"true\"], \"node\": "
		  "\"late\"}", &j);
	cr_expect_eq(st, 404, "without wait_for_node: %d", st);
	json_decref(j);
	id = submit("{\"argv\": [\"echo\", \"late\"], \"node\": \"late\", "
		    "\"wait_for_node\": true}", &j);
	cr_expect(strstr(jstr(j, "waiting"), "late"), "waiting: '%s'",
		  jstr(j, "waiting"));
	json_decref(j);
	j = record(id);
	cr_expect_str_eq(jstr(j, "state"), "PENDING");
	json_decref(j);
	start_worker(0, "late", "role=x");
	expect_output(id, "late\n");
	cr_expect_eq(http("POST", "/v1/tasks", "{\"argv\": [\"true\"], "
			  "\"wait_for_node\": 1}", &j), 400);
	json_decref(j);
}
