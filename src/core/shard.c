/*
 * The shard event loop: one io_uring per thread, completions dispatched by
 * the tag in user_data's low bits (STYLE 7), one cq_advance per batch, buffer
 * ring refilled once per batch, decode arena reset once per batch.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef ND_NO_MIMALLOC
#include <mimalloc.h>
#endif

#include "core/conn.h"
#include "core/server.h"
#include "core/log.h"
#include "core/shard.h"

void nd_shard_trim(struct nd_shard *s)
{
	s->freed_bytes = 0;
	s->trim_due_ms = 0;
#ifndef ND_NO_MIMALLOC
	/* Frees empty pages and decommits the delayed ones of this thread's
	 * heap now instead of at its next allocations, which may not come. */
	mi_collect(true);
#endif
}

void nd_shard_init_lists(struct nd_shard *s)
{
	nd_list_init(&s->conns);
	nd_list_init(&s->dirty);
	nd_list_init(&s->lazy);
	nd_list_init(&s->rearm);
	nd_list_init(&s->stalled);
	nd_list_init(&s->timed);
	nd_list_init(&s->dead);
	nd_list_init(&s->tls_held);
}

int nd_uring_init(struct io_uring *ring, unsigned entries, unsigned cq_entries,
		  unsigned *flags_out)
{
	/* Best first; older kernels refuse the newer flags with -EINVAL. */
	static const unsigned tries[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
		0,
	};
	struct io_uring_params p;
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		memset(&p, 0, sizeof(p));
		p.flags = tries[i] | IORING_SETUP_CQSIZE;
		p.cq_entries = cq_entries;
		ret = io_uring_queue_init_params(entries, ring, &p);
		if (ret == 0) {
			if (!(p.features & IORING_FEAT_NODROP)) {
				io_uring_queue_exit(ring);
				return -EOPNOTSUPP;
			}
			if (flags_out)
				*flags_out = p.flags;
			return 0;
		}
		if (ret != -EINVAL)
			break;
	}
	return ret;
}

struct io_uring_sqe *nd_shard_sqe(struct nd_shard *s)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&s->ring)))
		io_uring_submit(&s->ring);
	return sqe;
}

/*
 * Cross-shard messages. The sender submits a MSG_RING carrying m to the
 * target's ring with CQE_SKIP_SUCCESS: the target gets a completion with
 * res 1 and runs it; the sender hears back only when the kernel refused it
 * (res < 0: the target's CQ could not take it, or a fault injected for
 * tests), and then the message is still the sender's, to send again.
 * Retries can reorder messages, so each carries a sequence number per
 * (sender, target) pair and the target runs them in that order.
 */
static void msg_submit(struct nd_shard *from, struct nd_msg *m)
{
	struct io_uring_sqe *sqe = nd_shard_sqe(from);
	int fd = m->to->ring.ring_fd;

	if (from->fault_msg_ring) {
		from->fault_msg_ring--;
		fd = from->wake_fd; /* not a ring: the kernel says -EBADFD */
	}
	io_uring_prep_msg_ring(sqe, fd, 1, ND_UD(m, ND_TAG_MSG), 0);
	io_uring_sqe_set_data64(sqe, ND_UD(m, ND_TAG_MSG));
	io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
}

void nd_shard_post(struct nd_shard *from, struct nd_shard *to,
		   struct nd_msg *m,
		   void (*fn)(struct nd_shard *, struct nd_msg *))
{
	m->fn = fn;
	m->next = NULL;
	m->to = to;
	m->from = from->id;
	if (to == from) {
		fn(to, m);
		return;
	}
	m->seq = from->tx_seq[to->id]++;
	/* counted before it can run anywhere: the drain barrier relies on
	 * sent >= run at every instant */
	atomic_fetch_add(&from->msgs_sent, 1);
	msg_submit(from, m);
}

/* The retry timer: send again everything refused since it was armed. */
static void msg_retry(struct nd_shard *s, struct nd_op *op,
		      struct io_uring_cqe *cqe)
{
	struct nd_msg *m = s->retry;

	s->retry_armed = false;
	s->retry = NULL;
	s->retry_tail = &s->retry;
	while (m) {
		struct nd_msg *next = m->next;

		m->next = NULL;
		msg_submit(s, m);
		m = next;
	}
}

/* Our MSG_RING of m was refused: keep it, and send it again shortly (not
 * at once: a target whose CQ is full needs a moment to empty it). */
static void msg_refused(struct nd_shard *s, struct nd_msg *m, int err)
{
	s->m.msg_retries++;
	if (s->now_ms - s->retry_log_ms >= 1000 || !s->retry_log_ms) {
		s->retry_log_ms = s->now_ms ? s->now_ms : 1;
		ND_LOG(ND_LOG_WARN, "shard.msg_ring_failed",
		       ND_U("shard", s->id), ND_U("to", m->to->id),
		       ND_S("err", strerror(-err)),
		       ND_S("msg", "sending it again (logged once a second)"));
	}
	m->next = NULL;
	*s->retry_tail = m;
	s->retry_tail = &m->next;
	if (!s->retry_armed) {
		struct io_uring_sqe *sqe = nd_shard_sqe(s);

		s->retry_ts.tv_sec = 0;
		s->retry_ts.tv_nsec = 1000 * 1000;
		s->retry_op.cb = msg_retry;
		io_uring_prep_timeout(sqe, &s->retry_ts, 0, 0);
		io_uring_sqe_set_data64(sqe, ND_UD(&s->retry_op, ND_TAG_OP));
		s->retry_armed = true;
	}
}

static void msg_run(struct nd_shard *s, struct nd_msg *m)
{
	s->rx_seq[m->from]++;
	m->fn(s, m); /* may free m */
	/* after fn: whatever fn posted is counted as sent already */
	atomic_fetch_add(&s->msgs_run, 1);
}

/* Is a before b in the order of their sender? (wraps) */
static bool seq_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

/* A message for us: run it in its turn, and whatever was waiting for it. */
static void msg_deliver(struct nd_shard *s, struct nd_msg *m)
{
	unsigned from = m->from;
	struct nd_msg **pp;

	if (m->seq != s->rx_seq[from]) {
		/* an earlier one from the same sender is being retried */
		for (pp = &s->early; *pp; pp = &(*pp)->next)
			if ((*pp)->from == from && seq_before(m->seq, (*pp)->seq))
				break;
		m->next = *pp;
		*pp = m;
		return;
	}
	msg_run(s, m);
	for (pp = &s->early; *pp;) {
		struct nd_msg *e = *pp;

		if (e->from != from || e->seq != s->rx_seq[from]) {
			pp = &e->next;
			continue;
		}
		*pp = e->next;
		msg_run(s, e);
		pp = &s->early; /* the next in turn may be anywhere */
	}
}

static void on_msg(struct nd_shard *s, struct io_uring_cqe *cqe)
{
	struct nd_msg *m = (struct nd_msg *)(uintptr_t)(cqe->user_data &
							~(uint64_t)ND_TAG_MASK);

	if (cqe->res < 0)
		msg_refused(s, m, cqe->res); /* ours, not delivered */
	else if (cqe->res > 0)
		msg_deliver(s, m);
	/* res 0 would be our own success, which CQE_SKIP_SUCCESS keeps
	 * from being posted: nothing to do */
}

struct tour {
	struct nd_msg msg;
	struct nd_shard *home;
	unsigned next;                /* the shard to visit next */
	void (*visit)(struct nd_shard *s, void *arg);
	void (*done)(struct nd_shard *home, void *arg);
	void *arg;
};

static void tour_step(struct nd_shard *s, struct nd_msg *m)
{
	struct tour *t = nd_container_of(m, struct tour, msg);
	unsigned n = s->srv->nshards;

	while (t->next < n && &s->srv->shards[t->next] == s)
		t->visit(s, t->arg), t->next++;
	if (t->next < n) {
		nd_shard_post(s, &s->srv->shards[t->next], &t->msg, tour_step);
		return;
	}
	if (t->home != s) {
		nd_shard_post(s, t->home, &t->msg, tour_step);
		return;
	}
	t->done(s, t->arg);
	free(t);
}

int nd_shard_tour(struct nd_shard *from,
		  void (*visit)(struct nd_shard *s, void *arg),
		  void (*done)(struct nd_shard *from, void *arg), void *arg)
{
	struct tour *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->home = from;
	t->visit = visit;
	t->done = done;
	t->arg = arg;
	tour_step(from, &t->msg);
	return 0;
}

static int bufring_setup(struct nd_shard *s)
{
	struct io_uring_buf_reg reg = { 0 };
	size_t ring_bytes = s->buf_count * sizeof(struct io_uring_buf);
	int ret;

	s->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE,
		     MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (s->br == MAP_FAILED) {
		s->br = NULL;
		return -errno;
	}
	s->bufs = malloc((size_t)s->buf_count * s->buf_size);
	if (!s->bufs) {
		ret = -ENOMEM;
		goto err_unmap;
	}
	io_uring_buf_ring_init(s->br);
	reg.ring_addr = (uint64_t)(uintptr_t)s->br;
	reg.ring_entries = s->buf_count;
	reg.bgid = 0;
	ret = io_uring_register_buf_ring(&s->ring, &reg, 0);
	if (ret)
		goto err_free;
	for (unsigned i = 0; i < s->buf_count; i++)
		io_uring_buf_ring_add(s->br, s->bufs + (size_t)i * s->buf_size,
				      s->buf_size, (unsigned short)i,
				      io_uring_buf_ring_mask(s->buf_count),
				      (int)i);
	io_uring_buf_ring_advance(s->br, s->buf_count);
	return 0;

err_free:
	free(s->bufs);
	s->bufs = NULL;
err_unmap:
	munmap(s->br, ring_bytes);
	s->br = NULL;
	return ret;
}

/* Shard 0 (re)arms a multishot accept on each listener that has none. */
static void arm_accepts(struct nd_shard *s)
{
	struct nd_server *srv = s->srv;

	if (s->id || s->draining)
		return;
	for (unsigned i = 0; i < srv->nln; i++) {
		struct nd_listener *l = &srv->ln[i];
		struct io_uring_sqe *sqe;

		if (l->armed)
			continue;
		sqe = nd_shard_sqe(s);
		io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL,
					       SOCK_CLOEXEC);
		io_uring_sqe_set_data64(sqe, ND_UD(l, ND_TAG_ACCEPT));
		l->armed = true;
	}
}

static void arm_timer(struct nd_shard *s)
{
	struct io_uring_sqe *sqe = nd_shard_sqe(s);

	s->tick.tv_sec = 0;
	s->tick.tv_nsec = 250 * 1000 * 1000;
	io_uring_prep_timeout(sqe, &s->tick, 0, 0);
	io_uring_sqe_set_data64(sqe, ND_UD(s, ND_TAG_TIMER));
}

static void arm_wake(struct nd_shard *s)
{
	struct io_uring_sqe *sqe = nd_shard_sqe(s);

	io_uring_prep_read(sqe, s->wake_fd, &s->wake_val, sizeof(s->wake_val), 0);
	io_uring_sqe_set_data64(sqe, ND_UD(s, ND_TAG_WAKE));
}

struct handoff {
	struct nd_msg msg;
	int fd;
	bool overload;
	const struct nd_conn_ops *proto;
};

static void adopt_msg(struct nd_shard *to, struct nd_msg *m)
{
	struct handoff *h = nd_container_of(m, struct handoff, msg);

	nd_conn_adopt_accepted(to, h->fd, h->proto, NULL, h->overload,
			       to->cfg->tls);
	free(h);
}

/* A new connection: keep it or hand it to the least-loaded shard. */
static void on_accept(struct nd_shard *s, struct nd_listener *l,
		      struct io_uring_cqe *cqe)
{
	struct nd_server *srv = s->srv;
	unsigned best = s->id, best_load = ~0u, total = 0;
	struct handoff *h;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		l->armed = false;
	if (cqe->res < 0) {
		if (cqe->res != -ECANCELED)
			ND_LOG(ND_LOG_WARN, "conn.accept_failed",
			       ND_S("err", strerror(-cqe->res)));
		return; /* re-armed by the next tick, not in a tight loop */
	}
	for (unsigned i = 0; i < srv->nconn_shards; i++) {
		unsigned load = atomic_load_explicit(&srv->shards[i].load,
						     memory_order_relaxed);

		total += load;
		if (load < best_load) {
			best_load = load;
			best = i;
		}
	}
	h = malloc(sizeof(*h));
	if (!h) {
		close(cqe->res);
		return;
	}
	h->fd = cqe->res;
	h->proto = l == &srv->ln[0] && srv->proto ? srv->proto : l->proto;
	h->overload = total >= srv->cfg.max_conns;
	/* Count it now so a burst of accepts spreads before the target runs. */
	if (best != s->id)
		atomic_fetch_add_explicit(&srv->shards[best].load, 1,
					  memory_order_relaxed);
	nd_shard_post(s, &srv->shards[best], &h->msg, adopt_msg);
}

static void start_drain(struct nd_shard *s)
{
	if (s->draining)
		return;
	s->draining = true;
	s->drain_deadline_ms = s->now_ms + s->cfg->drain_timeout_ms;
	for (unsigned i = 0; s->id == 0 && i < s->srv->nln; i++) {
		struct nd_listener *l = &s->srv->ln[i];
		struct io_uring_sqe *sqe;

		if (!l->armed)
			continue;
		sqe = nd_shard_sqe(s);
		io_uring_prep_cancel64(sqe, ND_UD(l, ND_TAG_ACCEPT), 0);
		io_uring_sqe_set_data64(sqe, ND_UD(NULL, ND_TAG_IGNORE));
	}
	nd_conn_drain_all(s);
}

static void on_tick(struct nd_shard *s)
{
	atomic_store_explicit(&s->alive_ms, s->now_ms, memory_order_relaxed);
	nd_conn_sweep(s);
	if (s->trim_due_ms && s->now_ms >= s->trim_due_ms)
		nd_shard_trim(s);
	/* not once drained: the drain barrier wants no new messages */
	if (s->svc_tick && !s->drained)
		s->svc_tick(s);
	if (s->draining && s->now_ms >= s->drain_deadline_ms)
		nd_conn_kill_all(s);
	arm_accepts(s);
	arm_timer(s);
}

static void dispatch(struct nd_shard *s, struct io_uring_cqe *cqe)
{
	void *p = (void *)(uintptr_t)(cqe->user_data & ~(uint64_t)ND_TAG_MASK);

	switch (cqe->user_data & ND_TAG_MASK) {
	case ND_TAG_RECV:
		nd_conn_on_recv(p, cqe);
		break;
	case ND_TAG_SEND:
		nd_conn_on_send(p, cqe);
		break;
	case ND_TAG_ACCEPT:
		on_accept(s, p, cqe);
		break;
	case ND_TAG_MSG:
		on_msg(s, cqe);
		break;
	case ND_TAG_TIMER:
		on_tick(s);
		break;
	case ND_TAG_OP:
		((struct nd_op *)p)->cb(s, p, cqe);
		break;
	case ND_TAG_WAKE:
		if (atomic_load(&s->srv->stop))
			start_drain(s);
		arm_wake(s);
		break;
	default:
		break;
	}
}

/*
 * Pins shard i to the i-th CPU the process may run on (modulo their number),
 * so `taskset` placement is respected rather than overridden.
 */
static void pin(struct nd_shard *s)
{
	cpu_set_t allowed, one;
	int n, k;

	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return;
	n = CPU_COUNT(&allowed);
	if (n <= 0)
		return;
	k = (int)(s->id % (unsigned)n);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed) || k--)
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
		return;
	}
}

/* The test hook of nd_shard_post (shard.h): NODED_FAULT_MSG_RING=N. */
static unsigned fault_msg_ring(void)
{
	const char *e = getenv("NODED_FAULT_MSG_RING");

	return e ? (unsigned)strtoul(e, NULL, 10) : 0;
}

static int shard_setup(struct nd_shard *s)
{
	unsigned sq = 4096, cq = 16384;
	int ret;

	pin(s);
	s->tx_seq = calloc(s->srv->nshards, sizeof(*s->tx_seq));
	s->rx_seq = calloc(s->srv->nshards, sizeof(*s->rx_seq));
	if (!s->tx_seq || !s->rx_seq) {
		ret = -ENOMEM;
		goto err_seq;
	}
	s->retry_tail = &s->retry;
	s->fault_msg_ring = fault_msg_ring();
	/* Created on the shard's own thread: SINGLE_ISSUER binds to it. */
	ret = nd_uring_init(&s->ring, sq, cq, &s->ring_flags);
	if (ret)
		goto err_seq;
	/* Saves a file-table lookup per io_uring_enter; optional (5.18+). */
	io_uring_register_ring_fd(&s->ring);
	ret = bufring_setup(s);
	if (ret)
		goto err_ring;
	ret = nd_arena_init(&s->arena, 0);
	if (ret)
		goto err_ring;
	return 0;

err_ring:
	io_uring_queue_exit(&s->ring);
err_seq:
	free(s->tx_seq);
	free(s->rx_seq);
	s->tx_seq = s->rx_seq = NULL;
	return ret;
}

static unsigned msgs_count(const struct nd_msg *m)
{
	unsigned n = 0;

	for (; m; m = m->next)
		n++;
	return n;
}

static void shard_teardown(struct nd_shard *s)
{
	unsigned left = msgs_count(s->retry), early = msgs_count(s->early);

	/* Only when the loop stopped before the drain barrier let it (the
	 * ring failed): running them here would break the rule that a
	 * message runs on its target only. */
	if (left || early)
		ND_LOG(ND_LOG_ERROR, "shard.msgs_dropped", ND_U("shard", s->id),
		       ND_U("unsent", left), ND_U("undelivered", early),
		       ND_S("msg", "cross-shard messages dropped at exit"));
	free(s->tx_seq);
	free(s->rx_seq);
	s->tx_seq = s->rx_seq = NULL;
	free(s->api);
	s->api = NULL;
	nd_u64map_free(&s->serials);
	nd_arena_close(&s->arena);
	io_uring_queue_exit(&s->ring);
	if (s->br)
		munmap(s->br, s->buf_count * sizeof(struct io_uring_buf));
	free(s->bufs);
}

/*
 * The drain barrier: a shard with nothing left counts itself drained, but
 * keeps serving messages until every shard has, and until no message is on
 * its way anywhere, because another shard's last connections may still post
 * to it (a closing worker stream, a ticket reply), and a message refused by
 * a ring waits on its sender's retry list.
 *
 * "On its way": every shard counts the messages it posted (before they can
 * run) and the ones it ran (after their function, which may post more).
 * All run counters are read first, then all sent counters: if the sums are
 * equal, then at the instant between the two reads nothing was posted and
 * not yet run (run <= sent at every instant, and both only grow). A drained
 * shard has no connection and posts only in answer to a message, and its
 * service ticks stop (on_tick), so nothing new is posted after that instant
 * and every shard may stop.
 */
static bool all_drained(struct nd_shard *s)
{
	struct nd_server *srv = s->srv;
	uint64_t run = 0, sent = 0;

	if (!s->drained) {
		io_uring_submit(&s->ring);
		s->drained = true;
		atomic_fetch_add(&srv->drained, 1);
	}
	if (atomic_load(&srv->drained) < srv->nshards)
		return false;
	for (unsigned i = 0; i < srv->nshards; i++)
		run += atomic_load(&srv->shards[i].msgs_run);
	for (unsigned i = 0; i < srv->nshards; i++)
		sent += atomic_load(&srv->shards[i].msgs_sent);
	return run == sent;
}

/*
 * After the start gate: did every shard start? When not, the gate opened
 * only to let us stop. A stop (SIGTERM) that came right after a good start
 * is not that: the shard then runs and drains like any other, since others
 * may have posted to it already.
 */
static bool all_set_up(struct nd_server *srv)
{
	if (srv->nstarted < srv->nshards)
		return false;
	for (unsigned i = 0; i < srv->nshards; i++)
		if (srv->shards[i].setup_err)
			return false;
	return true;
}

void *nd__shard_main(void *arg);

void *nd__shard_main(void *arg)
{
	struct nd_shard *s = arg;
	struct io_uring_cqe *cqe;
	unsigned head, n;
	char name[16];
	int ret;

	s->now_ms = nd_mono_coarse_ms();
	atomic_store(&s->alive_ms, s->now_ms);
	/* "shard-N" in ps -L, top -H and /proc/PID/task/TID/comm */
	snprintf(name, sizeof(name), "shard-%u", s->id);
	pthread_setname_np(pthread_self(), name);
	s->setup_err = shard_setup(s);
	sem_post(&s->srv->started);
	if (s->setup_err)
		return NULL;
	while (sem_wait(&s->srv->go) && errno == EINTR)
		;
	if (!all_set_up(s->srv)) { /* released only to stop */
		shard_teardown(s);
		return NULL;
	}
	arm_wake(s);
	arm_timer(s);
	arm_accepts(s);
	if (s->srv->shard_start)
		s->srv->shard_start(s, s->srv->shard_start_arg);
	for (;;) {
		if (s->svc_flush)
			s->svc_flush(s);
		nd_conn_flush_all(s);
		if (s->draining && s->nconns == 0 &&
		    !(s->svc_drain && s->svc_drain(s)) && all_drained(s))
			break;
		ret = io_uring_submit_and_wait(&s->ring, 1);
		if (ret > 0)
			s->m.sqes_submitted += (unsigned)ret;
		if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -ETIME) {
			ND_LOG(ND_LOG_ERROR, "shard.io_uring_failed",
			       ND_U("shard", s->id), ND_S("op", "io_uring_enter"),
			       ND_S("err", strerror(-ret)));
			break;
		}
		s->now_ms = nd_mono_coarse_ms();
		n = 0;
		io_uring_for_each_cqe(&s->ring, head, cqe) {
			dispatch(s, cqe);
			n++;
		}
		io_uring_cq_advance(&s->ring, n);
		s->m.cqes += n;
		if (s->bufs_returned) {
			io_uring_buf_ring_advance(s->br, (int)s->bufs_returned);
			s->bufs_returned = 0;
		}
		nd_conn_reap(s);
		nd_arena_reset(&s->arena);
		s->st.loops++;
	}
	/* Done, not stuck: the watchdog waits for the running shards only. */
	atomic_store(&s->alive_ms, UINT64_MAX);
	if (s->svc_stop)
		s->svc_stop(s);
	shard_teardown(s);
	return NULL;
}
