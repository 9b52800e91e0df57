/*
 * Node lists (noded/hostlist.h): checking, expanding and folding.
 *
 * One scanner walks an expression for both the check and the expansion, so
 * the two can never disagree on what is valid: scan() validates every part
 * (a name between top-level commas), counts the names it makes and the
 * bytes they take, and only then does expand walk the (now known good)
 * parts again to write them out.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "noded/hostlist.h"

/* What scan() learns of an expression. */
struct scan {
	size_t count;   /* names, duplicates included */
	size_t bytes;   /* their bytes, each with its NUL */
};

/* buf holding "WHAT at position POS" (POS from 1), for the caller to
 * return. c, when not 0, is named in front as 'c' (or \xNN). */
static const char *fail(char *buf, size_t size, size_t pos, int c,
			const char *what)
{
	if (!size)
		return buf;
	if (c > 0x20 && c < 0x7f)
		snprintf(buf, size, "'%c' at position %zu: %s", c, pos + 1,
			 what);
	else if (c)
		snprintf(buf, size, "byte 0x%02x at position %zu: %s",
			 (unsigned)(unsigned char)c, pos + 1, what);
	else
		snprintf(buf, size, "%s at position %zu", what, pos + 1);
	return buf;
}

/* Digits of v in decimal. */
static size_t ndigits(uint64_t v)
{
	size_t n = 1;

	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

/*
 * Reads a number at s[*i] (1..ND_HOSTLIST_DIGITS digits) into *v and its
 * written width into *w; *i moves past it. NULL, or why (in buf).
 */
static const char *number(const char *s, size_t *i, uint64_t *v, size_t *w,
			  char *buf, size_t size)
{
	size_t start = *i;

	*v = 0;
	while (s[*i] >= '0' && s[*i] <= '9') {
		if (*i - start == ND_HOSTLIST_DIGITS)
			return fail(buf, size, start, 0, "number of more than "
				    "9 digits");
		*v = *v * 10 + (uint64_t)(s[*i] - '0');
		(*i)++;
	}
	*w = *i - start;
	return NULL;
}

/*
 * The bracket group whose '[' is at s[open]: checked, with the number of
 * values it holds (*values, at most ND_HOSTLIST_MAX + 1: more is refused
 * by the caller anyway) and the width of its widest (*width). *end is the
 * index of its ']'. NULL, or why.
 */
static const char *group(const char *s, size_t open, size_t *end,
			 uint64_t *values, size_t *width, char *buf,
			 size_t size)
{
	size_t i = open + 1;

	*values = 0;
	*width = 0;
	if (s[i] == ']')
		return fail(buf, size, open, 0, "empty brackets");
	for (;;) {
		uint64_t lo, hi;
		size_t item = i, wlo, whi;
		const char *bad;

		if (s[i] == ',' || s[i] == ']')
			return fail(buf, size, i, 0, "empty range in brackets");
		if (s[i] == '-')
			return fail(buf, size, i, 0, "range without its start");
		if (!s[i])
			return fail(buf, size, open, 0, "'[' not closed");
		if (s[i] < '0' || s[i] > '9')
			return fail(buf, size, i, s[i], "brackets hold numbers "
				    "and ranges, such as [01-05,07]");
		if ((bad = number(s, &i, &lo, &wlo, buf, size)))
			return bad;
		hi = lo;
		whi = wlo;
		if (s[i] == '-') {
			i++;
			if (s[i] < '0' || s[i] > '9')
				return fail(buf, size, i - 1, 0,
					    "range without its end");
			if ((bad = number(s, &i, &hi, &whi, buf, size)))
				return bad;
			if (hi < lo)
				return fail(buf, size, item, 0,
					    "range goes backwards");
		}
		/* a padded low bound pads the range to its width */
		if (wlo > 1 && s[item] == '0' && wlo > *width)
			*width = wlo;
		if (ndigits(hi) > *width)
			*width = ndigits(hi);
		*values += hi - lo + 1;
		if (*values > ND_HOSTLIST_MAX)
			*values = ND_HOSTLIST_MAX + 1;
		if (s[i] == ']') {
			*end = i;
			return NULL;
		}
		if (s[i] == ',') {
			i++;
			continue;
		}
		if (!s[i])
			return fail(buf, size, open, 0, "'[' not closed");
		if (s[i] == '[')
			return fail(buf, size, i, 0, "'[' inside brackets");
		return fail(buf, size, i, s[i], "brackets hold numbers and "
			    "ranges, such as [01-05,07]");
	}
}

/*
 * Checks the part s[start, stop) (one name, with its groups) and adds what
 * it makes to *sc. NULL, or why.
 */
static const char *part(const char *s, size_t start, size_t stop,
			struct scan *sc, char *buf, size_t size)
{
	uint64_t count = 1;
	size_t len = 0, groups = 0;

	if (start == stop)
		return fail(buf, size, start, 0, "empty name");
	for (size_t i = start; i < stop; i++) {
		unsigned char c = (unsigned char)s[i];
		uint64_t values;
		size_t end = i, width;
		const char *bad;

		if (c == ']')
			return fail(buf, size, i, 0, "']' without '['");
		if (c == ' ' || c == '\t')
			return fail(buf, size, i, 0, "blank (a node list "
				    "holds no spaces)");
		if (c < 0x20 || c == 0x7f)
			return fail(buf, size, i, c, "control character");
		if (c != '[') {
			len++;
			continue;
		}
		if (++groups > ND_HOSTLIST_GROUPS)
			return fail(buf, size, i, 0, "more than 8 bracket "
				    "groups in one name");
		if ((bad = group(s, i, &end, &values, &width, buf, size)))
			return bad;
		count *= values;
		if (count > ND_HOSTLIST_MAX || sc->count + count >
		    ND_HOSTLIST_MAX)
			return fail(buf, size, i, 0, "the list makes more "
				    "than 16384 names");
		len += width;
		i = end;
	}
	if (len > ND_HOSTLIST_NAME_MAX)
		return fail(buf, size, start, 0, "name of more than 255 "
			    "bytes");
	sc->count += (size_t)count;
	sc->bytes += (size_t)count * (len + 1);
	return NULL;
}

/* The end of the part that starts at s[i]: the next comma outside
 * brackets, or the end of s. */
static size_t part_end(const char *s, size_t i)
{
	bool in = false;

	for (; s[i]; i++) {
		if (s[i] == '[')
			in = true;
		else if (s[i] == ']')
			in = false;
		else if (s[i] == ',' && !in)
			break;
	}
	return i;
}

static const char *scan(const char *expr, struct scan *sc, char *buf,
			size_t size)
{
	size_t i = 0;

	memset(sc, 0, sizeof(*sc));
	if (!expr || !expr[0]) {
		if (size)
			snprintf(buf, size, "empty list");
		return buf;
	}
	for (;;) {
		size_t stop = part_end(expr, i);
		const char *bad = part(expr, i, stop, sc, buf, size);

		if (bad)
			return bad;
		if (!expr[stop])
			return NULL;
		i = stop + 1;
		if (!expr[i])
			return fail(buf, size, stop, 0, "empty name");
	}
}

const char *nd_hostlist_check(const char *expr, size_t *count, char *buf,
			      size_t size)
{
	struct scan sc;
	const char *bad = scan(expr, &sc, buf, size);

	if (!bad && count)
		*count = sc.count;
	return bad;
}

/* ---- expansion ---- */

struct out {
	char **names;
	size_t n;
	char *text;             /* where the next name goes */
};

/*
 * Writes every name of the (valid) part s[i, stop) that starts with
 * name[0, len) (room for ND_HOSTLIST_NAME_MAX + 1 bytes).
 */
static void emit(const char *s, size_t i, size_t stop, char *name,
		 size_t len, struct out *o)
{
	size_t close;

	while (i < stop && s[i] != '[')
		name[len++] = s[i++];
	if (i == stop) {
		o->names[o->n++] = o->text;
		memcpy(o->text, name, len);
		o->text[len] = '\0';
		o->text += len + 1;
		return;
	}
	close = i + 1;
	while (s[close] != ']')
		close++;
	/* each range of the group, then the rest of the part after it */
	for (size_t j = i + 1; j < close; j++) {
		size_t item = j, wlo = 0, whi = 0, width;
		uint64_t lo, hi;

		number(s, &j, &lo, &wlo, NULL, 0);
		hi = lo;
		if (s[j] == '-') {
			j++;
			number(s, &j, &hi, &whi, NULL, 0);
		}
		width = wlo > 1 && s[item] == '0' ? wlo : 0;
		for (uint64_t v = lo; v <= hi; v++) {
			int w = snprintf(name + len, ND_HOSTLIST_NAME_MAX + 1 -
					 len, "%0*" PRIu64, (int)width, v);

			emit(s, close + 1, stop, name, len + (size_t)w, o);
		}
	}
}

/* Index order by name (names: arg), then by index: the first written of
 * equal names comes first. */
static int by_name(const void *a, const void *b, void *arg)
{
	char *const *names = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(names[x], names[y]);

	return c ? c : (x > y) - (x < y);
}

int nd_hostlist_expand(const char *expr, struct nd_hostlist *hl, char *buf,
		       size_t size)
{
	char name[ND_HOSTLIST_NAME_MAX + 1];
	struct out o = { 0 };
	struct scan sc;
	size_t *idx, k = 0, i = 0;
	bool *dup;
	char *mem;

	memset(hl, 0, sizeof(*hl));
	if (scan(expr, &sc, buf, size))
		return -EINVAL;
	mem = malloc(2 * sc.count * sizeof(char *) + sc.bytes);
	if (!mem)
		return -ENOMEM;
	idx = malloc(sc.count * (sizeof(*idx) + sizeof(*dup)));
	if (!idx)
		goto err_free_mem;
	dup = (bool *)(idx + sc.count);
	o.names = (char **)mem;
	o.text = mem + 2 * sc.count * sizeof(char *);
	for (;;) {
		size_t stop = part_end(expr, i);

		emit(expr, i, stop, name, 0, &o);
		if (!expr[stop])
			break;
		i = stop + 1;
	}
	/* duplicates: all but the first written of each name go */
	for (i = 0; i < o.n; i++)
		idx[i] = i;
	qsort_r(idx, o.n, sizeof(*idx), by_name, o.names);
	hl->sorted = o.names + sc.count;
	for (i = 0; i < o.n; i++) {
		dup[idx[i]] = i && !strcmp(o.names[idx[i]],
					   o.names[idx[i - 1]]);
		if (!dup[idx[i]])
			hl->sorted[k++] = o.names[idx[i]];
	}
	k = 0;
	for (i = 0; i < o.n; i++)
		if (!dup[i])
			o.names[k++] = o.names[i];
	hl->names = o.names;
	hl->n = k;
	free(idx);
	return 0;

err_free_mem:
	free(mem);
	return -ENOMEM;
}

void nd_hostlist_free(struct nd_hostlist *hl)
{
	free(hl->names);
	memset(hl, 0, sizeof(*hl));
}

bool nd_hostlist_has(const struct nd_hostlist *hl, const char *name)
{
	size_t lo = 0, hi = hl->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(hl->sorted[mid], name);

		if (!c)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* ---- folding ---- */

/* One name, split around its last run of digits. */
struct fname {
	const char *name;
	size_t plen;            /* bytes before the digits (all: no digits) */
	size_t dlen;            /* the digits' (0: none, or too many) */
	uint64_t val;
	size_t pad;             /* the width it is written at, 0: as is */
};

/* Text before and after the digits equal? */
static int frame_cmp(const struct fname *x, const struct fname *y)
{
	const char *xs = x->name + x->plen + x->dlen,
		   *ys = y->name + y->plen + y->dlen;
	size_t m = x->plen < y->plen ? x->plen : y->plen;
	int c = memcmp(x->name, y->name, m);

	if (c)
		return c;
	if (x->plen != y->plen)
		return x->plen < y->plen ? -1 : 1;
	if ((c = strcmp(xs, ys)))
		return c;
	return (y->dlen == 0) - (x->dlen == 0); /* no digits first */
}

static int fname_cmp(const void *a, const void *b)
{
	const struct fname *x = a, *y = b;
	int c = frame_cmp(x, y);

	if (c)
		return c;
	if (x->pad != y->pad)
		return x->pad < y->pad ? -1 : 1;
	return (x->val > y->val) - (x->val < y->val);
}

char *nd_hostlist_fold(char *const *names, size_t n)
{
	struct fname *f = calloc(n ? n : 1, sizeof(*f));
	size_t cap = 1, len = 0;
	char *out;

	for (size_t i = 0; i < n; i++)
		cap += strlen(names[i]) + 3;
	out = malloc(cap);
	if (!f || !out) {
		free(f);
		free(out);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *s = names[i];
		size_t l = strlen(s), e = l, b;

		while (e && !(s[e - 1] >= '0' && s[e - 1] <= '9'))
			e--;
		for (b = e; b && s[b - 1] >= '0' && s[b - 1] <= '9'; b--)
			;
		f[i].name = s;
		f[i].plen = b;
		f[i].dlen = e - b;
		if (!f[i].dlen || f[i].dlen > 18) {
			f[i].plen = l;  /* a plain name */
			f[i].dlen = 0;
			continue;
		}
		for (size_t j = b; j < e; j++)
			f[i].val = f[i].val * 10 + (uint64_t)(s[j] - '0');
		if (s[b] == '0' && f[i].dlen > 1)
			f[i].pad = f[i].dlen;
	}
	/* An unpadded number as wide as a padded one of the same frame is
	 * written the same way at that width (10 beside 08, 09): it joins
	 * them, so web08,web09,web10 is web[08-10]. */
	qsort(f, n, sizeof(*f), fname_cmp);
	for (size_t i = 0; i < n;) {
		size_t j = i;

		while (j < n && !frame_cmp(&f[i], &f[j]))
			j++;
		for (size_t a = i; a < j; a++) {
			if (f[a].pad || !f[a].dlen)
				continue;
			for (size_t p = i; p < j; p++)
				if (f[p].pad == f[a].dlen) {
					f[a].pad = f[a].dlen;
					break;
				}
		}
		i = j;
	}
	qsort(f, n, sizeof(*f), fname_cmp);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1, vals = 1;

		/* the group: same frame and padding; equal values once */
		while (j < n && !frame_cmp(&f[i], &f[j]) && f[j].dlen &&
		       f[j].pad == f[i].pad) {
			vals += f[j].val != f[j - 1].val;
			j++;
		}
		if (len)
			out[len++] = ',';
		if (!f[i].dlen || vals == 1) {
			size_t l = strlen(f[i].name);

			memcpy(out + len, f[i].name, l);
			len += l;
			/* a plain name given twice */
			while (j < n && !f[i].dlen && !strcmp(f[j].name,
							      f[i].name))
				j++;
			i = j;
			continue;
		}
		memcpy(out + len, f[i].name, f[i].plen);
		len += f[i].plen;
		out[len++] = '[';
		for (size_t a = i; a < j;) {
			size_t b = a;

			while (b + 1 < j && f[b + 1].val <= f[b].val + 1)
				b++;
			if (a != i)
				out[len++] = ',';
			len += (size_t)sprintf(out + len, "%0*" PRIu64,
					       (int)f[a].pad, f[a].val);
			if (f[b].val != f[a].val)
				len += (size_t)sprintf(out + len, "-%0*" PRIu64,
						       (int)f[a].pad, f[b].val);
			a = b + 1;
		}
		out[len++] = ']';
		strcpy(out + len, f[i].name + f[i].plen + f[i].dlen);
		len += strlen(out + len);
		i = j;
	}
	out[len] = '\0';
	free(f);
	return out;
}
