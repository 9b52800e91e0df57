/*
 * Shard 0's side of replication (master --data-dir; src/raft/raft.h for
 * the raft shard).
 *
 * Shard 0 serves from its own copy of the ledger, ahead of the log: an
 * event is applied here at once (callers decide and react as without
 * replication), and also appended to the batch of this loop of the shard,
 * which goes to the raft shard once the loop is done (svc_flush): one log
 * entry per batch. The raft shard applies committed entries to its copy,
 * which is therefore the committed state; both copies apply the same
 * events in the same order, so they are the same ledger once the batch is
 * committed (the ledger is a pure state machine).
 *
 * Output commit: nothing that shows this copy leaves shard 0 before the
 * batch it depends on is committed. Every frame the service sends (replies,
 * pushes to workers and watchers, registrations) passes nd__svc_post, which
 * holds it, in order, until the batches up to the one open when it was
 * made have come back committed. So an acknowledged submit is in the log
 * (fsync'd on a majority), and a worker never runs an assignment the log
 * could lose.
 *
 * When a batch fails (no longer the leader, the disk full or failing),
 * everything applied here after the last committed batch may not be in the
 * log: the held frames of those batches are failed (a requester gets
 * UNAVAILABLE: it may or may not have happened), shard 0 stops serving, and
 * asks the raft shard for its ledger, which it restores (the same as when
 * it becomes the leader). Until then, and while it is not the leader,
 * requests wait (or get NOT_LEADER, naming the leader, once one is known)
 * and no event is applied.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "core/log.h"
#include "core/server.h"
#include "node/svc.h"

/* A RaftEntry's field 1 (LedgerEvent) and 2 (pad), length-delimited. */
#define ENTRY_TAG 0x0a
#define PAD_TAG 0x12

static size_t varint_len(size_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

int nd__replica_stage(struct nd_svc *svc, const Noded__LedgerEvent *ev,
		      size_t *mark)
{
	struct nd_raft_batch *b = svc->batch;
	Noded__LedgerEvent cut;
	Noded__LedgerOutput out;
	const struct nd_ltask *t;
	size_t len;

	/* Output past the task's cap is counted, not kept: the log carries
	 * its length only (the ledger comes out the same either way). */
	if (ev->body_case == NODED__LEDGER_EVENT__BODY_OUTPUT &&
	    (t = nd_ledger_get(&svc->ledger, ev->output->task_id))) {
		uint64_t room = t->out_data < t->output_cap ?
					t->output_cap - t->out_data : 0;

		if (ev->output->data.len > room) {
			cut = *ev;
			out = *ev->output;
			out.dropped += out.data.len - room;
			out.data.len = room;
			cut.output = &out;
			ev = &cut;
		}
	}
	len = noded__ledger_event__get_packed_size(ev);
	size_t need = 1 + varint_len(len) + len;
	uint8_t *p;

	if (!b && !(b = svc->batch = nd_raft_batch_new()))
		return -ENOMEM;
	if (b->len + need > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + need)
			cap *= 2;
		p = raft_realloc(b->data, cap);
		if (!p)
			return -ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	*mark = b->len;
	p = b->data + b->len;
	*p++ = ENTRY_TAG;
	for (size_t v = len; ; v >>= 7) {
		*p++ = (uint8_t)(v & 0x7f) | (v >= 0x80 ? 0x80 : 0);
		if (v < 0x80)
			break;
	}
	noded__ledger_event__pack(ev, p);
	b->len += need;
	return 0;
}

void nd__replica_unstage(struct nd_svc *svc, size_t mark)
{
	svc->batch->len = mark;
}

/* ---- the gate ---- */

static uint32_t gen_needed(const struct nd_svc *svc)
{
	return svc->batch && svc->batch->len ? svc->gen_sent + 1 :
					       svc->gen_sent;
}

static bool gen_le(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) <= 0;
}

/* Sends the held frames whose batches came back (in order); those that
 * depend on a batch in doubt fail (nd__svc_post_failed). */
static void gate_release(struct nd_svc *svc)
{
	while (svc->gate && gen_le(svc->gate->seq, svc->gen_done)) {
		struct nd_msg *m = svc->gate;

		svc->gate = m->next;
		if (!svc->gate)
			svc->gate_tail = &svc->gate;
		svc->gated--;
		if (svc->tainted && gen_le(m->seq, svc->taint_gen))
			nd__svc_post_failed(svc, m);
		else
			nd_shard_post(svc->s, m->to, m, m->fn);
	}
}

void nd__svc_post(struct nd_svc *svc, struct nd_shard *to, struct nd_msg *m,
		  void (*fn)(struct nd_shard *, struct nd_msg *))
{
	if (!svc->raft) {
		nd_shard_post(svc->s, to, m, fn);
		return;
	}
	m->fn = fn;
	m->to = to;
	m->seq = gen_needed(svc);
	m->next = NULL;
	*svc->gate_tail = m;
	svc->gate_tail = &m->next;
	svc->gated++;
	gate_release(svc);
}

/* ---- batches ---- */

static void batch_done(struct nd_shard *s0, struct nd_raft_batch *b)
{
	struct nd_svc *svc = s0->svc;

	svc->gen_done = b->gen;
	if (!b->status) {
		svc->commit_index = b->index;
	} else if (!svc->tainted) {
		/* Everything applied here since the last committed batch is
		 * in doubt: stop, fail what waits on it, start over from the
		 * raft shard's ledger. */
		ND_LOG(ND_LOG_ERROR, "raft.propose_failed",
		       ND_U("batch", b->gen), ND_S("err", b->err),
		       ND_S("msg", "not committed: the requests it carried "
			    "get UNAVAILABLE; reloading the committed ledger"));
		svc->proposals_failed++;
		svc->disk_full = b->status == RAFT_NOSPACE;
		svc->loaded = false;
		svc->tainted = true;
		svc->taint_gen = svc->gen_sent;
		snprintf(svc->last_raft_err, sizeof(svc->last_raft_err), "%s",
			 b->err);
		svc->serving = false;
		nd_raft_resync(s0, svc->raft);
	}
	nd_raft_batch_free(b);
	gate_release(svc);
}

/* Pads b to a multiple of 8 bytes with a RaftEntry.pad field (tag, length,
 * zeros: 2 bytes at least, so 1 missing byte takes 9). 0 or -ENOMEM. */
static int pad(struct nd_raft_batch *b)
{
	size_t p = (8 - b->len % 8) % 8;
	uint8_t *d;

	if (p == 1)
		p = 9;
	if (!p)
		return 0;
	if (b->len + p > b->cap) {
		d = raft_realloc(b->data, b->len + p);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = b->len + p;
	}
	d = b->data + b->len;
	d[0] = PAD_TAG;
	d[1] = (uint8_t)(p - 2);
	memset(d + 2, 0, p - 2);
	b->len += p;
	return 0;
}

void nd__replica_flush(struct nd_shard *s0)
{
	struct nd_svc *svc = s0->svc;
	struct nd_raft_batch *b = svc ? svc->batch : NULL;

	if (!b || !b->len || pad(b))
		return; /* no memory to pad: the next loop tries again */
	svc->batch = NULL;
	b->gen = ++svc->gen_sent;
	b->done = batch_done;
	svc->batches++;
	nd_raft_propose(s0, svc->raft, b);
}

bool nd__replica_busy(const struct nd_svc *svc)
{
	return svc->raft && (svc->gen_done != svc->gen_sent ||
			     (svc->batch && svc->batch->len));
}

/* ---- roles ---- */

/* The task side of every node, emptied before the ledger is replaced. */
static void forget_placement(struct nd_svc *svc)
{
	for (size_t i = 0; i < svc->nbuckets; i++)
		for (struct node *n = svc->buckets[i]; n; n = n->next) {
			n->running = 0;
			n->held = 0;
			nd_list_init(&n->tasks);
		}
}

/*
 * Rebuilds what the service keeps beside the ledger from it: the queues,
 * and each running task on its node. A node the ledger names that this
 * master does not know yet (it restarted, or just became the leader) is
 * known from now on, as if it had just sent a heartbeat: its worker has
 * the heartbeat timeout to register again, and if it does not, its tasks
 * are given up once their lease is over (registry.c), as for any node
 * that died. The first report of such a node settles what it runs
 * (nd__tasks_reconcile).
 */
static int rebuild(struct nd_svc *svc)
{
	struct nd_ledger *l = &svc->ledger;

	for (struct nd_list *p = l->all.next; p != &l->all; p = p->next) {
		struct task *t = nd__task_of(nd_container_of(p, struct nd_ltask,
							     all_link));
		const Noded__TaskSpec *sp;
		struct node *n;

		nd_list_init(&t->watchers);
		nd_list_init(&t->cancel_waits);
		if (nd_ltask_ended(t->l.state))
			continue;
		sp = nd__task_spec(svc, t);
		t->any_node = !t->l.target_node &&
			      (!sp || (!sp->n_labels && !sp->exclude[0]));
		if (t->l.state == NODED__TASK_STATE__TASK_PENDING) {
			nd__task_requeue(svc, t, sp);
			continue;
		}
		n = nd__node_find(svc, t->l.node);
		if (!n) {
			n = nd__node_get(svc, t->l.node);
			if (!n)
				return -ENOMEM;
			n->state = NODED__NODE_STATE__NODE_SUSPECT;
			n->restored = true;
			n->hb_seq = 1;   /* its attempts hold leases */
			n->lease_hb_ms = svc->s->now_ms;
			n->gone_unix_ms = nd_unix_ms();
		}
		n->running++;
		nd_list_add_tail(&n->tasks, &t->node_link);
		if (n->restored)
			n->reconcile = true;
	}
	return 0;
}

static void set_instance(struct nd_svc *svc)
{
	if (svc->ledger.cluster_id)
		atomic_store(&svc->s->srv->instance, svc->ledger.cluster_id);
}

/* The first leader of a cluster names it (LedgerCluster). */
static void name_cluster(struct nd_svc *svc)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerCluster c = NODED__LEDGER_CLUSTER__INIT;

	if (svc->ledger.cluster_id)
		return;
	c.id = atomic_load(&svc->s->srv->instance);
	ev.body_case = NODED__LEDGER_EVENT__BODY_CLUSTER;
	ev.cluster = &c;
	nd__svc_apply(svc, &ev, NULL);
}

/*
 * An operator's restore (LedgerRestore), applied as any event but around
 * it: what the service holds of the tasks goes first (the ledger frees
 * them), and is built again from the ledger after, restored or not (a
 * refused snapshot changes nothing). Watchers and waiting cancels of the
 * old tasks are dropped.
 */
int nd__svc_apply_restore(struct nd_svc *svc, const Noded__LedgerEvent *ev)
{
	size_t mark = 0;
	int err = 0;

	if (svc->raft)
		err = nd__replica_stage(svc, ev, &mark);
	if (err)
		return err;
	nd__tasks_release_all(svc);
	forget_placement(svc);
	err = nd_ledger_apply(&svc->ledger, ev, NULL);
	if (err && svc->raft)
		nd__replica_unstage(svc, mark);
	if (rebuild(svc))
		ND_LOG(ND_LOG_ERROR, "ledger.rebuild_failed",
		       ND_S("err", "out of memory"),
		       ND_S("msg", "tasks of nodes not yet known are not "
			    "counted on them"));
	if (svc->next_task_id < svc->ledger.next_id)
		svc->next_task_id = svc->ledger.next_id;
	ND_LOG(err ? ND_LOG_WARN : ND_LOG_INFO, "ledger.restored",
	       ND_U("tasks", svc->ledger.ntasks),
	       ND_S("err", err ? strerror(-err) : ""));
	if (!err)
		nd__tasks_schedule(svc);
	return err;
}

/* Replaces the ledger by the committed one the raft shard sent (n->snap)
 * and rebuilds around it. 0, or -errno: then the ledger is empty and
 * another copy is asked for. */
static int load(struct nd_svc *svc, struct nd_raft_news *n)
{
	int err;

	nd__tasks_release_all(svc);
	forget_placement(svc);
	err = nd_ledger_restore(&svc->ledger, n->snap, n->snap_len);
	if (!err)
		err = rebuild(svc);
	if (err) {
		/* cannot serve what we cannot hold: ask again */
		ND_LOG(ND_LOG_ERROR, "raft.load_failed", ND_S("err", strerror(-err)),
		       ND_S("msg", "could not load the committed ledger; "
			    "retrying"));
		nd__tasks_release_all(svc);
		forget_placement(svc);
		nd_ledger_free(&svc->ledger);
		nd_ledger_init(&svc->ledger, sizeof(struct task));
		svc->loaded = false;
		nd_raft_resync(svc->s, svc->raft);
		return err;
	}
	svc->loaded = true;
	svc->load_asked = false;
	if (svc->next_task_id < svc->ledger.next_id)
		svc->next_task_id = svc->ledger.next_id;
	/* what waited on the batches in doubt fails now; what comes after
	 * shows the ledger just loaded */
	while (svc->tainted && svc->gate &&
	       gen_le(svc->gate->seq, svc->taint_gen)) {
		struct nd_msg *m = svc->gate;

		svc->gate = m->next;
		if (!svc->gate)
			svc->gate_tail = &svc->gate;
		svc->gated--;
		nd__svc_post_failed(svc, m);
	}
	svc->tainted = false;
	set_instance(svc);
	return 0;
}

static void become_leader(struct nd_svc *svc, struct nd_raft_news *n)
{
	if (load(svc, n))
		return;
	svc->serving = true;
	svc->disk_full = false; /* the barrier was written */
	ND_LOG(ND_LOG_INFO, "raft.serving", ND_U("term", n->term),
	       ND_U("tasks", svc->ledger.ntasks),
	       ND_U("next_task_id", svc->next_task_id),
	       ND_S("msg", "leader: serving the committed ledger"));
	name_cluster(svc);
	nd__cluster_self(svc);
	nd__svc_run_unready(svc);
	nd__tasks_schedule(svc);
}

/* The service's lists of the tasks [from, to) the ledger holds, empty. */
static void init_lists(struct nd_svc *svc, uint64_t from, uint64_t to)
{
	for (uint64_t id = from; id && id < to; id++) {
		struct nd_ltask *l = nd_ledger_get(&svc->ledger, id);

		if (l && !nd__task_of(l)->watchers.next) {
			nd_list_init(&nd__task_of(l)->watchers);
			nd_list_init(&nd__task_of(l)->cancel_waits);
		}
	}
}

void nd__replica_entry(struct nd_shard *s0, struct nd_raft_entry *e)
{
	struct nd_svc *svc = s0->svc;
	Noded__RaftEntry *re;

	if (nd__svc_serving(svc) || !svc->loaded ||
	    !(re = noded__raft_entry__unpack(NULL, e->len, e->data))) {
		free(e);
		return;
	}
	for (size_t i = 0; i < re->n_events; i++) {
		const Noded__LedgerEvent *ev = re->events[i];
		bool restore = ev->body_case == NODED__LEDGER_EVENT__BODY_RESTORE;
		int err;

		if (restore) /* the tasks go: nothing may point at them */
			nd__tasks_release_all(svc);
		err = nd_ledger_apply(&svc->ledger, ev, NULL);
		if (err == -ENOMEM) {
			/* a copy with a hole is worse than none: reload */
			svc->loaded = false;
			nd_raft_resync(s0, svc->raft);
			break;
		}
		/* what the service keeps beside a new task: no one follows
		 * it here (a follower serves reads only) */
		if (!err && restore)
			init_lists(svc, svc->ledger.first_id,
				   svc->ledger.next_id);
		else if (!err &&
			 ev->body_case == NODED__LEDGER_EVENT__BODY_SUBMIT)
			init_lists(svc, ev->submit->task_id,
				   ev->submit->task_id + (ev->submit->n_nodes ?
					ev->submit->n_nodes : 1));
	}
	noded__raft_entry__free_unpacked(re, NULL);
	free(e);
}

void nd__replica_news(struct nd_shard *s0, struct nd_raft_news *n)
{
	struct nd_svc *svc = s0->svc;

	svc->term = n->term;
	svc->leader_id = n->leader_id;
	snprintf(svc->leader_client, sizeof(svc->leader_client), "%s",
		 n->leader_client);
	snprintf(svc->leader_http, sizeof(svc->leader_http), "%s",
		 n->leader_http);
	memcpy(svc->voters, n->voters, sizeof(svc->voters));
	svc->nvoters = n->nvoters;
	if (n->config_only) {
		free(n);
		/* waiting requests can be told where the leader is now */
		if (!svc->serving && svc->leader_client[0])
			nd__svc_run_unready(svc);
		return;
	}
	svc->role = n->role;
	switch (n->role) {
	case ND_RAFT_LEADER:
		/* batches still out are in the snapshot or never will be */
		if (svc->gen_done != svc->gen_sent) {
			svc->tainted = true;
			svc->taint_gen = svc->gen_sent;
		}
		become_leader(svc, n);
		break;
	case ND_RAFT_STALLED:
		snprintf(svc->last_raft_err, sizeof(svc->last_raft_err), "%s",
			 n->err);
		/* fall through */
	case ND_RAFT_FOLLOWER:
	case ND_RAFT_STOPPED:
	case ND_RAFT_STARTING:
		/* a copy to serve stale reads from: a leader that stepped
		 * down holds what it applied ahead of the log, and a new
		 * follower none; either asks for the committed one once */
		if (!n->snap && (svc->serving || !svc->loaded)) {
			svc->loaded = false;
			if (!svc->load_asked) {
				svc->load_asked = true;
				nd_raft_resync(s0, svc->raft);
			}
		}
		svc->serving = false;
		/* the committed ledger, when asked for: reads go on */
		if (n->snap)
			load(svc, n);
		nd__svc_run_unready(svc); /* answered, or they wait on */
		break;
	}
	free(n->snap);
	free(n);
	gate_release(svc);
}

/* ---- figures ---- */

void nd__replica_metrics(struct nd_svc *svc, FILE *f)
{
	const struct nd_raft_stats *st = nd_raft_stats(svc->raft);
	uint64_t n, sum;

	if (!st)
		return;
	n = atomic_load(&st->append_count);
	sum = atomic_load(&st->append_ns_sum);
	fprintf(f, "# HELP noded_raft_term The current Raft term.\n"
		"# TYPE noded_raft_term gauge\nnoded_raft_term %llu\n",
		(unsigned long long)atomic_load(&st->term));
	fprintf(f, "# HELP noded_raft_state This member's role: 1 follower, "
		"2 candidate, 3 leader.\n# TYPE noded_raft_state gauge\n"
		"noded_raft_state %d\n", atomic_load(&st->state));
	fprintf(f, "# HELP noded_raft_index Log indexes: last in the log, "
		"committed, applied to the ledger.\n"
		"# TYPE noded_raft_index gauge\n"
		"noded_raft_index{kind=\"last\"} %llu\n"
		"noded_raft_index{kind=\"commit\"} %llu\n"
		"noded_raft_index{kind=\"applied\"} %llu\n",
		(unsigned long long)atomic_load(&st->last_index),
		(unsigned long long)atomic_load(&st->commit_index),
		(unsigned long long)atomic_load(&st->applied_index));
	fprintf(f, "# HELP noded_raft_last_contact_unix_ms When this member "
		"last heard from a leader (itself, leading).\n"
		"# TYPE noded_raft_last_contact_unix_ms gauge\n"
		"noded_raft_last_contact_unix_ms %llu\n",
		(unsigned long long)atomic_load(&st->last_contact_ms));
	fprintf(f, "# HELP noded_raft_leader_changes_total Changes of leader "
		"seen.\n# TYPE noded_raft_leader_changes_total counter\n"
		"noded_raft_leader_changes_total %llu\n",
		(unsigned long long)atomic_load(&st->leader_changes));
	fprintf(f, "# HELP noded_raft_entries_applied_total Log entries "
		"applied to the ledger.\n"
		"# TYPE noded_raft_entries_applied_total counter\n"
		"noded_raft_entries_applied_total %llu\n",
		(unsigned long long)atomic_load(&st->entries));
	fprintf(f, "# HELP noded_raft_snapshots_total Snapshots of the "
		"ledger taken and restored.\n"
		"# TYPE noded_raft_snapshots_total counter\n"
		"noded_raft_snapshots_total{op=\"take\"} %llu\n"
		"noded_raft_snapshots_total{op=\"restore\"} %llu\n",
		(unsigned long long)atomic_load(&st->snapshots),
		(unsigned long long)atomic_load(&st->restores));
	fprintf(f, "# HELP noded_raft_append_seconds Proposed to committed "
		"and applied, over the batches of this leader.\n"
		"# TYPE noded_raft_append_seconds summary\n"
		"noded_raft_append_seconds_sum %.9f\n"
		"noded_raft_append_seconds_count %llu\n",
		(double)sum / 1e9, (unsigned long long)n);
	fprintf(f, "# HELP noded_raft_batches_total Batches of ledger events "
		"proposed by this master, and those that failed.\n"
		"# TYPE noded_raft_batches_total counter\n"
		"noded_raft_batches_total{result=\"proposed\"} %llu\n"
		"noded_raft_batches_total{result=\"failed\"} %llu\n",
		(unsigned long long)svc->batches,
		(unsigned long long)svc->proposals_failed);
	fprintf(f, "# HELP noded_raft_held_messages Replies and pushes "
		"waiting for their batch to commit.\n"
		"# TYPE noded_raft_held_messages gauge\n"
		"noded_raft_held_messages %llu\n",
		(unsigned long long)svc->gated);
	fprintf(f, "# HELP noded_raft_serving 1 while this master leads and "
		"takes writes.\n# TYPE noded_raft_serving gauge\n"
		"noded_raft_serving %d\n", svc->serving ? 1 : 0);
}
