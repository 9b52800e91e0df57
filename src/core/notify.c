/* The service manager's notifications: see notify.h. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "core/log.h"
#include "core/notify.h"
#include "core/server.h"

/* A shard that ticked within this long is alive however short the
 * watchdog: the tick is every 250 ms (shard.c), so two of them. */
#define ALIVE_MIN_MS 500

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;              /* on CLOCK_MONOTONIC */
	pthread_t thread;
	bool running, stop;
	/* what to send, under mu: nd_notify() merges into these */
	unsigned pending;               /* ND_NOTIFY_READY | _STOPPING */
	bool status_pending;
	char status[256];
	/* the thread's own */
	struct nd_server *srv;
	uint64_t wd_ms;                 /* half of WATCHDOG_USEC; 0: none */
	bool send_warned, withheld;
} n = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void say(const char *text)
{
	int r = sd_notify(0, text);

	/* Said once: a manager that went away would fill the log. */
	if (r < 0 && !n.send_warned) {
		ND_LOG(ND_LOG_WARN, "notify.failed",
		       ND_S("msg", "cannot notify the service manager "
			    "(NOTIFY_SOCKET)"),
		       ND_S("err", strerror(-r)));
		n.send_warned = true;
	}
}

/* The oldest tick of srv's shards, in ms before now; 0 when all ticked
 * within limit. *which gets the stalest shard. */
static uint64_t stalest(uint64_t now, uint64_t limit, unsigned *which)
{
	uint64_t worst = 0;

	for (unsigned i = 0; n.srv->shards && i < n.srv->nshards; i++) {
		uint64_t t = atomic_load_explicit(&n.srv->shards[i].alive_ms,
						  memory_order_relaxed);
		uint64_t age = now > t ? now - t : 0;

		if (age > limit && age > worst) {
			worst = age;
			*which = i;
		}
	}
	return worst;
}

/* WATCHDOG=1 when every shard's loop ran lately; else said once why not. */
static void watchdog(void)
{
	uint64_t now = nd_mono_coarse_ms();
	uint64_t limit = n.wd_ms > ALIVE_MIN_MS ? n.wd_ms : ALIVE_MIN_MS;
	unsigned shard = 0;
	uint64_t age = stalest(now, limit, &shard);

	if (!age) {
		say("WATCHDOG=1");
		n.withheld = false;
		return;
	}
	if (!n.withheld)
		ND_LOG(ND_LOG_WARN, "notify.watchdog_withheld",
		       ND_S("msg", "a shard's loop has not run: no keep-alive "
			    "to the service manager, which restarts us if "
			    "it lasts"),
		       ND_U("shard", shard), ND_U("stalled_ms", age));
	n.withheld = true;
}

/*
 * The thread: sends what nd_notify() recorded (merged into one datagram,
 * never holding mu while sending), and the keep-alive when it is due;
 * sleeps on cv between. Ends after nd_notify_stop() once nothing is left
 * to send.
 */
static void *notify_main(void *arg)
{
	uint64_t next = nd_mono_ms();
	char msg[320];
	size_t len;

	(void)arg;
	pthread_mutex_lock(&n.mu);
	for (;;) {
		if (n.pending || n.status_pending) {
			len = 0;
			msg[0] = '\0';
			if (n.pending & ND_NOTIFY_READY)
				len += (size_t)snprintf(msg + len,
							sizeof(msg) - len,
							"READY=1\n");
			if (n.pending & ND_NOTIFY_STOPPING)
				len += (size_t)snprintf(msg + len,
							sizeof(msg) - len,
							"STOPPING=1\n");
			if (n.status_pending)
				snprintf(msg + len, sizeof(msg) - len,
					 "STATUS=%s\n", n.status);
			n.pending = 0;
			n.status_pending = false;
			pthread_mutex_unlock(&n.mu);
			say(msg);
			pthread_mutex_lock(&n.mu);
			continue;
		}
		if (n.stop)
			break;
		if (n.wd_ms && nd_mono_ms() >= next) {
			pthread_mutex_unlock(&n.mu);
			watchdog();
			next = nd_mono_ms() + n.wd_ms;
			pthread_mutex_lock(&n.mu);
			continue;
		}
		if (n.wd_ms) {
			struct timespec ts = { .tv_sec = (time_t)(next / 1000),
					       .tv_nsec = (long)(next % 1000) *
							  1000000 };

			pthread_cond_timedwait(&n.cv, &n.mu, &ts);
		} else {
			pthread_cond_wait(&n.cv, &n.mu);
		}
	}
	pthread_mutex_unlock(&n.mu);
	return NULL;
}

int nd_notify_start(struct nd_server *srv)
{
	pthread_condattr_t ca;
	uint64_t usec = 0;
	int r;

	if (n.running || !getenv("NOTIFY_SOCKET"))
		return 0;
	/* > 0: WATCHDOG_USEC is set and WATCHDOG_PID, if set, is us */
	if (sd_watchdog_enabled(0, &usec) > 0)
		n.wd_ms = usec / 2000 ? usec / 2000 : 1;
	n.srv = srv;
	n.stop = false;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&n.cv, &ca);
	pthread_condattr_destroy(&ca);
	r = pthread_create(&n.thread, NULL, notify_main, NULL);
	if (r) {
		pthread_cond_destroy(&n.cv);
		ND_LOG(ND_LOG_WARN, "notify.failed",
		       ND_S("msg", "cannot start the notification thread"),
		       ND_S("err", strerror(r)));
		return -r;
	}
	n.running = true;
	return 0;
}

void nd_notify(unsigned what, const char *status, ...)
{
	va_list ap;

	pthread_mutex_lock(&n.mu);
	n.pending |= what;
	if (status) {
		va_start(ap, status);
		vsnprintf(n.status, sizeof(n.status), status, ap);
		va_end(ap);
		/* one line: a newline would start another assignment */
		for (char *p = n.status; *p; p++)
			if (*p == '\n')
				*p = ' ';
		n.status_pending = true;
	}
	if (n.running)
		pthread_cond_signal(&n.cv);
	pthread_mutex_unlock(&n.mu);
}

void nd_notify_stop(void)
{
	if (!n.running)
		return;
	pthread_mutex_lock(&n.mu);
	n.stop = true;
	pthread_cond_signal(&n.cv);
	pthread_mutex_unlock(&n.mu);
	pthread_join(n.thread, NULL);
	pthread_cond_destroy(&n.cv);
	n.running = false;
	n.srv = NULL;
}

uint64_t nd_notify_watchdog_ms(void)
{
	return n.wd_ms;
}

void nd_notify_env_clear(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}
