/*
 * GET /metrics: a tour of the shards copies each one's counters on its own
 * thread (and, on shard 0, the node service's figures as text), then the
 * home shard renders the Prometheus text format (version 0.0.4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/http.h"
#include "core/server.h"
#include "core/shard.h"
#include "noded/wire.h"

struct shard_snap {
	struct nd_metrics m;
	struct nd_http_metrics http;  /* zero when the shard answered none */
	struct nd_shard_stats st;
	unsigned conns;
	unsigned cq_overflow, sq_dropped;
};

struct scrape {
	uint64_t serial, req_id;
	unsigned nshards;
	struct shard_snap *snap;
	char *svc_text;               /* from shard 0 */
	size_t svc_len;
};

const uint16_t nd_http_codes[ND_HTTP_CODES] = {
	200, 201, 307, 400, 401, 404, 405, 409, 411, 413, 429, 431, 500, 503,
	505, 0,
};

/* The index of status in nd_http_codes; the last (0) stands for others. */
unsigned nd_http_code_index(unsigned status)
{
	unsigned i;

	for (i = 0; i < ND_HTTP_CODES - 1; i++)
		if (nd_http_codes[i] == status)
			break;
	return i;
}

static const char *const route_names[ND_ROUTES] = {
	[ND_ROUTE_HEALTHZ] = "healthz",
	[ND_ROUTE_METRICS] = "metrics",
	[ND_ROUTE_TASK_SUBMIT] = "task_submit",
	[ND_ROUTE_TASK_LIST] = "task_list",
	[ND_ROUTE_TASK_GET] = "task_get",
	[ND_ROUTE_TASK_OUTPUT] = "task_output",
	[ND_ROUTE_TASK_CANCEL] = "task_cancel",
	[ND_ROUTE_NODE_LIST] = "node_list",
	[ND_ROUTE_NODE_GET] = "node_get",
	[ND_ROUTE_LEGACY_SUBMIT] = "legacy_submit",
	[ND_ROUTE_NODE_DRAIN] = "node_drain",
	[ND_ROUTE_NODE_ELIGIBLE] = "node_eligible",
	[ND_ROUTE_NODE_REMOVE] = "node_remove",
	[ND_ROUTE_STATUS_LEADER] = "status_leader",
	[ND_ROUTE_RAFT_PEERS] = "raft_peers",
	[ND_ROUTE_OTHER] = "other",
};

static void visit(struct nd_shard *s, void *arg)
{
	struct scrape *sc = arg;
	struct shard_snap *sn = &sc->snap[s->id];

	sn->m = s->m;
	if (s->api)
		sn->http = *(const struct nd_http_metrics *)s->api;
	sn->st = s->st;
	sn->conns = s->nconns;
	sn->cq_overflow = s->ring.cq.koverflow ? *s->ring.cq.koverflow : 0;
	sn->sq_dropped = s->ring.sq.kdropped ? *s->ring.sq.kdropped : 0;
	if (s->id == 0) {
		FILE *f = open_memstream(&sc->svc_text, &sc->svc_len);

		if (f) {
			nd_svc_metrics(s, f);
			fclose(f);
		}
	}
}

static void hist_merge(struct nd_hist *into, const struct nd_hist *h)
{
	into->count += h->count;
	into->sum_ns += h->sum_ns;
	for (unsigned i = 0; i < ND_HIST_BUCKETS; i++)
		into->b[i] += h->b[i];
}

static void family(FILE *f, const char *name, const char *type,
		   const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A per-shard series: field picks the value from a snapshot. */
#define PER_SHARD(f, sc, name, type, help, expr)                         \
	do {                                                               \
		family(f, name, type, help);                               \
		for (unsigned i_ = 0; i_ < (sc)->nshards; i_++) {          \
			const struct shard_snap *sn = &(sc)->snap[i_];     \
			fprintf(f, "%s{shard=\"%u\"} %llu\n", name, i_,    \
				(unsigned long long)(expr));               \
		}                                                          \
	} while (0)

static void render(FILE *f, const struct scrape *sc)
{
	struct nd_hist h;
	char labels[128];

	PER_SHARD(f, sc, "noded_connections", "gauge",
		  "Open connections (native and HTTP).", sn->conns);
	PER_SHARD(f, sc, "noded_connections_accepted_total", "counter",
		  "Connections accepted.", sn->st.accepted);
	PER_SHARD(f, sc, "noded_received_bytes_total", "counter",
		  "Bytes received.", sn->st.bytes_in);
	PER_SHARD(f, sc, "noded_sent_bytes_total", "counter",
		  "Bytes sent.", sn->st.bytes_out);
	PER_SHARD(f, sc, "noded_backpressure_pauses_total", "counter",
		  "Times a connection's reading paused for its output.",
		  sn->st.paused);
	PER_SHARD(f, sc, "noded_io_uring_submissions_total", "counter",
		  "SQEs submitted to io_uring.", sn->m.sqes_submitted);
	PER_SHARD(f, sc, "noded_io_uring_completions_total", "counter",
		  "CQEs handled.", sn->m.cqes);
	PER_SHARD(f, sc, "noded_io_uring_cq_overflows_total", "counter",
		  "Completions the kernel could not post at once "
		  "(CQ overflow).", sn->cq_overflow);
	PER_SHARD(f, sc, "noded_io_uring_sq_dropped_total", "counter",
		  "Invalid SQEs the kernel dropped.", sn->sq_dropped);
	PER_SHARD(f, sc, "noded_io_uring_buffer_ring_exhausted_total",
		  "counter", "Receives that found the provided buffer ring "
		  "empty (ENOBUFS).", sn->st.recv_enobufs);
	PER_SHARD(f, sc, "noded_event_loops_total", "counter",
		  "Event loop iterations.", sn->st.loops);
	PER_SHARD(f, sc, "noded_shard_message_retries_total", "counter",
		  "Cross-shard messages a target ring refused, sent again.",
		  sn->m.msg_retries);

	family(f, "noded_rpc_requests_total", "counter",
	       "Native protocol requests, by method.");
	for (unsigned m = 1; m < ND_METHODS; m++) {
		uint64_t n = 0;

		for (unsigned i = 0; i < sc->nshards; i++)
			n += sc->snap[i].m.rpc_requests[m];
		if (n)
			fprintf(f, "noded_rpc_requests_total{method=\"%s\"} "
				"%llu\n", nd_frame_method_name((Noded__Frame__BodyCase)m),
				(unsigned long long)n);
	}
	family(f, "noded_rpc_errors_total", "counter",
	       "Native protocol error replies, by method.");
	for (unsigned m = 0; m < ND_METHODS; m++) {
		uint64_t n = 0;

		for (unsigned i = 0; i < sc->nshards; i++)
			n += sc->snap[i].m.rpc_errors[m];
		if (n)
			fprintf(f, "noded_rpc_errors_total{method=\"%s\"} "
				"%llu\n", m ? nd_frame_method_name((Noded__Frame__BodyCase)m) :
					      "none", (unsigned long long)n);
	}
	family(f, "noded_rpc_request_duration_seconds", "histogram",
	       "Native request to reply queued, by method.");
	for (unsigned m = 1; m < ND_METHODS; m++) {
		memset(&h, 0, sizeof(h));
		for (unsigned i = 0; i < sc->nshards; i++)
			hist_merge(&h, &sc->snap[i].m.rpc_latency[m]);
		if (!h.count)
			continue;
		snprintf(labels, sizeof(labels), "method=\"%s\"",
			 nd_frame_method_name((Noded__Frame__BodyCase)m));
		nd_hist_write(f, "noded_rpc_request_duration_seconds", labels,
			    &h);
	}
	family(f, "noded_http_requests_total", "counter",
	       "HTTP API requests, by route and status code.");
	for (unsigned r = 0; r < ND_ROUTES; r++)
		for (unsigned c = 0; c < ND_HTTP_CODES; c++) {
			uint64_t n = 0;

			for (unsigned i = 0; i < sc->nshards; i++)
				n += sc->snap[i].http.requests[r][c];
			if (!n)
				continue;
			if (nd_http_codes[c])
				fprintf(f, "noded_http_requests_total{route="
					"\"%s\",code=\"%u\"} %llu\n",
					route_names[r], nd_http_codes[c],
					(unsigned long long)n);
			else
				fprintf(f, "noded_http_requests_total{route="
					"\"%s\",code=\"other\"} %llu\n",
					route_names[r], (unsigned long long)n);
		}
	family(f, "noded_http_request_duration_seconds", "histogram",
	       "HTTP request parsed to response complete, by route.");
	for (unsigned r = 0; r < ND_ROUTES; r++) {
		memset(&h, 0, sizeof(h));
		for (unsigned i = 0; i < sc->nshards; i++)
			hist_merge(&h, &sc->snap[i].http.latency[r]);
		if (!h.count)
			continue;
		snprintf(labels, sizeof(labels), "route=\"%s\"",
			 route_names[r]);
		nd_hist_write(f, "noded_http_request_duration_seconds", labels,
			    &h);
	}
	if (sc->svc_text)
		fwrite(sc->svc_text, 1, sc->svc_len, f);
	nd__metrics_process(f);
}

static void scrape_free(struct scrape *sc)
{
	free(sc->snap);
	free(sc->svc_text);
	free(sc);
}

/* Back home: answer the request if its connection is still there. */
static void scraped(struct nd_shard *home, void *arg)
{
	struct scrape *sc = arg;
	struct nd_conn *c = nd_u64map_get(&home->serials, sc->serial);
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	if (c && c->ops == &nd_http_ops) {
		struct http_conn *hc = nd_conn_state(c);

		for (struct nd_list *l = hc->reqs.next; l != &hc->reqs;
		     l = l->next) {
			struct req *r = nd_container_of(l, struct req, link);

			if (r->id != sc->req_id || r->complete)
				continue;
			f = open_memstream(&text, &len);
			if (f) {
				render(f, sc);
				fclose(f);
			}
			if (text)
				nd_http_reply(r, 200, "text/plain; "
					      "version=0.0.4; charset=utf-8",
					      text, len, NULL);
			else
				nd_http_error(r, 500, "out of memory");
			free(text);
			break;
		}
	}
	scrape_free(sc);
}

void nd_api_metrics(struct req *r)
{
	struct nd_shard *s = r->conn->shard;
	struct scrape *sc = calloc(1, sizeof(*sc));

	if (sc) {
		sc->nshards = s->srv->nshards;
		sc->snap = calloc(sc->nshards, sizeof(*sc->snap));
	}
	if (!sc || !sc->snap) {
		if (sc)
			scrape_free(sc);
		nd_http_error(r, 500, "out of memory");
		return;
	}
	sc->serial = r->hc->sp.serial;
	sc->req_id = r->id;
	r->waiting = true;
	if (nd_shard_tour(s, visit, scraped, sc)) {
		scrape_free(sc);
		nd_http_error(r, 500, "out of memory");
	}
}
