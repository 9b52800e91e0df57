/*
 * A map from nonzero uint64 keys to pointers: open addressing, linear
 * probing, backward-shift deletion, power-of-two capacity kept at most half
 * full. A zeroed struct is an empty map.
 */
#ifndef ND_CORE_U64MAP_H
#define ND_CORE_U64MAP_H

#include <stddef.h>
#include <stdint.h>

struct nd_u64map {
	uint64_t *keys;   /* 0: empty slot */
	void **vals;
	size_t cap, count;
};

/* Inserts or replaces. Returns 0 or -ENOMEM (never when key was there).
 * key must not be 0. */
int nd_u64map_put(struct nd_u64map *m, uint64_t key, void *val);
void *nd_u64map_get(const struct nd_u64map *m, uint64_t key);
/* Removes key; returns its value or NULL. */
void *nd_u64map_del(struct nd_u64map *m, uint64_t key);
void nd_u64map_free(struct nd_u64map *m);

#endif
