/* Ping: echoes the payload. The cheapest round trip, used to measure. */
#include "rpc/server.h"

void nd__rpc_ping(struct nd_conn *c, const Noded__Frame *f)
{
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__PingReply pong = NODED__PING_REPLY__INIT;

	pong.payload = f->ping->payload;
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_PONG;
	r.pong = &pong;
	nd_rpc_send(c, &r);
}
