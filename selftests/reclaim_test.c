// SPDX-License-Identifier: GPL-2.0
/*
 * reclaim_test: free pages going back to the kernel. The release ioctl,
 * the background scavenger, and the shrinker under a memory cgroup's
 * memory.high. Residency is measured with mincore() over the heap's pages
 * and the process's RSS, never assumed.
 *
 * Needs /dev/spanalloc (run it through scripts/vm-run); says SKIP without.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
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

	/* 4 KiB pages: runs shorter than a huge page are released too */
	ASSERT_TRUE(!madvise(self->map, self->len, MADV_NOHUGEPAGE) || errno == EINVAL);
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
	rel.released = 1;	/* an out field: ignored on input */
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_RELEASE, &rel));
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
	struct spanalloc_stats st;
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
	/* what could not be released is counted as such, not as dirty */
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
	EXPECT_EQ(0, st.pages_dirty);
	EXPECT_EQ(BIG_PAGES / 2, st.pages_unreleasable);
	/* and is not tried again while nothing else is released */
	ASSERT_EQ(0, sa_release(self->fd, &released));
	EXPECT_EQ(0, released);
}

/* A heap moved by mremap is no longer where the heap was: nothing is zapped. */
TEST_F(quiet, release_leaves_a_moved_heap_alone)
{
	size_t len = (size_t)BIG_PAGES * SPANALLOC_PAGE_SIZE;
	struct spanalloc_stats st;
	struct spanalloc_span s;
	uint64_t released;
	unsigned char *moved;

	ASSERT_EQ(0, sa_dirty_free_run(self->fd, BIG_PAGES, &s));
	moved = mremap(self->map, self->len, self->len, MREMAP_MAYMOVE | MREMAP_FIXED,
		       (char *)self->map - self->len - SPANALLOC_ARENA_SIZE);
	ASSERT_NE(MAP_FAILED, moved) TH_LOG("mremap: %s", strerror(errno));
	self->map = moved;
	ASSERT_EQ(0, sa_release(self->fd, &released));
	EXPECT_EQ(0, released);
	EXPECT_EQ(len, sa_resident((uintptr_t)moved, len));
	for (size_t i = 0; i < len; i += 4093)
		ASSERT_EQ(0x5a, moved[i]);
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
	EXPECT_EQ(BIG_PAGES, st.pages_unreleasable);
}

/*
 * A forked child has a copy-on-write copy of the heap's pages: a release in
 * the parent gives the parent's pages back and leaves the child's copy.
 */
TEST_F(quiet, release_after_fork_leaves_the_childs_copy)
{
	size_t len = (size_t)BIG_PAGES * SPANALLOC_PAGE_SIZE;
	int to_child[2], to_parent[2], status;
	struct spanalloc_span s;
	uint64_t released;
	pid_t pid;
	char c = 0;

	ASSERT_EQ(0, sa_dirty_free_run(self->fd, BIG_PAGES, &s));
	ASSERT_EQ(0, pipe(to_child));
	ASSERT_EQ(0, pipe(to_parent));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		const unsigned char *p = (const unsigned char *)(uintptr_t)s.addr;

		if (write(to_parent[1], &c, 1) != 1 || read(to_child[0], &c, 1) != 1)
			_exit(2);
		for (size_t i = 0; i < len; i += 4093)
			if (p[i] != 0x5a)
				_exit(1);
		_exit(0);
	}
	ASSERT_EQ(1, read(to_parent[0], &c, 1));
	ASSERT_EQ(0, sa_release(self->fd, &released));
	EXPECT_EQ(len, released);
	EXPECT_EQ(0, sa_resident(s.addr, len));
	ASSERT_EQ(1, write(to_child[1], &c, 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* mlock()ed pages stay, as MADV_DONTNEED leaves them. */
TEST_F(quiet, release_leaves_mlocked_pages_resident)
{
	size_t len = 512 * SPANALLOC_PAGE_SIZE, half = len / 2;
	struct spanalloc_stats st;
	struct spanalloc_span s;
	uint64_t released;

	ASSERT_EQ(0, sa_dirty_free_run(self->fd, 512, &s));
	ASSERT_EQ(0, mlock((void *)(uintptr_t)s.addr, half));
	ASSERT_EQ(0, sa_release(self->fd, &released));
	EXPECT_EQ(half, released);
	EXPECT_EQ(half, sa_resident(s.addr, half));
	EXPECT_EQ(0, sa_resident(s.addr + half, half));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
	EXPECT_EQ(256, st.pages_unreleasable);
	munlock((void *)(uintptr_t)s.addr, half);
}

/* kB of field (e.g. "AnonHugePages") in the smaps entry that holds addr. */
static long sa_smaps_kb(uintptr_t addr, const char *field)
{
	char line[256];
	FILE *f = fopen("/proc/self/smaps", "r");
	bool in = false;
	long kb = -1;
	size_t flen = strlen(field);

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = addr >= lo && addr < hi;
			continue;
		}
		if (in && !strncmp(line, field, flen) && line[flen] == ':') {
			kb = strtol(line + flen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

/*
 * With transparent huge pages: a free run that is only part of a huge page
 * is not zapped (that would split it and free nothing) and is not counted
 * as released; once the whole huge page is free, it is released whole.
 */
TEST_F(quiet, release_frees_whole_huge_pages_and_never_splits_one)
{
	unsigned int half = (2U << 20) / SPANALLOC_PAGE_SIZE / 2;
	struct spanalloc_span a, b;
	struct spanalloc_stats st;
	uint64_t released;
	uintptr_t heap = (uintptr_t)self->map;

	if (madvise(self->map, SPANALLOC_ARENA_SIZE, MADV_HUGEPAGE))
		SKIP(return, "no transparent huge pages: %s", strerror(errno));
	/* two spans, one huge page: the first 2 MiB of the heap */
	ASSERT_EQ(0, sa_t_large(self->fd, half, 0, &a));
	ASSERT_EQ(0, sa_t_large(self->fd, half, 0, &b));
	ASSERT_EQ(heap, a.addr);
	memset((void *)(uintptr_t)a.addr, 1, 2U << 20);
	if (sa_smaps_kb(heap, "AnonHugePages") < 2048) {
		char cmd[160];

		snprintf(cmd, sizeof(cmd), "grep -A24 '^%lx' /proc/%d/smaps | grep -E 'Huge|THP|Rss|Size' >&2",
			 (unsigned long)heap, getpid());
		if (system(cmd))
			TH_LOG("no smaps");
		SKIP(return, "the heap did not get a huge page");
	}
	ASSERT_EQ(0, sa_t_ret(self->fd, a.handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_release(self->fd, &released));
	EXPECT_EQ(0, released);
	EXPECT_EQ(2048, sa_smaps_kb(heap, "AnonHugePages"));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
	EXPECT_EQ(half, st.pages_unreleasable);
	/* the rest of it freed: the huge page goes, whole */
	ASSERT_EQ(0, sa_t_ret(self->fd, b.handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_release(self->fd, &released));
	EXPECT_EQ(2U << 20, released);
	EXPECT_EQ(0, sa_smaps_kb(heap, "AnonHugePages"));
	EXPECT_EQ(0, sa_resident(heap, 2U << 20));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
	EXPECT_EQ(0, st.pages_unreleasable);
	EXPECT_EQ(0, st.pages_dirty);
}

#define SCAV_RUNS "/sys/kernel/debug/spanalloc/scavenger_runs"

/* Scavenger periods run during ms milliseconds, or -1. */
static long sa_scav_runs_during(int ms)
{
	long a = sa_t_read_long(SCAV_RUNS), b;

	usleep(ms * 1000);
	b = sa_t_read_long(SCAV_RUNS);
	return a < 0 || b < 0 ? -1 : b - a;
}

/*
 * The background scavenger sleeps unless a heap has work for it: not for
 * dirty pages under the margin it keeps anyway, not for pages it cannot
 * release (an unmapped heap), and not at all when it is turned off.
 */
TEST_F_TIMEOUT(heap, idle_and_unmapped_heaps_cause_no_periodic_wakeups, 60)
{
	struct spanalloc_stats st;
	struct spanalloc_span s;
	long scav = sa_t_read_long(SCAV_PARAM), runs;
	char val[24];

	if (sa_t_read_long(SCAV_RUNS) < 0)
		SKIP(return, "no %s (debugfs not mounted?)", SCAV_RUNS);
	ASSERT_LT(0, scav);
	/* a few dirty pages: less than the 1 MiB the scavenger always keeps */
	ASSERT_EQ(0, sa_dirty_free_run(self->fd, 16, &s));
	runs = sa_scav_runs_during(1500);
	TH_LOG("16 dirty pages: %ld scavenger periods in 1.5 s", runs);
	EXPECT_GE(1, runs);
	EXPECT_LE(0, runs);
	/* the scavenger off: nothing runs, whatever is dirty */
	ASSERT_EQ(0, sa_t_write_file(SCAV_PARAM, "0"));
	ASSERT_EQ(0, sa_dirty_free_run(self->fd, BIG_PAGES, &s));
	runs = sa_scav_runs_during(1500);
	TH_LOG("scavenger off, %u dirty pages: %ld periods", BIG_PAGES, runs);
	EXPECT_GE(1, runs);
	/* on again, with the heap unmapped: one try, then it sleeps */
	ASSERT_EQ(0, munmap(self->map, self->len));
	self->map = NULL;
	snprintf(val, sizeof(val), "%ld", scav);
	ASSERT_EQ(0, sa_t_write_file(SCAV_PARAM, val));
	/* freeing a span (untouched: the heap is gone) wakes it */
	ASSERT_EQ(0, sa_t_large(self->fd, 16, 0, &s));
	ASSERT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
	/*
	 * Its first tries, paced by its CPU budget (slow on the debug
	 * kernel), find every page refused: wait until none is left dirty
	 * (the code before stuck pages kept them dirty, and this waits the
	 * whole 20 s), then it must sleep.
	 */
	for (int waited = 0; waited < 200; waited++) {
		ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
		if (!st.pages_dirty)
			break;
		usleep(100 * 1000);
	}
	usleep(300 * 1000);
	runs = sa_scav_runs_during(1500);
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
	TH_LOG("heap unmapped: %ld periods in 1.5 s after the first tries; %llu pages dirty, %llu unreleasable",
	       runs, (unsigned long long)st.pages_dirty,
	       (unsigned long long)st.pages_unreleasable);
	EXPECT_GE(1, runs);
	EXPECT_EQ(0, st.pages_dirty);
	snprintf(val, sizeof(val), "%ld", scav);
	EXPECT_EQ(0, sa_t_write_file(SCAV_PARAM, val));
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

/* Enables controller for child cgroups; NULL, or why the test cannot run. */
static const char *sa_cg_enable(const char *controller)
{
	char ctl[32];

	if (access(CG_ROOT "/cgroup.subtree_control", W_OK))
		return "no writable cgroup2 hierarchy at " CG_ROOT;
	snprintf(ctl, sizeof(ctl), "+%s", controller);
	if (sa_cg_write(CG_ROOT, "cgroup.subtree_control", ctl))
		return "the controller cannot be enabled";
	return NULL;
}

static long sa_cg_read(const char *dir, const char *file)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return sa_t_read_long(path);
}

#define ROUNDS 4

/*
 * The child: joins the cgroup and opens a heap there. First it waits while
 * the parent squeezes the cgroup with nothing dirty in the heap (the
 * shrinker is asked and has nothing to give); then, each round, it makes
 * 64 MiB of dirty free pages, waits while the parent squeezes again, and
 * reports how many pages the heap has released so far. Exit status: 0
 * done, 1 setup failed.
 */
static int sa_cg_child(const char *cg, int tell, int wait)
{
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
	if (fd < 0)
		return 1;
	if (write(tell, &c, 1) != 1 || read(wait, &c, 1) != 1)
		return 1;
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t released;

		if (sa_dirty_free_run(fd, 2 * BIG_PAGES, &s) ||
		    write(tell, &c, 1) != 1 || read(wait, &c, 1) != 1 ||
		    sa_t_stats(fd, &st, NULL))
			return 1;
		released = st.pages_released;
		if (write(tell, &released, sizeof(released)) != sizeof(released))
			return 1;
	}
	return 0;
}

/* Sets memory.high to limit and back to max: reclaim runs in between. */
static long sa_cg_squeeze(const char *cg, long limit)
{
	char high[32];
	long after;

	snprintf(high, sizeof(high), "%ld", limit);
	/* the write reclaims down to the new limit before it returns */
	if (sa_cg_write(cg, "memory.high", high))
		return -1;
	after = sa_cg_read(cg, "memory.current");
	return sa_cg_write(cg, "memory.high", "max") ? -1 : after;
}

/*
 * The shrinker must keep working for a cgroup round after round, also
 * after it was asked while it had nothing to give: answering "no objects"
 * (SHRINK_EMPTY) then would switch it off for the cgroup for good.
 */
TEST_F_TIMEOUT(heap, shrinker_releases_free_pages_under_memory_high_every_round, 240)
{
	const char *why;
	const char *param = SCAV_PARAM;
	long old = sa_t_read_long(param), cur, after;
	char cg[128], oldval[24];
	int to_parent[2], to_child[2], status;
	uint64_t released, before = 0;
	pid_t pid;
	char c = 0;

	why = sa_cg_enable("memory");
	if (why)
		SKIP(return, "%s (memory)", why);
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
	/* reclaim while the heap has nothing dirty */
	if (read(to_parent[0], &c, 1) == 1) {
		after = sa_cg_squeeze(cg, 4096);
		TH_LOG("nothing dirty, memory.high=4K: %ld KiB left", after >> 10);
		EXPECT_LE(0, after);
		EXPECT_EQ(1, write(to_child[1], &c, 1));
	}
	for (int round = 0; round < ROUNDS; round++) {
		if (read(to_parent[0], &c, 1) != 1)
			break;
		cur = sa_cg_read(cg, "memory.current");
		EXPECT_LE(64L << 20, cur);
		after = sa_cg_squeeze(cg, 16L << 20);
		EXPECT_EQ(1, write(to_child[1], &c, 1));
		ASSERT_EQ(sizeof(released), read(to_parent[0], &released, sizeof(released)));
		TH_LOG("round %d: %ld KiB, after memory.high=16M %ld KiB, %llu pages released",
		       round, cur >> 10, after >> 10,
		       (unsigned long long)(released - before));
		EXPECT_GE(24L << 20, after);
		EXPECT_LE(before + BIG_PAGES, released);
		before = released;
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	snprintf(oldval, sizeof(oldval), "%ld", old);
	EXPECT_EQ(0, sa_t_write_file(param, oldval));
	EXPECT_EQ(0, rmdir(cg));
}

static double sa_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double sa_cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * 128 MiB of dirty free pages in b's place, next to a's 64 MiB in use: a
 * release long enough that a CPU share of a few ms a second (the tick lets
 * a throttled task overrun its quota by a few ms) stretches it to seconds.
 */
#define SLOW_PAGES (4 * BIG_PAGES)

static int sa_slow_owner_dirty(int fd, struct spanalloc_span *b)
{
	if (sa_t_large(fd, SLOW_PAGES, 0, b))
		return 1;
	memset((void *)(uintptr_t)b->addr, 1, (size_t)SLOW_PAGES * SPANALLOC_PAGE_SIZE);
	return sa_t_ret(fd, b->handle, SPANALLOC_RET_EMPTY);
}

/*
 * The child: a heap owner whose own release is slow because its cgroup
 * gets a small share of a CPU: it holds the heap's scav_mutex for seconds.
 * Makes 128 MiB of dirty free pages in 4 KiB pages next to 64 MiB in use (so
 * the background scavenger wants some of them), releases them once to
 * measure the CPU time that takes, makes them again, says so (with that
 * time), waits for the go, releases, and writes how long that took.
 */
static int sa_slow_owner(const char *cg, int tell, int wait)
{
	struct spanalloc_release rel = { .size = sizeof(rel) };
	struct spanalloc_span a, b;
	size_t map_len = 0;
	double t0, took, cpu;
	void *map;
	char c = 0;
	int fd;

	/* not left behind, holding a heap, if the test is killed */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) || sa_cg_write(cg, "cgroup.procs", "0"))
		return 1;
	fd = sa_t_open_mapped(&map, &map_len);
	/* 4 KiB pages make the release slower; without THP they are anyway */
	if (fd < 0 || (madvise(map, map_len, MADV_NOHUGEPAGE) && errno != EINVAL) ||
	    sa_t_large(fd, 2 * BIG_PAGES, 0, &a))
		return 1;
	memset((void *)(uintptr_t)a.addr, 1, (size_t)2 * BIG_PAGES * SPANALLOC_PAGE_SIZE);
	if (sa_slow_owner_dirty(fd, &b))
		return 1;
	cpu = sa_cpu_now();
	if (sa_t_ioctl(fd, SPANALLOC_IOC_RELEASE, &rel))
		return 1;
	cpu = sa_cpu_now() - cpu;
	if (sa_slow_owner_dirty(fd, &b))
		return 1;
	if (write(tell, &cpu, sizeof(cpu)) != sizeof(cpu) || read(wait, &c, 1) != 1)
		return 1;
	t0 = sa_now();
	if (sa_t_ioctl(fd, SPANALLOC_IOC_RELEASE, &rel))
		return 1;
	took = sa_now() - t0;
	return write(tell, &took, sizeof(took)) == sizeof(took) ? 0 : 1;
}

/* Resident bytes of process pid, or -1. */
static long sa_rss_of(pid_t pid)
{
	char path[64];
	long pages = -1, rss = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/statm", pid);
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = -1;
		fclose(f);
	}
	return rss < 0 ? -1 : rss * getpagesize();
}

#define SA_CPU1_ONLINE "/sys/devices/system/cpu/cpu1/online"

/* A second into the stall, takes cpu1 offline and back; *arg: how long. */
static void *sa_offliner(void *arg)
{
	double t0;

	usleep(1000 * 1000);
	t0 = sa_now();
	if (!sa_t_write_file(SA_CPU1_ONLINE, "0")) {
		*(double *)arg = sa_now() - t0;
		sa_t_write_file(SA_CPU1_ONLINE, "1");
	}
	return NULL;
}

/*
 * Background paths never sleep on a lock a user process holds while they
 * hold the list of all heaps: a process that keeps its own heap's locks
 * busy (here, a release running at 0.1% of a CPU) must not stall another
 * process's open and close of the device. The background scavenger is
 * woken while the stalled release runs, with work on the stalled heap.
 */
TEST_F_TIMEOUT(heap, a_stalled_heap_owner_does_not_stall_other_processes, 120)
{
	const char *why;
	long old = sa_t_read_long(SCAV_PARAM);
	int to_parent[2], to_child[2], status, kick, waited = 0;
	double cpu = 0;
	char quota[48];
	long rss0;
	double worst = 0, took = 0, offline = -1, end;
	bool offliner_started;
	pthread_t offliner;
	struct spanalloc_span s;
	char cg[128], oldval[24];
	size_t kick_len = 0;
	void *kick_map = NULL;
	pid_t pid;
	char c = 0;

	why = sa_cg_enable("cpu");
	if (why)
		SKIP(return, "%s (cpu)", why);
	ASSERT_LE(0, old);
	/* asleep until the owner is inside its release */
	ASSERT_EQ(0, sa_t_write_file(SCAV_PARAM, "0"));
	snprintf(cg, sizeof(cg), CG_ROOT "/spanalloc-stall-%d", getpid());
	ASSERT_EQ(0, mkdir(cg, 0755));
	ASSERT_EQ(0, pipe(to_parent));
	ASSERT_EQ(0, pipe(to_child));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(sa_slow_owner(cg, to_parent[1], to_child[0]));
	close(to_parent[1]);
	close(to_child[0]);
	ASSERT_EQ(sizeof(cpu), read(to_parent[0], &cpu, sizeof(cpu)));
	rss0 = sa_rss_of(pid);
	ASSERT_LT(0, rss0);
	/* a share of a CPU that makes the release last about 8 s */
	snprintf(quota, sizeof(quota), "%ld 1000000",
		 cpu * 125000 > 1000 ? (long)(cpu * 125000) : 1000L);
	ASSERT_EQ(0, sa_cg_write(cg, "cpu.max", quota));
	ASSERT_EQ(1, write(to_child[1], &c, 1));
	/* its memory shrinking says it is inside its release */
	while (sa_rss_of(pid) > rss0 - (long)(2 * MIB) && waited++ < 1000)
		usleep(10 * 1000);
	EXPECT_GT(1000, waited);
	/* now wake the scavenger: a heap of our own with work for it */
	ASSERT_EQ(0, sa_t_write_file(SCAV_PARAM, "1"));
	kick = sa_t_open_mapped(&kick_map, &kick_len);
	ASSERT_LE(0, kick);
	ASSERT_EQ(0, sa_t_large(kick, 1024, 0, &s));
	ASSERT_EQ(0, sa_t_ret(kick, s.handle, SPANALLOC_RET_EMPTY));
	/* a CPU going offline drains every heap's caches: it must not wait either */
	offliner_started = !access(SA_CPU1_ONLINE, W_OK) &&
			   !pthread_create(&offliner, NULL, sa_offliner, &offline);
	for (end = sa_now() + 4; sa_now() < end; usleep(20 * 1000)) {
		double t0 = sa_now(), dt;
		int fd = open(SA_DEV, O_RDWR | O_CLOEXEC);

		ASSERT_LE(0, fd);
		close(fd);
		dt = sa_now() - t0;
		worst = dt > worst ? dt : worst;
	}
	if (offliner_started)
		EXPECT_EQ(0, pthread_join(offliner, NULL));
	EXPECT_EQ(sizeof(took), read(to_parent[0], &took, sizeof(took)));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	TH_LOG("the owner's release: %.3f s of CPU alone, %.2f s stalled (cpu.max %s); meanwhile the slowest open+close %.3f s, cpu1 offline %.3f s",
	       cpu, took, quota, worst, offline);
	/* the setup must really stall the owner, or this shows nothing */
	EXPECT_LE(1.5, took);
	EXPECT_GT(0.5, worst);
	EXPECT_GT(0.5 * took, offline);
	munmap(kick_map, kick_len);
	close(kick);
	snprintf(oldval, sizeof(oldval), "%ld", old);
	EXPECT_EQ(0, sa_t_write_file(SCAV_PARAM, oldval));
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
	const char *why;
	char cg[128];
	long v[2] = { 0, 0 }, after;
	int p[2], status;
	pid_t pid;

	why = sa_cg_enable("memory");
	if (why)
		SKIP(return, "%s (memory)", why);
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
