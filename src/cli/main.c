/* noded: one binary, a subcommand per role or client action. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ND_NO_MIMALLOC
#include <mimalloc.h>
#endif

#include "cli/cli.h"
#include "core/version.h"
#include "exec/exec.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: noded <command> [options]\n"
		"\n"
		"commands:\n"
		"  master     serve the noded protocol (see noded master --help)\n"
		"  worker     run commands for a master (noded worker --help)\n"
		"  nodes      list the nodes a master knows (noded nodes --help)\n"
		"  node       drain, eligible, rm: a node's lifecycle (noded node\n"
		"             --help)\n"
		"  dev        a master and workers in one process, to try noded\n"
		"  run        run a command on the cluster, stream its output and\n"
		"             exit with its status (noded run --help)\n"
		"  submit     queue a command, print its task id\n"
		"  task ID    one task's record (--json)\n"
		"  tasks      list tasks (--state STATE, --job N, --node NAME,\n"
		"             --limit N, --json)\n"
		"  job ID     a job's tasks by state (--json)\n"
		"  wait ID    wait for a task (or --job N) to end, exit with its\n"
		"             status as run does (--timeout SECS)\n"
		"  logs ID    a task's output (--follow)\n"
		"  cancel ID  cancel a task (or --job N: a job's tasks)\n"
		"  operator   the cluster of masters: operator raft list-peers,\n"
		"             add-peer, remove-peer, transfer-leader; operator\n"
		"             snapshot save, restore, inspect\n"
		"  tls        make a cluster's CA and certificates (noded tls\n"
		"             --help)\n"
		"  version    print the version\n"
		"  help       this text\n"
		"\n"
		"Settings come from the command line, then the environment\n"
		"(NODED_MASTER, NODED_TOKEN_FILE), then the user's file\n"
		"($XDG_CONFIG_HOME/noded/noded.conf or ~/.config/noded/noded.conf),\n"
		"then " ND_CLI_CONFIG_SYSTEM ": INI files, a [COMMAND] section of\n"
		"its long options each (key = value) and [common]. --config FILE\n"
		"reads FILE instead of the two files.\n");
}

static int dispatch(int argc, char **argv);

int main(int argc, char **argv)
{
	int status = dispatch(argc, argv);

	/* a value from a config file was refused: say which line */
	nd_cli_config_report(status);
	return status;
}

static int dispatch(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "master"))
		return nd_cli_master(argc - 1, argv + 1);
	if (!strcmp(argv[1], "worker"))
		return nd_cli_worker(argc - 1, argv + 1);
	if (!strcmp(argv[1], "nodes"))
		return nd_cli_nodes(argc - 1, argv + 1);
	if (!strcmp(argv[1], "node"))
		return nd_cli_node(argc - 1, argv + 1);
	if (!strcmp(argv[1], "operator"))
		return nd_cli_operator(argc - 1, argv + 1);
	if (!strcmp(argv[1], "dev"))
		return nd_cli_dev(argc - 1, argv + 1);
	if (!strcmp(argv[1], "run"))
		return nd_cli_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "submit"))
		return nd_cli_submit(argc - 1, argv + 1);
	if (!strcmp(argv[1], "task"))
		return nd_cli_task(argc - 1, argv + 1);
	if (!strcmp(argv[1], "tasks"))
		return nd_cli_tasks(argc - 1, argv + 1);
	if (!strcmp(argv[1], "logs"))
		return nd_cli_logs(argc - 1, argv + 1);
	if (!strcmp(argv[1], "cancel"))
		return nd_cli_cancel(argc - 1, argv + 1);
	if (!strcmp(argv[1], "tls"))
		return nd_cli_tls(argc - 1, argv + 1);
	if (!strcmp(argv[1], "job"))
		return nd_cli_job(argc - 1, argv + 1);
	if (!strcmp(argv[1], "wait"))
		return nd_cli_wait(argc - 1, argv + 1);
	/* Internal: a helper of the exec pool, started by the daemon itself
	 * with its socket on fd 3 (src/exec). */
	if (!strcmp(argv[1], "exec-helper"))
		return nd_exec_helper_main(3);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
#ifndef ND_NO_MIMALLOC
		printf("noded %s (%s%s%smimalloc %d)\n", ND_VERSION,
		       *nd_build_commit ? "commit " : "", nd_build_commit,
		       *nd_build_commit ? ", " : "", mi_version());
#else
		printf("noded %s (%s%s%ssanitizer build, system "
		       "allocator)\n", ND_VERSION,
		       *nd_build_commit ? "commit " : "", nd_build_commit,
		       *nd_build_commit ? ", " : "");
#endif
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "noded: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
