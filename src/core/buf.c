/* Growable byte buffers: see buf.h. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

size_t nd_buf_grow_cap(size_t cap, size_t need, size_t min)
{
	size_t c = cap > min ? cap : min;

	if (!c)
		c = 1;
	while (c < need) {
		if (c > SIZE_MAX / 2)
			return need;
		c *= 2;
	}
	return c;
}

int nd_buf_resize(struct nd_buf *b, size_t cap)
{
	uint8_t *d;

	if (cap < b->len)
		return -EINVAL;
	if (cap == b->cap)
		return 0;
	if (!cap) {
		nd_buf_free(b);
		return 0;
	}
	d = realloc(b->data, cap);
	if (!d)
		return -ENOMEM;
	b->data = d;
	b->cap = cap;
	return 0;
}

int nd__buf_grow(struct nd_buf *b, size_t n)
{
	if (n > SIZE_MAX - b->len)
		return -ENOMEM;
	if (b->len + n <= b->cap)
		return 0;
	return nd_buf_resize(b, nd_buf_grow_cap(b->cap, b->len + n,
						ND_BUF_MIN));
}

int nd_buf_append(struct nd_buf *b, const void *p, size_t n)
{
	int r = nd_buf_reserve(b, n);

	if (r)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void nd_buf_consume(struct nd_buf *b, size_t n)
{
	if (!n)
		return;
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void nd_buf_free(struct nd_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
