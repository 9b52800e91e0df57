/* Durable small files: see durable.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/durable.h"

int nd_mkdir_p(const char *dir, mode_t mode)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);
	struct stat st;

	if (!len || len >= sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, dir, len + 1);
	for (char *p = path + 1; ; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;

		*p = '\0';
		if (mkdir(path, mode) && errno != EEXIST)
			return -errno;
		if (stat(path, &st))
			return -errno;
		if (!S_ISDIR(st.st_mode))
			return -ENOTDIR;
		*p = c;
		if (!c)
			return 0;
	}
}

int nd_dir_open(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes data into a new temporary file in dirfd, named for this process
 * (two writers never share one), synced: its name into tmp. 0 or -errno
 * (nothing left behind). */
static int write_tmp(int dirfd, const char *name, const void *data,
		     size_t len, mode_t mode, char tmp[NAME_MAX + 1])
{
	int fd, ret;

	if (snprintf(tmp, NAME_MAX + 1, ".%s.%d.tmp", name, (int)getpid()) >
	    NAME_MAX)
		return -ENAMETOOLONG;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	ret = write_all(fd, data, len);
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (ret)
		unlinkat(dirfd, tmp, 0);
	return ret;
}

int nd_durable_write(int dirfd, const char *name, const void *data,
		     size_t len, mode_t mode)
{
	char tmp[NAME_MAX + 1];
	int ret = write_tmp(dirfd, name, data, len, mode, tmp);

	if (ret)
		return ret;
	if (renameat(dirfd, tmp, dirfd, name)) {
		ret = -errno;
		unlinkat(dirfd, tmp, 0);
		return ret;
	}
	/* the rename itself is durable once the directory is */
	return fsync(dirfd) ? -errno : 0;
}

int nd_durable_create(int dirfd, const char *name, const void *data,
		      size_t len, mode_t mode)
{
	char tmp[NAME_MAX + 1];
	int ret = write_tmp(dirfd, name, data, len, mode, tmp);

	if (ret)
		return ret;
	/* a link, unlike a rename, never replaces: the first one wins */
	if (linkat(dirfd, tmp, dirfd, name, 0))
		ret = -errno;
	unlinkat(dirfd, tmp, 0);
	if (!ret && fsync(dirfd))
		ret = -errno;
	return ret;
}

ssize_t nd_small_read(int dirfd, const char *name, char *buf, size_t len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	size_t off = 0;

	if (fd < 0)
		return -errno;
	while (off + 1 < len) {
		ssize_t n = read(fd, buf + off, len - 1 - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = -errno;

			close(fd);
			return e;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	close(fd);
	buf[off] = '\0';
	return (ssize_t)off;
}
