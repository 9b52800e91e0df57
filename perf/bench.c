/*
 * noded-bench: load generator for noded.
 *
 *   noded-bench ping --addr HOST:PORT --conns C --depth D --duration SECS
 *                    [--payload BYTES] [--json]
 *   noded-bench idle --addr HOST:PORT --conns N --hold SECS [--raw]
 *                    [--tls-* FILE [--resume]]
 *   noded-bench submit --addr HOST:PORT --conns C --depth D --count N
 *                    --duration SECS [--node NAME] [--json]
 *
 * ping opens C connections with the client library (blocking handshake),
 * then drives all of them from this one thread with io_uring, the library
 * used sans-I/O: one single-shot recv per connection, re-armed at each
 * completion, and at most one send per connection at a time. Each connection
 * keeps D Pings in flight; every completion records the latency of its
 * request and starts the next one, until the duration is over. In-flight
 * requests then get at most DRAIN_NS to finish; what is left counts as
 * errors.
 *
 * submit is the same driver with a Submit in each slot instead of a Ping:
 * a one-task `--node NAME --wait-for-node` spec (NAME absent by default),
 * so no worker is needed, every task stays PENDING and the master's reply
 * is the whole cost (with --data-dir: after the task is fsync'd in its
 * log). The run ends after N submits were started and answered, or at the
 * duration, whichever comes first; every submit fills the master's queue,
 * so its --max-queue must hold them (a refusal is an error).
 *
 * idle opens N connections (Hello handshake each, or --raw TCP only), says
 * so on stdout, holds them and closes them: scripts/bench.sh reads the
 * server's RSS meanwhile to get the memory cost of an idle connection,
 * and the server's CPU while they open to get the cost of a handshake.
 * With TLS and --resume, every connection after the first resumes the
 * session of the one before it (the ticket the server gave it: a client
 * uses a TLS 1.3 ticket once, RFC 8446 C.4), as a client reconnecting
 * does: resumed handshakes; one that was not resumed fails the run.
 *
 * Exit status: 0 on success, 1 when the run failed (no request succeeded,
 * not every idle connection opened), 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "noded/client.h"
#include "cmds.h"
#include "core/list.h"
#include "core/time.h"
#include "hist.h"
#include "loop.h"
#include "util.h"

#define RBUF_SIZE (64u << 10)
#define DRAIN_NS (2000000000ull)
#define WAIT_NS (50000000ll)            /* longest sleep in the loop */
#define MAX_CONNS 100000
#define MAX_DEPTH 65536

enum { OP_RECV = 0, OP_SEND = 1 };

struct bench;

/* One request slot: D per connection, reused for the next request. */
struct req {
	struct bconn *bc;
	uint64_t t0;
};

/* One benchmark connection; its client does the protocol, we move bytes.
 * pc.dead: lost, no more requests (ops still may complete). */
struct bconn {
	struct bench *b;
	struct nd_perf_conn pc;
	bool recv_armed;
	unsigned inflight;
	uint8_t *rbuf;
	struct req *reqs;
};

struct bench {
	struct nd_perf_loop loop;   /* finishing: completions are ignored */
	struct bconn *conns;
	unsigned nconns, live;
	unsigned depth;
	bool stopping;          /* duration or count over: no new requests */
	bool submit;            /* requests are Submits, not Pings */
	uint64_t limit;         /* requests to start at most; 0: no limit */
	uint64_t started;
	uint64_t end_ns;
	uint64_t last_ns;       /* time of the last successful reply */
	uint64_t inflight;
	uint64_t requests, errors;
	size_t payload_len;
	uint8_t *payload;
	Noded__PingRequest ping;
	Noded__TaskSpec spec;   /* submit: what each request submits */
	Noded__Command command;
	Noded__Frame frame;
	struct nd_hist hist;
};

/* ---- ping: io_uring driver ---- */

static uint64_t tag(const struct bench *b, const struct bconn *bc, int op)
{
	return (uint64_t)(bc - b->conns) << 1 | (uint64_t)op;
}

static void conn_lost(struct bconn *bc);

static void arm_recv(struct bconn *bc)
{
	struct bench *b = bc->b;
	struct io_uring_sqe *sqe;

	if (bc->pc.dead || bc->recv_armed || b->loop.finishing)
		return;
	sqe = nd_perf_sqe(&b->loop.ring);
	if (!sqe) {
		conn_lost(bc);
		return;
	}
	io_uring_prep_recv(sqe, bc->pc.fd, bc->rbuf, RBUF_SIZE, 0);
	io_uring_sqe_set_data64(sqe, tag(b, bc, OP_RECV));
	bc->recv_armed = true;
	b->loop.ops++;
}

static void ping_cb(struct nd_client *c, int status, const Noded__Frame *f,
		    bool done, void *arg);

/* Starts one request (a Ping, or a Submit) in slot r, unless the count
 * is reached. */
static void start_ping(struct req *r, uint64_t now)
{
	struct bconn *bc = r->bc;
	struct bench *b = bc->b;
	int64_t id;

	if (b->limit && b->started >= b->limit) {
		b->stopping = true;
		return;
	}
	b->started++;
	r->t0 = now;
	id = nd_client_start(bc->pc.c, &b->frame, ping_cb, r);
	if (id < 0) {
		b->errors++;
		return;
	}
	bc->inflight++;
	b->inflight++;
	nd_perf_mark(&b->loop, &bc->pc);
}

static void ping_cb(struct nd_client *c, int status, const Noded__Frame *f,
		    bool done, void *arg)
{
	struct req *r = arg;
	struct bconn *bc = r->bc;
	struct bench *b = bc->b;
	uint64_t now = nd_mono_ns();

	bc->inflight--;
	b->inflight--;
	if (!status && f && (b->submit ?
	    f->body_case == NODED__FRAME__BODY_SUBMIT_REPLY &&
	    f->submit_reply->n_task_ids == 1 :
	    f->body_case == NODED__FRAME__BODY_PONG &&
	    f->pong->payload.len == b->payload_len)) {
		nd_hist_record(&b->hist, (now - r->t0) / 1000);
		b->requests++;
		b->last_ns = now;
	} else {
		/* The first refusal says why (a full queue, say). */
		if (status == ND_EREMOTE && f && f->error && !b->errors)
			fprintf(stderr, "noded-bench: %s\n",
				f->error->message);
		b->errors++;
	}
	/* Keep the depth while the run lasts, unless the connection is gone
	 * (its pending calls fail with a negative errno, not ND_EREMOTE). */
	if (b->stopping || now >= b->end_ns || bc->pc.dead ||
	    (status < 0 && status != ND_EREMOTE))
		return;
	start_ping(r, now);
}

/* The connection failed: its pending requests end (as errors), no more. */
static void conn_lost(struct bconn *bc)
{
	if (bc->pc.dead)
		return;
	bc->pc.dead = true;
	bc->b->live--;
	/* feed(EOF) fails every pending request through ping_cb. */
	nd_client_feed(bc->pc.c, NULL, 0);
	/* Makes the recv still in the kernel complete. */
	shutdown(bc->pc.fd, SHUT_RDWR);
}

static void on_recv(struct bconn *bc, int res)
{
	int r;

	bc->recv_armed = false;
	if (bc->pc.dead || bc->b->loop.finishing)
		return;
	if (res == -EINTR || res == -EAGAIN || res == -ENOBUFS) {
		arm_recv(bc);
		return;
	}
	if (res <= 0) {
		conn_lost(bc);
		return;
	}
	r = bc->pc.ssl ? nd_perf_tls_feed(&bc->pc, bc->rbuf, (size_t)res)
		       : nd_client_feed(bc->pc.c, bc->rbuf, (size_t)res);
	if (r < 0) {
		/* Protocol error or fatal Error: the client failed the
		 * pending requests already. */
		conn_lost(bc);
		return;
	}
	arm_recv(bc);
}

static void pc_lost(struct nd_perf_conn *pc, int err)
{
	conn_lost(nd_container_of(pc, struct bconn, pc));
}

/* One completion: a recv or a send of a connection (perf/loop.h). */
static void complete(struct nd_perf_loop *l, const struct io_uring_cqe *cqe)
{
	struct bench *b = nd_container_of(l, struct bench, loop);
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct bconn *bc = &b->conns[ud >> 1];

	if ((ud & 1) == OP_SEND) {
		nd_perf_sent(l, &bc->pc, cqe->res);
		return;
	}
	l->ops--;
	on_recv(bc, cqe->res);
}

static void ping_usage(FILE *f)
{
	fprintf(f,
		"usage: noded-bench ping --addr HOST:PORT [--conns C] "
		"[--depth D]\n"
		"                        [--duration SECS] [--payload BYTES] "
		"[--json]\n"
		"                        [--tls-ca FILE [--tls-cert FILE "
		"--tls-key FILE]]\n"
		"  Keeps D Pings in flight on each of C connections for SECS "
		"seconds\n"
		"  (defaults: C 1, D 1, 10 s, empty payload) and reports "
		"throughput and\n"
		"  latency percentiles (microseconds). With --tls-ca: over TLS "
		"1.3\n"
		"  (records moved through memory BIOs on the same ring).\n");
}

static void submit_usage(FILE *f)
{
	fprintf(f,
		"usage: noded-bench submit --addr HOST:PORT [--conns C] "
		"[--depth D]\n"
		"                          [--count N] [--duration SECS] "
		"[--node NAME] [--json]\n"
		"                          [--tls-ca FILE [--tls-cert FILE "
		"--tls-key FILE]]\n"
		"  Keeps D one-task submits (`--node NAME --wait-for-node -- "
		"true`) in\n"
		"  flight on each of C connections until N were answered or "
		"SECS are\n"
		"  over (defaults: C 1, D 1, N 10000, 10 s, NAME "
		"noded-bench-absent)\n"
		"  and reports submits/s and latency percentiles "
		"(microseconds).\n"
		"  The tasks stay PENDING: the master's --max-queue must hold "
		"N.\n");
}

struct ping_opts {
	const char *addr;
	unsigned conns, depth;
	double duration;
	size_t payload;
	bool json;
	bool submit;
	uint64_t count;         /* submit: requests at most */
	const char *node;       /* submit: the node named in each spec */
	const char *tls_cert, *tls_key, *tls_ca; /* TLS 1.3 when set */
};

static void ping_report(const struct bench *b, const struct ping_opts *o,
			double secs)
{
	double rps = secs > 0 ? (double)b->requests / secs : 0;
	uint64_t p50 = nd_hist_percentile(&b->hist, 50);
	uint64_t p90 = nd_hist_percentile(&b->hist, 90);
	uint64_t p99 = nd_hist_percentile(&b->hist, 99);
	uint64_t p999 = nd_hist_percentile(&b->hist, 99.9);
	uint64_t max = b->hist.count ? b->hist.max : 0;

	if (o->json && o->submit) {
		printf("{\"bench\":\"submit\",\"conns\":%u,\"depth\":%u,"
		       "\"concurrency\":%u,\"count\":%" PRIu64 ","
		       "\"duration_s\":%.3f,\"requests\":%" PRIu64
		       ",\"errors\":%" PRIu64 ",\"per_s\":%.1f,"
		       "\"p50_us\":%" PRIu64 ",\"p90_us\":%" PRIu64
		       ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64
		       ",\"max_us\":%" PRIu64 ",\"mean_us\":%.1f}\n",
		       o->conns, o->depth, o->conns * o->depth, o->count, secs,
		       b->requests, b->errors, rps, p50, p90, p99, p999, max,
		       nd_hist_mean(&b->hist));
		return;
	}
	if (o->json) {
		printf("{\"conns\":%u,\"depth\":%u,\"payload\":%zu,"
		       "\"duration_s\":%.3f,\"requests\":%" PRIu64
		       ",\"errors\":%" PRIu64 ",\"rps\":%.1f,"
		       "\"p50_us\":%" PRIu64 ",\"p90_us\":%" PRIu64
		       ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64
		       ",\"max_us\":%" PRIu64 ",\"mean_us\":%.1f}\n",
		       o->conns, o->depth, o->payload, secs, b->requests,
		       b->errors, rps, p50, p90, p99, p999, max,
		       nd_hist_mean(&b->hist));
		return;
	}
	if (o->submit)
		printf("submit %s: %u conns x depth %u, node %s, at most "
		       "%" PRIu64 "\n", o->addr, o->conns, o->depth, o->node,
		       o->count);
	else
		printf("ping %s: %u conns x depth %u, payload %zu B\n",
		       o->addr, o->conns, o->depth, o->payload);
	printf("  requests   %" PRIu64 "\n", b->requests);
	printf("  errors     %" PRIu64 "\n", b->errors);
	printf("  duration   %.3f s\n", secs);
	printf("  requests/s %.0f\n", rps);
	printf("  latency us p50 %" PRIu64 "  p90 %" PRIu64 "  p99 %" PRIu64
	       "  p99.9 %" PRIu64 "  max %" PRIu64 "  mean %.1f\n",
	       p50, p90, p99, p999, max, nd_hist_mean(&b->hist));
}

/* Connects every connection; failures are counted, not fatal. */
static void ping_connect(struct bench *b, const struct ping_opts *o)
{
	struct nd_client_opts co = {
		.node_name = "noded-bench",
		.role = NODED__ROLE__ROLE_CLIENT,
		.tls_cert = o->tls_cert, .tls_key = o->tls_key,
		.tls_ca = o->tls_ca,
	};

	for (unsigned i = 0; i < b->nconns; i++) {
		struct bconn *bc = &b->conns[i];
		int r;

		bc->b = b;
		bc->pc.dead = true;
		r = nd_client_connect(&bc->pc.c, o->addr, &co);
		if (r) {
			fprintf(stderr, "noded-bench: connect %s: %s%s%s\n",
				o->addr, nd_strerror(r),
				*nd_client_last_error() ? ": " : "",
				nd_client_last_error());
			b->errors++;
			continue;
		}
		bc->pc.fd = nd_client_fd(bc->pc.c);
		bc->pc.ud = tag(b, bc, OP_SEND);
		if (nd_perf_tls_start(&bc->pc)) {
			b->errors++;
			continue;
		}
		bc->rbuf = malloc(RBUF_SIZE);
		bc->reqs = calloc(b->depth, sizeof(*bc->reqs));
		if (!bc->rbuf || !bc->reqs) {
			b->errors++;
			continue;
		}
		bc->pc.dead = false;
		b->live++;
	}
}

/*
 * Ends the run: stop reading (completions from now on are ignored), make
 * every recv still in the kernel complete, wait for them (bounded), then
 * close the clients, which fails what never got an answer (-ECANCELED,
 * counted as errors in ping_cb).
 */
static void ping_teardown(struct bench *b, bool ring_ok)
{
	uint64_t deadline = nd_mono_ns() + 1000000000ull;

	b->loop.finishing = true;
	b->stopping = true;
	for (unsigned i = 0; i < b->nconns; i++)
		if (b->conns[i].pc.c)
			shutdown(b->conns[i].pc.fd, SHUT_RDWR);
	while (ring_ok && b->loop.ops && nd_mono_ns() < deadline)
		if (nd_perf_loop_step(&b->loop, WAIT_NS) < 0)
			break;
	nd_perf_loop_exit(&b->loop);
	for (unsigned i = 0; i < b->nconns; i++) {
		struct bconn *bc = &b->conns[i];

		nd_client_close(bc->pc.c);
		free(bc->rbuf);
		nd_perf_conn_free(&bc->pc);
		free(bc->reqs);
	}
}

/* ping, or submit: the same driver (see the top of this file). */
static int run_load(int argc, char **argv, bool submit)
{
	static const struct option ping_lopts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "conns", required_argument, NULL, 'c' },
		{ "depth", required_argument, NULL, 'd' },
		{ "duration", required_argument, NULL, 't' },
		{ "payload", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "tls-ca", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct option submit_lopts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "conns", required_argument, NULL, 'c' },
		{ "depth", required_argument, NULL, 'd' },
		{ "duration", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'n' },
		{ "node", required_argument, NULL, 'N' },
		{ "json", no_argument, NULL, 'j' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "tls-ca", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static char *true_argv[] = { "true" };
	struct ping_opts o = { .conns = 1, .depth = 1, .duration = 10,
			       .submit = submit, .count = submit ? 10000 : 0,
			       .node = "noded-bench-absent" };
	void (*usage_fn)(FILE *) = submit ? submit_usage : ping_usage;
	struct bench *b;
	uint64_t t0, t1;
	bool ring_ok = false;
	int opt, r, rc = 1;

	/* (ping keeps the short options it always took) */
	while ((opt = getopt_long(argc, argv, submit ? "h" : "a:c:d:t:p:jh",
				  submit ? submit_lopts : ping_lopts,
				  NULL)) != -1) {
		switch (opt) {
		case 'a': o.addr = optarg; break;
		case 'c': o.conns = (unsigned)nd_perf_parse_num("--conns",
						optarg, 1, MAX_CONNS); break;
		case 'd': o.depth = (unsigned)nd_perf_parse_num("--depth",
						optarg, 1, MAX_DEPTH); break;
		case 't': o.duration = nd_perf_parse_secs("--duration",
							  optarg); break;
		case 'p': o.payload = (size_t)nd_perf_parse_num("--payload",
						optarg, 0, 8 << 20); break;
		case 'n': o.count = (uint64_t)nd_perf_parse_num("--count",
						optarg, 1, 100000000); break;
		case 'N':
			if (!optarg[0]) {
				fprintf(stderr, "noded-bench: --node wants a "
					"name\n");
				return 2;
			}
			o.node = optarg;
			break;
		case 'j': o.json = true; break;
		case 'C': o.tls_cert = optarg; break;
		case 'K': o.tls_key = optarg; break;
		case 'A': o.tls_ca = optarg; break;
		case 'h': usage_fn(stdout); return 0;
		default: usage_fn(stderr); return 2;
		}
	}
	if (!o.addr || optind != argc) {
		usage_fn(stderr);
		return 2;
	}
	nd_perf_raise_nofile();

	b = calloc(1, sizeof(*b));
	if (!b)
		return 1;
	b->nconns = o.conns;
	b->depth = o.depth;
	b->submit = submit;
	b->limit = o.count;
	b->payload_len = o.payload;
	nd_hist_init(&b->hist);
	b->conns = calloc(o.conns, sizeof(*b->conns));
	b->payload = malloc(o.payload ? o.payload : 1);
	if (!b->conns || !b->payload)
		goto out_free;
	memset(b->payload, 'x', o.payload);
	noded__ping_request__init(&b->ping);
	b->ping.payload.data = b->payload;
	b->ping.payload.len = o.payload;
	noded__frame__init(&b->frame);
	b->frame.body_case = NODED__FRAME__BODY_PING;
	b->frame.ping = &b->ping;
	if (submit) {
		noded__command__init(&b->command);
		b->command.argv = true_argv;
		b->command.n_argv = 1;
		noded__task_spec__init(&b->spec);
		b->spec.command = &b->command;
		b->spec.node = (char *)o.node;
		b->spec.wait_for_node = true;
		b->frame.body_case = NODED__FRAME__BODY_SUBMIT;
		b->frame.submit = &b->spec;
	}

	ping_connect(b, &o);
	if (!b->live) {
		fprintf(stderr, "noded-bench: no connection to %s\n", o.addr);
		goto out_teardown;
	}
	b->loop.lost = pc_lost;
	b->loop.complete = complete;
	r = nd_perf_loop_init(&b->loop, b->nconns);
	if (r) {
		fprintf(stderr, "noded-bench: io_uring: %s\n", strerror(-r));
		goto out_teardown;
	}
	ring_ok = true;

	t0 = nd_mono_ns();
	b->end_ns = t0 + (uint64_t)(o.duration * 1e9);
	for (unsigned i = 0; i < b->nconns; i++) {
		struct bconn *bc = &b->conns[i];

		if (bc->pc.dead)
			continue;
		for (unsigned k = 0; k < b->depth; k++) {
			bc->reqs[k].bc = bc;
			start_ping(&bc->reqs[k], nd_mono_ns());
		}
		arm_recv(bc);
	}
	/* Run until the duration is over, then drain (bounded). */
	for (;;) {
		uint64_t now = nd_mono_ns();
		int64_t wait = WAIT_NS;

		if (!b->stopping && now >= b->end_ns)
			b->stopping = true;
		if (b->stopping && (!b->inflight ||
				    now >= b->end_ns + DRAIN_NS))
			break;
		if (!b->live)
			break;
		if (!b->stopping && (int64_t)(b->end_ns - now) < wait)
			wait = (int64_t)(b->end_ns - now);
		r = nd_perf_loop_step(&b->loop, wait);
		if (r < 0) {
			fprintf(stderr, "noded-bench: io_uring: %s\n",
				strerror(-r));
			break;
		}
	}
	/*
	 * The run lasted until now if every connection was lost early, else
	 * until the end of the duration or the last reply of the drain:
	 * time spent waiting for replies that never came (a stalled server)
	 * does not dilute requests/s.
	 */
	t1 = nd_mono_ns();
	if (t1 > b->end_ns)
		t1 = b->last_ns > b->end_ns ? b->last_ns : b->end_ns;
	ping_teardown(b, ring_ok);
	ring_ok = false;
	ping_report(b, &o, (double)(t1 - t0) / 1e9);
	/* Every submit must be taken (a refused one means the figure is not
	 * of the durable path); pings tolerate errors in a long run. */
	rc = b->requests && (!submit || !b->errors) ? 0 : 1;
	goto out_free;

out_teardown:
	ping_teardown(b, ring_ok);
	ping_report(b, &o, 0);
out_free:
	free(b->payload);
	free(b->conns);
	free(b);
	return rc;
}

static int cmd_ping(int argc, char **argv)
{
	return run_load(argc, argv, false);
}

static int cmd_submit(int argc, char **argv)
{
	return run_load(argc, argv, true);
}

/* ---- idle: many open connections doing nothing ---- */

static volatile sig_atomic_t stop_hold;

static void on_stop(int sig)
{
	(void)sig;
	stop_hold = 1;
}

/* A plain TCP connection (no handshake), for servers that do not speak
 * noded (redis). Returns the fd or a negative errno. */
static int raw_connect(const struct addrinfo *ai)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			ai->ai_protocol);
	int one = 1;

	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void idle_usage(FILE *f)
{
	fprintf(f,
		"usage: noded-bench idle --addr HOST:PORT --conns N --hold "
		"SECS [--raw]\n"
		"                        [--tls-ca FILE [--tls-cert FILE "
		"--tls-key FILE] [--resume]]\n"
		"  Opens N connections (each does the Hello handshake; --raw: "
		"TCP only),\n"
		"  prints \"open N\" when all are open, holds them SECS "
		"seconds (or until\n"
		"  SIGTERM/SIGINT), closes them. --resume: every TLS connection "
		"after the\n"
		"  first resumes the session of the one before it (fails unless "
		"each did).\n");
}

static int cmd_idle(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "conns", required_argument, NULL, 'c' },
		{ "hold", required_argument, NULL, 't' },
		{ "raw", no_argument, NULL, 'r' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "tls-ca", required_argument, NULL, 'A' },
		{ "resume", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct nd_client_opts co = { .node_name = "noded-bench-idle" };
	bool resume = false;
	unsigned resumed = 0;
	const char *addr = NULL;
	unsigned conns = 1, opened = 0;
	double hold = 5;
	bool raw = false;
	struct nd_client **cl = NULL;
	struct addrinfo *ai = NULL;
	struct sigaction sa = { .sa_handler = on_stop };
	int *fds = NULL, opt, r = 0, rc = 1;
	uint64_t t0, t1, end;

	while ((opt = getopt_long(argc, argv, "a:c:t:rh", lopts, NULL)) != -1) {
		switch (opt) {
		case 'a': addr = optarg; break;
		case 'c': conns = (unsigned)nd_perf_parse_num("--conns",
						optarg, 1, MAX_CONNS); break;
		case 't': hold = nd_perf_parse_secs("--hold", optarg); break;
		case 'r': raw = true; break;
		case 'C': co.tls_cert = optarg; break;
		case 'K': co.tls_key = optarg; break;
		case 'A': co.tls_ca = optarg; break;
		case 'R': resume = true; break;
		case 'h': idle_usage(stdout); return 0;
		default: idle_usage(stderr); return 2;
		}
	}
	if (!addr || optind != argc ||
	    (resume && (raw || !(co.tls_ca || co.tls_cert)))) {
		if (resume)
			fprintf(stderr, "noded-bench: idle: --resume needs "
				"TLS (--tls-ca, --tls-cert) and no --raw\n");
		idle_usage(stderr);
		return 2;
	}
	nd_perf_raise_nofile();
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	if (raw) {
		fds = calloc(conns, sizeof(*fds));
		r = fds ? nd_perf_resolve(addr, &ai) : -ENOMEM;
	} else {
		cl = calloc(conns, sizeof(*cl));
		r = cl ? 0 : -ENOMEM;
	}
	if (r) {
		fprintf(stderr, "noded-bench: %s: %s\n", addr, nd_strerror(r));
		goto out_free;
	}
	t0 = nd_mono_ns();
	for (opened = 0; opened < conns && !stop_hold; opened++) {
		if (raw) {
			r = raw_connect(ai);
			if (r >= 0)
				fds[opened] = r;
		} else {
			/* the context and session of the one before */
			co.tls_from = resume && opened ? cl[opened - 1]
						       : NULL;
			r = nd_client_connect(&cl[opened], addr, &co);
			if (!r && co.tls_from &&
			    nd_client_tls_resumed(cl[opened]))
				resumed++;
		}
		if (r < 0)
			break;
	}
	t1 = nd_mono_ns();
	if (opened < conns) {
		fprintf(stderr, "noded-bench: idle: connection %u of %u to %s: "
				"%s\n", opened + 1, conns, addr,
			r < 0 ? nd_strerror(r) : "interrupted");
		goto out_close;
	}
	if (resume && resumed + 1 < opened) {
		fprintf(stderr, "noded-bench: idle: only %u of the %u "
			"connections after the first resumed a session\n",
			resumed, opened - 1);
		goto out_close;
	}
	printf("open %u\n", opened);
	fflush(stdout);
	fprintf(stderr, "noded-bench: %u %s connections open in %.2f s%s\n",
		opened, raw ? "raw" : "handshaken", (double)(t1 - t0) / 1e9,
		resume ? " (all but the first resumed)" : "");
	end = nd_mono_ns() + (uint64_t)(hold * 1e9);
	while (!stop_hold && nd_mono_ns() < end) {
		struct timespec ts = { 0, 20000000 };

		nanosleep(&ts, NULL);
	}
	rc = 0;
out_close:
	for (unsigned i = 0; i < opened; i++) {
		if (raw)
			close(fds[i]);
		else
			nd_client_close(cl[i]);
	}
	if (!rc) {
		printf("closed %u\n", opened);
		fflush(stdout);
	}
out_free:
	if (ai)
		freeaddrinfo(ai);
	free(fds);
	free(cl);
	return rc;
}

/* ---- main ---- */

struct cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct cmd cmds[] = {
	{ "ping", cmd_ping, "pipelined Ping load: throughput and latency" },
	{ "idle", cmd_idle, "hold N idle connections (memory per connection)" },
	{ "submit", cmd_submit, "pipelined one-task submits: rate and latency" },
	{ "tasks", nd_bench_tasks, "end-to-end task rate and latency" },
	{ "spawn", nd_bench_spawn, "bare posix_spawn+waitpid loop (the floor)" },
	{ "workers", nd_bench_workers, "a simulated fleet of N workers" },
	{ "first", nd_bench_first, "ms until a master serves (failover, restart)" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: noded-bench COMMAND [OPTIONS]   (COMMAND --help "
		   "for its options)\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-7s %s\n", cmds[i].name, cmds[i].summary);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].run(argc - 1, argv + 1);
	fprintf(stderr, "noded-bench: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
