/* Log-linear latency histogram (perf/hist.h). */
#include <math.h>
#include <string.h>

#include "hist.h"

void nd_hist_init(struct nd_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned nd_hist_index(uint64_t v)
{
	unsigned msb;

	if (v < ND_HIST_EXACT)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	if (msb > ND_HIST_MAX_MSB)
		return ND_HIST_BUCKETS - 1;
	/* The 7 bits under the top one pick the bucket within the octave. */
	return ND_HIST_EXACT + (msb - ND_HIST_SUB_BITS - 1) * ND_HIST_SUB +
	       (unsigned)((v >> (msb - ND_HIST_SUB_BITS)) & (ND_HIST_SUB - 1));
}

void nd_hist_range(unsigned i, uint64_t *lo, uint64_t *hi)
{
	unsigned octave, sub, shift;

	if (i < ND_HIST_EXACT) {
		*lo = *hi = i;
		return;
	}
	octave = (i - ND_HIST_EXACT) / ND_HIST_SUB;  /* msb - 8 */
	sub = (i - ND_HIST_EXACT) % ND_HIST_SUB;
	shift = octave + 1;                          /* msb - 7 */
	*lo = (uint64_t)(ND_HIST_SUB + sub) << shift;
	*hi = *lo + ((uint64_t)1 << shift) - 1;
}

void nd_hist_record(struct nd_hist *h, uint64_t us)
{
	h->b[nd_hist_index(us)]++;
	h->count++;
	h->sum += us;
	if (us < h->min)
		h->min = us;
	if (us > h->max)
		h->max = us;
}

void nd_hist_merge(struct nd_hist *dst, const struct nd_hist *src)
{
	for (unsigned i = 0; i < ND_HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t nd_hist_percentile(const struct nd_hist *h, double p)
{
	uint64_t rank, seen = 0, lo, hi;
	unsigned i;

	if (!h->count)
		return 0;
	if (p <= 0)
		return h->min;
	rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (i = 0; i < ND_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank)
			break;
	}
	nd_hist_range(i, &lo, &hi);
	if (hi > h->max)
		hi = h->max;
	if (hi < h->min)
		hi = h->min;
	return hi;
}

double nd_hist_mean(const struct nd_hist *h)
{
	return h->count ? (double)h->sum / (double)h->count : 0.0;
}
