/*
 * The one check of a task spec (TaskSpec, proto/noded.proto), shared by
 * every surface that takes one: the CLI before it sends, the HTTP API
 * before it asks the master, and the master's submit, which trusts nobody.
 * So a bad spec gets the same message wherever it was written.
 */
#ifndef NODED_TASKSPEC_H
#define NODED_TASKSPEC_H

#include <stddef.h>

#include "noded/wire.h"

/* Bounds of a task's user and limits (Command.user, memory_max_bytes,
 * cpu_millis, pids_max): below a MiB nothing execs; cpu.max takes a
 * quota of at least 1 ms per 100 ms period; pids_max as the kernel's
 * PID_MAX_LIMIT. */
#define ND_TASK_USER_MAX 256
#define ND_TASK_MEMORY_MIN (1u << 20)
#define ND_TASK_CPU_MILLIS_MIN 10
#define ND_TASK_CPU_MILLIS_MAX 1000000
#define ND_TASK_PIDS_MAX 4194304

/*
 * NULL when sp may be submitted; otherwise buf (size bytes, the message cut
 * to fit), holding one sentence naming the field that is wrong. The rules,
 * checked in this order:
 *
 *   - a command: sp->command set, with argv or shell ("nothing to run")
 *   - argv or shell, not both
 *   - argv[0], the command name, is not empty
 *   - shell holds more than blanks
 *   - every env key is a variable name: not empty, no '='
 *   - user, when set, a user name: at most ND_TASK_USER_MAX bytes, no
 *     '/', ':', blank or control character, not starting with '-'
 *   - memory 0 or at least ND_TASK_MEMORY_MIN; cpus (cpu_millis) 0 or
 *     from ND_TASK_CPU_MILLIS_MIN to ND_TASK_CPU_MILLIS_MAX; pids 0 or
 *     at most ND_TASK_PIDS_MAX
 *   - at most one of node, nodes and all
 *   - labels not with node or nodes (with all: every live node with them)
 *   - nodes is a valid node list (noded/hostlist.h), its error's position
 *   - exclude not with node, and a valid node list
 *   - wait_for_node not with all (a fan-out runs on the nodes alive now)
 *
 * Whether a node can take it now is the master's to say, not this check's.
 * Reads sp only; no allocation.
 */
const char *nd_task_spec_check(const Noded__TaskSpec *sp, char *buf,
			       size_t size);

#endif
