/*
 * The worker: see worker.h. All of it runs on the worker's one shard.
 *
 * Connection life: connect -> Hello -> AssignTask (the master answers with
 * assign_open: registered) -> ReportStatus every heartbeat. When the
 * connection ends, or a connect fails, it retries after a backoff that
 * doubles from 100 ms to 5 s (with jitter, so a fleet does not reconnect in
 * step after a master restart) and resets once registered again.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/server.h"
#include "node/run.h"
#include "node/status.h"
#include "node/worker.h"
#include "client/peer.h"

/* Masters a --master list may name. */
#define WORKER_MASTERS 8
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* Heartbeats whose send time is remembered, for the master's acks and
 * assignments that name one (a minute of them at 1 s). */
#define HB_RING 64
/* Bound on stopping the tasks and reporting their ends when leaving: the
 * exec helpers' grace (2 s) and a margin. */
#define LEAVE_STOP_MS 4000

/* Leaving the master on purpose (worker.h, nd_worker_run). */
enum leave {
	LEAVE_NONE,
	LEAVE_DRAINING,               /* no new tasks; the running finish */
	LEAVE_STOPPING,               /* the running are being stopped */
	LEAVE_DONE,                   /* the process may stop the server */
};

struct worker {
	const struct nd_worker_cfg *wc;
	struct nd_shard *s;
	/* --master: one master, or the masters of a cluster, tried in turn
	 * (each failure moves on); a NOT_LEADER names the leader, tried next
	 * (leader). */
	struct sockaddr_storage addrs[WORKER_MASTERS];
	socklen_t addrlens[WORKER_MASTERS];
	unsigned naddrs, cur;
	struct sockaddr_storage leader;
	socklen_t leader_len;         /* 0: none to try */
	struct nd_peer_hooks hooks;
	struct nd_conn *conn;          /* NULL while disconnected */
	bool connecting;
	bool registered;
	bool warned;                   /* said that the master is away */
	bool refused_warned;           /* said that it refused us */
	uint64_t next_attempt_ms;
	uint32_t backoff_ms;
	uint32_t heartbeat_ms;
	uint64_t last_report_ms;
	uint64_t started_ms;
	struct nd_status_labels labels;
	struct nd_runner *runner;
	uint64_t *running_ids;         /* scratch for status reports */
	uint32_t *running_attempts;
	/* Fencing (proto AssignTaskOpen.lease_ms): heartbeat n went at
	 * hb_ring[n % HB_RING].ms (monotonic), a lease counts from there. */
	uint32_t lease_ms;             /* the master's; 0: no leases */
	uint64_t hb_seq;               /* the last heartbeat's number */
	struct {
		uint64_t seq, ms;
	} hb_ring[HB_RING];
	/* Leaving: asked by the process's main thread (leave_req: 1 stop
	 * now, 2 drain), carried out by the tick, which sets left. */
	atomic_int leave_req;
	atomic_bool left;
	enum leave leave;
	uint64_t leave_deadline_ms;   /* 0: none */
	bool leave_sent;              /* NodeLeave of this phase is sent */
};

/*
 * The end of a lease that counts from heartbeat seq: its send time plus
 * the master's lease. 0 when there are no leases; -1 when seq is not one
 * we remember (too old, or never sent): that lease is over.
 */
static int64_t lease_from(const struct worker *w, uint64_t seq)
{
	if (!w->lease_ms || !seq)
		return 0;
	if (seq > w->hb_seq || w->hb_ring[seq % HB_RING].seq != seq)
		return -1;
	return (int64_t)(w->hb_ring[seq % HB_RING].ms + w->lease_ms);
}

static void schedule_retry(struct worker *w)
{
	uint32_t jitter = (uint32_t)rand() % (w->backoff_ms / 2 + 1);

	/* the next master of the list (with one, the same) */
	w->cur = (w->cur + 1) % w->naddrs;
	w->next_attempt_ms = w->s->now_ms + w->backoff_ms / 2 + jitter;
	w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ?
				BACKOFF_MAX_MS : w->backoff_ms * 2;
}

static void report(struct worker *w)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__NodeStatus ns = NODED__NODE_STATUS__INIT;

	if (!w->conn)
		return;
	ns.name = (char *)w->wc->name;
	ns.n_labels = w->labels.n;
	ns.labels = w->labels.p;
	nd_status_machine(&ns);
	ns.n_running_tasks = nd_runner_running(w->runner, w->running_ids,
						w->running_attempts,
						w->wc->slots);
	ns.running_tasks = w->running_ids;
	ns.n_running_attempts = ns.n_running_tasks;
	ns.running_attempts = w->running_attempts;
	/* now_ms was read before this send: a lease counted from it ends
	 * no later than one counted from the real send time */
	ns.heartbeat_seq = ++w->hb_seq;
	w->hb_ring[w->hb_seq % HB_RING].seq = w->hb_seq;
	w->hb_ring[w->hb_seq % HB_RING].ms = w->s->now_ms;
	ns.slots_total = w->wc->slots;
	ns.slots_free = w->wc->slots - (uint32_t)ns.n_running_tasks;
	ns.uptime_ms = w->s->now_ms - w->started_ms;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &ns;
	/* one-way: the reply was never used, and answering 10,000 workers a
	 * second cost the master more than reading their reports */
	nd_client_notify(nd_peer_client(w->conn), &f);
	nd_peer_flush(w->conn);
	w->last_report_ms = w->s->now_ms;
}

static void on_assign(struct nd_client *cl, int status, const Noded__Frame *f,
		      bool done, void *arg);

static void on_leave_ack(struct nd_client *cl, int status,
			 const Noded__Frame *f, bool done, void *arg)
{
	struct worker *w = arg;

	(void)cl;
	(void)f;
	(void)done;
	if (status == -ECANCELED || status == -ECONNRESET)
		w->leave_sent = false; /* said again once registered */
}

/* Tells the master we drain or stop (once per phase and connection). */
static void send_leave(struct worker *w)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__NodeLeave nl = NODED__NODE_LEAVE__INIT;

	if (w->leave_sent || !w->registered || !w->conn ||
	    (w->leave != LEAVE_DRAINING && w->leave != LEAVE_STOPPING))
		return;
	nl.node_name = (char *)w->wc->name;
	nl.drain = w->leave == LEAVE_DRAINING;
	f.body_case = NODED__FRAME__BODY_LEAVE;
	f.leave = &nl;
	if (nd_client_start(nd_peer_client(w->conn), &f, on_leave_ack, w) < 0)
		return;
	nd_peer_flush(w->conn);
	w->leave_sent = true;
}

static void start_stopping(struct worker *w)
{
	w->leave = LEAVE_STOPPING;
	w->leave_sent = false;
	w->leave_deadline_ms = w->s->now_ms + LEAVE_STOP_MS;
	ND_LOG(ND_LOG_INFO, "worker.leaving", ND_S("node", w->wc->name),
	       ND_U("unfinished_tasks", nd_runner_unfinished(w->runner)),
	       ND_S("msg", "stopping the tasks still running and telling the "
		    "master"));
	send_leave(w); /* before the ends, so they count as ours stopping */
	nd_runner_stop_all(w->runner);
}

/*
 * One step of leaving, from the tick: drain until nothing runs (or the
 * drain's bound, or a second signal), then stop what still runs, report
 * its end, and let the process stop the server.
 */
static void leave_step(struct worker *w)
{
	int req = atomic_load(&w->leave_req);
	uint64_t now = w->s->now_ms;

	if (w->leave == LEAVE_DONE || (w->leave == LEAVE_NONE && !req))
		return;
	if (w->leave == LEAVE_NONE && req == 2) {
		w->leave = LEAVE_DRAINING;
		w->leave_deadline_ms = w->wc->drain_timeout_ms ?
			now + w->wc->drain_timeout_ms : 0;
		ND_LOG(ND_LOG_INFO, "worker.draining", ND_S("node", w->wc->name),
		       ND_U("unfinished_tasks", nd_runner_unfinished(w->runner)),
		       ND_U("timeout_ms", w->wc->drain_timeout_ms),
		       ND_S("msg", "taking no new tasks; letting the running "
			    "ones finish (a second signal stops them)"));
	}
	if (w->leave == LEAVE_DRAINING) {
		if (req == 1 || !nd_runner_unfinished(w->runner) ||
		    (w->leave_deadline_ms && now >= w->leave_deadline_ms))
			start_stopping(w);
	} else if (w->leave == LEAVE_NONE) {
		start_stopping(w);
	}
	send_leave(w);
	if (w->leave == LEAVE_STOPPING &&
	    (!nd_runner_unfinished(w->runner) || !w->conn ||
	     now >= w->leave_deadline_ms)) {
		w->leave = LEAVE_DONE;
		atomic_store(&w->left, true);
	}
}

/* Hello (and the token challenge, when the master has one) done: register
 * on the AssignTask stream. */
static void on_hello(struct nd_client *cl, int status, const Noded__Frame *f,
		     bool done, void *arg)
{
	struct worker *w = arg;
	Noded__Frame af = NODED__FRAME__INIT;
	Noded__AssignTaskRequest ar = NODED__ASSIGN_TASK_REQUEST__INIT;

	(void)done;
	if (status == -ECANCELED)
		return;
	if (status) {
		bool unproven = status == ND_EAUTHNOPROOF ||
				status == ND_EAUTHBADPROOF;

		/* Which side failed matters: a master that cannot prove it
		 * holds our token is not trusted (nothing it sends is run). */
		if (!w->refused_warned && unproven)
			ND_LOG(ND_LOG_ERROR, "worker.master_unproven",
			       ND_S("master", w->wc->master),
			       ND_S("err", nd_strerror(status)),
			       ND_S("msg", "the master did not prove it holds "
					   "the token; not trusting it, "
					   "retrying"));
		else if (!w->refused_warned)
			ND_LOG(ND_LOG_ERROR, "worker.refused",
			       ND_S("master", w->wc->master),
			       ND_S("err", status == ND_EREMOTE && f && f->error ?
						   f->error->message :
					       status == ND_EAUTH ?
						   "wrong or missing --token-file" :
						   nd_strerror(status)),
			       ND_S("msg", "the master refused us; retrying"));
		if (!w->refused_warned)
			nd_notify(0, "refused by master %s: %s; retrying",
				  w->wc->master,
				  status == ND_EREMOTE && f && f->error ?
					  f->error->message :
				  status == ND_EAUTH ?
					  "wrong or missing --token-file" :
					  nd_strerror(status));
		w->refused_warned = true;
		w->warned = true;
		if (w->conn)
			nd_conn_close(w->conn, false);
		return;
	}
	ar.node_name = (char *)w->wc->name;
	ar.node_id.data = (uint8_t *)w->wc->node_id;
	ar.node_id.len = sizeof(w->wc->node_id);
	af.body_case = NODED__FRAME__BODY_ASSIGN_TASK;
	af.assign_task = &ar;
	nd_client_start(cl, &af, on_assign, w);
}

/* Items of our AssignTask stream. */
static void on_assign(struct nd_client *cl, int status, const Noded__Frame *f,
		      bool done, void *arg)
{
	struct worker *w = arg;

	(void)cl;
	if (status == 0 && f->body_case == NODED__FRAME__BODY_ASSIGN_OPEN) {
		w->registered = true;
		w->backoff_ms = BACKOFF_MIN_MS;
		if (f->assign_open->heartbeat_interval_ms)
			w->heartbeat_ms = f->assign_open->heartbeat_interval_ms;
		w->lease_ms = f->assign_open->lease_ms;
		ND_LOG(ND_LOG_INFO, "worker.registered",
		       ND_S("node", w->wc->name), ND_S("master", w->wc->master),
		       ND_U("heartbeat_ms", w->heartbeat_ms));
		nd_notify(ND_NOTIFY_READY, "registered with master %s as %s",
			  w->wc->master, w->wc->name);
		w->warned = false;
		w->refused_warned = false;
		/* first: a new master instance stops the old one's tasks,
		 * which the report then leaves out */
		nd_runner_connected(w->runner,
				    f->assign_open->master_instance);
		report(w);
		w->leave_sent = false;
		send_leave(w); /* still draining or stopping: say so again */
		return;
	}
	if (status == 0 && f->body_case == NODED__FRAME__BODY_TASK) {
		nd_runner_assign(w->runner, f->task,
				 lease_from(w, f->task->lease_seq));
		return;
	}
	if (status == 0 && f->body_case == NODED__FRAME__BODY_TASK_CANCEL) {
		if (f->task_cancel->attempt)
			nd_runner_void(w->runner, f->task_cancel->task_id,
				       f->task_cancel->attempt);
		else
			nd_runner_cancel(w->runner, f->task_cancel->task_id);
		return;
	}
	if (status == 0 && f->body_case == NODED__FRAME__BODY_HEARTBEAT_ACK) {
		int64_t d = lease_from(w, f->heartbeat_ack->seq);

		if (d > 0)
			nd_runner_lease(w->runner, d);
		return;
	}
	if (done && status != -ECANCELED && w->conn) {
		const char *err = status == ND_EREMOTE && f && f->error ?
					  f->error->message :
					  nd_strerror(status);

		/* Ended before it opened: the registration was refused (the
		 * name is another worker's): said once, retried quietly. */
		if (!w->registered && !w->refused_warned) {
			ND_LOG(ND_LOG_ERROR, "worker.refused",
			       ND_S("master", w->wc->master), ND_S("err", err),
			       ND_S("msg", "the master refused our "
				    "registration; retrying"));
			nd_notify(0, "registration refused by master %s: %s; "
				  "retrying", w->wc->master, err);
		} else if (w->registered) {
			ND_LOG(ND_LOG_WARN, "worker.stream_ended",
			       ND_S("master", w->wc->master), ND_S("err", err),
			       ND_S("msg", "the master ended the task stream"));
		}
		if (!w->registered)
			w->refused_warned = w->warned = true;
		/* a follower: the leader it names is tried next, at once */
		if (!w->registered && status == ND_EREMOTE && f && f->error &&
		    f->error->code == NODED__ERROR_CODE__NOT_LEADER &&
		    f->error->leader[0] &&
		    !nd_parse_addr(f->error->leader, &w->leader,
				   &w->leader_len)) {
			w->backoff_ms = BACKOFF_MIN_MS;
			w->refused_warned = w->warned = false;
		} else if (!w->registered && status == ND_EREMOTE && f &&
			   f->error &&
			   (f->error->code == NODED__ERROR_CODE__NOT_LEADER ||
			    f->error->code == NODED__ERROR_CODE__UNAVAILABLE)) {
			/* the cluster elects, or the leader loads its
			 * ledger: asked again soon (not after a growing
			 * backoff: the new leader gives our node its
			 * heartbeat timeout to come back, no more) */
			w->backoff_ms = BACKOFF_MIN_MS;
		}
		nd_conn_close(w->conn, false);
	}
}

static void opened(struct nd_conn *c, struct nd_client *cl, void *arg)
{
	struct worker *w = arg;

	w->conn = c;
	nd_client_hello(cl, on_hello, w);
}

static void closed(void *arg)
{
	struct worker *w = arg;

	w->conn = NULL;
	w->registered = false;
	if (w->s->draining)
		return;
	if (!w->warned) {
		ND_LOG(ND_LOG_WARN, "worker.master_lost",
		       ND_S("master", w->wc->master),
		       ND_S("msg", "lost the master; reconnecting"));
		nd_notify(0, "lost master %s; reconnecting", w->wc->master);
	}
	w->warned = true;
	schedule_retry(w);
}

static void connect_done(void *arg, struct nd_conn *c, int err)
{
	struct worker *w = arg;

	w->connecting = false;
	if (!err)
		return; /* opened() ran */
	if (!w->warned) {
		ND_LOG(ND_LOG_WARN, "worker.master_unreachable",
		       ND_S("master", w->wc->master), ND_S("err", strerror(-err)),
		       ND_S("msg", "cannot reach the master; retrying"));
		nd_notify(0, "cannot reach master %s: %s; retrying",
			  w->wc->master, strerror(-err));
		w->warned = true;
	}
	if (!w->s->draining)
		schedule_retry(w);
}

static void tick(struct nd_shard *s)
{
	struct worker *w = s->svc;
	int r;

	if (s->draining)
		return;
	if (!w->conn && !w->connecting &&
	    (s->now_ms >= w->next_attempt_ms || w->leader_len)) {
		if (w->leader_len)
			r = nd_conn_connect(s, &w->leader, w->leader_len,
					    &nd_peer_ops, &w->hooks,
					    connect_done, w);
		else
			r = nd_conn_connect(s, &w->addrs[w->cur],
					    w->addrlens[w->cur], &nd_peer_ops,
					    &w->hooks, connect_done, w);
		w->leader_len = 0;
		if (r == 0)
			w->connecting = true;
		else
			connect_done(w, NULL, r);
	}
	if (w->registered && s->now_ms - w->last_report_ms >= w->heartbeat_ms)
		report(w);
	if (w->registered)
		nd_runner_tick(w->runner);
	leave_step(w);
}

/* While a connect is in flight the shard must not stop under it. */
static bool drain(struct nd_shard *s)
{
	struct worker *w = s->svc;
	bool busy = nd_runner_drain(w->runner);

	return w->connecting || busy;
}

static void worker_start(struct nd_shard *s, void *arg)
{
	struct worker *w = arg;

	w->s = s;
	w->started_ms = s->now_ms;
	s->svc = w;
	s->svc_tick = tick;
	s->svc_drain = drain;
	nd_runner_start(w->runner, s, &w->conn);
	tick(s);
}

struct nd_worker {
	struct worker w;
	struct nd_server srv;
	bool srv_init;
};

void nd_worker_free(struct nd_worker *nw)
{
	if (!nw)
		return;
	if (nw->srv_init)
		nd_server_close(&nw->srv);
	nd_runner_free(nw->w.runner);
	free(nw->w.running_ids);
	free(nw->w.running_attempts);
	nd_status_labels_free(&nw->w.labels);
	free(nw);
}

int nd_worker_new(struct nd_worker **out, const struct nd_worker_cfg *wc)
{
	struct nd_worker *nw = calloc(1, sizeof(*nw));
	struct nd_config cfg = { 0 };
	struct worker *w;
	char why[512];

	if (!nw)
		return -ENOMEM;
	w = &nw->w;
	w->wc = wc;
	w->backoff_ms = BACKOFF_MIN_MS;
	w->heartbeat_ms = 1000;
	if (nd_status_labels_init(&w->labels, wc->labels, wc->nlabels)) {
		ND_LOG(ND_LOG_ERROR, "worker.bad_config",
		       ND_S("msg", "labels must be KEY=VALUE"));
		goto err;
	}
	for (const char *p = wc->master, *end; p; p = end ? end + 1 : NULL) {
		char one[256];

		end = strchr(p, ',');
		snprintf(one, sizeof(one), "%.*s",
			 (int)(end ? (size_t)(end - p) : strlen(p)), p);
		if (w->naddrs == WORKER_MASTERS) {
			ND_LOG(ND_LOG_ERROR, "worker.bad_config",
			       ND_S("msg", "--master names more than 8 "
				    "masters"), ND_S("master", wc->master));
			goto err;
		}
		if (nd_parse_addr_why(one, &w->addrs[w->naddrs],
				      &w->addrlens[w->naddrs], why,
				      sizeof(why))) {
			ND_LOG(ND_LOG_ERROR, "worker.bad_config",
			       ND_S("msg", "bad --master address"),
			       ND_S("err", why), ND_S("master", wc->master));
			goto err;
		}
		w->naddrs++;
	}
	w->hooks.opts.node_name = wc->name;
	w->hooks.opts.role = NODED__ROLE__ROLE_WORKER;
	w->hooks.opts.token = wc->token;
	w->hooks.opts.token_len = wc->token_len;
	w->hooks.opened = opened;
	w->hooks.closed = closed;
	w->hooks.arg = w;
	w->running_ids = calloc(wc->slots ? wc->slots : 1, sizeof(uint64_t));
	w->running_attempts = calloc(wc->slots ? wc->slots : 1,
				     sizeof(uint32_t));
	if (!w->running_ids || !w->running_attempts)
		goto err;
	/* Helpers are this binary re-executed (posix_spawn: safe in a
	 * threaded process, and cheap before the shards exist). */
	if (nd_runner_new(&w->runner, 2, wc->slots, "/proc/self/exe")) {
		ND_LOG(ND_LOG_ERROR, "worker.failed",
		       ND_S("msg", "cannot start the exec helpers"));
		goto err;
	}
	nd_runner_set_node(w->runner, wc->name);
	cfg.listen = "none";
	cfg.shards = 1;
	cfg.max_conns = 64;
	cfg.name = wc->name;
	if (nd_server_init(&nw->srv, &cfg))
		goto err;
	nw->srv_init = true;
	nw->srv.shard_start = worker_start;
	nw->srv.shard_start_arg = w;
	*out = nw;
	return 0;
err:
	nd_worker_free(nw);
	return -EINVAL;
}

int nd_worker_start(struct nd_worker *nw)
{
	ND_LOG(ND_LOG_INFO, "worker.started", ND_S("node", nw->w.wc->name),
	       ND_S("master", nw->w.wc->master), ND_U("slots", nw->w.wc->slots));
	return nd_server_start(&nw->srv);
}

void nd_worker_stop(struct nd_worker *nw)
{
	nd_server_stop(&nw->srv);
}

int nd_worker_run(const struct nd_worker_cfg *wc)
{
	struct nd_worker *nw;
	int ret;

	srand((unsigned)getpid());
	if (nd_worker_new(&nw, wc))
		return 1;
	nd_notify(0, "connecting to master %s", wc->master);
	ret = nd_worker_start(nw);
	if (!ret) {
		uint64_t accepted;
		size_t kept;

		sigset_t set;
		int64_t stop_by = 0;

		/* Under a Type=notify unit: READY=1 once registered (on_assign),
		 * the watchdog fed while the shard runs. */
		nd_notify_start(&nw->srv);
		nd_server_wait_signal();
		nd_notify(ND_NOTIFY_STOPPING, wc->drain ?
			  "draining: running tasks finish first" :
			  "stopping: running tasks are stopped");
		nd_server_block_signals(&set);
		atomic_store(&nw->w.leave_req, wc->drain ? 2 : 1);
		/* The shard leaves (worker.c, leave_step); a second signal
		 * stops a drain. Bounded once stopping: the shard's own
		 * bound plus a margin, should it be stuck. */
		while (!atomic_load(&nw->w.left)) {
			struct timespec ts = { 0, 100 * 1000 * 1000 };
			int sig = sigtimedwait(&set, NULL, &ts);

			if (sig > 0 && atomic_load(&nw->w.leave_req) != 1) {
				ND_LOG(ND_LOG_INFO, "worker.stop_now",
				       ND_S("node", wc->name),
				       ND_S("msg", "second signal: stopping "
					    "the running tasks"));
				nd_notify(0, "second signal: stopping the "
					  "running tasks");
				atomic_store(&nw->w.leave_req, 1);
			}
			if (atomic_load(&nw->w.leave_req) == 1 && !stop_by)
				stop_by = (int64_t)nd_mono_coarse_ms() +
					  2 * LEAVE_STOP_MS;
			if (stop_by && (int64_t)nd_mono_coarse_ms() >= stop_by)
				break;
		}
		nd_worker_stop(nw);
		nd_notify_stop();
		kept = nd_runner_remembered(nw->w.runner, &accepted);
		ND_LOG(ND_LOG_INFO, "worker.stopped", ND_S("node", wc->name),
		       ND_U("accepted_tasks", accepted),
		       ND_U("remembered_ids", kept));
	}
	nd_worker_free(nw);
	return ret ? 1 : 0;
}
