#include <errno.h>
#include <stdlib.h>

#include "core/u64map.h"

static size_t slot(uint64_t key, size_t cap)
{
	key ^= key >> 33; /* murmur3 finaliser: ids are sequential */
	key *= 0xff51afd7ed558ccdull;
	key ^= key >> 33;
	return (size_t)key & (cap - 1);
}

static int resize(struct nd_u64map *m, size_t cap)
{
	uint64_t *keys = calloc(cap, sizeof(*keys));
	void **vals = calloc(cap, sizeof(*vals));

	if (!keys || !vals) {
		free(keys);
		free(vals);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;

		if (!m->keys[i])
			continue;
		for (j = slot(m->keys[i], cap); keys[j]; j = (j + 1) & (cap - 1))
			;
		keys[j] = m->keys[i];
		vals[j] = m->vals[i];
	}
	free(m->keys);
	free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->cap = cap;
	return 0;
}

int nd_u64map_put(struct nd_u64map *m, uint64_t key, void *val)
{
	size_t i;

	/* a replacement first: it needs no room, so it cannot fail */
	for (i = m->cap ? slot(key, m->cap) : 0; m->cap && m->keys[i];
	     i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key) {
			m->vals[i] = val;
			return 0;
		}
	}
	if ((m->count + 1) * 2 > m->cap &&
	    resize(m, m->cap ? m->cap * 2 : 16))
		return -ENOMEM;
	for (i = slot(key, m->cap); m->keys[i]; i = (i + 1) & (m->cap - 1))
		;
	m->keys[i] = key;
	m->vals[i] = val;
	m->count++;
	return 0;
}

void *nd_u64map_get(const struct nd_u64map *m, uint64_t key)
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot(key, m->cap); m->keys[i];
	     i = (i + 1) & (m->cap - 1))
		if (m->keys[i] == key)
			return m->vals[i];
	return NULL;
}

void *nd_u64map_del(struct nd_u64map *m, uint64_t key)
{
	size_t i, j, k, mask = m->cap - 1;
	void *val;

	if (!m->cap)
		return NULL;
	for (i = slot(key, m->cap); m->keys[i] != key; i = (i + 1) & mask)
		if (!m->keys[i])
			return NULL;
	val = m->vals[i];
	/* Backward shift: pull later entries of the run into the hole. */
	for (j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
		k = slot(m->keys[j], m->cap);
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = 0;
	m->vals[i] = NULL;
	m->count--;
	return val;
}

void nd_u64map_free(struct nd_u64map *m)
{
	free(m->keys);
	free(m->vals);
	m->keys = NULL;
	m->vals = NULL;
	m->cap = m->count = 0;
}
