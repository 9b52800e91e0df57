/*
 * The node registry end to end: a real master and real `noded worker`
 * processes on loopback, observed through `noded nodes --json`.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

static struct nd_test_daemon d;
static pid_t workers[4];

static void setup(void)
{
	memset(&d, 0, sizeof(d));
	memset(workers, 0, sizeof(workers));
}

static void stop_pid(pid_t *pid, int sig)
{
	if (*pid <= 0)
		return;
	kill(*pid, sig);
	for (int i = 0; i < 100 && waitpid(*pid, NULL, WNOHANG) == 0; i++)
		nd_test_sleep_ms(50);
	kill(*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

static void teardown(void)
{
	for (int i = 0; i < 4; i++)
		stop_pid(&workers[i], SIGTERM);
	nd_test_daemon_stop(&d);
}

TestSuite(node, .init = setup, .fini = teardown, .timeout = 60);

/* `noded worker --master 127.0.0.1:port --name name [--label l]` */
static pid_t worker_start(int port, const char *name, const char *label)
{
	char master[32];
	pid_t pid;

	snprintf(master, sizeof(master), "127.0.0.1:%d", port);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int null_fd = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (null_fd >= 0 && !getenv("ND_TEST_VERBOSE"))
			dup2(null_fd, 2);
		if (label)
			execl(nd_test_bin(), nd_test_bin(), "worker", "--master",
			      master, "--name", name, "--label", label,
			      "--slots", "3", (char *)NULL);
		else
			execl(nd_test_bin(), nd_test_bin(), "worker", "--master",
			      master, "--name", name, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Runs `noded nodes --json`; returns the parsed array (caller decrefs). */
static json_t *nodes_json(int port)
{
	char master[32], out[65536], err[1024];
	const char *argv[] = { nd_test_bin(), "nodes", "--master", master,
			       "--json", NULL };
	json_error_t je;
	json_t *j;
	int st;

	snprintf(master, sizeof(master), "127.0.0.1:%d", port);
	st = nd_test_run(argv, out, sizeof(out), err, sizeof(err), 10000);
	cr_assert_eq(st, 0, "noded nodes exited %d: %s", st, err);
	j = json_loads(out, 0, &je);
	cr_assert(j && json_is_array(j), "not a JSON array: %s (%s)", out,
		  je.text);
	return j;
}

/* The node's state in the registry, or NULL when it is not listed. */
static const char *node_state(json_t *arr, const char *name, json_t **node)
{
	size_t i;
	json_t *n;

	json_array_foreach(arr, i, n) {
		if (!strcmp(json_string_value(json_object_get(n, "name")),
			    name)) {
			if (node)
				*node = n;
			return json_string_value(json_object_get(n, "state"));
		}
	}
	return NULL;
}

/* Polls the registry until name is in state want; returns ms it took. */
static int64_t wait_state(int port, const char *name, const char *want,
			  int timeout_ms)
{
	int64_t t0 = nd_test_now_ms();
	const char *st = NULL;
	char last[32] = "absent";

	while (nd_test_now_ms() - t0 < timeout_ms) {
		json_t *arr = nodes_json(port);

		st = node_state(arr, name, NULL);
		snprintf(last, sizeof(last), "%s", st ? st : "absent");
		json_decref(arr);
		if (st && !strcmp(last, want))
			return nd_test_now_ms() - t0;
		nd_test_sleep_ms(100);
	}
	cr_assert_fail("node %s not %s within %d ms (last: %s)", name, want,
		       timeout_ms, last);
	return -1;
}

Test(node, workers_register_with_labels_and_slots)
{
	json_t *arr, *n = NULL, *labels;

	DAEMON_START(&d);
	workers[0] = worker_start(d.port, "w1", "rack=a");
	workers[1] = worker_start(d.port, "w2", "rack=b");
	wait_state(d.port, "w1", "ALIVE", 5000);
	wait_state(d.port, "w2", "ALIVE", 5000);
	arr = nodes_json(d.port);
	cr_assert_eq(json_array_size(arr), 2, "want 2 nodes, got %zu",
		     json_array_size(arr));
	node_state(arr, "w1", &n);
	labels = json_object_get(n, "labels");
	cr_assert_str_eq(json_string_value(json_object_get(labels, "rack")), "a");
	cr_assert_eq(json_integer_value(json_object_get(n, "slots_total")), 3);
	cr_assert(json_integer_value(json_object_get(n, "mem_total_bytes")) > 0);
	cr_assert(json_integer_value(json_object_get(n, "last_heartbeat_unix_ms")) >
		  0);
	cr_assert(strncmp(json_string_value(json_object_get(n, "address")),
			  "127.0.0.1:", 10) == 0);
	json_decref(arr);
	STOP_OK(&d);
}

Test(node, killed_worker_is_dead_within_heartbeat_timeout)
{
	int64_t t0, took;

	DAEMON_START(&d);
	workers[0] = worker_start(d.port, "victim", NULL);
	workers[1] = worker_start(d.port, "survivor", NULL);
	wait_state(d.port, "victim", "ALIVE", 5000);
	wait_state(d.port, "survivor", "ALIVE", 5000);
	t0 = nd_test_now_ms();
	stop_pid(&workers[0], SIGKILL);
	wait_state(d.port, "victim", "DEAD", 6000);
	took = nd_test_now_ms() - t0;
	cr_assert(took <= 4500, "DEAD after %lld ms, want within the 3 s "
		  "heartbeat timeout (plus one heartbeat)", (long long)took);
	/* the other node is untouched */
	wait_state(d.port, "survivor", "ALIVE", 1000);
	STOP_OK(&d);
}

Test(node, restarted_worker_comes_back_alive)
{
	DAEMON_START(&d);
	workers[0] = worker_start(d.port, "phoenix", NULL);
	wait_state(d.port, "phoenix", "ALIVE", 5000);
	stop_pid(&workers[0], SIGKILL);
	wait_state(d.port, "phoenix", "DEAD", 6000);
	workers[0] = worker_start(d.port, "phoenix", NULL);
	wait_state(d.port, "phoenix", "ALIVE", 5000);
	STOP_OK(&d);
}

Test(node, workers_reconnect_after_master_restart)
{
	char listen[32];
	int port;

	DAEMON_START(&d);
	port = d.port;
	workers[0] = worker_start(port, "steady", NULL);
	wait_state(port, "steady", "ALIVE", 5000);
	STOP_OK(&d);
	nd_test_sleep_ms(300);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	DAEMON_START(&d, "--listen", listen);
	cr_assert_eq(d.port, port);
	/* backoff tops out at 5 s; registration follows the connect */
	wait_state(port, "steady", "ALIVE", 8000);
	STOP_OK(&d);
}

Test(node, worker_sigterm_exits_zero)
{
	int st = -1;

	DAEMON_START(&d);
	workers[0] = worker_start(d.port, "polite", NULL);
	wait_state(d.port, "polite", "ALIVE", 5000);
	kill(workers[0], SIGTERM);
	for (int i = 0; i < 100 && waitpid(workers[0], &st, WNOHANG) == 0; i++)
		nd_test_sleep_ms(50);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "worker did not exit 0 on SIGTERM (status 0x%x)", st);
	workers[0] = 0;
	STOP_OK(&d);
}

Test(node, client_commands_fail_clearly)
{
	char out[4096], err[4096];
	const char *no_master[] = { nd_test_bin(), "nodes", "--master",
				    "127.0.0.1:1", NULL };
	const char *bad_label[] = { nd_test_bin(), "worker", "--label",
				    "novalue", NULL };
	const char *bad_addr[] = { nd_test_bin(), "worker", "--master",
				   "nowhere", NULL };
	int st;

	st = nd_test_run(no_master, out, sizeof(out), err, sizeof(err), 10000);
	cr_assert_eq(st, 1, "nodes without a master: exit %d", st);
	cr_assert(strstr(err, "cannot reach the master"), "stderr: %s", err);
	st = nd_test_run(bad_label, out, sizeof(out), err, sizeof(err), 10000);
	cr_assert_eq(st, 2, "bad --label: exit %d", st);
	cr_assert(strstr(err, "KEY=VALUE"), "stderr: %s", err);
	st = nd_test_run(bad_addr, out, sizeof(out), err, sizeof(err), 10000);
	/* a bad address is bad usage, as for every command (exit 2) */
	cr_assert_eq(st, 2, "bad --master: exit %d", st);
	cr_assert(strstr(err, "'nowhere' is not HOST:PORT"), "stderr: %s",
		  err);
}

/* Reads one frame on fd: an Error of kind `kind` with BAD_REQUEST whose
 * message holds `needle`. */
static void expect_bad_request(int fd, Noded__FrameKind kind,
			       const char *needle)
{
	Noded__Frame *r = RECV(fd);

	cr_assert(r->kind == kind &&
			  r->body_case == NODED__FRAME__BODY_ERROR &&
			  r->error->code == NODED__ERROR_CODE__BAD_REQUEST,
		  "want a BAD_REQUEST Error, got %s", nd_test_describe(r));
	cr_expect(strstr(r->error->message, needle), "message '%s' lacks '%s'",
		  r->error->message, needle);
	nd_frame_free(r, NULL);
}

/*
 * A node name, label key or label value that is not UTF-8 (or holds a
 * control character) is refused where a worker registers, with a message
 * that says which and where; `noded worker` says so before it connects.
 * Nothing of it reaches the registry, so `nodes --json` stays whole.
 */
Test(node, names_and_labels_must_be_text)
{
	char master[32], out[4096], err[4096];
	const char *bad_name[] = { nd_test_bin(), "worker", "--master", master,
				   "--name", "bad\xffname", NULL };
	const char *bad_label[] = { nd_test_bin(), "worker", "--master",
				    master, "--name", "w", "--label",
				    "k=v\x01", NULL };
	Noded__Frame f, *r;
	Noded__HelloRequest h;
	Noded__AssignTaskRequest a;
	Noded__NodeStatus st = NODED__NODE_STATUS__INIT;
	Noded__NodeStatus__LabelsEntry l, *labels[] = { &l };
	json_t *arr;
	int fd, rc;

	DAEMON_START(&d);
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	rc = nd_test_run(bad_name, out, sizeof(out), err, sizeof(err), 10000);
	cr_expect_eq(rc, 2, "worker --name 'bad\\xffname': exit %d", rc);
	cr_expect(strstr(err, "--name 'bad\\xffname' is not valid UTF-8 "
			      "(byte 0xff at offset 3)"), "stderr: %s", err);
	rc = nd_test_run(bad_label, out, sizeof(out), err, sizeof(err), 10000);
	cr_expect_eq(rc, 2, "worker --label k=v\\x01: exit %d", rc);
	cr_expect(strstr(err, "--label value 'v\\x01' holds a control "
			      "character"), "stderr: %s", err);

	/* Hello with such a name: refused, connection closed */
	fd = CONNECT(&d);
	nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
	h.node_name = "bad\xffname";
	h.role = NODED__ROLE__ROLE_WORKER;
	SEND_FRAME(fd, &f);
	expect_bad_request(fd, NODED__FRAME_KIND__REPLY,
			   "node name 'bad\\xffname' is not valid UTF-8");
	EXPECT_CLOSED(fd);
	close(fd);

	/* the AssignTask stream's name, and a status report's labels */
	fd = CONNECT(&d);
	nd_test_frame_hello(&f, &h, 1, ND_PROTOCOL_VERSION);
	h.node_name = "";
	SEND_FRAME(fd, &f);
	r = RECV(fd);
	EXPECT_FRAME(r, NODED__FRAME_KIND__REPLY, 1,
		     NODED__FRAME__BODY_HELLO_REPLY);
	nd_frame_free(r, NULL);
	nd_test_frame_assign(&f, &a, 2, "tab\there");
	SEND_FRAME(fd, &f);
	expect_bad_request(fd, NODED__FRAME_KIND__STREAM_END,
			   "node name 'tab\\there' holds a control character");
	noded__node_status__labels_entry__init(&l);
	l.key = "rack\xc3";
	l.value = "r1";
	st.name = "good-name";
	st.n_labels = 1;
	st.labels = labels;
	st.slots_total = 1;
	noded__frame__init(&f);
	f.id = 3;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &st;
	SEND_FRAME(fd, &f);
	expect_bad_request(fd, NODED__FRAME_KIND__REPLY,
			   "label key 'rack\\xc3' is not valid UTF-8");
	PING(fd, 4);    /* the connection itself is fine */
	close(fd);

	arr = nodes_json(d.port);
	cr_expect_eq(json_array_size(arr), 0, "no node registered");
	json_decref(arr);
	EXPECT_HEALTHY(&d);
	STOP_OK(&d);
}

/* A NOTIFY report_status of node "raw" with heartbeat seq and the running
 * (id, attempt) pairs given (n of them). */
static void raw_heartbeat(int fd, uint64_t seq, uint64_t *ids,
			  uint32_t *attempts, size_t n)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__NodeStatus ns = NODED__NODE_STATUS__INIT;

	ns.name = "raw";
	ns.slots_total = 2;
	ns.slots_free = 2 - (uint32_t)n;
	ns.heartbeat_seq = seq;
	ns.n_running_tasks = ns.n_running_attempts = n;
	ns.running_tasks = ids;
	ns.running_attempts = attempts;
	f.id = 100 + seq;
	f.kind = NODED__FRAME_KIND__NOTIFY;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &ns;
	SEND_FRAME(fd, &f);
}

/*
 * Fencing on the wire: the AssignTask stream opens with the lease; a
 * heartbeat of a node that runs nothing gets no answer (a fleet of idle
 * workers costs the master no sends), one that reports running attempts
 * gets a HeartbeatAck naming it, and an attempt the master does not count
 * as running there (here: a task it never gave) is named back in a
 * TaskCancel with its attempt, so the worker kills it and forgets it.
 */
Test(node, heartbeat_acks_and_void_attempts_on_the_wire)
{
	Noded__Frame af, *r;
	Noded__AssignTaskRequest ar;
	uint64_t ids[1] = { 77 };
	uint32_t attempts[1] = { 3 };
	bool acked = false, voided = false;
	int fd;

	DAEMON_START(&d, "--lease", "7");
	fd = CONNECT(&d);
	HELLO(fd);
	nd_test_frame_assign(&af, &ar, 2, "raw");
	SEND_FRAME(fd, &af);
	r = RECV(fd);
	EXPECT_FRAME(r, NODED__FRAME_KIND__STREAM_ITEM, 2,
		     NODED__FRAME__BODY_ASSIGN_OPEN);
	cr_assert_eq(r->assign_open->lease_ms, 7000);
	nd_frame_free(r, NULL);

	raw_heartbeat(fd, 1, NULL, NULL, 0);
	EXPECT_QUIET(fd, 700);

	raw_heartbeat(fd, 2, ids, attempts, 1);
	for (int i = 0; i < 2; i++) {
		r = RECV(fd);
		cr_assert(r->kind == NODED__FRAME_KIND__STREAM_ITEM &&
				  r->id == 2,
			  "got %s", nd_test_describe(r));
		if (r->body_case == NODED__FRAME__BODY_HEARTBEAT_ACK) {
			cr_assert_eq(r->heartbeat_ack->seq, 2);
			acked = true;
		} else {
			cr_assert(r->body_case ==
						  NODED__FRAME__BODY_TASK_CANCEL &&
					  r->task_cancel->task_id == 77 &&
					  r->task_cancel->attempt == 3,
				  "want a TaskCancel of task 77 attempt 3, got "
				  "%s", nd_test_describe(r));
			voided = true;
		}
		nd_frame_free(r, NULL);
	}
	cr_assert(acked && voided);
	close(fd);
	STOP_OK(&d);
}

/* A listening socket on 127.0.0.1, any port (*port). */
static int fake_master_listen(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	cr_assert(listen(fd, 4) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* A frame from the worker; NULL when none came within ms. */
static Noded__Frame *fake_recv(int fd, int ms)
{
	Noded__Frame *f = NULL;

	return nd_test_recv_frame(fd, ms, &f) == 0 ? f : NULL;
}

/*
 * The worker's side of void attempts, against a master played by the
 * test: once the master names an attempt the worker runs in a TaskCancel
 * with that attempt (it gave the attempt up while the worker was cut off),
 * the worker kills it and never reports it again: not as running in its
 * heartbeats, and no end.
 */
Test(node, worker_kills_and_forgets_a_void_attempt)
{
	char tmp[] = "/tmp/noded-void-XXXXXX", pidfile[64], shell[160];
	Noded__Frame f, *r;
	Noded__HelloReply hr = NODED__HELLO_REPLY__INIT;
	Noded__AssignTaskOpen ao = NODED__ASSIGN_TASK_OPEN__INIT;
	Noded__TaskAssignment ta = NODED__TASK_ASSIGNMENT__INIT;
	Noded__Command tc_cmd = NODED__COMMAND__INIT;
	Noded__TaskCancel tc = NODED__TASK_CANCEL__INIT;
	struct pollfd p;
	uint64_t stream = 0;
	bool listed = false, with_attempt = false;
	pid_t pid = 0;
	int lfd, fd, port;
	FILE *pf;

	cr_assert(mkdtemp(tmp));
	snprintf(pidfile, sizeof(pidfile), "%s/pid", tmp);
	snprintf(shell, sizeof(shell), "echo $$ > %s; exec sleep 30", pidfile);
	lfd = fake_master_listen(&port);
	workers[0] = worker_start(port, "vw", NULL);
	p = (struct pollfd){ .fd = lfd, .events = POLLIN };
	cr_assert(poll(&p, 1, 5000) == 1, "the worker did not connect");
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert(fd >= 0);

	/* Hello, then its AssignTask stream */
	r = fake_recv(fd, 5000);
	cr_assert(r && r->body_case == NODED__FRAME__BODY_HELLO);
	noded__frame__init(&f);
	f.id = r->id;
	f.kind = NODED__FRAME_KIND__REPLY;
	hr.protocol_version = r->hello->protocol_version;
	hr.node_name = "fake";
	hr.role = NODED__ROLE__ROLE_MASTER;
	hr.max_frame = 1 << 20;
	hr.heartbeat_interval_ms = 1000;
	f.body_case = NODED__FRAME__BODY_HELLO_REPLY;
	f.hello_reply = &hr;
	SEND_FRAME(fd, &f);
	nd_frame_free(r, NULL);
	r = fake_recv(fd, 5000);
	cr_assert(r && r->body_case == NODED__FRAME__BODY_ASSIGN_TASK,
		  "want assign_task, got %s", r ? nd_test_describe(r) : "none");
	stream = r->id;
	nd_frame_free(r, NULL);
	noded__frame__init(&f);
	f.id = stream;
	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	ao.heartbeat_interval_ms = 1000;
	ao.heartbeat_timeout_ms = 3000;
	ao.master_instance = 42;
	f.body_case = NODED__FRAME__BODY_ASSIGN_OPEN;
	f.assign_open = &ao;
	SEND_FRAME(fd, &f);
	ta.task_id = 5;
	ta.attempt = 1;
	ta.command = &tc_cmd;
	tc_cmd.shell = shell;
	f.body_case = NODED__FRAME__BODY_TASK;
	f.task = &ta;
	SEND_FRAME(fd, &f);

	/* its heartbeats list (5, attempt 1) */
	for (int64_t end = nd_test_now_ms() + 5000; !listed;) {
		cr_assert(nd_test_now_ms() < end, "no heartbeat lists task 5");
		r = fake_recv(fd, 1000);
		if (r && r->body_case == NODED__FRAME__BODY_REPORT_STATUS) {
			const Noded__NodeStatus *ns = r->report_status;

			listed = ns->n_running_tasks == 1 &&
				 ns->running_tasks[0] == 5;
			with_attempt = listed && ns->n_running_attempts == 1 &&
				       ns->running_attempts[0] == 1;
		}
		if (r)
			nd_frame_free(r, NULL);
	}
	pf = fopen(pidfile, "r");
	cr_assert(pf && fscanf(pf, "%d", &pid) == 1 && pid > 1);
	fclose(pf);

	/* the master gave that attempt up */
	tc.task_id = 5;
	tc.attempt = 1;
	f.body_case = NODED__FRAME__BODY_TASK_CANCEL;
	f.task_cancel = &tc;
	SEND_FRAME(fd, &f);
	for (int i = 0; i < 150 && nd_test_pid_alive(pid); i++)
		nd_test_sleep_ms(20);
	cr_assert(!nd_test_pid_alive(pid), "the void attempt (pid %d) still "
		  "runs 3 s after the master named it", (int)pid);
	/* and it is never reported again */
	for (int64_t end = nd_test_now_ms() + 2500; nd_test_now_ms() < end;) {
		r = fake_recv(fd, 300);
		if (!r)
			continue;
		if (r->body_case == NODED__FRAME__BODY_REPORT_STATUS)
			cr_assert(r->report_status->n_running_tasks == 0,
				  "a heartbeat still lists the void attempt: "
				  "%s", nd_test_describe(r));
		cr_assert(!(r->body_case == NODED__FRAME__BODY_TASK_UPDATE &&
			    r->task_update->body_case ==
				    NODED__TASK_UPDATE__BODY_FINISHED),
			  "the worker reported the void attempt's end");
		nd_frame_free(r, NULL);
	}
	cr_assert(with_attempt, "the heartbeat named the task without its "
		  "attempt");
	close(fd);
	close(lfd);
	unlink(pidfile);
	rmdir(tmp);
}
