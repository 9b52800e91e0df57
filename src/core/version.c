/* The build's commit: the Makefile writes it to $(GEN)/commit.h, only
 * when it changed, so the value is never stale and nothing else
 * recompiles when the commit changes. */
#include "core/version.h"
#include "commit.h"

const char nd_build_commit[] = ND_GIT_COMMIT;
