/* Helpers shared by the noded-bench subcommands (perf/util.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "noded/errors.h"
#include "util.h"

uint64_t nd_perf_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return (uint64_t)rl.rlim_cur;
}

long nd_perf_parse_num(const char *opt, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "noded-bench: %s wants an integer in %ld..%ld, "
				"got '%s'\n", opt, min, max, s);
		exit(2);
	}
	return v;
}

double nd_perf_parse_secs(const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 86400) {
		fprintf(stderr, "noded-bench: %s wants seconds in (0, 86400], "
				"got '%s'\n", opt, s);
		exit(2);
	}
	return v;
}

int nd_perf_resolve(const char *addr, struct addrinfo **res)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM };
	char host[256];
	const char *colon = addr ? strrchr(addr, ':') : NULL;
	size_t n;

	if (!colon || colon == addr || !colon[1])
		return ND_EADDR;
	n = (size_t)(colon - addr);
	if (n >= sizeof(host))
		return ND_EADDR;
	memcpy(host, addr, n);
	host[n] = '\0';
	return getaddrinfo(host, colon + 1, &hints, res) ? ND_EADDR : 0;
}

int nd_perf_ring_init(struct io_uring *ring, unsigned want)
{
	/* The set the shards use, then plainer ones for older kernels. */
	static const unsigned flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	struct io_uring_params p;
	unsigned entries = 64;
	int r = -EINVAL;

	while (entries < want && entries < 4096)
		entries *= 2;
	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
		p.cq_entries = entries * 4;
		r = io_uring_queue_init_params(entries, ring, &p);
		if (r == 0)
			return 0;
		if (r != -EINVAL)
			break;
	}
	return r;
}

struct io_uring_sqe *nd_perf_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		/* SQ full: hand the batch to the kernel and take a slot. */
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}
