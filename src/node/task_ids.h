/*
 * Task ids that a master never gives twice, across restarts too (until the
 * replicated ledger hands them out).
 *
 * With a data directory (master --data-dir): the file `task-ids` holds a
 * high-water mark, every id below it possibly given. Ids are reserved in
 * blocks: the block's end is written durably (temp, fsync, rename, fsync
 * dir) before any id of it is handed out, so a crash skips the rest of a
 * block at most and never repeats an id. A restart starts at the mark.
 * That write blocks shard 0 (two fsyncs) once per block of 65536 ids, the
 * one blocking call left on it, until the Raft log takes this over.
 *
 * Without one: the first id is 1000 x the milliseconds since 2026-01-01
 * UTC, plus 1. A restarted master repeats no id of its predecessor unless
 * that one gave more than 1000 ids per millisecond of its life on average
 * (a million a second, sustained), or the clock was set back. Ids stay
 * below 2^53 (exact in JSON and JavaScript) until about 2311.
 */
#ifndef ND_NODE_TASK_IDS_H
#define ND_NODE_TASK_IDS_H

#include <stddef.h>
#include <stdint.h>

#define ND_TASK_IDS_BLOCK (1ull << 16)

struct nd_task_ids {
	int dirfd;                /* the data directory; -1: clock-based */
	uint64_t first;           /* the first id this master gives */
	uint64_t end;             /* ids below it are reserved */
	uint64_t block;           /* ids reserved per write */
};

/*
 * Sets ids up: with data_dir (created 0700 with its parents when missing),
 * reads the mark and reserves the first block; with NULL, clock-based. 0,
 * or -errno with err (errlen bytes) saying what failed: the master must
 * not start then.
 */
int nd_task_ids_open(struct nd_task_ids *ids, const char *data_dir,
		     char *err, size_t errlen);

/* Makes ids [next, next + count) reserved, writing a new mark when they
 * are not yet. 0, or -errno when the mark could not be written (then no id
 * at or past ids->end may be given). */
int nd_task_ids_reserve(struct nd_task_ids *ids, uint64_t next,
			uint64_t count);

void nd_task_ids_close(struct nd_task_ids *ids);

#endif
