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
