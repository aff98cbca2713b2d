/* SPDX-License-Identifier: MIT */
/*
 * fastpath: allocation and free as inlined into every entry point, the
 * library's own (malloc.c) and the drop-in's malloc family (override.c).
 *
 * Each either finishes in the calling thread's own span (or tiny block) or
 * answers "no", and the caller then tail-calls its slow path, which starts
 * over with safe points kept (mimalloc's split of mi_malloc and
 * _mi_malloc_generic). Small objects are counted by their spans, not here:
 * a span counts what it handed out and what its owner freed into it when
 * the owner refreshes it (span.c, mcache.c); tiny objects, which share
 * blocks, are counted one by one. The one call a fast path makes is the
 * free of a tiny block its last object's free emptied. Safe points:
 * sa_fast_enter.
 */
#ifndef SPANALLOC_FASTPATH_H
#define SPANALLOC_FASTPATH_H

#include "internal.h"

#pragma GCC visibility push(hidden)

void *sa_alloc_slow(size_t size, bool noscan, bool zero);
void sa_free_slow(void *ptr);
void sa_free_tiny_block(struct sa_tcache *c, struct sa_uspan *s, uint32_t idx);
void *sa_fast_zero(struct sa_tcache *c, uintptr_t p, uint32_t size)
	__attribute__((returns_nonnull));

/*
 * What malloc serves: objects under 16 bytes rounded to a multiple of 8
 * (8-byte aligned, as jemalloc and mimalloc: no odd tiny offsets); every
 * size class from 16 bytes up is a multiple of 16 (16-byte aligned).
 */
static inline size_t sa_round_small(size_t size)
{
	return size < SA_TINY_SIZE ? (size ? (size + 7) & ~(size_t)7 : 8) : size;
}

/*
 * A tiny object (noscan, 1 to 15 bytes) carved from c's current block, or
 * NULL when there is none or it has no room (the slow path starts the
 * next) or its mask is not as c left it (the slow path reports it).
 * Blocks are zeroed when they start.
 */
static inline __attribute__((always_inline)) void *sa_fast_tiny(struct sa_tcache *c,
								uint32_t sz)
{
	uint32_t fill = c->tiny_off, off = sa_tiny_align(fill, sz);
	uintptr_t block = c->tiny;

	if (sa_unlikely(!block) || off + sz > SA_TINY_SIZE)
		return NULL;
	sa_fast_enter(c);
	if (sa_unlikely(sa_tiny_carve(c->tiny_mask, fill, off, sz))) {
		sa_fast_exit(c);
		return NULL;
	}
	c->tiny_off = off + sz;
	SA_STAT_ADD(c->st.tiny, 1);
	SA_STAT_ADD(c->st.tiny_bytes, sz);
	sa_fast_exit(c);
	return sa_fast_done(c, (void *)(block + off));
}

/*
 * An object of size bytes: a tiny one (noscan, under 16 bytes) from the
 * calling thread's current block, or one from its active span of the
 * size's class, zeroed if zero is set and the span may hold old data.
 * NULL when the slow path must do it: no cache yet, no room in the block
 * or the span's cache, a large object, or a size no heap holds.
 */
static inline __attribute__((always_inline)) void *sa_fast_alloc(size_t size, bool noscan,
								 bool zero)
{
	struct sa_tcache *c = sa_tc;
	/*
	 * An end pointer lands inside its object (gc.h: end_pad). SIZE_MAX
	 * plus the pad wraps to 0, which the range check below refuses, as
	 * it refuses 0 itself.
	 */
	size_t sz = size + sa_gc.end_pad;
	const size_t lo = noscan ? SA_TINY_SIZE : 1;
	struct sa_uspan *s;
	uint32_t elemsize;
	uintptr_t p;
	bool dirty;

	if (sa_unlikely(!c))
		return NULL;
	if (noscan && sz - 1 < SA_TINY_SIZE - 1)
		return sa_fast_tiny(c, (uint32_t)sz);
	if (sa_unlikely(sz - lo > SPANALLOC_MAX_SMALL_SIZE - lo))
		return NULL;
	/* only this thread changes its active spans */
	s = c->alloc[sa_spanclass_of(sz, noscan)];
	if (sa_unlikely(!s))
		return NULL;
	sa_fast_enter(c);
	p = sa_span_next_fast(s);
	dirty = sa_must_zero(sz, noscan, zero) && s->needzero;
	elemsize = s->elemsize;
	sa_fast_exit(c);
	if (sa_unlikely(!p))
		return NULL;
	/* the object is allocated: a stop while it is zeroed only scans old words */
	if (dirty) {
		if (sa_unlikely(elemsize > SA_ZERO_INLINE))
			return sa_fast_zero(c, p, elemsize);	/* a tail call */
		sa_zero_small(p, elemsize);
	}
	return sa_fast_done(c, (void *)p);
}

/*
 * Frees tiny object p of s (any thread's): its bytes leave the block's
 * mask, and the block goes when that empties it. False, having changed
 * nothing, when no object starts at p (the slow path reports it).
 */
static inline __attribute__((always_inline)) bool sa_fast_free_tiny(struct sa_tcache *c,
								    struct sa_uspan *s,
								    uintptr_t p)
{
	uint32_t idx = sa_span_index(s, p), off, size, empty;
	_Atomic(uint32_t) *mask;

	if (sa_unlikely(idx >= s->nelems))
		return false;
	off = (uint32_t)(p - (s->base + (uintptr_t)idx * SA_TINY_SIZE));
	mask = &s->tiny[idx];
	sa_fast_enter(c);
	size = sa_tiny_usable(atomic_load_explicit(mask, memory_order_relaxed), off);
	if (sa_unlikely(!size) || sa_unlikely(sa_tiny_release(mask, off, &empty))) {
		sa_fast_exit(c);
		return false;
	}
	SA_STAT_ADD(c->st.freed, 1);
	SA_STAT_ADD(c->st.freed_bytes, size);
	if (sa_unlikely(empty)) {
		/*
		 * The block is empty but still allocated: no stop between
		 * here and its free, or a sweep could free it first.
		 */
		sa_safe_enter(c);
		sa_fast_exit(c);
		sa_free_tiny_block(c, s, idx);
		return true;
	}
	sa_fast_exit(c);
	return sa_fast_done(c, s) != NULL;
}

/*
 * Frees ptr if it is a tiny object, or an object of a span the calling
 * thread owns, freed once, untyped and not large: a bit set in the span's
 * localFree. Returns false, having changed nothing, for anything else
 * (NULL included), which the slow path must do.
 */
static inline __attribute__((always_inline)) bool sa_fast_free(void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	struct sa_tcache *c = sa_tc;
	struct sa_uspan *s = sa_span_of(ptr);	/* NULL for NULL too */
	uint32_t idx;

	if (sa_unlikely(!s) || sa_unlikely(!c))
		return false;
	if (!atomic_load_explicit(&s->fastfree, memory_order_relaxed))
		return s->spanclass == SA_TINY_SC && sa_fast_free_tiny(c, s, p);
	idx = sa_span_index(s, p);
	if (sa_unlikely(s->base + (uintptr_t)idx * s->elemsize != p || idx >= s->nelems))
		return false;
	sa_fast_enter(c);
	/* the owner changes only at this thread's safe points */
	if (sa_unlikely(atomic_load_explicit(&s->owner, memory_order_relaxed) != c) ||
	    sa_unlikely(sa_span_free_local(s, idx))) {
		sa_fast_exit(c);
		return false;
	}
	sa_fast_exit(c);
	return sa_fast_done(c, s) != NULL;
}

#pragma GCC visibility pop

#endif /* SPANALLOC_FASTPATH_H */
