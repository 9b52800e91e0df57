/*
 * Encoding of the exec pool's messages on the shard side: ExecRequest out,
 * ExecEvent in (src/exec/exec.h). The helper has its own end in helper.c.
 */
#include <errno.h>

#include "exec/exec.h"

ssize_t nd_exec_encode_request(const Noded__ExecRequest *r, uint8_t *buf,
			       size_t cap)
{
	size_t len = noded__exec_request__get_packed_size(r);

	if (len > cap || len > ND_EXEC_MSG_MAX)
		return -EMSGSIZE;
	return (ssize_t)noded__exec_request__pack(r, buf);
}

/*
 * Besides the protobuf itself, checks what the helper promises: an
 * ExecStarted carries a real pid and exactly the two pipe ends, an
 * ExecExited carries no descriptors.
 */
Noded__ExecEvent *nd_exec_decode_event(const uint8_t *buf, size_t len,
				       int nfds)
{
	Noded__ExecEvent *ev;

	if (len > ND_EXEC_MSG_MAX)
		return NULL;
	ev = noded__exec_event__unpack(NULL, len, buf);
	if (!ev)
		return NULL;
	switch (ev->body_case) {
	case NODED__EXEC_EVENT__BODY_STARTED:
		if (nfds == 2 && ev->started->pid > 0)
			return ev;
		break;
	case NODED__EXEC_EVENT__BODY_EXITED:
		if (nfds == 0)
			return ev;
		break;
	default:
		break;
	}
	noded__exec_event__free_unpacked(ev, NULL);
	return NULL;
}
