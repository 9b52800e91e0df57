/*
 * A growable byte buffer: the bytes are data[0, len), room for cap. A zeroed
 * struct is a valid empty buffer; nd_buf_free() makes it one again. The
 * buffer owns data (malloc'd); whoever embeds the struct owns the buffer.
 *
 * Growth doubles the capacity, from ND_BUF_MIN, until the bytes fit
 * (nd_buf_grow_cap), so appending n bytes one by one costs O(n) copies. A
 * failed action leaves the buffer as it was.
 *
 * Consuming from the front memmoves what is left to data[0]: the bytes
 * always start at data, so a buffer can be handed to a parser or a send as
 * it is. A caller that drains in many small steps (a socket taking part of
 * a large output) keeps its own read offset and consumes once at the end,
 * or when it needs the room (the client library's output does).
 *
 * Where one of these does not fit, a module keeps its own: a ring, a buffer
 * with another owner, an array of structs (say why there).
 */
#ifndef ND_CORE_BUF_H
#define ND_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

#define ND_BUF_MIN 256

struct nd_buf {
	uint8_t *data;
	size_t len, cap;
};

/*
 * The capacity that holds need bytes under the growth policy: cap (or min,
 * when larger) doubled until it does; need itself when doubling would
 * overflow. For a caller that must account for memory before it grows
 * (the transport's input budget): compute, charge, then nd_buf_resize().
 */
size_t nd_buf_grow_cap(size_t cap, size_t need, size_t min);

/* Sets the capacity to exactly cap (>= len; 0 frees the memory): to grow
 * as the caller decided, or to give memory back. 0 or -ENOMEM (b is kept
 * as it was). */
int nd_buf_resize(struct nd_buf *b, size_t cap);

/* The slow path of nd_buf_reserve. */
int nd__buf_grow(struct nd_buf *b, size_t n);

/*
 * Room for n more bytes at data + len (write them, then add n to len).
 * 0, or -ENOMEM (out of memory, or len + n overflows). Inline: the check is
 * one compare on paths that run per frame.
 */
static inline int nd_buf_reserve(struct nd_buf *b, size_t n)
{
	if (n <= b->cap - b->len)
		return 0;
	return nd__buf_grow(b, n);
}

/* Copies p[0, n) after the bytes. 0 or -ENOMEM (nothing appended). */
int nd_buf_append(struct nd_buf *b, const void *p, size_t n);

/* Drops the first n (<= len) bytes; the rest move to data[0]. The memory
 * is kept. */
void nd_buf_consume(struct nd_buf *b, size_t n);

/* Empties b, keeping its memory for reuse. */
static inline void nd_buf_reset(struct nd_buf *b)
{
	b->len = 0;
}

/* Frees the memory; b is a zeroed, empty buffer after. */
void nd_buf_free(struct nd_buf *b);

#endif
