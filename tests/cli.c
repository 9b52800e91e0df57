/* Running the noded CLI from the tests: see cli.h. */
#include <inttypes.h>
#include <stdio.h>

#include "cli.h"

int nd_test_cli_run(struct nd_test_cli *r, const char *master, int timeout_ms,
		    const char *const args[])
{
	const char *argv[64];
	size_t n = 0, len = 0;
	int64_t t0;

	argv[n++] = nd_test_bin();
	argv[n++] = args[0];
	argv[n++] = "--master";
	argv[n++] = master;
	for (size_t i = 1; args[i]; i++) {
		cr_assert(n + 1 < sizeof(argv) / sizeof(argv[0]));
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	r->cmd[0] = '\0';
	for (size_t i = 1; i < n && len < sizeof(r->cmd); i++)
		len += (size_t)snprintf(r->cmd + len, sizeof(r->cmd) - len,
					"%s%s", i > 1 ? " " : "noded ",
					argv[i]);
	t0 = nd_test_now_ms();
	r->st = nd_test_run_counted(argv, r->out, sizeof(r->out),
				    &r->out_bytes, r->err, sizeof(r->err),
				    timeout_ms);
	r->ms = nd_test_now_ms() - t0;
	cr_assert(r->st >= 0, "`%s` did not complete within %d ms (%s); "
		  "stdout so far: %.300s; stderr: %.1000s", r->cmd, timeout_ms,
		  nd_test_why, r->out, r->err);
	return r->st;
}

json_t *nd_test_cli_json(const char *master, const char *const args[])
{
	static struct nd_test_cli j;
	json_error_t je;
	json_t *v;

	nd_test_cli_run(&j, master, ND_TEST_CLI_MS, args);
	EXPECT_STATUS(&j, 0);
	v = json_loads(j.out, 0, &je);
	cr_assert(v, "`%s` printed no JSON (%s): %.500s", j.cmd, je.text,
		  j.out);
	return v;
}

const char *nd_test_task_state(struct nd_test_cli *r, const char *master,
			       uint64_t id, char *buf, size_t len)
{
	char ids[32];
	json_t *t;

	snprintf(ids, sizeof(ids), "%" PRIu64, id);
	nd_test_cli_run(r, master, ND_TEST_CLI_MS,
			(const char *const[]){ "task", ids, "--json", NULL });
	if (r->st) {
		snprintf(buf, len, "(none: %.200s)", r->err);
		return buf;
	}
	t = json_loads(r->out, 0, NULL);
	snprintf(buf, len, "%s", t ? json_string_value(json_object_get(
						   t, "state")) : "?");
	json_decref(t);
	return buf;
}

int nd_test_raft_leader(struct nd_test_cli *r, const char *masters,
			const struct nd_test_daemon *m, const int *client_port,
			int n, int voters, int ms)
{
	int64_t deadline = nd_test_now_ms() + ms;

	for (;;) {
		json_t *arr, *p;
		size_t k;
		int lead = -1, nvoters = 0;

		nd_test_cli_run(r, masters, ND_TEST_CLI_MS,
				(const char *const[]){ "operator", "raft",
						       "list-peers", "--json",
						       NULL });
		arr = r->st ? NULL : json_loads(r->out, 0, NULL);
		json_array_foreach(arr, k, p) {
			const char *client = json_string_value(
				json_object_get(p, "client_address"));
			const char *colon = client ? strrchr(client, ':') : NULL;

			nvoters += json_is_true(json_object_get(p, "voter"));
			if (!colon || strcmp(json_string_value(json_object_get(
					 p, "state")) ?: "", "leader"))
				continue;
			for (int i = 0; i < n; i++)
				if (m[i].pid && atoi(colon + 1) == client_port[i])
					lead = i;
		}
		json_decref(arr);
		if (lead >= 0 && nvoters >= voters)
			return lead;
		if (nd_test_now_ms() >= deadline)
			return -1;
		nd_test_sleep_ms(100);
	}
}
