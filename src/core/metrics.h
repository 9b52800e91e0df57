/*
 * Counters and latency histograms a shard keeps for itself: plain integers
 * written only by the shard's own thread (nothing shared on the hot path).
 * A scrape visits every shard on its own thread (nd_shard_tour) and sums.
 */
#ifndef ND_CORE_METRICS_H
#define ND_CORE_METRICS_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* Bucket upper bounds in microseconds; the last bucket is +Inf. */
#define ND_HIST_BUCKETS 16
extern const uint32_t nd_hist_bounds_us[ND_HIST_BUCKETS - 1];

struct nd_hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t b[ND_HIST_BUCKETS];  /* not cumulative; the scrape sums */
};

void nd_hist_add(struct nd_hist *h, uint64_t ns);
/* One series in the Prometheus text format: cumulative buckets (le in
 * seconds), _sum and _count; labels: "" or `k="v",...`. */
void nd_hist_write(FILE *f, const char *name, const char *labels,
		   const struct nd_hist *h);

/* Native methods are counted by frame body case, below this. */
#define ND_METHODS 64

enum nd_route {
	ND_ROUTE_HEALTHZ,
	ND_ROUTE_METRICS,
	ND_ROUTE_TASK_SUBMIT,
	ND_ROUTE_TASK_LIST,
	ND_ROUTE_TASK_GET,
	ND_ROUTE_TASK_OUTPUT,
	ND_ROUTE_TASK_CANCEL,
	ND_ROUTE_NODE_LIST,
	ND_ROUTE_NODE_GET,
	ND_ROUTE_LEGACY_SUBMIT,
	ND_ROUTE_OTHER,                 /* 404, 405 and unparsable requests */
	ND_ROUTES
};

/* The statuses the API answers, counted per route. */
#define ND_HTTP_CODES 14
extern const uint16_t nd_http_codes[ND_HTTP_CODES];
unsigned nd_http_code_index(unsigned status);

struct nd_metrics {
	uint64_t rpc_requests[ND_METHODS];
	uint64_t rpc_errors[ND_METHODS];
	struct nd_hist rpc_latency[ND_METHODS];
	uint64_t http_requests[ND_ROUTES][ND_HTTP_CODES];
	struct nd_hist http_latency[ND_ROUTES];
	uint64_t sqes_submitted;        /* io_uring_submit results, summed */
	uint64_t cqes;                  /* completions handled */
	uint64_t msg_retries;           /* cross-shard messages sent again */
};

static inline uint64_t nd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
