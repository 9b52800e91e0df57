/*
 * Internal to the task ledger (ledger.c: events; ledger_snap.c: snapshot
 * and restore): what both use.
 */
#ifndef ND_STATE_LEDGER_INT_H
#define ND_STATE_LEDGER_INT_H

#include "state/ledger.h"

#define NSTATES (NODED__TASK_STATE__TASK_LOST + 1)

/* Frees t and everything it owns (it is on no list or map). */
void nd__ltask_free(struct nd_ltask *t);
/* "" is no string in these messages: *out is NULL, else a copy of s.
 * 0 or -ENOMEM. */
int nd__ledger_dup(const char *s, char **out);
/* Is t ASSIGNED or RUNNING (on a node)? */
bool nd__ltask_on_node(const struct nd_ltask *t);
/* The record of t's current attempt in its history, or NULL (it has not
 * reached a node). */
struct nd_lattempt *nd__ltask_current(const struct nd_ltask *t);
/* Appends n bytes of fd from attempt to t's kept output (after a marker
 * when the attempt changes): 0, or -ENOMEM with nothing changed. */
int nd__ltask_out_append(struct nd_ltask *t, uint8_t fd, uint32_t attempt,
			 const uint8_t *data, size_t n);

/* A member's addresses (ledger.c): set frees what m held before (m zeroed
 * or set); 0 or -ENOMEM (m unchanged). clear frees them. */
int nd__lmember_set(struct nd_lmember *m, const Noded__RaftMember *mb);
void nd__lmember_clear(struct nd_lmember *m);

/* Records a session's last submit (ledger.c), dropping the oldest
 * session past ND_LEDGER_SESSIONS. 0, or -ENOMEM (nothing changed). */
int nd__ledger_session_put(struct nd_ledger *l,
			   const struct nd_lsession *s);

#endif
