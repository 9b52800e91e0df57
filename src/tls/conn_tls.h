/*
 * TLS under a transport connection (see conn_tls.c). The nd__tls_*
 * functions are the transport's own (core/conn.c, conn_out.c); the
 * protocol on top asks only nd_conn_tls_peer.
 */
#ifndef ND_TLS_CONN_TLS_H
#define ND_TLS_CONN_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "tls/tls.h"

struct nd_conn;

/*
 * The role and name of c's peer from its certificate: NONE for a
 * plaintext connection, before the handshake ended, or when the peer
 * presented no certificate (no --tls-ca). *name (when name is not NULL)
 * is "" or the NAME of the certificate; valid while c is.
 */
enum nd_tls_role nd_conn_tls_peer(const struct nd_conn *c, const char **name);
bool nd_conn_is_tls(const struct nd_conn *c);

/* Puts TLS under c (server or client end, as tls is). 0 or -ENOMEM. */
int nd__tls_attach(struct nd_conn *c, struct nd_tls *tls);
void nd__tls_free(struct nd_conn *c);
/* Ciphertext received (n may be 0: start a client's handshake). */
void nd__tls_input(struct nd_conn *c, const uint8_t *p, size_t n);
/* Encrypts c->out (once the handshake is done) and returns the buffer
 * of ciphertext to send; the caller may swap it with an empty one. */
struct nd_buf *nd__tls_out(struct nd_conn *c);
/* Ciphertext not yet handed to a send. */
size_t nd__tls_queued(const struct nd_conn *c);
/* Handshake done and no failure. */
bool nd__tls_ready(const struct nd_conn *c);
/* All output of a closing c was sent: queues TLS's close_notify once
 * (true: send it before the FIN). */
bool nd__tls_close_notify(struct nd_conn *c);
/* c is closing with flush: drops plaintext that can never be sent. */
void nd__tls_closing(struct nd_conn *c);
/* Each tick: the record buffers of connections idle for TLS_IDLE_MS go
 * back (see conn_tls.c). */
struct nd_shard;
void nd__tls_sweep(struct nd_shard *s);

#endif
