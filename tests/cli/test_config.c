/*
 * Configuration (src/cli/config.c): the system and user files, --config,
 * NODED_MASTER and NODED_TOKEN_FILE, their precedence, and errors naming
 * file, line and key; against a real master and workers.
 *
 * The harness points NODED_CONFIG_SYSTEM and XDG_CONFIG_HOME away from the
 * machine's files; each test here sets them to files of its own (each
 * Criterion test runs in a process of its own, so setenv stays there).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "harness.h"

static struct nd_test_daemon d;
static pid_t worker;
static char dir[64];
static char master[64];

static void setup(void)
{
	char path[128];

	snprintf(dir, sizeof(dir), "/tmp/noded-config-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/xdg", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/xdg/noded", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/system.conf", dir);
	setenv("NODED_CONFIG_SYSTEM", path, 1);
	snprintf(path, sizeof(path), "%s/xdg", dir);
	setenv("XDG_CONFIG_HOME", path, 1);
	setenv("STATE_DIRECTORY", dir, 1);
}

static void teardown(void)
{
	char cmd[128];

	if (worker > 0)
		nd_test_kill_pid(worker);
	nd_test_daemon_stop(&d);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		cr_log_warn("could not remove %s", dir);
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 60);

/* Writes the file named (under dir: "system.conf", "xdg/noded/noded.conf"
 * or any other) with the text formatted. */
__attribute__((format(printf, 2, 3))) static void file(const char *name,
						       const char *fmt, ...)
{
	char path[256];
	va_list ap;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert(f, "%s", path);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

#define SYSTEM "system.conf"
#define USER "xdg/noded/noded.conf"

/* Runs noded with the words given; out and err captured. */
static int noded(char *out, size_t osz, char *err, size_t esz,
		 const char *const words[])
{
	const char *argv[24] = { nd_test_bin() };
	size_t n = 1;

	for (; words[n - 1]; n++)
		argv[n] = words[n - 1];
	argv[n] = NULL;
	return nd_test_run(argv, out, osz, err, esz, 20000);
}
#define NODED(out, err, ...)                                                 \
	noded((out), sizeof(out), (err), sizeof(err),                        \
	      (const char *const[]){ __VA_ARGS__, NULL })

static void start_master(const char *const extra[])
{
	ND_CHECK(nd_test_daemon_start(&d, extra));
	snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
}

/* noded nodes --json (with the words given) until it lists name with
 * slots; returns that node (a new reference). */
static json_t *wait_node(const char *name, const char *const words[])
{
	static char out[65536], err[4096];
	const char *argv[16] = { "nodes", "--json" };
	int64_t end = nd_test_now_ms() + 15000;
	size_t n = 2;

	for (size_t i = 0; words && words[i]; i++)
		argv[n++] = words[i];
	argv[n] = NULL;
	for (;;) {
		int st = noded(out, sizeof(out), err, sizeof(err), argv);
		json_t *j = st ? NULL : json_loads(out, 0, NULL), *v;
		size_t i;

		json_array_foreach(j, i, v)
			if (!strcmp(json_string_value(json_object_get(v,
					"name")), name) &&
			    json_integer_value(json_object_get(v,
					"slots_total"))) {
				json_incref(v);
				json_decref(j);
				return v;
			}
		json_decref(j);
		cr_assert(nd_test_now_ms() < end, "no node %s (nodes: %d "
			  "%s %s)", name, st, out, err);
		nd_test_sleep_ms(100);
	}
}

static void start_worker(const char *const words[])
{
	const char *argv[16] = { nd_test_bin(), "worker" };
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	size_t n = 2;

	for (size_t i = 0; words && words[i]; i++)
		argv[n++] = words[i];
	argv[n] = NULL;
	worker = nd_test_spawn(argv, null_fd, null_fd, null_fd);
	close(null_fd);
	cr_assert(worker > 0);
}

/* flags > environment > user file > system file > defaults, by which
 * master `noded nodes` reaches. */
Test(config, precedence)
{
	char out[8192], err[4096];
	int st;

	start_master(NULL);
	/* defaults: 127.0.0.1:7070, not ours */
	/* system file only */
	file(SYSTEM, "[common]\nmaster = %s\n", master);
	st = NODED(out, err, "nodes");
	cr_expect_eq(st, 0, "system file: %d %s", st, err);
	/* the user file overrides it (its [nodes], and its [common]) */
	file(USER, "[nodes]\nmaster = 127.0.0.1:1\n");
	st = NODED(out, err, "nodes");
	cr_expect_eq(st, 1, "user file: %d", st);
	cr_expect(strstr(err, "127.0.0.1:1"), "%s", err);
	file(USER, "[common]\nmaster = 127.0.0.1:1\n");
	st = NODED(out, err, "nodes");
	cr_expect(st == 1 && strstr(err, "127.0.0.1:1"), "%d %s", st, err);
	/* the environment overrides the files */
	setenv("NODED_MASTER", master, 1);
	st = NODED(out, err, "nodes");
	cr_expect_eq(st, 0, "environment: %d %s", st, err);
	/* the command line overrides everything */
	setenv("NODED_MASTER", "127.0.0.1:2", 1);
	st = NODED(out, err, "nodes", "--master", master);
	cr_expect_eq(st, 0, "flag: %d %s", st, err);
	st = NODED(out, err, "nodes");
	cr_expect(st == 1 && strstr(err, "127.0.0.1:2"), "%d %s", st, err);
	/* within a file, [COMMAND] over [common] */
	unsetenv("NODED_MASTER");
	file(USER, "[nodes]\nmaster = %s\n[common]\nmaster = 127.0.0.1:1\n",
	     master);
	st = NODED(out, err, "nodes");
	cr_expect_eq(st, 0, "[nodes] over [common]: %d %s", st, err);
	/* --config FILE reads FILE alone: neither of the two */
	file("other.conf", "[nodes]\njson = true\n");
	file(SYSTEM, "[nodes]\nmaster = %s\n", master);
	file(USER, "[nodes]\nmaster = 127.0.0.1:1\n");
	{
		char path[128];

		snprintf(path, sizeof(path), "%s/other.conf", dir);
		st = NODED(out, err, "nodes", "--master", master, "--config",
			   path);
	}
	cr_expect_eq(st, 0, "--config: %d %s", st, err);
	cr_expect_eq(out[0], '[', "json = true from --config: '%s'", out);
}

/* The worker honours NODED_MASTER and NODED_TOKEN_FILE, as the client
 * commands do. */
Test(config, worker_takes_the_master_and_token_from_the_environment)
{
	char tok[128];
	const char *margs[] = { "--token-file", tok, NULL };
	const char *wargs[] = { "--name", "envw", NULL };
	json_t *n;

	snprintf(tok, sizeof(tok), "%s/token", dir);
	file("token", "0123456789abcdef0123456789abcdef\n");
	chmod(tok, 0600);
	start_master(margs);
	setenv("NODED_MASTER", master, 1);
	setenv("NODED_TOKEN_FILE", tok, 1);
	start_worker(wargs);
	n = wait_node("envw", NULL); /* nodes: the same variables */
	json_decref(n);
}

/* Every daemon flag can be set in the file: a master and a worker from
 * their sections, a repeatable option (label) given on several lines,
 * a flag (drain) as true. */
Test(config, daemons_from_their_sections)
{
	char out[8192], err[4096];
	json_t *n;
	int st;

	file(SYSTEM, "# the fleet's settings\n"
		     "[master]\n"
		     "listen = 127.0.0.1:0   ; any free port\n"
		     "heartbeat-timeout = 2\n"
		     "[worker]\n"
		     "name = cfgw\n"
		     "slots = 3\n"
		     "label = rack=b\n"
		     "label = gpu=yes\n"
		     "drain = true\n");
	{
		/* "listening on" without --listen on the command line */
		const char *argv[] = { nd_test_bin(), "master", NULL };

		ND_CHECK(nd_test_daemon_start_argv(&d, argv));
		snprintf(master, sizeof(master), "127.0.0.1:%d", d.port);
	}
	file(USER, "[common]\nmaster = %s\n", master);
	start_worker(NULL);
	n = wait_node("cfgw", NULL);
	cr_expect_eq(json_integer_value(json_object_get(n, "slots_total")), 3);
	cr_expect_str_eq(json_string_value(json_object_get(
		json_object_get(n, "labels"), "rack")), "b");
	cr_expect_str_eq(json_string_value(json_object_get(
		json_object_get(n, "labels"), "gpu")), "yes");
	json_decref(n);
	/* a flag on the command line replaces the file's labels */
	st = NODED(out, err, "run", "--label", "gpu=yes", "--", "echo", "ok");
	cr_expect(st == 0 && !strcmp(out, "ok\n"), "%d %s %s", st, out, err);
}

/* Client options from the file: [run] timeout. */
Test(config, run_takes_its_section)
{
	char out[256], err[4096];
	const char *wargs[] = { "--name", "w1", NULL };
	json_t *n;
	int st;

	start_master(NULL);
	file(USER, "[common]\nmaster = %s\n[run]\ntimeout = 0.3\n"
		   "[worker]\nmaster = %s\n", master, master);
	start_worker(wargs);
	n = wait_node("w1", NULL);
	json_decref(n);
	st = NODED(out, err, "run", "--", "sleep", "10");
	cr_expect_eq(st, 124, "timeout from [run]: %d %s", st, err);
	st = NODED(out, err, "run", "--timeout", "0", "--", "true");
	cr_expect_eq(st, 0, "--timeout over [run]: %d %s", st, err);
}

/* Each mistake names the file, the line and the key, and exits 2. */
Test(config, errors_name_file_line_and_key)
{
	static const struct {
		const char *text, *needle;
	} cases[] = {
		{ "[worker]\nslot = 3\n", "/bad.conf:2: unknown key 'slot' "
		  "in [worker]" },
		{ "# c\n[wroker]\nname = x\n", "/bad.conf:3: unknown section "
		  "[wroker]" },
		{ "[common]\nslots = 3\n", "/bad.conf:2: unknown key 'slots' "
		  "in [common]" },
		{ "name = x\n", "/bad.conf:1: 'name' is outside any section" },
		{ "[worker]\ndrain = maybe\n", "/bad.conf:2: [worker] drain "
		  "wants true or false, not 'maybe'" },
		{ "[worker]\n\nname\n", "/bad.conf:3: not 'key = value'" },
		/* a bad value: the option's own check, then where it was */
		{ "[worker]\nslots = many\n", "--slots wants a whole number "
		  "from 1 to 4096, not 'many'\nnoded: (that is 'slots = many' "
		  "in [worker] of " },
		{ "[worker]\nname = a\nname = b\n", "--name given twice ('a' "
		  "and 'b'): give it once\nnoded: (that is 'name = b' in "
		  "[worker] of " },
	};
	char out[256], err[4096], path[128];
	int st;

	snprintf(path, sizeof(path), "%s/bad.conf", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		file("bad.conf", "%s", cases[i].text);
		st = NODED(out, err, "worker", "--config", path);
		cr_expect_eq(st, 2, "case %zu: exit %d (%s)", i, st, err);
		cr_expect(strstr(err, cases[i].needle), "case %zu: said '%s', "
			  "want '%s'", i, err, cases[i].needle);
	}
	/* the line of a bad value, in the user file */
	file(USER, "[worker]\n\n; slots\nslots = 0\n");
	st = NODED(out, err, "worker");
	cr_expect_eq(st, 2);
	snprintf(path, sizeof(path), "of %s/" USER ", line 4)", dir);
	cr_expect(strstr(err, path), "said '%s', want '%s'", err, path);
	/* --help answers whatever the files say */
	st = NODED(out, err, "worker", "--help");
	cr_expect_eq(st, 0, "--help with a bad file: %d %s", st, err);
	/* a file that cannot be read */
	st = NODED(out, err, "nodes", "--config", "/nonexistent/noded.conf");
	cr_expect_eq(st, 2);
	cr_expect(strstr(err, "cannot read the config file "
			 "/nonexistent/noded.conf: No such file"), "%s", err);
	/* a bad value from the environment */
	file(USER, "\n");
	setenv("NODED_MASTER", "no-port", 1);
	st = NODED(out, err, "worker");
	cr_expect_eq(st, 2);
	cr_expect(strstr(err, "'no-port' is not HOST:PORT"), "%s", err);
}

/* job, wait and node read their sections and [common] (from --config, or
 * the user's file) and NODED_MASTER, as the other client commands do. */
Test(config, job_wait_and_node_take_their_sections)
{
	char out[8192], err[4096], path[128], id[32];
	unsigned long long job;
	json_t *n;
	int st;

	start_master(NULL);
	{
		const char *words[] = { "--master", master, NULL };
		const char *w[] = { "--name", "cw1", "--master", master, NULL };

		start_worker(w);
		n = wait_node("cw1", words);
		json_decref(n);
	}
	snprintf(path, sizeof(path), "%s/cli.conf", dir);
	file("cli.conf", "[common]\nmaster = %s\n[job]\njson = true\n"
			 "[wait]\ntimeout = 0.3\n", master);
	/* a fan-out of one node: job J */
	st = NODED(out, err, "submit", "--config", path, "--all", "--",
		   "true");
	cr_assert(st == 0 && sscanf(out, "job %llu:", &job) == 1,
		  "submit --all: %d '%s' %s", st, out, err);
	snprintf(id, sizeof(id), "%llu", job);
	st = NODED(out, err, "job", id, "--config", path);
	cr_expect(st == 0 && out[0] == '{' && strstr(out, "\"job_id\""),
		  "[job] json from --config: %d '%s' %s", st, out, err);
	/* a task that waits for a node nobody has: [wait] timeout ends the
	 * wait with 254 */
	st = NODED(out, err, "submit", "--config", path, "--node", "nowhere",
		   "--wait-for-node", "--", "true");
	cr_assert_eq(st, 0, "submit: %d %s", st, err);
	snprintf(id, sizeof(id), "%llu", strtoull(out, NULL, 10));
	st = NODED(out, err, "wait", id, "--config", path);
	cr_expect_eq(st, 254, "[wait] timeout from --config: %d %s", st, err);
	/* node: NODED_MASTER and its section in the user's file */
	file(USER, "[node]\njson = true\n");
	setenv("NODED_MASTER", master, 1);
	st = NODED(out, err, "node", "drain", "cw1");
	cr_expect(st == 0 && out[0] == '{' && strstr(out, "\"cw1\""),
		  "node drain with NODED_MASTER and [node] json: %d '%s' %s",
		  st, out, err);
	st = NODED(out, err, "node", "eligible", "cw1", "--config", path);
	cr_expect_eq(st, 0, "node eligible, [common] master: %d %s", st, err);
	cr_expect(strstr(out, "node cw1: ALIVE, eligible"), "without [node] "
		  "json: '%s'", out);
}
