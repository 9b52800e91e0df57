/*
 * Token authentication (a shared secret in a file on every node): the
 * HMAC-SHA256 challenge described at HelloReply in proto/noded.proto. Both
 * sides prove they hold the token; it never crosses the wire.
 */
#ifndef NODED_AUTH_H
#define NODED_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ND_NONCE_LEN 32
#define ND_PROOF_LEN 32
#define ND_TOKEN_MIN 16
#define ND_TOKEN_MAX 4096

/* out = HMAC-SHA256(token, label "\0" a b). 0, or ND_EAUTH on failure. */
int nd_auth_proof(const uint8_t *token, size_t token_len, const char *label,
		  const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
		  uint8_t out[ND_PROOF_LEN]);

/* Compares a received proof with the expected one in constant time. */
bool nd_auth_check(const uint8_t *token, size_t token_len, const char *label,
		   const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
		   const uint8_t *proof, size_t proof_len);

/* Fills buf with n random bytes (getrandom). 0 or -errno. */
int nd_auth_nonce(uint8_t *buf, size_t n);

/*
 * Reads a token file: its bytes minus one trailing newline. Refuses a file
 * readable or writable by group or others, or a token shorter than
 * ND_TOKEN_MIN or longer than ND_TOKEN_MAX, printing why. On success *token
 * (malloc'd) and *len are set and 0 is returned.
 */
int nd_auth_read_token(const char *path, uint8_t **token, size_t *len);

#endif
