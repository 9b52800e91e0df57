/*
 * What master and dev share: a master's server wired up once (cli.h), and
 * the task retention options both take.
 */
#include <stdio.h>

#include "api/http.h"
#include "cli/cli.h"
#include "noded/errors.h"
#include "rpc/server.h"

int nd_cli_serve_init(struct nd_server *srv, struct nd_cli_serve *m,
		      char *addr, size_t addr_len, char *http_addr,
		      size_t http_len)
{
	int ret;

	nd_svc_config_defaults(&m->svc);
	ret = nd_server_init(srv, &m->cfg);
	if (ret)
		return ret == ND_EADDR ? 2 : 1;
	srv->proto = &nd_rpc_server_ops;
	srv->shard_start = nd_svc_shard_start;
	srv->shard_start_arg = &m->svc;
	http_addr[0] = '\0';
	if (m->http && nd_server_listen(srv, m->http, "--http", &nd_http_ops,
					http_addr, http_len)) {
		nd_server_close(srv);
		return 2;
	}
	nd_server_addr(srv, addr, addr_len);
	return 0;
}

void nd_cli_serve_announce(const char *addr, const char *http_addr)
{
	printf("listening on %s\n", addr);
	if (*http_addr)
		printf("http on %s\n", http_addr);
	fflush(stdout);
}

const char nd_cli_retention_usage[] =
	"  --output-cap BYTES     output kept per task (default 1048576);\n"
	"                         beyond it the record is marked truncated\n"
	"  --task-history N       ended tasks kept (default 10000); past it\n"
	"                         the oldest are evicted\n"
	"  --output-budget BYTES  output kept over all tasks (default\n"
	"                         268435456); past it the oldest ended\n"
	"                         tasks are evicted\n";

bool nd_cli_retention_opt(int opt, const char *arg, struct nd_svc_config *svc,
			  bool *ok)
{
	uint64_t v;

	switch (opt) {
	case 'o':
		*ok = nd_cli_uint("--output-cap", arg, 0, 1ull << 32, &v);
		if (*ok)
			svc->output_cap = v ? v : 1; /* 0 means the default */
		return true;
	case 'K':
		*ok = nd_cli_uint("--task-history", arg, 1, 100000000, &v);
		if (*ok)
			svc->task_history = v;
		return true;
	case 'U':
		*ok = nd_cli_uint("--output-budget", arg, 1, 1ull << 50, &v);
		if (*ok)
			svc->output_budget = v;
		return true;
	default:
		return false;
	}
}

bool nd_cli_retention_check(const struct nd_svc_config *svc)
{
	uint64_t cap = svc->output_cap ? svc->output_cap : ND_OUTPUT_CAP_DEFAULT;
	uint64_t budget = svc->output_budget ? svc->output_budget :
			  ND_OUTPUT_BUDGET_DEFAULT;

	if (cap <= budget)
		return true;
	fprintf(stderr, "noded: --output-cap %llu is over --output-budget "
		"%llu: one task's output could not be kept; lower "
		"--output-cap or raise --output-budget\n",
		(unsigned long long)cap, (unsigned long long)budget);
	return false;
}
