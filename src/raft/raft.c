/*
 * The raft shard (raft.h): libraft on its own thread, driven from io_uring.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "core/durable.h"
#include "core/log.h"
#include "core/server.h"
#include "core/time.h"
#include "noded/auth.h"
#include "raft/fsm.h"
#include "raft/raft.h"
#include "raft/transport.h"
#include "state/ledger.h"

struct nd_raft {
	struct nd_shard *s, *s0;
	void (*news)(struct nd_shard *s0, struct nd_raft_news *n);
	void (*entry)(struct nd_shard *s0, struct nd_raft_entry *e);
	uv_loop_t loop;
	struct raft_uv_transport transport;
	struct raft_io io;
	struct nd_fsm fsm;            /* the ledger: the committed state */
	struct raft raft;
	struct nd_raft_stats st;

	struct nd_op poll_op, timer_op;
	struct __kernel_timespec ts;
	bool timer_armed;
	uint64_t timer_due_ms;        /* monotonic, of the armed timeout */

	int last_state;               /* raft_state() as last seen */
	raft_id last_leader;
	bool barrier_busy;
	char told_client[128];        /* the leader's client address as shard
				       * 0 was last told */
	bool news_due;                /* the role or leader changed */
	bool resync_due;              /* shard 0 asked for the ledger */
	/* test hook NODED_FAULT_RAFT_APPLY=[K:]N: after K proposals, N
	 * fail with RAFT_IOERR, never written */
	unsigned fault_skip, fault_apply;
	struct raft_barrier barrier;
	bool closing, closed;
};

struct apply_req {
	struct raft_apply req;
	struct nd_raft_batch *b;
};

/* ---- telling shard 0 ---- */

static void entry_home(struct nd_shard *s0, struct nd_msg *m)
{
	struct nd_raft_entry *e = nd_container_of(m, struct nd_raft_entry,
						  msg);

	e->deliver(s0, e);
}

/* A follower's shard 0 keeps its copy of the ledger current, for reads
 * asked to be served anywhere (stale). Without memory for the copy, shard
 * 0 is sent the whole ledger again instead (a gap must not stay). */
static void follower_applied(struct nd_fsm *f, const struct raft_buffer *buf)
{
	struct nd_raft *r = nd_container_of(f, struct nd_raft, fsm);
	struct nd_raft_entry *e;

	if (r->closing || raft_state(&r->raft) == RAFT_LEADER)
		return;
	e = malloc(sizeof(*e) + buf->len);
	if (!e) {
		r->resync_due = true;
		return;
	}
	e->deliver = r->entry;
	e->len = buf->len;
	memcpy(e->data, buf->base, buf->len);
	nd_shard_post(r->s, r->s0, &e->msg, entry_home);
}

static void post_config(struct nd_raft *r);

/* The voters of the log's configuration, and the leader's client
 * address, into n (n->leader_id set). */
static void config_copy(struct nd_raft *r, struct nd_raft_news *n)
{
	const struct raft_configuration *c = &r->raft.configuration;
	const struct nd_lmember *m = nd_ledger_member(&r->fsm.ledger,
						      n->leader_id);

	snprintf(n->leader_client, sizeof(n->leader_client), "%s",
		 m ? m->client : "");
	snprintf(n->leader_http, sizeof(n->leader_http), "%s",
		 m ? m->http : "");
	snprintf(r->told_client, sizeof(r->told_client), "%s",
		 n->leader_client);
	n->nvoters = 0;
	for (unsigned i = 0; i < c->n && n->nvoters < ND_RAFT_MAX_VOTERS; i++)
		if (c->servers[i].role == RAFT_VOTER)
			n->voters[n->nvoters++] = c->servers[i].id;
}

static void news_home(struct nd_shard *s0, struct nd_msg *m)
{
	struct nd_raft_news *n = nd_container_of(m, struct nd_raft_news, msg);

	n->deliver(s0, n);
}

static void post_news(struct nd_raft *r, enum nd_raft_role role,
		      const char *err)
{
	struct nd_raft_news *n = calloc(1, sizeof(*n));
	raft_id id = 0;
	const char *addr = NULL;

	if (!n) {
		/* shard 0 keeps its last view; the next change tells again */
		ND_LOG(ND_LOG_ERROR, "raft.news_lost", ND_S("err", "out of memory"));
		return;
	}
	n->role = role;
	n->term = r->raft.current_term;
	if (role != ND_RAFT_STOPPED)
		raft_leader(&r->raft, &id, &addr);
	if (role == ND_RAFT_STALLED)
		addr = NULL, id = 0; /* no leader that can take anything */
	n->leader_id = id;
	snprintf(n->leader, sizeof(n->leader), "%s", addr ? addr : "");
	config_copy(r, n);
	snprintf(n->err, sizeof(n->err), "%s", err ? err : "");
	if ((role == ND_RAFT_LEADER || r->resync_due) &&
	    nd_ledger_snapshot(&r->fsm.ledger, &n->snap, &n->snap_len)) {
		/* serving from a ledger we cannot copy is not possible:
		 * try again at the next loop */
		free(n);
		r->news_due = true;
		return;
	}
	if (n->snap)
		r->resync_due = false;
	n->deliver = r->news;
	nd_shard_post(r->s, r->s0, &n->msg, news_home);
}

static void barrier_cb(struct raft_barrier *req, int status)
{
	struct nd_raft *r = req->data;

	r->barrier_busy = false;
	if (r->closing)
		return;
	ND_LOG(ND_LOG_DEBUG, "raft.barrier", ND_S("err", status ?
	       raft_strerror(status) : ""));
	if (status) {
		/* lost the leadership meanwhile, or the log cannot be
		 * written (a full disk): tried again after the next run;
		 * shard 0, waiting for the ledger, gets it for reads */
		r->news_due = true;
		if (r->resync_due)
			post_news(r, ND_RAFT_STALLED, raft_strerror(status));
		return;
	}
	post_news(r, ND_RAFT_LEADER, NULL);
}

/* After each run of the loop: a change of role or leader is news. A new
 * leader serves only once everything committed before it is applied. */
static void watch_state(struct nd_raft *r)
{
	int st = raft_state(&r->raft), err;
	raft_id leader = 0;
	const char *addr;

	raft_leader(&r->raft, &leader, &addr);
	atomic_store(&r->st.state, st);
	atomic_store(&r->st.term, r->raft.current_term);
	atomic_store(&r->st.commit_index, r->raft.commit_index);
	atomic_store(&r->st.applied_index, r->raft.last_applied);
	atomic_store(&r->st.last_index, raft_last_index(&r->raft));
	atomic_store(&r->st.entries, atomic_load(&r->fsm.entries));
	atomic_store(&r->st.snapshots, atomic_load(&r->fsm.snapshots));
	atomic_store(&r->st.restores, atomic_load(&r->fsm.restores));
	if (st == RAFT_LEADER || leader)
		atomic_store(&r->st.last_contact_ms, nd_unix_ms());
	if (r->closing)
		return;
	if (st != r->last_state || leader != r->last_leader) {
		if (leader != r->last_leader)
			atomic_fetch_add(&r->st.leader_changes, 1);
		ND_LOG(ND_LOG_INFO, "raft.state", ND_S("state", raft_state_name(st)),
		       ND_U("term", r->raft.current_term),
		       ND_S("leader", leader ? addr : ""));
		r->last_state = st;
		r->last_leader = leader;
		r->news_due = true;
	}
	if (!r->news_due && !r->resync_due && leader) {
		const struct nd_lmember *m = nd_ledger_member(&r->fsm.ledger,
							      leader);

		/* its address came with the log (a follower learns it) */
		if (m && strcmp(m->client, r->told_client))
			post_config(r);
	}
	if (!(r->news_due || r->resync_due) || r->barrier_busy)
		return;
	r->news_due = false;
	if (st != RAFT_LEADER) {
		/* with the ledger when shard 0 asked: it may serve reads */
		post_news(r, ND_RAFT_FOLLOWER, NULL);
		return;
	}
	r->barrier.data = r;
	err = raft_barrier(&r->raft, &r->barrier, barrier_cb);
	if (err) {
		ND_LOG(ND_LOG_DEBUG, "raft.barrier_failed",
		       ND_S("err", raft_strerror(err)));
		r->news_due = true; /* tried again after the next run */
		if (r->resync_due)
			post_news(r, ND_RAFT_STALLED, raft_strerror(err));
		return;
	}
	r->barrier_busy = true;
}

/* ---- driving the loop from io_uring ---- */

static void arm_poll(struct nd_raft *r);
static void run_loop(struct nd_raft *r);

static void on_poll(struct nd_shard *s, struct nd_op *op,
		    struct io_uring_cqe *cqe)
{
	struct nd_raft *r = nd_container_of(op, struct nd_raft, poll_op);

	if (!(cqe->flags & IORING_CQE_F_MORE) && !r->closed)
		arm_poll(r);
	run_loop(r);
}

static void on_timer(struct nd_shard *s, struct nd_op *op,
		     struct io_uring_cqe *cqe)
{
	struct nd_raft *r = nd_container_of(op, struct nd_raft, timer_op);

	/* -ETIME: it fired; 0: an update took it over; -ECANCELED */
	if (cqe->res == -ETIME || cqe->res == -ECANCELED)
		r->timer_armed = false;
	run_loop(r);
}

static void arm_poll(struct nd_raft *r)
{
	struct io_uring_sqe *sqe = nd_shard_sqe(r->s);

	io_uring_prep_poll_multishot(sqe, uv_backend_fd(&r->loop), POLLIN);
	io_uring_sqe_set_data64(sqe, ND_UD(&r->poll_op, ND_TAG_OP));
}

/* Arms (or moves up) the timeout for the loop's next timer. */
static void arm_timer(struct nd_raft *r, int ms)
{
	uint64_t due = nd_mono_ms() + (uint64_t)ms;
	struct io_uring_sqe *sqe;

	if (r->timer_armed && r->timer_due_ms <= due)
		return;
	r->ts.tv_sec = ms / 1000;
	r->ts.tv_nsec = (long long)(ms % 1000) * 1000000;
	sqe = nd_shard_sqe(r->s);
	if (r->timer_armed) {
		io_uring_prep_timeout_update(sqe, &r->ts,
					     ND_UD(&r->timer_op, ND_TAG_OP), 0);
		io_uring_sqe_set_data64(sqe, ND_UD(NULL, ND_TAG_IGNORE));
	} else {
		io_uring_prep_timeout(sqe, &r->ts, 0, 0);
		io_uring_sqe_set_data64(sqe, ND_UD(&r->timer_op, ND_TAG_OP));
	}
	r->timer_armed = true;
	r->timer_due_ms = due;
}

static void run_loop(struct nd_raft *r)
{
	int ms = 0;

	/* a few rounds while the loop has work ready (0: run again) */
	for (int i = 0; i < 8 && ms == 0; i++) {
		uv_run(&r->loop, UV_RUN_NOWAIT);
		ms = uv_backend_timeout(&r->loop);
	}
	if (r->closed)
		return;
	watch_state(r);
	arm_timer(r, ms < 0 ? 250 : ms);
}

/* ---- proposals ---- */

struct nd_raft_batch *nd_raft_batch_new(void)
{
	return calloc(1, sizeof(struct nd_raft_batch));
}

void nd_raft_batch_free(struct nd_raft_batch *b)
{
	if (!b)
		return;
	raft_free(b->data);
	free(b->req);
	free(b);
}

static void batch_home(struct nd_shard *s0, struct nd_msg *m)
{
	struct nd_raft_batch *b = nd_container_of(m, struct nd_raft_batch, msg);

	b->done(s0, b);
}

static void batch_return(struct nd_raft *r, struct nd_raft_batch *b,
			 int status)
{
	b->status = status;
	if (status && !b->err[0])
		snprintf(b->err, sizeof(b->err), "%s", raft_strerror(status));
	if (r->closing) { /* after the drain barrier: nobody to tell */
		nd_raft_batch_free(b);
		return;
	}
	nd_shard_post(r->s, b->home, &b->msg, batch_home);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct apply_req *ar = nd_container_of(req, struct apply_req, req);
	struct nd_raft_batch *b = ar->b;
	struct nd_raft *r = req->data;

	if (!status) {
		uint64_t ns = nd_mono_ns() - b->t0_ns;

		b->index = r->raft.last_applied;
		atomic_fetch_add(&r->st.append_ns_sum, ns);
		atomic_fetch_add(&r->st.append_count, 1);
	}
	batch_return(r, b, status);
}

static void propose_msg(struct nd_shard *rs, struct nd_msg *m)
{
	struct nd_raft *r = rs->svc;
	struct nd_raft_batch *b = nd_container_of(m, struct nd_raft_batch, msg);
	struct apply_req *ar = calloc(1, sizeof(*ar));
	struct raft_buffer buf;
	int err;

	if (!ar) {
		batch_return(r, b, RAFT_NOMEM);
		return;
	}
	if (r->fault_skip) {
		r->fault_skip--;
	} else if (r->fault_apply) {
		r->fault_apply--;
		free(ar);
		snprintf(b->err, sizeof(b->err), "I/O error (injected: "
			 "NODED_FAULT_RAFT_APPLY)");
		batch_return(r, b, RAFT_IOERR);
		return;
	}
	b->req = ar;
	ar->b = b;
	ar->req.data = r;
	buf.base = b->data;
	buf.len = b->len;
	err = raft_apply(&r->raft, &ar->req, &buf, 1, apply_cb);
	if (err) {
		batch_return(r, b, err);
		return;
	}
	b->data = NULL; /* raft's now */
	run_loop(r);
}

void nd_raft_propose(struct nd_shard *s0, struct nd_shard *rs,
		     struct nd_raft_batch *b)
{
	b->home = s0;
	b->t0_ns = nd_mono_ns();
	nd_shard_post(s0, rs, &b->msg, propose_msg);
}

/* ---- changes of the cluster ---- */

static void change_home(struct nd_shard *s0, struct nd_msg *m)
{
	struct nd_raft_change *c = nd_container_of(m, struct nd_raft_change,
						   msg);

	c->done(s0, c);
}

/* Tells shard 0 the configuration now (its role unchanged). */
static void post_config(struct nd_raft *r)
{
	struct nd_raft_news *n = calloc(1, sizeof(*n));
	raft_id id = 0;
	const char *addr = NULL;

	if (!n)
		return; /* the next news carries it */
	n->config_only = true;
	n->term = r->raft.current_term;
	raft_leader(&r->raft, &id, &addr);
	n->leader_id = id;
	snprintf(n->leader, sizeof(n->leader), "%s", addr ? addr : "");
	config_copy(r, n);
	n->deliver = r->news;
	nd_shard_post(r->s, r->s0, &n->msg, news_home);
}

static void change_return(struct nd_raft *r, struct nd_raft_change *c,
			  int status)
{
	c->status = status;
	if (status && !c->err[0])
		snprintf(c->err, sizeof(c->err), "%s",
			 r->raft.errmsg[0] ? r->raft.errmsg :
					     raft_strerror(status));
	free(c->req);
	c->req = NULL;
	if (r->closing) {
		free(c);
		return;
	}
	post_config(r);
	nd_shard_post(r->s, c->home, &c->msg, change_home);
}

/* libraft's request of a change, and who it is for. */
struct change_req {
	union {
		struct raft_change change;
		struct raft_transfer transfer;
	} u;
	struct nd_raft *r;
	struct nd_raft_change *c;
};

static void assign_cb(struct raft_change *req, int status)
{
	struct change_req *cr = req->data;

	change_return(cr->r, cr->c, status);
}

/* Added as a spare: now made a voter (it catches up first). */
static void add_cb(struct raft_change *req, int status)
{
	struct change_req *cr = req->data;
	int err;

	if (status || cr->r->closing) {
		change_return(cr->r, cr->c, status ? status : RAFT_CANCELED);
		return;
	}
	memset(&cr->u, 0, sizeof(cr->u));
	cr->u.change.data = cr;
	err = raft_assign(&cr->r->raft, &cr->u.change, cr->c->id, RAFT_VOTER,
			  assign_cb);
	if (err)
		change_return(cr->r, cr->c, err);
	else
		run_loop(cr->r);
}

static void remove_cb(struct raft_change *req, int status)
{
	struct change_req *cr = req->data;

	change_return(cr->r, cr->c, status);
}

static void transfer_cb(struct raft_transfer *req)
{
	struct change_req *cr = req->data;
	raft_id id = 0;
	const char *addr;
	bool moved;

	/* done: whether it worked shows in who leads now */
	raft_leader(&cr->r->raft, &id, &addr);
	moved = cr->c->id ? id == cr->c->id : id != cr->r->raft.id;
	if (!moved)
		snprintf(cr->c->err, sizeof(cr->c->err), "the leadership "
			 "did not move");
	change_return(cr->r, cr->c, moved ? 0 : RAFT_NOTLEADER);
}

static void change_msg(struct nd_shard *rs, struct nd_msg *m)
{
	struct nd_raft *r = rs->svc;
	struct nd_raft_change *c = nd_container_of(m, struct nd_raft_change,
						   msg);
	struct change_req *cr = calloc(1, sizeof(*cr));
	int err;

	if (!cr) {
		change_return(r, c, RAFT_NOMEM);
		return;
	}
	c->req = cr;
	cr->r = r;
	cr->c = c;
	switch (c->op) {
	case 0:
		cr->u.change.data = cr;
		err = raft_add(&r->raft, &cr->u.change, c->id, c->address,
			       add_cb);
		break;
	case 1:
		cr->u.change.data = cr;
		err = raft_remove(&r->raft, &cr->u.change, c->id, remove_cb);
		break;
	case 2:
		cr->u.transfer.data = cr;
		err = raft_transfer(&r->raft, &cr->u.transfer, c->id,
				    transfer_cb);
		break;
	default:
		err = RAFT_INVALID;
		break;
	}
	if (err) {
		change_return(r, c, err);
		return;
	}
	run_loop(r);
}

void nd_raft_change(struct nd_shard *s0, struct nd_shard *rs,
		    struct nd_raft_change *c)
{
	c->home = s0;
	nd_shard_post(s0, rs, &c->msg, change_msg);
}

static void resync_msg(struct nd_shard *rs, struct nd_msg *m)
{
	struct nd_raft *r = rs->svc;

	free(m);
	r->resync_due = true;
	run_loop(r);
}

void nd_raft_resync(struct nd_shard *s0, struct nd_shard *rs)
{
	struct nd_msg *m = calloc(1, sizeof(*m));

	if (m) /* else the next role change resyncs */
		nd_shard_post(s0, rs, m, resync_msg);
}

const struct nd_raft_stats *nd_raft_stats(const struct nd_shard *rs)
{
	const struct nd_raft *r = rs->svc;

	return r ? &r->st : NULL;
}

/* ---- life cycle ---- */

static void close_cb(struct raft *raft)
{
	struct nd_raft *r = raft->data;

	r->closed = true;
}

static void transport_close(struct nd_raft *r)
{
	nd_raft_transport_close(&r->transport);
}

/* After the drain barrier: no message comes or goes any more. Closes raft
 * (its pending requests fail and are dropped), then the loop. */
static void raft_stop(struct nd_shard *s)
{
	struct nd_raft *r = s->svc;

	r->closing = true;
	raft_close(&r->raft, close_cb);
	for (int i = 0; i < 10000 && !r->closed; i++)
		uv_run(&r->loop, UV_RUN_ONCE);
	raft_uv_close(&r->io);
	transport_close(r);
	uv_run(&r->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&r->loop))
		ND_LOG(ND_LOG_WARN, "raft.loop_busy",
		       ND_S("msg", "libuv loop had handles left at exit"));
	nd_fsm_close(&r->fsm);
	free(r);
	s->svc = NULL;
	s->svc_stop = NULL;
}

/* Writes the member id to id_dir/raft-id (durably; once, at the first
 * start of a cluster: blocking is fine then). 0 or -errno. */
static int keep_id(const struct nd_raft_config *cfg)
{
	char text[32];
	int dirfd = nd_dir_open(cfg->id_dir), err;

	if (dirfd < 0)
		return dirfd;
	snprintf(text, sizeof(text), "%llu\n", (unsigned long long)cfg->id);
	err = nd_durable_create(dirfd, "raft-id", text, strlen(text), 0600);
	close(dirfd);
	return err == -EEXIST ? 0 : err;
}

int nd_raft_start(struct nd_shard *rs, const struct nd_raft_config *cfg,
		  struct nd_shard *s0,
		  void (*news)(struct nd_shard *s0, struct nd_raft_news *n),
		  void (*entry)(struct nd_shard *s0, struct nd_raft_entry *e),
		  char *errbuf, size_t errlen)
{
	struct nd_raft *r = calloc(1, sizeof(*r));
	int err;

	if (!r) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	r->s = rs;
	r->s0 = s0;
	r->news = news;
	r->entry = entry;
	r->poll_op.cb = on_poll;
	r->timer_op.cb = on_timer;
	r->last_state = -1;
	if (getenv("NODED_FAULT_RAFT_APPLY")) {
		char *end;
		unsigned long k = strtoul(getenv("NODED_FAULT_RAFT_APPLY"),
					  &end, 10);

		if (*end == ':') {
			r->fault_skip = (unsigned)k;
			k = strtoul(end + 1, NULL, 10);
		}
		r->fault_apply = (unsigned)k;
	}
	nd_fsm_init(&r->fsm);
	r->fsm.applied = follower_applied;
	if ((err = uv_loop_init(&r->loop))) {
		snprintf(errbuf, errlen, "libuv: %s", uv_strerror(err));
		goto err_free;
	}
	r->transport.version = 1; /* required before init (else error 20) */
	r->transport.data = r;
	/* ours always: it sets TCP_NODELAY, then the stages configured
	 * (TLS, the token; none on loopback without them) */
	if ((err = nd_raft_transport_init(&r->transport, &r->loop,
					  &(struct nd_raft_link_auth){
						  cfg->token, cfg->token_len,
						  cfg->tls_server,
						  cfg->tls_client }))) {
		snprintf(errbuf, errlen, "raft transport: %s",
			 raft_strerror(err));
		goto err_loop;
	}
	if ((err = raft_uv_init(&r->io, &r->loop, cfg->dir, &r->transport))) {
		snprintf(errbuf, errlen, "raft log in %s: %s", cfg->dir,
			 r->io.errmsg[0] ? r->io.errmsg : raft_strerror(err));
		goto err_transport;
	}
	if ((err = raft_init(&r->raft, &r->io, &r->fsm.fsm, cfg->id,
			     cfg->address))) {
		snprintf(errbuf, errlen, "raft: %s", raft_errmsg(&r->raft));
		goto err_io;
	}
	r->raft.data = r;
	raft_set_election_timeout(&r->raft, cfg->election_ms);
	raft_set_heartbeat_timeout(&r->raft, cfg->heartbeat_ms);
	raft_set_snapshot_threshold(&r->raft, cfg->snapshot_threshold);
	raft_set_snapshot_trailing(&r->raft, cfg->snapshot_trailing);
	/* pre-vote: a member cut off and back cannot depose a healthy
	 * leader. Measured without it: failover median 2.95 s against 1.57 s
	 * with it (scripts/bench.sh --only failover, 10 kills each) */
	raft_set_pre_vote(&r->raft, true);
	/* every member its own randomized election timeouts: unseeded,
	 * all draw the same ones, time out together and split the vote */
	{
		unsigned seed;

		if (nd_auth_nonce((uint8_t *)&seed, sizeof(seed)))
			seed = (unsigned)nd_mono_ns() ^ (unsigned)getpid();
		raft_seed(&r->raft, seed);
	}
	if (cfg->bootstrap) {
		struct raft_configuration conf;

		raft_configuration_init(&conf);
		err = raft_configuration_add(&conf, cfg->id, cfg->address,
					     RAFT_VOTER);
		if (!err)
			err = raft_bootstrap(&r->raft, &conf);
		raft_configuration_close(&conf);
		if (err && err != RAFT_CANTBOOTSTRAP) { /* that: it has a log */
			snprintf(errbuf, errlen, "raft bootstrap: %s",
				 raft_errmsg(&r->raft));
			goto err_raft;
		}
		if (cfg->id_dir && (err = keep_id(cfg))) {
			snprintf(errbuf, errlen, "%s/raft-id: %s", cfg->id_dir,
				 strerror(-err));
			goto err_raft;
		}
	}
	if ((err = raft_start(&r->raft))) {
		snprintf(errbuf, errlen, "raft start in %s: %s", cfg->dir,
			 raft_errmsg(&r->raft));
		goto err_raft;
	}
	rs->svc = r;
	rs->svc_stop = raft_stop;
	arm_poll(r);
	run_loop(r);
	return 0;

err_raft:
	/* raft_close runs the loop's close callbacks: one more pass */
	r->closing = true;
	raft_close(&r->raft, close_cb);
	for (int i = 0; i < 10000 && !r->closed; i++)
		uv_run(&r->loop, UV_RUN_ONCE);
err_io:
	raft_uv_close(&r->io);
err_transport:
	transport_close(r);
	uv_run(&r->loop, UV_RUN_DEFAULT);
err_loop:
	uv_loop_close(&r->loop);
err_free:
	nd_fsm_close(&r->fsm);
	free(r);
	return -EIO;
}
