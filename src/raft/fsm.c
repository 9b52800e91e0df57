/*
 * The Raft state machine: see fsm.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "raft/fsm.h"

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
		     void **result)
{
	struct nd_fsm *r = fsm->data;
	Noded__RaftEntry *e = noded__raft_entry__unpack(NULL, buf->len,
							buf->base);

	*result = NULL;
	if (!e) {
		/* only our own leader writes entries: this is a bug or a
		 * corrupt log that passed raft's checksums */
		ND_LOG(ND_LOG_ERROR, "raft.entry_malformed",
		       ND_U("bytes", buf->len),
		       ND_S("msg", "a log entry did not decode; skipped"));
		return 0;
	}
	for (size_t i = 0; i < e->n_events; i++) {
		int err = nd_ledger_apply(&r->ledger, e->events[i], NULL);

		if (err == -ENOMEM) {
			/* Going on would leave this member's ledger behind
			 * the log for good: stop instead (a restart replays). */
			ND_LOG(ND_LOG_ERROR, "raft.apply_failed",
			       ND_S("err", "out of memory"),
			       ND_S("msg", "cannot apply a committed entry; "
				    "stopping"));
			abort();
		}
		if (err)
			ND_LOG(ND_LOG_WARN, "raft.event_refused",
			       ND_S("event", nd_ledger_event_name(e->events[i])),
			       ND_S("err", strerror(-err)));
	}
	noded__raft_entry__free_unpacked(e, NULL);
	atomic_fetch_add(&r->entries, 1);
	if (r->applied)
		r->applied(r, buf);
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
			unsigned *n_bufs)
{
	struct nd_fsm *r = fsm->data;
	uint8_t *snap;
	size_t len;

	if (nd_ledger_snapshot(&r->ledger, &snap, &len))
		return RAFT_NOMEM;
	*bufs = raft_malloc(sizeof(**bufs));
	if (!*bufs) {
		free(snap);
		return RAFT_NOMEM;
	}
	(*bufs)[0].base = snap;
	(*bufs)[0].len = len;
	*n_bufs = 1;
	atomic_fetch_add(&r->snapshots, 1);
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct nd_fsm *r = fsm->data;
	int err = nd_ledger_restore(&r->ledger, buf->base, buf->len);

	if (err) {
		ND_LOG(ND_LOG_ERROR, "raft.restore_failed",
		       ND_S("err", strerror(-err)));
		return err == -ENOMEM ? RAFT_NOMEM : RAFT_MALFORMED;
	}
	raft_free(buf->base);
	atomic_fetch_add(&r->restores, 1);
	return 0;
}

void nd_fsm_init(struct nd_fsm *f)
{
	memset(f, 0, sizeof(*f));
	nd_ledger_init(&f->ledger, sizeof(struct nd_ltask));
	f->fsm.version = 1;
	f->fsm.data = f;
	f->fsm.apply = fsm_apply;
	f->fsm.snapshot = fsm_snapshot;
	f->fsm.restore = fsm_restore;
}

void nd_fsm_close(struct nd_fsm *f)
{
	nd_ledger_free(&f->ledger);
}
