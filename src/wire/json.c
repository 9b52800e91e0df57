/* Task and node records as JSON, shared by the CLI's --json and the HTTP API
 * so both speak the same shapes; bytes that are not UTF-8 in any of their
 * texts take the one lossless form of nd_json_set_text(). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "noded/json.h"
#include "wire/text.h"

static const char *const state_names[] = {
	[NODED__TASK_STATE__TASK_PENDING] = "PENDING",
	[NODED__TASK_STATE__TASK_ASSIGNED] = "ASSIGNED",
	[NODED__TASK_STATE__TASK_RUNNING] = "RUNNING",
	[NODED__TASK_STATE__TASK_SUCCEEDED] = "SUCCEEDED",
	[NODED__TASK_STATE__TASK_FAILED] = "FAILED",
	[NODED__TASK_STATE__TASK_TIMED_OUT] = "TIMED_OUT",
	[NODED__TASK_STATE__TASK_CANCELLED] = "CANCELLED",
	[NODED__TASK_STATE__TASK_LOST] = "LOST",
};
#define NSTATES (sizeof(state_names) / sizeof(state_names[0]))

const char *nd_task_state_name(Noded__TaskState s)
{
	if ((unsigned)s < NSTATES && state_names[s])
		return state_names[s];
	return "UNKNOWN";
}

bool nd_task_state_parse(const char *s, Noded__TaskState *out)
{
	for (unsigned i = 0; i < NSTATES; i++) {
		if (state_names[i] && !strcasecmp(s, state_names[i])) {
			*out = (Noded__TaskState)i;
			return true;
		}
	}
	return false;
}

const char *nd_node_state_name(Noded__NodeState s)
{
	switch (s) {
	case NODED__NODE_STATE__NODE_ALIVE: return "ALIVE";
	case NODED__NODE_STATE__NODE_SUSPECT: return "SUSPECT";
	case NODED__NODE_STATE__NODE_DEAD: return "DEAD";
	case NODED__NODE_STATE__NODE_LEFT: return "LEFT";
	default: return "UNKNOWN";
	}
}

/* ---- text that may hold any bytes ---- */

static char *base64(const char *p, size_t n)
{
	char *out;

	if (n > (size_t)INT_MAX / 4 * 3)
		return NULL;
	out = malloc(4 * ((n + 2) / 3) + 1);
	if (out)
		EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)p,
				(int)n);
	return out;
}

/* s with each byte outside valid UTF-8 as U+FFFD (3 bytes for 1). */
static json_t *readable(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	char *buf, *o;
	json_t *j;

	if (len > SIZE_MAX / 3)
		return NULL;
	buf = malloc(3 * len + 1);
	if (!buf)
		return NULL;
	o = buf;
	while (len) {
		size_t n = nd_utf8_seq(p, len);

		if (n) {
			memcpy(o, p, n);
			o += n;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			n = 1;
		}
		p += n;
		len -= n;
	}
	j = json_stringn_nocheck(buf, (size_t)(o - buf)); /* valid now */
	free(buf);
	return j;
}

json_t *nd_json_text(const char *s)
{
	size_t len = s ? strlen(s) : 0;

	/* (checked here by jansson's rules: no second check) */
	if (nd_utf8_valid(s ? s : "", len))
		return json_stringn_nocheck(s ? s : "", len);
	return readable(s, len);
}

/* obj[key + suffix] = v (stolen). */
static int set_suffixed(json_t *obj, const char *key, const char *suffix,
			json_t *v)
{
	char name[64];

	if (!v || snprintf(name, sizeof(name), "%s%s", key, suffix) >=
			  (int)sizeof(name)) {
		json_decref(v);
		return -ENOMEM;
	}
	return json_object_set_new(obj, name, v) ? -ENOMEM : 0;
}

int nd_json_set_text(json_t *obj, const char *key, const char *s)
{
	return nd_json_set_bytes(obj, key, s, s ? strlen(s) : 0);
}

int nd_json_set_bytes(json_t *obj, const char *key, const char *s,
		      size_t len)
{
	char *b;
	int r;

	if (nd_utf8_valid(s ? s : "", len))
		return json_object_set_new(obj, key, json_stringn_nocheck(
						   s ? s : "", len)) ? -ENOMEM : 0;
	if (json_object_set_new(obj, key, readable(s, len)))
		return -ENOMEM;
	b = base64(s, len);
	r = set_suffixed(obj, key, "_base64", b ? json_string(b) : NULL);
	free(b);
	return r;
}

int nd_json_set_texts(json_t *obj, const char *key, char *const *v,
		      size_t n)
{
	json_t *a = json_array(), *b64 = NULL;
	size_t i;

	if (!a || json_object_set_new(obj, key, a))
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		const char *s = v[i] ? v[i] : "";

		if (!nd_utf8_valid(s, strlen(s)))
			break;
	}
	for (size_t k = 0; k < n; k++)
		if (json_array_append_new(a, nd_json_text(v[k])))
			return -ENOMEM;
	if (i == n)
		return 0;
	b64 = json_array();
	if (set_suffixed(obj, key, "_base64", b64))
		return -ENOMEM;
	for (size_t k = 0; k < n; k++) {
		const char *s = v[k] ? v[k] : "";
		char *b = base64(s, strlen(s));

		if (json_array_append_new(b64, b ? json_string(b) : NULL)) {
			free(b);
			return -ENOMEM;
		}
		free(b);
	}
	return 0;
}

/* ---- records ---- */

/* The labels map: readable keys and values, and labels_base64 (base64 key
 * to base64 value) when any of them is not UTF-8. */
static int set_labels(json_t *o, const Noded__NodeInfo *n)
{
	json_t *labels = json_object(), *b64;
	bool exact = true;

	if (json_object_set_new(o, "labels", labels))
		return -ENOMEM;
	for (size_t i = 0; i < n->n_labels; i++) {
		const char *k = n->labels[i]->key, *v = n->labels[i]->value;
		json_t *ks;

		exact = exact && nd_utf8_valid(k, strlen(k)) &&
			nd_utf8_valid(v, strlen(v));
		ks = nd_json_text(k);
		if (!ks || json_object_set_new(labels, json_string_value(ks),
					       nd_json_text(v))) {
			json_decref(ks);
			return -ENOMEM;
		}
		json_decref(ks);
	}
	if (exact)
		return 0;
	b64 = json_object();
	if (set_suffixed(o, "labels", "_base64", b64))
		return -ENOMEM;
	for (size_t i = 0; i < n->n_labels; i++) {
		const char *k = n->labels[i]->key, *v = n->labels[i]->value;
		char *bk = base64(k, strlen(k)), *bv = base64(v, strlen(v));
		int r = !bk || !bv ||
			json_object_set_new(b64, bk, json_string(bv));

		free(bk);
		free(bv);
		if (r)
			return -ENOMEM;
	}
	return 0;
}

json_t *nd_json_node(const Noded__NodeInfo *n)
{
	json_t *o = json_object();

	if (!o || nd_json_set_text(o, "name", n->name) ||
	    nd_json_set_text(o, "address", n->address) || set_labels(o, n))
		goto err_object;
	if (json_object_update_new(o, json_pack(
		    "{s:s, s:f, s:I, s:I, s:i, s:i, s:i, s:I, s:b, s:b, s:b, "
		    "s:I, s:I}",
		    "state", nd_node_state_name(n->state),
		    "load1", n->load1,
		    "mem_total_bytes", (json_int_t)n->mem_total_bytes,
		    "mem_available_bytes", (json_int_t)n->mem_available_bytes,
		    "slots_total", (int)n->slots_total,
		    "slots_free", (int)n->slots_free,
		    "running_tasks", (int)n->running_tasks,
		    "last_heartbeat_unix_ms",
		    (json_int_t)n->last_heartbeat_unix_ms,
		    "draining", (int)n->draining,
		    "drain_operator", (int)n->drain_operator,
		    "drain_worker", (int)n->drain_worker,
		    "drain_deadline_unix_ms",
		    (json_int_t)n->drain_deadline_unix_ms,
		    "drain_since_unix_ms", (json_int_t)n->drain_since_unix_ms)))
		goto err_object;
	return o;
err_object:
	json_decref(o);
	return NULL;
}

/* The attempts of a record as an array of objects: 0 or -ENOMEM. */
static int set_attempts(json_t *o, const Noded__TaskRecord *r)
{
	json_t *arr = json_array();

	if (!arr || json_object_set_new(o, "attempts", arr))
		return -ENOMEM;
	for (size_t i = 0; i < r->n_attempts; i++) {
		const Noded__TaskAttempt *a = r->attempts[i];
		json_t *j = json_pack(
			"{s:I, s:s, s:I, s:I, s:I, s:i, s:i}",
			"attempt", (json_int_t)a->attempt,
			"state", nd_task_state_name(a->state),
			"assigned_unix_ms", (json_int_t)a->assigned_unix_ms,
			"started_unix_ms", (json_int_t)a->started_unix_ms,
			"ended_unix_ms", (json_int_t)a->ended_unix_ms,
			"exit_code", (int)a->exit_code,
			"signal", (int)a->signal);

		if (!j || json_array_append_new(arr, j) ||
		    nd_json_set_text(j, "node", a->node) ||
		    nd_json_set_text(j, "reason", a->reason))
			return -ENOMEM;
	}
	return 0;
}

json_t *nd_json_task(const Noded__TaskRecord *r)
{
	const Noded__Command *s = r->spec ? r->spec->command : NULL;
	json_t *o = json_pack("{s:I, s:I, s:s}", "id", (json_int_t)r->id,
			      "job_id", (json_int_t)r->job_id,
			      "state", nd_task_state_name(r->state));
	int err;

	if (!o || nd_json_set_text(o, "node", r->node))
		goto err_object;
	if (s && s->shell && s->shell[0])
		err = nd_json_set_text(o, "shell", s->shell);
	else
		err = nd_json_set_texts(o, "argv", s ? s->argv : NULL,
					s ? s->n_argv : 0);
	if (err || json_object_update_new(o, json_pack(
			   "{s:i, s:i}", "exit_code", (int)r->exit_code,
			   "signal", (int)r->signal)) ||
	    nd_json_set_text(o, "reason", r->reason))
		goto err_object;
	if (json_object_update_new(o, json_pack(
		    "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I}",
		    "submitted_unix_ms", (json_int_t)r->submitted_unix_ms,
		    "started_unix_ms", (json_int_t)r->started_unix_ms,
		    "ended_unix_ms", (json_int_t)r->ended_unix_ms,
		    "utime_us", (json_int_t)r->utime_us,
		    "stime_us", (json_int_t)r->stime_us,
		    "max_rss_kib", (json_int_t)r->max_rss_kib,
		    "attempt", (json_int_t)r->attempt,
		    "output_bytes", (json_int_t)r->output_bytes,
		    "truncated", (int)r->truncated,
		    "watchers", (json_int_t)r->watchers)))
		goto err_object;
	if (r->cancel_requested && /* only then: the shape stays */
	    json_object_set_new(o, "cancel_requested", json_true()))
		goto err_object;
	/* the task's user and limits, as POST /v1/tasks takes them; only
	 * when set */
	if (s && s->inherit_env &&
	    json_object_set_new(o, "inherit_env", json_true()))
		goto err_object;
	if (s && s->user && s->user[0] && nd_json_set_text(o, "user", s->user))
		goto err_object;
	if (s && s->memory_max_bytes &&
	    json_object_set_new(o, "memory", json_integer(
				(json_int_t)s->memory_max_bytes)))
		goto err_object;
	if (s && s->cpu_millis &&
	    json_object_set_new(o, "cpus", json_real(s->cpu_millis / 1000.0)))
		goto err_object;
	if (s && s->pids_max &&
	    json_object_set_new(o, "pids", json_integer(s->pids_max)))
		goto err_object;
	if (set_attempts(o, r))
		goto err_object;
	return o;
err_object:
	json_decref(o);
	return NULL;
}
