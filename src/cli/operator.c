/*
 * noded operator raft list-peers|add-peer|remove-peer|transfer-leader:
 * the cluster of masters (src/node/cluster.c), asked of any member (the
 * changes are followed to the leader by nd_cli_call).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "noded/client.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: noded operator raft list-peers [--json]\n"
		"       noded operator raft add-peer ID RAFT_ADDR [CLIENT_ADDR]\n"
		"       noded operator raft remove-peer ID\n"
		"       noded operator raft transfer-leader [ID]\n"
		"  (each also takes --master HOST:PORT[,...], --token-file FILE\n"
		"  and --config FILE)\n"
		"  list-peers       the masters of the cluster: id, addresses,\n"
		"                   voter or not, which one leads\n"
		"  add-peer         make the master with that id and Raft\n"
		"                   address a voter (it must run, with a data\n"
		"                   directory and a Raft address; a master\n"
		"                   told to join does this by itself)\n"
		"  remove-peer      take the member out of the cluster\n"
		"  transfer-leader  hand the leadership to ID (or to the most\n"
		"                   up-to-date other voter)\n"
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

int nd_cli_operator(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "master", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "token-file", required_argument, NULL, 'T' },
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
		switch (o) {
		case 'm':
			master = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'T':
			nd_cli_token_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return ND_CLI_EXIT_USAGE;
		}
	}
	if (argc - optind < 2 || strcmp(argv[optind], "raft")) {
		fprintf(stderr, "noded operator: give `raft` and a verb\n");
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
