/* Server settings, filled from the command line (src/cli) and read-only once
 * the shards run. A zeroed struct takes every default (nd_config_defaults).
 * What runs on the server keeps its own (the node service's in
 * node/service.h, struct nd_svc_config). */
#ifndef ND_CORE_CONFIG_H
#define ND_CORE_CONFIG_H

#include <stdint.h>

struct nd_tls;

struct nd_config {
	const char *listen;          /* "HOST:PORT"; default 127.0.0.1:7070 */
	const char *name;            /* our node name; default: host name */
	unsigned shards;             /* default: number of CPUs */
	unsigned service_shards;     /* more shards after those, taking no
				      * connections (the raft shard); 0 */
	uint32_t max_frame;          /* largest frame accepted; 16 MiB */
	uint32_t max_conns;          /* connections at once; 65536 or the fd limit */
	uint32_t idle_timeout_ms;    /* silent connection closed; 60 s, 0 off */
	uint32_t stall_timeout_ms;   /* output stuck over max_output; 10 s */
	uint32_t drain_timeout_ms;   /* SIGTERM drain before forcing; 5 s */
	size_t max_output;           /* per-connection output high watermark; 4 MiB */
	const uint8_t *token;        /* shared secret (--token-file); NULL: none */
	size_t token_len;
	unsigned buf_count;          /* provided receive buffers per shard; 1024 */
	unsigned buf_size;           /* bytes each; 4096 */
	uint64_t http_max_body;      /* HTTP request body limit; 1 MiB */
	uint64_t input_budget;       /* kept partial input over all conns;
				      * 64 MiB or 4 max_frame if more */
	uint32_t handshake_timeout_ms; /* Hello and auth, or an HTTP request's
					* headers, must arrive within; 10 s */
	struct nd_tls *tls;          /* every listener speaks TLS (server end);
				      * NULL: plaintext. Not owned. */
	struct nd_tls *tls_connect;  /* outbound connections speak TLS (client
				      * end, nd_conn_connect); NULL: plaintext */
};

#define ND_INPUT_BUDGET_DEFAULT (64ull << 20)

/* Fills every zero field with its default. */
void nd_config_defaults(struct nd_config *cfg);

#endif
