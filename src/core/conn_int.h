/*
 * Internal to transport connections (conn.c: input, life cycle, closing;
 * conn_out.c: output and sends). Everything here is touched only by the
 * thread of the connection's shard.
 */
#ifndef ND_CORE_CONN_INT_H
#define ND_CORE_CONN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"

#define OUT_KEEP (64 * 1024)   /* larger buffers are freed once drained */

/* conn.c */
/* Output queued: c->out and what of c->tx is not yet sent. */
size_t nd__conn_queued(const struct nd_conn *c);
/* Drops c now (no flush); it is freed by nd_conn_reap(). */
void nd__conn_kill(struct nd_conn *c);
/* Queues c for a recv (armed at the shard's next submit) unless armed,
 * dead or at EOF. */
void nd__conn_want_recv(struct nd_conn *c);
/* A freed buffer of cap bytes (counted if big) towards the next trim. */
void nd__conn_note_freed(struct nd_shard *s, size_t cap);
/* Charges n bytes of kept input to the server's --input-budget (false:
 * over it, nothing charged), and gives them back. */
bool nd__conn_budget_take(struct nd_conn *c, size_t n);
void nd__conn_budget_give(struct nd_conn *c, size_t n);
/* Plaintext input for the protocol (received, or decrypted by TLS). */
void nd__conn_input(struct nd_conn *c, const uint8_t *p, size_t n);
/* Ends a pause of c's input (its output fell below the low watermark). */
void nd__conn_resume(struct nd_conn *c);

/* conn_out.c */
/* All output of a closing c was sent: FIN, then linger for the peer. */
void nd__conn_flushed(struct nd_conn *c);
/* Swaps c->out into c->tx and submits its send. */
void nd__conn_start_send(struct nd_conn *c);

#endif
