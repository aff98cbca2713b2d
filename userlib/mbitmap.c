// SPDX-License-Identifier: MIT
/*
 * mbitmap: the allocation state of one span (struct sa_uspan, see
 * internal.h), what Go's mbitmap.go holds: finding free objects with
 * allocBits, allocCache and freeindex, folding in the frees recorded in
 * localFree and freeBits, and the one-word protocol by which a free
 * adopts a span returned FULL. Pure bit work: no system calls, no locks;
 * callers hold the span.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

_Static_assert(SPANALLOC_MAX_NELEMS <= 16 * 64, "the longest bitmaps hold every object");

/*
 * Points s's bitmaps at its own words (kind 0) or at ext, SA_BITS_EXT(kind)
 * bytes aligned to a cache line, for the record's whole life.
 */
void sa_span_bind_bits(struct sa_uspan *s, uint8_t kind, void *ext)
{
	uint32_t cap = sa_bits_cap[kind];

	s->kind = kind;
	if (!kind) {
		s->alloc_bits = &s->inl_holder[0];
		s->local_free = &s->inl_holder[1];
		s->free_bits = &s->inl_remote[0];
		s->mark_bits = &s->inl_remote[1];
		return;
	}
	s->alloc_bits = ext;
	s->local_free = s->alloc_bits + cap;
	s->free_bits = (_Atomic uint64_t *)((char *)ext + sa_bits_half(kind));
	s->mark_bits = s->free_bits + cap;
}

void sa_span_setup(struct sa_uspan *s, uintptr_t base, uint64_t handle,
		   uint32_t npages, uint16_t spanclass, bool needzero)
{
	uint32_t words;
	const struct spanalloc_class *ci = &sa_classes[spanclass >> 1];

	s->base = base;
	s->handle = handle;
	s->npages = npages;
	s->spanclass = spanclass;
	if (ci->size) {
		s->elemsize = ci->size;
		s->nelems = sa_span_nelems(spanclass, npages);
		s->divmagic = ci->divmagic;
		s->divmul = UINT64_MAX / ci->size + 1;
	} else {
		s->elemsize = npages << SA_PAGE_SHIFT;
		s->nelems = 1;
		s->divmagic = 0;
		s->divmul = 0;
	}
	s->freeindex = 0;
	s->alloc_count = 0;
	s->taken_from = 0;
	s->taken = 0;
	s->freed_local = 0;
	s->needzero = needzero;
	s->fastfree = spanclass >= 2 && spanclass != SA_TINY_SC;
	s->next = NULL;
	words = sa_span_words(s);
	if (words > sa_bits_cap[s->kind]) {
		fprintf(stderr, "spanalloc: a record for %u objects given a span of %u; aborting\n",
			sa_bits_cap[s->kind] * 64, s->nelems);
		abort();
	}
	for (uint32_t w = 0; w < words; w++) {
		s->alloc_bits[w] = 0;
		s->local_free[w] = 0;
		atomic_store_explicit(&s->free_bits[w], 0, memory_order_relaxed);
		atomic_store_explicit(&s->mark_bits[w], 0, memory_order_relaxed);
	}
	s->alloc_cache = sa_span_word_cache(s, 0);
	sa_span_set_owner(s, NULL);
	atomic_store_explicit(&s->adoptable, 0, memory_order_relaxed);
	/* its objects are new: none is a profile sample yet */
	atomic_store_explicit(&s->nsampled, 0, memory_order_relaxed);
	s->prof_rest = 0;
	/* a new span has nothing to sweep */
	atomic_store_explicit(&s->sweepgen,
			      atomic_load_explicit(&sa_gc.sweepgen, memory_order_relaxed),
			      memory_order_relaxed);
	sa_gc_note_inuse((int64_t)((uint64_t)npages << SA_PAGE_SHIFT));
	atomic_fetch_add_explicit(&sa_g.meta_inuse, sizeof(*s) + SA_BITS_EXT(s->kind),
				  memory_order_relaxed);
}

void sa_span_bad_free(const struct sa_uspan *s, const void *p, const char *what)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg),
			 "spanalloc: %s: %p (span %#lx, %u-byte objects); aborting\n",
			 what, p, (unsigned long)s->base, s->elemsize);

	/* not stdio: found in a fast path's region, a stopped thread may hold its lock */
	if (n > 0 && write(2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1) < 0)
		abort();
	abort();
}

/* Reports the first of frees f of word w that allocBits do not hold. */
static __attribute__((noinline, cold, noreturn)) void
sa_span_unmark_bad(const struct sa_uspan *s, uint32_t w, uint64_t f)
{
	uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(f & ~s->alloc_bits[w]);

	sa_span_bad_free(s, (void *)sa_span_object(s, i),
			 "double free or free of an object never allocated");
}

/*
 * Clears freed objects f of word w from allocBits; returns how many.
 * Inline, as the bit work of a refresh: a span change of a one-word
 * span refreshes a span or two, and calls cost as much as the bits.
 */
static inline __attribute__((always_inline)) uint32_t
sa_span_unmark(struct sa_uspan *s, uint32_t w, uint64_t f)
{
	if (sa_unlikely(f & ~s->alloc_bits[w]))
		sa_span_unmark_bad(s, w, f);
	sa_prof_freed(s, w, f);
	s->alloc_bits[w] &= ~f;
	return sa_popcount64(f);
}

/*
 * Takes the frees recorded in localFree and freeBits into allocBits;
 * returns how many.
 */
static inline __attribute__((always_inline)) uint32_t sa_span_collect(struct sa_uspan *s)
{
	uint32_t local = 0, remote = 0, words = sa_span_words(s);

	for (uint32_t w = 0; w < words; w++) {
		if (s->local_free[w]) {
			local += sa_span_unmark(s, w, s->local_free[w]);
			s->local_free[w] = 0;
		}
		if (atomic_load_explicit(&s->free_bits[w], memory_order_relaxed))
			remote += sa_span_unmark(s, w, atomic_exchange(&s->free_bits[w], 0));
	}
	s->alloc_count -= local + remote;
	s->freed_local += local;
	return local + remote;
}

/*
 * Frees object idx of s, from any thread: one atomic OR. Returns 1 if the
 * caller must adopt s (it was returned FULL and nobody holds it), 0 if
 * not, -1 for a double free (nothing changed). After it returns 0 the
 * caller must not touch s: the span may already be someone else's.
 */
int sa_span_free(struct sa_uspan *s, uint32_t idx)
{
	uint64_t bit = 1ULL << (idx % 64);

	if (atomic_fetch_or(&s->free_bits[idx / 64], bit) & bit)
		return -1;
	/* after the OR: see "Who holds a span" in internal.h */
	if (atomic_load(&s->adoptable) && sa_span_claim(s))
		return 1;
	return 0;
}

/*
 * The holder returned s FULL and the kernel took it: make it adoptable,
 * unless frees arrived meanwhile. Returns true if the caller must keep
 * holding it (adopt it itself) because they did.
 */
bool sa_span_publish_full(struct sa_uspan *s)
{
	uint32_t words = sa_span_words(s);

	atomic_store(&s->adoptable, 1);
	for (uint32_t w = 0; w < words; w++)
		if (atomic_load(&s->free_bits[w]))
			return sa_span_claim(s);
	return false;
}

/* Marks objects [0, upto) allocated in allocBits, as freeindex implies. */
static inline __attribute__((always_inline)) void sa_span_fill_bits(struct sa_uspan *s, uint32_t upto)
{
	uint32_t w;

	for (w = 0; w < upto / 64; w++)
		s->alloc_bits[w] = ~0ULL;
	if (upto % 64)
		s->alloc_bits[w] |= (1ULL << (upto % 64)) - 1;
}

/*
 * The objects handed out since taken_from: the free slots freeindex has
 * passed, since allocBits do not change between refreshes and allocation
 * takes every free slot it passes.
 */
static inline __attribute__((always_inline)) uint32_t
sa_span_taken_in(const struct sa_uspan *s)
{
	uint32_t from = s->taken_from, to = s->freeindex, n = 0;

	while (from < to) {
		uint32_t end = (from | 63) + 1 < to ? (from | 63) + 1 : to;
		uint64_t m = end - from == 64 ? ~0ULL : ((1ULL << (end - from)) - 1) << (from % 64);

		n += sa_popcount64(~s->alloc_bits[from / 64] & m);
		from = end;
	}
	return n;
}

uint32_t sa_span_taken_since(const struct sa_uspan *s)
{
	return sa_span_taken_in(s);
}

/* The frees the holder made into s and has not taken in yet. */
uint32_t sa_span_local_frees(const struct sa_uspan *s)
{
	uint32_t n = 0;

	for (uint32_t w = 0, words = sa_span_words(s); w < words; w++)
		n += sa_popcount64(s->local_free[w]);
	return n;
}

/* Counts n objects handed out, up to freeindex. */
static void sa_span_count_taken(struct sa_uspan *s, uint32_t n)
{
	s->alloc_count += n;
	s->taken += n;
	s->taken_from = s->freeindex;
}

/* Counts what was handed out since the last call, before the bits change. */
static inline __attribute__((always_inline)) void sa_span_account(struct sa_uspan *s)
{
	sa_span_count_taken(s, sa_span_taken_in(s));
}

/* Called with the span accounted (sa_span_refresh): allocation starts over. */
void sa_span_restart(struct sa_uspan *s)
{
	s->freeindex = 0;
	s->taken_from = 0;
	s->prof_rest = 0;
	s->alloc_cache = sa_span_word_cache(s, 0);
}

/*
 * Brings allocBits up to date for the holder: objects below upto are
 * allocated as freeindex implies, minus every free recorded since. The one
 * zeroing rule: once an object was freed, the span's objects may hold old
 * data (needzero). Returns how many frees were taken in.
 */
uint32_t sa_span_refresh(struct sa_uspan *s, uint32_t upto)
{
	uint32_t n;

	sa_span_account(s);
	sa_span_fill_bits(s, upto);
	n = sa_span_collect(s);
	if (n)
		s->needzero = 1;
	return n;
}

/* The calling thread just got s back from the kernel's partial lists. */
void sa_span_take(struct sa_uspan *s)
{
	sa_span_refresh(s, 0);
	/* its objects were handed out before, whatever was freed since */
	s->needzero = 1;
	sa_span_restart(s);
}

/*
 * Go's nextFreeIndex: the index of the next free object, taken, or nelems
 * when none is left below the end of the span. An empty cache means
 * nothing is free from freeindex to the end of its 64-object word, or,
 * with freeindex at the start of a word, that the word is not loaded yet.
 */
uint32_t sa_span_next_free(struct sa_uspan *s)
{
	uint32_t idx = s->freeindex, bit;
	uint64_t cache = s->alloc_cache;

	while (!cache) {
		if (idx % 64)
			idx = (idx | 63) + 1;
		if (idx >= s->nelems) {
			s->freeindex = s->nelems;
			s->alloc_cache = 0;
			return s->nelems;
		}
		cache = sa_span_word_cache(s, idx / 64);
		if (!cache)
			idx += 64;
	}
	bit = (uint32_t)__builtin_ctzll(cache);
	idx += bit;
	s->alloc_cache = (cache >> bit) >> 1;
	s->freeindex = idx + 1;
	return idx;
}

/* Whether a free into s waits to be taken in. */
bool sa_span_freed_into(const struct sa_uspan *s)
{
	for (uint32_t w = 0, words = sa_span_words(s); w < words; w++)
		if (s->local_free[w] | atomic_load_explicit(&s->free_bits[w], memory_order_relaxed))
			return true;
	return false;
}

/*
 * Whether s, which nobody allocates from, is known to have no free
 * object: every object counted in use as of its last count, which is
 * exact (a sweep's, a refresh's, or sa_span_account's at a used-up span),
 * and no free waiting. A settle would find that out at the cost of a
 * refresh and a restart.
 */
bool sa_span_known_full(const struct sa_uspan *s)
{
	return s->alloc_count == s->nelems && !sa_span_freed_into(s);
}

/*
 * The holder used s up (freeindex == nelems): take in what was freed since
 * and start over if anything was. Returns the number of objects freed.
 * With nothing freed, as at most span changes, only what was handed out
 * is counted: allocBits wait for the next refresh (freeindex already says
 * every object is allocated), which saves filling and scanning them here.
 */
uint32_t sa_span_reuse_freed(struct sa_uspan *s)
{
	return sa_span_reuse_known(s, sa_span_freed_into(s));
}

/*
 * sa_span_reuse_freed for a caller that has just asked
 * sa_span_freed_into(s) (freed): a free that came since waits for the
 * next refresh, as one that comes right after does.
 */
uint32_t sa_span_reuse_known(struct sa_uspan *s, bool freed)
{
	uint32_t n;

	if (!freed) {
		/*
		 * Used up since it started over: every slot free then is
		 * taken, and alloc_count, exact at the start, says how many
		 * were not (the bits need no counting).
		 */
		if (!s->taken_from)
			sa_span_count_taken(s, s->nelems - s->alloc_count);
		else
			sa_span_account(s);
		return 0;
	}
	n = sa_span_refresh(s, s->nelems);

	if (n)
		sa_span_restart(s);
	return n;
}

/*
 * In a forked child, a span another thread may have been changing when the
 * address space was copied (it no longer exists to finish): allocBits as
 * freeindex implies, less the frees recorded for objects still marked
 * allocated (a free half taken in may already be out of allocBits; it is
 * not taken twice), and the count from the bits. Returns whether s has a
 * free object; s starts over from its first.
 */
bool sa_span_settle_forked(struct sa_uspan *s)
{
	uint32_t words = sa_span_words(s), live = 0;

	sa_span_account(s);
	sa_span_fill_bits(s, s->freeindex);
	for (uint32_t w = 0; w < words; w++) {
		uint64_t f = s->local_free[w] |
			     atomic_exchange_explicit(&s->free_bits[w], 0, memory_order_relaxed);

		if (f & s->alloc_bits[w]) {
			s->needzero = 1;
			sa_prof_freed(s, w, f & s->alloc_bits[w]);
		}
		s->freed_local += sa_popcount64(s->local_free[w] & s->alloc_bits[w]);
		s->alloc_bits[w] &= ~f;
		s->local_free[w] = 0;
		live += sa_popcount64(s->alloc_bits[w]);
	}
	s->alloc_count = live;
	sa_span_restart(s);
	return live < s->nelems;
}

/*
 * The holder is done with s, or takes it up again after keeping it aside:
 * make allocBits and alloc_count exact, so that whoever holds it next (or
 * the decision to return it EMPTY, PARTIAL or FULL) can trust them, and
 * start over from the first free object. Returns whether s has one.
 */
bool sa_span_settle(struct sa_uspan *s)
{
	sa_span_refresh(s, s->freeindex);
	sa_span_restart(s);
	return s->alloc_count < s->nelems;
}
