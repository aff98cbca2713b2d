// SPDX-License-Identifier: GPL-2.0
/*
 * lib_test: libspanalloc end to end against the module: every size class,
 * tiny and large objects, frees from other threads, thread exit, system
 * calls per span, the error paths (missing device, bad frees, fork).
 *
 * Each test runs in its own process (the harness forks), so each gets a
 * fresh heap.
 */
#include <limits.h>
#include <linux/membarrier.h>
#include <linux/spanalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "kselftest_harness.h"
#include "spanalloc.h"
#include "util.h"
#include "child.h"

#define NSC SPANALLOC_NUM_SPANCLASSES

static int sa_lib_ready(void)
{
	return access(SA_DEV, F_OK) == 0 && sa_init() == 0;
}

#define NEED_DEVICE() do { if (!sa_lib_ready()) \
	SKIP(return, "libspanalloc cannot start: %s", sa_strerror()); } while (0)

/* The handoff of idle threads' spans needs expedited membarrier(2). */
#define NEED_MEMBARRIER() do { \
	long mask = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0); \
	if (mask <= 0 || !(mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) \
		SKIP(return, "no expedited membarrier(2): idle threads keep their spans"); \
} while (0)

TEST(every_size_class_scan_and_noscan)
{
	NEED_DEVICE();
	for (unsigned int c = 1; c < SPANALLOC_NUM_CLASSES; c++) {
		size_t size = sa_class_size(c);

		for (int noscan = 0; noscan < 2; noscan++) {
			unsigned char *p[3];

			for (int i = 0; i < 3; i++) {
				p[i] = noscan ? sa_alloc_noscan(size) : sa_alloc(size);
				ASSERT_NE(NULL, p[i]);
				/* no class size is tiny (sa_tiny_wanted): 8 B has its class */
				EXPECT_EQ(size, sa_usable_size(p[i]));
				EXPECT_EQ(0, (uintptr_t)p[i] % (size < 16 ? 8 : 16));
				ASSERT_EQ(0, sa_t_nonzero(p[i], size));
				memset(p[i], 0xc0 + i, size);
			}
			for (int i = 0; i < 3; i++)
				sa_free(p[i]);
		}
	}
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The library asks its heap for longer spans where a page holds few
 * objects (sizeclass.c: sa_span_pages_wanted): 576-byte objects, 14 to
 * a page with a 128-byte tail, come 56 to a 4-page span, so a run of
 * objects 576 bytes apart is longer than one page could hold. Enough
 * objects that one span at least is fresh, whatever another span of the
 * class held.
 */
TEST(objects_few_to_a_page_come_from_longer_spans)
{
	enum { N = 200, SIZE = 576 };
	uintptr_t p[N];
	unsigned int run = 1, longest = 1;

	NEED_DEVICE();
	ASSERT_EQ(SIZE, sa_class_size(sa_size_class(SIZE)));
	for (int i = 0; i < N; i++) {
		p[i] = (uintptr_t)sa_malloc(SIZE);
		ASSERT_NE(0, p[i]);
	}
	qsort(p, N, sizeof(p[0]), cmp_ptr);
	for (int i = 1; i < N; i++) {
		run = p[i] - p[i - 1] == SIZE ? run + 1 : 1;
		if (run > longest)
			longest = run;
	}
	EXPECT_LT(SPANALLOC_PAGE_SIZE / SIZE, longest);
	EXPECT_LE(4 * SPANALLOC_PAGE_SIZE / SIZE, longest);
	for (int i = 0; i < N; i++)
		sa_free((void *)p[i]);
}

TEST(freed_objects_come_back_zeroed)
{
	enum { N = 5000 };
	static unsigned char *p[N];

	NEED_DEVICE();
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			p[i] = sa_alloc(48);
			ASSERT_NE(NULL, p[i]);
			ASSERT_EQ(0, sa_t_nonzero(p[i], 48));
			memset(p[i], 0xff, 48);
		}
		for (int i = 0; i < N; i++)
			sa_free(p[i]);
	}
}

/*
 * A thread that frees each object before it takes the next (a pair
 * loop) and keeps no span aside uses its active span up over and over:
 * each time the span starts over on its own frees, with no system call
 * and no new span, and every object comes back zeroed. With heap
 * profiling off and on: a span holding samples takes the slow path.
 */
TEST(a_span_used_up_by_pairs_starts_over_on_its_frees)
{
	/* 64 a span: 256 B spans are 2 pages (sizeclass.c) */
	enum { SIZE = 256, PAIRS = 64 * 100 };
	struct sa_stats a, b;
	int old;

	NEED_DEVICE();
	old = sa_set_held_pages(0);
	ASSERT_LE(0, old);
	for (int prof = 0; prof < 2; prof++) {
		unsigned char *q = sa_alloc(SIZE);

		ASSERT_NE(NULL, q);
		sa_free(q);
		if (prof)
			sa_set_profile_rate(4096);
		ASSERT_EQ(0, sa_get_stats(&a));
		for (int i = 0; i < PAIRS; i++) {
			q = sa_alloc(SIZE);
			ASSERT_NE(NULL, q);
			ASSERT_EQ(0, sa_t_nonzero(q, SIZE)) TH_LOG("pair %d, profiling %d", i, prof);
			memset(q, 0xa5, SIZE);
			sa_free(q);
		}
		ASSERT_EQ(0, sa_get_stats(&b));
		EXPECT_EQ(0, b.syscalls - a.syscalls) TH_LOG("profiling %d", prof);
		EXPECT_EQ(0, b.spans_got - a.spans_got);
		EXPECT_LE(PAIRS / 64 - 1, b.local_sweeps - a.local_sweeps);
		EXPECT_EQ(PAIRS, b.objects_freed - a.objects_freed);
	}
	sa_set_profile_rate(0);
	ASSERT_EQ(0, sa_set_held_pages((unsigned int)old));
}

/* calloc: zeroed, also where a freed object was; overflow is ENOMEM. */
TEST(calloc_zeroes_and_checks_overflow)
{
	unsigned char *p;

	NEED_DEVICE();
	for (int round = 0; round < 2; round++) {
		p = sa_calloc(10, 30);
		ASSERT_NE(NULL, p);
		ASSERT_EQ(0, sa_t_nonzero(p, 300));
		memset(p, 0x77, 300);
		sa_free(p);
	}
	p = sa_calloc(3, 20000);	/* large */
	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, sa_t_nonzero(p, 60000));
	sa_free(p);
	errno = 0;
	EXPECT_EQ(NULL, sa_calloc(SIZE_MAX / 2, 3));
	EXPECT_EQ(ENOMEM, errno);
	errno = 0;
	EXPECT_EQ(NULL, sa_calloc((size_t)1 << 40, (size_t)1 << 40));
	EXPECT_EQ(ENOMEM, errno);
}

/* malloc's counterpart: usable, freeable; its memory need not be zeroed. */
TEST(malloc_returns_usable_memory_of_every_size)
{
	static const size_t sizes[] = { 0, 1, 7, 15, 16, 17, 100, 1000, 8192, 32768, 32769, 100000 };

	NEED_DEVICE();
	for (unsigned int i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned char *p = sa_malloc(sizes[i]);

		ASSERT_NE(NULL, p);
		EXPECT_LE(sizes[i], sa_malloc_usable_size(p));
		/* 16 from 16 bytes on (max_align_t), 8 below: never an odd address */
		EXPECT_EQ(0, (uintptr_t)p % (sizes[i] >= 16 ? 16 : 8)) TH_LOG("size %zu", sizes[i]);
		memset(p, 0x5a, sizes[i]);
		sa_free(p);
	}
}

/* realloc: in place within the size class or span, moved otherwise, data kept. */
TEST(realloc_keeps_data_and_moves_only_when_it_must)
{
	unsigned char *p, *q;

	NEED_DEVICE();
	p = sa_realloc(NULL, 100);		/* as malloc */
	ASSERT_NE(NULL, p);
	for (int i = 0; i < 100; i++)
		p[i] = (unsigned char)i;
	q = sa_realloc(p, sa_usable_size(p));	/* the same class: in place */
	EXPECT_EQ(p, q);
	q = sa_realloc(p, 5000);		/* grows: moves, keeps the data */
	ASSERT_NE(NULL, q);
	for (int i = 0; i < 100; i++)
		ASSERT_EQ((unsigned char)i, q[i]);
	EXPECT_LE(5000, sa_usable_size(q));
	p = sa_realloc(q, 40);			/* shrinks to another class: moves */
	ASSERT_NE(NULL, p);
	for (int i = 0; i < 40; i++)
		ASSERT_EQ((unsigned char)i, p[i]);
	q = sa_realloc(p, 1 << 20);		/* large */
	ASSERT_NE(NULL, q);
	for (int i = 0; i < 40; i++)
		ASSERT_EQ((unsigned char)i, q[i]);
	memset(q, 0x33, 1 << 20);
	p = sa_realloc(q, 900000);		/* still over half its span: in place */
	EXPECT_EQ(q, p);
	q = sa_realloc(p, 100000);		/* far smaller: moves */
	ASSERT_NE(NULL, q);
	EXPECT_NE(p, q);
	EXPECT_EQ(0x33, q[99999]);
	/* a scanned object stays scanned and zeroed past its old end */
	p = sa_alloc(24);
	ASSERT_NE(NULL, p);
	memset(p, 1, 24);
	p = sa_realloc(p, 3000);
	ASSERT_NE(NULL, p);
	EXPECT_EQ(0, sa_t_nonzero(p + 24, 3000 - 24));
	EXPECT_EQ(NULL, sa_realloc(p, 0));	/* frees, as glibc */
	errno = 0;
	EXPECT_EQ(NULL, sa_realloc(q, SIZE_MAX / 2));
	EXPECT_EQ(ENOMEM, errno);
	EXPECT_EQ(0x33, q[0]);			/* untouched on failure */
	sa_free(q);
}

/* Any power of two, from 1 byte to 4 MiB; freed like any object. */
TEST(aligned_allocation_of_every_power_of_two)
{
	static const size_t sizes[] = { 1, 8, 24, 100, 5000, 40000 };
	void *p;

	NEED_DEVICE();
	for (size_t align = 1; align <= ((size_t)4 << 20); align <<= 1) {
		for (unsigned int i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			p = sa_aligned_alloc(align, sizes[i]);
			ASSERT_NE(NULL, p) TH_LOG("align %zu size %zu", align, sizes[i]);
			EXPECT_EQ(0, (uintptr_t)p % align) TH_LOG("align %zu size %zu", align, sizes[i]);
			EXPECT_LE(sizes[i], sa_usable_size(p));
			memset(p, 0x11, sizes[i]);
			sa_free(p);
		}
		if (align >= sizeof(void *)) {
			errno = 1234;	/* posix_memalign leaves errno alone */
			ASSERT_EQ(0, sa_posix_memalign(&p, align, 3000));
			EXPECT_EQ(1234, errno);
			EXPECT_EQ(0, (uintptr_t)p % align);
			sa_free(p);
		}
	}
	errno = 0;
	EXPECT_EQ(NULL, sa_aligned_alloc(24, 100));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(EINVAL, sa_posix_memalign(&p, 4, 100));
	EXPECT_EQ(EINVAL, sa_posix_memalign(&p, 48, 100));
}

TEST(tiny_objects_share_blocks_and_free_one_by_one)
{
	struct sa_stats s0, s1;
	char *a, *b, *c, *d;

	NEED_DEVICE();
	ASSERT_EQ(0, sa_get_stats(&s0));
	a = sa_alloc_noscan(3);
	b = sa_alloc_noscan(4);
	c = sa_alloc_noscan(2);
	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	ASSERT_NE(NULL, c);
	/* one 16-byte block, each object aligned for its size */
	EXPECT_EQ((uintptr_t)a / 16, (uintptr_t)b / 16);
	EXPECT_EQ((uintptr_t)a / 16, (uintptr_t)c / 16);
	EXPECT_EQ(0, (uintptr_t)b % 4);
	EXPECT_EQ(4, sa_usable_size(a));	/* tiny objects are rounded to 2 bytes */
	EXPECT_EQ(4, sa_usable_size(b));
	EXPECT_EQ(2, sa_usable_size(c));
	memcpy(a, "ab", 3);
	memcpy(b, "cde", 4);
	sa_free(b);
	EXPECT_STREQ("ab", a);
	/* 16 bytes do not fit: a new block */
	d = sa_alloc_noscan(16);
	EXPECT_NE((uintptr_t)a / 16, (uintptr_t)d / 16);
	EXPECT_EQ(16, sa_usable_size(d));
	sa_free(a);
	sa_free(c);
	sa_free(d);
	/* the objects' bytes as carved, counted once each way (4 + 4 + 2 + 16) */
	ASSERT_EQ(0, sa_get_stats(&s1));
	EXPECT_EQ(26, s1.bytes_allocated - s0.bytes_allocated);
	EXPECT_EQ(26, s1.bytes_freed - s0.bytes_freed);
}

/*
 * Packing gains nothing for 8-byte objects (two fill a block as they fill
 * the 8-byte class) and costs a compare-and-swap on the block's mask at
 * each allocation and free: they have their class, whatever asks for them
 * (sa_malloc rounds 1 to 8 bytes up to 8). Smaller odd sizes are packed.
 */
TEST(eight_byte_noscan_objects_take_their_class_not_a_tiny_block)
{
	const unsigned int sc8 = SPANALLOC_SPANCLASS(1, 1);
	struct sa_stats s0, s1;
	uint64_t *p, *q;
	char *t;

	NEED_DEVICE();
	ASSERT_EQ(8, sa_class_size(1));
	ASSERT_EQ(0, sa_get_stats(&s0));
	p = sa_alloc_noscan(8);
	q = sa_malloc(5);
	t = sa_alloc_noscan(4);
	ASSERT_NE(NULL, p);
	ASSERT_NE(NULL, q);
	ASSERT_NE(NULL, t);
	EXPECT_EQ(0, *p);		/* sa_alloc_noscan zeroes */
	EXPECT_EQ(0, (uintptr_t)p % 8);
	EXPECT_EQ(0, (uintptr_t)q % 8);
	EXPECT_EQ(8, sa_usable_size(p));
	EXPECT_EQ(8, sa_usable_size(q));
	EXPECT_EQ(4, sa_usable_size(t));
	ASSERT_EQ(0, sa_get_stats(&s1));
	EXPECT_EQ(1, s1.tiny_allocated - s0.tiny_allocated);
	EXPECT_EQ(2, s1.class_allocated[sc8] - s0.class_allocated[sc8]);
	*p = 1;
	*q = 2;
	sa_free(p);
	sa_free(q);
	sa_free(t);
}

/*
 * Getting a span and handing one back EMPTY take no lock in steady state:
 * span records come from the thread's spare list (heap.c).
 */
extern _Atomic uint64_t sa_pool_locked;	/* the library's own count */

TEST(spans_come_and_go_without_the_pool_lock)
{
	uint64_t before;

	NEED_DEVICE();
	sa_free(sa_alloc(40000));	/* warm up: the spare list exists */
	before = atomic_load(&sa_pool_locked);
	for (int i = 0; i < 1000; i++) {
		/* a large object: a span of its own, got and returned EMPTY */
		void *p = sa_alloc(40000);

		ASSERT_NE(NULL, p);
		sa_free(p);
	}
	EXPECT_EQ(0, atomic_load(&sa_pool_locked) - before);
}

TEST(large_objects)
{
	size_t sizes[] = { 32769, 40000, 1 << 20, 70 << 20 };
	struct sa_stats st;

	NEED_DEVICE();
	for (unsigned int i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned char *p = sa_alloc(sizes[i]);

		ASSERT_NE(NULL, p);
		EXPECT_EQ(0, (uintptr_t)p % SPANALLOC_PAGE_SIZE);
		EXPECT_LE(sizes[i], sa_usable_size(p));
		EXPECT_GT(sizes[i] + SPANALLOC_PAGE_SIZE, sa_usable_size(p));
		EXPECT_EQ(0, sa_t_nonzero(p, sizes[i]));
		memset(p, 1, sizes[i]);
		sa_free(p);
	}
	ASSERT_EQ(0, sa_get_stats(&st));
	EXPECT_EQ(4, st.large_allocated);
	EXPECT_EQ(4, st.large_freed);
	/* more than the heap can hold */
	EXPECT_EQ(NULL, sa_alloc((size_t)1 << 40));
	EXPECT_EQ(ENOMEM, errno);
}

TEST(trim_gives_freed_large_objects_back)
{
	struct spanalloc_stats k;
	unsigned char *p;
	long long got;

	NEED_DEVICE();
	p = sa_alloc(16 << 20);
	ASSERT_NE(NULL, p);
	memset(p, 7, 16 << 20);
	sa_free(p);
	got = sa_trim();
	/* the background scavenger may have taken some first */
	ASSERT_LE(0, got);
	ASSERT_EQ(0, sa_kernel_stats(&k, NULL));
	EXPECT_EQ(0, k.pages_dirty);
	EXPECT_LE((16 << 20) / SPANALLOC_PAGE_SIZE, k.pages_released);
	/* and the memory comes back zeroed when allocated again */
	p = sa_alloc(16 << 20);
	ASSERT_NE(NULL, p);
	EXPECT_EQ(0, sa_t_nonzero(p, 16 << 20));
	sa_free(p);
}

struct xfer {
	void **objs;
	int n;
};

static void *free_all(void *arg)
{
	struct xfer *x = arg;

	for (int i = 0; i < x->n; i++)
		sa_free(x->objs[i]);
	return NULL;
}

TEST(objects_freed_by_another_thread_are_reused)
{
	enum { N = 20000 };
	void **objs = calloc(N, sizeof(void *));
	struct xfer x = { objs, N };
	struct spanalloc_class_stats cs[NSC];
	struct spanalloc_stats kst;
	struct sa_stats before, after;
	pthread_t th;
	unsigned int sc = SPANALLOC_SPANCLASS(sa_size_class(64), 0);
	uint64_t held;

	NEED_DEVICE();
	for (int i = 0; i < N; i++) {
		objs[i] = sa_alloc(64);
		ASSERT_NE(NULL, objs[i]);
		memset(objs[i], 7, 64);
	}
	ASSERT_EQ(0, sa_get_stats(&before));
	ASSERT_EQ(0, sa_kernel_stats(&kst, NULL));
	held = kst.pages_inuse;
	ASSERT_LE(N / 128, held);
	ASSERT_EQ(0, pthread_create(&th, NULL, free_all, &x));
	ASSERT_EQ(0, pthread_join(th, NULL));
	ASSERT_EQ(0, sa_get_stats(&after));
	/* full spans were adopted by the freeing thread and handed back... */
	EXPECT_LT(0, after.adopted);
	ASSERT_EQ(0, sa_kernel_stats(&kst, cs));
	EXPECT_EQ(0, cs[sc].full);
	/* ...most of them EMPTY: their pages are free for any class again */
	EXPECT_GT(held / 4, kst.pages_inuse);
	for (int i = 0; i < N; i++) {
		objs[i] = sa_alloc(64);
		ASSERT_NE(NULL, objs[i]);
	}
	/*
	 * Allocating again reuses those pages, except for spans parked in
	 * other CPUs' caches (at most 8 per CPU, of 4 pages: sizeclass.c),
	 * which this CPU cannot see.
	 */
	ASSERT_EQ(0, sa_kernel_stats(&kst, NULL));
	EXPECT_GE(held + 8 * 4 * sysconf(_SC_NPROCESSORS_ONLN), kst.pages_inuse);
	free(objs);
}

static void *alloc_free_exit(void *arg)
{
	(void)arg;
	for (unsigned int c = 1; c < SPANALLOC_NUM_CLASSES; c++) {
		void *p = sa_alloc(sa_class_size(c)), *q = sa_alloc_noscan(sa_class_size(c));

		sa_free(p);
		sa_free(q);
	}
	return NULL;
}

TEST(thread_exit_returns_its_spans)
{
	struct spanalloc_class_stats cs[NSC];
	struct spanalloc_stats kst;
	pthread_t th;

	NEED_DEVICE();
	ASSERT_EQ(0, pthread_create(&th, NULL, alloc_free_exit, NULL));
	ASSERT_EQ(0, pthread_join(th, NULL));
	ASSERT_EQ(0, sa_kernel_stats(&kst, cs));
	/* every object was freed, so every span went back EMPTY */
	for (int sc = 0; sc < NSC; sc++) {
		EXPECT_EQ(0, cs[sc].owned);
		EXPECT_EQ(0, cs[sc].full);
	}
	EXPECT_EQ(0, kst.spans);
	EXPECT_EQ(0, kst.pages_inuse);
}

TEST(at_most_one_system_call_per_span)
{
	enum { N = 200000 };
	struct sa_stats a, b;
	void **objs = calloc(N, sizeof(void *));
	int decay;

	NEED_DEVICE();
	/* no held span decays meanwhile, in a call of its own, however slow the run */
	decay = sa_set_held_decay_ms(60000);
	ASSERT_LE(1, decay);
	sa_alloc(32);	/* warm up: heap and thread cache exist */
	ASSERT_EQ(0, sa_get_stats(&a));
	for (int i = 0; i < N; i++)
		objs[i] = sa_alloc(32);
	ASSERT_EQ(0, sa_get_stats(&b));
	ASSERT_EQ(60000, sa_set_held_decay_ms((unsigned int)decay));
	/* 256 objects per span: a syscall per span turnover at most */
	EXPECT_LE(b.syscalls - a.syscalls, b.spans_got - a.spans_got);
	EXPECT_GE(b.spans_got - a.spans_got, N / 256);
	EXPECT_LE(b.spans_got - a.spans_got, N / 256 + 2);
	for (int i = 0; i < N; i++)
		sa_free(objs[i]);
	free(objs);
}

static int child_status(void (*fn)(void))
{
	int st;
	pid_t pid = fork();

	if (!pid) {
		fn();
		_exit(0);
	}
	waitpid(pid, &st, 0);
	return st;
}

/* The objects the bad frees use are allocated before the fork. */
static char *obj, *tiny1, *tiny2;

static void do_double_free(const char *unused)
{
	(void)unused;
	sa_free(obj);
	sa_free(obj);
}

static void do_interior_free(const char *unused)
{
	(void)unused;
	sa_free(obj + 8);
}

static void do_foreign_free(const char *unused)
{
	(void)unused;
	static long x;

	sa_free(&x);
}

static void do_tiny_double_free(const char *unused)
{
	(void)unused;
	sa_free(tiny1);
	sa_free(tiny1);
}

static void do_tiny_interior_free(const char *unused)
{
	(void)unused;
	sa_free(tiny2 + 1);
}

/* Allocates n objects of size bytes, checks they are zero, dirties, frees. */
static int alloc_dirty_free(void **objs, int n, size_t size)
{
	int bad = 0;

	for (int i = 0; i < n; i++) {
		objs[i] = sa_alloc(size);
		if (!objs[i])
			return -1;
		for (size_t k = 0; k < size; k++)
			bad |= ((unsigned char *)objs[i])[k];
		memset(objs[i], 0xab, size);
	}
	for (int i = 0; i < n; i++)
		sa_free(objs[i]);
	return bad ? -1 : 0;
}

/*
 * A thread that frees what it allocated gets its spans back from the ones
 * it kept aside, zeroed where they were used, without a system call; with
 * nothing held, every span turnover costs one. sa_trim hands the held
 * spans back; a flush leaves the kernel nothing.
 */
TEST(held_spans_serve_a_thread_that_frees_what_it_allocates)
{
	enum { BATCH = 256, ROUNDS = 200, SIZE = 256 };
	struct spanalloc_stats kst;
	void *objs[BATCH];
	struct sa_stats a, b;
	int old, decay;

	NEED_DEVICE();
	old = sa_set_held_pages(8);
	ASSERT_LE(0, old);
	/* none decays between its uses, however slow the run */
	decay = sa_set_held_decay_ms(60000);
	ASSERT_LE(1, decay);
	/* 256 objects of 256 B fill 4 two-page spans: the held lists take them */
	ASSERT_EQ(0, alloc_dirty_free(objs, BATCH, SIZE));
	ASSERT_EQ(0, sa_get_stats(&a));
	for (int r = 0; r < ROUNDS; r++)
		ASSERT_EQ(0, alloc_dirty_free(objs, BATCH, SIZE));
	ASSERT_EQ(0, sa_get_stats(&b));
	ASSERT_EQ(60000, sa_set_held_decay_ms((unsigned int)decay));
	EXPECT_EQ(0, b.syscalls - a.syscalls);
	EXPECT_EQ(0, b.spans_got - a.spans_got);
	EXPECT_LE(ROUNDS * 3, b.local_sweeps - a.local_sweeps);
	/* sa_trim gives the held spans back: the active one is left */
	ASSERT_LE(0, sa_trim());
	ASSERT_EQ(0, sa_kernel_stats(&kst, NULL));
	EXPECT_EQ(1, kst.spans);

	ASSERT_EQ(8, sa_set_held_pages(0));
	ASSERT_EQ(0, alloc_dirty_free(objs, BATCH, SIZE));
	ASSERT_EQ(0, sa_get_stats(&a));
	for (int r = 0; r < ROUNDS; r++)
		ASSERT_EQ(0, alloc_dirty_free(objs, BATCH, SIZE));
	ASSERT_EQ(0, sa_get_stats(&b));
	EXPECT_LE(ROUNDS * 3, b.syscalls - a.syscalls);
	EXPECT_LE(b.syscalls - a.syscalls, b.spans_got - a.spans_got + ROUNDS);

	EXPECT_EQ(-1, sa_set_held_pages(65));
	EXPECT_EQ(EINVAL, errno);
	ASSERT_EQ(0, sa_set_held_pages((unsigned int)old));
	ASSERT_EQ(0, alloc_dirty_free(objs, BATCH, SIZE));
	sa_thread_flush();
	ASSERT_EQ(0, sa_kernel_stats(&kst, NULL));
	EXPECT_EQ(0, kst.spans);
	EXPECT_EQ(0, kst.pages_inuse);
}

/*
 * The span changes of held_spans_serve_a_thread_that_frees_what_it_allocates
 * (made inside the fast path's region: sa_tcache_change_span) with half of
 * each batch freed by another thread meanwhile, into the spans kept
 * aside: no object is handed out twice (each keeps the value written into
 * it, its own, until its free), every one comes zeroed, and every object
 * is counted once.
 */
struct remote_free {
	unsigned char *p;
	unsigned int size;
	unsigned char v;
};

static void *free_from_pipe(void *arg)
{
	int *fd_bad = arg;
	struct remote_free f;

	while (read(fd_bad[0], &f, sizeof(f)) == sizeof(f)) {
		for (unsigned int k = 0; k < f.size; k++)
			if (f.p[k] != f.v)
				fd_bad[1] = 1;
		sa_free(f.p);
	}
	sa_thread_flush();
	return NULL;
}

static unsigned char pattern_of(int r, int i)
{
	return (unsigned char)((r * 100 + i) % 255 + 1);
}

TEST(kept_spans_take_over_while_another_thread_frees_into_them)
{
	/* 4 spans a round: 256 B spans are 2 pages of 64 (sizeclass.c) */
	enum { BATCH = 256, ROUNDS = 300, SIZE = 256 };
	unsigned char *objs[BATCH];
	struct sa_stats a, b;
	int fds[2], freer[2], old, bad = 0;
	pthread_t th;

	NEED_DEVICE();
	old = sa_set_held_pages(8);
	ASSERT_LE(0, old);
	ASSERT_EQ(0, alloc_dirty_free((void **)objs, BATCH, SIZE));
	ASSERT_EQ(0, pipe(fds));
	freer[0] = fds[0];
	freer[1] = 0;
	ASSERT_EQ(0, pthread_create(&th, NULL, free_from_pipe, freer));
	ASSERT_EQ(0, sa_get_stats(&a));
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < BATCH; i++) {
			objs[i] = sa_alloc(SIZE);
			ASSERT_NE(NULL, objs[i]);
			for (int k = 0; k < SIZE; k++)
				bad |= objs[i][k];
			memset(objs[i], pattern_of(r, i), SIZE);
		}
		for (int i = 0; i < BATCH; i++) {
			struct remote_free f = { objs[i], SIZE, pattern_of(r, i) };

			for (int k = 0; k < SIZE; k++)
				bad |= objs[i][k] != f.v;
			if (i % 2) {
				ASSERT_EQ(sizeof(f), write(fds[1], &f, sizeof(f)));
			} else {
				sa_free(objs[i]);
			}
		}
	}
	close(fds[1]);
	ASSERT_EQ(0, pthread_join(th, NULL));
	close(fds[0]);
	EXPECT_EQ(0, bad);
	EXPECT_EQ(0, freer[1]);
	ASSERT_EQ(0, sa_get_stats(&b));
	EXPECT_EQ(ROUNDS * BATCH, b.objects_allocated - a.objects_allocated);
	EXPECT_EQ(ROUNDS * BATCH, b.objects_freed - a.objects_freed);
	/*
	 * This thread's own frees leave free objects in three or four kept
	 * spans every round: the next round changes to them. (Its system
	 * calls depend on how far the freer lags: not checked.)
	 */
	EXPECT_LE(ROUNDS * 2, b.local_sweeps - a.local_sweeps);
	ASSERT_EQ(8, sa_set_held_pages((unsigned int)old));
	sa_thread_flush();
}

/*
 * A thread that moves on to other size classes gives back the spans it
 * kept aside and has not taken again for SA_HELD_DECAY_MS (100 ms), in a
 * manual heap too (no collection, no trim), even when its frees keep its
 * new class's span going (no span change).
 */
TEST(held_spans_decay_when_a_thread_moves_on)
{
	enum { BATCH = 100, SIZE = 256, OTHER = 64, NOTHER = 100 };
	unsigned int sc = SPANALLOC_SPANCLASS(sa_size_class(SIZE), 0);
	struct spanalloc_class_stats cs[NSC];
	struct spanalloc_stats kst;
	void *objs[BATCH], *other[NOTHER];

	NEED_DEVICE();
	ASSERT_LE(0, sa_set_held_pages(8));
	ASSERT_EQ(0, alloc_dirty_free(objs, BATCH, SIZE));
	ASSERT_EQ(0, sa_kernel_stats(&kst, cs));
	/* the active span and the used-up ones kept aside */
	ASSERT_LE(2, cs[sc].owned);
	usleep(400 * 1000);	/* past SA_HELD_DECAY_MS and the check's period */
	/*
	 * Other objects, allocated and freed in turn: the thread's frees keep
	 * its span of that class going, so it changes no span at all.
	 */
	for (int r = 0; r < 20; r++) {
		for (int i = 0; i < NOTHER; i++)
			ASSERT_NE(NULL, other[i] = sa_alloc(OTHER));
		for (int i = 0; i < NOTHER; i++)
			sa_free(other[i]);
	}
	ASSERT_EQ(0, sa_kernel_stats(&kst, cs));
	EXPECT_EQ(1, cs[sc].owned);	/* only the active span is left */
	/* and the class still serves */
	ASSERT_EQ(0, alloc_dirty_free(objs, BATCH, SIZE));
}

/*
 * A thread that makes no refill at all (it sleeps here) has the spans it
 * kept aside, and its active span, taken by the next thread that changes
 * spans, without being stopped or signalled: the objects it still has
 * stay its own to free, it allocates again as before, and every object
 * is counted once.
 */
/* 64 a span: 256 B spans are 2 pages (sizeclass.c), 4 kept fill 8 held pages */
enum { IDLE_N = 320, IDLE_SIZE = 256 };

struct idle_keeper {
	int kept[2], go[2];
	void *objs[IDLE_N];
	int bad;
};

static void *idle_keeper(void *arg)
{
	struct idle_keeper *k = arg;
	char ch = 'k';

	/* five spans: four used up and kept aside, one active */
	for (int i = 0; i < IDLE_N; i++) {
		k->objs[i] = sa_alloc(IDLE_SIZE);
		if (!k->objs[i])
			k->bad = 1;
		else
			memset(k->objs[i], i, IDLE_SIZE);
	}
	for (int i = 1; i < IDLE_N; i += 2)
		sa_free(k->objs[i]);	/* into the spans kept aside: local frees */
	if (write(k->kept[1], &ch, 1) != 1 || read(k->go[0], &ch, 1) != 1)
		k->bad = 1;
	for (int i = 0; i < IDLE_N; i += 2) {
		for (int b = 0; b < IDLE_SIZE; b++)
			if (((unsigned char *)k->objs[i])[b] != (unsigned char)i)
				k->bad = 1;
		sa_free(k->objs[i]);
	}
	if (alloc_dirty_free(k->objs, IDLE_N, IDLE_SIZE))
		k->bad = 1;
	sa_thread_flush();
	return NULL;
}

/*
 * A thread keeps five spans (four kept aside, one active) and sleeps past
 * twice the decay time while this one changes spans: returns how many the
 * sleeper still owns then. Everything is checked and given back after.
 */
static unsigned int idle_thread_owns(struct __test_metadata *_metadata)
{
	/* more than two spans of 512 a round: span changes */
	enum { OTHER = 64, NOTHER = 1200 };
	unsigned int sc = SPANALLOC_SPANCLASS(sa_size_class(IDLE_SIZE), 0);
	static struct idle_keeper k;
	struct spanalloc_class_stats cs[NSC];
	struct spanalloc_stats kst;
	struct sa_stats before, after;
	void *other[NOTHER];
	unsigned int owned;
	pthread_t th;
	char ch = 'g';

	ASSERT_LE(0, sa_set_held_pages(8));
	ASSERT_LE(0, sa_set_held_decay_ms(100));
	sa_thread_flush();
	ASSERT_EQ(0, sa_get_stats(&before));
	ASSERT_EQ(0, pipe(k.kept));
	ASSERT_EQ(0, pipe(k.go));
	ASSERT_EQ(0, pthread_create(&th, NULL, idle_keeper, &k));
	ASSERT_EQ(1, read(k.kept[0], &ch, 1));
	ASSERT_EQ(0, sa_kernel_stats(&kst, cs));
	ASSERT_EQ(5, cs[sc].owned);
	usleep(400 * 1000);	/* past twice the decay time */
	/* this thread changes spans, in another class */
	for (int r = 0; r < 3; r++) {
		for (int i = 0; i < NOTHER; i++)
			ASSERT_NE(NULL, other[i] = sa_alloc(OTHER));
		for (int i = 0; i < NOTHER; i++)
			sa_free(other[i]);
	}
	ASSERT_EQ(0, sa_kernel_stats(&kst, cs));
	owned = cs[sc].owned;
	ASSERT_EQ(1, write(k.go[1], &ch, 1));
	ASSERT_EQ(0, pthread_join(th, NULL));
	EXPECT_EQ(0, k.bad);
	sa_thread_flush();
	ASSERT_EQ(0, sa_kernel_stats(&kst, cs));
	EXPECT_EQ(0, cs[sc].owned);
	EXPECT_EQ(0, cs[sc].full);
	ASSERT_EQ(0, sa_get_stats(&after));
	EXPECT_EQ(after.objects_allocated - before.objects_allocated,
		  after.objects_freed - before.objects_freed);
	EXPECT_EQ(2 * IDLE_N + 3 * NOTHER, after.objects_allocated - before.objects_allocated);
	EXPECT_EQ(100, sa_set_held_decay_ms(100));
	return owned;
}

TEST(an_idle_thread_has_its_kept_spans_taken_without_a_stop)
{
	NEED_DEVICE();
	NEED_MEMBARRIER();
	EXPECT_EQ(0, idle_thread_owns(_metadata));	/* its active span too */
}

/* A seccomp filter that kills the process on membarrier(2). */
static int forbid_membarrier(void)
{
	struct sock_filter insns[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(insns) / sizeof(insns[0]), .filter = insns };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/*
 * For a seccomp filter that kills on system calls it does not know: with
 * SPANALLOC_HANDOFF=0 the library makes none, and idle threads keep their
 * spans (this test's process is killed otherwise). A kernel without
 * seccomp (the debug kernel is tinyconfig's) still shows the spans kept.
 */
TEST(spanalloc_handoff_0_makes_no_membarrier_and_leaves_idle_threads_alone)
{
	setenv("SPANALLOC_HANDOFF", "0", 1);
	NEED_DEVICE();
	if (forbid_membarrier()) {
		ASSERT_EQ(EINVAL, errno);
		TH_LOG("no seccomp filters in this kernel: only the spans kept are checked");
	}
	EXPECT_EQ(5, idle_thread_owns(_metadata));
}

/*
 * Takers race the frees of the threads whose spans they take: with the
 * decay at 1 ms, threads free what they allocated slowly (and now and then
 * sleep) while every refill looks for idle threads, so that spans are
 * taken between and during their frees, active spans included, which
 * the freers allocate from now and then meanwhile, and again in their
 * next round. No object is
 * handed out twice, every one is counted once, every span comes back,
 * and threads were found idle.
 */
enum { RACE_FREERS = 2, RACE_N = 640, RACE_ROUNDS = 40 };

static atomic_int race_stop, race_bad, race_taken;

static void *race_freer(void *arg)
{
	size_t size = 256 + 128 * (size_t)(uintptr_t)arg;
	unsigned int sc = SPANALLOC_SPANCLASS(sa_size_class(size), 0);
	uint64_t tag = 0x5a5a000000000000ULL | (uintptr_t)arg;
	static void *objs[RACE_FREERS][RACE_N];
	void **o = objs[(uintptr_t)arg];
	struct spanalloc_class_stats cs[NSC];
	struct spanalloc_stats kst;

	for (int r = 0; r < RACE_ROUNDS; r++) {
		for (int i = 0; i < RACE_N; i++) {
			uint64_t *p = sa_alloc(size);

			if (!p || *p == tag)
				atomic_store(&race_bad, 1);
			if (p)
				*p = tag;
			o[i] = p;
		}
		for (int i = 0; i < RACE_N; i++) {
			*(uint64_t *)o[i] = 0;
			sa_free(o[i]);
			if (i % 16 == 0)
				sched_yield();
			if (i == RACE_N / 2) {
				/*
				 * Now and then an object from its active span,
				 * which a taker may clear between two (no
				 * refill stamps it): tagged while it is held.
				 */
				for (int k = 0; k < 10; k++) {
					uint64_t *q;

					usleep(3 * 1000);
					q = sa_alloc(size);
					if (!q) {
						atomic_store(&race_bad, 1);
						continue;
					}
					*q = tag;
					sched_yield();
					if (*q != tag)
						atomic_store(&race_bad, 1);
					*q = 0;
					sa_free(q);
				}
				/* idle: its spans go, the active one too (passes are 10 ms apart at least) */
				usleep(30 * 1000);
				if (!sa_kernel_stats(&kst, cs) && cs[sc].owned == 0)
					atomic_fetch_add(&race_taken, 1);
			}
		}
	}
	sa_thread_flush();
	return NULL;
}

static void *race_taker(void *arg)
{
	void *o[200];

	(void)arg;
	while (!atomic_load(&race_stop)) {
		for (int i = 0; i < 200; i++)
			if (!(o[i] = sa_alloc(64)))
				atomic_store(&race_bad, 1);
		for (int i = 0; i < 200; i++)
			sa_free(o[i]);
	}
	sa_thread_flush();
	return NULL;
}

TEST(spans_taken_from_idle_threads_race_their_frees_safely)
{
	struct spanalloc_class_stats cs[NSC];
	struct spanalloc_stats kst;
	struct sa_stats before, after;
	pthread_t fr[RACE_FREERS], tk;

	NEED_DEVICE();
	NEED_MEMBARRIER();
	ASSERT_LE(0, sa_set_held_pages(8));
	ASSERT_LE(0, sa_set_held_decay_ms(1));
	sa_thread_flush();
	ASSERT_EQ(0, sa_get_stats(&before));
	ASSERT_EQ(0, pthread_create(&tk, NULL, race_taker, NULL));
	for (uintptr_t t = 0; t < RACE_FREERS; t++)
		ASSERT_EQ(0, pthread_create(&fr[t], NULL, race_freer, (void *)t));
	for (int t = 0; t < RACE_FREERS; t++)
		ASSERT_EQ(0, pthread_join(fr[t], NULL));
	atomic_store(&race_stop, 1);
	ASSERT_EQ(0, pthread_join(tk, NULL));
	EXPECT_EQ(0, atomic_load(&race_bad));
	/* idle threads' spans were taken, in some rounds at least */
	EXPECT_LT(0, atomic_load(&race_taken));
	TH_LOG("all spans taken during %d of %d pauses", atomic_load(&race_taken),
	       RACE_FREERS * RACE_ROUNDS);
	ASSERT_EQ(0, sa_get_stats(&after));
	EXPECT_EQ(after.objects_allocated - before.objects_allocated,
		  after.objects_freed - before.objects_freed);
	ASSERT_EQ(0, sa_kernel_stats(&kst, cs));
	for (int sc = 0; sc < NSC; sc++) {
		EXPECT_EQ(0, cs[sc].owned) TH_LOG("span class %d", sc);
		EXPECT_EQ(0, cs[sc].full) TH_LOG("span class %d", sc);
	}
	ASSERT_EQ(1, sa_set_held_decay_ms(100));
}

/* The decay time is a setting with bounds. */
TEST(held_decay_takes_a_time_within_bounds)
{
	NEED_DEVICE();
	errno = 0;
	EXPECT_EQ(-1, sa_set_held_decay_ms(0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, sa_set_held_decay_ms(86400001));
	EXPECT_EQ(100, sa_set_held_decay_ms(86400000));	/* the default */
	EXPECT_EQ(86400000, sa_set_held_decay_ms(100));
}

/*
 * The library's own memory comes and goes with the spans: a record per
 * span in use, a mask table per tiny span, nothing left once the thread
 * gives everything back; an older caller's shorter struct is filled only
 * as far as it reaches.
 */
TEST(metadata_is_counted_with_its_spans)
{
	enum { N = 1000, SIZE = 64 };
	struct sa_meta_stats m, m2;
	void *objs[N], *tiny;
	struct sa_stats st;

	NEED_DEVICE();
	sa_thread_flush();
	ASSERT_EQ(0, sa_get_meta_stats(&m, sizeof(m)));
	EXPECT_EQ(0, m.span_records);
	EXPECT_EQ(0, m.span_bytes);
	for (int i = 0; i < N; i++)
		ASSERT_NE(NULL, objs[i] = sa_alloc(SIZE));
	ASSERT_NE(NULL, tiny = sa_alloc_noscan(4));
	ASSERT_EQ(0, sa_get_meta_stats(&m, sizeof(m)));
	ASSERT_EQ(0, sa_get_stats(&st));
	/*
	 * 1000 objects of 64 B fill 2 spans of 4 pages (512 objects a span,
	 * sizeclass.c), and one tiny span of a page
	 */
	EXPECT_LE(N * SIZE, m.span_bytes);
	EXPECT_GE(N * SIZE + 4 * 8192 + 8192, m.span_bytes);
	/*
	 * a record of 256 bytes and bitmaps: 256 more for 512 objects (1.6%
	 * of the span), tiny too
	 */
	EXPECT_EQ((m.span_bytes - 8192) / 32768 * (256 + 256) + 256 + 256, m.span_records);
	EXPECT_LT(0, m.tiny_masks);
	EXPECT_EQ(m.span_bytes / 8192 * 8, m.page_map);
	EXPECT_LT(0, m.thread_caches);
	EXPECT_EQ(m.span_records + m.tiny_masks + m.type_maps + m.page_map +
		  m.thread_caches, m.total);
	EXPECT_LE(m.total, m.mapped);
	/* the first field only: the rest is left as it was */
	memset(&m2, 0xee, sizeof(m2));
	ASSERT_EQ(0, sa_get_meta_stats(&m2, sizeof(m2.span_records)));
	EXPECT_EQ(m.span_records, m2.span_records);
	EXPECT_EQ(0xeeeeeeeeeeeeeeeeULL, m2.span_bytes);
	for (int i = 0; i < N; i++)
		sa_free(objs[i]);
	sa_free(tiny);
	sa_thread_flush();
	ASSERT_EQ(0, sa_get_meta_stats(&m, sizeof(m)));
	EXPECT_EQ(0, m.span_records);
	EXPECT_EQ(0, m.tiny_masks);
	EXPECT_EQ(0, m.span_bytes);
}

/*
 * A span's pointer maps (sa_alloc_typed) take a pointer per object its
 * record's bitmaps cover, not per SPANALLOC_MAX_NELEMS: 1 KiB objects
 * come 32 to a 4-page span, whose maps take 64 pointers, 1.6% of it.
 */
TEST(pointer_maps_are_as_long_as_their_spans_bitmaps)
{
	static const uint64_t one = 1;
	static const struct sa_type t = { 8, &one };
	struct sa_meta_stats m0, m1, m2;
	void *big, *small;

	NEED_DEVICE();
	sa_thread_flush();
	ASSERT_EQ(0, sa_get_meta_stats(&m0, sizeof(m0)));
	EXPECT_EQ(0, m0.type_maps);
	ASSERT_NE(NULL, big = sa_alloc_typed(1024, &t));
	ASSERT_EQ(0, sa_get_meta_stats(&m1, sizeof(m1)));
	EXPECT_EQ(64 * sizeof(void *), m1.type_maps);
	EXPECT_GE(4 * 8192, 50 * m1.type_maps);
	/* 64-byte objects: 512 to a span, eight words of bitmaps */
	ASSERT_NE(NULL, small = sa_alloc_typed(64, &t));
	ASSERT_EQ(0, sa_get_meta_stats(&m2, sizeof(m2)));
	EXPECT_EQ(512 * sizeof(void *), m2.type_maps - m1.type_maps);
	sa_free(big);
	sa_free(small);
	sa_thread_flush();
	ASSERT_EQ(0, sa_get_meta_stats(&m0, sizeof(m0)));
	EXPECT_EQ(0, m0.type_maps);
}

/*
 * A thread that frees what it allocated long ago frees into spans it
 * handed back FULL: it adopts them, and hands them back once it has
 * several. One still being freed into stays with it, so that it goes back
 * EMPTY when its last object is freed, not PARTIAL and all free, where no
 * thread but an allocating one would ever look at it again.
 */
TEST(frees_into_full_spans_give_every_span_back)
{
	enum { N = 64 * 1024, SIZE = 8 };	/* 64 spans of 1024 objects */
	void **objs = malloc(N * sizeof(*objs));
	struct spanalloc_stats kst;

	NEED_DEVICE();
	ASSERT_NE(NULL, objs);
	for (int order = 0; order < 2; order++) {
		for (int i = 0; i < N; i++)
			ASSERT_NE(NULL, objs[i] = sa_alloc(SIZE));
		for (int i = 0; i < N; i++)
			sa_free(objs[order ? i : N - 1 - i]);
		sa_thread_flush();
		ASSERT_EQ(0, sa_kernel_stats(&kst, NULL));
		EXPECT_EQ(0, kst.spans);
		EXPECT_EQ(0, kst.pages_inuse);
	}
	free(objs);
}

TEST(bad_frees_abort_with_a_message)
{
	static const struct {
		void (*fn)(const char *);
		const char *says;
	} bad[] = {
		{ do_double_free, "double free" },
		{ do_interior_free, "free of a pointer into an object" },
		{ do_foreign_free, "is not an object of this heap" },
		{ do_tiny_double_free, "double free or invalid free of a tiny object" },
		{ do_tiny_interior_free, "double free or invalid free of a tiny object" },
	};
	char out[1024], where[32];

	NEED_DEVICE();
	obj = sa_alloc(100);
	tiny1 = sa_alloc_noscan(5);
	tiny2 = sa_alloc_noscan(5);
	ASSERT_NE(NULL, obj);
	ASSERT_NE(NULL, tiny2);
	memset(obj, 'o', 100);
	memcpy(tiny1, "tiny", 5);
	memcpy(tiny2, "TINY", 5);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int st = sa_t_in_child(bad[i].fn, NULL, out, sizeof(out));

		EXPECT_TRUE(WIFSIGNALED(st));
		EXPECT_EQ(SIGABRT, WTERMSIG(st));
		/* what went wrong, where, and that it aborts */
		EXPECT_NE(NULL, strstr(out, bad[i].says)) TH_LOG("stderr: %s", out);
		EXPECT_NE(NULL, strstr(out, "; aborting")) TH_LOG("stderr: %s", out);
		snprintf(where, sizeof(where), "%p", i == 0 ? (void *)obj : i == 1 ? (void *)(obj + 8) :
			 i == 3 ? (void *)tiny1 : (void *)(tiny2 + 1));
		if (i != 2)
			EXPECT_NE(NULL, strstr(out, where)) TH_LOG("%s not in: %s", where, out);
	}
	/* the parent's objects are untouched by what the children did */
	for (int i = 0; i < 100; i++)
		ASSERT_EQ('o', obj[i]);
	EXPECT_STREQ("tiny", tiny1);
	EXPECT_STREQ("TINY", tiny2);
	/* and freeing them here is not a double free */
	sa_free(obj);
	sa_free(tiny1);
	sa_free(tiny2);
}

static void do_missing_device(void)
{
	setenv("SPANALLOC_DEVICE", "/dev/spanalloc-missing", 1);
	if (sa_alloc(8) || errno != ENOENT)
		_exit(1);
	if (!strstr(sa_strerror(), "/dev/spanalloc-missing") ||
	    !strstr(sa_strerror(), "spanalloc.ko"))
		_exit(2);
	if (sa_init() != -1 || errno != ENOENT)
		_exit(3);
	_exit(0);
}

/* fn, run in a child, must exit 0: each of its checks exits non-zero. */
static void expect_child_passes(struct __test_metadata *_metadata, void (*fn)(void))
{
	int st = child_status(fn);

	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
}

TEST(missing_device_is_reported_not_hidden)
{
	expect_child_passes(_metadata, do_missing_device);
}

static void do_not_a_heap(void)
{
	setenv("SPANALLOC_DEVICE", "/dev/null", 1);
	if (sa_alloc(8) || !strstr(sa_strerror(), "is it spanalloc.ko"))
		_exit(1);
	_exit(0);
}

TEST(wrong_device_is_refused)
{
	expect_child_passes(_metadata, do_not_a_heap);
}

/*
 * fork() from a parent whose threads hold spans of every kind (active,
 * kept aside, full, partial, large, tiny blocks, frees from other threads
 * not yet collected): the child has a heap of its own. It reads and frees
 * everything it inherited, allocates well past what it inherited, and
 * gives it all back; the parent's objects and heap are untouched.
 */
#define FK_THREADS	4
#define FK_OBJS		3000

static char *fk_objs[FK_THREADS][FK_OBJS];
static pthread_barrier_t fk_ready;
static int fk_pipe[2];

static size_t fk_size(int t, int i)
{
	/* tiny, small of many classes, and now and then large */
	return i % 97 == 0 ? 40000 + (size_t)t * 1000 : (size_t)((i * 37 + t * 11) % 2000) + 1;
}

static void fk_fill(char *p, size_t n, int t, int i)
{
	memset(p, 'a' + (t * 7 + i) % 26, n);
}

static int fk_check(const char *p, size_t n, int t, int i)
{
	for (size_t k = 0; k < n; k++)
		if (p[k] != 'a' + (t * 7 + i) % 26)
			return 0;
	return 1;
}

static void *fk_thread(void *arg)
{
	int t = (int)(intptr_t)arg;
	char c;

	for (int i = 0; i < FK_OBJS; i++) {
		size_t n = fk_size(t, i);

		fk_objs[t][i] = i % 3 ? sa_malloc(n) : sa_alloc(n);
		fk_fill(fk_objs[t][i], n, t, i);
	}
	/* frees of its own and of the next thread's: remote frees pending */
	for (int i = 0; i < FK_OBJS; i += 5) {
		sa_free(fk_objs[t][i]);
		fk_objs[t][i] = NULL;
	}
	pthread_barrier_wait(&fk_ready);
	if (t == 0)
		for (int i = 1; i < FK_OBJS; i += 5) {
			sa_free(fk_objs[1][i]);
			fk_objs[1][i] = NULL;
		}
	pthread_barrier_wait(&fk_ready);
	/* stay alive, holding the spans, until the parent is done */
	if (read(fk_pipe[0], &c, 1) < 0)
		return NULL;
	return NULL;
}

static int fk_child(void)
{
	struct spanalloc_stats kst;
	enum { N = 20000 };
	static char *mine[N];

	for (int t = 0; t < FK_THREADS; t++)
		for (int i = 0; i < FK_OBJS; i++)
			if (fk_objs[t][i] && !fk_check(fk_objs[t][i], fk_size(t, i), t, i))
				return 10;
	for (int t = 0; t < FK_THREADS; t++)
		for (int i = 0; i < FK_OBJS; i++)
			sa_free(fk_objs[t][i]);
	/* well past the inherited spans: new ones from the child's heap */
	for (int i = 0; i < N; i++) {
		size_t n = (size_t)(i * 53 % 3000) + 1 + (i % 500 == 0 ? 100000 : 0);

		mine[i] = sa_malloc(n);
		if (!mine[i])
			return 11;
		memset(mine[i], i & 0xff, n);
	}
	for (int i = 0; i < N; i++)
		sa_free(mine[i]);
	sa_thread_flush();
	if (sa_kernel_stats(&kst, NULL))
		return 12;
	/* its own heap, mapped where the parent's copy was */
	if (kst.mapped == 0)
		return 13;
	/* what it freed goes back to the kernel (now, or by the scavenger) */
	if (sa_trim() < 0 || sa_kernel_stats(&kst, NULL) || kst.pages_released == 0)
		return 14;
	return 0;
}

TEST(forked_child_of_a_threaded_parent_has_a_heap_of_its_own)
{
	struct spanalloc_stats before, after;
	pthread_t th[FK_THREADS];
	int st;
	pid_t pid;

	NEED_DEVICE();
	ASSERT_EQ(0, pipe(fk_pipe));
	pthread_barrier_init(&fk_ready, NULL, FK_THREADS + 1);
	for (int t = 0; t < FK_THREADS; t++)
		ASSERT_EQ(0, pthread_create(&th[t], NULL, fk_thread, (void *)(intptr_t)t));
	pthread_barrier_wait(&fk_ready);
	pthread_barrier_wait(&fk_ready);
	ASSERT_EQ(0, sa_kernel_stats(&before, NULL));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(fk_child());
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
	ASSERT_EQ(0, sa_kernel_stats(&after, NULL));
	EXPECT_EQ(before.spans, after.spans);
	EXPECT_EQ(before.spans_got, after.spans_got);
	for (int t = 0; t < FK_THREADS; t++)
		for (int i = 0; i < FK_OBJS; i++)
			if (fk_objs[t][i])
				EXPECT_TRUE(fk_check(fk_objs[t][i], fk_size(t, i), t, i));
	close(fk_pipe[1]);
	for (int t = 0; t < FK_THREADS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < FK_THREADS; t++)
		for (int i = 0; i < FK_OBJS; i++)
			sa_free(fk_objs[t][i]);
}

/* A child's child: the adopted heap is forked and adopted in turn. */
TEST(grandchild_has_a_heap_of_its_own_too)
{
	char *p;
	int st;
	pid_t pid;

	NEED_DEVICE();
	p = sa_malloc(100);
	strcpy(p, "gen0");
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		pid_t g;
		char *q = sa_malloc(1 << 20);

		if (!q || strcmp(p, "gen0"))
			_exit(1);
		strcpy(q, "gen1");
		g = fork();
		if (!g) {
			char *r = sa_malloc(1 << 20);

			_exit(!r || strcmp(q, "gen1") || strcmp(p, "gen0") ? 1 : 0);
		}
		if (g < 0 || waitpid(g, &st, 0) != g || !WIFEXITED(st))
			_exit(2);
		_exit(WEXITSTATUS(st) ? 3 : strcmp(q, "gen1") ? 4 : 0);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
	EXPECT_STREQ("gen0", p);
	sa_free(p);
}

TEST(flush_gives_back_and_allocation_continues)
{
	struct spanalloc_stats kst;
	void *p, *q;

	NEED_DEVICE();
	p = sa_alloc(1000);
	sa_free(p);
	sa_thread_flush();
	ASSERT_EQ(0, sa_kernel_stats(&kst, NULL));
	EXPECT_EQ(0, kst.spans);
	q = sa_alloc(1000);
	EXPECT_NE(NULL, q);
	sa_free(q);
}

/*
 * Under valgrind (which places every mapping itself, at page alignment
 * the module refuses) the heap still maps: make bench counts instructions
 * with callgrind. The child is this program, run by valgrind with
 * SA_LIB_TEST_VALGRIND set: it allocates, frees and exits before the
 * harness starts.
 */
__attribute__((constructor)) static void valgrind_child(void)
{
	void *p[1000];

	if (!getenv("SA_LIB_TEST_VALGRIND"))
		return;
	if (sa_init()) {
		fprintf(stderr, "valgrind child: %s\n", sa_strerror());
		_exit(1);
	}
	for (int i = 0; i < 1000; i++)
		if (!(p[i] = sa_alloc(64)))
			_exit(2);
	for (int i = 0; i < 1000; i++)
		sa_free(p[i]);
	_exit(0);
}

TEST(the_heap_maps_under_valgrind)
{
	char self[PATH_MAX];
	ssize_t n;
	int status;
	pid_t pid;

	NEED_DEVICE();
	if (access("/usr/bin/valgrind", X_OK))
		SKIP(return, "valgrind is not installed (make bench needs it)");
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	ASSERT_LT(0, n);
	self[n] = 0;
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		setenv("SA_LIB_TEST_VALGRIND", "1", 1);
		execl("/usr/bin/valgrind", "valgrind", "--tool=none", "-q", self, (char *)NULL);
		_exit(127);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

TEST_HARNESS_MAIN
