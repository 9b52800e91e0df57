/*
 * Helpers shared by the noded-bench subcommands: option values,
 * the fd limit, the address and the io_uring setup (perf/loop.h drives
 * connections on it).
 *
 * The option parsers print why and exit(2) on a bad value: they serve
 * command lines only.
 */
#ifndef ND_PERF_UTIL_H
#define ND_PERF_UTIL_H

#include <liburing.h>
#include <netdb.h>
#include <stddef.h>
#include <stdint.h>

/* Raises the soft RLIMIT_NOFILE to the hard limit (N connections need N
 * fds) and returns the soft limit in force afterwards. */
uint64_t nd_perf_raise_nofile(void);

/* An integer in min..max, or exit(2) naming opt. */
long nd_perf_parse_num(const char *opt, const char *s, long min, long max);

/* Seconds in (0, 86400], or exit(2) naming opt. */
double nd_perf_parse_secs(const char *opt, const char *s);

/* Resolves "HOST:PORT" for a TCP connect. On 0, *res is the caller's
 * (freeaddrinfo); ND_EADDR when it does not parse or resolve. */
int nd_perf_resolve(const char *addr, struct addrinfo **res);

/*
 * Sets up ring with the flags the shards use (single issuer, deferred task
 * running), falling back to plainer ones on older kernels. The SQ gets the
 * smallest power of two >= 64 that is >= want (at most 4096); the CQ four
 * times as many entries. Returns 0 or -errno.
 */
int nd_perf_ring_init(struct io_uring *ring, unsigned want);

/* An SQE; when the SQ is full its batch is submitted first. NULL only when
 * the kernel takes none. */
struct io_uring_sqe *nd_perf_sqe(struct io_uring *ring);

#endif
