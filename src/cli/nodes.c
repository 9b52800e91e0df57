/* noded nodes: the master's node registry, as a table or JSON. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "core/time.h"
#include "noded/client.h"
#include "wire/text.h"

/* The DRAIN column: who drains n ("-": nobody), and an operator's
 * deadline: "operator 42s" (left), "operator stop" (passed). */
static void drain_text(const Noded__NodeInfo *n, uint64_t now_ms, char *buf,
		       size_t len)
{
	size_t off = 0;

	if (!n->drain_operator && !n->drain_worker) {
		snprintf(buf, len, "-");
		return;
	}
	if (n->drain_operator) {
		off = (size_t)snprintf(buf, len, "operator");
		if (n->drain_deadline_unix_ms > now_ms)
			off += (size_t)snprintf(buf + off, len - off, " %llus",
				(unsigned long long)((n->drain_deadline_unix_ms -
						      now_ms + 999) / 1000));
		else if (n->drain_deadline_unix_ms)
			off += (size_t)snprintf(buf + off, len - off, " stop");
	}
	if (n->drain_worker && off < len)
		snprintf(buf + off, len - off, "%sworker", off ? "+" : "");
}

static void print_table(const Noded__NodeList *nl)
{
	uint64_t now_ms = nd_unix_ms();

	printf("%-20s %-21s %-8s %6s %11s %7s %9s %-16s %s\n", "NAME",
	       "ADDRESS", "STATE", "LOAD", "FREE/SLOTS", "RUNNING", "HEARTBEAT",
	       "DRAIN", "LABELS");
	for (size_t i = 0; i < nl->n_nodes; i++) {
		const Noded__NodeInfo *n = nl->nodes[i];
		char slots[32], ago[32], drain[48];

		snprintf(slots, sizeof(slots), "%u/%u", n->slots_free,
			 n->slots_total);
		if (n->last_heartbeat_unix_ms && now_ms >= n->last_heartbeat_unix_ms)
			snprintf(ago, sizeof(ago), "%.1fs ago",
				 (double)(now_ms - n->last_heartbeat_unix_ms) /
					 1000);
		else
			snprintf(ago, sizeof(ago), "never");
		char *name = nd_text_escaped(n->name);

		drain_text(n, now_ms, drain, sizeof(drain));
		printf("%-20s %-21s %-8s %6.2f %11s %7u %9s %-16s ",
		       name ? name : "?", n->address,
		       n->draining && n->state == NODED__NODE_STATE__NODE_ALIVE ?
			       "DRAINING" : nd_node_state_name(n->state),
		       n->load1, slots,
		       n->running_tasks, ago, drain);
		free(name);
		for (size_t j = 0; j < n->n_labels; j++) {
			fputs(j ? "," : "", stdout);
			nd_text_fput(stdout, n->labels[j]->key);
			fputc('=', stdout);
			nd_text_fput(stdout, n->labels[j]->value);
		}
		printf("\n");
	}
}

int nd_cli_nodes(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "master", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "token-file", required_argument, NULL, 'T' },
		ND_CLI_TLS_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *master = ND_CLI_MASTER;
	Noded__Frame req = NODED__FRAME__INIT, *reply = NULL;
	Noded__NodeListRequest lr = NODED__NODE_LIST_REQUEST__INIT;
	struct nd_client *c;
	const char *seen[sizeof(opts) / sizeof(opts[0])] = { 0 };
	bool json = false;
	int o, r, li = nd_cli_config("nodes", "h", opts, &argc, &argv);

	if (li >= 0)
		return li;
	optind = 1;
	while ((li = -1, o = nd_cli_getopt(argc, argv, "h", opts, &li)) != -1) {
		if (!nd_cli_once("nodes", opts, seen, li, optarg))
			return ND_CLI_EXIT_USAGE;
		if (nd_cli_conn_opt(o, optarg, &master))
			continue;
		switch (o) {
		case 'j':
			json = true;
			break;
		case 'h':
			printf("usage: noded nodes [--master HOST:PORT] [--json] "
			       "[--token-file FILE] "
		"[--tls-cert FILE --tls-key FILE --tls-ca FILE] [--config FILE]\n");
			return ND_CLI_EXIT_OK;
		default:
			fprintf(stderr, "usage: noded nodes [--master HOST:PORT] "
				"[--json]\n");
			return ND_CLI_EXIT_USAGE;
		}
	}
	c = nd_cli_connect(master);
	if (!c)
		return ND_CLI_EXIT_FAIL;
	req.body_case = NODED__FRAME__BODY_LIST_NODES;
	req.list_nodes = &lr;
	r = nd_client_call(c, &req, &reply, 10000);
	if (r || reply->body_case != NODED__FRAME__BODY_NODE_LIST) {
		fprintf(stderr, "noded: list nodes: %s\n",
			r == ND_EREMOTE && reply && reply->error ?
				reply->error->message : nd_strerror(r ? r : ND_EPROTO));
		nd_frame_free(reply, NULL);
		nd_client_close(c);
		return 1;
	}
	if (json) {
		json_t *arr = json_array();

		for (size_t i = 0; arr && i < reply->node_list->n_nodes; i++)
			if (json_array_append_new(arr, nd_json_node(
					reply->node_list->nodes[i]))) {
				json_decref(arr);
				arr = NULL;
			}
		if (!arr || json_dumpf(arr, stdout, JSON_INDENT(2)) ||
		    printf("\n") < 0) {
			fprintf(stderr, "noded: nodes: %s\n", arr ?
				"cannot write the list" : "out of memory");
			r = 1;
		}
		json_decref(arr);
	} else {
		print_table(reply->node_list);
	}
	nd_frame_free(reply, NULL);
	nd_client_close(c);
	return r;
}
