/*
 * Structured log lines (see log.h). logfmt is written by hand (it is a few
 * quoting rules); JSON goes through jansson, which escapes strings and
 * checks them as UTF-8, so a task's odd name never breaks a line.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/time.h"

#define LINE_MAX_BYTES 4096

enum nd_log_level nd_log_level = ND_LOG_INFO;
static enum nd_log_format log_format = ND_LOG_LOGFMT;

static const char *const level_names[] = {
	[ND_LOG_DEBUG] = "debug",
	[ND_LOG_INFO] = "info",
	[ND_LOG_WARN] = "warn",
	[ND_LOG_ERROR] = "error",
	[ND_LOG_OFF] = "off",
};

#define ENV_FORMAT "NODED_LOG_FORMAT"
#define ENV_LEVEL "NODED_LOG_LEVEL"

void nd_log_setup(enum nd_log_format format, enum nd_log_level level)
{
	log_format = format;
	nd_log_level = level;
	setenv(ENV_FORMAT, format == ND_LOG_JSON ? "json" : "logfmt", 1);
	setenv(ENV_LEVEL, level_names[level], 1);
}

void nd_log_import(void)
{
	const char *f = getenv(ENV_FORMAT), *l = getenv(ENV_LEVEL);

	if (f)
		nd_log_format_parse(f, &log_format);
	if (l)
		nd_log_level_parse(l, &nd_log_level);
	unsetenv(ENV_FORMAT);
	unsetenv(ENV_LEVEL);
}

bool nd_log_level_parse(const char *s, enum nd_log_level *out)
{
	for (unsigned i = 0; i <= ND_LOG_OFF; i++) {
		if (!strcasecmp(s, level_names[i])) {
			*out = (enum nd_log_level)i;
			return true;
		}
	}
	if (!strcasecmp(s, "warning")) {
		*out = ND_LOG_WARN;
		return true;
	}
	return false;
}

bool nd_log_format_parse(const char *s, enum nd_log_format *out)
{
	if (!strcasecmp(s, "logfmt"))
		*out = ND_LOG_LOGFMT;
	else if (!strcasecmp(s, "json"))
		*out = ND_LOG_JSON;
	else
		return false;
	return true;
}

/* "2026-11-22T16:30:00.123Z" into buf (at least 32 bytes). */
static void timestamp(char *buf, size_t size)
{
	uint64_t ms = nd_unix_ms();
	time_t sec = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03uZ", (unsigned)(ms % 1000));
}

/* A bounded line under construction; what does not fit is cut. Room is
 * kept at the end for " truncated=true". */
#define CUT_MARK " truncated=true"

struct line {
	char buf[LINE_MAX_BYTES];
	size_t len;
	bool cut;
};

static void put(struct line *l, const char *s, size_t n)
{
	size_t room = sizeof(l->buf) - sizeof(CUT_MARK) - l->len;

	if (n > room) {
		n = room;
		l->cut = true;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void puts_(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

/* A logfmt value: bare when it has no space, '=', quote or control byte
 * (and is not empty), else quoted with \" \\ \n \r \t and \u00XX. */
static void put_value(struct line *l, const char *s)
{
	const unsigned char *p;
	bool quote = !*s;

	for (p = (const unsigned char *)s; *p && !quote; p++)
		quote = *p <= ' ' || *p == '=' || *p == '"' || *p == 0x7f;
	if (!quote) {
		puts_(l, s);
		return;
	}
	put(l, "\"", 1);
	for (p = (const unsigned char *)s; *p; p++) {
		char esc[8];

		switch (*p) {
		case '"': put(l, "\\\"", 2); break;
		case '\\': put(l, "\\\\", 2); break;
		case '\n': put(l, "\\n", 2); break;
		case '\r': put(l, "\\r", 2); break;
		case '\t': put(l, "\\t", 2); break;
		default:
			if (*p < ' ' || *p == 0x7f) {
				snprintf(esc, sizeof(esc), "\\u%04x", *p);
				puts_(l, esc);
			} else {
				put(l, (const char *)p, 1);
			}
		}
	}
	put(l, "\"", 1);
}

/* A number field's text into buf. */
static const char *number(const struct nd_kv *kv, char *buf, size_t size)
{
	switch (kv->type) {
	case ND_KV_INT:
		snprintf(buf, size, "%" PRId64, kv->i);
		break;
	case ND_KV_UINT:
		snprintf(buf, size, "%" PRIu64, kv->u);
		break;
	case ND_KV_BOOL:
		snprintf(buf, size, "%s", kv->u ? "true" : "false");
		break;
	case ND_KV_DUR:
		snprintf(buf, size, "%.6f", (double)kv->u / 1e9);
		break;
	case ND_KV_STR:
		return kv->s ? kv->s : "";
	}
	return buf;
}

static void write_line(const char *s, size_t n)
{
	struct iovec iov[2] = {
		{ .iov_base = (void *)s, .iov_len = n },
		{ .iov_base = "\n", .iov_len = 1 },
	};

	while (writev(STDERR_FILENO, iov, 2) < 0 && errno == EINTR)
		;
}

static void logfmt(const char *ts, enum nd_log_level level,
		   const char *event, const struct nd_kv *kv, unsigned n)
{
	struct line l;
	char num[32];

	l.len = 0;
	l.cut = false;
	puts_(&l, "ts=");
	puts_(&l, ts);
	puts_(&l, " level=");
	puts_(&l, level_names[level]);
	puts_(&l, " event=");
	put_value(&l, event);
	for (unsigned i = 0; i < n && !l.cut; i++) {
		size_t mark = l.len;

		put(&l, " ", 1);
		puts_(&l, kv[i].key);
		put(&l, "=", 1);
		if (kv[i].type == ND_KV_STR)
			put_value(&l, number(&kv[i], num, sizeof(num)));
		else
			puts_(&l, number(&kv[i], num, sizeof(num)));
		if (l.cut) {
			/* the line stays parseable: the field goes whole */
			l.len = mark;
			memcpy(l.buf + l.len, CUT_MARK, sizeof(CUT_MARK) - 1);
			l.len += sizeof(CUT_MARK) - 1;
		}
	}
	write_line(l.buf, l.len);
}

static json_t *json_value(const struct nd_kv *kv)
{
	switch (kv->type) {
	case ND_KV_STR:
		/* not UTF-8: jansson refuses it; keep the field, lose bytes */
		return json_string(kv->s ? kv->s : "") ?:
		       json_string("(not UTF-8)");
	case ND_KV_INT:
		return json_integer(kv->i);
	case ND_KV_UINT:
		return json_integer((json_int_t)kv->u);
	case ND_KV_BOOL:
		return json_boolean(kv->u);
	case ND_KV_DUR:
		return json_real((double)kv->u / 1e9);
	}
	return json_null();
}

static void json_line(const char *ts, enum nd_log_level level,
		      const char *event, const struct nd_kv *kv, unsigned n)
{
	json_t *o = json_object();
	char buf[LINE_MAX_BYTES], *s = buf;
	size_t len;

	if (!o)
		return;
	json_object_set_new(o, "ts", json_string(ts));
	json_object_set_new(o, "level", json_string(level_names[level]));
	json_object_set_new(o, "event", json_string(event));
	for (unsigned i = 0; i < n; i++)
		json_object_set_new(o, kv[i].key, json_value(&kv[i]));
	len = json_dumpb(o, buf, sizeof(buf), JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (len > sizeof(buf)) {
		s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		len = s ? strlen(s) : 0;
	}
	if (s && len)
		write_line(s, len);
	if (s != buf)
		free(s);
	json_decref(o);
}

void nd_log_kv(enum nd_log_level level, const char *event,
	       const struct nd_kv *kv, unsigned n)
{
	char ts[40];

	if (level >= ND_LOG_OFF)
		return;
	timestamp(ts, sizeof(ts));
	if (log_format == ND_LOG_JSON)
		json_line(ts, level, event, kv, n);
	else
		logfmt(ts, level, event, kv, n);
}

/* ---- rate limit ---- */

struct limit_slot {
	char host[64];                /* "" while free */
	uint64_t last_ms;             /* its last line */
	uint64_t suppressed;          /* refusals since, not logged */
};

static struct {
	pthread_mutex_t lock;
	struct limit_slot slot[ND_LOG_LIMIT_SLOTS];
	uint64_t others;              /* dropped: their slot was busy */
} limit = { .lock = PTHREAD_MUTEX_INITIALIZER };

bool nd_log_limit(const char *peer, uint64_t now_ms, uint64_t *suppressed,
		  uint64_t *others)
{
	const char *colon = strrchr(peer, ':');
	size_t n = colon ? (size_t)(colon - peer) : strlen(peer);
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	struct limit_slot *sl;
	bool ok = false;

	if (n >= sizeof(sl->host))
		n = sizeof(sl->host) - 1;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)peer[i]) * 1099511628211ull;
	pthread_mutex_lock(&limit.lock);
	sl = &limit.slot[h % ND_LOG_LIMIT_SLOTS];
	if (strlen(sl->host) == n && !memcmp(sl->host, peer, n)) {
		if (now_ms - sl->last_ms < 1000) {
			sl->suppressed++;
		} else {
			*suppressed = sl->suppressed;
			sl->suppressed = 0;
			sl->last_ms = now_ms;
			ok = true;
		}
	} else if (sl->host[0] && now_ms - sl->last_ms < 1000) {
		limit.others++;
	} else {
		/* free, or its address has been quiet a second: ours now
		 * (what that one had not logged counts as others) */
		limit.others += sl->suppressed;
		memcpy(sl->host, peer, n);
		sl->host[n] = '\0';
		sl->last_ms = now_ms;
		sl->suppressed = 0;
		*suppressed = 0;
		ok = true;
	}
	if (ok) {
		*others = limit.others;
		limit.others = 0;
	}
	pthread_mutex_unlock(&limit.lock);
	return ok;
}
