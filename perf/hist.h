/*
 * Log-linear latency histogram for the benchmark (HdrHistogram's layout,
 * fixed parameters): values are microseconds; below 256 every value has its
 * own bucket, above it every power of two is split into 128 buckets, so a
 * reported value is within 1/128 (< 0.8%) of the true one up to 2^40 us
 * (12.7 days; the brief asks for 60 s). Larger values land in the last
 * bucket. Fixed size (about 34 KiB), no allocation: embed it or zero it.
 */
#ifndef ND_PERF_HIST_H
#define ND_PERF_HIST_H

#include <stdint.h>

#define ND_HIST_SUB_BITS 7
#define ND_HIST_SUB (1u << ND_HIST_SUB_BITS)         /* buckets per octave */
#define ND_HIST_EXACT (2u * ND_HIST_SUB)             /* 0..255 exact */
#define ND_HIST_MAX_MSB 39                           /* values < 2^40 */
#define ND_HIST_BUCKETS \
	(ND_HIST_EXACT + (ND_HIST_MAX_MSB - ND_HIST_SUB_BITS) * ND_HIST_SUB)

struct nd_hist {
	uint64_t count;
	uint64_t sum;
	uint64_t min;       /* UINT64_MAX while empty */
	uint64_t max;
	uint64_t b[ND_HIST_BUCKETS];
};

void nd_hist_init(struct nd_hist *h);
void nd_hist_record(struct nd_hist *h, uint64_t us);
/* Adds src's counts to dst. */
void nd_hist_merge(struct nd_hist *dst, const struct nd_hist *src);
/*
 * Value at percentile p (0 < p <= 100): the highest value of the bucket that
 * holds the ceil(p% * count)-th smallest sample, clamped to the recorded
 * min/max. 0 when empty.
 */
uint64_t nd_hist_percentile(const struct nd_hist *h, double p);
double nd_hist_mean(const struct nd_hist *h);

/* Bucket arithmetic, exposed for the tests: index of v, and the range of
 * values [*lo, *hi] that bucket i holds. */
unsigned nd_hist_index(uint64_t v);
void nd_hist_range(unsigned i, uint64_t *lo, uint64_t *hi);

#endif
