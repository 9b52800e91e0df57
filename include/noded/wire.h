/*
 * noded wire format: a 4-byte big-endian length, then one protobuf-c encoded
 * noded.Frame (proto/noded.proto). Shared by the server and the client.
 */
#ifndef NODED_WIRE_H
#define NODED_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "noded.pb-c.h"

#define ND_PROTOCOL_VERSION 2
#define ND_FRAME_HDR 4
#define ND_MAX_FRAME_DEFAULT (16u << 20)

/*
 * Looks at the start of buf (len bytes) for one frame. Returns the frame's
 * body length (> 0) and leaves *need at ND_FRAME_HDR + body length when
 * the header is complete and valid, whether or not the body has arrived yet
 * (compare *need with len). Returns 0 with *need set to the bytes needed
 * when even the header is incomplete. Returns ND_EEMPTYFRAME for a zero
 * length and ND_EFRAMETOOBIG for one over max_frame: both are decided from
 * the header alone, before anything is allocated.
 */
int64_t nd_frame_peek(const uint8_t *buf, size_t len, uint32_t max_frame,
		      size_t *need);

/* Bytes nd_frame_encode() will write for f: header plus packed body. */
size_t nd_frame_size(const Noded__Frame *f);

/*
 * Writes the header and packed body of f to out, which must hold
 * nd_frame_size(f) bytes. Returns the bytes written.
 */
size_t nd_frame_encode(const Noded__Frame *f, uint8_t *out);

/*
 * Decodes a frame body (without its header) with allocator a (NULL: the
 * protobuf-c default). Returns NULL when the bytes are not a valid Frame.
 * Free with nd_frame_free(f, a) unless a is an arena that is reset instead.
 */
Noded__Frame *nd_frame_decode(const uint8_t *body, size_t len,
			      ProtobufCAllocator *a);
void nd_frame_free(Noded__Frame *f, ProtobufCAllocator *a);

/* Makes *f (initialised here) an Error frame (id, kind) whose body is *e
 * (initialised here) with code and message (not copied). */
void nd_frame_error(Noded__Frame *f, Noded__Error *e, uint64_t id,
		    Noded__FrameKind kind, Noded__ErrorCode code,
		    const char *message);

/* Name of a body case ("ping", "hello", ...), for messages and logs. */
const char *nd_frame_method_name(Noded__Frame__BodyCase c);

#endif
