/*
 * noded node drain|eligible|rm NAME: an operator's verbs on one node of
 * the master's registry (src/node/lifecycle.c). Options may come before or
 * after the verb and the name.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "core/time.h"
#include "noded/client.h"
#include "wire/text.h"

/* A drain's deadline: at most a year, as the master takes. */
#define DEADLINE_MAX_S (365ull * 86400)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: noded node drain NAME [--deadline SECS] [--json]\n"
		"       noded node eligible NAME [--json]\n"
		"       noded node rm NAME\n"
		"  (each also takes --master HOST:PORT, --token-file FILE,\n"
		"  --tls-cert FILE, --tls-key FILE, --tls-ca FILE and --config FILE)\n"
		"  drain     NAME takes no new task until `eligible`; its\n"
		"            running tasks finish, or with --deadline are\n"
		"            stopped after SECS (0: now) and end LOST (or run\n"
		"            again elsewhere when they have retries left)\n"
		"  eligible  undoes an operator's drain (not its worker's own\n"
		"            drain or stop)\n"
		"  rm        forgets a DEAD or LEFT node (a live one is refused)\n"
		"  --json    print the node as `noded nodes --json` does\n");
}

/* "NAME: ALIVE, draining (operator, deadline in 30 s; its worker too),
 * 2 tasks running" */
static void print_node(const Noded__NodeInfo *n)
{
	uint64_t now = nd_unix_ms();
	char *name = nd_text_escaped(n->name);

	printf("node %s: %s", name ? name : "?", nd_node_state_name(n->state));
	free(name);
	if (n->drain_operator) {
		printf(", drained by an operator");
		if (n->drain_deadline_unix_ms > now)
			printf(" (deadline in %" PRIu64 " s)",
			       (n->drain_deadline_unix_ms - now + 999) / 1000);
		else if (n->drain_deadline_unix_ms)
			printf(" (deadline passed: its tasks are stopped)");
	} else {
		printf(", eligible");
	}
	if (n->drain_worker)
		printf("%s its worker drains or stops",
		       n->drain_operator ? "; and" : ", but");
	printf(", %" PRIu32 " task%s running\n", n->running_tasks,
	       n->running_tasks == 1 ? "" : "s");
}

int nd_cli_node(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "master", required_argument, NULL, 'm' },
		{ "deadline", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "token-file", required_argument, NULL, 'T' },
		ND_CLI_TLS_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *seen[sizeof(opts) / sizeof(opts[0])] = { 0 };
	const char *master = ND_CLI_MASTER, *verb, *name;
	Noded__Frame req = NODED__FRAME__INIT, *reply = NULL;
	Noded__NodeDrainRequest dr = NODED__NODE_DRAIN_REQUEST__INIT;
	Noded__NodeName nn = NODED__NODE_NAME__INIT;
	Noded__Frame__BodyCase want = NODED__FRAME__BODY_NODE_LIST;
	bool json = false, deadline = false;
	uint64_t secs = 0;
	int o, li, r = nd_cli_config("node", "h", opts, &argc, &argv);

	if (r >= 0)
		return r;
	optind = 1;
	while ((li = -1, o = nd_cli_getopt(argc, argv, "h", opts, &li)) != -1) {
		if (!nd_cli_once("node", opts, seen, li, optarg))
			return ND_CLI_EXIT_USAGE;
		if (nd_cli_conn_opt(o, optarg, &master))
			continue;
		switch (o) {
		case 'd':
			if (!nd_cli_uint("--deadline", optarg, 0,
					 DEADLINE_MAX_S, &secs))
				return ND_CLI_EXIT_USAGE;
			deadline = true;
			break;
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
	if (argc - optind != 2) {
		fprintf(stderr, "noded node: %s\n", argc - optind < 2 ?
			"give a verb (drain, eligible, rm) and a node name" :
			"one verb and one node name only");
		usage(stderr);
		return ND_CLI_EXIT_USAGE;
	}
	verb = argv[optind];
	name = argv[optind + 1];
	if (!name[0]) {
		fprintf(stderr, "noded node %s: the node name is empty\n",
			verb);
		return ND_CLI_EXIT_USAGE;
	}
	nn.name = dr.name = (char *)name;
	if (!strcmp(verb, "drain")) {
		dr.with_deadline = deadline;
		dr.deadline_ms = secs * 1000;
		req.body_case = NODED__FRAME__BODY_NODE_DRAIN;
		req.node_drain = &dr;
	} else if (!strcmp(verb, "eligible")) {
		req.body_case = NODED__FRAME__BODY_NODE_ELIGIBLE;
		req.node_eligible = &nn;
	} else if (!strcmp(verb, "rm")) {
		req.body_case = NODED__FRAME__BODY_NODE_REMOVE;
		req.node_remove = &nn;
		want = NODED__FRAME__BODY_ACK;
	} else {
		fprintf(stderr, "noded node: unknown verb '%s' (want drain, "
			"eligible or rm)\n", verb);
		return ND_CLI_EXIT_USAGE;
	}
	if ((deadline && req.body_case != NODED__FRAME__BODY_NODE_DRAIN) ||
	    (json && want == NODED__FRAME__BODY_ACK)) {
		fprintf(stderr, "noded node %s: --%s is for %s only\n", verb,
			deadline && req.body_case !=
			NODED__FRAME__BODY_NODE_DRAIN ? "deadline" : "json",
			deadline && req.body_case !=
			NODED__FRAME__BODY_NODE_DRAIN ? "drain" :
			"drain and eligible");
		return ND_CLI_EXIT_USAGE;
	}
	r = nd_cli_request(master, &req, want, verb, &reply);
	if (r)
		return r;
	if (want == NODED__FRAME__BODY_ACK) {
		char *esc = nd_text_escaped(name);

		printf("node %s removed\n", esc ? esc : name);
		free(esc);
	} else if (reply->node_list->n_nodes != 1) {
		fprintf(stderr, "noded: %s: the master answered with %zu "
			"nodes\n", verb, reply->node_list->n_nodes);
		r = ND_CLI_EXIT_FAIL;
	} else if (json) {
		json_t *j = nd_json_node(reply->node_list->nodes[0]);

		if (!j || json_dumpf(j, stdout, JSON_INDENT(2)) ||
		    printf("\n") < 0) {
			fprintf(stderr, "noded: node %s: cannot print it\n",
				verb);
			r = ND_CLI_EXIT_FAIL;
		}
		json_decref(j);
	} else {
		print_node(reply->node_list->nodes[0]);
	}
	nd_frame_free(reply, NULL);
	return r;
}
