/*
 * Unit tests for src/wire/hostlist.c (noded/hostlist.h): node lists in the
 * pdsh/clush syntax, their bad input (each with its exact message and
 * position), the bounds on what a short expression may expand to, and the
 * folding back into range form.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "noded/hostlist.h"

/* expr expanded, names joined with ' ' (static). */
static const char *expand(const char *expr)
{
	static char out[65536];
	struct nd_hostlist hl;
	char why[128];
	size_t len = 0, count = 0;
	int r = nd_hostlist_expand(expr, &hl, why, sizeof(why));

	cr_assert_eq(r, 0, "expanding '%s': %d (%s)", expr, r, why);
	cr_assert_null(nd_hostlist_check(expr, &count, why, sizeof(why)));
	cr_assert_geq(count, hl.n, "check counts duplicates too");
	out[0] = '\0';
	for (size_t i = 0; i < hl.n; i++) {
		size_t l = strlen(hl.names[i]);

		cr_assert_lt(len + l + 2, sizeof(out));
		if (i)
			out[len++] = ' ';
		memcpy(out + len, hl.names[i], l + 1);
		len += l;
		cr_expect(nd_hostlist_has(&hl, hl.names[i]));
	}
	nd_hostlist_free(&hl);
	return out;
}

/* Why expr is refused (static); the check and the expansion agree. */
static const char *refused(const char *expr)
{
	static char why[256];
	char why2[256];
	struct nd_hostlist hl;
	size_t count = 12345;

	cr_assert_not_null(nd_hostlist_check(expr, &count, why, sizeof(why)),
			   "'%s' was accepted", expr);
	cr_expect_eq(count, 12345, "count set on a refused list");
	cr_assert_eq(nd_hostlist_expand(expr, &hl, why2, sizeof(why2)),
		     -EINVAL);
	cr_expect_str_eq(why, why2);
	cr_expect_null(hl.names);
	return why;
}

#define EXPECT_EXPANDS(expr, want) cr_expect_str_eq(expand(expr), (want))
#define EXPECT_REFUSED(expr, want) cr_expect_str_eq(refused(expr), (want))

Test(hostlist, plain_names_and_ranges)
{
	EXPECT_EXPANDS("db1", "db1");
	EXPECT_EXPANDS("a,b,c", "a b c");
	EXPECT_EXPANDS("web[1-3]", "web1 web2 web3");
	EXPECT_EXPANDS("web[01-03],db1", "web01 web02 web03 db1");
	EXPECT_EXPANDS("n[1-3,7,10-11]", "n1 n2 n3 n7 n10 n11");
	EXPECT_EXPANDS("n[8-11]", "n8 n9 n10 n11");
	EXPECT_EXPANDS("n[08-11]", "n08 n09 n10 n11");
	EXPECT_EXPANDS("n[098-101]", "n098 n099 n100 n101");
	EXPECT_EXPANDS("[1-2]x", "1x 2x");
	EXPECT_EXPANDS("x[5]", "x5");
	EXPECT_EXPANDS("x[5-5]", "x5");
	EXPECT_EXPANDS("x[0]", "x0");
	EXPECT_EXPANDS("x[00-01]", "x00 x01");
	/* several groups: the first varies slowest */
	EXPECT_EXPANDS("r[1-2]-n[01-02]", "r1-n01 r1-n02 r2-n01 r2-n02");
	EXPECT_EXPANDS("a[1-2]b[3,5]c", "a1b3c a1b5c a2b3c a2b5c");
	/* anything but brackets, commas and blanks is part of a name */
	EXPECT_EXPANDS("w-1.example:7,ü", "w-1.example:7 ü");
}

Test(hostlist, duplicates_kept_once_where_first_written)
{
	EXPECT_EXPANDS("b,a,b", "b a");
	EXPECT_EXPANDS("w[1-3],w2,w[2-4]", "w1 w2 w3 w4");
	EXPECT_EXPANDS("w[1-3,2-4]", "w1 w2 w3 w4");
}

Test(hostlist, bad_input_named_with_its_position)
{
	EXPECT_REFUSED("", "empty list");
	EXPECT_REFUSED(",a", "empty name at position 1");
	EXPECT_REFUSED("a,", "empty name at position 2");
	EXPECT_REFUSED("a,,b", "empty name at position 3");
	EXPECT_REFUSED("web[01-03", "'[' not closed at position 4");
	EXPECT_REFUSED("web[", "'[' not closed at position 4");
	EXPECT_REFUSED("web[1,", "'[' not closed at position 4");
	EXPECT_REFUSED("web[1-", "range without its end at position 6");
	EXPECT_REFUSED("web01]", "']' without '[' at position 6");
	EXPECT_REFUSED("a[1]b]", "']' without '[' at position 6");
	EXPECT_REFUSED("a[1[2]]", "'[' inside brackets at position 4");
	EXPECT_REFUSED("web[]", "empty brackets at position 4");
	EXPECT_REFUSED("web[1,,3]", "empty range in brackets at position 7");
	EXPECT_REFUSED("web[,1]", "empty range in brackets at position 5");
	EXPECT_REFUSED("web[1,]", "empty range in brackets at position 7");
	EXPECT_REFUSED("web[-3]", "range without its start at position 5");
	EXPECT_REFUSED("web[3-]", "range without its end at position 6");
	EXPECT_REFUSED("web[5-3]", "range goes backwards at position 5");
	EXPECT_REFUSED("web[1-2-3]", "'-' at position 8: brackets hold "
		       "numbers and ranges, such as [01-05,07]");
	EXPECT_REFUSED("web[a-b]", "'a' at position 5: brackets hold "
		       "numbers and ranges, such as [01-05,07]");
	EXPECT_REFUSED("web[1/2]", "'/' at position 6: brackets hold "
		       "numbers and ranges, such as [01-05,07]");
	EXPECT_REFUSED("web 1", "blank (a node list holds no spaces) at "
		       "position 4");
	EXPECT_REFUSED("a, b", "blank (a node list holds no spaces) at "
		       "position 3");
	EXPECT_REFUSED("a\nb", "byte 0x0a at position 2: control character");
	EXPECT_REFUSED("x[1234567890]", "number of more than 9 digits at "
		       "position 3");
}

Test(hostlist, expansion_is_bounded_before_anything_is_made)
{
	char big[600];

	/* one range, or the product of several, over ND_HOSTLIST_MAX */
	EXPECT_REFUSED("n[1-16385]", "the list makes more than 16384 names "
		       "at position 2");
	EXPECT_REFUSED("n[0-999999999]", "the list makes more than 16384 "
		       "names at position 2");
	EXPECT_REFUSED("a[1-200]b[1-200]", "the list makes more than 16384 "
		       "names at position 10");
	/* or the sum over the parts */
	EXPECT_REFUSED("a[1-10000],b[1-10000]", "the list makes more than "
		       "16384 names at position 13");
	EXPECT_REFUSED("a[1-2]b[1-2]c[1-2]d[1-2]e[1-2]f[1-2]g[1-2]h[1-2]"
		       "i[1-2]", "more than 8 bracket groups in one name at "
		       "position 50");
	memset(big, 'x', 256);
	big[256] = '\0';
	EXPECT_REFUSED(big, "name of more than 255 bytes at position 1");
	/* the digits a group adds count toward the length */
	memset(big, 'x', 251);
	strcpy(big + 251, "[1-100000]");
	EXPECT_REFUSED(big, "the list makes more than 16384 names at "
		       "position 252");
	strcpy(big + 251, "[1-10000]");
	EXPECT_REFUSED(big, "name of more than 255 bytes at position 1");
	/* the bound itself is fine */
	{
		struct nd_hostlist hl;
		size_t count;

		cr_assert_null(nd_hostlist_check("n[1-16384]", &count, NULL,
						 0));
		cr_expect_eq(count, 16384);
		cr_assert_eq(nd_hostlist_expand("n[00001-16384]", &hl, NULL,
						0), 0);
		cr_expect_eq(hl.n, 16384);
		cr_expect_str_eq(hl.names[16383], "n16384");
		cr_expect(nd_hostlist_has(&hl, "n00042"));
		cr_expect(!nd_hostlist_has(&hl, "n42"));
		nd_hostlist_free(&hl);
	}
}

Test(hostlist, message_cut_to_the_buffer)
{
	char small[8];

	memset(small, 'z', sizeof(small));
	cr_assert_eq(nd_hostlist_check("a,,b", NULL, small, sizeof(small)),
		     small);
	cr_expect_str_eq(small, "empty n");
}

/* names (space-separated, modified) folded (static). */
static const char *fold(const char *spaced)
{
	static char out[4096];
	char copy[4096], *names[512], *save = NULL, *f;
	size_t n = 0;

	snprintf(copy, sizeof(copy), "%s", spaced);
	for (char *w = strtok_r(copy, " ", &save); w;
	     w = strtok_r(NULL, " ", &save))
		names[n++] = w;
	f = nd_hostlist_fold(names, n);
	cr_assert_not_null(f);
	snprintf(out, sizeof(out), "%s", f);
	free(f);
	return out;
}

#define EXPECT_FOLDS(names, want) cr_expect_str_eq(fold(names), (want))

Test(hostlist, fold_is_the_inverse)
{
	EXPECT_FOLDS("", "");
	EXPECT_FOLDS("db1", "db1");
	EXPECT_FOLDS("web01 web02 web03 web07 db1", "db1,web[01-03,07]");
	EXPECT_FOLDS("web07 web03 web01 web02", "web[01-03,07]");
	EXPECT_FOLDS("n1 n2 n10 n11 n3", "n[1-3,10-11]");
	EXPECT_FOLDS("n08 n09 n10", "n[08-10]");
	EXPECT_FOLDS("n8 n9 n10", "n[8-10]");
	/* different padding, different groups */
	EXPECT_FOLDS("n1 n01 n02", "n1,n[01-02]");
	EXPECT_FOLDS("a b a", "a,b");
	EXPECT_FOLDS("w1 w1 w2", "w[1-2]");
	EXPECT_FOLDS("w5 w5", "w5");
	/* the last digits vary; text after them is kept */
	EXPECT_FOLDS("r1-n01 r1-n02 r2-n01", "r1-n[01-02],r2-n01");
	EXPECT_FOLDS("a1.x a2.x a3.y", "a[1-2].x,a3.y");
	EXPECT_FOLDS("x", "x");
	EXPECT_FOLDS("x 1 2 3", "[1-3],x");
}

Test(hostlist, fold_then_expand_round_trips)
{
	static const char *const lists[] = {
		"web[01-20],db1", "n[1-3,10-11]", "a[1-2]b[3,5]c",
		"r[1-3]-n[001-004],login[1-2],x", "n[098-101]",
	};

	for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
		struct nd_hostlist hl, back;
		char *f;

		cr_assert_eq(nd_hostlist_expand(lists[k], &hl, NULL, 0), 0);
		f = nd_hostlist_fold(hl.names, hl.n);
		cr_assert_not_null(f);
		cr_assert_eq(nd_hostlist_expand(f, &back, NULL, 0), 0,
			     "fold of '%s' is '%s', not a list", lists[k], f);
		cr_expect_eq(back.n, hl.n, "'%s' -> '%s'", lists[k], f);
		for (size_t i = 0; i < hl.n; i++)
			cr_expect(nd_hostlist_has(&back, hl.names[i]),
				  "'%s' -> '%s' lost %s", lists[k], f,
				  hl.names[i]);
		free(f);
		nd_hostlist_free(&back);
		nd_hostlist_free(&hl);
	}
}
