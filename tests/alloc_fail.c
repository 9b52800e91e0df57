/* Allocation-failure injection: see alloc_fail.h. */
#include <stdatomic.h>
#include <stddef.h>

#include "alloc_fail.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static atomic_long left;         /* allocations until the failing one; 0: off */
static atomic_bool hit;

void nd_alloc_fail_at(long n)
{
	atomic_store(&hit, false);
	atomic_store(&left, n > 0 ? n : 0);
}

bool nd_alloc_fail_off(void)
{
	atomic_store(&left, 0);
	return atomic_load(&hit);
}

/* Is this allocation the one to fail? */
static bool fail_now(void)
{
	long n = atomic_load(&left);

	while (n > 0) {
		if (atomic_compare_exchange_weak(&left, &n, n - 1)) {
			if (n != 1)
				return false;
			atomic_store(&hit, true);
			return true;
		}
	}
	return false;
}

void *__wrap_malloc(size_t size)
{
	return fail_now() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	return fail_now() ? NULL : __real_realloc(p, size);
}

char *__wrap_strdup(const char *s)
{
	return fail_now() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	return fail_now() ? NULL : __real_strndup(s, n);
}
