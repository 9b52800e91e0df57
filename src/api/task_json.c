/*
 * A task spec from the JSON body of POST /v1/tasks (routes.c): the fields
 * the CLI's options name, typed here; what they may hold together is the
 * one spec check's (nd_task_spec_check).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/shard.h"
#include "noded/json.h"
#include "noded/taskspec.h"
#include "wire/arena.h"

/* A JSON object of strings as map entries (the spec's labels and its
 * command's env have the same layout). NULL with why set when it is not
 * one. */
static void **map_entries(struct req *r, json_t *obj, const char *name,
			  const ProtobufCMessageDescriptor *d, size_t *n,
			  const char **why)
{
	struct nd_arena *a = &r->conn->shard->arena;
	size_t i = 0, count = json_object_size(obj);
	Noded__Command__EnvEntry **e;
	const char *k;
	json_t *v;

	*n = 0;
	if (!json_is_object(obj)) {
		*why = name;
		return NULL;
	}
	e = nd_arena_alloc(a, (count ? count : 1) * sizeof(*e));
	if (!e)
		return NULL;
	json_object_foreach(obj, k, v) {
		if (!json_is_string(v)) {
			*why = name;
			return NULL;
		}
		e[i] = nd_arena_alloc(a, sizeof(**e));
		if (!e[i])
			return NULL;
		protobuf_c_message_init(d, e[i]);
		e[i]->key = (char *)k;
		e[i]->value = (char *)json_string_value(v);
		i++;
	}
	*n = i;
	return (void **)e;
}

static const char *const task_fields[] = {
	"argv", "cmd", "node", "labels", "all", "timeout_s", "env", "cwd",
	"retries", "output_cap", "wait_for_node",
	"inherit_env", "user", "memory", "cpus", "pids", /* task_env_json */
	"nodes", "exclude", NULL,
};

/* The task's environment, user and limits from the JSON body into c
 * (README, "The task's environment, user and limits"): NULL, or what is
 * wrong (the ranges are the spec check's). */
static const char *task_env_json(json_t *j, Noded__Command *c)
{
	json_t *v;

	if ((v = json_object_get(j, "inherit_env"))) {
		if (!json_is_boolean(v))
			return "\"inherit_env\" must be true or false";
		c->inherit_env = json_is_true(v);
	}
	if ((v = json_object_get(j, "user"))) {
		if (!json_is_string(v) || !json_string_length(v))
			return "\"user\" must be a non-empty string";
		c->user = (char *)json_string_value(v);
	}
	if ((v = json_object_get(j, "memory"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return "\"memory\" must be a whole number of bytes";
		c->memory_max_bytes = (uint64_t)json_integer_value(v);
	}
	if ((v = json_object_get(j, "cpus"))) {
		double n = json_number_value(v);

		if (!json_is_number(v) || !(n >= 0) || n > 1000)
			return "\"cpus\" must be a number of CPUs from 0.01 "
			       "to 1000";
		c->cpu_millis = (uint32_t)(n * 1000 + 0.5);
		if (n > 0 && !c->cpu_millis)
			c->cpu_millis = 1; /* refused by the spec check */
	}
	if ((v = json_object_get(j, "pids"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > UINT32_MAX)
			return "\"pids\" must be a whole number";
		c->pids_max = (uint32_t)json_integer_value(v);
	}
	return NULL;
}

/*
 * A node list field (nodes, exclude): a string in hostlist syntax, or an
 * array of them, joined with commas (in the arena) into *out. NULL, or
 * what is wrong (the list itself is the spec check's to judge).
 */
static const char *node_list(struct req *r, json_t *v, const char *bad,
			     char **out)
{
	size_t n, len = 0;
	char *s;

	/* a NUL inside would cut the list short unseen */
	if (json_is_string(v) &&
	    strlen(json_string_value(v)) != json_string_length(v))
		return bad;
	if (json_is_string(v)) {
		*out = (char *)json_string_value(v);
		return NULL;
	}
	n = json_array_size(v);
	if (!json_is_array(v) || !n)
		return bad;
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(v, i);

		if (!json_is_string(e) ||
		    strlen(json_string_value(e)) != json_string_length(e))
			return bad;
		len += json_string_length(e) + 1;
	}
	s = nd_arena_alloc(&r->conn->shard->arena, len);
	if (!s)
		return "out of memory";
	*out = s;
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(v, i);
		size_t l = json_string_length(e);

		memcpy(s, json_string_value(e), l);
		s += l;
		*s++ = i + 1 < n ? ',' : '\0';
	}
	return NULL;
}

/* Fills sp (its command set by the caller) from the JSON body and checks
 * it as the master will (nd_task_spec_check); NULL, or what is wrong with
 * it (static, or formatted into why_buf). */
const char *nd__api_spec_from_json(struct req *r, json_t *j,
				   Noded__TaskSpec *sp, char *why_buf,
				   size_t why_size)
{
	struct nd_arena *a = &r->conn->shard->arena;
	json_t *argv = json_object_get(j, "argv");
	json_t *cmd = json_object_get(j, "cmd");
	json_t *v;
	Noded__Command *c = sp->command;
	const char *k, *why = NULL;

	json_object_foreach(j, k, v) {
		unsigned i;

		for (i = 0; task_fields[i] && strcmp(task_fields[i], k); i++)
			;
		if (!task_fields[i]) {
			/* k is valid UTF-8 (jansson checked the body), so it
			 * can be named back as JSON text; a long one is cut
			 * at a character boundary */
			int kl = (int)strlen(k);

			if (kl > 100)
				for (kl = 100; (k[kl] & 0xc0) == 0x80; kl--)
					;
			snprintf(why_buf, why_size, "unknown field \"%.*s\"%s "
				 "(want argv or cmd, node, nodes, labels, "
				 "all, exclude, timeout_s, env, cwd, retries, "
				 "output_cap, wait_for_node, inherit_env, user, "
				 "memory, cpus, pids)", kl, k,
				 k[kl] ? "..." : "");
			return why_buf;
		}
	}
	/* argv and cmd are typed here; which of them, and what they may
	 * hold, is the spec check's (below) */
	if (cmd) {
		if (!json_is_string(cmd))
			return "\"cmd\" must be a string";
		c->shell = (char *)json_string_value(cmd);
	}
	if (argv) {
		size_t n = json_array_size(argv);

		if (!json_is_array(argv))
			return "\"argv\" must be an array of strings";
		c->argv = nd_arena_alloc(a, (n ? n : 1) * sizeof(char *));
		if (!c->argv)
			return "out of memory";
		for (size_t i = 0; i < n; i++) {
			json_t *s = json_array_get(argv, i);

			if (!json_is_string(s))
				return "\"argv\" must be an array of strings";
			c->argv[i] = (char *)json_string_value(s);
		}
		c->n_argv = n;
	}
	if ((v = json_object_get(j, "node"))) {
		if (!json_is_string(v) || !json_string_length(v))
			return "\"node\" must be a non-empty string";
		sp->node = (char *)json_string_value(v);
	}
	if ((v = json_object_get(j, "nodes")) &&
	    (why = node_list(r, v, "\"nodes\" must be a node list (a string "
			     "such as \"web[01-20],db1\") or an array of "
			     "them", &sp->nodes)))
		return why;
	if ((v = json_object_get(j, "exclude")) &&
	    (why = node_list(r, v, "\"exclude\" must be a node list (a "
			     "string such as \"web[01-20],db1\") or an "
			     "array of them", &sp->exclude)))
		return why;
	if ((v = json_object_get(j, "cwd"))) {
		if (!json_is_string(v))
			return "\"cwd\" must be a string";
		c->cwd = (char *)json_string_value(v);
	}
	if ((v = json_object_get(j, "all"))) {
		if (!json_is_boolean(v))
			return "\"all\" must be true or false";
		sp->all = json_is_true(v);
	}
	if ((v = json_object_get(j, "timeout_s"))) {
		double s = json_number_value(v);

		if (!json_is_number(v) || !(s >= 0) || s * 1000 > UINT32_MAX)
			return "\"timeout_s\" must be a number of seconds "
			       "from 0 to 4294967";
		c->timeout_ms = (uint32_t)ceil(s * 1000);
	}
	/* the CLI's bounds (noded run --retries, --output-cap) */
	if ((v = json_object_get(j, "retries"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 1000)
			return "\"retries\" must be an integer from 0 to 1000";
		sp->retries = (uint32_t)json_integer_value(v);
	}
	if ((v = json_object_get(j, "output_cap"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1)
			return "\"output_cap\" must be a number of bytes, at "
			       "least 1";
		sp->output_cap_bytes = (uint64_t)json_integer_value(v);
	}
	if ((v = json_object_get(j, "wait_for_node"))) {
		if (!json_is_boolean(v))
			return "\"wait_for_node\" must be true or false";
		sp->wait_for_node = json_is_true(v);
	}
	if ((v = json_object_get(j, "env"))) {
		c->env = (Noded__Command__EnvEntry **)map_entries(
			r, v, "\"env\" must be an object of strings",
			&noded__command__env_entry__descriptor, &c->n_env,
			&why);
		if (!c->env)
			return why ? why : "out of memory";
	}
	why = task_env_json(j, c);
	if (why)
		return why;
	if ((v = json_object_get(j, "labels"))) {
		sp->labels = (Noded__TaskSpec__LabelsEntry **)map_entries(
			r, v, "\"labels\" must be an object of strings",
			&noded__task_spec__labels_entry__descriptor,
			&sp->n_labels, &why);
		if (!sp->labels)
			return why ? why : "out of memory";
	}
	return nd_task_spec_check(sp, why_buf, why_size);
}

