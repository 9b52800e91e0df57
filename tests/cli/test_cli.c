/*
 * Tests for the task commands of the CLI (src/cli/common.c, task_args.c,
 * task_records.c, run.c, task.c).
 *
 * The pure pieces (option parsing into a TaskSpec, state names, exit status
 * mapping, end notes, command display, JSON, the "NODE: " line prefixer) are
 * called directly. The commands themselves (noded run, submit, task, tasks,
 * logs, cancel) run in-process against a scripted fake master: a thread that
 * accepts one connection on a loopback port and plays the master's side
 * frame by frame, so replies, errors, interleavings, a dropped connection
 * and Ctrl-C can be produced on purpose without a real master or worker.
 *
 * The test binaries link the server objects and libnoded.a but not the CLI
 * objects (src/cli/main.c has its own main), so the CLI sources are compiled
 * in here. stdout and stderr (the FILE pointers, not fds 1 and 2, so that
 * sanitizer reports still reach the terminal) are captured in temporary
 * files.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "harness.h"

#include "cli/common.c"
#include "cli/config.c"
#include "cli/task_args.c"
#include "cli/task_records.c"
#include "cli/results.c"
#include "cli/run.c"
#include "cli/task.c"
#include "cli/job.c"

#define ARGV(...) ((char *[]){ __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *)))

/* ---- captured stdout / stderr ---- */

static FILE *cap_out, *cap_err;
static int cap_out_fd = -1;     /* fileno(cap_out), for the fake master */

static void capture(void)
{
	cap_out = tmpfile();
	cap_err = tmpfile();
	cr_assert(cap_out && cap_err);
	cap_out_fd = fileno(cap_out);
	stdout = cap_out;
	stderr = cap_err;
}

/* Everything written to f so far, NUL-terminated; the caller frees. */
static char *slurp(FILE *f)
{
	long n;
	char *s;

	fflush(f);
	n = ftell(f);
	cr_assert(n >= 0);
	s = calloc(1, (size_t)n + 1);
	cr_assert(s);
	rewind(f);
	cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
	fseek(f, 0, SEEK_END);
	return s;
}

#define EXPECT_OUT(f, want)                                                  \
	do {                                                                 \
		char *got_ = slurp(f);                                       \
		cr_expect_str_eq(got_, (want));                              \
		free(got_);                                                  \
	} while (0)

#define EXPECT_HAS(f, want)                                                  \
	do {                                                                 \
		char *got_ = slurp(f);                                       \
		cr_expect(strstr(got_, (want)) != NULL,                      \
			  "expected \"%s\" in:\n%s", (want), got_);          \
		free(got_);                                                  \
	} while (0)

/* ---- option parsing ---- */

/* Parses argv as `noded run`; asserts the outcome matches ok. */
static int parse(struct nd_cli_task_args *a, int argc, char **argv, bool ok)
{
	int status = -1;
	bool r = nd_cli_task_args_parse(a, argc, argv, &status);

	cr_assert_eq(r, ok, "parse returned %d (status %d)", r, status);
	return status;
}

Test(args, argv_passed_as_is, .init = capture)
{
	struct nd_cli_task_args a;
	char **argv = ARGV("run", "--", "printf", "%s|", "a b", "  c ");

	parse(&a, 6, argv, true);
	cr_assert_eq(a.command.n_argv, 4);
	cr_expect_str_eq(a.command.argv[0], "printf");
	cr_expect_str_eq(a.command.argv[1], "%s|");
	cr_expect_str_eq(a.command.argv[2], "a b");
	cr_expect_str_eq(a.command.argv[3], "  c ");
	cr_expect_str_eq(a.command.shell, "");
	cr_expect_str_eq(a.master, ND_CLI_MASTER);
	cr_expect_str_eq(argv[0], "run", "argv[0] is restored");
	cr_expect_eq(a.command.timeout_ms, 0);
	cr_expect_eq(a.spec.all, 0);
	nd_cli_task_args_free(&a);
}

Test(args, command_starts_at_first_word, .init = capture)
{
	struct nd_cli_task_args a;

	/* without "--", options after the command are the command's */
	parse(&a, ARGC("run", "--node", "w1", "ls", "-l", "--all"),
	      ARGV("run", "--node", "w1", "ls", "-l", "--all"), true);
	cr_assert_eq(a.command.n_argv, 3);
	cr_expect_str_eq(a.command.argv[1], "-l");
	cr_expect_str_eq(a.command.argv[2], "--all");
	cr_expect_eq(a.spec.all, 0);
	cr_expect_str_eq(a.spec.node, "w1");
	nd_cli_task_args_free(&a);
}

Test(args, shell_joins_words, .init = capture)
{
	struct nd_cli_task_args a;

	parse(&a, ARGC("run", "--shell", "--", "echo", "a  b", "|", "wc -c"),
	      ARGV("run", "--shell", "--", "echo", "a  b", "|", "wc -c"), true);
	cr_expect_eq(a.command.n_argv, 0);
	cr_expect_str_eq(a.command.shell, "echo a  b | wc -c");
	nd_cli_task_args_free(&a);
}

Test(args, all_options, .init = capture)
{
	struct nd_cli_task_args a;
	char **argv = ARGV("submit", "--master", "10.0.0.1:9", "--label",
			   "gpu=no", "--label", "zone=a", "--label", "gpu=no",
			   "--timeout", "2.5", "--env", "A=x=y", "--env", "B=",
			   "--env", "A=x=y", "--cwd", "/tmp", "--retries", "3",
			   "--output-cap", "4096", "--wait-for-node", "--",
			   "true");

	parse(&a, 26, argv, true);
	cr_expect_str_eq(a.master, "10.0.0.1:9");
	cr_assert_eq(a.spec.n_labels, 2, "gpu=no given twice: kept once");
	cr_expect_str_eq(a.spec.labels[0]->key, "gpu");
	cr_expect_str_eq(a.spec.labels[0]->value, "no");
	cr_expect_str_eq(a.spec.labels[1]->key, "zone");
	cr_expect_str_eq(a.spec.labels[1]->value, "a");
	cr_assert_eq(a.command.n_env, 2);
	cr_expect_str_eq(a.command.env[0]->key, "A");
	cr_expect_str_eq(a.command.env[0]->value, "x=y");
	cr_expect_str_eq(a.command.env[1]->key, "B");
	cr_expect_str_eq(a.command.env[1]->value, "");
	cr_expect_eq(a.command.timeout_ms, 2500);
	cr_expect_str_eq(a.command.cwd, "/tmp");
	cr_expect_eq(a.spec.retries, 3);
	cr_expect_eq(a.spec.output_cap_bytes, 4096);
	cr_expect(a.spec.wait_for_node);
	cr_expect_str_eq(a.spec.node, "");
	cr_expect_eq(a.command.n_argv, 1);
	nd_cli_task_args_free(&a);
}

Test(args, spec_packs_and_decodes, .init = capture)
{
	struct nd_cli_task_args a;
	Noded__TaskSpec *back;
	uint8_t buf[1024];
	size_t n;

	parse(&a, ARGC("run", "--all", "--env", "K=V", "--", "echo", "x y"),
	      ARGV("run", "--all", "--env", "K=V", "--", "echo", "x y"), true);
	n = noded__task_spec__get_packed_size(&a.spec);
	cr_assert_lt(n, sizeof(buf));
	noded__task_spec__pack(&a.spec, buf);
	back = noded__task_spec__unpack(NULL, n, buf);
	cr_assert(back);
	cr_expect(back->all);
	cr_assert(back->command);
	cr_assert_eq(back->command->n_argv, 2);
	cr_expect_str_eq(back->command->argv[1], "x y");
	cr_assert_eq(back->command->n_env, 1);
	cr_expect_str_eq(back->command->env[0]->key, "K");
	cr_expect_str_eq(back->command->env[0]->value, "V");
	noded__task_spec__free_unpacked(back, NULL);
	nd_cli_task_args_free(&a);
}

Test(args, usage_errors, .init = capture)
{
	static const char *const bad[][8] = {
		{ "run" },
		{ "run", "--" },
		{ "run", "--node", "a", "--all", "--", "x" },
		{ "run", "--label", "k=v", "--node", "a", "--", "x" },
		{ "run", "--node", "w[1-", "--", "x" },
		{ "run", "--node", "w1", "--all", "--exclude", "", "--", "x" },
		{ "run", "--group", "--json", "--", "x" },
		{ "submit", "--group", "--", "x" },
		{ "run", "--env", "NOEQUALS", "--", "x" },
		{ "run", "--env", "=v", "--", "x" },
		{ "run", "--label", "novalue", "--", "x" },
		{ "run", "--timeout", "-1", "--", "x" },
		{ "run", "--timeout", "1e3", "--", "x" },
		{ "run", "--timeout", "abc", "--", "x" },
		{ "run", "--timeout", "", "--", "x" },
		{ "run", "--timeout", "9999999", "--", "x" },
		{ "run", "--retries", "-2", "--", "x" },
		{ "run", "--bogus", "--", "x" },
		{ "run", "--node", "", "--", "x" },
		{ "run", "--", "" },
		{ "run", "--shell", "--", " ", "" },
		{ "run", "--all", "--wait-for-node", "--", "x" },
		{ "run", "--wait-for-node=yes", "--", "x" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct nd_cli_task_args a;
		char *argv[8] = { 0 };
		int argc = 0;

		while (argc < 8 && bad[i][argc]) {
			argv[argc] = (char *)bad[i][argc];
			argc++;
		}
		cr_expect_eq(parse(&a, argc, argv, false), ND_CLI_EXIT_USAGE,
			     "case %zu (%s %s %s)", i, argv[1] ? argv[1] : "",
			     argc > 2 ? argv[2] : "", argc > 3 ? argv[3] : "");
		cr_expect_null(a.command.env, "freed after a usage error");
	}
	EXPECT_HAS(cap_err, "noded: --env wants KEY=VALUE, not 'NOEQUALS'");
	/* the spec's own rules: nd_task_spec_check's words, as the HTTP API
	 * and the master say them */
	EXPECT_HAS(cap_err, "noded run: node, nodes and all exclude each "
		   "other: target one of them\n");
	EXPECT_HAS(cap_err, "noded run: labels select among all nodes or any "
		   "node, not among named ones: give node(s) or labels\n");
	EXPECT_HAS(cap_err, "noded run: nodes 'w[1-': range without its end "
		   "at position 4\n");
	EXPECT_HAS(cap_err, "noded: --exclude wants a node list\n");
	EXPECT_HAS(cap_err, "noded run: --group and --json exclude each "
		   "other\n");
	EXPECT_HAS(cap_err, "noded submit: --group is for noded run\n");
	EXPECT_HAS(cap_err, "noded run: no command given");
	EXPECT_HAS(cap_err, "noded run: wait_for_node does not apply to all: "
		   "a fan-out runs on the nodes alive now\n");
	EXPECT_HAS(cap_err, "noded run: argv[0], the command name, is "
		   "empty\n");
	EXPECT_HAS(cap_err, "noded run: the shell command is only blanks\n");
}

Test(args, targets_combine, .init = capture)
{
	struct nd_cli_task_args a;

	/* a name alone is one task; a list (even of one) is a job */
	parse(&a, ARGC("run", "--node", "w1", "--", "x"),
	      ARGV("run", "--node", "w1", "--", "x"), true);
	cr_expect_str_eq(a.spec.node, "w1");
	cr_expect_str_eq(a.spec.nodes, "");
	nd_cli_task_args_free(&a);
	parse(&a, ARGC("run", "--node", "w[01-03],db1", "--exclude", "w02",
		       "--", "x"),
	      ARGV("run", "--node", "w[01-03],db1", "--exclude", "w02", "--",
		   "x"), true);
	cr_expect_str_eq(a.spec.node, "");
	cr_expect_str_eq(a.spec.nodes, "w[01-03],db1");
	cr_expect_str_eq(a.spec.exclude, "w02");
	nd_cli_task_args_free(&a);
	/* one node less some: a list, which the master finds empty */
	parse(&a, ARGC("run", "--node", "w1", "--exclude", "w1", "--", "x"),
	      ARGV("run", "--node", "w1", "--exclude", "w1", "--", "x"), true);
	cr_expect_str_eq(a.spec.node, "");
	cr_expect_str_eq(a.spec.nodes, "w1");
	nd_cli_task_args_free(&a);
	parse(&a, ARGC("run", "--all", "--label", "role=web", "--group", "--",
		       "x"),
	      ARGV("run", "--all", "--label", "role=web", "--group", "--",
		   "x"), true);
	cr_expect(a.spec.all);
	cr_expect_eq(a.spec.n_labels, 1);
	cr_expect(a.group);
	cr_expect(!a.json);
	nd_cli_task_args_free(&a);
	parse(&a, ARGC("run", "--exclude", "w[1-3]", "--json", "--", "x"),
	      ARGV("run", "--exclude", "w[1-3]", "--json", "--", "x"), true);
	cr_expect_str_eq(a.spec.exclude, "w[1-3]");
	cr_expect(a.json);
	nd_cli_task_args_free(&a);
}

Test(args, conflicting_repeats_are_usage_errors, .init = capture)
{
	static const char *const bad[][8] = {
		{ "run", "--node", "a", "--node", "b", "--", "x" },
		{ "run", "--label", "k=a", "--label", "k=b", "--", "x" },
		{ "run", "--env", "K=1", "--env", "K=2", "--", "x" },
		{ "run", "--timeout", "1", "--timeout", "2", "--", "x" },
		{ "run", "--cwd", "/a", "--cwd", "/b", "--", "x" },
		{ "run", "--retries", "1", "--retries", "2", "--", "x" },
		{ "run", "--output-cap", "9", "--output-cap", "8", "--", "x" },
		{ "run", "--master", "a:1", "--master", "b:1", "--", "x" },
		{ "submit", "--token-file", "a", "--token-file", "b", "--",
		  "x" },
		{ "run", "--node", "a", "--node", "a", "--all", "--", "x" },
	};
	struct nd_cli_task_args a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[8] = { 0 };
		int argc = 0;

		while (argc < 8 && bad[i][argc]) {
			argv[argc] = (char *)bad[i][argc];
			argc++;
		}
		cr_expect_eq(parse(&a, argc, argv, false), ND_CLI_EXIT_USAGE,
			     "case %zu (%s %s %s %s)", i, argv[1], argv[2],
			     argv[3], argv[4]);
	}
	EXPECT_HAS(cap_err, "noded run: --node given twice ('a' and 'b'): "
		   "give it once\n");
	EXPECT_HAS(cap_err, "noded run: --label key 'k' given twice ('a' and "
		   "'b'): give it once\n");
	EXPECT_HAS(cap_err, "noded run: --env key 'K' given twice ('1' and "
		   "'2')");
	EXPECT_HAS(cap_err, "noded run: --timeout given twice ('1' and '2')");
	EXPECT_HAS(cap_err, "noded run: --cwd given twice ('/a' and '/b')");
	EXPECT_HAS(cap_err, "noded submit: --token-file given twice");

	/* the same value again, or a flag twice, is no conflict */
	parse(&a, ARGC("run", "--node", "a", "--node", "a", "--shell",
		       "--shell", "--", "x"),
	      ARGV("run", "--node", "a", "--node", "a", "--shell", "--shell",
		   "--", "x"), true);
	cr_expect_str_eq(a.spec.node, "a");
	nd_cli_task_args_free(&a);
	parse(&a, ARGC("run", "--label", "k=v", "--label", "k=v", "--env",
		       "E=1", "--env", "E=1", "--", "x"),
	      ARGV("run", "--label", "k=v", "--label", "k=v", "--env", "E=1",
		   "--env", "E=1", "--", "x"), true);
	cr_expect_eq(a.spec.n_labels, 1);
	cr_expect_eq(a.command.n_env, 1);
	nd_cli_task_args_free(&a);
}

Test(args, help_exits_zero, .init = capture)
{
	struct nd_cli_task_args a;

	cr_expect_eq(parse(&a, 2, ARGV("submit", "--help"), false), 0);
	EXPECT_HAS(cap_out, "usage: noded submit [options] -- CMD [ARG...]");
}

Test(args, parse_twice, .init = capture)
{
	struct nd_cli_task_args a;

	/* getopt keeps global state: a second parse must start afresh */
	parse(&a, 5, ARGV("run", "--all", "--shell", "--", "a"), true);
	nd_cli_task_args_free(&a);
	parse(&a, 3, ARGV("run", "--", "b"), true);
	cr_expect_eq(a.spec.all, 0);
	cr_expect_str_eq(a.command.shell, "");
	cr_expect_str_eq(a.command.argv[0], "b");
	nd_cli_task_args_free(&a);
}

Test(args, timeout_values, .init = capture)
{
	uint32_t ms = 7;

	cr_expect(nd_cli_timeout_ms("0", &ms));
	cr_expect_eq(ms, 0);
	cr_expect(nd_cli_timeout_ms("1.5", &ms));
	cr_expect_eq(ms, 1500);
	cr_expect(nd_cli_timeout_ms(".25", &ms));
	cr_expect_eq(ms, 250);
	cr_expect(nd_cli_timeout_ms("0.0001", &ms));
	cr_expect_eq(ms, 1, "a tiny timeout is not 'no timeout'");
	cr_expect(nd_cli_timeout_ms("4294967", &ms));
	cr_expect_eq(ms, 4294967000u);
	cr_expect_not(nd_cli_timeout_ms("4294968", &ms));
	cr_expect_not(nd_cli_timeout_ms(".", &ms));
	cr_expect_not(nd_cli_timeout_ms("1.2.3", &ms));
	cr_expect_not(nd_cli_timeout_ms("inf", &ms));
	cr_expect_not(nd_cli_timeout_ms("0x10", &ms));
}

/* ---- states, exit statuses, notes ---- */

Test(state, parse_and_names)
{
	static const char *const names[] = { "pending", "assigned", "running",
		"succeeded", "failed", "timed_out", "cancelled", "lost" };
	Noded__TaskState s;
	char up[32];

	for (size_t i = 0; i < 8; i++) {
		cr_assert(nd_task_state_parse(names[i], &s), "%s", names[i]);
		cr_expect_eq(s, (Noded__TaskState)(i + 1));
		for (size_t j = 0; j < sizeof(up); j++) {
			up[j] = (char)toupper((unsigned char)names[i][j]);
			if (!up[j])
				break;
		}
		cr_expect_str_eq(nd_task_state_name(s), up);
		cr_assert(nd_task_state_parse(up, &s), "upper case %s", up);
		cr_expect_eq(s, (Noded__TaskState)(i + 1));
	}
	cr_expect(nd_task_state_parse("Timed_Out", &s));
	cr_expect_eq(s, NODED__TASK_STATE__TASK_TIMED_OUT);
	cr_expect_not(nd_task_state_parse("timed-out", &s));
	cr_expect_not(nd_task_state_parse("", &s));
	cr_expect_not(nd_task_state_parse("done", &s));
	cr_expect_not(nd_task_state_parse("UNKNOWN", &s));
	cr_expect_not(nd_task_state_parse("pending ", &s));
	cr_expect_str_eq(nd_task_state_name(0), "UNKNOWN");
	cr_expect_str_eq(nd_task_state_name(99), "UNKNOWN");
	cr_expect_not(nd_cli_state_terminal(NODED__TASK_STATE__TASK_RUNNING));
	cr_expect(nd_cli_state_terminal(NODED__TASK_STATE__TASK_LOST));
}

static Noded__TaskRecord rec(Noded__TaskState st, int code, int sig,
			     const char *reason)
{
	Noded__TaskRecord r = NODED__TASK_RECORD__INIT;

	r.id = 42;
	r.state = st;
	r.exit_code = code;
	r.signal = sig;
	r.reason = (char *)reason;
	return r;
}

#define S(x) NODED__TASK_STATE__TASK_##x

Test(state, exit_status)
{
	static const struct {
		Noded__TaskState st;
		int code, sig, want;
	} cases[] = {
		{ S(SUCCEEDED), 0, 0, 0 },
		{ S(FAILED), 3, 0, 3 },
		{ S(FAILED), 127, 0, 127 },
		{ S(FAILED), 255, 0, 255 },
		{ S(FAILED), 0, 9, 137 },
		{ S(FAILED), 0, 15, 143 },
		{ S(FAILED), 0, 0, 1 },         /* failed is never 0 */
		{ S(FAILED), 300, 0, 255 },
		{ S(FAILED), -1, 0, 255 },
		{ S(TIMED_OUT), 0, 15, 124 },
		{ S(TIMED_OUT), 0, 9, 124 },
		{ S(CANCELLED), 0, 15, 143 },
		{ S(CANCELLED), 0, 0, 130 },
		{ S(LOST), 0, 0, 255 },
		{ S(LOST), 3, 0, 255 },
		{ S(RUNNING), 0, 0, -1 },
		{ S(PENDING), 0, 0, -1 },
		{ 0, 0, 0, -1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Noded__TaskRecord r = rec(cases[i].st, cases[i].code,
					  cases[i].sig, "");

		cr_expect_eq(nd_cli_exit_status(&r), cases[i].want,
			     "%s code %d signal %d: got %d, want %d",
			     nd_task_state_name(cases[i].st), cases[i].code,
			     cases[i].sig, nd_cli_exit_status(&r),
			     cases[i].want);
	}
}

Test(state, end_notes)
{
	Noded__Command cmd = NODED__COMMAND__INIT;
	Noded__TaskSpec spec = NODED__TASK_SPEC__INIT;
	Noded__TaskRecord r;
	char buf[256];

	r = rec(S(LOST), 0, 0, "node w1 is DEAD");
	cr_expect(nd_cli_end_note(&r, buf, sizeof(buf)));
	cr_expect_str_eq(buf, "task 42 lost: node w1 is DEAD");
	r = rec(S(LOST), 0, 0, "");
	cr_expect(nd_cli_end_note(&r, buf, sizeof(buf)));
	cr_expect_str_eq(buf, "task 42 lost: no reason given");
	r = rec(S(FAILED), 127, 0, "nosuchcmd: command not found");
	cr_expect(nd_cli_end_note(&r, buf, sizeof(buf)));
	cr_expect_str_eq(buf, "task 42: nosuchcmd: command not found");
	r = rec(S(FAILED), 3, 0, "");
	cr_expect_not(nd_cli_end_note(&r, buf, sizeof(buf)));
	cr_expect_str_eq(buf, "");
	r = rec(S(SUCCEEDED), 0, 0, "whatever");
	cr_expect_not(nd_cli_end_note(&r, buf, sizeof(buf)));
	r = rec(S(RUNNING), 0, 0, "x");
	cr_expect_not(nd_cli_end_note(&r, buf, sizeof(buf)));
	r = rec(S(TIMED_OUT), 0, 15, "");
	spec.command = &cmd;
	cmd.timeout_ms = 1500;
	r.spec = &spec;
	cr_expect(nd_cli_end_note(&r, buf, sizeof(buf)));
	cr_expect_str_eq(buf, "task 42 timed out after 1.5 s");
	r = rec(S(CANCELLED), 0, 15, NULL);
	cr_expect(nd_cli_end_note(&r, buf, sizeof(buf)));
	cr_expect_str_eq(buf, "task 42 cancelled");
}

/* ---- records ---- */

Test(record, command_string)
{
	Noded__Command sc = NODED__COMMAND__INIT;
	Noded__TaskSpec s = NODED__TASK_SPEC__INIT;
	char *argv[] = { "printf", "%s\\n", "a b", "it's", "", "x=1,y/z" };
	char *c;

	s.command = &sc;
	sc.argv = argv;
	sc.n_argv = 6;
	c = nd_cli_command_string(&s);
	cr_expect_str_eq(c, "printf '%s\\n' 'a b' 'it'\\''s' '' x=1,y/z");
	free(c);
	sc.shell = "echo $HOME | wc";
	c = nd_cli_command_string(&s);
	cr_expect_str_eq(c, "echo $HOME | wc");
	free(c);
	c = nd_cli_command_string(NULL);
	cr_expect_str_eq(c, "");
	free(c);
}

Test(record, command_string_escapes_bytes_that_are_not_text)
{
	Noded__Command sc = NODED__COMMAND__INIT;
	Noded__TaskSpec s = NODED__TASK_SPEC__INIT;
	char *argv[] = { "echo", "bad\xff" "arg", "x\ny", "it's\x1b", "ü" };
	char *c;

	s.command = &sc;
	sc.argv = argv;
	sc.n_argv = 5;
	c = nd_cli_command_string(&s);
	/* $'...' gives the same bytes back when pasted into bash */
	cr_expect_str_eq(c, "echo $'bad\\xffarg' $'x\\ny' $'it\\'s\\x1b' "
			 "'ü'");
	free(c);
	sc.shell = "printf '\xfe'\necho";
	c = nd_cli_command_string(&s);
	cr_expect_str_eq(c, "printf '\\xfe'\\necho");
	free(c);
}

Test(record, json_keeps_bytes_that_are_not_utf8)
{
	Noded__Command sc = NODED__COMMAND__INIT;
	Noded__TaskSpec s = NODED__TASK_SPEC__INIT;
	Noded__TaskRecord r = rec(S(FAILED), 127, 0, "command not found: "
				  "bad\xff");
	char *argv[] = { "bad\xff", "ok", "\xc3(" };
	Noded__NodeInfo n = NODED__NODE_INFO__INIT;
	Noded__NodeInfo__LabelsEntry l1 = NODED__NODE_INFO__LABELS_ENTRY__INIT;
	Noded__NodeInfo__LabelsEntry *lp[] = { &l1 };
	json_t *j, *a, *b;
	char *dump, *x;

	s.command = &sc;
	sc.argv = argv;
	sc.n_argv = 3;
	r.spec = &s;
	r.node = "w\xfe";
	j = nd_json_task(&r);
	cr_assert(j, "a record with bytes that are not UTF-8 has JSON");
	dump = json_dumps(j, 0);
	cr_assert(dump, "and it can be written");
	free(dump);
	a = json_object_get(j, "argv");
	b = json_object_get(j, "argv_base64");
	cr_assert(json_array_size(a) == 3 && json_array_size(b) == 3,
		  "argv and argv_base64 of 3 each");
	cr_expect_str_eq(json_string_value(json_array_get(a, 0)),
			 "bad\xef\xbf\xbd");
	cr_expect_str_eq(json_string_value(json_array_get(a, 1)), "ok");
	cr_expect_str_eq(json_string_value(json_array_get(a, 2)),
			 "\xef\xbf\xbd(");
	for (size_t i = 0; i < 3; i++) {
		x = nd_test_unbase64(json_string_value(json_array_get(b, i)));
		cr_expect_str_eq(x, argv[i]);
		free(x);
	}
	x = nd_test_unbase64(json_string_value(json_object_get(j, "reason_base64")));
	cr_expect_str_eq(x, r.reason);
	free(x);
	x = nd_test_unbase64(json_string_value(json_object_get(j, "node_base64")));
	cr_expect_str_eq(x, "w\xfe");
	free(x);
	json_decref(j);

	/* valid UTF-8 stays a plain string, with no sibling */
	argv[0] = "é";
	argv[2] = "x";
	r.reason = "";
	r.node = "w1";
	j = nd_json_task(&r);
	cr_expect_null(json_object_get(j, "argv_base64"));
	cr_expect_null(json_object_get(j, "reason_base64"));
	cr_expect_null(json_object_get(j, "node_base64"));
	cr_expect_str_eq(json_string_value(json_array_get(
		json_object_get(j, "argv"), 0)), "é");
	json_decref(j);

	n.name = "w1";
	n.address = "127.0.0.1:1";
	l1.key = "k\xff";
	l1.value = "v";
	n.labels = lp;
	n.n_labels = 1;
	j = nd_json_node(&n);
	cr_assert(j);
	b = json_object_get(j, "labels_base64");
	cr_assert(json_is_object(b), "labels_base64 is an object");
	x = nd_test_unbase64(json_string_value(json_object_get(b, "a/8=")));
	cr_expect_str_eq(x, "v");
	free(x);
	json_decref(j);
}

Test(record, json_fields)
{
	Noded__Command sc = NODED__COMMAND__INIT;
	Noded__TaskSpec s = NODED__TASK_SPEC__INIT;
	Noded__TaskRecord r = rec(S(FAILED), 0, 9, "killed");
	char *argv[] = { "sleep", "10" };
	json_t *j, *a;

	s.command = &sc;
	sc.argv = argv;
	sc.n_argv = 2;
	r.spec = &s;
	r.job_id = 7;
	r.node = "w2";
	r.submitted_unix_ms = 1700000000123ull;
	r.started_unix_ms = 1700000000200ull;
	r.ended_unix_ms = 1700000001200ull;
	r.utime_us = 11;
	r.stime_us = 12;
	r.max_rss_kib = 13;
	r.attempt = 2;
	r.output_bytes = 2000000;
	r.truncated = true;
	r.watchers = 3;
	j = nd_json_task(&r);
	cr_assert(j);
	cr_expect_eq(json_integer_value(json_object_get(j, "id")), 42);
	cr_expect_eq(json_integer_value(json_object_get(j, "job_id")), 7);
	cr_expect_str_eq(json_string_value(json_object_get(j, "state")),
			 "FAILED");
	cr_expect_str_eq(json_string_value(json_object_get(j, "node")), "w2");
	a = json_object_get(j, "argv");
	cr_assert(json_is_array(a));
	cr_expect_eq(json_array_size(a), 2);
	cr_expect_str_eq(json_string_value(json_array_get(a, 1)), "10");
	cr_expect_null(json_object_get(j, "shell"));
	cr_expect_eq(json_integer_value(json_object_get(j, "exit_code")), 0);
	cr_expect_eq(json_integer_value(json_object_get(j, "signal")), 9);
	cr_expect_str_eq(json_string_value(json_object_get(j, "reason")),
			 "killed");
	cr_expect_eq(json_integer_value(json_object_get(j,
			"submitted_unix_ms")), 1700000000123ll);
	cr_expect_eq(json_integer_value(json_object_get(j, "started_unix_ms")),
		     1700000000200ll);
	cr_expect_eq(json_integer_value(json_object_get(j, "ended_unix_ms")),
		     1700000001200ll);
	cr_expect_eq(json_integer_value(json_object_get(j, "utime_us")), 11);
	cr_expect_eq(json_integer_value(json_object_get(j, "stime_us")), 12);
	cr_expect_eq(json_integer_value(json_object_get(j, "max_rss_kib")), 13);
	cr_expect_eq(json_integer_value(json_object_get(j, "attempt")), 2);
	cr_expect_eq(json_integer_value(json_object_get(j, "output_bytes")),
		     2000000);
	cr_expect(json_is_true(json_object_get(j, "truncated")));
	cr_expect_eq(json_integer_value(json_object_get(j, "watchers")), 3);
	cr_expect_eq(json_array_size(json_object_get(j, "attempts")), 0);
	cr_expect_eq(json_object_size(j), 19);
	json_decref(j);

	{
		Noded__TaskAttempt a1 = NODED__TASK_ATTEMPT__INIT;
		Noded__TaskAttempt *as[] = { &a1 };
		json_t *ja;

		a1.attempt = 1;
		a1.node = "w1";
		a1.state = S(LOST);
		a1.started_unix_ms = 5;
		a1.ended_unix_ms = 6;
		a1.reason = "node w1 died";
		r.attempts = as;
		r.n_attempts = 1;
		j = nd_json_task(&r);
		ja = json_array_get(json_object_get(j, "attempts"), 0);
		cr_assert(json_is_object(ja));
		cr_expect_eq(json_integer_value(json_object_get(ja, "attempt")),
			     1);
		cr_expect_str_eq(json_string_value(json_object_get(ja, "node")),
				 "w1");
		cr_expect_str_eq(json_string_value(json_object_get(ja,
				 "state")), "LOST");
		cr_expect_str_eq(json_string_value(json_object_get(ja,
				 "reason")), "node w1 died");
		cr_expect_eq(json_integer_value(json_object_get(ja,
			     "ended_unix_ms")), 6);
		json_decref(j);
		r.attempts = NULL;
		r.n_attempts = 0;
	}

	sc.shell = "sleep 10 &";
	r.truncated = false;
	j = nd_json_task(&r);
	cr_expect_str_eq(json_string_value(json_object_get(j, "shell")),
			 "sleep 10 &");
	cr_expect_null(json_object_get(j, "argv"));
	cr_expect(json_is_false(json_object_get(j, "truncated")));
	json_decref(j);

	r.spec = NULL;  /* a record without its spec still makes JSON */
	r.node = NULL;
	j = nd_json_task(&r);
	cr_assert(j);
	cr_expect_eq(json_array_size(json_object_get(j, "argv")), 0);
	cr_expect_str_eq(json_string_value(json_object_get(j, "node")), "");
	json_decref(j);
}

Test(record, attempt_notes_and_markers)
{
	Noded__TaskAttempt a1 = NODED__TASK_ATTEMPT__INIT;
	Noded__TaskAttempt a2 = NODED__TASK_ATTEMPT__INIT;
	Noded__TaskAttempt *as[] = { &a1, &a2 };
	Noded__TaskRecord r = rec(S(PENDING), 0, 0, NULL);
	char buf[256];
	uint32_t seen = 0;

	a1.attempt = 1;
	a1.node = "w1";
	a1.state = S(LOST);
	a1.reason = "node w1 died";
	a2.attempt = 2;
	a2.node = "w2";
	a2.state = S(ASSIGNED);
	cr_expect_not(nd_cli_attempt_note(&r, buf, sizeof(buf)),
		      "no attempt yet: nothing to say");
	r.attempts = as;
	r.n_attempts = 1;
	r.attempt = 2;
	cr_assert(nd_cli_attempt_note(&r, buf, sizeof(buf)));
	cr_expect_str_eq(buf, "task 42: attempt 1 on w1 was lost (node w1 "
			 "died); retrying as attempt 2");
	r.n_attempts = 2;
	r.state = S(ASSIGNED);
	cr_assert(nd_cli_attempt_note(&r, buf, sizeof(buf)));
	cr_expect_str_eq(buf, "task 42: attempt 2 runs on w2");
	r.state = S(SUCCEEDED);
	cr_expect_not(nd_cli_attempt_note(&r, buf, sizeof(buf)),
		      "an end is no retry");

	/* output of attempt 1 needs no marker; the next attempt's does */
	cr_expect_not(nd_cli_attempt_begins(&seen, 1));
	cr_expect_not(nd_cli_attempt_begins(&seen, 1));
	cr_expect(nd_cli_attempt_begins(&seen, 2));
	cr_expect_not(nd_cli_attempt_begins(&seen, 2));
	cr_expect_not(nd_cli_attempt_begins(&seen, 0), "unknown: none");
	seen = 0;
	cr_expect(nd_cli_attempt_begins(&seen, 3), "attempt 3 first");
}

/* ---- the line prefixer ---- */

struct mem {
	char *buf;
	size_t len;
	FILE *f;
};

static void mem_open(struct mem *m)
{
	m->buf = NULL;
	m->len = 0;
	m->f = open_memstream(&m->buf, &m->len);
	cr_assert(m->f);
}

static void mem_close(struct mem *m)
{
	fclose(m->f);
	free(m->buf);
}

Test(sink, raw_passthrough)
{
	struct nd_cli_sink s;
	struct mem o, e;

	mem_open(&o);
	mem_open(&e);
	cr_assert_eq(nd_cli_sink_init(&s, o.f, e.f, NULL), 0);
	nd_cli_sink_write(&s, 1, "par", 3);
	nd_cli_sink_write(&s, 2, "err", 3);
	nd_cli_sink_write(&s, 1, "tial\nno newline", 15);
	nd_cli_sink_write(&s, 3, "!", 1);      /* unknown fd: stdout */
	nd_cli_sink_flush(&s);
	fflush(o.f);
	fflush(e.f);
	cr_expect_str_eq(o.buf, "partial\nno newline!");
	cr_expect_str_eq(e.buf, "err");
	nd_cli_sink_free(&s);
	mem_close(&o);
	mem_close(&e);
}

/* Feeds text to a prefixing sink in pieces cut at the given offsets. */
static void feed_split(struct nd_cli_sink *s, uint32_t fd, const char *text,
		       const size_t *cuts, size_t ncuts)
{
	size_t at = 0, len = strlen(text);

	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts && cuts[i] < len ? cuts[i] : len;

		if (end < at)
			end = at;
		cr_assert_eq(nd_cli_sink_write(s, fd, text + at, end - at), 0);
		at = end;
	}
}

Test(sink, prefix_any_chunking)
{
	static const char text[] = "first line\n\nthird: a longer line\nlast";
	static const char want[] = "w1: first line\nw1: \n"
				   "w1: third: a longer line\nw1: last\n";
	size_t len = strlen(text);

	/* every way of cutting it in two and three pieces */
	for (size_t i = 0; i <= len; i++) {
		for (size_t j = i; j <= len; j++) {
			size_t cuts[2] = { i, j };
			struct nd_cli_sink s;
			struct mem o, e;

			mem_open(&o);
			mem_open(&e);
			cr_assert_eq(nd_cli_sink_init(&s, o.f, e.f, "w1"), 0);
			feed_split(&s, 1, text, cuts, 2);
			cr_assert_eq(nd_cli_sink_flush(&s), 0);
			fflush(o.f);
			fflush(e.f);
			cr_assert_str_eq(o.buf, want, "cuts at %zu, %zu", i, j);
			cr_assert_eq(e.len, 0);
			nd_cli_sink_free(&s);
			mem_close(&o);
			mem_close(&e);
		}
	}
}

Test(sink, prefix_byte_by_byte_two_fds)
{
	static const char out[] = "o1\no2 partial";
	static const char err[] = "e1 partial";
	struct nd_cli_sink s;
	struct mem o, e;

	mem_open(&o);
	mem_open(&e);
	cr_assert_eq(nd_cli_sink_init(&s, o.f, e.f, "task 9"), 0);
	/* interleaved one byte at a time: each fd keeps its own line */
	for (size_t i = 0; i < sizeof(out) - 1 || i < sizeof(err) - 1; i++) {
		if (i < sizeof(out) - 1)
			nd_cli_sink_write(&s, 1, out + i, 1);
		if (i < sizeof(err) - 1)
			nd_cli_sink_write(&s, 2, err + i, 1);
	}
	fflush(o.f);
	fflush(e.f);
	cr_expect_str_eq(o.buf, "task 9: o1\n");
	cr_expect_eq(e.len, 0, "no complete stderr line yet");
	cr_assert_eq(nd_cli_sink_set_prefix(&s, "w3"), 0);
	nd_cli_sink_flush(&s);
	nd_cli_sink_flush(&s);   /* a second flush adds nothing */
	fflush(o.f);
	fflush(e.f);
	cr_expect_str_eq(o.buf, "task 9: o1\nw3: o2 partial\n");
	cr_expect_str_eq(e.buf, "w3: e1 partial\n");
	nd_cli_sink_free(&s);
	mem_close(&o);
	mem_close(&e);
}

Test(sink, endless_line_is_cut)
{
	size_t n = ND_CLI_LINE_MAX * 2 + 10;
	char *big = malloc(n);
	struct nd_cli_sink s;
	struct mem o, e;
	size_t lines = 0;

	cr_assert(big);
	memset(big, 'x', n);
	mem_open(&o);
	mem_open(&e);
	cr_assert_eq(nd_cli_sink_init(&s, o.f, e.f, "n"), 0);
	for (size_t at = 0; at < n; at += 1000)
		nd_cli_sink_write(&s, 1, big + at, n - at < 1000 ? n - at : 1000);
	fflush(o.f);
	cr_expect_eq(o.len, 2 * (3 + ND_CLI_LINE_MAX + 1),
		     "two full pieces printed, the rest kept");
	cr_expect_leq(s.part[0].cap, 2 * (size_t)ND_CLI_LINE_MAX,
		      "kept buffer bounded");
	nd_cli_sink_flush(&s);
	fflush(o.f);
	for (size_t i = 0; i < o.len; i++)
		lines += o.buf[i] == '\n';
	cr_expect_eq(lines, 3);
	cr_expect_eq(o.len, 3 * 4 + n);
	nd_cli_sink_free(&s);
	mem_close(&o);
	mem_close(&e);
	free(big);
}

/* ---- a scripted fake master ---- */

struct fake {
	int lfd, fd, port;
	char addr[32];
	pthread_t th, main;
	void (*script)(struct fake *);
	void *arg;
	char fail[512];
	uint64_t hello_id;
};

static struct fake fk;

__attribute__((format(printf, 2, 3))) static void fk_fail(struct fake *f,
							  const char *fmt, ...)
{
	va_list ap;

	if (f->fail[0])
		return;
	va_start(ap, fmt);
	vsnprintf(f->fail, sizeof(f->fail), fmt, ap);
	va_end(ap);
}

/* Next frame from the client, which must be a request with this body
 * (keepalive pings of a waiting client are skipped). */
static Noded__Frame *fk_expect(struct fake *f, Noded__Frame__BodyCase body)
{
	Noded__Frame *fr = NULL;
	int r;

	if (f->fail[0])
		return NULL;
	while (!(r = nd_test_recv_frame(f->fd, ND_TEST_TIMEOUT_MS, &fr)) &&
	       body != NODED__FRAME__BODY_PING &&
	       fr->body_case == NODED__FRAME__BODY_PING) {
		nd_frame_free(fr, NULL);
		fr = NULL;
	}
	if (r) {
		fk_fail(f, "fake master: waiting for %s: %s (%s)",
			nd_frame_method_name(body), nd_strerror(r),
			nd_test_why);
		return NULL;
	}
	if (fr->kind != NODED__FRAME_KIND__REQUEST || fr->body_case != body) {
		fk_fail(f, "fake master: wanted a %s request, got %s",
			nd_frame_method_name(body), nd_test_describe(fr));
		nd_frame_free(fr, NULL);
		return NULL;
	}
	return fr;
}

static void fk_send(struct fake *f, Noded__Frame *fr, uint64_t id,
		    Noded__FrameKind kind)
{
	int r;

	if (f->fail[0])
		return;
	fr->id = id;
	fr->kind = kind;
	r = nd_test_send_frame(f->fd, fr);
	if (r)
		fk_fail(f, "fake master: sending: %s", nd_strerror(r));
}

static void fk_output(struct fake *f, uint64_t id, uint64_t task,
		      uint32_t fdno, const char *text)
{
	Noded__OutputChunk c = NODED__OUTPUT_CHUNK__INIT;
	Noded__Frame fr = NODED__FRAME__INIT;

	c.task_id = task;
	c.fd = fdno;
	c.data.data = (uint8_t *)text;
	c.data.len = strlen(text);
	fr.body_case = NODED__FRAME__BODY_OUTPUT;
	fr.output = &c;
	fk_send(f, &fr, id, NODED__FRAME_KIND__STREAM_ITEM);
}

static void fk_record(struct fake *f, uint64_t id, Noded__FrameKind kind,
		      Noded__TaskRecord *r)
{
	Noded__Frame fr = NODED__FRAME__INIT;

	fr.body_case = NODED__FRAME__BODY_TASK_RECORD;
	fr.task_record = r;
	fk_send(f, &fr, id, kind);
}

static void fk_end(struct fake *f, uint64_t id)
{
	Noded__Frame fr = NODED__FRAME__INIT;

	fk_send(f, &fr, id, NODED__FRAME_KIND__STREAM_END);
}

static void fk_error(struct fake *f, uint64_t id, Noded__FrameKind kind,
		     Noded__ErrorCode code, const char *msg)
{
	Noded__Error e = NODED__ERROR__INIT;
	Noded__Frame fr = NODED__FRAME__INIT;

	e.code = code;
	e.message = (char *)msg;
	fr.body_case = NODED__FRAME__BODY_ERROR;
	fr.error = &e;
	fk_send(f, &fr, id, kind);
}

static void fk_submit_reply_kind(struct fake *f, uint64_t id,
				 Noded__FrameKind kind, uint64_t job,
				 uint64_t *ids, char **nodes, size_t n)
{
	Noded__SubmitReply sr = NODED__SUBMIT_REPLY__INIT;
	Noded__Frame fr = NODED__FRAME__INIT;

	sr.job_id = job;
	sr.task_ids = ids;
	sr.n_task_ids = n;
	sr.nodes = nodes;
	sr.n_nodes = nodes ? n : 0;
	fr.body_case = NODED__FRAME__BODY_SUBMIT_REPLY;
	fr.submit_reply = &sr;
	fk_send(f, &fr, id, kind);
}

/* The reply to a unary submit. */
static void fk_submit_reply(struct fake *f, uint64_t id, uint64_t job,
			    uint64_t *ids, char **nodes, size_t n)
{
	fk_submit_reply_kind(f, id, NODED__FRAME_KIND__REPLY, job, ids, nodes,
			     n);
}

/* The first item of a run stream: the tasks it created. */
static void fk_run_reply(struct fake *f, uint64_t id, uint64_t job,
			 uint64_t *ids, char **nodes, size_t n)
{
	fk_submit_reply_kind(f, id, NODED__FRAME_KIND__STREAM_ITEM, job, ids,
			     nodes, n);
}

/* Waits until the command has written want to the captured stdout (it
 * flushes after each poll), so that what it printed has been handled. */
static void fk_wait_printed(struct fake *f, const char *want)
{
	int64_t deadline = nd_test_now_ms() + ND_TEST_TIMEOUT_MS;
	char buf[4096];
	ssize_t n;

	if (f->fail[0])
		return;
	for (;;) {
		n = pread(cap_out_fd, buf, sizeof(buf) - 1, 0);
		if (n >= 0) {
			buf[n] = '\0';
			if (strstr(buf, want))
				return;
		}
		if (nd_test_now_ms() > deadline) {
			fk_fail(f, "fake master: the command did not print "
				"\"%s\" within %d ms", want, ND_TEST_TIMEOUT_MS);
			return;
		}
		nd_test_sleep_ms(2);
	}
}

/* Waits for the client to hang up, so the script ends after it did
 * (keepalive pings may come first). */
static void fk_wait_close(struct fake *f)
{
	Noded__Frame *fr = NULL;

	while (!f->fail[0] &&
	       !nd_test_recv_frame(f->fd, ND_TEST_TIMEOUT_MS, &fr) &&
	       fr->body_case == NODED__FRAME__BODY_PING) {
		nd_frame_free(fr, NULL);
		fr = NULL;
	}
	if (fr) {
		fk_fail(f, "fake master: the client did not hang up: it sent "
			"%s", nd_test_describe(fr));
		nd_frame_free(fr, NULL);
		return;
	}
	if (!f->fail[0] && nd_test_expect_closed(f->fd, ND_TEST_TIMEOUT_MS))
		fk_fail(f, "fake master: the client did not hang up: %s",
			nd_test_why);
}

static void *fk_main(void *arg)
{
	struct fake *f = arg;
	Noded__HelloReply hr = NODED__HELLO_REPLY__INIT;
	Noded__Frame fr = NODED__FRAME__INIT, *h;
	sigset_t all;

	/* Ctrl-C in the tests is meant for the command, not for us. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	f->fd = accept(f->lfd, NULL, NULL);
	if (f->fd < 0) {
		fk_fail(f, "fake master: accept: %m");
		return NULL;
	}
	h = fk_expect(f, NODED__FRAME__BODY_HELLO);
	if (h) {
		hr.protocol_version = ND_PROTOCOL_VERSION;
		hr.node_name = "fake";
		hr.role = NODED__ROLE__ROLE_MASTER;
		hr.max_frame = ND_MAX_FRAME_DEFAULT;
		fr.body_case = NODED__FRAME__BODY_HELLO_REPLY;
		fr.hello_reply = &hr;
		fk_send(f, &fr, h->id, NODED__FRAME_KIND__REPLY);
		nd_frame_free(h, NULL);
		f->script(f);
	}
	close(f->fd);
	return NULL;
}

/* Starts the fake master with a script; fk.addr is its address. */
static void fake_start(void (*script)(struct fake *), void *arg)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);

	memset(&fk, 0, sizeof(fk));
	fk.script = script;
	fk.arg = arg;
	fk.main = pthread_self();
	fk.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(fk.lfd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fk.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fk.lfd, 4), 0);
	cr_assert_eq(getsockname(fk.lfd, (struct sockaddr *)&sa, &sl), 0);
	fk.port = ntohs(sa.sin_port);
	snprintf(fk.addr, sizeof(fk.addr), "127.0.0.1:%d", fk.port);
	cr_assert_eq(pthread_create(&fk.th, NULL, fk_main, &fk), 0);
}

/* Joins the fake master and asserts its script saw what it expected. */
static void fake_join(void)
{
	pthread_join(fk.th, NULL);
	close(fk.lfd);
	cr_assert(!fk.fail[0], "%s", fk.fail);
}

/* Reads a submit or run request (body) and checks it runs argv[0] == want0;
 * returns its request id. */
static uint64_t fk_take_spec(struct fake *f, Noded__Frame__BodyCase body,
			     const char *want0, bool all)
{
	Noded__Frame *s = fk_expect(f, body);
	const Noded__TaskSpec *sp;
	uint64_t id;

	if (!s)
		return 0;
	sp = body == NODED__FRAME__BODY_RUN ? s->run : s->submit;
	if (!sp || !sp->command || sp->command->n_argv < 1 ||
	    strcmp(sp->command->argv[0], want0) || sp->all != all)
		fk_fail(f, "fake master: unexpected spec (argv[0] '%s', all "
			"%d)", sp && sp->command && sp->command->n_argv ?
			sp->command->argv[0] : "", sp ? sp->all : -1);
	id = s->id;
	nd_frame_free(s, NULL);
	return id;
}

static uint64_t fk_take_submit(struct fake *f, const char *want0, bool all)
{
	return fk_take_spec(f, NODED__FRAME__BODY_SUBMIT, want0, all);
}

/* Reads a run request: one stream for the submission and all its tasks. */
static uint64_t fk_take_run(struct fake *f, const char *want0, bool all)
{
	return fk_take_spec(f, NODED__FRAME__BODY_RUN, want0, all);
}

/* Reads a watch {task, follow=true}; returns its request id. */
static uint64_t fk_take_watch(struct fake *f, uint64_t task, bool follow)
{
	Noded__Frame *w = fk_expect(f, NODED__FRAME__BODY_WATCH);
	uint64_t id;

	if (!w)
		return 0;
	if (w->watch->task_id != task || w->watch->follow != follow)
		fk_fail(f, "fake master: watch task %llu follow %d, want %llu "
			"follow %d", (unsigned long long)w->watch->task_id,
			w->watch->follow, (unsigned long long)task, follow);
	id = w->id;
	nd_frame_free(w, NULL);
	return id;
}

/* ---- noded run against the fake master ---- */

static void script_run_one(struct fake *f)
{
	uint64_t id = 5, rid;
	Noded__TaskRecord r = rec(S(FAILED), 3, 0, "");

	/* one run request, one stream: nothing else is asked for */
	rid = fk_take_run(f, "sh", false);
	fk_run_reply(f, rid, 0, &id, (char *[]){ "w1" }, 1);
	fk_output(f, rid, 5, 1, "hello ");
	fk_output(f, rid, 5, 2, "oops\n");
	fk_output(f, rid, 5, 1, "world\n");
	r.id = 5;
	fk_record(f, rid, NODED__FRAME_KIND__STREAM_ITEM, &r);
	fk_end(f, rid);
	fk_wait_close(f);
}

Test(run, single_task_streams_and_exits_with_its_code, .init = capture,
     .timeout = 20)
{
	int st;

	fake_start(script_run_one, NULL);
	st = nd_cli_run(6, ARGV("run", "--master", fk.addr, "--", "sh",
				"-c"));
	fake_join();
	cr_expect_eq(st, 3);
	EXPECT_OUT(cap_out, "hello world\n");
	EXPECT_OUT(cap_err, "oops\n");
}

static void script_run_all(struct fake *f)
{
	uint64_t ids[2] = { 11, 12 }, rid;
	Noded__TaskRecord r1 = rec(S(SUCCEEDED), 0, 0, "");
	Noded__TaskRecord r2 = rec(S(FAILED), 2, 0, "");

	rid = fk_take_run(f, "uname", true);
	/* the second task's node is not known yet: its record names it */
	fk_run_reply(f, rid, 3, ids, (char *[]){ "alpha", "" }, 2);
	/* both tasks' chunks interleave on the one stream */
	fk_output(f, rid, 11, 1, "a1\na");
	fk_output(f, rid, 12, 1, "b1 part");
	fk_output(f, rid, 12, 2, "b-err\n");
	fk_output(f, rid, 11, 1, "2\n");
	fk_output(f, rid, 12, 1, "ial\nb2");
	r1.id = 11;
	r1.node = "alpha";
	fk_record(f, rid, NODED__FRAME_KIND__STREAM_ITEM, &r1);
	r2.id = 12;
	r2.node = "beta";
	fk_record(f, rid, NODED__FRAME_KIND__STREAM_ITEM, &r2);
	/* the stream ends once, after the last task ended */
	fk_end(f, rid);
	fk_wait_close(f);
}

Test(run, all_prefixes_lines_and_takes_largest_status, .init = capture,
     .timeout = 20)
{
	int st;

	fake_start(script_run_all, NULL);
	st = nd_cli_run(6, ARGV("run", "--all", "--master", fk.addr, "--",
				"uname"));
	fake_join();
	cr_expect_eq(st, 2);
	EXPECT_OUT(cap_out, "alpha: a1\nalpha: a2\ntask 12: b1 partial\n"
			    "beta: b2\n");
	/* the failing node is named as its result arrives, and a summary
	 * per node ends the run */
	EXPECT_OUT(cap_err, "task 12: b-err\n"
			    "noded: node beta: FAILED, exit status 2 (task 12)\n"
			    "noded: job 3 on 2 nodes: 1 SUCCEEDED; 1 FAILED: "
			    "beta (exit 2)\n");
}

static void script_run_all_mixed(struct fake *f)
{
	uint64_t ids[3] = { 21, 22, 23 }, rid;
	Noded__TaskRecord r1 = rec(S(FAILED), 127, 0,
				   "command not found: nope");
	Noded__TaskRecord r2 = rec(S(SUCCEEDED), 0, 0, "");

	rid = fk_take_run(f, "nope", true);
	fk_run_reply(f, rid, 5, ids, (char *[]){ "n1", "n2", "n3" }, 3);
	r1.id = 21;
	r1.node = "n1";
	fk_record(f, rid, NODED__FRAME_KIND__STREAM_ITEM, &r1);
	r2.id = 22;
	r2.node = "n2";
	fk_record(f, rid, NODED__FRAME_KIND__STREAM_ITEM, &r2);
	/* n3's end never comes: the master goes away */
}

Test(run, all_summary_names_each_node_that_did_not_succeed, .init = capture,
     .timeout = 20)
{
	int st;

	fake_start(script_run_all_mixed, NULL);
	st = nd_cli_run(6, ARGV("run", "--all", "--master", fk.addr, "--",
				"nope"));
	fake_join();
	cr_expect_eq(st, 255, "the largest status: 255 for the lost one");
	EXPECT_HAS(cap_err, "noded: node n1: FAILED, exit status 127 (task 21: "
		   "command not found: nope)\n");
	EXPECT_HAS(cap_err, "noded: job 5 on 3 nodes: 1 SUCCEEDED; 1 FAILED: "
		   "n1 (exit 127); 1 without a result: n3 (exit 255)\n");
}

static void script_refused(struct fake *f)
{
	uint64_t rid = fk_take_run(f, "true", false);

	/* refused before any task exists: the stream ends with the error */
	fk_error(f, rid, NODED__FRAME_KIND__STREAM_END,
		 NODED__ERROR_CODE__NOT_FOUND, "no node named 'nope'");
	fk_wait_close(f);
}

Test(run, refused_submission_exits_1, .init = capture, .timeout = 20)
{
	int st;

	fake_start(script_refused, NULL);
	st = nd_cli_run(7, ARGV("run", "--master", fk.addr, "--node", "nope",
				"--", "true"));
	fake_join();
	cr_expect_eq(st, 1);
	EXPECT_OUT(cap_out, "");
	EXPECT_OUT(cap_err, "noded: submit: no node named 'nope'\n");
}

static void script_lost_task(struct fake *f)
{
	uint64_t id = 8, rid;
	Noded__TaskRecord r = rec(S(LOST), 0, 0, "node w1 is DEAD");

	rid = fk_take_run(f, "sleep", false);
	fk_run_reply(f, rid, 0, &id, NULL, 1);
	r.id = 8;
	fk_record(f, rid, NODED__FRAME_KIND__STREAM_ITEM, &r);
	fk_end(f, rid);
	fk_wait_close(f);
}

Test(run, lost_task_exits_255_with_reason, .init = capture, .timeout = 20)
{
	int st;

	fake_start(script_lost_task, NULL);
	st = nd_cli_run(5, ARGV("run", "--master", fk.addr, "sleep", "100"));
	fake_join();
	cr_expect_eq(st, 255);
	EXPECT_OUT(cap_err, "noded: task 8 lost: node w1 is DEAD\n");
}

static void script_conn_lost(struct fake *f)
{
	uint64_t id = 9, rid;

	rid = fk_take_run(f, "yes", false);
	fk_run_reply(f, rid, 0, &id, NULL, 1);
	fk_output(f, rid, 9, 1, "y\n");
	/* and the master goes away */
}

Test(run, master_lost_exits_255, .init = capture, .timeout = 20)
{
	int st;

	fake_start(script_conn_lost, NULL);
	st = nd_cli_run(4, ARGV("run", "--master", fk.addr, "yes"));
	fake_join();
	cr_expect_eq(st, 255);
	EXPECT_OUT(cap_out, "y\n");
	EXPECT_HAS(cap_err, "noded: lost the connection to the master");
}

static void script_cancel(struct fake *f)
{
	uint64_t id = 21, rid;
	Noded__TaskRecord r = rec(S(RUNNING), 0, 0, "");
	Noded__Frame *c;

	rid = fk_take_run(f, "sleep", false);
	fk_run_reply(f, rid, 0, &id, NULL, 1);
	fk_output(f, rid, 21, 1, "started\n");
	/* Ctrl-C once the command knows its task (it printed the output
	 * that follows the submit reply on the stream) */
	fk_wait_printed(f, "started\n");
	if (f->fail[0])
		return;
	pthread_kill(f->main, SIGINT);
	c = fk_expect(f, NODED__FRAME__BODY_CANCEL_TASK);
	if (!c)
		return;
	if (c->cancel_task->id != 21)
		fk_fail(f, "fake master: cancel_task for %llu",
			(unsigned long long)c->cancel_task->id);
	r.id = 21;
	fk_record(f, c->id, NODED__FRAME_KIND__REPLY, &r);
	nd_frame_free(c, NULL);
	/* the command still prints while it dies, then ends */
	fk_output(f, rid, 21, 1, "stopping\n");
	r = rec(S(CANCELLED), 0, 15, "");
	r.id = 21;
	fk_record(f, rid, NODED__FRAME_KIND__STREAM_ITEM, &r);
	fk_end(f, rid);
	fk_wait_close(f);
}

Test(run, sigint_cancels_and_waits, .init = capture, .timeout = 20)
{
	int st;

	fake_start(script_cancel, NULL);
	st = nd_cli_run(5, ARGV("run", "--master", fk.addr, "sleep", "60"));
	fake_join();
	cr_expect_eq(st, 143);
	EXPECT_OUT(cap_out, "started\nstopping\n");
	EXPECT_HAS(cap_err, "noded: cancelling 1 task (Ctrl-C again");
	EXPECT_HAS(cap_err, "noded: task 21 cancelled\n");
}

static void script_closed_pipe(struct fake *f)
{
	uint64_t id = 23, rid;
	Noded__TaskRecord r = rec(S(CANCELLED), 0, 15, "");
	Noded__Frame *c;

	rid = fk_take_run(f, "yes", false);
	fk_run_reply(f, rid, 0, &id, NULL, 1);
	fk_output(f, rid, 23, 1, "y\ny\ny\n");
	/* nobody reads: the command is cancelled, not left running */
	c = fk_expect(f, NODED__FRAME__BODY_CANCEL_TASK);
	if (!c)
		return;
	if (c->cancel_task->id != 23)
		fk_fail(f, "fake master: cancel_task for %llu",
			(unsigned long long)c->cancel_task->id);
	r.id = 23;
	fk_record(f, c->id, NODED__FRAME_KIND__REPLY, &r);
	nd_frame_free(c, NULL);
	fk_output(f, rid, 23, 1, "y\n");
	fk_record(f, rid, NODED__FRAME_KIND__STREAM_ITEM, &r);
	fk_end(f, rid);
	fk_wait_close(f);
}

Test(run, closed_stdout_cancels, .init = capture, .timeout = 20)
{
	int p[2], st;

	/* stdout is a pipe whose reader is gone, as in `noded run yes |
	 * head -1` */
	cr_assert_eq(pipe(p), 0);
	close(p[0]);
	stdout = fdopen(p[1], "w");
	cr_assert(stdout);
	fake_start(script_closed_pipe, NULL);
	st = nd_cli_run(4, ARGV("run", "--master", fk.addr, "yes"));
	fake_join();
	cr_expect_eq(st, 143);
	EXPECT_HAS(cap_err, "noded: the output is closed: cancelling 1 task");
}

static void script_double_sigint(struct fake *f)
{
	uint64_t id = 22, rid;
	Noded__Frame *c;

	rid = fk_take_run(f, "sleep", false);
	fk_run_reply(f, rid, 0, &id, NULL, 1);
	fk_output(f, rid, 22, 1, "started\n");
	fk_wait_printed(f, "started\n");
	if (f->fail[0])
		return;
	pthread_kill(f->main, SIGINT);
	/* without the cancel we hang up instead: the command then returns,
	 * which the test reports */
	c = fk_expect(f, NODED__FRAME__BODY_CANCEL_TASK);
	if (!c)
		return;
	if (c->cancel_task->id != 22) {
		nd_frame_free(c, NULL);
		return;
	}
	nd_frame_free(c, NULL);
	/* no answer: the user gives up waiting */
	pthread_kill(f->main, SIGINT);
	nd_test_sleep_ms(5000);
}

Test(run, second_sigint_exits_130, .init = capture, .timeout = 20,
     .exit_code = 130)
{
	fake_start(script_double_sigint, NULL);
	nd_cli_run(5, ARGV("run", "--master", fk.addr, "sleep", "60"));
	cr_assert_fail("noded run returned after a second SIGINT");
}

/* The run stream ends before the task's record came: with an Error (arg
 * set) or without one. */
static void script_watch_error(struct fake *f)
{
	uint64_t id = 30, rid;

	rid = fk_take_run(f, "true", false);
	fk_run_reply(f, rid, 0, &id, NULL, 1);
	if (f->arg)
		fk_error(f, rid, NODED__FRAME_KIND__STREAM_END,
			 NODED__ERROR_CODE__NOT_FOUND, "task 30 expired");
	else
		fk_end(f, rid);
	fk_wait_close(f);
}

Test(run, watch_error_exits_255, .init = capture, .timeout = 20)
{
	int st;

	fake_start(script_watch_error, (void *)1);
	st = nd_cli_run(4, ARGV("run", "--master", fk.addr, "true"));
	fake_join();
	cr_expect_eq(st, 255);
	EXPECT_OUT(cap_out, "");
	EXPECT_OUT(cap_err, "noded: task 30 expired\n");

	/* a bare STREAM_END is no end of the task either */
	fake_start(script_watch_error, NULL);
	st = nd_cli_run(4, ARGV("run", "--master", fk.addr, "true"));
	fake_join();
	cr_expect_eq(st, 255);
	EXPECT_OUT(cap_out, "");
	EXPECT_OUT(cap_err, "noded: task 30 expired\n"
			    "noded: task 30: the master ended the stream "
			    "before the task ended\n");
}

Test(run, no_master_exits_1, .init = capture)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	char addr[32];
	int fd, st;

	/* a port nobody listens on: bind one, learn it, close it */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
	close(fd);
	st = nd_cli_run(4, ARGV("run", "--master", addr, "true"));
	cr_expect_eq(st, 1);
	EXPECT_HAS(cap_err, "noded: cannot reach the master");
}

/* ---- submit ---- */

static void script_submit_all(struct fake *f)
{
	uint64_t ids[3] = { 4, 5, 6 };
	uint64_t sid = fk_take_submit(f, "date", true);

	fk_submit_reply(f, sid, 2, ids, (char *[]){ "a", "b", "" }, 3);
	fk_wait_close(f);
}

Test(submit, all_prints_job_lines, .init = capture, .timeout = 20)
{
	int st;

	fake_start(script_submit_all, NULL);
	st = nd_cli_submit(6, ARGV("submit", "--master", fk.addr, "--all",
				   "--", "date"));
	fake_join();
	cr_expect_eq(st, 0);
	EXPECT_OUT(cap_out, "job 2: task 4 on a\njob 2: task 5 on b\n"
			    "job 2: task 6 on (not chosen yet)\n");
}

static void script_submit_one(struct fake *f)
{
	uint64_t id = 77;
	uint64_t sid = fk_take_submit(f, "date", false);

	fk_submit_reply(f, sid, 0, &id, NULL, 1);
	fk_wait_close(f);
}

Test(submit, prints_task_id, .init = capture, .timeout = 20)
{
	fake_start(script_submit_one, NULL);
	cr_expect_eq(nd_cli_submit(4, ARGV("submit", "--master", fk.addr,
					    "date")), 0);
	fake_join();
	EXPECT_OUT(cap_out, "77\n");
}

/* ---- task, tasks, logs, cancel ---- */

static void script_get_task(struct fake *f)
{
	Noded__Frame *q = fk_expect(f, NODED__FRAME__BODY_GET_TASK);
	Noded__Command sc = NODED__COMMAND__INIT;
	Noded__TaskSpec s = NODED__TASK_SPEC__INIT;
	Noded__TaskRecord r = rec(S(SUCCEEDED), 0, 0, "");

	if (!q)
		return;
	if (q->get_task->id == 42) {
		s.command = &sc;
		sc.shell = "echo hi";
		r.spec = &s;
		r.node = "w1";
		r.output_bytes = 3;
		fk_record(f, q->id, NODED__FRAME_KIND__REPLY, &r);
	} else {
		fk_error(f, q->id, NODED__FRAME_KIND__REPLY,
			 NODED__ERROR_CODE__NOT_FOUND, "no task 43");
	}
	nd_frame_free(q, NULL);
	fk_wait_close(f);
}

Test(task, json, .init = capture, .timeout = 20)
{
	json_error_t jerr;
	json_t *j;
	char *out;

	fake_start(script_get_task, NULL);
	cr_expect_eq(nd_cli_task(5, ARGV("task", "42", "--json", "--master",
					  fk.addr)), 0);
	fake_join();
	out = slurp(cap_out);
	j = json_loads(out, 0, &jerr);
	cr_assert(j, "not JSON (%s): %s", jerr.text, out);
	cr_expect_eq(json_integer_value(json_object_get(j, "id")), 42);
	cr_expect_str_eq(json_string_value(json_object_get(j, "state")),
			 "SUCCEEDED");
	cr_expect_str_eq(json_string_value(json_object_get(j, "shell")),
			 "echo hi");
	json_decref(j);
	free(out);
}

Test(task, human, .init = capture, .timeout = 20)
{
	fake_start(script_get_task, NULL);
	cr_expect_eq(nd_cli_task(4, ARGV("task", "--master", fk.addr, "42")),
		     0);
	fake_join();
	EXPECT_HAS(cap_out, "id:         42\n");
	EXPECT_HAS(cap_out, "state:      SUCCEEDED\n");
	EXPECT_HAS(cap_out, "command:    echo hi   (with /bin/sh -c)\n");
	EXPECT_HAS(cap_out, "exit code:  0\n");
	EXPECT_HAS(cap_out, "output:     3 bytes\n");
}

Test(task, not_found_exits_1, .init = capture, .timeout = 20)
{
	fake_start(script_get_task, NULL);
	cr_expect_eq(nd_cli_task(4, ARGV("task", "--master", fk.addr, "43")),
		     1);
	fake_join();
	EXPECT_OUT(cap_err, "noded: task: no task 43\n");
}

Test(task, usage_errors, .init = capture)
{
	cr_expect_eq(nd_cli_task(1, ARGV("task")), 2);
	cr_expect_eq(nd_cli_task(2, ARGV("task", "x1")), 2);
	cr_expect_eq(nd_cli_task(2, ARGV("task", "0")), 2);
	cr_expect_eq(nd_cli_task(3, ARGV("task", "1", "2")), 2);
	cr_expect_eq(nd_cli_task(3, ARGV("task", "1", "--follow")), 2);
	cr_expect_eq(nd_cli_tasks(3, ARGV("tasks", "--state", "done")), 2);
	cr_expect_eq(nd_cli_tasks(3, ARGV("tasks", "--limit", "0")), 2);
	cr_expect_eq(nd_cli_tasks(2, ARGV("tasks", "3")), 2);
	cr_expect_eq(nd_cli_logs(1, ARGV("logs")), 2);
	cr_expect_eq(nd_cli_logs(3, ARGV("logs", "1", "--json")), 2);
	cr_expect_eq(nd_cli_cancel(1, ARGV("cancel")), 2);
	cr_expect_eq(nd_cli_cancel(2, ARGV("cancel", "-3")), 2);
	EXPECT_HAS(cap_err, "noded tasks: --state wants one of pending");
}

Test(task, repeated_options_are_usage_errors, .init = capture)
{
	cr_expect_eq(nd_cli_tasks(5, ARGV("tasks", "--limit", "1", "--limit",
					  "2")), 2);
	cr_expect_eq(nd_cli_tasks(5, ARGV("tasks", "--state", "failed",
					  "--state", "lost")), 2);
	cr_expect_eq(nd_cli_task(6, ARGV("task", "1", "--master", "a:1",
					 "--master", "b:1")), 2);
	EXPECT_HAS(cap_err, "noded tasks: --limit given twice ('1' and '2'): "
		   "give it once\n");
	EXPECT_HAS(cap_err, "noded tasks: --state given twice");
	EXPECT_HAS(cap_err, "noded task: --master given twice");
}

static void script_list(struct fake *f)
{
	Noded__Frame *q = fk_expect(f, NODED__FRAME__BODY_LIST_TASKS);
	Noded__Command s1c = NODED__COMMAND__INIT;
	Noded__TaskSpec s1 = NODED__TASK_SPEC__INIT;
	Noded__TaskRecord r[3] = {
		rec(S(FAILED), 0, 9, "killed"), rec(S(RUNNING), 0, 0, ""),
		rec(S(SUCCEEDED), 0, 0, ""),
	};
	Noded__TaskRecord *rp[3] = { &r[0], &r[1], &r[2] };
	Noded__TaskList tl = NODED__TASK_LIST__INIT;
	Noded__Frame fr = NODED__FRAME__INIT;
	char *argv[] = { "echo", "a b" };

	if (!q)
		return;
	if (q->list_tasks->state != S(TIMED_OUT) || q->list_tasks->limit != 3)
		fk_fail(f, "fake master: list_tasks state %d limit %u",
			q->list_tasks->state, q->list_tasks->limit);
	s1.command = &s1c;
	s1c.argv = argv;
	s1c.n_argv = 2;
	for (int i = 0; i < 3; i++) {
		r[i].id = (uint64_t)i + 1;
		r[i].spec = &s1;
	}
	r[0].node = "w1";
	tl.tasks = rp;
	tl.n_tasks = 3;
	fr.body_case = NODED__FRAME__BODY_TASK_LIST;
	fr.task_list = &tl;
	fk_send(f, &fr, q->id, NODED__FRAME_KIND__REPLY);
	nd_frame_free(q, NULL);
	fk_wait_close(f);
}

Test(tasks, table, .init = capture, .timeout = 20)
{
	fake_start(script_list, NULL);
	cr_expect_eq(nd_cli_tasks(7, ARGV("tasks", "--master", fk.addr,
					  "--state", "TIMED_out", "--limit",
					  "3")), 0);
	fake_join();
	EXPECT_OUT(cap_out,
		   "ID         STATE      NODE             EXIT     COMMAND\n"
		   "1          FAILED     w1               SIGKILL  echo 'a b'\n"
		   "2          RUNNING    -                -        echo 'a b'\n"
		   "3          SUCCEEDED  -                0        echo 'a b'\n");
}

Test(tasks, json_array, .init = capture, .timeout = 20)
{
	json_error_t jerr;
	json_t *j;
	char *out;

	fake_start(script_list, NULL);
	cr_expect_eq(nd_cli_tasks(8, ARGV("tasks", "--json", "--master",
					  fk.addr, "--state", "timed_out",
					  "--limit", "3")), 0);
	fake_join();
	out = slurp(cap_out);
	j = json_loads(out, 0, &jerr);
	cr_assert(json_is_array(j), "not a JSON array (%s): %s", jerr.text,
		  out);
	cr_expect_eq(json_array_size(j), 3);
	cr_expect_str_eq(json_string_value(json_object_get(
				 json_array_get(j, 0), "reason")), "killed");
	cr_expect_eq(json_integer_value(json_object_get(json_array_get(j, 2),
							"id")), 3);
	json_decref(j);
	free(out);
}

static void script_logs(struct fake *f)
{
	uint64_t wid = fk_take_watch(f, 3, (bool)(uintptr_t)f->arg);
	Noded__TaskRecord r = rec(S(SUCCEEDED), 0, 0, "");

	fk_output(f, wid, 3, 1, "out1\n");
	fk_output(f, wid, 3, 2, "err1\n");
	fk_output(f, wid, 3, 1, "out2");
	r.id = 3;
	r.truncated = true;
	r.output_bytes = 5000000;
	fk_record(f, wid, NODED__FRAME_KIND__STREAM_ITEM, &r);
	fk_end(f, wid);
	fk_wait_close(f);
}

Test(logs, follow_prints_output, .init = capture, .timeout = 20)
{
	fake_start(script_logs, (void *)1);
	cr_expect_eq(nd_cli_logs(5, ARGV("logs", "3", "--follow", "--master",
					 fk.addr)), 0);
	fake_join();
	EXPECT_OUT(cap_out, "out1\nout2");
	EXPECT_HAS(cap_err, "err1\n");
	EXPECT_HAS(cap_err, "noded: task 3 wrote 5000000 bytes; the master "
			    "kept only part of them\n");
}

Test(logs, without_follow, .init = capture, .timeout = 20)
{
	fake_start(script_logs, (void *)0);
	cr_expect_eq(nd_cli_logs(4, ARGV("logs", "3", "--master", fk.addr)),
		     0);
	fake_join();
	EXPECT_OUT(cap_out, "out1\nout2");
}

static void script_logs_missing(struct fake *f)
{
	uint64_t wid = fk_take_watch(f, 4, false);

	fk_error(f, wid, NODED__FRAME_KIND__REPLY,
		 NODED__ERROR_CODE__NOT_FOUND, "no task 4");
	fk_wait_close(f);
}

Test(logs, missing_task_exits_1, .init = capture, .timeout = 20)
{
	fake_start(script_logs_missing, NULL);
	cr_expect_eq(nd_cli_logs(4, ARGV("logs", "--master", fk.addr, "4")),
		     1);
	fake_join();
	EXPECT_OUT(cap_err, "noded: logs: no task 4\n");
}

static void script_cancel_cmd(struct fake *f)
{
	Noded__Frame *q = fk_expect(f, NODED__FRAME__BODY_CANCEL_TASK);
	Noded__TaskRecord r = rec(S(RUNNING), 0, 0, "");

	if (!q)
		return;
	r.id = q->cancel_task->id;
	if (r.id == 7) {
		fk_error(f, q->id, NODED__FRAME_KIND__REPLY,
			 NODED__ERROR_CODE__NOT_FOUND, "no task 7");
		nd_frame_free(q, NULL);
		fk_wait_close(f);
		return;
	}
	/* still RUNNING when the cancel is answered: the command asks
	 * again until the task has ended */
	fk_record(f, q->id, NODED__FRAME_KIND__REPLY, &r);
	nd_frame_free(q, NULL);
	for (int i = 0; i < 2; i++) {
		q = fk_expect(f, NODED__FRAME__BODY_GET_TASK);
		if (!q)
			return;
		if (q->get_task->id != r.id)
			fk_fail(f, "fake master: get_task %llu",
				(unsigned long long)q->get_task->id);
		if (i == 1)
			r = rec(S(CANCELLED), 0, 15, "");
		r.id = 6;
		fk_record(f, q->id, NODED__FRAME_KIND__REPLY, &r);
		nd_frame_free(q, NULL);
	}
	fk_wait_close(f);
}

Test(cancel, waits_for_the_end_and_prints_state, .init = capture,
     .timeout = 20)
{
	fake_start(script_cancel_cmd, NULL);
	cr_expect_eq(nd_cli_cancel(4, ARGV("cancel", "6", "--master",
					   fk.addr)), 0);
	fake_join();
	EXPECT_OUT(cap_out, "task 6: CANCELLED\n");
}

Test(cancel, not_found_exits_1, .init = capture, .timeout = 20)
{
	fake_start(script_cancel_cmd, NULL);
	cr_expect_eq(nd_cli_cancel(4, ARGV("cancel", "7", "--master",
					   fk.addr)), 1);
	fake_join();
	EXPECT_OUT(cap_err, "noded: cancel: no task 7\n");
}
