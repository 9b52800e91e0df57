/* A worker's kept identity: see node_id.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/durable.h"
#include "node/node_id.h"
#include "noded/auth.h"

#define ID_FILE "node-id"

int nd_state_dir_default(char *buf, size_t len)
{
	const char *sd = getenv("STATE_DIRECTORY");
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;

	if (sd && sd[0]) /* "DIR[:DIR...]": ours is the first */
		n = snprintf(buf, len, "%.*s", (int)strcspn(sd, ":"), sd);
	else if (geteuid() == 0)
		n = snprintf(buf, len, "/var/lib/noded");
	else if (xdg && xdg[0] == '/')
		n = snprintf(buf, len, "%s/noded", xdg);
	else if (home && home[0])
		n = snprintf(buf, len, "%s/.local/state/noded", home);
	else
		return -ENOENT;
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

void nd_node_id_hex(const uint8_t *id, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";

	if (len > ND_NODE_ID_LEN)
		len = ND_NODE_ID_LEN;
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hex[id[i] >> 4];
		out[2 * i + 1] = hex[id[i] & 15];
	}
	out[2 * len] = '\0';
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* 32 hex digits, then nothing but an optional newline. */
static int parse(const char *s, uint8_t id[ND_NODE_ID_LEN])
{
	for (size_t i = 0; i < ND_NODE_ID_LEN; i++) {
		int hi = unhex(s[2 * i]), lo = hi < 0 ? -1 : unhex(s[2 * i + 1]);

		if (lo < 0)
			return -EINVAL;
		id[i] = (uint8_t)(hi << 4 | lo);
	}
	s += 2 * ND_NODE_ID_LEN;
	return !*s || !strcmp(s, "\n") ? 0 : -EINVAL;
}

int nd_node_id_random(uint8_t id[ND_NODE_ID_LEN])
{
	static const uint8_t zero[ND_NODE_ID_LEN];

	if (nd_auth_nonce(id, ND_NODE_ID_LEN))
		return -EIO;
	return memcmp(id, zero, ND_NODE_ID_LEN) ? 0 : -EIO;
}

int nd_node_id_load(const char *dir, uint8_t id[ND_NODE_ID_LEN], char *err,
		    size_t errlen)
{
	char buf[2 * ND_NODE_ID_LEN + 8];
	ssize_t n;
	int dfd, ret;

	ret = nd_mkdir_p(dir, 0700);
	if (ret) {
		snprintf(err, errlen, "cannot create the state directory %s: "
			 "%s", dir, strerror(-ret));
		return ret;
	}
	dfd = nd_dir_open(dir);
	if (dfd < 0) {
		snprintf(err, errlen, "cannot open the state directory %s: %s",
			 dir, strerror(-dfd));
		return dfd;
	}
	n = nd_small_read(dfd, ID_FILE, buf, sizeof(buf));
	if (n >= 0) {
		ret = parse(buf, id);
		if (ret)
			snprintf(err, errlen, "%s/" ID_FILE " is not a node id "
				 "(32 hex digits); remove it to make a new one "
				 "(the master then sees a new worker)", dir);
		goto close_dir;
	}
	if (n != -ENOENT) {
		ret = (int)n;
		snprintf(err, errlen, "cannot read %s/" ID_FILE ": %s", dir,
			 strerror(-ret));
		goto close_dir;
	}
	ret = nd_node_id_random(id);
	if (ret) {
		snprintf(err, errlen, "no random bytes for a node id");
		goto close_dir;
	}
	nd_node_id_hex(id, ND_NODE_ID_LEN, buf);
	strcat(buf, "\n");
	ret = nd_durable_create(dfd, ID_FILE, buf, strlen(buf), 0600);
	if (ret == -EEXIST) {
		/* another worker on this directory made one first: it is
		 * the id of the directory, ours too */
		n = nd_small_read(dfd, ID_FILE, buf, sizeof(buf));
		ret = n < 0 ? (int)n : parse(buf, id);
	}
	if (ret)
		snprintf(err, errlen, "cannot write %s/" ID_FILE ": %s", dir,
			 strerror(-ret));
close_dir:
	close(dfd);
	return ret;
}
