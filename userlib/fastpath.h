/* SPDX-License-Identifier: MIT */
/*
 * fastpath: allocation and free as inlined into every entry point, the
 * library's own (malloc.c) and the drop-in's malloc family (override.c).
 *
 * Each either finishes in the calling thread's own span (or tiny block) or
 * tail-calls the slow path its caller names, which starts over with safe
 * points kept (mimalloc's split of mi_malloc and _mi_malloc_generic).
 * Small objects are counted by their spans, not here: a span counts what
 * it handed out and what its owner freed into it when the owner refreshes
 * it (mbitmap.c, mcache.c); tiny objects, which share blocks, are counted
 * with one plain add each into the thread's cache, harvested at refills.
 * The only calls besides the tail calls, all rare: zeroing an object over
 * SA_ZERO_INLINE bytes, freeing a tiny block that the free of its last
 * object emptied (sa_free_tiny_emptied), and a stop that waits at the end
 * of the region (sa_fast_stop, sa_fast_late). Safe points: sa_fast_enter.
 */
#ifndef SPANALLOC_FASTPATH_H
#define SPANALLOC_FASTPATH_H

#include "internal.h"

#pragma GCC visibility push(hidden)

void *sa_alloc_slow(size_t size, bool noscan, bool zero);
void sa_free_slow(void *ptr);
void sa_free_tiny_emptied(struct sa_tcache *c, struct sa_uspan *s, uintptr_t p);
typedef void sa_free_fn(void *ptr);
/*
 * sa_fast_free_tiny_in() out of line, in the region the fast free
 * entered (it leaves it), then slow(ptr) if it cannot: inlined, the tiny
 * free's registers and stack made every fast free save and restore three
 * registers (8 instructions).
 */
void sa_free_tiny_fast(struct sa_tcache *c, struct sa_uspan *s, void *ptr, sa_free_fn *slow);
void *sa_fast_zero(uintptr_t p, uint32_t size) __attribute__((returns_nonnull));
void *sa_fast_late(struct sa_tcache *c, uintptr_t p, uint32_t size, bool dirty)
	__attribute__((returns_nonnull));
/*
 * The slow paths a fast path's caller names: they take what the caller
 * gave the fast path and start over. Each fast path is inlined with a
 * constant one, so every way out is a direct tail call.
 */
typedef void *sa_alloc_fn(size_t size, bool noscan, bool zero);

/*
 * What the malloc family serves is never a tiny object, so that every
 * object is 8-byte aligned, as jemalloc's and mimalloc's: the fast path
 * takes the class of size plus the end pad from the size tables with no
 * rounding, 8 bytes or less padded the 8-byte class and 9 to 16 the
 * 16-byte one (16-byte aligned, as every class from 16 bytes up is); its
 * slow paths ask for this size instead, the largest that takes the same
 * class: 7, 8, 15 or 16 bytes under 17, which sa_tiny_wanted refuses
 * whatever the pad is when they read it. Rounding in the fast path cost
 * every malloc two instructions, and those under 16 bytes six; malloc(0)
 * in a manual heap, 0 bytes padded, goes to the slow path (the tables
 * send 0 there, for SIZE_MAX padded).
 */
static inline size_t sa_malloc_size(size_t size, uint32_t pad)
{
	if (size >= SA_TINY_SIZE)
		return size;
	return size + pad <= 8 ? 8 - pad : SA_TINY_SIZE - pad;
}

/*
 * A tiny object asked for as req bytes, size with the end pad (noscan, 1
 * to 15 bytes, carved rounded up to 2), aligned for req
 * (sa_tiny_alignment), from c's current block, or from a new block when
 * the current one is used up, or NULL when the slow path must do it: the
 * current block has room but not enough (its rest must be released), c
 * has no tiny span with a free block, or the mask is not as c left it
 * (the slow path reports that). A block is zeroed when it
 * starts. "No block" is tiny 0 with tiny_off at the end.
 */
static inline __attribute__((always_inline)) void *sa_fast_tiny(struct sa_tcache *c,
								uint32_t req, uint32_t size)
{
	uint32_t sz = sa_tiny_round(size), fill = c->tiny_off, idx;
	uint32_t off = sa_tiny_align(fill, sa_tiny_alignment(req));
	struct sa_uspan *s;
	uintptr_t block;

	if (sa_likely(off + sz <= SA_TINY_SIZE)) {
		sa_fast_enter(c);
		if (sa_unlikely(sa_tiny_carve(c->tiny_mask, fill, off, sz))) {
			sa_fast_exit(c);
			return NULL;
		}
		/* read late: one register fewer across the carve */
		block = c->tiny;
	} else {
		/*
		 * A new block, once nothing of the current one is left to
		 * release. Read before the region: no taker ever takes the
		 * tiny class's span (mcache.c: sa_tcache_yield_active).
		 */
		s = c->alloc[SA_TINY_SC];
		if (sa_unlikely(fill != SA_TINY_SIZE) || sa_unlikely(!s))
			return NULL;
		sa_fast_enter(c);
		block = sa_span_next_fast(s);
		if (sa_unlikely(!block)) {
			sa_fast_exit(c);
			return NULL;
		}
		if (s->needzero)
			sa_zero_small(block, SA_TINY_SIZE);
		idx = (uint32_t)((block - s->base) / SA_TINY_SIZE);
		c->tiny = block;
		c->tiny_mask = &s->tiny[idx];
		/* nobody else knows the block yet: no compare-and-swap */
		atomic_store_explicit(c->tiny_mask, sa_tiny_carved(sz), memory_order_relaxed);
		off = 0;
	}
	c->tiny_off = off + sz;
	c->tiny_n++;
	c->tiny_bytes += sz;
	/* never 0: blocks lie inside the heap mapping (told, so no test) */
	if (!(block + off))
		__builtin_unreachable();
	return sa_fast_done(c, (void *)(block + off));
}

/*
 * Leaves the region in which a fast path took object p of elemsize bytes
 * and returns it, zeroed if dirty (sa_fast_late if a stop waits);
 * elemsize is only read when dirty. Zeroing
 * comes after the region: the object is allocated, so a stop meanwhile
 * only scans old words.
 */
static inline __attribute__((always_inline)) void *sa_fast_hand_out(struct sa_tcache *c,
								    uintptr_t p,
								    uint32_t elemsize,
								    bool dirty)
{
	if (sa_unlikely(sa_fast_exit(c)))
		return sa_fast_late(c, p, elemsize, dirty);
	if (dirty) {
		if (sa_unlikely(elemsize > SA_ZERO_INLINE))
			return sa_fast_zero(p, elemsize);
		sa_zero_small(p, elemsize);
	}
	return (void *)p;
}

/*
 * An object of size bytes: a tiny one (sa_tiny_wanted) from the
 * calling thread's current block, or one from its active span of the
 * size's class, zeroed if zero is set and the span may hold old data.
 * never_tiny: the malloc family's call (sa_malloc_size); the test is left
 * out and slow() asks for a size that takes the same class.
 * slow(size, noscan, zero) when that cannot be done here: no cache yet,
 * no room in the block or the span's cache, a large object, or a size no
 * heap holds.
 */
static inline __attribute__((always_inline)) void *sa_fast_alloc(size_t size, bool noscan,
								 bool zero, bool never_tiny,
								 sa_alloc_fn *slow)
{
	struct sa_tcache *c = sa_tc_fast;
	/*
	 * An end pointer lands inside its object (gc.h: end_pad). SIZE_MAX
	 * plus the pad wraps to 0, which the tables send to the slow path
	 * (sizeclass.c), as they send 0 itself.
	 */
	size_t sz = size + sa_gc.end_pad;
	struct sa_uspan *s;
	uint32_t elemsize;
	unsigned int sc;
	uintptr_t p;
	bool dirty;

	if (sa_likely(sz <= 1024)) {
		if (!never_tiny && sa_tiny_wanted(size, sz, noscan)) {
			p = (uintptr_t)sa_fast_tiny(c, (uint32_t)size, (uint32_t)sz);
			return sa_likely(p) ? (void *)p : slow(size, noscan, zero);
		}
		sc = sa_spanclass8(sz, noscan);
	} else {
		if (sa_unlikely(sz > SPANALLOC_MAX_SMALL_SIZE))
			return slow(size, noscan, zero);
		sc = sa_spanclass128(sz, noscan);
	}
	/*
	 * Read inside the region: a thread taking an idle one's active spans
	 * (handoff.c) clears them, then waits for the region's end. Atomic
	 * for that writer (a plain load all the same).
	 */
	sa_fast_enter(c);
	s = __atomic_load_n(&c->alloc[sc], __ATOMIC_RELAXED);
	if (sa_unlikely(!s)) {
		sa_fast_exit(c);
		return slow(size, noscan, zero);
	}
	p = sa_span_next_fast(s);
	if (sa_unlikely(!p)) {
		sa_fast_exit(c);
		return slow(size, noscan, zero);
	}
	dirty = sa_must_zero(sz, noscan, zero) && s->needzero;
	/* read again only where it is used: kept, it cost malloc a copy */
	elemsize = dirty ? *(volatile uint32_t *)&s->elemsize : 0;
	return sa_fast_hand_out(c, p, elemsize, dirty);
}

/*
 * Frees tiny object p of s (any thread's): its bytes leave the block's
 * mask, and the block goes when that empties it (out of line:
 * sa_free_tiny_emptied). False, having changed nothing, when no object starts
 * at p (the slow path reports it). Called inside a region the caller
 * entered; leaves it.
 */
static inline __attribute__((always_inline)) bool sa_fast_free_tiny_in(struct sa_tcache *c,
								       struct sa_uspan *s,
								       uintptr_t p)
{
	uint32_t idx = (uint32_t)((p - s->base) / SA_TINY_SIZE), size, empty;

	/*
	 * The bound is for a stray free that raced with s going and its
	 * record coming back for another span: p is then not in s. Spans
	 * are page aligned: p's offset in its block is p's low bits.
	 */
	if (sa_unlikely(idx >= s->nelems) ||
	    sa_unlikely(!sa_tiny_take(&s->tiny[idx], (uint32_t)(p % SA_TINY_SIZE), &size,
				      &empty))) {
		sa_fast_exit(c);
		return false;
	}
	c->tiny_freed++;
	c->tiny_freed_bytes += size;
	if (sa_unlikely(empty)) {
		sa_free_tiny_emptied(c, s, p);	/* leaves the region */
		return true;
	}
	return sa_fast_done(c, s) != NULL;
}

/* sa_fast_free_tiny_in, in a region of its own. */
static inline __attribute__((always_inline)) bool sa_fast_free_tiny(struct sa_tcache *c,
								    struct sa_uspan *s,
								    uintptr_t p)
{
	sa_fast_enter(c);
	return sa_fast_free_tiny_in(c, s, p);
}

/*
 * Frees ptr: here if it is a tiny object, or an object of a span the
 * calling thread owns, freed once, untyped and not large (a bit set in the
 * span's localFree); anything else (NULL included) is slow(ptr)'s.
 */
static inline __attribute__((always_inline)) void sa_fast_free(void *ptr, sa_free_fn *slow)
{
	uintptr_t p = (uintptr_t)ptr;
	struct sa_tcache *c = sa_tc_fast;
	struct sa_uspan *s = sa_span_of(ptr);	/* NULL for NULL too */
	uint32_t idx;

	if (sa_unlikely(!s)) {
		slow(ptr);
		return;
	}
	/*
	 * One look at the owner, inside the region: until it is entered, a
	 * stop could give a held span to the collecting thread
	 * (sa_tcache_decay_stopped); inside, the owner changes only at this
	 * thread's safe points. sa_tc_none owns nothing: a thread without a
	 * cache only counts its region there (internal.h).
	 */
	sa_fast_enter(c);
	if (atomic_load_explicit(&s->fast_owner, memory_order_relaxed) != c) {
		if (s->spanclass == SA_TINY_SC) {
			sa_free_tiny_fast(c, s, ptr, slow);	/* leaves the region */
			return;
		}
		sa_fast_exit(c);
		slow(ptr);
		return;
	}
	if (sa_unlikely(!sa_span_exact(s, p, &idx)) || sa_unlikely(idx >= s->nelems) ||
	    sa_unlikely(sa_span_free_local(s, idx))) {
		sa_fast_exit(c);
		slow(ptr);
		return;
	}
	(void)sa_fast_done(c, s);
}

#pragma GCC visibility pop

#endif /* SPANALLOC_FASTPATH_H */
