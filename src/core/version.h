/* What this build is: the release and, when it was built from a git
 * checkout, its commit (src/core/version.c, rebuilt on every make). */
#ifndef ND_CORE_VERSION_H
#define ND_CORE_VERSION_H

#define ND_VERSION "0.1.0"

/* The commit the binary was built from ("0123abcd4567", "-dirty"
 * appended when the tree had changes), or "" when unknown (a tarball). */
extern const char nd_build_commit[];

#endif
