/*
 * The process figures of /metrics, under the names every Prometheus
 * client library uses (process_*), and noded_build_info. Read from /proc
 * and getrusage on the scraping shard's thread: a few small reads of
 * procfs, which never block on a disk; counting the open fds walks
 * /proc/self/fd, one entry per connection (about a millisecond for
 * 50,000), which a scrape every few seconds can afford.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api/api.h"
#include "core/version.h"

/* Writes one metric family with one unlabelled sample. */
static void sample(FILE *f, const char *name, const char *type,
		   const char *help, double v)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name,
		type, name, v);
}

/* Open descriptors, less the one that lists them; -1 when unreadable. */
static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;
}

/* The process's start as seconds since the epoch: field 22 of
 * /proc/self/stat (clock ticks since boot) plus the boot time (btime of
 * /proc/stat). 0 when either is unreadable. */
static double start_time(void)
{
	char buf[1024], *p;
	unsigned long long ticks = 0, btime = 0;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/self/stat", "re");
	size_t n;
	int field;

	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the name (field 2) may hold spaces and ')': count from its end */
	p = strrchr(buf, ')');
	for (field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &ticks) != 1)
		return 0;
	f = fopen("/proc/stat", "re");
	if (!f)
		return 0;
	while (fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	if (!btime || hz <= 0)
		return 0;
	return (double)btime + (double)ticks / (double)hz;
}

void nd__metrics_process(FILE *f)
{
	long page = sysconf(_SC_PAGESIZE), fds = open_fds();
	unsigned long long vsz = 0, rss = 0;
	struct rusage ru;
	struct rlimit rl;
	double start = start_time();
	FILE *sm = fopen("/proc/self/statm", "re");

	if (sm) {
		if (fscanf(sm, "%llu %llu", &vsz, &rss) != 2)
			vsz = rss = 0;
		fclose(sm);
	}
	if (!getrusage(RUSAGE_SELF, &ru))
		sample(f, "process_cpu_seconds_total", "counter",
		       "User and system CPU time of the process (all its "
		       "threads), in seconds.",
		       (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
		       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	if (sm && rss)
		sample(f, "process_resident_memory_bytes", "gauge",
		       "Resident memory size in bytes.",
		       (double)rss * (double)page);
	if (sm && vsz)
		sample(f, "process_virtual_memory_bytes", "gauge",
		       "Virtual memory size in bytes.",
		       (double)vsz * (double)page);
	if (fds >= 0)
		sample(f, "process_open_fds", "gauge",
		       "Open file descriptors.", (double)fds);
	if (!getrlimit(RLIMIT_NOFILE, &rl))
		sample(f, "process_max_fds", "gauge",
		       "The soft limit on open file descriptors.",
		       (double)rl.rlim_cur);
	if (start > 0)
		sample(f, "process_start_time_seconds", "gauge",
		       "Start time of the process since the Unix epoch, in "
		       "seconds.", start);
	/* commit: hex digits and "-dirty", nothing to escape */
	fprintf(f, "# HELP noded_build_info The version of noded and the "
		"commit it was built from (\"\" when unknown); always 1.\n"
		"# TYPE noded_build_info gauge\n"
		"noded_build_info{version=\"%s\",commit=\"%s\"} 1\n",
		ND_VERSION, nd_build_commit);
}
