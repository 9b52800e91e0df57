/*
 * The scheduler (src/node/scheduler.c) with no daemon: a service built in
 * memory, nodes set up by hand, tasks submitted and ended as ledger events,
 * and the effects recorded instead of sent. Placement: FIFO, least loaded,
 * one target's tasks never behind another's, labels, nodes that may not
 * take tasks, a dead node's tasks retried or lost; and, over long random
 * runs, no node ever over its slots and every task where the ledger says.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "alloc_fail.h"
#include "core/shard.h"
#include "node/svc.h"

static struct nd_svc svc;
static struct nd_shard shard;         /* only its clock is read */
static struct nd_arena arena;
static struct nd_svc_config cfg;
static uint64_t next_serial;

/* What the effects would have sent: each assignment, in order. */
#define MAX_PUSHES 100000
static struct push {
	uint64_t task;
	uint32_t attempt;
	char node[16];
} pushes[MAX_PUSHES];
static size_t npushes;

static void record(struct nd_svc *s, const Noded__LedgerEvent *ev,
		   struct task *t)
{
	if (ev->body_case != NODED__LEDGER_EVENT__BODY_ASSIGN)
		return;
	cr_assert_lt(npushes, MAX_PUSHES);
	pushes[npushes].task = t->l.id;
	pushes[npushes].attempt = t->l.attempt;
	snprintf(pushes[npushes].node, sizeof(pushes[npushes].node), "%s",
		 t->l.node);
	npushes++;
}

static void setup(void)
{
	memset(&svc, 0, sizeof(svc));
	memset(&shard, 0, sizeof(shard));
	memset(&cfg, 0, sizeof(cfg));
	nd_svc_config_defaults(&cfg);
	cr_assert_eq(nd_arena_init(&arena, 0), 0);
	svc.s = &shard;
	svc.cfg = &cfg;
	svc.arena = &arena;
	svc.effects = record;
	svc.output_cap = cfg.output_cap;
	svc.output_budget = cfg.output_budget;
	svc.task_history = cfg.task_history;
	svc.max_queue = cfg.max_queue;
	svc.next_task_id = 1;
	cr_assert_eq(nd__nodes_init(&svc), 0);
	nd__tasks_init(&svc);
	npushes = 0;
	next_serial = 1;
}

static void teardown(void)
{
	nd_alloc_fail_off();
	nd__tasks_free(&svc);
	for (size_t i = 0; i < svc.nbuckets; i++) {
		struct node *n = svc.buckets[i], *next;

		for (; n; n = next) {
			next = n->next;
			nd__node_free(n);
		}
	}
	free(svc.buckets);
	nd_arena_close(&arena);
}

TestSuite(sched, .init = setup, .fini = teardown, .timeout = 120);

/* ---- nodes and tasks ---- */

/* A node that can take tasks: ALIVE, registered, reported on its stream;
 * labels "k=v" (up to 4, NULL-terminated). */
static struct node *node_add(const char *name, uint32_t slots,
			     const char *const *labels)
{
	struct node *n = nd__node_get(&svc, name);
	size_t k = 0;

	cr_assert(n);
	n->state = NODED__NODE_STATE__NODE_ALIVE;
	n->stream.serial = n->hb_serial = next_serial++;
	n->slots = slots;
	while (labels && labels[k])
		k++;
	n->label_k = calloc(k + 1, sizeof(char *));
	n->label_v = calloc(k + 1, sizeof(char *));
	cr_assert(n->label_k && n->label_v);
	for (size_t i = 0; i < k; i++) {
		const char *eq = strchr(labels[i], '=');

		n->label_k[i] = strndup(labels[i], (size_t)(eq - labels[i]));
		n->label_v[i] = strdup(eq + 1);
	}
	n->nlabels = k;
	return n;
}

/* Submits one task (node: named, or labels "k=v", or neither) with
 * retries; returns its id. */
static uint64_t submit(const char *node, const char *label, uint32_t retries)
{
	Noded__TaskSpec sp = NODED__TASK_SPEC__INIT;
	Noded__Command cmd = NODED__COMMAND__INIT;
	Noded__TaskSpec__LabelsEntry le = NODED__TASK_SPEC__LABELS_ENTRY__INIT,
				     *lp = &le;
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerSubmit e = NODED__LEDGER_SUBMIT__INIT;
	char *argv[] = { "true" }, *nodes[] = { (char *)node }, k[32], v[32];
	uint8_t buf[256];

	cmd.n_argv = 1;
	cmd.argv = argv;
	sp.command = &cmd;
	if (node)
		sp.node = (char *)node;
	if (label) {
		sscanf(label, "%31[^=]=%31s", k, v);
		le.key = k;
		le.value = v;
		sp.n_labels = 1;
		sp.labels = &lp;
	}
	sp.retries = retries;
	e.task_id = svc.next_task_id;
	e.spec.data = buf;
	e.spec.len = noded__task_spec__pack(&sp, buf);
	e.nodes = nodes;
	e.n_nodes = node ? 1 : 0;
	e.retries = retries;
	e.output_cap_bytes = 1024;
	ev.body_case = NODED__LEDGER_EVENT__BODY_SUBMIT;
	ev.submit = &e;
	cr_assert_eq(nd__svc_apply(&svc, &ev, NULL), 0);
	return svc.next_task_id++;
}

static struct task *T(uint64_t id)
{
	struct nd_ltask *l = nd_ledger_get(&svc.ledger, id);

	cr_assert(l, "no task %llu", (unsigned long long)id);
	return nd__task_of(l);
}

static Noded__TaskState state(uint64_t id)
{
	return T(id)->l.state;
}

static const char *where(uint64_t id)
{
	return T(id)->l.node ? T(id)->l.node : "";
}

static void finish(uint64_t id)
{
	nd__task_finish(&svc, T(id), NODED__TASK_STATE__TASK_SUCCEEDED, NULL);
	nd__tasks_schedule(&svc);
}

/*
 * What the scheduler must keep true: a node's count is the tasks the
 * ledger has ASSIGNED or RUNNING on it, and within its slots (held
 * included); a task is queued exactly while PENDING and on its node's list
 * exactly while ASSIGNED or RUNNING; after a pass, no task any node may
 * run waits while a node has room.
 */
static void check(void)
{
	size_t pending = 0, room = 0;
	const struct nd_list *it;

	for (size_t i = 0; i < svc.nbuckets; i++)
		for (struct node *n = svc.buckets[i]; n; n = n->next) {
			uint32_t on = 0;

			for (it = svc.ledger.all.next; it != &svc.ledger.all;
			     it = it->next) {
				const struct nd_ltask *t = nd_container_of(
					it, struct nd_ltask, all_link);

				on += (t->state == NODED__TASK_STATE__TASK_ASSIGNED ||
				       t->state == NODED__TASK_STATE__TASK_RUNNING) &&
				      !strcmp(t->node, n->name);
			}
			cr_assert_eq(n->running, on, "node %s counts %u, the "
				     "ledger has %u on it", n->name,
				     n->running, on);
			if (n->state == NODED__NODE_STATE__NODE_ALIVE)
				cr_assert_leq(nd__node_used(n), n->slots,
					      "node %s: %u tasks on %u slots",
					      n->name, nd__node_used(n),
					      n->slots);
			room += n->state == NODED__NODE_STATE__NODE_ALIVE &&
				!n->draining && n->stream.serial &&
				nd__node_used(n) < n->slots;
		}
	for (it = svc.ledger.all.next; it != &svc.ledger.all; it = it->next) {
		struct task *t = nd__task_of(nd_container_of(
			it, struct nd_ltask, all_link));
		bool pend = t->l.state == NODED__TASK_STATE__TASK_PENDING;
		bool on = t->l.state == NODED__TASK_STATE__TASK_ASSIGNED ||
			  t->l.state == NODED__TASK_STATE__TASK_RUNNING;

		cr_assert_eq(nd_list_linked(&t->queue_link), pend,
			     "task %llu: queued %d, state %d",
			     (unsigned long long)t->l.id,
			     nd_list_linked(&t->queue_link), t->l.state);
		cr_assert_eq(nd_list_linked(&t->node_link), on);
		pending += pend;
	}
	cr_assert_eq(pending, svc.npending);
	if (room)
		cr_assert(nd_list_empty(&svc.pending_any),
			  "tasks for any node wait while a node has room");
}

/* ---- placement ---- */

Test(sched, first_in_first_out_to_the_least_loaded)
{
	uint64_t id[6];

	node_add("a", 2, NULL);
	node_add("b", 2, NULL);
	for (int i = 0; i < 6; i++)
		id[i] = submit(NULL, NULL, 0);
	nd__tasks_schedule(&svc);
	check();
	cr_assert_eq(npushes, 4);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pushes[i].task, id[i], "assigned in order");
	/* least loaded: the first two go to different nodes, and so do the
	 * next two */
	cr_assert_str_neq(pushes[0].node, pushes[1].node);
	cr_assert_str_neq(pushes[2].node, pushes[3].node);
	cr_assert_eq(state(id[4]), NODED__TASK_STATE__TASK_PENDING);
	finish(id[1]);
	check();
	cr_assert_eq(npushes, 5);
	cr_assert_eq(pushes[4].task, id[4], "the oldest waiting goes first");
	cr_assert_str_eq(where(id[4]), pushes[1].node, "to the freed slot");
	cr_assert_eq(state(id[5]), NODED__TASK_STATE__TASK_PENDING);
}

Test(sched, the_share_of_slots_decides_not_the_count)
{
	uint64_t id;

	node_add("big", 8, NULL);
	node_add("small", 2, NULL);
	/* big: 3 of 8 in use; small: 1 of 2 */
	for (int i = 0; i < 4; i++)
		submit(NULL, NULL, 0);
	nd__tasks_schedule(&svc);
	check();
	id = submit(NULL, NULL, 0);
	nd__tasks_schedule(&svc);
	cr_assert_str_eq(where(id), "big", "3/8 is less loaded than 1/2");
}

Test(sched, a_full_named_node_does_not_hold_up_the_others)
{
	uint64_t a1, a2, any, b1;

	node_add("a", 1, NULL);
	node_add("b", 1, NULL);
	a1 = submit("a", NULL, 0);
	nd__tasks_schedule(&svc);
	cr_assert_str_eq(where(a1), "a");
	a2 = submit("a", NULL, 0);
	any = submit(NULL, NULL, 0);
	nd__tasks_schedule(&svc);
	check();
	cr_assert_eq(state(a2), NODED__TASK_STATE__TASK_PENDING);
	cr_assert_str_eq(where(any), "b", "not behind a's second task");
	finish(any);
	b1 = submit("b", NULL, 0);
	nd__tasks_schedule(&svc);
	cr_assert_str_eq(where(b1), "b");
	cr_assert_eq(state(a2), NODED__TASK_STATE__TASK_PENDING,
		     "a named task never goes elsewhere");
	finish(a1);
	check();
	cr_assert_str_eq(where(a2), "a");
}

Test(sched, labels_place_only_on_nodes_that_have_them_all)
{
	const char *web[] = { "role=web", "zone=1", NULL };
	const char *db[] = { "role=db", "zone=1", NULL };
	uint64_t d1, d2, w1, z;

	node_add("web1", 4, web);
	node_add("db1", 1, db);
	d1 = submit(NULL, "role=db", 0);
	d2 = submit(NULL, "role=db", 0);
	w1 = submit(NULL, "role=web", 0);
	z = submit(NULL, "zone=1", 0);
	nd__tasks_schedule(&svc);
	check();
	cr_assert_str_eq(where(d1), "db1");
	cr_assert_eq(state(d2), NODED__TASK_STATE__TASK_PENDING,
		     "web1 has room but not the label");
	cr_assert_str_eq(where(w1), "web1");
	cr_assert_str_eq(where(z), "web1", "db1 is full");
	finish(d1);
	cr_assert_str_eq(where(d2), "db1");
	check();
}

Test(sched, nodes_that_may_not_take_tasks_get_none)
{
	struct node *draining = node_add("draining", 4, NULL);
	struct node *suspect = node_add("suspect", 4, NULL);
	struct node *unreported = node_add("unreported", 4, NULL);
	struct node *gone = node_add("gone", 4, NULL);
	uint64_t id;

	draining->draining = true;
	suspect->state = NODED__NODE_STATE__NODE_SUSPECT;
	unreported->hb_serial = 0; /* no heartbeat on this stream yet */
	gone->stream.serial = 0;
	id = submit(NULL, NULL, 0);
	nd__tasks_schedule(&svc);
	cr_assert_eq(npushes, 0);
	cr_assert_eq(state(id), NODED__TASK_STATE__TASK_PENDING);
	node_add("ok", 1, NULL);
	nd__tasks_schedule(&svc);
	cr_assert_str_eq(where(id), "ok");
	check();
}

Test(sched, a_dead_nodes_tasks_are_retried_elsewhere_or_lost)
{
	struct node *a = node_add("a", 3, NULL);
	struct node *b = node_add("b", 0, NULL);
	uint64_t retry, once, named, waits;

	retry = submit(NULL, NULL, 1);
	once = submit(NULL, NULL, 0);
	named = submit("a", NULL, 2);
	nd__tasks_schedule(&svc);
	cr_assert_eq(npushes, 3);
	waits = submit("a", NULL, 0); /* a is full */
	nd__tasks_schedule(&svc);
	check();
	a->state = NODED__NODE_STATE__NODE_DEAD;
	nd__tasks_node_dead(&svc, a, "node a died");
	check();
	cr_assert_eq(state(retry), NODED__TASK_STATE__TASK_PENDING);
	cr_assert_eq(T(retry)->l.attempt, 2);
	cr_assert_eq(state(once), NODED__TASK_STATE__TASK_LOST);
	cr_assert_str_eq(T(once)->l.reason, "node a died");
	cr_assert_eq(state(named), NODED__TASK_STATE__TASK_LOST,
		     "a task for a named node is not retried elsewhere");
	cr_assert_eq(state(waits), NODED__TASK_STATE__TASK_LOST,
		     "it did not ask to wait for its node");
	cr_assert(strstr(T(waits)->l.reason, "before it ran"));
	cr_assert_eq(a->running, 0);
	b->slots = 1;
	nd__tasks_schedule(&svc);
	check();
	cr_assert_str_eq(where(retry), "b");
	cr_assert_eq(pushes[npushes - 1].task, retry);
	cr_assert_eq(pushes[npushes - 1].attempt, 2);
}

/* ---- random runs ---- */

static uint64_t rnd_state;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 2685821657736338717ull;
}

/* A random task that is ASSIGNED or RUNNING, or NULL. */
static struct task *random_running(void)
{
	size_t n = svc.ledger.count[NODED__TASK_STATE__TASK_ASSIGNED] +
		   svc.ledger.count[NODED__TASK_STATE__TASK_RUNNING], k;
	const struct nd_list *it;

	if (!n)
		return NULL;
	k = rnd() % n;
	for (it = svc.ledger.all.next; it != &svc.ledger.all; it = it->next) {
		struct task *t = nd__task_of(nd_container_of(
			it, struct nd_ltask, all_link));

		if (nd_list_linked(&t->node_link) && !k--)
			return t;
	}
	return NULL;
}

Test(sched, no_node_is_ever_over_its_slots)
{
	static const char *const names[] = { "n0", "n1", "n2", "n3", "n4" };
	static const char *const labels[][2] = {
		{ "role=web", NULL }, { "role=db", NULL }, { "role=web", NULL },
		{ NULL, NULL }, { "role=db", NULL },
	};
	struct node *nodes[5];
	size_t ended = 0;

	rnd_state = 20261130;
	for (int i = 0; i < 5; i++)
		nodes[i] = node_add(names[i], (uint32_t)(1 + rnd() % 4),
				    labels[i]);
	for (int step = 0; step < 20000; step++) {
		unsigned op = (unsigned)(rnd() % 10);
		struct task *t;

		if (op < 4) {
			int what = (int)(rnd() % 4);

			submit(what == 0 ? names[rnd() % 5] : NULL,
			       what == 1 ? "role=db" : what == 2 ? "role=web" :
			       NULL, (uint32_t)(rnd() % 2));
		} else if (op < 8 && (t = random_running())) {
			nd__task_finish(&svc, t, NODED__TASK_STATE__TASK_FAILED,
					"exited with status 1");
			ended++;
		} else if (op == 8) {
			struct node *n = nodes[rnd() % 5];

			if (n->state == NODED__NODE_STATE__NODE_ALIVE) {
				n->state = NODED__NODE_STATE__NODE_DEAD;
				nd__tasks_node_dead(&svc, n, "died");
			} else {
				n->state = NODED__NODE_STATE__NODE_ALIVE;
			}
		} else {
			nodes[rnd() % 5]->draining ^= true;
		}
		nd__tasks_schedule(&svc);
		nd__tasks_trim(&svc);
		check();
	}
	cr_assert_gt(ended, 1000);
	cr_assert_gt(npushes, 1000);
	cr_assert_gt(svc.ledger.ended[NODED__TASK_STATE__TASK_LOST], 0);
}

Test(sched, out_of_memory_for_a_waiting_class_loses_the_task_with_why)
{
	const char *db[] = { "role=db", NULL };
	bool stranded = false;

	node_add("db1", 1, db);
	for (long n = 1; n < 200; n++) {
		uint64_t before = svc.next_task_id;
		Noded__TaskState st;

		nd_alloc_fail_at(n);
		/* the submit event itself, or the class its task waits in */
		{
			Noded__TaskSpec sp = NODED__TASK_SPEC__INIT;
			Noded__Command cmd = NODED__COMMAND__INIT;
			Noded__TaskSpec__LabelsEntry le =
				NODED__TASK_SPEC__LABELS_ENTRY__INIT, *lp = &le;
			Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
			Noded__LedgerSubmit e = NODED__LEDGER_SUBMIT__INIT;
			char *argv[] = { "true" };
			uint8_t buf[128];
			int rc;

			cmd.n_argv = 1;
			cmd.argv = argv;
			sp.command = &cmd;
			le.key = "role";
			le.value = "web"; /* nobody: it waits in its class */
			sp.n_labels = 1;
			sp.labels = &lp;
			e.task_id = before;
			e.spec.data = buf;
			e.spec.len = noded__task_spec__pack(&sp, buf);
			e.output_cap_bytes = 64;
			ev.body_case = NODED__LEDGER_EVENT__BODY_SUBMIT;
			ev.submit = &e;
			rc = nd__svc_apply(&svc, &ev, NULL);
			if (!nd_alloc_fail_off()) {
				cr_assert_eq(rc, 0);
				break;
			}
			if (rc) {
				cr_assert_eq(rc, -ENOMEM);
				cr_assert_null(nd_ledger_get(&svc.ledger,
							     before));
				continue;
			}
		}
		svc.next_task_id++;
		nd__tasks_schedule(&svc);
		st = state(before);
		cr_assert(st == NODED__TASK_STATE__TASK_PENDING ||
			  st == NODED__TASK_STATE__TASK_LOST);
		if (st == NODED__TASK_STATE__TASK_LOST) {
			cr_assert_str_eq(T(before)->l.reason,
					 "out of memory queueing it");
			stranded = true;
		}
		check();
	}
	cr_assert(stranded, "no failure reached the class");
}
