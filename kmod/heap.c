// SPDX-License-Identifier: GPL-2.0
/*
 * heap: the life of a heap and the registry of all of them. A heap is
 * created small when the device is opened, gets its page allocator,
 * central lists and per-CPU caches when it is mapped (sa_heap_map()), and
 * is destroyed, with every span in whatever state, when its file goes.
 *
 * The registry is the list of open heaps that the background paths walk:
 * the scavenger, the shrinker and the per-CPU drains. A heap on the list is
 * alive for as long as sa_heaps_mutex is held: destroy takes it off the
 * list, under the mutex, before it frees anything. Those walkers hold the
 * mutex only for bounded work and never sleep on a lock a user process can
 * hold while they have it (see the lock order in spanalloc.h), so an open
 * or a close never waits on another process.
 */
#include <linux/bug.h>
#include <linux/slab.h>
#include <linux/pid.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include "spanalloc.h"

/* Protects sa_heaps; see the lock order in spanalloc.h. */
struct mutex sa_heaps_mutex = __MUTEX_INITIALIZER(sa_heaps_mutex);
EXPORT_SYMBOL_IF_KUNIT(sa_heaps_mutex);
LIST_HEAD(sa_heaps);

atomic64_t sa_global_heaps = ATOMIC64_INIT(0);
/* the last heap id handed out; under sa_heaps_mutex */
static u64 sa_heap_last_id;
atomic64_t sa_global_spans = ATOMIC64_INIT(0);
EXPORT_SYMBOL_IF_KUNIT(sa_global_spans);
atomic64_t sa_global_pages = ATOMIC64_INIT(0);
EXPORT_SYMBOL_IF_KUNIT(sa_global_pages);
atomic64_t sa_global_arenas = ATOMIC64_INIT(0);
EXPORT_SYMBOL_IF_KUNIT(sa_global_arenas);

/*
 * A new heap owned by mm (NULL only for the KUnit suites, which have no
 * user mapping: nothing is ever released from such a heap), of at most
 * limit bytes, with pcp_depth spans per CPU per span class.
 */
struct sa_heap *sa_heap_create(struct mm_struct *mm, u64 limit, u32 pcp_depth)
{
	struct sa_heap *heap;
	u32 c;

	heap = kzalloc(sizeof(*heap), GFP_KERNEL_ACCOUNT);
	if (!heap)
		return ERR_PTR(-ENOMEM);
	heap->counters = alloc_percpu_gfp(struct sa_heap_counters,
					  GFP_KERNEL_ACCOUNT);
	if (!heap->counters)
		goto err;
	heap->pcp_depth = min_t(u32, pcp_depth, SA_PCP_MAX_DEPTH);
	heap->max_map = round_up(limit, SPANALLOC_ARENA_SIZE);
	heap->limit_pages = min_t(u64, limit >> SA_PAGE_SHIFT, U32_MAX);
	for (c = 0; c < SPANALLOC_NUM_CLASSES; c++)
		heap->span_pages[c] = sa_classes[c].npages;
	mutex_init(&heap->grow_mutex);
	mutex_init(&heap->scav_mutex);
	init_waitqueue_head(&heap->scav_wait);
	spin_lock_init(&heap->lock);
	sa_mheap_init(heap);
	INIT_LIST_HEAD(&heap->node);
	refcount_set(&heap->ref, 1);
	atomic64_inc(&sa_global_heaps);
	/*
	 * A KUnit heap (no owner) is the test's alone: the background paths
	 * never see it.
	 */
	if (!mm) {
		mutex_lock(&sa_heaps_mutex);
		heap->id = ++sa_heap_last_id;
		mutex_unlock(&sa_heaps_mutex);
		return heap;
	}

	heap->mm = mm;
	mmgrab(mm);
	heap->opener = get_pid(task_tgid(current));
	/* set up before the shrinker and the registry can find it */
	if (sa_shrinker_add_heap(heap)) {
		put_pid(heap->opener);
		mmdrop(mm);
		atomic64_dec(&sa_global_heaps);
		goto err;
	}
	mutex_lock(&sa_heaps_mutex);
	heap->id = ++sa_heap_last_id;
	list_add_tail(&heap->node, &sa_heaps);
	mutex_unlock(&sa_heaps_mutex);
	return heap;

err:
	free_percpu(heap->counters);
	kfree(heap);
	return ERR_PTR(-ENOMEM);
}
EXPORT_SYMBOL_IF_KUNIT(sa_heap_create);

/*
 * Gives the heap its memory at user address base, len bytes: the page
 * allocator, the central lists and the per-CPU caches. Called once, by
 * mmap under grow_mutex (or a KUnit suite), before 'mapped' publishes it.
 */
int sa_heap_map(struct sa_heap *heap, unsigned long base, u64 len)
{
	int sc, ret;

	/* a cache line per span class: more than a page, so kv */
	heap->central = kvcalloc(SA_NSPANCLASS, sizeof(*heap->central),
				 GFP_KERNEL_ACCOUNT);
	if (!heap->central)
		return -ENOMEM;
	for (sc = 0; sc < SA_NSPANCLASS; sc++)
		sa_mcentral_init(&heap->central[sc]);
	ret = sa_mcache_init(heap);
	if (ret)
		goto err_central;
	ret = sa_mheap_map(heap, base, len);
	if (ret)
		goto err_mcache;
	return 0;

err_mcache:
	sa_mcache_destroy(heap);
err_central:
	kvfree(heap->central);
	heap->central = NULL;
	return ret;
}
EXPORT_SYMBOL_IF_KUNIT(sa_heap_map);

/*
 * Frees a heap and everything in it; nothing else may use it any more
 * (its last reference is gone, or it is a KUnit heap).
 */
void sa_heap_destroy(struct sa_heap *heap)
{
	mutex_lock(&sa_heaps_mutex);
	list_del(&heap->node);	/* a KUnit heap's node is empty: harmless */
	sa_shrinker_del_heap(heap);
	mutex_unlock(&sa_heaps_mutex);

	/* Spans in every state are in the span table: freeing it frees all. */
	sa_mheap_destroy(heap);
	sa_mcache_destroy(heap);
	kvfree(heap->central);
	free_percpu(heap->counters);
	if (heap->mm)
		mmdrop(heap->mm);
	put_pid(heap->opener);
	kfree(heap);
	atomic64_dec(&sa_global_heaps);
}
EXPORT_SYMBOL_IF_KUNIT(sa_heap_destroy);

/*
 * The open heap with the smallest id at or past from, with a reference
 * (sa_heap_put() it), or NULL. One whose last reference is being put is
 * passed over: it is about to leave the list.
 */
struct sa_heap *sa_heap_get(u64 from)
{
	struct sa_heap *heap, *found = NULL;

	mutex_lock(&sa_heaps_mutex);
	/* in id order (see sa_heap_create()) */
	list_for_each_entry(heap, &sa_heaps, node) {
		if (heap->id >= from && refcount_inc_not_zero(&heap->ref)) {
			found = heap;
			break;
		}
	}
	mutex_unlock(&sa_heaps_mutex);
	return found;
}

/* Drops a reference: the file's at release, or a sa_heap_get()'s. */
void sa_heap_put(struct sa_heap *heap)
{
	if (refcount_dec_and_test(&heap->ref))
		sa_heap_destroy(heap);
}

/*
 * Fills every field of st after classes_ptr: a snapshot of the heap's
 * state and its counters (summed over CPUs as they are read).
 */
void sa_heap_stats(struct sa_heap *heap, struct spanalloc_stats *st)
{
	u64 sum[SA_NR_COUNTERS] = { 0 };
	int cpu, i;

	for_each_possible_cpu(cpu) {
		const struct sa_heap_counters *c = per_cpu_ptr(heap->counters, cpu);

		for (i = 0; i < SA_NR_COUNTERS; i++)
			sum[i] += READ_ONCE(c->c[i]);
	}
	spin_lock(&heap->lock);
	st->limit = (u64)heap->limit_pages << SA_PAGE_SHIFT;
	st->arenas = heap->active_pages / SA_ARENA_PAGES;
	st->pages_inuse = heap->pages_inuse;
	st->pages_free = heap->active_pages - heap->pages_inuse;
	st->spans = heap->nspans;
	st->large_spans = heap->nlarge;
	st->pages_dirty = heap->free_dirty;
	st->pages_unreleasable = heap->free_stuck;
	spin_unlock(&heap->lock);
	st->mapped = sa_heap_mapped(heap);
	st->exchanges = sum[SA_C_EXCHANGES];
	st->large_allocs = sum[SA_C_LARGE_ALLOCS];
	st->spans_got = sum[SA_C_SPANS_GOT];
	st->spans_returned = sum[SA_C_SPANS_RETURNED];
	st->pcp_hits = sum[SA_C_PCP_HITS];
	st->central_hits = sum[SA_C_CENTRAL_HITS];
	st->heap_spans = sum[SA_C_HEAP_SPANS];
	st->pcp_flushes = sum[SA_C_PCP_FLUSHES];
	st->enomem = sum[SA_C_ENOMEM];
	st->pages_released = sum[SA_C_RELEASED];
}

/*
 * Spans of span class sc (< SA_NSPANCLASS) in each state, for a mapped
 * heap: a snapshot taken while spans move, so the sum may be off by the
 * spans moving, but owned (what is left) is never below zero.
 */
void sa_heap_class_stats(struct sa_heap *heap, u16 sc,
			 struct spanalloc_class_stats *cs)
{
	struct sa_central *c = &heap->central[sc];
	u32 spans, kernel;

	spin_lock(&c->lock);
	cs->partial = c->npartial;
	cs->full = c->nfull;
	spin_unlock(&c->lock);
	cs->cached = sa_mcache_count(heap, sc);
	spin_lock(&heap->lock);
	spans = heap->class_spans[sc];
	spin_unlock(&heap->lock);
	kernel = cs->partial + cs->full + cs->cached;
	cs->owned = spans > kernel ? spans - kernel : 0;
}

/* At module exit: every heap holds a module reference, so none is left. */
void sa_heaps_warn_leftover(void)
{
	WARN_ON(!list_empty(&sa_heaps));
	WARN_ON(atomic64_read(&sa_global_heaps) ||
		atomic64_read(&sa_global_spans) ||
		atomic64_read(&sa_global_pages) ||
		atomic64_read(&sa_global_arenas));
}
