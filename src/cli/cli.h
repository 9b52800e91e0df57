/* noded command line: one file per subcommand, each `int nd_cli_X(argc, argv)`
 * returning the process exit status. */
#ifndef ND_CLI_H
#define ND_CLI_H

#include <stdint.h>

int nd_cli_master(int argc, char **argv);
int nd_cli_worker(int argc, char **argv);
int nd_cli_nodes(int argc, char **argv);
int nd_cli_tls(int argc, char **argv);
int nd_cli_node(int argc, char **argv);
int nd_cli_operator(int argc, char **argv);
int nd_cli_dev(int argc, char **argv);
int nd_cli_run(int argc, char **argv);
int nd_cli_submit(int argc, char **argv);
int nd_cli_task(int argc, char **argv);
int nd_cli_tasks(int argc, char **argv);
int nd_cli_logs(int argc, char **argv);
int nd_cli_cancel(int argc, char **argv);
int nd_cli_job(int argc, char **argv);
int nd_cli_wait(int argc, char **argv);
/* noded cancel --job N (job.c): cancels each task of the job that has not
 * ended, prints the state each reached; the exit status. */
int nd_cli_cancel_job(const char *master, uint64_t job);

/* Default address of the master for workers and client commands. */
#define ND_CLI_MASTER "127.0.0.1:7070"

/*
 * Exit statuses, the same for every command (the README's table, "Exit
 * statuses"). run (and what follows a task: logs --follow, wait) exits
 * with the command's own status, or one of the last three.
 */
#define ND_CLI_EXIT_OK 0
#define ND_CLI_EXIT_FAIL 1      /* failed: the master refused or was not
				   reached; a daemon could not serve, or
				   stopped on an error */
#define ND_CLI_EXIT_USAGE 2     /* bad command line, config file or
				   environment: nothing was done */
#define ND_CLI_EXIT_TIMEOUT 124 /* the task timed out */
#define ND_CLI_EXIT_WAIT_TIMEOUT 254 /* wait --timeout: not ended in time */
#define ND_CLI_EXIT_SIGNAL 128  /* + N: the command was killed by signal N
				   (130: cancelled by Ctrl-C) */
#define ND_CLI_EXIT_LOST 255    /* the task was lost, or so was the master */

/* The system-wide config file (NODED_CONFIG_SYSTEM overrides it). */
#define ND_CLI_CONFIG_SYSTEM "/etc/noded/noded.conf"

/*
 * The config files and the environment under the command line (config.c;
 * README, "Configuration"). Call first, with the command's name (its
 * section) and the options and short options it gives getopt_long: reads
 * --config FILE, or the system and user files, and NODED_MASTER /
 * NODED_TOKEN_FILE (commands that have --master), and replaces *argc and
 * *argv with argv[0], a `--key=value` word for each setting the command
 * line does not override, and the command line less its --config (the
 * new words live as long as the process). Returns -1 to go on, or the
 * exit status after saying why (a file that cannot be read, an unknown
 * section or key, a bad flag value, each named with file and line).
 * Then parse with nd_cli_getopt(), which notes the file and line of the
 * option it returns, for nd_cli_config_report().
 */
#include <getopt.h>
int nd_cli_config(const char *cmd, const char *shortopts,
		  const struct option *opts, int *argc, char ***argv);
int nd_cli_getopt(int argc, char **argv, const char *shortopts,
		  const struct option *opts, int *li);
/* After the command returned status: when it stopped at an option that
 * came from a file or the environment with a usage error, says where. */
void nd_cli_config_report(int status);

/* Parses a whole unsigned number in [min, max] for option opt; prints why
 * and returns false when it is not one. (In common.c, which the tests
 * compile in.) */
#include <stdbool.h>
bool nd_cli_uint(const char *opt, const char *s, uint64_t min, uint64_t max,
		 uint64_t *out);

/*
 * Conflicting input is refused, never resolved by keeping one: call for
 * each option getopt_long() returns that takes one value (not for the
 * repeatable --label and --env, whose keys the caller checks), with li its
 * longindex (set it to -1 before each call: short options leave it) and
 * seen one slot per entry of opts, zeroed before parsing. The same value
 * again is fine; another is refused with "noded CMD: --node given twice
 * ('a' and 'b'): give it once" on stderr, and false (exit 2).
 */
#include <getopt.h>
bool nd_cli_once(const char *cmd, const struct option *opts,
		 const char **seen, int li, const char *arg);

/*
 * A master's wiring, written once for master and dev (serve.c): the
 * settings both fill, the task retention options both take, and the
 * server set up with the native protocol, the node service and the HTTP
 * API.
 */
#include "core/server.h"
#include "node/service.h"
struct nd_cli_serve {
	struct nd_config cfg;        /* the transport's (core/config.h) */
	struct nd_svc_config svc;    /* the node service's (node/service.h) */
	const char *http;            /* --http HOST:PORT, or NULL: none */
};

/*
 * Sets srv up as a master from m: nd_server_init(m->cfg), the native
 * protocol on its listener, the node service (m->svc, whose defaults are
 * filled here; m must outlive srv), and the HTTP API on m->http when set.
 * addr and http_addr get the bound "HOST:PORT"s (http_addr "" without
 * HTTP). 0, or the exit status after saying why: 2 for a bad address, 1
 * when it cannot serve; srv needs no close then.
 */
int nd_cli_serve_init(struct nd_server *srv, struct nd_cli_serve *m,
		      char *addr, size_t addr_len, char *http_addr,
		      size_t http_len);

/* Prints "listening on ADDR" and, when http_addr is not "", "http on
 * ADDR" on stdout, flushed: what scripts and tests wait for. */
void nd_cli_serve_announce(const char *addr, const char *http_addr);

/* --output-cap, --task-history, --output-budget, as getopt_long entries
 * with these codes. */
#define ND_CLI_RETENTION_OPTIONS                                            \
	{ "output-cap", required_argument, NULL, 'o' },                      \
	{ "task-history", required_argument, NULL, 'K' },                    \
	{ "output-budget", required_argument, NULL, 'U' }
/* Their lines of --help. */
extern const char nd_cli_retention_usage[];
/* True when opt is one of their codes; then *ok tells whether arg was a
 * good value (stored in svc) or not (said why on stderr). */
bool nd_cli_retention_opt(int opt, const char *arg, struct nd_svc_config *svc,
			  bool *ok);
/* After parsing: false, after saying why, when --output-cap is over
 * --output-budget (one task's output could never be kept). */
bool nd_cli_retention_check(const struct nd_svc_config *svc);
/* After getopt: true when no word is left (optind == argc), else says
 * "PROG: unexpected argument 'WORD'" on stderr (prog: "noded master"). */
bool nd_cli_no_more_args(const char *prog, int argc, char **argv);

/*
 * The daemons' log options (master, worker, dev; in common.c):
 * --log-format logfmt|json and --log-level debug|info|warn|error|off,
 * applied with nd_log_setup as they are parsed.
 */
enum { ND_CLI_OPT_LOG_FORMAT = 0x100, ND_CLI_OPT_LOG_LEVEL };
#define ND_CLI_LOG_OPTIONS                                                  \
	{ "log-format", required_argument, NULL, ND_CLI_OPT_LOG_FORMAT },    \
	{ "log-level", required_argument, NULL, ND_CLI_OPT_LOG_LEVEL }
extern const char nd_cli_log_usage[];
/* True when opt is one of their codes; then *ok says whether arg was good
 * (and applied) or not (said why on stderr). */
bool nd_cli_log_opt(int opt, const char *arg, bool *ok);

/* --tls-cert, --tls-key, --tls-ca: every command that talks to a master
 * or serves (also [common] keys and NODED_TLS_CERT/KEY/CA). */
enum { ND_CLI_OPT_TLS_CERT = 0x110, ND_CLI_OPT_TLS_KEY, ND_CLI_OPT_TLS_CA };
#define ND_CLI_TLS_OPTIONS                                                  \
	{ "tls-cert", required_argument, NULL, ND_CLI_OPT_TLS_CERT },        \
	{ "tls-key", required_argument, NULL, ND_CLI_OPT_TLS_KEY },          \
	{ "tls-ca", required_argument, NULL, ND_CLI_OPT_TLS_CA }
/* The usage lines of the three, for a client command. */
extern const char nd_cli_tls_usage[];
/* The files given (NULL: none). */
extern const char *nd_cli_tls_cert, *nd_cli_tls_key, *nd_cli_tls_ca;
/* True when opt is one of their codes (the file is recorded). */
bool nd_cli_tls_opt(int opt, const char *arg);
/* The options every client command takes to reach its master: --master
 * ('m', into *master), --token-file ('T') and the TLS ones. True when opt
 * was one of them. */
bool nd_cli_conn_opt(int opt, const char *arg, const char **master);

#endif
