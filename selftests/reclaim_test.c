// SPDX-License-Identifier: GPL-2.0
/*
 * reclaim_test: free pages going back to the kernel. The release ioctl,
 * the background scavenger, and the shrinker under a memory cgroup's
 * memory.high. Residency is measured with mincore() over the heap's pages
 * and the process's RSS, never assumed.
 *
 * Needs /dev/spanalloc (run it through scripts/vm-run); says SKIP without.
 */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "kselftest_harness.h"
#include "util.h"

#define MIB (1UL << 20)
#define BIG_PAGES 4096U		/* 32 MiB of heap pages */

FIXTURE(heap) {
	int fd;
	void *map;
	size_t len;
};

FIXTURE_SETUP(heap)
{
	self->fd = sa_t_open_mapped(&self->map, &self->len);
	if (self->fd == -ENOENT)
		SKIP(return, "no " SA_DEV ": load spanalloc.ko (scripts/vm-run does)");
	ASSERT_LE(0, self->fd);
}

FIXTURE_TEARDOWN(heap)
{
	if (self->fd >= 0) {
		munmap(self->map, self->len);
		close(self->fd);
	}
}

#define SCAV_PARAM "/sys/module/spanalloc/parameters/scavenge_percent"

/*
 * A heap while the background scavenger is off, so that what the release
 * ioctl reports is all its own work.
 */
FIXTURE(quiet) {
	int fd;
	void *map;
	size_t len;
	long scav;
};

FIXTURE_SETUP(quiet)
{
	self->scav = sa_t_read_long(SCAV_PARAM);
	self->fd = sa_t_open_mapped(&self->map, &self->len);
	if (self->fd == -ENOENT)
		SKIP(return, "no " SA_DEV ": load spanalloc.ko (scripts/vm-run does)");
	ASSERT_LE(0, self->fd);
	ASSERT_LE(0, self->scav);
	ASSERT_EQ(0, sa_t_write_file(SCAV_PARAM, "0"));
}

FIXTURE_TEARDOWN(quiet)
{
	char val[24];

	if (self->fd >= 0) {
		munmap(self->map, self->len);
		close(self->fd);
	}
	if (self->scav >= 0) {
		snprintf(val, sizeof(val), "%ld", self->scav);
		sa_t_write_file(SCAV_PARAM, val);
	}
}

/* Bytes of [addr, addr + len) resident, by mincore(). */
static size_t sa_resident(uint64_t addr, size_t len)
{
	size_t psz = getpagesize(), n = len / psz, res = 0;
	unsigned char *vec = malloc(n);

	if (!vec || mincore((void *)(uintptr_t)addr, len, vec)) {
		free(vec);
		return SIZE_MAX;
	}
	for (size_t i = 0; i < n; i++)
		res += vec[i] & 1;
	free(vec);
	return res * psz;
}

static long sa_rss_bytes(void)
{
	long pages = -1, rss = -1;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = -1;
		fclose(f);
	}
	return rss < 0 ? -1 : rss * getpagesize();
}

static int sa_release(int fd, uint64_t *released)
{
	struct spanalloc_release rel = { .size = sizeof(rel) };
	int r = sa_t_ioctl(fd, SPANALLOC_IOC_RELEASE, &rel);

	*released = rel.released;
	return r;
}

/* A large span of npages, every byte written, then freed: dirty pages. */
static int sa_dirty_free_run(int fd, unsigned int npages, struct spanalloc_span *s)
{
	int r = sa_t_large(fd, npages, 0, s);

	if (r)
		return r;
	memset((void *)(uintptr_t)s->addr, 0x5a, (size_t)npages * SPANALLOC_PAGE_SIZE);
	return sa_t_ret(fd, s->handle, SPANALLOC_RET_EMPTY);
}

TEST_F(quiet, release_gives_free_pages_back_and_they_read_zero)
{
	size_t len = (size_t)BIG_PAGES * SPANALLOC_PAGE_SIZE;
	struct spanalloc_stats st;
	struct spanalloc_span s, again;
	long rss_before, rss_after;
	uint64_t released;
	const unsigned char *p;

	ASSERT_EQ(0, sa_dirty_free_run(self->fd, BIG_PAGES, &s));
	ASSERT_EQ(len, sa_resident(s.addr, len));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
	EXPECT_EQ(BIG_PAGES, st.pages_dirty);

	rss_before = sa_rss_bytes();
	ASSERT_EQ(0, sa_release(self->fd, &released));
	rss_after = sa_rss_bytes();
	EXPECT_EQ(len, released);
	EXPECT_EQ(0, sa_resident(s.addr, len));
	EXPECT_LE(rss_after + (long)(len - 2 * MIB), rss_before);
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
	EXPECT_EQ(0, st.pages_dirty);
	EXPECT_EQ(BIG_PAGES, st.pages_released);

	p = (const unsigned char *)(uintptr_t)s.addr;
	for (size_t i = 0; i < len; i += 4096 - 7)
		ASSERT_EQ(0, p[i]);
	/* clean pages: a span cut from them need not be zeroed */
	ASSERT_EQ(0, sa_t_large(self->fd, BIG_PAGES, 0, &again));
	EXPECT_EQ(s.addr, again.addr);
	EXPECT_EQ(0, again.needzero);
	/* nothing was left to release */
	ASSERT_EQ(0, sa_release(self->fd, &released));
	EXPECT_EQ(0, released);
}

TEST_F(quiet, release_leaves_memory_in_spans_alone)
{
	struct spanalloc_span keep[4], gone[4];
	unsigned int sc = SPANALLOC_SPANCLASS(20, 0), got, i;
	size_t span_len = (size_t)sa_t_class_pages(sc) * SPANALLOC_PAGE_SIZE;
	uint64_t released;

	/* interleave held and freed spans, so released runs have neighbours */
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(0, sa_t_get(self->fd, sc, &keep[i], 1, &got));
		ASSERT_EQ(0, sa_t_large(self->fd, 3, 0, &gone[i]));
		memset((void *)(uintptr_t)keep[i].addr, 0xa0 + i, span_len);
		memset((void *)(uintptr_t)gone[i].addr, 0xff, 3 * SPANALLOC_PAGE_SIZE);
	}
	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, sa_t_ret(self->fd, gone[i].handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_release(self->fd, &released));
	EXPECT_EQ(4 * 3 * SPANALLOC_PAGE_SIZE, released);
	for (i = 0; i < 4; i++) {
		const unsigned char *p = (const unsigned char *)(uintptr_t)keep[i].addr;

		EXPECT_EQ(span_len, sa_resident(keep[i].addr, span_len));
		for (size_t j = 0; j < span_len; j++)
			ASSERT_EQ(0xa0 + i, p[j]);
		EXPECT_EQ(0, sa_resident(gone[i].addr, 3 * SPANALLOC_PAGE_SIZE));
	}
}

TEST_F(heap, release_rejects_bad_fields)
{
	struct spanalloc_release rel;

	memset(&rel, 0, sizeof(rel));
	rel.size = sizeof(rel);
	rel.flags = 1;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_RELEASE, &rel));
	rel.flags = 0;
	rel.released = 1;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_RELEASE, &rel));
	rel.released = 0;
	rel.size = 8;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_RELEASE, &rel));
	rel.size = sizeof(rel);
	EXPECT_EQ(-EFAULT, sa_t_ioctl(self->fd, SPANALLOC_IOC_RELEASE, (void *)8));
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_RELEASE, &rel));
}

TEST_F(quiet, release_skips_parts_that_are_no_longer_the_heap)
{
	size_t len = (size_t)BIG_PAGES * SPANALLOC_PAGE_SIZE, half = len / 2;
	struct spanalloc_span s;
	uint64_t released;
	void *other;

	ASSERT_EQ(0, sa_dirty_free_run(self->fd, BIG_PAGES, &s));
	/* something else now lives over the second half of the run */
	other = mmap((void *)(uintptr_t)(s.addr + half), half, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_NE(MAP_FAILED, other);
	memset(other, 0x33, half);
	/* and the first half was split by mprotect */
	ASSERT_EQ(0, mprotect((void *)(uintptr_t)s.addr, half / 2, PROT_READ));
	ASSERT_EQ(0, sa_release(self->fd, &released));
	/* both pieces of the first half, none of the second */
	EXPECT_EQ(half, released);
	EXPECT_EQ(0, sa_resident(s.addr, half));
	EXPECT_EQ(half, sa_resident(s.addr + half, half));
	for (size_t i = 0; i < half; i += 4093)
		ASSERT_EQ(0x33, ((unsigned char *)other)[i]);
}

TEST_F_TIMEOUT(heap, background_scavenger_releases_what_the_heap_no_longer_uses, 120)
{
	const char *param = SCAV_PARAM;
	size_t len = (size_t)BIG_PAGES * SPANALLOC_PAGE_SIZE, res = len;
	struct spanalloc_span s;
	int waited_ms = 0;

	if (sa_t_read_long(param) <= 0)
		SKIP(return, "the background scavenger is off (%s)", param);
	ASSERT_EQ(0, sa_dirty_free_run(self->fd, BIG_PAGES, &s));
	/* the scavenger keeps a 1 MiB floor plus 1/8 over recent use (0) */
	while (waited_ms < 60000) {
		res = sa_resident(s.addr, len);
		if (res <= 2 * MIB)
			break;
		usleep(100 * 1000);
		waited_ms += 100;
	}
	TH_LOG("resident after %d ms: %zu KiB of %zu", waited_ms, res >> 10, len >> 10);
	EXPECT_GE(2 * MIB, res);
}

/* --- the shrinker, in a memory cgroup with a tight memory.high ---------- */

#define CG_ROOT "/sys/fs/cgroup"

static int sa_cg_write(const char *dir, const char *file, const char *val)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return sa_t_write_file(path, val);
}

static long sa_cg_read(const char *dir, const char *file)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return sa_t_read_long(path);
}

/*
 * The child: joins the cgroup, makes 64 MiB of dirty free pages, tells the
 * parent, waits for it to squeeze the cgroup, then checks what was
 * released. Exit status: 0 pass, 1 setup failed, 2 nothing was released.
 */
static int sa_cg_child(const char *cg, int tell, int wait)
{
	size_t len = 2 * (size_t)BIG_PAGES * SPANALLOC_PAGE_SIZE;
	struct spanalloc_stats st;
	struct spanalloc_span s;
	size_t map_len;
	void *map;
	char c = 0;
	int fd;

	if (sa_cg_write(cg, "cgroup.procs", "0"))
		return 1;
	/* opened inside the cgroup: the heap is charged to it */
	fd = sa_t_open_mapped(&map, &map_len);
	if (fd < 0 || sa_dirty_free_run(fd, 2 * BIG_PAGES, &s))
		return 1;
	if (write(tell, &c, 1) != 1 || read(wait, &c, 1) != 1)
		return 1;
	if (sa_t_stats(fd, &st, NULL))
		return 1;
	fprintf(stderr, "# child: released %llu pages, %zu KiB still resident\n",
		(unsigned long long)st.pages_released,
		sa_resident(s.addr, len) >> 10);
	if (st.pages_released < BIG_PAGES || sa_resident(s.addr, len) > len / 2)
		return 2;
	return 0;
}

TEST_F_TIMEOUT(heap, shrinker_releases_free_pages_under_memory_high, 180)
{
	const char *param = SCAV_PARAM;
	long old = sa_t_read_long(param), cur, after;
	char cg[128], oldval[24], high[32];
	int to_parent[2], to_child[2], status;
	pid_t pid;
	char c;

	if (access(CG_ROOT "/cgroup.subtree_control", W_OK))
		SKIP(return, "no writable cgroup2 hierarchy at " CG_ROOT);
	if (sa_cg_write(CG_ROOT, "cgroup.subtree_control", "+memory"))
		SKIP(return, "the memory controller cannot be enabled");
	ASSERT_LE(0, old);
	snprintf(cg, sizeof(cg), CG_ROOT "/spanalloc-reclaim-%d", getpid());
	ASSERT_EQ(0, mkdir(cg, 0755));
	/* the background scavenger would release the pages first: stop it */
	ASSERT_EQ(0, sa_t_write_file(param, "0"));
	ASSERT_EQ(0, pipe(to_parent));
	ASSERT_EQ(0, pipe(to_child));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(sa_cg_child(cg, to_parent[1], to_child[0]));
	close(to_parent[1]);
	close(to_child[0]);
	if (read(to_parent[0], &c, 1) == 1) {
		cur = sa_cg_read(cg, "memory.current");
		TH_LOG("cgroup holds %ld KiB", cur >> 10);
		EXPECT_LE(64L << 20, cur);
		/* the write reclaims down to the new limit before it returns */
		snprintf(high, sizeof(high), "%ld", 16L << 20);
		EXPECT_EQ(0, sa_cg_write(cg, "memory.high", high));
		after = sa_cg_read(cg, "memory.current");
		TH_LOG("after memory.high=16M: %ld KiB", after >> 10);
		EXPECT_GE(24L << 20, after);
	}
	c = 0;
	EXPECT_EQ(1, write(to_child[1], &c, 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	snprintf(oldval, sizeof(oldval), "%ld", old);
	EXPECT_EQ(0, sa_t_write_file(param, oldval));
	EXPECT_EQ(0, rmdir(cg));
}

/*
 * The child: joins the cgroup, opens NH heaps and gets a span in each of
 * four arenas of each (span tables, bitmaps, span structs: kernel memory
 * only, no heap page is touched), reports memory.current, closes them all
 * and reports it again. Writes three longs to the pipe: before, with the
 * heaps, after.
 */
#define NH 32

static int sa_cg_meta_child(const char *cg, int tell)
{
	long v[3];
	int fds[NH];

	if (sa_cg_write(cg, "cgroup.procs", "0"))
		return 1;
	v[0] = sa_cg_read(cg, "memory.current");
	for (int i = 0; i < NH; i++) {
		void *map;
		size_t len;

		fds[i] = sa_t_open_mapped(&map, &len);
		if (fds[i] < 0)
			return 1;
		for (int a = 0; a < 4; a++) {
			struct spanalloc_span s;

			/* a large span fills one arena: the next one starts another */
			if (sa_t_large(fds[i], SPANALLOC_ARENA_SIZE / SPANALLOC_PAGE_SIZE,
				       SPANALLOC_LARGE_NOSCAN, &s))
				return 1;
		}
	}
	v[1] = sa_cg_read(cg, "memory.current");
	for (int i = 0; i < NH; i++)
		close(fds[i]);	/* the mappings keep the heaps: unmap too */
	return write(tell, v, 2 * sizeof(long)) == 2 * sizeof(long) ? 0 : 1;
}

TEST_F_TIMEOUT(heap, kernel_metadata_is_charged_to_the_owners_cgroup, 120)
{
	char cg[128];
	long v[2] = { 0, 0 }, after;
	int p[2], status;
	pid_t pid;

	if (access(CG_ROOT "/cgroup.subtree_control", W_OK))
		SKIP(return, "no writable cgroup2 hierarchy at " CG_ROOT);
	if (sa_cg_write(CG_ROOT, "cgroup.subtree_control", "+memory"))
		SKIP(return, "the memory controller cannot be enabled");
	snprintf(cg, sizeof(cg), CG_ROOT "/spanalloc-meta-%d", getpid());
	ASSERT_EQ(0, mkdir(cg, 0755));
	ASSERT_EQ(0, pipe(p));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(sa_cg_meta_child(cg, p[1]));
	close(p[1]);
	EXPECT_EQ(sizeof(v), read(p[0], v, sizeof(v)));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	/* the child has exited: its heaps are gone, and their charges */
	after = sa_cg_read(cg, "memory.current");
	TH_LOG("memory.current: %ld KiB before, %ld KiB with %d heaps of 4 arenas, %ld KiB after exit",
	       v[0] >> 10, v[1] >> 10, NH, after >> 10);
	/* each arena's span table alone is 64 KiB */
	EXPECT_LE(v[0] + (long)NH * 4 * 64 * 1024, v[1]);
	EXPECT_GT(1L << 20, after);
	EXPECT_EQ(0, rmdir(cg));
}

TEST_HARNESS_MAIN
