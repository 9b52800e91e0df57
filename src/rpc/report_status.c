/*
 * ReportStatus: a worker's heartbeat. The connection keeps the last report
 * (packed, so it owns no pointers into the arena); the node registry of the
 * node service reads it from there.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rpc/server.h"

void nd__rpc_report_status(struct nd_conn *c, const Noded__Frame *f)
{
	const Noded__NodeStatus *ns = f->report_status;
	struct nd_rpc_conn *rc = nd_rpc(c);
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__ReportStatusReply sr = NODED__REPORT_STATUS_REPLY__INIT;
	struct timespec now;
	size_t n;
	uint8_t *copy;

	if (strlen(ns->name) > ND_NAME_MAX || ns->slots_free > ns->slots_total ||
	    ns->mem_available_bytes > ns->mem_total_bytes) {
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__REPLY,
			     NODED__ERROR_CODE__BAD_REQUEST,
			     "inconsistent status: name over %d bytes, or free "
			     "slots or memory above the total", ND_NAME_MAX);
		return;
	}
	n = noded__node_status__get_packed_size(ns);
	copy = malloc(n ? n : 1);
	if (!copy) {
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__REPLY,
			     NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			     "out of memory");
		return;
	}
	noded__node_status__pack(ns, copy);
	free(rc->status);
	rc->status = copy;
	rc->status_len = n;

	clock_gettime(CLOCK_REALTIME, &now);
	sr.server_time_ms = (uint64_t)now.tv_sec * 1000 +
			    (uint64_t)now.tv_nsec / 1000000;
	sr.heartbeat_interval_ms = c->shard->cfg->heartbeat_ms;
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_STATUS_REPLY;
	r.status_reply = &sr;
	nd_rpc_send(c, &r);
}
