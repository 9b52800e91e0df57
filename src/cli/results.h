/*
 * Results by node for `noded run --group` and `--json` (results.c): the
 * output of each task held until the task ends, then printed whole, as one
 * JSON object per task, or folded with the equal output of other nodes
 * (clush -b, dshbak -c).
 */
#ifndef ND_CLI_RESULTS_H
#define ND_CLI_RESULTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/buf.h"
#include "noded/wire.h"

/* Bytes of one stream of one task held; past it the rest is counted only. */
#define ND_CLI_HELD_MAX (8u << 20)

/* One task's held output and, once it ended, its result. A zeroed struct
 * is empty; nd_cli_held_free() releases it. */
struct nd_cli_held {
	struct nd_buf out[2];   /* stdout, stderr */
	uint64_t dropped[2];    /* bytes past ND_CLI_HELD_MAX */
	bool shown;             /* printed (in a --group block) */
};

/* Appends len bytes of fd (2: stderr, else stdout) to h, up to the bound.
 * 0 or -ENOMEM. */
int nd_cli_held_add(struct nd_cli_held *h, uint32_t fd, const void *data,
		    size_t len);
void nd_cli_held_free(struct nd_cli_held *h);

/*
 * Writes the result of a task (its terminal record r, or NULL when its end
 * never arrived; status: its exit status as run reports it) on one line of
 * out as a JSON object: node, task, job, state, exit_code, signal, status,
 * reason, stdout, stderr (text, with a _base64 sibling when it is not UTF-8,
 * as noded/json.h does), and stdout_dropped / stderr_dropped when bytes
 * were past the bound. 0, or -ENOMEM / -EIO.
 */
int nd_cli_held_json(FILE *out, const struct nd_cli_held *h, const char *node,
		     uint64_t task, uint64_t job, const Noded__TaskRecord *r,
		     int status);

/*
 * --group: prints the results h[0..n) (nodes[i] the node of h[i]), each
 * group of equal output (stdout and stderr both) once: on out a header
 * naming the group's nodes in range form and how many,
 *   ---------------
 *   web[01-03,07] (4)
 *   ---------------
 * then their stdout; their stderr on err, each line as "NODES: line".
 * Groups come in the order of their first node's name; nodes without any
 * output print nothing (the run's summary counts them). Marks each shown.
 * 0, or -ENOMEM / -EIO.
 */
int nd_cli_group_print(FILE *out, FILE *err, struct nd_cli_held *const *h,
		       char *const *nodes, size_t n);

#endif
