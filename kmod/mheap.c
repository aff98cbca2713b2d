// SPDX-License-Identifier: GPL-2.0
/*
 * mheap: a heap's pages. It owns the arenas (64 MiB windows of the heap's
 * mapping, set up on first need), the page allocator over them and the span
 * table that maps each page to the span holding it.
 *
 * The page allocator is one bitmap over the whole mapping, searched only up
 * to the arenas set up so far. Allocation is first fit from the lowest
 * address, as Go's page allocator is: it keeps the heap compact at its low
 * end, and since a free run is just a run of zero bits, freed runs coalesce
 * with their neighbours without any bookkeeping. search_hint skips the
 * prefix known to be full, so the common search is short. When no run
 * fits, one more arena (or as many as a large span needs) is set up, until
 * the mapping or the heap's limit is reached.
 *
 * The span table is per arena so that its memory, like the arena's, is only
 * spent when the arena is used. Entries are written under heap->lock and
 * read under RCU: a return looks its handle up without any heap lock, and
 * a span is only freed (call_rcu) after its entries are cleared.
 *
 * Pages never hold kernel data: the memory behind the mapping is ordinary
 * anonymous memory of the owning process (see dev.c). The "dirty" bitmap
 * records which free pages were in a span before, so that a new span can
 * tell user space whether it must zero objects (needzero), as Go's spans
 * do. Dirty pages are also the ones that may still be resident: the
 * scavenger (scavenge.c) gives them back to the kernel and clears their
 * bits, so a dirty bit is only ever set on a free page. While it does, it
 * holds the run it works on as used, so that no span can be cut from
 * pages that are being zapped.
 */
#include <linux/bitmap.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include "spanalloc.h"

static struct kmem_cache *sa_span_cache;

/*
 * Span generations come from one module-wide counter, so that a handle is
 * unique across heaps too: a handle of another heap never names a span here.
 */
static atomic_t sa_gen = ATOMIC_INIT(0);

static u32 sa_next_gen(void)
{
	u32 gen;

	do {
		gen = atomic_inc_return(&sa_gen);
	} while (!gen);
	return gen;
}

int sa_mheap_cache_init(void)
{
	sa_span_cache = KMEM_CACHE(sa_span, SLAB_ACCOUNT);
	return sa_span_cache ? 0 : -ENOMEM;
}

/*
 * call_rcu() and not kfree_rcu(): rcu_barrier() waits for the former only,
 * and the cache must be empty before it is destroyed.
 */
static void sa_span_free_rcu(struct rcu_head *head)
{
	kmem_cache_free(sa_span_cache, container_of(head, struct sa_span, rcu));
}

void sa_mheap_cache_exit(void)
{
	/* spans are freed after a grace period; wait for the last of them */
	rcu_barrier();
	kmem_cache_destroy(sa_span_cache);
}

/* Called by mmap under grow_mutex, before the mapping is published. */
int sa_mheap_map(struct sa_heap *heap, unsigned long base, u64 len)
{
	u32 npages = len >> SA_PAGE_SHIFT;
	u32 narenas = len >> SPANALLOC_ARENA_SHIFT;

	/* kv*: a heap of a TiB needs 16 MiB of bitmap */
	heap->used = kvcalloc(BITS_TO_LONGS(npages), sizeof(long),
			      GFP_KERNEL_ACCOUNT);
	heap->dirty = kvcalloc(BITS_TO_LONGS(npages), sizeof(long),
			       GFP_KERNEL_ACCOUNT);
	heap->arenas = kcalloc(narenas, sizeof(*heap->arenas),
			       GFP_KERNEL_ACCOUNT);
	if (!heap->used || !heap->dirty || !heap->arenas) {
		kvfree(heap->used);
		kvfree(heap->dirty);
		kfree(heap->arenas);
		heap->used = NULL;
		heap->dirty = NULL;
		heap->arenas = NULL;
		return -ENOMEM;
	}
	heap->base = base;
	heap->max_pages = npages;
	heap->max_arenas = narenas;
	return 0;
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_map);

static struct sa_arena *sa_mheap_arena(struct sa_heap *heap, u32 page)
{
	return heap->arenas[page / SA_ARENA_PAGES];
}

/* Frees every span and arena. Only at release: nothing else can run. */
void sa_mheap_destroy(struct sa_heap *heap)
{
	u32 i, p = 0;

	/*
	 * By page, skipping each span whole once it is found by its first
	 * page: its other entries (in this arena or, for a large span, in the
	 * next ones) point at it too and must not be read once it is freed.
	 */
	while (heap->arenas && p < heap->active_pages) {
		struct sa_arena *a = sa_mheap_arena(heap, p);
		struct sa_span *s;

		s = rcu_dereference_protected(a->spans[p % SA_ARENA_PAGES], 1);
		if (!s) {
			p++;
			continue;
		}
		p = s->start + s->npages;
		atomic64_dec(&sa_global_spans);
		atomic64_sub(s->npages, &sa_global_pages);
		kmem_cache_free(sa_span_cache, s);
	}
	for (i = 0; heap->arenas && i < heap->max_arenas; i++) {
		if (!heap->arenas[i])
			continue;
		kvfree(heap->arenas[i]);
		atomic64_dec(&sa_global_arenas);
	}
	kfree(heap->arenas);
	kvfree(heap->used);
	kvfree(heap->dirty);
}

/*
 * Sets up arenas until at least want pages are usable. Returns false when
 * the mapping or the limit leaves no room, or memory is short.
 */
static bool sa_mheap_grow(struct sa_heap *heap, u32 want)
{
	bool ok = true;

	mutex_lock(&heap->grow_mutex);
	while (ok && READ_ONCE(heap->active_pages) < want) {
		u32 i = READ_ONCE(heap->active_pages) / SA_ARENA_PAGES;
		struct sa_arena *a;

		if (i >= heap->max_arenas ||
		    (u64)i * SA_ARENA_PAGES >= READ_ONCE(heap->limit_pages)) {
			ok = false;
			break;
		}
		a = kvzalloc(sizeof(*a), GFP_KERNEL_ACCOUNT);
		if (!a) {
			ok = false;
			break;
		}
		spin_lock(&heap->lock);
		/* pairs with the acquire in sa_mheap_lookup(): a is zeroed */
		smp_store_release(&heap->arenas[i], a);
		heap->active_pages += SA_ARENA_PAGES;
		spin_unlock(&heap->lock);
		atomic64_inc(&sa_global_arenas);
	}
	mutex_unlock(&heap->grow_mutex);
	return ok;
}

/* Points every page of s at s (or at NULL). Caller holds heap->lock. */
static void sa_mheap_set_table(struct sa_heap *heap, struct sa_span *s,
			       struct sa_span *val)
{
	u32 p;

	for (p = s->start; p < s->start + s->npages; p++)
		rcu_assign_pointer(sa_mheap_arena(heap, p)->spans[p % SA_ARENA_PAGES],
				   val);
}

static u32 sa_bits_in_range(const unsigned long *map, u32 start, u32 n)
{
	u32 end = start + n, count = 0, p;

	for (p = find_next_bit(map, end, start); p < end;
	     p = find_next_bit(map, end, p + 1))
		count++;
	return count;
}

/* Returns the first page of a free run of npages, or U32_MAX. */
static u32 sa_mheap_find(struct sa_heap *heap, u32 npages)
{
	unsigned long p;

	lockdep_assert_held(&heap->lock);
	p = bitmap_find_next_zero_area(heap->used, heap->active_pages,
				       heap->search_hint, npages, 0);
	return p < heap->active_pages ? p : U32_MAX;
}

/*
 * Cuts a new span of npages pages for span class spanclass. Returns the
 * span in state HANDING, or ERR_PTR(-ENOMEM) when the limit, the mapping or
 * memory does not allow it. May sleep.
 */
struct sa_span *sa_mheap_alloc_span(struct sa_heap *heap, u16 spanclass,
				    u32 npages)
{
	struct sa_span *s;
	u32 p, dirty;

	s = kmem_cache_zalloc(sa_span_cache, GFP_KERNEL_ACCOUNT);
	if (!s)
		return ERR_PTR(-ENOMEM);

	for (;;) {
		spin_lock(&heap->lock);
		if (heap->pages_inuse + (u64)npages > heap->limit_pages) {
			spin_unlock(&heap->lock);
			goto nomem;
		}
		p = sa_mheap_find(heap, npages);
		if (p != U32_MAX)
			break;
		if (heap->scav_busy) {
			/*
			 * The run a release holds may be what would fit:
			 * wait for it rather than grow or fail.
			 */
			spin_unlock(&heap->lock);
			mutex_lock(&heap->scav_mutex);
			mutex_unlock(&heap->scav_mutex);
			continue;
		}
		/*
		 * No run fits in the arenas set up so far. The best a new
		 * arena can do is extend the free run at the top, so ask for
		 * enough arenas to hold npages past the last used page.
		 */
		p = find_last_bit(heap->used, heap->active_pages);
		p = p < heap->active_pages ? p + 1 : 0;
		spin_unlock(&heap->lock);
		if (!sa_mheap_grow(heap, p + npages))
			goto nomem;
	}

	bitmap_set(heap->used, p, npages);
	s->start = p;
	s->npages = npages;
	s->spanclass = spanclass;
	dirty = sa_bits_in_range(heap->dirty, p, npages);
	s->needzero = dirty != 0;
	heap->free_dirty -= dirty;
	bitmap_clear(heap->dirty, p, npages);
	s->gen = sa_next_gen();
	atomic_set(&s->state, SA_SPAN_HANDING);
	INIT_LIST_HEAD(&s->list);
	sa_mheap_set_table(heap, s, s);
	if (p == heap->search_hint)
		heap->search_hint = find_next_zero_bit(heap->used,
						       heap->active_pages, p);
	heap->pages_inuse += npages;
	heap->peak_inuse = max(heap->peak_inuse, heap->pages_inuse);
	heap->nspans++;
	heap->class_spans[spanclass]++;
	if (spanclass < 2)
		heap->nlarge++;
	spin_unlock(&heap->lock);

	atomic64_inc(&sa_global_spans);
	atomic64_add(npages, &sa_global_pages);
	return s;

nomem:
	kmem_cache_free(sa_span_cache, s);
	return ERR_PTR(-ENOMEM);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_alloc_span);

/* Gives s's pages back. The caller holds s (claimed or on no list). */
void sa_mheap_free_span(struct sa_heap *heap, struct sa_span *s)
{
	bool first_dirty;

	spin_lock(&heap->lock);
	first_dirty = !heap->free_dirty;
	sa_mheap_set_table(heap, s, NULL);
	bitmap_clear(heap->used, s->start, s->npages);
	bitmap_set(heap->dirty, s->start, s->npages);
	heap->free_dirty += s->npages;
	if (s->start < heap->search_hint)
		heap->search_hint = s->start;
	heap->pages_inuse -= s->npages;
	heap->nspans--;
	heap->class_spans[s->spanclass]--;
	if (s->spanclass < 2)
		heap->nlarge--;
	spin_unlock(&heap->lock);

	atomic64_dec(&sa_global_spans);
	atomic64_sub(s->npages, &sa_global_pages);
	call_rcu(&s->rcu, sa_span_free_rcu);
	/* the scavenger sleeps while no heap has anything to release */
	if (first_dirty)
		sa_scavenger_kick();
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_free_span);

/*
 * Finds the span a handle names. Caller holds rcu_read_lock(); the span
 * stays valid until it is unlocked. NULL for anything that does not name a
 * live span of this heap: out-of-range pages, pages in no span, a page in
 * the middle of a span, or a generation of an earlier span.
 */
struct sa_span *sa_mheap_lookup(struct sa_heap *heap, u64 handle)
{
	u32 page = lower_32_bits(handle), gen = upper_32_bits(handle);
	struct sa_arena *a;
	struct sa_span *s;

	/* pairs with the release in sa_mmap(): arenas[] exists */
	if (!smp_load_acquire(&heap->mapped) || page >= heap->max_pages)
		return NULL;
	/* pairs with the release in sa_mheap_grow() */
	a = smp_load_acquire(&heap->arenas[page / SA_ARENA_PAGES]);
	if (!a)
		return NULL;
	s = rcu_dereference(a->spans[page % SA_ARENA_PAGES]);
	if (!s || s->start != page || s->gen != gen)
		return NULL;
	return s;
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_lookup);

int sa_mheap_set_limit(struct sa_heap *heap, u64 limit)
{
	int ret = 0;

	if (!limit || limit % SA_PAGE_SIZE)
		return -EINVAL;
	spin_lock(&heap->lock);
	if (limit >> SA_PAGE_SHIFT > heap->limit_pages)
		ret = -EINVAL;
	else
		heap->limit_pages = limit >> SA_PAGE_SHIFT;
	spin_unlock(&heap->lock);
	return ret;
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_set_limit);

/*
 * Takes the first run of at most max dirty free pages at or above from, for
 * the scavenger: the run is held as used (no span can be cut from it) and
 * no longer dirty. Returns the run's length, 0 if there is none. Caller
 * holds heap->scav_mutex; one run is held at a time.
 */
u32 sa_mheap_scav_take(struct sa_heap *heap, u32 from, u32 max, u32 *start)
{
	u32 p, end, n = 0;

	lockdep_assert_held(&heap->scav_mutex);
	spin_lock(&heap->lock);
	p = find_next_bit(heap->dirty, heap->active_pages, from);
	if (p < heap->active_pages) {
		end = find_next_zero_bit(heap->dirty,
					 min(heap->active_pages, p + max), p);
		n = end - p;
		bitmap_set(heap->used, p, n);
		bitmap_clear(heap->dirty, p, n);
		heap->free_dirty -= n;
		heap->scav_busy = n;
		*start = p;
	}
	spin_unlock(&heap->lock);
	return n;
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_scav_take);

/*
 * Gives back a run taken by sa_mheap_scav_take(). released says whether
 * its pages were zapped; if not, they may still hold data and are dirty
 * again.
 */
void sa_mheap_scav_done(struct sa_heap *heap, u32 start, u32 n, bool released)
{
	lockdep_assert_held(&heap->scav_mutex);
	spin_lock(&heap->lock);
	bitmap_clear(heap->used, start, n);
	if (!released) {
		bitmap_set(heap->dirty, start, n);
		heap->free_dirty += n;
	}
	if (start < heap->search_hint)
		heap->search_hint = start;
	heap->scav_busy = 0;
	spin_unlock(&heap->lock);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_scav_done);
