/*
 * The worker's task runner (see run.h), what happens to a running task:
 * its reports to the master (started, output chunks, finished, each
 * resent until acknowledged), the reads of its output pipes, and the exec
 * helpers' events (started, exited, a helper that died).
 */

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "client/peer.h"
#include "noded/errors.h"
#include "node/run_int.h"

/* ---- reports to the master ---- */

/* The master took t's end: remember (id, attempt), forgetting the oldest
 * beyond RAN_RECENT. */
void nd__run_ran_remember(struct nd_runner *r, const struct rtask *t)
{
	uint64_t *slot = &r->ran_ring[r->ran_head];

	if (*slot)
		nd_u64map_del(&r->ran, *slot);
	*slot = ran_key(t->id, t->attempt);
	if (nd_u64map_put(&r->ran, *slot, (void *)1))
		*slot = 0;
	r->ran_head = (r->ran_head + 1) % RAN_RECENT;
}

void nd__run_ran_forget_all(struct nd_runner *r)
{
	nd_u64map_free(&r->ran);
	memset(r->ran_ring, 0, sizeof(r->ran_ring));
	r->ran_head = 0;
}

void nd__run_task_free(struct rtask *t)
{
	struct nd_runner *r = t->r;

	nd_u64map_del(&r->tasks, t->key);
	if (!t->orphan) {
		/* a later attempt may have taken the id's entry */
		if (nd_u64map_get(&r->by_id, t->id) == t)
			nd_u64map_del(&r->by_id, t->id);
		if (t->finish_acked)
			nd__run_ran_remember(r, t);
	}
	for (int i = 0; i < 2; i++)
		nd__run_pipe_put(r, t->p[i]);
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
		nd__run_task_free(t);
}

static bool update(struct rtask *t, Noded__TaskUpdate *u, nd_reply_cb cb,
		   void *arg)
{
	Noded__Frame f = NODED__FRAME__INIT;
	struct nd_client *cl = nd__run_client(t->r);

	if (!cl || t->orphan)
		return false;
	u->task_id = t->id;
	u->attempt = t->attempt;
	f.body_case = NODED__FRAME__BODY_TASK_UPDATE;
	f.task_update = u;
	if (nd_client_start(cl, &f, cb, arg) < 0)
		return false;
	nd__run_flush(t->r);
	return true;
}

/*
 * Could the master not take this report now (its log is out of space, it
 * does not lead the cluster, it is starting)? Then the report is kept and
 * sent again a second later (nd_runner_tick), as often as it takes, or
 * after reconnecting. Dropping it would leave the task unended on the
 * master.
 */
static bool master_cannot_take(struct nd_runner *r, int status,
			       const Noded__Frame *f)
{
	Noded__ErrorCode code;

	if (status != ND_EREMOTE || !f ||
	    f->body_case != NODED__FRAME__BODY_ERROR || !f->error)
		return false;
	code = f->error->code;
	if (code != NODED__ERROR_CODE__UNAVAILABLE &&
	    code != NODED__ERROR_CODE__RESOURCE_EXHAUSTED &&
	    code != NODED__ERROR_CODE__NOT_LEADER)
		return false;
	if (!r->resend_ms)
		ND_LOG(ND_LOG_WARN, "worker.report_refused",
		       ND_S("err", f->error->message),
		       ND_S("msg", "the master could not take a task report; "
			    "sending it again in a second"));
	r->resend_ms = r->s->now_ms + RESEND_MS;
	return true;
}

static void on_started_ack(struct nd_client *c, int status,
			   const Noded__Frame *f, bool done, void *arg)
{
	struct rtask *t = arg;

	if (status == -ECANCELED || status == -ECONNRESET ||
	    master_cannot_take(t->r, status, f))
		t->started_sent = false; /* resend after reconnecting */
	else
		t->started_acked = true;
}

void nd__run_send_started(struct rtask *t)
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

	p->sent = false;
	if (p->t->orphan) { /* nobody takes it: read on, dropping it */
		p->len = 0;
		if (p->fd >= 0 && !p->reading)
			nd__run_arm_read(p);
		return;
	}
	if (status == -ECANCELED || status == -ECONNRESET ||
	    master_cannot_take(p->t->r, status, f))
		return; /* kept in buf; sent again after reconnecting */
	p->len = 0;
	if (p->fd >= 0)
		nd__run_arm_read(p);
	else
		nd__run_send_finished(p->t);
}

void nd__run_send_chunk(struct pipe_rd *p)
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

	if (status == -ECANCELED || status == -ECONNRESET ||
	    master_cannot_take(t->r, status, f)) {
		t->finish_sent = false; /* resend after reconnecting */
		return;
	}
	t->finish_acked = true;
	maybe_free(t);
}

/* Reports the end once the command exited and all its output is acked. */
void nd__run_send_finished(struct rtask *t)
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
		nd__run_pipe_put(t->r, t->p[i]);
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
		nd__run_arm_read(p); /* nobody takes it: read to EOF, dropping it */
		return;
	}
	if (cqe->res > 0 && !t->r->draining) {
		p->len = (size_t)cqe->res;
		nd__run_send_chunk(p);
		return;
	}
	close(p->fd); /* EOF, an error, or we are stopping */
	p->fd = -1;
	if (t->r->draining)
		maybe_free(t);
	else
		nd__run_send_finished(t);
}

void nd__run_arm_read(struct pipe_rd *p)
{
	struct io_uring_sqe *sqe = nd_shard_sqe(p->t->r->s);

	io_uring_prep_read(sqe, p->fd, p->buf, CHUNK, (uint64_t)-1);
	io_uring_sqe_set_data64(sqe, ND_UD(&p->op, ND_TAG_OP));
	p->reading = true;
	p->t->r->inflight++;
}

/* ---- helper events ---- */

/* An end the helper could not report (it died): build it ourselves. */
void nd__run_fake_exit_as(struct rtask *t, const char *reason,
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

void nd__run_fake_exit(struct rtask *t, const char *reason)
{
	nd__run_fake_exit_as(t, reason, false, false);
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
		struct pipe_rd *p = nd__run_pipe_get(r);

		if (!p) {
			close(fds[i]);
			continue;
		}
		p->t = t;
		p->fd = fds[i];
		p->fdno = (uint32_t)i + 1;
		p->op.cb = on_read;
		t->p[i] = p;
		nd__run_arm_read(p);
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
	nd__run_send_finished(t);
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
		nd__run_fake_exit(t, "the exec helper died");
		nd__run_send_finished(t);
	}
}

static void on_unsent(void *arg, uint64_t key)
{
	struct nd_runner *r = arg;
	struct rtask *t = nd_u64map_get(&r->tasks, key);

	if (t && !t->exited) {
		nd__run_fake_exit(t, "could not reach the exec helper");
		nd__run_send_finished(t);
	}
}

const struct nd_pool_ops nd__run_pool_ops = {
	.started = on_started,
	.exited = on_exited,
	.died = on_helper_died,
	.unsent = on_unsent,
};

/* ---- requests to helpers ---- */

void nd__run_send_request(struct rtask *t, const Noded__ExecRequest *req)
{
	if (nd_pool_send(t->r->pool, t->h, t->key, req) < 0) {
		nd__run_fake_exit(t, "request too large for the exec helper");
		nd__run_send_finished(t);
	}
}
