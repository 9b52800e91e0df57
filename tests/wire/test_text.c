/* Bytes as text (src/wire/text.c): the terminal escapes and the Prometheus
 * label escapes, byte by byte. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "wire/text.h"

TestSuite(text);

static void escaped_is(const char *in, const char *want)
{
	char *got = nd_text_escaped(in);

	cr_assert_not_null(got);
	cr_assert_str_eq(got, want, "escaping %zu bytes", strlen(in));
	free(got);
}

Test(text, controls_and_bytes_that_are_not_utf8_are_escaped)
{
	escaped_is("plain", "plain");
	escaped_is("caf\xc3\xa9 \xe2\x9c\x93", "caf\xc3\xa9 \xe2\x9c\x93");
	escaped_is("a\nb\tc\rd", "a\\nb\\tc\\rd");
	escaped_is("\x01\x1b[31m\x7f", "\\x01\\x1b[31m\\x7f");
	escaped_is("\xc2\x85", "\\xc2\\x85");          /* C1 NEL */
	escaped_is("\xff\xfe", "\\xff\\xfe");           /* not UTF-8 */
	escaped_is("\xe2\x9c", "\\xe2\\x9c");           /* cut short */
	escaped_is("", "");
}

static void prom_is(const char *in, const char *want)
{
	char buf[256] = { 0 };
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");

	cr_assert_not_null(f);
	cr_assert_eq(nd_text_fput_prom(f, in), 0);
	fclose(f);
	cr_assert_str_eq(buf, want);
}

Test(text, prometheus_labels_escape_backslash_quote_newline)
{
	prom_is("web-1", "web-1");
	prom_is("a\\b\"c\nd", "a\\\\b\\\"c\\nd");
	prom_is("x\xff" "y", "x\xef\xbf\xbdy");
	prom_is("caf\xc3\xa9", "caf\xc3\xa9");
}

Test(text, a_failed_write_is_an_error)
{
	char buf[4];
	FILE *f = fmemopen(buf, sizeof(buf), "w");

	cr_assert_not_null(f);
	setvbuf(f, NULL, _IONBF, 0);
	cr_assert_eq(nd_text_fput(f, "far more than four bytes\x01"), -EIO);
	fclose(f);
}
