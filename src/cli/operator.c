/*
 * noded operator raft list-peers|add-peer|remove-peer|transfer-leader:
 * the cluster of masters (src/node/cluster.c), asked of any member (the
 * changes are followed to the leader by nd_cli_call).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "noded/client.h"
#include "noded/errors.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: noded operator raft list-peers [--json]\n"
		"       noded operator raft add-peer ID RAFT_ADDR [CLIENT_ADDR]\n"
		"       noded operator raft remove-peer ID\n"
		"       noded operator raft transfer-leader [ID]\n"
		"       noded operator snapshot save|restore|inspect FILE\n"
		"  (each also takes --master HOST:PORT[,...], --token-file FILE,\n"
		"  --tls-cert FILE, --tls-key FILE, --tls-ca FILE and --config FILE)\n"
		"  list-peers       the masters of the cluster: id, addresses,\n"
		"                   voter or not, which one leads\n"
		"  add-peer         make the master with that id and Raft\n"
		"                   address a voter (it must run, with a data\n"
		"                   directory and a Raft address; a master\n"
		"                   told to join does this by itself)\n"
		"  remove-peer      take the member out of the cluster\n"
		"  transfer-leader  hand the leadership to ID (or to the most\n"
		"                   up-to-date other voter)\n"
		"  snapshot save    write the leader's task ledger to FILE (a\n"
		"                   LedgerSnapshot: every task, its kept output,\n"
		"                   the counters)\n"
		"  snapshot restore replace every task of the cluster by FILE's\n"
		"                   (through the log: every master takes it)\n"
		"  snapshot inspect what FILE holds (no master asked)\n"
		"  --json           list-peers as JSON\n");
}

static int list_peers(const char *master, bool json)
{
	Noded__Frame req = NODED__FRAME__INIT, *reply = NULL;
	Noded__LeaderRequest lr = NODED__LEADER_REQUEST__INIT;
	const Noded__LeaderInfo *li;
	json_t *arr = NULL;
	int r;

	req.body_case = NODED__FRAME__BODY_LEADER;
	req.leader = &lr;
	r = nd_cli_request(master, &req, NODED__FRAME__BODY_LEADER_INFO,
			   "list-peers", &reply);
	if (r)
		return r;
	li = reply->leader_info;
	if (li->replicated && !li->is_leader && li->leader_address[0]) {
		/* a follower's view may lag: the leader's is the log's */
		char leader[256];

		snprintf(leader, sizeof(leader), "%s", li->leader_address);
		nd_frame_free(reply, NULL);
		r = nd_cli_request(leader, &req, NODED__FRAME__BODY_LEADER_INFO,
				   "list-peers", &reply);
		if (r)
			return r;
		li = reply->leader_info;
	}
	if (!li->replicated) {
		fprintf(stderr, "noded: list-peers: the master keeps no Raft "
			"log (started without --data-dir): no peers\n");
		nd_frame_free(reply, NULL);
		return ND_CLI_EXIT_FAIL;
	}
	if (json)
		arr = json_array();
	else
		printf("%-20s %-21s %-21s %-21s %-6s %s\n", "ID", "RAFT",
		       "CLIENT", "HTTP", "VOTER", "STATE");
	for (size_t i = 0; i < li->n_members; i++) {
		const Noded__RaftMember *m = li->members[i];
		const char *state = m->id == li->leader_id ? "leader" :
				    "follower";

		if (json) {
			json_array_append_new(arr, json_pack(
				"{s:I, s:s, s:s, s:s, s:b, s:s}",
				"id", (json_int_t)m->id,
				"raft_address", m->raft_address,
				"client_address", m->client_address,
				"http_address", m->http_address,
				"voter", (int)m->voter, "state", state));
			continue;
		}
		printf("%-20" PRIu64 " %-21s %-21s %-21s %-6s %s%s\n", m->id,
		       m->raft_address, m->client_address[0] ?
		       m->client_address : "-", m->http_address[0] ?
		       m->http_address : "-", m->voter ? "yes" : "no", state,
		       m->id == li->self_id ? " (asked)" : "");
	}
	if (json) {
		if (!arr || json_dumpf(arr, stdout, JSON_INDENT(2)) ||
		    printf("\n") < 0)
			r = ND_CLI_EXIT_FAIL;
		json_decref(arr);
	}
	nd_frame_free(reply, NULL);
	return r;
}

static bool member_id(const char *verb, const char *s, uint64_t *id)
{
	char *end;

	*id = strtoull(s, &end, 10);
	if (*s && !*end && *id)
		return true;
	fprintf(stderr, "noded operator raft %s: '%s' is not a member id (a "
		"positive number: see list-peers)\n", verb, s);
	return false;
}

static int change(const char *master, const char *verb, int argc,
		  char **argv)
{
	Noded__Frame req = NODED__FRAME__INIT, *reply = NULL;
	Noded__RaftChange rc = NODED__RAFT_CHANGE__INIT;
	Noded__RaftMember mb = NODED__RAFT_MEMBER__INIT;
	int want, r;

	if (!strcmp(verb, "add-peer")) {
		rc.op = NODED__RAFT_CHANGE__OP__ADD;
		want = 2;
	} else if (!strcmp(verb, "remove-peer")) {
		rc.op = NODED__RAFT_CHANGE__OP__REMOVE;
		want = 1;
	} else if (!strcmp(verb, "transfer-leader")) {
		rc.op = NODED__RAFT_CHANGE__OP__TRANSFER;
		want = 0;
	} else {
		fprintf(stderr, "noded operator raft: unknown verb '%s' (want "
			"list-peers, add-peer, remove-peer or "
			"transfer-leader)\n", verb);
		return ND_CLI_EXIT_USAGE;
	}
	if (argc < want || argc > want + (rc.op == 0 || rc.op == 2)) {
		fprintf(stderr, "noded operator raft %s: wrong arguments\n",
			verb);
		usage(stderr);
		return ND_CLI_EXIT_USAGE;
	}
	if (argc && !member_id(verb, argv[0], &mb.id))
		return ND_CLI_EXIT_USAGE;
	if (rc.op == NODED__RAFT_CHANGE__OP__ADD) {
		mb.raft_address = argv[1];
		if (argc > 2)
			mb.client_address = argv[2];
	}
	rc.member = &mb;
	req.body_case = NODED__FRAME__BODY_RAFT_CHANGE;
	req.raft_change = &rc;
	r = nd_cli_request(master, &req, NODED__FRAME__BODY_ACK, verb, &reply);
	if (r)
		return r;
	if (rc.op == NODED__RAFT_CHANGE__OP__TRANSFER)
		printf("leadership transferred\n");
	else
		printf("member %" PRIu64 " %s\n", mb.id,
		       rc.op == NODED__RAFT_CHANGE__OP__ADD ? "is a voter" :
		       "removed");
	nd_frame_free(reply, NULL);
	return 0;
}

/* ---- snapshots ---- */

struct save {
	FILE *f;
	uint64_t got, total;
	int status;                   /* 1: not done */
	char err[256];
};

static void on_chunk(struct nd_client *c, int status, const Noded__Frame *f,
		     bool done, void *arg)
{
	struct save *s = arg;

	if (status) {
		snprintf(s->err, sizeof(s->err), "%s",
			 nd_cli_error_text(status, f));
		s->status = status;
		return;
	}
	if (f->body_case == NODED__FRAME__BODY_SNAPSHOT_CHUNK) {
		s->total = f->snapshot_chunk->total;
		if (fwrite(f->snapshot_chunk->data.data, 1,
			   f->snapshot_chunk->data.len, s->f) !=
		    f->snapshot_chunk->data.len) {
			snprintf(s->err, sizeof(s->err), "cannot write: %s",
				 strerror(errno));
			s->status = -EIO;
		}
		s->got += f->snapshot_chunk->data.len;
	}
	if (done && s->status == 1)
		s->status = 0;
}

static int snapshot_save(const char *master, const char *path)
{
	Noded__Frame req = NODED__FRAME__INIT;
	Noded__SnapshotRequest sr = NODED__SNAPSHOT_REQUEST__INIT;
	struct save s = { .status = 1 };
	struct nd_client *c = nd_cli_connect(master);
	int r = 0;

	if (!c)
		return ND_CLI_EXIT_FAIL;
	s.f = fopen(path, "wx");
	if (!s.f) {
		fprintf(stderr, "noded operator snapshot save: %s: %s\n", path,
			errno == EEXIST ? "exists already (not overwritten)" :
			strerror(errno));
		nd_client_close(c);
		return ND_CLI_EXIT_FAIL;
	}
	req.body_case = NODED__FRAME__BODY_SNAPSHOT;
	req.snapshot = &sr;
	if (nd_client_start(c, &req, on_chunk, &s) < 0)
		s.status = -EIO;
	while (s.status == 1 && (r = nd_client_poll(c, 30000)) > 0)
		;
	if (s.status == 1) {
		s.status = r ? r : -ETIMEDOUT;
		snprintf(s.err, sizeof(s.err), "%s", nd_strerror(s.status));
	}
	nd_client_close(c);
	if (fclose(s.f) && !s.status) {
		s.status = -EIO;
		snprintf(s.err, sizeof(s.err), "cannot write: %s",
			 strerror(errno));
	}
	if (s.status || s.got != s.total) {
		fprintf(stderr, "noded operator snapshot save: %s\n",
			s.status ? s.err : "the snapshot came short");
		unlink(path);
		return ND_CLI_EXIT_FAIL;
	}
	printf("saved %" PRIu64 " bytes to %s\n", s.got, path);
	return 0;
}

/* FILE's bytes (malloc'd) and size, or NULL after saying why. */
static uint8_t *slurp(const char *verb, const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	uint8_t *p = NULL;
	long n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) || !(p = malloc(n ? (size_t)n : 1)) ||
	    fread(p, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "noded operator snapshot %s: %s: %s\n", verb,
			path, strerror(errno ? errno : EIO));
		free(p);
		if (f)
			fclose(f);
		return NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return p;
}

static int snapshot_inspect(const char *path, bool json)
{
	static const char *const states[] = { "?", "pending", "assigned",
		"running", "succeeded", "failed", "timed_out", "cancelled",
		"lost" };
	uint64_t by[9] = { 0 }, kept = 0;
	Noded__LedgerSnapshot *s;
	size_t len;
	uint8_t *p = slurp("inspect", path, &len);

	if (!p)
		return ND_CLI_EXIT_FAIL;
	s = noded__ledger_snapshot__unpack(NULL, len, p);
	free(p);
	if (!s) {
		fprintf(stderr, "noded operator snapshot inspect: %s is not a "
			"ledger snapshot\n", path);
		return ND_CLI_EXIT_FAIL;
	}
	for (size_t i = 0; i < s->n_tasks; i++) {
		if ((unsigned)s->tasks[i]->state < 9)
			by[s->tasks[i]->state]++;
		for (size_t k = 0; k < s->tasks[i]->n_output; k++)
			kept += s->tasks[i]->output[k]->data.len;
	}
	if (json) {
		json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			"bytes", (json_int_t)len,
			"tasks", (json_int_t)s->n_tasks,
			"next_id", (json_int_t)s->next_id,
			"submitted", (json_int_t)s->submitted,
			"events_applied", (json_int_t)s->applied,
			"output_kept_bytes", (json_int_t)kept,
			"members", (json_int_t)s->n_members,
			"sessions", (json_int_t)s->n_sessions);

		for (unsigned st = 1; j && st < 9; st++)
			json_object_set_new(j, states[st],
					    json_integer((json_int_t)by[st]));
		if (!j || json_dumpf(j, stdout, JSON_INDENT(2)))
			fprintf(stderr, "noded: cannot print it\n");
		printf("\n");
		json_decref(j);
	} else {
		printf("%s: %zu bytes, %zu tasks (next id %" PRIu64 ", %"
		       PRIu64 " submitted, %" PRIu64 " events applied)\n",
		       path, len, s->n_tasks, s->next_id, s->submitted,
		       s->applied);
		for (unsigned st = 1; st < 9; st++)
			if (by[st])
				printf("  %-10s %" PRIu64 "\n", states[st],
				       by[st]);
		printf("  output kept: %" PRIu64 " bytes; members: %zu; "
		       "client sessions: %zu\n", kept, s->n_members,
		       s->n_sessions);
	}
	noded__ledger_snapshot__free_unpacked(s, NULL);
	return 0;
}

static int snapshot_restore(const char *master, const char *path)
{
	Noded__Frame req = NODED__FRAME__INIT, *reply = NULL;
	Noded__LedgerRestore lr = NODED__LEDGER_RESTORE__INIT;
	size_t len;
	uint8_t *p = slurp("restore", path, &len);
	int r;

	if (!p)
		return ND_CLI_EXIT_FAIL;
	lr.snapshot.data = p;
	lr.snapshot.len = len;
	req.body_case = NODED__FRAME__BODY_RESTORE;
	req.restore = &lr;
	r = nd_cli_request(master, &req, NODED__FRAME__BODY_ACK, "restore",
			   &reply);
	free(p);
	if (r)
		return r;
	nd_frame_free(reply, NULL);
	printf("restored %s (%zu bytes)\n", path, len);
	return 0;
}

static int snapshot(const char *master, bool json, int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "noded operator snapshot: give save, restore "
			"or inspect, and a FILE\n");
		return ND_CLI_EXIT_USAGE;
	}
	if (json && strcmp(argv[0], "inspect")) {
		fprintf(stderr, "noded operator snapshot %s: --json is for "
			"inspect and list-peers only\n", argv[0]);
		return ND_CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[0], "save"))
		return snapshot_save(master, argv[1]);
	if (!strcmp(argv[0], "restore"))
		return snapshot_restore(master, argv[1]);
	if (!strcmp(argv[0], "inspect"))
		return snapshot_inspect(argv[1], json);
	fprintf(stderr, "noded operator snapshot: unknown verb '%s' (want "
		"save, restore or inspect)\n", argv[0]);
	return ND_CLI_EXIT_USAGE;
}

int nd_cli_operator(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "master", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "token-file", required_argument, NULL, 'T' },
		ND_CLI_TLS_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *seen[sizeof(opts) / sizeof(opts[0])] = { 0 };
	const char *master = ND_CLI_MASTER, *verb;
	bool json = false;
	int o, li, r = nd_cli_config("operator", "h", opts, &argc, &argv);

	if (r >= 0)
		return r;
	optind = 1;
	while ((li = -1, o = nd_cli_getopt(argc, argv, "h", opts, &li)) != -1) {
		if (!nd_cli_once("operator", opts, seen, li, optarg))
			return ND_CLI_EXIT_USAGE;
		if (nd_cli_conn_opt(o, optarg, &master))
			continue;
		switch (o) {
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return ND_CLI_EXIT_USAGE;
		}
	}
	if (argc - optind >= 1 && !strcmp(argv[optind], "snapshot"))
		return snapshot(master, json, argc - optind - 1,
				argv + optind + 1);
	if (argc - optind < 2 || strcmp(argv[optind], "raft")) {
		fprintf(stderr, "noded operator: give `raft` or `snapshot` "
			"and a verb\n");
		usage(stderr);
		return ND_CLI_EXIT_USAGE;
	}
	verb = argv[optind + 1];
	if (!strcmp(verb, "list-peers")) {
		if (argc - optind != 2) {
			fprintf(stderr, "noded operator raft list-peers: "
				"unexpected argument '%s'\n",
				argv[optind + 2]);
			return ND_CLI_EXIT_USAGE;
		}
		return list_peers(master, json);
	}
	if (json) {
		fprintf(stderr, "noded operator raft %s: --json is for "
			"list-peers only\n", verb);
		return ND_CLI_EXIT_USAGE;
	}
	return change(master, verb, argc - optind - 2, argv + optind + 2);
}
