/* Bytes as text for every view, and the rule for names: see text.h. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire/text.h"

/* Bytes of a refused name quoted in the message about it. */
#define NAME_QUOTE_MAX 64

size_t nd_utf8_seq(const unsigned char *s, size_t len)
{
	uint32_t cp;
	size_t n;

	if (!len)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] < 0xc2)        /* continuation byte, or overlong 2-byte */
		return 0;
	if (s[0] < 0xe0) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] < 0xf0) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] < 0xf5) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

bool nd_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	while (len) {
		size_t n = nd_utf8_seq(p, len);

		if (!n)
			return false;
		p += n;
		len -= n;
	}
	return true;
}

/* A C1 control (U+0080..U+009F) starts here: C2 80..C2 9F. */
static bool c1_at(const unsigned char *p, size_t n)
{
	return n == 2 && p[0] == 0xc2 && p[1] < 0xa0;
}

/*
 * Writes s to f one UTF-8 sequence at a time: esc writes the sequence at p
 * (*n bytes, 0 when not valid UTF-8; it may set *n to what it consumed)
 * in its escaped form and returns 0, or returns 1 to have it written as it
 * is, or a negative number when writing failed. 0 or -EIO.
 */
static int put_escaped(FILE *f, const char *s,
		       int (*esc)(FILE *f, const unsigned char *p, size_t *n))
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = s ? strlen(s) : 0;

	while (len) {
		size_t n = nd_utf8_seq(p, len);
		int r = esc(f, p, &n);

		if (r > 0)
			r = fwrite(p, 1, n, f) == n ? 0 : EOF;
		if (r < 0)
			return -EIO;
		p += n;
		len -= n;
	}
	return 0;
}

/* An escape's result from what fputs or fprintf returned. */
static int written(int r)
{
	return r < 0 ? -1 : 0;
}

/* nd_text_fput's escapes: controls and bytes that are not UTF-8 as \xHH. */
static int esc_text(FILE *f, const unsigned char *p, size_t *n)
{
	if (*n == 1 && (p[0] < 0x20 || p[0] == 0x7f))
		return written(p[0] == '\n' ? fputs("\\n", f) :
			       p[0] == '\t' ? fputs("\\t", f) :
			       p[0] == '\r' ? fputs("\\r", f) :
					      fprintf(f, "\\x%02x", p[0]));
	if (*n && !c1_at(p, *n))
		return 1;
	if (!*n)
		*n = 1;
	for (size_t i = 0; i < *n; i++)
		if (fprintf(f, "\\x%02x", p[i]) < 0)
			return -1;
	return 0;
}

int nd_text_fput(FILE *f, const char *s)
{
	return put_escaped(f, s, esc_text);
}

char *nd_text_escaped(const char *s)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	int r;

	if (!f)
		return NULL;
	r = nd_text_fput(f, s);
	if (fclose(f) || r) {
		free(out);
		return NULL;
	}
	return out;
}

/* Prometheus label escapes; bytes that are not UTF-8 become U+FFFD. */
static int esc_prom(FILE *f, const unsigned char *p, size_t *n)
{
	if (!*n) {
		*n = 1;
		return written(fputs("\xef\xbf\xbd", f));   /* U+FFFD */
	}
	return p[0] == '\\' ? written(fputs("\\\\", f)) :
	       p[0] == '"' ? written(fputs("\\\"", f)) :
	       p[0] == '\n' ? written(fputs("\\n", f)) : 1;
}

int nd_text_fput_prom(FILE *f, const char *s)
{
	return put_escaped(f, s, esc_prom);
}

const char *nd_text_name_problem(const char *s, char *buf, size_t size)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s), off = 0;

	while (off < len) {
		size_t n = nd_utf8_seq(p + off, len - off);

		if (!n) {
			snprintf(buf, size, "is not valid UTF-8 (byte 0x%02x "
				 "at offset %zu)", p[off], off);
			return buf;
		}
		if ((n == 1 && (p[off] < 0x20 || p[off] == 0x7f)) ||
		    c1_at(p + off, n)) {
			snprintf(buf, size, "holds a control character "
				 "(0x%02x at offset %zu)", p[off + n - 1],
				 off);
			return buf;
		}
		off += n;
	}
	return NULL;
}

const char *nd_text_name_error(const char *what, const char *s, char *buf,
			       size_t size)
{
	char why[96], *head, *esc;
	size_t len;

	if (!nd_text_name_problem(s, why, sizeof(why)))
		return NULL;
	/* Only the head is quoted: the input may be megabytes. */
	len = strnlen(s, NAME_QUOTE_MAX + 1);
	head = strndup(s, NAME_QUOTE_MAX);
	esc = head ? nd_text_escaped(head) : NULL;
	snprintf(buf, size, "%s '%s'%s %s", what, esc ? esc : "?",
		 len > NAME_QUOTE_MAX ? "..." : "", why);
	free(esc);
	free(head);
	return buf;
}
