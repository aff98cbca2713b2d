// SPDX-License-Identifier: GPL-2.0
/*
 * shrinker: memory pressure. When the kernel reclaims memory, globally or
 * inside one memory cgroup (memory.high, memory.max), it asks this
 * shrinker to count and then release the dirty free pages of heaps, and the
 * per-CPU span caches of every heap are drained so that the spans parked
 * there can be reused by any CPU instead of new ones being cut.
 *
 * Heaps are charged to their owner's memory cgroup, so the shrinker is
 * memcg aware: every heap has a small struct sa_heap_lru on a list_lru,
 * allocated with the heap from the owner's cgroup, and reclaim of one
 * cgroup only sees the heaps charged to it. The list is only used to find
 * heaps: an entry stays on it for the heap's whole life.
 *
 * Reclaim can run in any task, including one that holds the mmap lock of
 * a heap's owner, or a heap lock of its own on the way to an allocation
 * (see binder_alloc.c for the same problem). So nothing here sleeps on a
 * lock: sa_heaps_mutex, the heap's scav_mutex and the owner's mmap lock
 * are all trylocked, and a heap whose locks are busy is skipped this time.
 * Holding sa_heaps_mutex keeps every heap found on the list alive: release
 * takes it before it frees a heap. The walk of the list_lru runs under its
 * spinlock, so it only collects heaps; they are scavenged after it.
 */
#include <linux/list_lru.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
#include "spanalloc.h"

/* Heaps collected by one walk of the list, at most. */
#define SA_SHRINK_BATCH		16
#define SA_KPAGES_PER_PAGE	(SA_PAGE_SIZE / PAGE_SIZE)

struct sa_heap_lru {
	struct list_head node;	/* on sa_lru, from open to release */
	struct sa_heap *heap;
};

static struct kmem_cache *sa_heap_lru_cache;
static struct list_lru sa_lru;
#ifdef SA_HAVE_SHRINKER_ALLOC
static struct shrinker *sa_shrinker;
#else
static struct shrinker sa_shrinker_s;
#endif
/* set once sa_lru is ready: the shrinker may be called before */
static bool sa_lru_ready;

static u32 sa_heap_releasable(struct sa_heap *heap)
{
	return READ_ONCE(heap->free_dirty);
}

static enum lru_status sa_count_cb(struct list_head *item,
				   struct list_lru_one *list, spinlock_t *lock,
				   void *arg)
{
	struct sa_heap_lru *l = container_of(item, struct sa_heap_lru, node);

	*(unsigned long *)arg += sa_heap_releasable(l->heap);
	return LRU_SKIP;
}

struct sa_collect {
	struct sa_heap *heaps[SA_SHRINK_BATCH];
	unsigned int n;
};

static enum lru_status sa_collect_cb(struct list_head *item,
				     struct list_lru_one *list,
				     spinlock_t *lock, void *arg)
{
	struct sa_heap_lru *l = container_of(item, struct sa_heap_lru, node);
	struct sa_collect *c = arg;

	unsigned int i;

	if (c->n == SA_SHRINK_BATCH)
		return LRU_SKIP;
	/* a rotated entry comes round again in the same walk */
	for (i = 0; i < c->n; i++)
		if (c->heaps[i] == l->heap)
			return LRU_SKIP;
	if (sa_heap_releasable(l->heap))
		c->heaps[c->n++] = l->heap;
	/* so that the next scan starts with other heaps */
	return LRU_ROTATE;
}

unsigned long sa_shrink_count(struct shrinker *s, struct shrink_control *sc)
{
	unsigned long pages = 0, heaps = 0, nr;
	int nid;

	/* pairs with the release in sa_shrinker_init() */
	if (!smp_load_acquire(&sa_lru_ready))
		return 0;
	/*
	 * Not NUMA aware: a heap's pages are wherever its owner touched them,
	 * whatever node its list entry is on, so every node's list counts.
	 * sc->nr_to_scan is not set for counting: walk the whole lists.
	 */
	for_each_node(nid) {
		heaps += list_lru_count_one(&sa_lru, nid, sc->memcg);
		nr = ULONG_MAX;
		list_lru_walk_one(&sa_lru, nid, sc->memcg, sa_count_cb, &pages, &nr);
	}
	/*
	 * SHRINK_EMPTY only when the cgroup has no heap at all: the core then
	 * clears this shrinker's bit for the cgroup, and only a heap added
	 * to an empty list sets it again. Heaps with nothing to release right
	 * now are 0: they may have some by the next round of pressure.
	 */
	return heaps ? pages * SA_KPAGES_PER_PAGE : SHRINK_EMPTY;
}
EXPORT_SYMBOL_IF_KUNIT(sa_shrink_count);

unsigned long sa_shrink_scan(struct shrinker *s, struct shrink_control *sc)
{
	unsigned long want = DIV_ROUND_UP(sc->nr_to_scan, SA_KPAGES_PER_PAGE);
	unsigned long freed = 0;
	struct sa_collect c = { .n = 0 };
	unsigned long nr;
	unsigned int i;
	int nid;

	/* pairs with the release in sa_shrinker_init() */
	if (!smp_load_acquire(&sa_lru_ready))
		return SHRINK_STOP;
	if (!mutex_trylock(&sa_heaps_mutex))
		return SHRINK_STOP;
	for_each_node(nid) {
		/* rotated entries come round again: bound the walk */
		nr = 4 * SA_SHRINK_BATCH;
		list_lru_walk_one(&sa_lru, nid, sc->memcg, sa_collect_cb, &c, &nr);
	}
	for (i = 0; i < c.n && freed < want; i++) {
		u64 done;

		sa_scavenge(c.heaps[i], want - freed, 0, SA_SCAV_TRY,
			    SA_RELEASE_SHRINKER, &done);
		freed += done;
	}
	mutex_unlock(&sa_heaps_mutex);
	sa_mcache_drain_all_cpus();
	return freed ? freed * SA_KPAGES_PER_PAGE : SHRINK_STOP;
}
EXPORT_SYMBOL_IF_KUNIT(sa_shrink_scan);

/* Puts a new heap on the list, charged to the current task's cgroup. */
int sa_shrinker_add_heap(struct sa_heap *heap)
{
	struct sa_heap_lru *l;

	/* _lru: sets up sa_lru's list for this cgroup if it has none yet */
	l = kmem_cache_alloc_lru(sa_heap_lru_cache, &sa_lru, GFP_KERNEL_ACCOUNT);
	if (!l)
		return -ENOMEM;
	INIT_LIST_HEAD(&l->node);
	l->heap = heap;
	heap->lru = l;
#ifdef SA_HAVE_LIST_LRU_ADD_OBJ
	list_lru_add_obj(&sa_lru, &l->node);
#else
	list_lru_add(&sa_lru, &l->node);
#endif
	return 0;
}
EXPORT_SYMBOL_IF_KUNIT(sa_shrinker_add_heap);

/* Caller holds sa_heaps_mutex, so no scan has the heap in hand. */
void sa_shrinker_del_heap(struct sa_heap *heap)
{
	if (!heap->lru)
		return;
#ifdef SA_HAVE_LIST_LRU_ADD_OBJ
	list_lru_del_obj(&sa_lru, &heap->lru->node);
#else
	list_lru_del(&sa_lru, &heap->lru->node);
#endif
	kmem_cache_free(sa_heap_lru_cache, heap->lru);
	heap->lru = NULL;
}
EXPORT_SYMBOL_IF_KUNIT(sa_shrinker_del_heap);

int sa_shrinker_init(void)
{
	struct shrinker *s;
	int ret;

	sa_heap_lru_cache = KMEM_CACHE(sa_heap_lru, SLAB_ACCOUNT);
	if (!sa_heap_lru_cache)
		return -ENOMEM;
#ifdef SA_HAVE_SHRINKER_ALLOC
	s = shrinker_alloc(SHRINKER_MEMCG_AWARE, "spanalloc");
	if (!s) {
		ret = -ENOMEM;
		goto err_cache;
	}
	sa_shrinker = s;
#else
	s = &sa_shrinker_s;
	s->flags = SHRINKER_MEMCG_AWARE;
#endif
	s->count_objects = sa_shrink_count;
	s->scan_objects = sa_shrink_scan;
	/* released pages cost one zero-filled fault to get back */
	s->seeks = 1;
	/* the list needs the shrinker's id, which registration hands out */
#ifdef SA_HAVE_SHRINKER_ALLOC
	ret = list_lru_init_memcg(&sa_lru, s);
	if (ret) {
		shrinker_free(s);
		goto err_cache;
	}
	shrinker_register(s);
#else
	ret = register_shrinker(s, "spanalloc");
	if (ret)
		goto err_cache;
	ret = list_lru_init_memcg(&sa_lru, s);
	if (ret) {
		unregister_shrinker(s);
		goto err_cache;
	}
#endif
	/* pairs with the acquires in the callbacks: sa_lru is set up */
	smp_store_release(&sa_lru_ready, true);
	return 0;

err_cache:
	kmem_cache_destroy(sa_heap_lru_cache);
	return ret;
}

void sa_shrinker_exit(void)
{
#ifdef SA_HAVE_SHRINKER_ALLOC
	shrinker_free(sa_shrinker);
#else
	unregister_shrinker(&sa_shrinker_s);
#endif
	list_lru_destroy(&sa_lru);
	kmem_cache_destroy(sa_heap_lru_cache);
}
