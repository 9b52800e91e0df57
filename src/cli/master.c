/* noded master: serve the protocol until SIGINT/SIGTERM. */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/durable.h"
#include "core/log.h"
#include "core/server.h"
#include "node/service.h"
#include "node/task_ids.h"
#include "raft/raft.h"
#include "noded/auth.h"
#include "noded/client.h"
#include "noded/errors.h"
#include "rpc/acl.h"
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
		"  --acl FILE             access control: allow rules by\n"
		"                         certificate, role or token; what no rule\n"
		"                         allows is denied (re-read on SIGHUP;\n"
		"                         see noded-master(1))\n"
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
		"                         replicated task ledger (a Raft log in\n"
		"                         DIR/raft, fsync'd before any reply), so\n"
		"                         a restart loses no task (default: none;\n"
		"                         tasks live in memory only)\n"
		"  --raft-listen HOST:PORT  this master's Raft address (default\n"
		"                         127.0.0.1:0, enough for a lone master);\n"
		"                         off loopback, with mutual TLS (the\n"
		"                         links then run it, and each end must be\n"
		"                         a master's) or --token-file (the links\n"
		"                         prove it; inside TLS with --tls-cert)\n"
		"  --bootstrap            start a new cluster with this master as\n"
		"                         its only member when DIR holds no log\n"
		"                         (the default for a lone master)\n"
		"  --join HOST:PORT[,...]  join the cluster of those masters\n"
		"                         (their --listen addresses) as a voter\n"
		"  --raft-snapshot-threshold N  log entries between snapshots\n"
		"                         (default 16384)\n"
		"  --raft-snapshot-trailing N  entries kept behind a snapshot\n"
		"                         (default 4096)\n"
		"  --raft-election-timeout MS  a follower without a leader waits\n"
		"                         MS to 2 MS before it stands (default 600;\n"
		"                         heartbeats every tenth of it)\n"
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
	const char *acl;              /* --acl: the policy file, or NULL */
	struct nd_raft_config raft;
	const char *join;             /* --join: masters to ask, or NULL */
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
	{ "acl", required_argument, NULL, 'a' },
	ND_CLI_TLS_OPTIONS,
	{ "http", required_argument, NULL, 'T' },
	{ "max-queue", required_argument, NULL, 'Q' },
	{ "http-max-body", required_argument, NULL, 'B' },
	{ "http-insecure-token", no_argument, NULL, 'X' },
	{ "data-dir", required_argument, NULL, 'D' },
	{ "ledger-trace", required_argument, NULL, 'R' },
	{ "raft-listen", required_argument, NULL, 'r' },
	{ "bootstrap", no_argument, NULL, 'J' },
	{ "join", required_argument, NULL, 'j' },
	{ "raft-snapshot-threshold", required_argument, NULL, 'y' },
	{ "raft-snapshot-trailing", required_argument, NULL, 'z' },
	{ "raft-election-timeout", required_argument, NULL, 'e' },
	{ "input-budget", required_argument, NULL, 'b' },
	{ "handshake-timeout", required_argument, NULL, 'W' },
	{ "forget-dead", required_argument, NULL, 'G' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

static bool raft_port_zero(const char *addr)
{
	const char *colon = strrchr(addr, ':');

	return !colon || !strcmp(colon, ":0");
}

/* libraft's TCP transport takes IPv4 HOST:PORT; without a token its links
 * are not authenticated, so only loopback is taken then (checked once the
 * options are all read: raft_links_ok). */
static bool raft_addr_ok(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256];

	if (nd_parse_addr_why(addr, &ss, &len, why, sizeof(why))) {
		fprintf(stderr, "noded: --raft-listen: %s\n", why);
		return false;
	}
	if (ss.ss_family != AF_INET) {
		fprintf(stderr, "noded: --raft-listen '%s': the Raft link "
			"takes an IPv4 address\n", addr);
		return false;
	}
	return true;
}

/* Off loopback, the Raft links must prove they are the masters': by the
 * token, or by certificates with the master role (mutual TLS). */
static bool raft_links_ok(const struct master_args *a)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (!a->raft.address || a->token_file ||
	    (nd_cli_tls_cert && nd_cli_tls_ca) ||
	    nd_parse_addr(a->raft.address, &ss, &len) ||
	    nd_addr_is_loopback(&ss))
		return true;
	fprintf(stderr, "noded: --raft-listen '%s' is not a loopback address: "
		"the Raft links between masters must then be authenticated, "
		"with master certificates (--tls-cert, --tls-key and "
		"--tls-ca) or the masters' shared token (--token-file)\n",
		a->raft.address);
	return false;
}

/* ---- joining a cluster ---- */

struct joiner {
	pthread_t thread;
	const char *targets;          /* --join */
	const struct master_args *a;
	const char *client, *http;    /* our addresses */
	atomic_bool stop;
	bool started;
};

/* Sleeps ms, or less when asked to stop. */
static void join_sleep(struct joiner *j, int ms)
{
	for (; ms > 0 && !atomic_load(&j->stop); ms -= 50)
		usleep(50 * 1000);
}

/* The i-th address of the comma-separated list into buf ("" past it). */
static void list_nth(const char *list, size_t i, char *buf, size_t len)
{
	const char *p = list, *end;

	for (; i && p; i--)
		p = (p = strchr(p, ',')) ? p + 1 : NULL;
	if (!p) {
		buf[0] = '\0';
		return;
	}
	end = strchr(p, ',');
	snprintf(buf, len, "%.*s", (int)(end ? (size_t)(end - p) : strlen(p)),
		 p);
}

/*
 * Asks the masters of --join, in turn, to add us as a voter, following a
 * NOT_LEADER to the leader it names, until one says it is done (an Ack:
 * the leader added us, or we were in already) or the master stops. A
 * refused change is said and tried again every second.
 */
static void *join_main(void *arg)
{
	struct joiner *j = arg;
	const struct master_args *a = j->a;
	struct nd_client_opts copts = { .token = a->m.cfg.token,
				       .token_len = a->m.cfg.token_len,
				       .timeout_ms = 3000,
				       .tls_cert = nd_cli_tls_cert,
				       .tls_key = nd_cli_tls_key,
				       .tls_ca = nd_cli_tls_ca };
	Noded__Frame f = NODED__FRAME__INIT, *reply = NULL;
	Noded__RaftChange rc = NODED__RAFT_CHANGE__INIT;
	Noded__RaftMember mb = NODED__RAFT_MEMBER__INIT;
	char target[256], last_err[256] = "";
	size_t next = 0;

	mb.id = a->raft.id;
	mb.raft_address = (char *)a->raft.address;
	mb.client_address = (char *)j->client;
	mb.http_address = (char *)j->http;
	rc.op = NODED__RAFT_CHANGE__OP__ADD;
	rc.member = &mb;
	f.body_case = NODED__FRAME__BODY_RAFT_CHANGE;
	f.raft_change = &rc;
	list_nth(j->targets, next, target, sizeof(target));
	while (!atomic_load(&j->stop)) {
		struct nd_client *c = NULL;
		char err[256];
		int r = nd_client_connect(&c, target, &copts);

		if (!r)
			r = nd_client_call(c, &f, &reply, 10000);
		if (!r) {
			ND_LOG(ND_LOG_INFO, "raft.joined", ND_S("via", target),
			       ND_U("member", mb.id),
			       ND_S("msg", "a voter of the cluster"));
			nd_frame_free(reply, NULL);
			nd_client_close(c);
			break;
		}
		if (r == ND_EREMOTE && reply && reply->error &&
		    reply->error->code == NODED__ERROR_CODE__NOT_LEADER &&
		    reply->error->leader[0]) {
			snprintf(target, sizeof(target), "%s",
				 reply->error->leader);
			nd_frame_free(reply, NULL);
			reply = NULL;
			nd_client_close(c);
			continue;
		}
		snprintf(err, sizeof(err), "%s", r == ND_EREMOTE && reply &&
			 reply->error ? reply->error->message : nd_strerror(r));
		if (strcmp(err, last_err))
			ND_LOG(ND_LOG_WARN, "raft.join_failed",
			       ND_S("via", target), ND_S("err", err),
			       ND_S("msg", "asking again every second"));
		snprintf(last_err, sizeof(last_err), "%s", err);
		nd_frame_free(reply, NULL);
		reply = NULL;
		if (c)
			nd_client_close(c);
		list_nth(j->targets, ++next, target, sizeof(target));
		if (!target[0])
			list_nth(j->targets, next = 0, target, sizeof(target));
		join_sleep(j, 1000);
	}
	return NULL;
}

/* Does dir hold a Raft log (libraft's metadata files)? */
static bool raft_has_log(const char *dir)
{
	char path[PATH_MAX];

	for (int i = 1; i <= 2; i++) {
		snprintf(path, sizeof(path), "%s/metadata%d", dir, i);
		if (!access(path, F_OK))
			return true;
	}
	return false;
}

/*
 * The Raft settings under --data-dir: the log in DIR/raft, this member's
 * id in DIR/raft-id (1 for the member that bootstraps; kept, since the
 * log's configuration names members by id). 0, or -1 with why said.
 */
static int raft_setup(struct master_args *a, char **raft_dir)
{
	char idbuf[32];
	int dirfd, ret = -1;
	ssize_t n;

	if (asprintf(raft_dir, "%s/raft", a->data_dir) < 0) {
		*raft_dir = NULL;
		fprintf(stderr, "noded: out of memory\n");
		return -1;
	}
	if ((n = nd_mkdir_p(*raft_dir, 0700))) {
		fprintf(stderr, "noded: --data-dir: cannot create %s: %s\n",
			*raft_dir, strerror((int)-n));
		return -1;
	}
	dirfd = nd_dir_open(a->data_dir);
	if (dirfd < 0) {
		fprintf(stderr, "noded: --data-dir %s: %s\n", a->data_dir,
			strerror(-dirfd));
		return -1;
	}
	n = nd_small_read(dirfd, "raft-id", idbuf, sizeof(idbuf));
	if (n >= 0 && !a->raft.bootstrap && !a->join &&
	    !raft_has_log(*raft_dir)) {
		/* A member whose log went: starting empty would forget every
		 * task (and, in a cluster, the votes it cast). */
		fprintf(stderr, "noded: %s holds this master's member id but "
			"no Raft log (was %s emptied?): every task it had is "
			"gone. Start it with --bootstrap to begin anew from an "
			"empty ledger\n", a->data_dir, *raft_dir);
		goto out;
	}
	if (n == -ENOENT && raft_has_log(*raft_dir)) {
		fprintf(stderr, "noded: %s has a Raft log but no member id "
			"(%s/raft-id is gone): write this master's id there "
			"(1 for the master that started the cluster; see "
			"noded operator raft list-peers)\n", *raft_dir,
			a->data_dir);
		goto out;
	}
	if (n == -ENOENT && !a->join) {
		/* A new cluster's first member: id 1. Its id file is written
		 * once the log holds the bootstrap (raft.c), so a master
		 * killed before that starts afresh, not "a log removed". */
		snprintf(idbuf, sizeof(idbuf), "1");
		n = 1;
		a->raft.bootstrap = true;
		a->raft.id_dir = a->data_dir;
	} else if (n == -ENOENT) {
		/* one that joins: a random id (two joining never collide),
		 * kept before it joins, as the leader will know it by it */
		uint64_t id = 1;
		char text[32];

		if (nd_auth_nonce((uint8_t *)&id, sizeof(id)) ||
		    !(id &= INT64_MAX))
			id = (uint64_t)getpid() << 20 | (uint64_t)time(NULL);
		snprintf(text, sizeof(text), "%llu\n", (unsigned long long)id);
		n = nd_durable_create(dirfd, "raft-id", text, strlen(text),
				      0600);
		if (n == 0 || n == -EEXIST)
			n = nd_small_read(dirfd, "raft-id", idbuf,
					  sizeof(idbuf));
	}
	if (n < 0) {
		fprintf(stderr, "noded: %s/raft-id: %s\n", a->data_dir,
			strerror((int)-n));
		goto out;
	}
	a->raft.id = strtoull(idbuf, NULL, 10);
	if (!a->raft.id) {
		fprintf(stderr, "noded: %s/raft-id: not a member id (want a "
			"positive number)\n", a->data_dir);
		goto out;
	}
	a->raft.dir = *raft_dir;
	if (!a->raft.address)
		a->raft.address = "127.0.0.1:0";
	if (!a->raft.election_ms)
		a->raft.election_ms = ND_RAFT_ELECTION_MS;
	a->raft.heartbeat_ms = a->raft.election_ms / 10;
	if (!a->raft.snapshot_threshold)
		a->raft.snapshot_threshold = ND_RAFT_SNAPSHOT_THRESHOLD;
	if (!a->raft.snapshot_trailing)
		a->raft.snapshot_trailing = ND_RAFT_SNAPSHOT_TRAILING;
	a->m.svc.raft = &a->raft;
	a->m.cfg.service_shards = 1;
	ret = 0;
out:
	close(dirfd);
	return ret;
}

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
		case 'a':
			a->acl = optarg;
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
		case 'r':
			if (!raft_addr_ok(optarg))
				return ND_CLI_EXIT_USAGE;
			a->raft.address = optarg;
			break;
		case 'J':
			a->raft.bootstrap = true;
			break;
		case 'j':
			if (!*optarg) {
				fprintf(stderr, "noded: --join wants a master's "
					"address (HOST:PORT[,HOST:PORT...])\n");
				return ND_CLI_EXIT_USAGE;
			}
			a->join = optarg;
			break;
		case 'y':
			if (!nd_cli_uint("--raft-snapshot-threshold", optarg, 16,
					 1u << 30, &v))
				return ND_CLI_EXIT_USAGE;
			a->raft.snapshot_threshold = (unsigned)v;
			break;
		case 'z':
			if (!nd_cli_uint("--raft-snapshot-trailing", optarg, 0,
					 1u << 30, &v))
				return ND_CLI_EXIT_USAGE;
			a->raft.snapshot_trailing = (unsigned)v;
			break;
		case 'e':
			if (!nd_cli_uint("--raft-election-timeout", optarg, 100,
					 60000, &v))
				return ND_CLI_EXIT_USAGE;
			a->raft.election_ms = (unsigned)v;
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
	if ((a->raft.address || a->raft.bootstrap || a->join ||
	     a->raft.snapshot_threshold || a->raft.snapshot_trailing ||
	     a->raft.election_ms) &&
	    !a->data_dir) {
		fprintf(stderr, "noded: --raft-listen, --bootstrap, --join and "
			"--raft-snapshot-* need --data-dir (the Raft log is "
			"kept there)\n");
		return ND_CLI_EXIT_USAGE;
	}
	if (!raft_links_ok(a))
		return ND_CLI_EXIT_USAGE;
	if (a->join && a->raft.bootstrap) {
		fprintf(stderr, "noded: --join and --bootstrap exclude each "
			"other: a master either starts a cluster or joins one\n");
		return ND_CLI_EXIT_USAGE;
	}
	if (a->join && (!a->raft.address || raft_port_zero(a->raft.address))) {
		fprintf(stderr, "noded: --join needs --raft-listen HOST:PORT "
			"with a fixed port, where the other masters reach "
			"this one\n");
		return ND_CLI_EXIT_USAGE;
	}
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
	char *raft_dir = NULL;
	struct joiner join = { 0 };
	sigset_t sigs;
	uint8_t *token = NULL;
	struct nd_tls *tls = NULL, *raft_tls = NULL;
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
		/* the Raft links we open: the same files, client end */
		if (a.data_dir && nd_tls_open(&raft_tls, &f, false)) {
			nd_tls_close(tls);
			return ND_CLI_EXIT_USAGE;
		}
		a.raft.tls_server = a.data_dir ? tls : NULL;
		a.raft.tls_client = raft_tls;
	}
	/* with mutual TLS the HTTP clients' secret never travels in clear */
	if (a.m.http && !a.http_insecure && !(tls && nd_tls_verifies(tls)) &&
	    !http_on_loopback(a.m.http)) {
		nd_tls_close(raft_tls);
		nd_tls_close(tls);
		return ND_CLI_EXIT_USAGE;
	}
	if (a.token_file &&
	    nd_auth_read_token(a.token_file, &token, &a.m.cfg.token_len)) {
		nd_tls_close(raft_tls);
		nd_tls_close(tls);
		return ND_CLI_EXIT_USAGE;
	}
	a.m.cfg.token = token;
	if (a.acl && nd_acl_global_load(a.acl, err, sizeof(err))) {
		fprintf(stderr, "noded: --acl: %s\n", err);
		free(token);
		nd_tls_close(raft_tls);
		nd_tls_close(tls);
		return ND_CLI_EXIT_USAGE;
	}
	a.raft.token = token;
	a.raft.token_len = a.m.cfg.token_len;
	/* Before anything serves: a master that cannot keep its id mark
	 * could hand out ids it gave before, so it does not start. */
	if (nd_task_ids_open(&ids, a.data_dir, err, sizeof(err))) {
		fprintf(stderr, "noded: %s\n", err);
		ND_LOG(ND_LOG_ERROR, "master.failed", ND_S("err", err));
		free(token);
		nd_tls_close(raft_tls);
		nd_tls_close(tls);
		return ND_CLI_EXIT_FAIL;
	}
	a.m.svc.ids = &ids;
	if (a.data_dir && raft_setup(&a, &raft_dir)) {
		ret = ND_CLI_EXIT_FAIL;
		goto close_ids;
	}
	ret = nd_cli_serve_init(&srv, &a.m, addr, sizeof(addr), http_addr,
				sizeof(http_addr));
	if (ret)
		goto close_ids;
	a.m.svc.client_address = addr;
	a.m.svc.http_address = http_addr;
	/* before anyone is told where we are: a SIGTERM right after the
	 * line is a request to stop, not a kill (and the join thread below
	 * inherits the mask, so signals come to nd_server_run's wait) */
	nd_server_block_signals(&sigs);
	nd_cli_serve_announce(addr, http_addr);
	if (a.join) {
		join.targets = a.join;
		join.a = &a;
		join.client = addr;
		join.http = http_addr;
		join.started = !pthread_create(&join.thread, NULL, join_main,
					       &join);
		if (!join.started)
			ND_LOG(ND_LOG_ERROR, "raft.join_failed",
			       ND_S("err", "cannot start a thread"));
	}
	ND_LOG(ND_LOG_INFO, "master.started", ND_S("name", srv.cfg.name),
	       ND_S("listen", addr), ND_S("http", http_addr),
	       ND_U("shards", srv.cfg.shards),
	       ND_S("data_dir", a.data_dir ? a.data_dir : ""),
	       ND_U("first_task_id", ids.first));
	ret = nd_server_run(&srv) || atomic_load(&srv.failed) ?
		ND_CLI_EXIT_FAIL : ND_CLI_EXIT_OK;
	if (join.started) {
		atomic_store(&join.stop, true);
		pthread_join(join.thread, NULL);
	}
	nd_server_close(&srv);
close_ids:
	free(raft_dir);
	nd_task_ids_close(&ids);
	free(token);
	nd_tls_close(raft_tls);
	nd_tls_close(tls);
	nd_acl_global_close();
	return ret;
}
