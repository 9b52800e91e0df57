/*
 * TLS 1.3 for every noded link (OpenSSL 3), with roles carried by the
 * certificates.
 *
 * Certificates: a cluster has one CA (`noded tls ca create`). Each
 * certificate names its holder's role and cluster in a DNS subjectAltName
 * under the reserved domain ".noded":
 *
 *   master.CLUSTER.noded          and NAME.master.CLUSTER.noded
 *   worker.CLUSTER.noded          and NAME.worker.CLUSTER.noded
 *   NAME.client.CLUSTER.noded     (a client: a person or a program)
 *
 * plus, for masters, the host names and addresses it is reached by. A
 * certificate whose ".noded" names disagree on the role or the cluster has
 * no role. With --tls-ca given, the peer must present a certificate signed
 * by that CA (mutual TLS) and carrying a role of our cluster (the cluster of
 * our own certificate); a client or a worker also requires the master role
 * from the server (so a worker's certificate cannot act as a master). What
 * each role may then do is the protocol's decision (rpc/server.c,
 * api/http.c), from nd_conn_tls_peer().
 *
 * An nd_tls holds the files' paths and the SSL_CTX made from them. Every
 * nd_tls of the process is re-read on SIGHUP (nd_tls_reload_all): new
 * handshakes use the new files, connections already up keep theirs. A
 * file that does not load keeps the old context (and says why).
 *
 * Resumption (TLS 1.3 tickets): a server context issues one stateless
 * ticket after each full handshake, sealed with a key OpenSSL makes per
 * context: random per process, and new at each reload, so a restart or a
 * SIGHUP makes the next handshakes full ones. The ticket carries what the
 * full handshake verified (the peer's certificate, so its role and name),
 * for OpenSSL's default lifetime of 2 hours. A client context hands the
 * tickets it gets to its owner (nd_tls_on_session), which may offer one
 * on its next connection (SSL_set_session): the certificates are then
 * neither sent nor verified again.
 */
#ifndef ND_TLS_TLS_H
#define ND_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

enum nd_tls_role {
	ND_TLS_ROLE_NONE = 0,  /* no TLS, or no certificate from the peer */
	ND_TLS_ROLE_MASTER,
	ND_TLS_ROLE_WORKER,
	ND_TLS_ROLE_CLIENT,
	ND_TLS_ROLE_UNKNOWN,   /* a certificate without a (consistent) role */
};

#define ND_TLS_NAME_MAX 64

/* The files of one side; paths copied. cert and key go together; ca
 * alone makes a client that verifies the server but presents nothing. */
struct nd_tls_files {
	const char *cert, *key, *ca;
};

struct nd_tls;

/*
 * Loads the files into a context for a server (server true: it presents
 * cert, which is then required) or a client. Prints why on stderr when a
 * file does not load. 0, -EINVAL (missing or bad file, said) or -ENOMEM.
 */
int nd_tls_open(struct nd_tls **out, const struct nd_tls_files *f,
		bool server);
/* t gets one more owner: each calls nd_tls_close once. */
void nd_tls_hold(struct nd_tls *t);
void nd_tls_close(struct nd_tls *t);

/* What a client end's ssl does with each session (ticket) its server
 * gives: fn(ssl, sess) takes its own reference (SSL_SESSION_up_ref) to
 * keep it. Without one, sessions are dropped. */
typedef void nd_tls_session_fn(SSL *ssl, SSL_SESSION *sess);
void nd_tls_on_session(SSL *ssl, nd_tls_session_fn *fn);

/*
 * The client end for outbound connections of servers whose config names
 * none (nd_config.tls_connect NULL): the worker's link to its master,
 * whose server config the node service builds itself. Set before the
 * servers start; not owned.
 */
void nd_tls_set_connect_default(struct nd_tls *t);
struct nd_tls *nd_tls_connect_default(void);

/* Re-reads every open nd_tls's files (SIGHUP). Thread-safe. */
void nd_tls_reload_all(void);

/* A new SSL on the current context (server or client end), or NULL. */
SSL *nd_tls_new_ssl(struct nd_tls *t);

/* The server end? */
bool nd_tls_is_server(const struct nd_tls *t);

/* Is a CA given (peers must present a certificate)? */
bool nd_tls_verifies(const struct nd_tls *t);

/* The role and name a certificate's ".noded" names give; cluster (may be
 * NULL) receives its cluster. */
enum nd_tls_role nd_tls_cert_role(X509 *x, char *name, size_t name_size,
				  char *cluster, size_t cluster_size);

/* "master", "worker", "client", "none", "unknown". */
const char *nd_tls_role_name(enum nd_tls_role r);

/*
 * Why the handshake on ssl failed, for people: the verification result
 * when the peer's certificate was refused (with our role rule), else the
 * first OpenSSL error, plus a hint for the usual causes. Clears the
 * thread's OpenSSL error queue.
 */
void nd_tls_why(SSL *ssl, char *buf, size_t size);

/* The peer's role and name from its verified certificate on ssl (NONE
 * when it presented none). */
enum nd_tls_role nd_tls_peer_role(SSL *ssl, char *name, size_t name_size);

/* Does a first byte from a peer start a TLS record (handshake or alert)? */
static inline bool nd_tls_record_start(unsigned char b)
{
	return b == 0x16 || b == 0x15;
}

#endif
