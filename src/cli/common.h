/*
 * Shared pieces of the task commands (noded run, submit, task, tasks, logs,
 * cancel): option parsing into a TaskSpec, talking to the master with useful
 * error messages, state names, the exit status of an ended task, a record as
 * JSON, and the terminal output of a task (raw, or "NODE: "-prefixed lines
 * for fan-out jobs).
 *
 * Everything here that takes a FILE * writes only there, so the tests
 * (tests/test_cli.c) can capture it with open_memstream().
 */
#ifndef ND_CLI_COMMON_H
#define ND_CLI_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "noded/json.h"

#include "core/buf.h"
#include "noded/client.h"

/* Exit statuses: cli.h (ND_CLI_EXIT_*). */
#include "cli/cli.h"

/* Longest partial line kept per task and fd before it is printed anyway. */
#define ND_CLI_LINE_MAX 65536

/* How long a unary call to the master may take. */
#define ND_CLI_CALL_TIMEOUT_MS 10000

/* ---- noded run / noded submit options ---- */

/*
 * The parsed command line of run and submit. spec is ready to send: its
 * strings point into the argv given to nd_cli_task_args_parse() (which must
 * outlive the struct) or into storage the struct owns; free that with
 * nd_cli_task_args_free(). A zeroed struct may be freed.
 */
struct nd_cli_task_args {
	const char *master;             /* --master, or ND_CLI_MASTER */
	Noded__TaskSpec spec;
	/* owned storage behind spec */
	Noded__Command command;         /* spec.command points here */
	Noded__Command__EnvEntry *env_store;
	Noded__TaskSpec__LabelsEntry *label_store;
	char *shell;                    /* --shell: the words joined */
	bool print_id;                  /* run --print-id */
	bool group;                     /* run --group: fold equal output */
	bool json;                      /* run --json: a JSON object per task */
};

/*
 * Parses `noded <cmd> [options] -- CMD [ARG...]` (argv[0] is cmd's name;
 * the command starts at the first word that is not an option, or after
 * "--"). Returns true when the caller should go on and send a->spec; false
 * when it should exit with *status: 0 after --help (printed on stdout), 2
 * after a usage error (explained on stderr), 1 when out of memory. a is
 * always left freeable.
 */
bool nd_cli_task_args_parse(struct nd_cli_task_args *a, int argc,
			    char **argv, int *status);
void nd_cli_task_args_free(struct nd_cli_task_args *a);

/* With --wait-for-node: says on stderr, once, why the task of the submit
 * reply sr waits (nothing when it does not). */
void nd_cli_waiting_note(const Noded__SubmitReply *sr);

/* Usage of run/submit (cmd: "run" or "submit"). */
void nd_cli_task_usage(FILE *f, const char *cmd);

/*
 * Parses SECS for --timeout: a whole or decimal number of seconds, 0 for no
 * timeout, into milliseconds (anything above 0 is at least 1 ms). Prints why
 * and returns false when s is not one or does not fit in 32 bits of ms.
 */
bool nd_cli_timeout_ms(const char *s, uint32_t *ms);

/* ---- states and ended tasks ---- */

/* SUCCEEDED, FAILED, TIMED_OUT, CANCELLED or LOST. */
bool nd_cli_state_terminal(Noded__TaskState s);

/*
 * The exit status noded run reports for an ended task: the command's exit
 * code, 128+N when killed by signal N, 124 on timeout, 128+N or 130 when
 * cancelled, 255 when lost. -1 when the record is not terminal.
 */
int nd_cli_exit_status(const Noded__TaskRecord *r);

/*
 * The line noded run prints on stderr when a task ends (without "noded: "
 * nor newline): "task 5 lost: REASON" for LOST, "task 5: REASON" for other
 * unsuccessful ends that have a reason. Returns false (buf "") when there is
 * nothing to say.
 */
bool nd_cli_end_note(const Noded__TaskRecord *r, char *buf, size_t size);

/* ---- records ---- */

/*
 * The command of a spec for display: argv words joined by spaces, each
 * single-quoted the way sh would need it when it holds anything special
 * ($'...' with \xNN escapes when it holds bytes that are not UTF-8 or
 * control characters), or the --shell string with such bytes as \xNN
 * (nd_text_fput()). Returns a malloc'd string (caller frees), or NULL when
 * out of memory.
 */
char *nd_cli_command_string(const Noded__TaskSpec *s);


/* The human-readable view of noded task (its attempts last, one line
 * each). */
void nd_cli_task_print(FILE *f, const Noded__TaskRecord *r);

/* ---- attempts ---- */

/*
 * What run, logs --follow and wait say on stderr (without "noded: " nor
 * newline) of a record that came on a stream before its task ended: the
 * master sends one when an attempt was retried, "task 7: attempt 1 on w1
 * was lost (REASON); retrying as attempt 2", and one when the retry went
 * to a node, "task 7: attempt 2 runs on w2". false (buf "") for any other.
 */
bool nd_cli_attempt_note(const Noded__TaskRecord *r, char *buf, size_t size);

/*
 * Output of a task arrives chunk by chunk, each naming its attempt: true
 * when this chunk's attempt is not the one before it (at first: not 1),
 * so a marker is due before it; *seen (0 at first) follows. Attempt 0
 * (a master that does not say) never is.
 */
bool nd_cli_attempt_begins(uint32_t *seen, uint32_t attempt);

/* The marker line before the output of another attempt, on f:
 * "noded: --- task 7: output of attempt 2 ---". */
void nd_cli_attempt_marker(FILE *f, uint64_t task, uint32_t attempt);

/* ---- talking to the master ---- */

/* --token-file of the running command (NULL: $NODED_TOKEN_FILE, or none):
 * the master's token, for masters started with --token-file. */
extern const char *nd_cli_token_file;
/* --stale: a read any master may answer (no leader is looked for). */
extern bool nd_cli_stale;

/*
 * Connects to the master at addr. On failure prints why on stderr
 * ("noded: cannot reach the master ADDR: ...") and returns NULL.
 */
struct nd_client *nd_cli_connect(const char *addr);

/*
 * The message to show for a failed call: the server's Error message (or its
 * code when the message is empty) when status is ND_EREMOTE and f carries an
 * Error, else nd_strerror(status). Valid while f is.
 */
const char *nd_cli_error_text(int status, const Noded__Frame *f);

/*
 * Blocking unary call of req that must come back with body case want. On
 * success returns 0 and *reply owns the reply (nd_frame_free(*reply, NULL)).
 * Otherwise prints "noded: WHAT: why" on stderr, returns ND_CLI_EXIT_FAIL and
 * leaves *reply NULL.
 */
int nd_cli_call(struct nd_client *c, const Noded__Frame *req,
		Noded__Frame__BodyCase want, const char *what,
		Noded__Frame **reply);

/*
 * nd_cli_connect() + nd_cli_call() + close, for the one-request commands.
 * Returns 0 with *reply owned by the caller, or ND_CLI_EXIT_FAIL after
 * saying why on stderr.
 */
int nd_cli_request(const char *master, const Noded__Frame *req,
		   Noded__Frame__BodyCase want, const char *what,
		   Noded__Frame **reply);

/* How often a command waiting on a stream pings the master. */
#define ND_CLI_KEEPALIVE_MS 1000

/*
 * Keeps the connection of a command that waits on a stream (run, logs
 * --follow) from looking idle to the master, whose --idle-timeout counts only
 * what it receives: queues a Ping (its reply dropped) when the last one, or
 * the first call, is ND_CLI_KEEPALIVE_MS old. *last_ms is the caller's, 0 at
 * first (call right after sending the stream's request).
 */
void nd_cli_keepalive(struct nd_client *c, int64_t *last_ms);

/* Parses a task id (prints why and returns false when it is not one). */
bool nd_cli_task_id(const char *s, uint64_t *id);

/* ---- terminal output of a task ---- */

/*
 * Where the output of one task goes. Without a prefix every chunk is
 * written as it comes; with one, complete lines are written as
 * "PREFIX: line\n" and a partial line waits (per fd) for its newline, or
 * until it reaches ND_CLI_LINE_MAX bytes, or for nd_cli_sink_flush(). A
 * zeroed struct is not usable: call nd_cli_sink_init().
 */
struct nd_cli_sink {
	FILE *out, *err;        /* fd 1 and fd 2 (anything else: out) */
	char *prefix;           /* owned; NULL: raw */
	struct nd_buf part[2];  /* a line not finished yet, per fd */
};

/* prefix is copied (NULL: raw). Returns 0 or -ENOMEM. */
int nd_cli_sink_init(struct nd_cli_sink *s, FILE *out, FILE *err,
		     const char *prefix);
/* Replaces the prefix (copied; ignored for a raw sink). 0 or -ENOMEM. */
int nd_cli_sink_set_prefix(struct nd_cli_sink *s, const char *prefix);
/* Returns 0, or -ENOMEM / -EIO (the stream failed). */
int nd_cli_sink_write(struct nd_cli_sink *s, uint32_t fd, const void *data,
		      size_t len);
/* Writes pending partial lines, each ended with a newline. */
int nd_cli_sink_flush(struct nd_cli_sink *s);
void nd_cli_sink_free(struct nd_cli_sink *s);

#endif
