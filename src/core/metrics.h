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
#define ND_METHODS 128

struct nd_metrics {
	uint64_t rpc_requests[ND_METHODS];
	uint64_t rpc_errors[ND_METHODS];
	struct nd_hist rpc_latency[ND_METHODS];
	uint64_t sqes_submitted;        /* io_uring_submit results, summed */
	uint64_t cqes;                  /* completions handled */
	uint64_t msg_retries;           /* cross-shard messages sent again */
};

#endif
