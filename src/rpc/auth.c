/*
 * Auth: the client's answer to the challenge in our HelloReply (see
 * proto/noded.proto). A wrong proof gets UNAUTHENTICATED and the connection
 * is closed; nothing about the token is revealed either way.
 */
#include "core/server.h"
#include "noded/auth.h"
#include "rpc/server.h"

void nd__rpc_auth(struct nd_conn *c, const Noded__Frame *f)
{
	struct nd_rpc_conn *rc = nd_rpc(c);
	const struct nd_config *cfg = c->shard->cfg;
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__Ack ack = NODED__ACK__INIT;

	if (!cfg->token || rc->authed) {
		/* Nothing to prove (no token here, or done already). */
		r.id = f->id;
		r.kind = NODED__FRAME_KIND__REPLY;
		r.body_case = NODED__FRAME__BODY_ACK;
		r.ack = &ack;
		nd_rpc_send(c, &r);
		return;
	}
	if (!nd_auth_check(cfg->token, cfg->token_len, "noded-client",
			   rc->server_nonce, sizeof(rc->server_nonce),
			   rc->client_nonce, rc->client_nonce_len,
			   f->auth->proof.data, f->auth->proof.len)) {
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__UNAUTHENTICATED,
			     "wrong token");
		return;
	}
	rc->authed = true;
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_ACK;
	r.ack = &ack;
	nd_rpc_send(c, &r);
}
