#include <string.h>

#include "noded/errors.h"

const char *nd_strerror(int err)
{
	switch (err) {
#define ND__ERR_CASE(name, value, msg) \
	case name:                     \
		return msg;
		ND_ERRNO_MAP(ND__ERR_CASE)
#undef ND__ERR_CASE
	case 0:
		return "success";
	default:
		break;
	}
	if (err < 0 && err > -4000)
		return strerror(-err);
	return "unknown error";
}
