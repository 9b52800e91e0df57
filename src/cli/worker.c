/* noded worker: report to a master and run its tasks. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/server.h"
#include "node/node_id.h"
#include "node/worker.h"
#include "noded/auth.h"
#include "rpc/server.h"
#include "tls/tls.h"
#include "wire/text.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: noded worker [options]\n"
		"  --master HOST:PORT[,HOST:PORT...]  the master, or the masters\n"
		"                         of a cluster (the leader is found and\n"
		"                         followed) (default: $NODED_MASTER, else\n"
		"                         " ND_CLI_MASTER ")\n"
		"  --name NAME            node name (default: host name)\n"
		"  --label KEY=VALUE      a label for targeting; repeatable\n"
		"  --slots N              tasks at once (default: CPUs)\n"
		"  --token-file FILE      the master's token (its --token-file;\n"
		"                         default: $NODED_TOKEN_FILE)\n"
		"  --tls-cert FILE        our worker certificate (see noded tls;\n"
		"                         default: $NODED_TLS_CERT)\n"
		"  --tls-key FILE         its private key ($NODED_TLS_KEY)\n"
		"  --tls-ca FILE          speak TLS 1.3 to the master and trust it\n"
		"                         only with a master certificate signed by\n"
		"                         this CA ($NODED_TLS_CA)\n"
		"  --config FILE          read the settings from FILE alone (not\n"
		"                         /etc/noded/noded.conf and the user's)\n"
		"  --state-dir DIR        where it keeps its node id (created\n"
		"                         0700; default $STATE_DIRECTORY, else\n"
		"                         /var/lib/noded as root, else\n"
		"                         $XDG_STATE_HOME/noded or\n"
		"                         ~/.local/state/noded)\n"
		"  --drain                on SIGTERM/SIGINT take no new tasks and\n"
		"                         let the running ones finish before\n"
		"                         leaving (a second signal stops them)\n"
		"  --drain-timeout SECS   bound on that wait (implies --drain;\n"
		"                         default: none)\n"
		"Without --drain a stop ends the running tasks at once (LOST,\n"
		"\"worker stopping\"; retried when they have retries). Either\n"
		"way the master marks the node LEFT, not DEAD.\n"
		"%s", nd_cli_log_usage);
}

/*
 * Checks --label KEY=VALUE (kv) against the master's rule for label text
 * and the labels given before it (prev[0..n)). False, after saying why,
 * for text the master would refuse or a key given again with another
 * value; *add is false when the same label was given already.
 */
static bool label_ok(const char *kv, const char *const *prev, size_t n,
		     bool *add)
{
	size_t klen = (size_t)(strchr(kv, '=') - kv);
	char *key = strndup(kv, klen), why[512];
	bool ok = key != NULL;

	*add = true;
	if (ok && (nd_text_name_error("--label key", key, why, sizeof(why)) ||
		   nd_text_name_error("--label value", kv + klen + 1, why,
				      sizeof(why)))) {
		fprintf(stderr, "noded: %s\n", why);
		ok = false;
	}
	for (size_t i = 0; ok && i < n; i++) {
		if (strncmp(prev[i], kv, klen + 1))
			continue;
		if (strcmp(prev[i], kv)) {
			fprintf(stderr, "noded worker: --label key '%s' given "
				"twice ('%s' and '%s'): give it once\n", key,
				prev[i] + klen + 1, kv + klen + 1);
			ok = false;
		}
		*add = false;
	}
	free(key);
	return ok;
}

int nd_cli_worker(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "master", required_argument, NULL, 'm' },
		{ "name", required_argument, NULL, 'n' },
		{ "label", required_argument, NULL, 'l' },
		{ "slots", required_argument, NULL, 's' },
		{ "token-file", required_argument, NULL, 't' },
		ND_CLI_TLS_OPTIONS,
		{ "state-dir", required_argument, NULL, 'd' },
		{ "drain", no_argument, NULL, 'D' },
		{ "drain-timeout", required_argument, NULL, 'W' },
		ND_CLI_LOG_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct nd_worker_cfg wc = { .master = ND_CLI_MASTER };
	char host[256];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const char *token_file = NULL, *state_dir = NULL;
	struct nd_tls *tls = NULL;
	const char *seen[sizeof(opts) / sizeof(opts[0])] = { 0 };
	char dir[4096], err[512], why[512];
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	uint64_t v;
	bool ok;
	int o, li, ret = nd_cli_config("worker", "h", opts, &argc, &argv);

	if (ret >= 0)
		return ret;
	wc.labels = calloc((size_t)argc, sizeof(*wc.labels));
	if (!wc.labels)
		return ND_CLI_EXIT_FAIL;
	wc.slots = ncpu > 0 ? (unsigned)ncpu : 1;
	optind = 1;
	while ((li = -1, o = nd_cli_getopt(argc, argv, "h", opts, &li)) != -1) {
		if (o != 'l' && !nd_cli_once("worker", opts, seen, li, optarg))
			goto err_usage;
		if (nd_cli_tls_opt(o, optarg))
			continue;
		if (nd_cli_log_opt(o, optarg, &ok)) {
			if (!ok)
				goto err_usage;
			continue;
		}
		switch (o) {
		case 'm':
			wc.master = optarg;
			break;
		case 'n':
			if (!*optarg || strlen(optarg) > ND_NAME_MAX) {
				fprintf(stderr, "noded: --name must be 1 to %d "
					"bytes\n", ND_NAME_MAX);
				goto err_usage;
			}
			/* the master would refuse it: say so now */
			if (nd_text_name_error("--name", optarg, why,
					       sizeof(why))) {
				fprintf(stderr, "noded: %s\n", why);
				goto err_usage;
			}
			wc.name = optarg;
			break;
		case 'l':
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				fprintf(stderr, "noded: --label wants KEY=VALUE, "
					"not '%s'\n", optarg);
				goto err_usage;
			}
			if (!label_ok(optarg, wc.labels, wc.nlabels, &ok))
				goto err_usage;
			if (ok)
				wc.labels[wc.nlabels++] = optarg;
			break;
		case 's':
			if (!nd_cli_uint("--slots", optarg, 1, 4096, &v))
				goto err_usage;
			wc.slots = (unsigned)v;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'd':
			if (!*optarg) {
				fprintf(stderr, "noded: --state-dir wants a "
					"directory\n");
				goto err_usage;
			}
			state_dir = optarg;
			break;
		case 'D':
			wc.drain = true;
			break;
		case 'W':
			if (!nd_cli_uint("--drain-timeout", optarg, 1, 86400 * 7,
					 &v))
				goto err_usage;
			wc.drain = true;
			wc.drain_timeout_ms = (uint32_t)v * 1000;
			break;
		case 'h':
			usage(stdout);
			free(wc.labels);
			return ND_CLI_EXIT_OK;
		default:
			usage(stderr);
			goto err_usage;
		}
	}
	if (!nd_cli_no_more_args("noded worker", argc, argv))
		goto err_usage;
	/* resolved once, here: a name that does not resolve is a bad
	 * address, said at once rather than retried */
	for (const char *p = wc.master, *end; p; p = end ? end + 1 : NULL) {
		char one[256];

		end = strchr(p, ',');
		snprintf(one, sizeof(one), "%.*s",
			 (int)(end ? (size_t)(end - p) : strlen(p)), p);
		if (nd_parse_addr_why(one, &ss, &sslen, why, sizeof(why))) {
			fprintf(stderr, "noded worker: --master %s\n", why);
			goto err_usage;
		}
	}
	if (!wc.name) {
		if (gethostname(host, sizeof(host) - 1))
			snprintf(host, sizeof(host), "worker");
		host[sizeof(host) - 1] = '\0';
		wc.name = host;
	}
	if (!state_dir) {
		if (nd_state_dir_default(dir, sizeof(dir))) {
			fprintf(stderr, "noded: no state directory (no HOME): "
				"give --state-dir\n");
			goto err_usage;
		}
		state_dir = dir;
	}
	/* Who we are, kept across restarts: the master lets only this id
	 * take our name back while it is registered. */
	if (nd_node_id_load(state_dir, wc.node_id, err, sizeof(err))) {
		fprintf(stderr, "noded: %s\n", err);
		free(wc.labels);
		return ND_CLI_EXIT_FAIL;
	}
	if (token_file) {
		uint8_t *token;

		if (nd_auth_read_token(token_file, &token, &wc.token_len))
			goto err_usage;
		wc.token = token;
	}
	if (nd_cli_tls_cert || nd_cli_tls_key || nd_cli_tls_ca) {
		struct nd_tls_files f = { nd_cli_tls_cert, nd_cli_tls_key,
					  nd_cli_tls_ca };

		if (nd_tls_open(&tls, &f, false)) {
			free((void *)wc.token);
			goto err_usage;
		}
		nd_tls_set_connect_default(tls);
	}
	ret = nd_worker_run(&wc);
	nd_tls_set_connect_default(NULL);
	nd_tls_close(tls);
	free((void *)wc.token);
	free(wc.labels);
	return ret;

err_usage:
	free(wc.labels);
	return ND_CLI_EXIT_USAGE;
}
