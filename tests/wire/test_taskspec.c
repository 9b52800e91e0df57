/*
 * Unit tests for src/wire/taskspec.c: the one check of a task spec that the
 * CLI, the HTTP API and the master all call (noded/taskspec.h). Every rule
 * gets a bad case with its exact message; the surfaces' own tests show the
 * same words (tests/cli, tests/api, tests/node/test_tasks.c).
 */
#include <string.h>

#include <criterion/criterion.h>

#include "noded/taskspec.h"

/* A spec that passes: argv ["true"], no target. */
struct spec {
	Noded__TaskSpec s;
	Noded__Command c;
	Noded__Command__EnvEntry e[2], *ep[2];
	Noded__TaskSpec__LabelsEntry l, *lp[1];
	char *argv[2];
};

static void good(struct spec *x)
{
	memset(x, 0, sizeof(*x));
	noded__task_spec__init(&x->s);
	noded__command__init(&x->c);
	x->argv[0] = "true";
	x->c.argv = x->argv;
	x->c.n_argv = 1;
	x->s.command = &x->c;
	for (int i = 0; i < 2; i++) {
		noded__command__env_entry__init(&x->e[i]);
		x->ep[i] = &x->e[i];
	}
	noded__task_spec__labels_entry__init(&x->l);
	x->l.key = "gpu";
	x->l.value = "yes";
	x->lp[0] = &x->l;
}

/* The check's answer for x, "" when it passes. */
static const char *check(const struct spec *x)
{
	static char buf[256];
	const char *r;

	memset(buf, 'x', sizeof(buf));
	r = nd_task_spec_check(&x->s, buf, sizeof(buf));
	cr_assert(!r || r == buf, "the message is not in the caller's buffer");
	return r ? r : "";
}

#define EXPECT_BAD(x, msg) cr_expect_str_eq(check(x), (msg))

Test(taskspec, good_specs_pass)
{
	struct spec x;

	good(&x);
	EXPECT_BAD(&x, "");
	x.c.n_argv = 0;
	x.c.shell = "echo hi | wc -c";
	EXPECT_BAD(&x, "");
	x.s.node = "w1";
	x.s.wait_for_node = true;
	EXPECT_BAD(&x, "");
	good(&x);
	x.s.labels = x.lp;
	x.s.n_labels = 1;
	x.e[0].key = "HOME";
	x.e[0].value = "a=b";  /* '=' in a value is fine */
	x.c.env = x.ep;
	x.c.n_env = 1;
	x.c.cwd = "/tmp";
	x.c.timeout_ms = 1000;
	EXPECT_BAD(&x, "");
	good(&x);
	x.s.all = true;
	x.s.node = "";         /* empty: not a target */
	EXPECT_BAD(&x, "");
}

Test(taskspec, a_command_is_required)
{
	struct spec x;

	good(&x);
	x.s.command = NULL;
	EXPECT_BAD(&x, "nothing to run: give argv or a shell command");
	good(&x);
	x.c.n_argv = 0;
	EXPECT_BAD(&x, "nothing to run: give argv or a shell command");
	x.c.shell = "";
	EXPECT_BAD(&x, "nothing to run: give argv or a shell command");
}

Test(taskspec, argv_or_shell_not_both)
{
	struct spec x;

	good(&x);
	x.c.shell = "true";
	EXPECT_BAD(&x, "give argv or a shell command, not both");
}

Test(taskspec, command_name_not_empty)
{
	struct spec x;

	good(&x);
	x.argv[0] = "";
	EXPECT_BAD(&x, "argv[0], the command name, is empty");
}

Test(taskspec, shell_not_only_blanks)
{
	struct spec x;

	good(&x);
	x.c.n_argv = 0;
	x.c.shell = " \t\n ";
	EXPECT_BAD(&x, "the shell command is only blanks");
}

Test(taskspec, env_keys_are_names)
{
	struct spec x;

	good(&x);
	x.c.env = x.ep;
	x.c.n_env = 2;
	x.e[0].key = "OK";
	x.e[1].key = "A=B";
	EXPECT_BAD(&x, "env key 'A=B' is not a variable name: it must be "
		   "non-empty, without '='");
	x.e[1].key = "";
	EXPECT_BAD(&x, "env key '' is not a variable name: it must be "
		   "non-empty, without '='");
	/* a key of any bytes is quoted readably, and cut */
	x.e[1].key = "\x1b[2J=\xff";
	EXPECT_BAD(&x, "env key '\\x1b[2J=\\xff' is not a variable name: it "
		   "must be non-empty, without '='");
	x.e[1].key = "0123456789012345678901234567890123456789=";
	EXPECT_BAD(&x, "env key '01234567890123456789012345678901...' is not "
		   "a variable name: it must be non-empty, without '='");
}

Test(taskspec, one_target_at_most)
{
	static const char msg[] =
		"node, nodes and all exclude each other: target one of them";
	static const char named[] =
		"labels select among all nodes or any node, not among named "
		"ones: give node(s) or labels";
	struct spec x;

	good(&x);
	x.s.node = "w1";
	x.s.all = true;
	EXPECT_BAD(&x, msg);
	good(&x);
	x.s.nodes = "w[1-2]";
	x.s.all = true;
	EXPECT_BAD(&x, msg);
	good(&x);
	x.s.nodes = "w[1-2]";
	x.s.node = "w1";
	EXPECT_BAD(&x, msg);
	good(&x);
	x.s.node = "w1";
	x.s.labels = x.lp;
	x.s.n_labels = 1;
	EXPECT_BAD(&x, named);
	good(&x);
	x.s.nodes = "w1,w2";
	x.s.labels = x.lp;
	x.s.n_labels = 1;
	EXPECT_BAD(&x, named);
	/* labels narrow all: every live node with them */
	good(&x);
	x.s.all = true;
	x.s.labels = x.lp;
	x.s.n_labels = 1;
	EXPECT_BAD(&x, "");
}

Test(taskspec, node_lists_and_exclude)
{
	struct spec x;

	good(&x);
	x.s.nodes = "web[01-20],db1";
	x.s.exclude = "web[03-04]";
	EXPECT_BAD(&x, "");
	good(&x);
	x.s.all = true;
	x.s.exclude = "web1";
	EXPECT_BAD(&x, "");
	good(&x);
	x.s.labels = x.lp;
	x.s.n_labels = 1;
	x.s.exclude = "web1";
	EXPECT_BAD(&x, "");
	good(&x);
	x.s.exclude = "web1"; /* any node but that one */
	EXPECT_BAD(&x, "");
	good(&x);
	x.s.nodes = "web[01-";
	EXPECT_BAD(&x, "nodes 'web[01-': range without its end at position "
		   "7");
	good(&x);
	x.s.nodes = "n[1-99999]";
	EXPECT_BAD(&x, "nodes 'n[1-99999]': the list makes more than 16384 "
		   "names at position 2");
	good(&x);
	x.s.all = true;
	x.s.exclude = "a,,b";
	EXPECT_BAD(&x, "exclude 'a,,b': empty name at position 3");
	good(&x);
	x.s.node = "w1";
	x.s.exclude = "w1";
	EXPECT_BAD(&x, "exclude does not apply to node (one node by name): "
		   "give nodes, labels or all");
	/* a list may wait for its nodes, each its own task */
	good(&x);
	x.s.nodes = "w[1-2]";
	x.s.wait_for_node = true;
	EXPECT_BAD(&x, "");
}

Test(taskspec, wait_for_node_not_with_all)
{
	struct spec x;

	good(&x);
	x.s.all = true;
	x.s.wait_for_node = true;
	EXPECT_BAD(&x, "wait_for_node does not apply to all: a fan-out runs "
		   "on the nodes alive now");
}

Test(taskspec, user_is_a_user_name)
{
	static const char *const ok[] = { "nobody", "www-data", "a.b_c$",
					  "1000" };
	static const char *const bad[] = { "a:b", "a/b", "a b", "-x",
					   "tab\there", "del\x7f" };
	char longname[300];
	struct spec x;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		good(&x);
		x.c.user = (char *)ok[i];
		EXPECT_BAD(&x, "");
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		good(&x);
		x.c.user = (char *)bad[i];
		EXPECT_BAD(&x, "user is not a user name: at most 256 bytes, "
			   "without '/', ':', blanks or control characters, "
			   "not starting with '-'");
	}
	memset(longname, 'u', sizeof(longname));
	longname[256] = '\0';
	good(&x);
	x.c.user = longname;
	EXPECT_BAD(&x, "");
	longname[256] = 'u';
	longname[257] = '\0';
	cr_expect_neq(strcmp(check(&x), ""), 0, "257 bytes passed");
}

Test(taskspec, limits_in_range)
{
	struct spec x;

	good(&x);
	x.c.memory_max_bytes = ND_TASK_MEMORY_MIN;
	x.c.cpu_millis = ND_TASK_CPU_MILLIS_MIN;
	x.c.pids_max = 1;
	EXPECT_BAD(&x, "");
	x.c.memory_max_bytes = ND_TASK_MEMORY_MIN - 1;
	EXPECT_BAD(&x, "memory limit under 1 MiB (1048576 bytes): nothing "
		   "could run in it");
	good(&x);
	x.c.cpu_millis = ND_TASK_CPU_MILLIS_MIN - 1;
	EXPECT_BAD(&x, "cpus must be from 0.01 to 1000");
	x.c.cpu_millis = ND_TASK_CPU_MILLIS_MAX + 1;
	EXPECT_BAD(&x, "cpus must be from 0.01 to 1000");
	good(&x);
	x.c.pids_max = ND_TASK_PIDS_MAX + 1;
	EXPECT_BAD(&x, "pids limit over 4194304 (the kernel's most)");
}

Test(taskspec, rules_in_order_and_message_cut_to_fit)
{
	struct spec x;
	char small[8];

	/* both a command fault and a target fault: the command is named */
	good(&x);
	x.c.n_argv = 0;
	x.s.node = "w1";
	x.s.all = true;
	EXPECT_BAD(&x, "nothing to run: give argv or a shell command");
	cr_expect_str_eq(nd_task_spec_check(&x.s, small, sizeof(small)),
			 "nothing");
}
