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
#include <linux/sched/mm.h>
#include "spanalloc.h"

/* Protects sa_heaps; see the lock order in spanalloc.h. */
struct mutex sa_heaps_mutex = __MUTEX_INITIALIZER(sa_heaps_mutex);
EXPORT_SYMBOL_IF_KUNIT(sa_heaps_mutex);
LIST_HEAD(sa_heaps);

atomic64_t sa_global_heaps = ATOMIC64_INIT(0);
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
	mutex_init(&heap->grow_mutex);
	mutex_init(&heap->scav_mutex);
	init_waitqueue_head(&heap->scav_wait);
	spin_lock_init(&heap->lock);
	sa_mheap_init(heap);
	INIT_LIST_HEAD(&heap->node);
	atomic64_inc(&sa_global_heaps);
	/*
	 * A KUnit heap (no owner) is the test's alone: the background paths
	 * never see it.
	 */
	if (!mm)
		return heap;

	heap->mm = mm;
	mmgrab(mm);
	/* set up before the shrinker and the registry can find it */
	if (sa_shrinker_add_heap(heap)) {
		mmdrop(mm);
		atomic64_dec(&sa_global_heaps);
		goto err;
	}
	mutex_lock(&sa_heaps_mutex);
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

/* Frees a heap and everything in it; nothing else may use it any more. */
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
	kfree(heap);
	atomic64_dec(&sa_global_heaps);
}
EXPORT_SYMBOL_IF_KUNIT(sa_heap_destroy);

/* At module exit: every heap holds a module reference, so none is left. */
void sa_heaps_warn_leftover(void)
{
	WARN_ON(!list_empty(&sa_heaps));
	WARN_ON(atomic64_read(&sa_global_heaps) ||
		atomic64_read(&sa_global_spans) ||
		atomic64_read(&sa_global_pages) ||
		atomic64_read(&sa_global_arenas));
}
