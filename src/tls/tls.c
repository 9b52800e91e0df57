/*
 * TLS contexts, roles from certificates, reload on SIGHUP: see tls.h.
 *
 * A context is shared by every connection of the process that uses it
 * (SSL_CTX is reference counted: a reload swaps the pointer under the
 * mutex and drops our reference; handshakes under way keep the old one
 * until they end). The mutex is taken once per new connection, never per
 * record.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"

/* What the verification callback checks, per context. */
struct ctx_info {
	bool server;
	char cluster[ND_TLS_NAME_MAX]; /* of our own certificate; "" any */
};

struct nd_tls {
	pthread_mutex_t mu;
	SSL_CTX *ctx;                 /* under mu */
	unsigned refs;                /* under all_mu */
	bool server;
	char *cert, *key, *ca;
	struct nd_tls *next;          /* all, for nd_tls_reload_all */
};

static pthread_mutex_t all_mu = PTHREAD_MUTEX_INITIALIZER;
static struct nd_tls *all;
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;
static int info_idx = -1;         /* SSL_CTX ex data: struct ctx_info */
static int why_idx = -1;          /* SSL ex data: const char *, static */
static int sess_idx = -1;         /* SSL ex data: nd_tls_session_fn * */

static void info_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
		      long argl, void *argp)
{
	free(ptr);
}

static void make_idx(void)
{
	info_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, info_free);
	why_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	sess_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

void nd_tls_on_session(SSL *ssl, nd_tls_session_fn *fn)
{
	SSL_set_ex_data(ssl, sess_idx, (void *)fn);
}

/* A client's new session (a ticket came): to the SSL's owner, which
 * takes its own reference; 0: OpenSSL drops the one it lent us. */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
	nd_tls_session_fn *fn = (nd_tls_session_fn *)SSL_get_ex_data(ssl,
								  sess_idx);

	if (fn)
		fn(ssl, sess);
	return 0;
}

const char *nd_tls_role_name(enum nd_tls_role r)
{
	switch (r) {
	case ND_TLS_ROLE_MASTER:
		return "master";
	case ND_TLS_ROLE_WORKER:
		return "worker";
	case ND_TLS_ROLE_CLIENT:
		return "client";
	case ND_TLS_ROLE_UNKNOWN:
		return "unknown";
	default:
		return "none";
	}
}

/* One DNS name: its role (NONE when it is not a ".noded" name). */
static enum nd_tls_role name_role(const char *dns, size_t len, char *name,
				  size_t name_size, char *cluster,
				  size_t cluster_size)
{
	static const char suffix[] = ".noded";
	const char *end = dns + len - (sizeof(suffix) - 1), *c, *r;
	enum nd_tls_role role;
	size_t rl;

	if (len <= sizeof(suffix) - 1 || strncasecmp(end, suffix,
						     sizeof(suffix) - 1))
		return ND_TLS_ROLE_NONE;
	/* ...ROLE.CLUSTER.noded */
	for (c = end; c > dns && c[-1] != '.'; c--)
		;
	if (c == end || c == dns)
		return ND_TLS_ROLE_UNKNOWN;
	for (r = c - 1; r > dns && r[-1] != '.'; r--)
		;
	rl = (size_t)(c - 1 - r);
	if (rl == 6 && !strncasecmp(r, "master", 6))
		role = ND_TLS_ROLE_MASTER;
	else if (rl == 6 && !strncasecmp(r, "worker", 6))
		role = ND_TLS_ROLE_WORKER;
	else if (rl == 6 && !strncasecmp(r, "client", 6))
		role = ND_TLS_ROLE_CLIENT;
	else
		return ND_TLS_ROLE_UNKNOWN;
	if ((size_t)(end - c) >= cluster_size ||
	    (r > dns && (size_t)(r - 1 - dns) >= name_size))
		return ND_TLS_ROLE_UNKNOWN;
	memcpy(cluster, c, (size_t)(end - c));
	cluster[end - c] = '\0';
	name[0] = '\0';
	if (r > dns) {
		memcpy(name, dns, (size_t)(r - 1 - dns));
		name[r - 1 - dns] = '\0';
	}
	return role;
}

enum nd_tls_role nd_tls_cert_role(X509 *x, char *name, size_t name_size,
				  char *cluster, size_t cluster_size)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
					       NULL);
	enum nd_tls_role role = ND_TLS_ROLE_UNKNOWN, r;
	char n[ND_TLS_NAME_MAX], cl[ND_TLS_NAME_MAX], got_cl[ND_TLS_NAME_MAX];
	bool found = false;

	if (name_size)
		name[0] = '\0';
	if (cluster && cluster_size)
		cluster[0] = '\0';
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *s;
		int len;

		if (g->type != GEN_DNS)
			continue;
		s = ASN1_STRING_get0_data(g->d.dNSName);
		len = ASN1_STRING_length(g->d.dNSName);
		if (len <= 0 || memchr(s, '\0', (size_t)len))
			continue;
		r = name_role((const char *)s, (size_t)len, n, sizeof(n), cl,
			      sizeof(cl));
		if (r == ND_TLS_ROLE_NONE)
			continue;
		if (r == ND_TLS_ROLE_UNKNOWN ||
		    (found && (r != role || strcmp(cl, got_cl)))) {
			role = ND_TLS_ROLE_UNKNOWN;
			break;
		}
		if (!found) {
			found = true;
			role = r;
			strcpy(got_cl, cl);
		}
		if (n[0] && name_size && !name[0])
			snprintf(name, name_size, "%s", n);
	}
	GENERAL_NAMES_free(gens);
	if (role != ND_TLS_ROLE_UNKNOWN && cluster && cluster_size)
		snprintf(cluster, cluster_size, "%s", got_cl);
	return role;
}

/* Refuses a peer certificate for a reason of ours (why: static). */
static int refuse(X509_STORE_CTX *xs, SSL *ssl, const char *why)
{
	SSL_set_ex_data(ssl, why_idx, (void *)why);
	X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

/* OpenSSL's chain check, then ours on the peer's own certificate: a role
 * of our cluster, and the master's role from a server. */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(
		xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	const struct ctx_info *info;
	char name[ND_TLS_NAME_MAX], cluster[ND_TLS_NAME_MAX];
	enum nd_tls_role role;

	if (!ok || X509_STORE_CTX_get_error_depth(xs) > 0 || !ssl)
		return ok;
	info = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), info_idx);
	role = nd_tls_cert_role(X509_STORE_CTX_get_current_cert(xs), name,
				sizeof(name), cluster, sizeof(cluster));
	if (role == ND_TLS_ROLE_UNKNOWN)
		return refuse(xs, ssl, "it names no noded role (a DNS name "
			      "ROLE.CLUSTER.noded, see noded tls cert create)");
	if (info && info->cluster[0] && strcasecmp(cluster, info->cluster))
		return refuse(xs, ssl, "it is for another cluster (its "
			      "ROLE.CLUSTER.noded name differs from ours)");
	if (info && !info->server && role != ND_TLS_ROLE_MASTER)
		return refuse(xs, ssl, role == ND_TLS_ROLE_WORKER ?
			      "the server's certificate is a worker's, not a "
			      "master's" :
			      "the server's certificate is a client's, not a "
			      "master's");
	return 1;
}

static void print_ssl_err(const char *what, const char *path)
{
	char buf[256];
	unsigned long e = ERR_get_error();

	ERR_error_string_n(e, buf, sizeof(buf));
	fprintf(stderr, "noded: %s %s: %s\n", what, path, e ? buf :
		"cannot load it");
	ERR_clear_error();
}

/* A context from t's files; NULL after saying why. */
static SSL_CTX *make_ctx(const struct nd_tls *t)
{
	SSL_CTX *ctx = SSL_CTX_new(t->server ? TLS_server_method() :
				   TLS_client_method());
	struct ctx_info *info = calloc(1, sizeof(*info));

	if (!ctx || !info) {
		fprintf(stderr, "noded: TLS: out of memory\n");
		goto err_free;
	}
	info->server = t->server;
	if (!SSL_CTX_set_ex_data(ctx, info_idx, info)) {
		fprintf(stderr, "noded: TLS: out of memory\n");
		goto err_free;
	}
	/* ctx owns info from here (info_free) */
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	/* Record buffers are kept while a connection is busy, not freed and
	 * made again after every record as SSL_MODE_RELEASE_BUFFERS does (a
	 * malloc and a free of each buffer per record: 4.5% of the
	 * master's instructions per TLS ping at C=50, D=1). The connection
	 * layer gives an idle connection's back (tls/conn_tls.c,
	 * SSL_free_buffers); the client library keeps them for its one
	 * connection. */
#ifdef SSL_OP_ENABLE_KTLS
	SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
#endif
	if (t->server) {
		/* Resumption with a peer certificate asked for needs a
		 * session context (else OpenSSL fails such a handshake);
		 * one ticket per full handshake: our clients keep one. */
		SSL_CTX_set_session_id_context(ctx, (const unsigned char *)
					       "noded", 5);
		SSL_CTX_set_num_tickets(ctx, 1);
	} else {
		/* Tickets go to the connection's owner, none kept here. */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
					       SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session);
	}
	if (t->cert) {
		X509 *x;

		if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
			print_ssl_err("cannot load the certificate --tls-cert",
				      t->cert);
			goto err_ctx;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM)
		    != 1) {
			print_ssl_err("cannot load the key --tls-key", t->key);
			goto err_ctx;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			print_ssl_err("the key does not match the certificate",
				      t->key);
			goto err_ctx;
		}
		x = SSL_CTX_get0_certificate(ctx);
		if (x && nd_tls_cert_role(x, (char[ND_TLS_NAME_MAX]){ 0 },
					  ND_TLS_NAME_MAX, info->cluster,
					  sizeof(info->cluster)) ==
				 ND_TLS_ROLE_UNKNOWN)
			info->cluster[0] = '\0';
	}
	if (t->ca) {
		if (SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1) {
			print_ssl_err("cannot load the CA --tls-ca", t->ca);
			goto err_ctx;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
				   (t->server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
					      : 0), verify_cb);
	} else if (!t->server) {
		/* No CA: encryption without authentication of the server,
		 * which the caller allowed (say, the token proves it). */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;

err_free:
	free(info);
err_ctx:
	SSL_CTX_free(ctx);
	return NULL;
}

int nd_tls_open(struct nd_tls **out, const struct nd_tls_files *f,
		bool server)
{
	struct nd_tls *t;

	*out = NULL;
	pthread_once(&idx_once, make_idx);
	if (info_idx < 0 || why_idx < 0 || sess_idx < 0)
		return -ENOMEM;
	if ((server && (!f->cert || !f->key)) || (!f->cert != !f->key)) {
		fprintf(stderr, "noded: TLS needs --tls-cert and --tls-key "
			"together%s\n", server ? " (a server presents its "
			"certificate)" : "");
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->mu, NULL);
	t->refs = 1;
	t->server = server;
	if ((f->cert && !(t->cert = strdup(f->cert))) ||
	    (f->key && !(t->key = strdup(f->key))) ||
	    (f->ca && !(t->ca = strdup(f->ca)))) {
		nd_tls_close(t);
		return -ENOMEM;
	}
	t->ctx = make_ctx(t);
	if (!t->ctx) {
		nd_tls_close(t);
		return -EINVAL;
	}
	pthread_mutex_lock(&all_mu);
	t->next = all;
	all = t;
	pthread_mutex_unlock(&all_mu);
	*out = t;
	return 0;
}

void nd_tls_hold(struct nd_tls *t)
{
	pthread_mutex_lock(&all_mu);
	t->refs++;
	pthread_mutex_unlock(&all_mu);
}

void nd_tls_close(struct nd_tls *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&all_mu);
	if (t->refs > 1) {
		t->refs--;
		pthread_mutex_unlock(&all_mu);
		return;
	}
	for (struct nd_tls **p = &all; *p; p = &(*p)->next)
		if (*p == t) {
			*p = t->next;
			break;
		}
	pthread_mutex_unlock(&all_mu);
	SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->mu);
	free(t->cert);
	free(t->key);
	free(t->ca);
	free(t);
}

static struct nd_tls *connect_default;

void nd_tls_set_connect_default(struct nd_tls *t)
{
	connect_default = t;
}

struct nd_tls *nd_tls_connect_default(void)
{
	return connect_default;
}

void nd_tls_reload_all(void)
{
	pthread_mutex_lock(&all_mu);
	for (struct nd_tls *t = all; t; t = t->next) {
		SSL_CTX *ctx = make_ctx(t), *old;

		if (!ctx) {
			fprintf(stderr, "noded: SIGHUP: keeping the TLS files "
				"loaded before\n");
			continue;
		}
		pthread_mutex_lock(&t->mu);
		old = t->ctx;
		t->ctx = ctx;
		pthread_mutex_unlock(&t->mu);
		SSL_CTX_free(old);
	}
	pthread_mutex_unlock(&all_mu);
}

SSL *nd_tls_new_ssl(struct nd_tls *t)
{
	SSL *ssl;

	pthread_mutex_lock(&t->mu);
	ssl = SSL_new(t->ctx);
	pthread_mutex_unlock(&t->mu);
	if (!ssl)
		return NULL;
	if (t->server)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
	return ssl;
}

bool nd_tls_is_server(const struct nd_tls *t)
{
	return t->server;
}

bool nd_tls_verifies(const struct nd_tls *t)
{
	return t->ca != NULL;
}

enum nd_tls_role nd_tls_peer_role(SSL *ssl, char *name, size_t name_size)
{
	X509 *x = SSL_get0_peer_certificate(ssl);

	if (name_size)
		name[0] = '\0';
	if (!x || SSL_get_verify_result(ssl) != X509_V_OK)
		return ND_TLS_ROLE_NONE;
	return nd_tls_cert_role(x, name, name_size, NULL, 0);
}

/* A hint for an OpenSSL reason, or "". */
static const char *hint(int lib, int reason)
{
	if (lib != ERR_LIB_SSL)
		return "";
	switch (reason) {
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		return " (the peer wants our certificate: give --tls-cert and "
		       "--tls-key)";
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		return " (the peer sent no certificate; --tls-ca asks for one)";
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		return " (the peer does not trust the CA that signed our "
		       "certificate)";
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
		return " (the peer refused our certificate: its role or "
		       "cluster?)";
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
		return " (the peer says our certificate expired)";
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
		return " (noded speaks TLS 1.3 only)";
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
		return " (not TLS: a plaintext peer?)";
	default:
		return "";
	}
}

void nd_tls_why(SSL *ssl, char *buf, size_t size)
{
	const char *why = ssl ? SSL_get_ex_data(ssl, why_idx) : NULL;
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	unsigned long e;

	if (why) {
		snprintf(buf, size, "the peer's certificate was refused: %s",
			 why);
	} else if (vr != X509_V_OK) {
		snprintf(buf, size, "the peer's certificate was refused: %s",
			 X509_verify_cert_error_string(vr));
	} else if ((e = ERR_peek_last_error())) {
		char s[200];
		const char *r = ERR_reason_error_string(e);

		snprintf(s, sizeof(s), "%s", r ? r : "TLS error");
		snprintf(buf, size, "%s%s", s,
			 hint(ERR_GET_LIB(e), ERR_GET_REASON(e)));
	} else {
		snprintf(buf, size, "TLS handshake failed");
	}
	ERR_clear_error();
}
