/*
 * Starting one exec helper from the daemon (src/exec/exec.h).
 */
#include <errno.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include "exec/exec.h"

/*
 * posix_spawn rather than fork: the daemon may already run threads, and
 * glibc's posix_spawn (clone(CLONE_VM | CLONE_VFORK)) reports a failed exec
 * as its return value, which is what libuv's close-on-exec error pipe does
 * by hand. Retried on EINTR, as libuv retries its fork and pipe reads.
 *
 * The helper gets exactly fds 0-2 (ours) and 3 (its end of the socket):
 * dup2 onto 3 clears close-on-exec there, and closefrom(4) drops whatever
 * the caller left without close-on-exec, so nothing of the daemon (client
 * sockets, other helpers' sockets) is held open by a helper. It stays in
 * our process group and session, so a terminal's ^C reaches it too; its
 * signal mask and dispositions are set by the helper itself.
 */
int nd_exec_helper_spawn(const char *exe, int *fd, pid_t *pid)
{
	char *const argv[] = { (char *)exe, "exec-helper", NULL };
	posix_spawn_file_actions_t fa;
	int sv[2], err;
	pid_t child;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	err = posix_spawn_file_actions_init(&fa);
	if (err)
		goto close_sockets;
	err = posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
	if (!err)
		err = posix_spawn_file_actions_addclosefrom_np(&fa, 4);
	if (err)
		goto destroy_actions;
	do
		err = posix_spawn(&child, exe, &fa, NULL, argv, environ);
	while (err == EINTR);
	if (err)
		goto destroy_actions;

	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	*fd = sv[0];
	*pid = child;
	return 0;

destroy_actions:
	posix_spawn_file_actions_destroy(&fa);
close_sockets:
	close(sv[0]);
	close(sv[1]);
	return -err;
}
