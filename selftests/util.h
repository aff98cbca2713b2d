/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the spanalloc selftests: opening and mapping a heap,
 * the raw ioctls with every field spelled out, CPU pinning, byte checks.
 */
#ifndef SPANALLOC_SELFTEST_UTIL_H
#define SPANALLOC_SELFTEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/spanalloc.h>
/* one table per test program */
#define SPANALLOC_CLASS_TABLE sa_t_classes
#include <spanalloc-classtable.h>

#define SA_DEV "/dev/spanalloc"

/* The number of bytes of [p, p + n) that are not zero. */
static inline size_t sa_t_nonzero(const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t dirty = 0;

	for (size_t i = 0; i < n; i++)
		dirty += b[i] != 0;
	return dirty;
}

/* -errno of an ioctl, 0 on success. */
static inline int sa_t_ioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) < 0 ? -errno : 0;
}

static inline int sa_t_info(int fd, struct spanalloc_info *info)
{
	memset(info, 0, sizeof(*info));
	info->size = sizeof(*info);
	return sa_t_ioctl(fd, SPANALLOC_IOC_INFO, info);
}

/* Opens a heap and maps all of it; returns the fd or -errno. */
static inline int sa_t_open_mapped(void **map, size_t *len)
{
	struct spanalloc_info info;
	int fd = open(SA_DEV, O_RDWR | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = sa_t_info(fd, &info);
	if (r) {
		close(fd);
		return r;
	}
	*len = info.max_heap_limit;
	*map = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (*map == MAP_FAILED) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* Gets n spans of class sc; returns -errno or 0, *got the count. */
static inline int sa_t_get(int fd, unsigned int sc, struct spanalloc_span *out,
			   unsigned int n, unsigned int *got)
{
	struct spanalloc_exchange ex = {
		.size = sizeof(ex), .get_ptr = (uintptr_t)out,
		.get_count = n, .get_spanclass = sc,
	};
	int r = sa_t_ioctl(fd, SPANALLOC_IOC_EXCHANGE, &ex);

	if (got)
		*got = ex.get_done;
	return r;
}

static inline int sa_t_get1(int fd, unsigned int sc, struct spanalloc_span *out)
{
	return sa_t_get(fd, sc, out, 1, NULL);
}

/* Returns one span with op. */
static inline int sa_t_ret(int fd, uint64_t handle, unsigned int op)
{
	struct spanalloc_ret r = { .handle = handle, .op = op };
	struct spanalloc_exchange ex = {
		.size = sizeof(ex), .ret_ptr = (uintptr_t)&r, .ret_count = 1,
	};

	return sa_t_ioctl(fd, SPANALLOC_IOC_EXCHANGE, &ex);
}

static inline int sa_t_large(int fd, unsigned int npages, unsigned int flags,
			     struct spanalloc_span *out)
{
	struct spanalloc_large lg = {
		.size = sizeof(lg), .flags = flags, .npages = npages,
	};
	int r = sa_t_ioctl(fd, SPANALLOC_IOC_ALLOC_LARGE, &lg);

	*out = lg.span;
	return r;
}

static inline int sa_t_stats(int fd, struct spanalloc_stats *st,
			     struct spanalloc_class_stats *cs)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	if (cs) {
		st->classes_ptr = (uintptr_t)cs;
		st->classes_count = SPANALLOC_NUM_SPANCLASSES;
	}
	return sa_t_ioctl(fd, SPANALLOC_IOC_STATS, st);
}

/* ADOPT of [addr, addr + len) with n spans; -errno or 0, *released set. */
static inline int sa_t_adopt(int fd, uintptr_t addr, size_t len,
			     struct spanalloc_adopt_span *d, uint32_t n,
			     uint64_t *released)
{
	struct spanalloc_adopt ad = {
		.size = sizeof(ad), .addr = addr, .len = len,
		.spans_ptr = (uintptr_t)d, .span_count = n,
	};
	int r = sa_t_ioctl(fd, SPANALLOC_IOC_ADOPT, &ad);

	if (released)
		*released = ad.released;
	return r;
}

static inline int sa_t_pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? -errno : 0;
}

static inline void sa_t_unpin(void)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	for (int i = 0; i < CPU_SETSIZE; i++)
		CPU_SET(i, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* Writes a string to a sysfs/procfs file; 0 or -errno. */
static inline int sa_t_write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY), r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		r = -errno;
	close(fd);
	return r;
}

static inline long sa_t_read_long(const char *path)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 10) : -1;
}

/* All f has to give, NUL-ended, in memory from malloc (NULL if none). */
static inline char *sa_t_read_all(FILE *f)
{
	size_t len = 0, cap = 1 << 16, n;
	char *buf = malloc(cap);

	if (!buf)
		return NULL;
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 4096) {
			char *more = realloc(buf, cap *= 2);

			if (!more)
				break;
			buf = more;
		}
	}
	buf[len] = 0;
	return buf;
}

/* The whole of a file (procfs and tracefs files have no size), or NULL. */
static inline char *sa_t_slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;

	if (!f)
		return NULL;
	buf = sa_t_read_all(f);
	fclose(f);
	return buf;
}

/* What cmd (run by sh) printed, or NULL if it failed (it is said on stderr). */
static inline char *sa_t_run(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	char *buf;

	if (!p)
		return NULL;
	buf = sa_t_read_all(p);
	if (pclose(p) && buf) {
		fprintf(stderr, "%s: %s\n", cmd, buf);
		free(buf);
		buf = NULL;
	}
	return buf;
}

/* build/DIR/NAME, beside this test's build/selftests. */
static inline void sa_t_build_path(char *path, size_t size, const char *rel)
{
	char self[512];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	self[n > 0 ? n : 0] = 0;
	slash = strrchr(self, '/');
	if (slash)
		*slash = 0;
	snprintf(path, size, "%s/../%s", self, rel);
}

static inline unsigned int sa_t_class_pages(unsigned int sc)
{
	return sa_t_classes[sc >> 1].npages;
}

#endif
