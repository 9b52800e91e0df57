/*
 * libFuzzer target: arbitrary bytes from a client, cut into arbitrary chunks,
 * through the server's real receive path (nd_conn_on_recv -> reassembly ->
 * rpc dispatch -> node service -> replies -> sends -> backpressure), then the
 * real close path. Input as described in conn_harness.h.
 */
#include <stdint.h>

#include "rpc/server.h"
#include "conn_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nd_fuzz_conn(&nd_rpc_server_ops, data, size);
	return 0;
}
