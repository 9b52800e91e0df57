#include <stdio.h>

#include "core/metrics.h"

const uint32_t nd_hist_bounds_us[ND_HIST_BUCKETS - 1] = {
	10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
	100000, 250000, 1000000,
};

void nd_hist_add(struct nd_hist *h, uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned i = 0;

	while (i < ND_HIST_BUCKETS - 1 && us > nd_hist_bounds_us[i])
		i++;
	h->b[i]++;
	h->count++;
	h->sum_ns += ns;
}

void nd_hist_write(FILE *f, const char *name, const char *labels,
			const struct nd_hist *h)
{
	uint64_t cum = 0;
	const char *sep = labels[0] ? "," : "";

	for (unsigned i = 0; i < ND_HIST_BUCKETS; i++) {
		cum += h->b[i];
		if (i < ND_HIST_BUCKETS - 1)
			fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name,
				labels, sep, nd_hist_bounds_us[i] / 1e6,
				(unsigned long long)cum);
		else
			fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name,
				labels, sep, (unsigned long long)cum);
	}
	fprintf(f, "%s_sum%s%s%s %.9f\n", name, *labels ? "{" : "", labels,
		*labels ? "}" : "", h->sum_ns / 1e9);
	fprintf(f, "%s_count%s%s%s %llu\n", name, *labels ? "{" : "", labels,
		*labels ? "}" : "", (unsigned long long)h->count);
}
