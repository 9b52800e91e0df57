/*
 * Frames a method of the node service returns (struct nd_out, svc.h): any
 * frame, an Error, a stream's end, an Ack. Encoded at once into the
 * requester's buffer.
 */
#include <stdarg.h>
#include <stdio.h>

#include "node/svc.h"

void nd__out_frame(struct nd_out *o, const Noded__Frame *f)
{
	if (nd_buf_reserve(&o->buf, nd_frame_size(f)))
		return;
	o->buf.len += nd_frame_encode(f, o->buf.data + o->buf.len);
}


void nd__out_error(struct nd_out *o, uint64_t id, Noded__FrameKind kind,
		   Noded__ErrorCode code, const char *fmt, ...)
{
	Noded__Frame f;
	Noded__Error e;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	nd_frame_error(&f, &e, id, kind, code, msg);
	nd__out_frame(o, &f);
	o->errors++;
}

void nd__out_end(struct nd_out *o, uint64_t id)
{
	Noded__Frame f = NODED__FRAME__INIT;

	f.id = id;
	f.kind = NODED__FRAME_KIND__STREAM_END;
	nd__out_frame(o, &f);
}

void nd__out_ack(struct nd_out *o, uint64_t id)
{
	Noded__Frame r = NODED__FRAME__INIT;
	Noded__Ack a = NODED__ACK__INIT;

	r.id = id;
	r.kind = NODED__FRAME_KIND__REPLY;
	r.body_case = NODED__FRAME__BODY_ACK;
	r.ack = &a;
	nd__out_frame(o, &r);
}
