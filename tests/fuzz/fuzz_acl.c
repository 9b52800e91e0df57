/*
 * libFuzzer target: arbitrary bytes as an --acl policy file (rpc/acl.c).
 * A file that parses is then asked a few decisions; one that does not
 * must say FILE:LINE. Any crash, sanitizer report or leak is a bug.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/acl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct nd_acl_who who[] = {
		{ ND_TLS_ROLE_CLIENT, "alice", false },
		{ ND_TLS_ROLE_WORKER, "web1", true },
		{ ND_TLS_ROLE_NONE, "", false },
	};
	const char *keys[] = { "rack" }, *values[] = { "b" };
	const struct nd_acl_object obj[] = {
		{ .kind = ND_ACL_OBJ_ANY },
		{ .kind = ND_ACL_OBJ_NODE, .name = "web1" },
		{ .kind = ND_ACL_OBJ_LABELS, .nlabels = 1, .keys = keys,
		  .values = values },
		{ .kind = ND_ACL_OBJ_KV, .name = "/a/b" },
		{ .kind = ND_ACL_OBJ_LOG, .name = "app" },
	};
	struct nd_acl *acl;
	char err[256];
	size_t i, j;
	int a;

	if (nd_acl_parse(&acl, (const char *)data, size, "f", err,
			 sizeof(err))) {
		if (strncmp(err, "f:", 2))
			abort(); /* every error names the file */
		return 0;
	}
	for (i = 0; i < sizeof(who) / sizeof(who[0]); i++)
		for (j = 0; j < sizeof(obj) / sizeof(obj[0]); j++)
			for (a = 0; a < ND_ACL_NACTIONS; a++)
				(void)nd_acl_allows(acl, &who[i], a, &obj[j]);
	nd_acl_free(acl);
	return 0;
}
