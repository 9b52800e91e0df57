/* The build's commit: the Makefile passes ND_GIT_COMMIT to this file only
 * and compiles it on every build, so the value is never stale and nothing
 * else recompiles when the commit changes. */
#include "core/version.h"

#ifndef ND_GIT_COMMIT
#define ND_GIT_COMMIT ""
#endif

const char nd_build_commit[] = ND_GIT_COMMIT;
