/*
 * HTTP/1.1 on a transport connection: libhttp-parser reads requests, each
 * becomes a `struct req` in the connection's ordered list, and a response
 * leaves once every response before it has. Routes that need the node
 * service (src/node) send it a native request frame (nd_svc_forward); its
 * reply frames come back through http_deliver and are turned into JSON by
 * the route's handler. See api/http.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "api/api.h"
#include "api/http.h"
#include "tls/conn_tls.h"
#include "core/log.h"
#include "core/server.h"
#include "node/service.h"
#include "noded/json.h"
#include "rpc/acl.h"

/* Requests queued on one connection before its input is held. */
#define MAX_QUEUED 64
/* Header bytes (request line included) before 431. */
#define MAX_HEADER (16 * 1024)

static const struct http_parser_settings settings;

static struct http_conn *hc_of(struct nd_conn *c)
{
	return nd_conn_state(c);
}

/* ---- responses ---- */

static const char *reason(unsigned status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 307: return "Temporary Redirect";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/*
 * Output of a connection against --max-output: what the transport has
 * queued plus the responses held behind the head of the queue. Over it no
 * more requests are parsed; the transport itself stops reading, and drops
 * the connection after --stall-timeout, when its own queue is over.
 */
static bool over_output(const struct http_conn *hc)
{
	return nd_conn_queued(hc->conn) + hc->out_held >
	       hc->conn->shard->cfg->max_output;
}

/* Where a request's response goes now: straight out when it is the head of
 * the queue, else into its own buffer until it is. */
static void emit(struct req *r, const void *p, size_t n)
{
	if (r->failed)
		return;
	if (r->head) {
		nd_conn_write(r->conn, p, n);
		return;
	}
	if (nd_buf_append(&r->out, p, n))
		r->failed = true; /* out of memory: the connection ends */
	else
		r->hc->out_held += n;
}

static void metrics_count(struct req *r, unsigned status)
{
	struct nd_shard *s = r->conn->shard;
	struct nd_http_metrics *m = s->api;
	uint64_t took = nd_mono_ns() - r->t0_ns;

	if (!m)
		m = s->api = calloc(1, sizeof(*m));
	if (m) { /* else out of memory: this one is not counted */
		m->requests[r->route][nd_http_code_index(status)]++;
		nd_hist_add(&m->latency[r->route], took);
	}
	/* the access log: per request, so debug only */
	ND_LOG(ND_LOG_DEBUG, "http.request",
	       ND_S("peer", nd_svc_peer(r->conn)->peer),
	       ND_S("method", http_method_str((enum http_method)r->method)),
	       ND_S("path", r->url), ND_U("status", status),
	       ND_DUR("took_s", took));
}

/* The status line and headers; a body of body_len follows, or chunks when
 * body_len is CHUNKED. */
#define CHUNKED ((size_t)-1)

static void head(struct req *r, unsigned status, const char *ctype,
		 size_t body_len, const char *extra)
{
	char h[512], len[64];
	int n;

	r->status = status;
	if (body_len == CHUNKED)
		snprintf(len, sizeof(len), "Transfer-Encoding: chunked");
	else
		snprintf(len, sizeof(len), "Content-Length: %zu", body_len);
	n = snprintf(h, sizeof(h),
		     "HTTP/1.1 %u %s\r\nContent-Type: %s\r\n%s%s%s\r\n\r\n",
		     status, reason(status), ctype, extra ? extra : "",
		     r->close ? "Connection: close\r\n" : "", len);
	emit(r, h, (size_t)n < sizeof(h) ? (size_t)n : sizeof(h) - 1);
}

static void done(struct req *r);

void nd_http_reply(struct req *r, unsigned status, const char *ctype,
		   const void *body, size_t len, const char *extra)
{
	head(r, status, ctype, len, extra);
	emit(r, body, len);
	done(r);
}

void nd_http_json(struct req *r, unsigned status, json_t *j,
		  const char *extra)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (!s) {
		static const char oom[] = "{\"error\":\"out of memory\"}\n";

		nd_http_reply(r, 500, "application/json", oom, sizeof(oom) - 1,
			      NULL);
		return;
	}
	{
		size_t n = strlen(s);

		s[n] = '\n'; /* replaces the terminator; length is known */
		nd_http_reply(r, status, "application/json", s, n + 1, extra);
	}
	free(s);
}

void nd_http_error(struct req *r, unsigned status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* (msg may quote bytes that are not UTF-8, or be cut inside a
	 * character: its readable form is always a JSON string) */
	nd_http_json(r, status, json_pack("{s:o}", "error", nd_json_text(msg)),
		     NULL);
}

void nd_http_stream_start(struct req *r, const char *ctype)
{
	head(r, 200, ctype, CHUNKED, NULL);
	r->streaming = true;
}

void nd_http_stream_data(struct req *r, const void *p, size_t n)
{
	char h[24];
	int hn;

	if (!n)
		return;
	hn = snprintf(h, sizeof(h), "%zx\r\n", n);
	emit(r, h, (size_t)hn);
	emit(r, p, n);
	emit(r, "\r\n", 2);
}

void nd_http_stream_end(struct req *r)
{
	emit(r, "0\r\n\r\n", 5);
	done(r);
}

/* ---- the request queue ---- */

static void req_free(struct req *r)
{
	r->hc->out_held -= r->out.len;
	nd_list_del(&r->link);
	nd_buf_free(&r->body);
	nd_buf_free(&r->out);
	nd_buf_free(&r->acc);
	json_decref(r->json);
	free(r);
}

/* Takes requests again once few are queued and output is under the limit
 * (else asks the transport to call http_drained when it has sent some). */
static void release(struct http_conn *hc)
{
	if (!hc->held || hc->in_data || hc->nreqs >= MAX_QUEUED / 2)
		return;
	if (over_output(hc)) {
		nd_conn_want_drain(hc->conn);
		return;
	}
	hc->held = false;
	nd_conn_hold(hc->conn, false);
}

/* Moves the responses that are complete off the head of the queue. */
static void advance(struct http_conn *hc)
{
	struct nd_conn *c = hc->conn;

	while (!nd_list_empty(&hc->reqs)) {
		struct req *r = nd_container_of(hc->reqs.next, struct req, link);

		if (!r->head) {
			r->head = true;
			nd_conn_write(c, r->out.data, r->out.len);
			hc->out_held -= r->out.len;
			nd_buf_free(&r->out);
			nd_conn_check_output(c);
		}
		if (r->failed) {
			nd_conn_close(c, false);
			return;
		}
		if (!r->complete)
			return;
		if (r->close) {
			nd_conn_close(c, true);
			return;
		}
		req_free(r);
		hc->nreqs--;
	}
	nd_conn_check_output(c);
	release(hc);
}

/* The response of r is complete. */
static void done(struct req *r)
{
	if (r->complete)
		return;
	r->complete = true;
	metrics_count(r, r->status);
	if (r->head)
		advance(r->hc);
}

/* ---- the service ---- */

/* Who sent r, for the policy. */
static void http_who(const struct req *r, struct nd_acl_who *who)
{
	memset(who, 0, sizeof(*who));
	who->role = nd_conn_tls_peer(r->conn, &who->name);
	who->token = r->conn->shard->cfg->token && nd_http_authorized(r);
}

bool nd__http_acl_allows(struct req *r, const Noded__Frame *f)
{
	struct nd_acl_who who;
	char why[512];
	int ret;

	http_who(r, &who);
	ret = f ? nd_acl_gate(&who, f, nd_svc_peer(r->conn)->peer, "http",
			      r->conn->shard->now_ms, why, sizeof(why)) :
		  nd_acl_gate_action(&who, ND_ACL_NODE_READ, "metrics",
				     nd_svc_peer(r->conn)->peer, "http",
				     r->conn->shard->now_ms, why,
				     sizeof(why));
	if (!ret)
		return true;
	nd_http_error(r, ret == -EACCES ? 403 : 503, "%s", why);
	return false;
}

int nd_http_call(struct req *r, Noded__Frame *f)
{
	size_t n;
	uint8_t *body;
	int ret;

	/* the same policy as the native protocol's (rpc/acl.h) */
	if (!nd__http_acl_allows(r, f))
		return 0; /* answered 403 */
	f->id = r->id;
	f->kind = NODED__FRAME_KIND__REQUEST;
	n = noded__frame__get_packed_size(f);
	body = malloc(n ? n : 1);
	if (!body)
		return -ENOMEM;
	noded__frame__pack(f, body);
	nd_buf_free(&r->body); /* packed: no longer needed */
	r->waiting = true; /* the reply may come before the call returns */
	ret = nd_svc_forward(r->conn, NULL, body, n);
	free(body);
	if (ret)
		r->waiting = false;
	return ret;
}

/* Frames from the service: each goes to the request whose id it carries. */
static void http_deliver(struct nd_conn *c, const uint8_t *p, size_t len)
{
	struct http_conn *hc = hc_of(c);
	size_t off = 0, need;
	int64_t n;

	while (off < len) {
		Noded__Frame *f;
		struct nd_list *l;
		struct req *r = NULL;

		n = nd_frame_peek(p + off, len - off, UINT32_MAX, &need);
		if (n <= 0 || need > len - off)
			return;
		f = nd_frame_decode(p + off + ND_FRAME_HDR, (size_t)n,
				    &c->shard->arena.pc);
		off += need;
		if (!f)
			continue;
		for (l = hc->reqs.next; l != &hc->reqs; l = l->next) {
			struct req *q = nd_container_of(l, struct req, link);

			if (q->id == f->id) {
				r = q;
				break;
			}
		}
		if (r && r->waiting && !r->complete)
			r->on_frame(r, f);
	}
	if (nd_conn_queued(c) > c->shard->cfg->max_output / 2)
		nd_svc_congested(c, true);
}

/* ---- parsing ---- */

static struct req *cur(http_parser *p)
{
	return ((struct http_conn *)p->data)->cur;
}

static int on_begin(http_parser *p)
{
	struct http_conn *hc = p->data;
	struct req *r = calloc(1, sizeof(*r));

	if (!r)
		return -1;
	r->conn = hc->conn;
	r->hc = hc;
	r->id = ++hc->next_id;
	r->route = ND_ROUTE_OTHER;
	r->t0_ns = nd_mono_ns();
	nd_list_add_tail(&hc->reqs, &r->link);
	hc->nreqs++;
	hc->cur = r;
	/* the request line and headers must be whole in time, however
	 * slowly they trickle */
	nd_conn_deadline(hc->conn, hc->conn->shard->cfg->handshake_timeout_ms);
	hc->header_bytes = 0;
	hc->field_len = 0;
	hc->in_value = false;
	if (hc->reqs.next == &r->link)
		r->head = true;
	return 0;
}

static int count_header(struct http_conn *hc, size_t n)
{
	hc->header_bytes += n;
	if (hc->header_bytes > MAX_HEADER) {
		hc->cur->oversized_header = true;
		return -1;
	}
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct http_conn *hc = p->data;
	struct req *r = cur(p);

	if (count_header(hc, n))
		return -1;
	/* The request line ended right after the target: HTTP/0.9 (the
	 * parser says so before it hands over the target's last piece). */
	if (p->http_major == 0 && p->http_minor == 9) {
		r->bad_version = true;
		return -1;
	}
	if (r->url_len + n >= sizeof(r->url)) {
		r->oversized_header = true;
		return -1;
	}
	memcpy(r->url + r->url_len, at, n);
	r->url_len += n;
	r->url[r->url_len] = '\0';
	return 0;
}

/* Header names and values arrive in pieces; only Authorization and
 * Idempotency-Key matter. */
static int on_field(http_parser *p, const char *at, size_t n)
{
	struct http_conn *hc = p->data;

	if (count_header(hc, n))
		return -1;
	if (hc->in_value) {
		hc->in_value = false;
		hc->field_len = 0;
	}
	if (hc->field_len + n < sizeof(hc->field)) {
		memcpy(hc->field + hc->field_len, at, n);
		hc->field_len += n;
	} else {
		hc->field_len = sizeof(hc->field); /* too long: not ours */
	}
	return 0;
}

static int on_value(http_parser *p, const char *at, size_t n)
{
	struct http_conn *hc = p->data;
	struct req *r = cur(p);

	if (count_header(hc, n))
		return -1;
	if (!hc->in_value) {
		hc->in_value = true;
		hc->is_auth = hc->field_len == 13 &&
			      !strncasecmp(hc->field, "authorization", 13);
		if (hc->is_auth)
			r->auth_len = 0;
		hc->is_idem = hc->field_len == 15 &&
			      !strncasecmp(hc->field, "idempotency-key", 15);
		if (hc->is_idem)
			r->idem_len = 0;
	}
	if (hc->is_idem) {
		if (r->idem_len + n >= sizeof(r->idem)) {
			r->idem_len = sizeof(r->idem); /* too long: refused */
		} else {
			memcpy(r->idem + r->idem_len, at, n);
			r->idem_len += n;
			r->idem[r->idem_len] = '\0';
		}
	}
	if (hc->is_auth) {
		if (r->auth_len + n >= sizeof(r->auth)) {
			r->auth_len = sizeof(r->auth); /* too long: wrong */
		} else {
			memcpy(r->auth + r->auth_len, at, n);
			r->auth_len += n;
			r->auth[r->auth_len] = '\0';
		}
	}
	return 0;
}

static int on_headers(http_parser *p)
{
	struct http_conn *hc = p->data;
	struct req *r = cur(p);
	uint64_t max = hc->conn->shard->cfg->http_max_body;

	if (p->http_major != 1) { /* HTTP/2.0 and later in a request line */
		r->bad_version = true;
		return -1;
	}
	r->method = p->method;
	r->close = !http_should_keep_alive(p);
	r->chunked = p->flags & F_CHUNKED;
	r->has_length = p->flags & F_CONTENTLENGTH;
	if (r->has_length && p->content_length > max) {
		/* Refused before reading it; the connection ends after. */
		r->too_large = true;
		return -1;
	}
	/* the body, like a native frame, within --idle-timeout */
	nd_conn_deadline(hc->conn, hc->conn->shard->cfg->idle_timeout_ms);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct http_conn *hc = p->data;
	struct req *r = cur(p);

	if (r->body.len + n > hc->conn->shard->cfg->http_max_body) {
		r->too_large = true;
		return -1;
	}
	if (nd_buf_append(&r->body, at, n))
		return -1;
	return 0;
}

static int on_complete(http_parser *p)
{
	struct http_conn *hc = p->data;
	struct req *r = cur(p);

	hc->cur = NULL;
	nd_conn_deadline(hc->conn, 0);
	/* A worker's certificate reads, never changes (tls/tls.h). */
	if (nd_conn_tls_peer(hc->conn, NULL) == ND_TLS_ROLE_WORKER &&
	    r->method != HTTP_GET)
		nd_http_error(r, 403, "permission denied: a worker "
			      "certificate may only GET");
	else
		nd_api_route(r); /* r may be answered and freed by now */
	/* Stop after each message while too many are queued, or while the
	 * responses are over the output limit. */
	if (hc->nreqs >= MAX_QUEUED || over_output(hc))
		http_parser_pause(p, 1);
	return 0;
}

static const struct http_parser_settings settings = {
	.on_message_begin = on_begin,
	.on_url = on_url,
	.on_header_field = on_field,
	.on_header_value = on_value,
	.on_headers_complete = on_headers,
	.on_body = on_body,
	.on_message_complete = on_complete,
};

/* A request that could not be parsed: answer it, then close. */
static void parse_failed(struct http_conn *hc)
{
	struct req *r = hc->cur;
	enum http_errno e = HTTP_PARSER_ERRNO(&hc->parser);

	hc->failed = true;
	if (!r) { /* between messages: make one to carry the answer */
		if (on_begin(&hc->parser))
			goto kill;
		r = hc->cur;
	}
	hc->cur = NULL;
	r->close = true;
	nd_buf_free(&r->body);
	if (r->too_large)
		nd_http_error(r, 413, "request body over %" PRIu64 " bytes "
			      "(--http-max-body)",
			      hc->conn->shard->cfg->http_max_body);
	else if (r->oversized_header || e == HPE_HEADER_OVERFLOW)
		nd_http_error(r, 431, "request line and headers over %d bytes",
			      MAX_HEADER);
	else if (e == HPE_INVALID_VERSION || r->bad_version ||
		 (e == HPE_INVALID_METHOD && hc->first_len == 4 &&
		  !memcmp(hc->first, "PRI ", 4)))
		/* HTTP/2's preface starts "PRI * HTTP/2.0", a method this
		 * parser does not know */
		nd_http_error(r, 505, "only HTTP/1.x is served (not HTTP/0.9 "
			      "nor HTTP/2)");
	else
		nd_http_error(r, 400, "malformed HTTP request: %s",
			      http_errno_description(e));
	return;
kill:
	nd_conn_close(hc->conn, false);
}

static size_t http_data(struct nd_conn *c, const uint8_t *p, size_t len)
{
	struct http_conn *hc = hc_of(c);
	size_t n;

	if (hc->failed)
		return len; /* answered and closing: the rest is ignored */
	for (n = 0; hc->first_len < sizeof(hc->first) && n < len; n++)
		hc->first[hc->first_len++] = (char)p[n];
	hc->in_data = true;
	n = http_parser_execute(&hc->parser, &settings, (const char *)p, len);
	hc->in_data = false;
	switch (HTTP_PARSER_ERRNO(&hc->parser)) {
	case HPE_OK:
		if (hc->parser.upgrade) {
			hc->failed = true;
			nd_conn_close(c, false);
			return len;
		}
		break;
	case HPE_PAUSED:
		http_parser_pause(&hc->parser, 0);
		if (!hc->held) {
			hc->held = true;
			nd_conn_hold(c, true);
		}
		if (over_output(hc))
			nd_conn_want_drain(c); /* http_drained releases */
		return n;
	default:
		parse_failed(hc);
		return len;
	}
	release(hc);
	return n;
}

/* ---- connection life ---- */

static void http_open(struct nd_conn *c)
{
	struct http_conn *hc = hc_of(c);

	hc->conn = c;
	nd_list_init(&hc->reqs);
	http_parser_init(&hc->parser, HTTP_REQUEST);
	hc->parser.data = hc;
	if (nd_svc_peer_init(c) || (c->flags & ND_CONN_OVERLOAD)) {
		static const char busy[] =
			"HTTP/1.1 503 Service Unavailable\r\n"
			"Content-Type: application/json\r\n"
			"Connection: close\r\nContent-Length: 39\r\n\r\n"
			"{\"error\":\"too many connections, later\"}";
		nd_conn_write(c, busy, sizeof(busy) - 1);
		hc->failed = true;
		nd_conn_close(c, true);
		return;
	}
	/* the first request begins within it too (later ones: idle) */
	nd_conn_deadline(c, c->shard->cfg->handshake_timeout_ms);
}

static void http_idle(struct nd_conn *c)
{
	hc_of(c)->failed = true; /* closed after this by the transport */
}

static void http_drain(struct nd_conn *c)
{
	hc_of(c)->failed = true;
}

static void http_close(struct nd_conn *c)
{
	struct http_conn *hc = hc_of(c);

	nd_svc_peer_close(c);
	while (!nd_list_empty(&hc->reqs)) {
		req_free(nd_container_of(hc->reqs.next, struct req, link));
	}
}

static void http_drained(struct nd_conn *c)
{
	nd_svc_congested(c, false);
	release(hc_of(c));
}

/* A request did not arrive whole in time (nd_conn_deadline): 408 when it
 * is the one being answered next; the transport closes after. */
static void http_expired(struct nd_conn *c)
{
	struct http_conn *hc = hc_of(c);
	struct req *r = hc->cur;

	hc->failed = true;
	if (!r || !r->head)
		return;
	hc->cur = NULL;
	r->close = true;
	nd_buf_free(&r->body);
	nd_http_error(r, 408, "request not whole in time (--handshake-timeout "
		      "for the headers, --idle-timeout for the body)");
}

/* The transport could not keep input for us (held, over the budget). */
static void http_input_full(struct nd_conn *c, int err)
{
	hc_of(c)->failed = true;
}

/* Plaintext HTTP on the TLS port: a 400 in plaintext saying so. A TLS
 * client on a plaintext port cannot read plaintext: it is just closed. */
static void http_wrong_transport(struct nd_conn *c, bool tls_expected)
{
	static const char body[] = "this port speaks HTTPS (TLS): use "
				   "https:// and the cluster's CA\n";
	char head[160];
	int n;

	hc_of(c)->failed = true;
	if (!tls_expected)
		return;
	n = snprintf(head, sizeof(head), "HTTP/1.1 400 Bad Request\r\n"
		     "Content-Type: text/plain\r\nConnection: close\r\n"
		     "Content-Length: %zu\r\n\r\n", sizeof(body) - 1);
	nd_conn_write(c, head, (size_t)n);
	nd_conn_write(c, body, sizeof(body) - 1);
}

const struct nd_conn_ops nd_http_ops = {
	.state_size = sizeof(struct http_conn),
	.open = http_open,
	.data = http_data,
	.idle = http_idle,
	.drain = http_drain,
	.close = http_close,
	.drained = http_drained,
	.deliver = http_deliver,
	.expired = http_expired,
	.input_full = http_input_full,
	.wrong_transport = http_wrong_transport,
};

/* ---- helpers for the routes ---- */

bool nd_http_authorized(const struct req *r)
{
	const struct nd_config *cfg = r->conn->shard->cfg;
	const char *tok;
	size_t n;

	if (!cfg->token)
		return true;
	if (r->auth_len < 7 || r->auth_len >= sizeof(r->auth) ||
	    strncasecmp(r->auth, "Bearer ", 7))
		return false;
	tok = r->auth + 7;
	while (*tok == ' ')
		tok++;
	n = strlen(tok);
	return n == cfg->token_len && !CRYPTO_memcmp(tok, cfg->token, n);
}

char *nd_base64(const uint8_t *p, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}
