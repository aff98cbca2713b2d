// SPDX-License-Identifier: GPL-2.0
/*
 * fault_test: every allocation the module makes, made to fail in turn.
 *
 * For each operation on the device (open, mmap, getting spans that need new
 * arenas, batched exchanges, large spans, stats, release), the test arms
 * /proc/thread-self/fail-nth with n = 1, 2, 3, ...: the n-th fault site the
 * thread reaches in the next system call fails (failslab for slab and
 * vmalloc metadata, fail_page_alloc for pages), whether it is the module's
 * or the core kernel's on the module's behalf. It stops at the first n the
 * call does not reach. Each failed call must return -ENOMEM and change
 * nothing; the same call must then succeed; and once the heap is closed the
 * module's counters must be back where they started. kmemleak, scanned by
 * scripts/vm-run after the suite, says whether anything leaked.
 *
 * Needs the debug kernel (CONFIG_FAULT_INJECTION, FAILSLAB,
 * FAIL_PAGE_ALLOC, debugfs): scripts/vm-run --kernel debug. Says SKIP
 * elsewhere.
 */
#include <sys/wait.h>
#include "kselftest_harness.h"
#include "util.h"

#define DBG "/sys/kernel/debug/"
#define MAX_NTH 2000

struct fctx {
	int fd;
	void *map;
	size_t len;
	struct spanalloc_span spans[8];
	unsigned int nspans;
	unsigned int returned;	/* an exchange's returns were applied */
};

static int fail_nth_fd = -1;

/* Arms the n-th fault site of this thread's next calls; 0 disarms. */
static int sa_arm(unsigned int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", n);

	return pwrite(fail_nth_fd, buf, len, 0) == len ? 0 : -errno;
}

/* Disarms; returns whether the armed fault fired. */
static int sa_disarm(void)
{
	char buf[16] = "";
	ssize_t n = pread(fail_nth_fd, buf, sizeof(buf) - 1, 0);

	sa_arm(0);
	return n > 0 && strtol(buf, NULL, 10) == 0;
}

static void sa_ctx_close(struct fctx *c)
{
	if (c->map && c->map != MAP_FAILED)
		munmap(c->map, c->len);
	if (c->fd >= 0)
		close(c->fd);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static int sa_prep_open(struct fctx *c)
{
	return 0;
}

static int sa_op_open(struct fctx *c)
{
	c->fd = open(SA_DEV, O_RDWR | O_CLOEXEC);
	return c->fd < 0 ? -errno : 0;
}

static int sa_prep_opened(struct fctx *c)
{
	c->fd = open(SA_DEV, O_RDWR | O_CLOEXEC);
	c->len = SPANALLOC_ARENA_SIZE * 4;
	return c->fd < 0 ? -errno : 0;
}

static int sa_op_mmap(struct fctx *c)
{
	c->map = mmap(NULL, c->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, c->fd, 0);
	return c->map == MAP_FAILED ? -errno : 0;
}

static int sa_prep_mapped(struct fctx *c)
{
	int r = sa_prep_opened(c);

	return r ? r : sa_op_mmap(c);
}

/* The heap's first span: sets up an arena and its span table. */
static int sa_op_first_span(struct fctx *c)
{
	int r = sa_t_get(c->fd, SPANALLOC_SPANCLASS(5, 0), c->spans, 1, &c->nspans);

	return r;
}

/* A heap with spans in use, so exchanges go through every cache layer. */
static int sa_prep_busy(struct fctx *c)
{
	int r = sa_prep_mapped(c);

	if (!r)
		r = sa_t_get(c->fd, SPANALLOC_SPANCLASS(5, 0), c->spans, 8, &c->nspans);
	return r;
}

static int sa_op_exchange(struct fctx *c)
{
	struct spanalloc_ret ret[4];
	struct spanalloc_span got[8];
	struct spanalloc_exchange ex = {
		.size = sizeof(ex), .ret_ptr = (uintptr_t)ret,
		.ret_count = c->returned ? 0 : 4,
		.get_ptr = (uintptr_t)got, .get_count = 8,
		.get_spanclass = SPANALLOC_SPANCLASS(40, 1),
	};
	int r;

	for (int i = 0; i < 4; i++) {
		ret[i].handle = c->spans[i].handle;
		ret[i].op = i & 1 ? SPANALLOC_RET_EMPTY : SPANALLOC_RET_PARTIAL;
		ret[i].reserved = 0;
	}
	r = sa_t_ioctl(c->fd, SPANALLOC_IOC_EXCHANGE, &ex);
	/* a failed get still applied the returns: ret_done says so */
	c->returned |= ex.ret_done;
	return r;
}

/* Three arenas' worth of pages: grows the heap more than once. */
static int sa_op_large(struct fctx *c)
{
	return sa_t_large(c->fd, 2 * (SPANALLOC_ARENA_SIZE / SPANALLOC_PAGE_SIZE) + 5,
			  0, &c->spans[0]);
}

static int sa_op_stats(struct fctx *c)
{
	static struct spanalloc_class_stats cs[SPANALLOC_NUM_SPANCLASSES];
	struct spanalloc_stats st;

	return sa_t_stats(c->fd, &st, cs);
}

static int sa_prep_dirty(struct fctx *c)
{
	struct spanalloc_span s;
	int r = sa_prep_mapped(c);

	if (!r)
		r = sa_t_large(c->fd, 512, 0, &s);
	if (!r) {
		memset((void *)(uintptr_t)s.addr, 7, 512 * SPANALLOC_PAGE_SIZE);
		r = sa_t_ret(c->fd, s.handle, SPANALLOC_RET_EMPTY);
	}
	return r;
}

static int sa_op_release(struct fctx *c)
{
	struct spanalloc_release rel = { .size = sizeof(rel) };

	return sa_t_ioctl(c->fd, SPANALLOC_IOC_RELEASE, &rel);
}

struct fault_op {
	const char *name;
	int (*prep)(struct fctx *c);
	int (*op)(struct fctx *c);
};

static const struct fault_op ops[] = {
	{ "open", sa_prep_open, sa_op_open },
	{ "mmap", sa_prep_opened, sa_op_mmap },
	{ "first span", sa_prep_mapped, sa_op_first_span },
	{ "exchange", sa_prep_busy, sa_op_exchange },
	{ "large span", sa_prep_mapped, sa_op_large },
	{ "stats", sa_prep_busy, sa_op_stats },
	{ "release", sa_prep_dirty, sa_op_release },
};

FIXTURE(inject) {
	struct spanalloc_info base;
	int probe;
};

FIXTURE_SETUP(inject)
{
	self->probe = open(SA_DEV, O_RDWR | O_CLOEXEC);
	if (self->probe < 0 && errno == ENOENT)
		SKIP(return, "no " SA_DEV ": load spanalloc.ko (scripts/vm-run does)");
	ASSERT_LE(0, self->probe);
	fail_nth_fd = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	if (fail_nth_fd < 0 || access(DBG "failslab/ignore-gfp-wait", W_OK))
		SKIP(return, "no fault injection in this kernel: run on the debug kernel (scripts/vm-run --kernel debug)");
	/* fail sleeping allocations and order-0 pages too; no stack dumps */
	ASSERT_EQ(0, sa_t_write_file(DBG "failslab/ignore-gfp-wait", "N"));
	ASSERT_EQ(0, sa_t_write_file(DBG "failslab/verbose", "0"));
	ASSERT_EQ(0, sa_t_write_file(DBG "fail_page_alloc/ignore-gfp-wait", "N"));
	ASSERT_EQ(0, sa_t_write_file(DBG "fail_page_alloc/ignore-gfp-highmem", "N"));
	ASSERT_EQ(0, sa_t_write_file(DBG "fail_page_alloc/min-order", "0"));
	ASSERT_EQ(0, sa_t_write_file(DBG "fail_page_alloc/verbose", "0"));
	ASSERT_EQ(0, sa_t_info(self->probe, &self->base));
}

FIXTURE_TEARDOWN(inject)
{
	if (fail_nth_fd >= 0) {
		sa_arm(0);
		close(fail_nth_fd);
		fail_nth_fd = -1;
	}
	if (self->probe >= 0)
		close(self->probe);
}

static void sa_expect_no_leak(struct __test_metadata *_metadata,
			      FIXTURE_DATA(inject) *self, const char *what,
			      unsigned int n)
{
	struct spanalloc_info now;

	ASSERT_EQ(0, sa_t_info(self->probe, &now));
	if (now.global_heaps != self->base.global_heaps ||
	    now.global_spans != self->base.global_spans ||
	    now.global_pages != self->base.global_pages ||
	    now.global_arenas != self->base.global_arenas)
		TH_LOG("%s, fault %u: heaps %llu spans %llu pages %llu arenas %llu left",
		       what, n, (unsigned long long)now.global_heaps,
		       (unsigned long long)now.global_spans,
		       (unsigned long long)now.global_pages,
		       (unsigned long long)now.global_arenas);
	EXPECT_EQ(self->base.global_heaps, now.global_heaps);
	EXPECT_EQ(self->base.global_spans, now.global_spans);
	EXPECT_EQ(self->base.global_pages, now.global_pages);
	EXPECT_EQ(self->base.global_arenas, now.global_arenas);
}

TEST_F_TIMEOUT(inject, every_allocation_fails_cleanly_in_turn, 1200)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		const struct fault_op *o = &ops[i];
		unsigned int n, failed = 0, other = 0;
		int r, fired;

		for (n = 1; n <= MAX_NTH; n++) {
			struct fctx c = { .fd = -1 };

			ASSERT_EQ(0, o->prep(&c)) TH_LOG("%s: setting up", o->name);
			ASSERT_EQ(0, sa_arm(n));
			r = o->op(&c);
			fired = sa_disarm();
			if (!fired) {
				/* past the last fault site: the call must work */
				EXPECT_EQ(0, r) TH_LOG("%s without a fault", o->name);
				sa_ctx_close(&c);
				sa_expect_no_leak(_metadata, self, o->name, n);
				break;
			}
			if (r) {
				failed++;
				if (r != -ENOMEM) {
					other++;
					TH_LOG("%s, fault %u: %s", o->name, n, strerror(-r));
				}
				/* nothing changed: the same call works now */
				EXPECT_EQ(0, o->op(&c)) TH_LOG("%s after fault %u", o->name, n);
			}
			sa_ctx_close(&c);
			sa_expect_no_leak(_metadata, self, o->name, n);
		}
		TH_LOG("%s: %u fault sites, %u made the call fail", o->name, n - 1, failed);
		EXPECT_GE(MAX_NTH, n) TH_LOG("%s: more than %d fault sites?", o->name, MAX_NTH);
		EXPECT_EQ(0, other);
	}
}

TEST_HARNESS_MAIN
