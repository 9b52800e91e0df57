/*
 * The connection harness the server-side libFuzzer targets share: one shard
 * with an io_uring but no thread, whose completions are simulated here the
 * way the kernel would post them, and the node service on it (a one-shard
 * server, so service requests are answered synchronously).
 */
#ifndef ND_FUZZ_CONN_HARNESS_H
#define ND_FUZZ_CONN_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"

/*
 * Adopts a connection speaking ops, feeds it data through the real receive
 * path (nd_conn_on_recv -> ops->data -> replies -> sends -> backpressure),
 * then tears it down through the real close path; aborts when the
 * connection could never be freed. LeakSanitizer reports anything else left
 * behind.
 *
 * Input: byte 0's low 7 bits pick the chunk size (1..128) the bytes arrive
 * in; its high bit makes the server require a token (so the refusals run);
 * the rest is the stream.
 */
void nd_fuzz_conn(const struct nd_conn_ops *ops, const uint8_t *data,
		  size_t size);

/*
 * The same on a connection accepted on a TLS port (tls, the server end),
 * or, when byte 0's high bit is set, on a plaintext port (no token).
 */
struct nd_tls;
void nd_fuzz_conn_tls(const struct nd_conn_ops *ops, struct nd_tls *tls,
		      const uint8_t *data, size_t size);

#endif
