/*
 * Which nodes a job runs on, decided by the master when it is submitted
 * (the LedgerSubmit then names them, one task per node):
 *
 *   all [+ labels] [+ exclude]  every node a fan-out may use now (tasks.c
 *                               decides which are live), with all those
 *                               labels, not excluded
 *   nodes [+ exclude]           the node list expanded (noded/hostlist.h),
 *                               less the excluded, each name once, in the
 *                               order written
 *
 * A target that leaves no node is refused, naming what it asked for. A node
 * list naming a node that cannot run a task (not registered, DEAD, LEFT) is
 * refused too, those nodes named in range form, as `--node NAME` is for one
 * node, unless the spec asked to wait for its nodes (wait_for_node): then
 * their tasks wait PENDING and the submit reply says for which.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/svc.h"
#include "noded/hostlist.h"

/* Bytes of a list quoted in a message. */
#define QUOTE_MAX 64

/* "'LIST'" (its first QUOTE_MAX bytes, then "...") into q. */
static const char *quote(const char *list, char *q, size_t size)
{
	size_t len = strlen(list);

	snprintf(q, size, "'%.*s%s'", QUOTE_MAX, list,
		 len > QUOTE_MAX ? "..." : "");
	return q;
}

/* "the labels a=b, c=d" into buf. */
static void labels_text(const Noded__TaskSpec *sp, char *buf, size_t size)
{
	size_t off = (size_t)snprintf(buf, size, "the label%s",
				      sp->n_labels > 1 ? "s" : "");

	for (size_t i = 0; i < sp->n_labels && off < size; i++)
		off += (size_t)snprintf(buf + off, size - off, "%s%s=%s",
					i ? ", " : " ", sp->labels[i]->key,
					sp->labels[i]->value);
}

/* sp's exclude expanded into x (empty when it has none); NULL, or why. */
static const char *excluded(const Noded__TaskSpec *sp, struct nd_hostlist *x,
			    char *buf, size_t size)
{
	char why[128];
	int err;

	memset(x, 0, sizeof(*x));
	if (!sp->exclude || !sp->exclude[0])
		return NULL;
	err = nd_hostlist_expand(sp->exclude, x, why, sizeof(why));
	if (!err)
		return NULL;
	if (err != -EINVAL)
		return "out of memory";
	snprintf(buf, size, "exclude: %s", why);
	return buf;
}

const char *nd__targets_all(struct nd_svc *svc, const Noded__TaskSpec *sp,
			    char **nodes, size_t *n, char *buf, size_t size)
{
	size_t live = *n, with = 0, k = 0;
	struct nd_hostlist x;
	char what[256], q[QUOTE_MAX + 8];
	const char *bad = excluded(sp, &x, buf, size);

	if (bad)
		return bad;
	for (size_t i = 0; i < live; i++) {
		struct node *nd = nd__node_find(svc, nodes[i]);

		if (!nd || !nd__node_has_labels(nd, sp))
			continue;
		with++;
		if (!nd_hostlist_has(&x, nodes[i]))
			nodes[k++] = nodes[i];
	}
	nd_hostlist_free(&x);
	*n = k;
	if (k)
		return NULL;
	if (sp->n_labels)
		labels_text(sp, what, sizeof(what));
	if (!live)
		snprintf(buf, size, "no live nodes");
	else if (!with)
		snprintf(buf, size, "no live node has %s", what);
	else
		snprintf(buf, size, "every live node%s%s is excluded "
			 "(exclude %s)", sp->n_labels ? " with " : "",
			 sp->n_labels ? what : "",
			 quote(sp->exclude, q, sizeof(q)));
	return buf;
}

/* Appends "NAMES (what)" for the names[0..n) to buf at *off. */
static void name_nodes(char *buf, size_t size, size_t *off, char **names,
		       size_t n, const char *what)
{
	char *folded;

	if (!n || *off >= size)
		return;
	folded = nd_hostlist_fold(names, n);
	*off += (size_t)snprintf(buf + *off, size - *off, "%s%.*s%s (%s)",
				 buf[*off - 1] != ' ' ? ", " : "", 200,
				 folded ? folded : "?",
				 folded && strlen(folded) > 200 ? "..." : "",
				 what);
	free(folded);
}

const char *nd__targets_list(struct nd_svc *svc, const Noded__TaskSpec *sp,
			     char ***out, size_t *nout, char **waiting,
			     char *buf, size_t size)
{
	struct nd_hostlist hl, x;
	char why[128], q[QUOTE_MAX + 8], q2[QUOTE_MAX + 8];
	char **names, **absent[3];
	size_t k = 0, nabsent[3] = { 0 }, off = 0;
	const char *bad = NULL;
	int err;

	*waiting = NULL;
	if ((bad = excluded(sp, &x, buf, size)))
		return bad;
	err = nd_hostlist_expand(sp->nodes, &hl, why, sizeof(why));
	if (err) {
		nd_hostlist_free(&x);
		if (err != -EINVAL)
			return "out of memory";
		snprintf(buf, size, "nodes: %s", why);
		return buf;
	}
	names = nd_arena_alloc(svc->arena, (hl.n ? hl.n : 1) *
			       sizeof(char *));
	for (size_t i = 0; i < 3; i++)
		absent[i] = nd_arena_alloc(svc->arena, (hl.n ? hl.n : 1) *
					   sizeof(char *));
	if (!names || !absent[0] || !absent[1] || !absent[2]) {
		bad = "out of memory";
		goto out;
	}
	for (size_t i = 0; i < hl.n; i++) {
		struct node *nd;
		size_t len;

		if (nd_hostlist_has(&x, hl.names[i]))
			continue;
		nd = nd__node_find(svc, hl.names[i]);
		if (nd) {
			names[k++] = nd->name;
		} else {
			/* a copy that lives as long as the submit */
			len = strlen(hl.names[i]) + 1;
			names[k] = nd_arena_alloc(svc->arena, len);
			if (!names[k]) {
				bad = "out of memory";
				goto out;
			}
			memcpy(names[k++], hl.names[i], len);
		}
		if (!nd)
			absent[0][nabsent[0]++] = names[k - 1];
		else if (nd->state == NODED__NODE_STATE__NODE_DEAD)
			absent[1][nabsent[1]++] = names[k - 1];
		else if (nd->state == NODED__NODE_STATE__NODE_LEFT)
			absent[2][nabsent[2]++] = names[k - 1];
	}
	if (!k) {
		snprintf(buf, size, "nodes %s less exclude %s leaves no node",
			 quote(sp->nodes, q, sizeof(q)),
			 quote(sp->exclude, q2, sizeof(q2)));
		bad = buf;
		goto out;
	}
	if (nabsent[0] + nabsent[1] + nabsent[2]) {
		char *w = buf;
		size_t wsize = size;

		off = (size_t)snprintf(w, wsize, "nodes ");
		if (sp->wait_for_node) {
			/* the reply's note, in the arena like the rest */
			wsize = 512;
			w = nd_arena_alloc(svc->arena, wsize);
			if (!w) {
				bad = "out of memory";
				goto out;
			}
			off = (size_t)snprintf(w, wsize, "waits for ");
		}
		name_nodes(w, wsize, &off, absent[0], nabsent[0],
			   "not registered");
		name_nodes(w, wsize, &off, absent[1], nabsent[1], "dead");
		name_nodes(w, wsize, &off, absent[2], nabsent[2], "left");
		if (sp->wait_for_node) {
			*waiting = w;
		} else {
			if (off < wsize)
				snprintf(w + off, wsize - off, ": no task can "
					 "run there (leave them out with "
					 "exclude, or wait for them with "
					 "wait_for_node)");
			bad = buf;
			goto out;
		}
	}
	*out = names;
	*nout = k;
out:
	nd_hostlist_free(&hl);
	nd_hostlist_free(&x);
	return bad;
}
