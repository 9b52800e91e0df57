/*
 * noded dev --masters N (dev_cluster.c): N master processes forming a
 * cluster on loopback, their data in a temporary directory.
 */
#ifndef ND_CLI_DEV_H
#define ND_CLI_DEV_H

#include <stdbool.h>
#include <sys/types.h>

#define ND_DEV_MAX_MASTERS 5

struct nd_dev_cluster {
	unsigned n;                       /* masters, set by the caller */
	char dir[64];                     /* their data */
	int client[ND_DEV_MAX_MASTERS], raft[ND_DEV_MAX_MASTERS];
	int http[ND_DEV_MAX_MASTERS];     /* 0: none */
	pid_t pid[ND_DEV_MAX_MASTERS];
	char list[ND_DEV_MAX_MASTERS * 24]; /* their client addresses,
					   * comma-separated */
};

/* Starts them and waits for a leader with every voter; 0, or -1 after
 * saying why (call nd_dev_cluster_stop either way). */
int nd_dev_cluster_start(struct nd_dev_cluster *dc, bool http);
/* Stops them (SIGTERM, waited for) and removes their data. */
void nd_dev_cluster_stop(struct nd_dev_cluster *dc);

#endif
