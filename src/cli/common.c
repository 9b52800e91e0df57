/* Shared pieces of the task commands; see common.h. */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "core/log.h"
#include "core/server.h"
#include "noded/auth.h"

bool nd_cli_uint(const char *opt, const char *s, uint64_t min, uint64_t max,
		 uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
		fprintf(stderr, "noded: %s wants a whole number from %llu to "
			"%llu, not '%s'\n", opt, (unsigned long long)min,
			(unsigned long long)max, s);
		return false;
	}
	*out = v;
	return true;
}

bool nd_cli_once(const char *cmd, const struct option *opts,
		 const char **seen, int li, const char *arg)
{
	if (li < 0 || !arg || opts[li].has_arg == no_argument)
		return true;
	if (seen[li] && strcmp(seen[li], arg)) {
		fprintf(stderr, "noded %s: --%s given twice ('%s' and '%s'): "
			"give it once\n", cmd, opts[li].name, seen[li], arg);
		return false;
	}
	seen[li] = arg;
	return true;
}

/* ---- the daemons' log options ---- */

const char nd_cli_log_usage[] =
	"  --log-format FORMAT    logfmt (default) or json: one line per\n"
	"                         event on stderr\n"
	"  --log-level LEVEL      debug, info (default), warn, error or off\n";

bool nd_cli_log_opt(int opt, const char *arg, bool *ok)
{
	static enum nd_log_format format = ND_LOG_LOGFMT;
	static enum nd_log_level level = ND_LOG_INFO;

	switch (opt) {
	case ND_CLI_OPT_LOG_FORMAT:
		*ok = nd_log_format_parse(arg, &format);
		if (!*ok)
			fprintf(stderr, "noded: --log-format wants logfmt or "
				"json, not '%s'\n", arg);
		break;
	case ND_CLI_OPT_LOG_LEVEL:
		*ok = nd_log_level_parse(arg, &level);
		if (!*ok)
			fprintf(stderr, "noded: --log-level wants debug, info, "
				"warn, error or off, not '%s'\n", arg);
		break;
	default:
		return false;
	}
	if (*ok)
		nd_log_setup(format, level);
	return true;
}

/* ---- TLS files ---- */

const char *nd_cli_tls_cert, *nd_cli_tls_key, *nd_cli_tls_ca;

const char nd_cli_tls_usage[] =
	"  --tls-cert FILE        our certificate, for a master that asks\n"
	"                         for one (mutual TLS; $NODED_TLS_CERT)\n"
	"  --tls-key FILE         its private key ($NODED_TLS_KEY)\n"
	"  --tls-ca FILE          speak TLS 1.3 and trust masters signed by\n"
	"                         this CA only ($NODED_TLS_CA)\n";

bool nd_cli_conn_opt(int opt, const char *arg, const char **master)
{
	switch (opt) {
	case 'm':
		*master = arg;
		return true;
	case 'T':
		nd_cli_token_file = arg;
		return true;
	default:
		return nd_cli_tls_opt(opt, arg);
	}
}

bool nd_cli_tls_opt(int opt, const char *arg)
{
	switch (opt) {
	case ND_CLI_OPT_TLS_CERT:
		nd_cli_tls_cert = arg;
		return true;
	case ND_CLI_OPT_TLS_KEY:
		nd_cli_tls_key = arg;
		return true;
	case ND_CLI_OPT_TLS_CA:
		nd_cli_tls_ca = arg;
		return true;
	default:
		return false;
	}
}

/* ---- talking to the master ---- */

const char *nd_cli_token_file;

/* Why addr did not do as a master's address (why: the buffer). */
static const char *addr_why(const char *addr, char *why, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (!nd_parse_addr_why(addr, &ss, &len, why, size))
		snprintf(why, size, "'%s' (want HOST:PORT)", addr);
	return why;
}

static struct nd_client *connect_one(const char *addr, bool quiet,
				     struct nd_client *from);

/* The leader's address when c's master names another one as leading. */
static bool leader_elsewhere(struct nd_client *c, char *leader, size_t len)
{
	Noded__Frame f = NODED__FRAME__INIT, *reply = NULL;
	Noded__LeaderRequest lr = NODED__LEADER_REQUEST__INIT;
	bool moved = false;

	f.body_case = NODED__FRAME__BODY_LEADER;
	f.leader = &lr;
	if (!nd_client_call(c, &f, &reply, ND_CLI_CALL_TIMEOUT_MS) &&
	    reply->body_case == NODED__FRAME__BODY_LEADER_INFO &&
	    reply->leader_info->replicated && !reply->leader_info->is_leader &&
	    reply->leader_info->leader_address[0]) {
		snprintf(leader, len, "%s", reply->leader_info->leader_address);
		moved = true;
	}
	nd_frame_free(reply, NULL);
	return moved;
}

/*
 * --master: one address, or a list (HOST:PORT,HOST:PORT...: the masters of
 * a cluster). From a list the first that answers is taken, then asked who
 * leads, and the leader taken instead when it is another. A single
 * address is taken as it is; a follower's NOT_LEADER is followed by
 * nd_cli_call.
 */
bool nd_cli_stale;

/* The --master of the last nd_cli_connect: where a retry reconnects. */
static const char *last_master;

static struct nd_client *connect_list(const char *addr, bool quiet,
				      struct nd_client *from);

struct nd_client *nd_cli_connect(const char *addr)
{
	last_master = addr;
	return connect_list(addr, false, NULL);
}

/* from: a client whose TLS context and sessions to take (resuming with
 * a master it was connected to), or NULL. */
static struct nd_client *connect_list(const char *addr, bool quiet,
				      struct nd_client *from)
{
	char one[256], leader[256];
	struct nd_client *c = NULL, *l;
	const char *p = addr, *end;

	if (!strchr(addr, ','))
		return connect_one(addr, quiet, from);
	while (p && !c) {
		end = strchr(p, ',');
		snprintf(one, sizeof(one), "%.*s",
			 (int)(end ? (size_t)(end - p) : strlen(p)), p);
		p = end ? end + 1 : NULL;
		c = connect_one(one, quiet || p != NULL, from);
	}
	if (c && !nd_cli_stale && leader_elsewhere(c, leader, sizeof(leader)) &&
	    (l = connect_one(leader, true, c)))
		nd_client_replace(c, l);
	return c;
}

static struct nd_client *connect_one(const char *addr, bool quiet,
				     struct nd_client *from)
{
	char why[512];
	const char *path = nd_cli_token_file ? nd_cli_token_file
					     : getenv("NODED_TOKEN_FILE");
	struct nd_client_opts opts = { 0 };
	struct nd_client *c;
	uint8_t *token = NULL;
	int r;

	if (path && *path && nd_auth_read_token(path, &token, &opts.token_len))
		return NULL; /* it said why */
	opts.token = token;
	opts.tls_cert = nd_cli_tls_cert;
	opts.tls_key = nd_cli_tls_key;
	opts.tls_ca = nd_cli_tls_ca;
	opts.tls_from = from;
	r = nd_client_connect(&c, addr, &opts);
	free(token);
	if (!r)
		return c;
	if (quiet)
		return NULL;
	if (r == ND_ETLS || r == ND_ETLSPLAIN) {
		fprintf(stderr, "noded: TLS with the master %s failed: %s\n",
			addr, nd_client_last_error());
		return NULL;
	}
	if (r == ND_EREMOTE && *nd_client_last_error()) {
		fprintf(stderr, "noded: the master %s refused us: %s\n", addr,
			nd_client_last_error());
		return NULL;
	}
	if (r == ND_EAUTH)
		fprintf(stderr, "noded: the master %s %s\n", addr, token ?
			"did not accept our token (is --token-file the "
			"master's?)" : "requires a token: give --token-file "
			"FILE (or set NODED_TOKEN_FILE)");
	else if (r == ND_EAUTHNOPROOF)
		fprintf(stderr, "noded: the master %s did not prove it holds "
			"the token (it asked for none): not sending it "
			"anything (is it the master? is --token-file meant "
			"for it?)\n", addr);
	else if (r == ND_EAUTHBADPROOF)
		fprintf(stderr, "noded: the master %s did not prove it holds "
			"our token (its proof does not match): not sending it "
			"anything (is --token-file the master's? is it the "
			"master?)\n", addr);
	else if (r == ND_EADDR || r == -EAGAIN)
		fprintf(stderr, "noded: bad master address %s\n",
			addr_why(addr, why, sizeof(why)));
	else
		fprintf(stderr, "noded: cannot reach the master %s: %s%s\n",
			addr, nd_strerror(r),
			r == -ECONNREFUSED ? " (is `noded master` running "
					     "there? see --master)" : "");
	return NULL;
}

const char *nd_cli_error_text(int status, const Noded__Frame *f)
{
	if (status == ND_EREMOTE && f &&
	    f->body_case == NODED__FRAME__BODY_ERROR && f->error) {
		const ProtobufCEnumValue *v;

		if (f->error->message && f->error->message[0])
			return f->error->message;
		v = protobuf_c_enum_descriptor_get_value(
			&noded__error_code__descriptor, f->error->code);
		return v ? v->name : "error without a message";
	}
	if (status == -ECONNRESET || status == ND_ECLOSED)
		return "the master closed the connection";
	return nd_strerror(status ? status : ND_EPROTO);
}

/* May req be sent again when its answer was lost? A read, or a submit
 * with a session (the master answers a resent one with its first tasks). */
static bool resendable(const Noded__Frame *req)
{
	switch (req->body_case) {
	case NODED__FRAME__BODY_SUBMIT:
		return req->submit->session != 0;
	case NODED__FRAME__BODY_GET_TASK:
	case NODED__FRAME__BODY_LIST_TASKS:
	case NODED__FRAME__BODY_LIST_NODES:
	case NODED__FRAME__BODY_LEADER:
		return true;
	default:
		return false;
	}
}

/* Lost to a leader change or a master going (the connection, or an
 * UNAVAILABLE: it may or may not have happened; a NOT_LEADER while the
 * cluster elects, naming none)? */
static bool transient(int r, const Noded__Frame *reply)
{
	if (r == -ECONNRESET || r == ND_ECLOSED || r == -EPIPE)
		return true;
	return r == ND_EREMOTE && reply &&
	       reply->body_case == NODED__FRAME__BODY_ERROR &&
	       (reply->error->code == NODED__ERROR_CODE__UNAVAILABLE ||
		(reply->error->code == NODED__ERROR_CODE__NOT_LEADER &&
		 !reply->error->leader[0]));
}

/* The retries of a resendable request: about 10 s, enough for an
 * election (a second or two) and a master's restart. */
#define RESEND_TRIES 40
#define RESEND_PAUSE_MS 250

int nd_cli_call(struct nd_client *c, const Noded__Frame *req,
		Noded__Frame__BodyCase want, const char *what,
		Noded__Frame **reply)
{
	int r = nd_client_call(c, req, reply, ND_CLI_CALL_TIMEOUT_MS);

	for (int t = 0; t < RESEND_TRIES && last_master && resendable(req) &&
	     transient(r, *reply); t++) {
		struct nd_client *fresh;

		nd_frame_free(*reply, NULL);
		*reply = NULL;
		usleep(RESEND_PAUSE_MS * 1000);
		fresh = connect_list(last_master, true, c);
		if (!fresh)
			continue;
		nd_client_replace(c, fresh);
		r = nd_client_call(c, req, reply, ND_CLI_CALL_TIMEOUT_MS);
	}
	/* A follower names the leader: asked there instead (a follower
	 * applies nothing, so nothing was done twice), a few hops at most
	 * while the cluster elects. */
	for (int hop = 0; hop < 3 && r == ND_EREMOTE && *reply &&
	     (*reply)->body_case == NODED__FRAME__BODY_ERROR &&
	     (*reply)->error->code == NODED__ERROR_CODE__NOT_LEADER &&
	     (*reply)->error->leader[0]; hop++) {
		if (nd_client_follow_leader(c, *reply, 0))
			break;
		nd_frame_free(*reply, NULL);
		*reply = NULL;
		r = nd_client_call(c, req, reply, ND_CLI_CALL_TIMEOUT_MS);
	}
	if (!r && (*reply)->body_case == want)
		return 0;
	if (!r)
		fprintf(stderr, "noded: %s: the master answered with '%s'\n",
			what, nd_frame_method_name((*reply)->body_case));
	else
		fprintf(stderr, "noded: %s: %s\n", what,
			nd_cli_error_text(r, *reply));
	nd_frame_free(*reply, NULL);
	*reply = NULL;
	return ND_CLI_EXIT_FAIL;
}

int nd_cli_request(const char *master, const Noded__Frame *req,
		   Noded__Frame__BodyCase want, const char *what,
		   Noded__Frame **reply)
{
	struct nd_client *c = nd_cli_connect(master);
	int r;

	*reply = NULL;
	if (!c)
		return ND_CLI_EXIT_FAIL;
	r = nd_cli_call(c, req, want, what, reply);
	nd_client_close(c);
	return r;
}

void nd_cli_keepalive(struct nd_client *c, int64_t *last_ms)
{
	Noded__Frame f = NODED__FRAME__INIT;
	Noded__PingRequest p = NODED__PING_REQUEST__INIT;
	int64_t now = (int64_t)nd_mono_ms();

	if (!*last_ms)
		*last_ms = now; /* the stream's request was just sent */
	if (now - *last_ms < ND_CLI_KEEPALIVE_MS)
		return;
	*last_ms = now;
	f.body_case = NODED__FRAME__BODY_PING;
	f.ping = &p;
	nd_client_start(c, &f, NULL, NULL);
}

bool nd_cli_task_id(const char *s, uint64_t *id)
{
	return nd_cli_uint("the task ID", s, 1, UINT64_MAX, id);
}

/* ---- terminal output of a task ---- */

int nd_cli_sink_init(struct nd_cli_sink *s, FILE *out, FILE *err,
		     const char *prefix)
{
	memset(s, 0, sizeof(*s));
	s->out = out;
	s->err = err;
	if (prefix) {
		s->prefix = strdup(prefix);
		if (!s->prefix)
			return -ENOMEM;
	}
	return 0;
}

int nd_cli_sink_set_prefix(struct nd_cli_sink *s, const char *prefix)
{
	char *p;

	if (!s->prefix)
		return 0;
	p = strdup(prefix);
	if (!p)
		return -ENOMEM;
	free(s->prefix);
	s->prefix = p;
	return 0;
}

static int put(FILE *f, const void *p, size_t n)
{
	return n && fwrite(p, 1, n, f) != n ? -EIO : 0;
}

/* Writes "PREFIX: " + the partial line + data[0..n) (+ "\n") and empties
 * the partial line. */
static int emit(struct nd_cli_sink *s, FILE *f, struct nd_buf *p,
		const char *data, size_t n, bool nl)
{
	int r = 0;

	if (fprintf(f, "%s: ", s->prefix) < 0)
		r = -EIO;
	if (!r)
		r = put(f, p->data, p->len);
	if (!r)
		r = put(f, data, n);
	if (!r && nl)
		r = put(f, "\n", 1);
	p->len = 0;
	return r;
}

int nd_cli_sink_write(struct nd_cli_sink *s, uint32_t fd, const void *data,
		      size_t len)
{
	FILE *f = fd == 2 ? s->err : s->out;
	struct nd_buf *p = &s->part[fd == 2];
	const char *d = data, *nl;
	int r;

	if (!s->prefix)
		return put(f, d, len);
	while (len && (nl = memchr(d, '\n', len))) {
		size_t n = (size_t)(nl - d) + 1;

		r = emit(s, f, p, d, n, false);
		if (r)
			return r;
		d += n;
		len -= n;
	}
	/* An endless line is cut rather than kept whole in memory. */
	while (p->len + len > ND_CLI_LINE_MAX) {
		size_t n = ND_CLI_LINE_MAX - p->len;

		r = emit(s, f, p, d, n, true);
		if (r)
			return r;
		d += n;
		len -= n;
	}
	if (!len)
		return 0;
	return nd_buf_append(p, d, len);
}

int nd_cli_sink_flush(struct nd_cli_sink *s)
{
	int r = 0, r2;

	for (int i = 0; i < 2; i++) {
		if (!s->prefix || !s->part[i].len)
			continue;
		r2 = emit(s, i ? s->err : s->out, &s->part[i], "", 0, true);
		if (!r)
			r = r2;
	}
	return r;
}

void nd_cli_sink_free(struct nd_cli_sink *s)
{
	nd_buf_free(&s->part[0]);
	nd_buf_free(&s->part[1]);
	free(s->prefix);
	memset(s, 0, sizeof(*s));
}

bool nd_cli_no_more_args(const char *prog, int argc, char **argv)
{
	if (optind >= argc)
		return true;
	fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
	return false;
}
