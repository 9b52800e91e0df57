/*
 * The server: a listener, N shards (threads with their own io_uring) and the
 * main thread, which only waits for SIGINT/SIGTERM and then asks the shards
 * to drain.
 *
 * Connection placement: shard 0 accepts (multishot) and hands each new
 * connection to the shard with the fewest connections, over MSG_RING. One
 * acceptor gives an exact balance where per-shard SO_REUSEPORT listeners
 * hash 4-tuples and can be lopsided (Seastar turned reuseport off for that);
 * the cost is one MSG_RING per accepted connection.
 */
#ifndef ND_CORE_SERVER_H
#define ND_CORE_SERVER_H

#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "core/config.h"
#include "core/shard.h"

struct nd_conn_ops;

/* A listening socket and the protocol its connections speak. */
struct nd_listener {
	int fd;
	struct sockaddr_storage addr;   /* bound address (port 0 resolved) */
	const struct nd_conn_ops *proto;
	bool armed;                     /* shard 0's multishot accept is on */
};

#define ND_MAX_LISTENERS 4

struct nd_server {
	struct nd_config cfg;
	struct nd_shard *shards;
	unsigned nshards;               /* all of them */
	unsigned nconn_shards;          /* the first ones, which take
					 * connections (cfg.shards); the rest
					 * are service shards */
	/* ln[0]: cfg->listen (when set), whose protocol is proto; more come
	 * from nd_server_listen (the HTTP API). */
	struct nd_listener ln[ND_MAX_LISTENERS];
	unsigned nln;
	const struct nd_conn_ops *proto;  /* of ln[0], set after init */
	/* Runs on each shard's thread once it is set up (the node service
	 * attaches itself here). Its arg is read-only once the shards run,
	 * so any shard may read it (the node service's settings). */
	void (*shard_start)(struct nd_shard *s, void *arg);
	void *shard_start_arg;
	atomic_bool stop;
	atomic_bool failed;             /* a shard's service could not go on
					 * (it logged why) and asked to stop:
					 * the process exits non-zero */
	/* Bytes of input kept by all connections of all shards (frames that
	 * span receive buffers, held HTTP requests), against
	 * cfg.input_budget. Touched only when a connection's kept-input
	 * buffer is allocated, resized or freed, never per request. */
	_Atomic uint64_t input_bytes;
	atomic_uint drained;            /* shards done draining */
	sem_t started;                  /* posted by each shard after set-up */
	unsigned nstarted;              /* shard threads created */
	sem_t go;                       /* posted once per shard when every
					 * ring exists: no shard posts to a
					 * ring before that */
	bool running;
	/* (atomic: a replicated master sets it to its cluster's id once it
	 * leads, src/node/replica.c) */
	_Atomic uint64_t instance;      /* random and nonzero, new per start:
					 * tells a worker a restarted master
					 * from the one it knew */
};

/*
 * Checks io_uring, raises RLIMIT_NOFILE for max_conns, binds and listens
 * (cfg->listen "" or "none": no listener, for a worker).
 * cfg is copied (its strings must outlive the server). Prints why on failure:
 * ND_EURING when io_uring cannot be used, ND_EADDR for a bad address, or
 * -errno.
 */
int nd_server_init(struct nd_server *srv, const struct nd_config *cfg);

/* Writes "HOST:PORT" of the main listener's bound address into buf. */
void nd_server_addr(const struct nd_server *srv, char *buf, size_t len);

/*
 * Another listener on addr ("HOST:PORT", port 0: ephemeral) whose connections
 * speak proto, with the same loopback/token rule as --listen; what is the
 * option's name, for messages. Before nd_server_start. Writes the bound
 * "HOST:PORT" into buf. 0, ND_EADDR (bad address, message printed) or -errno.
 */
int nd_server_listen(struct nd_server *srv, const char *addr, const char *what,
		     const struct nd_conn_ops *proto, char *buf, size_t len);

/*
 * Starts the shards and serves until SIGINT or SIGTERM, then drains (for at
 * most drain_timeout) and returns 0, or -errno when a shard could not start.
 * The process is this server: under a Type=notify unit (core/notify.h) it
 * says READY=1 once the shards run, keeps the watchdog fed while they do,
 * and says STOPPING=1 when the signal comes.
 */
int nd_server_run(struct nd_server *srv);

/* The parts of nd_server_run, for a process that runs several servers
 * (noded dev): start the shards (0 or -errno; SIGINT/SIGTERM are blocked in
 * the calling thread), wait for a signal, drain and join. */
int nd_server_start(struct nd_server *srv);
int nd_server_wait_signal(void);
void nd_server_stop(struct nd_server *srv);
void nd_server_block_signals(sigset_t *set);

void nd_server_close(struct nd_server *srv);

/* 127.0.0.0/8 or ::1? */
bool nd_addr_is_loopback(const struct sockaddr_storage *ss);

/* Parses "HOST:PORT" (IPv4, [IPv6] or a host name, resolved with
 * getaddrinfo: its first address). 0 or ND_EADDR. */
int nd_parse_addr(const char *s, struct sockaddr_storage *out,
		  socklen_t *len);
/* The same, and on ND_EADDR why (when not NULL) says what is wrong, naming
 * s: "'x:y': the port must be a number from 0 to 65535", "'h:1': the host
 * name 'h' does not resolve (Name or service not known)". */
int nd_parse_addr_why(const char *s, struct sockaddr_storage *out,
		      socklen_t *len, char *why, size_t why_size);

#endif
