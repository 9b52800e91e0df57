/* The worker's task runner: see run.h; a running task's reports, pipes and
 * helper events are in run_events.c. The exec helpers themselves, their
 * sockets and processes, are exec/pool.c's. */

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "client/peer.h"
#include "node/run_int.h"

/* A pipe reader; its 64 KiB buffer is neither zeroed nor freshly faulted
 * when one is reused (that cost showed in profiles, once per task). */
struct pipe_rd *nd__run_pipe_get(struct nd_runner *r)
{
	struct pipe_rd *p = r->free_pipes;

	if (p) {
		r->free_pipes = p->next_free;
		r->nfree_pipes--;
	} else if (!(p = malloc(sizeof(*p)))) {
		return NULL;
	}
	memset(p, 0, offsetof(struct pipe_rd, buf));
	return p;
}

void nd__run_pipe_put(struct nd_runner *r, struct pipe_rd *p)
{
	if (!p)
		return;
	if (r->nfree_pipes >= 2 * r->slots + 4) {
		free(p);
		return;
	}
	p->next_free = r->free_pipes;
	r->free_pipes = p;
	r->nfree_pipes++;
}

struct nd_client *nd__run_client(struct nd_runner *r)
{
	return *r->conn ? nd_peer_client(*r->conn) : NULL;
}

void nd__run_flush(struct nd_runner *r)
{
	if (*r->conn)
		nd_peer_flush(*r->conn);
}

/* ---- the interface ---- */

/* Tasks holding a slot: the master frees a slot when it takes the task's
 * end, and may assign the next task before our ack for that end arrives, so
 * a task whose end is sent holds none. */
static size_t busy(const struct nd_runner *r, uint64_t *ids,
		   uint32_t *attempts, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < r->tasks.cap; i++) {
		const struct rtask *t = r->tasks.keys[i] ? r->tasks.vals[i]
							 : NULL;

		if (!t || t->finish_sent || t->orphan)
			continue;
		if (ids && n < max) {
			ids[n] = t->id;
			if (attempts)
				attempts[n] = t->attempt;
		}
		n++;
	}
	return n;
}

static void drop_output(struct rtask *t);
static void stop(struct rtask *t);

/*
 * The master ended this attempt (LOST, or retried elsewhere, while we were
 * cut off or frozen): stop it, never report it again, and remember it as
 * run, so that the master's next attempt of the same task may come here.
 */
static void void_attempt(struct rtask *t)
{
	struct nd_runner *r = t->r;

	/* An end already sent is the master's to ignore; we free it on
	 * its ack as usual. */
	if (t->orphan || t->finish_sent)
		return;
	ND_LOG(ND_LOG_WARN, "worker.attempt_void", ND_U("task", t->id),
	       ND_U("attempt", t->attempt), ND_B("running", !t->exited),
	       ND_S("msg", "the master ended this attempt while we were cut "
		    "off; stopping it"));
	nd_u64map_del(&r->by_id, t->id);
	nd__run_ran_remember(r, t);
	t->orphan = true;
	t->next_orphan = r->orphans;
	r->orphans = t;
	stop(t);
	drop_output(t);
}

void nd_runner_void(struct nd_runner *r, uint64_t task_id, uint32_t attempt)
{
	struct rtask *t = nd_u64map_get(&r->by_id, task_id);

	if (t && t->attempt == attempt)
		void_attempt(t);
}

void nd_runner_lease(struct nd_runner *r, int64_t deadline)
{
	Noded__ExecRequest req = NODED__EXEC_REQUEST__INIT;
	Noded__ExecLease l = NODED__EXEC_LEASE__INIT;

	l.deadline_mono_ms = deadline;
	req.body_case = NODED__EXEC_REQUEST__BODY_LEASE;
	req.lease = &l;
	/* one datagram per helper that runs a leased attempt */
	for (unsigned h = 0; h < nd_pool_size(r->pool); h++) {
		bool any = false;

		for (size_t k = 0; !any && k < r->tasks.cap; k++) {
			struct rtask *t = r->tasks.keys[k] ? r->tasks.vals[k]
							   : NULL;

			any = t && t->h == h && t->leased && !t->exited &&
			      !t->orphan;
		}
		if (any && !nd_pool_dead(r->pool, h))
			nd_pool_send(r->pool, h, 0, &req);
	}
}

void nd_runner_assign(struct nd_runner *r, const Noded__TaskAssignment *a,
		      int64_t lease_deadline)
{
	Noded__ExecRequest req = NODED__EXEC_REQUEST__INIT;
	Noded__ExecSpawn sp = NODED__EXEC_SPAWN__INIT;
	struct rtask *t;

	if (!a->task_id ||
	    nd_u64map_get(&r->ran, ran_key(a->task_id, a->attempt)))
		return; /* never run a task (attempt) twice */
	t = nd_u64map_get(&r->by_id, a->task_id);
	if (t && t->attempt >= a->attempt)
		return;
	if (t)
		void_attempt(t); /* the master moved on to a later attempt */
	t = calloc(1, sizeof(*t));
	if (!t)
		return;
	t->r = r;
	t->key = ++r->next_key;
	t->id = a->task_id;
	t->attempt = a->attempt;
	t->h = r->next_h++ % nd_pool_size(r->pool);
	if (nd_u64map_put(&r->tasks, t->key, t) ||
	    nd_u64map_put(&r->by_id, t->id, t)) {
		nd_u64map_del(&r->tasks, t->key);
		free(t);
		return;
	}
	r->accepted++;
	if (r->stopping) {
		/* sent before the master knew we stop */
		nd__run_fake_exit_as(t, "worker stopping", false, true);
		nd__run_send_finished(t);
		return;
	}
	if (busy(r, NULL, NULL, 0) > r->slots) {
		nd__run_fake_exit(t, "worker has no free slot");
		nd__run_send_finished(t);
		return;
	}
	if (nd_pool_dead(r->pool, t->h)) {
		nd__run_fake_exit(t, "no exec helper");
		nd__run_send_finished(t);
		return;
	}
	if (lease_deadline < 0) {
		/* It names a heartbeat too old for us to know when we sent
		 * it: whatever its lease was, it is over. */
		nd__run_fake_exit_as(t, "lease expired before it started", true,
				     false);
		nd__run_send_finished(t);
		return;
	}
	t->leased = lease_deadline > 0;
	sp.task_id = t->key;
	sp.command = a->command; /* the helper checks and execs it */
	sp.lease_deadline_mono_ms = lease_deadline;
	sp.master_task_id = a->task_id; /* the task's NODED_* variables */
	sp.job_id = a->job_id;
	sp.node = (char *)(r->node ? r->node : "");
	sp.attempt = a->attempt;
	req.body_case = NODED__EXEC_REQUEST__BODY_SPAWN;
	req.spawn = &sp;
	nd__run_send_request(t, &req);
}

/* Asks t's helper to stop it (TERM, grace, KILL); its end comes back. */
static void stop(struct rtask *t)
{
	Noded__ExecRequest req = NODED__EXEC_REQUEST__INIT;
	Noded__ExecKill k = NODED__EXEC_KILL__INIT;

	if (t->exited || nd_pool_dead(t->r->pool, t->h))
		return;
	k.task_id = t->key;
	req.body_case = NODED__EXEC_REQUEST__BODY_KILL;
	req.kill = &k;
	nd__run_send_request(t, &req);
}

void nd_runner_set_node(struct nd_runner *r, const char *node)
{
	r->node = node;
}

void nd_runner_cancel(struct nd_runner *r, uint64_t task_id)
{
	struct rtask *t = nd_u64map_get(&r->by_id, task_id);

	if (t)
		stop(t);
}

/*
 * Registered with another master instance than before (it restarted and
 * knows none of the old one's tasks): the tasks of the old one are stopped
 * and never reported (no master knows them any more), and the ids run for
 * it are forgotten, so that an id of the new master is never taken for the
 * old one's (ids are not reused, but a master whose --data-dir was lost or
 * whose clock went back could give one again).
 */
static void new_master(struct nd_runner *r)
{
	size_t n = 0;

	for (size_t i = 0; i < r->tasks.cap; i++) {
		struct rtask *t = r->tasks.keys[i] ? r->tasks.vals[i] : NULL;

		if (!t || t->orphan)
			continue;
		t->orphan = true;
		t->next_orphan = r->orphans;
		r->orphans = t;
		n += !t->exited;
		stop(t);
		drop_output(t);
	}
	nd_u64map_free(&r->by_id);
	nd__run_ran_forget_all(r);
	if (n)
		ND_LOG(ND_LOG_WARN, "worker.master_restarted", ND_U("stopped_tasks", n),
		       ND_S("msg", "the master restarted; stopping the tasks "
			    "it no longer knows"));
}

/* Output held for a master that will not take it is dropped; read on (a
 * chunk whose ack is still to come reads on from that ack). */
static void drop_output(struct rtask *t)
{
	for (int k = 0; k < 2; k++) {
		struct pipe_rd *p = t->p[k];

		if (!p || p->sent)
			continue;
		p->len = 0;
		p->sent = false;
		if (p->fd >= 0 && !p->reading)
			nd__run_arm_read(p);
	}
}

/* Frees the orphans whose pipes are closed (no read refers to them; their
 * helper's late events find no task and are dropped). */
static void orphans_sweep(struct nd_runner *r)
{
	struct rtask **pp = &r->orphans;

	while (*pp) {
		struct rtask *t = *pp;
		bool busy_pipe = false;

		for (int i = 0; i < 2; i++)
			if (t->p[i] && (t->p[i]->reading || t->p[i]->fd >= 0 ||
					t->p[i]->sent))
				busy_pipe = true;
		/* a reply still to come refers to it */
		if (t->started_sent && !t->started_acked)
			busy_pipe = true;
		if (busy_pipe) {
			pp = &t->next_orphan;
			continue;
		}
		*pp = t->next_orphan;
		nd__run_task_free(t);
	}
}

/* Sends every report not yet taken that is not on its way. */
static void resend(struct nd_runner *r)
{
	r->resend_ms = 0;
	for (size_t i = 0; i < r->tasks.cap; i++) {
		struct rtask *t = r->tasks.keys[i] ? r->tasks.vals[i] : NULL;

		if (!t || t->orphan)
			continue;
		if (t->started && !t->exited && !t->started_acked &&
		    !t->started_sent)
			nd__run_send_started(t);
		for (int k = 0; k < 2; k++)
			if (t->p[k] && t->p[k]->len && !t->p[k]->sent)
				nd__run_send_chunk(t->p[k]);
		nd__run_send_finished(t);
	}
}

void nd_runner_connected(struct nd_runner *r, uint64_t instance)
{
	if (instance && r->instance && instance != r->instance)
		new_master(r);
	if (instance)
		r->instance = instance;
	resend(r);
}

/*
 * t's process ended PIPE_LINGER_MS ago and a pipe is still open: some
 * process outside the tree the helper killed holds it. Its reads stop
 * waiting (O_NONBLOCK: what the pipe holds is still read and sent, then
 * EAGAIN ends it like EOF), and a read waiting now, on an empty pipe, is
 * cancelled (it completes with -ECANCELED, or with data that raced in).
 */
static void cut_pipes(struct rtask *t)
{
	bool held = false;

	t->pipes_cut = true;
	for (int i = 0; i < 2; i++) {
		struct pipe_rd *p = t->p[i];
		struct io_uring_sqe *sqe;
		int fl;

		if (!p || p->fd < 0)
			continue;
		fl = fcntl(p->fd, F_GETFL);
		if (fl >= 0)
			fcntl(p->fd, F_SETFL, fl | O_NONBLOCK);
		if (!p->reading)
			continue; /* waits for an ack; its next read won't */
		held = true; /* empty, yet no EOF: someone has it open */
		sqe = nd_shard_sqe(t->r->s);
		io_uring_prep_cancel64(sqe, ND_UD(&p->op, ND_TAG_OP), 0);
		io_uring_sqe_set_data64(sqe, ND_TAG_IGNORE);
	}
	if (held)
		ND_LOG(ND_LOG_WARN, "task.pipes_held", ND_U("task", t->id),
		       ND_S("msg", "the task's process ended and its tree "
			    "was killed, but something else still holds its "
			    "output pipes; ending it with the output read so "
			    "far"));
}

void nd_runner_tick(struct nd_runner *r)
{
	orphans_sweep(r);
	if (r->resend_ms && r->s->now_ms >= r->resend_ms && nd__run_client(r))
		resend(r);
	for (size_t i = 0; i < r->tasks.cap; i++) {
		struct rtask *t = r->tasks.keys[i] ? r->tasks.vals[i] : NULL;

		if (t && t->started && !t->exited && !t->started_sent &&
		    !t->started_acked && !t->orphan)
			nd__run_send_started(t);
		if (t && t->exited && !t->pipes_cut &&
		    r->s->now_ms - t->exited_ms >= PIPE_LINGER_MS &&
		    ((t->p[0] && t->p[0]->fd >= 0) ||
		     (t->p[1] && t->p[1]->fd >= 0)))
			cut_pipes(t);
	}
}

void nd_runner_stop_all(struct nd_runner *r)
{
	r->stopping = true;
	for (size_t i = 0; i < r->tasks.cap; i++) {
		struct rtask *t = r->tasks.keys[i] ? r->tasks.vals[i] : NULL;

		if (!t || t->orphan || t->exited)
			continue;
		t->stopping = true;
		stop(t);
	}
}

size_t nd_runner_unfinished(const struct nd_runner *r)
{
	size_t n = 0;

	for (size_t i = 0; i < r->tasks.cap; i++) {
		const struct rtask *t = r->tasks.keys[i] ? r->tasks.vals[i]
							 : NULL;

		n += t && !t->orphan;
	}
	return n;
}

size_t nd_runner_remembered(const struct nd_runner *r, uint64_t *accepted)
{
	if (accepted)
		*accepted = r->accepted;
	return r->by_id.count + r->ran.count;
}

size_t nd_runner_running(const struct nd_runner *r, uint64_t *ids,
			 uint32_t *attempts, size_t max)
{
	size_t n = busy(r, ids, attempts, max);

	return n < max ? n : max;
}

bool nd_runner_drain(struct nd_runner *r)
{
	bool pool_busy;

	r->draining = true;
	/* EOF on its socket makes a helper SIGKILL every process group it
	 * runs and exit; the pipes then reach EOF. */
	pool_busy = nd_pool_drain(r->pool);
	return r->inflight > 0 || pool_busy;
}

int nd_runner_new(struct nd_runner **out, unsigned nhelpers, unsigned slots,
		  const char *exe)
{
	struct nd_runner *r = calloc(1, sizeof(*r));
	int ret = -ENOMEM;

	if (!r)
		return -ENOMEM;
	r->slots = slots;
	ret = nd_pool_new(&r->pool, nhelpers, exe, &nd__run_pool_ops, r);
	if (ret)
		goto err;
	*out = r;
	return 0;
err:
	nd_runner_free(r);
	return ret;
}

void nd_runner_start(struct nd_runner *r, struct nd_shard *s,
		     struct nd_conn **conn)
{
	r->s = s;
	r->conn = conn;
	nd_pool_start(r->pool, s);
}

void nd_runner_free(struct nd_runner *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->tasks.cap; i++) {
		struct rtask *t = r->tasks.keys[i] ? r->tasks.vals[i] : NULL;

		if (!t)
			continue;
		for (int k = 0; k < 2; k++)
			if (t->p[k] && t->p[k]->fd >= 0)
				close(t->p[k]->fd);
		for (int k = 0; k < 2; k++)
			free(t->p[k]);
		free(t->exited_pb);
		free(t);
	}
	nd_u64map_free(&r->tasks);
	nd_u64map_free(&r->by_id);
	nd_u64map_free(&r->ran);
	while (r->free_pipes) {
		struct pipe_rd *p = r->free_pipes;

		r->free_pipes = p->next_free;
		free(p);
	}
	nd_pool_free(r->pool);
	free(r);
}
