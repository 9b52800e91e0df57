/*
 * Exit statuses (cli.h, ND_CLI_EXIT_*; the README's table): the same
 * failure exits the same from every command. Real processes.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

static struct nd_test_daemon d;

static void teardown(void)
{
	nd_test_daemon_stop(&d);
}

TestSuite(exit, .fini = teardown, .timeout = 120);

/* Runs noded with words (NULL-terminated); expects status want. */
static void expect(int want, const char *const words[])
{
	const char *argv[16] = { nd_test_bin() };
	char out[4096], err[4096], line[256] = "noded";
	size_t n = 1;
	int st;

	for (; words[n - 1]; n++) {
		argv[n] = words[n - 1];
		snprintf(line + strlen(line), sizeof(line) - strlen(line),
			 " %s", argv[n]);
	}
	argv[n] = NULL;
	st = nd_test_run(argv, out, sizeof(out), err, sizeof(err), 20000);
	cr_expect_eq(st, want, "`%s` exited %d, want %d (%s)", line, st, want,
		     err);
}
#define EXPECT(want, ...) expect((want), (const char *const[]){ __VA_ARGS__, \
							     NULL })

Test(exit, the_same_failure_exits_the_same_everywhere)
{
	static const char *const clients[][3] = {
		{ "run", "--", "true" }, { "submit", "--", "true" },
		{ "nodes" }, { "tasks" }, { "task", "1" }, { "logs", "1" },
		{ "cancel", "1" },
	};
	char inuse[32];

	ND_CHECK(nd_test_daemon_start(&d, NULL));
	snprintf(inuse, sizeof(inuse), "127.0.0.1:%d", d.port);

	/* 2: bad usage, nothing done: an unknown option, a config file
	 * that cannot be read, an address that does not parse, a listener
	 * refused off loopback without a token */
	for (int i = 0; i < 3; i++) {
		const char *cmd = i == 0 ? "master" : i == 1 ? "dev" : "worker";
		const char *addr = i == 2 ? "--master" : "--listen";

		EXPECT(2, cmd, "--no-such-option");
		EXPECT(2, cmd, "--config", "/nonexistent/noded.conf");
		EXPECT(2, cmd, addr, "nocolon");
		EXPECT(2, cmd, addr, "127.0.0.1:99999");
		if (i < 2)
			EXPECT(2, cmd, "--listen", "0.0.0.0:0");
	}
	EXPECT(2, "worker", "--token-file", "/nonexistent/token");
	EXPECT(2, "master", "--token-file", "/nonexistent/token");
	EXPECT(2, "no-such-command");
	for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
		const char *const *c = clients[i];

		EXPECT(2, c[0], "--no-such-option", c[1], c[2]);
		EXPECT(2, c[0], "--config", "/nonexistent/noded.conf", c[1],
		       c[2]);
		/* 1: the master could not be reached */
		EXPECT(1, c[0], "--master", "127.0.0.1:1", c[1], c[2]);
	}
	/* 1: a daemon that cannot serve (the address is taken) */
	EXPECT(1, "master", "--listen", inuse);
	EXPECT(1, "dev", "--listen", inuse);
	/* 1: the master refused: no task 1 */
	EXPECT(1, "task", "--master", inuse, "1");
	/* 0: --help */
	EXPECT(0, "master", "--help");
	EXPECT(0, "worker", "--help");
	EXPECT(0, "dev", "--help");
	EXPECT(0, "run", "--help");
}
