/*
 * Internal to the HTTP API: the connection and request state (http.c) and
 * the routes (routes.c) and metrics (metrics.c) that answer requests.
 */
#ifndef ND_API_API_H
#define ND_API_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>
#include <jansson.h>

#include "core/buf.h"
#include "core/conn.h"
#include "core/metrics.h"
#include "node/service.h"
#include "noded/wire.h"

/* What the HTTP metrics count requests by. */
enum nd_route {
	ND_ROUTE_HEALTHZ,
	ND_ROUTE_METRICS,
	ND_ROUTE_TASK_SUBMIT,
	ND_ROUTE_TASK_LIST,
	ND_ROUTE_TASK_GET,
	ND_ROUTE_TASK_OUTPUT,
	ND_ROUTE_TASK_CANCEL,
	ND_ROUTE_NODE_LIST,
	ND_ROUTE_NODE_GET,
	ND_ROUTE_LEGACY_SUBMIT,
	ND_ROUTE_NODE_DRAIN,
	ND_ROUTE_NODE_ELIGIBLE,
	ND_ROUTE_NODE_REMOVE,
	ND_ROUTE_STATUS_LEADER,
	ND_ROUTE_RAFT_PEERS,
	ND_ROUTE_OTHER,                 /* 404, 405 and unparsable requests */
	ND_ROUTES
};

/* The statuses the API answers, counted per route (metrics.c). */
#define ND_HTTP_CODES 16
extern const uint16_t nd_http_codes[ND_HTTP_CODES];
unsigned nd_http_code_index(unsigned status);

/*
 * The API's counters on one shard, written by that shard's thread only
 * (as struct nd_metrics is): nd_shard.api, allocated by the first
 * request the shard answers, freed with the shard.
 */
struct nd_http_metrics {
	uint64_t requests[ND_ROUTES][ND_HTTP_CODES];
	struct nd_hist latency[ND_ROUTES];
};

struct http_conn;

/* One request, from its first byte until its response has left. */
struct req {
	struct nd_list link;          /* http_conn.reqs, in arrival order */
	struct nd_conn *conn;
	struct http_conn *hc;
	uint64_t id;                  /* its service calls' frame id */
	uint64_t t0_ns;
	enum nd_route route;
	unsigned method;              /* enum http_method */
	unsigned status;              /* of the response */
	char url[2048];
	size_t url_len;
	char auth[512];               /* the Authorization header */
	size_t auth_len;
	char idem[256];               /* the Idempotency-Key header */
	size_t idem_len;
	struct nd_buf body;
	bool close, chunked, has_length;
	bool too_large, oversized_header;
	bool bad_version;             /* not HTTP/1.x: 505 */
	bool head;                    /* first in the queue: writes go out */
	bool waiting;                 /* a service call is under way */
	bool streaming;               /* chunked response started */
	bool complete;                /* the whole response is written */
	bool failed;                  /* out of memory: the connection ends */
	struct nd_buf out;            /* response held until we are head */
	/* The route's reply handler and what it gathers. */
	void (*on_frame)(struct req *r, const Noded__Frame *f);
	struct nd_buf acc;            /* output gathered for GET /v1/tasks/ID */
	json_t *json;
	char name[256];               /* GET /v1/nodes/NAME */
};

struct http_conn {
	struct nd_svc_peer sp;        /* first: the service's view of us */
	struct nd_conn *conn;
	http_parser parser;
	struct req *cur;              /* being parsed */
	struct nd_list reqs;
	unsigned nreqs;
	uint64_t next_id;
	size_t header_bytes;
	char field[32];               /* the header name being read */
	size_t field_len;
	bool in_value, is_auth, is_idem;
	bool held;                    /* input held: too many queued */
	bool in_data;                 /* inside http_parser_execute */
	bool failed;                  /* answered an unparsable request */
	char first[4];                /* the connection's first bytes (to */
	unsigned first_len;           /* tell HTTP/2's preface: "PRI ") */
	size_t out_held;              /* bytes of req.out over all requests */
};

/* Routes a parsed request (routes.c). */
void nd_api_route(struct req *r);
/* Fills sp (its command set by the caller) from the JSON body j of POST
 * /v1/tasks and checks it as the master will: NULL, or what is wrong
 * (static, or formatted into why_buf) (task_json.c). */
const char *nd__api_spec_from_json(struct req *r, json_t *j,
				   Noded__TaskSpec *sp, char *why_buf,
				   size_t why_size);
/* GET /metrics (metrics.c). */
void nd_api_metrics(struct req *r);
/* Appends the process_* families and noded_build_info to a /metrics text
 * (metrics_process.c). */
void nd__metrics_process(FILE *f);

/* Whole responses; each completes r. extra: more header lines or NULL. */
void nd_http_reply(struct req *r, unsigned status, const char *ctype,
		   const void *body, size_t len, const char *extra);
/* Steals j (a NULL j answers 500). */
void nd_http_json(struct req *r, unsigned status, json_t *j,
		  const char *extra);
void nd_http_error(struct req *r, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A chunked response: start, data..., end (completes r). */
void nd_http_stream_start(struct req *r, const char *ctype);
void nd_http_stream_data(struct req *r, const void *p, size_t n);
void nd_http_stream_end(struct req *r);

/* Sends f (id and kind are set here) to the node service; its replies go to
 * r->on_frame. 0 (also when the --acl policy refused it: answered 403)
 * or -ENOMEM. */
int nd_http_call(struct req *r, Noded__Frame *f);
/* Does the --acl policy (rpc/acl.h) let r's peer make the call f (NULL:
 * GET /metrics, node.read)? false after answering 403 naming the action. */
bool nd__http_acl_allows(struct req *r, const Noded__Frame *f);

/* Does r carry the master's token, when one is required? */
bool nd_http_authorized(const struct req *r);
/* Standard base64 of p[0..n), NUL-terminated; NULL when out of memory. */
char *nd_base64(const uint8_t *p, size_t n);

#endif
