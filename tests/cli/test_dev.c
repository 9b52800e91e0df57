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
