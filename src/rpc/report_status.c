/*
 * ReportStatus: a worker's heartbeat. Checked here, then forwarded to the
 * node service, which keeps the latest report in its registry and answers.
 */
#include <string.h>

#include "node/service.h"
#include "rpc/server.h"
#include "wire/text.h"

/* The name and labels must be text a view can show: see wire/text.h. */
static const char *status_text_error(const Noded__NodeStatus *ns, char *buf,
				     size_t size)
{
	if (nd_text_name_error("node name", ns->name, buf, size))
		return buf;
	for (size_t i = 0; i < ns->n_labels; i++)
		if (nd_text_name_error("label key", ns->labels[i]->key, buf,
				       size) ||
		    nd_text_name_error("label value", ns->labels[i]->value,
				       buf, size))
			return buf;
	return NULL;
}

void nd__rpc_report_status(struct nd_conn *c, const Noded__Frame *f)
{
	const Noded__NodeStatus *ns = f->report_status;
	char why[512];

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
	if (status_text_error(ns, why, sizeof(why))) {
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__REPLY,
			     NODED__ERROR_CODE__BAD_REQUEST, "%s", why);
		return;
	}
	nd__rpc_forward(c, f);
}
