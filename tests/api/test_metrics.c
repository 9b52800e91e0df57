/*
 * /metrics' process figures and build info (src/api/metrics_process.c)
 * against a real master, compared with what /proc says of its pid.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

static struct nd_test_daemon d;

static void teardown(void)
{
	nd_test_daemon_stop(&d);
}

TestSuite(metrics, .fini = teardown, .timeout = 60);

static int http_port(void)
{
	int port = nd_test_daemon_http_port(&d);

	cr_assert(port, "%s", nd_test_why);
	return port;
}

/* The value of the sample line that starts with "series " in text. */
static double value(const char *text, const char *series)
{
	char want[256];
	const char *p;

	snprintf(want, sizeof(want), "\n%s ", series);
	p = strstr(text, want);
	cr_assert(p, "no sample '%s' in /metrics", series);
	return strtod(p + strlen(want), NULL);
}

/* Entries of /proc/PID/fd. */
static long count_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	long n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	cr_assert(dir);
	while ((e = readdir(dir)))
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

Test(metrics, process_figures_and_build_info)
{
	static char text[1 << 20];
	const char *args[] = { "--http", "127.0.0.1:0", NULL };
	char url[64], want[256], commit[64] = "", version[128], vers[32];
	const char *curl[] = { "/usr/bin/curl", "-s", url, NULL };
	const char *ver[] = { nd_test_bin(), "version", NULL };
	double now = (double)time(NULL), rss, fds;
	const char *c;

	ND_CHECK(nd_test_daemon_start(&d, args));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", http_port());
	cr_assert_eq(nd_test_run(curl, text, sizeof(text), NULL, 0, 10000), 0);

	cr_expect(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
	cr_expect_geq(value(text, "process_cpu_seconds_total"), 0);
	rss = value(text, "process_resident_memory_bytes");
	cr_expect(rss > 1 << 20 && rss < 4.0 * (1 << 30), "rss %g", rss);
	cr_expect_gt(value(text, "process_virtual_memory_bytes"), rss);
	/* the scrape's own connection and the listing's fd come and go */
	fds = value(text, "process_open_fds");
	cr_expect(fds > 3 && fds < count_fds(d.pid) + 4, "open fds %g, /proc "
		  "lists %ld", fds, count_fds(d.pid));
	cr_expect_geq(value(text, "process_max_fds"), fds);
	cr_expect(value(text, "process_start_time_seconds") > now - 60 &&
		  value(text, "process_start_time_seconds") < now + 2,
		  "start %f, now %f", value(text,
					    "process_start_time_seconds"),
		  now);

	/* the same version and commit as `noded version` says */
	cr_assert_eq(nd_test_run(ver, version, sizeof(version), NULL, 0,
				 10000), 0);
	cr_assert_eq(sscanf(version, "noded %31s", vers), 1, "%s", version);
	if ((c = strstr(version, "(commit ")))
		sscanf(c + 8, "%63[^,)]", commit);
	snprintf(want, sizeof(want), "\nnoded_build_info{version=\"%s\","
		 "commit=\"%s\"} 1\n", vers, commit);
	cr_expect(strstr(text, want), "no '%s' in /metrics (version: %s)",
		  want, version);
	cr_expect(strstr(text, "# TYPE noded_build_info gauge\n"));
}
