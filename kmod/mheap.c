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
 * spent when the arena is used. It has an entry at each span's first page:
 * what a handle names. Entries are written under heap->lock and
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
#include <linux/wait.h>
#include "spanalloc.h"
#include "spanalloc_trace.h"

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
	/* every non-zero generation once, then no more */
	heap->gens_left = SA_GEN_MASK;
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

static unsigned long *sa_bitmap_alloc(u32 nbits)
{
	return kvcalloc(BITS_TO_LONGS(nbits), sizeof(long), GFP_KERNEL_ACCOUNT);
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

/*
 * The page bitmaps cover the arenas set up so far, not the whole mapping,
 * so that a heap mapped large (its reservation is only address space)
 * costs kernel memory in proportion to what it uses: they start at one
 * arena and double as arenas are set up (sa_mheap_grow_maps()).
 */
static int sa_mheap_alloc_maps(u32 nbits, unsigned long **used,
			       unsigned long **dirty, unsigned long **stuck)
{
	*used = sa_bitmap_alloc(nbits);
	*dirty = sa_bitmap_alloc(nbits);
	*stuck = sa_bitmap_alloc(nbits);
	if (*used && *dirty && *stuck)
		return 0;
	kvfree(*used);
	kvfree(*dirty);
	kvfree(*stuck);
	return -ENOMEM;
}

/* Called by mmap under grow_mutex, before the mapping is published. */
int sa_mheap_map(struct sa_heap *heap, unsigned long base, u64 len)
{
	u32 npages = len >> SA_PAGE_SHIFT;
	u32 narenas = len >> SPANALLOC_ARENA_SHIFT;

	if (sa_mheap_alloc_maps(SA_ARENA_PAGES, &heap->used, &heap->dirty,
				&heap->stuck))
		return -ENOMEM;
	/* 128 KiB at the largest limit */
	heap->arenas = kvcalloc(narenas, sizeof(*heap->arenas),
				GFP_KERNEL_ACCOUNT);
	if (!heap->arenas) {
		sa_mheap_free_maps(heap);
		return -ENOMEM;
	}
	heap->map_pages = SA_ARENA_PAGES;
	heap->base = base;
	heap->max_pages = npages;
	heap->max_arenas = narenas;
	return 0;
}

/*
 * Makes the page bitmaps cover at least want pages, doubling them. Under
 * grow_mutex, which is what changes their size; the copy and the switch
 * happen under heap->lock, which every reader of the bitmaps holds.
 */
static bool sa_mheap_grow_maps(struct sa_heap *heap, u32 want)
{
	unsigned long *used, *dirty, *stuck;
	u32 n = heap->map_pages;

	lockdep_assert_held(&heap->grow_mutex);
	if (want <= n)
		return true;
	n = min_t(u64, max_t(u64, want, 2ULL * n), heap->max_pages);
	if (sa_mheap_alloc_maps(n, &used, &dirty, &stuck))
		return false;
	spin_lock(&heap->lock);
	bitmap_copy(used, heap->used, heap->map_pages);
	bitmap_copy(dirty, heap->dirty, heap->map_pages);
	bitmap_copy(stuck, heap->stuck, heap->map_pages);
	swap(used, heap->used);
	swap(dirty, heap->dirty);
	swap(stuck, heap->stuck);
	heap->map_pages = n;
	spin_unlock(&heap->lock);
	kvfree(used);
	kvfree(dirty);
	kvfree(stuck);
	return true;
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
		if (!sa_mheap_grow_maps(heap, (i + 1) * SA_ARENA_PAGES)) {
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
		trace_spanalloc_heap_grow(heap->id, i, (i + 1) * SA_ARENA_PAGES);
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

/* The end of the bitmap window that starts at from. */
static u32 sa_mheap_window_end(struct sa_heap *heap, u32 from)
{
	return min_t(u64, heap->active_pages, (u64)from + SA_FIND_WINDOW);
}

/*
 * Pages [p, p + n) are taken (for a span, or for a release): they are
 * neither dirty nor stuck any more. Returns whether any held data.
 */
static bool sa_mheap_forget_data(struct sa_heap *heap, u32 p, u32 n)
{
	u32 dirty = sa_bits_in_range(heap->dirty, p, n);
	u32 stuck = sa_bits_in_range(heap->stuck, p, n);

	lockdep_assert_held(&heap->lock);
	heap->free_dirty -= dirty;
	heap->free_stuck -= stuck;
	if (dirty)
		bitmap_clear(heap->dirty, p, n);
	if (stuck)
		bitmap_clear(heap->stuck, p, n);
	return dirty || stuck;
}

/* Pages [p, p + n) are free again. */
static void sa_mheap_free_range(struct sa_heap *heap, u32 p, u32 n)
{
	lockdep_assert_held(&heap->lock);
	bitmap_clear(heap->used, p, n);
	if (p < heap->search_hint)
		heap->search_hint = p;
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
	end = min_t(u64, heap->active_pages, (u64)from + SA_FIND_WINDOW + npages - 1);
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
 * Makes s the span of the free pages [p, p + npages), in state HANDING.
 * Caller holds heap->lock and has checked the limit and the generations.
 */
static void sa_mheap_cut(struct sa_heap *heap, struct sa_span *s, u32 p,
			 u32 npages, u16 spanclass)
{
	lockdep_assert_held(&heap->lock);
	bitmap_set(heap->used, p, npages);
	s->start = p;
	s->npages = npages;
	s->spanclass = spanclass;
	s->needzero = sa_mheap_forget_data(heap, p, npages);
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
	if (sa_spanclass_is_large(spanclass))
		heap->nlarge++;
}

static void sa_mheap_count_span(const struct sa_span *s)
{
	atomic64_inc(&sa_global_spans);
	atomic64_add(s->npages, &sa_global_pages);
}

/*
 * Whether npages more pages in use would pass the heap's limit; a refusal
 * is traced. Under heap->lock, or unlocked as a first check before work
 * that the locked check repeats.
 */
static bool sa_mheap_over_limit(struct sa_heap *heap, u32 npages)
{
	u32 inuse = READ_ONCE(heap->pages_inuse), limit = READ_ONCE(heap->limit_pages);

	if (inuse + (u64)npages <= limit)
		return false;
	trace_spanalloc_limit(heap->id, npages, inuse, limit);
	return true;
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
	u32 p, from = 0;
	int err = -ENOMEM;

	s = kmem_cache_zalloc(sa_span_cache, GFP_KERNEL_ACCOUNT);
	if (!s)
		return ERR_PTR(-ENOMEM);

	for (;;) {
		u32 want, seq;
		bool busy;

		spin_lock(&heap->lock);
		if (sa_mheap_over_limit(heap, npages) || !heap->gens_left) {
			spin_unlock(&heap->lock);
			goto fail;
		}
		from = max(from, heap->search_hint);
		p = sa_mheap_find(heap, from, npages);
		if (p != U32_MAX)
			break;
		if ((u64)from + SA_FIND_WINDOW < heap->active_pages) {
			/*
			 * First fit, one window per lock hold: a run freed
			 * behind the window meanwhile is missed this time.
			 */
			spin_unlock(&heap->lock);
			from += SA_FIND_WINDOW;
			cond_resched();
			continue;
		}
		busy = heap->scav_busy;
		seq = heap->scav_seq;
		want = sa_mheap_grow_target(heap, npages);
		spin_unlock(&heap->lock);
		from = 0;
		if (busy) {
			/*
			 * The run a release holds may be what would fit:
			 * wait for that run (not the whole release) rather
			 * than grow or fail.
			 */
			err = wait_event_killable(heap->scav_wait,
						  READ_ONCE(heap->scav_seq) != seq);
			if (err)
				goto fail;
			err = -ENOMEM;
			continue;
		}
		if (!sa_mheap_grow(heap, want))
			goto fail;
	}

	sa_mheap_cut(heap, s, p, npages, spanclass);
	spin_unlock(&heap->lock);
	sa_mheap_count_span(s);
	return s;

fail:
	kmem_cache_free(sa_span_cache, s);
	return ERR_PTR(err);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_alloc_span);

/*
 * Cuts the span of npages pages for spanclass that starts at page p, for a
 * heap adopting memory it inherited (SPANALLOC_IOC_ADOPT): the pages are
 * named by user space, so they must be in the mapping and free. Returns
 * the span in state HANDING, with needzero set (its pages hold data), or
 * ERR_PTR(-EINVAL) (pages out of range or in use) or ERR_PTR(-ENOMEM).
 */
struct sa_span *sa_mheap_adopt_span(struct sa_heap *heap, u32 p, u32 npages,
				    u16 spanclass)
{
	struct sa_span *s;
	int err = -EINVAL;

	if (!npages || p >= heap->max_pages || npages > heap->max_pages - p)
		return ERR_PTR(-EINVAL);
	/* it indexes the arena table and the bitmaps */
	p = array_index_nospec(p, heap->max_pages);
	/* before arenas are set up for it */
	if (sa_mheap_over_limit(heap, npages))
		return ERR_PTR(-ENOMEM);
	if (!sa_mheap_grow(heap, p + npages))
		return ERR_PTR(-ENOMEM);
	s = kmem_cache_zalloc(sa_span_cache, GFP_KERNEL_ACCOUNT);
	if (!s)
		return ERR_PTR(-ENOMEM);
	spin_lock(&heap->lock);
	if (find_next_bit(heap->used, p + npages, p) < p + npages)
		goto fail;
	err = -ENOMEM;
	if (sa_mheap_over_limit(heap, npages) || !heap->gens_left)
		goto fail;
	sa_mheap_cut(heap, s, p, npages, spanclass);
	s->needzero = 1;
	spin_unlock(&heap->lock);
	sa_mheap_count_span(s);
	return s;

fail:
	spin_unlock(&heap->lock);
	kmem_cache_free(sa_span_cache, s);
	return ERR_PTR(err);
}

/*
 * The free pages [*start, *start + *n) from page *from on, within one
 * window of the bitmap (bounded work under heap->lock): the first free run
 * that starts in the window, cut at its end, or an empty run (*n == 0)
 * when the window has none. Past the arenas set up, the rest of the
 * mapping is one free run. Moves *from past it. Returns false once the
 * mapping is done. For a heap no one else can use yet (ADOPT): runs do not
 * change between calls.
 */
bool sa_mheap_next_free(struct sa_heap *heap, u32 *from, u32 *start, u32 *n)
{
	u32 end, p;

	if (*from >= heap->max_pages)
		return false;
	spin_lock(&heap->lock);
	if (*from >= heap->active_pages) {
		p = *from;
		*from = heap->max_pages;
	} else {
		end = sa_mheap_window_end(heap, *from);
		p = find_next_zero_bit(heap->used, end, *from);
		*from = p < end ? find_next_bit(heap->used, end, p) : end;
	}
	spin_unlock(&heap->lock);
	*start = p;
	*n = *from - p;
	return true;
}

/* Gives s's pages back. The caller holds s (claimed or on no list). */
void sa_mheap_free_span(struct sa_heap *heap, struct sa_span *s)
{
	spin_lock(&heap->lock);
	sa_mheap_set_table(heap, s, NULL);
	sa_mheap_free_range(heap, s->start, s->npages);
	bitmap_set(heap->dirty, s->start, s->npages);
	heap->free_dirty += s->npages;
	heap->pages_inuse -= s->npages;
	heap->nspans--;
	heap->class_spans[s->spanclass]--;
	if (sa_spanclass_is_large(s->spanclass))
		heap->nlarge--;
	spin_unlock(&heap->lock);

	atomic64_dec(&sa_global_spans);
	atomic64_sub(s->npages, &sa_global_pages);
	call_rcu(&s->rcu, sa_span_free_rcu);
	sa_scavenger_note(heap);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_free_span);

static u8 sa_snapshot_state(const struct sa_span *s)
{
	switch (atomic_read(&s->state)) {
	case SA_SPAN_OWNED:
		return SPANALLOC_SPAN_OWNED;
	case SA_SPAN_CACHED:
		return SPANALLOC_SPAN_CACHED;
	case SA_SPAN_PARTIAL:
		return SPANALLOC_SPAN_PARTIAL;
	case SA_SPAN_FULL:
		return SPANALLOC_SPAN_FULL;
	default:
		return SPANALLOC_SPAN_MOVING;
	}
}

/*
 * One window of a snapshot (SPANALLOC_IOC_SNAPSHOT): the state of pages
 * [from, from + n) of set-up arenas into states[], and the spans that
 * start there into spans[] (room for n: a span starts at most at every
 * page). *covered is the first page past the last span seen, carried from
 * window to window so that a span's later pages count as in it. Returns
 * the spans found. Bounded work under heap->lock: the caller's window.
 */
u32 sa_mheap_snapshot(struct sa_heap *heap, u32 from, u32 n, u8 *states,
		      struct spanalloc_snapshot_span *spans, u32 *covered)
{
	u32 i, found = 0;

	spin_lock(&heap->lock);
	n = min(n, heap->active_pages - min(from, heap->active_pages));
	for (i = 0; i < n; i++) {
		u32 p = from + i;
		struct sa_span *s;

		s = rcu_dereference_protected(sa_mheap_arena(heap, p)->spans[p % SA_ARENA_PAGES],
					      lockdep_is_held(&heap->lock));
		if (s) {
			spans[found++] = (struct spanalloc_snapshot_span){
				.start = s->start, .npages = s->npages,
				.spanclass = s->spanclass,
				.state = sa_snapshot_state(s),
			};
			*covered = max(*covered, s->start + s->npages);
		}
		if (p < *covered)
			states[i] = SPANALLOC_PAGE_SPAN;
		else if (test_bit(p, heap->dirty))
			states[i] = SPANALLOC_PAGE_DIRTY;
		else if (test_bit(p, heap->stuck))
			states[i] = SPANALLOC_PAGE_STUCK;
		else
			/* clean, or held by a release that is making it so */
			states[i] = SPANALLOC_PAGE_RELEASED;
	}
	spin_unlock(&heap->lock);
	return found;
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_snapshot);

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

	if (!sa_heap_mapped(heap) || page >= heap->max_pages)
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
 * Takes a run for the scavenger: the free pages around the first dirty free
 * page that starts in [*from, *from + window), within its 2 MiB block. So a
 * huge page is released whole or not at all, whatever mix of dirty, stuck
 * and clean free pages it holds, and a release refused for part of one is
 * tried again once the rest of it is free. run->data records which of the
 * run's pages may hold data (were dirty or stuck). The run is held as used
 * (no span can be cut from it) and is neither dirty nor stuck while held.
 * Returns its length; 0 if the window has none, with *from moved past the
 * window (at or past active_pages when the heap has been searched to its
 * end). Caller holds heap->scav_mutex; one run is held at a time.
 */
u32 sa_mheap_scav_take(struct sa_heap *heap, u32 *from, struct sa_scav_run *run)
{
	u32 p, end, lo, hi, i;

	lockdep_assert_held(&heap->scav_mutex);
	run->n = 0;
	spin_lock(&heap->lock);
	end = sa_mheap_window_end(heap, *from);
	p = find_next_bit(heap->dirty, end, *from);
	if (p < end) {
		lo = max(round_down(p, SA_SCAV_ALIGN), *from);
		hi = min(heap->active_pages, round_down(p, SA_SCAV_ALIGN) + SA_SCAV_ALIGN);
		/* within one block: bounded */
		while (p > lo && !test_bit(p - 1, heap->used))
			p--;
		for (end = p; end < hi && !test_bit(end, heap->used); end++)
			;
		run->start = p;
		run->n = end - p;
		bitmap_zero(run->data, SA_SCAV_ALIGN);
		for (i = 0; i < run->n; i++)
			if (test_bit(p + i, heap->dirty) || test_bit(p + i, heap->stuck))
				__set_bit(i, run->data);
		sa_mheap_forget_data(heap, p, run->n);
		bitmap_set(heap->used, p, run->n);
		heap->scav_busy = run->n;
	}
	*from = end;
	spin_unlock(&heap->lock);
	return run->n;
}
EXPORT_SYMBOL_IF_KUNIT(sa_mheap_scav_take);

/*
 * Gives back a run taken by sa_mheap_scav_take(). released says whether its
 * pages were zapped (clean now); if not, the pages that held data are
 * stuck: still possibly resident, not counted as releasable, tried again by
 * a release user space asks for or with free pages next to them. Wakes
 * allocations that waited for the run. Returns how many pages that may
 * have held data were released.
 */
u32 sa_mheap_scav_done(struct sa_heap *heap, struct sa_scav_run *run, bool released)
{
	u32 data = bitmap_weight(run->data, SA_SCAV_ALIGN), i;

	lockdep_assert_held(&heap->scav_mutex);
	spin_lock(&heap->lock);
	if (!released) {
		for_each_set_bit(i, run->data, SA_SCAV_ALIGN)
			__set_bit(run->start + i, heap->stuck);
		heap->free_stuck += data;
	}
	sa_mheap_free_range(heap, run->start, run->n);
	heap->scav_busy = 0;
	heap->scav_seq++;
	spin_unlock(&heap->lock);
	wake_up_all(&heap->scav_wait);
	return released ? data : 0;
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
		end = sa_mheap_window_end(heap, from);
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
