#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "wire/arena.h"

struct nd_arena_block {
	struct nd_arena_block *next;
	size_t size;
	max_align_t data[];
};

static struct nd_arena_block *block_new(size_t size)
{
	struct nd_arena_block *b = malloc(sizeof(*b) + size);

	if (b) {
		b->next = NULL;
		b->size = size;
	}
	return b;
}

static void *pc_alloc(void *data, size_t n)
{
	return nd_arena_alloc(data, n);
}

static void pc_free(void *data, void *p)
{
	(void)data;
	(void)p;
}

int nd_arena_init(struct nd_arena *a, size_t block_size)
{
	a->block_size = block_size ? block_size : 64 * 1024;
	a->head = block_new(a->block_size);
	if (!a->head)
		return -ENOMEM;
	a->big = NULL;
	a->used = 0;
	a->failed = false;
	a->pc.alloc = pc_alloc;
	a->pc.free = pc_free;
	a->pc.allocator_data = a;
	return 0;
}

void *nd_arena_alloc(struct nd_arena *a, size_t n)
{
	struct nd_arena_block *b;
	size_t at = (a->used + 15) & ~(size_t)15;

	if (at + n <= a->head->size) {
		a->used = at + n;
		return (char *)a->head->data + at;
	}
	/* Out of room: a block of its own, linked for release at reset. */
	b = block_new(n);
	if (!b) {
		a->failed = true;
		return NULL;
	}
	b->next = a->big;
	a->big = b;
	return b->data;
}

void nd_arena_reset(struct nd_arena *a)
{
	struct nd_arena_block *b = a->big, *next;

	for (; b; b = next) {
		next = b->next;
		free(b);
	}
	a->big = NULL;
	a->used = 0;
}

void nd_arena_close(struct nd_arena *a)
{
	nd_arena_reset(a);
	free(a->head);
	a->head = NULL;
}
