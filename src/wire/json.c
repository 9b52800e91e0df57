/* Task and node records as JSON, shared by the CLI's --json and the HTTP API
 * so both speak the same shapes. */
#include <string.h>
#include <strings.h>

#include "noded/json.h"

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

json_t *nd_json_node(const Noded__NodeInfo *n)
{
	json_t *labels = json_object();

	for (size_t i = 0; i < n->n_labels; i++)
		json_object_set_new(labels, n->labels[i]->key,
				    json_string(n->labels[i]->value));
	return json_pack("{s:s, s:s, s:o, s:s, s:f, s:I, s:I, s:i, s:i, s:i, "
			 "s:I, s:b}",
			 "name", n->name, "address", n->address,
			 "labels", labels, "state", nd_node_state_name(n->state),
			 "load1", n->load1,
			 "mem_total_bytes", (json_int_t)n->mem_total_bytes,
			 "mem_available_bytes",
			 (json_int_t)n->mem_available_bytes,
			 "slots_total", (int)n->slots_total,
			 "slots_free", (int)n->slots_free,
			 "running_tasks", (int)n->running_tasks,
			 "last_heartbeat_unix_ms",
			 (json_int_t)n->last_heartbeat_unix_ms,
			 "draining", (int)n->draining);
}

static const char *str(const char *s)
{
	return s ? s : "";
}

json_t *nd_json_task(const Noded__TaskRecord *r)
{
	const Noded__TaskSpec *s = r->spec;
	json_t *o, *cmd;

	if (s && s->shell && s->shell[0]) {
		cmd = json_string(s->shell);
	} else {
		cmd = json_array();
		for (size_t i = 0; cmd && s && i < s->n_argv; i++)
			if (json_array_append_new(cmd,
						  json_string(str(s->argv[i]))))
				goto err_cmd;
	}
	if (!cmd)
		return NULL;
	o = json_pack("{s:I, s:I, s:s, s:s, s:o, s:i, s:i, s:s, s:I, s:I, "
		      "s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I}",
		      "id", (json_int_t)r->id,
		      "job_id", (json_int_t)r->job_id,
		      "state", nd_task_state_name(r->state),
		      "node", str(r->node),
		      json_is_string(cmd) ? "shell" : "argv", cmd,
		      "exit_code", (int)r->exit_code,
		      "signal", (int)r->signal,
		      "reason", str(r->reason),
		      "submitted_unix_ms", (json_int_t)r->submitted_unix_ms,
		      "started_unix_ms", (json_int_t)r->started_unix_ms,
		      "ended_unix_ms", (json_int_t)r->ended_unix_ms,
		      "utime_us", (json_int_t)r->utime_us,
		      "stime_us", (json_int_t)r->stime_us,
		      "max_rss_kib", (json_int_t)r->max_rss_kib,
		      "attempt", (json_int_t)r->attempt,
		      "output_bytes", (json_int_t)r->output_bytes,
		      "truncated", (int)r->truncated,
		      "watchers", (json_int_t)r->watchers);
	/* json_pack steals cmd ("o") even when it fails. */
	return o;
err_cmd:
	json_decref(cmd);
	return NULL;
}
