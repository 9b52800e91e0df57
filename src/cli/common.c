/* Shared pieces of the task commands; see common.h. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "core/log.h"
#include "core/time.h"
#include "noded/auth.h"
#include "noded/taskspec.h"
#include "wire/text.h"

bool nd_cli_uint(const char *opt, const char *s, uint64_t min, uint64_t max,
		 uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
		fprintf(stderr, "noded: %s wants a whole number from %llu to "
			"%llu, not '%s'\n", opt, (unsigned long long)min,
			(unsigned long long)max, s);
		return false;
	}
	*out = v;
	return true;
}

bool nd_cli_once(const char *cmd, const struct option *opts,
		 const char **seen, int li, const char *arg)
{
	if (li < 0 || !arg || opts[li].has_arg == no_argument)
		return true;
	if (seen[li] && strcmp(seen[li], arg)) {
		fprintf(stderr, "noded %s: --%s given twice ('%s' and '%s'): "
			"give it once\n", cmd, opts[li].name, seen[li], arg);
		return false;
	}
	seen[li] = arg;
	return true;
}

/* ---- the daemons' log options ---- */

const char nd_cli_log_usage[] =
	"  --log-format FORMAT    logfmt (default) or json: one line per\n"
	"                         event on stderr\n"
	"  --log-level LEVEL      debug, info (default), warn, error or off\n";

bool nd_cli_log_opt(int opt, const char *arg, bool *ok)
{
	static enum nd_log_format format = ND_LOG_LOGFMT;
	static enum nd_log_level level = ND_LOG_INFO;

	switch (opt) {
	case ND_CLI_OPT_LOG_FORMAT:
		*ok = nd_log_format_parse(arg, &format);
		if (!*ok)
			fprintf(stderr, "noded: --log-format wants logfmt or "
				"json, not '%s'\n", arg);
		break;
	case ND_CLI_OPT_LOG_LEVEL:
		*ok = nd_log_level_parse(arg, &level);
		if (!*ok)
			fprintf(stderr, "noded: --log-level wants debug, info, "
				"warn, error or off, not '%s'\n", arg);
		break;
	default:
		return false;
	}
	if (*ok)
		nd_log_setup(format, level);
	return true;
}

/* ---- run / submit options ---- */

void nd_cli_task_usage(FILE *f, const char *cmd)
{
	fprintf(f,
		"usage: noded %s [options] -- CMD [ARG...]\n"
		"  --master HOST:PORT     the master (default " ND_CLI_MASTER ")\n"
		"  --token-file FILE      the master's token, if it has one\n"
		"                         (default: $NODED_TOKEN_FILE)\n"
		"  --node NAME            run on this node\n"
		"  --label KEY=VALUE      or on a node with these labels (repeatable)\n"
		"  --all                  or once on every live node (a fan-out job)\n"
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
		"Without --shell the words are passed as they are, never split.\n",
		cmd);
	if (!strcmp(cmd, "run"))
		fprintf(f,
			"Streams stdout and stderr (with --all each line as "
			"'NODE: line') and exits\n"
			"with the command's status: 128+N if killed by signal N, "
			"124 on timeout,\n"
			"255 when the task or the master is lost; with --all the "
			"largest of all,\n"
			"each node that did not succeed named on stderr, and a "
			"summary per node last.\n"
			"Ctrl-C cancels the task(s) and waits for them; a second "
			"Ctrl-C exits at once.\n");
	else
		fprintf(f, "Prints the task id (with --all: 'job J: task T on "
			"NODE' lines) and exits.\n");
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
	{ "token-file", required_argument, NULL, 'T' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

bool nd_cli_task_args_parse(struct nd_cli_task_args *a, int argc,
			    char **argv, int *status)
{
	const char *cmd = argc > 0 && argv[0] ? argv[0] : "run";
	const char *seen[sizeof(task_opts) / sizeof(task_opts[0])] = { 0 };
	char name[64], *saved0 = argc > 0 ? argv[0] : NULL;
	bool shell = false;
	uint64_t v;
	int o, r, li;

	memset(a, 0, sizeof(*a));
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
		o = getopt_long(argc, argv, "+h", task_opts, &li)) != -1) {
		/* --label and --env repeat; ADD_KV checks their keys */
		if (o != 'l' && o != 'e' &&
		    !nd_cli_once(cmd, task_opts, seen, li, optarg))
			goto err_usage;
		switch (o) {
		case 'm':
			a->master = optarg;
			break;
		case 'T':
			nd_cli_token_file = optarg;
			break;
		case 'n':
			if (!*optarg) {
				fprintf(stderr, "noded: --node wants a name\n");
				goto err_usage;
			}
			a->spec.node = optarg;
			break;
		case 'l':
			ADD_KV(a->label_store, a->spec.labels, a->spec.n_labels,
			       cmd, "--label", optarg,
			       noded__task_spec__labels_entry__init, r);
			if (r == -ENOMEM)
				goto err_nomem;
			if (r)
				goto err_usage;
			break;
		case 'a':
			a->spec.all = true;
			break;
		case 't':
			if (!nd_cli_timeout_ms(optarg, &a->command.timeout_ms))
				goto err_usage;
			break;
		case 'e':
			ADD_KV(a->env_store, a->command.env, a->command.n_env,
			       cmd, "--env", optarg,
			       noded__command__env_entry__init, r);
			if (r == -ENOMEM)
				goto err_nomem;
			if (r)
				goto err_usage;
			break;
		case 'c':
			if (!*optarg) {
				fprintf(stderr, "noded: --cwd wants a "
					"directory\n");
				goto err_usage;
			}
			a->command.cwd = optarg;
			break;
		case 's':
			shell = true;
			break;
		case 'r':
			if (!nd_cli_uint("--retries", optarg, 0, 1000, &v))
				goto err_usage;
			a->spec.retries = (uint32_t)v;
			break;
		case 'o':
			if (!nd_cli_uint("--output-cap", optarg, 1,
					 UINT64_MAX, &v))
				goto err_usage;
			a->spec.output_cap_bytes = v;
			break;
		case 'W':
			a->spec.wait_for_node = true;
			break;
		case 'h':
			nd_cli_task_usage(stdout, cmd);
			*status = 0;
			goto out_stop;
		default:
			/* getopt said what was wrong. */
			goto err_usage_hint;
		}
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
	fprintf(stderr, "noded: task %" PRIu64 " is waiting for a node "
		"(--wait-for-node): %s\n", sr->task_ids[0], sr->waiting);
}

/* ---- states and ended tasks ---- */

bool nd_cli_state_terminal(Noded__TaskState s)
{
	switch (s) {
	case NODED__TASK_STATE__TASK_SUCCEEDED:
	case NODED__TASK_STATE__TASK_FAILED:
	case NODED__TASK_STATE__TASK_TIMED_OUT:
	case NODED__TASK_STATE__TASK_CANCELLED:
	case NODED__TASK_STATE__TASK_LOST:
		return true;
	default:
		return false;
	}
}

/* 128+N as a shell reports a death by signal N, kept within 0..255. */
static int signal_status(int32_t sig)
{
	return sig > 0 && sig < 127 ? 128 + sig : 255;
}

int nd_cli_exit_status(const Noded__TaskRecord *r)
{
	switch (r->state) {
	case NODED__TASK_STATE__TASK_SUCCEEDED:
	case NODED__TASK_STATE__TASK_FAILED:
		if (r->signal)
			return signal_status(r->signal);
		if (r->exit_code < 0 || r->exit_code > 255)
			return 255;
		/* A failure is never reported as success, even when the
		 * master left the code at 0 (say, it could not start). */
		if (r->state == NODED__TASK_STATE__TASK_FAILED &&
		    r->exit_code == 0)
			return 1;
		return r->exit_code;
	case NODED__TASK_STATE__TASK_TIMED_OUT:
		return 124;
	case NODED__TASK_STATE__TASK_CANCELLED:
		return r->signal ? signal_status(r->signal) : 130;
	case NODED__TASK_STATE__TASK_LOST:
		return ND_CLI_EXIT_LOST;
	default:
		return -1;
	}
}

bool nd_cli_end_note(const Noded__TaskRecord *r, char *buf, size_t size)
{
	const char *why = r->reason && r->reason[0] ? r->reason : NULL;
	unsigned long long id = (unsigned long long)r->id;

	buf[0] = '\0';
	switch (r->state) {
	case NODED__TASK_STATE__TASK_LOST:
		snprintf(buf, size, "task %llu lost: %s", id,
			 why ? why : "no reason given");
		return true;
	case NODED__TASK_STATE__TASK_FAILED:
		if (!why)
			return false;
		break;
	case NODED__TASK_STATE__TASK_TIMED_OUT:
		if (!why) {
			uint32_t ms = r->spec && r->spec->command ?
				      r->spec->command->timeout_ms : 0;

			if (ms)
				snprintf(buf, size, "task %llu timed out after "
					 "%g s", id, ms / 1000.0);
			else
				snprintf(buf, size, "task %llu timed out", id);
			return true;
		}
		break;
	case NODED__TASK_STATE__TASK_CANCELLED:
		if (!why) {
			snprintf(buf, size, "task %llu cancelled", id);
			return true;
		}
		break;
	default:
		return false;
	}
	snprintf(buf, size, "task %llu: %s", id, why);
	return true;
}

/* ---- records ---- */

/* Characters a word may hold and still be shown without quotes. */
static bool word_plain(const char *w)
{
	return *w && !w[strspn(w, "abcdefghijklmnopqrstuvwxyz"
				  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				  "_@%+=:,./-")];
}

/* w as bash's $'...' quoting, for a word holding bytes that are not UTF-8
 * or control characters: pasted into a shell it gives the same bytes. */
static void word_ansi(FILE *f, const char *w)
{
	const unsigned char *p = (const unsigned char *)w;
	size_t len = strlen(w);

	fputs("$'", f);
	while (len) {
		size_t n = nd_utf8_seq(p, len);

		if (n == 1 && (*p == '\\' || *p == '\''))
			fprintf(f, "\\%c", *p);
		else if (n == 1 && *p == '\n')
			fputs("\\n", f);
		else if (n == 1 && *p == '\t')
			fputs("\\t", f);
		else if (n == 1 && (*p < 0x20 || *p == 0x7f))
			fprintf(f, "\\x%02x", *p);
		else if (!n || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0))
			for (size_t i = 0; i < (n ? n : 1); i++)
				fprintf(f, "\\x%02x", p[i]);
		else
			fwrite(p, 1, n, f);
		n = n ? n : 1;
		p += n;
		len -= n;
	}
	fputc('\'', f);
}

char *nd_cli_command_string(const Noded__TaskSpec *s)
{
	const Noded__Command *c = s ? s->command : NULL;
	char *out = NULL, why[64];
	size_t len = 0;
	FILE *f;

	if (c && c->shell && c->shell[0])
		return nd_text_escaped(c->shell);
	f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	for (size_t i = 0; c && i < c->n_argv; i++) {
		const char *w = c->argv[i];

		if (i)
			fputc(' ', f);
		if (word_plain(w)) {
			fputs(w, f);
			continue;
		}
		if (nd_text_name_problem(w, why, sizeof(why))) {
			word_ansi(f, w);
			continue;
		}
		fputc('\'', f);
		for (; *w; w++) {
			if (*w == '\'')
				fputs("'\\''", f);
			else
				fputc(*w, f);
		}
		fputc('\'', f);
	}
	if (fclose(f)) {
		free(out);
		return NULL;
	}
	return out;
}

/* "2026-11-22 14:26:58.123" in local time, or "-" for 0. */
static const char *fmt_time(uint64_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	if (!ms || !localtime_r(&t, &tm))
		return "-";
	n = strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03u", (unsigned)(ms % 1000));
	return buf;
}

void nd_cli_task_print(FILE *f, const Noded__TaskRecord *r)
{
	bool ended = nd_cli_state_terminal(r->state);
	const Noded__Command *c = r->spec ? r->spec->command : NULL;
	char *cmd = nd_cli_command_string(r->spec);
	char tb[64];

	fprintf(f, "id:         %" PRIu64 "\n", r->id);
	if (r->job_id)
		fprintf(f, "job:        %" PRIu64 "\n", r->job_id);
	fprintf(f, "state:      %s\n", nd_task_state_name(r->state));
	fprintf(f, "node:       ");
	nd_text_fput(f, r->node && r->node[0] ? r->node : "-");
	fprintf(f, "\n");
	fprintf(f, "command:    %s%s\n", cmd ? cmd : "?",
		c && c->shell && c->shell[0] ? "   (with /bin/sh -c)" : "");
	free(cmd);
	if (c && c->cwd && c->cwd[0]) {
		fprintf(f, "cwd:        ");
		nd_text_fput(f, c->cwd);
		fprintf(f, "\n");
	}
	if (c && c->timeout_ms)
		fprintf(f, "timeout:    %g s\n", c->timeout_ms / 1000.0);
	if (r->signal) {
		const char *abbrev = sigabbrev_np(r->signal);

		fprintf(f, "signal:     %d%s%s\n", r->signal,
			abbrev ? " SIG" : "", abbrev ? abbrev : "");
	} else if (ended && r->state != NODED__TASK_STATE__TASK_LOST) {
		fprintf(f, "exit code:  %d\n", r->exit_code);
	}
	if (r->reason && r->reason[0]) {
		fprintf(f, "reason:     ");
		nd_text_fput(f, r->reason);
		fprintf(f, "\n");
	}
	fprintf(f, "submitted:  %s\n", fmt_time(r->submitted_unix_ms, tb,
						sizeof(tb)));
	fprintf(f, "started:    %s\n", fmt_time(r->started_unix_ms, tb,
						sizeof(tb)));
	fprintf(f, "ended:      %s", fmt_time(r->ended_unix_ms, tb,
					      sizeof(tb)));
	if (r->started_unix_ms && r->ended_unix_ms >= r->started_unix_ms)
		fprintf(f, " (ran %.3f s)",
			(double)(r->ended_unix_ms - r->started_unix_ms) / 1000);
	fprintf(f, "\n");
	if (ended)
		fprintf(f, "cpu:        user %.3f s, system %.3f s\n"
			"max rss:    %" PRIu64 " KiB\n",
			(double)r->utime_us / 1e6, (double)r->stime_us / 1e6,
			r->max_rss_kib);
	fprintf(f, "attempt:    %u\n", r->attempt);
	if (r->watchers)
		fprintf(f, "watchers:   %u (streams following its output)\n",
			r->watchers);
	fprintf(f, "output:     %" PRIu64 " bytes%s\n", r->output_bytes,
		r->truncated ? " (truncated: the master kept only part)" : "");
}

/* ---- talking to the master ---- */

const char *nd_cli_token_file;

struct nd_client *nd_cli_connect(const char *addr)
{
	const char *path = nd_cli_token_file ? nd_cli_token_file
					     : getenv("NODED_TOKEN_FILE");
	struct nd_client_opts opts = { 0 };
	struct nd_client *c;
	uint8_t *token = NULL;
	int r;

	if (path && *path && nd_auth_read_token(path, &token, &opts.token_len))
		return NULL; /* it said why */
	opts.token = token;
	r = nd_client_connect(&c, addr, &opts);
	free(token);
	if (!r)
		return c;
	if (r == ND_EAUTH)
		fprintf(stderr, "noded: the master %s %s\n", addr, token ?
			"did not accept our token (is --token-file the "
			"master's?)" : "requires a token: give --token-file "
			"FILE (or set NODED_TOKEN_FILE)");
	else if (r == ND_EAUTHNOPROOF)
		fprintf(stderr, "noded: the master %s did not prove it holds "
			"the token (it asked for none): not sending it "
			"anything (is it the master? is --token-file meant "
			"for it?)\n", addr);
	else if (r == ND_EAUTHBADPROOF)
		fprintf(stderr, "noded: the master %s did not prove it holds "
			"our token (its proof does not match): not sending it "
			"anything (is --token-file the master's? is it the "
			"master?)\n", addr);
	else if (r == ND_EADDR)
		fprintf(stderr, "noded: bad master address '%s' (want "
			"HOST:PORT)\n", addr);
	else
		fprintf(stderr, "noded: cannot reach the master %s: %s%s\n",
			addr, nd_strerror(r),
			r == -ECONNREFUSED ? " (is `noded master` running "
					     "there? see --master)" : "");
	return NULL;
}

const char *nd_cli_error_text(int status, const Noded__Frame *f)
{
	if (status == ND_EREMOTE && f &&
	    f->body_case == NODED__FRAME__BODY_ERROR && f->error) {
		const ProtobufCEnumValue *v;

		if (f->error->message && f->error->message[0])
			return f->error->message;
		v = protobuf_c_enum_descriptor_get_value(
			&noded__error_code__descriptor, f->error->code);
		return v ? v->name : "error without a message";
	}
	if (status == -ECONNRESET || status == ND_ECLOSED)
		return "the master closed the connection";
	return nd_strerror(status ? status : ND_EPROTO);
}

int nd_cli_call(struct nd_client *c, const Noded__Frame *req,
		Noded__Frame__BodyCase want, const char *what,
		Noded__Frame **reply)
{
	int r = nd_client_call(c, req, reply, ND_CLI_CALL_TIMEOUT_MS);

	if (!r && (*reply)->body_case == want)
		return 0;
	if (!r)
		fprintf(stderr, "noded: %s: the master answered with '%s'\n",
			what, nd_frame_method_name((*reply)->body_case));
	else
		fprintf(stderr, "noded: %s: %s\n", what,
			nd_cli_error_text(r, *reply));
	nd_frame_free(*reply, NULL);
	*reply = NULL;
	return ND_CLI_EXIT_FAIL;
}

int nd_cli_request(const char *master, const Noded__Frame *req,
		   Noded__Frame__BodyCase want, const char *what,
		   Noded__Frame **reply)
{
	struct nd_client *c = nd_cli_connect(master);
	int r;

	*reply = NULL;
	if (!c)
		return ND_CLI_EXIT_FAIL;
	r = nd_cli_call(c, req, want, what, reply);
	nd_client_close(c);
	return r;
}

void nd_cli_keepalive(struct nd_client *c, int64_t *last_ms)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__PingRequest p = NODED__PING_REQUEST__INIT;
	int64_t now = (int64_t)nd_mono_ms();

	if (!*last_ms)
		*last_ms = now; /* the stream's request was just sent */
	if (now - *last_ms < ND_CLI_KEEPALIVE_MS)
		return;
	*last_ms = now;
	f.body_case = NODED__FRAME__BODY_PING;
	f.ping = &p;
	nd_client_start(c, &f, NULL, NULL);
}

bool nd_cli_task_id(const char *s, uint64_t *id)
{
	return nd_cli_uint("the task ID", s, 1, UINT64_MAX, id);
}

/* ---- terminal output of a task ---- */

int nd_cli_sink_init(struct nd_cli_sink *s, FILE *out, FILE *err,
		     const char *prefix)
{
	memset(s, 0, sizeof(*s));
	s->out = out;
	s->err = err;
	if (prefix) {
		s->prefix = strdup(prefix);
		if (!s->prefix)
			return -ENOMEM;
	}
	return 0;
}

int nd_cli_sink_set_prefix(struct nd_cli_sink *s, const char *prefix)
{
	char *p;

	if (!s->prefix)
		return 0;
	p = strdup(prefix);
	if (!p)
		return -ENOMEM;
	free(s->prefix);
	s->prefix = p;
	return 0;
}

static int put(FILE *f, const void *p, size_t n)
{
	return n && fwrite(p, 1, n, f) != n ? -EIO : 0;
}

/* Writes "PREFIX: " + the partial line + data[0..n) (+ "\n") and empties
 * the partial line. */
static int emit(struct nd_cli_sink *s, FILE *f, struct nd_buf *p,
		const char *data, size_t n, bool nl)
{
	int r = 0;

	if (fprintf(f, "%s: ", s->prefix) < 0)
		r = -EIO;
	if (!r)
		r = put(f, p->data, p->len);
	if (!r)
		r = put(f, data, n);
	if (!r && nl)
		r = put(f, "\n", 1);
	p->len = 0;
	return r;
}

int nd_cli_sink_write(struct nd_cli_sink *s, uint32_t fd, const void *data,
		      size_t len)
{
	FILE *f = fd == 2 ? s->err : s->out;
	struct nd_buf *p = &s->part[fd == 2];
	const char *d = data, *nl;
	int r;

	if (!s->prefix)
		return put(f, d, len);
	while (len && (nl = memchr(d, '\n', len))) {
		size_t n = (size_t)(nl - d) + 1;

		r = emit(s, f, p, d, n, false);
		if (r)
			return r;
		d += n;
		len -= n;
	}
	/* An endless line is cut rather than kept whole in memory. */
	while (p->len + len > ND_CLI_LINE_MAX) {
		size_t n = ND_CLI_LINE_MAX - p->len;

		r = emit(s, f, p, d, n, true);
		if (r)
			return r;
		d += n;
		len -= n;
	}
	if (!len)
		return 0;
	return nd_buf_append(p, d, len);
}

int nd_cli_sink_flush(struct nd_cli_sink *s)
{
	int r = 0, r2;

	for (int i = 0; i < 2; i++) {
		if (!s->prefix || !s->part[i].len)
			continue;
		r2 = emit(s, i ? s->err : s->out, &s->part[i], "", 0, true);
		if (!r)
			r = r2;
	}
	return r;
}

void nd_cli_sink_free(struct nd_cli_sink *s)
{
	nd_buf_free(&s->part[0]);
	nd_buf_free(&s->part[1]);
	free(s->prefix);
	memset(s, 0, sizeof(*s));
}
