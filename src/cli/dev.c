/*
 * noded dev: a master and N workers in one process on loopback, to try noded
 * out (like `nomad agent -dev`). Workers are named dev-1..dev-N, labelled
 * dev=true, with the machine's CPUs as slots each.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/dev.h"
#include "core/log.h"
#include "core/server.h"
#include "node/node_id.h"
#include "node/service.h"
#include "node/worker.h"

#define DEV_MAX_WORKERS 64

static void usage(FILE *f)
{
	fprintf(f,
		"usage: noded dev [--workers N] [--listen HOST:PORT] [--slots N]\n"
		"                 [--output-cap BYTES] [--task-history N]\n"
		"                 [--output-budget BYTES] [--http HOST:PORT|none]\n"
		"                 [--masters 1|3|5]\n"
		"  --workers N            workers in this process (default 2)\n"
		"  --masters N            1 (default): a master in this process;\n"
		"                         3 or 5: a cluster of master processes\n"
		"                         on free loopback ports, their data in a\n"
		"                         temporary directory (removed at the\n"
		"                         end), to try failover (kill -9 one)\n"
		"  --listen HOST:PORT     the master's address (default "
		ND_CLI_MASTER ")\n"
		"  --slots N              slots of each worker (default: CPUs)\n"
		"  --config FILE          read the settings from FILE alone (not\n"
		"                         /etc/noded/noded.conf and the user's)\n"
		"  --http HOST:PORT       the HTTP/JSON API (default 127.0.0.1:7071,\n"
		"                         or a free port when --listen's is 0;\n"
		"                         'none': off)\n"
		"%s%s"
		"Prints 'listening on HOST:PORT' on stdout once it serves, then\n"
		"'http on HOST:PORT'.\n",
		nd_cli_retention_usage, nd_cli_log_usage);
}

/* True when the option named name was given (seen: nd_cli_once's). */
static bool seen_opt(const struct option *opts, const char *const *seen,
		     const char *name)
{
	for (size_t i = 0; opts[i].name; i++)
		if (!strcmp(opts[i].name, name))
			return seen[i] != NULL;
	return false;
}

/*
 * A dev cluster asked to listen on port 0 (a free one, so that several run
 * side by side, as tests and `make demo` do) serves HTTP on a free port of
 * the same host too, rather than the fixed 7071 another one may hold. True
 * with "HOST:0" in buf when listen's port is 0.
 */
static bool dev_http_any(const char *listen, char *buf, size_t size)
{
	const char *colon = strrchr(listen, ':');

	if (!colon || strcmp(colon + 1, "0"))
		return false;
	return snprintf(buf, size, "%.*s:0", (int)(colon - listen), listen) <
	       (int)size;
}

/*
 * --masters N: the masters are processes of their own (dev_cluster.c);
 * this one runs the workers, which follow their leader. Prints
 * 'listening on' the first master, then 'masters LIST'.
 */
static int dev_cluster(struct nd_dev_cluster *dc, unsigned nworkers,
		       unsigned slots, bool http)
{
	static const char *labels[] = { "dev=true" };
	struct nd_worker_cfg wc[DEV_MAX_WORKERS];
	struct nd_worker *w[DEV_MAX_WORKERS] = { 0 };
	char names[DEV_MAX_WORKERS][16], hint[300];
	unsigned started = 0;
	int ret = ND_CLI_EXIT_FAIL;
	sigset_t set;

	nd_server_block_signals(&set);
	if (nd_dev_cluster_start(dc, http))
		goto out;
	srand((unsigned)getpid());
	for (unsigned i = 0; i < nworkers; i++) {
		snprintf(names[i], sizeof(names[i]), "dev-%u", i + 1);
		wc[i] = (struct nd_worker_cfg){ .master = dc->list,
						.name = names[i],
						.labels = labels, .nlabels = 1,
						.slots = slots };
		if (nd_node_id_random(wc[i].node_id) ||
		    nd_worker_new(&w[i], &wc[i]))
			goto out;
	}
	for (; started < nworkers; started++)
		if (nd_worker_start(w[started]))
			goto out;
	printf("listening on 127.0.0.1:%d\nmasters %s\n", dc->client[0],
	       dc->list);
	if (http)
		printf("http on 127.0.0.1:%d\n", dc->http[0]);
	fflush(stdout);
	snprintf(hint, sizeof(hint), "try: noded run --master %s --all -- "
		 "uname -n; then kill -9 the leader (noded operator raft "
		 "list-peers)", dc->list);
	ND_LOG(ND_LOG_INFO, "dev.started", ND_S("masters", dc->list),
	       ND_S("data_dir", dc->dir), ND_U("workers", nworkers),
	       ND_S("msg", hint));
	nd_server_wait_signal();
	ret = ND_CLI_EXIT_OK;
out:
	for (unsigned i = 0; i < started; i++)
		nd_worker_stop(w[i]);
	for (unsigned i = 0; i < nworkers; i++)
		nd_worker_free(w[i]);
	nd_dev_cluster_stop(dc);
	return ret;
}

int nd_cli_dev(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "workers", required_argument, NULL, 'w' },
		{ "listen", required_argument, NULL, 'l' },
		{ "slots", required_argument, NULL, 's' },
		{ "http", required_argument, NULL, 'T' },
		{ "masters", required_argument, NULL, 'M' },
		ND_CLI_RETENTION_OPTIONS,
		ND_CLI_LOG_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char *labels[] = { "dev=true" };
	struct nd_cli_serve m = { .http = "127.0.0.1:7071" };
	struct nd_dev_cluster dc = { .n = 1 };
	char http_any[300];
	struct nd_server srv;
	struct nd_worker_cfg wc[DEV_MAX_WORKERS];
	struct nd_worker *w[DEV_MAX_WORKERS] = { 0 };
	char names[DEV_MAX_WORKERS][16], addr[80], http_addr[80], hint[160];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned nworkers = 2, slots = ncpu > 0 ? (unsigned)ncpu : 1, started = 0;
	uint64_t v;
	bool ok;
	const char *seen[sizeof(opts) / sizeof(opts[0])] = { 0 };
	int o, li, ret = nd_cli_config("dev", "h", opts, &argc, &argv);

	if (ret >= 0)
		return ret;
	m.cfg.listen = ND_CLI_MASTER;
	optind = 1;
	while ((li = -1, o = nd_cli_getopt(argc, argv, "h", opts, &li)) != -1) {
		if (!nd_cli_once("dev", opts, seen, li, optarg))
			return ND_CLI_EXIT_USAGE;
		if (nd_cli_retention_opt(o, optarg, &m.svc, &ok) ||
		    nd_cli_log_opt(o, optarg, &ok)) {
			if (!ok)
				return ND_CLI_EXIT_USAGE;
			continue;
		}
		switch (o) {
		case 'w':
			if (!nd_cli_uint("--workers", optarg, 0, DEV_MAX_WORKERS, &v))
				return ND_CLI_EXIT_USAGE;
			nworkers = (unsigned)v;
			break;
		case 'l':
			m.cfg.listen = optarg;
			break;
		case 's':
			if (!nd_cli_uint("--slots", optarg, 1, 4096, &v))
				return ND_CLI_EXIT_USAGE;
			slots = (unsigned)v;
			break;
		case 'T':
			m.http = strcmp(optarg, "none") ? optarg : NULL;
			break;
		case 'M':
			if (!nd_cli_uint("--masters", optarg, 1,
					 ND_DEV_MAX_MASTERS, &v))
				return ND_CLI_EXIT_USAGE;
			if (!(v & 1)) {
				fprintf(stderr, "noded dev: --masters %llu: "
					"take 1, 3 or 5 (an even number "
					"tolerates no more failures than the "
					"odd one below it)\n",
					(unsigned long long)v);
				return ND_CLI_EXIT_USAGE;
			}
			dc.n = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			return ND_CLI_EXIT_OK;
		default:
			usage(stderr);
			return ND_CLI_EXIT_USAGE;
		}
	}
	if (!nd_cli_no_more_args("noded dev", argc, argv))
		return ND_CLI_EXIT_USAGE;
	if (!seen_opt(opts, seen, "http") && dev_http_any(m.cfg.listen,
							   http_any,
							   sizeof(http_any)))
		m.http = http_any;
	if (!nd_cli_retention_check(&m.svc))
		return ND_CLI_EXIT_USAGE;
	if (dc.n > 1)
		return dev_cluster(&dc, nworkers, slots, m.http != NULL);
	m.cfg.idle_timeout_ms = 60000;
	/* m.svc.ids NULL: task ids from the clock, as nothing is kept */
	ret = nd_cli_serve_init(&srv, &m, addr, sizeof(addr), http_addr,
				sizeof(http_addr));
	if (ret)
		return ret;
	ret = ND_CLI_EXIT_FAIL;
	srand((unsigned)getpid());
	for (unsigned i = 0; i < nworkers; i++) {
		snprintf(names[i], sizeof(names[i]), "dev-%u", i + 1);
		wc[i] = (struct nd_worker_cfg){ .master = addr, .name = names[i],
						.labels = labels, .nlabels = 1,
						.slots = slots };
		/* they live as long as this process: a random id each */
		if (nd_node_id_random(wc[i].node_id)) {
			fprintf(stderr, "noded: no random bytes for node ids\n");
			goto out;
		}
		if (nd_worker_new(&w[i], &wc[i]))
			goto out;
	}
	if (nd_server_start(&srv))
		goto out;
	for (; started < nworkers; started++)
		if (nd_worker_start(w[started]))
			goto stop;
	nd_cli_serve_announce(addr, http_addr);
	snprintf(hint, sizeof(hint), "try: noded run --master %s --all -- "
		 "uname -n", addr);
	ND_LOG(ND_LOG_INFO, "dev.started", ND_S("listen", addr),
	       ND_S("http", http_addr),
	       ND_U("workers", nworkers), ND_S("labels", "dev=true"),
	       ND_S("msg", hint));
	nd_server_wait_signal();
	ret = ND_CLI_EXIT_OK;
stop:
	/* workers first, so their tasks end while the master still listens */
	for (unsigned i = 0; i < started; i++)
		nd_worker_stop(w[i]);
	nd_server_stop(&srv);
out:
	for (unsigned i = 0; i < nworkers; i++)
		nd_worker_free(w[i]);
	nd_server_close(&srv);
	return ret;
}
