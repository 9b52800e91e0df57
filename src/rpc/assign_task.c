/*
 * AssignTask: the server stream on which the master pushes tasks to a
 * worker. One per connection. It opens with an AssignTaskOpen item and stays
 * open until the worker cancels it, the connection ends or the server drains.
 */
#include <stdlib.h>
#include <string.h>

#include "core/server.h"
#include "node/service.h"
#include "rpc/server.h"

void nd__rpc_assign_task(struct nd_conn *c, const Noded__Frame *f)
{
	struct nd_rpc_conn *rc = nd_rpc(c);
	const struct nd_config *cfg = c->shard->cfg;
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__AssignTaskOpen open = NODED__ASSIGN_TASK_OPEN__INIT;

	if (rc->stream_open) {
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__STREAM_END,
			     NODED__ERROR_CODE__ALREADY_EXISTS,
			     "an AssignTask stream is already open (id %llu)",
			     (unsigned long long)rc->stream_id);
		return;
	}
	rc->stream_open = true;
	rc->stream_id = f->id;
	if (!rc->stream_node && strlen(f->assign_task->node_name) <= ND_NAME_MAX) {
		const char *name = f->assign_task->node_name[0] ?
					   f->assign_task->node_name :
					   rc->peer_name;

		rc->stream_node = name && name[0] ? strdup(name) : NULL;
		if (rc->stream_node)
			nd_svc_stream_opened(c->shard, rc->stream_node,
					     rc->sp.serial, f->id);
	}
	open.heartbeat_interval_ms = cfg->heartbeat_ms;
	open.heartbeat_timeout_ms = cfg->heartbeat_timeout_ms;
	open.master_instance = c->shard->srv->instance;
	open.lease_ms = cfg->lease_ms;
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__STREAM_ITEM;
	r.body_case = NODED__FRAME__BODY_ASSIGN_OPEN;
	r.assign_open = &open;
	nd_rpc_send(c, &r);
}

void nd__rpc_assign_end(struct nd_conn *c, Noded__ErrorCode code,
			const char *msg)
{
	struct nd_rpc_conn *rc = nd_rpc(c);

	if (!rc->stream_open)
		return;
	rc->stream_open = false;
	nd_rpc_error(c, rc->stream_id, NODED__FRAME_KIND__STREAM_END, code,
		     "%s", msg);
}

void nd__rpc_assign_cancel(struct nd_conn *c, const Noded__Frame *f)
{
	struct nd_rpc_conn *rc = nd_rpc(c);

	/* A cancel for a stream that already ended crossed its end: ignore. */
	if (rc->stream_open && rc->stream_id == f->id)
		nd__rpc_assign_end(c, NODED__ERROR_CODE__CANCELLED,
				   "cancelled by the client");
}
