/*
 * libFuzzer target: arbitrary bytes from a client into a TLS port, cut into
 * arbitrary chunks, through the real receive path with TLS under it
 * (nd_conn_on_recv -> OpenSSL over the connection's BIO -> handshake or
 * records -> rpc dispatch), then the real close path. Byte 0 as in
 * conn_harness.h, except that its high bit picks a plaintext port instead
 * of the token (so the ClientHello check of a plaintext port runs).
 *
 * The server's certificate is a fixed self-signed one (written to a
 * temporary file at start): what is fuzzed is the record path, not the
 * verification of a chain.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "rpc/server.h"
#include "tls/tls.h"
#include "conn_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char pem_crt[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBkzCCATigAwIBAgITBdRuMjBSmgmu7hZqfpXhkJM6jzAKBggqhkjOPQQDAjAP\n"
	"MQ0wCwYDVQQDDARmdXp6MCAXDTI2MTEzMDA2MDMwN1oYDzIxMjYxMTA2MDYwMzA3\n"
	"WjAPMQ0wCwYDVQQDDARmdXp6MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAESeoz\n"
	"ZOi9IhsnPZ0vBuIY3ugMk3025QeJHZVcFq0/AyU6NGnXaVWJL7oKXma6H97+ylWR\n"
	"SNR7PUzae7sYooKXDqNxMG8wHQYDVR0OBBYEFH89DF5pTKei36Z4wI2rKhIN5MOE\n"
	"MB8GA1UdIwQYMBaAFH89DF5pTKei36Z4wI2rKhIN5MOEMA8GA1UdEwEB/wQFMAMB\n"
	"Af8wHAYDVR0RBBUwE4IRbWFzdGVyLmZ1enoubm9kZWQwCgYIKoZIzj0EAwIDSQAw\n"
	"RgIhANRC6xqWlRxkc52gMC7rRS3+1c6Xjs8/50VFIKq6OQkZAiEAlR2Dh9Tqfp1a\n"
	"7Vjhbj1bNiKR/N9XUypHDTIY0MRDwxU=\n"
	"-----END CERTIFICATE-----\n";
static const char pem_key[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgiBB5AmH11YwWFaiH\n"
	"bRdl8LVpVdc+rCIOM9KAyKko6FChRANCAARJ6jNk6L0iGyc9nS8G4hje6AyTfTbl\n"
	"B4kdlVwWrT8DJTo0addpVYkvugpeZrof3v7KVZFI1Hs9TNp7uxiigpcO\n"
	"-----END PRIVATE KEY-----\n";

static struct nd_tls *server_tls(void)
{
	static struct nd_tls *tls;
	char crt[] = "/tmp/noded-fuzz-crt-XXXXXX", key[] = "/tmp/noded-fuzz-key-XXXXXX";
	struct nd_tls_files f = { .cert = crt, .key = key };
	int a, b;

	if (tls)
		return tls;
	a = mkstemp(crt);
	b = mkstemp(key);
	if (a < 0 || b < 0 ||
	    write(a, pem_crt, sizeof(pem_crt) - 1) != sizeof(pem_crt) - 1 ||
	    write(b, pem_key, sizeof(pem_key) - 1) != sizeof(pem_key) - 1)
		abort();
	close(a);
	close(b);
	if (nd_tls_open(&tls, &f, true))
		abort();
	unlink(crt);
	unlink(key);
	return tls;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nd_fuzz_conn_tls(&nd_rpc_server_ops, server_tls(), data, size);
	return 0;
}
