/* noded command line: one file per subcommand, each `int nd_cli_X(argc, argv)`
 * returning the process exit status. */
#ifndef ND_CLI_H
#define ND_CLI_H

#include <stdint.h>

int nd_cli_master(int argc, char **argv);
int nd_cli_worker(int argc, char **argv);
int nd_cli_nodes(int argc, char **argv);
int nd_cli_dev(int argc, char **argv);
int nd_cli_run(int argc, char **argv);
int nd_cli_submit(int argc, char **argv);
int nd_cli_task(int argc, char **argv);
int nd_cli_tasks(int argc, char **argv);
int nd_cli_logs(int argc, char **argv);
int nd_cli_cancel(int argc, char **argv);

/* Default address of the master for workers and client commands. */
#define ND_CLI_MASTER "127.0.0.1:7070"

/* Parses a whole unsigned number in [min, max] for option opt; prints why
 * and returns false when it is not one. (In common.c, which the tests
 * compile in.) */
#include <stdbool.h>
bool nd_cli_uint(const char *opt, const char *s, uint64_t min, uint64_t max,
		 uint64_t *out);

#endif
