/*
 * ReportStatus: a worker's heartbeat. Checked here, then forwarded to the
 * node service, which keeps the latest report in its registry and answers.
 */
#include <string.h>

#include "node/service.h"
#include "rpc/server.h"

void nd__rpc_report_status(struct nd_conn *c, const Noded__Frame *f)
{
	const Noded__NodeStatus *ns = f->report_status;

	if (!ns->name[0] || strlen(ns->name) > ND_NAME_MAX ||
	    ns->slots_free > ns->slots_total ||
	    ns->mem_available_bytes > ns->mem_total_bytes) {
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__REPLY,
			     NODED__ERROR_CODE__BAD_REQUEST,
			     "inconsistent status: empty name, name over %d "
			     "bytes, or free slots or memory above the total",
			     ND_NAME_MAX);
		return;
	}
	nd__rpc_forward(c, f);
}
