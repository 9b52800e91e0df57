/* The worker's task runner: see run.h. The exec helpers themselves, their
 * sockets and processes, are exec/pool.c's. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/u64map.h"
#include "exec/exec.h"
#include "exec/pool.h"
#include "node/run.h"
#include "client/peer.h"

#define CHUNK (64 * 1024)
/* Ended tasks whose (id, attempt) is remembered after the master took their
 * end. A master sends each (id, attempt) once, so this is a safety margin,
 * not what the rule rests on; it bounds the memory (16 B or so a task). */
#define RAN_RECENT 1024
/* How long after its process ended (and its tree was killed) a task waits
 * for EOF on its pipes before it reads what they hold and ends: a killed
 * process closes them within milliseconds; one that escaped the kill would
 * hold the task RUNNING for ever. */
#define PIPE_LINGER_MS 1000

struct nd_runner;
struct rtask;

struct pipe_rd {
	struct pipe_rd *next_free;    /* in nd_runner.free_pipes */
	struct rtask *t;
	int fd;                       /* -1 once at EOF */
	uint32_t fdno;                /* 1 stdout, 2 stderr */
	bool reading;                 /* a READ is in flight */
	bool sent;                    /* buf is with the master, not acked */
	size_t len;                   /* bytes in buf not yet acknowledged */
	struct nd_op op;
	uint8_t buf[CHUNK];
};

struct rtask {
	struct nd_runner *r;
	uint64_t key;                 /* ours, unique in this process: the id
				       * the exec helper knows it by */
	uint64_t id;                  /* the master's task id */
	uint32_t attempt;
	bool orphan;                  /* of a master instance that is gone,
				       * or void (the master ended this
				       * attempt): being stopped, never
				       * reported */
	bool leased;                  /* its helper enforces a lease */
	bool stopping;                /* killed because the worker stops */
	struct rtask *next_orphan;
	unsigned h;                   /* its helper (pool.h) */
	pid_t pid;
	uint64_t start_unix_ms;
	bool started, started_acked, started_sent;
	bool exited;
	bool pipes_cut;               /* read without waiting, to the end */
	uint64_t exited_ms;           /* shard clock when exited was set */
	bool finish_sent;             /* the end is with the master */
	bool finish_acked;
	uint8_t *exited_pb;           /* packed ExecExited */
	size_t exited_len;
	struct pipe_rd *p[2];
};

struct nd_runner {
	struct nd_shard *s;
	struct nd_conn **conn;
	struct nd_pool *pool;         /* the exec helpers */
	unsigned next_h, slots;
	struct nd_u64map tasks;       /* key -> rtask, orphans included */
	struct nd_u64map by_id;       /* task id -> rtask, of this master
				       * instance, until its end is taken */
	struct nd_u64map ran;         /* ran_key() of the last RAN_RECENT
				       * tasks whose end the master took */
	uint64_t ran_ring[RAN_RECENT];  /* those keys, oldest at ran_head */
	size_t ran_head;
	struct rtask *orphans;        /* freed by the tick once drained */
	uint64_t next_key;
	uint64_t instance;            /* the master's, 0 until registered */
	uint64_t accepted;            /* tasks accepted, for the stats */
	unsigned inflight;            /* pipe reads not completed */
	bool draining;
	bool stopping;                /* nd_runner_stop_all: run nothing new */
	struct pipe_rd *free_pipes;   /* reused: no zeroing, no page faults */
	unsigned nfree_pipes;
};

/* A pipe reader; its 64 KiB buffer is neither zeroed nor freshly faulted
 * when one is reused (that cost showed in profiles, once per task). */
static struct pipe_rd *pipe_get(struct nd_runner *r)
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

static void pipe_put(struct nd_runner *r, struct pipe_rd *p)
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

static struct nd_client *client(struct nd_runner *r)
{
	return *r->conn ? nd_peer_client(*r->conn) : NULL;
}

static void flush(struct nd_runner *r)
{
	if (*r->conn)
		nd_peer_flush(*r->conn);
}

/* ---- reports to the master ---- */

static void send_finished(struct rtask *t);
static void arm_read(struct pipe_rd *p);

static uint64_t ran_key(uint64_t id, uint32_t attempt)
{
	return id ^ ((uint64_t)attempt << 56);
}

/* The master took t's end: remember (id, attempt), forgetting the oldest
 * beyond RAN_RECENT. */
static void ran_remember(struct nd_runner *r, const struct rtask *t)
{
	uint64_t *slot = &r->ran_ring[r->ran_head];

	if (*slot)
		nd_u64map_del(&r->ran, *slot);
	*slot = ran_key(t->id, t->attempt);
	if (nd_u64map_put(&r->ran, *slot, (void *)1))
		*slot = 0;
	r->ran_head = (r->ran_head + 1) % RAN_RECENT;
}

static void ran_forget_all(struct nd_runner *r)
{
	nd_u64map_free(&r->ran);
	memset(r->ran_ring, 0, sizeof(r->ran_ring));
	r->ran_head = 0;
}

static void task_free(struct rtask *t)
{
	struct nd_runner *r = t->r;

	nd_u64map_del(&r->tasks, t->key);
	if (!t->orphan) {
		/* a later attempt may have taken the id's entry */
		if (nd_u64map_get(&r->by_id, t->id) == t)
			nd_u64map_del(&r->by_id, t->id);
		if (t->finish_acked)
			ran_remember(r, t);
	}
	for (int i = 0; i < 2; i++)
		pipe_put(r, t->p[i]);
	free(t->exited_pb);
	free(t);
}

/* Done when the end is reported and no read refers to the task. */
static void maybe_free(struct rtask *t)
{
	for (int i = 0; i < 2; i++)
		if (t->p[i] && (t->p[i]->reading || t->p[i]->fd >= 0))
			return;
	if (t->finish_acked)
		task_free(t);
}

static bool update(struct rtask *t, Noded__TaskUpdate *u, nd_reply_cb cb,
		   void *arg)
{
	Noded__Frame f = NODED__FRAME__INIT;
	struct nd_client *cl = client(t->r);

	if (!cl || t->orphan)
		return false;
	u->task_id = t->id;
	u->attempt = t->attempt;
	f.body_case = NODED__FRAME__BODY_TASK_UPDATE;
	f.task_update = u;
	if (nd_client_start(cl, &f, cb, arg) < 0)
		return false;
	flush(t->r);
	return true;
}

static void on_started_ack(struct nd_client *c, int status,
			   const Noded__Frame *f, bool done, void *arg)
{
	struct rtask *t = arg;

	(void)c;
	(void)f;
	(void)done;
	if (status == -ECANCELED || status == -ECONNRESET)
		t->started_sent = false; /* resend after reconnecting */
	else
		t->started_acked = true;
}

static void send_started(struct rtask *t)
{
	Noded__TaskUpdate u = NODED__TASK_UPDATE__INIT;
	Noded__ExecStarted st = NODED__EXEC_STARTED__INIT;

	st.task_id = t->id;
	st.pid = t->pid;
	st.start_unix_ms = t->start_unix_ms;
	u.body_case = NODED__TASK_UPDATE__BODY_STARTED;
	u.started = &st;
	t->started_sent = update(t, &u, on_started_ack, t);
}

static void on_chunk_ack(struct nd_client *c, int status,
			 const Noded__Frame *f, bool done, void *arg)
{
	struct pipe_rd *p = arg;

	(void)c;
	(void)f;
	(void)done;
	p->sent = false;
	if (p->t->orphan) { /* nobody takes it: read on, dropping it */
		p->len = 0;
		if (p->fd >= 0 && !p->reading)
			arm_read(p);
		return;
	}
	if (status == -ECANCELED || status == -ECONNRESET)
		return; /* kept in buf; sent again after reconnecting */
	p->len = 0;
	if (p->fd >= 0)
		arm_read(p);
	else
		send_finished(p->t);
}

static void send_chunk(struct pipe_rd *p)
{
	Noded__TaskUpdate u = NODED__TASK_UPDATE__INIT;
	Noded__OutputChunk oc = NODED__OUTPUT_CHUNK__INIT;

	oc.task_id = p->t->id;
	oc.fd = p->fdno;
	oc.data.data = p->buf;
	oc.data.len = p->len;
	u.body_case = NODED__TASK_UPDATE__BODY_OUTPUT;
	u.output = &oc;
	p->sent = update(p->t, &u, on_chunk_ack, p);
}

static void on_finish_ack(struct nd_client *c, int status,
			  const Noded__Frame *f, bool done, void *arg)
{
	struct rtask *t = arg;

	(void)c;
	(void)f;
	(void)done;
	if (status == -ECANCELED || status == -ECONNRESET) {
		t->finish_sent = false; /* resend after reconnecting */
		return;
	}
	t->finish_acked = true;
	maybe_free(t);
}

/* Reports the end once the command exited and all its output is acked. */
static void send_finished(struct rtask *t)
{
	Noded__TaskUpdate u = NODED__TASK_UPDATE__INIT;
	Noded__ExecExited *x;

	if (!t->exited || t->finish_sent || t->orphan)
		return;
	for (int i = 0; i < 2; i++)
		if (t->p[i] && (t->p[i]->fd >= 0 || t->p[i]->len))
			return;
	x = noded__exec_exited__unpack(NULL, t->exited_len, t->exited_pb);
	if (!x)
		return;
	u.body_case = NODED__TASK_UPDATE__BODY_FINISHED;
	u.finished = x;
	t->finish_sent = update(t, &u, on_finish_ack, t);
	noded__exec_exited__free_unpacked(x, NULL);
	if (!t->finish_sent)
		return;
	/* Its output is all read and acked: the buffers are free now, not
	 * when the master's ack comes (which may wait for other output). */
	for (int i = 0; i < 2; i++) {
		pipe_put(t->r, t->p[i]);
		t->p[i] = NULL;
	}
}

/* ---- pipes ---- */

static void on_read(struct nd_shard *s, struct nd_op *op,
		    struct io_uring_cqe *cqe)
{
	struct pipe_rd *p = nd_container_of(op, struct pipe_rd, op);
	struct rtask *t = p->t;

	(void)s;
	p->reading = false;
	t->r->inflight--;
	if (cqe->res > 0 && !t->r->draining && t->orphan) {
		arm_read(p); /* nobody takes it: read to EOF, dropping it */
		return;
	}
	if (cqe->res > 0 && !t->r->draining) {
		p->len = (size_t)cqe->res;
		send_chunk(p);
		return;
	}
	close(p->fd); /* EOF, an error, or we are stopping */
	p->fd = -1;
	if (t->r->draining)
		maybe_free(t);
	else
		send_finished(t);
}

static void arm_read(struct pipe_rd *p)
{
	struct io_uring_sqe *sqe = nd_shard_sqe(p->t->r->s);

	io_uring_prep_read(sqe, p->fd, p->buf, CHUNK, (uint64_t)-1);
	io_uring_sqe_set_data64(sqe, ND_UD(&p->op, ND_TAG_OP));
	p->reading = true;
	p->t->r->inflight++;
}

/* ---- helper events ---- */

/* An end the helper could not report (it died): build it ourselves. */
static void fake_exit_as(struct rtask *t, const char *reason,
			 bool lease_expired, bool stopping)
{
	Noded__ExecExited x = NODED__EXEC_EXITED__INIT;

	x.task_id = t->id;
	x.exit_code = 125;
	x.spawn_errno = EPIPE;
	x.reason = (char *)reason;
	x.lease_expired = lease_expired;
	x.worker_stopping = stopping;
	free(t->exited_pb);
	t->exited_len = noded__exec_exited__get_packed_size(&x);
	t->exited_pb = malloc(t->exited_len ? t->exited_len : 1);
	if (t->exited_pb)
		noded__exec_exited__pack(&x, t->exited_pb);
	t->exited = true;
	t->exited_ms = t->r->s ? t->r->s->now_ms : 0;
}

static void fake_exit(struct rtask *t, const char *reason)
{
	fake_exit_as(t, reason, false, false);
}

static void on_started(void *arg, const Noded__ExecStarted *st,
		       const int *fds)
{
	struct nd_runner *r = arg;
	struct rtask *t = nd_u64map_get(&r->tasks, st->task_id);

	if (!t) { /* not ours any more */
		close(fds[0]);
		close(fds[1]);
		kill(-st->pid, SIGKILL);
		return;
	}
	t->started = true;
	t->pid = st->pid;
	t->start_unix_ms = st->start_unix_ms;
	for (int i = 0; i < 2; i++) {
		struct pipe_rd *p = pipe_get(r);

		if (!p) {
			close(fds[i]);
			continue;
		}
		p->t = t;
		p->fd = fds[i];
		p->fdno = (uint32_t)i + 1;
		p->op.cb = on_read;
		t->p[i] = p;
		arm_read(p);
	}
	/* "started" waits for nd_runner_tick: most tasks end before it, and
	 * their end carries the start time, which saves a message pair (and
	 * two wake-ups) per short task. */
}

static void on_exited(void *arg, const Noded__ExecExited *x)
{
	struct nd_runner *r = arg;
	struct rtask *t = nd_u64map_get(&r->tasks, x->task_id);
	Noded__ExecExited ours;
	size_t len;

	if (!t)
		return;
	ours = *x;
	ours.task_id = t->id; /* the master's id, not the helper's key */
	ours.worker_stopping = t->stopping && x->cancelled;
	ND_LOG(ND_LOG_DEBUG, "task.exited", ND_U("task", t->id),
	       ND_I("exit_code", x->exit_code), ND_I("signal", x->signal),
	       ND_B("timed_out", x->timed_out), ND_B("cancelled", x->cancelled),
	       ND_S("reason", x->reason));
	len = noded__exec_exited__get_packed_size(&ours);
	t->exited_pb = malloc(len ? len : 1);
	if (!t->exited_pb)
		return;
	noded__exec_exited__pack(&ours, t->exited_pb);
	t->exited_len = len;
	t->exited = true;
	t->exited_ms = r->s->now_ms;
	send_finished(t);
}

/* Helper h died (pool.h): its tasks end as failed. */
static void on_helper_died(void *arg, unsigned h)
{
	struct nd_runner *r = arg;

	for (size_t i = 0; i < r->tasks.cap; i++) {
		struct rtask *t = r->tasks.keys[i] ? r->tasks.vals[i] : NULL;

		if (!t || t->h != h || t->exited)
			continue;
		if (t->pid > 0)
			kill(-t->pid, SIGKILL);
		fake_exit(t, "the exec helper died");
		send_finished(t);
	}
}

static void on_unsent(void *arg, uint64_t key)
{
	struct nd_runner *r = arg;
	struct rtask *t = nd_u64map_get(&r->tasks, key);

	if (t && !t->exited) {
		fake_exit(t, "could not reach the exec helper");
		send_finished(t);
	}
}

static const struct nd_pool_ops pool_ops = {
	.started = on_started,
	.exited = on_exited,
	.died = on_helper_died,
	.unsent = on_unsent,
};

/* ---- requests to helpers ---- */

static void send_request(struct rtask *t, const Noded__ExecRequest *req)
{
	if (nd_pool_send(t->r->pool, t->h, t->key, req) < 0) {
		fake_exit(t, "request too large for the exec helper");
		send_finished(t);
	}
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
	ran_remember(r, t);
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
		fake_exit_as(t, "worker stopping", false, true);
		send_finished(t);
		return;
	}
	if (busy(r, NULL, NULL, 0) > r->slots) {
		fake_exit(t, "worker has no free slot");
		send_finished(t);
		return;
	}
	if (nd_pool_dead(r->pool, t->h)) {
		fake_exit(t, "no exec helper");
		send_finished(t);
		return;
	}
	if (lease_deadline < 0) {
		/* It names a heartbeat too old for us to know when we sent
		 * it: whatever its lease was, it is over. */
		fake_exit_as(t, "lease expired before it started", true,
			     false);
		send_finished(t);
		return;
	}
	t->leased = lease_deadline > 0;
	sp.task_id = t->key;
	sp.command = a->command; /* the helper checks and execs it */
	sp.lease_deadline_mono_ms = lease_deadline;
	req.body_case = NODED__EXEC_REQUEST__BODY_SPAWN;
	req.spawn = &sp;
	send_request(t, &req);
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
	send_request(t, &req);
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
	ran_forget_all(r);
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
			arm_read(p);
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
		task_free(t);
	}
}

void nd_runner_connected(struct nd_runner *r, uint64_t instance)
{
	if (instance && r->instance && instance != r->instance)
		new_master(r);
	if (instance)
		r->instance = instance;
	for (size_t i = 0; i < r->tasks.cap; i++) {
		struct rtask *t = r->tasks.keys[i] ? r->tasks.vals[i] : NULL;

		if (!t || t->orphan)
			continue;
		if (t->started && !t->exited && !t->started_acked &&
		    !t->started_sent)
			send_started(t);
		for (int k = 0; k < 2; k++)
			if (t->p[k] && t->p[k]->len && !t->p[k]->sent)
				send_chunk(t->p[k]);
		send_finished(t);
	}
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
	for (size_t i = 0; i < r->tasks.cap; i++) {
		struct rtask *t = r->tasks.keys[i] ? r->tasks.vals[i] : NULL;

		if (t && t->started && !t->exited && !t->started_sent &&
		    !t->started_acked && !t->orphan)
			send_started(t);
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
	ret = nd_pool_new(&r->pool, nhelpers, exe, &pool_ops, r);
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
