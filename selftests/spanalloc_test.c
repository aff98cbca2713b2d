// SPDX-License-Identifier: GPL-2.0
/*
 * spanalloc_test: the device and its ioctls, driven directly (no library):
 * every success path, every rejection, mapping rules, span layout, the
 * per-CPU cache and CPU hotplug, teardown, fork and fd passing.
 *
 * Needs /dev/spanalloc (run it through scripts/vm-run); every test says
 * SKIP when the device is missing.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include "kselftest_harness.h"
#include "heap_fixture.h"

#define NSC SPANALLOC_NUM_SPANCLASSES

/* An unmapped heap: what happens before mmap, and the mmap rules. */
FIXTURE(bare) {
	int fd;
	struct spanalloc_info info;
};

FIXTURE_SETUP(bare)
{
	self->fd = open(SA_DEV, O_RDWR | O_CLOEXEC);
	if (self->fd < 0 && errno == ENOENT)
		SKIP(return, "no " SA_DEV ": load spanalloc.ko (scripts/vm-run does)");
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, sa_t_info(self->fd, &self->info));
}

FIXTURE_TEARDOWN(bare)
{
	if (self->fd >= 0)
		close(self->fd);
}

static int sa_addr_in(FIXTURE_DATA(heap) *self, const struct spanalloc_span *s)
{
	uintptr_t lo = (uintptr_t)self->map, hi = lo + self->len;

	return s->addr >= lo && s->addr + ((uint64_t)s->npages << SPANALLOC_PAGE_SHIFT) <= hi;
}

TEST_F(bare, info_describes_module)
{
	struct spanalloc_info *i = &self->info;

	EXPECT_EQ(SPANALLOC_ABI_VERSION, i->abi_version);
	EXPECT_EQ(SPANALLOC_PAGE_SIZE, i->page_size);
	EXPECT_EQ(SPANALLOC_NUM_CLASSES, i->num_classes);
	EXPECT_EQ(SPANALLOC_ARENA_SIZE, i->arena_size);
	EXPECT_EQ(SPANALLOC_CLASS_HASH, i->class_hash);
	EXPECT_EQ(0, i->max_heap_limit % SPANALLOC_ARENA_SIZE);
	EXPECT_LE(i->heap_limit, i->max_heap_limit);
	EXPECT_LT(0, i->max_batch);
	EXPECT_LE(1, i->global_heaps);
	EXPECT_EQ(0, i->reserved);
}

TEST_F(bare, info_rejects_bad_size_and_input)
{
	struct {
		struct spanalloc_info info;
		uint64_t tail;
	} big;

	memset(&big, 0, sizeof(big));
	big.info.size = 8;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_INFO, &big));
	big.info.size = 1 << 20;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_INFO, &big));
	/* A newer, larger struct with a zero tail is fine... */
	big.info.size = sizeof(big);
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_INFO, &big));
	/* ...but bytes the kernel does not know must be zero */
	memset(&big, 0, sizeof(big));
	big.info.size = sizeof(big);
	big.tail = 1;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_INFO, &big));
	EXPECT_EQ(-EFAULT, sa_t_ioctl(self->fd, SPANALLOC_IOC_INFO, (void *)8));
	EXPECT_EQ(-ENOTTY, sa_t_ioctl(self->fd, _IO(SPANALLOC_IOC_MAGIC, 0x7f), NULL));
}

/*
 * The command encodes the size of the struct in the header a program was
 * built with; the struct's size field is what versions it. A program built
 * against an older header (e.g. spanalloc_stats of 144 bytes) must work.
 */
#define SA_CMD(dir, nr, size) _IOC(dir, SPANALLOC_IOC_MAGIC, nr, size)

TEST_F(heap, every_ioctl_takes_every_published_struct_size)
{
	static const uint32_t stats_sizes[] = {
		SPANALLOC_STATS_SIZE_VER0, SPANALLOC_STATS_SIZE_VER1,
		SPANALLOC_STATS_SIZE_VER2,
	};
	union {
		struct spanalloc_info info;
		struct spanalloc_stats st;
		struct spanalloc_exchange ex;
		struct spanalloc_large lg;
		struct spanalloc_limit lim;
		struct spanalloc_release rel;
		char bytes[256];
	} u;
	struct spanalloc_span s;

	for (unsigned int i = 0; i < sizeof(stats_sizes) / sizeof(stats_sizes[0]); i++) {
		uint32_t sz = stats_sizes[i];

		memset(&u, 0xee, sizeof(u));
		memset(&u, 0, sz);
		u.st.size = sz;
		EXPECT_EQ(0, sa_t_ioctl(self->fd, SA_CMD(_IOC_READ | _IOC_WRITE, 3, sz), &u))
			TH_LOG("stats of %u bytes", sz);
		EXPECT_EQ(self->len, u.st.mapped);
		/* nothing written past the caller's struct */
		EXPECT_EQ((char)0xee, u.bytes[sz]);
		/* the command of the current header with an older struct too */
		memset(&u, 0, sz);
		u.st.size = sz;
		EXPECT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_STATS, &u));
	}
	for (uint32_t sz = SPANALLOC_INFO_SIZE_VER0; sz <= SPANALLOC_INFO_SIZE_VER1; sz += 8) {
		memset(&u, 0xee, sizeof(u));
		memset(&u, 0, sz);
		u.info.size = sz;
		EXPECT_EQ(0, sa_t_ioctl(self->fd, SA_CMD(_IOC_READ | _IOC_WRITE, 0, sz), &u))
			TH_LOG("info of %u bytes", sz);
		EXPECT_EQ(SPANALLOC_ABI_VERSION, u.info.abi_version);
		EXPECT_EQ((char)0xee, u.bytes[sz]);
	}
	EXPECT_LT(0, u.info.heap_id);
	memset(&u, 0, sizeof(u));
	u.ex = (struct spanalloc_exchange){
		.size = SPANALLOC_EXCHANGE_SIZE_VER0, .get_ptr = (uintptr_t)&s,
		.get_count = 1, .get_spanclass = SPANALLOC_SPANCLASS(2, 0),
	};
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SA_CMD(_IOC_READ | _IOC_WRITE, 1,
						 SPANALLOC_EXCHANGE_SIZE_VER0), &u));
	EXPECT_EQ(1, u.ex.get_done);
	EXPECT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
	memset(&u, 0, sizeof(u));
	u.lg = (struct spanalloc_large){ .size = SPANALLOC_LARGE_SIZE_VER0, .npages = 2 };
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SA_CMD(_IOC_READ | _IOC_WRITE, 2,
						 SPANALLOC_LARGE_SIZE_VER0), &u));
	EXPECT_EQ(0, sa_t_ret(self->fd, u.lg.span.handle, SPANALLOC_RET_EMPTY));
	memset(&u, 0, sizeof(u));
	u.lim = (struct spanalloc_limit){ .size = SPANALLOC_LIMIT_SIZE_VER0,
					  .limit = self->info.heap_limit };
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SA_CMD(_IOC_WRITE, 4, SPANALLOC_LIMIT_SIZE_VER0), &u));
	memset(&u, 0, sizeof(u));
	u.rel.size = SPANALLOC_RELEASE_SIZE_VER0;
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SA_CMD(_IOC_READ | _IOC_WRITE, 5,
						 SPANALLOC_RELEASE_SIZE_VER0), &u));
	/* ADOPT's number and size reach it: a mapped heap is refused as such */
	memset(&u, 0, sizeof(u));
	u.rel.size = SPANALLOC_ADOPT_SIZE_VER0;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SA_CMD(_IOC_READ | _IOC_WRITE, 6,
						      SPANALLOC_ADOPT_SIZE_VER0), &u));
	/* the direction is part of the command; unknown numbers are not ours */
	EXPECT_EQ(-ENOTTY, sa_t_ioctl(self->fd, SA_CMD(_IOC_READ, 3, 144), &u));
	memset(&u, 0, sizeof(u));
	u.bytes[0] = SPANALLOC_SNAPSHOT_SIZE_VER0;
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SA_CMD(_IOC_READ | _IOC_WRITE, 7,
						 SPANALLOC_SNAPSHOT_SIZE_VER0), &u));
	memset(&u, 0, sizeof(u));
	u.bytes[0] = SPANALLOC_SPAN_PAGES_SIZE_VER0;
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SA_CMD(_IOC_WRITE, 8, SPANALLOC_SPAN_PAGES_SIZE_VER0), &u));
	EXPECT_EQ(-ENOTTY, sa_t_ioctl(self->fd, SA_CMD(_IOC_READ | _IOC_WRITE, 8, 16), &u));
	EXPECT_EQ(-ENOTTY, sa_t_ioctl(self->fd, SA_CMD(_IOC_READ | _IOC_WRITE, 9, 16), &u));
	EXPECT_EQ(-ENOTTY, sa_t_ioctl(self->fd, SA_CMD(_IOC_READ | _IOC_WRITE, 0xff, 16), &u));
}

/*
 * Out fields are ignored on input: a struct the kernel just filled can be
 * passed back as it is, for every call that fills one.
 */
TEST_F(heap, a_struct_the_kernel_filled_can_be_passed_back)
{
	struct spanalloc_info info;
	struct spanalloc_stats st;
	struct spanalloc_large lg = { .size = sizeof(lg), .npages = 3 };
	struct spanalloc_release rel = { .size = sizeof(rel) };
	struct spanalloc_span got[2];
	struct spanalloc_ret r;
	struct spanalloc_exchange ex = {
		.size = sizeof(ex), .get_ptr = (uintptr_t)got, .get_count = 1,
		.get_spanclass = SPANALLOC_SPANCLASS(4, 1),
	};

	ASSERT_EQ(0, sa_t_info(self->fd, &info));
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_INFO, &info));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_STATS, &st));
	ASSERT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_ALLOC_LARGE, &lg));
	r = (struct spanalloc_ret){ .handle = lg.span.handle, .op = SPANALLOC_RET_EMPTY };
	ASSERT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_ALLOC_LARGE, &lg));
	EXPECT_NE(r.handle, lg.span.handle);
	ASSERT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	EXPECT_EQ(1, ex.get_done);
	/* the filled exchange again, now also returning: both out fields set */
	ex.ret_ptr = (uintptr_t)&r;
	ex.ret_count = 1;
	ex.get_ptr = (uintptr_t)&got[1];
	ASSERT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	EXPECT_EQ(1, ex.ret_done);
	EXPECT_EQ(1, ex.get_done);
	/* a count of 0 with a class is fine: the header says either may be 0 */
	r = (struct spanalloc_ret){ .handle = lg.span.handle, .op = SPANALLOC_RET_EMPTY };
	ex.get_count = 0;
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	EXPECT_EQ(0, ex.get_done);
	ASSERT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_RELEASE, &rel));
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_RELEASE, &rel));
	EXPECT_EQ(0, sa_t_ret(self->fd, got[0].handle, SPANALLOC_RET_EMPTY));
	EXPECT_EQ(0, sa_t_ret(self->fd, got[1].handle, SPANALLOC_RET_EMPTY));
}

/*
 * The returns of an exchange are applied before the spans got are written
 * out: when that write fails, ret_done still says the returns happened.
 */
TEST_F(heap, ret_done_tells_applied_returns_when_get_ptr_is_read_only)
{
	unsigned int sc = SPANALLOC_SPANCLASS(6, 0);
	struct spanalloc_span s[2];
	struct spanalloc_ret r[2];
	struct spanalloc_exchange ex = {
		.size = sizeof(ex), .ret_ptr = (uintptr_t)r, .ret_count = 2,
		.get_count = 2, .get_spanclass = sc,
	};
	struct spanalloc_class_stats cs[NSC];
	struct spanalloc_stats st;
	void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_NE(MAP_FAILED, ro);
	ASSERT_EQ(0, sa_t_get(self->fd, sc, s, 2, NULL));
	r[0] = (struct spanalloc_ret){ .handle = s[0].handle, .op = SPANALLOC_RET_EMPTY };
	r[1] = (struct spanalloc_ret){ .handle = s[1].handle, .op = SPANALLOC_RET_FULL };
	ex.get_ptr = (uintptr_t)ro;
	EXPECT_EQ(-EFAULT, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	EXPECT_EQ(2, ex.ret_done);
	EXPECT_EQ(0, ex.get_done);
	/* they were applied: returning them again is refused */
	EXPECT_EQ(-EINVAL, sa_t_ret(self->fd, s[0].handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, cs));
	EXPECT_EQ(1, cs[sc].full);
	EXPECT_EQ(0, cs[sc].owned);
	/* a failure before the returns leaves ret_done as it was: 0 */
	ex.ret_done = 0;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	EXPECT_EQ(0, ex.ret_done);
	munmap(ro, 4096);
}

/*
 * A second mapping of a heap is refused before the kernel unmaps anything
 * a MAP_FIXED mapping would replace: the heap stays mapped, data intact.
 */
TEST_F(heap, map_fixed_over_the_live_heap_is_refused_and_changes_nothing)
{
	struct spanalloc_span s;
	void *p;

	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(3, 0), &s));
	memset((void *)(uintptr_t)s.addr, 0x5a, 64);
	p = mmap(self->map, SPANALLOC_ARENA_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_FIXED, self->fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(0x5a, *(volatile unsigned char *)(uintptr_t)s.addr);
	EXPECT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
}

/* Module-wide counters say what other users do: root only. */
TEST(module_wide_counters_are_for_the_administrator_only)
{
	struct spanalloc_info info;
	int fd = open(SA_DEV, O_RDWR | O_CLOEXEC), status;
	pid_t pid;

	if (fd < 0 && errno == ENOENT)
		SKIP(return, "no " SA_DEV ": load spanalloc.ko (scripts/vm-run does)");
	ASSERT_LE(0, fd);
	if (geteuid() != 0)
		SKIP(return, "needs root to compare with an unprivileged user");
	ASSERT_EQ(0, sa_t_info(fd, &info));
	EXPECT_LE(1, info.global_heaps);
	close(fd);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(2);
		fd = open(SA_DEV, O_RDWR | O_CLOEXEC);
		if (fd < 0 || sa_t_info(fd, &info))
			_exit(3);
		_exit(info.global_heaps || info.global_spans || info.global_pages ||
		      info.global_arenas ? 1 : 0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

TEST_F(bare, exchange_before_mmap_fails)
{
	struct spanalloc_span s;

	EXPECT_EQ(-ENXIO, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(1, 0), &s));
	EXPECT_EQ(-ENXIO, sa_t_large(self->fd, 1, 0, &s));
}

TEST_F(bare, mmap_rules_are_enforced)
{
	size_t a = SPANALLOC_ARENA_SIZE;
	void *p;

	p = mmap(NULL, a, PROT_READ | PROT_WRITE, MAP_PRIVATE, self->fd, a);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	p = mmap(NULL, a / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE, self->fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	p = mmap(NULL, self->info.max_heap_limit + a, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE, self->fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	p = mmap(NULL, a, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	p = mmap(NULL, a, PROT_READ | PROT_EXEC, MAP_PRIVATE, self->fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	/* EPERM from the module; EACCES when /dev is mounted noexec */
	EXPECT_TRUE(errno == EPERM || errno == EACCES);

	/* a fixed address off the 8 KiB page grid */
	p = mmap(NULL, 2 * a, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	munmap(p, 2 * a);
	p = (void *)((((uintptr_t)p + SPANALLOC_PAGE_SIZE - 1) & ~(SPANALLOC_PAGE_SIZE - 1)) + 4096);
	EXPECT_EQ(MAP_FAILED, mmap(p, a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
				   self->fd, 0));
	EXPECT_EQ(EINVAL, errno);
	/* on the 8 KiB grid but off the 2 MiB one (huge pages) */
	p = (void *)(((uintptr_t)p + (2 << 20)) & ~(uintptr_t)((2 << 20) - 1)) +
	    SPANALLOC_PAGE_SIZE;
	EXPECT_EQ(MAP_FAILED, mmap(p, a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
				   self->fd, 0));
	EXPECT_EQ(EINVAL, errno);

	p = mmap(NULL, a, PROT_READ | PROT_WRITE, MAP_PRIVATE, self->fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	/* placed on an arena boundary */
	EXPECT_EQ(0, (uintptr_t)p % SPANALLOC_ARENA_SIZE);
	/* never executable, not even later */
	EXPECT_EQ(-1, mprotect(p, a, PROT_READ | PROT_EXEC));
	/* one mapping per heap */
	EXPECT_EQ(MAP_FAILED, mmap(NULL, a, PROT_READ | PROT_WRITE, MAP_PRIVATE,
				   self->fd, 0));
	EXPECT_EQ(EBUSY, errno);
	munmap(p, a);
}

static int sa_span_pages(int fd, struct spanalloc_span_pages *sp)
{
	sp->size = sizeof(*sp);
	return sa_t_ioctl(fd, SPANALLOC_IOC_SET_SPAN_PAGES, sp);
}

/* The size class whose table span is one page holding size-byte objects. */
static unsigned int sa_class_sized(uint32_t size)
{
	for (unsigned int c = 1; c < SPANALLOC_NUM_CLASSES; c++)
		if (sa_t_classes[c].size == size)
			return c;
	return 0;
}

/*
 * A heap's spans of a class may be longer than the table's: from the
 * table's length up to SPANALLOC_MAX_CLASS_PAGES, with at most
 * SPANALLOC_MAX_NELEMS objects; every other request is refused whole.
 */
TEST_F(heap, span_pages_set_the_length_of_new_spans_within_bounds)
{
	unsigned int c512 = sa_class_sized(512), c1408 = sa_class_sized(1408);
	unsigned int sc = SPANALLOC_SPANCLASS(c512, 0);
	struct spanalloc_span_pages sp;
	struct spanalloc_span s, s2, kept;

	ASSERT_NE(0, c512);
	ASSERT_EQ(1, sa_t_classes[c512].npages);
	ASSERT_EQ(2, sa_t_classes[c1408].npages);
	/* every field is checked, and one bad entry refuses them all */
	struct { unsigned int c; uint8_t pages; } bad[] = {
		{ 0, 1 },				/* large objects: no */
		{ c1408, 1 },				/* below the table's */
		{ c512, SPANALLOC_MAX_CLASS_PAGES + 1 },	/* too long */
		{ 1, 2 },				/* 2048 8-byte objects */
	};
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&sp, 0, sizeof(sp));
		sp.pages[c512] = 4;
		sp.pages[bad[i].c] = bad[i].pages;
		EXPECT_EQ(-EINVAL, sa_span_pages(self->fd, &sp)) TH_LOG("entry %u", i);
	}
	memset(&sp, 0, sizeof(sp));
	sp.pages[c512] = 4;
	sp.flags = 1;
	EXPECT_EQ(-EINVAL, sa_span_pages(self->fd, &sp));
	sp.flags = 0;
	sp.reserved[4] = 1;
	EXPECT_EQ(-EINVAL, sa_span_pages(self->fd, &sp));
	/* nothing refused changed anything */
	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &s));
	EXPECT_EQ(1, s.npages);
	EXPECT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));

	sp.reserved[4] = 0;
	sp.pages[c1408] = SPANALLOC_MAX_CLASS_PAGES;
	ASSERT_EQ(0, sa_span_pages(self->fd, &sp));
	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &s));
	EXPECT_EQ(4, s.npages);
	EXPECT_TRUE(sa_addr_in(self, &s));
	kept = s;
	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(c1408, 1), &s));
	EXPECT_EQ(SPANALLOC_MAX_CLASS_PAGES, s.npages);
	EXPECT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
	/*
	 * 0 is the table's length again, for spans cut from now on; a span
	 * on the kernel's lists keeps its own (pinned: a returned span waits
	 * in this CPU's stack, when there are per-CPU stacks)
	 */
	ASSERT_EQ(0, sa_t_pin(0));
	EXPECT_EQ(0, sa_t_ret(self->fd, kept.handle, SPANALLOC_RET_PARTIAL));
	memset(&sp, 0, sizeof(sp));
	ASSERT_EQ(0, sa_span_pages(self->fd, &sp));
	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &s));
	EXPECT_EQ(kept.addr, s.addr);
	EXPECT_EQ(4, s.npages);
	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &s2));
	EXPECT_EQ(1, s2.npages);
	sa_t_unpin();
	EXPECT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
	EXPECT_EQ(0, sa_t_ret(self->fd, s2.handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(c1408, 1), &s));
	EXPECT_EQ(2, s.npages);
	EXPECT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
}

TEST_F(heap, every_span_class_gets_a_zeroed_span)
{
	for (unsigned int sc = 2; sc < NSC; sc++) {
		struct spanalloc_span s;
		unsigned char *m;

		ASSERT_EQ(0, sa_t_get1(self->fd, sc, &s));
		EXPECT_NE(0, s.handle);
		EXPECT_EQ(sc, s.spanclass);
		EXPECT_EQ(sa_t_class_pages(sc), s.npages);
		EXPECT_EQ(0, s.addr % SPANALLOC_PAGE_SIZE);
		EXPECT_TRUE(sa_addr_in(self, &s));
		m = (unsigned char *)(uintptr_t)s.addr;
		if (!s.needzero) {
			size_t len = (size_t)s.npages << SPANALLOC_PAGE_SHIFT;

			for (size_t i = 0; i < len; i += 509)
				ASSERT_EQ(0, m[i]);
		}
		memset(m, 0xa5, (size_t)s.npages << SPANALLOC_PAGE_SHIFT);
		ASSERT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
	}
}

static int sa_cmp_span(const void *a, const void *b)
{
	const struct spanalloc_span *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

TEST_F(heap, spans_never_overlap_and_stay_in_the_mapping)
{
	enum { N = 600 };
	struct spanalloc_span *s = calloc(N, sizeof(*s));
	unsigned int n = 0, got;

	ASSERT_NE(NULL, s);
	/* many small spans of every class, and large ones between them */
	while (n + 8 < N) {
		unsigned int sc = 2 + (n * 7) % (NSC - 2);

		ASSERT_EQ(0, sa_t_get(self->fd, sc, &s[n], 4, &got));
		n += got;
		ASSERT_EQ(0, sa_t_large(self->fd, 1 + n % 37, n & 1, &s[n]));
		n++;
	}
	qsort(s, n, sizeof(*s), sa_cmp_span);
	for (unsigned int i = 0; i < n; i++) {
		EXPECT_TRUE(sa_addr_in(self, &s[i]));
		if (i)
			ASSERT_LE(s[i - 1].addr + ((uint64_t)s[i - 1].npages <<
				  SPANALLOC_PAGE_SHIFT), s[i].addr);
	}
	free(s);
}

TEST_F(heap, exchange_rejects_bad_fields)
{
	struct spanalloc_span out[2];
	struct spanalloc_ret r = { 0 };
	struct spanalloc_exchange good = {
		.size = sizeof(good), .get_ptr = (uintptr_t)out, .get_count = 1,
		.get_spanclass = SPANALLOC_SPANCLASS(3, 0),
	}, ex;

#define BAD(field, val) do { ex = good; ex.field = (val); \
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex)); } while (0)
	BAD(size, 4);
	BAD(size, SPANALLOC_EXCHANGE_SIZE_VER0 - 1);
	BAD(flags, 1);
	BAD(flags, 0x80000000);
	BAD(reserved, 1);
	BAD(get_count, self->info.max_batch + 1);
	BAD(ret_count, self->info.max_batch + 1);
	BAD(get_spanclass, 0);
	BAD(get_spanclass, 1);
	BAD(get_spanclass, NSC);
	BAD(get_spanclass, 0xffffffff);
	BAD(get_ptr, 0);
	BAD(ret_count, 1);	/* ret_ptr is 0 */
	ex = good;
	ex.get_count = 0;	/* a count of 0 with a class that is not one */
	ex.get_spanclass = 1;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	/* returns: unknown handles, ops, reserved */
	ex = good;
	ex.get_count = 0;
	ex.get_spanclass = 0;
	ex.ret_ptr = (uintptr_t)&r;
	ex.ret_count = 1;
	r = (struct spanalloc_ret){ .handle = 0, .op = SPANALLOC_RET_EMPTY };
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	r = (struct spanalloc_ret){ .handle = ~0ULL, .op = SPANALLOC_RET_EMPTY };
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	ASSERT_EQ(0, sa_t_get1(self->fd, good.get_spanclass, &out[0]));
	for (unsigned int op = 0; op < 8; op += 4) {	/* 0 and 4: no such op */
		r = (struct spanalloc_ret){ .handle = out[0].handle, .op = op };
		EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	}
	r = (struct spanalloc_ret){ .handle = out[0].handle,
				    .op = SPANALLOC_RET_EMPTY, .reserved = 1 };
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	/* a page in the middle of a span is not a handle */
	if (out[0].npages > 1) {
		r = (struct spanalloc_ret){ .handle = out[0].handle + 1,
					    .op = SPANALLOC_RET_EMPTY };
		EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	}
	/* none of that changed the span: it is still ours to return */
	EXPECT_EQ(0, sa_t_ret(self->fd, out[0].handle, SPANALLOC_RET_EMPTY));
	ex = good;
	ex.get_ptr = 8;
	EXPECT_EQ(-EFAULT, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
#undef BAD
}

TEST_F(heap, spans_user_space_cannot_receive_are_taken_back)
{
	unsigned int sc = SPANALLOC_SPANCLASS(8, 0);
	struct spanalloc_class_stats cs[NSC];
	struct spanalloc_stats st;
	struct spanalloc_large *lg;
	struct spanalloc_exchange ex = {
		.size = sizeof(ex), .get_count = 3, .get_spanclass = sc,
	};
	void *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_NE(MAP_FAILED, ro);
	/* exchange: the output array is readable but not writable */
	ex.get_ptr = (uintptr_t)ro;
	ASSERT_EQ(0, mprotect(ro, 4096, PROT_READ));
	EXPECT_EQ(-EFAULT, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, cs));
	EXPECT_EQ(0, cs[sc].owned);
	EXPECT_EQ(3, cs[sc].partial + cs[sc].cached);
	/* ...and they are handed out again */
	{
		struct spanalloc_span s[3];
		unsigned int got;

		EXPECT_EQ(0, sa_t_get(self->fd, sc, s, 3, &got));
		EXPECT_EQ(3, got);
	}
	/* large: the struct itself is readable but not writable */
	ASSERT_EQ(0, mprotect(ro, 4096, PROT_READ | PROT_WRITE));
	lg = ro;
	memset(lg, 0, sizeof(*lg));
	lg->size = sizeof(*lg);
	lg->npages = 7;
	ASSERT_EQ(0, mprotect(ro, 4096, PROT_READ));
	EXPECT_EQ(-EFAULT, sa_t_ioctl(self->fd, SPANALLOC_IOC_ALLOC_LARGE, lg));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, cs));
	EXPECT_EQ(0, cs[0].owned);
	EXPECT_EQ(0, st.large_spans);
	munmap(ro, 4096);
}

TEST_F(heap, double_return_is_rejected_and_changes_nothing)
{
	struct spanalloc_stats before, after;
	struct spanalloc_span s;

	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(5, 1), &s));
	ASSERT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_stats(self->fd, &before, NULL));
	EXPECT_EQ(-EINVAL, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
	EXPECT_EQ(-EINVAL, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_PARTIAL));
	ASSERT_EQ(0, sa_t_stats(self->fd, &after, NULL));
	EXPECT_EQ(before.spans, after.spans);
	EXPECT_EQ(before.pages_inuse, after.pages_inuse);
	EXPECT_EQ(before.spans_returned, after.spans_returned);
}

TEST_F(heap, batch_returns_are_all_or_nothing)
{
	struct spanalloc_span s[2];
	struct spanalloc_ret r[2];
	struct spanalloc_exchange ex = {
		.size = sizeof(ex), .ret_ptr = (uintptr_t)r, .ret_count = 2,
	};
	unsigned int got;

	ASSERT_EQ(0, sa_t_get(self->fd, SPANALLOC_SPANCLASS(9, 0), s, 2, &got));
	ASSERT_EQ(2, got);
	/* a good return followed by a bad one: neither happens */
	r[0] = (struct spanalloc_ret){ .handle = s[0].handle, .op = SPANALLOC_RET_PARTIAL };
	r[1] = (struct spanalloc_ret){ .handle = s[1].handle ^ (1ULL << 40),
				       .op = SPANALLOC_RET_EMPTY };
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	EXPECT_EQ(0, ex.ret_done);
	/* the same span twice in one batch */
	r[1] = (struct spanalloc_ret){ .handle = s[0].handle, .op = SPANALLOC_RET_EMPTY };
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	/* both spans are still owned: a proper batch returns them */
	r[0].op = SPANALLOC_RET_EMPTY;
	r[1] = (struct spanalloc_ret){ .handle = s[1].handle, .op = SPANALLOC_RET_EMPTY };
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	EXPECT_EQ(2, ex.ret_done);
}

TEST_F(heap, stale_handle_is_rejected)
{
	struct spanalloc_span a, b;

	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(1, 0), &a));
	ASSERT_EQ(0, sa_t_ret(self->fd, a.handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(1, 0), &b));
	EXPECT_EQ(a.addr, b.addr);	/* first fit reuses the pages... */
	EXPECT_NE(a.handle, b.handle);	/* ...under a new handle */
	EXPECT_EQ(1, b.needzero);	/* and says they were used */
	EXPECT_EQ(-EINVAL, sa_t_ret(self->fd, a.handle, SPANALLOC_RET_EMPTY));
	EXPECT_EQ(0, sa_t_ret(self->fd, b.handle, SPANALLOC_RET_EMPTY));
}

TEST_F(heap, handle_of_another_heap_is_rejected)
{
	struct spanalloc_span mine, theirs;
	void *map2;
	size_t len2;
	int fd2 = sa_t_open_mapped(&map2, &len2);

	ASSERT_LE(0, fd2);
	/* both heaps' first spans sit at page 0 of their own mapping */
	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(2, 0), &mine));
	ASSERT_EQ(0, sa_t_get1(fd2, SPANALLOC_SPANCLASS(2, 0), &theirs));
	EXPECT_EQ(-EINVAL, sa_t_ret(fd2, mine.handle, SPANALLOC_RET_EMPTY));
	EXPECT_EQ(-EINVAL, sa_t_ret(self->fd, theirs.handle, SPANALLOC_RET_EMPTY));
	EXPECT_EQ(0, sa_t_ret(self->fd, mine.handle, SPANALLOC_RET_EMPTY));
	EXPECT_EQ(0, sa_t_ret(fd2, theirs.handle, SPANALLOC_RET_EMPTY));
	munmap(map2, len2);
	close(fd2);
}

TEST_F(heap, returns_from_wrong_state_are_rejected)
{
	struct spanalloc_span s, l;

	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(20, 0), &s));
	/* PARTIAL: the kernel holds it now; no return applies */
	ASSERT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_PARTIAL));
	EXPECT_EQ(-EINVAL, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_PARTIAL));
	EXPECT_EQ(-EINVAL, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_FULL));
	EXPECT_EQ(-EINVAL, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(20, 0), &s));
	/* FULL: may become PARTIAL or EMPTY, not FULL again */
	ASSERT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_FULL));
	EXPECT_EQ(-EINVAL, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_FULL));
	EXPECT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_PARTIAL));
	/* large spans are only ever given back whole */
	ASSERT_EQ(0, sa_t_large(self->fd, 3, 0, &l));
	EXPECT_EQ(-EINVAL, sa_t_ret(self->fd, l.handle, SPANALLOC_RET_PARTIAL));
	EXPECT_EQ(-EINVAL, sa_t_ret(self->fd, l.handle, SPANALLOC_RET_FULL));
	EXPECT_EQ(0, sa_t_ret(self->fd, l.handle, SPANALLOC_RET_EMPTY));
}

TEST_F(heap, partial_span_is_handed_out_again_full_span_is_not)
{
	unsigned int sc = SPANALLOC_SPANCLASS(7, 1);
	struct spanalloc_span a, b, c;

	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &a));
	ASSERT_EQ(0, sa_t_ret(self->fd, a.handle, SPANALLOC_RET_FULL));
	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &b));
	EXPECT_NE(a.handle, b.handle);
	ASSERT_EQ(0, sa_t_ret(self->fd, b.handle, SPANALLOC_RET_PARTIAL));
	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &c));
	EXPECT_EQ(b.handle, c.handle);
	EXPECT_EQ(1, c.needzero);
}

TEST_F(heap, large_spans)
{
	struct spanalloc_large lg;
	struct spanalloc_span s;

	ASSERT_EQ(0, sa_t_large(self->fd, 1, 0, &s));
	EXPECT_EQ(SPANALLOC_SPANCLASS(0, 0), s.spanclass);
	EXPECT_EQ(1, s.npages);
	EXPECT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_large(self->fd, 9000, SPANALLOC_LARGE_NOSCAN, &s));
	EXPECT_EQ(SPANALLOC_SPANCLASS(0, 1), s.spanclass);
	EXPECT_EQ(9000, s.npages);	/* crosses an arena boundary */
	EXPECT_TRUE(sa_addr_in(self, &s));
	((char *)(uintptr_t)s.addr)[9000 * SPANALLOC_PAGE_SIZE - 1] = 1;
	EXPECT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));

	EXPECT_EQ(-EINVAL, sa_t_large(self->fd, 0, 0, &s));
	EXPECT_EQ(-EINVAL, sa_t_large(self->fd, self->info.max_large_pages + 1, 0, &s));
	EXPECT_EQ(-EINVAL, sa_t_large(self->fd, 1, 2, &s));
	memset(&lg, 0, sizeof(lg));
	lg.size = sizeof(lg);
	lg.npages = 1;
	lg.reserved = 1;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_ALLOC_LARGE, &lg));
	lg.reserved = 0;
	lg.span.pad = 1;	/* an output field: ignored on input */
	ASSERT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_ALLOC_LARGE, &lg));
	EXPECT_EQ(0, lg.span.pad);
	EXPECT_EQ(0, sa_t_ret(self->fd, lg.span.handle, SPANALLOC_RET_EMPTY));
}

TEST_F(heap, limit_is_enforced_and_heap_stays_usable)
{
	struct spanalloc_limit lim = { .size = sizeof(lim), .limit = 16 * SPANALLOC_PAGE_SIZE };
	unsigned int sc = SPANALLOC_SPANCLASS(4, 0);	/* one page per span */
	struct spanalloc_span s[20], extra;
	struct spanalloc_ret r;
	struct spanalloc_exchange ex;
	struct spanalloc_stats st;
	unsigned int n = 0;

	ASSERT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_SET_LIMIT, &lim));
	while (n < 20 && sa_t_get1(self->fd, sc, &s[n]) == 0)
		n++;
	EXPECT_EQ(16, n);
	EXPECT_EQ(-ENOMEM, sa_t_get1(self->fd, sc, &extra));
	EXPECT_EQ(-ENOMEM, sa_t_large(self->fd, 1, 0, &extra));
	/* at the limit, returns in a failing exchange still take effect */
	r = (struct spanalloc_ret){ .handle = s[--n].handle, .op = SPANALLOC_RET_FULL };
	ex = (struct spanalloc_exchange){ .size = sizeof(ex), .ret_ptr = (uintptr_t)&r,
		.ret_count = 1, .get_ptr = (uintptr_t)&extra, .get_count = 1,
		.get_spanclass = SPANALLOC_SPANCLASS(5, 0) };
	EXPECT_EQ(-ENOMEM, sa_t_ioctl(self->fd, SPANALLOC_IOC_EXCHANGE, &ex));
	EXPECT_EQ(1, ex.ret_done);
	EXPECT_EQ(0, ex.get_done);
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
	EXPECT_LE(2, st.enomem);
	EXPECT_EQ(16, st.pages_inuse);
	/* limits only go down, in whole pages, with no flags */
	lim.limit = 32 * SPANALLOC_PAGE_SIZE;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_SET_LIMIT, &lim));
	lim.limit = 0;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_SET_LIMIT, &lim));
	lim.limit = SPANALLOC_PAGE_SIZE + 1;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_SET_LIMIT, &lim));
	lim.limit = SPANALLOC_PAGE_SIZE;
	lim.flags = 1;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_SET_LIMIT, &lim));
	/* freeing below the limit makes room again */
	EXPECT_EQ(0, sa_t_ret(self->fd, s[0].handle, SPANALLOC_RET_EMPTY));
	EXPECT_EQ(0, sa_t_get1(self->fd, sc, &extra));
}

TEST_F(heap, stats_count_spans_by_state)
{
	struct spanalloc_class_stats cs[NSC];
	unsigned int sc = SPANALLOC_SPANCLASS(30, 0), got;
	struct spanalloc_span s[4], l;
	struct spanalloc_stats st;

	ASSERT_EQ(0, sa_t_get(self->fd, sc, s, 4, &got));
	ASSERT_EQ(4, got);
	ASSERT_EQ(0, sa_t_large(self->fd, 5, 0, &l));
	ASSERT_EQ(0, sa_t_ret(self->fd, s[0].handle, SPANALLOC_RET_FULL));
	ASSERT_EQ(0, sa_t_ret(self->fd, s[1].handle, SPANALLOC_RET_PARTIAL));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, cs));
	EXPECT_EQ(5, st.spans);
	EXPECT_EQ(1, st.large_spans);
	EXPECT_EQ(4 * sa_t_class_pages(sc) + 5, st.pages_inuse);
	EXPECT_EQ(1, st.arenas);
	EXPECT_EQ(self->len, st.mapped);
	EXPECT_EQ(2, cs[sc].owned);
	EXPECT_EQ(1, cs[sc].full);
	EXPECT_EQ(1, cs[sc].partial + cs[sc].cached);
	EXPECT_EQ(1, cs[0].owned);
	EXPECT_EQ(5, st.spans_got);
	EXPECT_EQ(2, st.spans_returned);
	EXPECT_EQ(1, st.large_allocs);

	/* the stats struct is checked like the others */
	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	st.classes_count = NSC + 1;
	st.classes_ptr = (uintptr_t)cs;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_STATS, &st));
	st.classes_count = 1;
	st.classes_ptr = 0;
	EXPECT_EQ(-EINVAL, sa_t_ioctl(self->fd, SPANALLOC_IOC_STATS, &st));
	/* an output field set on input is ignored, and overwritten */
	st.classes_count = 0;
	st.spans = 1000;
	EXPECT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_STATS, &st));
	EXPECT_EQ(5, st.spans);
	/* a heap not mapped yet has no span of any class */
	{
		int fd = open(SA_DEV, O_RDWR | O_CLOEXEC);

		ASSERT_LE(0, fd);
		memset(cs, 0xff, sizeof(cs));
		ASSERT_EQ(0, sa_t_stats(fd, &st, cs));
		EXPECT_EQ(0, cs[sc].owned + cs[sc].full + cs[sc].partial + cs[sc].cached);
		EXPECT_EQ(0, st.mapped);
		close(fd);
	}
}

/* Span class sc's spans in per-CPU caches, from the stats ioctl. */
static unsigned int sa_cached(int fd, unsigned int sc, unsigned int *partial)
{
	struct spanalloc_class_stats cs[NSC];
	struct spanalloc_stats st;

	if (sa_t_stats(fd, &st, cs))
		return ~0U;
	if (partial)
		*partial = cs[sc].partial;
	return cs[sc].cached;
}

TEST_F(heap, per_cpu_cache_serves_the_same_cpu_without_central_lists)
{
	unsigned int sc = SPANALLOC_SPANCLASS(12, 1);
	struct spanalloc_stats a, b;
	struct spanalloc_span s, t;

	if (!self->info.pcp_depth)
		SKIP(return, "per-CPU cache turned off (pcp_depth=0)");
	ASSERT_EQ(0, sa_t_pin(0));
	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &s));
	ASSERT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_PARTIAL));
	EXPECT_EQ(1, sa_cached(self->fd, sc, NULL));
	ASSERT_EQ(0, sa_t_stats(self->fd, &a, NULL));
	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &t));
	ASSERT_EQ(0, sa_t_stats(self->fd, &b, NULL));
	EXPECT_EQ(s.handle, t.handle);
	EXPECT_EQ(a.pcp_hits + 1, b.pcp_hits);
	EXPECT_EQ(a.central_hits, b.central_hits);
	EXPECT_EQ(0, sa_cached(self->fd, sc, NULL));
	sa_t_unpin();
}

TEST_F(heap, per_cpu_cache_is_bounded)
{
	unsigned int sc = SPANALLOC_SPANCLASS(13, 0), got, cached, partial;
	struct spanalloc_span s[24];

	if (!self->info.pcp_depth)
		SKIP(return, "per-CPU cache turned off (pcp_depth=0)");
	ASSERT_EQ(0, sa_t_pin(0));
	ASSERT_EQ(0, sa_t_get(self->fd, sc, s, 24, &got));
	ASSERT_EQ(24, got);
	for (int i = 0; i < 24; i++)
		ASSERT_EQ(0, sa_t_ret(self->fd, s[i].handle, SPANALLOC_RET_PARTIAL));
	cached = sa_cached(self->fd, sc, &partial);
	EXPECT_LE(cached, self->info.pcp_depth);
	EXPECT_EQ(24, cached + partial);
	sa_t_unpin();
}

/*
 * A class whose spans the heap made 4 times the table's length parks a
 * quarter as many on a CPU: no more pages than with the table's.
 */
TEST_F(heap, per_cpu_cache_of_longer_spans_holds_as_many_pages)
{
	unsigned int c = sa_class_sized(192), sc = SPANALLOC_SPANCLASS(c, 0);
	unsigned int got, cached, partial, depth = self->info.pcp_depth;
	struct spanalloc_span_pages sp;
	struct spanalloc_span s[24];

	if (!depth)
		SKIP(return, "per-CPU cache turned off (pcp_depth=0)");
	ASSERT_NE(0, c);
	ASSERT_EQ(1, sa_t_classes[c].npages);
	memset(&sp, 0, sizeof(sp));
	sp.pages[c] = 4;
	ASSERT_EQ(0, sa_span_pages(self->fd, &sp));
	ASSERT_EQ(0, sa_t_pin(0));
	ASSERT_EQ(0, sa_t_get(self->fd, sc, s, 24, &got));
	ASSERT_EQ(24, got);
	for (int i = 0; i < 24; i++) {
		EXPECT_EQ(4, s[i].npages);
		ASSERT_EQ(0, sa_t_ret(self->fd, s[i].handle, SPANALLOC_RET_PARTIAL));
	}
	cached = sa_cached(self->fd, sc, &partial);
	EXPECT_LE(1, cached);
	EXPECT_LE(cached, depth / 4 > 1 ? depth / 4 : 1);
	EXPECT_EQ(24, cached + partial);
	/* back to the table's length: the bound is pcp_depth again */
	sp.pages[c] = 0;
	ASSERT_EQ(0, sa_span_pages(self->fd, &sp));
	for (int i = 0; i < 24; i++)
		ASSERT_EQ(0, sa_t_get1(self->fd, sc, &s[i]));
	for (int i = 0; i < 24; i++)
		ASSERT_EQ(0, sa_t_ret(self->fd, s[i].handle, SPANALLOC_RET_PARTIAL));
	cached = sa_cached(self->fd, sc, &partial);
	EXPECT_LT(depth / 4, cached);
	EXPECT_LE(cached, depth);
	EXPECT_EQ(24, cached + partial);
	sa_t_unpin();
}

TEST_F(heap, offline_cpu_has_its_cache_drained)
{
	const char *online = "/sys/devices/system/cpu/cpu1/online";
	unsigned int sc = SPANALLOC_SPANCLASS(14, 0), partial;
	struct spanalloc_span s;

	if (!self->info.pcp_depth)
		SKIP(return, "per-CPU cache turned off (pcp_depth=0)");
	if (access(online, W_OK))
		SKIP(return, "cannot take cpu1 offline here (%s)", strerror(errno));
	ASSERT_EQ(0, sa_t_pin(1));
	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &s));
	ASSERT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_PARTIAL));
	sa_t_unpin();
	ASSERT_EQ(1, sa_cached(self->fd, sc, &partial));
	ASSERT_EQ(0, partial);
	ASSERT_EQ(0, sa_t_write_file(online, "0"));
	EXPECT_EQ(0, sa_cached(self->fd, sc, &partial));
	EXPECT_EQ(1, partial);
	ASSERT_EQ(0, sa_t_write_file(online, "1"));
	/* the drained span is handed out again from the central list */
	ASSERT_EQ(0, sa_t_pin(1));
	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &s));
	sa_t_unpin();
	EXPECT_EQ(0, sa_cached(self->fd, sc, &partial));
	EXPECT_EQ(0, partial);
}

struct sa_churn {
	int fd;
	volatile int *stop;
	long rounds;
	int err;
};

/* Gets and returns spans of one class, every way, until told to stop. */
static void *sa_churn_fn(void *arg)
{
	struct sa_churn *c = arg;
	unsigned int sc = SPANALLOC_SPANCLASS(9, 0);
	static const unsigned int ops[] = {
		SPANALLOC_RET_PARTIAL, SPANALLOC_RET_EMPTY, SPANALLOC_RET_FULL,
	};

	while (!*c->stop && !c->err) {
		struct spanalloc_span s[4];
		unsigned int got = 0;

		c->err = sa_t_get(c->fd, sc, s, 4, &got);
		for (unsigned int i = 0; !c->err && i < got; i++) {
			c->err = sa_t_ret(c->fd, s[i].handle, ops[(c->rounds + i) % 3]);
			/* a FULL span comes back EMPTY, as a thread that frees into it would */
			if (!c->err && ops[(c->rounds + i) % 3] == SPANALLOC_RET_FULL)
				c->err = sa_t_ret(c->fd, s[i].handle, SPANALLOC_RET_EMPTY);
		}
		c->rounds++;
	}
	return NULL;
}

/*
 * CPUs going offline while threads exchange spans: every span a dead CPU
 * cached is drained, none is lost or seen twice, and the heap's counts add
 * up afterwards.
 */
TEST_F_TIMEOUT(heap, cpus_going_offline_during_exchanges_lose_no_span, 120)
{
	struct spanalloc_class_stats cs[NSC];
	struct sa_churn c[3];
	struct spanalloc_stats st;
	pthread_t t[3];
	volatile int stop = 0;
	char path[64];
	int ncpu = 0, toggles = 0;
	uint64_t in_states = 0;

	for (int cpu = 1; cpu < 8; cpu++) {
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/online", cpu);
		if (!access(path, W_OK))
			ncpu = cpu;
	}
	if (!ncpu)
		SKIP(return, "no CPU can be taken offline here");
	for (int i = 0; i < 3; i++) {
		c[i] = (struct sa_churn){ .fd = self->fd, .stop = &stop };
		ASSERT_EQ(0, pthread_create(&t[i], NULL, sa_churn_fn, &c[i]));
	}
	for (int round = 0; round < 6; round++) {
		for (int cpu = 1; cpu <= ncpu; cpu++) {
			snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/online", cpu);
			if (!sa_t_write_file(path, "0")) {
				toggles++;
				usleep(20 * 1000);
				EXPECT_EQ(0, sa_t_write_file(path, "1"));
			}
		}
	}
	stop = 1;
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(0, pthread_join(t[i], NULL));
		EXPECT_EQ(0, c[i].err);
		EXPECT_LT(0, c[i].rounds);
	}
	TH_LOG("%d CPU offline/online cycles during %ld+%ld+%ld exchange rounds",
	       toggles, c[0].rounds, c[1].rounds, c[2].rounds);
	EXPECT_LT(0, toggles);
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, cs));
	for (unsigned int sc = 0; sc < NSC; sc++) {
		EXPECT_EQ(0, cs[sc].owned);
		EXPECT_EQ(0, cs[sc].full);
		in_states += cs[sc].cached + cs[sc].partial;
	}
	EXPECT_EQ(st.spans, in_states);
}

TEST_F(bare, per_cpu_layer_can_be_turned_off)
{
	const char *param = "/sys/module/spanalloc/parameters/pcp_depth";
	long old = sa_t_read_long(param);
	unsigned int sc = SPANALLOC_SPANCLASS(15, 0), partial;
	char oldval[24];
	struct spanalloc_span s;
	void *map;
	size_t len;
	int fd;

	if (old < 0 || access(param, W_OK))
		SKIP(return, "cannot change %s", param);
	ASSERT_EQ(0, sa_t_write_file(param, "0"));
	fd = sa_t_open_mapped(&map, &len);
	snprintf(oldval, sizeof(oldval), "%ld", old);
	ASSERT_EQ(0, sa_t_write_file(param, oldval));	/* for heaps after this one */
	ASSERT_LE(0, fd);
	{
		struct spanalloc_info info;

		ASSERT_EQ(0, sa_t_info(fd, &info));
		EXPECT_EQ(0, info.pcp_depth);
	}
	ASSERT_EQ(0, sa_t_get1(fd, sc, &s));
	ASSERT_EQ(0, sa_t_ret(fd, s.handle, SPANALLOC_RET_PARTIAL));
	EXPECT_EQ(0, sa_cached(fd, sc, &partial));
	EXPECT_EQ(1, partial);
	munmap(map, len);
	close(fd);
	EXPECT_EQ(old, sa_t_read_long(param));
}

/* Fills a heap with spans in every state. */
static void sa_spans_in_every_state(int fd)
{
	struct spanalloc_span s[8];
	unsigned int got;

	sa_t_get(fd, SPANALLOC_SPANCLASS(3, 0), s, 8, &got);
	sa_t_ret(fd, s[0].handle, SPANALLOC_RET_PARTIAL);	/* cached */
	sa_t_ret(fd, s[1].handle, SPANALLOC_RET_FULL);		/* full */
	for (int i = 2; i < 6; i++)				/* partial */
		sa_t_ret(fd, s[i].handle, SPANALLOC_RET_PARTIAL);
	sa_t_large(fd, 300, 0, &s[0]);				/* large */
	memset((void *)(uintptr_t)s[0].addr, 1, 300 * SPANALLOC_PAGE_SIZE);
}

TEST_F(bare, close_and_exit_free_every_span)
{
	struct spanalloc_info before, after;
	void *map;
	size_t len;
	pid_t pid;
	int fd, st;

	ASSERT_EQ(0, sa_t_info(self->fd, &before));
	fd = sa_t_open_mapped(&map, &len);
	ASSERT_LE(0, fd);
	sa_spans_in_every_state(fd);
	ASSERT_EQ(0, sa_t_info(self->fd, &after));
	EXPECT_LT(before.global_spans, after.global_spans);
	EXPECT_EQ(before.global_heaps + 1, after.global_heaps);
	/* the heap lives while its mapping does, even with the fd closed */
	close(fd);
	ASSERT_EQ(0, sa_t_info(self->fd, &after));
	EXPECT_EQ(before.global_heaps + 1, after.global_heaps);
	munmap(map, len);
	ASSERT_EQ(0, sa_t_info(self->fd, &after));
	EXPECT_EQ(before.global_heaps, after.global_heaps);
	EXPECT_EQ(before.global_spans, after.global_spans);
	EXPECT_EQ(before.global_pages, after.global_pages);
	EXPECT_EQ(before.global_arenas, after.global_arenas);

	/* a process that dies holding a heap leaves nothing behind either */
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		fd = sa_t_open_mapped(&map, &len);
		if (fd < 0)
			_exit(1);
		sa_spans_in_every_state(fd);
		raise(SIGKILL);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	EXPECT_TRUE(WIFSIGNALED(st));
	ASSERT_EQ(0, sa_t_info(self->fd, &after));
	EXPECT_EQ(before.global_heaps, after.global_heaps);
	EXPECT_EQ(before.global_spans, after.global_spans);
	EXPECT_EQ(before.global_pages, after.global_pages);
	EXPECT_EQ(before.global_arenas, after.global_arenas);
}

/*
 * What a process that is not the owner may still try with a heap's fd: the
 * release and limit ioctls, and read/write, which the device has none of.
 * Returns how many of them did not fail as they must.
 */
static int sa_t_nonowner_calls(int fd)
{
	struct spanalloc_release rel = { .size = sizeof(rel) };
	struct spanalloc_limit lim = {
		.size = sizeof(lim), .limit = SPANALLOC_ARENA_SIZE,
	};
	char buf[64] = "";
	int fails = 0;

	fails += sa_t_ioctl(fd, SPANALLOC_IOC_RELEASE, &rel) != -EPERM;
	fails += sa_t_ioctl(fd, SPANALLOC_IOC_SET_LIMIT, &lim) != -EPERM;
	fails += read(fd, buf, sizeof(buf)) >= 0;
	fails += write(fd, buf, sizeof(buf)) >= 0;
	return fails;
}

TEST_F(heap, forked_child_cannot_touch_parent_heap)
{
	struct spanalloc_stats before, after;
	struct spanalloc_span s;
	int pipefd[2], st;
	pid_t pid;

	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(6, 0), &s));
	memset((void *)(uintptr_t)s.addr, 'P', 64);
	ASSERT_EQ(0, sa_t_stats(self->fd, &before, NULL));
	ASSERT_EQ(0, pipe(pipefd));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct spanalloc_span c;
		struct spanalloc_stats cst;
		struct spanalloc_info ci;
		int fails = 0;

		/* the child sees a copy of the parent's objects... */
		fails += ((char *)(uintptr_t)s.addr)[0] != 'P';
		/* ...may change its copy... */
		memset((void *)(uintptr_t)s.addr, 'C', 64);
		/* ...but may not use the parent's heap in any way */
		fails += sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY) != -EPERM;
		fails += sa_t_get1(self->fd, SPANALLOC_SPANCLASS(6, 0), &c) != -EPERM;
		fails += sa_t_large(self->fd, 1, 0, &c) != -EPERM;
		fails += sa_t_stats(self->fd, &cst, NULL) != -EPERM;
		fails += sa_t_info(self->fd, &ci) != -EPERM;
		fails += sa_t_nonowner_calls(self->fd);
		fails += mmap(NULL, SPANALLOC_ARENA_SIZE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE, self->fd, 0) != MAP_FAILED || errno != EPERM;
		_exit(fails);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
	EXPECT_EQ('P', ((char *)(uintptr_t)s.addr)[0]);
	ASSERT_EQ(0, sa_t_stats(self->fd, &after, NULL));
	EXPECT_EQ(before.spans, after.spans);
	EXPECT_EQ(before.spans_got, after.spans_got);
	EXPECT_EQ(before.spans_returned, after.spans_returned);
	EXPECT_EQ(0, sa_t_ret(self->fd, s.handle, SPANALLOC_RET_EMPTY));
	close(pipefd[0]);
	close(pipefd[1]);
}

static int sa_send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, byte = 'x';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int sa_recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(sock, &msg, 0) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&msg);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

static struct spanalloc_adopt_span sa_t_adopt_of(const struct spanalloc_span *s,
						  uint16_t op)
{
	return (struct spanalloc_adopt_span){
		.addr = s->addr, .npages = s->npages, .spanclass = s->spanclass, .op = op,
	};
}

static int sa_t_all(const void *p, int c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (((const unsigned char *)p)[i] != c)
			return 0;
	return 1;
}

/*
 * The child's copy becomes a heap of its own: the spans it lists keep
 * their contents under new handles and states, every other page is given
 * back (reads zero), the new heap works, and the parent's is untouched.
 */
TEST_F(heap, forked_child_adopts_its_copy_into_a_heap_of_its_own)
{
	struct spanalloc_span own, big, part, gone;
	struct spanalloc_stats before, after;
	int st;
	pid_t pid;

	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(6, 0), &own));
	ASSERT_EQ(0, sa_t_large(self->fd, 3, 0, &big));
	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(9, 1), &part));
	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(6, 0), &gone));
	memset((void *)(uintptr_t)own.addr, 'O', 64);
	memset((void *)(uintptr_t)big.addr, 'B', 3 * SPANALLOC_PAGE_SIZE);
	memset((void *)(uintptr_t)part.addr, 'Q', 64);
	memset((void *)(uintptr_t)gone.addr, 'G', 64);
	ASSERT_EQ(0, sa_t_stats(self->fd, &before, NULL));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct spanalloc_adopt_span d[3] = {
			sa_t_adopt_of(&own, SPANALLOC_ADOPT_OWNED),
			sa_t_adopt_of(&big, SPANALLOC_ADOPT_OWNED),
			sa_t_adopt_of(&part, SPANALLOC_RET_PARTIAL),
		};
		struct spanalloc_stats cst;
		struct spanalloc_span c;
		uint64_t released = 0, listed;
		int fd = open(SA_DEV, O_RDWR | O_CLOEXEC), fails = 0;

		if (fd < 0)
			_exit(100);
		if (sa_t_adopt(fd, (uintptr_t)self->map, self->len, d, 3, &released))
			_exit(101);
		listed = ((uint64_t)own.npages + big.npages + part.npages) * SPANALLOC_PAGE_SIZE;
		fails += released != self->len - listed;
		/* listed spans keep the child's copy; the rest reads zero */
		fails += !sa_t_all((void *)(uintptr_t)own.addr, 'O', 64);
		fails += !sa_t_all((void *)(uintptr_t)big.addr, 'B', 3 * SPANALLOC_PAGE_SIZE);
		fails += !sa_t_all((void *)(uintptr_t)part.addr, 'Q', 64);
		fails += !sa_t_all((void *)(uintptr_t)gone.addr, 0, 64);
		/* new handles; the old ones name nothing in the new heap */
		fails += !d[0].handle || !d[1].handle || !d[2].handle;
		fails += sa_t_ret(fd, own.handle, SPANALLOC_RET_EMPTY) != -EINVAL;
		fails += sa_t_stats(fd, &cst, NULL) != 0 || cst.spans != 3 ||
			 cst.mapped != self->len;
		/* the partial span is handed out again, as a returned one is */
		fails += sa_t_get1(fd, SPANALLOC_SPANCLASS(9, 1), &c) != 0 ||
			 c.addr != part.addr || !c.needzero;
		fails += sa_t_ret(fd, d[0].handle, SPANALLOC_RET_EMPTY) != 0;
		fails += sa_t_ret(fd, d[1].handle, SPANALLOC_RET_EMPTY) != 0;
		fails += sa_t_ret(fd, c.handle, SPANALLOC_RET_EMPTY) != 0;
		/* a new span, and the parent's heap is still not the child's */
		fails += sa_t_get1(fd, SPANALLOC_SPANCLASS(6, 0), &c) != 0;
		fails += sa_t_get1(self->fd, SPANALLOC_SPANCLASS(6, 0), &c) != -EPERM;
		/* one adoption per heap */
		fails += sa_t_adopt(fd, (uintptr_t)self->map, self->len, NULL, 0, NULL) != -EBUSY;
		_exit(fails);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
	EXPECT_TRUE(sa_t_all((void *)(uintptr_t)own.addr, 'O', 64));
	EXPECT_TRUE(sa_t_all((void *)(uintptr_t)big.addr, 'B', 3 * SPANALLOC_PAGE_SIZE));
	EXPECT_TRUE(sa_t_all((void *)(uintptr_t)gone.addr, 'G', 64));
	ASSERT_EQ(0, sa_t_stats(self->fd, &after, NULL));
	EXPECT_EQ(before.spans, after.spans);
	EXPECT_EQ(before.spans_got, after.spans_got);
	EXPECT_EQ(before.spans_returned, after.spans_returned);
	EXPECT_EQ(0, sa_t_ret(self->fd, own.handle, SPANALLOC_RET_EMPTY));
	EXPECT_EQ(0, sa_t_ret(self->fd, big.handle, SPANALLOC_RET_EMPTY));
}

/* ADOPT takes only the inherited mapping, as it is, with sane spans. */
TEST_F(heap, adopt_rejects_anything_but_the_inherited_mapping)
{
	struct spanalloc_span a, b, lg;
	struct spanalloc_adopt ad;
	uintptr_t base = (uintptr_t)self->map;
	int fd, st;
	pid_t pid;

	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(6, 0), &a));
	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(6, 0), &b));
	ASSERT_EQ(0, sa_t_large(self->fd, 2, 0, &lg));
	memset((void *)(uintptr_t)a.addr, 'A', 64);
	/* the owner's own mapping is not inherited */
	fd = open(SA_DEV, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-EINVAL, sa_t_adopt(fd, base, self->len, NULL, 0, NULL));
	close(fd);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct spanalloc_adopt_span one = sa_t_adopt_of(&a, SPANALLOC_ADOPT_OWNED);
		struct spanalloc_adopt_span two[2] = { one, one };
		struct spanalloc_adopt_span bad;
		int fails = 0, i = 0;

#define SA_T_REFUSED(want, ...) do {					\
		int _fd = open(SA_DEV, O_RDWR | O_CLOEXEC);		\
		int _r = sa_t_adopt(_fd, __VA_ARGS__);			\
		if (_r != (want)) {					\
			fprintf(stderr, "# case %d: %d, not %d\n", i, _r, want); \
			fails++;					\
		}							\
		i++;							\
		close(_fd);						\
	} while (0)
		SA_T_REFUSED(-EINVAL, base, self->len - SPANALLOC_ARENA_SIZE, &one, 1, NULL);
		SA_T_REFUSED(-EINVAL, base + SPANALLOC_ARENA_SIZE, self->len - SPANALLOC_ARENA_SIZE,
			     &one, 1, NULL);
		SA_T_REFUSED(-EINVAL, base + 4096, self->len, &one, 1, NULL);
		SA_T_REFUSED(-EINVAL, base, self->len, two, 2, NULL);	/* overlap */
		bad = one;
		bad.npages = sa_t_class_pages(one.spanclass) - 1;	/* under the table's */
		SA_T_REFUSED(-EINVAL, base, self->len, &bad, 1, NULL);
		bad = one;
		bad.npages = SPANALLOC_MAX_CLASS_PAGES + 1;		/* longer than any may be */
		SA_T_REFUSED(-EINVAL, base, self->len, &bad, 1, NULL);
		bad = one;
		bad.op = SPANALLOC_RET_EMPTY;
		SA_T_REFUSED(-EINVAL, base, self->len, &bad, 1, NULL);
		bad = sa_t_adopt_of(&lg, SPANALLOC_RET_PARTIAL);	/* large: owned only */
		SA_T_REFUSED(-EINVAL, base, self->len, &bad, 1, NULL);
		bad = one;
		bad.addr = base + self->len;				/* outside */
		SA_T_REFUSED(-EINVAL, base, self->len, &bad, 1, NULL);
		bad = one;
		bad.addr += 512;					/* not a page */
		SA_T_REFUSED(-EINVAL, base, self->len, &bad, 1, NULL);
		bad = one;
		bad.spanclass = NSC;
		SA_T_REFUSED(-EINVAL, base, self->len, &bad, 1, NULL);
		SA_T_REFUSED(-EFAULT, base, self->len, (void *)8, 1, NULL);
#undef SA_T_REFUSED
		/* fields and flags */
		fd = open(SA_DEV, O_RDWR | O_CLOEXEC);
		memset(&ad, 0, sizeof(ad));
		ad.size = sizeof(ad);
		ad.addr = base;
		ad.len = self->len;
		ad.flags = 1;
		fails += sa_t_ioctl(fd, SPANALLOC_IOC_ADOPT, &ad) != -EINVAL;
		ad.flags = 0;
		ad.reserved = 1;
		fails += sa_t_ioctl(fd, SPANALLOC_IOC_ADOPT, &ad) != -EINVAL;
		/* a split mapping is not the inherited one */
		fails += mprotect((void *)base, SPANALLOC_PAGE_SIZE, PROT_READ) != 0;
		ad.reserved = 0;
		fails += sa_t_ioctl(fd, SPANALLOC_IOC_ADOPT, &ad) != -EINVAL;
		close(fd);
		/* none of it changed the child's copy */
		fails += !sa_t_all((void *)(uintptr_t)a.addr, 'A', 64);
		_exit(fails);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
	EXPECT_TRUE(sa_t_all((void *)(uintptr_t)a.addr, 'A', 64));
}

/*
 * A heap whose ADOPT failed half way is never used: every call fails, and
 * it can be neither mapped nor adopted again. And the new heap must come
 * from the same device node as the inherited mapping's.
 */
TEST_F(heap, a_failed_adopt_leaves_a_heap_nothing_can_use)
{
	struct spanalloc_span a;
	uintptr_t base = (uintptr_t)self->map;
	struct stat sb;
	int st;
	pid_t pid;

	ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(6, 0), &a));
	ASSERT_EQ(0, stat(SA_DEV, &sb));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct spanalloc_adopt_span two[2] = {
			sa_t_adopt_of(&a, SPANALLOC_ADOPT_OWNED),
			sa_t_adopt_of(&a, SPANALLOC_ADOPT_OWNED),
		};
		struct spanalloc_span c;
		int fd = open(SA_DEV, O_RDWR | O_CLOEXEC), fails = 0;
		const char *node = "/dev/spanalloc-adopt-test";

		/* overlapping spans: refused after the heap was set up */
		fails += sa_t_adopt(fd, base, self->len, two, 2, NULL) != -EINVAL;
		fails += sa_t_get1(fd, SPANALLOC_SPANCLASS(6, 0), &c) != -ENXIO;
		fails += sa_t_large(fd, 1, 0, &c) != -ENXIO;
		fails += sa_t_adopt(fd, base, self->len, two, 1, NULL) != -EBUSY;
		fails += mmap(NULL, SPANALLOC_ARENA_SIZE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_NORESERVE, fd, 0) != MAP_FAILED || errno != EBUSY;
		close(fd);
		/* another node of the same device: another file mapping */
		unlink(node);
		if (mknod(node, S_IFCHR | 0600, sb.st_rdev) == 0) {
			fd = open(node, O_RDWR | O_CLOEXEC);
			fails += sa_t_adopt(fd, base, self->len, two, 1, NULL) != -EINVAL;
			close(fd);
			unlink(node);
		} else {
			fprintf(stderr, "# mknod %s: %s\n", node, strerror(errno));
			fails++;
		}
		/* and the right node still works */
		fd = open(SA_DEV, O_RDWR | O_CLOEXEC);
		fails += sa_t_adopt(fd, base, self->len, two, 1, NULL) != 0;
		fails += sa_t_get1(fd, SPANALLOC_SPANCLASS(6, 0), &c) != 0;
		close(fd);
		_exit(fails);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
	EXPECT_EQ(0, sa_t_ret(self->fd, a.handle, SPANALLOC_RET_EMPTY));
}

TEST(fd_passed_to_another_process_is_refused)
{
	struct spanalloc_stats before, after;
	struct spanalloc_span s;
	int sv[2], st, fd;
	size_t len = 0;
	void *map = NULL;
	pid_t pid;

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	/* the receiver exists before the heap does: it inherits nothing */
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct spanalloc_span c;
		struct spanalloc_stats cst;
		int hfd, fails = 0;

		close(sv[0]);
		hfd = sa_recv_fd(sv[1]);
		if (hfd < 0)
			_exit(100);
		fails += mmap(NULL, SPANALLOC_ARENA_SIZE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE, hfd, 0) != MAP_FAILED || errno != EPERM;
		fails += sa_t_get1(hfd, SPANALLOC_SPANCLASS(3, 0), &c) != -EPERM;
		fails += sa_t_stats(hfd, &cst, NULL) != -EPERM;
		fails += sa_t_large(hfd, 1, 0, &c) != -EPERM;
		fails += sa_t_nonowner_calls(hfd);
		_exit(fails);
	}
	close(sv[1]);
	fd = sa_t_open_mapped(&map, &len);
	if (fd == -ENOENT) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		SKIP(return, "no " SA_DEV ": load spanalloc.ko");
	}
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, sa_t_get1(fd, SPANALLOC_SPANCLASS(3, 0), &s));
	ASSERT_EQ(0, sa_t_stats(fd, &before, NULL));
	ASSERT_EQ(0, sa_send_fd(sv[0], fd));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
	ASSERT_EQ(0, sa_t_stats(fd, &after, NULL));
	EXPECT_EQ(before.spans, after.spans);
	EXPECT_EQ(before.spans_got, after.spans_got);
	munmap(map, len);
	close(fd);
	close(sv[0]);
}

TEST_F(heap, module_cannot_unload_while_a_heap_is_open)
{
	/* only root may try: EPERM would say nothing about the module */
	if (geteuid() != 0)
		SKIP(return, "needs root to try to unload the module");
	/* vm-run checks the other half: rmmod succeeds once all are closed */
	EXPECT_EQ(-1, syscall(SYS_delete_module, "spanalloc", O_NONBLOCK));
	EXPECT_EQ(EWOULDBLOCK, errno);
	EXPECT_EQ(0, access(SA_DEV, F_OK));
}

struct sa_race {
	int fd;
	uint64_t handle;
	pthread_barrier_t *bar;
	int ret;
};

static void *sa_race_ret(void *arg)
{
	struct sa_race *r = arg;

	pthread_barrier_wait(r->bar);
	r->ret = sa_t_ret(r->fd, r->handle, SPANALLOC_RET_EMPTY);
	return NULL;
}

TEST_F(heap, racing_returns_of_one_span_let_exactly_one_win)
{
	enum { T = 4, ROUNDS = 200 };

	for (int round = 0; round < ROUNDS; round++) {
		struct sa_race r[T];
		pthread_barrier_t bar;
		pthread_t th[T];
		struct spanalloc_span s;
		int wins = 0;

		ASSERT_EQ(0, sa_t_get1(self->fd, SPANALLOC_SPANCLASS(2, 1), &s));
		pthread_barrier_init(&bar, NULL, T);
		for (int i = 0; i < T; i++) {
			r[i] = (struct sa_race){ self->fd, s.handle, &bar, 1 };
			pthread_create(&th[i], NULL, sa_race_ret, &r[i]);
		}
		for (int i = 0; i < T; i++) {
			pthread_join(th[i], NULL);
			wins += r[i].ret == 0;
			if (r[i].ret)
				EXPECT_EQ(-EINVAL, r[i].ret);
		}
		pthread_barrier_destroy(&bar);
		ASSERT_EQ(1, wins);
	}
}

TEST_HARNESS_MAIN
