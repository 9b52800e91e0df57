/* What a worker says of its machine: see status.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

#include "node/status.h"

int nd_status_labels_init(struct nd_status_labels *l, const char *const *kv,
			  size_t n)
{
	memset(l, 0, sizeof(*l));
	l->v = calloc(n ? n : 1, sizeof(*l->v));
	l->p = calloc(n ? n : 1, sizeof(*l->p));
	l->kv = calloc(n + 1, sizeof(*l->kv));      /* NULL-terminated */
	if (!l->v || !l->p || !l->kv)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		char *eq;

		l->kv[i] = strdup(kv[i]);
		if (!l->kv[i])
			return -ENOMEM;
		eq = strchr(l->kv[i], '=');
		if (!eq || eq == l->kv[i])
			return -EINVAL;
		*eq = '\0';
		noded__node_status__labels_entry__init(&l->v[i]);
		l->v[i].key = l->kv[i];
		l->v[i].value = eq + 1;
		l->p[i] = &l->v[i];
		l->n = i + 1;
	}
	return 0;
}

void nd_status_labels_free(struct nd_status_labels *l)
{
	for (size_t i = 0; l->kv && l->kv[i]; i++)
		free(l->kv[i]);
	free(l->kv);
	free(l->v);
	free(l->p);
	memset(l, 0, sizeof(*l));
}

/* MemAvailable from /proc/meminfo, in bytes (0 when unknown). */
static uint64_t mem_available(void)
{
	char buf[4096];
	unsigned long long kib = 0;
	const char *p;
	size_t n;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strstr(buf, "MemAvailable:");
	if (p)
		sscanf(p + 13, "%llu", &kib);
	return (uint64_t)kib * 1024;
}

void nd_status_machine(Noded__NodeStatus *ns)
{
	struct sysinfo si;
	double load[3] = { 0 };

	getloadavg(load, 3);
	ns->load1 = load[0];
	ns->load5 = load[1];
	ns->load15 = load[2];
	ns->mem_total_bytes = 0;
	if (sysinfo(&si) == 0)
		ns->mem_total_bytes = (uint64_t)si.totalram * si.mem_unit;
	ns->mem_available_bytes = mem_available();
	if (ns->mem_available_bytes > ns->mem_total_bytes)
		ns->mem_available_bytes = ns->mem_total_bytes;
}
