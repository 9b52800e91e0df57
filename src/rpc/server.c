/* Frame parsing and method dispatch for server connections: see server.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"
#include "node/service.h"
#include "noded/errors.h"
#include "rpc/server.h"

int nd_rpc_send(struct nd_conn *c, const Noded__Frame *f)
{
	size_t n = nd_frame_size(f);
	uint8_t *p = nd_conn_reserve(c, n);

	if (!p)
		return -EPIPE;
	nd_frame_encode(f, p);
	nd_conn_commit(c, n);
	return 0;
}

static void verror(struct nd_conn *c, uint64_t id, Noded__FrameKind kind,
		   Noded__ErrorCode code, const char *fmt, va_list ap)
	__attribute__((format(printf, 5, 0)));

static void verror(struct nd_conn *c, uint64_t id, Noded__FrameKind kind,
		   Noded__ErrorCode code, const char *fmt, va_list ap)
{
	Noded__Frame f;
	Noded__Error e;
	char msg[256];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	nd_frame_error(&f, &e, id, kind, code, msg);
	c->shard->st.errors++;
	c->shard->m.rpc_errors[c->shard->cur_method]++;
	nd_rpc_send(c, &f);
}

void nd_rpc_error(struct nd_conn *c, uint64_t id, Noded__FrameKind kind,
		  Noded__ErrorCode code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(c, id, kind, code, fmt, ap);
	va_end(ap);
}

void nd_rpc_fatal(struct nd_conn *c, uint64_t id, Noded__ErrorCode code,
		  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(c, id, NODED__FRAME_KIND__REPLY, code, fmt, ap);
	va_end(ap);
	if (code == NODED__ERROR_CODE__UNAUTHENTICATED) {
		/* Someone without the token, or probing: worth a warning,
		 * but one a peer cannot turn into a flood of lines. */
		const char *peer = nd_svc_peer(c)->peer;
		uint64_t suppressed, others;
		char msg[256];

		if (nd_log_on(ND_LOG_WARN) &&
		    nd_log_limit(peer, c->shard->now_ms, &suppressed,
				 &others)) {
			va_start(ap, fmt);
			vsnprintf(msg, sizeof(msg), fmt, ap);
			va_end(ap);
			ND_LOG(ND_LOG_WARN, "auth.refused", ND_S("peer", peer),
			       ND_S("api", "native"), ND_S("err", msg),
			       ND_U("suppressed", suppressed),
			       ND_U("suppressed_others", others),
			       ND_S("msg", "refused authentication: "
					   "connection closed"));
		}
	} else if (nd_log_on(ND_LOG_INFO)) {
		const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
			&noded__error_code__descriptor, code);
		char msg[256];

		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		ND_LOG(ND_LOG_INFO, "conn.refused",
		       ND_S("peer", nd_svc_peer(c)->peer),
		       ND_S("code", v ? v->name : "?"), ND_S("err", msg),
		       ND_S("msg", "protocol error: connection closed"));
	}
	nd_conn_close(c, true);
}

static void dispatch(struct nd_conn *c, const Noded__Frame *f);

static void on_frame(struct nd_conn *c, const uint8_t *body, size_t len)
{
	Noded__Frame *f;

	c->shard->arena.failed = false;
	f = nd_frame_decode(body, len, &c->shard->arena.pc);
	if (!f && c->shard->arena.failed) {
		nd_rpc_fatal(c, 0, NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			     "out of memory decoding a frame of %zu bytes",
			     len);
		return;
	}
	if (!f) {
		nd_rpc_fatal(c, 0, NODED__ERROR_CODE__BAD_FRAME,
			     "frame of %zu bytes is not a valid noded.Frame",
			     len);
		return;
	}
	c->shard->st.requests++;
	c->shard->cur_method = (unsigned)f->body_case < ND_METHODS ?
				       (unsigned)f->body_case : 0;
	c->shard->m.rpc_requests[c->shard->cur_method]++;
	nd_rpc(c)->body = body;
	nd_rpc(c)->body_len = len;
	dispatch(c, f);
	c->shard->cur_method = 0;
}

/* The method's latency: until its reply is queued here, or for the node
 * service's methods until the reply is back (counted in service.c). */
static void dispatch(struct nd_conn *c, const Noded__Frame *f)
{
	struct nd_rpc_conn *rc = nd_rpc(c);
	uint64_t t0 = nd_mono_ns();

	if (f->kind == NODED__FRAME_KIND__CANCEL) {
		nd__rpc_assign_cancel(c, f);
		return;
	}
	if (f->kind == NODED__FRAME_KIND__NOTIFY &&
	    f->body_case != NODED__FRAME__BODY_REPORT_STATUS) {
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__BAD_REQUEST,
			     "only report_status may be sent as a notification, "
			     "not %s", nd_frame_method_name(f->body_case));
		return;
	}
	if (f->kind != NODED__FRAME_KIND__REQUEST &&
	    f->kind != NODED__FRAME_KIND__NOTIFY) {
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__BAD_REQUEST,
			     "frame kind %d is not one a client sends",
			     (int)f->kind);
		return;
	}
	if (!rc->hello && f->body_case != NODED__FRAME__BODY_HELLO) {
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__HELLO_REQUIRED,
			     "the first request must be hello, not %s",
			     nd_frame_method_name(f->body_case));
		return;
	}
	if (!rc->authed && f->body_case != NODED__FRAME__BODY_HELLO &&
	    f->body_case != NODED__FRAME__BODY_AUTH) {
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__UNAUTHENTICATED,
			     "this master requires a token: authenticate "
			     "before %s", nd_frame_method_name(f->body_case));
		return;
	}
	if (!nd__rpc_role_allows(c, f) || !nd__rpc_acl_allows(c, f))
		return;
	if (f->body_case == NODED__FRAME__BODY_RUN ||
	    f->body_case == NODED__FRAME__BODY_WATCH)
		rc->sp.watched = true;
	switch (f->body_case) {
	case NODED__FRAME__BODY_AUTH:
		nd__rpc_auth(c, f);
		break;
	case NODED__FRAME__BODY_PING:
		nd__rpc_ping(c, f);
		break;
	case NODED__FRAME__BODY_LIST_NODES:
	case NODED__FRAME__BODY_SUBMIT:
	case NODED__FRAME__BODY_RUN:
	case NODED__FRAME__BODY_GET_TASK:
	case NODED__FRAME__BODY_LIST_TASKS:
	case NODED__FRAME__BODY_CANCEL_TASK:
	case NODED__FRAME__BODY_WATCH:
	case NODED__FRAME__BODY_TASK_UPDATE:
	case NODED__FRAME__BODY_LEAVE:
	case NODED__FRAME__BODY_NODE_DRAIN:
	case NODED__FRAME__BODY_NODE_ELIGIBLE:
	case NODED__FRAME__BODY_NODE_REMOVE:
	case NODED__FRAME__BODY_LEADER:
	case NODED__FRAME__BODY_RAFT_CHANGE:
	case NODED__FRAME__BODY_SNAPSHOT:
	case NODED__FRAME__BODY_RESTORE:
		nd__rpc_forward(c, f);
		return;
	case NODED__FRAME__BODY_HELLO:
		nd__rpc_hello(c, f);
		break;
	case NODED__FRAME__BODY_REPORT_STATUS:
		nd__rpc_report_status(c, f);
		break;
	case NODED__FRAME__BODY_ASSIGN_TASK:
		nd__rpc_assign_task(c, f);
		break;
	case NODED__FRAME__BODY__NOT_SET:
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__UNKNOWN_METHOD,
			     "request names no method this server knows");
		break;
	default:
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__UNKNOWN_METHOD,
			     "%s is not a request method",
			     nd_frame_method_name(f->body_case));
		break;
	}
	nd_hist_add(&c->shard->m.rpc_latency[c->shard->cur_method],
		    nd_mono_ns() - t0);
}

/* The frame limit for c now: small until the peer is authenticated. */
static uint32_t max_frame(struct nd_conn *c)
{
	uint32_t max = c->shard->cfg->max_frame;

	if (!nd_rpc(c)->authed && max > ND_PREAUTH_MAX_FRAME)
		max = ND_PREAUTH_MAX_FRAME;
	return max;
}

/*
 * After a batch of input: before authentication the handshake deadline set
 * in rpc_open stands; after it, a partial frame left over must be whole
 * within --idle-timeout of the last frame that completed (the idle timeout
 * alone is reset by every byte, so one byte a second would hold the
 * connection and its buffer for ever).
 */
static void frame_deadline(struct nd_conn *c, bool progress, bool partial)
{
	uint32_t ms = c->shard->cfg->idle_timeout_ms;

	if (!nd_rpc(c)->authed || !nd_conn_readable(c))
		return;
	if (!partial || !ms)
		nd_conn_deadline(c, 0);
	else if (progress || !nd_conn_has_deadline(c))
		nd_conn_deadline(c, ms);
}

/* Consumes whole frames while the connection may read; see nd_conn_ops. */
static size_t rpc_data(struct nd_conn *c, const uint8_t *p, size_t len)
{
	uint32_t max;
	size_t off = 0, need;
	int64_t n;

	while (nd_conn_readable(c)) {
		max = max_frame(c);
		n = nd_frame_peek(p + off, len - off, max, &need);
		if (n == ND_EEMPTYFRAME) {
			nd_rpc_fatal(c, 0, NODED__ERROR_CODE__EMPTY_FRAME,
				     "frame length is 0");
			break;
		}
		if (n == ND_EFRAMETOOBIG) {
			nd_rpc_fatal(c, 0, NODED__ERROR_CODE__FRAME_TOO_LARGE,
				     "frame length %u is over the maximum %u%s",
				     (uint32_t)p[off] << 24 |
					     (uint32_t)p[off + 1] << 16 |
					     (uint32_t)p[off + 2] << 8 | p[off + 3],
				     max, max < c->shard->cfg->max_frame ?
						  " before authentication" : "");
			break;
		}
		if (n == 0 || need > len - off)
			break; /* partial: kept by the transport */
		on_frame(c, p + off + ND_FRAME_HDR, (size_t)n);
		off += need;
	}
	frame_deadline(c, off > 0, off < len);
	return off;
}

/* To the node service; the frame being handled (f) is still packed. */
void nd__rpc_forward(struct nd_conn *c, const Noded__Frame *f)
{
	struct nd_rpc_conn *rc = nd_rpc(c);

	if (nd_svc_forward(c, f, rc->body, rc->body_len))
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__REPLY,
			     NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			     "out of memory");
}

static void rpc_open(struct nd_conn *c)
{
	if (nd_svc_peer_init(c)) {
		nd_rpc_fatal(c, 0, NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			     "out of memory");
		return;
	}
	if (c->flags & ND_CONN_OVERLOAD) {
		nd_rpc_fatal(c, 0, NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			     "too many connections (--max-conns %u)",
			     c->shard->cfg->max_conns);
		return;
	}
	nd_conn_deadline(c, c->shard->cfg->handshake_timeout_ms);
}

/* The handshake, or a partial frame, did not complete in time. */
static void rpc_expired(struct nd_conn *c)
{
	const struct nd_config *cfg = c->shard->cfg;
	struct nd_rpc_conn *rc = nd_rpc(c);

	if (!rc->authed) {
		nd_rpc_fatal(c, 0, NODED__ERROR_CODE__TIMEOUT,
			     "%s not done within %u ms (--handshake-timeout), "
			     "closing", rc->hello ? "auth" : "hello",
			     cfg->handshake_timeout_ms);
		return;
	}
	nd__rpc_assign_end(c, NODED__ERROR_CODE__TIMEOUT,
			   "partial frame timeout");
	nd_rpc_fatal(c, 0, NODED__ERROR_CODE__TIMEOUT,
		     "a frame begun was not whole after %u ms (--idle-timeout), "
		     "closing", cfg->idle_timeout_ms);
}

/* The transport could not keep our partial frame. */
static void rpc_input_full(struct nd_conn *c, int err)
{
	const struct nd_config *cfg = c->shard->cfg;

	nd__rpc_assign_end(c, NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			   "input refused");
	if (err == -ENOBUFS)
		nd_rpc_fatal(c, 0, NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			     "the server's memory for partial frames is used "
			     "up (--input-budget %llu bytes), closing",
			     (unsigned long long)cfg->input_budget);
	else
		nd_rpc_fatal(c, 0, NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			     "input not kept (%s), closing",
			     err == -EMSGSIZE ? "over the frame limit" :
						"out of memory");
}

static void rpc_idle(struct nd_conn *c)
{
	nd__rpc_assign_end(c, NODED__ERROR_CODE__TIMEOUT, "idle timeout");
	nd_rpc_error(c, 0, NODED__FRAME_KIND__REPLY, NODED__ERROR_CODE__TIMEOUT,
		     "no frame for %u ms (--idle-timeout), closing",
		     c->shard->cfg->idle_timeout_ms);
}

static void rpc_drain(struct nd_conn *c)
{
	nd__rpc_assign_end(c, NODED__ERROR_CODE__UNAVAILABLE,
			   "server shutting down");
}

static void rpc_close(struct nd_conn *c)
{
	struct nd_rpc_conn *rc = nd_rpc(c);

	nd_svc_peer_close(c);
	if (rc->stream_node)
		nd_svc_stream_closed(c->shard, rc->stream_node, rc->sp.serial);
	free(rc->stream_node);
	free(rc->peer_name);
}

/* A watcher that lagged caught up: let its workers go on. */
static void rpc_drained(struct nd_conn *c)
{
	nd_svc_congested(c, false);
}

const struct nd_conn_ops nd_rpc_server_ops = {
	.state_size = sizeof(struct nd_rpc_conn),
	.open = rpc_open,
	.data = rpc_data,
	.idle = rpc_idle,
	.drain = rpc_drain,
	.close = rpc_close,
	.drained = rpc_drained,
	.expired = rpc_expired,
	.input_full = rpc_input_full,
	.wrong_transport = nd__rpc_wrong_transport,
};
