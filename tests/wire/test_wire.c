/*
 * Unit tests for src/wire: frame peek (length prefix checks), encode/decode
 * round trips of every message, garbage rejection, the error table and the
 * per-shard arena allocator. No daemon involved.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "noded/errors.h"
#include "noded/wire.h"
#include "wire/arena.h"

static void put_len(uint8_t *b, uint32_t n)
{
	b[0] = (uint8_t)(n >> 24);
	b[1] = (uint8_t)(n >> 16);
	b[2] = (uint8_t)(n >> 8);
	b[3] = (uint8_t)n;
}

/* Encodes f into a fresh buffer, checks the header, returns the buffer. */
static uint8_t *encode(const Noded__Frame *f, size_t *len)
{
	size_t size = nd_frame_size(f), need = 0;
	uint8_t *buf = malloc(size);

	cr_assert_not_null(buf);
	cr_assert_eq(nd_frame_encode(f, buf), size);
	cr_assert_eq(nd_frame_peek(buf, size, ND_MAX_FRAME_DEFAULT, &need),
		     (int64_t)(size - ND_FRAME_HDR));
	cr_assert_eq(need, size);
	*len = size;
	return buf;
}

/* Encodes f, decodes it back with the default allocator. */
static Noded__Frame *round_trip(const Noded__Frame *f)
{
	size_t len;
	uint8_t *buf = encode(f, &len);
	Noded__Frame *g = nd_frame_decode(buf + ND_FRAME_HDR,
					  len - ND_FRAME_HDR, NULL);

	free(buf);
	cr_assert_not_null(g, "decode of an encoded frame failed");
	cr_assert_eq(g->id, f->id);
	cr_assert_eq(g->kind, f->kind);
	cr_assert_eq(g->body_case, f->body_case);
	return g;
}

/* ---- peek ---- */

Test(frame_peek, partial_header_asks_for_header)
{
	uint8_t b[4] = { 0, 0, 0, 5 };
	size_t need;

	for (size_t len = 0; len < ND_FRAME_HDR; len++) {
		need = 12345;
		cr_assert_eq(nd_frame_peek(b, len, 100, &need), 0,
			     "len %zu", len);
		cr_assert_eq(need, ND_FRAME_HDR, "len %zu", len);
	}
}

Test(frame_peek, zero_length_is_an_error)
{
	uint8_t b[8] = { 0 };
	size_t need = 0;

	cr_assert_eq(nd_frame_peek(b, 4, 100, &need), ND_EEMPTYFRAME);
	cr_assert_eq(nd_frame_peek(b, 8, 100, &need), ND_EEMPTYFRAME);
}

Test(frame_peek, over_max_decided_from_header_alone)
{
	uint8_t b[4];
	size_t need = 0;

	put_len(b, 101);
	cr_assert_eq(nd_frame_peek(b, 4, 100, &need), ND_EFRAMETOOBIG);
	put_len(b, 0xffffffffu);
	cr_assert_eq(nd_frame_peek(b, 4, ND_MAX_FRAME_DEFAULT, &need),
		     ND_EFRAMETOOBIG);
	put_len(b, ND_MAX_FRAME_DEFAULT + 1);
	cr_assert_eq(nd_frame_peek(b, 4, ND_MAX_FRAME_DEFAULT, &need),
		     ND_EFRAMETOOBIG);
}

Test(frame_peek, exact_max_is_accepted)
{
	uint8_t b[4];
	size_t need = 0;

	put_len(b, 100);
	cr_assert_eq(nd_frame_peek(b, 4, 100, &need), 100);
	cr_assert_eq(need, 104);
	put_len(b, ND_MAX_FRAME_DEFAULT);
	cr_assert_eq(nd_frame_peek(b, 4, ND_MAX_FRAME_DEFAULT, &need),
		     ND_MAX_FRAME_DEFAULT);
	cr_assert_eq(need, ND_FRAME_HDR + (size_t)ND_MAX_FRAME_DEFAULT);
}

Test(frame_peek, partial_and_whole_body)
{
	uint8_t b[16] = { 0 };
	size_t need = 0;

	put_len(b, 10);
	/* Body incomplete: length known, need says how much is missing. */
	cr_assert_eq(nd_frame_peek(b, 7, 100, &need), 10);
	cr_assert_eq(need, 14);
	/* Body complete, with bytes of the next frame behind it. */
	cr_assert_eq(nd_frame_peek(b, 16, 100, &need), 10);
	cr_assert_eq(need, 14);
	/* One-byte body. */
	put_len(b, 1);
	cr_assert_eq(nd_frame_peek(b, 5, 1, &need), 1);
	cr_assert_eq(need, 5);
}

/* ---- encode / decode ---- */

Test(frame_codec, header_is_big_endian_body_length)
{
	Noded__PingRequest p = NODED__PING_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT;
	uint8_t payload[300];
	uint8_t *buf;
	size_t len;

	memset(payload, 0xab, sizeof(payload));
	p.payload.data = payload;
	p.payload.len = sizeof(payload);
	f.id = 7;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_PING;
	f.ping = &p;
	buf = encode(&f, &len);
	cr_assert_gt(len, 300);
	cr_assert_eq(((size_t)buf[0] << 24 | (size_t)buf[1] << 16 |
		      (size_t)buf[2] << 8 | buf[3]), len - ND_FRAME_HDR);
	cr_assert_eq(noded__frame__get_packed_size(&f), len - ND_FRAME_HDR);
	free(buf);
}

Test(frame_codec, error)
{
	Noded__Error e = NODED__ERROR__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *g;

	e.code = NODED__ERROR_CODE__FRAME_TOO_LARGE;
	e.message = "too large";
	f.kind = NODED__FRAME_KIND__REPLY;
	f.body_case = NODED__FRAME__BODY_ERROR;
	f.error = &e;
	g = round_trip(&f);
	cr_assert_eq(g->error->code, NODED__ERROR_CODE__FRAME_TOO_LARGE);
	cr_assert_str_eq(g->error->message, "too large");
	nd_frame_free(g, NULL);
}

Test(frame_codec, hello_and_hello_reply)
{
	Noded__HelloRequest h = NODED__HELLO_REQUEST__INIT;
	Noded__HelloReply hr = NODED__HELLO_REPLY__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *g;

	h.protocol_version = ND_PROTOCOL_VERSION;
	h.node_name = "node-a";
	h.role = NODED__ROLE__ROLE_WORKER;
	h.software = "noded 0.1";
	f.id = 1;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_HELLO;
	f.hello = &h;
	g = round_trip(&f);
	cr_assert_eq(g->hello->protocol_version, ND_PROTOCOL_VERSION);
	cr_assert_str_eq(g->hello->node_name, "node-a");
	cr_assert_eq(g->hello->role, NODED__ROLE__ROLE_WORKER);
	cr_assert_str_eq(g->hello->software, "noded 0.1");
	nd_frame_free(g, NULL);

	hr.protocol_version = 1;
	hr.node_name = "master-1";
	hr.role = NODED__ROLE__ROLE_MASTER;
	hr.max_frame = 1u << 20;
	hr.heartbeat_interval_ms = 1500;
	noded__frame__init(&f);
	f.id = 1;
	f.kind = NODED__FRAME_KIND__REPLY;
	f.body_case = NODED__FRAME__BODY_HELLO_REPLY;
	f.hello_reply = &hr;
	g = round_trip(&f);
	cr_assert_str_eq(g->hello_reply->node_name, "master-1");
	cr_assert_eq(g->hello_reply->role, NODED__ROLE__ROLE_MASTER);
	cr_assert_eq(g->hello_reply->max_frame, 1u << 20);
	cr_assert_eq(g->hello_reply->heartbeat_interval_ms, 1500);
	nd_frame_free(g, NULL);
}

Test(frame_codec, ping_and_pong_keep_binary_payload)
{
	Noded__PingRequest p = NODED__PING_REQUEST__INIT;
	Noded__PingReply q = NODED__PING_REPLY__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *g;
	uint8_t payload[] = { 0, 1, 2, 0, 255, 0 };

	p.payload.data = payload;
	p.payload.len = sizeof(payload);
	f.id = UINT64_MAX;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_PING;
	f.ping = &p;
	g = round_trip(&f);
	cr_assert_eq(g->ping->payload.len, sizeof(payload));
	cr_assert_arr_eq(g->ping->payload.data, payload, sizeof(payload));
	nd_frame_free(g, NULL);

	q.payload = p.payload;
	f.kind = NODED__FRAME_KIND__REPLY;
	f.body_case = NODED__FRAME__BODY_PONG;
	f.pong = &q;
	g = round_trip(&f);
	cr_assert_eq(g->pong->payload.len, sizeof(payload));
	cr_assert_arr_eq(g->pong->payload.data, payload, sizeof(payload));
	nd_frame_free(g, NULL);
}

Test(frame_codec, report_status_and_reply)
{
	Noded__NodeStatus s = NODED__NODE_STATUS__INIT;
	Noded__NodeStatus__LabelsEntry l1 = NODED__NODE_STATUS__LABELS_ENTRY__INIT;
	Noded__NodeStatus__LabelsEntry l2 = NODED__NODE_STATUS__LABELS_ENTRY__INIT;
	Noded__NodeStatus__LabelsEntry *labels[] = { &l1, &l2 };
	Noded__ReportStatusReply sr = NODED__REPORT_STATUS_REPLY__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *g;
	uint64_t tasks[] = { 3, 1ull << 40, 9 };

	l1.key = "rack";
	l1.value = "r7";
	l2.key = "gpu";
	l2.value = "a100";
	s.name = "w1";
	s.n_labels = 2;
	s.labels = labels;
	s.load1 = 0.5;
	s.load5 = 1.25;
	s.load15 = 2.0;
	s.mem_total_bytes = 64ull << 30;
	s.mem_available_bytes = 12345678901ull;
	s.slots_total = 32;
	s.slots_free = 7;
	s.n_running_tasks = 3;
	s.running_tasks = tasks;
	s.uptime_ms = 987654321;
	f.id = 42;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_REPORT_STATUS;
	f.report_status = &s;
	g = round_trip(&f);
	cr_assert_str_eq(g->report_status->name, "w1");
	cr_assert_eq(g->report_status->n_labels, 2);
	cr_assert_str_eq(g->report_status->labels[0]->key, "rack");
	cr_assert_str_eq(g->report_status->labels[1]->value, "a100");
	cr_assert_float_eq(g->report_status->load5, 1.25, 1e-12);
	cr_assert_eq(g->report_status->mem_available_bytes, 12345678901ull);
	cr_assert_eq(g->report_status->slots_free, 7);
	cr_assert_eq(g->report_status->n_running_tasks, 3);
	cr_assert_eq(g->report_status->running_tasks[1], 1ull << 40);
	cr_assert_eq(g->report_status->uptime_ms, 987654321);
	nd_frame_free(g, NULL);

	sr.server_time_ms = 1700000000000ull;
	sr.heartbeat_interval_ms = 2000;
	f.kind = NODED__FRAME_KIND__REPLY;
	f.body_case = NODED__FRAME__BODY_STATUS_REPLY;
	f.status_reply = &sr;
	g = round_trip(&f);
	cr_assert_eq(g->status_reply->server_time_ms, 1700000000000ull);
	cr_assert_eq(g->status_reply->heartbeat_interval_ms, 2000);
	nd_frame_free(g, NULL);
}

Test(frame_codec, assign_task_stream_messages)
{
	Noded__AssignTaskRequest a = NODED__ASSIGN_TASK_REQUEST__INIT;
	Noded__AssignTaskOpen o = NODED__ASSIGN_TASK_OPEN__INIT;
	Noded__TaskAssignment t = NODED__TASK_ASSIGNMENT__INIT;
	Noded__Command c = NODED__COMMAND__INIT;
	Noded__Command__EnvEntry e = NODED__COMMAND__ENV_ENTRY__INIT;
	Noded__Command__EnvEntry *env[] = { &e };
	Noded__Frame f = NODED__FRAME__INIT, *g;
	char *argv[] = { "/bin/echo", "hello", "" };

	a.node_name = "w2";
	f.id = 5;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_ASSIGN_TASK;
	f.assign_task = &a;
	g = round_trip(&f);
	cr_assert_str_eq(g->assign_task->node_name, "w2");
	nd_frame_free(g, NULL);

	o.heartbeat_interval_ms = 1000;
	o.heartbeat_timeout_ms = 5000;
	f.kind = NODED__FRAME_KIND__STREAM_ITEM;
	f.body_case = NODED__FRAME__BODY_ASSIGN_OPEN;
	f.assign_open = &o;
	g = round_trip(&f);
	cr_assert_eq(g->assign_open->heartbeat_interval_ms, 1000);
	cr_assert_eq(g->assign_open->heartbeat_timeout_ms, 5000);
	nd_frame_free(g, NULL);

	e.key = "PATH";
	e.value = "/usr/bin";
	t.task_id = 77;
	c.n_argv = 3;
	c.argv = argv;
	c.shell = "";
	c.n_env = 1;
	c.env = env;
	c.cwd = "/tmp";
	c.timeout_ms = 30000;
	t.command = &c;
	t.output_cap_bytes = 1 << 20;
	t.attempt = 2;
	f.body_case = NODED__FRAME__BODY_TASK;
	f.task = &t;
	g = round_trip(&f);
	cr_assert_eq(g->task->task_id, 77);
	cr_assert(g->task->command, "the command is lost");
	cr_assert_eq(g->task->command->n_argv, 3);
	cr_assert_str_eq(g->task->command->argv[0], "/bin/echo");
	cr_assert_str_eq(g->task->command->argv[2], "");
	cr_assert_eq(g->task->command->n_env, 1);
	cr_assert_str_eq(g->task->command->env[0]->key, "PATH");
	cr_assert_str_eq(g->task->command->env[0]->value, "/usr/bin");
	cr_assert_str_eq(g->task->command->cwd, "/tmp");
	cr_assert_eq(g->task->command->timeout_ms, 30000);
	cr_assert_eq(g->task->output_cap_bytes, 1 << 20);
	cr_assert_eq(g->task->attempt, 2);
	nd_frame_free(g, NULL);
}

Test(frame_codec, cancel_and_stream_end_without_body)
{
	Noded__Frame f = NODED__FRAME__INIT, *g;

	f.id = 9;
	f.kind = NODED__FRAME_KIND__CANCEL;
	g = round_trip(&f);
	cr_assert_eq(g->body_case, NODED__FRAME__BODY__NOT_SET);
	nd_frame_free(g, NULL);
	f.kind = NODED__FRAME_KIND__STREAM_END;
	g = round_trip(&f);
	cr_assert_eq(g->kind, NODED__FRAME_KIND__STREAM_END);
	nd_frame_free(g, NULL);
}

Test(frame_codec, decode_with_arena)
{
	Noded__PingRequest p = NODED__PING_REQUEST__INIT;
	Noded__Frame f = NODED__FRAME__INIT, *g;
	struct nd_arena a;
	uint8_t *buf;
	size_t len;

	p.payload.data = (uint8_t *)"abc";
	p.payload.len = 3;
	f.id = 3;
	f.kind = NODED__FRAME_KIND__REQUEST;
	f.body_case = NODED__FRAME__BODY_PING;
	f.ping = &p;
	buf = encode(&f, &len);
	cr_assert_eq(nd_arena_init(&a, 0), 0);
	for (int i = 0; i < 1000; i++) {
		g = nd_frame_decode(buf + ND_FRAME_HDR, len - ND_FRAME_HDR,
				    &a.pc);
		cr_assert_not_null(g);
		cr_assert_eq(g->id, 3);
		cr_assert_arr_eq(g->ping->payload.data, "abc", 3);
		nd_arena_reset(&a);
	}
	nd_arena_close(&a);
	free(buf);
}

Test(frame_codec, garbage_decodes_to_null)
{
	/* field 1 varint that never ends */
	static const uint8_t unterminated[] = { 0x08, 0xff, 0xff, 0xff };
	/* field 2 with wire type 7 (invalid) */
	static const uint8_t bad_wire_type[] = { 0x17, 0x01 };
	/* field 12 (ping) length-delimited, length 50, only 2 bytes follow */
	static const uint8_t short_submsg[] = { 0x62, 50, 0x0a, 0x00 };
	/* field number 0 */
	static const uint8_t field_zero[] = { 0x00, 0x01 };
	Noded__Error e = NODED__ERROR__INIT;
	Noded__Frame f = NODED__FRAME__INIT;
	uint8_t *buf;
	size_t len;

	cr_assert_null(nd_frame_decode(unterminated, sizeof(unterminated), NULL));
	cr_assert_null(nd_frame_decode(bad_wire_type, sizeof(bad_wire_type),
				       NULL));
	cr_assert_null(nd_frame_decode(short_submsg, sizeof(short_submsg), NULL));
	cr_assert_null(nd_frame_decode(field_zero, sizeof(field_zero), NULL));

	/* A valid frame cut short by one byte. */
	e.message = "truncated message";
	f.id = 1;
	f.kind = NODED__FRAME_KIND__REPLY;
	f.body_case = NODED__FRAME__BODY_ERROR;
	f.error = &e;
	buf = encode(&f, &len);
	cr_assert_null(nd_frame_decode(buf + ND_FRAME_HDR,
				       len - ND_FRAME_HDR - 1, NULL));
	free(buf);
	nd_frame_free(NULL, NULL); /* no-op */
}

Test(frame_codec, method_names)
{
	cr_assert_str_eq(nd_frame_method_name(NODED__FRAME__BODY_PING), "ping");
	cr_assert_str_eq(nd_frame_method_name(NODED__FRAME__BODY_ASSIGN_TASK),
			 "assign_task");
	cr_assert_str_eq(nd_frame_method_name(NODED__FRAME__BODY__NOT_SET),
			 "none");
	cr_assert_str_eq(nd_frame_method_name((Noded__Frame__BodyCase)77),
			 "unknown");
}

Test(errors, strerror_names_nd_codes_and_errno)
{
	cr_assert_str_eq(nd_strerror(0), "success");
	cr_assert_str_eq(nd_strerror(ND_EFRAMETOOBIG),
			 "frame length over the maximum");
	cr_assert_str_eq(nd_strerror(ND_ECLOSED),
			 "connection closed by the peer");
	cr_assert_str_eq(nd_strerror(-ECONNRESET), strerror(ECONNRESET));
	cr_assert_str_eq(nd_strerror(-999999), "unknown error");
}

/* ---- arena ---- */

Test(arena, allocations_are_aligned_and_disjoint)
{
	struct nd_arena a;
	uint8_t *p[64];

	cr_assert_eq(nd_arena_init(&a, 4096), 0);
	for (int i = 0; i < 64; i++) {
		p[i] = nd_arena_alloc(&a, (size_t)i + 1);
		cr_assert_not_null(p[i]);
		cr_assert_eq((uintptr_t)p[i] % 16, 0, "alloc %d misaligned", i);
		memset(p[i], i, (size_t)i + 1);
	}
	for (int i = 0; i < 64; i++)
		for (int j = 0; j <= i; j++)
			cr_assert_eq(p[i][j], i, "alloc %d overwritten", i);
	nd_arena_close(&a);
}

Test(arena, oversize_blocks_and_reset)
{
	struct nd_arena a;
	uint8_t *first, *big, *again;

	cr_assert_eq(nd_arena_init(&a, 256), 0);
	cr_assert_eq(a.block_size, 256);
	first = nd_arena_alloc(&a, 100);
	cr_assert_not_null(first);
	cr_assert_null(a.big);
	/* Larger than the block: a block of its own. */
	big = nd_arena_alloc(&a, 10000);
	cr_assert_not_null(big);
	cr_assert_not_null(a.big);
	memset(big, 0x5a, 10000);
	/* Does not fit the rest of the head block either. */
	cr_assert_not_null(nd_arena_alloc(&a, 200));
	/* Still fits the head block. */
	cr_assert_not_null(nd_arena_alloc(&a, 16));
	cr_assert_leq(a.used, 256);

	nd_arena_reset(&a);
	cr_assert_null(a.big);
	cr_assert_eq(a.used, 0);
	/* The head block is kept and reused from its start. */
	again = nd_arena_alloc(&a, 100);
	cr_assert_eq(again, first);
	nd_arena_close(&a);
	cr_assert_null(a.head);
}

Test(arena, default_block_size_and_protobuf_allocator)
{
	struct nd_arena a;
	void *p;

	cr_assert_eq(nd_arena_init(&a, 0), 0);
	cr_assert_eq(a.block_size, 64 * 1024);
	p = a.pc.alloc(a.pc.allocator_data, 64);
	cr_assert_not_null(p);
	a.pc.free(a.pc.allocator_data, p); /* no-op, must not crash */
	/* The whole block in one piece. */
	nd_arena_reset(&a);
	cr_assert_not_null(nd_arena_alloc(&a, 64 * 1024));
	cr_assert_null(a.big);
	nd_arena_close(&a);
}
