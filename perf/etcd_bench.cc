/*
 * etcd-bench: the reference load client for scripts/bench.sh's durable and
 * failover workloads: etcd 3.4 puts driven through its gRPC API, measured
 * the way noded-bench submit measures noded.
 *
 *   etcd-bench put --endpoints H:P[,H:P...] [--conns C] [--count N]
 *                  [--duration SECS] [--value-size B] [--json]
 *   etcd-bench first-put --endpoints H:P[,H:P...] --since-ns NS
 *                  [--every-ms MS] [--timeout SECS]
 *
 * Debian's etcd ships no .proto files, so there is no generated stub: each
 * request is a unary call of "/etcdserverpb.KV/Put" through grpc's
 * GenericStub with a hand-encoded PutRequest, which needs two fields
 * (etcd api/etcdserverpb/rpc.proto):
 *
 *   message PutRequest { bytes key = 1; bytes value = 2; ... }
 *
 * each a length-delimited field: the tag byte (field << 3 | 2: 0x0a, 0x12),
 * the length as a varint, the bytes. The reply (PutResponse) is not
 * decoded: a call counts when its status is OK, which etcd gives only
 * after the entry is committed by a quorum (fsync'd in its WAL) and
 * applied.
 *
 * put keeps one call in flight on each of C channels (each its own TCP
 * connection: local subchannel pools, channels spread round-robin over the
 * endpoints) until N calls were answered or SECS are over, all from one
 * thread on one completion queue, and prints what noded-bench submit
 * prints (JSON keys bench, conns, depth, concurrency, count, duration_s,
 * requests, errors, per_s, p50_us, p90_us, p99_us, p999_us, max_us,
 * mean_us), with the same histogram (perf/hist.c). Every key is new:
 * "noded-bench/<conn>/<n>", like a new task each time.
 *
 * first-put measures a failover: from NS (CLOCK_REALTIME nanoseconds, taken
 * by the caller just before it killed the leader) until the first put any
 * endpoint accepts. Every MS (default 10) it starts a put on each endpoint
 * (each with a 5 s deadline, at most 500 outstanding per endpoint): a put
 * sent while the members still believe in the dead leader hangs until its
 * deadline, so only overlapping attempts see the new leader within MS. It
 * prints {"bench":"etcd-first-put","ms":...,"endpoint":"...","attempts":N}.
 *
 * Exit status: 0 when every put was taken (put) or one was within the
 * timeout (first-put), 1 otherwise, 2 on bad usage.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/generic/generic_stub.h>

extern "C" {
#include "hist.h"
}

namespace {

const char kPut[] = "/etcdserverpb.KV/Put";

uint64_t mono_ns()
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t real_ns()
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void put_varint(std::string *out, uint64_t v)
{
	while (v >= 0x80) {
		out->push_back((char)(v | 0x80));
		v >>= 7;
	}
	out->push_back((char)v);
}

/* A PutRequest with fields 1 (key) and 2 (value), in a ByteBuffer. */
grpc::ByteBuffer put_request(const std::string &key, const std::string &value)
{
	std::string pb;

	pb.push_back(0x0a);
	put_varint(&pb, key.size());
	pb += key;
	pb.push_back(0x12);
	put_varint(&pb, value.size());
	pb += value;
	grpc::Slice s(pb);
	return grpc::ByteBuffer(&s, 1);
}

/* One call in flight; deleted at its completion. */
struct Call {
	size_t slot;            /* put: channel; first-put: endpoint */
	uint64_t t0;
	grpc::ClientContext ctx;
	grpc::ByteBuffer resp;
	grpc::Status status;
	std::unique_ptr<grpc::GenericClientAsyncResponseReader> rpc;
};

Call *start_put(grpc::GenericStub *stub, grpc::CompletionQueue *cq,
		size_t slot, const std::string &key, const std::string &value,
		int deadline_ms)
{
	Call *c = new Call;

	c->slot = slot;
	c->t0 = mono_ns();
	c->ctx.set_deadline(std::chrono::system_clock::now() +
			    std::chrono::milliseconds(deadline_ms));
	c->rpc = stub->PrepareUnaryCall(&c->ctx, kPut,
					put_request(key, value), cq);
	c->rpc->StartCall();
	c->rpc->Finish(&c->resp, &c->status, c);
	return c;
}

std::shared_ptr<grpc::Channel> channel(const std::string &ep)
{
	grpc::ChannelArguments args;

	/* its own connection, not one shared by every channel to ep */
	args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
	/* a member that comes back is tried again soon */
	args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
	args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
	args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
	return grpc::CreateCustomChannel(
		ep, grpc::InsecureChannelCredentials(), args);
}

std::vector<std::string> split(const char *s)
{
	std::vector<std::string> v;
	std::string cur;

	for (; *s; s++) {
		if (*s == ',') {
			if (!cur.empty())
				v.push_back(cur);
			cur.clear();
		} else {
			cur.push_back(*s);
		}
	}
	if (!cur.empty())
		v.push_back(cur);
	return v;
}

/* A number in [min, max], or exit(2) naming opt. */
double num(const char *opt, const char *s, double min, double max)
{
	char *end;
	double v = strtod(s, &end);

	if (!*s || *end || !(v >= min && v <= max)) {
		fprintf(stderr, "etcd-bench: %s wants a number in [%g, %g], "
			"not '%s'\n", opt, min, max, s);
		exit(2);
	}
	return v;
}

void usage(FILE *f)
{
	fprintf(f,
		"usage: etcd-bench put --endpoints H:P[,H:P...] [--conns C] "
		"[--count N]\n"
		"                      [--duration SECS] [--value-size B] "
		"[--json]\n"
		"       etcd-bench first-put --endpoints H:P[,H:P...] "
		"--since-ns NS\n"
		"                      [--every-ms MS] [--timeout SECS]\n"
		"  put: one put in flight on each of C connections until N "
		"were answered\n"
		"  or SECS are over (defaults: C 1, N 10000, 10 s, 32-byte "
		"values);\n"
		"  first-put: ms from NS (CLOCK_REALTIME) to the first put "
		"accepted.\n");
}

struct Opts {
	std::vector<std::string> eps;
	unsigned conns = 1;
	uint64_t count = 10000;
	double duration = 10;
	size_t value_size = 32;
	bool json = false;
	uint64_t since_ns = 0;
	unsigned every_ms = 10;
	double timeout = 30;
};

int cmd_put(const Opts &o)
{
	grpc::CompletionQueue cq;
	std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
	std::vector<uint64_t> seq(o.conns, 0);
	std::string value(o.value_size, 'x');
	struct nd_hist *h = (struct nd_hist *)calloc(1, sizeof(*h));
	uint64_t started = 0, requests = 0, errors = 0, inflight = 0;
	uint64_t t0, t1, end, last = 0;
	bool stopping = false;

	if (!h)
		return 1;
	nd_hist_init(h);
	for (unsigned i = 0; i < o.conns; i++) {
		auto ch = channel(o.eps[i % o.eps.size()]);

		if (!ch->WaitForConnected(std::chrono::system_clock::now() +
					  std::chrono::seconds(10))) {
			fprintf(stderr, "etcd-bench: cannot connect to %s\n",
				o.eps[i % o.eps.size()].c_str());
			free(h);
			return 1;
		}
		stubs.emplace_back(new grpc::GenericStub(ch));
	}
	auto next = [&](size_t slot) {
		if (stopping || started >= o.count) {
			stopping = true;
			return;
		}
		started++;
		inflight++;
		start_put(stubs[slot].get(), &cq, slot,
			  "noded-bench/" + std::to_string(slot) + "/" +
				  std::to_string(seq[slot]++),
			  value, 30000);
	};
	t0 = mono_ns();
	end = t0 + (uint64_t)(o.duration * 1e9);
	for (unsigned i = 0; i < o.conns; i++)
		next(i);
	while (inflight) {
		void *tag;
		bool ok;

		if (!cq.Next(&tag, &ok))
			break;
		Call *c = static_cast<Call *>(tag);
		uint64_t now = mono_ns();

		inflight--;
		if (ok && c->status.ok()) {
			nd_hist_record(h, (now - c->t0) / 1000);
			requests++;
			last = now;
		} else {
			if (!errors)
				fprintf(stderr, "etcd-bench: put: %s\n",
					c->status.error_message().c_str());
			errors++;
		}
		if (now >= end)
			stopping = true;
		next(c->slot);
		delete c;
	}
	t1 = mono_ns();
	if (t1 > end)
		t1 = last > end ? last : end;
	cq.Shutdown();
	{
		void *tag;
		bool ok;

		while (cq.Next(&tag, &ok))
			;
	}

	double secs = (double)(t1 - t0) / 1e9;
	double rate = secs > 0 ? (double)requests / secs : 0;
	unsigned long long p50 = nd_hist_percentile(h, 50),
			   p90 = nd_hist_percentile(h, 90),
			   p99 = nd_hist_percentile(h, 99),
			   p999 = nd_hist_percentile(h, 99.9),
			   max = h->count ? h->max : 0;

	if (o.json)
		printf("{\"bench\":\"etcd-put\",\"conns\":%u,\"depth\":1,"
		       "\"concurrency\":%u,\"count\":%llu,\"duration_s\":%.3f,"
		       "\"requests\":%llu,\"errors\":%llu,\"per_s\":%.1f,"
		       "\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,"
		       "\"p999_us\":%llu,\"max_us\":%llu,\"mean_us\":%.1f}\n",
		       o.conns, o.conns, (unsigned long long)o.count, secs,
		       (unsigned long long)requests,
		       (unsigned long long)errors, rate, p50, p90, p99, p999,
		       max, nd_hist_mean(h));
	else
		printf("etcd put: %u conns, %llu of %llu taken, %llu errors, "
		       "%.3f s\n  per second %.1f\n  latency us p50 %llu  p90 "
		       "%llu  p99 %llu  p99.9 %llu  max %llu\n", o.conns,
		       (unsigned long long)requests,
		       (unsigned long long)o.count, (unsigned long long)errors,
		       secs, rate, p50, p90, p99, p999, max);
	free(h);
	return requests && !errors ? 0 : 1;
}

int cmd_first_put(const Opts &o)
{
	grpc::CompletionQueue cq;
	std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
	std::vector<unsigned> out(o.eps.size(), 0);
	std::vector<Call *> live;
	std::string value(32, 'x');
	uint64_t deadline = mono_ns() + (uint64_t)(o.timeout * 1e9);
	uint64_t next_round = 0, attempts = 0, ok_at = 0;
	size_t ok_ep = 0;

	for (const auto &ep : o.eps)
		stubs.emplace_back(new grpc::GenericStub(channel(ep)));
	while (!ok_at && mono_ns() < deadline) {
		uint64_t now = mono_ns();
		void *tag;
		bool ok;

		if (now >= next_round) {
			for (size_t i = 0; i < stubs.size(); i++) {
				if (out[i] >= 500)
					continue;
				out[i]++;
				attempts++;
				live.push_back(start_put(
					stubs[i].get(), &cq, i,
					"noded-bench/failover/" +
						std::to_string(attempts),
					value, 5000));
			}
			next_round = now + o.every_ms * 1000000ull;
		}
		auto r = cq.AsyncNext(&tag, &ok,
				      std::chrono::system_clock::now() +
					      std::chrono::milliseconds(1));
		if (r != grpc::CompletionQueue::GOT_EVENT)
			continue;
		Call *c = static_cast<Call *>(tag);

		out[c->slot]--;
		if (ok && c->status.ok()) {
			ok_at = real_ns();
			ok_ep = c->slot;
		}
		for (auto &l : live)
			if (l == c)
				l = nullptr;
		delete c;
	}
	/* every call still out is cancelled and completes before the queue
	 * goes */
	for (auto *c : live)
		if (c)
			c->ctx.TryCancel();
	for (;;) {
		size_t n = 0;
		void *tag;
		bool ok;

		for (size_t i = 0; i < out.size(); i++)
			n += out[i];
		if (!n || !cq.Next(&tag, &ok))
			break;
		Call *c = static_cast<Call *>(tag);

		out[c->slot]--;
		delete c;
	}
	cq.Shutdown();
	{
		void *tag;
		bool ok;

		while (cq.Next(&tag, &ok))
			;
	}
	if (!ok_at) {
		fprintf(stderr, "etcd-bench: no put accepted within %g s\n",
			o.timeout);
		return 1;
	}
	printf("{\"bench\":\"etcd-first-put\",\"ms\":%.1f,\"endpoint\":\"%s\","
	       "\"attempts\":%llu}\n",
	       ok_at > o.since_ns ? (double)(ok_at - o.since_ns) / 1e6 : 0.0,
	       o.eps[ok_ep].c_str(), (unsigned long long)attempts);
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "endpoints", required_argument, nullptr, 'e' },
		{ "conns", required_argument, nullptr, 'c' },
		{ "count", required_argument, nullptr, 'n' },
		{ "duration", required_argument, nullptr, 't' },
		{ "value-size", required_argument, nullptr, 'v' },
		{ "json", no_argument, nullptr, 'j' },
		{ "since-ns", required_argument, nullptr, 's' },
		{ "every-ms", required_argument, nullptr, 'm' },
		{ "timeout", required_argument, nullptr, 'T' },
		{ "help", no_argument, nullptr, 'h' },
		{ nullptr, 0, nullptr, 0 },
	};
	Opts o;
	bool put;
	int opt;

	if (argc < 2 || (strcmp(argv[1], "put") &&
			 strcmp(argv[1], "first-put"))) {
		bool help = argc >= 2 && (!strcmp(argv[1], "--help") ||
					  !strcmp(argv[1], "-h"));

		usage(help ? stdout : stderr);
		return help ? 0 : 2;
	}
	put = !strcmp(argv[1], "put");
	optind = 2;
	while ((opt = getopt_long(argc, argv, "h", lo, nullptr)) != -1) {
		switch (opt) {
		case 'e': o.eps = split(optarg); break;
		case 'c': o.conns = (unsigned)num("--conns", optarg, 1, 10000);
			  break;
		case 'n': o.count = (uint64_t)num("--count", optarg, 1, 1e8);
			  break;
		case 't': o.duration = num("--duration", optarg, 0.001, 86400);
			  break;
		case 'v': o.value_size = (size_t)num("--value-size", optarg, 0,
						     1 << 20);
			  break;
		case 'j': o.json = true; break;
		case 's': {
			char *end;

			o.since_ns = strtoull(optarg, &end, 10);
			if (!optarg[0] || *end || !o.since_ns) {
				fprintf(stderr, "etcd-bench: --since-ns wants "
					"nanoseconds since the epoch\n");
				return 2;
			}
			break;
		}
		case 'm': o.every_ms = (unsigned)num("--every-ms", optarg, 1,
						     1000);
			  break;
		case 'T': o.timeout = num("--timeout", optarg, 0.001, 3600);
			  break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (o.eps.empty() || optind != argc || (!put && !o.since_ns)) {
		usage(stderr);
		return 2;
	}
	return put ? cmd_put(o) : cmd_first_put(o);
}
