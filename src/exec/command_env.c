/*
 * A command's environment and user (command_int.h): the base environment
 * or ours, the task's variables, and who it runs as. Part of starting a
 * command (command.c), shared as it is by the exec helper and noded-bench.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec/command_int.h"

void nd__exec_run_as_free(struct nd_exec_run_as *u)
{
	free(u->groups);
	free(u->name);
	free(u->home);
	free(u->shell);
	memset(u, 0, sizeof(*u));
}

/* Copies pw's name, home and shell into u (an empty shell is /bin/sh, an
 * empty home /, as login does). Returns 0 or -ENOMEM. */
static int run_as_names(struct nd_exec_run_as *u, const struct passwd *pw)
{
	u->name = strdup(pw->pw_name);
	u->home = strdup(pw->pw_dir && pw->pw_dir[0] ? pw->pw_dir : "/");
	u->shell = strdup(pw->pw_shell && pw->pw_shell[0] ? pw->pw_shell
							  : "/bin/sh");
	return u->name && u->home && u->shell ? 0 : -ENOMEM;
}

/*
 * Our own user, looked up once (callers are single-threaded, exec.h): its
 * name, home and shell, or, without a passwd entry (an arbitrary uid in a
 * container), the uid as the name, / and /bin/sh. NULL when out of memory.
 */
static const struct nd_exec_run_as *self_user(void)
{
	static struct nd_exec_run_as me;
	static bool done;
	struct passwd *pw;

	if (done)
		return &me;
	me.uid = geteuid();
	me.gid = getegid();
	pw = getpwuid(me.uid);
	if (pw) {
		if (run_as_names(&me, pw))
			goto nomem;
	} else {
		char n[24];

		snprintf(n, sizeof(n), "%u", (unsigned)me.uid);
		me.name = strdup(n);
		me.home = strdup("/");
		me.shell = strdup("/bin/sh");
		if (!me.name || !me.home || !me.shell)
			goto nomem;
	}
	done = true;
	return &me;
nomem:
	nd__exec_run_as_free(&me);
	return NULL;
}

int nd__exec_who(const Noded__Command *c, struct nd_exec_run_as *u,
		 char *reason, size_t reason_size)
{
	const struct nd_exec_run_as *me = self_user();
	struct passwd *pw;
	int n = 32;

	memset(u, 0, sizeof(*u));
	if (!me)
		return ENOMEM;
	if (!c->user || !c->user[0]) {
		u->uid = me->uid;
		u->gid = me->gid;
		u->name = strdup(me->name);
		u->home = strdup(me->home);
		u->shell = strdup(me->shell);
		return u->name && u->home && u->shell ? 0 : ENOMEM;
	}
	errno = 0;
	pw = getpwnam(c->user);
	if (!pw) {
		int e = errno;

		if (e && e != ENOENT && e != ESRCH && e != EBADF && e != EPERM)
			snprintf(reason, reason_size, "cannot look up user "
				 "'%.100s': %s", c->user, strerror(e));
		else
			snprintf(reason, reason_size, "no user '%.100s' on "
				 "this node", c->user);
		return EINVAL;
	}
	u->uid = pw->pw_uid;
	u->gid = pw->pw_gid;
	if (run_as_names(u, pw))
		return ENOMEM;
	if (u->uid == me->uid && (me->uid != 0 || u->gid == me->gid))
		return 0; /* ourselves: nothing to switch */
	if (me->uid != 0) {
		snprintf(reason, reason_size, "cannot run as user '%.100s': "
			 "the worker runs as '%.100s' (uid %u), not root",
			 c->user, me->name, (unsigned)me->uid);
		return EPERM;
	}
	for (;;) {
		int want = n;
		gid_t *g = realloc(u->groups, (size_t)n * sizeof(*g));

		if (!g)
			return ENOMEM;
		u->groups = g;
		if (getgrouplist(u->name, u->gid, g, &n) >= 0)
			break;
		if (n <= want) /* glibc says how many it needs */
			n = want * 2;
		if (n > 65536) {
			snprintf(reason, reason_size, "user '%.100s' is in too "
				 "many groups", c->user);
			return E2BIG;
		}
	}
	u->ngroups = n;
	u->set = true;
	return 0;
}

/* Same variable: equal up to and including the '=' (or the end). */
static bool same_key(const char *a, const char *b)
{
	size_t n = strcspn(a, "=");

	return !strncmp(a, b, n) && (b[n] == '=' || b[n] == '\0');
}

/*
 * An environment under construction, in two passes over the same calls
 * (env_put): the first (v NULL) counts entries and the bytes of the ones
 * made here, the second fills v and the bytes at p.
 */
struct envb {
	char **v;
	size_t n, bytes;
	char *p;
};

/* Adds key=value (a copy), or, with value NULL, key as a "KEY=VALUE"
 * string borrowed for the envb's life. */
static void env_put(struct envb *b, const char *key, const char *value)
{
	if (!b->v) {
		b->n++;
		if (value)
			b->bytes += strlen(key) + strlen(value) + 2;
		return;
	}
	if (!value) {
		b->v[b->n++] = (char *)key;
		return;
	}
	b->v[b->n++] = b->p;
	b->p += sprintf(b->p, "%s=%s", key, value) + 1;
}

/* Adds NAME=number. */
static void env_put_u64(struct envb *b, const char *key, uint64_t v)
{
	char n[24];

	snprintf(n, sizeof(n), "%llu", (unsigned long long)v);
	env_put(b, key, n);
}

/* Every entry, lowest precedence first (README, "The task's environment,
 * user and limits"). */
static void env_layers(struct envb *b, const Noded__ExecSpawn *sp,
		       const Noded__Command *c, const struct nd_exec_run_as *u,
		       const char *tag)
{
	if (c->inherit_env) {
		for (char **e = environ; e && *e; e++)
			env_put(b, *e, NULL);
	} else {
		env_put(b, "PATH", ND_EXEC_BASE_PATH);
		env_put(b, "LANG", "C.UTF-8");
	}
	if (!c->inherit_env || u->set) {
		env_put(b, "HOME", u->home);
		env_put(b, "USER", u->name);
		env_put(b, "LOGNAME", u->name);
		env_put(b, "SHELL", u->shell);
	}
	for (size_t i = 0; i < c->n_env; i++)
		env_put(b, c->env[i]->key, c->env[i]->value);
	if (sp->master_task_id) {
		env_put_u64(b, "NODED_TASK_ID", sp->master_task_id);
		env_put_u64(b, "NODED_JOB_ID", sp->job_id);
		env_put(b, "NODED_NODE", sp->node ? sp->node : "");
		env_put_u64(b, "NODED_ATTEMPT", sp->attempt);
	}
	if (tag)
		env_put(b, tag, NULL);
}

int nd__exec_envp(const Noded__ExecSpawn *sp, const Noded__Command *c,
		  const struct nd_exec_run_as *u, const char *tag,
		  char ***out, char *reason, size_t reason_size)
{
	struct envb b = { 0 };
	char **all;
	size_t n, k = 0;

	for (size_t i = 0; i < c->n_env; i++) {
		const char *key = c->env[i]->key;

		if (!key[0] || strchr(key, '=')) {
			snprintf(reason, reason_size,
				 "bad env key '%.200s' (want a name without "
				 "'=')", key);
			return -EINVAL;
		}
	}
	env_layers(&b, sp, c, u, tag);
	n = b.n;
	/* entries, then the kept ones (NULL-terminated), then the bytes */
	all = malloc((2 * n + 1) * sizeof(*all) + b.bytes);
	if (!all)
		return -ENOMEM;
	b.v = all;
	b.n = 0;
	b.p = (char *)(all + 2 * n + 1);
	env_layers(&b, sp, c, u, tag);
	for (size_t i = 0; i < n; i++) {
		size_t j;

		for (j = i + 1; j < n && !same_key(all[i], all[j]); j++)
			;
		if (j == n)
			all[n + k++] = all[i];
	}
	all[n + k] = NULL;
	/* the kept ones first: what the caller passes to exec */
	memmove(all, all + n, (k + 1) * sizeof(*all));
	*out = all;
	return 0;
}

const char *nd__exec_env_path(char *const *envp)
{
	for (; *envp; envp++)
		if (!strncmp(*envp, "PATH=", 5))
			return *envp + 5;
	return NULL;
}

