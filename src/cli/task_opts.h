/*
 * The options of the commands that name tasks (task, tasks, logs, cancel,
 * job, wait): parsed once (task.c) for all of them, each command saying
 * which it takes.
 */
#ifndef ND_CLI_TASK_OPTS_H
#define ND_CLI_TASK_OPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "noded/json.h"

/* Options a command accepts (a mask of these). */
enum {
	TO_JSON = 1 << 0,
	TO_STATE = 1 << 1,
	TO_LIMIT = 1 << 2,
	TO_FOLLOW = 1 << 3,
	TO_ID = 1 << 4,         /* one positional task ID, required */
	TO_JOB = 1 << 5,        /* --job N */
	TO_NODE = 1 << 6,       /* --node NAME */
	TO_TIMEOUT = 1 << 7,    /* --timeout SECS */
	TO_STALE = 1 << 8,      /* --stale */
	/* with TO_ID and TO_JOB: the ID or --job, exactly one of them */
	TO_ID_OR_JOB = 1 << 8,
};

struct nd_cli_task_opts {
	const char *master;
	bool json, follow, stale;
	Noded__TaskState state;
	uint32_t limit;
	uint64_t id;            /* the positional ID (0: none) */
	uint64_t job;           /* --job (0: none) */
	const char *node;       /* --node (NULL: none) */
	uint32_t timeout_ms;    /* --timeout (0: none) */
};

/*
 * Parses the command line (argv[0] the command's name) into o. Returns -1
 * to go on, else the exit status (0 after --help, printed on stdout; 2
 * after a usage error, explained on stderr with the usage).
 */
int nd_cli_task_opts_parse(int argc, char **argv, unsigned allowed,
			   const char *usage, struct nd_cli_task_opts *o);

#endif
