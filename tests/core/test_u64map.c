/* The u64 map against a plain array model, with random puts and deletes. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "core/u64map.h"

Test(u64map, matches_a_model_under_random_churn)
{
	enum { KEYS = 2000, OPS = 200000 };
	static void *model[KEYS + 1];
	struct nd_u64map m = { 0 };
	size_t live = 0;

	srand(7);
	for (int op = 0; op < OPS; op++) {
		/* sequential-ish keys, like task ids, plus high bits */
		uint64_t k = 1 + (uint64_t)(rand() % KEYS);
		uint64_t key = k | (k % 3 == 0 ? 1ull << 48 : 0);
		size_t idx = (size_t)k;

		if (rand() % 3) {
			cr_assert_eq(nd_u64map_put(&m, key, (void *)(uintptr_t)op + 1), 0);
			if (!model[idx])
				live++;
			model[idx] = (void *)(uintptr_t)op + 1;
		} else {
			void *v = nd_u64map_del(&m, key);

			cr_assert_eq(v, model[idx], "del %llu: got %p want %p",
				     (unsigned long long)key, v, model[idx]);
			if (model[idx])
				live--;
			model[idx] = NULL;
		}
		cr_assert_eq(m.count, live);
	}
	for (uint64_t k = 1; k <= KEYS; k++) {
		uint64_t key = k | (k % 3 == 0 ? 1ull << 48 : 0);

		cr_assert_eq(nd_u64map_get(&m, key), model[k], "key %llu",
			     (unsigned long long)key);
	}
	cr_assert_null(nd_u64map_get(&m, 999999));
	nd_u64map_free(&m);
}
