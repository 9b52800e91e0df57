/*
 * What a worker says of its machine in ReportStatus (NodeStatus): its
 * labels, split from "KEY=VALUE", and its load and memory. Shared by
 * `noded worker` and the simulated fleet of `noded-bench workers`.
 */
#ifndef ND_NODE_STATUS_H
#define ND_NODE_STATUS_H

#include <stddef.h>

#include "noded/wire.h"

/* The labels as NodeStatus wants them. A zeroed struct is empty. */
struct nd_status_labels {
	Noded__NodeStatus__LabelsEntry **p;     /* NodeStatus.labels */
	size_t n;                               /* NodeStatus.n_labels */
	Noded__NodeStatus__LabelsEntry *v;
	char **kv;                              /* split copies */
};

/*
 * Splits kv[0..n) ("KEY=VALUE" each; copied, may be freed after return)
 * into l. Returns 0, -EINVAL when an entry has no '=' or an empty key, or
 * -ENOMEM; l is to be freed with nd_status_labels_free() in every case.
 */
int nd_status_labels_init(struct nd_status_labels *l, const char *const *kv,
			  size_t n);
void nd_status_labels_free(struct nd_status_labels *l);

/*
 * Sets ns's load averages and memory (total from sysinfo, available from
 * /proc/meminfo, at most the total). Never waits on a disk (procfs), so a
 * shard may call it.
 */
void nd_status_machine(Noded__NodeStatus *ns);

#endif
