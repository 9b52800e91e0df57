/*
 * Node lists in the hostlist syntax of pdsh and clush, written once for the
 * CLI, the HTTP API and the master (src/wire/hostlist.c).
 *
 *   web[01-20],db1         web01 ... web20 and db1
 *   rack[1-2]-n[01-03]     several bracket groups: every combination, the
 *                          first group varying slowest (rack1-n01, rack1-n02,
 *                          rack1-n03, rack2-n01, ...)
 *   n[1-3,7,10-11]         lists and ranges inside brackets
 *
 * Commas outside brackets separate names; inside, they separate the
 * numbers and ranges (LOW-HIGH, LOW <= HIGH) of the group. A bound written
 * with leading zeros sets the width of every number of its range (01-10:
 * 01, 02, ... 10). A name may not hold blanks or control characters (a node
 * whose name does, or holds '[', ']' or ',', is targeted by --node alone).
 *
 * Bounds, so that a short expression cannot make a huge one: at most
 * ND_HOSTLIST_MAX names in all (counted before anything is expanded), each
 * at most ND_HOSTLIST_NAME_MAX bytes, at most ND_HOSTLIST_GROUPS bracket
 * groups in one name, numbers of at most ND_HOSTLIST_DIGITS digits.
 */
#ifndef NODED_HOSTLIST_H
#define NODED_HOSTLIST_H

#include <stdbool.h>
#include <stddef.h>

#define ND_HOSTLIST_MAX 16384
#define ND_HOSTLIST_NAME_MAX 255
#define ND_HOSTLIST_GROUPS 8
#define ND_HOSTLIST_DIGITS 9

/*
 * NULL when expr is a valid list; *count (may be NULL) then holds how many
 * names it expands to, a name given twice counted twice. Otherwise buf
 * (size bytes, the message cut to fit) holds one phrase saying what is
 * wrong and where, counting bytes from 1: "'[' at position 4 is not
 * closed". Reads expr only; no allocation.
 */
const char *nd_hostlist_check(const char *expr, size_t *count, char *buf,
			      size_t size);

/* An expanded list. A zeroed struct is a valid empty list. */
struct nd_hostlist {
	char **names;   /* n names, in the order written, each once */
	char **sorted;  /* the same, in strcmp order (for nd_hostlist_has) */
	size_t n;
};

/*
 * Expands expr into hl (names given twice are kept once, where first
 * written). Returns 0; -EINVAL with buf saying why (as nd_hostlist_check);
 * or -ENOMEM. hl owns one allocation: nd_hostlist_free().
 */
int nd_hostlist_expand(const char *expr, struct nd_hostlist *hl, char *buf,
		       size_t size);
void nd_hostlist_free(struct nd_hostlist *hl);

/* Is name one of hl's? O(log n). */
bool nd_hostlist_has(const struct nd_hostlist *hl, const char *name);

/*
 * The inverse: names (n of them; not changed, duplicates kept once) in range
 * form, sorted, as clush writes a node set: "db1,web[01-03,07]". The last
 * run of digits of each name is what varies; names that differ only there
 * (same text before and after, same zero padding) share one bracket group.
 * Returns a malloc'd string ("" for n == 0), NULL when out of memory.
 */
char *nd_hostlist_fold(char *const *names, size_t n);

#endif
