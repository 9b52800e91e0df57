/*
 * Access control: a policy file (--acl FILE) saying which subject may do
 * which action on which object, and the one decision function both the
 * native protocol (rpc/server.c) and the HTTP API (api/http.c) ask.
 *
 * The file, one rule a line ('#' starts a comment, blank lines skipped):
 *
 *   group NAME SUBJECT...          a group; later rules name it @NAME
 *   allow SUBJECT OBJECT ACTIONS   ACTIONS: comma-separated, or *
 *
 * SUBJECT  client:NAME, worker:NAME, master:NAME  a certificate (NAME may
 *          be a glob, fnmatch(3)); role:client|worker|master  any
 *          certificate of that role; token:shared  a peer that proved the
 *          master's --token-file token (native) or sent it (HTTP);
 *          anonymous  a peer with neither; @GROUP; *  anyone.
 * OBJECT   *; node:GLOB  a node by name (node:* also covers "any node");
 *          label:KEY=VALUE  a submit targeting that label; kv:PREFIX a
 *          key under PREFIX; log:GLOB  a log topic.
 * ACTIONS  task.submit task.read task.cancel node.read kv.read kv.write
 *          log.produce log.consume operator
 *
 * Without a policy everything is allowed (today's behaviour); with one,
 * what no rule allows is denied. A bad file is refused whole, with
 * "FILE:LINE: why".
 *
 * The policy is process-wide (nd_acl_global_*): loaded once at start,
 * re-read on SIGHUP (a file that does not load keeps the old policy, and
 * says why in the log). Checks take a read lock; the swap a write lock.
 */
#ifndef ND_RPC_ACL_H
#define ND_RPC_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "noded/wire.h"
#include "tls/tls.h"

enum nd_acl_action {
	ND_ACL_TASK_SUBMIT,
	ND_ACL_TASK_READ,
	ND_ACL_TASK_CANCEL,
	ND_ACL_NODE_READ,
	ND_ACL_KV_READ,
	ND_ACL_KV_WRITE,
	ND_ACL_LOG_PRODUCE,
	ND_ACL_LOG_CONSUME,
	ND_ACL_OPERATOR,
	ND_ACL_NACTIONS,
};

/* Who is asking: the certificate's role and name (role NONE: no
 * certificate), and whether the peer proved the shared token. Not owned. */
struct nd_acl_who {
	enum nd_tls_role role;
	const char *name;   /* "" or NULL: no name */
	bool token;
};

enum nd_acl_obj_kind {
	ND_ACL_OBJ_ANY,     /* the whole cluster, or any node */
	ND_ACL_OBJ_NODE,    /* name */
	ND_ACL_OBJ_LABELS,  /* nlabels pairs keys[i]=values[i] */
	ND_ACL_OBJ_KV,      /* name: the key */
	ND_ACL_OBJ_LOG,     /* name: the topic */
};

/* What is acted on. Not owned. */
struct nd_acl_object {
	enum nd_acl_obj_kind kind;
	const char *name;
	size_t nlabels;
	const char *const *keys, *const *values;
};

struct nd_acl;

/*
 * Parses a policy from text (len bytes; file names it in errors). 0 with
 * *out owned by the caller (nd_acl_free); -EINVAL with err holding
 * "FILE:LINE: why"; -ENOMEM.
 */
int nd_acl_parse(struct nd_acl **out, const char *text, size_t len,
		 const char *file, char *err, size_t err_size);
/* The same from the file at path (-EINVAL also when it cannot be read). */
int nd_acl_load(struct nd_acl **out, const char *path, char *err,
		size_t err_size);
void nd_acl_free(struct nd_acl *acl);

/* The number of allow rules (for the log line saying what was loaded). */
size_t nd_acl_rules(const struct nd_acl *acl);

/* Does some rule of acl let who do action on obj? acl NULL: yes. */
bool nd_acl_allows(const struct nd_acl *acl, const struct nd_acl_who *who,
		   enum nd_acl_action action, const struct nd_acl_object *obj);

/* "task.submit", ... */
const char *nd_acl_action_name(enum nd_acl_action a);

/* "client:alice", "role:worker", "token:shared", "anonymous" into buf. */
const char *nd_acl_who_str(const struct nd_acl_who *who, char *buf,
			   size_t size);

/*
 * The decision for a request frame f: the action and object(s) its method
 * means (submit/run: task.submit on the target, every node of a node
 * list; get/list/watch: task.read; cancel: task.cancel; list nodes:
 * node.read; node drain/eligible/remove: operator on that node;
 * raft change, snapshot, restore: operator), checked with nd_acl_allows.
 * Methods that mean none of these (hello, ping, the leader query, the
 * worker's own) pass.
 * 0: allowed (or not governed); -EACCES with why holding "permission
 * denied: ACTION on OBJECT for WHO"; -ENOMEM.
 */
int nd_acl_check_frame(const struct nd_acl *acl, const struct nd_acl_who *who,
		       const Noded__Frame *f, char *why, size_t why_size);

/* ---- the process's policy ---- */

/* Loads path as the process's policy (before the servers start), and
 * remembers it for nd_acl_global_reload. 0, or -EINVAL with err said. */
int nd_acl_global_load(const char *path, char *err, size_t err_size);
/* SIGHUP: re-reads the file; a bad one keeps the old (logged). */
void nd_acl_global_reload(void);
/* Frees the process's policy (at exit). */
void nd_acl_global_close(void);

/*
 * The gate both protocols call for request f from who (peer: "HOST:PORT",
 * api: "native" or "http", now_ms for the denial rate limit). Logs
 * audit.submit (info) for a submit the policy lets through, and
 * audit.denied (warn, at most one line per peer and second, as
 * auth.refused) for a denial. 0 or -EACCES with why set as
 * nd_acl_check_frame.
 */
int nd_acl_gate(const struct nd_acl_who *who, const Noded__Frame *f,
		const char *peer, const char *api, uint64_t now_ms, char *why,
		size_t why_size);

/* The same for a request that is no frame (HTTP GET /metrics): action on
 * the whole cluster; method names it in the log. */
int nd_acl_gate_action(const struct nd_acl_who *who,
		       enum nd_acl_action action, const char *method,
		       const char *peer, const char *api, uint64_t now_ms,
		       char *why, size_t why_size);

#endif
