/*
 * noded tls: the certificates of a cluster, made with libcrypto alone.
 *
 *   noded tls ca create [--dir D] [--cluster NAME] [--days N]
 *       D/ca.crt, D/ca.key (0600): a self-signed CA for cluster NAME (its
 *       subject's OU), EC P-256, default 3650 days.
 *   noded tls cert create --master|--worker|--client NAME [--ca-dir D]
 *       [--out-dir D] [--days N] [--host H]...
 *       OUT/ROLE-NAME.crt and OUT/ROLE-NAME.key (0600), signed by the CA
 *       in D, default 825 days, with the DNS names tls/tls.h describes:
 *       master.C.noded and NAME.master.C.noded (and each --host, a DNS
 *       name or an IP address; default NAME, localhost, 127.0.0.1, ::1);
 *       worker.C.noded and NAME.worker.C.noded; NAME.client.C.noded.
 *       --days 0 makes a certificate already expired (to test with).
 *
 * Existing files are never overwritten (O_EXCL): a key is not lost by a
 * command run twice.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "cli/cli.h"
#include "tls/tls.h"

#define MAX_HOSTS 32

static void tls_usage(FILE *f)
{
	fprintf(f,
		"usage: noded tls ca create [--dir DIR] [--cluster NAME] "
		"[--days N]\n"
		"       noded tls cert create --master|--worker|--client NAME\n"
		"                  [--ca-dir DIR] [--out-dir DIR] [--days N] "
		"[--host HOST]...\n"
		"  --dir DIR              where the CA goes: ca.crt, ca.key\n"
		"                         (default: .)\n"
		"  --cluster NAME         the cluster's name, in every certificate\n"
		"                         (default: noded)\n"
		"  --days N               validity (CA 3650, others 825; 0: already\n"
		"                         expired, to test with)\n"
		"  --master NAME          a master's certificate (role SANs\n"
		"                         master.CLUSTER.noded and\n"
		"                         NAME.master.CLUSTER.noded)\n"
		"  --worker NAME          a worker's (worker.CLUSTER.noded and\n"
		"                         NAME.worker.CLUSTER.noded)\n"
		"  --client NAME          a client's (NAME.client.CLUSTER.noded)\n"
		"  --ca-dir DIR           the CA to sign with (default: .)\n"
		"  --out-dir DIR          where ROLE-NAME.crt and ROLE-NAME.key\n"
		"                         go (default: .)\n"
		"  --host HOST            a master's host name or address, also\n"
		"                         in its SANs; repeatable (default: NAME,\n"
		"                         localhost, 127.0.0.1, ::1)\n"
		"Keys are EC P-256, written 0600; existing files are kept (the\n"
		"command fails).\n");
}

static void ssl_fail(const char *what)
{
	char buf[256];

	ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
	fprintf(stderr, "noded tls: %s: %s\n", what, buf);
	ERR_clear_error();
}

/* Writes PEM of a key (0600) or a certificate (0644) to path, which must
 * not exist. 0 or -1 (said why). */
static int write_pem(const char *path, EVP_PKEY *key, X509 *x)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		      key ? 0600 : 0644);
	FILE *f;
	int ok;

	if (fd < 0) {
		fprintf(stderr, "noded tls: %s: %s%s\n", path, strerror(errno),
			errno == EEXIST ? " (not overwritten: remove it "
			"first)" : "");
		return -1;
	}
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(path);
		return -1;
	}
	ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
		 : PEM_write_X509(f, x);
	if (fclose(f) || !ok) {
		fprintf(stderr, "noded tls: cannot write %s\n", path);
		unlink(path);
		return -1;
	}
	return 0;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!e || !X509_add_ext(x, e, -1)) {
		X509_EXTENSION_free(e);
		return -1;
	}
	X509_EXTENSION_free(e);
	return 0;
}

/* A certificate for key with subject's fields, valid days from now (0:
 * expired a second ago); self-signed when issuer is NULL. */
static X509 *new_cert(EVP_PKEY *key, const char *cluster, const char *cn,
		      unsigned days, X509 *issuer)
{
	X509 *x = X509_new();
	X509_NAME *n;
	unsigned char serial[16];
	BIGNUM *bn = NULL;

	if (!x || RAND_bytes(serial, sizeof(serial)) != 1)
		goto err_free;
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    !X509_set_version(x, 2))
		goto err_free;
	/* a little before now: clocks differ */
	X509_gmtime_adj(X509_getm_notBefore(x), days ? -300 : -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), days ? (long)days * 86400 : -1);
	n = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8,
					(const unsigned char *)"noded", -1, -1,
					0) ||
	    !X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8,
					(const unsigned char *)cluster, -1, -1,
					0) ||
	    !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
					    : n) ||
	    !X509_set_pubkey(x, key))
		goto err_free;
	BN_free(bn);
	return x;

err_free:
	BN_free(bn);
	X509_free(x);
	return NULL;
}

static bool name_ok(const char *what, const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= ND_TLS_NAME_MAX - 1 || s[0] == '-' || s[n - 1] == '-')
		goto bad;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-'))
			goto bad;
	return true;
bad:
	fprintf(stderr, "noded tls: %s '%s' must be 1 to %d letters, digits "
		"or '-' (a DNS label)\n", what, s, ND_TLS_NAME_MAX - 2);
	return false;
}

static int ca_create(const char *dir, const char *cluster, unsigned days)
{
	char crt[4096], keyp[4096], cn[128];
	EVP_PKEY *key;
	X509 *x = NULL;
	int ret = ND_CLI_EXIT_FAIL;

	if (!name_ok("--cluster", cluster))
		return ND_CLI_EXIT_USAGE;
	snprintf(crt, sizeof(crt), "%s/ca.crt", dir);
	snprintf(keyp, sizeof(keyp), "%s/ca.key", dir);
	snprintf(cn, sizeof(cn), "noded CA %s", cluster);
	if (mkdir(dir, 0700) && errno != EEXIST) {
		fprintf(stderr, "noded tls: %s: %s\n", dir, strerror(errno));
		return ND_CLI_EXIT_FAIL;
	}
	key = EVP_EC_gen("P-256");
	if (!key) {
		ssl_fail("EC key");
		return ND_CLI_EXIT_FAIL;
	}
	x = new_cert(key, cluster, cn, days, NULL);
	if (!x || add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") ||
	    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    add_ext(x, x, NID_subject_key_identifier, "hash") ||
	    !X509_sign(x, key, EVP_sha256())) {
		ssl_fail("CA certificate");
		goto err_free;
	}
	if (write_pem(keyp, key, NULL))
		goto err_free;
	if (write_pem(crt, NULL, x)) {
		unlink(keyp);
		goto err_free;
	}
	printf("%s\n%s\n", crt, keyp);
	ret = ND_CLI_EXIT_OK;
err_free:
	X509_free(x);
	EVP_PKEY_free(key);
	return ret;
}

/* Loads PEM from path: a certificate (x) or a key (k). */
static int load(const char *path, X509 **x, EVP_PKEY **k)
{
	FILE *f = fopen(path, "r");

	if (!f) {
		fprintf(stderr, "noded tls: %s: %s (make the CA first: noded "
			"tls ca create)\n", path, strerror(errno));
		return -1;
	}
	if (x)
		*x = PEM_read_X509(f, NULL, NULL, NULL);
	else
		*k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (x ? !*x : !*k) {
		ssl_fail(path);
		return -1;
	}
	return 0;
}

/* The cluster of a CA we made: its subject's OU. */
static int ca_cluster(X509 *ca, char *buf, size_t size)
{
	X509_NAME *n = X509_get_subject_name(ca);
	int i = X509_NAME_get_index_by_NID(n, NID_organizationalUnitName, -1);
	ASN1_STRING *s;

	if (i < 0)
		return -1;
	s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
	if (!s || ASN1_STRING_length(s) <= 0 ||
	    (size_t)ASN1_STRING_length(s) >= size)
		return -1;
	memcpy(buf, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
	buf[ASN1_STRING_length(s)] = '\0';
	return 0;
}

/* Appends "DNS:h" or "IP:h" to the SAN list. */
static void san_host(char *san, size_t size, const char *h)
{
	unsigned char a[16];
	size_t n = strlen(san);
	bool ip = inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;

	snprintf(san + n, size - n, ",%s:%s", ip ? "IP" : "DNS", h);
}

static int cert_create(const char *role, const char *name, const char *ca_dir,
		       const char *out_dir, unsigned days,
		       const char *const *hosts, size_t nhosts)
{
	static const char *const def_hosts[] = { "localhost", "127.0.0.1",
						 "::1" };
	char path[4096], keyp[4096], cluster[ND_TLS_NAME_MAX], san[4096];
	char cn[160];
	X509 *ca = NULL, *x = NULL;
	EVP_PKEY *cakey = NULL, *key = NULL;
	int ret = ND_CLI_EXIT_FAIL;

	if (!name_ok("NAME", name))
		return ND_CLI_EXIT_USAGE;
	snprintf(path, sizeof(path), "%s/ca.crt", ca_dir);
	if (load(path, &ca, NULL))
		return ND_CLI_EXIT_FAIL;
	snprintf(path, sizeof(path), "%s/ca.key", ca_dir);
	if (load(path, NULL, &cakey))
		goto err_free;
	if (ca_cluster(ca, cluster, sizeof(cluster))) {
		fprintf(stderr, "noded tls: %s/ca.crt names no cluster (made "
			"by noded tls ca create?)\n", ca_dir);
		goto err_free;
	}
	if (!strcmp(role, "client"))
		snprintf(san, sizeof(san), "DNS:%s.client.%s.noded", name,
			 cluster);
	else
		snprintf(san, sizeof(san), "DNS:%s.%s.noded,DNS:%s.%s.%s.noded",
			 role, cluster, name, role, cluster);
	if (!strcmp(role, "master")) {
		if (!nhosts) {
			san_host(san, sizeof(san), name);
			for (size_t i = 0; i < 3; i++)
				san_host(san, sizeof(san), def_hosts[i]);
		}
		for (size_t i = 0; i < nhosts; i++)
			san_host(san, sizeof(san), hosts[i]);
	}
	snprintf(cn, sizeof(cn), "%s %s", role, name);
	key = EVP_EC_gen("P-256");
	if (!key) {
		ssl_fail("EC key");
		goto err_free;
	}
	x = new_cert(key, cluster, cn, days, ca);
	if (!x || add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(x, ca, NID_key_usage, "critical,digitalSignature") ||
	    add_ext(x, ca, NID_ext_key_usage, "serverAuth,clientAuth") ||
	    add_ext(x, ca, NID_subject_alt_name, san) ||
	    add_ext(x, ca, NID_subject_key_identifier, "hash") ||
	    add_ext(x, ca, NID_authority_key_identifier, "keyid") ||
	    !X509_sign(x, cakey, EVP_sha256())) {
		ssl_fail("certificate");
		goto err_free;
	}
	if (mkdir(out_dir, 0700) && errno != EEXIST) {
		fprintf(stderr, "noded tls: %s: %s\n", out_dir, strerror(errno));
		goto err_free;
	}
	snprintf(keyp, sizeof(keyp), "%s/%s-%s.key", out_dir, role, name);
	snprintf(path, sizeof(path), "%s/%s-%s.crt", out_dir, role, name);
	if (write_pem(keyp, key, NULL))
		goto err_free;
	if (write_pem(path, NULL, x)) {
		unlink(keyp);
		goto err_free;
	}
	printf("%s\n%s\n", path, keyp);
	ret = ND_CLI_EXIT_OK;
err_free:
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(cakey);
	return ret;
}

int nd_cli_tls(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "cluster", required_argument, NULL, 'c' },
		{ "days", required_argument, NULL, 'D' },
		{ "master", required_argument, NULL, 'M' },
		{ "worker", required_argument, NULL, 'W' },
		{ "client", required_argument, NULL, 'C' },
		{ "ca-dir", required_argument, NULL, 'a' },
		{ "out-dir", required_argument, NULL, 'o' },
		{ "host", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *dir = ".", *cluster = "noded", *ca_dir = ".";
	const char *out_dir = ".", *role = NULL, *name = NULL;
	const char *hosts[MAX_HOSTS];
	size_t nhosts = 0;
	bool days_set = false, ca;
	unsigned days = 0;
	uint64_t v;
	int o;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		tls_usage(stdout);
		return ND_CLI_EXIT_OK;
	}
	if (argc < 3 || strcmp(argv[2], "create") ||
	    (strcmp(argv[1], "ca") && strcmp(argv[1], "cert"))) {
		tls_usage(stderr);
		return ND_CLI_EXIT_USAGE;
	}
	ca = !strcmp(argv[1], "ca");
	argc -= 2;
	argv += 2;
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'd':
			dir = optarg;
			break;
		case 'c':
			cluster = optarg;
			break;
		case 'D':
			if (!nd_cli_uint("--days", optarg, 0, 36500, &v))
				return ND_CLI_EXIT_USAGE;
			days = (unsigned)v;
			days_set = true;
			break;
		case 'M':
		case 'W':
		case 'C':
			if (role) {
				fprintf(stderr, "noded tls: one of --master, "
					"--worker, --client\n");
				return ND_CLI_EXIT_USAGE;
			}
			role = o == 'M' ? "master" : o == 'W' ? "worker" :
			       "client";
			name = optarg;
			break;
		case 'a':
			ca_dir = optarg;
			break;
		case 'o':
			out_dir = optarg;
			break;
		case 'H':
			if (nhosts == MAX_HOSTS) {
				fprintf(stderr, "noded tls: at most %d --host\n",
					MAX_HOSTS);
				return ND_CLI_EXIT_USAGE;
			}
			hosts[nhosts++] = optarg;
			break;
		case 'h':
			tls_usage(stdout);
			return ND_CLI_EXIT_OK;
		default:
			tls_usage(stderr);
			return ND_CLI_EXIT_USAGE;
		}
	}
	if (!nd_cli_no_more_args("noded tls", argc, argv))
		return ND_CLI_EXIT_USAGE;
	if (ca) {
		if (role || nhosts) {
			fprintf(stderr, "noded tls ca create: --master, "
				"--worker, --client and --host are for tls "
				"cert create\n");
			return ND_CLI_EXIT_USAGE;
		}
		return ca_create(dir, cluster, days_set ? days : 3650);
	}
	if (!role) {
		fprintf(stderr, "noded tls cert create: which certificate? "
			"--master NAME, --worker NAME or --client NAME\n");
		return ND_CLI_EXIT_USAGE;
	}
	if (nhosts && strcmp(role, "master")) {
		fprintf(stderr, "noded tls cert create: --host is for a "
			"master's certificate\n");
		return ND_CLI_EXIT_USAGE;
	}
	return cert_create(role, name, ca_dir, out_dir, days_set ? days : 825,
			   hosts, nhosts);
}
