/*
 * Names of task and node states, and task and node records as JSON (jansson):
 * the shapes of `noded task --json`, `noded nodes --json` and the HTTP API.
 */
#ifndef NODED_JSON_H
#define NODED_JSON_H

#include <stdbool.h>

#include <jansson.h>

#include "noded/wire.h"

/* "PENDING" ... "LOST"; "UNKNOWN" for anything else. */
const char *nd_task_state_name(Noded__TaskState s);
/* The inverse, ignoring case; false when s names no state. */
bool nd_task_state_parse(const char *s, Noded__TaskState *out);
/* "ALIVE", "SUSPECT", "DEAD" or "UNKNOWN". */
const char *nd_node_state_name(Noded__NodeState s);

/* New references (NULL when out of memory). */
json_t *nd_json_task(const Noded__TaskRecord *r);
json_t *nd_json_node(const Noded__NodeInfo *n);

#endif
