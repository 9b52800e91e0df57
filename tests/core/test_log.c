/*
 * Structured logs: the line format (logfmt quoting, JSON validity, cut
 * lines) through nd_log_kv with stderr on a memfd, then real daemons:
 * noded dev with --log-format json must write only JSON lines with ts,
 * level and event, log task ends and node joins, and nothing per request at
 * the default level; --log-level filters; bad values are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "core/log.h"
#include "harness.h"

/* ---- the line format, in this process ---- */

static int saved_err = -1, mem_fd = -1;

static void capture(void)
{
	mem_fd = memfd_create("log", MFD_CLOEXEC);
	cr_assert(mem_fd >= 0);
	fflush(stderr);
	saved_err = dup(STDERR_FILENO);
	cr_assert(saved_err >= 0);
	cr_assert(dup2(mem_fd, STDERR_FILENO) == STDERR_FILENO);
}

/* What was written since capture(), NUL-terminated; stderr restored. */
static const char *captured(void)
{
	static char buf[16384];
	ssize_t n;

	dup2(saved_err, STDERR_FILENO);
	close(saved_err);
	n = pread(mem_fd, buf, sizeof(buf) - 1, 0);
	close(mem_fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void restore_defaults(void)
{
	nd_log_setup(ND_LOG_LOGFMT, ND_LOG_INFO);
}

TestSuite(logline, .fini = restore_defaults);

Test(logline, logfmt_quotes_what_needs_it)
{
	const char *out;

	nd_log_setup(ND_LOG_LOGFMT, ND_LOG_INFO);
	capture();
	ND_LOG(ND_LOG_INFO, "task.ended", ND_S("node", "n1"),
	       ND_S("reason", "exited with \"status\" 3\nsee\\here"),
	       ND_S("empty", ""), ND_S("null", NULL), ND_S("eq", "a=b"),
	       ND_U("u", 18446744073709551615ull), ND_I("i", -7),
	       ND_B("b", 1), ND_DUR("took_s", 1500000), ND_S("ctl", "\x01"));
	out = captured();
	cr_assert(!strncmp(out, "ts=", 3), "%s", out);
	cr_assert(strstr(out, "Z level=info event=task.ended node=n1 "
			 "reason=\"exited with \\\"status\\\" 3\\nsee\\\\here\" "
			 "empty=\"\" null=\"\" eq=\"a=b\" "
			 "u=18446744073709551615 i=-7 b=true took_s=0.001500 "
			 "ctl=\"\\u0001\"\n"), "%s", out);
	cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1,
		     "one line: %s", out);
}

Test(logline, levels_filter)
{
	const char *out;

	nd_log_setup(ND_LOG_LOGFMT, ND_LOG_WARN);
	capture();
	ND_LOG(ND_LOG_DEBUG, "a.debug");
	ND_LOG(ND_LOG_INFO, "a.info");
	ND_LOG(ND_LOG_WARN, "a.warn");
	ND_LOG(ND_LOG_ERROR, "a.error");
	out = captured();
	cr_assert(!strstr(out, "a.debug") && !strstr(out, "a.info"), "%s", out);
	cr_assert(strstr(out, "level=warn event=a.warn\n"), "%s", out);
	cr_assert(strstr(out, "level=error event=a.error\n"), "%s", out);

	nd_log_setup(ND_LOG_LOGFMT, ND_LOG_OFF);
	capture();
	ND_LOG(ND_LOG_ERROR, "a.error");
	cr_assert_str_empty(captured());
}

Test(logline, json_lines_parse)
{
	char big[6000];
	const char *out, *p;
	json_t *j;
	json_error_t e;
	int lines = 0;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	nd_log_setup(ND_LOG_JSON, ND_LOG_DEBUG);
	capture();
	ND_LOG(ND_LOG_DEBUG, "x.y", ND_S("s", "quote\" nl\n tab\t"),
	       ND_U("u", 5), ND_I("i", -5), ND_B("b", 0), ND_DUR("d", 2e9));
	ND_LOG(ND_LOG_INFO, "x.big", ND_S("s", big));
	ND_LOG(ND_LOG_WARN, "x.utf8", ND_S("s", "\xff\xfe not utf-8"));
	out = captured();
	for (p = out; *p; lines++) {
		const char *nl = strchr(p, '\n');

		cr_assert(nl, "unterminated line: %s", p);
		j = json_loadb(p, (size_t)(nl - p), 0, &e);
		cr_assert(j, "not JSON (%s): %.*s", e.text, (int)(nl - p), p);
		cr_assert(json_is_string(json_object_get(j, "ts")));
		cr_assert(json_is_string(json_object_get(j, "level")));
		cr_assert(json_is_string(json_object_get(j, "event")));
		if (lines == 0) {
			cr_assert_str_eq(json_string_value(json_object_get(j, "s")),
					 "quote\" nl\n tab\t");
			cr_assert_eq(json_integer_value(json_object_get(j, "u")), 5);
			cr_assert_eq(json_integer_value(json_object_get(j, "i")), -5);
			cr_assert(json_is_false(json_object_get(j, "b")));
			cr_assert_float_eq(json_real_value(json_object_get(j, "d")),
					   2.0, 1e-9);
		} else if (lines == 1) {
			cr_assert_eq(strlen(json_string_value(
					     json_object_get(j, "s"))),
				     sizeof(big) - 1, "a long line is whole");
		} else {
			cr_assert_str_eq(json_string_value(json_object_get(j,
								"level")),
					 "warn");
		}
		json_decref(j);
		p = nl + 1;
	}
	cr_assert_eq(lines, 3, "%s", out);
}

Test(logline, logfmt_long_line_is_cut_whole)
{
	char big[6000];
	const char *out;

	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	nd_log_setup(ND_LOG_LOGFMT, ND_LOG_INFO);
	capture();
	ND_LOG(ND_LOG_INFO, "x.big", ND_S("first", "kept"), ND_S("big", big),
	       ND_S("after", "dropped"));
	out = captured();
	cr_assert(strstr(out, " first=kept truncated=true\n"), "%.200s", out);
	cr_assert(!strstr(out, "big=") && !strstr(out, "after="));
}

Test(logline, parse_names)
{
	enum nd_log_level l;
	enum nd_log_format f;

	cr_assert(nd_log_level_parse("DEBUG", &l) && l == ND_LOG_DEBUG);
	cr_assert(nd_log_level_parse("warning", &l) && l == ND_LOG_WARN);
	cr_assert(nd_log_level_parse("off", &l) && l == ND_LOG_OFF);
	cr_assert(!nd_log_level_parse("loud", &l));
	cr_assert(!nd_log_level_parse("", &l));
	cr_assert(nd_log_format_parse("json", &f) && f == ND_LOG_JSON);
	cr_assert(nd_log_format_parse("logfmt", &f) && f == ND_LOG_LOGFMT);
	cr_assert(!nd_log_format_parse("xml", &f));
}

/* ---- real daemons ---- */

static struct nd_test_daemon dev;
static int dev_err = -1;

static void dev_fini(void)
{
	nd_test_daemon_stop(&dev);
	if (dev_err >= 0)
		close(dev_err);
	dev_err = -1;
}

TestSuite(logs, .fini = dev_fini);

/* Starts noded dev (2 workers, 1 slot) with extra options; its stderr goes
 * to a memfd read by dev_log(). */
static void dev_start(const char *a1, const char *a2, const char *a3,
		      const char *a4)
{
	const char *argv[] = { nd_test_bin(), "dev", "--listen", "127.0.0.1:0",
			       "--http", "none", "--slots", "1", a1, a2, a3,
			       a4, NULL };

	dev_err = memfd_create("dev-stderr", MFD_CLOEXEC);
	cr_assert(dev_err >= 0);
	cr_assert_eq(nd_test_daemon_start_err(&dev, argv, dev_err), 0, "%s",
		     nd_test_why);
}

static const char *dev_log(void)
{
	static char buf[1 << 18];
	ssize_t n = pread(dev_err, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static unsigned count_lines(const char *s)
{
	unsigned n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static int run_cli(const char *const argv[], char *out, size_t size)
{
	char err[4096];

	return nd_test_run(argv, out, size, err, sizeof(err),
			   ND_TEST_TIMEOUT_MS);
}

/* Waits until the log has a line containing both needles. */
static bool wait_for(const char *a, const char *b)
{
	int64_t deadline = nd_test_now_ms() + ND_TEST_TIMEOUT_MS;

	while (nd_test_now_ms() < deadline) {
		const char *log = dev_log(), *p = log;

		while ((p = strstr(p, a))) {
			const char *bol = p, *eol = strchr(p, '\n');

			while (bol > log && bol[-1] != '\n')
				bol--;
			if (eol && memmem(bol, (size_t)(eol - bol), b,
					  strlen(b)))
				return true;
			p++;
		}
		nd_test_sleep_ms(20);
	}
	return false;
}

Test(logs, json_daemon_lines)
{
	char master[32], out[4096];
	const char *run_ok[] = { nd_test_bin(), "run", "--master", master,
				 "--node", "dev-1", "--", "true", NULL };
	const char *run_bad[] = { nd_test_bin(), "run", "--master", master,
				  "--", "sh", "-c", "exit 3", NULL };
	const char *log, *p;
	json_error_t e;
	unsigned n = 0;

	dev_start("--log-format", "json", NULL, NULL);
	snprintf(master, sizeof(master), "127.0.0.1:%d", dev.port);
	cr_assert(wait_for("\"node.joined\"", "\"dev-2\""), "%s", dev_log());
	cr_assert_eq(run_cli(run_ok, out, sizeof(out)), 0);
	cr_assert_eq(run_cli(run_bad, out, sizeof(out)), 3);
	cr_assert(wait_for("\"task.ended\"", "\"exit_code\":3"), "%s",
		  dev_log());
	STOP_OK(&dev);
	log = dev_log();
	for (p = log; *p; n++) {
		const char *nl = strchr(p, '\n');
		json_t *j;

		cr_assert(nl, "unterminated line: %s", p);
		j = json_loadb(p, (size_t)(nl - p), 0, &e);
		cr_assert(j, "stderr line not JSON (%s): %.*s", e.text,
			  (int)(nl - p), p);
		cr_assert(json_is_string(json_object_get(j, "ts")) &&
				  json_is_string(json_object_get(j, "level")) &&
				  json_is_string(json_object_get(j, "event")),
			  "%.*s", (int)(nl - p), p);
		json_decref(j);
		p = nl + 1;
	}
	cr_assert_gt(n, 5);
	/* (task ids start from the clock: any number) */
	cr_assert(strstr(log, "\"event\":\"task.ended\",\"task\":") &&
			  strstr(log, ",\"job\":0,\"node\":\"dev-1\","
				 "\"state\":\"SUCCEEDED\""),
		  "%s", log);
	cr_assert(strstr(log, "\"state\":\"FAILED\",\"exit_code\":3"), "%s",
		  log);
	cr_assert(strstr(log, "\"event\":\"server.stopping\""), "%s", log);
	cr_assert(strstr(log, "\"event\":\"node.disconnected\""), "%s", log);
}

Test(logs, nothing_per_request_at_info)
{
	char master[32], out[4096];
	const char *nodes[] = { nd_test_bin(), "nodes", "--master", master,
				NULL };
	const char *tasks[] = { nd_test_bin(), "tasks", "--master", master,
				NULL };
	unsigned before, after;

	dev_start(NULL, NULL, NULL, NULL);
	snprintf(master, sizeof(master), "127.0.0.1:%d", dev.port);
	cr_assert(wait_for("event=node.joined", "node=dev-2"), "%s",
		  dev_log());
	nd_test_sleep_ms(100);
	before = count_lines(dev_log());
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(run_cli(nodes, out, sizeof(out)), 0);
		cr_assert_eq(run_cli(tasks, out, sizeof(out)), 0);
	}
	after = count_lines(dev_log());
	cr_assert_eq(after, before, "40 requests logged %u lines:\n%s",
		     after - before, dev_log());
}

Test(logs, debug_level_logs_requests_and_warn_hides_info)
{
	char master[32], out[4096];
	const char *run_ok[] = { nd_test_bin(), "run", "--master", master,
				 "--", "true", NULL };

	dev_start("--log-level", "debug", NULL, NULL);
	snprintf(master, sizeof(master), "127.0.0.1:%d", dev.port);
	cr_assert_eq(run_cli(run_ok, out, sizeof(out)), 0);
	cr_assert(wait_for("level=debug event=task.submitted", "task="), "%s",
		  dev_log());
	cr_assert(wait_for("level=debug event=task.assigned", "task="), "%s",
		  dev_log());
	cr_assert(wait_for("level=info event=task.ended", "task="), "%s",
		  dev_log());
	STOP_OK(&dev);
	close(dev_err);

	dev_start("--log-level", "warn", NULL, NULL);
	snprintf(master, sizeof(master), "127.0.0.1:%d", dev.port);
	cr_assert_eq(run_cli(run_ok, out, sizeof(out)), 0);
	STOP_OK(&dev);
	cr_assert(!strstr(dev_log(), "level=info") &&
			  !strstr(dev_log(), "level=debug"),
		  "%s", dev_log());
}

Test(logs, bad_options_refused)
{
	char err[1024];
	const char *bad_format[] = { nd_test_bin(), "master", "--log-format",
				     "xml", NULL };
	const char *bad_level[] = { nd_test_bin(), "worker", "--log-level",
				    "loud", NULL };
	const char *bad_dev[] = { nd_test_bin(), "dev", "--log-level", "",
				  NULL };

	cr_assert_eq(nd_test_run(bad_format, NULL, 0, err, sizeof(err),
				 ND_TEST_TIMEOUT_MS), 2);
	cr_assert(strstr(err, "--log-format wants logfmt or json, not 'xml'"),
		  "%s", err);
	cr_assert_eq(nd_test_run(bad_level, NULL, 0, err, sizeof(err),
				 ND_TEST_TIMEOUT_MS), 2);
	cr_assert(strstr(err, "--log-level wants debug, info, warn, error or "
			 "off, not 'loud'"), "%s", err);
	cr_assert_eq(nd_test_run(bad_dev, NULL, 0, err, sizeof(err),
				 ND_TEST_TIMEOUT_MS), 2);
}
