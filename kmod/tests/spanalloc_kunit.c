// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suites for spanalloc.ko's internals, in a module of their own
 * (spanalloc_kunit.ko) that calls what spanalloc.ko exports to KUnit only
 * (EXPORT_SYMBOL_IF_KUNIT): the page allocator, the span table, mcentral's
 * lists, the per-CPU cache, the span state machine and the scavenger's
 * bookkeeping. Heaps here have no owner and no mapping (sa_heap_create()
 * with a NULL mm): the page allocator only deals in page numbers, so a
 * made-up base address is enough. Every heap is a KUnit resource, so a
 * failed assertion that ends a test early still frees it.
 *
 * Built against kernels with CONFIG_KUNIT (the debug kernel); the suites
 * run when the module is loaded and report in KTAP, in the kernel log and
 * in /sys/kernel/debug/kunit/<suite>/results.
 */
#include <kunit/test.h>
#include <linux/completion.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/shrinker.h>
#include "../spanalloc.h"

MODULE_IMPORT_NS(EXPORTED_FOR_KUNIT_TESTING);

#define T_BASE		0x100000000000UL
#define T_ARENAS	4
#define T_SC		SPANALLOC_SPANCLASS(5, 0)

static int t_heap_init(struct kunit_resource *res, void *heap)
{
	res->data = heap;
	return 0;
}

static void t_heap_free(struct kunit_resource *res)
{
	sa_heap_destroy(res->data);
}

/* A heap of that many arenas, destroyed when the test ends at the latest. */
static struct sa_heap *t_heap_depth(struct kunit *test, u32 arenas, u32 depth)
{
	struct sa_heap *heap = sa_heap_create(NULL, (u64)arenas * SPANALLOC_ARENA_SIZE,
					      depth);
	u64 len = (u64)arenas * SPANALLOC_ARENA_SIZE;

	KUNIT_ASSERT_FALSE(test, IS_ERR(heap));
	KUNIT_ASSERT_NOT_NULL(test, kunit_alloc_resource(test, t_heap_init, t_heap_free,
							 GFP_KERNEL, heap));
	KUNIT_ASSERT_EQ(test, 0, sa_heap_map(heap, T_BASE, len));
	/* what sa_mmap() publishes once the page allocator exists */
	smp_store_release(&heap->mapped, len);
	return heap;
}

static struct sa_heap *t_heap(struct kunit *test, u32 arenas)
{
	return t_heap_depth(test, arenas, SA_PCP_MAX_DEPTH);
}

static bool t_heap_match(struct kunit *test, struct kunit_resource *res,
			 void *heap)
{
	return res->data == heap;
}

/* Destroys a heap before the test ends (to check what that frees). */
static void t_destroy(struct kunit *test, struct sa_heap *heap)
{
	kunit_destroy_resource(test, t_heap_match, heap);
}

static struct sa_span *t_alloc(struct kunit *test, struct sa_heap *heap,
			       u16 sc, u32 npages)
{
	struct sa_span *s = sa_mheap_alloc_span(heap, sc, npages);

	KUNIT_ASSERT_FALSE(test, IS_ERR(s));
	return s;
}

static struct sa_span *t_lookup(struct sa_heap *heap, u64 handle)
{
	struct sa_span *s;

	rcu_read_lock();
	s = sa_mheap_lookup(heap, handle);
	rcu_read_unlock();
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
	t_destroy(test, heap);
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
	t_destroy(test, heap);
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
	t_destroy(test, heap);
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
	t_destroy(test, heap);

	/* a mapping of one arena holds one arena of pages, whatever the limit */
	heap = t_heap(test, 1);
	t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), SA_ARENA_PAGES - 1);
	t_alloc(test, heap, T_SC, 1);
	KUNIT_EXPECT_PTR_EQ(test, ERR_PTR(-ENOMEM), sa_mheap_alloc_span(heap, T_SC, 1));
	KUNIT_EXPECT_EQ(test, SA_ARENA_PAGES, heap->active_pages);
	t_destroy(test, heap);
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
	t_destroy(test, heap);
}

/*
 * The search holds heap->lock for one window of the bitmap at a time; a run
 * that crosses windows, and one that needs a new arena, are still found
 * where first fit puts them.
 */
static void mheap_search_crosses_windows(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_span *a, *big;

	a = t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), SA_ARENA_PAGES);
	t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), SA_ARENA_PAGES);
	t_alloc(test, heap, T_SC, 10);
	KUNIT_EXPECT_EQ(test, 3 * SA_ARENA_PAGES, heap->active_pages);
	sa_mheap_free_span(heap, a);
	/* the hole at 0 is one page short; so is the top of the third arena */
	big = t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), SA_ARENA_PAGES + 1);
	KUNIT_EXPECT_EQ(test, 2 * SA_ARENA_PAGES + 10, big->start);
	KUNIT_EXPECT_EQ(test, 4 * SA_ARENA_PAGES, heap->active_pages);
	/* and the hole is still found first by what fits it */
	KUNIT_EXPECT_EQ(test, 0, t_alloc(test, heap, T_SC, 5)->start);
}

/* Generations never repeat within a heap and are never 0. */
static void mheap_generations_run_out_rather_than_repeat(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_span *a, *b;

	heap->next_gen = SA_GEN_MASK;
	heap->gens_left = 2;
	a = t_alloc(test, heap, T_SC, 1);
	b = t_alloc(test, heap, T_SC, 1);
	KUNIT_EXPECT_EQ(test, SA_GEN_MASK, a->gen);
	KUNIT_EXPECT_EQ(test, 1, b->gen);
	KUNIT_EXPECT_PTR_EQ(test, b, t_lookup(heap, sa_span_handle(b)));
	KUNIT_EXPECT_PTR_EQ(test, ERR_PTR(-ENOMEM), sa_mheap_alloc_span(heap, T_SC, 1));
	KUNIT_EXPECT_EQ(test, 2, heap->pages_inuse);
}

/* --- scavenger bookkeeping ------------------------------------------------ */

/*
 * A release takes the whole free extent of one 2 MiB block around a dirty
 * page (clean and stuck free pages included), holds it as used, and sorts
 * it into clean (released) or stuck (refused).
 */
static void scav_runs_are_free_extents_of_2m_blocks(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_span *a, *s0, *s1;
	struct sa_scav_run run;
	u32 from = 0;

	/* pages 0 .. SA_SCAV_ALIGN + 9 dirty: a run across a 2 MiB boundary */
	a = t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), SA_SCAV_ALIGN + 10);
	t_alloc(test, heap, T_SC, 1);
	sa_mheap_free_span(heap, a);
	KUNIT_EXPECT_EQ(test, SA_SCAV_ALIGN + 10, heap->free_dirty);

	mutex_lock(&heap->scav_mutex);
	/* one 2 MiB block at a time */
	KUNIT_EXPECT_EQ(test, SA_SCAV_ALIGN, sa_mheap_scav_take(heap, &from, &run));
	KUNIT_EXPECT_EQ(test, 0, run.start);
	KUNIT_EXPECT_EQ(test, SA_SCAV_ALIGN, heap->scav_busy);
	KUNIT_EXPECT_EQ(test, 10, heap->free_dirty);
	/* held as used: no span can be cut from it meanwhile */
	s1 = t_alloc(test, heap, T_SC, 1);
	KUNIT_EXPECT_EQ(test, SA_SCAV_ALIGN, s1->start);
	KUNIT_EXPECT_EQ(test, SA_SCAV_ALIGN, sa_mheap_scav_done(heap, &run, true));
	KUNIT_EXPECT_EQ(test, 0, heap->scav_busy);
	/* released: clean, so a span there needs no zeroing */
	s0 = t_alloc(test, heap, T_SC, 1);
	KUNIT_EXPECT_EQ(test, 0, s0->start);
	KUNIT_EXPECT_EQ(test, 0, s0->needzero);

	/* refused where mapped: stuck, not counted as releasable */
	from = 0;
	KUNIT_EXPECT_EQ(test, 9, sa_mheap_scav_take(heap, &from, &run));
	KUNIT_EXPECT_EQ(test, SA_SCAV_ALIGN + 1, run.start);
	KUNIT_EXPECT_EQ(test, 0, sa_mheap_scav_done(heap, &run, false));
	KUNIT_EXPECT_EQ(test, 9, heap->free_stuck);
	KUNIT_EXPECT_EQ(test, 0, heap->free_dirty);
	/* nothing dirty left: a search finds nothing */
	from = 0;
	KUNIT_EXPECT_EQ(test, 0, sa_mheap_scav_take(heap, &from, &run));
	/* a page freed next to them: taken together with them */
	sa_mheap_free_span(heap, s1);
	from = 0;
	KUNIT_EXPECT_EQ(test, 10, sa_mheap_scav_take(heap, &from, &run));
	KUNIT_EXPECT_EQ(test, SA_SCAV_ALIGN, run.start);
	KUNIT_EXPECT_EQ(test, 10, bitmap_weight(run.data, SA_SCAV_ALIGN));
	KUNIT_EXPECT_EQ(test, 0, heap->free_stuck);
	KUNIT_EXPECT_EQ(test, 0, sa_mheap_scav_done(heap, &run, false));
	KUNIT_EXPECT_EQ(test, 10, heap->free_stuck);
	/*
	 * One dirty page in a block otherwise free and clean: the whole block
	 * goes (a huge page behind it is freed whole), and only the page that
	 * held data counts as released.
	 */
	sa_mheap_free_span(heap, s0);
	from = 0;
	KUNIT_EXPECT_EQ(test, SA_SCAV_ALIGN, sa_mheap_scav_take(heap, &from, &run));
	KUNIT_EXPECT_EQ(test, 0, run.start);
	KUNIT_EXPECT_EQ(test, 1, sa_mheap_scav_done(heap, &run, true));
	/* a release user space asks for tries stuck pages again */
	sa_mheap_unstick(heap);
	mutex_unlock(&heap->scav_mutex);
	KUNIT_EXPECT_EQ(test, 0, heap->free_stuck);
	KUNIT_EXPECT_EQ(test, 10, heap->free_dirty);
}

/* A span cut from stuck pages must be zeroed: they still hold data. */
static void scav_stuck_pages_need_zeroing(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_scav_run run;
	struct sa_span *a;
	u32 from = 0;

	a = t_alloc(test, heap, T_SC, 10);
	t_alloc(test, heap, T_SC, 1);
	sa_mheap_free_span(heap, a);
	mutex_lock(&heap->scav_mutex);
	KUNIT_EXPECT_EQ(test, 10, sa_mheap_scav_take(heap, &from, &run));
	sa_mheap_scav_done(heap, &run, false);
	mutex_unlock(&heap->scav_mutex);
	KUNIT_EXPECT_EQ(test, 10, heap->free_stuck);
	a = t_alloc(test, heap, T_SC, 10);
	KUNIT_EXPECT_EQ(test, 0, a->start);
	KUNIT_EXPECT_EQ(test, 1, a->needzero);
	KUNIT_EXPECT_EQ(test, 0, heap->free_stuck);
}

struct t_waiter {
	struct sa_heap *heap;
	struct sa_span *got;
	struct completion done;
};

static int t_waiter_fn(void *arg)
{
	struct t_waiter *w = arg;

	w->got = sa_mheap_alloc_span(w->heap, T_SC, 10);
	complete(&w->done);
	return 0;
}

/*
 * An allocation that finds no room while a release holds the only free run
 * waits for the release instead of failing, and then gets that run.
 */
static void scav_allocation_waits_for_a_release(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, 1);
	struct t_waiter w = { .heap = heap };
	struct sa_scav_run run;
	struct task_struct *t;
	struct sa_span *b;
	u32 from = 0, start;

	init_completion(&w.done);
	t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), SA_ARENA_PAGES - 10);
	b = t_alloc(test, heap, T_SC, 10);
	start = b->start;
	sa_mheap_free_span(heap, b);
	mutex_lock(&heap->scav_mutex);
	KUNIT_ASSERT_EQ(test, 10, sa_mheap_scav_take(heap, &from, &run));
	t = kthread_run(t_waiter_fn, &w, "sa_kunit_waiter");
	if (IS_ERR(t)) {
		sa_mheap_scav_done(heap, &run, true);
		mutex_unlock(&heap->scav_mutex);
		KUNIT_FAIL(test, "kthread_run: %ld", PTR_ERR(t));
		return;
	}
	/* it cannot get a span while the run is held */
	KUNIT_EXPECT_EQ(test, 0, wait_for_completion_timeout(&w.done, HZ / 5));
	sa_mheap_scav_done(heap, &run, true);
	mutex_unlock(&heap->scav_mutex);
	wait_for_completion(&w.done);
	KUNIT_ASSERT_FALSE(test, IS_ERR(w.got));
	KUNIT_EXPECT_EQ(test, start, w.got->start);
	/* released meanwhile: clean */
	KUNIT_EXPECT_EQ(test, 0, w.got->needzero);
}

/*
 * Pages that cannot be released (here: no owner to zap them from) leave
 * the count the scavenger and the shrinker work from, so nothing retries
 * them periodically.
 */
static void scav_unreleasable_pages_leave_no_work(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_span *a;
	u64 done = 1;

	a = t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), 1000);
	sa_mheap_free_span(heap, a);
	KUNIT_EXPECT_TRUE(test, sa_scav_has_work(heap));
	KUNIT_EXPECT_EQ(test, 0,
			sa_scavenge(heap, U64_MAX, 0, SA_SCAV_WAIT,
				    SA_RELEASE_IOCTL, &done));
	KUNIT_EXPECT_EQ(test, 0, done);
	KUNIT_EXPECT_EQ(test, 1000, heap->free_stuck);
	KUNIT_EXPECT_EQ(test, 0, heap->free_dirty);
	KUNIT_EXPECT_FALSE(test, sa_scav_has_work(heap));
	/* a few dirty pages under the margin are no work either */
	a = t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), 2000);
	sa_mheap_free_span(heap, t_alloc(test, heap, T_SC, 10));
	KUNIT_EXPECT_FALSE(test, sa_scav_has_work(heap));
}

/* --- shrinker ------------------------------------------------------------ */

/*
 * The shrinker's callbacks, on a heap put on its list by hand (a KUnit heap
 * is on no list by itself; at module load no other heap exists): a heap
 * with nothing to release counts 0, never SHRINK_EMPTY, which the core
 * would take as "no heap here" and stop asking; pages it cannot release
 * leave the count; only an empty list is SHRINK_EMPTY.
 */
static void shrinker_answers_empty_only_without_any_heap(struct kunit *test)
{
	struct shrink_control sc = { .gfp_mask = GFP_KERNEL };
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_span *a;

	KUNIT_ASSERT_EQ(test, 0, sa_shrinker_add_heap(heap));
	KUNIT_EXPECT_EQ(test, 0, sa_shrink_count(NULL, &sc));
	a = t_alloc(test, heap, SPANALLOC_SPANCLASS(0, 0), 100);
	sa_mheap_free_span(heap, a);
	KUNIT_EXPECT_EQ(test, 100 * (SA_PAGE_SIZE / PAGE_SIZE), sa_shrink_count(NULL, &sc));
	/* no owner to zap from: nothing freed, the pages are stuck */
	sc.nr_to_scan = 128;
	KUNIT_EXPECT_EQ(test, SHRINK_STOP, sa_shrink_scan(NULL, &sc));
	KUNIT_EXPECT_EQ(test, 100, heap->free_stuck);
	KUNIT_EXPECT_EQ(test, 0, sa_shrink_count(NULL, &sc));
	mutex_lock(&sa_heaps_mutex);
	sa_shrinker_del_heap(heap);
	mutex_unlock(&sa_heaps_mutex);
	KUNIT_EXPECT_EQ(test, SHRINK_EMPTY, sa_shrink_count(NULL, &sc));
}

/* --- span table --------------------------------------------------------- */

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
	KUNIT_EXPECT_NULL(test, t_lookup(heap, ha + BIT_ULL(SA_HANDLE_PAGE_BITS)));
	KUNIT_EXPECT_NULL(test, t_lookup(heap, ha & SA_HANDLE_PAGE_MASK));
	/* the other heap's span at the same page */
	KUNIT_EXPECT_EQ(test, a->start, o->start);
	KUNIT_EXPECT_NULL(test, t_lookup(heap, sa_span_handle(o)));
	/* past the mapping, and free pages */
	ha = a->gen << SA_HANDLE_PAGE_BITS;
	KUNIT_EXPECT_NULL(test, t_lookup(heap, ha | heap->max_pages));
	KUNIT_EXPECT_NULL(test, t_lookup(heap, ha | SA_HANDLE_PAGE_MASK));
	ha = sa_span_handle(a);
	sa_mheap_free_span(heap, a);
	KUNIT_EXPECT_NULL(test, t_lookup(heap, ha));
	/* a new span on the same pages does not answer to the old handle */
	a = t_alloc(test, heap, T_SC, 3);
	KUNIT_EXPECT_EQ(test, (u32)(ha & SA_HANDLE_PAGE_MASK), a->start);
	KUNIT_EXPECT_NULL(test, t_lookup(heap, ha));
	KUNIT_EXPECT_PTR_EQ(test, a, t_lookup(heap, sa_span_handle(a)));
	t_destroy(test, other);
	t_destroy(test, heap);
}

static void table_of_unmapped_heap_is_empty(struct kunit *test)
{
	struct sa_heap *heap = sa_heap_create(NULL, SPANALLOC_ARENA_SIZE, 8);

	KUNIT_ASSERT_FALSE(test, IS_ERR(heap));
	KUNIT_EXPECT_NULL(test, t_lookup(heap, BIT_ULL(SA_HANDLE_PAGE_BITS)));
	/* an unmapped heap has no lists or caches yet: it stays small */
	KUNIT_EXPECT_NULL(test, heap->central);
	KUNIT_EXPECT_TRUE(test, !heap->mcache);
	KUNIT_EXPECT_LE(test, sizeof(*heap), PAGE_SIZE);
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
	t_destroy(test, heap);
}

/* --- mcache ------------------------------------------------------------- */

static const u32 t_depths[] = { 1, 2, 3, 4, 5, 6, 7, 8 };

static void t_depth_desc(const u32 *depth, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "pcp_depth=%u", *depth);
}

KUNIT_ARRAY_PARAM(t_depth, t_depths, t_depth_desc);

static void mcache_refills_and_flushes_by_half_stacks(struct kunit *test)
{
	u32 depth = *(const u32 *)test->param_value, half = max(depth / 2, 1U);
	struct sa_heap *heap = t_heap_depth(test, T_ARENAS, depth);
	struct sa_central *c = &heap->central[T_SC];
	struct sa_span *s[12], *out[1];
	u32 hits;
	int i;

	for (i = 0; i < 12; i++)
		s[i] = t_alloc(test, heap, T_SC, 1);
	sa_mcentral_put_partial(c, s, 6);

	/* one CPU throughout, so that "this CPU's stack" means one stack */
	migrate_disable();
	KUNIT_EXPECT_EQ(test, 1, sa_mcache_get(heap, T_SC, out, 1, &hits));
	/* the stack was empty: it came through a refill */
	KUNIT_EXPECT_EQ(test, 0, hits);
	KUNIT_EXPECT_EQ(test, half - 1, sa_mcache_count(heap, T_SC));
	KUNIT_EXPECT_EQ(test, 6 - half, c->npartial);
	KUNIT_EXPECT_EQ(test, SA_SPAN_HANDING, atomic_read(&out[0]->state));

	/* fill the stack to depth; one more flushes the oldest half */
	for (i = 6; sa_mcache_count(heap, T_SC) < depth; i++)
		sa_mcache_put(heap, s[i]);
	KUNIT_EXPECT_EQ(test, depth, sa_mcache_count(heap, T_SC));
	KUNIT_EXPECT_EQ(test, 6 - half, c->npartial);
	sa_mcache_put(heap, out[0]);
	KUNIT_EXPECT_EQ(test, depth - half + 1, sa_mcache_count(heap, T_SC));
	KUNIT_EXPECT_EQ(test, 6, c->npartial);
	KUNIT_EXPECT_EQ(test, SA_SPAN_CACHED, atomic_read(&out[0]->state));

	/* draining moves every cached span to the central list */
	sa_mcache_drain_local(heap);
	migrate_enable();
	KUNIT_EXPECT_EQ(test, 0, sa_mcache_count(heap, T_SC));
	KUNIT_EXPECT_EQ(test, SA_SPAN_PARTIAL, atomic_read(&out[0]->state));
	KUNIT_EXPECT_EQ(test, 6 + depth - half + 1, c->npartial);
}

/* A dead CPU's stacks are drained from another CPU (the hotplug path). */
static void mcache_drains_another_cpus_stacks(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	struct sa_span *s = t_alloc(test, heap, T_SC, 1);
	struct sa_mcache_stack *st;
	int cpu;

	/* park the span on the stack of a CPU we are not on */
	migrate_disable();
	cpu = cpumask_any_but(cpu_possible_mask, smp_processor_id());
	migrate_enable();
	if (cpu >= nr_cpu_ids)
		kunit_skip(test, "one possible CPU only");
	st = per_cpu_ptr(&heap->mcache->stacks[T_SC], cpu);
	st->spans[st->n++] = s;
	atomic_set(&s->state, SA_SPAN_CACHED);
	KUNIT_EXPECT_EQ(test, 1, sa_mcache_count(heap, T_SC));
	sa_mcache_drain_cpu(heap, cpu);
	KUNIT_EXPECT_EQ(test, 0, sa_mcache_count(heap, T_SC));
	KUNIT_EXPECT_EQ(test, 1, heap->central[T_SC].npartial);
	KUNIT_EXPECT_EQ(test, SA_SPAN_PARTIAL, atomic_read(&s->state));
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
	t_destroy(test, heap);
}

/*
 * Getting walks mcache, mcentral, then the page allocator; a span that
 * cannot be handed out goes back as it was, needzero untouched.
 */
static void span_get_walks_the_hierarchy_and_puts_back(struct kunit *test)
{
	struct sa_heap *heap = t_heap(test, T_ARENAS);
	s64 spans0 = atomic64_read(&sa_global_spans);
	s64 pages0 = atomic64_read(&sa_global_pages);
	struct sa_span *out[4];
	int err = 0, i;

	KUNIT_ASSERT_EQ(test, 4, sa_span_get(heap, T_SC, out, 4, &err));
	for (i = 0; i < 4; i++) {
		KUNIT_EXPECT_EQ(test, SA_SPAN_HANDING, atomic_read(&out[i]->state));
		KUNIT_EXPECT_EQ(test, 0, out[i]->needzero);
	}
	KUNIT_EXPECT_EQ(test, spans0 + 4, atomic64_read(&sa_global_spans));
	migrate_disable();
	for (i = 0; i < 4; i++)
		sa_span_put_ready(heap, out[i]);
	KUNIT_EXPECT_EQ(test, 4, sa_mcache_count(heap, T_SC));
	KUNIT_EXPECT_EQ(test, 0, out[0]->needzero);
	/* the same CPU gets them back, hottest first, without new pages */
	KUNIT_EXPECT_EQ(test, 2, sa_span_get(heap, T_SC, out, 2, &err));
	migrate_enable();
	KUNIT_EXPECT_EQ(test, spans0 + 4, atomic64_read(&sa_global_spans));
	KUNIT_EXPECT_EQ(test, 4 * out[0]->npages, heap->pages_inuse);
	t_destroy(test, heap);
	/* destroying the heap frees spans in every state */
	KUNIT_EXPECT_EQ(test, spans0, atomic64_read(&sa_global_spans));
	KUNIT_EXPECT_EQ(test, pages0, atomic64_read(&sa_global_pages));
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
	t_destroy(test, heap);
}

static struct kunit_case mheap_cases[] = {
	KUNIT_CASE(mheap_first_fit_takes_the_lowest_run),
	KUNIT_CASE(mheap_free_runs_coalesce),
	KUNIT_CASE(mheap_arenas_are_set_up_on_demand),
	KUNIT_CASE(mheap_limit_and_mapping_exhaustion),
	KUNIT_CASE(mheap_needzero_follows_reuse),
	KUNIT_CASE(table_names_live_spans_only),
	KUNIT_CASE(table_of_unmapped_heap_is_empty),
	KUNIT_CASE(mheap_search_crosses_windows),
	KUNIT_CASE(mheap_generations_run_out_rather_than_repeat),
	KUNIT_CASE(scav_runs_are_free_extents_of_2m_blocks),
	KUNIT_CASE(scav_stuck_pages_need_zeroing),
	KUNIT_CASE(scav_allocation_waits_for_a_release),
	KUNIT_CASE(scav_unreleasable_pages_leave_no_work),
	KUNIT_CASE(shrinker_answers_empty_only_without_any_heap),
	{}
};

static struct kunit_case cache_cases[] = {
	KUNIT_CASE(mcentral_lists_move_spans_and_states),
	KUNIT_CASE_PARAM(mcache_refills_and_flushes_by_half_stacks, t_depth_gen_params),
	KUNIT_CASE(mcache_drains_another_cpus_stacks),
	{}
};

static struct kunit_case span_cases[] = {
	KUNIT_CASE(span_claims_only_what_user_space_holds),
	KUNIT_CASE(span_large_ones_only_go_back_empty),
	KUNIT_CASE(span_get_walks_the_hierarchy_and_puts_back),
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
