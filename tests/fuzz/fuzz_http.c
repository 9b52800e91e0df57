/*
 * libFuzzer target: arbitrary bytes from an HTTP client, cut into arbitrary
 * chunks, through the same connection path as fuzz_server but with the HTTP
 * API on top (http-parser, the ordered request queue, routes, the node
 * service's replies as JSON, pipelining and its hold). Input as described in
 * conn_harness.h.
 */
#include <stdint.h>

#include "api/http.h"
#include "conn_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nd_fuzz_conn(&nd_http_ops, data, size);
	return 0;
}
