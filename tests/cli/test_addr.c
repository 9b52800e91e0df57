/*
 * Host names in every address (--listen, --http, --master of the worker
 * and the client commands), and a clear error for a name that does not
 * resolve: real processes. "localhost" is the name every host resolves;
 * ".invalid" names never resolve (RFC 2606).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

static struct nd_test_daemon d;
static pid_t worker;

static void teardown(void)
{
	if (worker > 0)
		nd_test_kill_pid(worker);
	worker = 0;
	nd_test_daemon_stop(&d);
}

TestSuite(addr, .fini = teardown, .timeout = 60);

#define BAD "no-such-host.invalid"

Test(addr, host_names_in_listen_http_and_master)
{
	const char *margv[] = { nd_test_bin(), "master", "--listen",
				"localhost:0", "--http", "localhost:0", NULL };
	char master[64], out[4096], err[4096];
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	int st = -1;

	ND_CHECK(nd_test_daemon_start_argv(&d, margv));
	/* localhost resolved to 127.0.0.1, and so does the HTTP address */
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
	cr_expect(!strncmp(d.rest, "http on 127.0.0.1:", 18), "got '%s'",
		  d.rest);
	snprintf(master, sizeof(master), "localhost:%d", d.port);
	{
		const char *wargv[] = { nd_test_bin(), "worker", "--master",
					master, "--name", "w1", NULL };

		worker = nd_test_spawn(wargv, null_fd, null_fd, null_fd);
		close(null_fd);
		cr_assert(worker > 0);
	}
	/* the worker found the master by name: a task runs on it */
	for (int64_t end = nd_test_now_ms() + 15000; nd_test_now_ms() < end;
	     nd_test_sleep_ms(100)) {
		const char *run[] = { nd_test_bin(), "run", "--master", master,
				      "--node", "w1", "--", "echo", "by-name",
				      NULL };

		st = nd_test_run(run, out, sizeof(out), err, sizeof(err),
				 20000);
		if (!st)
			break;
	}
	cr_expect_eq(st, 0, "run: %d: %s", st, err);
	cr_expect_str_eq(out, "by-name\n");
}

/* Each says which address, which name and why, and exits 2 (a daemon's
 * bad configuration) or 1 (a client command: the master not reached). */
Test(addr, a_name_that_does_not_resolve_is_a_clear_error)
{
	static const struct {
		const char *argv[8];
		int status;
		const char *needle;
	} cases[] = {
		{ { "master", "--listen", BAD ":7070" }, 2,
		  "'" BAD ":7070': the host name '" BAD "' does not resolve" },
		{ { "master", "--listen", "127.0.0.1:0", "--http",
		    BAD ":0" }, 2,
		  "'" BAD ":0': the host name '" BAD "' does not resolve" },
		{ { "dev", "--listen", BAD ":0" }, 2,
		  "the host name '" BAD "' does not resolve" },
		{ { "worker", "--master", BAD ":7070" }, 2,
		  "noded worker: --master '" BAD ":7070': the host name '"
		  BAD "' does not resolve" },
		{ { "run", "--master", BAD ":7070", "--", "true" }, 1,
		  "noded: bad master address '" BAD ":7070': the host name '"
		  BAD "' does not resolve" },
		{ { "nodes", "--master", BAD ":7070" }, 1,
		  "does not resolve" },
		{ { "master", "--listen", "localhost:70000" }, 2,
		  "'localhost:70000': the port must be a number from 0 to "
		  "65535" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[10] = { nd_test_bin() };
		char out[256], err[4096];
		int st;

		for (size_t j = 0; cases[i].argv[j]; j++)
			argv[j + 1] = cases[i].argv[j];
		st = nd_test_run(argv, out, sizeof(out), err, sizeof(err),
				 20000);
		cr_expect_eq(st, cases[i].status, "noded %s %s %s: exit %d, "
			     "want %d (%s)", argv[1], argv[2], argv[3], st,
			     cases[i].status, err);
		cr_expect(strstr(err, cases[i].needle), "noded %s %s %s said "
			  "'%s', want '%s'", argv[1], argv[2], argv[3], err,
			  cases[i].needle);
	}
}
