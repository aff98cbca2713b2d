// SPDX-License-Identifier: GPL-2.0
/*
 * unit_test: the library parts that need no device (size classes, span
 * bitmaps, tiny block masks, a handoff's victim), built natively under
 * ASan and UBSan.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <stddef.h>
#include <unistd.h>
#include "kselftest_harness.h"
#include "internal.h"
#include "fastpath.h"

/* Only the pieces under test are linked: these are never reached. */
struct sa_global sa_g;
struct sa_gc_state sa_gc;	/* mbitmap.c keeps heap_inuse in it */
__thread struct sa_tcache *sa_tc;
/* no span here has a profile sample (nsampled stays 0) */
void sa_prof_freed_slow(struct sa_uspan *s, uint32_t w, uint64_t bits)
{
	(void)s;
	(void)w;
	(void)bits;
	abort();
}
/* nor is any span taken from a cache (handoff.c) */
uint32_t sa_tcache_own_stale(struct sa_tcache *c, struct sa_tcache *to,
			     const struct sa_stale *st)
{
	(void)c;
	(void)to;
	(void)st;
	abort();
}
void sa_tcache_take_stale(struct sa_tcache *c, struct sa_tcache *self, const struct sa_stale *st)
{
	(void)c;
	(void)self;
	(void)st;
	abort();
}
void sa_tcache_return_decayed(struct sa_tcache *c)
{
	(void)c;
	abort();
}

static const uint32_t page = SPANALLOC_PAGE_SIZE;

/* The size class of size bytes (a class index moves when the table does). */
static unsigned int cls_of(size_t size)
{
	sa_sizeclass_init();
	return sa_class_of(size);
}

TEST(class_table_keeps_go_rules)
{
	sa_sizeclass_init();
	ASSERT_EQ(0, sa_classes[0].size);
	for (int c = 1; c < SPANALLOC_NUM_CLASSES; c++) {
		const struct spanalloc_class *ci = &sa_classes[c];
		uint32_t span = ci->npages * page;

		ASSERT_LT(sa_classes[c - 1].size, ci->size);
		EXPECT_EQ(span / ci->size, ci->nelems);
		EXPECT_LE((span % ci->size) * 8, span);	/* tail waste <= 1/8 */
		EXPECT_EQ(0, ci->size % 8);
		/* malloc's promise: 16-byte alignment from 16 bytes on */
		if (ci->size >= 16)
			EXPECT_EQ(0, ci->size % 16);
		if (ci->size > 1024)
			EXPECT_EQ(0, ci->size % 128);
		EXPECT_LE(ci->nelems, SPANALLOC_MAX_NELEMS);
		EXPECT_LE(ci->npages, SPANALLOC_MAX_CLASS_PAGES);
	}
	EXPECT_EQ(SPANALLOC_MAX_SMALL_SIZE, sa_classes[SPANALLOC_NUM_CLASSES - 1].size);
}

/* In the longest span a heap may give a class (SPANALLOC_IOC_SET_SPAN_PAGES) too. */
TEST(divmagic_divides_exactly_at_every_offset)
{
	for (int c = 1; c < SPANALLOC_NUM_CLASSES; c++) {
		struct sa_uspan s = { .base = 0, .divmagic = sa_classes[c].divmagic };
		uint32_t span = (sa_classes[c].npages > SPANALLOC_MAX_CLASS_PAGES ?
				 sa_classes[c].npages : SPANALLOC_MAX_CLASS_PAGES) * page;

		for (uint32_t off = 0; off < span; off++)
			ASSERT_EQ(off / sa_classes[c].size, sa_span_index(&s, off));
	}
}

/*
 * The span lengths the library asks for keep the table's bounds and the
 * kernel's (kmod/sizeclasses.c: sa_class_pages_ok), and are the shortest
 * up to 4 pages that hold 64 objects with metadata within 2%, or, where
 * none does, the shortest that holds 64 (as many as fit if none does).
 *
 * Whether a span of class k on q pages is one the library may ask for
 * (tail at most 1/8, objects at most SPANALLOC_MAX_NELEMS), and whether
 * it also holds 64 objects with its record, bitmaps and page map entries
 * at most 2% of its bytes.
 */
static bool span_len_valid(const struct spanalloc_class *k, uint32_t q)
{
	uint32_t span = q * page;

	return span / k->size <= SPANALLOC_MAX_NELEMS && (span % k->size) * 8 <= span;
}

static bool span_meta_ok(const struct spanalloc_class *k, uint32_t q)
{
	uint32_t span = q * page, n = span / k->size;
	size_t meta = sizeof(struct sa_uspan) + SA_BITS_EXT(sa_bits_kind(n)) + 8 * q;

	return meta * 50 <= span;
}

static bool span_len_good(const struct spanalloc_class *k, uint32_t q)
{
	return span_len_valid(k, q) && q * page / k->size >= 64 && span_meta_ok(k, q);
}

TEST(span_lengths_asked_for_hold_enough_objects_within_bounds)
{
	for (unsigned int c = 1; c < SPANALLOC_NUM_CLASSES; c++) {
		const struct spanalloc_class *k = &sa_classes[c];
		uint32_t p = sa_span_pages_wanted(c), span = p * page;

		ASSERT_LE(k->npages, p);
		ASSERT_LE(p, k->npages > SPANALLOC_MAX_CLASS_PAGES ? k->npages :
			  SPANALLOC_MAX_CLASS_PAGES);
		EXPECT_LE(span / k->size, SPANALLOC_MAX_NELEMS);
		EXPECT_LE((span % k->size) * 8, span) TH_LOG("class %u, %u pages", c, p);
		EXPECT_EQ(sa_span_nelems((uint16_t)SPANALLOC_SPANCLASS(c, 1), p), span / k->size);
		/* the shortest good length, or none up to 4 pages is good */
		for (uint32_t q = k->npages; q < (span_len_good(k, p) ? p : 5); q++) {
			EXPECT_FALSE(span_len_good(k, q))
				TH_LOG("class %u: %u pages, not %u", c, p, q);
		}
		if (span_len_good(k, p))
			continue;
		/* else the shortest with 64 objects, or as many as fit */
		for (uint32_t q = k->npages; q < p; q++) {
			EXPECT_FALSE(span_len_valid(k, q) && q * page / k->size >= 64)
				TH_LOG("class %u: %u pages, not %u", c, p, q);
		}
		if (span / k->size < 64) {
			for (uint32_t q = p + 1; q <= 4; q++) {
				EXPECT_FALSE(span_len_valid(k, q))
					TH_LOG("class %u: %u pages, not %u", c, p, q);
			}
		}
	}
	/* every class from 64 bytes on meets the 2% (under it, no length up to 4 pages) */
	for (unsigned int c = 1; c < SPANALLOC_NUM_CLASSES; c++) {
		if (sa_classes[c].size >= 64) {
			EXPECT_TRUE(span_meta_ok(&sa_classes[c], sa_span_pages_wanted(c)))
				TH_LOG("class %u", c);
		} else {
			EXPECT_EQ(sa_classes[c].npages, sa_span_pages_wanted(c));
		}
	}
	/* the case that asked for it: larson's 288-512 B objects, 16-28 a page */
	EXPECT_LE(64, sa_span_nelems((uint16_t)SPANALLOC_SPANCLASS(cls_of(512), 0),
				     sa_span_pages_wanted(cls_of(512))));
	/* the tiny allocator's 16-byte class keeps its one page */
	EXPECT_EQ(1, sa_span_pages_wanted(SA_TINY_SC >> 1));
	EXPECT_EQ(1, sa_span_nelems(SPANALLOC_SPANCLASS(0, 0), 7));	/* a large span */
}

TEST(size_maps_to_smallest_fitting_class)
{
	sa_sizeclass_init();
	for (size_t size = 0; size <= SPANALLOC_MAX_SMALL_SIZE; size++) {
		unsigned int c = sa_class_of(size);

		ASSERT_LE(1, c);
		ASSERT_LE(size, sa_classes[c].size);
		if (c > 1)
			ASSERT_LT(sa_classes[c - 1].size, size);
	}
	EXPECT_EQ(0, sa_size_class(SPANALLOC_MAX_SMALL_SIZE + 1));
	EXPECT_EQ(8, sa_class_size(sa_size_class(1)));
	EXPECT_EQ(0, sa_class_size(SPANALLOC_NUM_CLASSES));
}

/* A span over ordinary memory, as if the kernel had handed it out. */
static struct sa_uspan *fake_span(unsigned int cls, void **mem)
{
	uint8_t kind = sa_bits_kind(sa_classes[cls].nelems);
	/* the record and its bitmaps in one block, as heap.c makes them */
	struct sa_uspan *s = aligned_alloc(64, sizeof(*s) + SA_BITS_EXT(kind));
	size_t len = sa_classes[cls].npages * page;

	*mem = aligned_alloc(page, len);
	/* records are reused: setup must not trust what the last span left */
	memset(s, 0xa5, sizeof(*s) + SA_BITS_EXT(kind));
	sa_span_bind_bits(s, kind, s + 1);
	s->types = NULL;	/* released with the record (sa_uspan_release) */
	s->tiny = NULL;
	sa_span_setup(s, (uintptr_t)*mem, 1, sa_classes[cls].npages,
		      (uint16_t)SPANALLOC_SPANCLASS(cls, 0), false);
	return s;
}

static uint32_t alloc_one(struct sa_uspan *s)
{
	uintptr_t p = sa_span_next_fast(s);

	if (p)
		return sa_span_index(s, p);
	return sa_span_next_free(s);
}

static void free_one(struct sa_uspan *s, uint32_t idx)
{
	if (sa_span_free(s, idx) < 0)
		abort();
}

/* The free's test: an object starts at off, and which, in one multiply. */
TEST(exact_division_finds_object_starts_at_every_offset)
{
	for (int c = 1; c < SPANALLOC_NUM_CLASSES; c++) {
		void *mem;
		struct sa_uspan *s = fake_span((unsigned int)c, &mem);
		uint32_t span = sa_classes[c].npages * page, size = sa_classes[c].size;

		for (uint32_t off = 0; off < span; off++) {
			uint32_t idx;
			bool start = sa_span_exact(s, s->base + off, &idx);

			ASSERT_EQ(off % size == 0, start);
			if (start)
				ASSERT_EQ(off / size, idx);
		}
		free(s);
		free(mem);
	}
}

TEST(tiny_objects_are_aligned_for_the_size_asked)
{
	static const uint32_t want[16] = { 2, 2, 2, 4, 4, 2, 2, 8, 8, 2, 2, 4, 4, 2, 2, 16 };

	for (uint32_t req = 0; req < 16; req++) {
		EXPECT_EQ(want[req], sa_tiny_alignment(req)) TH_LOG("%u bytes", req);
	}
	EXPECT_EQ(8, sa_tiny_align(2, 8));
	EXPECT_EQ(4, sa_tiny_align(2, 4));
	EXPECT_EQ(2, sa_tiny_align(1, 2));
}

/*
 * The tiny allocator takes noscan objects of 1 to 15 bytes padded, but
 * not those carved as 8 or 16 bytes (packing gains nothing) nor 8 bytes
 * asked (9 padded): SA_TINY_SIZES, a bit per padded size, against the
 * rule written out.
 */
TEST(tiny_is_wanted_only_where_packing_gains)
{
	for (size_t size = 0; size <= 20; size++) {
		for (size_t pad = 0; pad < 2; pad++) {
			size_t sz = size + pad, carved = sa_tiny_round((uint32_t)sz);
			bool want = sz >= 1 && sz <= 15 && carved != 8 && carved != 16 && size != 8;

			EXPECT_EQ(want, sa_tiny_wanted(size, sz, true))
				TH_LOG("%zu bytes, pad %zu", size, pad);
			EXPECT_FALSE(sa_tiny_wanted(size, sz, false));
		}
	}
}

/*
 * The malloc family's fast path takes the class of the size plus the end
 * pad, unrounded and without the tiny test; its slow paths ask for
 * sa_malloc_size(): that must take the same class, hold the size, and
 * never be a tiny one, with the end pad or without, even if the pad
 * changed after the fast path read it. 0 bytes takes the 8-byte class
 * through the slow path.
 */
TEST(the_malloc_familys_slow_sizes_take_the_fast_paths_class_and_are_never_tiny)
{
	sa_sizeclass_init();
	ASSERT_NE(sa_spanclass8(8, true), sa_spanclass8(16, true));
	for (size_t n = 0; n <= 4 * SA_TINY_SIZE; n++) {
		for (uint32_t pad = 0; pad < 2; pad++) {
			size_t r = sa_malloc_size(n, pad);
			uint16_t want = sa_spanclass8(n + pad ? n + pad : 8, true);

			EXPECT_LE(n, r) TH_LOG("%zu bytes, pad %u: %zu", n, pad, r);
			/* with either pad: it may change between two reads */
			for (uint32_t now = 0; now < 2; now++) {
				EXPECT_FALSE(sa_tiny_wanted(r, r + now, true))
					TH_LOG("%zu bytes, pad %u then %u: %zu", n, pad, now, r);
			}
			EXPECT_EQ(want, sa_spanclass8(r + pad, true))
				TH_LOG("%zu bytes, pad %u: %zu", n, pad, r);
			if (n >= SA_TINY_SIZE)
				EXPECT_EQ(n, r);
		}
	}
}

TEST(popcount_counts_every_bit_pattern)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	EXPECT_EQ(0, sa_popcount64(0));
	EXPECT_EQ(64, sa_popcount64(~0ULL));
	for (int i = 0; i < 64; i++) {
		EXPECT_EQ(1, sa_popcount64(1ULL << i));
		EXPECT_EQ((uint32_t)i, sa_popcount64((1ULL << i) - 1));
	}
	for (int i = 0; i < 100000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		ASSERT_EQ((uint32_t)__builtin_popcountll(x), sa_popcount64(x));
	}
}

TEST(span_hands_out_every_object_once_in_order)
{
	sa_sizeclass_init();
	for (unsigned int cls = 1; cls < SPANALLOC_NUM_CLASSES; cls++) {
		void *mem;
		struct sa_uspan *s = fake_span(cls, &mem);

		for (uint32_t i = 0; i < s->nelems; i++)
			ASSERT_EQ(i, alloc_one(s));
		ASSERT_EQ(s->nelems, alloc_one(s));
		ASSERT_EQ(0, sa_span_reuse_freed(s));
		/* counted at the refresh, not per object */
		ASSERT_EQ(s->nelems, s->alloc_count);
		ASSERT_EQ(s->nelems, s->taken);
		free(s);
		free(mem);
	}
}

TEST(full_span_reuses_exactly_what_was_freed)
{
	void *mem;
	struct sa_uspan *s = fake_span(cls_of(8), &mem);	/* 1024 objects */
	uint32_t freed[] = { 0, 1, 63, 64, 65, 500, 1023 };
	uint32_t n = sizeof(freed) / sizeof(freed[0]);

	while (alloc_one(s) < s->nelems)
		;
	for (uint32_t i = 0; i < n; i++)
		free_one(s, freed[i]);
	ASSERT_EQ(n, sa_span_reuse_freed(s));
	EXPECT_EQ(s->nelems - n, s->alloc_count);
	EXPECT_EQ(1, s->needzero);
	for (uint32_t i = 0; i < n; i++)
		ASSERT_EQ(freed[i], alloc_one(s));
	ASSERT_EQ(s->nelems, alloc_one(s));
	free(s);
	free(mem);
}

TEST(settle_makes_bits_and_count_exact)
{
	void *mem;
	struct sa_uspan *s = fake_span(cls_of(48), &mem);	/* 170 objects */

	for (int i = 0; i < 100; i++)
		alloc_one(s);
	free_one(s, 3);
	free_one(s, 70);
	sa_span_settle(s);
	EXPECT_EQ(98, s->alloc_count);
	EXPECT_EQ(0, s->freeindex);
	EXPECT_EQ(0, s->alloc_bits[0] & (1ULL << 3));
	EXPECT_NE(0, s->alloc_bits[0] & (1ULL << 4));
	EXPECT_EQ(0, s->alloc_bits[1] & (1ULL << (70 - 64)));
	/* the next holder gets the holes first, then the untouched tail */
	EXPECT_EQ(3, alloc_one(s));
	EXPECT_EQ(70, alloc_one(s));
	EXPECT_EQ(100, alloc_one(s));
	free(s);
	free(mem);
}

/*
 * Allocation counts nothing per object: what a span handed out is counted
 * at its refreshes, from the free slots freeindex passed, holes included.
 */
TEST(span_counts_what_it_handed_out_at_refresh)
{
	void *mem;
	struct sa_uspan *s = fake_span(cls_of(48), &mem);	/* 170 objects */

	for (int i = 0; i < 100; i++)
		alloc_one(s);
	EXPECT_EQ(100, sa_span_taken_since(s));
	ASSERT_EQ(0, sa_span_free_local(s, 3));
	ASSERT_EQ(0, sa_span_free_local(s, 64));
	free_one(s, 70);
	sa_span_settle(s);
	EXPECT_EQ(100, s->taken);
	EXPECT_EQ(2, s->freed_local);	/* the remote free is its freer's to count */
	EXPECT_EQ(97, s->alloc_count);
	EXPECT_EQ(0, sa_span_taken_since(s));
	/* the three holes, then two of the untouched tail: five */
	for (int i = 0; i < 5; i++)
		alloc_one(s);
	EXPECT_EQ(102, s->freeindex);
	EXPECT_EQ(5, sa_span_taken_since(s));
	sa_span_settle(s);
	EXPECT_EQ(105, s->taken);
	EXPECT_EQ(102, s->alloc_count);
	free(s);
	free(mem);
}

TEST(taken_span_merges_frees_made_while_unowned)
{
	void *mem;
	struct sa_uspan *s = fake_span(cls_of(128), &mem);	/* 64 objects */

	for (int i = 0; i < 64; i++)
		alloc_one(s);
	sa_span_settle(s);
	free_one(s, 10);
	free_one(s, 11);
	sa_span_take(s);
	EXPECT_EQ(62, s->alloc_count);
	EXPECT_EQ(10, alloc_one(s));
	EXPECT_EQ(11, alloc_one(s));
	EXPECT_EQ(64, alloc_one(s));
	free(s);
	free(mem);
}

/*
 * A used-up span kept aside comes back with the objects freed meanwhile,
 * locally and from other threads, marked dirty; with none freed it stays
 * used up.
 */
TEST(held_span_is_reclaimed_only_when_freed_into)
{
	void *mem;
	struct sa_uspan *s = fake_span(cls_of(128), &mem);	/* 64 objects */

	while (alloc_one(s) < s->nelems)
		;
	EXPECT_FALSE(sa_span_settle(s));
	EXPECT_EQ(64, alloc_one(s));
	EXPECT_FALSE(sa_span_settle(s));
	ASSERT_EQ(0, sa_span_free_local(s, 40));
	free_one(s, 3);
	EXPECT_TRUE(sa_span_settle(s));
	EXPECT_EQ(62, s->alloc_count);
	EXPECT_EQ(1, s->needzero);
	EXPECT_EQ(0, atomic_load(&s->adoptable));
	EXPECT_EQ(3, alloc_one(s));
	EXPECT_EQ(40, alloc_one(s));
	EXPECT_EQ(64, alloc_one(s));
	free(s);
	free(mem);
}

/* The harness takes SIGABRT for a failed ASSERT, so abort in a child. */
TEST(freeing_a_free_object_aborts)
{
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (!pid) {
		void *mem;
		struct sa_uspan *s = fake_span(cls_of(32), &mem);

		alloc_one(s);
		sa_span_settle(s);
		free_one(s, 0);
		sa_span_take(s);	/* object 0 is free now */
		free_one(s, 0);
		sa_span_settle(s);	/* the second free is caught here */
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFSIGNALED(status));
	EXPECT_EQ(SIGABRT, WTERMSIG(status));
}

/*
 * In a forked child, a span may be as another thread left it halfway
 * through collecting its frees (allocBits cleared, localFree not yet) or
 * through handing out an object (alloc_count ahead of the bits). Settling
 * it as a holder would (sa_span_settle) aborts on the first ("double
 * free"); the child's settle trusts only the bits, loses nothing and
 * hands nothing out twice.
 */
/* 100 of 170 objects handed out, then torn as the comment above says. */
static struct sa_uspan *torn_span(void **mem)
{
	struct sa_uspan *s = fake_span(cls_of(48), mem);

	for (int i = 0; i < 100; i++)
		alloc_one(s);
	sa_span_settle(s);
	/* a local free of 5 half collected: bit out of allocBits, still in localFree */
	sa_span_free_local(s, 5);
	s->alloc_bits[0] &= ~(1ULL << 5);
	/* a remote free of 6, complete; a count run ahead of the bits */
	free_one(s, 6);
	s->alloc_count += 3;
	return s;
}

TEST(forked_child_settles_a_span_torn_mid_collect)
{
	struct sa_uspan *s;
	void *mem;
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (!pid) {
		sa_span_settle(torn_span(&mem));	/* the holder's settle: aborts */
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFSIGNALED(status));
	EXPECT_EQ(SIGABRT, WTERMSIG(status));

	s = torn_span(&mem);
	EXPECT_TRUE(sa_span_settle_forked(s));
	EXPECT_EQ(98, s->alloc_count);
	/* 5 and 6 come back once each, then the untouched tail */
	EXPECT_EQ(5, alloc_one(s));
	EXPECT_EQ(6, alloc_one(s));
	EXPECT_EQ(100, alloc_one(s));
	free(s);
	free(mem);
}

TEST(first_free_after_full_return_adopts_exactly_once)
{
	void *mem;
	struct sa_uspan *s = fake_span(cls_of(128), &mem);	/* 64 objects */

	while (alloc_one(s) < s->nelems)
		;
	ASSERT_EQ(0, sa_span_reuse_freed(s));
	/* published with no free pending: nobody holds it now */
	ASSERT_FALSE(sa_span_publish_full(s));
	EXPECT_EQ(1, sa_span_free(s, 5));	/* the first free adopts */
	EXPECT_EQ(0, sa_span_free(s, 6));	/* later ones do not */
	EXPECT_EQ(-1, sa_span_free(s, 6));	/* a double free is refused */
	EXPECT_EQ(0, atomic_load(&s->adoptable));
	sa_span_settle(s);
	EXPECT_EQ(62, s->alloc_count);
	for (uint32_t w = 0; w < (s->nelems + 63) / 64; w++)	/* every free collected */
		EXPECT_EQ(0, atomic_load(&s->free_bits[w]));
	free(s);
	free(mem);
}

TEST(free_before_publishing_keeps_span_with_its_holder)
{
	void *mem;
	struct sa_uspan *s = fake_span(cls_of(128), &mem);

	while (alloc_one(s) < s->nelems)
		;
	ASSERT_EQ(0, sa_span_reuse_freed(s));
	EXPECT_EQ(0, sa_span_free(s, 1));	/* still held: no adoption */
	EXPECT_TRUE(sa_span_publish_full(s));	/* so the holder keeps it */
	EXPECT_EQ(0, sa_span_free(s, 2));
	free(s);
	free(mem);
}

/*
 * A free and a publish racing from two threads: exactly one of them holds
 * the span afterwards, never both and never neither.
 */
struct race {
	struct sa_uspan *s;
	_Atomic int round, ready;
	int rounds, adopted_by_free;
};

static void *race_freer(void *arg)
{
	struct race *r = arg;

	for (int i = 1; i <= r->rounds; i++) {
		while (atomic_load(&r->round) != i)
			;
		atomic_fetch_add(&r->ready, 1);
		r->adopted_by_free = sa_span_free(r->s, 7) == 1;
		atomic_fetch_add(&r->ready, 1);
	}
	return NULL;
}

TEST(free_racing_a_full_publish_leaves_exactly_one_holder)
{
	struct race r = { .rounds = 20000 };
	int both = 0, neither = 0, by_free = 0;
	pthread_t t;
	void *mem;

	r.s = fake_span(cls_of(128), &mem);
	ASSERT_EQ(0, pthread_create(&t, NULL, race_freer, &r));
	for (int i = 1; i <= r.rounds; i++) {
		bool kept;

		while (alloc_one(r.s) < r.s->nelems)
			;
		ASSERT_EQ(0, sa_span_reuse_freed(r.s));
		atomic_store(&r.ready, 0);
		atomic_store(&r.round, i);
		while (atomic_load(&r.ready) < 1)
			;
		kept = sa_span_publish_full(r.s);
		while (atomic_load(&r.ready) < 2)
			;
		both += kept && r.adopted_by_free;
		neither += !kept && !r.adopted_by_free;
		by_free += r.adopted_by_free;
		atomic_store(&r.s->adoptable, 0);
		sa_span_settle(r.s);	/* takes object 7 back */
	}
	pthread_join(t, NULL);
	EXPECT_EQ(0, both);
	EXPECT_EQ(0, neither);
	/* both orders happen, or the race was not exercised */
	EXPECT_LT(0, by_free);
	EXPECT_LT(by_free, r.rounds);
	free(r.s);
	free(mem);
}

/*
 * A used-up span nothing was freed into is counted, not refreshed
 * (sa_span_reuse_freed), and is then known full without a settle; any
 * free, local or remote, makes it not known full, and the settle that
 * follows finds exactly what was freed, with allocBits filled then.
 */
TEST(a_used_up_span_is_known_full_until_something_is_freed)
{
	for (unsigned int size = 16; size <= 1024; size *= 4) {
		void *mem;
		struct sa_uspan *s = fake_span(cls_of(size), &mem);
		uint32_t n = s->nelems;

		EXPECT_FALSE(sa_span_known_full(s));
		while (alloc_one(s) < n)
			;
		EXPECT_EQ(0, sa_span_reuse_freed(s));
		EXPECT_EQ(n, s->alloc_count);
		EXPECT_TRUE(sa_span_known_full(s));
		EXPECT_EQ(0, sa_span_free_local(s, n - 1));
		EXPECT_FALSE(sa_span_known_full(s));
		EXPECT_TRUE(sa_span_settle(s));
		EXPECT_EQ(n - 1, s->alloc_count);
		EXPECT_EQ(n - 1, alloc_one(s));
		EXPECT_EQ(n, alloc_one(s));	/* nothing else is free */
		EXPECT_EQ(0, sa_span_reuse_freed(s));
		EXPECT_TRUE(sa_span_known_full(s));
		free_one(s, 0);
		EXPECT_FALSE(sa_span_known_full(s));
		EXPECT_TRUE(sa_span_settle(s));
		EXPECT_EQ(0, alloc_one(s));
		free(s);
		free(mem);
	}
}

/*
 * A span used up after starting over with holes in three words counts
 * exactly the holes as handed out (not from the bits: from alloc_count,
 * exact at the start), and a second look at it counts nothing more.
 */
TEST(a_used_up_span_counts_the_holes_it_was_started_with)
{
	void *mem;
	struct sa_uspan *s = fake_span(cls_of(48), &mem);	/* 170 objects */
	uint32_t n = s->nelems;

	while (alloc_one(s) < n)
		;
	ASSERT_EQ(0, sa_span_reuse_freed(s));
	ASSERT_EQ(n, s->taken);
	ASSERT_EQ(0, sa_span_free_local(s, 5));
	ASSERT_EQ(0, sa_span_free_local(s, 100));
	free_one(s, 169);
	ASSERT_TRUE(sa_span_settle(s));
	ASSERT_EQ(n - 3, s->alloc_count);
	while (alloc_one(s) < n)
		;
	EXPECT_EQ(0, sa_span_reuse_freed(s));
	EXPECT_EQ(n, s->alloc_count);
	EXPECT_EQ(n + 3, s->taken);
	EXPECT_EQ(0, sa_span_reuse_freed(s));
	EXPECT_EQ(n, s->alloc_count);
	EXPECT_EQ(n + 3, s->taken);
	EXPECT_TRUE(sa_span_known_full(s));
	free(s);
	free(mem);
}

/*
 * The same count for a span taken back from the kernel's lists with frees
 * made while nobody held it (sa_span_take), and for one settled in a
 * forked child, where the count comes from the bits (sa_span_settle_forked).
 */
TEST(a_used_up_span_counts_its_holes_after_a_take_or_a_forked_settle)
{
	for (int forked = 0; forked < 2; forked++) {
		void *mem;
		struct sa_uspan *s = fake_span(cls_of(48), &mem);	/* 170 objects */
		uint32_t n = s->nelems, taken;

		while (alloc_one(s) < n)
			;
		ASSERT_EQ(0, sa_span_reuse_freed(s));
		ASSERT_TRUE(!sa_span_settle(s));	/* given back FULL */
		free_one(s, 7);
		free_one(s, 64);
		free_one(s, 130);
		if (forked) {
			ASSERT_TRUE(sa_span_settle_forked(s));
		} else {
			sa_span_take(s);
		}
		ASSERT_EQ(n - 3, s->alloc_count);
		taken = s->taken;
		while (alloc_one(s) < n)
			;
		EXPECT_EQ(0, sa_span_reuse_freed(s));
		EXPECT_EQ(n, s->alloc_count);
		EXPECT_EQ(taken + 3, s->taken);
		free(s);
		free(mem);
	}
}

TEST(owner_frees_need_no_atomics_and_are_collected)
{
	void *mem;
	struct sa_uspan *s = fake_span(cls_of(128), &mem);	/* 64 objects */

	while (alloc_one(s) < s->nelems)
		;
	EXPECT_EQ(0, sa_span_free_local(s, 9));
	EXPECT_EQ(-1, sa_span_free_local(s, 9));	/* double free */
	free_one(s, 10);				/* and one remote */
	EXPECT_EQ(1ULL << 10, atomic_load(&s->free_bits[0]));	/* only remote frees are atomic */
	EXPECT_EQ(1ULL << 9, s->local_free[0]);
	EXPECT_EQ(2, sa_span_reuse_freed(s));
	EXPECT_EQ(9, alloc_one(s));
	EXPECT_EQ(10, alloc_one(s));
	free(s);
	free(mem);
}

/* Every object of a span of eight words: one bit each, a second free refused. */
TEST(a_local_free_sets_its_own_bit_in_every_word)
{
	void *mem;
	struct sa_uspan *s = fake_span(cls_of(16), &mem);	/* 512 objects */

	while (alloc_one(s) < s->nelems)
		;
	for (uint32_t i = 0; i < s->nelems; i += 7) {
		ASSERT_EQ(0, sa_span_free_local(s, i));
		ASSERT_EQ(-1, sa_span_free_local(s, i));
	}
	for (uint32_t i = 0; i < s->nelems; i++)
		ASSERT_EQ(i % 7 == 0, !!(s->local_free[i / 64] & (1ULL << (i % 64))));
	free(s);
	free(mem);
}

/*
 * The fast paths' zeroing, for every size it is given (a class's, up to
 * SA_ZERO_INLINE): every byte of the object zeroed, and not one byte
 * around it touched, at every 8-byte alignment.
 */
TEST(inline_zeroing_covers_the_object_and_nothing_else)
{
	unsigned char buf[SA_ZERO_INLINE + 64] __attribute__((aligned(16)));

	sa_sizeclass_init();
	for (int c = 1; c < SPANALLOC_NUM_CLASSES; c++) {
		uint32_t size = sa_classes[c].size;

		if (size > SA_ZERO_INLINE)
			break;
		for (uint32_t at = 8; at <= 32; at += 8) {
			memset(buf, 0xa5, sizeof(buf));
			sa_zero_small((uintptr_t)buf + at, size);
			for (uint32_t i = 0; i < sizeof(buf); i++) {
				unsigned int want = i >= at && i < at + size ? 0 : 0xa5;

				ASSERT_EQ(want, buf[i]) {
					TH_LOG("size %u at %u: byte %u", size, at, i);
				}
			}
		}
	}
}

TEST(tiny_blocks_carve_and_release)
{
	_Atomic(sa_tiny_mask) m = sa_tiny_fresh();
	uint32_t freed = 7;

	/* 3 bytes (carved as 4) at 0, 4 at 4 (aligned), 8 at 8 */
	EXPECT_EQ(4, sa_tiny_round(3));
	ASSERT_EQ(0, sa_tiny_carve(&m, 0, 0, 4));
	ASSERT_EQ(0, sa_tiny_carve(&m, 4, 4, 4));
	EXPECT_EQ(4, sa_tiny_usable(m, 0));
	EXPECT_EQ(4, sa_tiny_usable(m, 4));
	EXPECT_EQ(0, sa_tiny_usable(m, 2));	/* inside an object */
	EXPECT_EQ(0, sa_tiny_usable(m, 5));	/* odd: never a start */
	ASSERT_EQ(0, sa_tiny_carve(&m, 8, 8, 8));
	EXPECT_EQ(8, sa_tiny_usable(m, 8));
	EXPECT_EQ(0, sa_tiny_release(&m, 2, &freed));	/* nothing starts there */
	EXPECT_EQ(0, sa_tiny_release(&m, 3, &freed));
	EXPECT_EQ(0, sa_tiny_release(&m, 16, &freed));	/* nor past the block */
	ASSERT_EQ(4, sa_tiny_release(&m, 4, &freed));	/* its size */
	EXPECT_EQ(0, freed);
	EXPECT_EQ(0, sa_tiny_release(&m, 4, &freed));	/* double free */
	ASSERT_EQ(4, sa_tiny_release(&m, 0, &freed));
	EXPECT_EQ(0, freed);
	ASSERT_EQ(8, sa_tiny_release(&m, 8, &freed));
	EXPECT_EQ(1, freed);	/* block full, so no pseudo-object: empty */
}

/* A block started on the fast path is the fresh block with one carve. */
TEST(tiny_block_started_carved_equals_carving_a_fresh_one)
{
	for (uint32_t size = 1; size < 16; size++) {
		_Atomic(sa_tiny_mask) m = sa_tiny_fresh();
		uint32_t carved = sa_tiny_round(size), freed = 7;

		ASSERT_EQ(0, sa_tiny_carve(&m, 0, 0, carved));
		EXPECT_EQ((sa_tiny_mask)m, sa_tiny_carved(carved));
		EXPECT_EQ(carved, sa_tiny_usable(m, 0));
		/* the object, then the rest: the block empties */
		EXPECT_EQ(carved, sa_tiny_release(&m, 0, &freed));
		if (carved < 16)
			EXPECT_EQ(16 - carved, sa_tiny_release(&m, carved, &freed));
		EXPECT_EQ(1, freed);
	}
}

TEST(tiny_block_outlives_its_objects_while_being_carved)
{
	_Atomic(sa_tiny_mask) m = sa_tiny_fresh();
	uint32_t freed = 7;

	ASSERT_EQ(0, sa_tiny_carve(&m, 0, 0, 6));
	ASSERT_EQ(6, sa_tiny_release(&m, 0, &freed));
	EXPECT_EQ(0, freed);	/* the unused rest [6, 16) still holds it */
	ASSERT_EQ(0, sa_tiny_carve(&m, 6, 6, 2));
	EXPECT_EQ(2, sa_tiny_usable(m, 6));
	ASSERT_EQ(8, sa_tiny_release(&m, 8, &freed));	/* retire the rest */
	EXPECT_EQ(0, freed);
	ASSERT_EQ(2, sa_tiny_release(&m, 6, &freed));
	EXPECT_EQ(1, freed);
	EXPECT_EQ(0, (sa_tiny_mask)m);
}

/*
 * Carving and freeing keep the mask what the block's objects say it is:
 * random blocks carved to the end while random objects are freed, each
 * mask checked against one built from the objects alive (the pseudo-object
 * included), with sizes, double and stray frees, and the empty block.
 */
static sa_tiny_mask tiny_model_mask(const uint8_t *len, uint32_t fill)
{
	sa_tiny_mask m = 0;

	for (uint32_t o = 0; o < 16; o += 2)
		if (len[o])
			m |= SA_TINY_START(o) | SA_TINY_END(o + len[o] - 1);
	if (fill < 16)
		m |= SA_TINY_START(fill) | SA_TINY_END(15);
	return m;
}

TEST(tiny_masks_follow_the_objects_in_their_block)
{
	unsigned int seed = 12345;

	for (int block = 0; block < 200000; block++) {
		_Atomic(sa_tiny_mask) m = sa_tiny_fresh();
		uint8_t len[16] = { 0 };
		uint32_t fill = 0, freed = 7, live = 0;

		while (fill < 16 || live) {
			uint32_t r = (uint32_t)rand_r(&seed);
			uint32_t size = sa_tiny_round(1 + r % 15), off = sa_tiny_align(fill, sa_tiny_alignment(size));

			if (fill < 16 && off + size <= 16 && (r >> 8) % 3) {
				ASSERT_EQ(0, sa_tiny_carve(&m, fill, off, size));
				len[off] = (uint8_t)size;
				fill = off + size;
				live++;
			} else if (fill < 16 && !((r >> 8) % 5)) {
				/* the carving thread retires the rest */
				ASSERT_EQ(16 - fill, sa_tiny_release(&m, fill, &freed));
				fill = 16;
				EXPECT_EQ(!live, freed);
			} else if (live) {
				uint32_t o = 2 * ((r >> 12) % 8);

				if (o == fill) {
					continue;	/* the rest: retired above */
				} else if (!len[o]) {
					/* a stray or double free changes nothing */
					EXPECT_EQ(0, sa_tiny_release(&m, o, &freed));
					EXPECT_EQ(0, sa_tiny_release(&m, o + 1, &freed));
				} else {
					ASSERT_EQ(len[o], sa_tiny_release(&m, o, &freed));
					len[o] = 0;
					live--;
					EXPECT_EQ(!live && fill >= 16, freed);
				}
			}
			ASSERT_EQ(tiny_model_mask(len, fill), (sa_tiny_mask)m);
		}
		ASSERT_EQ(0, (sa_tiny_mask)m);
	}
}

/* A carve into a pseudo-object a stray free removed fails and changes nothing. */
TEST(tiny_carve_after_a_stray_free_changes_nothing)
{
	_Atomic(sa_tiny_mask) m = sa_tiny_fresh();
	uint32_t freed;
	sa_tiny_mask before;

	ASSERT_EQ(0, sa_tiny_carve(&m, 0, 0, 4));
	ASSERT_EQ(12, sa_tiny_release(&m, 4, &freed));	/* the rest, by a stray free */
	before = m;
	EXPECT_EQ(-1, sa_tiny_carve(&m, 4, 4, 2));
	EXPECT_EQ(-1, sa_tiny_carve(&m, 4, 8, 8));
	EXPECT_EQ(before, (sa_tiny_mask)m);
}

/*
 * One thread carves blocks while another frees each object as soon as it
 * is carved (tiny.h's adds and subtracts, racing on one mask): every free
 * returns the object's size, each block empties exactly once, whichever
 * side finishes last, and every mask ends at 0.
 */
#define RACE_BLOCKS 20000
static struct tiny_race {
	_Atomic(sa_tiny_mask) m[RACE_BLOCKS];
	_Atomic uint32_t emptied[RACE_BLOCKS];
	_Atomic uint32_t q[RACE_BLOCKS * 8];	/* block << 16 | off << 8 | size */
	_Atomic uint32_t nq, bad;
	_Atomic int finished;
} tiny_race;

static void *tiny_race_freer(void *arg)
{
	struct tiny_race *r = arg;
	uint32_t done = 0;

	while (!atomic_load(&r->finished) || done < atomic_load(&r->nq)) {
		uint32_t it, b, freed = 0;

		if (done == atomic_load(&r->nq))
			continue;
		it = atomic_load(&r->q[done++]);
		b = it >> 16;
		if (sa_tiny_release(&r->m[b], (it >> 8) & 0xff, &freed) != (it & 0xff))
			atomic_fetch_add(&r->bad, 1);
		if (freed)
			atomic_fetch_add(&r->emptied[b], 1);
	}
	return NULL;
}

TEST(tiny_masks_stay_exact_while_another_thread_frees)
{
	struct tiny_race *r = &tiny_race;
	unsigned int seed = 777;
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, tiny_race_freer, r));
	for (uint32_t b = 0; b < RACE_BLOCKS; b++) {
		uint32_t fill = 0, freed = 0;

		atomic_store(&r->m[b], sa_tiny_fresh());
		for (;;) {
			uint32_t req = 1 + (uint32_t)rand_r(&seed) % 15, size = sa_tiny_round(req);
			uint32_t off = sa_tiny_align(fill, sa_tiny_alignment(req));

			if (off + size > 16)
				break;
			ASSERT_EQ(0, sa_tiny_carve(&r->m[b], fill, off, size));
			atomic_store(&r->q[atomic_load(&r->nq)], b << 16 | off << 8 | size);
			atomic_fetch_add(&r->nq, 1);
			fill = off + size;
		}
		/* the carving thread retires the rest, as sa_tiny_retire does */
		if (fill < 16) {
			ASSERT_EQ(16 - fill, sa_tiny_release(&r->m[b], fill, &freed));
			if (freed)
				atomic_fetch_add(&r->emptied[b], 1);
		}
	}
	atomic_store(&r->finished, 1);
	ASSERT_EQ(0, pthread_join(t, NULL));
	EXPECT_EQ(0, atomic_load(&r->bad));
	for (uint32_t b = 0; b < RACE_BLOCKS; b++) {
		ASSERT_EQ(0, (sa_tiny_mask)atomic_load(&r->m[b]));
		ASSERT_EQ(1, atomic_load(&r->emptied[b]));
	}
}

/*
 * A program's signal handler that allocates can interrupt a fast path:
 * the handler's own fast path ending must leave the interrupted one
 * marked, or a stop or a handoff would take its span mid-change.
 */
TEST(a_nested_fast_path_leaves_the_outer_one_marked)
{
	static struct sa_tcache c;

	sa_fast_enter(&c);
	sa_fast_enter(&c);	/* the handler's */
	EXPECT_TRUE(sa_fast_exit(&c));	/* not 0: sa_fast_stop looks, and waits */
	EXPECT_NE(0, c.in_fast);
	EXPECT_FALSE(sa_fast_exit(&c));
	EXPECT_EQ(0, c.in_fast);
}

/*
 * A stop the handler noted in a fast path makes the subtract that leaves
 * the region say so, nested or not, and only the count says whether the
 * thread is still inside (the hand-off and sa_safe_exit read it).
 */
TEST(a_stop_noted_in_a_fast_path_is_seen_by_its_exit)
{
	static struct sa_tcache c;

	EXPECT_FALSE(sa_fast_exit((sa_fast_enter(&c), &c)));
	sa_fast_enter(&c);
	sa_signal_or(&c.in_fast, SA_FAST_STOP);	/* as sa_world_on_signal does */
	EXPECT_EQ(1, c.in_fast & SA_FAST_COUNT);
	EXPECT_TRUE(sa_fast_exit(&c));
	EXPECT_EQ(0, c.in_fast & SA_FAST_COUNT);
	EXPECT_EQ(SA_FAST_STOP, c.in_fast);
	/* until a stop clears it (sa_world_park), every exit looks */
	sa_fast_enter(&c);
	EXPECT_TRUE(sa_fast_exit(&c));
	sa_signal_andnot(&c.in_fast, SA_FAST_STOP);
	sa_fast_enter(&c);
	EXPECT_FALSE(sa_fast_exit(&c));
	EXPECT_EQ(0, c.in_fast);
}

static _Atomic pid_t waiter_tid;
static int waiter_nosafe;	/* 1, or 2 for a nested entry */

static void *handoff_waiter(void *arg)
{
	struct sa_tcache *c = arg;

	atomic_store(&waiter_tid, gettid());
	c->nosafe = waiter_nosafe;	/* as sa_safe_enter leaves it */
	sa_handoff_wait(c);
	return NULL;
}

/* The scheduler state of thread tid of this process: 'R', 'S', ... */
static char thread_state(pid_t tid)
{
	char path[64], buf[256], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	f = fopen(path, "r");
	if (!f)
		return '?';
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

/*
 * A thread that enters a slow path while a taker works on its cache waits.
 * If it yielded only, a real-time one would never let a taker of lower
 * priority on its CPU finish: it must come to sleep.
 */
static void handoff_wait_sleeps(struct __test_metadata *_metadata, int nosafe)
{
	static struct sa_tcache c;
	pthread_t th;
	bool asleep = false;

	c.nosafe = 0;
	waiter_nosafe = nosafe;
	atomic_store(&waiter_tid, 0);
	atomic_store(&c.taking, 1);
	ASSERT_EQ(0, pthread_create(&th, NULL, handoff_waiter, &c));
	while (!atomic_load(&waiter_tid))
		sched_yield();
	/* a cap for a failure, not a timing: yielding, or gone, it is never asleep */
	for (int i = 0; i < 5000 && !asleep; i++) {
		usleep(1000);
		asleep = thread_state(atomic_load(&waiter_tid)) == 'S';
	}
	EXPECT_EQ(nosafe - 1, c.nosafe);	/* out of the allocator while it waits */
	atomic_store(&c.taking, 0);
	ASSERT_EQ(0, pthread_join(th, NULL));
	EXPECT_TRUE(asleep);
	EXPECT_EQ(nosafe, c.nosafe);
}

TEST(a_thread_waiting_for_a_taker_sleeps_rather_than_only_yields)
{
	handoff_wait_sleeps(_metadata, 1);
}

/*
 * A signal handler's slow path, nested in one that raised nosafe but had
 * not yet read taking (the taker may have looked before the raise), waits
 * as well: it used to go on, at c's lists while the taker moved them.
 */
TEST(a_nested_slow_path_waits_for_a_taker_too)
{
	handoff_wait_sleeps(_metadata, 2);
}

/*
 * A struct only ever grows at its end: each published size is the offset
 * of the first field added after it, and the newest is the whole struct.
 */
TEST(uapi_structs_only_grow_at_the_end)
{
	EXPECT_EQ(SPANALLOC_INFO_SIZE_VER0, offsetof(struct spanalloc_info, heap_id));
	EXPECT_EQ(SPANALLOC_INFO_SIZE_VER1, sizeof(struct spanalloc_info));
	EXPECT_EQ(SPANALLOC_EXCHANGE_SIZE_VER0, sizeof(struct spanalloc_exchange));
	EXPECT_EQ(SPANALLOC_LARGE_SIZE_VER0, sizeof(struct spanalloc_large));
	EXPECT_EQ(SPANALLOC_STATS_SIZE_VER0, offsetof(struct spanalloc_stats, pages_dirty));
	EXPECT_EQ(SPANALLOC_STATS_SIZE_VER1, offsetof(struct spanalloc_stats, pages_unreleasable));
	EXPECT_EQ(SPANALLOC_STATS_SIZE_VER2, sizeof(struct spanalloc_stats));
	EXPECT_EQ(SPANALLOC_LIMIT_SIZE_VER0, sizeof(struct spanalloc_limit));
	EXPECT_EQ(SPANALLOC_RELEASE_SIZE_VER0, sizeof(struct spanalloc_release));
	EXPECT_EQ(SPANALLOC_SPAN_PAGES_SIZE_VER0, sizeof(struct spanalloc_span_pages));
}

TEST_HARNESS_MAIN
