/* Server set-up and the main thread: see server.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/server.h"
#include "rpc/acl.h"
#include "tls/tls.h"
#include "noded/auth.h"
#include "noded/errors.h"

void *nd__shard_main(void *arg);

void nd_config_defaults(struct nd_config *cfg)
{
	static char host[256];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (!cfg->name) {
		if (gethostname(host, sizeof(host) - 1))
			snprintf(host, sizeof(host), "noded");
		cfg->name = host;
	}
	if (!cfg->listen)
		cfg->listen = "127.0.0.1:7070";
	if (!cfg->shards)
		cfg->shards = ncpu > 0 ? (unsigned)ncpu : 1;
	if (!cfg->max_frame)
		cfg->max_frame = 16u << 20;
	if (!cfg->stall_timeout_ms)
		cfg->stall_timeout_ms = 10000;
	if (!cfg->drain_timeout_ms)
		cfg->drain_timeout_ms = 5000;
	if (!cfg->max_output)
		cfg->max_output = 4u << 20;
	if (!cfg->buf_count)
		cfg->buf_count = 1024;
	if (!cfg->buf_size)
		cfg->buf_size = 4096;
	if (!cfg->http_max_body)
		cfg->http_max_body = 1u << 20;
	if (!cfg->input_budget) {
		cfg->input_budget = ND_INPUT_BUDGET_DEFAULT;
		if (cfg->input_budget < 4 * ((uint64_t)cfg->max_frame + 4))
			cfg->input_budget = 4 * ((uint64_t)cfg->max_frame + 4);
	}
	if (!cfg->handshake_timeout_ms)
		cfg->handshake_timeout_ms = 10000;
}

/* Says why into why (when not NULL) and returns ND_EADDR. */
__attribute__((format(printf, 3, 4))) static int addr_why(char *why,
							  size_t size,
							  const char *fmt,
							  ...)
{
	va_list ap;

	if (why && size) {
		va_start(ap, fmt);
		vsnprintf(why, size, fmt, ap);
		va_end(ap);
	}
	return ND_EADDR;
}

int nd_parse_addr_why(const char *s, struct sockaddr_storage *out,
		      socklen_t *len, char *why, size_t why_size)
{
	struct addrinfo hints = { 0 }, *res = NULL;
	char host[256];
	const char *colon, *h = s;
	size_t hl;
	char *end;
	long port;
	int r;

	colon = strrchr(s, ':');
	if (!colon || colon == s)
		return addr_why(why, why_size, "'%s' is not HOST:PORT", s);
	hl = (size_t)(colon - s);
	if (s[0] == '[' && colon[-1] == ']') { /* [::1]:7070 */
		h = s + 1;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return addr_why(why, why_size, "'%s': the host is over %zu "
				"bytes", s, sizeof(host) - 1);
	memcpy(host, h, hl);
	host[hl] = '\0';
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
		return addr_why(why, why_size, "'%s': the port must be a "
				"number from 0 to 65535", s);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	r = getaddrinfo(host, NULL, &hints, &res);
	if (r || !res)
		return addr_why(why, why_size, "'%s': the host name '%s' does "
				"not resolve (%s)", s, host,
				r == EAI_SYSTEM ? strerror(errno) :
				gai_strerror(r));
	memcpy(out, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	if (out->ss_family == AF_INET)
		((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
	return 0;
}

int nd_parse_addr(const char *s, struct sockaddr_storage *out, socklen_t *len)
{
	return nd_parse_addr_why(s, out, len, NULL, 0);
}

bool nd_addr_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >>
			24) == 127;
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(
			&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return false;
}

static void addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const void *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(a->sin_port));
	}
}

void nd_server_addr(const struct nd_server *srv, char *buf, size_t len)
{
	if (srv->nln)
		addr_str(&srv->ln[0].addr, buf, len);
	else
		snprintf(buf, len, "none");
}

/* Fails with a message naming what to check when io_uring is unusable. */
static int probe_uring(void)
{
	struct io_uring ring;
	struct io_uring_probe *probe;
	static const struct { int op; const char *name; } need[] = {
		{ IORING_OP_ACCEPT, "ACCEPT" }, { IORING_OP_RECV, "RECV" },
		{ IORING_OP_SEND, "SEND" }, { IORING_OP_MSG_RING, "MSG_RING" },
		{ IORING_OP_TIMEOUT, "TIMEOUT" },
		{ IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL" },
		{ IORING_OP_READ, "READ" },
	};
	int ret = nd_uring_init(&ring, 8, 16, NULL);

	if (ret) {
		ND_LOG(ND_LOG_ERROR, "server.io_uring_unavailable",
		       ND_S("msg", "io_uring is not available"),
		       ND_S("err", ret == -EOPNOTSUPP ?
				   "kernel lacks IORING_FEAT_NODROP" :
				   strerror(-ret)),
		       ND_S("hint", "check: kernel 6.1 or newer (uname -r); "
			    "sysctl kernel.io_uring_disabled is 0; no seccomp "
			    "or container profile blocking io_uring_setup "
			    "(docker/podman default profiles do)"));
		return ND_EURING;
	}
	probe = io_uring_get_probe_ring(&ring);
	for (size_t i = 0; probe && i < sizeof(need) / sizeof(need[0]); i++) {
		if (!io_uring_opcode_supported(probe, need[i].op)) {
			ND_LOG(ND_LOG_ERROR, "server.io_uring_unavailable",
			       ND_S("msg", "io_uring lacks an operation noded "
				    "needs; a 6.1 or newer kernel is needed"),
			       ND_S("op", need[i].name));
			ret = ND_EURING;
		}
	}
	io_uring_free_probe(probe);
	io_uring_queue_exit(&ring);
	return ret;
}

/*
 * Room for max_conns sockets plus our own descriptors. Without --max-conns,
 * take 65536 or whatever the hard limit allows, silently.
 */
static void raise_nofile(struct nd_config *cfg)
{
	bool asked = cfg->max_conns != 0;
	rlim_t need, reserve = 64 + 4 * (rlim_t)cfg->shards;
	struct rlimit rl;

	if (!asked)
		cfg->max_conns = 65536;
	need = (rlim_t)cfg->max_conns + reserve;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = need;
	if (rl.rlim_max < need)
		rl.rlim_max = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		return;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur > reserve)
		cfg->max_conns = (uint32_t)(rl.rlim_cur - reserve);
	if (asked)
		ND_LOG(ND_LOG_WARN, "server.max_conns_lowered",
		       ND_S("msg", "RLIMIT_NOFILE (hard limit) is below "
			    "--max-conns"),
		       ND_U("rlimit_nofile", rl.rlim_cur),
		       ND_U("max_conns", cfg->max_conns));
}

/* Binds and listens on text (what: the option, for messages). */
static int bind_listener(struct nd_server *srv, const char *text,
			 const char *what, const struct nd_conn_ops *proto)
{
	struct nd_listener *l = &srv->ln[srv->nln];
	socklen_t alen = sizeof(l->addr);
	char why[512];
	int one = 1, ret;

	if (srv->nln == ND_MAX_LISTENERS)
		return -EMFILE;
	if (nd_parse_addr_why(text, &l->addr, &alen, why, sizeof(why))) {
		ND_LOG(ND_LOG_ERROR, "server.bad_address",
		       ND_S("msg", "bad address"), ND_S("err", why),
		       ND_S("option", what), ND_S("addr", text));
		return ND_EADDR;
	}
	/* Remote execution without authentication is how such tools end up
	 * in CVEs: off loopback, a token or mutual TLS is required. */
	if (!nd_addr_is_loopback(&l->addr) && !srv->cfg.token &&
	    !(srv->cfg.tls && nd_tls_verifies(srv->cfg.tls))) {
		ND_LOG(ND_LOG_ERROR, "server.refused_listen",
		       ND_S("msg", "refusing to listen off loopback without "
			    "--token-file or mutual TLS (--tls-cert, --tls-key "
			    "and --tls-ca): anyone who can reach it could run "
			    "commands on every worker"),
		       ND_S("option", what), ND_S("addr", text));
		return ND_EADDR;
	}
	l->fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0)
		goto err_errno;
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, (struct sockaddr *)&l->addr, alen) ||
	    listen(l->fd, 4096))
		goto err_errno;
	alen = sizeof(l->addr);
	getsockname(l->fd, (struct sockaddr *)&l->addr, &alen);
	l->proto = proto;
	srv->nln++;
	return 0;

err_errno:
	ret = -errno;
	ND_LOG(ND_LOG_ERROR, "server.listen_failed", ND_S("option", what),
	       ND_S("addr", text), ND_S("err", strerror(errno)));
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	return ret;
}

int nd_server_init(struct nd_server *srv, const struct nd_config *cfg)
{
	uint64_t instance;
	int ret;

	memset(srv, 0, sizeof(*srv));
	srv->cfg = *cfg;
	nd_config_defaults(&srv->cfg);
	/* Fallback when getrandom fails: still differs between starts. */
	if (nd_auth_nonce((uint8_t *)&instance, sizeof(instance)))
		instance = nd_mono_ms() ^ ((uint64_t)getpid() << 32);
	atomic_store(&srv->instance, instance | 1);
	ret = probe_uring();
	if (ret)
		return ret;
	raise_nofile(&srv->cfg);
	if (!strcmp(srv->cfg.listen, "") || !strcmp(srv->cfg.listen, "none"))
		return 0;
	return bind_listener(srv, srv->cfg.listen, "--listen", NULL);
}

int nd_server_listen(struct nd_server *srv, const char *addr, const char *what,
		     const struct nd_conn_ops *proto, char *buf, size_t len)
{
	int ret = bind_listener(srv, addr, what, proto);

	if (!ret)
		addr_str(&srv->ln[srv->nln - 1].addr, buf, len);
	return ret;
}

static void wake_all(struct nd_server *srv, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		eventfd_write(srv->shards[i].wake_fd, 1);
}

static void print_stats(struct nd_server *srv)
{
	for (unsigned i = 0; i < srv->nshards; i++) {
		struct nd_shard_stats *st = &srv->shards[i].st;

		ND_LOG(ND_LOG_INFO, "shard.stats", ND_S("server", srv->cfg.name),
		       ND_U("shard", i),
		       ND_U("accepted", st->accepted),
		       ND_U("requests", st->requests),
		       ND_U("errors", st->errors),
		       ND_U("bytes_in", st->bytes_in),
		       ND_U("bytes_out", st->bytes_out),
		       ND_U("sends", st->sends), ND_U("loops", st->loops),
		       ND_U("enobufs", st->recv_enobufs),
		       ND_U("paused", st->paused));
	}
}

void nd_server_block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);  /* re-read the TLS files, the policy */
	pthread_sigmask(SIG_BLOCK, set, NULL); /* inherited by the shards */
	signal(SIGPIPE, SIG_IGN);
}

int nd_server_wait_signal(void)
{
	sigset_t set;
	int sig;

	nd_server_block_signals(&set);
	for (;;) {
		if (sigwait(&set, &sig))
			continue;
		if (sig != SIGHUP)
			break;
		ND_LOG(ND_LOG_INFO, "server.reload",
		       ND_S("msg", "SIGHUP: re-reading the TLS files and "
			    "the --acl policy"));
		nd_tls_reload_all();
		nd_acl_global_reload();
	}
	ND_LOG(ND_LOG_INFO, "server.stopping",
	       ND_S("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"),
	       ND_S("msg", "draining"));
	return sig;
}

int nd_server_start(struct nd_server *srv)
{
	const struct nd_config *cfg = &srv->cfg;
	sigset_t set;
	unsigned f;
	int ret = 0;

	nd_server_block_signals(&set);
	srv->nconn_shards = cfg->shards;
	srv->nshards = cfg->shards + cfg->service_shards;
	srv->shards = calloc(srv->nshards, sizeof(*srv->shards));
	if (!srv->shards)
		return -ENOMEM;
	sem_init(&srv->started, 0, 0);
	sem_init(&srv->go, 0, 0);
	for (unsigned i = 0; i < srv->nshards; i++) {
		struct nd_shard *s = &srv->shards[i];

		s->id = i;
		s->srv = srv;
		s->cfg = cfg;
		s->buf_count = cfg->buf_count;
		s->buf_size = cfg->buf_size;
		nd_shard_init_lists(s);
		s->wake_fd = eventfd(0, EFD_CLOEXEC);
		if (s->wake_fd < 0 ||
		    pthread_create(&s->thread, NULL, nd__shard_main, s)) {
			ret = -errno;
			break;
		}
		while (sem_wait(&srv->started) && errno == EINTR)
			;
		srv->nstarted++;
		if (s->setup_err) {
			ret = s->setup_err;
			ND_LOG(ND_LOG_ERROR, "shard.setup_failed", ND_U("shard", i),
			       ND_S("err", nd_strerror(ret)));
			break;
		}
	}
	if (ret) {
		nd_server_stop(srv);
		return ret;
	}
	for (unsigned i = 0; i < srv->nshards; i++)
		sem_post(&srv->go);
	f = srv->shards[0].ring_flags;
	ND_LOG(ND_LOG_INFO, "server.started", ND_U("shards", srv->nshards),
	       ND_S("io_uring", (f & IORING_SETUP_DEFER_TASKRUN) ?
					"single issuer, deferred task work" :
				(f & IORING_SETUP_COOP_TASKRUN) ?
					"cooperative task work (pre-6.1 kernel)" :
					"default flags (old kernel)"));
	srv->running = true;
	return 0;
}

void nd_server_stop(struct nd_server *srv)
{
	atomic_store(&srv->stop, true);
	if (!srv->running) /* start failed: release the shards at the gate */
		for (unsigned i = 0; i < srv->nstarted; i++)
			sem_post(&srv->go);
	wake_all(srv, srv->nstarted);
	for (unsigned i = 0; i < srv->nstarted; i++)
		pthread_join(srv->shards[i].thread, NULL);
	if (srv->running)
		print_stats(srv);
	srv->nstarted = 0;
	srv->running = false;
}

int nd_server_run(struct nd_server *srv)
{
	char addr[80], http[80] = "";
	int ret = nd_server_start(srv);

	if (ret)
		return ret;
	/* Ready once every shard runs: the listeners were bound before. */
	nd_server_addr(srv, addr, sizeof(addr));
	if (srv->nln > 1)
		addr_str(&srv->ln[1].addr, http, sizeof(http));
	nd_notify_start(srv);
	nd_notify(ND_NOTIFY_READY, "listening on %s%s%s", addr,
		  *http ? ", http on " : "", http);
	nd_server_wait_signal();
	nd_notify(ND_NOTIFY_STOPPING, "draining");
	nd_server_stop(srv);
	nd_notify_stop();
	return 0;
}

void nd_server_close(struct nd_server *srv)
{
	for (unsigned i = 0; i < srv->nln; i++)
		close(srv->ln[i].fd);
	srv->nln = 0;
	for (unsigned i = 0; srv->shards && i < srv->nshards; i++)
		if (srv->shards[i].wake_fd > 0)
			close(srv->shards[i].wake_fd);
	if (srv->shards) {
		sem_destroy(&srv->started);
		sem_destroy(&srv->go);
	}
	free(srv->shards);
	srv->shards = NULL;
}
