/* noded master: serve the protocol until SIGINT/SIGTERM. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/server.h"
#include "node/service.h"
#include "node/task_ids.h"
#include "noded/auth.h"
#include "noded/errors.h"
#include "rpc/server.h"
#include "tls/tls.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: noded master [options]\n"
		"  --listen HOST:PORT     address to serve (default 127.0.0.1:7070;\n"
		"                         port 0 picks a free one)\n"
		"  --shards N             event-loop threads (default: CPUs)\n"
		"  --name NAME            node name (default: host name)\n"
		"  --max-frame BYTES      largest frame accepted once authenticated\n"
		"                         (default 16777216; before: 4096)\n"
		"  --input-budget BYTES   memory for partial frames over all\n"
		"                         connections (default 67108864, or 4\n"
		"                         times --max-frame if more)\n"
		"  --handshake-timeout SECS  Hello and auth, or an HTTP request's\n"
		"                         headers, must arrive within (default 10)\n"
		"  --max-conns N          connections at once (default 65536)\n"
		"  --idle-timeout SECS    close silent connections (default 60, 0 off)\n"
		"  --max-output BYTES     per-connection output before reading\n"
		"                         stops (default 4194304)\n"
		"  --stall-timeout SECS   close connections whose output stays\n"
		"                         over --max-output (default 10)\n"
		"  --heartbeat-timeout SECS  a worker silent this long is DEAD and\n"
		"                         its running tasks LOST (default 3)\n"
		"  --lease SECS           a task attempt's lease: a worker that does\n"
		"                         not hear from the master this long kills\n"
		"                         it, and the master retries a dead node's\n"
		"                         tasks only after it (default: 10, or the\n"
		"                         heartbeat timeout if longer; at least 4)\n"
		"  --forget-dead SECS     forget a node DEAD or LEFT this long\n"
		"                         (default 86400; 0: never)\n"
		"%s%s"
		"  --token-file FILE      require every worker and client to prove\n"
		"                         it holds this token (needed off loopback)\n"
		"  --tls-cert FILE        speak TLS 1.3 on every listener, with\n"
		"                         this master certificate (see noded tls;\n"
		"                         the files are re-read on SIGHUP)\n"
		"  --tls-key FILE         its private key\n"
		"  --tls-ca FILE          mutual TLS: every worker and client must\n"
		"                         present a certificate signed by this CA,\n"
		"                         whose role limits what it may do (with\n"
		"                         --tls-cert, enough off loopback)\n"
		"  --config FILE          read the settings from FILE alone (not\n"
		"                         /etc/noded/noded.conf and the user's)\n"
		"  --max-queue N          tasks waiting for a node before submits\n"
		"                         are refused (default 1000000)\n"
		"  --http HOST:PORT       also serve the HTTP/JSON API and /metrics\n"
		"                         there (off by default; port 0: any)\n"
		"  --http-insecure-token  allow --http off loopback: its clients\n"
		"                         send the token in clear (no TLS yet)\n"
		"  --http-max-body BYTES  largest HTTP request body (default\n"
		"                         1048576; over it: 413)\n"
		"  --data-dir DIR         keep state there (created 0700): the\n"
		"                         task id mark, so a restart never reuses\n"
		"                         an id (default: none; ids start from\n"
		"                         the clock instead)\n"
		"  --ledger-trace FILE    append every task ledger event to FILE,\n"
		"                         and its snapshot to FILE.snapshot at exit\n"
		"                         (to debug or replay; grows without bound)\n"
		"On start it prints 'listening on HOST:PORT' on stdout, then\n"
		"'http on HOST:PORT' when --http is given.\n",
		nd_cli_retention_usage, nd_cli_log_usage);
}

/*
 * The HTTP API takes the token as a bearer secret, in clear until TLS
 * exists: off loopback anyone on the path could read it and then run
 * commands everywhere. So a non-loopback --http needs the operator to say
 * so (--http-insecure-token). True when addr is loopback (or not an
 * address: the listener says what is wrong with it); false, said why.
 */
static bool http_on_loopback(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (nd_parse_addr(addr, &ss, &len) || nd_addr_is_loopback(&ss))
		return true;
	fprintf(stderr, "noded master: refusing --http %s off loopback: HTTP "
		"clients send the token in clear (Authorization: Bearer; no "
		"TLS yet), so anyone on the path could take it and run "
		"commands on every worker. Keep --http on loopback (behind a "
		"TLS proxy), or pass --http-insecure-token to accept that\n",
		addr);
	return false;
}

/* The master's options (nd_cli_master). */
struct master_args {
	struct nd_cli_serve m;
	bool idle_set, http_insecure;
	const char *token_file, *data_dir;
};

static const struct option opts[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "shards", required_argument, NULL, 's' },
	{ "name", required_argument, NULL, 'n' },
	{ "max-frame", required_argument, NULL, 'F' },
	{ "max-conns", required_argument, NULL, 'C' },
	{ "idle-timeout", required_argument, NULL, 'I' },
	{ "max-output", required_argument, NULL, 'O' },
	{ "stall-timeout", required_argument, NULL, 'S' },
	{ "heartbeat-timeout", required_argument, NULL, 'H' },
	{ "lease", required_argument, NULL, 'L' },
	ND_CLI_RETENTION_OPTIONS,
	ND_CLI_LOG_OPTIONS,
	{ "token-file", required_argument, NULL, 't' },
	ND_CLI_TLS_OPTIONS,
	{ "http", required_argument, NULL, 'T' },
	{ "max-queue", required_argument, NULL, 'Q' },
	{ "http-max-body", required_argument, NULL, 'B' },
	{ "http-insecure-token", no_argument, NULL, 'X' },
	{ "data-dir", required_argument, NULL, 'D' },
	{ "ledger-trace", required_argument, NULL, 'R' },
	{ "input-budget", required_argument, NULL, 'b' },
	{ "handshake-timeout", required_argument, NULL, 'W' },
	{ "forget-dead", required_argument, NULL, 'G' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

/* Reads and checks argv into a: -1 to go on, else the exit status (usage
 * shown, or the error said). */
static int parse_args(int argc, char **argv, struct master_args *a)
{
	const char *seen[sizeof(opts) / sizeof(opts[0])] = { 0 };
	uint64_t v;
	bool ok;
	int o, li = nd_cli_config("master", "h", opts, &argc, &argv);

	if (li >= 0)
		return li;
	optind = 1;
	while ((li = -1, o = nd_cli_getopt(argc, argv, "h", opts, &li)) != -1) {
		if (!nd_cli_once("master", opts, seen, li, optarg))
			return ND_CLI_EXIT_USAGE;
		if (nd_cli_tls_opt(o, optarg))
			continue;
		if (nd_cli_retention_opt(o, optarg, &a->m.svc, &ok) ||
		    nd_cli_log_opt(o, optarg, &ok)) {
			if (!ok)
				return ND_CLI_EXIT_USAGE;
			continue;
		}
		switch (o) {
		case 'l':
			a->m.cfg.listen = optarg;
			break;
		case 'n':
			if (!*optarg || strlen(optarg) > ND_NAME_MAX) {
				fprintf(stderr, "noded: --name must be 1 to %d "
					"bytes\n", ND_NAME_MAX);
				return ND_CLI_EXIT_USAGE;
			}
			a->m.cfg.name = optarg;
			break;
		case 's':
			if (!nd_cli_uint("--shards", optarg, 1, 256, &v))
				return ND_CLI_EXIT_USAGE;
			a->m.cfg.shards = (unsigned)v;
			break;
		case 'F':
			if (!nd_cli_uint("--max-frame", optarg, 64, 1u << 30, &v))
				return ND_CLI_EXIT_USAGE;
			a->m.cfg.max_frame = (uint32_t)v;
			break;
		case 'C':
			if (!nd_cli_uint("--max-conns", optarg, 1, 1u << 20, &v))
				return ND_CLI_EXIT_USAGE;
			a->m.cfg.max_conns = (uint32_t)v;
			break;
		case 'I':
			if (!nd_cli_uint("--idle-timeout", optarg, 0, 86400, &v))
				return ND_CLI_EXIT_USAGE;
			a->m.cfg.idle_timeout_ms = (uint32_t)v * 1000;
			a->idle_set = true;
			break;
		case 'O':
			if (!nd_cli_uint("--max-output", optarg, 4096, 1u << 30, &v))
				return ND_CLI_EXIT_USAGE;
			a->m.cfg.max_output = v;
			break;
		case 'S':
			if (!nd_cli_uint("--stall-timeout", optarg, 1, 86400, &v))
				return ND_CLI_EXIT_USAGE;
			a->m.cfg.stall_timeout_ms = (uint32_t)v * 1000;
			break;
		case 'H':
			if (!nd_cli_uint("--heartbeat-timeout", optarg, 1, 3600, &v))
				return ND_CLI_EXIT_USAGE;
			a->m.svc.heartbeat_timeout_ms = (uint32_t)v * 1000;
			break;
		case 'L':
			if (!nd_cli_uint("--lease", optarg, 4, 86400, &v))
				return ND_CLI_EXIT_USAGE;
			a->m.svc.lease_ms = (uint32_t)v * 1000;
			break;
		case 't':
			a->token_file = optarg;
			break;
		case 'T':
			a->m.http = optarg;
			break;
		case 'Q':
			if (!nd_cli_uint("--max-queue", optarg, 1, 100000000, &v))
				return ND_CLI_EXIT_USAGE;
			a->m.svc.max_queue = v;
			break;
		case 'X':
			a->http_insecure = true;
			break;
		case 'R':
			a->m.svc.ledger_trace = optarg;
			break;
		case 'B':
			if (!nd_cli_uint("--http-max-body", optarg, 1, 1u << 30,
					 &v))
				return ND_CLI_EXIT_USAGE;
			a->m.cfg.http_max_body = v;
			break;
		case 'D':
			if (!*optarg) {
				fprintf(stderr, "noded: --data-dir wants a "
					"directory\n");
				return ND_CLI_EXIT_USAGE;
			}
			a->data_dir = optarg;
			break;
		case 'b':
			if (!nd_cli_uint("--input-budget", optarg, 4096,
					 1ull << 40, &v))
				return ND_CLI_EXIT_USAGE;
			a->m.cfg.input_budget = v;
			break;
		case 'W':
			if (!nd_cli_uint("--handshake-timeout", optarg, 1, 3600,
					 &v))
				return ND_CLI_EXIT_USAGE;
			a->m.cfg.handshake_timeout_ms = (uint32_t)v * 1000;
			break;
		case 'G':
			if (!nd_cli_uint("--forget-dead", optarg, 0,
					 10ull * 365 * 86400, &v))
				return 2;
			a->m.svc.forget_dead_ms = v ? v * 1000 : ND_FORGET_NEVER;
			break;
		case 'h':
			usage(stdout);
			return ND_CLI_EXIT_OK;
		default:
			usage(stderr);
			return ND_CLI_EXIT_USAGE;
		}
	}
	if (!nd_cli_no_more_args("noded master", argc, argv))
		return ND_CLI_EXIT_USAGE;
	if (!nd_cli_retention_check(&a->m.svc))
		return ND_CLI_EXIT_USAGE;
	if (a->m.cfg.input_budget && a->m.cfg.input_budget <
	    (uint64_t)(a->m.cfg.max_frame ? a->m.cfg.max_frame : 16u << 20) +
	    4) {
		fprintf(stderr, "noded: --input-budget %llu is under "
			"--max-frame: a frame of the largest size could never "
			"be received; raise --input-budget or lower "
			"--max-frame\n",
			(unsigned long long)a->m.cfg.input_budget);
		return ND_CLI_EXIT_USAGE;
	}
	if (a->m.svc.lease_ms &&
	    a->m.svc.lease_ms < (a->m.svc.heartbeat_timeout_ms ?
			      a->m.svc.heartbeat_timeout_ms : 3000)) {
		fprintf(stderr, "noded: --lease must be at least "
			"--heartbeat-timeout: workers would kill tasks of a "
			"node the master still counts alive\n");
		return ND_CLI_EXIT_USAGE;
	}
	return -1;
}

int nd_cli_master(int argc, char **argv)
{
	struct master_args a = { 0 };
	struct nd_server srv;
	char addr[80];
	struct nd_task_ids ids;
	char http_addr[80], err[512];
	uint8_t *token = NULL;
	struct nd_tls *tls = NULL;
	int ret = parse_args(argc, argv, &a);

	if (ret >= 0)
		return ret;
	if (!a.idle_set)
		a.m.cfg.idle_timeout_ms = 60000;
	if (nd_cli_tls_cert || nd_cli_tls_key || nd_cli_tls_ca) {
		struct nd_tls_files f = { nd_cli_tls_cert, nd_cli_tls_key,
					  nd_cli_tls_ca };

		if (nd_tls_open(&tls, &f, true))
			return ND_CLI_EXIT_USAGE;
		a.m.cfg.tls = tls;
	}
	/* with mutual TLS the HTTP clients' secret never travels in clear */
	if (a.m.http && !a.http_insecure && !(tls && nd_tls_verifies(tls)) &&
	    !http_on_loopback(a.m.http)) {
		nd_tls_close(tls);
		return ND_CLI_EXIT_USAGE;
	}
	if (a.token_file &&
	    nd_auth_read_token(a.token_file, &token, &a.m.cfg.token_len)) {
		nd_tls_close(tls);
		return ND_CLI_EXIT_USAGE;
	}
	a.m.cfg.token = token;
	/* Before anything serves: a master that cannot keep its id mark
	 * could hand out ids it gave before, so it does not start. */
	if (nd_task_ids_open(&ids, a.data_dir, err, sizeof(err))) {
		fprintf(stderr, "noded: %s\n", err);
		ND_LOG(ND_LOG_ERROR, "master.failed", ND_S("err", err));
		free(token);
		nd_tls_close(tls);
		return ND_CLI_EXIT_FAIL;
	}
	a.m.svc.ids = &ids;
	ret = nd_cli_serve_init(&srv, &a.m, addr, sizeof(addr), http_addr,
				sizeof(http_addr));
	if (ret)
		goto close_ids;
	nd_cli_serve_announce(addr, http_addr);
	ND_LOG(ND_LOG_INFO, "master.started", ND_S("name", srv.cfg.name),
	       ND_S("listen", addr), ND_S("http", http_addr),
	       ND_U("shards", srv.cfg.shards),
	       ND_S("data_dir", a.data_dir ? a.data_dir : ""),
	       ND_U("first_task_id", ids.first));
	ret = nd_server_run(&srv) ? ND_CLI_EXIT_FAIL : ND_CLI_EXIT_OK;
	nd_server_close(&srv);
close_ids:
	nd_task_ids_close(&ids);
	free(token);
	nd_tls_close(tls);
	return ret;
}
