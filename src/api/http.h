/*
 * The HTTP/1.1 + JSON API of the master, served by the same shards and
 * transport as the native protocol (a second listener, --http). Each API
 * request becomes a native request to the node service, whose reply frames
 * come back through nd_conn_ops.deliver and are answered as JSON; GET
 * /metrics tours the shards for their counters.
 *
 * Keep-alive and pipelining: responses leave in request order; a request
 * waiting for the service holds the ones behind it, and past a bound on
 * queued requests the connection's input is held (nd_conn_hold).
 */
#ifndef ND_API_HTTP_H
#define ND_API_HTTP_H

#include "core/conn.h"

extern const struct nd_conn_ops nd_http_ops;

#endif
