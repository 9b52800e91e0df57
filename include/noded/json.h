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

/*
 * New references (NULL only when out of memory): whatever bytes a record
 * holds, it has a JSON form (below).
 */
json_t *nd_json_task(const Noded__TaskRecord *r);
json_t *nd_json_node(const Noded__NodeInfo *n);

/*
 * Text that may hold any bytes (a command word, a shell string, a reason, a
 * name), the one scheme of every JSON view: text that is valid UTF-8 is a
 * plain JSON string. Otherwise obj[key] is a readable copy, each byte that
 * is not part of valid UTF-8 replaced by U+FFFD, and obj[key + "_base64"]
 * holds the exact bytes in base64 (RFC 4648, with padding), so a reader
 * that needs the bytes takes the _base64 field when it is there. s NULL is
 * "". Returns 0 or -ENOMEM.
 */
int nd_json_set_text(json_t *obj, const char *key, const char *s);
/* The same for len bytes at s, which may hold NULs (a task's output). */
int nd_json_set_bytes(json_t *obj, const char *key, const char *s,
		      size_t len);
/* The same for n texts: obj[key] is the array of readable strings and,
 * when any is not UTF-8, obj[key + "_base64"] the array of all n in
 * base64. */
int nd_json_set_texts(json_t *obj, const char *key, char *const *v,
		      size_t n);
/* s as a JSON string, itself or its readable copy (for messages, where the
 * exact bytes do not matter). NULL only when out of memory. */
json_t *nd_json_text(const char *s);

#endif
