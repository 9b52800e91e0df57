/*
 * What a peer may do given the role in its certificate (mutual TLS, see
 * tls/tls.h). Without TLS, or without --tls-ca (no certificate asked),
 * every peer may call every method, as the token decides.
 *
 *   worker  the worker's side only: hello, auth, ping, report_status,
 *           assign_task, task_update, leave. A worker certificate with a
 *           NAME (NAME.worker.CLUSTER.noded) registers only as NAME.
 *   client  everything but the worker's side.
 *   master  everything (another master, or an operator holding one).
 *
 * A refused method gets PERMISSION_DENIED naming the method and the role;
 * the connection goes on (it costs the peer nothing else), except a Hello
 * under another node's name, which ends it.
 */
#include <errno.h>
#include <string.h>

#include "core/server.h"
#include "rpc/acl.h"
#include "rpc/server.h"
#include "tls/conn_tls.h"

/* The methods of a worker's side of the protocol. */
static bool worker_method(Noded__Frame__BodyCase m)
{
	switch (m) {
	case NODED__FRAME__BODY_HELLO:
	case NODED__FRAME__BODY_AUTH:
	case NODED__FRAME__BODY_PING:
	case NODED__FRAME__BODY_REPORT_STATUS:
	case NODED__FRAME__BODY_ASSIGN_TASK:
	case NODED__FRAME__BODY_TASK_UPDATE:
	case NODED__FRAME__BODY_LEAVE:
		return true;
	default:
		return false;
	}
}

/* The node name f registers or reports under, or NULL. */
static const char *node_name(struct nd_conn *c, const Noded__Frame *f)
{
	switch (f->body_case) {
	case NODED__FRAME__BODY_HELLO:
		return f->hello->node_name;
	case NODED__FRAME__BODY_REPORT_STATUS:
		return f->report_status->name;
	case NODED__FRAME__BODY_ASSIGN_TASK:
		return f->assign_task->node_name[0] ? f->assign_task->node_name
						    : NULL;
	default:
		return NULL;
	}
}

bool nd__rpc_role_allows(struct nd_conn *c, const Noded__Frame *f)
{
	const char *cert_name, *name;
	enum nd_tls_role role = nd_conn_tls_peer(c, &cert_name);
	const char *method = nd_frame_method_name(f->body_case);
	bool ok;

	switch (role) {
	case ND_TLS_ROLE_NONE:
	case ND_TLS_ROLE_MASTER:
		return true;
	case ND_TLS_ROLE_WORKER:
		ok = worker_method(f->body_case);
		break;
	case ND_TLS_ROLE_CLIENT:
		ok = !worker_method(f->body_case) ||
		     f->body_case == NODED__FRAME__BODY_HELLO ||
		     f->body_case == NODED__FRAME__BODY_AUTH ||
		     f->body_case == NODED__FRAME__BODY_PING;
		break;
	default:
		ok = false;
		break;
	}
	/* A Hello says what the peer means to be: it must be its role. */
	if (ok && f->body_case == NODED__FRAME__BODY_HELLO &&
	    (role == ND_TLS_ROLE_WORKER) !=
		    (f->hello->role == NODED__ROLE__ROLE_WORKER)) {
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__PERMISSION_DENIED,
			     "permission denied: a %s certificate may not "
			     "connect as a %s", nd_tls_role_name(role),
			     f->hello->role == NODED__ROLE__ROLE_WORKER ?
				     "worker" : "client");
		return false;
	}
	if (!ok) {
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__REPLY,
			     NODED__ERROR_CODE__PERMISSION_DENIED,
			     "permission denied: a %s certificate may not call "
			     "%s", nd_tls_role_name(role), method);
		return false;
	}
	name = role == ND_TLS_ROLE_WORKER && cert_name[0] ? node_name(c, f)
							  : NULL;
	if (name && strcmp(name, cert_name)) {
		if (f->body_case == NODED__FRAME__BODY_HELLO)
			nd_rpc_fatal(c, f->id,
				     NODED__ERROR_CODE__PERMISSION_DENIED,
				     "permission denied: the certificate is "
				     "for worker '%s', not '%.253s'", cert_name,
				     name);
		else
			nd_rpc_error(c, f->id, NODED__FRAME_KIND__REPLY,
				     NODED__ERROR_CODE__PERMISSION_DENIED,
				     "permission denied: the certificate is "
				     "for worker '%s', not '%.253s'", cert_name,
				     name);
		return false;
	}
	return true;
}

bool nd__rpc_acl_allows(struct nd_conn *c, const Noded__Frame *f)
{
	struct nd_rpc_conn *rc = nd_rpc(c);
	const struct nd_config *cfg = c->shard->cfg;
	struct nd_acl_who who = { 0 };
	char why[512];
	int ret;

	who.role = nd_conn_tls_peer(c, &who.name);
	who.token = cfg->token && rc->authed;
	ret = nd_acl_gate(&who, f, rc->sp.peer, "native", c->shard->now_ms,
			  why, sizeof(why));
	if (!ret)
		return true;
	nd_rpc_error(c, f->id, NODED__FRAME_KIND__REPLY,
		     ret == -EACCES ? NODED__ERROR_CODE__PERMISSION_DENIED :
				      NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
		     "%s", why);
	return false;
}

void nd__rpc_wrong_transport(struct nd_conn *c, bool tls_expected)
{
	nd_rpc_error(c, 0, NODED__FRAME_KIND__REPLY,
		     NODED__ERROR_CODE__BAD_REQUEST, "%s", tls_expected ?
		     "this port speaks TLS: connect with --tls-ca (and "
		     "--tls-cert, --tls-key when it asks for a certificate)" :
		     "this port speaks plaintext, not TLS (the server runs "
		     "without --tls-cert): connect without --tls-*");
}
