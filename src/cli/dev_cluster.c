/*
 * noded dev --masters N (3 or 5): a cluster of N `noded master` processes
 * (this binary again), with their data in a temporary directory removed at
 * the end, and the dev workers of this process following their leader: to
 * try failover by hand (kill -9 one, and watch). The first master
 * bootstraps the cluster, the others join it.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cli/cli.h"
#include "cli/dev.h"
#include "core/log.h"
#include "core/server.h"
#include "noded/client.h"

/* A free port of 127.0.0.1, or 0. */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* `noded master ...` for member i, its stdout to /dev/null (this process
 * prints the addresses), stopped with us. The pid, or -1. */
static pid_t spawn_master(const struct nd_dev_cluster *dc, unsigned i)
{
	char listen[32], raft[32], http[32], dir[300], join[32];
	const char *argv[20] = { "noded", "master", "--listen", listen,
				 "--data-dir", dir, "--raft-listen", raft };
	unsigned n = 8;
	pid_t pid;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", dc->client[i]);
	snprintf(raft, sizeof(raft), "127.0.0.1:%d", dc->raft[i]);
	snprintf(dir, sizeof(dir), "%s/master-%u", dc->dir, i + 1);
	snprintf(join, sizeof(join), "127.0.0.1:%d", dc->client[0]);
	if (dc->http[i]) {
		snprintf(http, sizeof(http), "127.0.0.1:%d", dc->http[i]);
		argv[n++] = "--http";
		argv[n++] = http;
	}
	if (i) {
		argv[n++] = "--join";
		argv[n++] = join;
	}
	argv[n] = NULL;
	pid = fork();
	if (pid)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (!freopen("/dev/null", "w", stdout))
		_exit(127);
	execv("/proc/self/exe", (char *const *)argv);
	_exit(127);
}

/* Waits (up to 20 s) until a master of list leads with n voters. */
static bool wait_leader(const char *list, unsigned n)
{
	Noded__Frame f = NODED__FRAME__INIT, *reply = NULL;
	Noded__LeaderRequest lr = NODED__LEADER_REQUEST__INIT;
	char one[32];

	f.body_case = NODED__FRAME__BODY_LEADER;
	f.leader = &lr;
	snprintf(one, sizeof(one), "%.*s", (int)strcspn(list, ","), list);
	for (int t = 0; t < 200; t++) {
		struct nd_client *c;
		unsigned voters = 0;
		bool led = false;

		usleep(100 * 1000);
		if (nd_client_connect(&c, one, NULL))
			continue;
		if (!nd_client_call(c, &f, &reply, 2000) &&
		    reply->body_case == NODED__FRAME__BODY_LEADER_INFO) {
			led = reply->leader_info->is_leader;
			for (size_t k = 0; k < reply->leader_info->n_members; k++)
				voters += reply->leader_info->members[k]->voter;
		}
		nd_frame_free(reply, NULL);
		reply = NULL;
		nd_client_close(c);
		if (led && voters >= n)
			return true;
	}
	return false;
}

int nd_dev_cluster_start(struct nd_dev_cluster *dc, bool http)
{
	char *p;

	snprintf(dc->dir, sizeof(dc->dir), "/tmp/noded-dev-XXXXXX");
	if (!mkdtemp(dc->dir)) {
		fprintf(stderr, "noded dev: cannot make a temporary directory: "
			"%s\n", strerror(errno));
		return -1;
	}
	p = dc->list;
	for (unsigned i = 0; i < dc->n; i++) {
		dc->client[i] = free_port();
		dc->raft[i] = free_port();
		dc->http[i] = http ? free_port() : 0;
		if (!dc->client[i] || !dc->raft[i] || (http && !dc->http[i])) {
			fprintf(stderr, "noded dev: no free port\n");
			return -1;
		}
		p += sprintf(p, "%s127.0.0.1:%d", i ? "," : "", dc->client[i]);
	}
	for (unsigned i = 0; i < dc->n; i++) {
		dc->pid[i] = spawn_master(dc, i);
		if (dc->pid[i] < 0) {
			fprintf(stderr, "noded dev: cannot start master %u: "
				"%s\n", i + 1, strerror(errno));
			return -1;
		}
		if (!i && !wait_leader(dc->list, 1))
			break; /* said below */
	}
	if (!wait_leader(dc->list, dc->n)) {
		fprintf(stderr, "noded dev: the %u masters formed no cluster "
			"within 20 s (see their log above)\n", dc->n);
		return -1;
	}
	return 0;
}

void nd_dev_cluster_stop(struct nd_dev_cluster *dc)
{
	char cmd[300];

	for (unsigned i = 0; i < dc->n; i++)
		if (dc->pid[i] > 0)
			kill(dc->pid[i], SIGTERM);
	for (unsigned i = 0; i < dc->n; i++)
		if (dc->pid[i] > 0)
			waitpid(dc->pid[i], NULL, 0);
	if (dc->dir[0] && snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dc->dir) <
			  (int)sizeof(cmd) && system(cmd))
		fprintf(stderr, "noded dev: could not remove %s\n", dc->dir);
}
