/*
 * libFuzzer target: arbitrary bytes from a "server", cut into arbitrary
 * chunks, fed to the client library with calls pending (two pings and an
 * AssignTask stream), then end of file and close. Any crash, sanitizer report
 * or leak is a bug.
 *
 * Input: byte 0 picks the chunk size (1..256), the rest is the stream.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "noded/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_reply(struct nd_client *c, int status, const Noded__Frame *f,
		     bool done, void *arg)
{
	(void)c;
	(void)done;
	if (status == 0 && !f)
		abort(); /* success must come with a frame */
	(*(int *)arg)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Noded__Frame ping = NODED__FRAME__INIT, assign = NODED__FRAME__INIT;
	Noded__PingRequest pr = NODED__PING_REQUEST__INIT;
	Noded__AssignTaskRequest ar = NODED__ASSIGN_TASK_REQUEST__INIT;
	struct nd_client *c;
	size_t chunk, off, n;
	int sv[2], calls = 0;

	if (size < 1 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 0;
	if (nd_client_adopt(&c, sv[0], NULL)) {
		close(sv[1]);
		return 0;
	}
	ping.body_case = NODED__FRAME__BODY_PING;
	ping.ping = &pr;
	ar.node_name = "fuzz";
	assign.body_case = NODED__FRAME__BODY_ASSIGN_TASK;
	assign.assign_task = &ar;
	nd_client_start(c, &ping, on_reply, &calls);
	nd_client_start(c, &assign, on_reply, &calls);
	nd_client_start(c, &ping, on_reply, &calls);
	chunk = 1 + data[0];
	for (off = 1; off < size; off += n) {
		n = size - off < chunk ? size - off : chunk;
		if (nd_client_feed(c, data + off, n) < 0)
			break;
	}
	nd_client_feed(c, NULL, 0);
	nd_client_close(c);
	close(sv[1]);
	return 0;
}
