/* Token proofs with OpenSSL's libcrypto: see include/noded/auth.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "noded/auth.h"
#include "noded/errors.h"

int nd_auth_proof(const uint8_t *token, size_t token_len, const char *label,
		  const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
		  uint8_t out[ND_PROOF_LEN])
{
	size_t llen = strlen(label) + 1; /* with its NUL: a separator */
	size_t n = llen + alen + blen;
	unsigned int olen = 0;
	uint8_t *msg = malloc(n);
	int ret = 0;

	if (!msg)
		return -ENOMEM;
	memcpy(msg, label, llen);
	memcpy(msg + llen, a, alen);
	memcpy(msg + llen + alen, b, blen);
	if (!HMAC(EVP_sha256(), token, (int)token_len, msg, n, out, &olen) ||
	    olen != ND_PROOF_LEN)
		ret = ND_EAUTH;
	OPENSSL_cleanse(msg, n);
	free(msg);
	return ret;
}

bool nd_auth_check(const uint8_t *token, size_t token_len, const char *label,
		   const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
		   const uint8_t *proof, size_t proof_len)
{
	uint8_t want[ND_PROOF_LEN];
	bool ok;

	if (proof_len != ND_PROOF_LEN ||
	    nd_auth_proof(token, token_len, label, a, alen, b, blen, want))
		return false;
	ok = CRYPTO_memcmp(want, proof, ND_PROOF_LEN) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}

int nd_auth_nonce(uint8_t *buf, size_t n)
{
	while (n) {
		ssize_t r = getrandom(buf, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += r;
		n -= (size_t)r;
	}
	return 0;
}

int nd_auth_read_token(const char *path, uint8_t **token, size_t *len)
{
	struct stat st;
	uint8_t *buf = NULL;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "noded: token file %s: %s\n", path,
			strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "noded: token file %s is not a regular file\n",
			path);
		goto err;
	}
	if (st.st_mode & 077) {
		fprintf(stderr, "noded: token file %s is accessible by group or "
			"others (mode %03o); run: chmod 600 %s\n", path,
			(unsigned)(st.st_mode & 0777), path);
		goto err;
	}
	buf = malloc(ND_TOKEN_MAX + 2);
	if (!buf)
		goto err;
	n = read(fd, buf, ND_TOKEN_MAX + 2);
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n < ND_TOKEN_MIN || n > ND_TOKEN_MAX) {
		fprintf(stderr, "noded: token in %s must be %d to %d bytes "
			"(e.g. from: head -c 32 /dev/urandom | base64)\n", path,
			ND_TOKEN_MIN, ND_TOKEN_MAX);
		goto err;
	}
	close(fd);
	*token = buf;
	*len = (size_t)n;
	return 0;
err:
	free(buf);
	close(fd);
	return -EINVAL;
}
