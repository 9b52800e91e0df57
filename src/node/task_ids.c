/* Task ids never reused: see task_ids.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/durable.h"
#include "core/time.h"
#include "node/task_ids.h"

#define MARK_FILE "task-ids"
#define EPOCH_2026_MS 1767225600000ull  /* 2026-01-01T00:00:00Z */
#define MAX_ID (1ull << 53)

static uint64_t clock_base(void)
{
	uint64_t ms = nd_unix_ms();

	return ms > EPOCH_2026_MS ? (ms - EPOCH_2026_MS) * 1000 + 1 : 1;
}

/* The block size: NODED_ID_BLOCK in the environment (for tests that need
 * to reach a reservation quickly), else ND_TASK_IDS_BLOCK. */
static uint64_t block_size(void)
{
	const char *e = getenv("NODED_ID_BLOCK");
	char *end;
	unsigned long long v;

	if (!e || !*e)
		return ND_TASK_IDS_BLOCK;
	v = strtoull(e, &end, 10);
	return *end || !v || v > ND_TASK_IDS_BLOCK ? ND_TASK_IDS_BLOCK : v;
}

static int write_mark(struct nd_task_ids *ids, uint64_t end)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", end);

	return nd_durable_write(ids->dirfd, MARK_FILE, buf, (size_t)n, 0600);
}

int nd_task_ids_open(struct nd_task_ids *ids, const char *data_dir,
		     char *err, size_t errlen)
{
	char buf[32], *end;
	ssize_t n;
	int ret;

	memset(ids, 0, sizeof(*ids));
	ids->dirfd = -1;
	ids->block = block_size();
	if (!data_dir) {
		ids->first = clock_base();
		ids->end = UINT64_MAX;
		return 0;
	}
	ret = nd_mkdir_p(data_dir, 0700);
	if (ret) {
		snprintf(err, errlen, "cannot create --data-dir %s: %s",
			 data_dir, strerror(-ret));
		return ret;
	}
	ids->dirfd = nd_dir_open(data_dir);
	if (ids->dirfd < 0) {
		ret = ids->dirfd;
		snprintf(err, errlen, "cannot open --data-dir %s: %s",
			 data_dir, strerror(-ret));
		return ret;
	}
	n = nd_small_read(ids->dirfd, MARK_FILE, buf, sizeof(buf));
	if (n == -ENOENT) {
		ids->first = 1;
	} else if (n < 0) {
		ret = (int)n;
		snprintf(err, errlen, "cannot read %s/" MARK_FILE ": %s",
			 data_dir, strerror(-ret));
		goto err_close_dir;
	} else {
		errno = 0;
		ids->first = strtoull(buf, &end, 10);
		if (errno || end == buf || (*end && strcmp(end, "\n")) ||
		    !ids->first || ids->first >= MAX_ID) {
			ret = -EINVAL;
			snprintf(err, errlen, "%s/" MARK_FILE " does not hold a "
				 "task id mark (a number); it was damaged: "
				 "restore it or write a number above every id "
				 "given", data_dir);
			goto err_close_dir;
		}
	}
	ids->end = ids->first;
	ret = nd_task_ids_reserve(ids, ids->first, 1);
	if (ret) {
		snprintf(err, errlen, "cannot write %s/" MARK_FILE ": %s",
			 data_dir, strerror(-ret));
		goto err_close_dir;
	}
	return 0;

err_close_dir:
	close(ids->dirfd);
	ids->dirfd = -1;
	return ret;
}

int nd_task_ids_reserve(struct nd_task_ids *ids, uint64_t next,
			uint64_t count)
{
	uint64_t end;
	int ret;

	if (next + count <= ids->end)
		return 0;
	if (ids->dirfd < 0)
		return -EOVERFLOW; /* clock-based: past UINT64_MAX */
	end = next + count + ids->block;
	ret = write_mark(ids, end);
	if (ret)
		return ret;
	ids->end = end;
	return 0;
}

void nd_task_ids_close(struct nd_task_ids *ids)
{
	if (ids->dirfd >= 0)
		close(ids->dirfd);
	ids->dirfd = -1;
}
