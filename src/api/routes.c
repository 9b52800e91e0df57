/*
 * The API's routes: each checks its input, asks the node service with a
 * native request (nd_http_call) and turns the reply frames into JSON.
 *
 *   GET    /healthz                       200 {"status":"ok"}
 *   GET    /metrics                       Prometheus text (metrics.c)
 *   POST   /v1/tasks, POST /tasks         201 {"id":N} or {"job_id":J,...}
 *   GET    /v1/tasks?state=S&limit=N&job=J&node=X  200 {"tasks":[...]}
 *   GET    /v1/tasks/ID                   200 the record, with its output
 *   GET    /v1/tasks/ID/output[?follow=1] 200 chunked output
 *   DELETE /v1/tasks/ID                   200 the record (cancel asked)
 *   GET    /v1/nodes, /v1/nodes/NAME      200 {"nodes":[...]}, one node
 *   POST   /v1/nodes/NAME/drain           200 the node ({"deadline_s":S})
 *   POST   /v1/nodes/NAME/eligible        200 the node
 *   DELETE /v1/nodes/NAME                 200 {"removed":NAME}; live: 409
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/log.h"
#include "core/shard.h"
#include "noded/json.h"
#include "noded/taskspec.h"
#include "wire/arena.h"

/* ---- service replies ---- */

static unsigned status_of(Noded__ErrorCode code)
{
	switch (code) {
	case NODED__ERROR_CODE__BAD_REQUEST: return 400;
	case NODED__ERROR_CODE__NOT_FOUND: return 404;
	case NODED__ERROR_CODE__FAILED_PRECONDITION: return 409;
	case NODED__ERROR_CODE__RESOURCE_EXHAUSTED: return 429;
	case NODED__ERROR_CODE__UNAUTHENTICATED: return 401;
	case NODED__ERROR_CODE__PERMISSION_DENIED: return 403;
	case NODED__ERROR_CODE__UNAVAILABLE: return 503;
	case NODED__ERROR_CODE__NOT_LEADER: return 503;
	default: return 500;
	}
}

/* An Error frame ends the request with its status; true if f was one. */
static bool error_reply(struct req *r, const Noded__Frame *f)
{
	if (f->body_case != NODED__FRAME__BODY_ERROR)
		return false;
	if (r->streaming) { /* headers are gone: end the stream short */
		nd_http_stream_end(r);
		return true;
	}
	if (f->error->code == NODED__ERROR_CODE__NOT_LEADER &&
	    f->error->leader_http[0]) {
		/* a follower: the same request, at the leader's API */
		char loc[2600];

		snprintf(loc, sizeof(loc), "Location: http://%s%s\r\n",
			 f->error->leader_http, r->url);
		nd_http_reply(r, 307, "text/plain; charset=utf-8",
			      f->error->message, strlen(f->error->message),
			      loc);
		return true;
	}
	nd_http_error(r, status_of(f->error->code), "%s",
		      f->error->message ? f->error->message : "error");
	return true;
}

static void unexpected(struct req *r)
{
	nd_http_error(r, 500, "unexpected reply from the node service");
}

static void call(struct req *r, Noded__Frame *f,
		 void (*on_frame)(struct req *, const Noded__Frame *))
{
	r->on_frame = on_frame;
	if (nd_http_call(r, f))
		nd_http_error(r, 503, "out of memory");
}

/* ---- input helpers ---- */

/* Decodes %XX and '+' in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (*s == '+') {
			*o++ = ' ';
		} else if (*s == '%' && s[1] && s[2]) {
			char hex[3] = { s[1], s[2], 0 };
			char *end;
			long v = strtol(hex, &end, 16);

			if (*end) {
				*o++ = *s;
				continue;
			}
			*o++ = (char)v;
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* The value of key in query q ("a=1&b=2"), unescaped into buf; NULL if
 * absent. */
static const char *query_get(const char *q, const char *key, char *buf,
			     size_t size)
{
	size_t kl = strlen(key);

	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);

		if (len >= kl && !strncmp(q, key, kl) &&
		    (len == kl || q[kl] == '=')) {
			size_t vl = len > kl ? len - kl - 1 : 0;

			if (vl >= size)
				vl = size - 1;
			memcpy(buf, q + kl + (len > kl), vl);
			buf[vl] = '\0';
			unescape(buf);
			return buf;
		}
		q = amp ? amp + 1 : NULL;
	}
	return NULL;
}

/*
 * Checks query q against the parameters a route takes (allowed,
 * NULL-terminated; NULL: none): an unknown parameter, or one given twice
 * (which of two values would count?), is refused with 400 naming it, as
 * unknown JSON fields are: a typo must not be silently ignored. Returns
 * true when q is acceptable; otherwise r is answered.
 */
static bool query_ok(struct req *r, const char *q,
		     const char *const *allowed)
{
	char key[64], seen[8][64];
	unsigned nseen = 0, i;

	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		size_t kl = strcspn(q, "=&");

		if (kl > len)
			kl = len;
		if (kl >= sizeof(key))
			kl = sizeof(key) - 1; /* no name is that long */
		memcpy(key, q, kl);
		key[kl] = '\0';
		unescape(key);
		q = amp ? amp + 1 : NULL;
		if (!len)
			continue; /* "a=1&&b=2", a trailing '&' */
		/* named in the error: printable ASCII only, so it is
		 * valid JSON text whatever was sent */
		for (i = 0; key[i]; i++)
			if (key[i] < 0x20 || key[i] > 0x7e)
				key[i] = '?';
		for (i = 0; allowed && allowed[i] && strcmp(allowed[i], key);
		     i++)
			;
		if (!allowed || !allowed[i]) {
			char takes[64] = "";

			for (i = 0; allowed && allowed[i]; i++)
				snprintf(takes + strlen(takes),
					 sizeof(takes) - strlen(takes),
					 "%s%s", i ? ", " : "", allowed[i]);
			nd_http_error(r, 400, "unknown query parameter '%s' "
				      "(%s%s)", key, allowed ? "this path "
				      "takes: " : "this path takes none",
				      takes);
			return false;
		}
		for (i = 0; i < nseen && strcmp(seen[i], key); i++)
			;
		if (i < nseen) {
			nd_http_error(r, 400, "query parameter '%s' given more "
				      "than once", key);
			return false;
		}
		if (nseen < sizeof(seen) / sizeof(seen[0]))
			strcpy(seen[nseen++], key);
	}
	return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return !*end && !errno;
}

/* ---- POST /v1/tasks ---- */

static void on_submitted(struct req *r, const Noded__Frame *f)
{
	const Noded__SubmitReply *sr = f->submit_reply;
	char loc[64];
	json_t *ids, *nodes;

	if (error_reply(r, f))
		return;
	if (f->body_case != NODED__FRAME__BODY_SUBMIT_REPLY) {
		unexpected(r);
		return;
	}
	if (!sr->job_id && sr->n_task_ids == 1) {
		snprintf(loc, sizeof(loc), "Location: /v1/tasks/%" PRIu64
			 "\r\n", sr->task_ids[0]);
		/* with wait_for_node, why it waits (as noded run says) */
		nd_http_json(r, 201, sr->waiting && sr->waiting[0] ?
			     json_pack("{s:I, s:o}", "id",
				       (json_int_t)sr->task_ids[0], "waiting",
				       nd_json_text(sr->waiting)) :
			     json_pack("{s:I}", "id",
				       (json_int_t)sr->task_ids[0]),
			     loc);
		return;
	}
	ids = json_array();
	nodes = json_array();
	for (size_t i = 0; ids && i < sr->n_task_ids; i++)
		json_array_append_new(ids,
				      json_integer((json_int_t)sr->task_ids[i]));
	for (size_t i = 0; nodes && i < sr->n_nodes; i++)
		json_array_append_new(nodes, nd_json_text(sr->nodes[i]));
	nd_http_json(r, 201, json_pack("{s:I, s:o, s:o}", "job_id",
				       (json_int_t)sr->job_id, "task_ids", ids,
				       "nodes", nodes), NULL);
}

/* The session of an Idempotency-Key: FNV-1a of it, never 0. */
static uint64_t key_session(const char *k, size_t n)
{
	uint64_t h = 14695981039346656037ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
	return h ? h : 1;
}

static void submit(struct req *r)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__TaskSpec sp = NODED__TASK_SPEC__INIT;
	Noded__Command cmd = NODED__COMMAND__INIT;
	json_error_t err;
	const char *why;
	char why_buf[256];
	json_t *j;

	if (!r->has_length && !r->chunked) {
		nd_http_error(r, 411, "a JSON body with Content-Length is "
			      "required");
		return;
	}
	/* A key given twice ("labels": {"k": "a", "k": "b"}) is refused,
	 * not resolved by keeping one. */
	j = json_loadb((const char *)r->body.data, r->body.len,
		       JSON_REJECT_DUPLICATES, &err);
	if (!j) {
		nd_http_error(r, 400, "bad JSON: %s (line %d, column %d)",
			      err.text, err.line, err.column);
		return;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		nd_http_error(r, 400, "the body must be a JSON object");
		return;
	}
	sp.command = &cmd;
	why = nd__api_spec_from_json(r, j, &sp, why_buf, sizeof(why_buf));
	if (why) {
		nd_http_error(r, 400, "%s", why);
		json_decref(j);
		return;
	}
	/* Idempotency-Key: a POST sent again with the same key (its answer
	 * lost to a failover or a broken connection) gets the task the first
	 * made (the key names a session of one submit: TaskSpec.session) */
	if (r->idem_len) {
		if (r->idem_len >= sizeof(r->idem)) {
			json_decref(j);
			nd_http_error(r, 400, "Idempotency-Key over %zu bytes",
				      sizeof(r->idem) - 1);
			return;
		}
		sp.session = key_session(r->idem, r->idem_len);
		sp.sequence = 1;
	}
	f.body_case = NODED__FRAME__BODY_SUBMIT;
	f.submit = &sp;
	call(r, &f, on_submitted);
	json_decref(j); /* packed already */
}

/* ---- GET /v1/tasks ---- */

static void on_list(struct req *r, const Noded__Frame *f)
{
	json_t *a;

	if (error_reply(r, f))
		return;
	if (f->body_case != NODED__FRAME__BODY_TASK_LIST) {
		unexpected(r);
		return;
	}
	/* Every record has a JSON form; one that cannot be built (out of
	 * memory) fails the answer rather than going missing from it. */
	a = json_array();
	for (size_t i = 0; a && i < f->task_list->n_tasks; i++)
		if (json_array_append_new(a,
					  nd_json_task(f->task_list->tasks[i]))) {
			json_decref(a);
			a = NULL;
		}
	nd_http_json(r, 200, a ? json_pack("{s:o}", "tasks", a) : NULL, NULL);
}

static void list(struct req *r, const char *q)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__TaskListRequest lr = NODED__TASK_LIST_REQUEST__INIT;
	static const char *const params[] = { "state", "limit", "job", "node",
					      "stale", NULL };
	char buf[64], node[256];
	uint64_t limit;

	if (!query_ok(r, q, params))
		return;
	/* ?stale=1: any master answers, from its copy of the ledger */
	if (query_get(q, "stale", buf, sizeof(buf))) {
		if (strcmp(buf, "1") && strcmp(buf, "true") &&
		    strcmp(buf, "0") && strcmp(buf, "false")) {
			nd_http_error(r, 400, "stale must be 1, true, 0 or "
				      "false");
			return;
		}
		lr.stale = !strcmp(buf, "1") || !strcmp(buf, "true");
	}
	if (query_get(q, "state", buf, sizeof(buf)) &&
	    !nd_task_state_parse(buf, &lr.state)) {
		nd_http_error(r, 400, "unknown state '%s' (want PENDING, "
			      "ASSIGNED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, "
			      "CANCELLED or LOST)", buf);
		return;
	}
	if (query_get(q, "limit", buf, sizeof(buf))) {
		if (!parse_u64(buf, &limit) || !limit || limit > 10000) {
			nd_http_error(r, 400, "limit must be from 1 to 10000");
			return;
		}
		lr.limit = (uint32_t)limit;
	}
	if (query_get(q, "job", buf, sizeof(buf)) &&
	    (!parse_u64(buf, &lr.job_id) || !lr.job_id)) {
		nd_http_error(r, 400, "job must be a job id (a number above 0)");
		return;
	}
	if (query_get(q, "node", node, sizeof(node))) {
		if (!node[0]) {
			nd_http_error(r, 400, "node must be a node name");
			return;
		}
		lr.node = node;
	}
	f.body_case = NODED__FRAME__BODY_LIST_TASKS;
	f.list_tasks = &lr;
	call(r, &f, on_list);
}

/* ---- GET /v1/tasks/ID and its output ---- */

/* Gathers the kept output, then answers with the record and it. */
static void on_task(struct req *r, const Noded__Frame *f)
{
	json_t *j;

	if (error_reply(r, f))
		return;
	switch (f->body_case) {
	case NODED__FRAME__BODY_OUTPUT:
		if (nd_buf_append(&r->acc, f->output->data.data,
				  f->output->data.len))
			r->failed = true;
		return;
	case NODED__FRAME__BODY_TASK_RECORD:
		j = nd_json_task(f->task_record);
		if (j) {
			json_t *s = json_stringn(r->acc.len ?
						 (char *)r->acc.data : "",
						 r->acc.len);

			if (s) { /* valid UTF-8 */
				json_object_set_new(j, "output", s);
				json_object_set_new(j, "output_encoding",
						    json_string("utf-8"));
			} else {
				char *b = nd_base64(r->acc.data, r->acc.len);

				json_object_set_new(j, "output",
						    json_string(b ? b : ""));
				json_object_set_new(j, "output_encoding",
						    json_string("base64"));
				free(b);
			}
		}
		json_decref(r->json);
		r->json = j;
		return;
	default:
		if (f->kind == NODED__FRAME_KIND__STREAM_END && r->json) {
			json_t *rec = r->json;

			r->json = NULL; /* given away: r may be freed after */
			nd_http_json(r, 200, rec, NULL);
		} else {
			unexpected(r);
		}
	}
}

static void on_output(struct req *r, const Noded__Frame *f)
{
	if (!r->streaming && f->body_case == NODED__FRAME__BODY_ERROR) {
		error_reply(r, f);
		return;
	}
	if (!r->streaming)
		nd_http_stream_start(r, "application/octet-stream");
	if (f->body_case == NODED__FRAME__BODY_OUTPUT)
		nd_http_stream_data(r, f->output->data.data,
				    f->output->data.len);
	if (f->kind == NODED__FRAME_KIND__STREAM_END)
		nd_http_stream_end(r);
}

static void watch(struct req *r, uint64_t id, bool follow,
		  void (*on_frame)(struct req *, const Noded__Frame *))
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__WatchRequest w = NODED__WATCH_REQUEST__INIT;

	w.task_id = id;
	w.follow = follow;
	f.body_case = NODED__FRAME__BODY_WATCH;
	f.watch = &w;
	if (follow)
		nd_svc_peer(r->conn)->watched = true;
	call(r, &f, on_frame);
}

/* ---- DELETE /v1/tasks/ID ---- */

static void on_cancelled(struct req *r, const Noded__Frame *f)
{
	if (error_reply(r, f))
		return;
	if (f->body_case != NODED__FRAME__BODY_TASK_RECORD) {
		unexpected(r);
		return;
	}
	nd_http_json(r, 200, nd_json_task(f->task_record), NULL);
}

static void cancel(struct req *r, uint64_t id)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__TaskQuery q = NODED__TASK_QUERY__INIT;

	q.id = id;
	f.body_case = NODED__FRAME__BODY_CANCEL_TASK;
	f.cancel_task = &q;
	call(r, &f, on_cancelled);
}

/* ---- nodes ---- */

static void on_nodes(struct req *r, const Noded__Frame *f)
{
	const Noded__NodeList *nl = f->node_list;
	json_t *a;

	if (error_reply(r, f))
		return;
	if (f->body_case != NODED__FRAME__BODY_NODE_LIST) {
		unexpected(r);
		return;
	}
	if (r->name[0]) {
		for (size_t i = 0; i < nl->n_nodes; i++)
			if (!strcmp(nl->nodes[i]->name, r->name)) {
				nd_http_json(r, 200,
					     nd_json_node(nl->nodes[i]), NULL);
				return;
			}
		nd_http_error(r, 404, "no node named '%s'", r->name);
		return;
	}
	a = json_array();
	for (size_t i = 0; a && i < nl->n_nodes; i++)
		if (json_array_append_new(a, nd_json_node(nl->nodes[i]))) {
			json_decref(a);
			a = NULL;
		}
	nd_http_json(r, 200, a ? json_pack("{s:o}", "nodes", a) : NULL, NULL);
}

static void nodes(struct req *r)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__NodeListRequest lr = NODED__NODE_LIST_REQUEST__INIT;

	f.body_case = NODED__FRAME__BODY_LIST_NODES;
	f.list_nodes = &lr;
	call(r, &f, on_nodes);
}

/* ---- the cluster ---- */

static json_t *member_json(const Noded__RaftMember *m, uint64_t leader)
{
	return json_pack("{s:I, s:s, s:s, s:s, s:b, s:b}",
			 "id", (json_int_t)m->id,
			 "raft_address", m->raft_address,
			 "client_address", m->client_address,
			 "http_address", m->http_address,
			 "voter", (int)m->voter, "leader", m->id == leader);
}

/* GET /v1/status/leader: who leads as this master knows it (a follower
 * answers too); /v1/operator/raft/peers: the members (as the leader's
 * ledger has them, so a follower redirects there). */
static void on_leader(struct req *r, const Noded__Frame *f)
{
	const Noded__LeaderInfo *li = f->leader_info;
	json_t *a;

	if (error_reply(r, f))
		return;
	if (f->body_case != NODED__FRAME__BODY_LEADER_INFO) {
		unexpected(r);
		return;
	}
	if (r->route == ND_ROUTE_STATUS_LEADER) {
		nd_http_json(r, 200, json_pack(
			"{s:b, s:b, s:I, s:I, s:s, s:s, s:I, s:I}",
			"replicated", (int)li->replicated,
			"is_leader", (int)li->is_leader,
			"self_id", (json_int_t)li->self_id,
			"leader_id", (json_int_t)li->leader_id,
			"leader_address", li->leader_address,
			"leader_http", li->leader_http,
			"term", (json_int_t)li->term,
			"commit_index", (json_int_t)li->commit_index), NULL);
		return;
	}
	if (li->replicated && !li->is_leader) {
		char loc[2600];

		if (!li->leader_http[0]) {
			nd_http_error(r, 503, "this master does not lead and "
				      "knows of no leader with an HTTP API");
			return;
		}
		snprintf(loc, sizeof(loc), "Location: http://%s%s\r\n",
			 li->leader_http, r->url);
		nd_http_reply(r, 307, "text/plain; charset=utf-8", "", 0, loc);
		return;
	}
	a = json_array();
	for (size_t i = 0; a && i < li->n_members; i++)
		if (json_array_append_new(a, member_json(li->members[i],
							 li->leader_id))) {
			json_decref(a);
			a = NULL;
		}
	nd_http_json(r, 200, a ? json_pack("{s:o}", "peers", a) : NULL, NULL);
}

static void leader(struct req *r)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__LeaderRequest lr = NODED__LEADER_REQUEST__INIT;

	f.body_case = NODED__FRAME__BODY_LEADER;
	f.leader = &lr;
	call(r, &f, on_leader);
}

/* ---- a node's lifecycle ---- */

/* The reply of drain and eligible: the node. */
static void on_node(struct req *r, const Noded__Frame *f)
{
	if (error_reply(r, f))
		return;
	if (f->body_case != NODED__FRAME__BODY_NODE_LIST ||
	    f->node_list->n_nodes != 1) {
		unexpected(r);
		return;
	}
	nd_http_json(r, 200, nd_json_node(f->node_list->nodes[0]), NULL);
}

static void on_removed(struct req *r, const Noded__Frame *f)
{
	if (error_reply(r, f))
		return;
	if (f->body_case != NODED__FRAME__BODY_ACK) {
		unexpected(r);
		return;
	}
	nd_http_json(r, 200, json_pack("{s:o}", "removed",
				       nd_json_text(r->name)), NULL);
}

/* The deadline of a drain from its body: none (no body, or no
 * "deadline_s"), or seconds from now (a number from 0 to a year). NULL,
 * or why it is refused (in buf). */
static const char *drain_body(struct req *r, Noded__NodeDrainRequest *dr,
			      char *buf, size_t len)
{
	json_error_t err;
	const char *k;
	json_t *j, *v;
	double s;

	if (!r->body.len)
		return NULL;
	j = json_loadb((const char *)r->body.data, r->body.len,
		       JSON_REJECT_DUPLICATES, &err);
	if (!j) {
		snprintf(buf, len, "bad JSON: %s (line %d, column %d)",
			 err.text, err.line, err.column);
		return buf;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		return "the body must be a JSON object";
	}
	json_object_foreach(j, k, v) {
		if (strcmp(k, "deadline_s")) {
			json_decref(j);
			return "unknown field in a drain (want deadline_s)";
		}
		s = json_number_value(v);
		if (!json_is_number(v) || !(s >= 0) || s > 365.0 * 86400) {
			json_decref(j);
			return "deadline_s must be a number of seconds from 0 "
			       "to 31536000";
		}
		dr->with_deadline = true;
		dr->deadline_ms = (uint64_t)llround(s * 1000);
	}
	json_decref(j);
	return NULL;
}

/* POST /v1/nodes/NAME/drain, /eligible (action), DELETE /v1/nodes/NAME
 * (action ""); r->name is the node. */
static void node_action(struct req *r, const char *action)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__NodeDrainRequest dr = NODED__NODE_DRAIN_REQUEST__INIT;
	Noded__NodeName nn = NODED__NODE_NAME__INIT;
	const char *why;
	char buf[256];

	nn.name = dr.name = r->name;
	if (!strcmp(action, "drain")) {
		why = drain_body(r, &dr, buf, sizeof(buf));
		if (why) {
			nd_http_error(r, 400, "%s", why);
			return;
		}
		f.body_case = NODED__FRAME__BODY_NODE_DRAIN;
		f.node_drain = &dr;
		call(r, &f, on_node);
	} else if (!strcmp(action, "eligible")) {
		f.body_case = NODED__FRAME__BODY_NODE_ELIGIBLE;
		f.node_eligible = &nn;
		call(r, &f, on_node);
	} else {
		f.body_case = NODED__FRAME__BODY_NODE_REMOVE;
		f.node_remove = &nn;
		call(r, &f, on_removed);
	}
}

/* ---- routing ---- */

static bool method_ok(struct req *r, const char *allow, unsigned m1, int m2)
{
	char hdr[64];

	if (r->method == m1 || (m2 >= 0 && r->method == (unsigned)m2))
		return true;
	snprintf(hdr, sizeof(hdr), "Allow: %s\r\n", allow);
	r->route = ND_ROUTE_OTHER;
	nd_http_json(r, 405, json_pack("{s:s}", "error",
				       "method not allowed here"), hdr);
	return false;
}

/* "/v1/tasks/ID[/rest]": the id and what follows it ("" or "/output"). */
static bool task_path(const char *p, uint64_t *id, const char **rest)
{
	char num[24];
	size_t n = strcspn(p, "/");

	if (!n || n >= sizeof(num))
		return false;
	memcpy(num, p, n);
	num[n] = '\0';
	*rest = p + n;
	return parse_u64(num, id) && *id;
}

void nd_api_route(struct req *r)
{
	struct http_parser_url u;
	char path[2048], q[2048] = "", buf[16];
	const char *rest;
	uint64_t id;

	http_parser_url_init(&u);
	if (http_parser_parse_url(r->url, r->url_len, 0, &u) ||
	    !(u.field_set & (1 << UF_PATH))) {
		nd_http_error(r, 400, "bad request target");
		return;
	}
	memcpy(path, r->url + u.field_data[UF_PATH].off,
	       u.field_data[UF_PATH].len);
	path[u.field_data[UF_PATH].len] = '\0';
	if (u.field_set & (1 << UF_QUERY)) {
		memcpy(q, r->url + u.field_data[UF_QUERY].off,
		       u.field_data[UF_QUERY].len);
		q[u.field_data[UF_QUERY].len] = '\0';
	}
	if (!strcmp(path, "/healthz")) {
		r->route = ND_ROUTE_HEALTHZ;
		if (method_ok(r, "GET", HTTP_GET, -1) && query_ok(r, q, NULL))
			nd_http_json(r, 200, json_pack("{s:s}", "status", "ok"),
				     NULL);
		return;
	}
	if (!nd_http_authorized(r)) {
		const char *peer = nd_svc_peer(r->conn)->peer;
		uint64_t suppressed, others;

		if (nd_log_on(ND_LOG_WARN) &&
		    nd_log_limit(peer, r->conn->shard->now_ms, &suppressed,
				 &others))
			ND_LOG(ND_LOG_WARN, "auth.refused", ND_S("peer", peer),
			       ND_S("api", "http"),
			       ND_S("err", r->auth_len ? "wrong token" :
					   "no Authorization header"),
			       ND_U("suppressed", suppressed),
			       ND_U("suppressed_others", others),
			       ND_S("msg", "refused authentication: 401"));
		nd_http_json(r, 401, json_pack("{s:s}", "error",
			     "missing or wrong token (Authorization: Bearer "
			     "TOKEN, the master's --token-file)"),
			     "WWW-Authenticate: Bearer\r\n");
		return;
	}
	if (!strcmp(path, "/metrics")) {
		r->route = ND_ROUTE_METRICS;
		if (method_ok(r, "GET", HTTP_GET, -1) && query_ok(r, q, NULL) &&
		    nd__http_acl_allows(r, NULL))
			nd_api_metrics(r);
		return;
	}
	if (!strcmp(path, "/v1/tasks") || !strcmp(path, "/tasks")) {
		bool legacy = path[1] == 't';

		if (r->method == HTTP_GET && !legacy) {
			r->route = ND_ROUTE_TASK_LIST;
			list(r, q);
			return;
		}
		r->route = legacy ? ND_ROUTE_LEGACY_SUBMIT :
				    ND_ROUTE_TASK_SUBMIT;
		if (method_ok(r, legacy ? "POST" : "GET, POST", HTTP_POST,
			      -1) && query_ok(r, q, NULL))
			submit(r);
		return;
	}
	if (!strncmp(path, "/v1/tasks/", 10) &&
	    task_path(path + 10, &id, &rest)) {
		if (!*rest) {
			if (r->method == HTTP_DELETE) {
				r->route = ND_ROUTE_TASK_CANCEL;
				if (query_ok(r, q, NULL))
					cancel(r, id);
				return;
			}
			r->route = ND_ROUTE_TASK_GET;
			if (method_ok(r, "GET, DELETE", HTTP_GET, -1) &&
			    query_ok(r, q, NULL))
				watch(r, id, false, on_task);
			return;
		}
		if (!strcmp(rest, "/output")) {
			static const char *const params[] = { "follow", NULL };
			const char *fl;

			r->route = ND_ROUTE_TASK_OUTPUT;
			if (!method_ok(r, "GET", HTTP_GET, -1) ||
			    !query_ok(r, q, params))
				return;
			fl = query_get(q, "follow", buf, sizeof(buf));
			if (fl && strcmp(fl, "") && strcmp(fl, "0") &&
			    strcmp(fl, "1") && strcmp(fl, "false") &&
			    strcmp(fl, "true")) {
				nd_http_error(r, 400, "follow must be 1, true, "
					      "0 or false");
				return;
			}
			watch(r, id, fl && strcmp(fl, "0") &&
				     strcmp(fl, "false"), on_output);
			return;
		}
	}
	if (!strcmp(path, "/v1/status/leader") ||
	    !strcmp(path, "/v1/operator/raft/peers")) {
		r->route = path[4] == 's' ? ND_ROUTE_STATUS_LEADER :
					    ND_ROUTE_RAFT_PEERS;
		if (!method_ok(r, "GET", HTTP_GET, -1) ||
		    !query_ok(r, q, NULL))
			return;
		leader(r);
		return;
	}
	if (!strcmp(path, "/v1/nodes") || !strncmp(path, "/v1/nodes/", 10)) {
		char *name = path[9] ? path + 10 : "";
		const char *action = NULL;
		char *slash = strrchr(name, '/');

		/* NAME/drain, NAME/eligible (a '/' in a name is %2F) */
		if (slash && (!strcmp(slash, "/drain") ||
			      !strcmp(slash, "/eligible"))) {
			action = slash + 1;
			*slash = '\0';
			r->route = action[0] == 'd' ? ND_ROUTE_NODE_DRAIN :
						      ND_ROUTE_NODE_ELIGIBLE;
			if (!method_ok(r, "POST", HTTP_POST, -1))
				return;
		} else if (*name && r->method == HTTP_DELETE) {
			action = "";
			r->route = ND_ROUTE_NODE_REMOVE;
		} else {
			r->route = *name ? ND_ROUTE_NODE_GET :
					   ND_ROUTE_NODE_LIST;
			if (!method_ok(r, *name ? "GET, DELETE" : "GET",
				       HTTP_GET, -1))
				return;
		}
		if (!query_ok(r, q, NULL))
			return;
		if (action && (!*name || strchr(name, '/'))) {
			nd_http_error(r, 404, "no such path: %s", r->url);
			return;
		}
		if (strlen(name) >= sizeof(r->name)) {
			nd_http_error(r, 404, "no node has a name that long");
			return;
		}
		strcpy(r->name, name);
		unescape(r->name);
		if (path[9] && !*name) {
			nd_http_error(r, 404, "no such path: %s", path);
			return;
		}
		if (action)
			node_action(r, action);
		else
			nodes(r);
		return;
	}
	nd_http_error(r, 404, "no such path: %s", path);
}
