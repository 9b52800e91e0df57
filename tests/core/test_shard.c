/*
 * Cross-shard messages (nd_shard_post, shard.h) on a real two-shard core
 * started in this process: a posted function runs on its target shard's
 * thread, in the order posted, even when the target's ring refuses the
 * MSG_RING (the NODED_FAULT_MSG_RING hook makes the kernel fail the first N
 * submissions of each shard), and the drain barrier lets no shard stop
 * while such a message still waits for its retry.
 */
#include <errno.h>
#include <poll.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "core/server.h"
#include "core/shard.h"

#define N 64

struct probe {
	struct nd_msg msg;
	unsigned n;
};

static struct probe probes[N];
static _Atomic pid_t shard_tid[2];        /* each shard's thread */
static _Atomic pid_t ran_tid[N];          /* where probe n ran */
static _Atomic unsigned ran_shard[N];
static _Atomic unsigned ran_order[N];     /* the k-th probe to run */
static _Atomic unsigned nran;
static sem_t posted;                      /* shard 0 posted them all */
static int all_ran_fd = -1;               /* eventfd: the N-th ran */

static void probe_run(struct nd_shard *s, struct nd_msg *m)
{
	struct probe *p = nd_container_of(m, struct probe, msg);
	unsigned k = atomic_fetch_add(&nran, 1);

	ran_tid[p->n] = gettid();
	ran_shard[p->n] = s->id;
	if (k < N)
		ran_order[k] = p->n;
	if (k + 1 == N)
		eventfd_write(all_ran_fd, 1);
}

/* On each shard's thread once it runs: shard 0 posts the probes to 1. */
static void start(struct nd_shard *s, void *arg)
{
	shard_tid[s->id] = gettid();
	if (s->id != 0)
		return;
	for (unsigned i = 0; i < N; i++) {
		probes[i].n = i;
		nd_shard_post(s, &s->srv->shards[1], &probes[i].msg, probe_run);
	}
	sem_post(&posted);
}

static struct nd_server srv;

static void core_start(const char *fault)
{
	struct nd_config cfg = { 0 };

	memset(probes, 0, sizeof(probes));
	atomic_store(&nran, 0);
	sem_init(&posted, 0, 0);
	all_ran_fd = eventfd(0, EFD_CLOEXEC);
	cr_assert(all_ran_fd >= 0);
	if (fault)
		setenv("NODED_FAULT_MSG_RING", fault, 1);
	else
		unsetenv("NODED_FAULT_MSG_RING");
	cfg.listen = "none";
	cfg.shards = 2;
	cfg.max_conns = 16;
	cfg.buf_count = 16;
	cfg.name = "shard-test";
	cr_assert(nd_server_init(&srv, &cfg) == 0, "server init");
	srv.shard_start = start;
	cr_assert(nd_server_start(&srv) == 0, "server start");
	while (sem_wait(&posted) && errno == EINTR)
		;
}

/* Each probe ran once, on shard 1's own thread, in the order posted. */
static void expect_all_ran_on_shard_1(void)
{
	unsigned n = atomic_load(&nran);
	pid_t t0 = atomic_load(&shard_tid[0]), t1 = atomic_load(&shard_tid[1]);

	cr_assert(n == N, "%u of %d messages ran", n, N);
	cr_assert(t0 != t1 && t0 > 0 && t1 > 0, "shard threads %d and %d",
		  t0, t1);
	for (unsigned i = 0; i < N; i++) {
		unsigned on = atomic_load(&ran_shard[i]);
		unsigned order = atomic_load(&ran_order[i]);
		pid_t tid = atomic_load(&ran_tid[i]);

		cr_assert(on == 1, "message %u ran on shard %u", i, on);
		cr_assert(tid == t1, "message %u ran on thread %d, not shard "
			  "1's (%d; shard 0's: %d)", i, tid, t1, t0);
		cr_assert(order == i, "the %u-th message to run was message "
			  "%u: out of order", i, order);
	}
}

/* Waits (10 s at most) for the N-th probe to run. */
static void wait_all_ran(void)
{
	struct pollfd p = { .fd = all_ran_fd, .events = POLLIN };

	cr_assert(poll(&p, 1, 10000) == 1, "only %u of %d messages ran in "
		  "10 s", atomic_load(&nran), N);
}

static void core_stop(void)
{
	nd_server_stop(&srv);
}

static void core_close(void)
{
	nd_server_close(&srv);
	if (all_ran_fd >= 0)
		close(all_ran_fd);
	all_ran_fd = -1;
	sem_destroy(&posted);
	unsetenv("NODED_FAULT_MSG_RING");
}

TestSuite(shard, .fini = core_close, .timeout = 30);

Test(shard, post_runs_on_target_in_order)
{
	core_start(NULL);
	wait_all_ran();
	core_stop();
	expect_all_ran_on_shard_1();
	cr_assert(srv.shards[0].m.msg_retries == 0);
}

/*
 * The first 5 MSG_RINGs of shard 0 fail in the kernel: messages 0-4 are
 * refused while 5-63 get through first. Shard 1 must still run every one,
 * itself, in the order posted; shard 0 must have sent the 5 again.
 */
Test(shard, refused_post_retried_on_target_in_order)
{
	core_start("5");
	wait_all_ran();
	core_stop();
	expect_all_ran_on_shard_1();
	cr_assert(srv.shards[0].m.msg_retries == 5, "%llu retries, want 5",
		  (unsigned long long)srv.shards[0].m.msg_retries);
}

/*
 * Stop as soon as the messages are posted, while the kernel refuses them
 * again and again (1000 failures, each a retry round about 1 ms apart):
 * the drain barrier must keep both shards up until every one has run.
 */
Test(shard, drain_waits_for_messages_being_retried)
{
	core_start("1000");
	core_stop();
	expect_all_ran_on_shard_1();
	cr_assert(srv.shards[0].m.msg_retries == 1000, "%llu retries, want "
		  "1000", (unsigned long long)srv.shards[0].m.msg_retries);
}
