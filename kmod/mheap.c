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
#include <linux/nospec.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include "spanalloc.h"

static struct kmem_cache *sa_span_cache;

/*
 * A handle is gen << SA_HANDLE_PAGE_BITS | first page. Each heap draws
 * generations from a counter of its own that starts at a random point and
 * may never come round: after SA_GEN_MASK spans the heap cuts no more
 * (-ENOMEM), so a handle can never name two spans of one heap (at a
 * million spans a second that takes 38 hours of nothing else). The random
 * start makes a handle of another heap miss too.
 */
static u64 sa_next_gen(struct sa_heap *heap)
{
	u64 gen;

	lockdep_assert_held(&heap->lock);
	if (heap->gens_left == 0)
		return 0;
	heap->gens_left--;
	gen = heap->next_gen++ & SA_GEN_MASK;
	if (!gen)	/* 0 is never a generation: 0 is never a handle */
		gen = heap->next_gen++ & SA_GEN_MASK;
	return gen;
}

void sa_mheap_init(struct sa_heap *heap)
{
	heap->next_gen = get_random_u64();
	heap->gens_left = SA_GEN_MASK - 1;
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

static void sa_mheap_free_maps(struct sa_heap *heap)
{
	kvfree(heap->arenas);
	kvfree(heap->used);
	kvfree(heap->dirty);
	kvfree(heap->stuck);
	heap->arenas = NULL;
	heap->used = NULL;
	heap->dirty = NULL;
	heap->stuck = NULL;
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
	heap->stuck = kvcalloc(BITS_TO_LONGS(npages), sizeof(long),
			       GFP_KERNEL_ACCOUNT);
	/* 128 KiB at the largest limit */
	heap->arenas = kvcalloc(narenas, sizeof(*heap->arenas),
				GFP_KERNEL_ACCOUNT);
	if (!heap->used || !heap->dirty || !heap->stuck || !heap->arenas) {
		sa_mheap_free_maps(heap);
		return -ENOMEM;
	}
	heap->base = base;
	heap->max_pages = npages;
	heap->max_arenas = narenas;
	return 0;
}

static struct sa_arena *sa_mheap_arena(struct sa_heap *heap, u32 page)
{
	return heap->arenas[page / SA_ARENA_PAGES];
}

/*
 * Frees every span and arena. Only at release: nothing else can run. A span
 * is in the table at its first page only, so each is found once.
 */
void sa_mheap_destroy(struct sa_heap *heap)
{
	u32 i, p;

	for (i = 0; heap->arenas && i < heap->max_arenas; i++) {
		struct sa_arena *a = heap->arenas[i];

		if (!a)
			continue;
		for (p = 0; p < SA_ARENA_PAGES; p++) {
			struct sa_span *s = rcu_dereference_protected(a->spans[p], 1);

			if (!s)
				continue;
			atomic64_dec(&sa_global_spans);
			atomic64_sub(s->npages, &sa_global_pages);
			kmem_cache_free(sa_span_cache, s);
		}
		kvfree(a);
		atomic64_dec(&sa_global_arenas);
		/* a TiB heap has 16384 arenas */
		cond_resched();
	}
	sa_mheap_free_maps(heap);
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

/*
 * Points s's first page at s (or at NULL): handles name first pages, so
 * that is the only entry anyone reads, and a span of any length costs one
 * write. Caller holds heap->lock.
 */
static void sa_mheap_set_table(struct sa_heap *heap, struct sa_span *s,
			       struct sa_span *val)
{
	rcu_assign_pointer(sa_mheap_arena(heap, s->start)->spans[s->start % SA_ARENA_PAGES],
			   val);
}

/* Bits set in map[start, start + n), a word at a time. */
static u32 sa_bits_in_range(const unsigned long *map, u32 start, u32 n)
{
	u32 end = start + n, count = 0, i;

	if (!n)
		return 0;
	for (i = BIT_WORD(start); i <= BIT_WORD(end - 1); i++) {
		unsigned long w = map[i];

		if (i == BIT_WORD(start))
			w &= BITMAP_FIRST_WORD_MASK(start);
		if (i == BIT_WORD(end - 1))
			w &= BITMAP_LAST_WORD_MASK(end);
		count += hweight_long(w);
	}
	return count;
}

/*
 * Looks for a free run of npages that starts in [from, from + window):
 * bounded work, so heap->lock is never held for a scan of the whole
 * mapping. Returns its first page, or U32_MAX.
 */
static u32 sa_mheap_find(struct sa_heap *heap, u32 from, u32 npages)
{
	unsigned long end, p;

	lockdep_assert_held(&heap->lock);
	end = min_t(unsigned long, heap->active_pages,
		    (unsigned long)from + SA_FIND_WINDOW + npages - 1);
	p = bitmap_find_next_zero_area(heap->used, end, from, npages, 0);
	return p < end ? p : U32_MAX;
}

/*
 * No run fits in the arenas set up so far. The best a new arena can do is
 * extend the free run at the top, so the heap must grow to hold npages past
 * the last used page: returns that many pages. The scan from the top stops
 * at the first used page, and the free run it crosses is shorter than
 * npages, else it would have been found.
 */
static u32 sa_mheap_grow_target(struct sa_heap *heap, u32 npages)
{
	u32 top = find_last_bit(heap->used, heap->active_pages);

	lockdep_assert_held(&heap->lock);
	top = top < heap->active_pages ? top + 1 : 0;
	return top + npages;
}

/*
 * Cuts a new span of npages pages for span class spanclass. Returns the
 * span in state HANDING, or ERR_PTR(-ENOMEM) when the limit, the mapping,
 * the heap's generations or memory do not allow it, ERR_PTR(-EINTR) if a
 * fatal signal came while it waited. May sleep.
 */
struct sa_span *sa_mheap_alloc_span(struct sa_heap *heap, u16 spanclass,
				    u32 npages)
{
	struct sa_span *s;
	u32 p, from = 0, dirty, stuck;
	int err = -ENOMEM;

	s = kmem_cache_zalloc(sa_span_cache, GFP_KERNEL_ACCOUNT);
	if (!s)
		return ERR_PTR(-ENOMEM);

	for (;;) {
		bool busy;
		u32 want;

		spin_lock(&heap->lock);
		if (heap->pages_inuse + (u64)npages > heap->limit_pages ||
		    !heap->gens_left) {
			spin_unlock(&heap->lock);
			goto fail;
		}
		from = max(from, heap->search_hint);
		p = sa_mheap_find(heap, from, npages);
		if (p != U32_MAX)
			break;
		if ((u64)from + SA_FIND_WINDOW < heap->active_pages) {
			/* first fit, one window per lock hold */
			spin_unlock(&heap->lock);
			from += SA_FIND_WINDOW;
			cond_resched();
			continue;
		}
		busy = heap->scav_busy;
		want = sa_mheap_grow_target(heap, npages);
		spin_unlock(&heap->lock);
		from = 0;
		if (busy) {
			/*
			 * The run a release holds may be what would fit:
			 * wait for it rather than grow or fail.
			 */
			err = mutex_lock_killable(&heap->scav_mutex);
			if (err)
				goto fail;
			mutex_unlock(&heap->scav_mutex);
			err = -ENOMEM;
			continue;
		}
		if (!sa_mheap_grow(heap, want))
			goto fail;
	}

	bitmap_set(heap->used, p, npages);
	s->start = p;
	s->npages = npages;
	s->spanclass = spanclass;
	dirty = sa_bits_in_range(heap->dirty, p, npages);
	stuck = sa_bits_in_range(heap->stuck, p, npages);
	s->needzero = dirty || stuck;
	heap->free_dirty -= dirty;
	heap->free_stuck -= stuck;
	if (dirty)
		bitmap_clear(heap->dirty, p, npages);
	if (stuck)
		bitmap_clear(heap->stuck, p, npages);
	s->gen = sa_next_gen(heap);
	atomic_set(&s->state, SA_SPAN_HANDING);
	INIT_LIST_HEAD(&s->list);
	sa_mheap_set_table(heap, s, s);
	/* every page below p is used, and so are the span's */
	if (p == heap->search_hint)
		heap->search_hint = p + npages;
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

fail:
	kmem_cache_free(sa_span_cache, s);
	return ERR_PTR(err);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_alloc_span);

/* Gives s's pages back. The caller holds s (claimed or on no list). */
void sa_mheap_free_span(struct sa_heap *heap, struct sa_span *s)
{
	spin_lock(&heap->lock);
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
	sa_scavenger_note(heap);
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
	u32 page = handle & SA_HANDLE_PAGE_MASK;
	u64 gen = handle >> SA_HANDLE_PAGE_BITS;
	struct sa_arena *a;
	struct sa_span *s;

	/* pairs with the release in sa_mmap(): arenas[] exists */
	if (!smp_load_acquire(&heap->mapped) || page >= heap->max_pages)
		return NULL;
	/* page came from user space: no speculation past the tables */
	page = array_index_nospec(page, heap->max_pages);
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
 * Takes the first run of dirty free pages that starts in [*from, *from +
 * window), for the scavenger, with the stuck free pages next to it: the
 * run is the whole free extent of one 2 MiB block, so that a huge page is
 * released whole or not at all, and a release refused for part of one is
 * tried again once the rest of it is free. The run is held as used (no span
 * can be cut from it) and is neither dirty nor stuck while held. Returns its
 * length; 0 if the window has none, with *from moved past the window (at or
 * past active_pages when the heap has been searched to its end). Caller
 * holds heap->scav_mutex; one run is held at a time.
 */
u32 sa_mheap_scav_take(struct sa_heap *heap, u32 *from, u32 *start)
{
	u32 p, end, lo, hi, n = 0;

	lockdep_assert_held(&heap->scav_mutex);
	spin_lock(&heap->lock);
	end = min_t(u64, heap->active_pages, (u64)*from + SA_FIND_WINDOW);
	p = find_next_bit(heap->dirty, end, *from);
	if (p < end) {
		lo = round_down(p, SA_SCAV_ALIGN);
		hi = min(heap->active_pages, lo + SA_SCAV_ALIGN);
		/* at most one block each way: bounded */
		while (p > lo && p - 1 >= *from && test_bit(p - 1, heap->stuck))
			p--;
		for (end = p; end < hi; end++)
			if (!test_bit(end, heap->dirty) && !test_bit(end, heap->stuck))
				break;
		n = end - p;
		heap->free_dirty -= sa_bits_in_range(heap->dirty, p, n);
		heap->free_stuck -= sa_bits_in_range(heap->stuck, p, n);
		bitmap_clear(heap->dirty, p, n);
		bitmap_clear(heap->stuck, p, n);
		bitmap_set(heap->used, p, n);
		heap->scav_busy = n;
		*start = p;
	}
	*from = end;
	spin_unlock(&heap->lock);
	return n;
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_scav_take);

/*
 * Gives back a run taken by sa_mheap_scav_take(). how is what became of
 * its pages: 0, released (clean now); -EAGAIN, not released this time
 * (dirty again); anything else, refused where they are mapped (stuck: still
 * holding data, not counted as releasable; tried again by a release that
 * user space asks for, or with free pages next to them).
 */
void sa_mheap_scav_done(struct sa_heap *heap, u32 start, u32 n, int how)
{
	lockdep_assert_held(&heap->scav_mutex);
	spin_lock(&heap->lock);
	bitmap_clear(heap->used, start, n);
	if (how == -EAGAIN) {
		bitmap_set(heap->dirty, start, n);
		heap->free_dirty += n;
	} else if (how) {
		bitmap_set(heap->stuck, start, n);
		heap->free_stuck += n;
	}
	if (start < heap->search_hint)
		heap->search_hint = start;
	heap->scav_busy = 0;
	spin_unlock(&heap->lock);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_scav_done);

/*
 * Makes every stuck page releasable (dirty) again, for a release that
 * user space asked for: it may have mapped or unlocked what was refused.
 * A window at a time, so heap->lock is held briefly. Caller holds
 * heap->scav_mutex, so no release runs meanwhile.
 */
void sa_mheap_unstick(struct sa_heap *heap)
{
	u32 from, end, w;

	lockdep_assert_held(&heap->scav_mutex);
	for (from = 0; ; from = end) {
		spin_lock(&heap->lock);
		end = min_t(u64, heap->active_pages, (u64)from + SA_FIND_WINDOW);
		if (from >= end || !heap->free_stuck) {
			spin_unlock(&heap->lock);
			break;
		}
		/* windows are whole words: SA_FIND_WINDOW and arenas are */
		for (w = BIT_WORD(from); w < BITS_TO_LONGS(end); w++) {
			unsigned long b = heap->stuck[w];

			heap->dirty[w] |= b;
			heap->stuck[w] = 0;
			heap->free_stuck -= hweight_long(b);
			heap->free_dirty += hweight_long(b);
		}
		spin_unlock(&heap->lock);
		cond_resched();
	}
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_unstick);
