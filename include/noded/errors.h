/*
 * noded error codes.
 *
 * Every action in noded returns 0 or a negative number: either a negative
 * errno (-ECONNRESET, -ETIMEDOUT, ...) passed through unchanged, or one of the
 * ND_E* codes below, which live above the errno range. nd_strerror() names
 * both. Predicates return bool; functions returning pointers return NULL.
 */
#ifndef NODED_ERRORS_H
#define NODED_ERRORS_H

/* X(name, value, message) */
#define ND_ERRNO_MAP(X)                                                       \
	X(ND_EFRAMETOOBIG, -4001, "frame length over the maximum")           \
	X(ND_EEMPTYFRAME, -4002, "frame length is zero")                      \
	X(ND_EBADFRAME, -4003, "frame is not a valid protobuf Frame")        \
	X(ND_EREMOTE, -4004, "the peer answered with an Error")               \
	X(ND_EPROTO, -4005, "protocol violation by the peer")                 \
	X(ND_EURING, -4006, "io_uring is not available")                      \
	X(ND_EADDR, -4007, "bad address (want HOST:PORT)")                    \
	X(ND_ECLOSED, -4008, "connection closed by the peer")                \
	X(ND_EAUTH, -4009, "token authentication failed")                   \
	X(ND_EAUTHNOPROOF, -4020, "the master did not prove it holds the "   \
	  "token (it asked for none): not trusted")                          \
	X(ND_EAUTHBADPROOF, -4021, "the master's proof does not match our "   \
	  "token (another token, or not the master): not trusted")            \
	X(ND_ETLS, -4130, "TLS failed (nd_client_last_error says why)")      \
	X(ND_ETLSPLAIN, -4131, "the server answered in plaintext: it does "  \
	  "not speak TLS on this port")

enum {
#define ND__ERR_ENUM(name, value, msg) name = (value),
	ND_ERRNO_MAP(ND__ERR_ENUM)
#undef ND__ERR_ENUM
};

/* Returns a static string for a negative errno or ND_E* code. */
const char *nd_strerror(int err);

#endif
