/*
 * The clocks, in one place. Monotonic times measure intervals and
 * deadlines (they never jump; comparable across the processes of one
 * boot: the exec helpers' lease deadlines are); Unix times are for
 * records and people (they may jump when the clock is set).
 */
#ifndef ND_CORE_TIME_H
#define ND_CORE_TIME_H

#include <stdint.h>
#include <time.h>

static inline uint64_t nd__clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CLOCK_MONOTONIC in nanoseconds (latencies). */
static inline uint64_t nd_mono_ns(void)
{
	return nd__clock_ns(CLOCK_MONOTONIC);
}

/* CLOCK_MONOTONIC in microseconds. */
static inline uint64_t nd_mono_us(void)
{
	return nd__clock_ns(CLOCK_MONOTONIC) / 1000u;
}

/* CLOCK_MONOTONIC in milliseconds (timeouts, deadlines). */
static inline uint64_t nd_mono_ms(void)
{
	return nd__clock_ns(CLOCK_MONOTONIC) / 1000000u;
}

/*
 * CLOCK_MONOTONIC_COARSE in milliseconds: the same clock read at the last
 * tick (a few ms behind at most), at a fraction of the cost. A shard reads
 * it once per loop iteration (nd_shard.now_ms).
 */
static inline uint64_t nd_mono_coarse_ms(void)
{
	return nd__clock_ns(CLOCK_MONOTONIC_COARSE) / 1000000u;
}

/* CLOCK_REALTIME in milliseconds since the Unix epoch. */
static inline uint64_t nd_unix_ms(void)
{
	return nd__clock_ns(CLOCK_REALTIME) / 1000000u;
}

#endif
