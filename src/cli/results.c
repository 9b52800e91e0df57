/* Results by node for noded run --group and --json: see results.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/results.h"
#include "noded/hostlist.h"
#include "noded/json.h"
#include "wire/text.h"

int nd_cli_held_add(struct nd_cli_held *h, uint32_t fd, const void *data,
		    size_t len)
{
	int k = fd == 2;
	size_t room = ND_CLI_HELD_MAX - h->out[k].len, take;

	take = len < room ? len : room;
	h->dropped[k] += len - take;
	return take ? nd_buf_append(&h->out[k], data, take) : 0;
}

void nd_cli_held_free(struct nd_cli_held *h)
{
	nd_buf_free(&h->out[0]);
	nd_buf_free(&h->out[1]);
}

int nd_cli_held_json(FILE *out, const struct nd_cli_held *h, const char *node,
		     uint64_t task, uint64_t job, const Noded__TaskRecord *r,
		     int status)
{
	static const char *const names[2] = { "stdout", "stderr" };
	json_t *o = json_object();
	int err = -ENOMEM;
	char *s;

	if (!o || nd_json_set_text(o, "node", node ? node : "") ||
	    json_object_set_new(o, "task", json_integer((json_int_t)task)) ||
	    json_object_set_new(o, "job", json_integer((json_int_t)job)) ||
	    json_object_set_new(o, "state", json_string(
		    r ? nd_task_state_name(r->state) : "NO_RESULT")) ||
	    json_object_set_new(o, "exit_code", json_integer(
		    r ? r->exit_code : 0)) ||
	    json_object_set_new(o, "signal", json_integer(r ? r->signal : 0)) ||
	    json_object_set_new(o, "status", json_integer(status)) ||
	    nd_json_set_text(o, "reason", r ? r->reason :
			     "the task's end never arrived"))
		goto out_free;
	for (int k = 0; k < 2; k++) {
		char key[32];

		if (nd_json_set_bytes(o, names[k], (const char *)h->out[k].data,
				      h->out[k].len))
			goto out_free;
		snprintf(key, sizeof(key), "%s_dropped", names[k]);
		if (h->dropped[k] &&
		    json_object_set_new(o, key, json_integer(
					(json_int_t)h->dropped[k])))
			goto out_free;
	}
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!s)
		goto out_free;
	err = fprintf(out, "%s\n", s) < 0 ? -EIO : 0;
	free(s);
out_free:
	json_decref(o);
	return err;
}

/* ---- --group ---- */

/* One result in a group_print. */
struct item {
	const struct nd_cli_held *h;
	const char *node;
	uint64_t hash;
	size_t group;           /* index of its group's first item */
};

static uint64_t fnv(uint64_t hash, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hash = (hash ^ p[i]) * 0x100000001b3ull;
	return hash;
}

static bool same_output(const struct nd_cli_held *a,
			const struct nd_cli_held *b)
{
	for (int k = 0; k < 2; k++)
		if (a->out[k].len != b->out[k].len ||
		    a->dropped[k] != b->dropped[k] ||
		    (a->out[k].len && memcmp(a->out[k].data, b->out[k].data,
					     a->out[k].len)))
			return false;
	return true;
}

/* By output (hash, then bytes), then by node name. */
static int by_output(const void *x, const void *y)
{
	const struct item *a = x, *b = y;
	int c;

	if (a->hash != b->hash)
		return a->hash < b->hash ? -1 : 1;
	for (int k = 0; k < 2; k++) {
		size_t la = a->h->out[k].len, lb = b->h->out[k].len;

		if (la != lb)
			return la < lb ? -1 : 1;
		if (la && (c = memcmp(a->h->out[k].data, b->h->out[k].data,
				      la)))
			return c;
		if (a->h->dropped[k] != b->h->dropped[k])
			return a->h->dropped[k] < b->h->dropped[k] ? -1 : 1;
	}
	return strcmp(a->node, b->node);
}

/* Groups by the name of their first (smallest) node. */
static int by_first_node(const void *x, const void *y)
{
	const struct item *a = *(struct item *const *)x,
			  *b = *(struct item *const *)y;

	return strcmp(a->node, b->node);
}

/* Writes data[0..len) on f with each line as "prefix: line". */
static int prefixed(FILE *f, const char *prefix, const uint8_t *data,
		    size_t len)
{
	while (len) {
		const uint8_t *nl = memchr(data, '\n', len);
		size_t l = nl ? (size_t)(nl - data) + 1 : len;

		if (fprintf(f, "%s: ", prefix) < 0 ||
		    fwrite(data, 1, l, f) != l || (!nl && fputc('\n', f) ==
						   EOF))
			return -EIO;
		data += l;
		len -= l;
	}
	return 0;
}

/* Prints the group of items it[0..n) (equal output). */
static int print_group(FILE *out, FILE *err, struct item *it, size_t n)
{
	const struct nd_cli_held *h = it[0].h;
	char **names = malloc(n * sizeof(*names)), *folded, *shown;
	int r = 0;

	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		names[i] = (char *)it[i].node;
	folded = nd_hostlist_fold(names, n);
	free(names);
	if (!folded)
		return -ENOMEM;
	/* names come from the master: shown as text, never raw */
	shown = nd_text_escaped(folded);
	if (!shown) {
		free(folded);
		return -ENOMEM;
	}
	if (h->out[0].len) {
		fflush(err);
		if (fprintf(out, "---------------\n%s (%zu)\n"
			    "---------------\n", shown, n) < 0 ||
		    fwrite(h->out[0].data, 1, h->out[0].len, out) !=
		    h->out[0].len ||
		    (h->out[0].data[h->out[0].len - 1] != '\n' &&
		     fputc('\n', out) == EOF))
			r = -EIO;
	}
	if (!r && h->out[1].len) {
		fflush(out);
		r = prefixed(err, shown, h->out[1].data, h->out[1].len);
	}
	for (int k = 0; !r && k < 2; k++)
		if (h->dropped[k] && fprintf(err, "noded: %s: %llu bytes of "
					     "%s not shown (--group keeps "
					     "%u MiB per node)\n", shown,
					     (unsigned long long)h->dropped[k],
					     k ? "stderr" : "stdout",
					     ND_CLI_HELD_MAX >> 20) < 0)
			r = -EIO;
	free(shown);
	free(folded);
	return r;
}

int nd_cli_group_print(FILE *out, FILE *err, struct nd_cli_held *const *h,
		       char *const *nodes, size_t n)
{
	struct item *it = calloc(n ? n : 1, sizeof(*it));
	struct item **firsts = calloc(n ? n : 1, sizeof(*firsts));
	size_t nf = 0;
	int r = 0;

	if (!it || !firsts) {
		r = -ENOMEM;
		goto out_free;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t hash = 0xcbf29ce484222325ull;

		it[i].h = h[i];
		it[i].node = nodes[i] ? nodes[i] : "?";
		for (int k = 0; k < 2; k++)
			hash = fnv(fnv(hash, h[i]->out[k].data,
				       h[i]->out[k].len),
				   (const uint8_t *)"\0", 1);
		it[i].hash = hash;
		h[i]->shown = true;
	}
	qsort(it, n, sizeof(*it), by_output);
	for (size_t i = 0; i < n; i++) {
		if (i && it[i].hash == it[i - 1].hash &&
		    same_output(it[i].h, it[i - 1].h)) {
			it[i].group = it[i - 1].group;
			continue;
		}
		it[i].group = i;
		firsts[nf++] = &it[i];
	}
	qsort(firsts, nf, sizeof(*firsts), by_first_node);
	for (size_t g = 0; g < nf && !r; g++) {
		size_t first = (size_t)(firsts[g] - it), end = first + 1;

		while (end < n && it[end].group == first)
			end++;
		if (it[first].h->out[0].len || it[first].h->out[1].len ||
		    it[first].h->dropped[0] || it[first].h->dropped[1])
			r = print_group(out, err, &it[first], end - first);
	}
out_free:
	free(firsts);
	free(it);
	return r;
}
