/*
 * Internal to the client library (client.c: the sans-I/O core, requests,
 * the pending table, input and output; client_io.c: the blocking helpers,
 * life cycle and connect). One client is used by one thread at a time.
 */
#ifndef ND_CLIENT_CLIENT_H
#define ND_CLIENT_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "noded/auth.h"
#include "noded/client.h"

struct ssl_st;
struct ssl_session_st;
struct nd_tls;

#define SOFTWARE "noded 0.1"
#define DEFAULT_TIMEOUT_MS 5000
#define SLOTS_MIN 16
/* Queued output past which nd_client_start() refuses (-ENOBUFS): a caller
 * that queues faster than the server reads must not grow without bound. */
#define OUT_LIMIT (64u << 20)
/* An input buffer grown past this for a large frame is released once the
 * frame is consumed, so one big reply does not pin memory forever. */
#define IN_KEEP (64u << 10)
/* Bytes read per read(2) and reads per nd_client_poll(): bounds the time
 * one poll spends before returning to its caller. */
#define READ_CHUNK (16u << 10)
#define READS_PER_POLL 64
/* TLS sessions kept per client: one per server address, the last used
 * first (a CLI's --master list names at most a few masters). */
#define TLS_SESSIONS 8

/* The last TLS session a server at addr gave (client_tls.c). */
struct tls_session {
	char *addr;
	struct ssl_session_st *sess;
};

enum {
	P_HELLO = 1 << 0,   /* store the HelloReply fields before the callback */
	P_CALL = 1 << 1,    /* arg is a struct call_wait: hand the frame over */
	P_STREAM = 1 << 2,  /* the method answers with a stream (may be cancelled) */
};

/* One request whose final frame has not arrived. id 0 marks a free slot. */
struct pend {
	uint64_t id;
	nd_reply_cb cb;
	void *arg;
	unsigned flags;
};

/* nd_client_call()'s result slot, on its stack while it waits. */
struct call_wait {
	bool done;
	int status;
	Noded__Frame *frame;    /* owned by the waiter once done */
};

struct nd_client {
	int fd;
	int err;                /* 0 while usable, else what every action returns */
	int werr;               /* write side failed: output is dropped */
	unsigned dispatching;   /* > 0 while a callback runs */
	uint32_t max_frame;     /* largest frame we accept from the server */
	char *node_name;        /* copied from the opts */
	Noded__Role role;

	uint8_t *token;         /* copied from the opts, or NULL */
	size_t token_len;
	uint8_t nonce[ND_NONCE_LEN]; /* our Hello's client nonce */

	char *server_name;      /* from the HelloReply; NULL before */
	uint32_t server_max_frame;

	uint64_t next_id;

	struct pend *slots;     /* open addressing, linear probing, cap 2^k */
	size_t cap, npending;

	struct nd_buf out;      /* queued bytes are out.data[out_off, out.len):
				 * sends advance out_off, compacted when
				 * room is needed */
	size_t out_off;

	struct nd_buf in;       /* a partial frame: in.data[0, in.len) */

	char *addr;             /* "HOST:PORT" of nd_client_connect, or NULL */

	struct ssl_st *ssl;     /* TLS over fd (client_tls.c), or NULL */
	struct nd_tls *tls;     /* its context (shared: nd_tls_hold) */
	struct tls_session sessions[TLS_SESSIONS]; /* last used first */
	bool tls_seen;          /* the server's first bytes came */
	bool tls_plain;         /* and were not TLS */
};

/* client_tls.c */
/* Starts TLS on c (connected) and does the handshake by deadline (mono
 * ms). 0, ND_ETLS, ND_ETLSPLAIN, -ETIMEDOUT or -ENOMEM; the reason in
 * nd__client_why. */
int nd__client_tls_start(struct nd_client *c,
			 const struct nd_client_opts *opts, int64_t deadline);
void nd__client_tls_free(struct nd_client *c);
/* c's contents were swapped with old's (nd_client_replace): each SSL
 * (its app data, its BIO callback) points at its client again, and c
 * keeps old's sessions for the addresses it has none for. */
void nd__client_tls_moved(struct nd_client *c, struct nd_client *old);
/* nd_client_flush and the reads, over TLS. */
int nd__client_tls_flush(struct nd_client *c);
/* One read: > 0 bytes of plaintext into buf, 0 nothing now (EAGAIN),
 * ND_ECLOSED at the end, ND_ETLS on a TLS error. */
int nd__client_tls_recv(struct nd_client *c, uint8_t *buf, size_t size);
/* Plaintext already decrypted and waiting in OpenSSL? */
bool nd__client_tls_pending(const struct nd_client *c);
/* This thread's reason for the last failure (nd_client_last_error). */
extern __thread char nd__client_why[512];

/* client.c (their contracts are at their definitions) */
/* The pending request of id, or NULL. */
struct pend *nd__client_pend_find(struct nd_client *c, uint64_t id);
void nd__client_pend_remove(struct nd_client *c, struct pend *p);
/* Makes c unusable with err and fails every pending call; returns err. */
int nd__client_fail_all(struct nd_client *c, int err, int status,
			const Noded__Frame *f, const uint8_t *body, size_t len);
size_t nd__client_out_queued(const struct nd_client *c);
/* Queues req with a new id and registers cb (flags: P_*); the id or -errno. */
int64_t nd__client_start(struct nd_client *c, const Noded__Frame *req,
			 nd_reply_cb cb, void *arg, unsigned flags);
/* Fills f and h with our Hello (h is f's body; both on the caller's stack). */
void nd__client_hello_frame(const struct nd_client *c, Noded__Frame *f,
			    Noded__HelloRequest *h);
/* The server closed: fails everything with ND_ECLOSED, returns it. */
int nd__client_feed_eof(struct nd_client *c);

#endif
