/*
 * The worker's side of the exec helper pool (exec.h): n helper processes,
 * their sockets driven by io_uring on the worker's shard. Requests go to a
 * helper by its index (SEND, one datagram each); its events come back with
 * RECVMSG, ExecStarted with the command's pipes attached, and are handed to
 * the owner's callbacks. A helper that dies is reported (its tasks are the
 * owner's to end) and replaced, unless the pool drains.
 */
#ifndef ND_EXEC_POOL_H
#define ND_EXEC_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/shard.h"
#include "noded.pb-c.h"

struct nd_pool;

struct nd_pool_ops {
	/* A command started: fds are its stdout and stderr read ends (-1:
	 * none), now the callee's to close. */
	void (*started)(void *arg, const Noded__ExecStarted *st,
			const int *fds);
	/* A command ended (it may be one the callee no longer knows). */
	void (*exited)(void *arg, const Noded__ExecExited *x);
	/* Helper h died: what it ran is gone. It is replaced after this
	 * (unless the pool drains) under the same index. */
	void (*died)(void *arg, unsigned h);
	/* A request sent for key (nonzero) did not reach its helper. */
	void (*unsent)(void *arg, uint64_t key);
};

/* Starts n (at least 1) helpers of exe (before the shard runs); ops and
 * arg must outlive the pool. Returns 0 or -errno. */
int nd_pool_new(struct nd_pool **out, unsigned n, const char *exe,
		const struct nd_pool_ops *ops, void *arg);
/* On the shard s, once: arms the helper sockets. */
void nd_pool_start(struct nd_pool *p, struct nd_shard *s);
unsigned nd_pool_size(const struct nd_pool *p);
/* Is helper h gone (not replaced, or while it is being replaced)? */
bool nd_pool_dead(const struct nd_pool *p, unsigned h);
/* Sends req to helper h; key names the task it concerns (0: none), for
 * ops->unsent. Returns 0, or -ENOMEM / -EMSGSIZE when req could not be
 * encoded (nothing was sent then, and ops->unsent is not called). */
int nd_pool_send(struct nd_pool *p, unsigned h, uint64_t key,
		 const Noded__ExecRequest *req);
/* Closes the sockets for writing and reading: EOF makes a helper SIGKILL
 * every process group it runs and exit. Dead helpers are not replaced
 * from then on. Returns true while some io_uring operation of the pool
 * has not completed. */
bool nd_pool_drain(struct nd_pool *p);
/* Closes the sockets and waits for the helpers to exit. */
void nd_pool_free(struct nd_pool *p);

#endif
