/*
 * Internal to starting a command (command.c: spawning; command_env.c: its
 * environment and user). Callers are single-threaded (exec.h).
 */
#ifndef ND_EXEC_COMMAND_INT_H
#define ND_EXEC_COMMAND_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "noded.pb-c.h"

/* The base PATH of a task (systemd's default for services). */
#define ND_EXEC_BASE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:" \
			  "/usr/bin:/sbin:/bin"

/* Who a command runs as: its user's name, home and shell for the base
 * environment, and, when set, the ids to switch to in the child. A zeroed
 * struct is empty. */
struct nd_exec_run_as {
	bool set;                /* switch to uid/gid/groups (not ours) */
	uid_t uid;
	gid_t gid;
	gid_t *groups;           /* malloc'd, ngroups of them */
	int ngroups;
	char *name, *home, *shell; /* malloc'd */
};

/* Frees what u holds and zeroes it. */
void nd__exec_run_as_free(struct nd_exec_run_as *u);

/*
 * Who c runs as, into u (nd__exec_run_as_free it in any case): c->user,
 * or our own user (looked up once) when c names none. Another user than
 * ours needs us to be root: then u->set with its uid, gid and groups (its
 * supplementary groups as initgroups would give them) for the child to
 * switch to. Returns 0, or a positive errno with reason (reason_size
 * bytes) set: EINVAL no such user, EPERM we are not root, E2BIG, ENOMEM.
 */
int nd__exec_who(const Noded__Command *c, struct nd_exec_run_as *u,
		 char *reason, size_t reason_size);

/*
 * The command's environment, in one malloc'd block (free only it): the
 * pointer array, then the strings made here; entries of our own
 * environment and tag are borrowed. Layers, each winning over the ones
 * before (and a later entry of one layer over an earlier one, a map key
 * sent twice): the base (PATH, LANG, and HOME, USER, LOGNAME, SHELL of u),
 * or our whole environment with c->inherit_env (then HOME, USER, LOGNAME,
 * SHELL are u's only when u->set); c's env; the task's NODED_TASK_ID,
 * NODED_JOB_ID, NODED_NODE, NODED_ATTEMPT (when sp->master_task_id is
 * set); tag ("KEY=VALUE", NULL: none). Returns 0, -EINVAL with reason set
 * (a key that is empty or holds '=': it could not be said as KEY=VALUE),
 * or -ENOMEM.
 */
int nd__exec_envp(const Noded__ExecSpawn *sp, const Noded__Command *c,
		  const struct nd_exec_run_as *u, const char *tag,
		  char ***out, char *reason, size_t reason_size);

/* The value of PATH in envp (NULL-terminated), or NULL. */
const char *nd__exec_env_path(char *const *envp);

#endif
