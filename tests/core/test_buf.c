/*
 * The growable byte buffer (core/buf.h) against a plain model, its growth
 * policy, its limits and out of memory; the clocks of core/time.h against the system's.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc_fail.h"
#include "core/buf.h"
#include "core/time.h"

Test(buf, zeroed_is_empty_and_free_makes_it_so_again)
{
	struct nd_buf b = { 0 };

	cr_assert_eq(b.len, 0);
	nd_buf_consume(&b, 0);
	nd_buf_reset(&b);
	nd_buf_free(&b);             /* freeing an empty buffer is fine */
	cr_assert_eq(nd_buf_append(&b, "", 0), 0);
	cr_assert_eq(nd_buf_append(&b, "abc", 3), 0);
	cr_assert(b.data && b.len == 3 && b.cap >= 3);
	nd_buf_free(&b);
	cr_assert(!b.data && !b.len && !b.cap);
}

Test(buf, matches_a_model_under_random_appends_and_consumes)
{
	enum { OPS = 20000, MAX = 1 << 16 };
	static uint8_t model[MAX], chunk[4096];
	struct nd_buf b = { 0 };
	size_t len = 0;

	srand(11);
	for (int op = 0; op < OPS; op++) {
		size_t n = (size_t)rand() % sizeof(chunk);

		if (rand() % 2 && len + n <= MAX) {
			for (size_t i = 0; i < n; i++)
				chunk[i] = (uint8_t)rand();
			cr_assert_eq(nd_buf_append(&b, chunk, n), 0);
			memcpy(model + len, chunk, n);
			len += n;
		} else {
			n = len ? (size_t)rand() % (len + 1) : 0;
			nd_buf_consume(&b, n);
			memmove(model, model + n, len - n);
			len -= n;
		}
		cr_assert_eq(b.len, len);
		cr_assert(b.cap >= b.len);
		cr_assert(!len || !memcmp(b.data, model, len), "op %d", op);
	}
	nd_buf_free(&b);
}

Test(buf, grows_by_doubling_from_the_minimum)
{
	struct nd_buf b = { 0 };
	uint8_t *p;

	cr_assert_eq(nd_buf_reserve(&b, 1), 0);
	cr_assert_eq(b.cap, ND_BUF_MIN);
	p = b.data;
	cr_assert_eq(nd_buf_reserve(&b, ND_BUF_MIN), 0);
	cr_assert_eq(b.data, p, "room that is there costs no realloc");
	b.len = ND_BUF_MIN;
	cr_assert_eq(nd_buf_reserve(&b, 1), 0);
	cr_assert_eq(b.cap, 2 * ND_BUF_MIN);
	cr_assert_eq(nd_buf_reserve(&b, 5 * ND_BUF_MIN), 0);
	cr_assert_eq(b.cap, 8 * ND_BUF_MIN);
	/* reset keeps the memory */
	nd_buf_reset(&b);
	cr_assert_eq(b.cap, 8 * ND_BUF_MIN);
	nd_buf_free(&b);

	cr_assert_eq(nd_buf_grow_cap(0, 1, 512), 512);
	cr_assert_eq(nd_buf_grow_cap(512, 513, 512), 1024);
	cr_assert_eq(nd_buf_grow_cap(1024, 1000, 512), 1024);
	cr_assert_eq(nd_buf_grow_cap(0, 3, 0), 4);
	cr_assert_eq(nd_buf_grow_cap(SIZE_MAX / 2 + 1, SIZE_MAX, 0), SIZE_MAX,
		     "doubling past SIZE_MAX gives the need itself");
}

Test(buf, refuses_what_cannot_be_had_and_keeps_its_bytes)
{
	struct nd_buf b = { 0 };

	cr_assert_eq(nd_buf_append(&b, "hello", 5), 0);
	cr_assert_eq(nd_buf_reserve(&b, SIZE_MAX), -ENOMEM, "len + n overflows");
	cr_assert_eq(nd_buf_append(&b, "x", SIZE_MAX), -ENOMEM);
	cr_assert_eq(nd_buf_resize(&b, 4), -EINVAL, "under len");
	cr_assert_eq(b.len, 5);
	cr_assert(!memcmp(b.data, "hello", 5));
	/* resize fits exactly, both ways */
	cr_assert_eq(nd_buf_resize(&b, 5), 0);
	cr_assert_eq(b.cap, 5);
	cr_assert_eq(nd_buf_resize(&b, 4096), 0);
	cr_assert_eq(b.cap, 4096);
	cr_assert(!memcmp(b.data, "hello", 5));
	nd_buf_consume(&b, 5);
	cr_assert_eq(nd_buf_resize(&b, 0), 0);
	cr_assert(!b.data && !b.cap);
}

/* Each allocation of a buffer's growth (append, reserve, resize) fails in
 * turn: the call says -ENOMEM and the buffer keeps its bytes and its
 * capacity, and the same call succeeds once memory is back. */
Test(buf, out_of_memory_keeps_the_buffer_as_it_was)
{
	static uint8_t model[1 << 16];
	struct nd_buf b = { 0 };
	size_t fails = 0;

	for (size_t i = 0; i < sizeof(model); i++)
		model[i] = (uint8_t)(i * 7 + 3);
	while (b.len < sizeof(model)) {
		size_t n = b.len ? b.len : 1, cap = b.cap;
		int r;

		if (n > sizeof(model) - b.len)
			n = sizeof(model) - b.len;
		nd_alloc_fail_at(1);
		r = nd_buf_append(&b, model + b.len, n);
		if (nd_alloc_fail_off()) {
			cr_assert_eq(r, -ENOMEM);
			cr_assert_eq(b.cap, cap);
			cr_assert(!b.len || !memcmp(b.data, model, b.len));
			fails++;
			r = nd_buf_append(&b, model + b.len, n);
		}
		cr_assert_eq(r, 0);
		cr_assert(!memcmp(b.data, model, b.len));
	}
	cr_assert(fails >= 8, "only %zu growths", fails); /* 256 .. 64 KiB */
	/* a shrink that cannot be had keeps the larger buffer */
	nd_buf_consume(&b, b.len - 100);
	nd_alloc_fail_at(1);
	cr_assert_eq(nd_buf_resize(&b, 128), -ENOMEM);
	cr_assert(nd_alloc_fail_off());
	cr_assert_eq(b.cap, sizeof(model));
	cr_assert(!memcmp(b.data, model + sizeof(model) - 100, 100));
	nd_buf_free(&b);
}

Test(time, clocks_agree_with_the_system)
{
	struct timespec ts;
	uint64_t mono, coarse, unix_ms, sys_ms;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	mono = nd_mono_ms();
	cr_assert(mono >= (uint64_t)ts.tv_sec * 1000 &&
		  mono - (uint64_t)ts.tv_sec * 1000 < 2000);
	cr_assert(nd_mono_us() / 1000 >= mono);
	cr_assert(nd_mono_ns() / 1000000 >= mono);
	coarse = nd_mono_coarse_ms();
	/* the coarse clock lags by at most a tick or so */
	cr_assert(coarse <= nd_mono_ms() && nd_mono_ms() - coarse < 1000,
		  "coarse %llu", (unsigned long long)coarse);
	clock_gettime(CLOCK_REALTIME, &ts);
	sys_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	unix_ms = nd_unix_ms();
	cr_assert(unix_ms >= sys_ms && unix_ms - sys_ms < 2000);
}
