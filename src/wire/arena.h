/*
 * Bump allocator for protobuf-c decoding: one per shard, reset after each
 * batch of completions, so decoding a request costs no malloc. Free is a
 * no-op; memory comes back at nd_arena_reset(). A request larger than the
 * arena's block gets a block of its own, released at the next reset.
 */
#ifndef ND_WIRE_ARENA_H
#define ND_WIRE_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

struct nd_arena_block;

struct nd_arena {
	ProtobufCAllocator pc;          /* hand &arena->pc to protobuf-c */
	struct nd_arena_block *head;    /* current block, kept across resets */
	struct nd_arena_block *big;     /* oversize blocks, freed at reset */
	size_t block_size;
	size_t used;
	bool failed;    /* an allocation failed (set until cleared): a decode
			 * that returned NULL ran out of memory, and may not
			 * have met bad bytes at all */
};

/* block_size 0: 64 KiB. Returns 0 or -ENOMEM. */
int nd_arena_init(struct nd_arena *a, size_t block_size);
void nd_arena_reset(struct nd_arena *a);
void nd_arena_close(struct nd_arena *a);
void *nd_arena_alloc(struct nd_arena *a, size_t n);

#endif
