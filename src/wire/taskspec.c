/* The one check of a task spec: see noded/taskspec.h. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "noded/hostlist.h"
#include "noded/taskspec.h"

/* Bytes of a bad env key quoted in the message about it. */
#define KEY_QUOTE_MAX 32

/*
 * s's first KEY_QUOTE_MAX bytes into out (out_size >= 4 * KEY_QUOTE_MAX +
 * 4), printable ASCII as it is and every other byte as \xNN, so the message
 * is readable text in a terminal and in JSON; "..." when cut.
 */
static void quote_key(const char *s, char *out, size_t out_size)
{
	size_t k = 0, i;

	for (i = 0; s[i] && i < KEY_QUOTE_MAX && k + 5 < out_size; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[k++] = (char)c;
		else
			k += (size_t)snprintf(out + k, out_size - k, "\\x%02x",
					      c);
	}
	if (s[i] && k + 4 <= out_size) {
		memcpy(out + k, "...", 3);
		k += 3;
	}
	out[k] = '\0';
}

/* buf holding msg (cut to fit); returned for the caller to return. */
static const char *say(char *buf, size_t size, const char *msg)
{
	if (size)
		snprintf(buf, size, "%s", msg);
	return buf;
}

/* NULL when list (the field what) is a valid node list; else buf with
 * "what 'LIST': why at position N". */
static const char *list_check(const char *what, const char *list, char *buf,
			      size_t size)
{
	char why[128], q[4 * KEY_QUOTE_MAX + 4];

	if (!nd_hostlist_check(list, NULL, why, sizeof(why)))
		return NULL;
	quote_key(list, q, sizeof(q));
	if (size)
		snprintf(buf, size, "%s '%s': %s", what, q, why);
	return buf;
}

const char *nd_task_spec_check(const Noded__TaskSpec *sp, char *buf,
			       size_t size)
{
	const Noded__Command *c = sp->command;
	const char *bad;
	bool shell = c && c->shell && c->shell[0];

	if (!c || (!c->n_argv && !shell))
		return say(buf, size,
			   "nothing to run: give argv or a shell command");
	if (c->n_argv && shell)
		return say(buf, size,
			   "give argv or a shell command, not both");
	if (c->n_argv && (!c->argv[0] || !c->argv[0][0]))
		return say(buf, size,
			   "argv[0], the command name, is empty");
	if (shell && !c->shell[strspn(c->shell, " \t\n")])
		return say(buf, size, "the shell command is only blanks");
	for (size_t i = 0; i < c->n_env; i++) {
		const char *k = c->env[i]->key ? c->env[i]->key : "";
		char q[4 * KEY_QUOTE_MAX + 4];

		if (k[0] && !strchr(k, '='))
			continue;
		quote_key(k, q, sizeof(q));
		if (size)
			snprintf(buf, size, "env key '%s' is not a variable "
				 "name: it must be non-empty, without '='", q);
		return buf;
	}
	if (c->user && c->user[0]) {
		const char *u = c->user;
		size_t i;

		for (i = 0; u[i] && i < ND_TASK_USER_MAX; i++)
			if ((unsigned char)u[i] <= ' ' || u[i] == 0x7f ||
			    u[i] == '/' || u[i] == ':')
				break;
		if (u[i] || u[0] == '-')
			return say(buf, size, "user is not a user name: at "
				   "most 256 bytes, without '/', ':', blanks "
				   "or control characters, not starting with "
				   "'-'");
	}
	if (c->memory_max_bytes && c->memory_max_bytes < ND_TASK_MEMORY_MIN)
		return say(buf, size, "memory limit under 1 MiB (1048576 "
			   "bytes): nothing could run in it");
	if (c->cpu_millis && (c->cpu_millis < ND_TASK_CPU_MILLIS_MIN ||
			      c->cpu_millis > ND_TASK_CPU_MILLIS_MAX))
		return say(buf, size, "cpus must be from 0.01 to 1000");
	if (c->pids_max > ND_TASK_PIDS_MAX)
		return say(buf, size, "pids limit over 4194304 (the kernel's "
			   "most)");
	if ((sp->node && sp->node[0]) + (sp->nodes && sp->nodes[0]) +
	    sp->all > 1)
		return say(buf, size, "node, nodes and all exclude each "
			   "other: target one of them");
	if (sp->n_labels && ((sp->node && sp->node[0]) ||
			     (sp->nodes && sp->nodes[0])))
		return say(buf, size, "labels select among all nodes or any "
			   "node, not among named ones: give node(s) or "
			   "labels");
	if (sp->nodes && sp->nodes[0] &&
	    (bad = list_check("nodes", sp->nodes, buf, size)))
		return bad;
	if (sp->exclude && sp->exclude[0] && sp->node && sp->node[0])
		return say(buf, size, "exclude does not apply to node (one "
			   "node by name): give nodes, labels or all");
	if (sp->exclude && sp->exclude[0] &&
	    (bad = list_check("exclude", sp->exclude, buf, size)))
		return bad;
	if (sp->all && sp->wait_for_node)
		return say(buf, size, "wait_for_node does not apply to all: "
			   "a fan-out runs on the nodes alive now");
	return NULL;
}
