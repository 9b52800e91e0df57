/*
 * noded dev (src/cli/dev.c) as a user starts it: real processes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

static struct nd_test_daemon devs[2];

static void teardown(void)
{
	for (int i = 0; i < 2; i++)
		nd_test_daemon_stop(&devs[i]);
}

TestSuite(dev, .fini = teardown, .timeout = 60);

/* The port of the "http on HOST:PORT" line that follows "listening on". */
static int http_port(struct nd_test_daemon *d)
{
	char *p;

	for (int64_t end = nd_test_now_ms() + ND_TEST_TIMEOUT_MS;
	     !memchr(d->rest, '\n', d->rest_len);) {
		ssize_t r;

		cr_assert(nd_test_now_ms() < end, "no 'http on' line");
		r = read(d->out_fd, d->rest + d->rest_len,
			 sizeof(d->rest) - 1 - d->rest_len);
		cr_assert(r > 0, "stdout closed before 'http on'");
		d->rest_len += (size_t)r;
	}
	d->rest[d->rest_len] = '\0';
	p = strstr(d->rest, "http on 127.0.0.1:");
	cr_assert(p, "got '%s'", d->rest);
	return atoi(p + 18);
}

/* Two dev clusters on --listen 127.0.0.1:0 run side by side: each serves
 * HTTP on a free port of its own (not both on 7071), and says which. */
Test(dev, listen_port_0_picks_a_free_http_port_too)
{
	const char *argv[] = { nd_test_bin(), "dev", "--listen",
			       "127.0.0.1:0", "--workers", "1", NULL };
	int port[2];

	for (int i = 0; i < 2; i++) {
		ND_CHECK(nd_test_daemon_start_argv(&devs[i], argv));
		port[i] = http_port(&devs[i]);
		cr_assert(port[i] > 0 && port[i] != 7071, "http port %d",
			  port[i]);
	}
	cr_expect_neq(port[0], port[1]);
	for (int i = 0; i < 2; i++) {
		char url[64], out[256];
		const char *curl[] = { "/usr/bin/curl", "-s", url, NULL };

		snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz",
			 port[i]);
		cr_expect_eq(nd_test_run(curl, out, sizeof(out), NULL, 0,
					 10000), 0);
		cr_expect(strstr(out, "ok"), "%s: '%s'", url, out);
	}
	for (int i = 0; i < 2; i++)
		cr_expect_eq(nd_test_daemon_stop(&devs[i]), 0);
}

/* The "masters LIST" line after "listening on". */
static void masters_line(struct nd_test_daemon *d, char *list, size_t len)
{
	char *p, *nl;

	for (int64_t end = nd_test_now_ms() + 30000;
	     !(p = memmem(d->rest, d->rest_len, "masters ", 8)) ||
	     !memchr(p, '\n', d->rest_len - (size_t)(p - d->rest));) {
		ssize_t r;

		cr_assert(nd_test_now_ms() < end, "no 'masters' line");
		r = read(d->out_fd, d->rest + d->rest_len,
			 sizeof(d->rest) - 1 - d->rest_len);
		cr_assert(r > 0, "stdout closed before 'masters'");
		d->rest_len += (size_t)r;
		d->rest[d->rest_len] = '\0';
	}
	nl = strchr(p, '\n');
	snprintf(list, len, "%.*s", (int)(nl - p - 8), p + 8);
}

/* dev --masters 3: three master processes form a cluster, the workers
 * follow it, `run --all` runs on them, and stopping dev stops the masters
 * and removes their data. */
Test(dev, three_masters_form_a_cluster_and_go_with_it)
{
	const char *argv[] = { nd_test_bin(), "dev", "--listen",
			       "127.0.0.1:0", "--workers", "2", "--masters",
			       "3", "--http", "none", NULL };
	char list[128], out[4096], err[2048];
	const char *run[] = { nd_test_bin(), "run", "--master", list, "--all",
			      "--", "echo", "hi", NULL };
	const char *peers[] = { nd_test_bin(), "operator", "raft",
				"list-peers", "--master", list, NULL };
	int n = 0;

	ND_CHECK(nd_test_daemon_start_argv(&devs[0], argv));
	masters_line(&devs[0], list, sizeof(list));
	for (char *p = list; (p = strchr(p, ',')); p++)
		n++;
	cr_assert_eq(n, 2, "masters: %s", list);
	cr_assert_eq(nd_test_run(run, out, sizeof(out), err, sizeof(err),
				 30000), 0, "%s", err);
	cr_assert(strstr(out, "dev-1: hi") && strstr(out, "dev-2: hi"), "%s",
		  out);
	cr_assert_eq(nd_test_run(peers, out, sizeof(out), err, sizeof(err),
				 10000), 0, "%s", err);
	cr_assert(strstr(out, "leader"), "%s", out);
	cr_expect_eq(nd_test_daemon_stop(&devs[0]), 0);
	/* its masters went with it */
	cr_assert_neq(nd_test_run(peers, out, sizeof(out), err, sizeof(err),
				  10000), 0, "still answering: %s", out);
}

Test(dev, an_even_number_of_masters_is_refused)
{
	const char *argv[] = { nd_test_bin(), "dev", "--masters", "2", NULL };
	char err[512];

	cr_assert_eq(nd_test_run(argv, NULL, 0, err, sizeof(err), 10000), 2);
	cr_assert(strstr(err, "1, 3 or 5"), "%s", err);
}
