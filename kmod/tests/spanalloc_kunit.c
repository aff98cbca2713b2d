// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suites for spanalloc.ko's internals, in a module of their own
 * (spanalloc_kunit.ko) that calls what spanalloc.ko exports to KUnit only
 * (EXPORT_SYMBOL_IF_KUNIT): the page allocator, the span table, mcentral's
 * lists, the per-CPU cache and the span state machine. Heaps here have no
 * owner and no mapping (sa_heap_create(NULL)): the page allocator only
 * deals in page numbers, so a made-up base address is enough.
 *
 * Built against kernels with CONFIG_KUNIT (the debug kernel); the suites
 * run when the module is loaded and report in KTAP, in the kernel log and
 * in /sys/kernel/debug/kunit/<suite>/results.
 */
#include <kunit/test.h>
#include <linux/err.h>
#include <linux/module.h>
#include "../spanalloc.h"

MODULE_IMPORT_NS(EXPORTED_FOR_KUNIT_TESTING);

#define T_BASE		0x100000000000UL
#define T_ARENAS	4
#define T_SC		SPANALLOC_SPANCLASS(5, 0)

/* A heap of T_ARENAS arenas, freed when the test ends. */
static struct sa_heap *t_heap(struct kunit *test, u32 arenas)
{
	struct sa_heap *heap = sa_heap_create(NULL);
	u64 len = (u64)arenas * SPANALLOC_ARENA_SIZE;

	KUNIT_ASSERT_FALSE(test, IS_ERR(heap));
	KUNIT_ASSERT_EQ(test, 0, sa_mheap_map(heap, T_BASE, len));
	/* what sa_mmap() publishes once the page allocator exists */
	smp_store_release(&heap->mapped, len);
	return heap;
}

static struct sa_span *t_alloc(struct kunit *test, struct sa_heap *heap,
			       u16 sc, u32 npages)
{
	struct sa_span *s = sa_mheap_alloc_span(heap, sc, npages);

	KUNIT_ASSERT_FALSE(test, IS_ERR(s));
	return s;
}

/* --- page allocator -------------------------------------------------- */

static void mheap_first_fit_takes_the_lowest_run(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_span *a, *b, *c;

	a = t_alloc(test, heap, T_SC, 2);
	b = t_alloc(test, heap, T_SC, 3);
	c = t_alloc(test, heap, T_SC, 1);
	KUNIT_EXPECT_EQ(test, 0, a->start);
	KUNIT_EXPECT_EQ(test, 2, b->start);
	KUNIT_EXPECT_EQ(test, 5, c->start);
	sa_mheap_free_span(heap, b);
	/* a 2-page run fits the 3-page hole; a 4-page one goes after c */
	KUNIT_EXPECT_EQ(test, 2, t_alloc(test, heap, T_SC, 2)->start);
	KUNIT_EXPECT_EQ(test, 6, t_alloc(test, heap, T_SC, 4)->start);
	/* and the page left in the hole is the lowest free one */
	KUNIT_EXPECT_EQ(test, 4, t_alloc(test, heap, T_SC, 1)->start);
	KUNIT_EXPECT_EQ(test, 10, heap->pages_inuse);
	sa_heap_destroy(heap);
}

static void mheap_free_runs_coalesce(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_span *a, *b, *c;

	a = t_alloc(test, heap, T_SC, 4);
	b = t_alloc(test, heap, T_SC, 4);
	c = t_alloc(test, heap, T_SC, 4);
	sa_mheap_free_span(heap, b);
	sa_mheap_free_span(heap, a);
	KUNIT_EXPECT_EQ(test, 0, t_alloc(test, heap, T_SC, 8)->start);
	KUNIT_EXPECT_EQ(test, 8, c->start);
	sa_mheap_free_span(heap, c);
	KUNIT_EXPECT_EQ(test, 8, heap->pages_inuse);
	sa_heap_destroy(heap);
}

static void mheap_arenas_are_set_up_on_demand(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	s64 arenas0 = atomic64_read(&sa_global_arenas);
	struct sa_span *big;

	KUNIT_EXPECT_EQ(test, 0, heap->active_pages);
	t_alloc(test, heap, T_SC, 1);
	KUNIT_EXPECT_EQ(test, SA_ARENA_PAGES, heap->active_pages);
	/* one page more than an arena: it starts after the used page */
	big = t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), SA_ARENA_PAGES + 1);
	KUNIT_EXPECT_EQ(test, 1, big->start);
	KUNIT_EXPECT_EQ(test, 2 * SA_ARENA_PAGES, heap->active_pages);
	/* an arena's worth more no longer fits: a third arena */
	big = t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), SA_ARENA_PAGES);
	KUNIT_EXPECT_EQ(test, SA_ARENA_PAGES + 2, big->start);
	KUNIT_EXPECT_EQ(test, 3 * SA_ARENA_PAGES, heap->active_pages);
	KUNIT_EXPECT_EQ(test, arenas0 + 3, atomic64_read(&sa_global_arenas));
	sa_heap_destroy(heap);
	KUNIT_EXPECT_EQ(test, arenas0, atomic64_read(&sa_global_arenas));
}

static void mheap_limit_and_mapping_exhaustion(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, 1);
	struct sa_span *a;

	KUNIT_EXPECT_EQ(test, -EINVAL, sa_mheap_set_limit(heap, 0));
	KUNIT_EXPECT_EQ(test, -EINVAL, sa_mheap_set_limit(heap, SA_PAGE_SIZE + 1));
	KUNIT_EXPECT_EQ(test, -EINVAL, sa_mheap_set_limit(heap, 1ULL << 50));
	KUNIT_ASSERT_EQ(test, 0, sa_mheap_set_limit(heap, 16 * SA_PAGE_SIZE));
	a = t_alloc(test, heap, T_SC, 12);
	KUNIT_EXPECT_PTR_EQ(test, ERR_PTR(-ENOMEM), sa_mheap_alloc_span(heap, T_SC, 5));
	t_alloc(test, heap, T_SC, 4);
	KUNIT_EXPECT_PTR_EQ(test, ERR_PTR(-ENOMEM), sa_mheap_alloc_span(heap, T_SC, 1));
	sa_mheap_free_span(heap, a);
	t_alloc(test, heap, T_SC, 12);
	sa_heap_destroy(heap);

	/* a mapping of one arena holds one arena of pages, whatever the limit */
	heap = t_heap(test, 1);
	t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), SA_ARENA_PAGES - 1);
	t_alloc(test, heap, T_SC, 1);
	KUNIT_EXPECT_PTR_EQ(test, ERR_PTR(-ENOMEM), sa_mheap_alloc_span(heap, T_SC, 1));
	KUNIT_EXPECT_EQ(test, SA_ARENA_PAGES, heap->active_pages);
	sa_heap_destroy(heap);
}

static void mheap_needzero_follows_reuse(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_span *a, *b;

	a = t_alloc(test, heap, T_SC, 2);
	KUNIT_EXPECT_EQ(test, 0, a->needzero);
	sa_mheap_free_span(heap, a);
	KUNIT_EXPECT_EQ(test, 2, heap->free_dirty);
	/* overlaps one old page: dirty; the next page was never used */
	b = t_alloc(test, heap, T_SC, 1);
	KUNIT_EXPECT_EQ(test, 1, b->needzero);
	KUNIT_EXPECT_EQ(test, 1, heap->free_dirty);
	b = t_alloc(test, heap, T_SC, 3);
	KUNIT_EXPECT_EQ(test, 1, b->start);
	KUNIT_EXPECT_EQ(test, 1, b->needzero);
	KUNIT_EXPECT_EQ(test, 0, t_alloc(test, heap, T_SC, 1)->needzero);
	KUNIT_EXPECT_EQ(test, 0, heap->free_dirty);
	sa_heap_destroy(heap);
}

/* --- span table --------------------------------------------------------- */

static struct sa_span *t_lookup(struct sa_heap *heap, u64 handle)
{
	struct sa_span *s;

	rcu_read_lock();
	s = sa_mheap_lookup(heap, handle);
	rcu_read_unlock();
	return s;
}

static void table_names_live_spans_only(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_heap *other = t_heap(test, T_ARENAS);
	struct sa_span *a, *b, *o;
	u64 ha;

	a = t_alloc(test, heap, T_SC, 3);
	b = t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 1), SA_ARENA_PAGES + 2);
	o = t_alloc(test, other, T_SC, 3);
	ha = sa_span_handle(a);
	KUNIT_EXPECT_PTR_EQ(test, a, t_lookup(heap, ha));
	KUNIT_EXPECT_PTR_EQ(test, b, t_lookup(heap, sa_span_handle(b)));
	/* a page inside a span, in the next arena too, is not a handle */
	KUNIT_EXPECT_NULL(test, t_lookup(heap, ha + 1));
	KUNIT_EXPECT_NULL(test, t_lookup(heap, sa_span_handle(b) + SA_ARENA_PAGES));
	/* the same page with another generation: a stale or forged handle */
	KUNIT_EXPECT_NULL(test, t_lookup(heap, ha + (1ULL << 32)));
	KUNIT_EXPECT_NULL(test, t_lookup(heap, ha & U32_MAX));
	/* the other heap's span at the same page */
	KUNIT_EXPECT_EQ(test, a->start, o->start);
	KUNIT_EXPECT_NULL(test, t_lookup(heap, sa_span_handle(o)));
	/* past the mapping, and free pages */
	KUNIT_EXPECT_NULL(test, t_lookup(heap, (u64)a->gen << 32 | heap->max_pages));
	KUNIT_EXPECT_NULL(test, t_lookup(heap, (u64)a->gen << 32 | U32_MAX));
	sa_mheap_free_span(heap, a);
	KUNIT_EXPECT_NULL(test, t_lookup(heap, ha));
	/* a new span on the same pages does not answer to the old handle */
	a = t_alloc(test, heap, T_SC, 3);
	KUNIT_EXPECT_EQ(test, (u32)ha, a->start);
	KUNIT_EXPECT_NULL(test, t_lookup(heap, ha));
	KUNIT_EXPECT_PTR_EQ(test, a, t_lookup(heap, sa_span_handle(a)));
	sa_heap_destroy(other);
	sa_heap_destroy(heap);
}

static void table_of_unmapped_heap_is_empty(struct kunit *test)
{
	struct sa_heap *heap = sa_heap_create(NULL);

	KUNIT_ASSERT_FALSE(test, IS_ERR(heap));
	KUNIT_EXPECT_NULL(test, t_lookup(heap, 1ULL << 32));
	sa_heap_destroy(heap);
}

/* --- mcentral ----------------------------------------------------------- */

static void mcentral_lists_move_spans_and_states(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_central *c = &heap->central[T_SC];
	struct sa_span *s[3], *out[4];

	for (int i = 0; i < 3; i++)
		s[i] = t_alloc(test, heap, T_SC, 1);
	sa_mcentral_put_partial(c, s, 3);
	KUNIT_EXPECT_EQ(test, 3, c->npartial);
	for (int i = 0; i < 3; i++)
		KUNIT_EXPECT_EQ(test, SA_SPAN_PARTIAL, atomic_read(&s[i]->state));
	KUNIT_EXPECT_EQ(test, 2, sa_mcentral_take(c, out, 2, SA_SPAN_CACHED));
	KUNIT_EXPECT_EQ(test, SA_SPAN_CACHED, atomic_read(&out[0]->state));
	KUNIT_EXPECT_EQ(test, 1, c->npartial);
	/* asks for more than there is: gets what there is */
	KUNIT_EXPECT_EQ(test, 1, sa_mcentral_take(c, out, 4, SA_SPAN_HANDING));
	KUNIT_EXPECT_EQ(test, 0, c->npartial);
	KUNIT_EXPECT_EQ(test, 0, sa_mcentral_take(c, out, 4, SA_SPAN_HANDING));
	sa_mcentral_put_full(c, s[0]);
	KUNIT_EXPECT_EQ(test, 1, c->nfull);
	KUNIT_EXPECT_EQ(test, SA_SPAN_FULL, atomic_read(&s[0]->state));
	/* full spans are never handed out */
	KUNIT_EXPECT_EQ(test, 0, sa_mcentral_take(c, out, 4, SA_SPAN_HANDING));
	sa_mcentral_remove_full(c, s[0]);
	KUNIT_EXPECT_EQ(test, 0, c->nfull);
	sa_heap_destroy(heap);
}

/* --- mcache ------------------------------------------------------------- */

static void mcache_refills_and_flushes_by_half_stacks(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_central *c = &heap->central[T_SC];
	struct sa_span *s[12], *out[2];
	u32 depth = heap->pcp_depth;

	if (!depth)
		kunit_skip(test, "the per-CPU cache is off (pcp_depth=0)");
	for (int i = 0; i < 12; i++)
		s[i] = t_alloc(test, heap, T_SC, 1);
	sa_mcentral_put_partial(c, s, 6);

	/* one CPU throughout, so that "this CPU's stack" means one stack */
	migrate_disable();
	KUNIT_EXPECT_EQ(test, 1, sa_mcache_get(heap, T_SC, out, 1));
	KUNIT_EXPECT_EQ(test, depth / 2 - 1, sa_mcache_count(heap, T_SC));
	KUNIT_EXPECT_EQ(test, 6 - depth / 2, c->npartial);
	KUNIT_EXPECT_EQ(test, SA_SPAN_HANDING, atomic_read(&out[0]->state));
	KUNIT_EXPECT_EQ(test, 1, sa_mcache_get(heap, T_SC, out, 1));
	KUNIT_EXPECT_EQ(test, depth / 2 - 2, sa_mcache_count(heap, T_SC));

	/* fill the stack to depth; one more flushes the oldest half */
	for (int i = 6; sa_mcache_count(heap, T_SC) < depth; i++)
		sa_mcache_put(heap, s[i]);
	KUNIT_EXPECT_EQ(test, depth, sa_mcache_count(heap, T_SC));
	sa_mcache_put(heap, out[0]);
	KUNIT_EXPECT_EQ(test, depth - depth / 2 + 1, sa_mcache_count(heap, T_SC));
	KUNIT_EXPECT_EQ(test, SA_SPAN_CACHED, atomic_read(&out[0]->state));

	/* draining moves every cached span to the central list */
	local_lock(&heap->mcache->lock);
	sa_mcache_drain_cpu(heap, smp_processor_id());
	local_unlock(&heap->mcache->lock);
	migrate_enable();
	KUNIT_EXPECT_EQ(test, 0, sa_mcache_count(heap, T_SC));
	KUNIT_EXPECT_EQ(test, SA_SPAN_PARTIAL, atomic_read(&out[0]->state));
	sa_heap_destroy(heap);
}

/* --- span state machine --------------------------------------------------- */

static int t_claim(struct sa_heap *heap, struct sa_span *s, u32 op, int *prev)
{
	struct sa_span *got = NULL;
	int ret = sa_span_claim(heap, sa_span_handle(s), op, &got, prev);

	WARN_ON(!ret && got != s);
	return ret;
}

static void span_claims_only_what_user_space_holds(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_span *s = t_alloc(test, heap, T_SC, 1);
	int prev;

	/* being handed out: no return may touch it yet */
	KUNIT_EXPECT_EQ(test, -EINVAL, t_claim(heap, s, SPANALLOC_RET_PARTIAL, &prev));
	sa_span_publish(s);
	KUNIT_EXPECT_EQ(test, SA_SPAN_OWNED, atomic_read(&s->state));
	/* unknown ops */
	KUNIT_EXPECT_EQ(test, -EINVAL, t_claim(heap, s, 0, &prev));
	KUNIT_EXPECT_EQ(test, -EINVAL, t_claim(heap, s, SPANALLOC_RET_EMPTY + 1, &prev));
	/* one claim wins, the next loses until it is undone */
	KUNIT_ASSERT_EQ(test, 0, t_claim(heap, s, SPANALLOC_RET_FULL, &prev));
	KUNIT_EXPECT_EQ(test, SA_SPAN_OWNED, prev);
	KUNIT_EXPECT_EQ(test, SA_SPAN_RETURNING, atomic_read(&s->state));
	KUNIT_EXPECT_EQ(test, -EINVAL, t_claim(heap, s, SPANALLOC_RET_FULL, &prev));
	sa_span_unclaim(s, SA_SPAN_OWNED);
	KUNIT_ASSERT_EQ(test, 0, t_claim(heap, s, SPANALLOC_RET_FULL, &prev));
	sa_span_return(heap, s, prev, SPANALLOC_RET_FULL);
	KUNIT_EXPECT_EQ(test, SA_SPAN_FULL, atomic_read(&s->state));
	/* full stays full only once; a full span may come back partial */
	KUNIT_EXPECT_EQ(test, -EINVAL, t_claim(heap, s, SPANALLOC_RET_FULL, &prev));
	KUNIT_ASSERT_EQ(test, 0, t_claim(heap, s, SPANALLOC_RET_PARTIAL, &prev));
	KUNIT_EXPECT_EQ(test, SA_SPAN_FULL, prev);
	sa_span_return(heap, s, prev, SPANALLOC_RET_PARTIAL);
	KUNIT_EXPECT_EQ(test, 0, heap->central[T_SC].nfull);
	/* in the kernel's caches: user space cannot return it */
	KUNIT_EXPECT_NE(test, SA_SPAN_OWNED, atomic_read(&s->state));
	KUNIT_EXPECT_EQ(test, -EINVAL, t_claim(heap, s, SPANALLOC_RET_EMPTY, &prev));
	KUNIT_EXPECT_EQ(test, -EINVAL, t_claim(heap, s, SPANALLOC_RET_PARTIAL, &prev));
	sa_heap_destroy(heap);
}

static void span_large_ones_only_go_back_empty(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_span *s = t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), 3);
	u64 h = sa_span_handle(s);
	int prev;

	sa_span_publish(s);
	KUNIT_EXPECT_EQ(test, -EINVAL, t_claim(heap, s, SPANALLOC_RET_PARTIAL, &prev));
	KUNIT_EXPECT_EQ(test, -EINVAL, t_claim(heap, s, SPANALLOC_RET_FULL, &prev));
	KUNIT_ASSERT_EQ(test, 0, t_claim(heap, s, SPANALLOC_RET_EMPTY, &prev));
	sa_span_return(heap, s, prev, SPANALLOC_RET_EMPTY);
	KUNIT_EXPECT_EQ(test, 0, heap->pages_inuse);
	/* gone: its handle names nothing */
	KUNIT_EXPECT_EQ(test, -EINVAL,
			sa_span_claim(heap, h, SPANALLOC_RET_EMPTY, &s, &prev));
	sa_heap_destroy(heap);
}

static struct kunit_case mheap_cases[] = {
	KUNIT_CASE(mheap_first_fit_takes_the_lowest_run),
	KUNIT_CASE(mheap_free_runs_coalesce),
	KUNIT_CASE(mheap_arenas_are_set_up_on_demand),
	KUNIT_CASE(mheap_limit_and_mapping_exhaustion),
	KUNIT_CASE(mheap_needzero_follows_reuse),
	KUNIT_CASE(table_names_live_spans_only),
	KUNIT_CASE(table_of_unmapped_heap_is_empty),
	{}
};

static struct kunit_case cache_cases[] = {
	KUNIT_CASE(mcentral_lists_move_spans_and_states),
	KUNIT_CASE(mcache_refills_and_flushes_by_half_stacks),
	{}
};

static struct kunit_case span_cases[] = {
	KUNIT_CASE(span_claims_only_what_user_space_holds),
	KUNIT_CASE(span_large_ones_only_go_back_empty),
	{}
};

static struct kunit_suite mheap_suite = {
	.name = "spanalloc_mheap",
	.test_cases = mheap_cases,
};

static struct kunit_suite cache_suite = {
	.name = "spanalloc_caches",
	.test_cases = cache_cases,
};

static struct kunit_suite span_suite = {
	.name = "spanalloc_span",
	.test_cases = span_cases,
};

kunit_test_suites(&mheap_suite, &cache_suite, &span_suite);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("KUnit suites for spanalloc.ko's internals");
