/* SPDX-License-Identifier: MIT */
/*
 * fastpath: allocation and free as inlined into every entry point, the
 * library's own (malloc.c) and the drop-in's malloc family (override.c).
 *
 * Each is a leaf that either finishes in the calling thread's own span or
 * answers "no", and the caller then tail-calls its slow path, which starts
 * over with safe points kept (mimalloc's split of mi_malloc and
 * _mi_malloc_generic). Neither counts anything: a span counts what it
 * handed out and what its owner freed into it when the owner refreshes it
 * (span.c, mcache.c). Neither checks for a stop on its way out:
 * sa_fast_enter says why none is needed.
 */
#ifndef SPANALLOC_FASTPATH_H
#define SPANALLOC_FASTPATH_H

#include "internal.h"

#pragma GCC visibility push(hidden)

void *sa_alloc_slow(size_t size, bool noscan, bool zero);
void sa_free_slow(void *ptr);

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
 * An object of size bytes from the calling thread's active span of its
 * class, zeroed if zero is set and the span may hold old data; NULL when
 * the slow path must do it (no cache yet, tiny or large, the span's cache
 * used up, or a size no heap holds).
 */
static inline __attribute__((always_inline)) void *sa_fast_alloc(size_t size, bool noscan,
								 bool zero)
{
	struct sa_tcache *c = sa_tc;
	/*
	 * An end pointer lands inside its object (gc.h: end_pad). SIZE_MAX
	 * plus the pad wraps to 0, which the range check below refuses, as
	 * it refuses 0 itself and noscan sizes under 16 (the tiny allocator's).
	 */
	size_t sz = size + sa_gc.end_pad;
	const size_t lo = noscan ? SA_TINY_SIZE : 1;
	struct sa_uspan *s;
	uint32_t elemsize;
	uintptr_t p;
	bool dirty;

	if (sa_unlikely(sz - lo > SPANALLOC_MAX_SMALL_SIZE - lo) || sa_unlikely(!c))
		return NULL;
	/* only this thread changes its active spans */
	s = c->alloc[sa_spanclass_of(sz, noscan)];
	if (sa_unlikely(!s))
		return NULL;
	sa_fast_enter(c);
	p = sa_span_next_fast(s);
	dirty = zero && s->needzero;
	elemsize = s->elemsize;
	sa_fast_exit(c);
	/* the object is allocated: a stop while it is zeroed only scans old words */
	if (p && dirty)
		sa_zero_object(p, elemsize);
	return (void *)p;
}

/*
 * Frees ptr if it is an object of a span the calling thread owns, freed
 * once, untyped and neither tiny nor large: a bit set in the span's
 * localFree. Returns false, having changed nothing, for anything else
 * (NULL included), which the slow path must do.
 */
static inline __attribute__((always_inline)) bool sa_fast_free(void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	struct sa_tcache *c = sa_tc;
	struct sa_uspan *s = sa_span_of(ptr);	/* NULL for NULL too */
	uint64_t bit, *word;
	uint32_t idx;

	if (sa_unlikely(!s) || sa_unlikely(!c) ||
	    !atomic_load_explicit(&s->fastfree, memory_order_relaxed))
		return false;
	idx = sa_span_index(s, p);
	if (sa_unlikely(s->base + (uintptr_t)idx * s->elemsize != p || idx >= s->nelems))
		return false;
	bit = 1ULL << (idx % 64);
	word = &s->local_free[idx / 64];
	sa_fast_enter(c);
	/* the owner changes only at this thread's safe points */
	if (sa_unlikely(atomic_load_explicit(&s->owner, memory_order_relaxed) != c ||
			(*word & bit))) {
		sa_fast_exit(c);
		return false;
	}
	*word |= bit;
	sa_fast_exit(c);
	return true;
}

#pragma GCC visibility pop

#endif /* SPANALLOC_FASTPATH_H */
