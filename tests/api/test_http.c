/*
 * The HTTP/JSON API and /metrics against a real master (--http on an
 * ephemeral loopback port) and real workers, over raw sockets so that
 * pipelining, pieces and disconnects are exactly what the test sends.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "harness.h"

static struct nd_test_daemon d;
static int http_port;
static char master[32];
static pid_t worker;
static char tokfile[64];

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	worker = 0;
	tokfile[0] = '\0';
}

static void teardown(void)
{
	if (worker > 0)
		nd_test_kill_pid(worker);
	nd_test_daemon_stop(&d);
	if (tokfile[0])
		unlink(tokfile);
}

TestSuite(http, .init = setup, .fini = teardown, .timeout = 60);

/* Reads the "http on 127.0.0.1:PORT" line that follows "listening on". */
static void read_http_port(void)
{
	http_port = nd_test_daemon_http_port(&d);
	cr_assert(http_port > 0, "%s", nd_test_why);
}

/* A master with --http and the extra arguments; a worker when slots > 0. */
static void start(int slots, const char *const extra[])
{
	const char *args[16] = { "--http", "127.0.0.1:0" };
	size_t n = 2;

	for (size_t i = 0; extra && extra[i]; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	cr_assert(nd_test_daemon_start(&d, args) == 0, "%s", nd_test_why);
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	read_http_port();
	if (slots > 0) {
		char s[16];
		const char *wargv[] = { nd_test_bin(), "worker", "--master",
					master, "--name", "w1", "--slots", s,
					NULL };
		int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

		snprintf(s, sizeof(s), "%d", slots);
		worker = nd_test_spawn(wargv, null_fd, null_fd, null_fd);
		close(null_fd);
		cr_assert(worker > 0);
	}
}

/* ---- a small HTTP client ---- */

struct resp {
	int status;
	char headers[4096];
	char *body;             /* NUL-terminated; chunked bodies decoded */
	size_t body_len;
	json_t *json;           /* when the body parses */
};

static void resp_free(struct resp *r)
{
	free(r->body);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

static int conn_http(void)
{
	int fd = nd_test_connect(http_port);

	cr_assert(fd >= 0, "connect to the API: %s", strerror(errno));
	return fd;
}

/* Reads exactly n bytes (or fails the test). */
static void read_n(int fd, char *buf, size_t n, int timeout_ms)
{
	size_t got = 0;
	int64_t deadline = nd_test_now_ms() + timeout_ms;

	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t k;

		cr_assert(nd_test_now_ms() < deadline, "response timed out");
		if (poll(&p, 1, 50) <= 0)
			continue;
		k = read(fd, buf + got, n - got);
		cr_assert(k > 0, "connection closed mid-response (%zu/%zu)",
			  got, n);
		got += (size_t)k;
	}
}

static void read_line(int fd, char *buf, size_t size, int timeout_ms)
{
	size_t n = 0;

	for (;;) {
		cr_assert(n < size - 1, "line too long");
		read_n(fd, buf + n, 1, timeout_ms);
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
	if (n && buf[n - 1] == '\r')
		buf[n - 1] = '\0';
}

static const char *header(const struct resp *r, const char *name)
{
	static char val[256];
	const char *p = r->headers;
	size_t nl = strlen(name);

	while ((p = strcasestr(p, name))) {
		if ((p == r->headers || p[-1] == '\n') && p[nl] == ':') {
			size_t n = strcspn(p + nl + 2, "\r\n");

			snprintf(val, sizeof(val), "%.*s", (int)n, p + nl + 2);
			return val;
		}
		p += nl;
	}
	return NULL;
}

/* Reads one response from fd. */
static void read_resp(int fd, struct resp *r, int timeout_ms)
{
	char line[1024];
	const char *cl, *te;

	memset(r, 0, sizeof(*r));
	read_line(fd, line, sizeof(line), timeout_ms);
	cr_assert(sscanf(line, "HTTP/1.1 %d", &r->status) == 1,
		  "status line '%s'", line);
	for (;;) {
		read_line(fd, line, sizeof(line), timeout_ms);
		if (!line[0])
			break;
		strncat(r->headers, line,
			sizeof(r->headers) - strlen(r->headers) - 3);
		strcat(r->headers, "\r\n");
	}
	cl = header(r, "Content-Length");
	te = header(r, "Transfer-Encoding");
	if (cl) {
		r->body_len = (size_t)atol(cl);
		r->body = malloc(r->body_len + 1);
		read_n(fd, r->body, r->body_len, timeout_ms);
	} else {
		cr_assert(te && !strcmp(te, "chunked"), "no body framing");
		r->body = malloc(1);
		for (;;) {
			size_t n;

			read_line(fd, line, sizeof(line), timeout_ms);
			n = strtoul(line, NULL, 16);
			if (!n) {
				read_line(fd, line, sizeof(line), timeout_ms);
				break;
			}
			r->body = realloc(r->body, r->body_len + n + 1);
			read_n(fd, r->body + r->body_len, n, timeout_ms);
			r->body_len += n;
			read_line(fd, line, sizeof(line), timeout_ms);
		}
	}
	r->body[r->body_len] = '\0';
	r->json = json_loads(r->body, 0, NULL);
}

static void send_str(int fd, const char *s)
{
	cr_assert(nd_test_send_raw(fd, s, strlen(s)) == 0);
}

/* One request on a new connection. */
static void req(struct resp *r, const char *method, const char *path,
		const char *body)
{
	char buf[8192];
	int fd = conn_http();

	if (body)
		snprintf(buf, sizeof(buf), "%s %s HTTP/1.1\r\nHost: t\r\n"
			 "Content-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n%s", method, path,
			 strlen(body), body);
	else
		snprintf(buf, sizeof(buf), "%s %s HTTP/1.1\r\nHost: t\r\n\r\n",
			 method, path);
	send_str(fd, buf);
	read_resp(fd, r, 20000);
	close(fd);
}

static const char *jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

static long long jint(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void expect_error(const char *method, const char *path,
			 const char *body, int status, const char *needle)
{
	struct resp r;

	req(&r, method, path, body);
	cr_expect_eq(r.status, status, "%s %s: %d, want %d (%s)", method, path,
		     r.status, status, r.body);
	cr_expect(r.json && strstr(jstr(r.json, "error"), needle),
		  "%s %s: error '%s' lacks '%s'", method, path, r.body, needle);
	resp_free(&r);
}

/* expect_error() with the whole message: {"error": msg} exactly. */
static void expect_error_is(const char *body, const char *msg)
{
	struct resp r;

	req(&r, "POST", "/v1/tasks", body);
	cr_expect_eq(r.status, 400, "%s: %d, want 400 (%s)", body, r.status,
		     r.body);
	cr_expect(r.json && !strcmp(jstr(r.json, "error"), msg),
		  "%s: error '%s', want '%s'", body, r.body, msg);
	resp_free(&r);
}

/* Waits until GET /v1/tasks/id is in a final state; returns its record. */
static json_t *wait_done(long long id)
{
	char path[64];
	int64_t deadline = nd_test_now_ms() + 20000;

	snprintf(path, sizeof(path), "/v1/tasks/%lld", id);
	for (;;) {
		struct resp r;
		const char *st;

		req(&r, "GET", path, NULL);
		cr_assert_eq(r.status, 200, "%s", r.body);
		st = jstr(r.json, "state");
		if (strcmp(st, "PENDING") && strcmp(st, "ASSIGNED") &&
		    strcmp(st, "RUNNING")) {
			json_t *j = json_incref(r.json);

			resp_free(&r);
			return j;
		}
		resp_free(&r);
		cr_assert(nd_test_now_ms() < deadline, "task %lld not done",
			  id);
		nd_test_sleep_ms(50);
	}
}

static long long submit(const char *body)
{
	struct resp r;
	long long id;

	req(&r, "POST", "/v1/tasks", body);
	cr_assert_eq(r.status, 201, "submit %s: %d %s", body, r.status, r.body);
	id = jint(r.json, "id");
	cr_assert(id > 0);
	resp_free(&r);
	return id;
}

static void wait_node_alive(void)
{
	int64_t deadline = nd_test_now_ms() + 10000;

	for (;;) {
		struct resp r;
		bool ok;

		/* ALIVE and reported: a node has no slots until its first
		 * report, which follows its registration */
		req(&r, "GET", "/v1/nodes/w1", NULL);
		ok = r.status == 200 && !strcmp(jstr(r.json, "state"), "ALIVE") &&
		     json_integer_value(json_object_get(r.json, "slots_total")) > 0;
		resp_free(&r);
		if (ok)
			return;
		cr_assert(nd_test_now_ms() < deadline, "worker never joined");
		nd_test_sleep_ms(50);
	}
}

/* ---- tests ---- */

Test(http, healthz_and_nodes)
{
	struct resp r;
	json_t *n;

	start(2, NULL);
	req(&r, "GET", "/healthz", NULL);
	cr_expect_eq(r.status, 200);
	cr_expect_str_eq(jstr(r.json, "status"), "ok");
	cr_expect(strstr(header(&r, "Content-Type"), "application/json"));
	resp_free(&r);
	wait_node_alive();
	req(&r, "GET", "/v1/nodes", NULL);
	cr_assert_eq(r.status, 200);
	n = json_array_get(json_object_get(r.json, "nodes"), 0);
	cr_expect_str_eq(jstr(n, "name"), "w1");
	cr_expect_eq(jint(n, "slots_total"), 2);
	resp_free(&r);
	req(&r, "GET", "/v1/nodes/w1", NULL);
	cr_expect_eq(r.status, 200);
	cr_expect_str_eq(jstr(r.json, "name"), "w1");
	resp_free(&r);
	expect_error("GET", "/v1/nodes/nobody", NULL, 404, "no node named");
}

Test(http, submit_get_list_and_output)
{
	struct resp r;
	json_t *t, *tasks;
	long long a, b, c;
	char path[64];

	start(2, NULL);
	wait_node_alive();
	a = submit("{\"argv\": [\"printf\", \"%s\", \"a b\"]}");
	t = wait_done(a);
	cr_expect_str_eq(jstr(t, "state"), "SUCCEEDED");
	cr_expect_str_eq(jstr(t, "output"), "a b");
	cr_expect_str_eq(jstr(t, "output_encoding"), "utf-8");
	cr_expect_str_eq(jstr(t, "node"), "w1");
	json_decref(t);

	b = submit("{\"cmd\": \"echo out; echo err >&2; exit 3\", "
		   "\"env\": {\"X\": \"1\"}, \"cwd\": \"/\", "
		   "\"timeout_s\": 10, \"retries\": 1, \"node\": \"w1\"}");
	t = wait_done(b);
	cr_expect_str_eq(jstr(t, "state"), "FAILED");
	cr_expect_eq(jint(t, "exit_code"), 3);
	cr_expect_str_eq(jstr(t, "shell"), "echo out; echo err >&2; exit 3");
	json_decref(t);

	/* not UTF-8: base64 */
	c = submit("{\"argv\": [\"printf\", \"\\\\377\\\\376\"]}");
	t = wait_done(c);
	cr_expect_str_eq(jstr(t, "output_encoding"), "base64");
	cr_expect_str_eq(jstr(t, "output"), "//4=");
	json_decref(t);

	snprintf(path, sizeof(path), "/v1/tasks/%lld/output", b);
	req(&r, "GET", path, NULL);
	cr_expect_eq(r.status, 200);
	cr_expect(strstr(r.body, "out\n") && strstr(r.body, "err\n"),
		  "output '%s'", r.body);
	resp_free(&r);

	req(&r, "GET", "/v1/tasks?state=failed&limit=10", NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	tasks = json_object_get(r.json, "tasks");
	cr_expect_eq(json_array_size(tasks), 1);
	cr_expect_eq(jint(json_array_get(tasks, 0), "id"), b);
	resp_free(&r);
	req(&r, "GET", "/v1/tasks?limit=2", NULL);
	cr_expect_eq(json_array_size(json_object_get(r.json, "tasks")), 2);
	resp_free(&r);

	/* the original system's endpoint */
	req(&r, "POST", "/tasks", "{\"cmd\": \"true\"}");
	cr_expect_eq(r.status, 201, "%s", r.body);
	t = wait_done(jint(r.json, "id"));
	cr_expect_str_eq(jstr(t, "state"), "SUCCEEDED");
	json_decref(t);
	resp_free(&r);

	/* fan-out */
	req(&r, "POST", "/v1/tasks", "{\"argv\": [\"true\"], \"all\": true}");
	cr_expect_eq(r.status, 201, "%s", r.body);
	cr_expect(jint(r.json, "job_id") > 0);
	cr_expect_eq(json_array_size(json_object_get(r.json, "task_ids")), 1);
	a = jint(r.json, "job_id");
	resp_free(&r);

	/* the list filtered by job and by node, as noded tasks --job --node */
	snprintf(path, sizeof(path), "/v1/tasks?job=%lld", a);
	req(&r, "GET", path, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	tasks = json_object_get(r.json, "tasks");
	cr_expect_eq(json_array_size(tasks), 1, "%s", r.body);
	cr_expect_eq(jint(json_array_get(tasks, 0), "job_id"), a);
	resp_free(&r);
	req(&r, "GET", "/v1/tasks?node=w1&state=failed", NULL);
	tasks = json_object_get(r.json, "tasks");
	cr_expect_eq(json_array_size(tasks), 1, "%s", r.body);
	cr_expect_eq(jint(json_array_get(tasks, 0), "id"), b);
	resp_free(&r);
	req(&r, "GET", "/v1/tasks?node=nobody", NULL);
	cr_expect_eq(r.status, 200, "%s", r.body);
	cr_expect_eq(json_array_size(json_object_get(r.json, "tasks")), 0);
	resp_free(&r);
}

Test(http, follow_streams_output_until_the_end)
{
	struct resp r;
	long long id;
	char path[64];
	int64_t t0;

	start(1, NULL);
	wait_node_alive();
	id = submit("{\"cmd\": \"for i in 1 2 3; do echo $i; sleep 0.2; "
		    "done\"}");
	snprintf(path, sizeof(path), "/v1/tasks/%lld/output?follow=1", id);
	t0 = nd_test_now_ms();
	req(&r, "GET", path, NULL);
	cr_expect_eq(r.status, 200);
	cr_expect_str_eq(header(&r, "Transfer-Encoding"), "chunked");
	cr_expect_str_eq(r.body, "1\n2\n3\n");
	cr_expect(nd_test_now_ms() - t0 >= 300, "ended before the task");
	resp_free(&r);
	expect_error("GET", "/v1/tasks/999/output?follow=1", NULL, 404,
		     "999");
}

Test(http, cancel_with_delete)
{
	struct resp r;
	json_t *t;
	long long id;
	char path[64];

	start(1, NULL);
	wait_node_alive();
	id = submit("{\"argv\": [\"sleep\", \"30\"]}");
	snprintf(path, sizeof(path), "/v1/tasks/%lld", id);
	nd_test_sleep_ms(300);
	req(&r, "DELETE", path, NULL);
	cr_expect_eq(r.status, 200, "%s", r.body);
	cr_expect_eq(jint(r.json, "id"), id);
	resp_free(&r);
	t = wait_done(id);
	cr_expect_str_eq(jstr(t, "state"), "CANCELLED");
	json_decref(t);
	expect_error("DELETE", "/v1/tasks/12345", NULL, 404, "12345");
}

/* The native cancel_task on a raw connection: the record it answers. */
static Noded__TaskState native_cancel(long long id, bool *cancel_requested)
{
	Noded__Frame f = NODED__FRAME__INIT, *r;
	Noded__TaskQuery q = NODED__TASK_QUERY__INIT;
	Noded__TaskState st;
	int fd = nd_test_connect(d.port);

	cr_assert(fd >= 0);
	ND_CHECK(nd_test_hello(fd, 1, NULL));
	q.id = (uint64_t)id;
	f.id = 2;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_CANCEL_TASK;
	f.cancel_task = &q;
	ND_CHECK(nd_test_send_frame(fd, &f));
	ND_CHECK(nd_test_recv_frame(fd, 15000, &r));
	cr_assert_eq(r->body_case, NODED__FRAME__BODY_TASK_RECORD, "%s",
		     nd_test_describe(r));
	st = r->task_record->state;
	*cancel_requested = r->task_record->cancel_requested;
	nd_frame_free(r, NULL);
	close(fd);
	return st;
}

/* Waits until task id is RUNNING (its command has started). */
static void wait_running(long long id)
{
	char path[64];
	int64_t deadline = nd_test_now_ms() + 10000;

	snprintf(path, sizeof(path), "/v1/tasks/%lld", id);
	for (;;) {
		struct resp r;
		bool running;

		req(&r, "GET", path, NULL);
		running = !strcmp(jstr(r.json, "state"), "RUNNING");
		resp_free(&r);
		if (running)
			return;
		cr_assert(nd_test_now_ms() < deadline, "task %lld never ran",
			  id);
		nd_test_sleep_ms(50);
	}
}

Test(http, cancel_answers_the_state_the_cancel_led_to)
{
	struct resp r;
	long long id;
	char path[64];
	bool requested;

	/* a long heartbeat timeout: the stopped worker below is not DEAD
	 * (its task LOST) before the cancel's wait is over */
	start(2, (const char *const[]){ "--heartbeat-timeout", "30", NULL });
	wait_node_alive();
	/* DELETE answers once the task ended: CANCELLED, not RUNNING */
	id = submit("{\"argv\": [\"sleep\", \"30\"]}");
	wait_running(id);
	snprintf(path, sizeof(path), "/v1/tasks/%lld", id);
	req(&r, "DELETE", path, NULL);
	cr_expect_eq(r.status, 200, "%s", r.body);
	cr_expect_str_eq(jstr(r.json, "state"), "CANCELLED", "%s", r.body);
	cr_expect_null(json_object_get(r.json, "cancel_requested"));
	resp_free(&r);
	/* one that ignores SIGTERM: answered after the grace, killed */
	id = submit("{\"cmd\": \"trap '' TERM; echo up; sleep 30\"}");
	wait_running(id);
	nd_test_sleep_ms(200); /* the trap is set */
	snprintf(path, sizeof(path), "/v1/tasks/%lld", id);
	req(&r, "DELETE", path, NULL);
	cr_expect_eq(r.status, 200, "%s", r.body);
	cr_expect_str_eq(jstr(r.json, "state"), "CANCELLED", "%s", r.body);
	resp_free(&r);
	/* the same through the native cancel_task (noded cancel) */
	id = submit("{\"argv\": [\"sleep\", \"30\"]}");
	wait_running(id);
	cr_expect_eq(native_cancel(id, &requested),
		     NODED__TASK_STATE__TASK_CANCELLED);
	cr_expect_not(requested);
	/* an ended task: its record at once; a second cancel too */
	cr_expect_eq(native_cancel(id, &requested),
		     NODED__TASK_STATE__TASK_CANCELLED);
	/* a worker that cannot act on it (stopped): after a bounded wait,
	 * the record as it is, saying the cancel was asked */
	id = submit("{\"argv\": [\"sleep\", \"30\"]}");
	wait_running(id);
	cr_assert_eq(kill(worker, SIGSTOP), 0);
	snprintf(path, sizeof(path), "/v1/tasks/%lld", id);
	req(&r, "DELETE", path, NULL);
	kill(worker, SIGCONT);
	cr_expect_eq(r.status, 200, "%s", r.body);
	cr_expect_str_eq(jstr(r.json, "state"), "RUNNING", "%s", r.body);
	cr_expect(json_is_true(json_object_get(r.json, "cancel_requested")),
		  "%s", r.body);
	resp_free(&r);
	/* ... which it then carries out */
	{
		json_t *t = wait_done(id);

		cr_expect_str_eq(jstr(t, "state"), "CANCELLED");
		json_decref(t);
	}
}

Test(http, bad_requests_get_the_right_status)
{
	struct resp r;
	char big[2048];
	int fd;

	start(1, (const char *const[]){ "--http-max-body", "1000",
					"--max-queue", "1", NULL });
	expect_error("POST", "/v1/tasks", "{\"argv\": [\"true\"", 400,
		     "bad JSON");
	expect_error("POST", "/v1/tasks", "[1]", 400, "JSON object");
	expect_error("POST", "/v1/tasks", "{}", 400, "nothing to run");
	expect_error("POST", "/v1/tasks",
		     "{\"argv\": [\"a\"], \"cmd\": \"b\"}", 400, "not both");
	expect_error("POST", "/v1/tasks", "{\"argv\": []}", 400, "argv");
	expect_error("POST", "/v1/tasks", "{\"argv\": [1]}", 400, "argv");
	expect_error("POST", "/v1/tasks", "{\"cmd\": \"x\", \"bogus\": 1}",
		     400, "unknown field");
	expect_error("POST", "/v1/tasks", "{\"cmd\": \"x\", \"timeout_s\": -1}",
		     400, "timeout_s");
	expect_error("POST", "/v1/tasks", "{\"cmd\": \"x\", \"env\": [1]}",
		     400, "env");
	expect_error("POST", "/v1/tasks", "{\"cmd\": \"x\", \"retries\": 1.5}",
		     400, "retries");
	expect_error("POST", "/v1/tasks",
		     "{\"cmd\": \"x\", \"node\": \"a\", \"all\": true}", 400,
		     "exclude");
	expect_error("POST", "/v1/tasks", "{\"cmd\": \"x\", \"node\": \"zz\"}",
		     404, "zz");
	expect_error("GET", "/v1/tasks?state=bogus", NULL, 400, "state");
	expect_error("GET", "/v1/tasks?limit=0", NULL, 400, "limit");
	expect_error("GET", "/v1/tasks?job=0", NULL, 400, "job");
	expect_error("GET", "/v1/tasks?job=x", NULL, 400, "job");
	expect_error("GET", "/v1/tasks?node=", NULL, 400, "node");
	expect_error("GET", "/v1/tasks/77", NULL, 404, "77");
	expect_error("GET", "/v1/tasks/abc", NULL, 404, "no such path");
	expect_error("GET", "/nope", NULL, 404, "no such path");
	expect_error("PUT", "/v1/tasks", "{}", 405, "not allowed");
	expect_error("POST", "/healthz", "{}", 405, "not allowed");
	expect_error("DELETE", "/v1/nodes", NULL, 405, "not allowed");

	/* 405 names what is allowed */
	req(&r, "PATCH", "/v1/tasks/1", NULL);
	cr_expect_eq(r.status, 405);
	cr_expect_str_eq(header(&r, "Allow"), "GET, DELETE");
	resp_free(&r);

	/* 411: a POST without a length */
	fd = conn_http();
	send_str(fd, "POST /v1/tasks HTTP/1.1\r\nHost: t\r\n\r\n");
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 411, "%s", r.body);
	resp_free(&r);
	close(fd);

	/* 413: over --http-max-body, refused from the header, then closed */
	memset(big, 'x', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	fd = conn_http();
	send_str(fd, "POST /v1/tasks HTTP/1.1\r\nContent-Length: 2047\r\n\r\n");
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 413, "%s", r.body);
	cr_expect(strstr(jstr(r.json, "error"), "1000"));
	resp_free(&r);
	cr_expect(nd_test_expect_closed(fd, 5000) == 0);
	close(fd);

	/* 431: headers over the limit */
	fd = conn_http();
	send_str(fd, "GET /healthz HTTP/1.1\r\n");
	for (int i = 0; i < 20; i++) {
		char h[1100];

		snprintf(h, sizeof(h), "X-Pad-%d: %01000d\r\n", i, 0);
		if (nd_test_send_raw(fd, h, strlen(h)))
			break;
	}
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 431, "%s", r.body);
	resp_free(&r);
	close(fd);

	/* not HTTP at all */
	fd = conn_http();
	send_str(fd, "\x01\x02garbage\r\n\r\n");
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 400, "%s", r.body);
	resp_free(&r);
	close(fd);

	/* 429: one task runs in the worker's one slot, one waits in a queue
	 * of one, the third is refused */
	wait_node_alive();
	submit("{\"argv\": [\"sleep\", \"2\"]}");
	submit("{\"argv\": [\"sleep\", \"2\"]}");
	expect_error("POST", "/v1/tasks", "{\"cmd\": \"true\"}", 429,
		     "queue full");

	/* and the master still serves */
	req(&r, "GET", "/healthz", NULL);
	cr_expect_eq(r.status, 200);
	resp_free(&r);
	cr_expect(nd_test_fresh_ping(d.port) == 0, "%s", nd_test_why);
}

/*
 * A bad task spec gets the words of the one spec check (noded/taskspec.h),
 * the same the CLI prints and the master answers (tests/cli, tests/node/
 * test_tasks.c), before anything reaches the master.
 */
Test(http, a_bad_spec_gets_the_spec_check_message)
{
	start(1, NULL);
	expect_error_is("{\"cmd\": \"x\", \"node\": \"a\", \"all\": true}",
			"node, nodes and all exclude each other: target one "
			"of them");
	expect_error_is("{\"argv\": [\"a\"], \"node\": \"a\", "
			"\"labels\": {\"k\": \"v\"}}",
			"labels select among all nodes or any node, not among "
			"named ones: give node(s) or labels");
	expect_error_is("{\"argv\": [\"a\"], \"nodes\": \"w[1-\"}",
			"nodes 'w[1-': range without its end at position 4");
	expect_error_is("{\"argv\": [\"a\"], \"all\": true, "
			"\"exclude\": [\"w1\", \"\"]}",
			"exclude 'w1,': empty name at position 3");
	expect_error_is("{\"argv\": []}",
			"nothing to run: give argv or a shell command");
	expect_error_is("{\"argv\": [\"a\"], \"cmd\": \"b\"}",
			"give argv or a shell command, not both");
	expect_error_is("{\"argv\": [\"\", \"x\"]}",
			"argv[0], the command name, is empty");
	expect_error_is("{\"cmd\": \"  \"}", "the shell command is only blanks");
	expect_error_is("{\"cmd\": \"env\", \"env\": {\"A=B\": \"x\"}}",
			"env key 'A=B' is not a variable name: it must be "
			"non-empty, without '='");
	expect_error_is("{\"cmd\": \"env\", \"env\": {\"\": \"x\"}}",
			"env key '' is not a variable name: it must be "
			"non-empty, without '='");
}

/* The task's environment, user and limits over HTTP: the same options as
 * the CLI's, with the spec check's messages for bad ones. */
Test(http, task_environment_user_and_limits)
{
	json_t *t;
	long long id;

	setenv("ND_TEST_HTTP_WORKER_VAR", "seen", 1); /* the worker's */
	start(1, NULL);
	unsetenv("ND_TEST_HTTP_WORKER_VAR");
	wait_node_alive();
	id = submit("{\"cmd\": \"echo ${ND_TEST_HTTP_WORKER_VAR:-none} "
		    "$NODED_NODE\"}");
	t = wait_done(id);
	cr_expect_str_eq(jstr(t, "output"), "none w1\n");
	json_decref(t);
	id = submit("{\"cmd\": \"echo $ND_TEST_HTTP_WORKER_VAR $X\", "
		    "\"inherit_env\": true, \"env\": {\"X\": \"x\"}}");
	t = wait_done(id);
	cr_expect_str_eq(jstr(t, "output"), "seen x\n");
	json_decref(t);
	if (geteuid() == 0) {
		id = submit("{\"argv\": [\"id\", \"-un\"], \"user\": "
			    "\"nobody\"}");
		t = wait_done(id);
		cr_expect_str_eq(jstr(t, "output"), "nobody\n");
		json_decref(t);
	}
	expect_error_is("{\"cmd\": \"x\", \"memory\": 10}",
			"memory limit under 1 MiB (1048576 bytes): nothing "
			"could run in it");
	expect_error_is("{\"cmd\": \"x\", \"cpus\": 0.001}",
			"cpus must be from 0.01 to 1000");
	expect_error_is("{\"cmd\": \"x\", \"cpus\": \"1\"}",
			"\"cpus\" must be a number of CPUs from 0.01 to 1000");
	expect_error_is("{\"cmd\": \"x\", \"pids\": -1}",
			"\"pids\" must be a whole number");
	expect_error_is("{\"cmd\": \"x\", \"pids\": 4194305}",
			"pids limit over 4194304 (the kernel's most)");
	expect_error_is("{\"cmd\": \"x\", \"user\": \"\"}",
			"\"user\" must be a non-empty string");
	expect_error_is("{\"cmd\": \"x\", \"user\": \"a/b\"}",
			"user is not a user name: at most 256 bytes, without "
			"'/', ':', blanks or control characters, not starting "
			"with '-'");
	expect_error_is("{\"cmd\": \"x\", \"inherit_env\": 1}",
			"\"inherit_env\" must be true or false");
}

/*
 * Task creation takes the CLI's targets: a node list with ranges (a string,
 * or an array of them) and exclude; a target that matches nobody is 404
 * naming it.
 */
Test(http, node_lists_and_exclude)
{
	struct resp r;
	json_t *t;

	start(2, NULL);
	wait_node_alive();
	req(&r, "POST", "/v1/tasks",
	    "{\"argv\": [\"echo\", \"hi\"], \"nodes\": [\"w[1-2]\", \"w9\"], "
	    "\"exclude\": \"w[2-9]\"}");
	cr_assert_eq(r.status, 201, "%d %s", r.status, r.body);
	cr_expect_eq(jint(r.json, "job_id"), json_integer_value(json_array_get(
		json_object_get(r.json, "task_ids"), 0)), "a job: %s", r.body);
	t = json_object_get(r.json, "nodes");
	cr_assert(json_array_size(t) == 1 &&
		  !strcmp(json_string_value(json_array_get(t, 0)), "w1"),
		  "one task, on w1: %s", r.body);
	t = wait_done(json_integer_value(json_array_get(
		json_object_get(r.json, "task_ids"), 0)));
	cr_expect_str_eq(jstr(t, "state"), "SUCCEEDED");
	json_decref(t);
	resp_free(&r);

	req(&r, "POST", "/v1/tasks",
	    "{\"argv\": [\"true\"], \"nodes\": \"w[1-3]\"}");
	cr_expect_eq(r.status, 404, "%d %s", r.status, r.body);
	cr_expect_str_eq(jstr(r.json, "error"), "nodes w[2-3] (not "
			 "registered): no task can run there (leave them out "
			 "with exclude, or wait for them with wait_for_node)");
	resp_free(&r);
	req(&r, "POST", "/v1/tasks",
	    "{\"argv\": [\"true\"], \"all\": true, \"exclude\": \"w1\"}");
	cr_expect_eq(r.status, 404, "%d %s", r.status, r.body);
	cr_expect_str_eq(jstr(r.json, "error"), "every live node is excluded "
			 "(exclude 'w1')");
	resp_free(&r);
	req(&r, "POST", "/v1/tasks",
	    "{\"argv\": [\"true\"], \"nodes\": 7}");
	cr_expect_eq(r.status, 400, "%d %s", r.status, r.body);
	cr_expect_str_eq(jstr(r.json, "error"), "\"nodes\" must be a node "
			 "list (a string such as \"web[01-20],db1\") or an "
			 "array of them");
	resp_free(&r);
}

Test(http, keep_alive_pipelining_and_pieces)
{
	struct resp r;
	const char *body = "{\"argv\": [\"echo\", \"piecewise\"]}";
	char buf[512];
	int fd;

	start(1, NULL);
	wait_node_alive();
	/* three requests in one write, answered in order on one connection */
	fd = conn_http();
	send_str(fd, "GET /healthz HTTP/1.1\r\n\r\n"
		     "GET /v1/nodes HTTP/1.1\r\n\r\n"
		     "GET /v1/tasks/4242 HTTP/1.1\r\n\r\n"
		     "GET /healthz HTTP/1.1\r\n\r\n");
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 200);
	cr_expect_str_eq(jstr(r.json, "status"), "ok");
	resp_free(&r);
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 200);
	cr_expect(json_object_get(r.json, "nodes"));
	resp_free(&r);
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 404);
	resp_free(&r);
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 200);
	resp_free(&r);

	/* then a body sent one byte at a time on the same connection */
	snprintf(buf, sizeof(buf), "POST /v1/tasks HTTP/1.1\r\n"
		 "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
	for (size_t i = 0; buf[i]; i++) {
		cr_assert(nd_test_send_raw(fd, buf + i, 1) == 0);
		if (i % 16 == 0)
			nd_test_sleep_ms(1);
	}
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 201, "%s", r.body);
	json_decref(wait_done(jint(r.json, "id")));
	resp_free(&r);

	/* Connection: close is honoured */
	send_str(fd, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 200);
	cr_expect_str_eq(header(&r, "Connection"), "close");
	resp_free(&r);
	cr_expect(nd_test_expect_closed(fd, 5000) == 0);
	close(fd);
}

/*
 * One client pipelines 30,000 GET /metrics (each tours every shard) and
 * reads nothing: its responses count toward --max-output, so the master
 * stops taking its requests (RSS bounded) and drops it after
 * --stall-timeout; others are served meanwhile.
 */
Test(http, pipelined_metrics_without_reading_bounded_then_dropped)
{
	enum { REQS = 30000, BATCH = 500 };
	static const char one[] = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
	static char batch[BATCH * sizeof(one)];
	const char *extra[] = { "--max-output", "65536", "--stall-timeout",
				"2", NULL };
	size_t len = 0, off = 0, sent_reqs = 0;
	int64_t t0, closed_at = 0;
	long peak = 0, rss;
	struct resp r;
	int fd, fl;

	for (int i = 0; i < BATCH; i++, len += sizeof(one) - 1)
		memcpy(batch + len, one, sizeof(one) - 1);
	start(0, extra);
	ND_CHECK(nd_test_daemon_baseline(&d));
	fd = nd_test_connect_opts(http_port, 4096);
	cr_assert(fd >= 0, "connect: %s", nd_test_why);
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	t0 = nd_test_now_ms();
	/* send for 4 s at most, then wait for the drop (10 s at most) */
	while (nd_test_now_ms() - t0 < 14000) {
		if (sent_reqs < REQS && nd_test_now_ms() - t0 < 4000) {
			ssize_t n = send(fd, batch + off, len - off,
					 MSG_NOSIGNAL);

			if (n > 0) {
				off += (size_t)n;
				if (off == len) {
					off = 0;
					sent_reqs += BATCH;
				}
			} else if (n < 0 && errno != EAGAIN) {
				closed_at = nd_test_now_ms();
				break; /* reset: dropped */
			}
		}
		nd_test_sleep_ms(10);
		rss = d.asan ? 0 : nd_test_rss_kib(d.pid);
		if (rss > peak)
			peak = rss;
		if (nd_test_peer_closed(fd)) {
			closed_at = nd_test_now_ms();
			break;
		}
	}
	cr_log_info("pipelined /metrics: %zu requests sent, dropped after "
		    "%lld ms, RSS peak %ld KiB, baseline %ld KiB", sent_reqs,
		    closed_at ? (long long)(closed_at - t0) : -1LL, peak,
		    d.rss_base_kib);
	if (!d.asan)
		cr_assert(peak - d.rss_base_kib < ND_TEST_RSS_SLACK_KIB,
			  "RSS grew by %ld KiB while a client pipelined "
			  "/metrics without reading (--max-output 65536)",
			  peak - d.rss_base_kib);
	cr_assert(closed_at, "a client that read nothing for 14 s was not "
		  "dropped (--stall-timeout 2)");
	close(fd);
	req(&r, "GET", "/healthz", NULL);
	cr_expect_eq(r.status, 200);
	resp_free(&r);
	EXPECT_HEALTHY(&d);
}

/*
 * The other side of that limit: a client that pipelines more responses than
 * --max-output and then reads them all gets every one, in order (holding
 * and releasing its input never wedges the connection).
 */
Test(http, pipelined_responses_over_max_output_all_arrive)
{
	enum { REQS = 300 };
	static const char one[] = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
				  "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
	const char *extra[] = { "--max-output", "16384", NULL };
	struct resp r;
	int fd;

	start(0, extra);
	fd = conn_http();
	for (int i = 0; i < REQS / 2; i++)
		send_str(fd, one);
	for (int i = 0; i < REQS; i++) {
		read_resp(fd, &r, 10000);
		cr_assert_eq(r.status, 200, "response %d: %d", i, r.status);
		if (i % 2)
			cr_assert_str_eq(jstr(r.json, "status"), "ok",
					 "response %d out of order", i);
		else
			cr_assert(strstr(r.body, "noded_connections"),
				  "response %d is not the metrics", i);
		resp_free(&r);
	}
	close(fd);
}

/* Request headers that trickle in are cut off by --handshake-timeout with
 * 408, however each byte resets the idle timeout; a connection that sends
 * nothing is closed after it too. */
Test(http, trickled_request_headers_get_408)
{
	static const char head[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n"
				   "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
	const char *extra[] = { "--handshake-timeout", "1", NULL };
	struct resp r;
	size_t i;
	int fd;

	start(0, extra);
	fd = conn_http();
	for (i = 0; head[i]; i++) {
		if (nd_test_peer_closed(fd) || nd_test_send_raw(fd, head + i, 1))
			break;
		nd_test_sleep_ms(100);
	}
	cr_assert(head[i], "headers trickled over %zu ms were taken "
		  "(--handshake-timeout 1)", i * 100);
	read_resp(fd, &r, 5000);
	cr_expect_eq(r.status, 408, "%s", r.body);
	resp_free(&r);
	cr_expect(nd_test_expect_closed(fd, 5000) == 0);
	close(fd);
	/* a connection that never begins a request is closed too (the idle
	 * timeout is 60 s) */
	fd = conn_http();
	cr_expect(nd_test_expect_closed(fd, 5000) == 0,
		  "a silent HTTP connection was still open after 5 s "
		  "(--handshake-timeout 1): %s", nd_test_why);
	close(fd);
}

Test(http, client_gone_during_follow)
{
	struct resp r;
	long long id;
	char path[96];
	json_t *t;
	int fd;

	start(1, NULL);
	wait_node_alive();
	/* a task that prints a lot, then a follower that leaves early */
	id = submit("{\"cmd\": \"head -c 20000000 /dev/zero | tr '\\\\0' x; "
		    "echo\"}");
	fd = nd_test_connect_opts(http_port, 4096);
	cr_assert(fd >= 0);
	snprintf(path, sizeof(path), "GET /v1/tasks/%lld/output?follow=1 "
		 "HTTP/1.1\r\n\r\n", id);
	send_str(fd, path);
	nd_test_sleep_ms(300);
	close(fd);
	/* the task still ends, and nothing else is hurt */
	t = wait_done(id);
	cr_expect_str_eq(jstr(t, "state"), "SUCCEEDED");
	cr_expect(json_is_true(json_object_get(t, "truncated")));
	json_decref(t);
	req(&r, "GET", "/healthz", NULL);
	cr_expect_eq(r.status, 200);
	resp_free(&r);
}

/* A follower's watcher goes with its connection, not when the task ends. */
Test(http, follower_watcher_dropped_with_its_connection)
{
	struct resp r;
	long long id, watchers = -1;
	char path[96];
	int64_t deadline;
	int fd;

	start(1, NULL);
	wait_node_alive();
	id = submit("{\"argv\": [\"sleep\", \"30\"]}");
	fd = conn_http();
	snprintf(path, sizeof(path), "GET /v1/tasks/%lld/output?follow=1 "
		 "HTTP/1.1\r\n\r\n", id);
	send_str(fd, path);
	snprintf(path, sizeof(path), "/v1/tasks/%lld", id);
	deadline = nd_test_now_ms() + 3000;
	while (watchers != 1 && nd_test_now_ms() < deadline) {
		req(&r, "GET", path, NULL);
		watchers = jint(r.json, "watchers");
		resp_free(&r);
		nd_test_sleep_ms(20);
	}
	cr_assert_eq(watchers, 1, "the follower never showed as a watcher");
	close(fd);
	deadline = nd_test_now_ms() + 3000;
	while (watchers != 0 && nd_test_now_ms() < deadline) {
		nd_test_sleep_ms(20);
		req(&r, "GET", path, NULL);
		watchers = jint(r.json, "watchers");
		cr_assert(!strcmp(jstr(r.json, "state"), "RUNNING") ||
				  !strcmp(jstr(r.json, "state"), "ASSIGNED"),
			  "the task ended: %s", jstr(r.json, "state"));
		resp_free(&r);
	}
	cr_expect_eq(watchers, 0, "a closed follower is still a watcher");
	req(&r, "DELETE", path, NULL);
	cr_expect_eq(r.status, 200);
	resp_free(&r);
}

/* A raw request on a new connection: its response, then the close. */
static void raw_exchange(const char *text, struct resp *r)
{
	int fd = conn_http();

	send_str(fd, text);
	read_resp(fd, r, 10000);
	cr_expect(nd_test_expect_closed(fd, 5000) == 0,
		  "still open after '%s'", text);
	close(fd);
}

Test(http, strict_about_versions_query_parameters_and_fields)
{
	struct resp r;

	start(0, NULL);
	/* HTTP/2's preface, HTTP/0.9 (no version) and HTTP/2.0 or 3.0 in a
	 * request line are refused with 505, not served as HTTP/1.1 */
	raw_exchange("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &r);
	cr_expect_eq(r.status, 505, "h2 preface: %d %s", r.status, r.body);
	resp_free(&r);
	raw_exchange("GET /healthz\r\n", &r);
	cr_expect_eq(r.status, 505, "HTTP/0.9: %d %s", r.status, r.body);
	resp_free(&r);
	raw_exchange("GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", &r);
	cr_expect_eq(r.status, 505, "HTTP/2.0: %d %s", r.status, r.body);
	resp_free(&r);
	raw_exchange("GET /healthz HTTP/3.0\r\nHost: t\r\n\r\n", &r);
	cr_expect_eq(r.status, 505, "HTTP/3.0: %d %s", r.status, r.body);
	resp_free(&r);
	/* HTTP/1.0 is still served */
	raw_exchange("GET /healthz HTTP/1.0\r\n\r\n", &r);
	cr_expect_eq(r.status, 200, "HTTP/1.0: %d %s", r.status, r.body);
	resp_free(&r);

	/* unknown query parameters are named, not ignored */
	expect_error("GET", "/v1/tasks?limt=5", NULL, 400,
		     "unknown query parameter 'limt'");
	expect_error("GET", "/v1/tasks?state=RUNNING&x=1", NULL, 400, "'x'");
	expect_error("GET", "/v1/tasks/1/output?folow=1", NULL, 400,
		     "'folow'");
	expect_error("GET", "/v1/nodes?verbose=1", NULL, 400, "'verbose'");
	expect_error("GET", "/v1/tasks/1?pretty", NULL, 400, "'pretty'");
	expect_error("DELETE", "/v1/tasks/1?force=1", NULL, 400, "'force'");
	expect_error("GET", "/healthz?x=1", NULL, 400, "'x'");
	expect_error("POST", "/v1/tasks?dry=1", "{\"cmd\": \"true\"}", 400,
		     "'dry'");
	expect_error("GET", "/v1/tasks?%ff=1", NULL, 400, "'?'");
	/* given twice: which would count? */
	expect_error("GET", "/v1/tasks?limit=1&limit=2", NULL, 400,
		     "'limit' given more than once");
	expect_error("GET", "/v1/tasks/1/output?follow=1&follow=0", NULL, 400,
		     "'follow' given more than once");
	expect_error("GET", "/v1/tasks/1/output?follow=maybe", NULL, 400,
		     "follow must be");
	/* known ones still work, with stray '&' */
	req(&r, "GET", "/v1/tasks?limit=5&&state=RUNNING&", NULL);
	cr_expect_eq(r.status, 200, "%s", r.body);
	resp_free(&r);

	/* an unknown JSON field is named */
	expect_error("POST", "/v1/tasks", "{\"cmd\": \"x\", \"retires\": 1}",
		     400, "unknown field \"retires\"");
}

Test(http, token_guards_the_api_off_loopback_rules)
{
	struct resp r;
	char buf[256];
	int fd, tfd;

	snprintf(tokfile, sizeof(tokfile), "/tmp/nd-http-tok-XXXXXX");
	tfd = mkstemp(tokfile);
	cr_assert(tfd >= 0);
	cr_assert(write(tfd, "s3cret-token-0123456789\n", 24) == 24);
	close(tfd);
	start(0, (const char *const[]){ "--token-file", tokfile, NULL });
	req(&r, "GET", "/healthz", NULL); /* health needs no token */
	cr_expect_eq(r.status, 200);
	resp_free(&r);
	expect_error("GET", "/v1/nodes", NULL, 401, "token");
	fd = conn_http();
	send_str(fd, "GET /v1/nodes HTTP/1.1\r\n"
		     "Authorization: Bearer wrong\r\n\r\n");
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 401);
	cr_expect_str_eq(header(&r, "WWW-Authenticate"), "Bearer");
	resp_free(&r);
	snprintf(buf, sizeof(buf), "GET /v1/nodes HTTP/1.1\r\n"
		 "Authorization: Bearer s3cret-token-0123456789\r\n\r\n");
	send_str(fd, buf);
	read_resp(fd, &r, 10000);
	cr_expect_eq(r.status, 200, "%s", r.body);
	resp_free(&r);
	close(fd);
}

Test(http, refused_tokens_are_logged_at_warn_once_a_second)
{
	char log[] = "/tmp/nd-http-log-XXXXXX", line[4096];
	const char *argv[] = { nd_test_bin(), "master", "--listen",
			       "127.0.0.1:0", "--http", "127.0.0.1:0",
			       "--token-file", tokfile, NULL };
	int fd, tfd, lines = 0;
	long refusals = 0;
	int64_t t0, took;
	FILE *f;

	snprintf(tokfile, sizeof(tokfile), "/tmp/nd-http-tok-XXXXXX");
	tfd = mkstemp(tokfile);
	cr_assert(tfd >= 0);
	cr_assert(write(tfd, "s3cret-token-0123456789\n", 24) == 24);
	close(tfd);
	fd = mkstemp(log);
	cr_assert(fd >= 0);
	cr_assert(nd_test_daemon_start_err(&d, argv, fd) == 0, "%s",
		  nd_test_why);
	close(fd);
	read_http_port();
	t0 = nd_test_now_ms();
	for (int i = 0; i < 30; i++)
		expect_error("GET", "/v1/nodes", NULL, 401, "token");
	took = nd_test_now_ms() - t0;
	nd_test_sleep_ms(1100);
	expect_error("GET", "/v1/tasks", NULL, 401, "token");
	nd_test_sleep_ms(200);
	f = fopen(log, "r");
	cr_assert(f);
	while (fgets(line, sizeof(line), f)) {
		const char *sup = strstr(line, " suppressed=");

		if (!strstr(line, "event=auth.refused"))
			continue;
		cr_expect(strstr(line, "level=warn") &&
			  strstr(line, "api=http") &&
			  strstr(line, "peer=127.0.0.1:") && sup, "%s", line);
		lines++;
		refusals += 1 + (sup ? atol(sup + 12) : 0);
	}
	fclose(f);
	unlink(log);
	/* each refusal counted once, in a few lines, not 31 */
	cr_expect_eq(refusals, 31, "%d lines for %ld refusals", lines,
		     refusals);
	cr_expect(lines >= 2 && lines <= 2 + took / 1000 + 1,
		  "%d lines for 31 refusals, 30 in %lld ms", lines,
		  (long long)took);
}

/* ---- /metrics ---- */

static bool metric_name(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!(isalpha((unsigned char)s[i]) || s[i] == '_' ||
		      s[i] == ':' || (i && isdigit((unsigned char)s[i]))))
			return false;
	return n > 0;
}

/*
 * Checks text against the Prometheus text format: HELP/TYPE comments,
 * samples `name{label="value",...} number`, each family's samples together
 * and after its TYPE. Returns NULL or what is wrong.
 */
static const char *prom_check(char *text, char *why, size_t size)
{
	char family[128] = "", *save = NULL;
	char seen[256][128];
	int nseen = 0, lineno = 0;

	for (char *l = strtok_r(text, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		char name[128];
		size_t n;
		char *v, *end;

		lineno++;
		if (!strncmp(l, "# HELP ", 7))
			continue;
		if (!strncmp(l, "# TYPE ", 7)) {
			char type[32];

			if (sscanf(l + 7, "%127s %31s", family, type) != 2 ||
			    (strcmp(type, "counter") && strcmp(type, "gauge") &&
			     strcmp(type, "histogram"))) {
				snprintf(why, size, "line %d: bad TYPE: %s",
					 lineno, l);
				return why;
			}
			for (int i = 0; i < nseen; i++)
				if (!strcmp(seen[i], family)) {
					snprintf(why, size, "line %d: family %s "
						 "twice", lineno, family);
					return why;
				}
			if (nseen < 256)
				snprintf(seen[nseen++], sizeof(seen[0]), "%s",
					 family);
			continue;
		}
		n = strcspn(l, "{ ");
		if (!metric_name(l, n) || n >= sizeof(name)) {
			snprintf(why, size, "line %d: bad name: %s", lineno, l);
			return why;
		}
		memcpy(name, l, n);
		name[n] = '\0';
		if (strncmp(name, family, strlen(family))) {
			snprintf(why, size, "line %d: %.100s outside its "
				 "family (%.100s)", lineno, name, family);
			return why;
		}
		v = l + n;
		if (*v == '{') {
			char *close = strchr(v, '}');

			if (!close) {
				snprintf(why, size, "line %d: no }", lineno);
				return why;
			}
			for (char *p = v + 1; p < close && *p != '}';) {
				size_t k = strcspn(p, "=");

				if (!metric_name(p, k) || p[k + 1] != '"') {
					snprintf(why, size, "line %d: bad label",
						 lineno);
					return why;
				}
				/* the value's escapes: \\ \" \n only */
				for (p += k + 2; *p && *p != '"'; p++) {
					if (*p != '\\')
						continue;
					if (!strchr("\\\"n", p[1]) || !p[1]) {
						snprintf(why, size, "line %d: "
							 "bad escape in a label "
							 "value", lineno);
						return why;
					}
					p++;
				}
				if (!*p) {
					snprintf(why, size, "line %d: open "
						 "label value", lineno);
					return why;
				}
				p++;
				if (p > close)
					close = strchr(p, '}');
				if (!close) {
					snprintf(why, size, "line %d: no }",
						 lineno);
					return why;
				}
				if (*p == ',')
					p++;
			}
			v = close + 1;
		}
		if (*v != ' ') {
			snprintf(why, size, "line %d: no value", lineno);
			return why;
		}
		strtod(v + 1, &end);
		if (end == v + 1 || *end) {
			snprintf(why, size, "line %d: bad value '%s'", lineno,
				 v + 1);
			return why;
		}
	}
	return NULL;
}

Test(http, metrics_parse_as_prometheus_text)
{
	struct resp r;
	char why[512];
	static const char *const want[] = {
		"noded_connections{shard=\"0\"}",
		"noded_rpc_requests_total{method=\"hello\"}",
		"noded_rpc_request_duration_seconds_bucket{method=\"ping\"",
		"noded_http_requests_total{route=\"node_get\",code=\"200\"}",
		"noded_http_request_duration_seconds_count{route=\"task_get\"}",
		"noded_io_uring_submissions_total",
		"noded_io_uring_cq_overflows_total",
		"noded_io_uring_buffer_ring_exhausted_total",
		"noded_tasks{state=\"SUCCEEDED\"} 1",
		"noded_task_queue_length 0",
		"noded_dispatch_duration_seconds_count 1",
		"noded_node_slots{node=\"w1\"} 2",
		"noded_slots{use=\"total\"} 2",
		"noded_nodes{state=\"ALIVE\"} 1",
	};

	start(2, NULL);
	wait_node_alive();
	cr_assert(nd_test_fresh_ping(d.port) == 0);
	json_decref(wait_done(submit("{\"argv\": [\"true\"]}")));
	req(&r, "GET", "/metrics", NULL);
	cr_assert_eq(r.status, 200);
	cr_expect(strstr(header(&r, "Content-Type"), "text/plain"));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect(strstr(r.body, want[i]), "no %s in /metrics",
			  want[i]);
	cr_expect(!prom_check(r.body, why, sizeof(why)), "%s", why);
	resp_free(&r);
}

/*
 * A node name that needs escaping in the text format (a quote and a
 * backslash) is escaped, and one that is not UTF-8 is refused at Hello, so
 * /metrics stays valid UTF-8 and parses.
 */
Test(http, metrics_escape_node_names_and_stay_utf8)
{
	static const char odd[] = "q\"b\\s";
	const char *wargv[] = { nd_test_bin(), "worker", "--master", master,
				"--name", odd, "--slots", "3", NULL };
	Noded__Frame f, *e;
	Noded__HelloRequest h;
	struct resp r;
	json_t *utf8;
	pid_t w2;
	char why[512];
	int fd, null_fd;

	start(2, NULL);
	wait_node_alive();
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	w2 = nd_test_spawn(wargv, null_fd, null_fd, null_fd);
	close(null_fd);
	cr_assert(w2 > 0);
	for (int64_t end = nd_test_now_ms() + 10000;;) {
		bool alive;

		req(&r, "GET", "/v1/nodes/q%22b%5Cs", NULL);
		alive = r.status == 200 && !strcmp(jstr(r.json, "state"),
						   "ALIVE");
		if (alive)
			cr_expect_str_eq(jstr(r.json, "name"), odd);
		resp_free(&r);
		if (alive)
			break;
		cr_assert(nd_test_now_ms() < end, "worker %s never joined",
			  odd);
		nd_test_sleep_ms(50);
	}
	/* a worker named with a byte that is not UTF-8 does not get in */
	fd = nd_test_connect(d.port);
	cr_assert(fd >= 0);
	nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
	h.node_name = "bad\xffname";
	cr_assert(nd_test_send_frame(fd, &f) == 0);
	cr_assert(nd_test_recv_frame(fd, ND_TEST_TIMEOUT_MS, &e) == 0, "%s",
		  nd_test_why);
	cr_expect(e->body_case == NODED__FRAME__BODY_ERROR &&
			  e->error->code == NODED__ERROR_CODE__BAD_REQUEST,
		  "Hello with 'bad\\xffname': %s", nd_test_describe(e));
	nd_frame_free(e, NULL);
	close(fd);

	req(&r, "GET", "/metrics", NULL);
	cr_assert_eq(r.status, 200);
	utf8 = json_stringn(r.body, r.body_len); /* NULL: not UTF-8 */
	cr_expect(utf8, "/metrics is not valid UTF-8");
	json_decref(utf8);
	cr_expect(strstr(r.body, "noded_node_slots{node=\"q\\\"b\\\\s\"} 3\n"),
		  "no escaped node name in /metrics");
	cr_expect(strstr(r.body, "noded_node_running_tasks{node=\"q\\\"b\\\\s\"}"
			 " 0\n"), "no escaped node name in /metrics");
	cr_expect(!prom_check(r.body, why, sizeof(why)), "%s", why);
	resp_free(&r);
	nd_test_kill_pid(w2);
}

/* `noded CMD --master M ARGS...` (real binary); returns its status. */
static int cli(char *out, size_t out_size, const char *const args[])
{
	const char *argv[16] = { nd_test_bin(), args[0], "--master", master };
	char err[4096];
	size_t n = 4;
	int st;

	for (size_t i = 1; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	st = nd_test_run(argv, out, out_size, err, sizeof(err), 20000);
	if (st)
		cr_log_error("noded %s exited %d: %s", args[0], st, err);
	return st;
}

/* The task of id in a JSON list (array), or NULL. */
static json_t *find_task(json_t *list, long long id)
{
	size_t i;
	json_t *t;

	json_array_foreach(list, i, t)
		if (jint(t, "id") == id)
			return t;
	return NULL;
}

/* Its argv_base64[i] decoded equals want. */
static void expect_argv_bytes(json_t *t, size_t i, const char *want,
			      const char *view)
{
	char *got = nd_test_unbase64(json_string_value(json_array_get(
		json_object_get(t, "argv_base64"), i)));

	cr_expect_str_eq(got, want, "%s: argv_base64[%zu]", view, i);
	free(got);
}

/*
 * A command with a byte that is not UTF-8, submitted with the real CLI,
 * shows in every view: GET /v1/tasks/ID (with its output in base64),
 * GET /v1/tasks (not left out), `noded task --json`, `noded tasks --json`
 * (which fail for nobody else's record either), and the tables.
 */
Test(http, bytes_that_are_not_utf8_show_in_every_view)
{
	static const char arg[] = "bad\xff" "arg";
	static char out[1 << 16];
	long long id, good, missing;
	json_t *j, *t;
	char *bytes, path[64];
	struct resp r;

	start(2, NULL);
	wait_node_alive();
	good = submit("{\"argv\": [\"true\"]}");
	json_decref(wait_done(good));
	cr_assert_eq(cli(out, sizeof(out), (const char *const[]){
			     "submit", "--", "echo", arg, NULL }), 0);
	id = atoll(out);
	cr_assert(id > 0, "submit printed '%s'", out);
	cr_assert_eq(cli(out, sizeof(out), (const char *const[]){
			     "submit", "--", "nope\xfe", NULL }), 0);
	missing = atoll(out);

	/* GET /v1/tasks/ID: 200, argv exact in argv_base64, output base64 */
	j = wait_done(id);
	cr_expect_str_eq(jstr(j, "state"), "SUCCEEDED");
	expect_argv_bytes(j, 1, arg, "GET /v1/tasks/ID");
	cr_expect_str_eq(json_string_value(json_array_get(
				 json_object_get(j, "argv"), 1)),
			 "bad\xef\xbf\xbd" "arg");
	cr_expect_str_eq(jstr(j, "output_encoding"), "base64");
	bytes = nd_test_unbase64(jstr(j, "output"));
	cr_expect_str_eq(bytes, "bad\xff" "arg\n");
	free(bytes);
	json_decref(j);
	j = wait_done(missing);
	bytes = nd_test_unbase64(jstr(j, "reason_base64"));
	cr_expect_str_eq(bytes, "command not found: nope\xfe");
	free(bytes);
	json_decref(j);

	/* GET /v1/tasks: every record, this one included */
	req(&r, "GET", "/v1/tasks", NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	t = find_task(json_object_get(r.json, "tasks"), id);
	cr_assert(t, "GET /v1/tasks left task %lld out: %s", id, r.body);
	expect_argv_bytes(t, 1, arg, "GET /v1/tasks");
	cr_expect(find_task(json_object_get(r.json, "tasks"), good));
	resp_free(&r);

	/* the CLI's JSON views */
	snprintf(path, sizeof(path), "%lld", id);
	cr_assert_eq(cli(out, sizeof(out), (const char *const[]){
			     "task", path, "--json", NULL }), 0,
		     "noded task --json failed");
	j = json_loads(out, 0, NULL);
	cr_assert(j, "noded task --json: not JSON: %s", out);
	expect_argv_bytes(j, 1, arg, "noded task --json");
	json_decref(j);
	cr_assert_eq(cli(out, sizeof(out), (const char *const[]){
			     "tasks", "--json", NULL }), 0,
		     "noded tasks --json failed");
	j = json_loads(out, 0, NULL);
	cr_assert(json_is_array(j), "noded tasks --json: not JSON: %s", out);
	cr_expect_eq(json_array_size(j), 3);
	t = find_task(j, id);
	cr_assert(t);
	expect_argv_bytes(t, 1, arg, "noded tasks --json");
	json_decref(j);

	/* the tables show the byte escaped, never raw */
	cr_assert_eq(cli(out, sizeof(out), (const char *const[]){
			     "task", path, NULL }), 0);
	cr_expect(strstr(out, "command:    echo $'bad\\xffarg'\n"), "%s", out);
	cr_assert_eq(cli(out, sizeof(out), (const char *const[]){
			     "tasks", NULL }), 0);
	cr_expect(strstr(out, "echo $'bad\\xffarg'\n"), "%s", out);
	cr_expect(strstr(out, "$'nope\\xfe'\n"), "%s", out);
	cr_expect(!strchr(out, '\xff') && !strchr(out, '\xfe'),
		  "a raw byte in the table: %s", out);
}

/* A key given twice in the JSON body is refused, not resolved. */
Test(http, submit_refuses_duplicate_keys)
{
	start(0, NULL);
	expect_error("POST", "/v1/tasks", "{\"argv\": [\"true\"], \"labels\": "
		     "{\"k\": \"a\", \"k\": \"b\"}}", 400, "duplicate");
	expect_error("POST", "/v1/tasks", "{\"argv\": [\"true\"], \"node\": "
		     "\"a\", \"node\": \"b\"}", 400, "duplicate");
}

/* A POST sent again with its Idempotency-Key makes no second task: it is
 * answered with the first one's id; another key (or none) makes another;
 * a key over the bound is refused. */
Test(http, idempotency_key_makes_one_task)
{
	const char *body = "{\"argv\": [\"true\"], \"node\": \"absent\", "
			   "\"wait_for_node\": true}";
	char req1[512], big[600];
	long long a, b, c;
	struct resp r;
	int fd;

	start(0, NULL);
	snprintf(req1, sizeof(req1), "POST /v1/tasks HTTP/1.1\r\nHost: x\r\n"
		 "Idempotency-Key: 7f1c-once\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(body), body);
	for (int k = 0; k < 2; k++) {
		fd = conn_http();
		send_str(fd, req1);
		read_resp(fd, &r, 10000);
		close(fd);
		cr_assert_eq(r.status, 201, "%s", r.body);
		if (!k)
			a = jint(r.json, "id");
		else
			b = jint(r.json, "id");
		resp_free(&r);
	}
	cr_assert_eq(a, b, "sent again with its key, a second task");
	c = submit(body);
	cr_assert_neq(c, a);
	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(req1, sizeof(req1), "POST /v1/tasks HTTP/1.1\r\nHost: x\r\n"
		 "Idempotency-Key: %.300s\r\nContent-Length: %zu\r\n\r\n%s",
		 big, strlen(body), body);
	fd = conn_http();
	send_str(fd, req1);
	read_resp(fd, &r, 10000);
	close(fd);
	cr_assert_eq(r.status, 400, "%s", r.body);
	resp_free(&r);
}
