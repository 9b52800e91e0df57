/*
 * Allocation-failure injection for tests. Every test binary is linked with
 * -Wl,--wrap for malloc, calloc, realloc, strdup and strndup (Makefile,
 * ALLOC_WRAP), so the project's own calls to them (src/, tests/) come here;
 * libraries' calls do not. Nothing fails until a test arms it.
 *
 * The usual loop reaches every out-of-memory branch of an operation:
 *
 *	for (long n = 1;; n++) {
 *		nd_alloc_fail_at(n);
 *		rc = operation();
 *		if (!nd_alloc_fail_off())
 *			break;          // it made fewer than n allocations
 *		check that rc is -ENOMEM and nothing changed
 *	}
 */
#ifndef ND_TEST_ALLOC_FAIL_H
#define ND_TEST_ALLOC_FAIL_H

#include <stdbool.h>

/* The nth allocation from now (1: the next) returns NULL; later ones
 * succeed again. */
void nd_alloc_fail_at(long n);
/* Disarms; true when the armed allocation was reached (and failed). */
bool nd_alloc_fail_off(void);

#endif
