/* The options of `noded run` and `noded submit` (the task spec they
 * build) and their usage text; see common.h. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "noded/taskspec.h"

/* ---- run / submit options ---- */

void nd_cli_task_usage(FILE *f, const char *cmd)
{
	fprintf(f,
		"usage: noded %s [options] -- CMD [ARG...]\n"
		"  --master HOST:PORT     the master (default: $NODED_MASTER, else\n"
		"                         " ND_CLI_MASTER ")\n"
		"  --token-file FILE      the master's token, if it has one\n"
		"                         (default: $NODED_TOKEN_FILE)\n"
		"%s"
		"  --config FILE          read the settings from FILE alone (not\n"
		"                         /etc/noded/noded.conf and the user's)\n"
		"  --node NAME            run on this node\n"
		"  --node LIST            or once on each node of a list, as one job:\n"
		"                         'web[01-20],db1' (pdsh/clush ranges)\n"
		"  --label KEY=VALUE      or on a node with these labels (repeatable)\n"
		"  --all                  or once on every live node (a fan-out job);\n"
		"                         with --label, every live node with them\n"
		"  --exclude LIST         leave these nodes out (same syntax; with\n"
		"                         --all, --label, a node list, or no target)\n"
		"  --timeout SECS         kill it after SECS (decimals allowed; 0: never)\n"
		"  --env KEY=VALUE        add to its environment (repeatable)\n"
		"  --cwd DIR              working directory on the node\n"
		"  --shell                run the words after -- with /bin/sh -c\n"
		"  --retries N            run again elsewhere when LOST, up to N times\n"
		"  --output-cap BYTES     output the master keeps (default: its own)\n"
		"  --wait-for-node        when no node can run it yet (no node of\n"
		"                         that name or with those labels, or none\n"
		"                         alive), wait PENDING for one to join\n"
		"                         instead of refusing it (not with --all)\n"
		"  --inherit-env          the worker's own environment instead of\n"
		"                         the base one (PATH, HOME, LANG, USER,\n"
		"                         LOGNAME, SHELL); --env still adds to it\n"
		"  --user NAME            run as this user (the worker must be root)\n"
		"  --memory BYTES         memory limit (suffix K, M, G: KiB, MiB,\n"
		"                         GiB); past it the kernel kills the task\n"
		"  --cpus N               CPU limit in CPUs (decimals allowed)\n"
		"  --pids N               at most N processes and threads at once\n"
		"                         (limits need the worker's cgroup v2; where\n"
		"                         it has none the task FAILS, never runs\n"
		"                         unlimited)\n"
		"The task sees NODED_TASK_ID, NODED_JOB_ID, NODED_NODE and\n"
		"NODED_ATTEMPT.\n",
		cmd, nd_cli_tls_usage);
	if (!strcmp(cmd, "run"))
		fprintf(f,
			"  --print-id             say 'noded: task ID' (with --all: "
			"'noded: job ID')\n"
			"                         on stderr once the master took it\n"
			"  --group                hold each node's output until "
			"its task ends, and print\n"
			"                         equal output of many nodes once, "
			"headed by their list\n"
			"                         (in batches, as tasks end)\n"
			"  --json                 print one JSON object per task "
			"as it ends (node, task,\n"
			"                         state, exit code, output)\n"
			"Without --shell the words are passed as they are, never "
			"split.\n"
			"Streams stdout and stderr (with several nodes each line as "
			"'NODE: line') and exits\n"
			"with the command's status: 128+N if killed by signal N, "
			"124 on timeout,\n"
			"255 when the task or the master is lost; with several "
			"nodes the largest,\n"
			"each node that did not succeed named on stderr, and a "
			"summary per node last.\n"
			"Ctrl-C cancels the task(s) and waits for them; a second "
			"Ctrl-C exits at once.\n"
			"A retried attempt is said on stderr, and where the retry "
			"runs; output of\n"
			"an attempt after the first follows a marker line on "
			"stderr.\n");
	else
		fprintf(f, "Without --shell the words are passed as they are, "
			"never split.\nPrints the task id (with --all or a node "
			"list: 'job J: task T on NODE'\nlines) and exits.\n");
}

bool nd_cli_timeout_ms(const char *s, uint32_t *ms)
{
	size_t digits = strspn(s, "0123456789.");
	const char *dot = strchr(s, '.');
	double v, msd;
	uint64_t m;

	if (!*s || s[digits] || !strcmp(s, ".") ||
	    (dot && strchr(dot + 1, '.')))
		goto bad;
	v = strtod(s, NULL);
	msd = v * 1000.0;
	if (msd > (double)UINT32_MAX)
		goto bad;
	m = (uint64_t)msd;
	if ((double)m < msd)
		m++;		/* round up: 0.0001 s is not "no timeout" */
	if (m > UINT32_MAX)
		goto bad;
	*ms = (uint32_t)m;
	return true;
bad:
	fprintf(stderr, "noded: --timeout wants seconds from 0 to %u "
		"(decimals allowed), not '%s'\n", UINT32_MAX / 1000, s);
	return false;
}

/* --memory: bytes, with an optional K, M, G or T suffix (powers of
 * 1024); at least ND_TASK_MEMORY_MIN. Says why and returns false when
 * not. */
static bool parse_bytes(const char *s, uint64_t *out)
{
	static const char units[] = "KMGT";
	unsigned long long v;
	const char *u;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		goto bad;
	if (*end) {
		u = strchr(units, end[0] & ~0x20);
		if (!u || !*u || (end[1] && strcmp(end + 1, "iB") &&
				  strcmp(end + 1, "B")))
			goto bad;
		for (long i = 0; i <= u - units; i++) {
			if (v > UINT64_MAX / 1024)
				goto bad;
			v *= 1024;
		}
	}
	if (v < ND_TASK_MEMORY_MIN)
		goto bad;
	*out = v;
	return true;
bad:
	fprintf(stderr, "noded: --memory wants bytes, at least 1M (suffixes "
		"K, M, G, T: powers of 1024), not '%s'\n", s);
	return false;
}

/* --cpus: a number of CPUs from 0.01 to 1000 (decimals) into 1/1000 CPU.
 * Says why and returns false when not. */
static bool parse_cpus(const char *s, uint32_t *millis)
{
	size_t digits = strspn(s, "0123456789.");
	const char *dot = strchr(s, '.');
	double v;

	if (!*s || s[digits] || !strcmp(s, ".") ||
	    (dot && strchr(dot + 1, '.')))
		goto bad;
	v = strtod(s, NULL) * 1000.0;
	if (v < ND_TASK_CPU_MILLIS_MIN || v > ND_TASK_CPU_MILLIS_MAX)
		goto bad;
	*millis = (uint32_t)(v + 0.5);
	return true;
bad:
	fprintf(stderr, "noded: --cpus wants a number of CPUs from 0.01 to "
		"1000 (decimals allowed), not '%s'\n", s);
	return false;
}

/* Splits "KEY=VALUE" for opt: *key is a malloc'd copy, *value points into
 * kv. Prints why and returns -EINVAL for a missing '=' or empty key. */
static int split_kv(const char *opt, const char *kv, char **key,
		    const char **value)
{
	const char *eq = strchr(kv, '=');

	if (!eq || eq == kv) {
		fprintf(stderr, "noded: %s wants KEY=VALUE, not '%s'\n", opt,
			kv);
		return -EINVAL;
	}
	*key = strndup(kv, (size_t)(eq - kv));
	if (!*key)
		return -ENOMEM;
	*value = eq + 1;
	return 0;
}

/*
 * Adds KEY=VALUE to a map stored as an entry array (store, capacity fixed by
 * the caller) and its pointer array (*ptrs, *n); a key given again with the
 * same value is kept once, with another value it is refused (ret -EINVAL,
 * said why). The two entry types have the same layout, so one macro fills
 * both (init is the entry's _init function).
 */
#define ADD_KV(store, ptrs, n, cmd, opt, kv, init_fn, ret)                    \
	do {                                                                  \
		char *k_;                                                     \
		const char *v_;                                               \
		size_t i_;                                                    \
                                                                              \
		(ret) = split_kv((opt), (kv), &k_, &v_);                      \
		if (ret)                                                      \
			break;                                                \
		for (i_ = 0; i_ < (n); i_++)                                  \
			if (!strcmp((ptrs)[i_]->key, k_))                     \
				break;                                        \
		if (i_ < (n)) {                                               \
			if (strcmp((ptrs)[i_]->value, v_)) {                  \
				fprintf(stderr, "noded %s: %s key '%s' "      \
					"given twice ('%s' and '%s'): give "  \
					"it once\n", (cmd), (opt), k_,        \
					(ptrs)[i_]->value, v_);               \
				(ret) = -EINVAL;                              \
			}                                                     \
			free(k_);                                             \
			break;                                                \
		}                                                             \
		init_fn(&(store)[n]);                                         \
		(store)[n].key = k_;                                          \
		(store)[n].value = (char *)v_;                                \
		(ptrs)[n] = &(store)[n];                                      \
		(n)++;                                                        \
	} while (0)

/* Joins words with single spaces into a new string. */
static char *join_words(char **w, size_t n)
{
	size_t len = 1, i;
	char *s, *p;

	for (i = 0; i < n; i++)
		len += strlen(w[i]) + 1;
	s = malloc(len);
	if (!s)
		return NULL;
	p = s;
	for (i = 0; i < n; i++) {
		size_t l = strlen(w[i]);

		if (i)
			*p++ = ' ';
		memcpy(p, w[i], l);
		p += l;
	}
	*p = '\0';
	return s;
}

void nd_cli_task_args_free(struct nd_cli_task_args *a)
{
	size_t i;

	for (i = 0; a->command.env && i < a->command.n_env; i++)
		free(a->command.env[i]->key);
	for (i = 0; a->spec.labels && i < a->spec.n_labels; i++)
		free(a->spec.labels[i]->key);
	free(a->command.env);
	free(a->spec.labels);
	free(a->env_store);
	free(a->label_store);
	free(a->shell);
	memset(a, 0, sizeof(*a));
}

/*
 * After the options of `cmd`: takes the command from argv[optind..argc)
 * into a (joined when shell), then checks the spec as the master will
 * (nd_task_spec_check), so a bad one is refused before anything is sent.
 * Returns 0, -ENOMEM, -EINVAL (said why: a usage error) or -ENOENT (no
 * command: said so, the usage line is due).
 */
static int task_words(struct nd_cli_task_args *a, const char *cmd,
		      bool shell, int argc, char **argv)
{
	const char *bad;
	char why[256];
	size_t ncmd;

	if (optind >= argc) {
		fprintf(stderr, "noded %s: no command given\n", cmd);
		return -ENOENT;
	}
	ncmd = (size_t)(argc - optind);
	if (shell) {
		a->shell = join_words(argv + optind, ncmd);
		if (!a->shell)
			return -ENOMEM;
		a->command.shell = a->shell;
	} else {
		a->command.argv = argv + optind;
		a->command.n_argv = ncmd;
	}
	bad = nd_task_spec_check(&a->spec, why, sizeof(why));
	if (bad) {
		fprintf(stderr, "noded %s: %s\n", cmd, bad);
		return -EINVAL;
	}
	return 0;
}

/* The options of run and submit (nd_cli_task_args_parse). */
static const struct option task_opts[] = {
	{ "master", required_argument, NULL, 'm' },
	{ "node", required_argument, NULL, 'n' },
	{ "label", required_argument, NULL, 'l' },
	{ "all", no_argument, NULL, 'a' },
	{ "timeout", required_argument, NULL, 't' },
	{ "env", required_argument, NULL, 'e' },
	{ "cwd", required_argument, NULL, 'c' },
	{ "shell", no_argument, NULL, 's' },
	{ "retries", required_argument, NULL, 'r' },
	{ "output-cap", required_argument, NULL, 'o' },
	{ "wait-for-node", no_argument, NULL, 'W' },
	{ "print-id", no_argument, NULL, 'i' },
	{ "inherit-env", no_argument, NULL, 'I' },
	{ "user", required_argument, NULL, 'u' },
	{ "memory", required_argument, NULL, 'M' },
	{ "cpus", required_argument, NULL, 'C' },
	{ "pids", required_argument, NULL, 'P' },
	{ "exclude", required_argument, NULL, 'x' },
	{ "group", no_argument, NULL, 'g' },
	{ "json", no_argument, NULL, 'j' },
	{ "token-file", required_argument, NULL, 'T' },
	ND_CLI_TLS_OPTIONS,
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

/* What task_opt() says besides 0, -EINVAL (a usage error, said) and
 * -ENOMEM. */
#define OPT_HELP 1              /* --help printed: exit 0 */
#define OPT_HINT 2              /* getopt said what was wrong: usage line */

/* Option o (its argument in optarg) of `noded cmd` into a. */
static int task_opt(struct nd_cli_task_args *a, const char *cmd, int o,
		    bool *shell)
{
	uint64_t v;
	int r;

	switch (o) {
	case 'm':
		a->master = optarg;
		break;
	case 'T':
		nd_cli_token_file = optarg;
		break;
	case ND_CLI_OPT_TLS_CERT:
	case ND_CLI_OPT_TLS_KEY:
	case ND_CLI_OPT_TLS_CA:
		nd_cli_tls_opt(o, optarg);
		break;
	case 'n':
		if (!*optarg) {
			fprintf(stderr, "noded: --node wants a name\n");
			return -EINVAL;
		}
		/* a list is a job, even of one node */
		if (strpbrk(optarg, ",[]"))
			a->spec.nodes = optarg;
		else
			a->spec.node = optarg;
		break;
	case 'x':
		if (!*optarg) {
			fprintf(stderr, "noded: --exclude wants a node "
				"list\n");
			return -EINVAL;
		}
		a->spec.exclude = optarg;
		break;
	case 'g':
	case 'j':
		if (strcmp(cmd, "run")) {
			fprintf(stderr, "noded %s: --%s is for noded "
				"run\n", cmd, o == 'g' ? "group" :
				"json");
			return -EINVAL;
		}
		if (o == 'g')
			a->group = true;
		else
			a->json = true;
		if (a->group && a->json) {
			fprintf(stderr, "noded %s: --group and --json "
				"exclude each other\n", cmd);
			return -EINVAL;
		}
		break;
	case 'l':
		ADD_KV(a->label_store, a->spec.labels, a->spec.n_labels,
		       cmd, "--label", optarg,
		       noded__task_spec__labels_entry__init, r);
		if (r == -ENOMEM)
			return -ENOMEM;
		if (r)
			return -EINVAL;
		break;
	case 'a':
		a->spec.all = true;
		break;
	case 't':
		if (!nd_cli_timeout_ms(optarg, &a->command.timeout_ms))
			return -EINVAL;
		break;
	case 'e':
		ADD_KV(a->env_store, a->command.env, a->command.n_env,
		       cmd, "--env", optarg,
		       noded__command__env_entry__init, r);
		if (r == -ENOMEM)
			return -ENOMEM;
		if (r)
			return -EINVAL;
		break;
	case 'c':
		if (!*optarg) {
			fprintf(stderr, "noded: --cwd wants a "
				"directory\n");
			return -EINVAL;
		}
		a->command.cwd = optarg;
		break;
	case 's':
		*shell = true;
		break;
	case 'r':
		if (!nd_cli_uint("--retries", optarg, 0, 1000, &v))
			return -EINVAL;
		a->spec.retries = (uint32_t)v;
		break;
	case 'o':
		if (!nd_cli_uint("--output-cap", optarg, 1,
				 UINT64_MAX, &v))
			return -EINVAL;
		a->spec.output_cap_bytes = v;
		break;
	case 'W':
		a->spec.wait_for_node = true;
		break;
	case 'i':
		if (strcmp(cmd, "run")) {
			fprintf(stderr, "noded %s: --print-id is for "
				"run (%s prints the ids anyway)\n",
				cmd, cmd);
			return -EINVAL;
		}
		a->print_id = true;
		break;
	case 'I':
		a->command.inherit_env = true;
		break;
	case 'u':
		if (!*optarg) {
			fprintf(stderr, "noded: --user wants a user "
				"name\n");
			return -EINVAL;
		}
		a->command.user = optarg;
		break;
	case 'M':
		if (!parse_bytes(optarg, &a->command.memory_max_bytes))
			return -EINVAL;
		break;
	case 'C':
		if (!parse_cpus(optarg, &a->command.cpu_millis))
			return -EINVAL;
		break;
	case 'P':
		if (!nd_cli_uint("--pids", optarg, 1, ND_TASK_PIDS_MAX,
				 &v))
			return -EINVAL;
		a->command.pids_max = (uint32_t)v;
		break;
	case 'h':
		nd_cli_task_usage(stdout, cmd);
		return OPT_HELP;
	default:
		/* getopt said what was wrong. */
		return OPT_HINT;
	}
	return 0;
}

bool nd_cli_task_args_parse(struct nd_cli_task_args *a, int argc,
			    char **argv, int *status)
{
	const char *cmd = argc > 0 && argv[0] ? argv[0] : "run";
	const char *seen[sizeof(task_opts) / sizeof(task_opts[0])] = { 0 };
	char name[64], *saved0 = argc > 0 ? argv[0] : NULL;
	bool shell = false;
	int o, r, li;

	memset(a, 0, sizeof(*a));
	r = nd_cli_config(cmd, "+h", task_opts, &argc, &argv);
	if (r >= 0) {
		*status = r;
		return false;
	}
	saved0 = argc > 0 ? argv[0] : NULL;
	noded__task_spec__init(&a->spec);
	noded__command__init(&a->command);
	a->spec.command = &a->command;
	a->master = ND_CLI_MASTER;
	*status = ND_CLI_EXIT_FAIL;
	/* At most one entry per remaining word: the stores never grow. */
	a->env_store = calloc((size_t)argc + 1, sizeof(*a->env_store));
	a->label_store = calloc((size_t)argc + 1, sizeof(*a->label_store));
	a->command.env = calloc((size_t)argc + 1, sizeof(*a->command.env));
	a->spec.labels = calloc((size_t)argc + 1, sizeof(*a->spec.labels));
	if (!a->env_store || !a->label_store || !a->command.env ||
	    !a->spec.labels)
		goto err_nomem;

	/* getopt names the program by argv[0] in its own messages. */
	snprintf(name, sizeof(name), "noded %s", cmd);
	if (argc > 0)
		argv[0] = name;
	optind = 0;	/* full reset: callers (and tests) parse again */
	/* "+": the command starts at the first non-option word, so
	 * `noded run ls -l` does not take -l for itself. */
	while ((li = -1,
		o = nd_cli_getopt(argc, argv, "+h", task_opts, &li)) != -1) {
		/* --label and --env repeat; ADD_KV checks their keys */
		if (o != 'l' && o != 'e' &&
		    !nd_cli_once(cmd, task_opts, seen, li, optarg))
			goto err_usage;
		r = task_opt(a, cmd, o, &shell);
		if (r == OPT_HELP) {
			*status = 0;
			goto out_stop;
		}
		if (r == OPT_HINT)
			goto err_usage_hint;
		if (r == -ENOMEM)
			goto err_nomem;
		if (r)
			goto err_usage;
	}
	/* one node less some is a list */
	if (a->spec.exclude[0] && a->spec.node[0]) {
		a->spec.nodes = a->spec.node;
		a->spec.node = "";
	}
	r = task_words(a, cmd, shell, argc, argv);
	if (r == -ENOMEM)
		goto err_nomem;
	if (r == -ENOENT)
		goto err_usage_hint;
	if (r)
		goto err_usage;
	if (argc > 0)
		argv[0] = saved0;
	return true;

err_usage_hint:
	fprintf(stderr, "usage: noded %s [options] -- CMD [ARG...] "
		"(noded %s --help)\n", cmd, cmd);
err_usage:
	*status = ND_CLI_EXIT_USAGE;
	goto out_stop;
err_nomem:
	fprintf(stderr, "noded: out of memory\n");
	*status = ND_CLI_EXIT_FAIL;
out_stop:
	if (argc > 0)
		argv[0] = saved0;
	nd_cli_task_args_free(a);
	return false;
}

void nd_cli_waiting_note(const Noded__SubmitReply *sr)
{
	if (!sr->waiting || !sr->waiting[0] || !sr->n_task_ids)
		return;
	if (sr->job_id) {
		fprintf(stderr, "noded: job %" PRIu64 ": tasks wait for their "
			"nodes (--wait-for-node): %s\n", sr->job_id,
			sr->waiting);
		return;
	}
	fprintf(stderr, "noded: task %" PRIu64 " is waiting for a node "
		"(--wait-for-node): %s\n", sr->task_ids[0], sr->waiting);
}
