/* Frame codec: length prefix plus one protobuf-c encoded noded.Frame. */
#include <stdint.h>

#include "noded/errors.h"
#include "noded/wire.h"

int64_t nd_frame_peek(const uint8_t *buf, size_t len, uint32_t max_frame,
		      size_t *need)
{
	uint32_t n;

	if (len < ND_FRAME_HDR) {
		*need = ND_FRAME_HDR;
		return 0;
	}
	n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
	    (uint32_t)buf[2] << 8 | buf[3];
	if (n == 0)
		return ND_EEMPTYFRAME;
	if (n > max_frame)
		return ND_EFRAMETOOBIG;
	*need = ND_FRAME_HDR + (size_t)n;
	return n;
}

size_t nd_frame_size(const Noded__Frame *f)
{
	return ND_FRAME_HDR + noded__frame__get_packed_size(f);
}

size_t nd_frame_encode(const Noded__Frame *f, uint8_t *out)
{
	size_t n = noded__frame__pack(f, out + ND_FRAME_HDR);

	out[0] = (uint8_t)(n >> 24);
	out[1] = (uint8_t)(n >> 16);
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)n;
	return ND_FRAME_HDR + n;
}

Noded__Frame *nd_frame_decode(const uint8_t *body, size_t len,
			      ProtobufCAllocator *a)
{
	return noded__frame__unpack(a, len, body);
}

void nd_frame_free(Noded__Frame *f, ProtobufCAllocator *a)
{
	if (f)
		noded__frame__free_unpacked(f, a);
}

void nd_frame_error(Noded__Frame *f, Noded__Error *e, uint64_t id,
		    Noded__FrameKind kind, Noded__ErrorCode code,
		    const char *message)
{
	noded__frame__init(f);
	noded__error__init(e);
	e->code = code;
	e->message = (char *)message;
	f->id = id;
	f->kind = kind;
	f->body_case = NODED__FRAME__BODY_ERROR;
	f->error = e;
}

const char *nd_frame_method_name(Noded__Frame__BodyCase c)
{
	switch (c) {
	case NODED__FRAME__BODY_ERROR: return "error";
	case NODED__FRAME__BODY_HELLO: return "hello";
	case NODED__FRAME__BODY_HELLO_REPLY: return "hello_reply";
	case NODED__FRAME__BODY_PING: return "ping";
	case NODED__FRAME__BODY_PONG: return "pong";
	case NODED__FRAME__BODY_REPORT_STATUS: return "report_status";
	case NODED__FRAME__BODY_STATUS_REPLY: return "status_reply";
	case NODED__FRAME__BODY_ASSIGN_TASK: return "assign_task";
	case NODED__FRAME__BODY_ASSIGN_OPEN: return "assign_open";
	case NODED__FRAME__BODY_TASK: return "task";
	case NODED__FRAME__BODY_SUBMIT: return "submit";
	case NODED__FRAME__BODY_SUBMIT_REPLY: return "submit_reply";
	case NODED__FRAME__BODY_GET_TASK: return "get_task";
	case NODED__FRAME__BODY_TASK_RECORD: return "task_record";
	case NODED__FRAME__BODY_LIST_TASKS: return "list_tasks";
	case NODED__FRAME__BODY_TASK_LIST: return "task_list";
	case NODED__FRAME__BODY_WATCH: return "watch";
	case NODED__FRAME__BODY_OUTPUT: return "output";
	case NODED__FRAME__BODY_CANCEL_TASK: return "cancel_task";
	case NODED__FRAME__BODY_LIST_NODES: return "list_nodes";
	case NODED__FRAME__BODY_NODE_LIST: return "node_list";
	case NODED__FRAME__BODY_TASK_UPDATE: return "task_update";
	case NODED__FRAME__BODY_TASK_CANCEL: return "task_cancel";
	case NODED__FRAME__BODY_ACK: return "ack";
	case NODED__FRAME__BODY_AUTH: return "auth";
	case NODED__FRAME__BODY_RUN: return "run";
	case NODED__FRAME__BODY_NODE_DRAIN: return "node_drain";
	case NODED__FRAME__BODY_NODE_ELIGIBLE: return "node_eligible";
	case NODED__FRAME__BODY_NODE_REMOVE: return "node_remove";
	case NODED__FRAME__BODY_RAFT_CHANGE: return "raft_change";
	case NODED__FRAME__BODY_LEADER: return "leader";
	case NODED__FRAME__BODY_LEADER_INFO: return "leader_info";
	case NODED__FRAME__BODY__NOT_SET: return "none";
	default: return "unknown";
	}
}
