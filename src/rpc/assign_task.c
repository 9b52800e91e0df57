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
#include "wire/text.h"

/* The AssignTaskOpen item: the worker is registered. */
static void send_open(struct nd_conn *c, uint64_t stream_id)
{
	const struct nd_svc_config *cfg = nd_svc_cfg(c->shard);
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__AssignTaskOpen open = NODED__ASSIGN_TASK_OPEN__INIT;

	open.heartbeat_interval_ms = cfg->heartbeat_ms;
	open.heartbeat_timeout_ms = cfg->heartbeat_timeout_ms;
	open.master_instance = c->shard->srv->instance;
	open.lease_ms = cfg->lease_ms;
	r.id = stream_id;
	r.kind = NODED__FRAME_KIND__STREAM_ITEM;
	r.body_case = NODED__FRAME__BODY_ASSIGN_OPEN;
	r.assign_open = &open;
	nd_rpc_send(c, &r);
}

/*
 * Registration goes through the node service on shard 0, which alone knows
 * whether the name is held by a live worker with another id; the open item
 * (or the refusal) comes back in nd__rpc_assign_registered. The stream
 * counts as open meanwhile, so a close in between still unregisters.
 */
void nd__rpc_assign_task(struct nd_conn *c, const Noded__Frame *f)
{
	struct nd_rpc_conn *rc = nd_rpc(c);
	const Noded__AssignTaskRequest *a = f->assign_task;
	const char *name = a->node_name[0] ? a->node_name : rc->peer_name;
	char why[512];

	if (rc->stream_open) {
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__STREAM_END,
			     NODED__ERROR_CODE__ALREADY_EXISTS,
			     "an AssignTask stream is already open (id %llu)",
			     (unsigned long long)rc->stream_id);
		return;
	}
	if (a->node_id.len > 16 || strlen(a->node_name) > ND_NAME_MAX) {
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__STREAM_END,
			     NODED__ERROR_CODE__BAD_REQUEST,
			     "node_id over 16 bytes or node name over %d bytes",
			     ND_NAME_MAX);
		return;
	}
	if (rc->stream_node && name && strcmp(name, rc->stream_node)) {
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__STREAM_END,
			     NODED__ERROR_CODE__BAD_REQUEST,
			     "this connection registered node '%s': one node "
			     "per connection", rc->stream_node);
		return;
	}
	if (nd_text_name_error("node name", a->node_name, why,
			       sizeof(why))) {
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__STREAM_END,
			     NODED__ERROR_CODE__BAD_REQUEST, "%s", why);
		return;
	}
	rc->stream_open = true;
	rc->stream_id = f->id;
	if (!name || !name[0]) {
		send_open(c, f->id); /* a stream for no node: gets nothing */
		return;
	}
	if (!rc->stream_node && !(rc->stream_node = strdup(name))) {
		rc->stream_open = false;
		nd_rpc_error(c, f->id, NODED__FRAME_KIND__STREAM_END,
			     NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			     "out of memory");
		return;
	}
	nd_svc_stream_opened(c, rc->stream_node, a->node_id.data,
			     a->node_id.len, f->id);
}

void nd__rpc_assign_registered(struct nd_conn *c, uint64_t stream_id,
			       Noded__ErrorCode code, const char *msg,
			       const char *leader)
{
	struct nd_rpc_conn *rc = nd_rpc(c);

	if (!rc->stream_open || rc->stream_id != stream_id)
		return;
	if (!code) {
		send_open(c, stream_id);
		return;
	}
	/* not (or no longer) its registration: its close must not end the
	 * node's current one */
	free(rc->stream_node);
	rc->stream_node = NULL;
	if (leader && *leader) {
		/* a follower: the worker is told where the leader is */
		Noded__Frame f;
		Noded__Error e;

		rc->stream_open = false;
		nd_frame_error(&f, &e, stream_id, NODED__FRAME_KIND__STREAM_END,
			       code, msg);
		e.leader = (char *)leader;
		c->shard->st.errors++;
		nd_rpc_send(c, &f);
		return;
	}
	nd__rpc_assign_end(c, code, msg);
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
