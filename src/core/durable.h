/*
 * Small state files that must survive a crash whole: written to a temporary
 * name, fsync'd, renamed over the old one, and the directory fsync'd, so a
 * reader finds the old contents or the new, never a mix or nothing. These
 * block (write, two fsyncs): for start-up and rare events, not a shard's
 * hot path.
 */
#ifndef ND_CORE_DURABLE_H
#define ND_CORE_DURABLE_H

#include <stddef.h>
#include <sys/types.h>

/* Creates dir and its missing parents with mode (existing ones are left as
 * they are). 0, or -errno (-ENOTDIR when a component is a file). */
int nd_mkdir_p(const char *dir, mode_t mode);

/* Opens dir (O_DIRECTORY): the fd, or -errno. */
int nd_dir_open(const char *dir);

/* Replaces name in directory dirfd by len bytes of data, durably (see
 * above), with the given mode. 0, or -errno (the old file, if any, is
 * unchanged then; a leftover temporary is removed). */
int nd_durable_write(int dirfd, const char *name, const void *data,
		     size_t len, mode_t mode);

/* Like nd_durable_write, but only when name does not exist yet: -EEXIST
 * (and nothing changed) when it does, even when another process creates
 * it at the same moment. */
int nd_durable_create(int dirfd, const char *name, const void *data,
		      size_t len, mode_t mode);

/* Reads up to len - 1 bytes of name in dirfd into buf, NUL-terminated.
 * The byte count, or -errno (-ENOENT: no such file). */
ssize_t nd_small_read(int dirfd, const char *name, char *buf, size_t len);

#endif
