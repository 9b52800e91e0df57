/* Hello: protocol version check and peer identity; must come first. */
#include <stdlib.h>
#include <string.h>

#include "core/server.h"
#include "noded/auth.h"
#include "rpc/server.h"
#include "wire/text.h"

void nd__rpc_hello(struct nd_conn *c, const Noded__Frame *f)
{
	const Noded__HelloRequest *h = f->hello;
	struct nd_rpc_conn *rc = nd_rpc(c);
	const struct nd_config *cfg = c->shard->cfg;
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__HelloReply hr = NODED__HELLO_REPLY__INIT;
	uint8_t proof[ND_PROOF_LEN];
	char why[512];

	if (rc->hello) {
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__BAD_REQUEST,
			     "hello sent twice");
		return;
	}
	if (h->protocol_version != ND_PROTOCOL_VERSION) {
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__VERSION_MISMATCH,
			     "protocol version %u not supported (this server "
			     "speaks %u)", h->protocol_version,
			     ND_PROTOCOL_VERSION);
		return;
	}
	if (strlen(h->node_name) > ND_NAME_MAX) {
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__BAD_REQUEST,
			     "node name longer than %d bytes", ND_NAME_MAX);
		return;
	}
	if (nd_text_name_error("node name", h->node_name, why, sizeof(why))) {
		nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__BAD_REQUEST, "%s",
			     why);
		return;
	}
	if (cfg->token) {
		if (h->client_nonce.len < 16 ||
		    h->client_nonce.len > sizeof(rc->client_nonce)) {
			nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__UNAUTHENTICATED,
				     "this master requires a token; the hello "
				     "carries no client nonce");
			return;
		}
		memcpy(rc->client_nonce, h->client_nonce.data,
		       h->client_nonce.len);
		rc->client_nonce_len = h->client_nonce.len;
		if (nd_auth_nonce(rc->server_nonce, sizeof(rc->server_nonce)) ||
		    nd_auth_proof(cfg->token, cfg->token_len, "noded-server",
				  rc->client_nonce, rc->client_nonce_len,
				  rc->server_nonce, sizeof(rc->server_nonce),
				  proof)) {
			nd_rpc_fatal(c, f->id, NODED__ERROR_CODE__INTERNAL,
				     "cannot make a challenge");
			return;
		}
		hr.auth_required = true;
		hr.server_nonce.data = rc->server_nonce;
		hr.server_nonce.len = sizeof(rc->server_nonce);
		hr.server_proof.data = proof;
		hr.server_proof.len = sizeof(proof);
	} else {
		rc->authed = true;
	}
	rc->peer_name = strdup(h->node_name);
	rc->hello = true;

	hr.protocol_version = ND_PROTOCOL_VERSION;
	hr.node_name = (char *)cfg->name;
	hr.role = NODED__ROLE__ROLE_MASTER;
	hr.max_frame = cfg->max_frame;
	hr.heartbeat_interval_ms = nd_svc_cfg(c->shard)->heartbeat_ms;
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_HELLO_REPLY;
	r.hello_reply = &hr;
	nd_rpc_send(c, &r);
}
