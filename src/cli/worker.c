/* noded worker: report to a master and run its tasks. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "node/worker.h"
#include "noded/auth.h"
#include "rpc/server.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: noded worker [options]\n"
		"  --master HOST:PORT     the master (default " ND_CLI_MASTER ")\n"
		"  --name NAME            node name (default: host name)\n"
		"  --label KEY=VALUE      a label for targeting; repeatable\n"
		"  --slots N              tasks at once (default: CPUs)\n"
		"  --token-file FILE      the master's token (its --token-file)\n"
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

int nd_cli_worker(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "master", required_argument, NULL, 'm' },
		{ "name", required_argument, NULL, 'n' },
		{ "label", required_argument, NULL, 'l' },
		{ "slots", required_argument, NULL, 's' },
		{ "token-file", required_argument, NULL, 't' },
		{ "drain", no_argument, NULL, 'D' },
		{ "drain-timeout", required_argument, NULL, 'W' },
		ND_CLI_LOG_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct nd_worker_cfg wc = { .master = ND_CLI_MASTER };
	char host[256];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const char *token_file = NULL;
	uint64_t v;
	bool ok;
	int o, ret;

	wc.labels = calloc((size_t)argc, sizeof(*wc.labels));
	if (!wc.labels)
		return 1;
	wc.slots = ncpu > 0 ? (unsigned)ncpu : 1;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
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
			wc.name = optarg;
			break;
		case 'l':
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				fprintf(stderr, "noded: --label wants KEY=VALUE, "
					"not '%s'\n", optarg);
				goto err_usage;
			}
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
			return 0;
		default:
			usage(stderr);
			goto err_usage;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "noded worker: unexpected argument '%s'\n",
			argv[optind]);
		goto err_usage;
	}
	if (!wc.name) {
		if (gethostname(host, sizeof(host) - 1))
			snprintf(host, sizeof(host), "worker");
		host[sizeof(host) - 1] = '\0';
		wc.name = host;
	}
	if (token_file) {
		uint8_t *token;

		if (nd_auth_read_token(token_file, &token, &wc.token_len))
			goto err_usage;
		wc.token = token;
	}
	ret = nd_worker_run(&wc);
	free((void *)wc.token);
	free(wc.labels);
	return ret;

err_usage:
	free(wc.labels);
	return 2;
}
