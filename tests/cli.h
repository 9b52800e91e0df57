/*
 * Running the real `noded` CLI from the integration tests (test_tasks.c,
 * test_sim.c) as a user would, against a master the test started, and
 * reading its --json output.
 *
 * The short macros (CLI, CLI_WITHIN, CLI_JSON) use a variable `master`
 * ("127.0.0.1:PORT") that the including test file defines.
 */
#ifndef ND_TESTS_CLI_H
#define ND_TESTS_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "harness.h"

/* Bound on one CLI command that should return promptly. */
#define ND_TEST_CLI_MS 20000
/* stdout kept per CLI run (larger output is only counted). */
#define ND_TEST_CLI_OUT_KEEP (2u << 20)

/* One finished CLI command. Large: keep it static, not on the stack. */
struct nd_test_cli {
	int st;                 /* exit status, or -ETIMEDOUT */
	int64_t ms;             /* how long it ran */
	uint64_t out_bytes;     /* stdout bytes, including those not kept */
	char cmd[512];          /* the command line, for messages */
	char out[ND_TEST_CLI_OUT_KEEP]; /* stdout (NUL-terminated, truncated) */
	char err[16384];        /* stderr (NUL-terminated, truncated) */
};

/*
 * Runs `noded CMD --master MASTER ARGS...` (args[0] is CMD; --master goes
 * right after it, so before any `--`; NULL-terminated) and waits up to
 * timeout_ms. Fails the test when it could not run or did not exit in
 * time; returns its exit status.
 */
int nd_test_cli_run(struct nd_test_cli *r, const char *master, int timeout_ms,
		    const char *const args[]);

/* Runs a --json command, asserts exit 0 and returns the parsed JSON (the
 * caller decrefs). */
json_t *nd_test_cli_json(const char *master, const char *const args[]);

/* The state of task id as `noded task ID --json` on master gives it, in
 * buf; "(none: ERROR)" when the command fails (no such task, no leader).
 * r receives the run. */
const char *nd_test_task_state(struct nd_test_cli *r, const char *master,
			       uint64_t id, char *buf, size_t len);

/*
 * Which of n masters leads, once `voters` voters are in, as `noded
 * operator raft list-peers --json` on masters ("A,B,C") says: its index i,
 * told by its client port (client_port[i]) among those running (m[i].pid).
 * Asks every 100 ms for up to ms; -1 when none did. r receives each run.
 */
int nd_test_raft_leader(struct nd_test_cli *r, const char *masters,
			const struct nd_test_daemon *m, const int *client_port,
			int n, int voters, int ms);

#define CLI(r, ...)                                                          \
	nd_test_cli_run((r), master, ND_TEST_CLI_MS,                         \
			(const char *const[]){ __VA_ARGS__, NULL })
#define CLI_WITHIN(r, ms, ...)                                               \
	nd_test_cli_run((r), master, (ms),                                   \
			(const char *const[]){ __VA_ARGS__, NULL })
#define CLI_JSON(...)                                                        \
	nd_test_cli_json(master, (const char *const[]){ __VA_ARGS__, NULL })

/* Asserts the last command exited `want`, showing what it printed. */
#define EXPECT_STATUS(r, want)                                               \
	cr_assert((r)->st == (want),                                         \
		  "`%s` exited %d, want %d; stdout: \"%.300s\"; "            \
		  "stderr: \"%.1000s\"",                                     \
		  (r)->cmd, (r)->st, (want), (r)->out, (r)->err)

#define EXPECT_OUT(r, want)                                                  \
	cr_assert(!strcmp((r)->out, (want)),                                 \
		  "`%s` printed \"%.500s\" on stdout, want \"%s\" "          \
		  "(stderr: \"%.500s\")",                                    \
		  (r)->cmd, (r)->out, (want), (r)->err)

#define EXPECT_ERR(r, want)                                                  \
	cr_assert(!strcmp((r)->err, (want)),                                 \
		  "`%s` printed \"%.1000s\" on stderr, want \"%s\"",         \
		  (r)->cmd, (r)->err, (want))

/* Compact JSON for messages (a few static buffers, rotated). */
static inline const char *jdump(const json_t *v)
{
	static char bufs[4][2048];
	static unsigned next;
	char *b = bufs[next++ % 4], *s = json_dumps(v, JSON_COMPACT);

	snprintf(b, sizeof(bufs[0]), "%s", s ? s : "(null)");
	free(s);
	return b;
}

/* o[key] as a string ("" when absent) or an integer (0). */
static inline const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static inline long long jint(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

#endif
