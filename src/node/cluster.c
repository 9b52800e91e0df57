/*
 * The cluster of masters, as the node service sees it (shard 0): who leads
 * (LeaderRequest, and the leader named in NOT_LEADER), the members'
 * addresses kept in the ledger (LedgerMember), and changes of the cluster
 * (RaftChange: a master joining, an operator adding, removing, or moving
 * the leadership), done by the raft shard (raft.h, nd_raft_change).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "node/svc.h"

const char *nd__replica_leader_client(const struct nd_svc *svc)
{
	const struct nd_lmember *m;

	if (!svc->raft || !svc->leader_id)
		return "";
	if (svc->serving) /* ours, as the ledger here has it */
		return (m = nd_ledger_member(&svc->ledger, svc->leader_id)) ?
			       m->client : svc->leader_client;
	return svc->leader_client; /* the raft shard's committed ledger */
}

void nd__out_not_leader(struct nd_svc *svc, struct nd_out *o, uint64_t id)
{
	const char *leader = nd__replica_leader_client(svc);
	Noded__Frame f;
	Noded__Error e;
	char msg[256];

	snprintf(msg, sizeof(msg), "this master does not lead the cluster%s%s",
		 *leader ? "; the leader is " : " (no leader known yet: "
		 "retry)", leader);
	nd_frame_error(&f, &e, id, NODED__FRAME_KIND__REPLY,
		       NODED__ERROR_CODE__NOT_LEADER, msg);
	e.leader = (char *)leader;
	e.leader_http = svc->leader_http;
	nd__out_frame(o, &f);
	o->errors++;
}

/* ---- who leads ---- */

static bool is_voter(const struct nd_svc *svc, uint64_t id)
{
	for (unsigned i = 0; i < svc->nvoters; i++)
		if (svc->voters[i] == id)
			return true;
	return false;
}

void nd__cluster_leader(struct nd_svc *svc, const Noded__Frame *f,
			struct nd_out *o)
{
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__LeaderInfo li = NODED__LEADER_INFO__INIT;
	const struct nd_lmember *lm;
	Noded__RaftMember *mm = NULL, **mp = NULL;
	size_t n = svc->ledger.nmembers;

	r.id = f->id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_LEADER_INFO;
	r.leader_info = &li;
	li.replicated = svc->raft != NULL;
	li.is_leader = !svc->raft || svc->serving;
	if (svc->raft) {
		li.self_id = svc->cfg->raft->id;
		li.leader_id = svc->leader_id;
		li.term = svc->term;
		li.commit_index = svc->commit_index;
		li.leader_address = (char *)nd__replica_leader_client(svc);
		lm = svc->serving ? nd_ledger_member(&svc->ledger,
						     svc->leader_id) : NULL;
		li.leader_http = lm ? lm->http : svc->leader_http;
	}
	if (n) {
		mm = calloc(n, sizeof(*mm));
		mp = calloc(n, sizeof(*mp));
		if (!mm || !mp) {
			free(mm);
			free(mp);
			nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
				      NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
				      "out of memory");
			return;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct nd_lmember *m = &svc->ledger.members[i];

		noded__raft_member__init(&mm[i]);
		mm[i].id = m->id;
		mm[i].raft_address = m->raft;
		mm[i].client_address = m->client;
		mm[i].http_address = m->http;
		mm[i].voter = is_voter(svc, m->id);
		mp[i] = &mm[i];
	}
	li.n_members = n;
	li.members = mp;
	nd__out_frame(o, &r);
	free(mm);
	free(mp);
}

/* ---- members ---- */

int nd__cluster_member_event(struct nd_svc *svc, const Noded__RaftMember *mb,
			     bool remove)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	Noded__LedgerMember e = NODED__LEDGER_MEMBER__INIT;

	e.member = (Noded__RaftMember *)mb;
	e.remove = remove;
	ev.body_case = NODED__LEDGER_EVENT__BODY_MEMBER;
	ev.member = &e;
	return nd__svc_apply(svc, &ev, NULL);
}

void nd__cluster_self(struct nd_svc *svc)
{
	const struct nd_svc_config *cfg = svc->cfg;
	const struct nd_lmember *m = nd_ledger_member(&svc->ledger,
						      cfg->raft->id);
	Noded__RaftMember mb = NODED__RAFT_MEMBER__INIT;

	mb.id = cfg->raft->id;
	mb.raft_address = (char *)cfg->raft->address;
	mb.client_address = (char *)(cfg->client_address ?
				     cfg->client_address : "");
	mb.http_address = (char *)(cfg->http_address ? cfg->http_address :
				   "");
	if (m && !strcmp(m->raft, mb.raft_address) &&
	    !strcmp(m->client, mb.client_address) &&
	    !strcmp(m->http, mb.http_address))
		return;
	nd__cluster_member_event(svc, &mb, false);
}

/* ---- changes ---- */

/* A change under way: the requester waits for its end. c first: a raft
 * shard that closes with the change out frees it by c (raft.c). */
struct change_wait {
	struct nd_raft_change c;
	struct nd_dest to;           /* to.stream_id: the request's id */
	Noded__RaftMember mb;        /* ADD: what the ledger learns after */
	char raft[128], client[128], http[128];
};

_Static_assert(offsetof(struct change_wait, c) == 0,
	       "a closing raft shard frees a change by its nd_raft_change");

static void change_answer(struct nd_svc *svc, struct change_wait *w,
			  Noded__ErrorCode code, const char *msg)
{
	struct nd_out o = { 0 };

	if (code)
		nd__out_error(&o, w->to.stream_id, NODED__FRAME_KIND__REPLY,
			      code, "%s", msg);
	else
		nd__out_ack(&o, w->to.stream_id);
	nd__svc_push_raw(svc, &w->to, o.buf.data, o.buf.len);
	nd_buf_free(&o.buf);
}

static void change_done(struct nd_shard *s0, struct nd_raft_change *c)
{
	struct change_wait *w = nd_container_of(c, struct change_wait, c);
	struct nd_svc *svc = s0->svc;
	char msg[320];

	if (c->status) {
		snprintf(msg, sizeof(msg), "the cluster did not change: %s",
			 c->err);
		ND_LOG(ND_LOG_WARN, "raft.change_failed", ND_U("op", c->op),
		       ND_U("member", c->id), ND_S("err", c->err));
		change_answer(svc, w, NODED__ERROR_CODE__FAILED_PRECONDITION,
			      msg);
		free(w);
		return;
	}
	ND_LOG(ND_LOG_INFO, "raft.changed", ND_S("op", c->op == 0 ? "add" :
	       c->op == 1 ? "remove" : "transfer"), ND_U("member", c->id),
	       ND_S("address", c->address));
	/* The member's addresses follow the log's configuration: a removed
	 * one is forgotten (the leader that removed itself cannot: the next
	 * leader's own record stays, the others' go with their removal). */
	if (svc->serving && c->op == 1)
		nd__cluster_member_event(svc, &w->mb, true);
	change_answer(svc, w, 0, NULL);
	free(w);
}

void nd__cluster_change(struct nd_svc *svc, const Noded__Frame *f,
			const struct nd_dest *from, struct nd_out *o)
{
	const Noded__RaftChange *rc = f->raft_change;
	const Noded__RaftMember *mb = rc->member;
	const struct nd_lmember *known;
	struct change_wait *w;

	if (!svc->raft) {
		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__FAILED_PRECONDITION,
			      "this master keeps no Raft log (no --data-dir): "
			      "it has no cluster to change");
		return;
	}
	if (!mb || (rc->op != NODED__RAFT_CHANGE__OP__TRANSFER && !mb->id) ||
	    (rc->op == NODED__RAFT_CHANGE__OP__ADD &&
	     (!mb->raft_address[0] || strlen(mb->raft_address) >= 128 ||
	      strlen(mb->client_address) >= 128 ||
	      strlen(mb->http_address) >= 128))) {
		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__BAD_REQUEST,
			      "a change names a member (its id; to add: its "
			      "Raft address, under 128 bytes)");
		return;
	}
	known = nd_ledger_member(&svc->ledger, mb->id);
	if (rc->op == NODED__RAFT_CHANGE__OP__ADD && known &&
	    is_voter(svc, mb->id)) {
		/* already in: a member that restarted says where it is now */
		if (strcmp(known->raft, mb->raft_address)) {
			nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
				      NODED__ERROR_CODE__ALREADY_EXISTS,
				      "member %llu is in the cluster at %s, "
				      "not %s: remove it first",
				      (unsigned long long)mb->id, known->raft,
				      mb->raft_address);
			return;
		}
		if (nd__cluster_member_event(svc, mb, false) == -ENOMEM)
			nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
				      NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
				      "out of memory");
		else
			nd__out_ack(o, f->id);
		return;
	}
	if (rc->op == NODED__RAFT_CHANGE__OP__REMOVE &&
	    !is_voter(svc, mb->id) && !known) {
		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__NOT_FOUND,
			      "no member %llu in the cluster",
			      (unsigned long long)mb->id);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			      "out of memory");
		return;
	}
	w->to = *from;
	w->to.stream_id = f->id;
	noded__raft_member__init(&w->mb);
	w->mb.id = mb->id;
	snprintf(w->raft, sizeof(w->raft), "%s", mb->raft_address);
	snprintf(w->client, sizeof(w->client), "%s", mb->client_address);
	snprintf(w->http, sizeof(w->http), "%s", mb->http_address);
	w->mb.raft_address = w->raft;
	w->mb.client_address = w->client;
	w->mb.http_address = w->http;
	if (rc->op == NODED__RAFT_CHANGE__OP__ADD &&
	    nd__cluster_member_event(svc, &w->mb, false)) {
		free(w);
		nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY,
			      NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			      "out of memory");
		return;
	}
	w->c.op = (int)rc->op;
	w->c.id = mb->id;
	snprintf(w->c.address, sizeof(w->c.address), "%s", w->raft);
	w->c.done = change_done;
	/* the batch with its addresses goes to the raft shard first (posts
	 * keep their order): once it votes, it may lead, and every member
	 * must be able to name it */
	nd__replica_flush(svc->s);
	nd_raft_change(svc->s, svc->raft, &w->c);
	/* answered by change_done */
}

/* ---- snapshots ---- */

#define CHUNK (1u << 20)

void nd__cluster_snapshot(struct nd_svc *svc, const Noded__Frame *f,
			  struct nd_out *o)
{
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__SnapshotChunk c = NODED__SNAPSHOT_CHUNK__INIT;
	uint8_t *snap;
	size_t len;

	if (nd_ledger_snapshot(&svc->ledger, &snap, &len)) {
		nd__out_error(o, f->id, NODED__FRAME_KIND__STREAM_END,
			      NODED__ERROR_CODE__RESOURCE_EXHAUSTED,
			      "out of memory for the snapshot");
		return;
	}
	r.id = f->id;
	r.kind = NODED__FRAME_KIND__STREAM_ITEM;
	r.body_case = NODED__FRAME__BODY_SNAPSHOT_CHUNK;
	r.snapshot_chunk = &c;
	c.total = len;
	for (size_t off = 0; off < len || !off; off += CHUNK) {
		c.data.data = snap + off;
		c.data.len = len - off < CHUNK ? len - off : CHUNK;
		nd__out_frame(o, &r);
		if (!len)
			break;
	}
	free(snap);
	nd__out_end(o, f->id);
}

void nd__cluster_restore(struct nd_svc *svc, const Noded__Frame *f,
			 struct nd_out *o)
{
	Noded__LedgerEvent ev = NODED__LEDGER_EVENT__INIT;
	int err;

	ev.body_case = NODED__LEDGER_EVENT__BODY_RESTORE;
	ev.restore = f->restore;
	err = nd__svc_apply(svc, &ev, NULL);
	if (!err) {
		nd__out_ack(o, f->id);
		return;
	}
	nd__out_error(o, f->id, NODED__FRAME_KIND__REPLY, err == -ENOMEM ?
		      NODED__ERROR_CODE__RESOURCE_EXHAUSTED :
		      NODED__ERROR_CODE__BAD_REQUEST, "%s", err == -ENOMEM ?
		      "out of memory" : "not a snapshot of a ledger (noded "
		      "operator snapshot inspect says what it holds)");
}
