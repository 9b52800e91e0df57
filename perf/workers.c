/*
 * noded-bench workers: one process that stands in for a fleet.
 *
 *   noded-bench workers --addr HOST:PORT --count N [--slots S]
 *                       [--exec fake|real] [--name-prefix P] [--label K=V]...
 *                       [--output TEXT] [--task-ms MS] [--duration SECS]
 *                       [--ramp N] [--token-file FILE]
 *                       [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]
 *
 * N worker connections from this one thread, moved by one io_uring (the
 * client library used sans-I/O, as `noded-bench ping` does), each speaking
 * the protocol of `noded worker` (src/node/worker.c, src/node/run.c):
 *
 *   connect -> Hello (role worker, name P00001...) -> AssignTask stream ->
 *   AssignTaskOpen (heartbeat interval, master instance) -> ReportStatus at
 *   once, then once per heartbeat interval.
 *
 * Heartbeats: each worker gets a random phase within the interval (one of
 * WHEEL buckets), so 10,000 of them spread over the second instead of
 * arriving at one instant; the loop wakes once per bucket.
 *
 * Connections open progressively: connects and handshakes run through
 * io_uring, at most --ramp of them in flight (default 256), and the next
 * one starts as one registers. A worker counts as registered when the
 * master has answered its first ReportStatus (so `noded nodes` lists it and
 * `noded run --all` includes it); when all are, "workers N registered" is
 * printed on stdout, for scripts to wait for.
 *
 * Tasks (TaskAssignment items on the stream) are answered with the
 * messages of the real worker, in its order: output chunks (each sent after
 * the previous one's ack), then the end (ExecExited) once all output is
 * acknowledged; "started" only for a task still running after 250 ms (the
 * real worker's tick; a shorter task's end carries its start time).
 *   fake  an OutputChunk with --output on stdout (default "ok" and a
 *         newline; none when empty), then exit 0. With --task-ms the end
 *         comes that much later, after a "started" at once (a TaskCancel
 *         before then ends it CANCELLED, as a SIGTERM would).
 *   real  the command is spawned as the exec helper spawns it
 *         (nd_exec_command_start: argv or /bin/sh -c, env, cwd, its own
 *         process group, stdin /dev/null); its stdout and stderr pipes are
 *         read in this io_uring loop, one 16 KiB chunk per pipe at a time
 *         (the next read waits for the master's ack: output is bounded by
 *         backpressure, not by dropping); it is reaped through a pidfd
 *         polled on the ring (a 100 ms waitpid poll where pidfd_open is
 *         missing), then what is left of its group is killed. The task's
 *         timeout and TaskCancel send SIGTERM to the group, SIGKILL 2 s later.
 *
 * Slots: a task holds one of the S slots (default 4) from its assignment
 * until its end is sent (the master frees it when it takes the end), and
 * ReportStatus gives slots_free and the running ids. A task beyond S ends
 * at once FAILED (125, "worker has no free slot"), as with the real worker,
 * and is counted "over slots" in the summary: a master should never send
 * one. A task (id, attempt) a worker is running already is ignored.
 *
 * The master going away: no reconnect. A connection that fails or ends
 * (refused connect, Hello refused, the master stopped or dropped it) is
 * fatal: the first is reported on stderr with the worker's name, every
 * command still running is killed, and the process exits 1. Since a
 * connection never outlives its master process, the master_instance of
 * AssignTaskOpen can only differ between workers (another master behind the
 * same address), which is reported once.
 *
 * Exit: 0 after --duration or SIGINT/SIGTERM (once the master acknowledged
 * the ends already sent, up to 1 s), 1 when a connection failed
 * or was lost (or io_uring could not be set up), 2 on bad usage. A summary
 * goes to stderr in every case: workers registered, tasks received,
 * completed, failed, over slots, cancels, heartbeats sent, connection
 * losses, errors, reconnects (always 0).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/list.h"
#include "core/time.h"
#include "exec/exec.h"
#include "node/status.h"
#include "noded/auth.h"
#include "noded/client.h"
#include "cmds.h"
#include "loop.h"
#include "util.h"

#define MAX_COUNT 100000
#define MAX_SLOTS 1024
#define MAX_PREFIX 200          /* names stay under the master's 253 */
#define RAMP_DEFAULT 256
#define SLOTS_DEFAULT 4
#define BUF_SIZE 2048           /* provided receive buffers */
#define BUF_COUNT 4096
#define BGID 1
#define WHEEL 250               /* heartbeat phases per interval */
#define HB_DEFAULT_MS 1000
#define HANDSHAKE_MS 15000      /* connect to registered, or fatal */
#define TICK_MS 100             /* real tasks: timeouts, "started", reaping */
#define STARTED_MS 250
#define GRACE_MS 2000
#define CHUNK (16u << 10)       /* real: one pipe read */
#define REASON_MAX 512
#define WAIT_MAX_NS 50000000ll
#define DRAIN_NS 2000000000ull
/* Stopping, how long we wait for the acks of ends already sent: a master
 * sends them with its next output or at its tick (250 ms). */
#define ACK_WAIT_MS 1000

/* user_data: the op in the low 3 bits; above it a worker index (connection
 * ops) or a pointer (task ops: malloc'd, so 8-aligned). */
enum { OP_CONNECT, OP_RECV, OP_SEND, OP_PIPE, OP_PIDFD, OP_CANCEL };
#define OP_MASK 7ull

enum wstate {
	W_IDLE,         /* not started */
	W_CONNECTING,   /* connect in the kernel */
	W_HANDSHAKE,    /* Hello, AssignTask, first ReportStatus */
	W_UP,           /* registered, heartbeating */
	W_DEAD,         /* failed or lost: nothing more is done with it */
};

struct sim;
struct task;

/* One simulated worker: one connection. */
struct sw {
	struct sim *sim;
	struct nd_perf_conn pc; /* client, fd, sends; dead once W_DEAD */
	const char *name;
	enum wstate st;
	bool recv_armed;
	uint32_t hb_next;       /* next in its wheel bucket: index + 1 */
	unsigned busy;          /* tasks holding a slot (on running) */
	struct nd_list running;
	uint64_t t0_ms;         /* connect started */
};

/* Real mode: one pipe of a command. */
struct rpipe {
	struct task *t;
	int fd;                 /* -1 once at EOF */
	uint32_t fdno;          /* 1 stdout, 2 stderr */
	bool reading;           /* a read is in the kernel */
	size_t len;             /* bytes with the master, not acked */
	uint8_t buf[CHUNK];
};

/* Real mode: the command of a task. */
struct real {
	pid_t pid;              /* also its process group */
	int pidfd;              /* -1: none (closed, or waitpid polling) */
	bool polling;           /* a poll on pidfd is in the kernel */
	bool exited;
	bool term_sent;         /* SIGTERM sent; SIGKILL at deadline */
	bool timed_out, cancelled;
	int status;
	struct rusage ru;
	uint32_t timeout_ms;
	uint64_t deadline_ms;   /* next kill step (monotonic), 0: none */
	struct rpipe p[2];
};

struct task {
	struct nd_list link;    /* sim->tasks, until its end is acked */
	struct nd_list wlink;   /* w->running while it holds a slot */
	struct nd_list qlink;   /* sim->delayed (fake) or sim->reals */
	struct sw *w;
	uint64_t id;
	uint32_t attempt;
	bool started_sent;
	bool end_sent;
	bool failed;            /* its end is not a success */
	bool cancelled;         /* fake: a TaskCancel came first */
	uint64_t start_unix_ms;
	uint64_t t0_ms;         /* monotonic start */
	uint64_t due_ms;        /* fake --task-ms: when it ends */
	struct real *rx;        /* real mode, else NULL */
};

struct opts {
	const char *addr;
	unsigned count, slots, ramp;
	bool real;
	const char *prefix;
	const char **labels;
	size_t nlabels;
	const char *output;
	unsigned task_ms;
	double duration;        /* 0: until a signal */
	const char *token_file;
	const char *tls_cert, *tls_key, *tls_ca; /* TLS 1.3 when set */
};

struct sim {
	const struct opts *o;
	struct nd_perf_loop loop;   /* finishing: completions only counted */
	bool ring_ok;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	struct sw *w;
	char *names;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct nd_client_opts copts;
	struct nd_client *tls_from; /* the first worker on TLS: the others
				     * take its context (its files, read once) */
	struct nd_status_labels labels;
	uint64_t *ids;          /* scratch: running ids of one report */
	unsigned next_connect, handshaking, registered;
	bool announced;         /* "workers N registered" printed */
	bool stopping;          /* leave the loop */
	bool failed;            /* a connection failed or was lost */
	uint64_t now_ms;
	uint64_t t_start_ms, t_registered_ms;
	/* heartbeats */
	uint32_t wheel[WHEEL];
	uint32_t hb_ms;
	bool hb_set;
	unsigned wheel_pos;
	uint64_t wheel_next_ns, slot_ns;
	uint64_t instance;
	bool instance_warned;
	/* the node id of every worker of this process: they live as long as
	 * it does, and another process with the same names is refused */
	uint8_t node_id[16];
	/* what every report says of the machine, refreshed every second */
	Noded__NodeStatus machine;
	uint64_t next_refresh_ms, next_tick_ms, next_check_ms;
	/* tasks */
	struct nd_list tasks, delayed, reals;
	size_t output_len;
	/* summary */
	uint64_t received, completed, task_failed, over_slots, cancels,
		 heartbeats, lost, errors, dups;
	uint64_t ends_unacked;  /* ends sent, ack not yet received */
	uint64_t stop_by_ms;    /* asked to stop: leave by then at most */
};

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
	stop_flag = 1;
}

static uint64_t widx(const struct sim *sim, const struct sw *w)
{
	return (uint64_t)(w - sim->w);
}

/* ---- connections ---- */

/* The first failure is reported and stops the run; later ones (the rest
 * of the fleet going down with the master) are only counted. */
static void conn_lost(struct sw *w, const char *why)
{
	struct sim *sim = w->sim;

	if (w->st == W_DEAD)
		return;
	if (w->st == W_CONNECTING || w->st == W_HANDSHAKE)
		sim->handshaking--;
	w->st = W_DEAD;
	w->pc.dead = true;
	sim->lost++;
	if (sim->stopping)
		return;
	fprintf(stderr, "noded-bench: workers: %s: %s; stopping (no "
		"reconnect)\n", w->name, why);
	sim->failed = true;
	sim->stopping = true;
}

static void pc_lost(struct nd_perf_conn *pc, int err)
{
	conn_lost(nd_container_of(pc, struct sw, pc), strerror(-err));
}

static void arm_recv(struct sw *w)
{
	struct sim *sim = w->sim;
	struct io_uring_sqe *sqe;

	if (w->st == W_DEAD || w->recv_armed || sim->loop.finishing)
		return;
	sqe = nd_perf_sqe(&sim->loop.ring);
	if (!sqe) {
		conn_lost(w, "io_uring has no room");
		return;
	}
	io_uring_prep_recv_multishot(sqe, w->pc.fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, widx(sim, w) << 3 | OP_RECV);
	w->recv_armed = true;
	sim->loop.ops++;
}

static void buf_return(struct sim *sim, unsigned bid)
{
	io_uring_buf_ring_add(sim->br, sim->bufs + (size_t)bid * BUF_SIZE,
			      BUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(BUF_COUNT), 0);
	io_uring_buf_ring_advance(sim->br, 1);
}

static void on_recv(struct sw *w, const struct io_uring_cqe *cqe)
{
	struct sim *sim = w->sim;
	int res = cqe->res, r = 0;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		w->recv_armed = false;
		sim->loop.ops--;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		if (res > 0 && w->st != W_DEAD && !sim->loop.finishing)
			r = w->pc.ssl ?
				nd_perf_tls_feed(&w->pc, sim->bufs +
						 (size_t)bid * BUF_SIZE,
						 (size_t)res) :
				nd_client_feed(w->pc.c,
					       sim->bufs + (size_t)bid * BUF_SIZE,
					       (size_t)res);
		buf_return(sim, bid);
	}
	if (w->st == W_DEAD || sim->loop.finishing)
		return;
	/* The library may queue a request of its own while it is fed (the
	 * Auth that answers a token challenge): send whatever it queued. */
	if (r >= 0 && res > 0)
		nd_perf_mark(&sim->loop, &w->pc);
	if (r < 0)
		conn_lost(w, nd_strerror(r));
	else if (res == 0)
		conn_lost(w, "the master closed the connection");
	else if (res < 0 && res != -ENOBUFS && res != -EINTR &&
		 res != -EAGAIN)
		conn_lost(w, strerror(-res));
	else
		arm_recv(w); /* no-op while the multishot goes on */
}

/* ---- heartbeats ---- */

static void on_status(struct nd_client *c, int status, const Noded__Frame *f,
		      bool done, void *arg);

static void report(struct sw *w)
{
	struct sim *sim = w->sim;
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__NodeStatus ns = NODED__NODE_STATUS__INIT;
	size_t n = 0;

	for (struct nd_list *l = w->running.next; l != &w->running &&
	     n < sim->o->slots; l = l->next)
		sim->ids[n++] = nd_container_of(l, struct task, wlink)->id;
	ns.name = (char *)w->name;
	ns.n_labels = sim->labels.n;
	ns.labels = sim->labels.p;
	ns.load1 = sim->machine.load1;
	ns.load5 = sim->machine.load5;
	ns.load15 = sim->machine.load15;
	ns.mem_total_bytes = sim->machine.mem_total_bytes;
	ns.mem_available_bytes = sim->machine.mem_available_bytes;
	ns.slots_total = sim->o->slots;
	ns.slots_free = sim->o->slots - w->busy;
	ns.n_running_tasks = n;
	ns.running_tasks = sim->ids;
	/* heartbeat_seq stays 0: the sim takes no leases (it kills nothing
	 * when the master goes quiet), so the master must not count on
	 * any, and sends it no HeartbeatAck */
	ns.uptime_ms = sim->now_ms - sim->t_start_ms;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &ns;
	/* The first report is a call, whose reply says the worker is
	 * registered; heartbeats after it are one-way, as noded worker's. */
	if (w->st == W_HANDSHAKE ? nd_client_start(w->pc.c, &f, on_status, w) < 0
				 : nd_client_notify(w->pc.c, &f) < 0)
		return;
	sim->heartbeats++;
	nd_perf_mark(&sim->loop, &w->pc);
}

static void wheel_add(struct sw *w)
{
	struct sim *sim = w->sim;
	unsigned b = (unsigned)rand() % WHEEL;

	w->hb_next = sim->wheel[b];
	sim->wheel[b] = (uint32_t)widx(sim, w) + 1;
}

/* Reports of the buckets whose time has come. */
static void heartbeats(struct sim *sim, uint64_t now_ns)
{
	if (!sim->hb_set)
		return;
	if (now_ns > sim->wheel_next_ns + 1000000ull * sim->hb_ms)
		sim->wheel_next_ns = now_ns; /* stalled a whole lap: resync */
	while (now_ns >= sim->wheel_next_ns) {
		for (uint32_t i = sim->wheel[sim->wheel_pos]; i;
		     i = sim->w[i - 1].hb_next)
			if (sim->w[i - 1].st == W_UP)
				report(&sim->w[i - 1]);
		sim->wheel_pos = (sim->wheel_pos + 1) % WHEEL;
		sim->wheel_next_ns += sim->slot_ns;
	}
}

/* ---- tasks ---- */

static void task_free(struct task *t)
{
	nd_list_del(&t->link);
	nd_list_del(&t->wlink);
	nd_list_del(&t->qlink);
	free(t->rx);
	free(t);
}

/* Sends u (a TaskUpdate of t) with cb for its ack. False when the
 * connection is gone (the run is stopping then). */
static bool update(struct task *t, Noded__TaskUpdate *u, nd_reply_cb cb,
		   void *arg)
{
	Noded__Frame f = NODED__FRAME__INIT;

	if (t->w->st == W_DEAD)
		return false;
	u->task_id = t->id;
	u->attempt = t->attempt;
	f.body_case = NODED__FRAME__BODY_TASK_UPDATE;
	f.task_update = u;
	if (nd_client_start(t->w->pc.c, &f, cb, arg) < 0)
		return false;
	nd_perf_mark(&t->w->sim->loop, &t->w->pc);
	return true;
}

static void send_started(struct task *t)
{
	Noded__TaskUpdate u = NODED__TASK_UPDATE__INIT;
	Noded__ExecStarted st = NODED__EXEC_STARTED__INIT;

	st.task_id = t->id;
	st.pid = t->rx ? t->rx->pid : 0;
	st.start_unix_ms = t->start_unix_ms;
	u.body_case = NODED__TASK_UPDATE__BODY_STARTED;
	u.started = &st;
	t->started_sent = update(t, &u, NULL, NULL);
}

/* The master took t's end (or answered it with an Error). */
static void on_end_ack(struct nd_client *c, int status, const Noded__Frame *f,
		       bool done, void *arg)
{
	struct task *t = arg;
	struct sim *sim;

	if (status < 0)
		return; /* connection gone: freed at teardown */
	sim = t->w->sim;
	sim->ends_unacked--;
	if (status == ND_EREMOTE) {
		if (!sim->errors++)
			fprintf(stderr, "noded-bench: workers: the master "
				"refused the end of task %" PRIu64 ": %s\n",
				t->id, f && f->error ? f->error->message : "");
	} else {
		sim->completed++;
		sim->task_failed += t->failed;
	}
	task_free(t);
}

/* Sends t's end x (task_id is set here) and gives its slot back. */
static void send_end(struct task *t, Noded__ExecExited *x)
{
	Noded__TaskUpdate u = NODED__TASK_UPDATE__INIT;

	if (nd_list_linked(&t->wlink)) {
		nd_list_del(&t->wlink);
		t->w->busy--;
	}
	nd_list_del(&t->qlink);
	x->task_id = t->id;
	if (!x->start_unix_ms)
		x->start_unix_ms = t->start_unix_ms;
	if (!x->end_unix_ms)
		x->end_unix_ms = nd_unix_ms();
	t->failed = x->exit_code || x->signal || x->spawn_errno;
	t->end_sent = true;
	u.body_case = NODED__TASK_UPDATE__BODY_FINISHED;
	u.finished = x;
	if (update(t, &u, on_end_ack, t))
		t->w->sim->ends_unacked++;
}

/* ---- fake tasks ---- */

static void fake_end(struct task *t)
{
	Noded__ExecExited x = NODED__EXEC_EXITED__INIT;

	if (t->cancelled) {
		x.cancelled = true;
		x.signal = SIGTERM;
		x.exit_code = 128 + SIGTERM;
		x.reason = (char *)"cancelled; killed by signal 15 (Terminated)";
	}
	send_end(t, &x);
}

static void on_output_ack(struct nd_client *c, int status,
			  const Noded__Frame *f, bool done, void *arg)
{
	if (status < 0)
		return; /* connection gone: freed at teardown */
	fake_end(arg);
}

/* The fake command "ran": its output, then (after the ack) its end. */
static void fake_finish(struct task *t)
{
	const struct opts *o = t->w->sim->o;
	Noded__TaskUpdate u = NODED__TASK_UPDATE__INIT;
	Noded__OutputChunk oc = NODED__OUTPUT_CHUNK__INIT;

	if (t->cancelled || !t->w->sim->output_len) {
		fake_end(t);
		return;
	}
	oc.task_id = t->id;
	oc.fd = 1;
	oc.data.data = (uint8_t *)o->output;
	oc.data.len = t->w->sim->output_len;
	u.body_case = NODED__TASK_UPDATE__BODY_OUTPUT;
	u.output = &oc;
	update(t, &u, on_output_ack, t);
}

static void fake_start(struct task *t)
{
	struct sim *sim = t->w->sim;

	if (!sim->o->task_ms) {
		fake_finish(t);
		return;
	}
	if (sim->o->task_ms >= STARTED_MS)
		send_started(t);
	t->due_ms = sim->now_ms + sim->o->task_ms;
	/* one delay for all: the queue stays in due order */
	nd_list_add_tail(&sim->delayed, &t->qlink);
}

static void fake_due(struct sim *sim)
{
	while (!nd_list_empty(&sim->delayed)) {
		struct task *t = nd_container_of(sim->delayed.next,
						 struct task, qlink);

		if (t->due_ms > sim->now_ms)
			break;
		nd_list_del(&t->qlink);
		fake_finish(t);
	}
}

/* ---- real tasks ---- */

static void arm_read(struct rpipe *p)
{
	struct sim *sim = p->t->w->sim;
	struct io_uring_sqe *sqe = nd_perf_sqe(&sim->loop.ring);

	if (!sqe) {
		close(p->fd); /* the command sees EPIPE; we see it end */
		p->fd = -1;
		return;
	}
	io_uring_prep_read(sqe, p->fd, p->buf, CHUNK, (uint64_t)-1);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)p | OP_PIPE);
	p->reading = true;
	sim->loop.ops++;
}

static void arm_pidfd(struct task *t)
{
	struct sim *sim = t->w->sim;
	struct io_uring_sqe *sqe = nd_perf_sqe(&sim->loop.ring);

	if (!sqe) {
		close(t->rx->pidfd); /* the tick polls waitpid instead */
		t->rx->pidfd = -1;
		return;
	}
	io_uring_prep_poll_add(sqe, t->rx->pidfd, POLLIN);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)t | OP_PIDFD);
	t->rx->polling = true;
	sim->loop.ops++;
}

/* The end, once the command was reaped and all its output acknowledged. */
static void real_maybe_end(struct task *t)
{
	struct real *rx = t->rx;
	Noded__ExecExited x = NODED__EXEC_EXITED__INIT;
	char reason[REASON_MAX];

	if (!rx->exited || t->end_sent)
		return;
	for (int i = 0; i < 2; i++)
		if (rx->p[i].fd >= 0 || rx->p[i].len)
			return;
	x.timed_out = rx->timed_out;
	x.cancelled = rx->cancelled;
	nd_exec_exited_fill(&x, rx->status, &rx->ru, rx->timeout_ms, 0,
			    reason, sizeof(reason));
	send_end(t, &x);
}

/* Reaps the command if it exited: its group's leftovers are killed while
 * the zombie still holds the group id, as the exec helper does. */
static void real_reap(struct task *t)
{
	struct real *rx = t->rx;
	siginfo_t si = { 0 };

	if (rx->exited ||
	    waitid(P_PID, (id_t)rx->pid, &si, WEXITED | WNOHANG | WNOWAIT) ||
	    si.si_pid != rx->pid)
		return;
	kill(-rx->pid, SIGKILL);
	while (wait4(rx->pid, &rx->status, 0, &rx->ru) < 0 && errno == EINTR)
		;
	rx->exited = true;
	if (rx->pidfd >= 0)
		close(rx->pidfd);
	rx->pidfd = -1;
	real_maybe_end(t);
}

static void on_pidfd(struct task *t, int res)
{
	struct sim *sim = t->w->sim;

	t->rx->polling = false;
	sim->loop.ops--;
	if (sim->loop.finishing)
		return;
	real_reap(t);
	if (!t->rx->exited && t->rx->pidfd >= 0) {
		if (res < 0 && res != -EINTR) {
			close(t->rx->pidfd); /* the tick polls instead */
			t->rx->pidfd = -1;
		} else {
			arm_pidfd(t);
		}
	}
}

static void on_chunk_ack(struct nd_client *c, int status,
			 const Noded__Frame *f, bool done, void *arg)
{
	struct rpipe *p = arg;

	if (status < 0)
		return; /* connection gone: freed at teardown */
	p->len = 0;
	if (p->fd >= 0)
		arm_read(p);
	else
		real_maybe_end(p->t);
}

static void on_pipe(struct rpipe *p, int res)
{
	struct task *t = p->t;
	struct sim *sim = t->w->sim;
	Noded__TaskUpdate u = NODED__TASK_UPDATE__INIT;
	Noded__OutputChunk oc = NODED__OUTPUT_CHUNK__INIT;

	p->reading = false;
	sim->loop.ops--;
	if (sim->loop.finishing)
		return;
	if (res == -EINTR || res == -EAGAIN) {
		arm_read(p);
		return;
	}
	if (res > 0) {
		p->len = (size_t)res;
		oc.task_id = t->id;
		oc.fd = p->fdno;
		oc.data.data = p->buf;
		oc.data.len = p->len;
		u.body_case = NODED__TASK_UPDATE__BODY_OUTPUT;
		u.output = &oc;
		update(t, &u, on_chunk_ack, p);
		return;
	}
	close(p->fd); /* EOF, or an error: nothing more to read */
	p->fd = -1;
	real_maybe_end(t);
}

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	return -1;
#endif
}

/* Spawns the command of a; a spawn that fails ends the task at once. */
static void real_start(struct task *t, const Noded__TaskAssignment *a)
{
	Noded__ExecSpawn sp = NODED__EXEC_SPAWN__INIT;
	Noded__ExecExited x = NODED__EXEC_EXITED__INIT;
	struct real *rx = calloc(1, sizeof(*rx));
	char reason[REASON_MAX] = "out of memory";
	uint32_t timeout_ms = a->command ? a->command->timeout_ms : 0;
	int fds[2], err = ENOMEM;

	if (rx) {
		sp.task_id = t->id;
		sp.command = a->command;
		sp.master_task_id = a->task_id; /* its NODED_* variables */
		sp.job_id = a->job_id;
		sp.attempt = a->attempt;
		sp.node = (char *)t->w->name;
		err = nd_exec_command_start(&sp, &rx->pid, fds, reason,
					    sizeof(reason));
	}
	if (err) {
		free(rx);
		nd_exec_spawn_failed(&x, err, reason);
		send_end(t, &x);
		return;
	}
	t->rx = rx;
	rx->timeout_ms = timeout_ms;
	rx->deadline_ms = timeout_ms ? t->t0_ms + timeout_ms : 0;
	for (int i = 0; i < 2; i++) {
		rx->p[i].t = t;
		rx->p[i].fd = fds[i];
		rx->p[i].fdno = (uint32_t)i + 1;
		arm_read(&rx->p[i]);
	}
	rx->pidfd = pidfd_open_(rx->pid);
	if (rx->pidfd >= 0)
		arm_pidfd(t);
	nd_list_add_tail(&t->w->sim->reals, &t->qlink);
}

/* SIGTERM to the group now, SIGKILL after GRACE_MS (the tick). */
static void real_terminate(struct task *t, bool cancel)
{
	struct real *rx = t->rx;

	if (rx->exited || rx->term_sent)
		return;
	if (cancel)
		rx->cancelled = true;
	else
		rx->timed_out = true;
	kill(-rx->pid, SIGTERM);
	kill(-rx->pid, SIGCONT);
	rx->term_sent = true;
	rx->deadline_ms = t->w->sim->now_ms + GRACE_MS;
}

/* Every TICK_MS: "started" for long tasks, timeouts, waitpid polling. */
static void real_tick(struct sim *sim)
{
	struct nd_list *l, *next;

	for (l = sim->reals.next; l != &sim->reals; l = next) {
		struct task *t = nd_container_of(l, struct task, qlink);
		struct real *rx = t->rx;

		next = l->next; /* real_reap may end t */
		if (rx->exited)
			continue;
		if (!t->started_sent && sim->now_ms - t->t0_ms >= STARTED_MS)
			send_started(t);
		if (rx->deadline_ms && sim->now_ms >= rx->deadline_ms) {
			if (!rx->term_sent) {
				real_terminate(t, false);
			} else {
				kill(-rx->pid, SIGKILL);
				rx->deadline_ms = 0;
			}
		}
		if (rx->pidfd < 0)
			real_reap(t);
	}
}

/* ---- the AssignTask stream ---- */

static struct task *task_find(struct sw *w, uint64_t id)
{
	for (struct nd_list *l = w->running.next; l != &w->running;
	     l = l->next) {
		struct task *t = nd_container_of(l, struct task, wlink);

		if (t->id == id)
			return t;
	}
	return NULL;
}

static void task_assigned(struct sw *w, const Noded__TaskAssignment *a)
{
	struct sim *sim = w->sim;
	struct task *t, *old = task_find(w, a->task_id);

	sim->received++;
	if (!a->task_id || (old && old->attempt == a->attempt)) {
		sim->dups++; /* never run a task (attempt) twice */
		return;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		sim->errors++;
		return;
	}
	t->w = w;
	t->id = a->task_id;
	t->attempt = a->attempt;
	t->start_unix_ms = nd_unix_ms();
	t->t0_ms = sim->now_ms;
	nd_list_add_tail(&sim->tasks, &t->link);
	if (w->busy >= sim->o->slots) {
		Noded__ExecExited x = NODED__EXEC_EXITED__INIT;

		sim->over_slots++;
		x.exit_code = 125;
		x.reason = (char *)"worker has no free slot";
		send_end(t, &x);
		return;
	}
	w->busy++;
	nd_list_add_tail(&w->running, &t->wlink);
	if (sim->o->real)
		real_start(t, a);
	else
		fake_start(t);
}

static void task_cancel(struct sw *w, uint64_t id)
{
	struct task *t = task_find(w, id);

	if (!t)
		return; /* ended meanwhile */
	w->sim->cancels++;
	if (t->rx) {
		real_terminate(t, true);
	} else if (nd_list_linked(&t->qlink)) {
		t->cancelled = true;
		nd_list_del(&t->qlink);
		fake_finish(t);
	}
}

static void registered_open(struct sw *w, const Noded__AssignTaskOpen *o)
{
	struct sim *sim = w->sim;

	if (!sim->hb_set) {
		sim->hb_set = true;
		if (o->heartbeat_interval_ms)
			sim->hb_ms = o->heartbeat_interval_ms;
		sim->slot_ns = 1000000ull * sim->hb_ms / WHEEL;
		sim->wheel_next_ns = nd_mono_ns() + sim->slot_ns;
	}
	if (!sim->instance) {
		sim->instance = o->master_instance;
	} else if (o->master_instance != sim->instance &&
		   !sim->instance_warned) {
		sim->instance_warned = true;
		fprintf(stderr, "noded-bench: workers: %s registered with "
			"master instance %" PRIx64 ", others with %" PRIx64
			" (two masters behind %s?)\n", w->name,
			o->master_instance, sim->instance, sim->o->addr);
	}
	report(w);
}

static void on_status(struct nd_client *c, int status, const Noded__Frame *f,
		      bool done, void *arg)
{
	struct sw *w = arg;
	struct sim *sim;

	if (status < 0)
		return;
	sim = w->sim;
	if (status == ND_EREMOTE) {
		conn_lost(w, f && f->error ? f->error->message
					   : "ReportStatus refused");
		return;
	}
	if (w->st != W_HANDSHAKE)
		return;
	w->st = W_UP;
	sim->handshaking--;
	sim->registered++;
	wheel_add(w);
}

static void on_assign(struct nd_client *c, int status, const Noded__Frame *f,
		      bool done, void *arg)
{
	struct sw *w = arg;
	char why[300];

	if (status == -ECANCELED)
		return; /* closed at teardown */
	if (status == 0 && !done) {
		switch (f->body_case) {
		case NODED__FRAME__BODY_ASSIGN_OPEN:
			registered_open(w, f->assign_open);
			break;
		case NODED__FRAME__BODY_TASK:
			task_assigned(w, f->task);
			break;
		case NODED__FRAME__BODY_TASK_CANCEL:
			task_cancel(w, f->task_cancel->task_id);
			break;
		default:
			break;
		}
		return;
	}
	snprintf(why, sizeof(why), "the master ended the task stream: %s",
		 status == ND_EREMOTE && f && f->error ? f->error->message :
		 status ? nd_strerror(status) : "without an error");
	conn_lost(w, why);
}

static void on_hello(struct nd_client *c, int status, const Noded__Frame *f,
		     bool done, void *arg)
{
	struct sw *w = arg;
	Noded__Frame af = NODED__FRAME__INIT;
	Noded__AssignTaskRequest ar = NODED__ASSIGN_TASK_REQUEST__INIT;
	char why[300];

	if (status == -ECANCELED)
		return;
	if (status) {
		if (status == ND_EAUTHNOPROOF || status == ND_EAUTHBADPROOF)
			snprintf(why, sizeof(why), "not trusted: %s",
				 nd_strerror(status));
		else
			snprintf(why, sizeof(why),
				 "the master refused the Hello: %s",
				 status == ND_EREMOTE && f && f->error ?
					 f->error->message :
				 status == ND_EAUTH ?
					 "wrong or missing --token-file" :
					 nd_strerror(status));
		conn_lost(w, why);
		return;
	}
	ar.node_name = (char *)w->name;
	ar.node_id.data = w->sim->node_id;
	ar.node_id.len = sizeof(w->sim->node_id);
	af.body_case = NODED__FRAME__BODY_ASSIGN_TASK;
	af.assign_task = &ar;
	if (nd_client_start(c, &af, on_assign, w) < 0)
		conn_lost(w, "cannot open the AssignTask stream");
	else
		nd_perf_mark(&w->sim->loop, &w->pc);
}

/* ---- connecting ---- */

static void start_connect(struct sw *w)
{
	struct sim *sim = w->sim;
	struct io_uring_sqe *sqe;
	int one = 1;

	w->t0_ms = sim->now_ms;
	w->st = W_CONNECTING;
	sim->handshaking++;
	w->pc.fd = socket(sim->addr.ss_family,
		       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (w->pc.fd < 0) {
		conn_lost(w, strerror(errno));
		return;
	}
	setsockopt(w->pc.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sqe = nd_perf_sqe(&sim->loop.ring);
	if (!sqe) {
		conn_lost(w, "io_uring has no room");
		return;
	}
	io_uring_prep_connect(sqe, w->pc.fd, (struct sockaddr *)&sim->addr,
			      sim->addrlen);
	io_uring_sqe_set_data64(sqe, widx(sim, w) << 3 | OP_CONNECT);
	sim->loop.ops++;
}

static void on_connect(struct sw *w, int res)
{
	struct sim *sim = w->sim;
	struct nd_client_opts co = sim->copts;
	char why[300];
	int r;

	sim->loop.ops--;
	if (w->st == W_DEAD || sim->loop.finishing)
		return;
	if (res < 0) {
		snprintf(why, sizeof(why), "cannot connect to %s: %s",
			 sim->o->addr, strerror(-res));
		conn_lost(w, why);
		return;
	}
	/* The client owns the fd from here on, also when adopt fails. */
	co.node_name = w->name;
	r = nd_client_adopt(&w->pc.c, w->pc.fd, &co);
	if (r) {
		w->pc.fd = -1;
		conn_lost(w, nd_strerror(r));
		return;
	}
	/* TLS: the handshake here, blocking this loop meanwhile (the
	 * master's part is what a fleet costs it), then records through
	 * memory BIOs on the ring, as noded-bench ping does */
	if (co.tls_ca || co.tls_cert) {
		co.tls_from = sim->tls_from;
		r = nd_client_start_tls(w->pc.c, &co, HANDSHAKE_MS);
		if (!r)
			r = nd_perf_tls_start(&w->pc);
		if (r) {
			snprintf(why, sizeof(why), "TLS: %s%s%s",
				 nd_strerror(r),
				 *nd_client_last_error() ? ": " : "",
				 nd_client_last_error());
			conn_lost(w, why);
			return;
		}
		if (!sim->tls_from)
			sim->tls_from = w->pc.c;
	}
	w->st = W_HANDSHAKE;
	if (nd_client_hello(w->pc.c, on_hello, w)) {
		conn_lost(w, "cannot queue the Hello");
		return;
	}
	nd_perf_mark(&sim->loop, &w->pc);
	arm_recv(w);
}

/* Starts connects while fewer than --ramp are under way; fails a worker
 * that is not registered HANDSHAKE_MS after its connect began. */
static void ramp(struct sim *sim)
{
	while (!sim->stopping && sim->handshaking < sim->o->ramp &&
	       sim->next_connect < sim->o->count)
		start_connect(&sim->w[sim->next_connect++]);
	if (sim->registered == sim->o->count || sim->now_ms < sim->next_check_ms)
		return;
	sim->next_check_ms = sim->now_ms + 1000;
	for (unsigned i = 0; i < sim->next_connect && !sim->stopping; i++) {
		struct sw *w = &sim->w[i];

		if ((w->st == W_CONNECTING || w->st == W_HANDSHAKE) &&
		    sim->now_ms - w->t0_ms > HANDSHAKE_MS)
			conn_lost(w, w->st == W_CONNECTING ?
				  "connect did not complete within 15 s" :
				  "not registered within 15 s of its connect");
	}
}

/* ---- the loop ---- */

/* One completion: the op is in the low bits of its user_data. */
static void complete(struct nd_perf_loop *l, const struct io_uring_cqe *cqe)
{
	struct sim *sim = nd_container_of(l, struct sim, loop);
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *p = (void *)(uintptr_t)(ud & ~OP_MASK);

	switch (ud & OP_MASK) {
	case OP_CONNECT:
		on_connect(&sim->w[ud >> 3], cqe->res);
		break;
	case OP_RECV:
		on_recv(&sim->w[ud >> 3], cqe);
		break;
	case OP_SEND:
		nd_perf_sent(l, &sim->w[ud >> 3].pc, cqe->res);
		break;
	case OP_PIPE:
		on_pipe(p, cqe->res);
		break;
	case OP_PIDFD:
		on_pidfd(p, cqe->res);
		break;
	default: /* OP_CANCEL */
		break;
	}
}

static void announce(struct sim *sim)
{
	if (sim->announced || sim->registered < sim->o->count)
		return;
	sim->announced = true;
	sim->t_registered_ms = sim->now_ms;
	printf("workers %u registered\n", sim->o->count);
	fflush(stdout);
}

static int run(struct sim *sim)
{
	uint64_t end_ns = 0, t0 = nd_mono_ns();
	int r;

	if (sim->o->duration > 0)
		end_ns = t0 + (uint64_t)(sim->o->duration * 1e9);
	for (;;) {
		uint64_t now = nd_mono_ns();
		int64_t wait = WAIT_MAX_NS;

		sim->now_ms = now / 1000000;
		/* Asked to stop: once the master took every end we sent
		 * (bounded by ACK_WAIT_MS), so the summary's "completed" is
		 * what it recorded. */
		if ((stop_flag || (end_ns && now >= end_ns)) &&
		    !sim->stop_by_ms)
			sim->stop_by_ms = sim->now_ms + ACK_WAIT_MS;
		if (sim->stop_by_ms && (!sim->ends_unacked ||
					sim->now_ms >= sim->stop_by_ms))
			sim->stopping = true;
		if (sim->stopping)
			return 0;
		if (sim->now_ms >= sim->next_refresh_ms) {
			nd_status_machine(&sim->machine);
			sim->next_refresh_ms = sim->now_ms + 1000;
		}
		ramp(sim);
		heartbeats(sim, now);
		fake_due(sim);
		if (sim->now_ms >= sim->next_tick_ms) {
			real_tick(sim);
			sim->next_tick_ms = sim->now_ms + TICK_MS;
		}
		if (sim->hb_set && (int64_t)(sim->wheel_next_ns - now) < wait)
			wait = (int64_t)(sim->wheel_next_ns - now);
		if (!nd_list_empty(&sim->delayed)) {
			struct task *t = nd_container_of(sim->delayed.next,
							 struct task, qlink);
			int64_t due = ((int64_t)t->due_ms -
				       (int64_t)sim->now_ms) * 1000000;

			if (due < wait)
				wait = due;
		}
		if (end_ns && (int64_t)(end_ns - now) < wait)
			wait = (int64_t)(end_ns - now);
		r = nd_perf_loop_step(&sim->loop, wait);
		if (r < 0)
			return r;
		sim->now_ms = nd_mono_ns() / 1000000;
		announce(sim);
	}
}

/*
 * Ends everything: commands are killed (and reaped), every operation in
 * the kernel is cancelled and waited for (bounded), then the clients are
 * closed (their pending callbacks see -ECANCELED and touch nothing) and
 * everything is freed.
 */
static void teardown(struct sim *sim)
{
	uint64_t deadline = nd_mono_ns() + DRAIN_NS;
	struct io_uring_sqe *sqe;

	for (struct nd_list *l = sim->reals.next; l != &sim->reals;
	     l = l->next) {
		struct real *rx = nd_container_of(l, struct task, qlink)->rx;

		if (rx->exited)
			continue;
		kill(-rx->pid, SIGKILL);
		while (waitpid(rx->pid, NULL, 0) < 0 && errno == EINTR)
			;
		rx->exited = true;
	}
	sim->loop.finishing = true;
	if (sim->ring_ok) {
		sqe = nd_perf_sqe(&sim->loop.ring);
		if (sqe) {
			io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
			io_uring_sqe_set_data64(sqe, OP_CANCEL);
		}
		while (sim->loop.ops && nd_mono_ns() < deadline)
			if (nd_perf_loop_step(&sim->loop, WAIT_MAX_NS) < 0)
				break;
		sim->ring_ok = false;
	}
	nd_perf_loop_exit(&sim->loop);
	for (unsigned i = 0; i < sim->o->count; i++) {
		struct sw *w = &sim->w[i];

		if (w->pc.c)
			nd_client_close(w->pc.c);
		else if (w->st != W_IDLE && w->pc.fd >= 0)
			close(w->pc.fd);
		nd_perf_conn_free(&w->pc);
	}
	while (!nd_list_empty(&sim->tasks)) {
		struct task *t = nd_container_of(sim->tasks.next, struct task,
						 link);

		for (int i = 0; t->rx && i < 2; i++)
			if (t->rx->p[i].fd >= 0)
				close(t->rx->p[i].fd);
		if (t->rx && t->rx->pidfd >= 0)
			close(t->rx->pidfd);
		task_free(t);
	}
}

static void summary(const struct sim *sim)
{
	uint64_t now = nd_mono_ns() / 1000000;
	double reg_s = sim->announced ?
		(double)(sim->t_registered_ms - sim->t_start_ms) / 1e3 : 0;

	fprintf(stderr,
		"noded-bench workers: %u workers (%s, %u slots) on %s: "
		"%u registered", sim->o->count,
		sim->o->real ? "real" : "fake", sim->o->slots, sim->o->addr,
		sim->registered);
	if (sim->announced)
		fprintf(stderr, " in %.2f s", reg_s);
	fprintf(stderr, "; ran %.1f s\n"
		"  tasks received %" PRIu64 ", completed %" PRIu64
		" (failed %" PRIu64 "), over slots %" PRIu64 ", duplicates %"
		PRIu64 ", cancels %" PRIu64 "\n"
		"  heartbeats sent %" PRIu64 ", connections lost %" PRIu64
		", errors %" PRIu64 ", reconnects 0\n",
		(double)(now - sim->t_start_ms) / 1e3, sim->received,
		sim->completed, sim->task_failed, sim->over_slots, sim->dups,
		sim->cancels, sim->heartbeats, sim->lost, sim->errors);
}

/* ---- setup ---- */

static int bufring_setup(struct sim *sim)
{
	struct io_uring_buf_reg reg = { 0 };
	int r;

	if (posix_memalign((void **)&sim->br, 4096,
			   BUF_COUNT * sizeof(struct io_uring_buf)))
		return -ENOMEM;
	sim->bufs = malloc((size_t)BUF_COUNT * BUF_SIZE);
	if (!sim->bufs)
		return -ENOMEM;
	io_uring_buf_ring_init(sim->br);
	reg.ring_addr = (uint64_t)(uintptr_t)sim->br;
	reg.ring_entries = BUF_COUNT;
	reg.bgid = BGID;
	r = io_uring_register_buf_ring(&sim->loop.ring, &reg, 0);
	if (r)
		return r;
	for (unsigned i = 0; i < BUF_COUNT; i++)
		io_uring_buf_ring_add(sim->br, sim->bufs + (size_t)i * BUF_SIZE,
				      BUF_SIZE, (unsigned short)i,
				      io_uring_buf_ring_mask(BUF_COUNT),
				      (int)i);
	io_uring_buf_ring_advance(sim->br, BUF_COUNT);
	return 0;
}

/* Workers, names, scratch arrays. */
static int fleet_init(struct sim *sim)
{
	const struct opts *o = sim->o;
	size_t nlen = strlen(o->prefix) + 12;

	sim->w = calloc(o->count, sizeof(*sim->w));
	sim->names = malloc(o->count * nlen);
	sim->ids = calloc(o->slots, sizeof(*sim->ids));
	if (!sim->w || !sim->names || !sim->ids)
		return -ENOMEM;
	if (nd_auth_nonce(sim->node_id, sizeof(sim->node_id)))
		return -EIO;
	for (unsigned i = 0; i < o->count; i++) {
		struct sw *w = &sim->w[i];
		char *name = sim->names + i * nlen;

		snprintf(name, nlen, "%s%05u", o->prefix, i + 1);
		w->sim = sim;
		w->name = name;
		w->pc.fd = -1;
		w->pc.ud = (uint64_t)i << 3 | OP_SEND;
		nd_list_init(&w->running);
	}
	return nd_status_labels_init(&sim->labels, o->labels, o->nlabels);
}

static void fleet_free(struct sim *sim)
{
	nd_status_labels_free(&sim->labels);
	free(sim->ids);
	free(sim->names);
	free(sim->w);
	free(sim->bufs);
	free(sim->br);
	free((void *)sim->copts.token);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: noded-bench workers --addr HOST:PORT --count N "
		"[--slots S] [--exec fake|real]\n"
		"         [--name-prefix P] [--label K=V]... [--output TEXT] "
		"[--task-ms MS]\n"
		"         [--duration SECS] [--ramp N] [--token-file FILE]\n"
		"         [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]\n"
		"  Simulates N workers from this one process (1..%u "
		"connections): each registers\n"
		"  as P00001, P00002, ... (default prefix \"sim-\") with the "
		"labels given and S\n"
		"  slots (default %u), heartbeats every interval at its own "
		"phase and runs tasks:\n"
		"  fake (default) answers each at once with TEXT on stdout "
		"(default \"ok\\n\";\n"
		"  \"\" for none) and exit 0, or after MS milliseconds; real "
		"spawns the command.\n"
		"  At most --ramp connects/handshakes at once (default %u). "
		"Prints \"workers N\n"
		"  registered\" on stdout once all are, runs for SECS (default: "
		"until SIGINT or\n"
		"  SIGTERM) and prints a summary on stderr. No reconnect: a "
		"lost connection\n"
		"  stops the run with status 1. With --tls-ca (and a "
		"certificate for a master\n"
		"  that asks for one): TLS 1.3, each handshake made in turn, "
		"the files read once.\n",
		MAX_COUNT, SLOTS_DEFAULT, RAMP_DEFAULT);
}

/* Parses the command line into o; returns 0, or an exit status (after
 * --help: -1, for 0). */
static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "count", required_argument, NULL, 'n' },
		{ "slots", required_argument, NULL, 's' },
		{ "exec", required_argument, NULL, 'e' },
		{ "name-prefix", required_argument, NULL, 'p' },
		{ "label", required_argument, NULL, 'l' },
		{ "output", required_argument, NULL, 'o' },
		{ "task-ms", required_argument, NULL, 'm' },
		{ "duration", required_argument, NULL, 'd' },
		{ "ramp", required_argument, NULL, 'r' },
		{ "token-file", required_argument, NULL, 't' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "tls-ca", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool fake_only = false;
	int c;

	*o = (struct opts){ .slots = SLOTS_DEFAULT, .ramp = RAMP_DEFAULT,
			    .prefix = "sim-", .output = "ok\n" };
	o->labels = calloc((size_t)argc, sizeof(*o->labels));
	if (!o->labels)
		return 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		switch (c) {
		case 'a': o->addr = optarg; break;
		case 'n': o->count = (unsigned)nd_perf_parse_num("--count",
						optarg, 1, MAX_COUNT); break;
		case 's': o->slots = (unsigned)nd_perf_parse_num("--slots",
						optarg, 1, MAX_SLOTS); break;
		case 'r': o->ramp = (unsigned)nd_perf_parse_num("--ramp",
						optarg, 1, MAX_COUNT); break;
		case 'm': o->task_ms = (unsigned)nd_perf_parse_num("--task-ms",
						optarg, 0, 86400000);
			fake_only = true; break;
		case 'd': o->duration = nd_perf_parse_secs("--duration",
							   optarg); break;
		case 'o': o->output = optarg; fake_only = true; break;
		case 't': o->token_file = optarg; break;
		case 'C': o->tls_cert = optarg; break;
		case 'K': o->tls_key = optarg; break;
		case 'A': o->tls_ca = optarg; break;
		case 'e':
			if (strcmp(optarg, "fake") && strcmp(optarg, "real")) {
				fprintf(stderr, "noded-bench: --exec wants fake "
					"or real, got '%s'\n", optarg);
				return 2;
			}
			o->real = !strcmp(optarg, "real");
			break;
		case 'p':
			if (strlen(optarg) > MAX_PREFIX) {
				fprintf(stderr, "noded-bench: --name-prefix is "
					"longer than %d bytes\n", MAX_PREFIX);
				return 2;
			}
			o->prefix = optarg;
			break;
		case 'l':
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				fprintf(stderr, "noded-bench: --label wants "
					"KEY=VALUE, got '%s'\n", optarg);
				return 2;
			}
			o->labels[o->nlabels++] = optarg;
			break;
		case 'h': usage(stdout); return -1;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "noded-bench: workers: unexpected argument "
			"'%s'\n", argv[optind]);
		return 2;
	}
	if (!o->addr || !o->count) {
		fprintf(stderr, "noded-bench: workers: --addr and --count are "
			"required\n");
		usage(stderr);
		return 2;
	}
	if (o->real && fake_only) {
		fprintf(stderr, "noded-bench: --output and --task-ms go with "
			"--exec fake\n");
		return 2;
	}
	return 0;
}

/* The address, the token and the fd limit; returns 0 or an exit status. */
static int prepare(struct sim *sim)
{
	const struct opts *o = sim->o;
	struct addrinfo *ai;
	uint64_t nofile;
	uint8_t *token = NULL;
	size_t token_len = 0;

	if (nd_perf_resolve(o->addr, &ai)) {
		fprintf(stderr, "noded-bench: bad --addr '%s' (want HOST:PORT "
			"that resolves)\n", o->addr);
		return 2;
	}
	memcpy(&sim->addr, ai->ai_addr, ai->ai_addrlen);
	sim->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	if (o->token_file &&
	    nd_auth_read_token(o->token_file, &token, &token_len))
		return 2; /* it said why */
	sim->copts.role = NODED__ROLE__ROLE_WORKER;
	sim->copts.token = token;
	sim->copts.token_len = token_len;
	sim->copts.tls_cert = o->tls_cert;
	sim->copts.tls_key = o->tls_key;
	sim->copts.tls_ca = o->tls_ca;
	/* Each worker is a socket; a real task adds 2 pipes and a pidfd. */
	nofile = nd_perf_raise_nofile();
	if (nofile < (uint64_t)o->count + 64) {
		fprintf(stderr, "noded-bench: %u workers need %u descriptors; "
			"RLIMIT_NOFILE allows %" PRIu64 " (raise the hard "
			"limit: ulimit -Hn)\n", o->count, o->count + 64,
			nofile);
		return 1;
	}
	return 0;
}

int nd_bench_workers(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_stop };
	struct opts o;
	struct sim *sim;
	int r, rc;

	rc = parse(argc, argv, &o);
	if (rc) {
		free(o.labels);
		return rc < 0 ? 0 : rc;
	}
	sim = calloc(1, sizeof(*sim));
	if (!sim) {
		free(o.labels);
		return 1;
	}
	sim->o = &o;
	sim->hb_ms = HB_DEFAULT_MS;
	sim->output_len = strlen(o.output);
	nd_list_init(&sim->tasks);
	nd_list_init(&sim->delayed);
	nd_list_init(&sim->reals);
	rc = prepare(sim);
	if (rc)
		goto out_free;
	rc = 1;
	if (fleet_init(sim)) {
		fprintf(stderr, "noded-bench: workers: out of memory\n");
		goto out_free;
	}
	sim->loop.lost = pc_lost;
	sim->loop.complete = complete;
	r = nd_perf_loop_init(&sim->loop, o.count);
	if (r) {
		fprintf(stderr, "noded-bench: io_uring: %s\n", strerror(-r));
		goto out_free;
	}
	sim->ring_ok = true;
	r = bufring_setup(sim);
	if (r) {
		fprintf(stderr, "noded-bench: io_uring buffer ring: %s\n",
			strerror(-r));
		goto out_teardown;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	srand((unsigned)getpid() ^ (unsigned)nd_mono_ns());
	sim->now_ms = nd_mono_ns() / 1000000;
	sim->t_start_ms = sim->now_ms;
	r = run(sim);
	if (r < 0) {
		fprintf(stderr, "noded-bench: io_uring: %s\n", strerror(-r));
		sim->failed = true;
	}
	rc = sim->failed ? 1 : 0;
out_teardown:
	teardown(sim);
	summary(sim);
out_free:
	fleet_free(sim);
	free(sim);
	free(o.labels);
	return rc;
}
