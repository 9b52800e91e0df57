/*
 * Telling the service manager how the daemon is doing: systemd's
 * sd_notify(3) protocol for Type=notify units (READY=1, STOPPING=1,
 * STATUS=..., and the watchdog's WATCHDOG=1), through libsystemd.
 *
 * Without NOTIFY_SOCKET in the environment (not started by systemd, or by a
 * unit of another Type) nothing here does anything: no thread, no socket.
 *
 * Shards never call sd_notify themselves: it is a blocking sendmsg to the
 * manager's socket, and a shard never blocks. nd_notify() only records what
 * to say (under a mutex held for a copy) and wakes a small thread of this
 * module, which says it. That thread also sends WATCHDOG=1 every half of
 * WATCHDOG_USEC, and only while every shard of the server it watches has
 * run its loop's tick within that half (shard.c stamps nd_shard.alive_ms):
 * a shard stuck in a loop or a blocking call stops the keep-alive, and
 * systemd kills and restarts the daemon (WatchdogSec=, Restart=).
 */
#ifndef ND_CORE_NOTIFY_H
#define ND_CORE_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

struct nd_server;

/*
 * Starts notifying for srv, whose shards run (after nd_server_start), when
 * NOTIFY_SOCKET is set: reads WATCHDOG_USEC (and WATCHDOG_PID, which must be
 * ours when set) and starts the thread. One server per process (the one a
 * unit runs: noded master, noded worker). 0 (also when there is nothing to
 * do), or -errno when the thread could not start (then nothing is sent).
 */
int nd_notify_start(struct nd_server *srv);

/*
 * Says ready (READY=1) and/or stopping (STOPPING=1), with the status line
 * status (printf format; NULL: none) as STATUS=. Any thread; never blocks
 * on the manager. Messages not yet sent are merged: READY before STOPPING,
 * the latest status. No-op unless nd_notify_start() started the thread.
 */
enum { ND_NOTIFY_READY = 1, ND_NOTIFY_STOPPING = 2 };
void nd_notify(unsigned what, const char *status, ...)
	__attribute__((format(printf, 2, 3)));

/* Sends what is pending, stops the thread. Call before srv is stopped
 * (its shards are read until then) or after: it reads only alive stamps.
 * Safe when nothing was started. */
void nd_notify_stop(void);

/* The keep-alive period: half of WATCHDOG_USEC in milliseconds, 0 when
 * the manager wants none (after nd_notify_start). */
uint64_t nd_notify_watchdog_ms(void);

/*
 * Removes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the
 * environment: for the exec helpers, so no task inherits the daemon's
 * line to the service manager.
 */
void nd_notify_env_clear(void);

#endif
