/*
 * The access control policy (see acl.h): parsing, the decision, the
 * mapping of methods to actions and objects, the process's policy and the
 * audit lines.
 *
 * A policy is one allocation of rules and groups, each holding copies of
 * its words; a check walks the rules (a policy is a few dozen lines: no
 * index is worth its code).
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "noded/hostlist.h"
#include "rpc/acl.h"

/* Larger files are refused: a policy is read by people. */
#define ACL_FILE_MAX (1u << 20)
#define ACL_WORDS_MAX 256

enum subj_kind {
	SUBJ_ANY,        /* * */
	SUBJ_CERT,       /* role + name glob */
	SUBJ_ROLE,       /* role */
	SUBJ_TOKEN,      /* token:shared */
	SUBJ_ANONYMOUS,
	SUBJ_GROUP,      /* group index */
};

struct subject {
	enum subj_kind kind;
	enum nd_tls_role role;
	char *name;      /* SUBJ_CERT's glob; owned */
	size_t group;
};

struct group {
	char *name;      /* owned */
	struct subject *members;
	size_t n;
};

struct rule {
	struct subject subj;
	enum nd_acl_obj_kind obj;  /* ANY: '*' */
	char *pat;                 /* node/log glob, kv prefix, label key */
	char *value;               /* label value (glob) */
	uint32_t actions;          /* bit per nd_acl_action */
	unsigned line;
};

struct nd_acl {
	struct rule *rules;
	size_t nrules, caprules;
	struct group *groups;
	size_t ngroups, capgroups;
};

static const char *const action_names[ND_ACL_NACTIONS] = {
	[ND_ACL_TASK_SUBMIT] = "task.submit",
	[ND_ACL_TASK_READ] = "task.read",
	[ND_ACL_TASK_CANCEL] = "task.cancel",
	[ND_ACL_NODE_READ] = "node.read",
	[ND_ACL_KV_READ] = "kv.read",
	[ND_ACL_KV_WRITE] = "kv.write",
	[ND_ACL_LOG_PRODUCE] = "log.produce",
	[ND_ACL_LOG_CONSUME] = "log.consume",
	[ND_ACL_OPERATOR] = "operator",
};

const char *nd_acl_action_name(enum nd_acl_action a)
{
	return (unsigned)a < ND_ACL_NACTIONS ? action_names[a] : "?";
}

static void subject_free(struct subject *s)
{
	free(s->name);
}

void nd_acl_free(struct nd_acl *acl)
{
	size_t i, j;

	if (!acl)
		return;
	for (i = 0; i < acl->nrules; i++) {
		subject_free(&acl->rules[i].subj);
		free(acl->rules[i].pat);
		free(acl->rules[i].value);
	}
	for (i = 0; i < acl->ngroups; i++) {
		for (j = 0; j < acl->groups[i].n; j++)
			subject_free(&acl->groups[i].members[j]);
		free(acl->groups[i].members);
		free(acl->groups[i].name);
	}
	free(acl->rules);
	free(acl->groups);
	free(acl);
}

size_t nd_acl_rules(const struct nd_acl *acl)
{
	return acl ? acl->nrules : 0;
}

/* ---- parsing ---- */

struct parser {
	const char *file;
	unsigned line;
	char *err;
	size_t err_size;
};

static int fail(struct parser *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(struct parser *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(p->err, p->err_size, "%s:%u: ", p->file, p->line);
	if (n < 0 || (size_t)n >= p->err_size)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static enum nd_tls_role role_of(const char *s)
{
	if (!strcmp(s, "client"))
		return ND_TLS_ROLE_CLIENT;
	if (!strcmp(s, "worker"))
		return ND_TLS_ROLE_WORKER;
	if (!strcmp(s, "master"))
		return ND_TLS_ROLE_MASTER;
	return ND_TLS_ROLE_NONE;
}

static int find_group(const struct nd_acl *acl, const char *name, size_t *i)
{
	for (*i = 0; *i < acl->ngroups; (*i)++)
		if (!strcmp(acl->groups[*i].name, name))
			return 0;
	return -ENOENT;
}

/* Parses word w into s; groups only when groups_ok (no nesting). */
static int parse_subject(struct parser *p, const struct nd_acl *acl,
			 const char *w, struct subject *s, bool groups_ok)
{
	const char *colon = strchr(w, ':');

	memset(s, 0, sizeof(*s));
	if (!strcmp(w, "*")) {
		s->kind = SUBJ_ANY;
		return 0;
	}
	if (!strcmp(w, "anonymous")) {
		s->kind = SUBJ_ANONYMOUS;
		return 0;
	}
	if (w[0] == '@') {
		if (!groups_ok)
			return fail(p, "a group may not hold a group ('%s')",
				    w);
		if (find_group(acl, w + 1, &s->group))
			return fail(p, "unknown group '%s' (define it with "
				    "'group %s SUBJECT...' before its use)",
				    w + 1, w + 1);
		s->kind = SUBJ_GROUP;
		return 0;
	}
	if (colon && !strncmp(w, "role:", 5)) {
		s->kind = SUBJ_ROLE;
		s->role = role_of(w + 5);
		if (s->role == ND_TLS_ROLE_NONE)
			return fail(p, "unknown role '%s' (want role:client, "
				    "role:worker or role:master)", w + 5);
		return 0;
	}
	if (colon && !strncmp(w, "token:", 6)) {
		if (strcmp(w + 6, "shared"))
			return fail(p, "unknown token '%s' (the one token is "
				    "token:shared, the --token-file)", w + 6);
		s->kind = SUBJ_TOKEN;
		return 0;
	}
	if (colon) {
		char role[16];
		size_t n = (size_t)(colon - w);

		if (n < sizeof(role)) {
			memcpy(role, w, n);
			role[n] = '\0';
			s->role = role_of(role);
		}
		if (s->role != ND_TLS_ROLE_NONE) {
			if (!colon[1])
				return fail(p, "'%s' names no certificate "
					    "(want %sNAME)", w, w);
			s->kind = SUBJ_CERT;
			s->name = strdup(colon + 1);
			return s->name ? 0 : -ENOMEM;
		}
	}
	return fail(p, "unknown subject '%s' (want client:NAME, worker:NAME, "
		    "master:NAME, role:ROLE, token:shared, anonymous, @GROUP "
		    "or *)", w);
}

static int parse_object(struct parser *p, const char *w, struct rule *r)
{
	const char *eq;

	if (!strcmp(w, "*")) {
		r->obj = ND_ACL_OBJ_ANY;
		return 0;
	}
	if (!strncmp(w, "node:", 5) && w[5]) {
		r->obj = ND_ACL_OBJ_NODE;
		r->pat = strdup(w + 5);
	} else if (!strncmp(w, "label:", 6) && (eq = strchr(w + 6, '=')) &&
		   eq > w + 6) {
		r->obj = ND_ACL_OBJ_LABELS;
		r->pat = strndup(w + 6, (size_t)(eq - (w + 6)));
		r->value = strdup(eq + 1);
		if (!r->value)
			return -ENOMEM;
	} else if (!strncmp(w, "kv:", 3) && w[3]) {
		r->obj = ND_ACL_OBJ_KV;
		r->pat = strdup(w + 3);
	} else if (!strncmp(w, "log:", 4) && w[4]) {
		r->obj = ND_ACL_OBJ_LOG;
		r->pat = strdup(w + 4);
	} else {
		return fail(p, "unknown object '%s' (want node:GLOB, "
			    "label:KEY=VALUE, kv:PREFIX, log:TOPIC or *)", w);
	}
	return r->pat ? 0 : -ENOMEM;
}

static int parse_actions(struct parser *p, char *w, uint32_t *out)
{
	char *save = NULL, *a;
	unsigned i;

	*out = 0;
	if (!strcmp(w, "*")) {
		*out = (1u << ND_ACL_NACTIONS) - 1;
		return 0;
	}
	for (a = strtok_r(w, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < ND_ACL_NACTIONS; i++)
			if (!strcmp(a, action_names[i]))
				break;
		if (i == ND_ACL_NACTIONS)
			return fail(p, "unknown action '%s' (want task.submit, "
				    "task.read, task.cancel, node.read, "
				    "kv.read, kv.write, log.produce, "
				    "log.consume, operator or *)", a);
		*out |= 1u << i;
	}
	if (!*out)
		return fail(p, "no action named");
	return 0;
}

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
	void *q;
	size_t c = *cap ? *cap * 2 : 8;

	if (n < *cap)
		return 0;
	q = realloc(*arr, c * size);
	if (!q)
		return -ENOMEM;
	*arr = q;
	*cap = c;
	return 0;
}

static int parse_group(struct parser *p, struct nd_acl *acl, char **w,
		       size_t nw)
{
	struct group *g;
	size_t i;
	int ret;

	if (nw < 3)
		return fail(p, "'group' wants a name and at least one "
			    "subject: group NAME SUBJECT...");
	if (!find_group(acl, w[1], &i))
		return fail(p, "group '%s' is defined twice", w[1]);
	if (grow((void **)&acl->groups, &acl->capgroups, acl->ngroups,
		 sizeof(*acl->groups)))
		return -ENOMEM;
	g = &acl->groups[acl->ngroups];
	memset(g, 0, sizeof(*g));
	g->name = strdup(w[1]);
	g->members = calloc(nw - 2, sizeof(*g->members));
	if (!g->name || !g->members) {
		free(g->name);
		free(g->members);
		return -ENOMEM;
	}
	acl->ngroups++;
	for (i = 2; i < nw; i++) {
		ret = parse_subject(p, acl, w[i], &g->members[g->n], false);
		if (ret)
			return ret;
		g->n++;
	}
	return 0;
}

static int parse_allow(struct parser *p, struct nd_acl *acl, char **w,
		       size_t nw)
{
	struct rule *r;
	int ret;

	if (nw != 4)
		return fail(p, "'allow' wants three words: allow SUBJECT "
			    "OBJECT ACTIONS (got %zu)", nw - 1);
	if (grow((void **)&acl->rules, &acl->caprules, acl->nrules,
		 sizeof(*acl->rules)))
		return -ENOMEM;
	r = &acl->rules[acl->nrules];
	memset(r, 0, sizeof(*r));
	r->line = p->line;
	acl->nrules++; /* freed with the policy from here on */
	ret = parse_subject(p, acl, w[1], &r->subj, true);
	if (!ret)
		ret = parse_object(p, w[2], r);
	if (!ret)
		ret = parse_actions(p, w[3], &r->actions);
	return ret;
}

/* One line (NUL-terminated, changed in place). */
static int parse_line(struct parser *p, struct nd_acl *acl, char *s)
{
	char *w[ACL_WORDS_MAX], *hash = strchr(s, '#');
	size_t nw = 0;

	if (hash)
		*hash = '\0';
	for (;;) {
		while (isspace((unsigned char)*s))
			s++;
		if (!*s)
			break;
		if (nw == ACL_WORDS_MAX)
			return fail(p, "more than %d words", ACL_WORDS_MAX);
		w[nw++] = s;
		while (*s && !isspace((unsigned char)*s))
			s++;
		if (*s)
			*s++ = '\0';
	}
	if (!nw)
		return 0;
	if (!strcmp(w[0], "allow"))
		return parse_allow(p, acl, w, nw);
	if (!strcmp(w[0], "group"))
		return parse_group(p, acl, w, nw);
	return fail(p, "unknown rule '%s' (want 'allow SUBJECT OBJECT "
		    "ACTIONS' or 'group NAME SUBJECT...'; what no rule "
		    "allows is denied)", w[0]);
}

int nd_acl_parse(struct nd_acl **out, const char *text, size_t len,
		 const char *file, char *err, size_t err_size)
{
	struct parser p = { file, 0, err, err_size };
	struct nd_acl *acl;
	const char *s = text, *end = text + len, *nl;
	char *line = NULL;
	int ret = 0;

	*out = NULL;
	acl = calloc(1, sizeof(*acl));
	if (!acl)
		return -ENOMEM;
	while (s < end) {
		nl = memchr(s, '\n', (size_t)(end - s));
		if (!nl)
			nl = end;
		p.line++;
		line = strndup(s, (size_t)(nl - s));
		if (!line) {
			ret = -ENOMEM;
			break;
		}
		if (strlen(line) != (size_t)(nl - s))
			ret = fail(&p, "a NUL byte in the line");
		else
			ret = parse_line(&p, acl, line);
		free(line);
		if (ret)
			break;
		s = nl + 1;
	}
	if (ret == -ENOMEM)
		snprintf(err, err_size, "%s: out of memory", file);
	if (ret) {
		nd_acl_free(acl);
		return ret;
	}
	*out = acl;
	return 0;
}

int nd_acl_load(struct nd_acl **out, const char *path, char *err,
		size_t err_size)
{
	FILE *f = fopen(path, "r");
	char *text;
	size_t n;
	int ret;

	*out = NULL;
	if (!f) {
		snprintf(err, err_size, "%s: %s", path, strerror(errno));
		return -EINVAL;
	}
	text = malloc(ACL_FILE_MAX + 1);
	if (!text) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(text, 1, ACL_FILE_MAX + 1, f);
	if (ferror(f)) {
		snprintf(err, err_size, "%s: %s", path, strerror(errno));
		ret = -EINVAL;
	} else if (n > ACL_FILE_MAX) {
		snprintf(err, err_size, "%s: over %u bytes", path,
			 ACL_FILE_MAX);
		ret = -EINVAL;
	} else {
		ret = nd_acl_parse(out, text, n, path, err, err_size);
	}
	free(text);
	fclose(f);
	return ret;
}

/* ---- the decision ---- */

static bool subject_matches(const struct nd_acl *acl, const struct subject *s,
			    const struct nd_acl_who *who)
{
	size_t i;

	switch (s->kind) {
	case SUBJ_ANY:
		return true;
	case SUBJ_CERT:
		return who->role == s->role && who->name && who->name[0] &&
		       !fnmatch(s->name, who->name, 0);
	case SUBJ_ROLE:
		return who->role == s->role;
	case SUBJ_TOKEN:
		return who->token;
	case SUBJ_ANONYMOUS:
		return !who->token && (who->role == ND_TLS_ROLE_NONE ||
				       who->role == ND_TLS_ROLE_UNKNOWN);
	case SUBJ_GROUP:
		for (i = 0; i < acl->groups[s->group].n; i++)
			if (subject_matches(acl, &acl->groups[s->group].members[i],
					    who))
				return true;
		return false;
	}
	return false;
}

static bool object_matches(const struct rule *r, const struct nd_acl_object *o)
{
	size_t i;

	if (r->obj == ND_ACL_OBJ_ANY)
		return true;
	switch (o->kind) {
	case ND_ACL_OBJ_ANY:
		/* only node:* covers every node */
		return r->obj == ND_ACL_OBJ_NODE && !strcmp(r->pat, "*");
	case ND_ACL_OBJ_NODE:
		return r->obj == ND_ACL_OBJ_NODE && !fnmatch(r->pat, o->name, 0);
	case ND_ACL_OBJ_LABELS:
		if (r->obj == ND_ACL_OBJ_NODE)
			return !strcmp(r->pat, "*");
		if (r->obj != ND_ACL_OBJ_LABELS)
			return false;
		for (i = 0; i < o->nlabels; i++)
			if (!strcmp(r->pat, o->keys[i]) &&
			    !fnmatch(r->value, o->values[i], 0))
				return true;
		return false;
	case ND_ACL_OBJ_KV:
		return r->obj == ND_ACL_OBJ_KV &&
		       !strncmp(o->name, r->pat, strlen(r->pat));
	case ND_ACL_OBJ_LOG:
		return r->obj == ND_ACL_OBJ_LOG && !fnmatch(r->pat, o->name, 0);
	}
	return false;
}

bool nd_acl_allows(const struct nd_acl *acl, const struct nd_acl_who *who,
		   enum nd_acl_action action, const struct nd_acl_object *obj)
{
	size_t i;

	if (!acl)
		return true;
	for (i = 0; i < acl->nrules; i++) {
		const struct rule *r = &acl->rules[i];

		if ((r->actions & (1u << action)) &&
		    subject_matches(acl, &r->subj, who) &&
		    object_matches(r, obj))
			return true;
	}
	return false;
}

const char *nd_acl_who_str(const struct nd_acl_who *who, char *buf,
			   size_t size)
{
	if ((who->role == ND_TLS_ROLE_CLIENT ||
	     who->role == ND_TLS_ROLE_WORKER ||
	     who->role == ND_TLS_ROLE_MASTER) && who->name && who->name[0])
		snprintf(buf, size, "%s:%s", nd_tls_role_name(who->role),
			 who->name);
	else if (who->role == ND_TLS_ROLE_CLIENT ||
		 who->role == ND_TLS_ROLE_WORKER ||
		 who->role == ND_TLS_ROLE_MASTER)
		snprintf(buf, size, "role:%s", nd_tls_role_name(who->role));
	else if (who->token)
		snprintf(buf, size, "token:shared");
	else
		snprintf(buf, size, "anonymous");
	return buf;
}

/* ---- methods to actions and objects ---- */

static void object_str(const struct nd_acl_object *o, char *buf, size_t size)
{
	size_t i, n;

	switch (o->kind) {
	case ND_ACL_OBJ_ANY:
		snprintf(buf, size, "*");
		break;
	case ND_ACL_OBJ_NODE:
		snprintf(buf, size, "node:%.200s", o->name);
		break;
	case ND_ACL_OBJ_KV:
		snprintf(buf, size, "kv:%.200s", o->name);
		break;
	case ND_ACL_OBJ_LOG:
		snprintf(buf, size, "log:%.200s", o->name);
		break;
	case ND_ACL_OBJ_LABELS:
		n = 0;
		buf[0] = '\0';
		for (i = 0; i < o->nlabels && n < size; i++)
			n += (size_t)snprintf(buf + n, size - n, "%slabel:%.64s=%.64s",
					      i ? "," : "", o->keys[i],
					      o->values[i]);
		break;
	}
}

static int denied(const struct nd_acl_who *who, enum nd_acl_action a,
		  const struct nd_acl_object *o, char *why, size_t size)
{
	char w[128], obj[300];

	object_str(o, obj, sizeof(obj));
	snprintf(why, size, "permission denied: %s on %s for %s (--acl)",
		 nd_acl_action_name(a), obj, nd_acl_who_str(who, w, sizeof(w)));
	return -EACCES;
}

/* task.submit on spec's target: a node, labels, each of a node list, or
 * any node. An invalid node list is checked as any node (the service
 * then says what is wrong with it). */
static int check_submit(const struct nd_acl *acl, const struct nd_acl_who *who,
			const Noded__TaskSpec *sp, char *why, size_t size)
{
	struct nd_acl_object o = { .kind = ND_ACL_OBJ_ANY };
	struct nd_hostlist hl = { 0 };
	const char *keys[64], *values[64];
	char buf[128];
	size_t i;
	int ret;

	if (!sp)
		goto check;
	if (sp->node && sp->node[0]) {
		o.kind = ND_ACL_OBJ_NODE;
		o.name = sp->node;
	} else if (sp->nodes && sp->nodes[0]) {
		ret = nd_hostlist_expand(sp->nodes, &hl, buf, sizeof(buf));
		if (ret == -ENOMEM)
			return ret;
		if (!ret) {
			o.kind = ND_ACL_OBJ_NODE;
			for (i = 0; i < hl.n; i++) {
				o.name = hl.names[i];
				if (!nd_acl_allows(acl, who, ND_ACL_TASK_SUBMIT,
						   &o)) {
					ret = denied(who, ND_ACL_TASK_SUBMIT,
						     &o, why, size);
					nd_hostlist_free(&hl);
					return ret;
				}
			}
			nd_hostlist_free(&hl);
			return 0;
		}
	} else if (sp->n_labels) {
		/* labels past 64 are not looked at: fewer labels only
		 * narrow what a rule on one of them allows */
		o.kind = ND_ACL_OBJ_LABELS;
		for (i = 0; i < sp->n_labels && i < 64; i++) {
			keys[i] = sp->labels[i]->key ? sp->labels[i]->key : "";
			values[i] = sp->labels[i]->value ?
					    sp->labels[i]->value : "";
		}
		o.nlabels = i;
		o.keys = keys;
		o.values = values;
	}
check:
	if (!nd_acl_allows(acl, who, ND_ACL_TASK_SUBMIT, &o))
		return denied(who, ND_ACL_TASK_SUBMIT, &o, why, size);
	return 0;
}

int nd_acl_check_frame(const struct nd_acl *acl, const struct nd_acl_who *who,
		       const Noded__Frame *f, char *why, size_t why_size)
{
	struct nd_acl_object o = { .kind = ND_ACL_OBJ_ANY };
	enum nd_acl_action a;

	if (!acl)
		return 0;
	switch (f->body_case) {
	case NODED__FRAME__BODY_SUBMIT:
		return check_submit(acl, who, f->submit, why, why_size);
	case NODED__FRAME__BODY_RUN:
		return check_submit(acl, who, f->run, why, why_size);
	case NODED__FRAME__BODY_GET_TASK:
	case NODED__FRAME__BODY_LIST_TASKS:
	case NODED__FRAME__BODY_WATCH:
		a = ND_ACL_TASK_READ;
		break;
	case NODED__FRAME__BODY_CANCEL_TASK:
		a = ND_ACL_TASK_CANCEL;
		break;
	case NODED__FRAME__BODY_LIST_NODES:
		a = ND_ACL_NODE_READ;
		break;
	case NODED__FRAME__BODY_NODE_DRAIN:
		a = ND_ACL_OPERATOR;
		o.kind = ND_ACL_OBJ_NODE;
		o.name = f->node_drain->name ? f->node_drain->name : "";
		break;
	case NODED__FRAME__BODY_NODE_ELIGIBLE:
		a = ND_ACL_OPERATOR;
		o.kind = ND_ACL_OBJ_NODE;
		o.name = f->node_eligible->name ? f->node_eligible->name : "";
		break;
	case NODED__FRAME__BODY_NODE_REMOVE:
		a = ND_ACL_OPERATOR;
		o.kind = ND_ACL_OBJ_NODE;
		o.name = f->node_remove->name ? f->node_remove->name : "";
		break;
	case NODED__FRAME__BODY_RAFT_CHANGE:
	case NODED__FRAME__BODY_SNAPSHOT:
	case NODED__FRAME__BODY_RESTORE:
		a = ND_ACL_OPERATOR;
		break;
	default:
		/* hello, ping, auth, the worker's side, and the leader
		 * query (a client given several masters asks it to find
		 * the leader, whatever else it may do) */
		return 0;
	}
	if (!nd_acl_allows(acl, who, a, &o))
		return denied(who, a, &o, why, why_size);
	return 0;
}

/* ---- the process's policy ---- */

static pthread_rwlock_t global_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct nd_acl *global;
static char *global_path;
/* Set once a policy is loaded (never cleared while shards run): without
 * one, and for methods no action governs, the gate takes no lock. */
static atomic_bool global_set;

/* Does some action govern method m (nd_acl_check_frame)? */
static bool governed(Noded__Frame__BodyCase m)
{
	switch (m) {
	case NODED__FRAME__BODY_SUBMIT:
	case NODED__FRAME__BODY_RUN:
	case NODED__FRAME__BODY_GET_TASK:
	case NODED__FRAME__BODY_LIST_TASKS:
	case NODED__FRAME__BODY_WATCH:
	case NODED__FRAME__BODY_CANCEL_TASK:
	case NODED__FRAME__BODY_LIST_NODES:
	case NODED__FRAME__BODY_NODE_DRAIN:
	case NODED__FRAME__BODY_NODE_ELIGIBLE:
	case NODED__FRAME__BODY_NODE_REMOVE:
	case NODED__FRAME__BODY_RAFT_CHANGE:
	case NODED__FRAME__BODY_SNAPSHOT:
	case NODED__FRAME__BODY_RESTORE:
		return true;
	default:
		return false;
	}
}

int nd_acl_global_load(const char *path, char *err, size_t err_size)
{
	struct nd_acl *acl;
	char *p = strdup(path);
	int ret;

	if (!p)
		return -ENOMEM;
	ret = nd_acl_load(&acl, path, err, err_size);
	if (ret) {
		free(p);
		return ret;
	}
	pthread_rwlock_wrlock(&global_lock);
	nd_acl_free(global);
	global = acl;
	free(global_path);
	global_path = p;
	atomic_store(&global_set, true);
	pthread_rwlock_unlock(&global_lock);
	ND_LOG(ND_LOG_INFO, "acl.loaded", ND_S("file", path),
	       ND_U("rules", nd_acl_rules(acl)));
	return 0;
}

void nd_acl_global_reload(void)
{
	struct nd_acl *acl, *old;
	char err[512];

	/* only the signal thread writes global_path: no lock to read it */
	if (!global_path)
		return;
	if (nd_acl_load(&acl, global_path, err, sizeof(err))) {
		ND_LOG(ND_LOG_WARN, "acl.reload_failed", ND_S("err", err),
		       ND_S("msg", "keeping the policy loaded before"));
		return;
	}
	pthread_rwlock_wrlock(&global_lock);
	old = global;
	global = acl;
	pthread_rwlock_unlock(&global_lock);
	nd_acl_free(old);
	ND_LOG(ND_LOG_INFO, "acl.loaded", ND_S("file", global_path),
	       ND_U("rules", nd_acl_rules(acl)));
}

void nd_acl_global_close(void)
{
	pthread_rwlock_wrlock(&global_lock);
	nd_acl_free(global);
	global = NULL;
	free(global_path);
	global_path = NULL;
	atomic_store(&global_set, false);
	pthread_rwlock_unlock(&global_lock);
}

/* "echo hi" or "sh -c '...'", cut to fit, for the audit line. */
static void command_summary(const Noded__TaskSpec *sp, char *buf, size_t size)
{
	const Noded__Command *c = sp ? sp->command : NULL;
	size_t i, n = 0;

	buf[0] = '\0';
	if (!c)
		return;
	if (c->shell && c->shell[0]) {
		snprintf(buf, size, "sh -c %s", c->shell);
		return;
	}
	for (i = 0; i < c->n_argv && n + 1 < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? " " : "",
				      c->argv[i]);
}

/* "node:web1", "nodes:web[1-3]", "labels:rack=b,os=linux", "all", "any". */
static void target_summary(const Noded__TaskSpec *sp, char *buf, size_t size)
{
	size_t i, n;

	if (!sp) {
		snprintf(buf, size, "any");
	} else if (sp->node && sp->node[0]) {
		snprintf(buf, size, "node:%s", sp->node);
	} else if (sp->nodes && sp->nodes[0]) {
		snprintf(buf, size, "nodes:%s", sp->nodes);
	} else if (sp->n_labels) {
		n = (size_t)snprintf(buf, size, "%slabels:",
				     sp->all ? "all," : "");
		for (i = 0; i < sp->n_labels && n < size; i++)
			n += (size_t)snprintf(buf + n, size - n, "%s%s=%s",
					      i ? "," : "",
					      sp->labels[i]->key,
					      sp->labels[i]->value);
	} else {
		snprintf(buf, size, sp->all ? "all" : "any");
	}
}

/* The audit.denied line, at most one per peer and second. */
static void log_denied(const struct nd_acl_who *who, const char *method,
		       const char *peer, const char *api, uint64_t now_ms,
		       const char *why)
{
	uint64_t suppressed, others;
	char w[128];

	if (nd_log_on(ND_LOG_WARN) &&
	    nd_log_limit(peer, now_ms, &suppressed, &others))
		ND_LOG(ND_LOG_WARN, "audit.denied",
		       ND_S("who", nd_acl_who_str(who, w, sizeof(w))),
		       ND_S("peer", peer), ND_S("api", api),
		       ND_S("method", method), ND_S("err", why),
		       ND_U("suppressed", suppressed),
		       ND_U("suppressed_others", others));
}

int nd_acl_gate_action(const struct nd_acl_who *who,
		       enum nd_acl_action action, const char *method,
		       const char *peer, const char *api, uint64_t now_ms,
		       char *why, size_t why_size)
{
	struct nd_acl_object o = { .kind = ND_ACL_OBJ_ANY };
	bool ok;

	if (!atomic_load_explicit(&global_set, memory_order_relaxed))
		return 0;
	pthread_rwlock_rdlock(&global_lock);
	ok = nd_acl_allows(global, who, action, &o);
	pthread_rwlock_unlock(&global_lock);
	if (ok)
		return 0;
	denied(who, action, &o, why, why_size);
	log_denied(who, method, peer, api, now_ms, why);
	return -EACCES;
}

int nd_acl_gate(const struct nd_acl_who *who, const Noded__Frame *f,
		const char *peer, const char *api, uint64_t now_ms, char *why,
		size_t why_size)
{
	const Noded__TaskSpec *sp = NULL;
	char w[128], cmd[256], target[256];
	int ret = 0;

	if (!governed(f->body_case))
		return 0;
	if (atomic_load_explicit(&global_set, memory_order_relaxed)) {
		pthread_rwlock_rdlock(&global_lock);
		ret = nd_acl_check_frame(global, who, f, why, why_size);
		pthread_rwlock_unlock(&global_lock);
	}
	if (ret == -ENOMEM)
		snprintf(why, why_size, "out of memory checking the policy");
	if (ret) {
		log_denied(who, nd_frame_method_name(f->body_case), peer, api,
			   now_ms, why);
		return ret;
	}
	if (f->body_case == NODED__FRAME__BODY_SUBMIT)
		sp = f->submit;
	else if (f->body_case == NODED__FRAME__BODY_RUN)
		sp = f->run;
	else
		return 0;
	if (!nd_log_on(ND_LOG_INFO))
		return 0;
	command_summary(sp, cmd, sizeof(cmd));
	target_summary(sp, target, sizeof(target));
	ND_LOG(ND_LOG_INFO, "audit.submit",
	       ND_S("who", nd_acl_who_str(who, w, sizeof(w))),
	       ND_S("peer", peer), ND_S("api", api),
	       ND_S("method", nd_frame_method_name(f->body_case)),
	       ND_S("target", target), ND_S("command", cmd));
	return 0;
}
