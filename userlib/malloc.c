// SPDX-License-Identifier: MIT
/*
 * malloc: the public allocation entry points (Go's malloc.go).
 *
 * Allocating a small object, fastest first:
 *  1. size -> size class by table lookup; span class = class << 1 | noscan;
 *  2. the thread's active span of that class: count trailing zeros of its
 *     allocCache gives the next free object (sa_span_next_fast, a few
 *     instructions, no atomics, no locks);
 *  3. otherwise the rest of that span's bitmap, then the frees other
 *     threads recorded in it (sa_tcache_refill);
 *  4. otherwise one exchange system call: the used-up span goes back, the
 *     next comes from the kernel's per-CPU cache, central lists or pages.
 * Objects are zeroed only when their span says its memory may be dirty.
 *
 * Noscan objects under 16 bytes go to the tiny allocator, which packs them
 * into 16-byte blocks (tiny.h). Objects over 32 KiB get a span of their own
 * (one system call to allocate, one to free).
 *
 * Freeing sets the object's bit in its span's localFree when the span is
 * the thread's own, else in its freeBits with one atomic OR; the span's
 * holder folds those bits in when it runs out. Steps 1 and 2 and the
 * owner's free are the fast paths, inlined from fastpath.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fastpath.h"

static pthread_once_t sa_once = PTHREAD_ONCE_INIT;

static void sa_do_init(void)
{
	sa_heap_init();
}

int sa_init(void)
{
	pthread_once(&sa_once, sa_do_init);
	if (sa_g.err) {
		errno = sa_g.err;
		return -1;
	}
	return 0;
}

const char *sa_strerror(void)
{
	return sa_g.msg;
}

static __attribute__((noinline, cold)) struct sa_tcache *sa_tcache_get_slow(void)
{
	struct sa_tcache *c;

	if (sa_init())
		return NULL;
	c = sa_tc ? sa_tc : sa_tcache_create();
	if (!c && !errno)
		errno = ENOMEM;
	return c;
}

static inline struct sa_tcache *sa_tcache_get(void)
{
	struct sa_tcache *c = sa_tc;

	return sa_likely(c) ? c : sa_tcache_get_slow();
}

struct sa_tcache *sa_tcache_current(void)
{
	return sa_tcache_get();
}

/*
 * One object of span class sc, zeroed when zero is set (else as the span
 * has it); 0 with errno on failure.
 */
static inline uintptr_t sa_alloc_obj(struct sa_tcache *c, uint16_t sc, bool zero)
{
	struct sa_uspan *s = c->alloc[sc];
	uintptr_t p;

	if (sa_unlikely(!s) || (p = sa_span_next_fast(s)) == 0) {
		p = sa_tcache_refill(c, sc);
		if (!p)
			return 0;
		s = c->alloc[sc];
	}
	if (zero && s->needzero)
		sa_zero_object(p, s->elemsize);
	return p;
}

static void sa_bad_pointer(const void *p, const char *what)
{
	fprintf(stderr, "spanalloc: %s: %p is not an object of this heap; aborting\n",
		what, p);
	abort();
}

/* A free into another thread's span, or one that must adopt: out of line. */
static __attribute__((noinline)) void sa_free_slot_slow(struct sa_tcache *c,
							struct sa_uspan *s,
							uint32_t idx, int r)
{
	if (r == 0 && atomic_load_explicit(&s->owner, memory_order_relaxed) != c)
		r = sa_span_free(s, idx);
	if (r == 0)
		return;
	if (r < 0)
		sa_span_bad_free(s, (void *)sa_span_object(s, idx),
				 "double free");
	sa_tcache_adopt(c, s);
	if (c->nadopted >= SA_MAX_BATCH / 2)
		sa_tcache_return_adopted(c, SA_ADOPTED_BUSY);
}

/* Frees object idx of s, which may be another thread's span. */
static inline __attribute__((always_inline)) void
sa_free_slot(struct sa_tcache *c, struct sa_uspan *s, uint32_t idx)
{
	if (sa_likely(atomic_load_explicit(&s->owner, memory_order_relaxed) == c)) {
		if (sa_likely(sa_span_free_local(s, idx) == 0))
			return;
		sa_free_slot_slow(c, s, idx, -1);
		return;
	}
	sa_free_slot_slow(c, s, idx, 0);
}

static struct sa_uspan *sa_tiny_span(uintptr_t block, uint32_t *idx)
{
	struct sa_uspan *s = sa_span_of((void *)block);

	*idx = sa_span_index(s, block);
	return s;
}

void sa_tiny_retire(struct sa_tcache *c)
{
	uint32_t idx, freed;
	struct sa_uspan *s;

	if (!c->tiny)
		return;
	if (c->tiny_off < SA_TINY_SIZE) {
		s = sa_tiny_span(c->tiny, &idx);
		if (!sa_tiny_release(c->tiny_mask, c->tiny_off, &freed))
			sa_span_bad_free(s, (void *)(c->tiny + c->tiny_off),
					 "free of a tiny block's unused part");
		if (freed)
			sa_free_slot(c, s, idx);
	}
	c->tiny = 0;
	c->tiny_off = SA_TINY_SIZE;	/* no block: the next starts one */
	c->tiny_mask = NULL;
}

/* A tiny object asked for as req bytes, sz with the end pad (sa_tiny_wanted). */
static void *sa_alloc_tiny(struct sa_tcache *c, uint32_t req, uint32_t sz)
{
	uint32_t carved = sa_tiny_round(sz), idx;
	struct sa_uspan *s;
	uintptr_t p;
	void *obj = sa_fast_tiny(c, req, sz);

	if (obj)
		return obj;
	if (c->tiny && sa_tiny_align(c->tiny_off, sa_tiny_alignment(req)) + carved <= SA_TINY_SIZE) {
		/* room, yet no carve: the rest of the block was freed */
		s = sa_tiny_span(c->tiny, &idx);
		sa_span_bad_free(s, (void *)(c->tiny + c->tiny_off),
				 "free of a tiny block's unused part");
	}
	sa_tiny_retire(c);
	/* always zeroed: later tiny objects from the block must be */
	p = sa_alloc_obj(c, SA_TINY_SC, true);
	if (!p)
		return NULL;
	s = sa_tiny_span(p, &idx);
	atomic_store_explicit(&s->tiny[idx], sa_tiny_fresh(), memory_order_relaxed);
	c->tiny = p;
	c->tiny_mask = &s->tiny[idx];
	c->tiny_off = 0;
	return sa_fast_tiny(c, req, sz);
}

/*
 * A large object of size bytes at an address aligned to align (a power of
 * two; up to a heap page, every large object is), zeroed if zero is set.
 * A larger alignment takes a span that much longer and starts the object
 * inside it; the span records the offset (freeindex, unused otherwise).
 * Only noscan objects get an offset (sa_aligned): the marker scans a large
 * object from its span's base.
 */
static __attribute__((noinline, cold)) void *sa_alloc_large(struct sa_tcache *c, size_t size,
						       bool noscan, bool zero, size_t align)
{
	size_t extra = align > SA_PAGE_SIZE ? align - SA_PAGE_SIZE : 0;
	struct spanalloc_span d;
	struct sa_uspan *s;
	uintptr_t p;
	int err;

	/* a span record keeps 32-bit sizes: 4 GiB less a page at most */
	if (size > sa_g.maplen || extra > sa_g.maplen - size ||
	    size + extra > UINT32_MAX - SA_PAGE_SIZE + 1) {
		errno = ENOMEM;
		return NULL;
	}
	size += extra;
	err = sa_kernel_large((uint32_t)((size + SA_PAGE_SIZE - 1) >> SA_PAGE_SHIFT),
			      noscan, &d);
	if (err) {
		errno = -err;
		return NULL;
	}
	s = sa_uspan_alloc(d.spanclass, d.npages);
	if (!s) {
		sa_kernel_return_empty(d.handle);
		errno = ENOMEM;
		return NULL;
	}
	sa_span_setup(s, d.addr, d.handle, d.npages, d.spanclass, d.needzero);
	p = (d.addr + align - 1) & ~(uintptr_t)(align - 1);
	s->freeindex = (uint32_t)(p - d.addr);
	atomic_store_explicit(&s->where, SA_WHERE_LARGE, memory_order_release);
	sa_pagemap_set(s, s);
	if (zero && d.needzero)
		memset((void *)p, 0, s->elemsize - s->freeindex);
	SA_STAT_ADD(c->st.large, 1);
	SA_STAT_ADD(c->st.large_bytes, s->elemsize);
	sa_prof_charge(c, NULL, s->elemsize);
	sa_gc_note_alloc(c, s->elemsize);
	return (void *)p;
}

static __attribute__((noinline, cold)) void sa_free_large(struct sa_tcache *c, struct sa_uspan *s,
							  const void *p)
{
	if ((uintptr_t)p != s->base + s->freeindex)
		sa_span_bad_free(s, p, "free of a pointer into a large object");
	/* the sweeper must not be looking at it when the record goes */
	sa_sweep_claim_taken(s);
	SA_STAT_ADD(c->st.large_freed, 1);
	SA_STAT_ADD(c->st.freed_bytes, s->elemsize);
	sa_large_release(s);
}

/* The whole allocation path, inside the caller's no-safe-point region. */
static void *sa_malloc_in(struct sa_tcache *c, size_t size, bool noscan, bool zero)
{
	size_t req = size;
	uint16_t sc;

	/* an end pointer lands inside its object (gc.h: end_pad); SIZE_MAX stays */
	size += sa_gc.end_pad & (size != SIZE_MAX);
	if (sa_tiny_wanted(req, size, noscan))
		return sa_alloc_tiny(c, (uint32_t)req, (uint32_t)size);
	if (sa_unlikely(size > SPANALLOC_MAX_SMALL_SIZE))
		return sa_alloc_large(c, size, noscan, zero, SA_PAGE_SIZE);
	sc = sa_spanclass_of(size, noscan);
	return (void *)sa_alloc_obj(c, sc, sa_must_zero(size, noscan, zero));
}

/*
 * The kernel refused memory: in a collected heap, collect and try once
 * more before failing, as Go and Boehm do (a limit or a memory cgroup
 * reached with garbage in the heap is not out of memory yet).
 */
static __attribute__((noinline, cold)) void *sa_alloc_after_gc(struct sa_tcache *c, size_t size,
							      bool noscan, bool zero)
{
	void *p;

	/* not for what no heap could hold, nor when collections are off */
	if (errno != ENOMEM || !sa_gc_on() || size >= sa_g.maplen ||
	    atomic_load(&sa_gc.disabled) || sa_gc_cycle_held)
		return NULL;
	sa_gc_collect();
	sa_safe_enter(c);
	p = sa_malloc_in(c, size, noscan, zero);
	sa_safe_exit(c);
	return p;
}

/* The fast path's object, too big to zero inline, zeroed and returned. */
__attribute__((noinline)) void *sa_fast_zero(uintptr_t p, uint32_t size)
{
	memset((void *)p, 0, size);
	return (void *)p;
}

/* The fast path's object, when its region ended with a stop waiting. */
__attribute__((noinline, cold)) void *sa_fast_late(struct sa_tcache *c, uintptr_t p,
						   uint32_t size, bool dirty)
{
	(void)sa_fast_stop(c, (void *)p);
	if (dirty)
		sa_zero_object(p, size);
	return (void *)p;
}

/*
 * The active span s is used up: when what was freed into it since (by
 * this thread, or by others) makes room, allocation starts over in it
 * here, as mimalloc's page collect does; else, when the thread keeps
 * spans aside, one of those may take its place (sa_tcache_change_span).
 * Both at a fraction of the slow path's cost (its no-stop region, the
 * refill's housekeeping: decay, hand-off, tiny counts). Every
 * SA_REUSE_HOUSEKEEPING-th time, or when decayed spans wait, the slow
 * path does it instead, so that the housekeeping runs for a thread that
 * lives on one span too. Not with heap profile samples in s: taking in
 * their frees locks. decay_ms is read atomically: a taker may be
 * clearing it (handoff.c). Returns the object taken, or 0. Inside the
 * fast path's region.
 */
#define SA_REUSE_HOUSEKEEPING	8
static inline uintptr_t sa_reuse_in_place(struct sa_tcache *c, struct sa_uspan *s)
{
	c->used_up++;
	if (!(c->used_up % SA_REUSE_HOUSEKEEPING) || c->decayed ||
	    atomic_load_explicit(&s->nsampled, memory_order_relaxed))
		return 0;
	if (atomic_load_explicit(&c->decay_ms, memory_order_relaxed))
		return sa_tcache_change_span(c, s);
	return sa_tcache_reuse_freed(c, s);
}

/*
 * The fast path found the active span's cache empty: most often it ran
 * out at the end of a word of the span's bitmap, with free objects further
 * on. The next word's, loaded in a fast path's region as Go's nextFree
 * refills allocCache, costs a few dozen instructions where the whole slow
 * path (its no-stop region, the refill's housekeeping) costs some 400,
 * once per 64 objects. NULL when the slow path must do it: no active span
 * or no free object left in it, a sweep or a profile cut pending (read in
 * the region: a collection in between would empty the cache again), or
 * profiling on (the slow path charges every cache it hands out).
 */
static inline void *sa_alloc_next_word(struct sa_tcache *c, size_t size, bool noscan,
				       bool zero)
{
	/* SIZE_MAX plus the end pad wraps to 0, as in the fast path */
	size_t sz = size + sa_gc.end_pad;
	struct sa_uspan *s;
	uint32_t idx, elemsize;
	uintptr_t p;
	uint16_t sc;
	bool dirty;

	if (sz - 1 >= SPANALLOC_MAX_SMALL_SIZE || sa_tiny_wanted(size, sz, noscan) ||
	    atomic_load_explicit(&sa_prof_rate, memory_order_relaxed))
		return NULL;
	sc = sa_spanclass_of(sz, noscan);
	sa_fast_enter(c);
	/*
	 * Inside the region, as in the fast path; and not while a taker is
	 * at c's spans (handoff.c): it may clear c->alloc[], read again below.
	 */
	s = __atomic_load_n(&c->alloc[sc], __ATOMIC_RELAXED);
	if (!s || atomic_load_explicit(&c->taking, memory_order_acquire) || s->prof_rest ||
	    sa_sweep_needed(s))
		goto slow;
	idx = sa_span_next_free(s);
	if (idx < s->nelems)
		p = sa_span_object(s, idx);
	else if (!(p = sa_reuse_in_place(c, s)))
		goto slow;
	/* busy, for a taker (handoff.c): one plain add */
	atomic_store_explicit(&c->words,
			      atomic_load_explicit(&c->words, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	/* the span may have changed */
	s = c->alloc[sc];
	dirty = sa_must_zero(sz, noscan, zero) && s->needzero;
	elemsize = s->elemsize;
	return sa_fast_hand_out(c, p, elemsize, dirty);
slow:
	sa_fast_exit(c);
	return NULL;
}

/* Everything the fast path leaves: the whole path, safe points kept. */
__attribute__((noinline)) void *sa_alloc_slow(size_t size, bool noscan, bool zero)
{
	struct sa_tcache *c = sa_tcache_get();
	void *p;

	if (sa_unlikely(!c))
		return NULL;
	p = sa_alloc_next_word(c, size, noscan, zero);
	if (p)
		return p;
	sa_safe_enter(c);
	p = sa_malloc_in(c, size, noscan, zero);
	sa_safe_exit(c);
	if (sa_unlikely(!p))
		p = sa_alloc_after_gc(c, size, noscan, zero);
	return sa_prof_done(c, p);
}

static inline __attribute__((always_inline)) void *sa_allocate(size_t size, bool noscan,
							       bool zero)
{
	return sa_fast_alloc(size, noscan, zero, false, sa_alloc_slow);
}

void *sa_alloc(size_t size)
{
	return sa_allocate(size, false, true);
}

void *sa_alloc_noscan(size_t size)
{
	return sa_allocate(size, true, true);
}

/* sa_malloc's slow path: never a tiny object (fastpath.h: sa_malloc_size) */
static __attribute__((noinline)) void *sa_malloc_slow(size_t size, bool noscan, bool zero)
{
	return sa_alloc_slow(sa_malloc_size(size, sa_gc.end_pad), noscan, zero);
}

void *sa_malloc(size_t size)
{
	return sa_fast_alloc(size, true, false, true, sa_malloc_slow);
}

void *sa_calloc(size_t n, size_t size)
{
	size_t bytes;

	if (__builtin_mul_overflow(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	return sa_allocate(bytes, false, true);
}

/*
 * The smallest size class whose objects are all aligned to align (a power
 * of two up to a heap page) and hold size bytes: spans start on heap pages,
 * so a class whose size is a multiple of align has every object aligned.
 * 0 when no small class does (the object is large).
 */
static unsigned int sa_aligned_class(size_t size, size_t align)
{
	if (size < align)
		size = align;
	for (unsigned int k = size <= SPANALLOC_MAX_SMALL_SIZE ? sa_class_of(size) : 0;
	     k && k < SPANALLOC_NUM_CLASSES; k++)
		/* noscan 16-byte spans are the tiny allocator's */
		if (sa_class_size(k) % align == 0 && SPANALLOC_SPANCLASS(k, 1) != SA_TINY_SC)
			return k;
	return 0;
}

/* align: a power of two (not checked here); not zeroed, never scanned. */
static void *sa_aligned(size_t align, size_t size)
{
	struct sa_tcache *c;
	unsigned int k;
	void *r;

	c = sa_tcache_get();
	if (sa_unlikely(!c))
		return NULL;
	/* never the tiny allocator: it packs objects at any offset */
	k = align <= SA_PAGE_SIZE ? sa_aligned_class(size ? size : 1, align) : 0;
	sa_safe_enter(c);
	if (k) {
		uint16_t sc = (uint16_t)SPANALLOC_SPANCLASS(k, 1);

		r = (void *)sa_alloc_obj(c, sc, false);
	} else {
		r = sa_alloc_large(c, size ? size : 1, true, false,
				   align < SA_PAGE_SIZE ? SA_PAGE_SIZE : align);
	}
	sa_safe_exit(c);
	return sa_prof_done(c, r);
}

void *sa_aligned_alloc(size_t align, size_t size)
{
	if (!align || (align & (align - 1))) {
		errno = EINVAL;
		return NULL;
	}
	return sa_aligned(align, size);
}

int sa_posix_memalign(void **out, size_t align, size_t size)
{
	int saved = errno;
	void *p;

	if (!align || (align & (align - 1)) || align % sizeof(void *))
		return EINVAL;
	p = sa_aligned(align, size);
	/* POSIX: errno untouched; no memory is the one other failure */
	errno = saved;
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

/* Records object idx's pointer map; without a table it stays conservative. */
void sa_types_set(struct sa_uspan *s, uint32_t idx, const struct sa_type *t)
{
	if (!s->types) {
		if (!t)
			return;
		s->types = sa_types_table_alloc(s->kind);
		if (!s->types)
			return;
		/* its frees must clear their types: not the fast path's work */
		s->fastfree = 0;
		sa_span_set_owner(s, atomic_load_explicit(&s->owner, memory_order_relaxed));
	}
	s->types[idx] = t;
}

void *sa_alloc_typed(size_t size, const struct sa_type *type)
{
	struct sa_tcache *c;
	struct sa_uspan *s;
	void *p;

	if (!type || !type->size || type->size % sizeof(void *) ||
	    size % type->size || !type->ptrmask) {
		errno = EINVAL;
		return NULL;
	}
	c = sa_tcache_get();
	if (sa_unlikely(!c))
		return NULL;
	sa_safe_enter(c);
	p = sa_malloc_in(c, size ? size : type->size, false, true);
	if (p) {
		s = sa_span_of(p);
		sa_types_set(s, s->spanclass < 2 ? 0 : sa_span_index(s, (uintptr_t)p), type);
	}
	sa_safe_exit(c);
	return sa_prof_done(c, p);
}

/*
 * A tiny object that the fast path refused: nothing starts at p (its
 * last free emptied a block, sa_free_tiny_block, or it never was).
 */
static __attribute__((noinline)) void sa_free_tiny(struct sa_tcache *c, struct sa_uspan *s,
						   uintptr_t p)
{
	if (!sa_fast_free_tiny(c, s, p))
		sa_span_bad_free(s, (void *)p, "double free or invalid free of a tiny object");
}

/*
 * The last tiny object of block idx of s is gone: the block (a 16-byte
 * object of s) is freed. Only the objects' bytes count as freed: the
 * block's were never counted allocated. Called in a no-safe-point region
 * the caller entered; leaves it. A free keeps errno (the drop-in's must).
 */
static __attribute__((noinline)) void sa_free_tiny_block(struct sa_tcache *c,
							 struct sa_uspan *s, uint32_t idx)
{
	int saved = errno;

	/* a thread that only frees tiny objects reaches no refill */
	sa_tcache_harvest_tiny(c);
	sa_free_slot(c, s, idx);
	sa_safe_exit(c);
	errno = saved;
}

/*
 * A tiny free emptied the block of s that p lies in, in the fast free's
 * region, which this leaves: the block goes too, as a local free when s
 * is c's own (the common case, a few instructions), else through
 * sa_free_tiny_block. Out of line, so that the fast free stays a leaf
 * without a frame. The block is still allocated until then: no stop
 * before it is freed, or a sweep could free it first.
 */
__attribute__((noinline)) void sa_free_tiny_emptied(struct sa_tcache *c, struct sa_uspan *s,
						    uintptr_t p)
{
	uint32_t idx = (uint32_t)((p - s->base) / SA_TINY_SIZE);

	if (atomic_load_explicit(&s->owner, memory_order_relaxed) != c ||
	    sa_unlikely(sa_span_free_local(s, idx))) {
		sa_safe_enter(c);
		sa_fast_exit(c);
		sa_free_tiny_block(c, s, idx);
		return;
	}
	(void)sa_fast_done(c, s);
}

/* Frees ptr, an object of s, with c's counters and span lists. */
static void sa_free_in(struct sa_tcache *c, struct sa_uspan *s, void *ptr)
{
	uintptr_t p = (uintptr_t)ptr, obj;
	uint32_t idx;

	if (sa_unlikely(s->spanclass < 2)) {
		sa_safe_enter(c);
		sa_free_large(c, s, ptr);
		sa_safe_exit(c);
		return;
	}
	idx = sa_span_index(s, p);
	obj = sa_span_object(s, idx);
	if (sa_unlikely(idx >= s->nelems))
		sa_bad_pointer(ptr, "free");
	sa_safe_enter(c);
	if (s->spanclass == SA_TINY_SC) {
		sa_free_tiny(c, s, p);
	} else {
		if (sa_unlikely(obj != p))
			sa_span_bad_free(s, ptr, "free of a pointer into an object");
		/* a free into c's own span is counted when c collects it */
		if (atomic_load_explicit(&s->owner, memory_order_relaxed) != c) {
			SA_STAT_ADD(c->st.freed, 1);
			SA_STAT_ADD(c->st.freed_bytes, s->elemsize);
		}
		if (s->types)
			s->types[idx] = NULL;
		sa_free_slot(c, s, idx);
	}
	sa_safe_exit(c);
}

/*
 * A thread whose cache is gone may still free: TSD destructors that run
 * after the library's, and glibc's own thread-exit cleanup. A cache made
 * for those frees would never be destroyed (the destructors have run), so
 * they go through one shared cache, under a lock, which hands back at once
 * any span they adopt. Only threads that are exiting come here.
 */
static struct sa_tcache sa_orphan;
static pthread_mutex_t sa_orphan_lock = PTHREAD_MUTEX_INITIALIZER;

static __attribute__((noinline, cold)) void sa_free_orphan(struct sa_uspan *s, void *ptr)
{
	pthread_mutex_lock(&sa_orphan_lock);
	sa_free_in(&sa_orphan, s, ptr);
	sa_tcache_return_adopted(&sa_orphan, 0);
	sa_tcache_harvest_tiny(&sa_orphan);
	pthread_mutex_lock(&sa_g.lock);
	sa_counters_add(&sa_g.dead, &sa_orphan.st);
	memset(&sa_orphan.st, 0, sizeof(sa_orphan.st));
	pthread_mutex_unlock(&sa_g.lock);
	pthread_mutex_unlock(&sa_orphan_lock);
}

/* fork(): taken before sa_g.lock, which the orphan path takes inside it. */
void sa_orphan_fork(enum sa_fork_phase phase)
{
	sa_fork_mutex(&sa_orphan_lock, phase);
}

/* Everything sa_free's fast path leaves: the whole path, safe points kept. */
__attribute__((noinline)) void sa_free_slow(void *ptr)
{
	struct sa_uspan *s = sa_span_of(ptr);
	struct sa_tcache *c;

	if (!ptr)
		return;
	if (sa_unlikely(!s))
		sa_bad_pointer(ptr, "free");
	c = sa_tc;
	if (sa_unlikely(!c)) {
		if (sa_tc_gone) {
			sa_free_orphan(s, ptr);
			return;
		}
		c = sa_tcache_get_slow();
		if (!c)
			sa_bad_pointer(ptr, "free (no memory for a thread cache)");
	}
	sa_free_in(c, s, ptr);
}

__attribute__((noinline)) void sa_free_tiny_fast(struct sa_tcache *c, struct sa_uspan *s,
						 void *ptr, sa_free_fn *slow)
{
	if (c == &sa_tc_none) {
		sa_fast_exit(c);
		slow(ptr);
	} else if (!sa_fast_free_tiny_in(c, s, (uintptr_t)ptr)) {
		slow(ptr);
	}
}

void sa_free(void *ptr)
{
	sa_fast_free(ptr, sa_free_slow);
}

size_t sa_usable_size(const void *ptr)
{
	uintptr_t p = (uintptr_t)ptr, obj;
	struct sa_uspan *s;
	uint32_t idx;

	if (!ptr)
		return 0;
	s = sa_span_of(ptr);
	if (!s)
		return 0;
	if (s->spanclass < 2)
		return s->elemsize - (p - s->base);
	idx = sa_span_index(s, p);
	if (idx >= s->nelems)
		return 0;
	obj = sa_span_object(s, idx);
	if (s->spanclass == SA_TINY_SC)
		return sa_tiny_usable(atomic_load(&s->tiny[idx]), (uint32_t)(p - obj));
	return s->elemsize - (p - obj);
}

/*
 * Whether an object of usable bytes at p may stay where it is for size
 * bytes: the same size class (a smaller one would save nothing a span does
 * not already hold), or a large object that still fills over half its span.
 */
static bool sa_fits_in_place(const struct sa_uspan *s, size_t usable, size_t size)
{
	if (size > usable)
		return false;
	if (s->spanclass < 2)
		return size > SPANALLOC_MAX_SMALL_SIZE && size > usable / 2;
	if (s->spanclass == SA_TINY_SC)
		return true;
	return sa_class_of(size) == s->spanclass >> 1;
}

void *sa_realloc(void *ptr, size_t size)
{
	struct sa_uspan *s;
	size_t usable;
	void *q;

	if (!ptr)
		return sa_malloc(size);
	if (!size) {		/* as glibc: free, and no object */
		sa_free(ptr);
		return NULL;
	}
	s = sa_span_of(ptr);
	if (sa_unlikely(!s))
		sa_bad_pointer(ptr, "realloc");
	/* the start of an object (a tiny one may start anywhere in its block) */
	if (s->spanclass < 2 ? (uintptr_t)ptr != s->base + s->freeindex :
	    s->spanclass != SA_TINY_SC &&
	    ((uintptr_t)ptr - s->base) % s->elemsize)
		sa_span_bad_free(s, ptr, "realloc of a pointer into an object");
	usable = sa_usable_size(ptr);
	if (sa_fits_in_place(s, usable, size))
		return ptr;
	/* the copy keeps the kind: a scanned object stays scanned (and zeroed) */
	q = s->spanclass & 1 ? sa_malloc(size) : sa_alloc(size);
	if (!q)
		return NULL;
	memcpy(q, ptr, usable < size ? usable : size);
	sa_free(ptr);
	return q;
}

size_t sa_malloc_usable_size(void *p)
{
	return sa_usable_size(p);
}

void sa_thread_flush(void)
{
	struct sa_tcache *c = sa_tc;

	if (!c)
		return;
	sa_safe_enter(c);
	sa_tcache_flush(c);
	sa_safe_exit(c);
}
