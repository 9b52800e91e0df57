/*
 * The configuration files and the environment, as option words in front
 * of the command line (cli.h: nd_cli_config).
 *
 * A file is INI, read by inih (libinih, Debian's build): `[SECTION]`
 * headers, `key = value` lines, comments from `#` or `;` at the start of a
 * line or ` ;` within one. A section is a command's name (its keys are that
 * command's long options) or `common` (master, token-file, log-format,
 * log-level: taken by every command that has the option). Each setting
 * becomes the word `--key=value` (a flag: `--key` when true, nothing when
 * false), so the command's own option checks apply to it unchanged.
 *
 * Layers, lowest first: the system file ([common], then [COMMAND]), the
 * user file (the same), the environment (NODED_MASTER, NODED_TOKEN_FILE:
 * for the commands that talk to a master), the command line. The highest
 * layer that sets an option gives all its values (a repeatable option's
 * values too); the lower ones are dropped, so no option is ever refused
 * as "given twice" across layers. `--config FILE` reads FILE alone,
 * instead of both files.
 *
 * Where each word came from is kept, so that when a command stops at an
 * option (its value refused) nd_cli_config_report() names the file, line
 * and key.
 */
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* The sections a file may have: the commands and common. */
static const char *const sections[] = {
	"common", "master", "worker", "dev", "run", "submit", "nodes", "node", "operator",
	"task", "tasks", "job", "wait", "logs", "cancel", NULL,
};

/* The keys of [common]. */
static const char *const common_keys[] = {
	"master", "token-file", "log-format", "log-level", "tls-cert",
	"tls-key", "tls-ca", NULL,
};

/* One `key = value` of a file, or one variable of the environment. */
struct setting {
	const char *file;        /* NULL: the environment */
	const char *section;     /* or the variable's name */
	char *key, *value;
	unsigned line;
	int layer;               /* higher wins */
	int opt;                 /* index in the command's options */
};

/* Where a word of the merged argv came from. */
struct origin {
	const struct setting *s;
};

/* What one nd_cli_config() call made; kept for the life of the process
 * (the command's parsed options point into its words). */
struct store {
	struct store *next;
	char **argv;
	int nwords;              /* argv[1..nwords] came from settings */
	struct setting *set;
	size_t nset, capset;
	struct origin *origin;
	char *paths[3];
};

static struct store *stores;
static struct store *cur;          /* the last call's */
static const struct setting *where; /* the option the command is at */

/* ---- reading a file ---- */

struct reader {
	FILE *f;
	unsigned line;
	int max;                 /* inih's line buffer */
	bool too_long;
	char *buf;
	size_t cap;
};

/* inih's fgets: whole lines only, counted, so a line number is ours to
 * give; a line too long for inih's buffer stops the file (an error). */
static char *read_line(char *str, int num, void *stream)
{
	struct reader *rd = stream;
	ssize_t n = getline(&rd->buf, &rd->cap, rd->f);

	if (n < 0)
		return NULL;
	rd->line++;
	rd->max = num;
	if (n >= num) {
		rd->too_long = true;
		return NULL;
	}
	memcpy(str, rd->buf, (size_t)n + 1);
	return str;
}

struct parse {
	struct store *st;
	struct reader *rd;
	const char *cmd, *path;
	const struct option *opts;
	int layer;
	bool failed;             /* said why already */
};

static bool in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (!strcmp(*list, s))
			return true;
	return false;
}

/* The index of long option name in opts, or -1 (help and config are
 * never settings). */
static int opt_index(const struct option *opts, const char *name)
{
	if (!strcmp(name, "help") || !strcmp(name, "config"))
		return -1;
	for (int i = 0; opts[i].name; i++)
		if (!strcmp(opts[i].name, name))
			return i;
	return -1;
}

/* Says "noded: FILE:LINE: MESSAGE" and marks the parse failed. */
__attribute__((format(printf, 2, 3))) static int fail(struct parse *p,
						      const char *fmt, ...)
{
	va_list ap;

	if (p->failed)
		return 1;
	fprintf(stderr, "noded: %s:%u: ", p->path, p->rd->line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	p->failed = true;
	return 1; /* inih goes on; we stop after it */
}

static int add(struct store *st, const struct setting *s)
{
	if (st->nset == st->capset) {
		size_t cap = st->capset ? 2 * st->capset : 16;
		struct setting *n = realloc(st->set, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		st->set = n;
		st->capset = cap;
	}
	st->set[st->nset++] = *s;
	return 0;
}

static bool boolean(const char *v, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1", NULL };
	static const char *const no[] = { "false", "no", "off", "0", NULL };

	if (in_list(yes, v))
		*out = true;
	else if (in_list(no, v))
		*out = false;
	else
		return false;
	return true;
}

static int on_setting(void *user, const char *section, const char *key,
		      const char *value)
{
	struct parse *p = user;
	struct setting s = { .file = p->path, .line = p->rd->line };
	bool b;

	if (p->failed)
		return 1;
	if (!*section)
		return fail(p, "'%s' is outside any section: put it under "
			    "[%s] (or [common])", key, p->cmd);
	if (!in_list(sections, section)) {
		fail(p, "unknown section [%s] (want [common] or a command: "
		     "master, worker, dev, run, submit, nodes, node, task, "
		     "tasks, job, wait, logs, cancel)", section);
		return 1;
	}
	if (!strcmp(section, "common") && !in_list(common_keys, key))
		return fail(p, "unknown key '%s' in [common] (it takes "
			    "master, token-file, log-format, log-level, "
			    "tls-cert, tls-key, tls-ca; "
			    "other keys go under their command)", key);
	/* the sections of other commands are theirs to check */
	if (strcmp(section, "common") && strcmp(section, p->cmd))
		return 1;
	s.opt = opt_index(p->opts, key);
	if (s.opt < 0) {
		if (!strcmp(section, "common"))
			return 1; /* an option this command does not have */
		return fail(p, "unknown key '%s' in [%s] (not an option of "
			    "noded %s: see noded %s --help)", key, section,
			    section, section);
	}
	if (p->opts[s.opt].has_arg == no_argument && !boolean(value, &b))
		return fail(p, "[%s] %s wants true or false, not '%s'",
			    section, key, value);
	s.section = strcmp(section, "common") ? p->cmd : "common";
	/* [COMMAND] over [common] within a file */
	s.layer = p->layer * 2 + !!strcmp(section, "common");
	s.key = strdup(key);
	s.value = strdup(value);
	if (!s.key || !s.value || add(p->st, &s)) {
		free(s.key);
		free(s.value);
		return fail(p, "out of memory");
	}
	return 1;
}

/* Reads path (layer: 0 system, 1 user, 2 --config) into st. 0 (read, or
 * absent while it need not exist: !must), or -EINVAL after saying why. */
static int read_file(struct store *st, const char *path, bool must,
		     int layer, const char *cmd, const struct option *opts)
{
	struct reader rd = { .f = fopen(path, "re") };
	struct parse p = { .st = st, .rd = &rd, .cmd = cmd, .path = path,
			   .opts = opts, .layer = layer };
	int r;

	if (!rd.f) {
		if (errno == ENOENT && !must)
			return 0;
		fprintf(stderr, "noded: cannot read the config file %s: %s\n",
			path, strerror(errno));
		return -EINVAL;
	}
	r = ini_parse_stream(read_line, &rd, on_setting, &p);
	if (rd.too_long && !p.failed)
		fail(&p, "a line over %d bytes", rd.max - 3);
	else if (r > 0 && !p.failed) {
		rd.line = (unsigned)r;
		fail(&p, "not 'key = value', '[section]' or a comment");
	} else if (r < 0 && !p.failed) {
		fprintf(stderr, "noded: %s: out of memory\n", path);
		p.failed = true;
	}
	free(rd.buf);
	fclose(rd.f);
	return p.failed ? -EINVAL : 0;
}

/* ---- the files' places ---- */

/* The system file: $NODED_CONFIG_SYSTEM ("" for none), else
 * /etc/noded/noded.conf. The user file: $XDG_CONFIG_HOME/noded/noded.conf,
 * else ~/.config/noded/noded.conf (none without HOME). malloc'd. */
static void paths(char **sys, char **user)
{
	const char *s = getenv("NODED_CONFIG_SYSTEM");
	const char *x = getenv("XDG_CONFIG_HOME"), *h = getenv("HOME");

	*sys = s ? (*s ? strdup(s) : NULL) : strdup(ND_CLI_CONFIG_SYSTEM);
	*user = NULL;
	if (x && *x) {
		if (asprintf(user, "%s/noded/noded.conf", x) < 0)
			*user = NULL;
	} else if (h && *h) {
		if (asprintf(user, "%s/.config/noded/noded.conf", h) < 0)
			*user = NULL;
	}
}

/* ---- the command line ---- */

enum { OPT_CONFIG = 0x7000 };

/*
 * Which options the command line gives (given[i] for opts[i]) and its
 * --config (*config; the words it took, [*cfg_at, *cfg_at + *cfg_n)),
 * with getopt_long itself, on a copy, so abbreviations, --opt=value and
 * the end of options ("--", or the first word for a "+" command) are
 * exactly the command's. 0, or -EINVAL / -ENOMEM after saying why.
 */
static int scan(int argc, char **argv, const char *shortopts,
		const struct option *opts, size_t nopts, bool *given,
		const char **config, int *cfg_at, int *cfg_n)
{
	struct option *lo = calloc(nopts + 2, sizeof(*lo));
	char **copy = calloc((size_t)argc + 1, sizeof(*copy));
	char so[64];
	bool stop_first = shortopts[0] == '+';
	int o, li, prev, saved_opterr = opterr, ret = 0;

	if (!lo || !copy) {
		fprintf(stderr, "noded: out of memory\n");
		ret = -ENOMEM;
		goto free_copy;
	}
	memcpy(lo, opts, nopts * sizeof(*lo));
	lo[nopts] = (struct option){ "config", required_argument, NULL,
				     OPT_CONFIG };
	memcpy(copy, argv, (size_t)argc * sizeof(*copy));
	/* "-": every word in order, nothing permuted */
	snprintf(so, sizeof(so), "-%s",
		 shortopts + (shortopts[0] == '+' || shortopts[0] == '-'));
	opterr = 0;
	optind = 0;
	for (;;) {
		prev = optind ? optind : 1;
		li = -1;
		o = getopt_long(argc, copy, so, lo, &li);
		if (o == -1 || (o == 1 && stop_first))
			break;
		if (o == OPT_CONFIG) {
			if (*config && strcmp(*config, optarg)) {
				fprintf(stderr, "noded: --config given twice "
					"('%s' and '%s'): give it once\n",
					*config, optarg);
				ret = -EINVAL;
				break;
			}
			*config = optarg;
			*cfg_at = prev;
			*cfg_n = optind - prev;
			continue;
		}
		if (li >= 0 && (size_t)li < nopts) {
			given[li] = true;
			continue;
		}
		for (size_t i = 0; o > 1 && o != '?' && i < nopts; i++)
			if (!opts[i].flag && opts[i].val == o)
				given[i] = true;
	}
	opterr = saved_opterr;
	/* leave getopt initialised for the command's own string, as a
	 * fresh one would be (ordering included) */
	{
		char *none[] = { argv[0], NULL };

		optind = 0;
		getopt_long(1, none, shortopts, opts, NULL);
	}
	optind = 1;
free_copy:
	free(copy);
	free(lo);
	return ret;
}

/* ---- merging ---- */

static void store_free(struct store *st)
{
	for (int i = 1; st->argv && i <= st->nwords; i++)
		free(st->argv[i]);
	for (size_t i = 0; i < st->nset; i++) {
		free(st->set[i].key);
		free(st->set[i].value);
	}
	free(st->set);
	free(st->origin);
	free(st->argv);
	for (int i = 0; i < 3; i++)
		free(st->paths[i]);
	free(st);
}

/* "--key=value" or "--key" for s, or NULL (a false flag: no word). */
static char *word(const struct option *o, const struct setting *s,
		  bool *none)
{
	char *w;
	bool b = false;

	*none = false;
	if (o->has_arg == no_argument) {
		boolean(s->value, &b);
		if (!b) {
			*none = true;
			return NULL;
		}
		return asprintf(&w, "--%s", o->name) < 0 ? NULL : w;
	}
	return asprintf(&w, "--%s=%s", o->name, s->value) < 0 ? NULL : w;
}

int nd_cli_config(const char *cmd, const char *shortopts,
		  const struct option *opts, int *argc, char ***argv)
{
	static const char *const env[][2] = {
		{ "NODED_MASTER", "master" },
		{ "NODED_TOKEN_FILE", "token-file" },
		{ "NODED_TLS_CERT", "tls-cert" },
		{ "NODED_TLS_KEY", "tls-key" },
		{ "NODED_TLS_CA", "tls-ca" },
	};
	struct store *st = calloc(1, sizeof(*st));
	const char *config = NULL;
	size_t nopts = 0;
	bool *given = NULL, none, help = false;
	int cfg_at = 0, cfg_n = 0, ret = ND_CLI_EXIT_USAGE, n, top;
	char *sys, *user;

	cur = NULL;
	where = NULL;
	while (opts[nopts].name)
		nopts++;
	given = calloc(nopts + 1, sizeof(*given));
	if (!st || !given) {
		fprintf(stderr, "noded: out of memory\n");
		goto err_free;
	}
	if (scan(*argc, *argv, shortopts, opts, nopts, given, &config,
		 &cfg_at, &cfg_n))
		goto err_free;
	/* --help answers whatever the files say */
	for (size_t i = 0; i < nopts; i++)
		if (given[i] && !strcmp(opts[i].name, "help"))
			help = true;

	/* files, lowest first */
	/* an indented line is a line of its own, not a second value of
	 * the key above it (a global of Debian's libinih, whose options
	 * are set at run time) */
	ini_allow_multiline = false;
	if (help) {
		/* nothing read */
	} else if (config) {
		st->paths[0] = strdup(config);
		if (!st->paths[0] ||
		    read_file(st, st->paths[0], true, 2, cmd, opts))
			goto err_free;
	} else {
		paths(&sys, &user);
		st->paths[0] = sys;
		st->paths[1] = user;
		if (sys && read_file(st, sys, false, 0, cmd, opts))
			goto err_free;
		if (user && read_file(st, user, false, 1, cmd, opts))
			goto err_free;
	}
	/* the environment, for the commands that talk to a master */
	for (size_t i = 0; !help && opt_index(opts, "master") >= 0 &&
	     i < sizeof(env) / sizeof(env[0]); i++) {
		const char *v = getenv(env[i][0]);
		struct setting s = { .section = env[i][0], .layer = 10,
				     .opt = opt_index(opts, env[i][1]) };

		if (!v || !*v || s.opt < 0)
			continue;
		s.key = strdup(env[i][1]);
		s.value = strdup(v);
		if (!s.key || !s.value || add(st, &s)) {
			free(s.key);
			free(s.value);
			fprintf(stderr, "noded: out of memory\n");
			goto err_free;
		}
	}
	if (!st->nset && !config) {
		ret = -1; /* nothing to add: argv as it is */
		store_free(st);
		free(given);
		return ret;
	}

	/* argv[0], the settings' words, the command line less --config */
	st->argv = calloc(st->nset + (size_t)*argc + 1, sizeof(char *));
	st->origin = calloc(st->nset + 1, sizeof(*st->origin));
	if (!st->argv || !st->origin)
		goto err_nomem;
	st->argv[0] = (*argv)[0];
	n = 1;
	for (size_t i = 0; i < nopts; i++) {
		if (given[i])
			continue;
		top = -1;
		for (size_t j = 0; j < st->nset; j++)
			if (st->set[j].opt == (int)i && st->set[j].layer > top)
				top = st->set[j].layer;
		for (size_t j = 0; top >= 0 && j < st->nset; j++) {
			const struct setting *s = &st->set[j];

			if (s->opt != (int)i || s->layer != top)
				continue;
			st->argv[n] = word(&opts[i], s, &none);
			if (none)
				continue;
			if (!st->argv[n])
				goto err_nomem;
			st->origin[n - 1].s = s;
			st->nwords = n++;
		}
	}
	for (int i = 1; i < *argc; i++)
		if (!cfg_n || i < cfg_at || i >= cfg_at + cfg_n)
			st->argv[n++] = (*argv)[i];
	st->argv[n] = NULL;
	*argc = n;
	*argv = st->argv;
	/* the settings' words are owned through argv from now on */
	st->next = stores;
	stores = st;
	cur = st;
	free(given);
	return -1;

err_nomem:
	fprintf(stderr, "noded: out of memory\n");
err_free:
	if (st)
		store_free(st);
	free(given);
	return ret;
}

int nd_cli_getopt(int argc, char **argv, const char *shortopts,
		  const struct option *opts, int *li)
{
	int o = getopt_long(argc, argv, shortopts, opts, li);

	where = NULL;
	/* a setting's word is one word: it is the one just read */
	if (o != -1 && cur && argv == cur->argv && optind >= 2 &&
	    optind - 1 <= cur->nwords)
		where = cur->origin[optind - 2].s;
	return o;
}

void nd_cli_config_report(int status)
{
	if (status != ND_CLI_EXIT_USAGE || !where)
		return;
	if (where->file)
		fprintf(stderr, "noded: (that is '%s = %s' in [%s] of %s, line "
			"%u)\n", where->key, where->value, where->section,
			where->file, where->line);
	else
		fprintf(stderr, "noded: (that is %s=%s in the environment)\n",
			where->section, where->value);
}
