/*
 * Internal to the worker's task runner (run.c: the interface of run.h;
 * run_events.c: a running task's reports to the master, its output pipes
 * and the exec helpers' events). Everything here lives on the worker's
 * shard and is touched only by its thread.
 */
#ifndef ND_NODE_RUN_INT_H
#define ND_NODE_RUN_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/u64map.h"
#include "exec/pool.h"
#include "node/run.h"

#define CHUNK (64 * 1024)
/* Ended tasks whose (id, attempt) is remembered after the master took their
 * end. A master sends each (id, attempt) once, so this is a safety margin,
 * not what the rule rests on; it bounds the memory (16 B or so a task). */
#define RAN_RECENT 1024
/* How long after its process ended (and its tree was killed) a task waits
 * for EOF on its pipes before it reads what they hold and ends: a killed
 * process closes them within milliseconds; one that escaped the kill would
 * hold the task RUNNING for ever. */
#define PIPE_LINGER_MS 1000

struct nd_runner;
struct rtask;

struct pipe_rd {
	struct pipe_rd *next_free;    /* in nd_runner.free_pipes */
	struct rtask *t;
	int fd;                       /* -1 once at EOF */
	uint32_t fdno;                /* 1 stdout, 2 stderr */
	bool reading;                 /* a READ is in flight */
	bool sent;                    /* buf is with the master, not acked */
	size_t len;                   /* bytes in buf not yet acknowledged */
	struct nd_op op;
	uint8_t buf[CHUNK];
};

struct rtask {
	struct nd_runner *r;
	uint64_t key;                 /* ours, unique in this process: the id
				       * the exec helper knows it by */
	uint64_t id;                  /* the master's task id */
	uint32_t attempt;
	bool orphan;                  /* of a master instance that is gone,
				       * or void (the master ended this
				       * attempt): being stopped, never
				       * reported */
	bool leased;                  /* its helper enforces a lease */
	bool stopping;                /* killed because the worker stops */
	struct rtask *next_orphan;
	unsigned h;                   /* its helper (pool.h) */
	pid_t pid;
	uint64_t start_unix_ms;
	bool started, started_acked, started_sent;
	bool exited;
	bool pipes_cut;               /* read without waiting, to the end */
	uint64_t exited_ms;           /* shard clock when exited was set */
	bool finish_sent;             /* the end is with the master */
	bool finish_acked;
	uint8_t *exited_pb;           /* packed ExecExited */
	size_t exited_len;
	struct pipe_rd *p[2];
};

struct nd_runner {
	struct nd_shard *s;
	struct nd_conn **conn;
	struct nd_pool *pool;         /* the exec helpers */
	const char *node;             /* our node name, for NODED_NODE
				       * (borrowed; NULL: not set) */
	unsigned next_h, slots;
	struct nd_u64map tasks;       /* key -> rtask, orphans included */
	struct nd_u64map by_id;       /* task id -> rtask, of this master
				       * instance, until its end is taken */
	struct nd_u64map ran;         /* ran_key() of the last RAN_RECENT
				       * tasks whose end the master took */
	uint64_t ran_ring[RAN_RECENT];  /* those keys, oldest at ran_head */
	size_t ran_head;
	struct rtask *orphans;        /* freed by the tick once drained */
	uint64_t next_key;
	uint64_t instance;            /* the master's, 0 until registered */
	uint64_t accepted;            /* tasks accepted, for the stats */
	unsigned inflight;            /* pipe reads not completed */
	bool draining;
	bool stopping;                /* nd_runner_stop_all: run nothing new */
	uint64_t resend_ms;           /* monotonic: when to send again the
				       * reports the master could not take
				       * (0: none waits) */
	struct pipe_rd *free_pipes;   /* reused: no zeroing, no page faults */
	unsigned nfree_pipes;
};

/* The key of (task id, attempt) in nd_runner.ran. */
static inline uint64_t ran_key(uint64_t id, uint32_t attempt)
{
	return id ^ ((uint64_t)attempt << 56);
}

/* A report the master could not take is sent again after this long. */
#define RESEND_MS 1000

/* run.c */
/* A pipe reader (its buffer not zeroed), or NULL; back with pipe_put. */
struct pipe_rd *nd__run_pipe_get(struct nd_runner *r);
void nd__run_pipe_put(struct nd_runner *r, struct pipe_rd *p);
/* The connection to the master's client, or NULL while there is none. */
struct nd_client *nd__run_client(struct nd_runner *r);
void nd__run_flush(struct nd_runner *r);

/* run_events.c (their contracts are at their definitions) */
extern const struct nd_pool_ops nd__run_pool_ops;
void nd__run_ran_remember(struct nd_runner *r, const struct rtask *t);
void nd__run_ran_forget_all(struct nd_runner *r);
void nd__run_task_free(struct rtask *t);
void nd__run_send_started(struct rtask *t);
void nd__run_send_chunk(struct pipe_rd *p);
void nd__run_send_finished(struct rtask *t);
void nd__run_arm_read(struct pipe_rd *p);
void nd__run_fake_exit_as(struct rtask *t, const char *reason,
			  bool lease_expired, bool stopping);
void nd__run_fake_exit(struct rtask *t, const char *reason);
void nd__run_send_request(struct rtask *t, const Noded__ExecRequest *req);

#endif
