/*
 * Structured logs of the daemons (master, worker, dev): one line per event
 * on stderr, in logfmt (the default) or JSON.
 *
 *   ts=2026-11-22T16:30:00.123Z level=info event=node.joined node=dev-1
 *   {"ts":"2026-11-22T16:30:00.123Z","level":"info","event":"node.joined",
 *    "node":"dev-1"}
 *
 * Every line is built in a buffer and written with one write(2), so lines
 * from different threads (shards, workers of noded dev) never interleave.
 * Events are named "subject.verb" (task.ended, node.lost, conn.error) so a
 * reader can filter on them; "msg" is the human sentence, "err" the cause.
 *
 * A call below the configured level costs one comparison (ND_LOG checks
 * before it evaluates its fields). Nothing on a per-request path logs at
 * info or above; debug may.
 *
 * The settings are process-wide, set once before any thread starts
 * (nd_log_setup), read without locks afterwards.
 */
#ifndef ND_CORE_LOG_H
#define ND_CORE_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum nd_log_level {
	ND_LOG_DEBUG,
	ND_LOG_INFO,
	ND_LOG_WARN,
	ND_LOG_ERROR,
	ND_LOG_OFF,
};

enum nd_log_format {
	ND_LOG_LOGFMT,
	ND_LOG_JSON,
};

enum nd_kv_type { ND_KV_STR, ND_KV_INT, ND_KV_UINT, ND_KV_BOOL, ND_KV_DUR };

/* One field of a line. Strings are borrowed for the call; NULL prints as
 * an empty value. ND_KV_DUR is nanoseconds, printed in seconds. */
struct nd_kv {
	const char *key;
	enum nd_kv_type type;
	union {
		const char *s;
		int64_t i;
		uint64_t u;
	};
};

#define ND_S(k, v) { .key = (k), .type = ND_KV_STR, .s = (v) }
#define ND_I(k, v) { .key = (k), .type = ND_KV_INT, .i = (int64_t)(v) }
#define ND_U(k, v) { .key = (k), .type = ND_KV_UINT, .u = (uint64_t)(v) }
#define ND_B(k, v) { .key = (k), .type = ND_KV_BOOL, .u = !!(v) }
#define ND_DUR(k, ns) { .key = (k), .type = ND_KV_DUR, .u = (uint64_t)(ns) }

extern enum nd_log_level nd_log_level;

/*
 * Sets the process's format and level (defaults: logfmt, info), and puts
 * them in the environment (NODED_LOG_FORMAT, NODED_LOG_LEVEL) for the exec
 * helpers, which are separate programs. Call before any thread starts.
 */
void nd_log_setup(enum nd_log_format format, enum nd_log_level level);
/* In an exec helper: takes the settings from the environment and removes
 * them from it (the commands it runs do not see them). */
void nd_log_import(void);

static inline bool nd_log_on(enum nd_log_level level)
{
	return level >= nd_log_level;
}

/* Writes one line with the n fields of kv after ts, level and event.
 * Errors writing it are ignored (there is nowhere else to say so). */
void nd_log_kv(enum nd_log_level level, const char *event,
	       const struct nd_kv *kv, unsigned n);

/* ND_LOG(ND_LOG_INFO, "node.joined", ND_S("node", name), ...): fields are
 * evaluated only when the level is on. */
#define ND_LOG(level, event, ...)                                           \
	do {                                                                \
		if (nd_log_on(level)) {                                     \
			const struct nd_kv kv_[] = { { 0 }, ##__VA_ARGS__ }; \
			nd_log_kv((level), (event), kv_ + 1,                \
				  sizeof(kv_) / sizeof(kv_[0]) - 1);        \
		}                                                           \
	} while (0)

/*
 * Rate limit for lines a peer can cause at will (refused authentication):
 * true when a line for peer ("HOST:PORT"; only HOST counts) may be written
 * at now_ms (monotonic). At most one line per address a second; the
 * refusals of an address between its lines are counted, and *suppressed
 * says how many were not logged before this line. Addresses are tracked in
 * ND_LOG_LIMIT_SLOTS slots (by hash): one whose slot another address used
 * within the second is not logged either, so there are never more than
 * that many lines a second; *others counts those, since the last line
 * that said so. Process-wide (one lock, on this path only).
 */
#define ND_LOG_LIMIT_SLOTS 64
bool nd_log_limit(const char *peer, uint64_t now_ms, uint64_t *suppressed,
		  uint64_t *others);

/* "debug", "info", "warn" (or "warning"), "error", "off": true and *out
 * set, or false. */
bool nd_log_level_parse(const char *s, enum nd_log_level *out);
/* "logfmt" or "json". */
bool nd_log_format_parse(const char *s, enum nd_log_format *out);

#endif
