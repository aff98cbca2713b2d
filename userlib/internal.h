/* SPDX-License-Identifier: MIT */
/*
 * libspanalloc internals: every type, its layout and who may touch what.
 *
 * Objects live in spans the kernel hands out. For each span the library
 * keeps a struct sa_uspan (user span) with Go's allocation state:
 *
 *   allocBits   bit i set: object i was allocated when the bits were last
 *               brought up to date. Only the span's holder writes them.
 *   freeindex   objects below it are allocated (or were skipped as in
 *               use); allocation searches upwards from it, so allocating
 *               never writes allocBits (Go's trick).
 *   allocCache  ~allocBits of the 64 objects from freeindex rounded down,
 *               shifted as objects are taken: count-trailing-zeros finds
 *               the next free object in one instruction.
 *   freeBits    bit i set: object i was freed since the holder last looked.
 *               Any thread sets bits here (atomic OR); the holder takes
 *               them with atomic exchange and clears them from allocBits.
 *   localFree   the same for frees by the thread whose active or held
 *               span it is (owner): plain stores, no atomics, as mimalloc's
 *               local free list. Most frees in most programs take this path.
 *
 * Who holds a span: its active thread (OWNED: only that thread allocates
 * from it and touches its plain fields), a thread that used it up and
 * keeps it for the frees to come (held, also OWNED), a thread that
 * adopted it, the kernel (on a partial or full list), or nobody but a
 * large object. Only a holder collects freeBits and decides what to return.
 *
 * A span returned FULL is held by nobody while frees may still arrive. The
 * first free into it must adopt it (hold it, and hand it back as PARTIAL
 * or EMPTY). A free is one atomic OR on its freeBits word, and only then
 * does it look at adoptable, set while the span is returned FULL and held
 * by nobody; whoever clears adoptable with a CAS holds the span. The
 * publisher sets adoptable and then looks at freeBits (both sequentially
 * consistent, so of a free and a publish that race, at least one sees the
 * other): a free it finds makes it take the span back with the same CAS.
 * Exactly one side holds the span, and none is left unheld with a free in
 * it. A free may read adoptable of a record recycled since: a record that
 * is adoptable is a span returned FULL that nobody holds, whoever holds it
 * next, so winning its CAS is a legitimate adoption.
 *
 * pagemap maps each heap page to the uspan holding it; a span's entries are
 * set when the library first sees the span and cleared before the span is
 * returned EMPTY (so that no other thread can be given the pages while a
 * stale entry remains).
 */
#ifndef SPANALLOC_INTERNAL_H
#define SPANALLOC_INTERNAL_H

#include <linux/spanalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include "spanalloc.h"
#include "tiny.h"	/* the 16-byte block masks */

/*
 * Everything declared from here on is the library's own: hidden, so that
 * it is neither exported nor interposable, and calls to it bind directly.
 */
#pragma GCC visibility push(hidden)

#define SA_PAGE_SHIFT	SPANALLOC_PAGE_SHIFT
#define SA_PAGE_SIZE	((uintptr_t)1 << SA_PAGE_SHIFT)
#define SA_NSC		SPANALLOC_NUM_SPANCLASSES
#define SA_TINY_SIZE	16
#define SA_TINY_SC	SPANALLOC_SPANCLASS(2, 1)	/* 16 B noscan */
#define SA_MAX_BATCH	32

/*
 * A conservative collector reads memory other threads may be writing: the
 * data segments, which unregistered threads and the collector itself
 * write while markers scan them, and span state read by sa_base() while
 * its holder allocates (gc.c says why the answer is right). Those readers
 * are left out of ThreadSanitizer's instrumentation, as Boehm GC leaves
 * out its marker (GC_ATTR_NO_SANITIZE_THREAD); everything else is checked.
 */
#define SA_NO_TSAN	__attribute__((no_sanitize_thread))
/* A ThreadSanitizer build (GCC says so one way, clang another). */
#if defined(__SANITIZE_THREAD__)
#define SA_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SA_TSAN 1
#endif
#endif

#define sa_likely(x)	__builtin_expect(!!(x), 1)
#define sa_unlikely(x)	__builtin_expect(!!(x), 0)

/*
 * A record's four bitmaps (allocBits, localFree, freeBits, markBits) are as
 * long as its kind allows: SA_BITS_CAP words each. Kind 0, one word (spans
 * of at most 64 objects, and large objects), keeps them in the record; the
 * others in an extension of SA_BITS_EXT bytes made with the record. Both
 * are fixed for the record's life (sa_span_bind_bits), so that a record is
 * 256 bytes, not the 704 four 1024-bit maps took, and only spans of more
 * objects pay for longer ones: the classes under 64 bytes, and those the
 * library gives longer spans of over 64 objects (sa_span_pages_wanted).
 */
#define SA_BITS_KINDS	4
static const uint8_t sa_bits_cap[SA_BITS_KINDS] = { 1, 4, 8, 16 };

/* The kind of record a span of nelems objects takes. */
static inline uint8_t sa_bits_kind(uint32_t nelems)
{
	uint32_t w = (nelems + 63) / 64;

	return w <= 1 ? 0 : w <= 4 ? 1 : w <= 8 ? 2 : 3;
}

/*
 * An extension's bytes: the holder's two maps, then the two others write
 * (free and mark bits) from a cache line of their own.
 */
static inline size_t sa_bits_half(uint8_t kind)
{
	return ((size_t)sa_bits_cap[kind] * 16 + 63) & ~(size_t)63;
}
#define SA_BITS_EXT(kind)	((kind) ? 2 * sa_bits_half(kind) : 0)

struct sa_uspan {
	/*
	 * The fast paths' fields first, in one cache line: allocation reads
	 * and writes alloc_cache and freeindex (the holder's), free reads the
	 * fixed fields, fast_owner and local_free.
	 */
	uintptr_t base;			/* fixed while the span lives */
	uint64_t alloc_cache;		/* the holder's: see "Who holds a span" */
	/* fixed: UINT64_MAX / elemsize + 1, the free's divide (sa_span_exact) */
	uint64_t divmul;
	uint64_t *local_free;		/* fixed with the record */
	/*
	 * The cache whose active or held span this is, or NULL. Only that
	 * thread writes it, or a collection while that thread is stopped
	 * outside its no-stop regions (sa_tcache_decay_stopped), or a thread
	 * taking a held or active span from an idle one (handoff.c); others read it
	 * only to see that it is not theirs.
	 */
	_Atomic(struct sa_tcache *) owner;
	/*
	 * owner while fastfree is set, else NULL (sa_span_set_owner): the
	 * fast free's one test for both.
	 */
	_Atomic(struct sa_tcache *) fast_owner;
	uint32_t freeindex;		/* the holder's */
	uint32_t elemsize;		/* fixed */
	uint32_t nelems;		/* fixed */
	uint16_t spanclass;		/* fixed */
	uint8_t needzero;		/* the holder's: objects may hold old data */
	/*
	 * Set while the span is small, not tiny and has no types table: its
	 * owner's frees can take the fast path. The holder's.
	 */
	uint8_t fastfree;

	/* Fixed while the span lives, or with the record. */
	uint64_t handle;
	uint64_t *alloc_bits;
	_Atomic uint64_t *free_bits, *mark_bits;
	_Atomic(sa_tiny_mask) *tiny;	/* tiny spans: a block mask per object */
	/* typed objects: types[i] is object i's pointer map, or NULL (gc.h) */
	const struct sa_type **types;
	uint32_t npages;
	uint32_t divmagic;

	/* The holder's: see "Who holds a span". */
	/*
	 * Objects in use as of the last refresh (exact once settled): the
	 * fast path counts nothing. What it handed out since is the free
	 * slots freeindex passed from taken_from (sa_span_account), as Go
	 * counts a span's allocations at refill rather than per object.
	 */
	uint32_t alloc_count;
	uint32_t taken_from;
	/* handed out and freed locally, for the holder's statistics */
	uint32_t taken, freed_local;
	struct sa_uspan *next;		/* holder's lists; pool free list */
	struct sa_uspan *prev;		/* holder's held list */
	uint32_t held_gc;		/* collections when it was kept aside */
	uint32_t held_ms;		/* and the time, sa_coarse_ms() */
	uint8_t kind;			/* of its bitmaps, fixed with the record */
	uint64_t inl_holder[2];		/* kind 0: allocBits, localFree */

	/* Written by any thread: kept off the holder's cache lines. */
	_Alignas(64) _Atomic uint64_t inl_remote[2];	/* kind 0: freeBits, markBits */
	_Atomic uint32_t adoptable;	/* see "Who holds a span" */
	/*
	 * Collector state (gc.h). where says who holds the span, for the
	 * sweeper's benefit (SA_WHERE_*); sweepgen is Go's: sa_gc.sweepgen - 2
	 * unswept, - 1 being swept, equal swept. mark_bits are set by markers
	 * with atomic OR while the world is stopped and become allocBits when
	 * the span is swept.
	 */
	_Atomic uint32_t sweepgen;
	_Atomic uint8_t where;
	/* live heap profile samples in it (prof.c); changed under its lock */
	_Atomic uint32_t nsampled;
	/*
	 * The holder's: the part of the allocation cache held back from the
	 * fast path, so that it runs dry at a heap profile sample (prof.c),
	 * and freeindex when it was (0: nothing held back).
	 */
	uint64_t prof_rest;
	uint32_t prof_cut_at;
};

/* what bench section 6 and lib_test count on: four cache lines */
_Static_assert(sizeof(struct sa_uspan) == 256, "a span record is 256 bytes");

enum {
	SA_WHERE_NONE,		/* not a span: in the pool or being set up */
	SA_WHERE_THREAD,	/* a thread's active, held or adopted span */
	SA_WHERE_KPARTIAL,	/* returned PARTIAL: the kernel may hand it out */
	SA_WHERE_KFULL,		/* returned FULL: adoptable (sa_span_claim) */
	SA_WHERE_LARGE,		/* a large object */
};

/* Per-thread counters, read by sa_get_stats() while the thread runs. */
struct sa_counters {
	_Atomic uint64_t freed, tiny, large, large_freed, syscalls, spans_got,
		spans_returned, local_sweeps, adopted;
	_Atomic uint64_t tiny_bytes, large_bytes, freed_bytes;
	_Atomic uint64_t allocated[SA_NSC];
};

/* A counter only its thread writes: a plain add, readable by others. */
#define SA_STAT_ADD(field, n) \
	atomic_store_explicit(&(field), \
		atomic_load_explicit(&(field), memory_order_relaxed) + (n), \
		memory_order_relaxed)

/*
 * Spans a thread keeps besides its active ones (mcache.c): at most
 * sa_g.held_pages pages' worth per span class (but one span if any), and
 * SA_HELD_MAX spans in all.
 */
#define SA_HELD_PAGES	8	/* the default */
#define SA_HELD_PAGES_MAX	64
#define SA_HELD_MAX	64
/*
 * A span kept aside across this many collections without being taken
 * again goes back to the kernel (mcache.c), so an idle thread does not
 * pin memory in a collected heap.
 */
#define SA_HELD_DECAY_GCS	2
/*
 * And a span kept aside this long without being taken again goes back at
 * the thread's next refill, in manual and collected heaps alike; so do
 * adopted spans when the thread adopted none for as long. In a manual
 * heap another thread takes them, and its active spans, from a thread
 * that made no refill for twice as long (handoff.c). The default of
 * sa_set_held_decay_ms(): at 1000, allocbench larson's idle threads
 * (each waits in pthread_join once it handed its objects on) pinned
 * 64 MB at the peak, 20 MB at 100, at the same time within the noise
 * (python, xmalloc, cxx, cache-scratch alike: one 6.1 boot, 2026-12-03).
 */
#define SA_HELD_DECAY_MS	100
#define SA_HELD_DECAY_MS_MAX	(24u * 3600 * 1000)

/* The calling thread's cache (Go's mcache). */
struct sa_tcache {
	struct sa_uspan *alloc[SA_NSC];	/* active span per span class */
	/* used-up spans kept for their next frees, newest first, per class */
	struct sa_uspan *held[SA_NSC];
	struct sa_uspan *held_tail[SA_NSC];
	uint8_t nheld_class[SA_NSC];
	uint32_t nheld;
	/*
	 * When the thread last looked at the spans it keeps aside, or 0 if
	 * it keeps none (a hint, set again when it keeps one): a thread
	 * taking an idle thread's spans reads it (handoff.c).
	 */
	_Atomic uint32_t decay_ms;
	/*
	 * When the thread last refilled (sa_coarse_ms() stamp, and the
	 * collections by then), or 0 once its active spans were taken: a
	 * thread that makes no refill for as long as a held span may be kept
	 * has its active spans taken too (handoff.c, sa_tcache_decay_stopped),
	 * or an idle thread would pin one span of every class it used. Not the
	 * tiny allocator's: its current block lives in the thread's fields.
	 */
	_Atomic uint32_t active_ms;
	uint32_t active_gc;
	/*
	 * Span words the fast paths' slow entry loaded (sa_alloc_next_word),
	 * which stamps no time: a taker that finds the count moved since its
	 * last pass (words_seen, under sa_g.lock) stamps active_ms itself, so
	 * that a thread allocating without refills is not taken from.
	 */
	_Atomic uint32_t words;
	uint32_t words_seen;
	/* its active spans a taker owns, until it takes them or gives them back */
	struct sa_uspan *yielded;
	uintptr_t tiny;			/* current tiny block, 0 if none */
	uint32_t tiny_off;		/* bytes of it handed out */
	_Atomic(sa_tiny_mask) *tiny_mask;	/* its mask (tiny.h) */
	/*
	 * Tiny objects the fast paths carved and freed: plain counters only
	 * this thread writes (one add each), taken into st at each refill and
	 * give-back (sa_tcache_harvest_tiny) and seen at once by the thread's
	 * own sa_get_stats. Each count apart from the byte count it goes
	 * with: side by side, the compiler made the two adds one vector add
	 * of seven instructions.
	 */
	uint64_t tiny_n, tiny_freed, tiny_bytes, tiny_freed_bytes;
	/*
	 * The heap profile's countdown (prof.c): bytes until the next sample
	 * point, the rate it was drawn for, its random state, the bytes the
	 * points that fell in the allocation being made stand for, and set
	 * while a sample is being taken.
	 */
	int64_t prof_left;
	uint64_t prof_drawn, prof_rng, prof_pending;
	int prof_busy;
	struct sa_uspan *adopted;	/* spans to hand back, list */
	uint32_t adopt_ms, adopt_gc;	/* when it last adopted one (decay) */
	/* held spans a collection took from idle threads, to hand back */
	struct sa_uspan *decayed;
	/* free span records kept for the next spans, per kind (heap.c: no lock) */
	struct sa_uspan *spare[SA_BITS_KINDS];
	uint32_t nspare[SA_BITS_KINDS];
	uint32_t nadopted;
	uint32_t used_up;		/* active spans the fast path used up (malloc.c) */
	struct sa_counters st;
	struct sa_tcache *prev, *next;	/* all caches, under sa_g.lock */

	/*
	 * Safe points (world.c). nosafe is non-zero while the thread is
	 * inside the allocator and its spans are in flux; a stop request that
	 * arrives then is noted in stop_pending and honoured on the way out,
	 * as is gc_due, "a collection is due", from the pacer. Plain fields:
	 * only this thread and its signal handler write them (and, racily,
	 * every thread without a cache writes sa_tc_none's in_fast, whose
	 * value nothing uses: such a thread's fast paths all fail).
	 */
	volatile int nosafe;
	volatile int stop_pending;	/* set by the signal handler only */
	/*
	 * Non-zero while the thread is in a fast path (sa_fast_enter): a
	 * stop that arrives then is noted in stop_pending, as inside a slow
	 * path, and as SA_FAST_STOP here, and honoured once the count
	 * (SA_FAST_COUNT) is 0 again. A count, not a flag: a program's
	 * signal handler that allocates may interrupt a fast path, and its
	 * own fast path ending must not end the one it interrupted.
	 */
	volatile int in_fast;
#define SA_FAST_COUNT	0xffff		/* in_fast: the regions entered */
#define SA_FAST_STOP	0x10000		/* in_fast: a stop noted in one */
	/*
	 * Set while another thread takes the spans this one keeps aside
	 * (handoff.c); its slow paths wait at sa_safe_enter() meanwhile, and
	 * its fast paths leave their span changes to them (mcache.c).
	 */
	_Atomic int taking;
	int gc_due;			/* set by the pacer, on this thread */
	/* stopped and scanned by collections; set under the world lock */
	_Atomic int registered;
	/*
	 * A thread of the library's own (the background sweeper): stopped
	 * like the others, but never a root. No program pointer lives on it,
	 * and a stale word on its stack once kept most of a ten-million-node
	 * list alive (gc_roots_test the_sweepers_stack_is_not_a_root).
	 */
	bool lib_thread;
	pid_t tid;
	pthread_t self;
	uintptr_t stack_lo, stack_hi;	/* where its own stack may be */
	/*
	 * Where it ran when it stopped: the lowest live word of the stack in
	 * use, and the alternate signal stack if that was in use (the
	 * thread writes them itself, from the stop handler). Relaxed atomics:
	 * the stop's acknowledgement orders them, but ThreadSanitizer loses
	 * that edge when the stop signal lands inside its own runtime.
	 */
	_Atomic uintptr_t stop_sp;
	_Atomic uintptr_t alt_lo, alt_hi;
	/* the stack the program said it switched to (sa_gc_set_stack) */
	_Atomic uintptr_t cur_lo, cur_hi;
	struct sa_tcache *gc_prev, *gc_next;	/* registered, under world lock */
};


/*
 * Chunks of span records: 64 M records at most, a span each (a 64 GiB heap
 * of 8 KiB spans has 8 M).
 */
#define SA_MAX_CHUNKS		65536

/* The process's heap. */
/* Fixed-size tables carved from chunks (heap.c: sa_block_get), under sa_g.lock. */
struct sa_blocks {
	void *free;			/* freed ones, chained through their first word */
	char *fresh, *end;		/* the newest chunk's part not cut yet */
};

struct sa_global {
	int fd;
	char dev[108];			/* the device's path, for a forked child */
	int err;			/* errno of a failed init, else 0 */
	char msg[256];			/* what failed and what to do */
	uintptr_t base;			/* heap mapping */
	size_t maplen;
	uint32_t npages;
	_Atomic(struct sa_uspan *) *pagemap;
	pthread_key_t key;
	pthread_mutex_t lock;		/* pools, cache list, dead counters */
	struct sa_tcache *caches;
	struct sa_counters dead;	/* counters of exited threads */
	_Atomic uint32_t held_pages;	/* sa_set_held_pages() */
	_Atomic uint32_t held_decay_ms;	/* sa_set_held_decay_ms() */
	_Atomic uint32_t handoff;	/* 0: no membarrier(2) handoff (handoff.c) */
	struct sa_uspan *free_uspans[SA_BITS_KINDS];	/* per kind */
	struct sa_blocks tiny_blocks;	/* tiny mask tables */
	struct sa_blocks type_blocks[SA_BITS_KINDS];	/* type tables, per kind */
	_Atomic uint32_t nchunks;		/* chunks in sa_chunks */
	/* what sa_get_meta_stats() reports */
	_Atomic uint64_t meta_inuse;	/* bytes of records (and bitmaps) in use */
	uint64_t tiny_tables, type_bytes;	/* in use, under lock */
	uint64_t table_chunks;		/* mapped for both, under lock */
	uint64_t meta_mapped;		/* bytes of record chunks, under lock */
	/* per kind, under lock: the records of the newest chunk not made yet */
	struct sa_uspan *fresh[SA_BITS_KINDS], *fresh_end[SA_BITS_KINDS];
	char *fresh_bits[SA_BITS_KINDS];
};

#define SA_USPANS_PER_CHUNK	(SA_META_CHUNK / sizeof(struct sa_uspan))
/* a thread's spare records: at most, and how many it takes from the pool */
#define SA_SPARE_MAX		16
#define SA_SPARE_BATCH		8
#define SA_META_CHUNK		(256 * 1024)

extern struct sa_global sa_g;
/* every chunk of struct sa_uspan ever made: the collector walks them */
extern struct sa_uspan *_Atomic sa_chunks[SA_MAX_CHUNKS];
extern __thread struct sa_tcache *sa_tc __attribute__((tls_model("initial-exec")));
/*
 * The calling thread's cache as the fast paths see it: sa_tc, or while
 * there is none sa_tc_none, a cache with no span and no tiny block in
 * which every fast path fails (mimalloc's empty heap), so that they need
 * no NULL test. Only its in_fast is written: the fast paths count their
 * region before they look at the span (one look, inside the region),
 * and every thread without a cache counts there, racily (the drop-in's
 * threads served by glibc count on caches of their own: override.c). No
 * stop, taker or fast path reads that count: stops look at sa_tc, and
 * sa_tc_none's stop_pending stays 0.
 */
extern __thread struct sa_tcache *sa_tc_fast __attribute__((tls_model("initial-exec")));
extern struct sa_tcache sa_tc_none;
/* set when the thread's cache was destroyed (thread exit): see sa_free() */
extern __thread int sa_tc_gone __attribute__((tls_model("initial-exec")));

/* Seconds on clock id: one conversion for every clock the library reads. */
static inline double sa_seconds(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Milliseconds, wrapping, at the kernel tick's resolution: for ages only. */
static inline uint32_t sa_coarse_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint32_t)((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* sizeclass.c */
extern uint8_t sa_size_to_class8[1024 / 8 + 1];
extern uint8_t sa_size_to_class128[(SPANALLOC_MAX_SMALL_SIZE - 1024) / 128 + 1];
extern const struct spanalloc_class sa_classes[SPANALLOC_NUM_CLASSES];
void sa_sizeclass_init(void);
uint32_t sa_span_pages_wanted(unsigned int sizeclass);

extern uint8_t sa_size_to_spanclass8[2][1024 / 8 + 1];
extern uint8_t sa_size_to_spanclass128[2][(SPANALLOC_MAX_SMALL_SIZE - 1024) / 128 + 1];

static inline unsigned int sa_class_of(size_t size)
{
	if (size <= 1024)
		return sa_size_to_class8[(size + 7) >> 3];
	return sa_size_to_class128[(size - 1024 + 127) >> 7];
}

/*
 * Whether a request for size bytes, sz with the end pad, is the tiny
 * allocator's: noscan and under 16 bytes padded, but not when packing
 * gains nothing: carved as 8 bytes (7 or 8 padded), two fill a block as
 * they fill the 8-byte class, and carved as 16 (15 padded), one fills it
 * as it fills the 16-byte class, which costs no mask compare-and-swap per
 * allocation and free. Nor 8 bytes asked: with the end pad, 9 bytes, 10
 * carved, which leaves a block little room for another object; it takes
 * the 16-byte class. The malloc family's slow paths ask for 7, 8, 15 or
 * 16 bytes under 17 (fastpath.h: sa_malloc_size), refused here with the
 * end pad and without, so that a change of the pad between the fast
 * path's read and theirs cannot make them tiny.
 */
#define SA_TINY_SIZES	0x7e7eU		/* bit sz set: 1 to 6 and 9 to 14 padded */
static inline bool sa_tiny_wanted(size_t size, size_t sz, bool noscan)
{
	return noscan && sz < SA_TINY_SIZE && (SA_TINY_SIZES >> sz & 1) && size != 8;
}

/*
 * The span class of a small object that is not tiny (sizeclass.c), for
 * size up to 1 KiB and above; span class 0 for size 0 (no span).
 */
static inline uint16_t sa_spanclass8(size_t size, bool noscan)
{
	return sa_size_to_spanclass8[noscan][(size + 7) >> 3];
}

static inline uint16_t sa_spanclass128(size_t size, bool noscan)
{
	return sa_size_to_spanclass128[noscan][(size - 1024 + 127) >> 7];
}

static inline uint16_t sa_spanclass_of(size_t size, bool noscan)
{
	if (!size)
		size = 1;	/* served as size 1 */
	return size <= 1024 ? sa_spanclass8(size, noscan) : sa_spanclass128(size, noscan);
}

/* mbitmap.c: allocation state of one span; no I/O, no locks. */
void sa_span_bind_bits(struct sa_uspan *s, uint8_t kind, void *ext);
void sa_span_setup(struct sa_uspan *s, uintptr_t base, uint64_t handle,
		   uint32_t npages, uint16_t spanclass, bool needzero);
uint32_t sa_span_refresh(struct sa_uspan *s, uint32_t upto);
void sa_span_take(struct sa_uspan *s);
uint32_t sa_span_next_free(struct sa_uspan *s);
uint32_t sa_span_taken_since(const struct sa_uspan *s);
uint32_t sa_span_local_frees(const struct sa_uspan *s);
uint32_t sa_span_reuse_freed(struct sa_uspan *s);
uint32_t sa_span_reuse_known(struct sa_uspan *s, bool freed);
bool sa_span_settle(struct sa_uspan *s);
bool sa_span_known_full(const struct sa_uspan *s);
bool sa_span_freed_into(const struct sa_uspan *s);
bool sa_span_settle_forked(struct sa_uspan *s);
void sa_span_restart(struct sa_uspan *s);
int sa_span_free(struct sa_uspan *s, uint32_t idx);

/*
 * The owner frees into its own active span: no atomics. -1: double free.
 * On x86 the test and the set are one BTS on the word in a register (its
 * carry is the old bit): three instructions fewer than the shift, test
 * and OR, and not BTS on memory, which is microcoded.
 */
static inline int sa_span_free_local(struct sa_uspan *s, uint32_t idx)
{
	uint64_t *w = &s->local_free[idx / 64], v = *w;
#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__)
	bool was;

	__asm__("btsq %2, %0" : "+r"(v), "=@ccc"(was) : "r"((uint64_t)idx));
	if (was)
		return -1;
#else
	uint64_t bit = 1ULL << (idx % 64);

	if (v & bit)
		return -1;
	v |= bit;
#endif
	*w = v;
	return 0;
}
bool sa_span_publish_full(struct sa_uspan *s);

/*
 * c (or NULL) becomes s's owner; only c, s's last owner, or a thread that
 * took s's owner's lists for the time (handoff.c, a stopped world) may
 * call it.
 */
static inline void sa_span_set_owner(struct sa_uspan *s, struct sa_tcache *c)
{
	atomic_store_explicit(&s->owner, c, memory_order_relaxed);
	atomic_store_explicit(&s->fast_owner, s->fastfree ? c : NULL, memory_order_relaxed);
}

/* Takes hold of s if it is adoptable (see "Who holds a span"). */
static inline bool sa_span_claim(struct sa_uspan *s)
{
	uint32_t one = 1;

	return atomic_compare_exchange_strong(&s->adoptable, &one, 0);
}
void sa_span_bad_free(const struct sa_uspan *s, const void *p,
		      const char *what) __attribute__((noreturn));

/*
 * The allocation cache for word w of s: its free objects, one bit each,
 * none past nelems (so that taking from the cache needs no bound check).
 */
static inline uint64_t sa_span_word_cache(const struct sa_uspan *s, uint32_t w)
{
	uint32_t left = s->nelems - w * 64;

	return ~s->alloc_bits[w] & (left >= 64 ? ~0ULL : (1ULL << left) - 1);
}

/*
 * The objects of a span of npages pages of span class spanclass (one for
 * a large span): spans of a class may be longer than the table's
 * (sa_span_pages_wanted), so the count comes from the span's length.
 */
static inline uint32_t sa_span_nelems(uint16_t spanclass, uint32_t npages)
{
	uint32_t size = sa_classes[spanclass >> 1].size;

	return size ? (uint32_t)(((uint64_t)npages << SA_PAGE_SHIFT) / size) : 1;
}

/*
 * The 64-bit words of each of s's bitmaps. Read once per loop: a loop
 * with atomic loads in it would read nelems again at every word.
 */
static inline uint32_t sa_span_words(const struct sa_uspan *s)
{
	return (s->nelems + 63) / 64;
}

/* The address of object idx of s. */
static inline uintptr_t sa_span_object(const struct sa_uspan *s, uint32_t idx)
{
	return s->base + (uintptr_t)idx * s->elemsize;
}

/*
 * Go's nextFreeFast: the next free object from the 64-bit cache, or 0 when
 * the cache is used up (the caller then takes the slow path). Bit 0 of the
 * cache is object freeindex; the two shifts leave it empty, not undefined,
 * after the word's last object.
 */
static inline uintptr_t sa_span_next_fast(struct sa_uspan *s)
{
	uint64_t cache = s->alloc_cache;
	uint32_t bit, idx;

	if (!cache)
		return 0;
	bit = (uint32_t)__builtin_ctzll(cache);
	idx = s->freeindex + bit;
	s->alloc_cache = (cache >> bit) >> 1;
	s->freeindex = idx + 1;
	/* never 0: spans lie inside the heap mapping (told, so no test) */
	if (!sa_span_object(s, idx))
		__builtin_unreachable();
	return sa_span_object(s, idx);
}

/*
 * Zeroes an object of at most SA_ZERO_INLINE bytes, a size class's size
 * (8, or a multiple of 8 from 16), inline: a call to memset costs more
 * than the stores. As memset itself does, with stores that may overlap:
 * two of 16 bytes up to 32 bytes, two of 32 up to 64. Larger objects go
 * to memset (sa_fast_zero): inlined into every fast path, a loop for
 * them made the fast paths so much larger that the collector's
 * binary-trees run stopped the world 25% longer (A/B in one boot, see
 * README), where the call costs the 128 and 256 B rows a few
 * instructions.
 */
#define SA_ZERO_INLINE	64
static inline void sa_zero_small(uintptr_t p, uint32_t size)
{
	char *d = (char *)p, *end = d + size;

	if (size < 16) {
		__builtin_memset(d, 0, 8);
		return;
	}
	if (size <= 32) {
		__builtin_memset(d, 0, 16);
		__builtin_memset(end - 16, 0, 16);
		return;
	}
	__builtin_memset(d, 0, 32);
	__builtin_memset(end - 32, 0, 32);
}

static inline void sa_zero_object(uintptr_t p, uint32_t size)
{
	if (size <= SA_ZERO_INLINE)
		sa_zero_small(p, size);
	else
		memset((void *)p, 0, size);
}

/*
 * Bits set in x. Built for the x86-64 baseline (no POPCNT instruction),
 * __builtin_popcountll is a call to libgcc's __popcountdi2, some twenty
 * instructions and the call; this sum of bit fields is twelve, inline.
 * Refreshes and sweeps count every bitmap word they change.
 */
static inline uint32_t sa_popcount64(uint64_t x)
{
#ifdef __POPCNT__
	return (uint32_t)__builtin_popcountll(x);
#else
	x -= (x >> 1) & 0x5555555555555555ULL;
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (uint32_t)((x * 0x0101010101010101ULL) >> 56);
#endif
}

/* Object index of address p in s: divide by multiplying, as Go's divMul. */
static inline uint32_t sa_span_index(const struct sa_uspan *s, uintptr_t p)
{
	return (uint32_t)(((uint64_t)(uint32_t)(p - s->base) * s->divmagic) >> 32);
}

/*
 * Whether p is the start of an object of s, and its index if so, in one
 * multiplication (Lemire's fastmod): for 32-bit n, the high half of
 * n * divmul is n / elemsize, and the low half is below divmul exactly
 * when elemsize divides n. The index may be nelems (in the span's tail).
 */
static inline bool sa_span_exact(const struct sa_uspan *s, uintptr_t p, uint32_t *idx)
{
	unsigned __int128 q = (unsigned __int128)(uint32_t)(p - s->base) * s->divmul;

	*idx = (uint32_t)(q >> 64);
	return (uint64_t)q < s->divmul;
}

/*
 * Whether v points into an allocated object of s; if so, its index and
 * start. Objects below freeindex are allocated (or freed since, which only
 * keeps them a cycle longer); beyond it, allocBits tell. The collector's
 * pointer test (Go's findObject after spanOf).
 */
static inline __attribute__((always_inline)) SA_NO_TSAN bool
sa_span_object_at(const struct sa_uspan *s, uintptr_t v, uint32_t *idx, uintptr_t *obj)
{
	uint32_t i;

	if (s->spanclass < 2) {
		/* a large object starts freeindex bytes in (sa_aligned_alloc) */
		if (v - s->base >= s->elemsize || v - s->base < s->freeindex)
			return false;
		*idx = 0;
		*obj = s->base + s->freeindex;
		return true;
	}
	i = sa_span_index(s, v);
	if (i >= s->nelems ||
	    (i >= s->freeindex && !(s->alloc_bits[i / 64] & (1ULL << (i % 64)))))
		return false;
	*idx = i;
	*obj = sa_span_object(s, i);
	return true;
}


/* heap.c: the device, the page map, the pools. */
int sa_heap_init(void);
struct sa_uspan *sa_uspan_alloc(uint16_t spanclass, uint32_t npages);
void sa_heap_set_span_pages(int fd);
void sa_uspan_release(struct sa_uspan *s);
void sa_uspan_return_spares(struct sa_tcache *c);
extern _Atomic uint64_t sa_pool_locked;	/* pool lock taken for records */
void sa_pagemap_set(struct sa_uspan *s, struct sa_uspan *val);
static inline struct sa_uspan *sa_span_of(const void *p)
{
	uintptr_t off = (uintptr_t)p - sa_g.base;

	if (off >= sa_g.maplen)
		return NULL;
	return atomic_load_explicit(&sa_g.pagemap[off >> SA_PAGE_SHIFT],
				    memory_order_acquire);
}
int sa_kernel_exchange(struct spanalloc_ret *rets, uint32_t nret,
		       uint16_t spanclass, struct spanalloc_span *got,
		       uint32_t nget, uint32_t *ngot, bool *applied);
int sa_kernel_large(uint32_t npages, bool noscan, struct spanalloc_span *d);
void sa_kernel_return_empty(uint64_t handle);
void sa_large_release(struct sa_uspan *s);
void sa_heap_take_base(void);

/* fork.c: what each part does around fork(), in this order */
enum sa_fork_phase {
	SA_FORK_PREPARE,	/* in the parent, before: take the locks */
	SA_FORK_PARENT,		/* in the parent, after: release them */
	SA_FORK_CHILD,		/* in the child: the only thread left */
};
void sa_fork_init(void);
void sa_fork_mutex(pthread_mutex_t *m, enum sa_fork_phase phase);

/* thread.c: the C library's pthread_create, for the library's own threads */
int sa_thread_create_raw(pthread_t *t, const pthread_attr_t *attr,
			 void *(*fn)(void *), void *arg);

/* mcache.c */
struct sa_tcache *sa_tcache_create(void);
void sa_tcache_destroy(struct sa_tcache *c);
void sa_tcache_flush(struct sa_tcache *c);
uintptr_t sa_tcache_refill(struct sa_tcache *c, uint16_t sc);
uintptr_t sa_tcache_reuse_freed(struct sa_tcache *c, struct sa_uspan *s);
uintptr_t sa_tcache_change_span(struct sa_tcache *c, struct sa_uspan *s);
void sa_tcache_adopt(struct sa_tcache *c, struct sa_uspan *s);
/* adopted spans a thread that only frees keeps while they are freed into */
#define SA_ADOPTED_BUSY	4
void sa_tcache_return_adopted(struct sa_tcache *c, uint32_t busy);
void sa_tcache_return_held(struct sa_tcache *c);
void sa_tcache_decay_stopped(struct sa_tcache *c, void *self);
void sa_tcache_return_decayed(struct sa_tcache *c);
/*
 * What another thread may take of what c keeps aside while c's thread
 * cannot touch it (stopped by a collection, or kept out by handoff.c):
 * spans kept too long, by collections (SA_HELD_DECAY_GCS) or by time.
 * What "kept too long" means is read once per pass, so that every step
 * of a pass (handoff.c) picks the same spans.
 */
struct sa_stale {
	bool by_gcs;
	uint32_t now;		/* sa_coarse_ms(), when by time */
	uint32_t decay;		/* sa_held_decay_ms(), when by time */
};

/* Whether the millisecond stamp t is at least ms before now; wraps. */
static inline bool sa_ms_since(uint32_t now, uint32_t t, uint32_t ms)
{
	/* another thread's stamp may be a little after our now: not since */
	return (int32_t)(now - t) >= (int32_t)ms;
}

/* A millisecond stamp that says "set": 0 means none. */
static inline uint32_t sa_ms_stamp(uint32_t now)
{
	return now ? now : 1;
}
uint32_t sa_tcache_own_stale(struct sa_tcache *c, struct sa_tcache *to,
			     const struct sa_stale *st);
void sa_tcache_take_stale(struct sa_tcache *c, struct sa_tcache *self,
			  const struct sa_stale *st);
static inline uint32_t sa_held_decay_ms(void)
{
	return atomic_load_explicit(&sa_g.held_decay_ms, memory_order_relaxed);
}

/* handoff.c: taking the spans an idle thread keeps, without stopping it */
void sa_handoff_idle(struct sa_tcache *self, uint32_t now);
/* whether sa_handoff_idle() at now would start a pass */
bool sa_handoff_would_run(uint32_t now, uint32_t decay);
void sa_tcache_harvest(struct sa_tcache *c, struct sa_uspan *s);
void sa_tcache_harvest_tiny(struct sa_tcache *c);
void sa_counters_add(struct sa_counters *to, struct sa_counters *from);

/* symtab.c: function names for code addresses (the heap profile's) */
struct sa_symtab;
struct sa_symtab *sa_symtab_load(void);
const char *sa_symtab_lookup(const struct sa_symtab *t, uintptr_t addr);
void sa_symtab_free(struct sa_symtab *t);

/* prof.c: the heap profile */
extern _Atomic uint64_t sa_prof_rate;
void sa_prof_init(void);
void sa_prof_fork(enum sa_fork_phase phase);
void sa_prof_charge_slow(struct sa_tcache *c, struct sa_uspan *s, uint64_t bytes);
uintptr_t sa_prof_resume(struct sa_uspan *s);
void sa_prof_sample(struct sa_tcache *c, void *p);
void sa_prof_freed_slow(struct sa_uspan *s, uint32_t w, uint64_t bits);

/*
 * The slow path hands out an object of bytes, and s's cache is what the
 * fast path takes from next (s NULL for a large object): charge both to
 * the profile's countdown.
 */
static inline void sa_prof_charge(struct sa_tcache *c, struct sa_uspan *s, uint64_t bytes)
{
	if (sa_unlikely(atomic_load_explicit(&sa_prof_rate, memory_order_relaxed)))
		sa_prof_charge_slow(c, s, bytes);
}

/*
 * Objects bits of word w of s are freed (taken in by the holder, or swept):
 * the profile hears of it if any of s's objects is a sample.
 */
static inline void sa_prof_freed(struct sa_uspan *s, uint32_t w, uint64_t bits)
{
	if (sa_unlikely(atomic_load_explicit(&s->nsampled, memory_order_relaxed)))
		sa_prof_freed_slow(s, w, bits);
}

/* An allocating slow path's last step: a sample, if one is due. */
static inline void *sa_prof_done(struct sa_tcache *c, void *p)
{
	if (sa_unlikely(c->prof_pending) && p)
		sa_prof_sample(c, p);
	return p;
}

/* malloc.c */
void sa_orphan_fork(enum sa_fork_phase phase);
void sa_tiny_retire(struct sa_tcache *c);
struct sa_tcache *sa_tcache_current(void);	/* made on first use */
void sa_types_set(struct sa_uspan *s, uint32_t idx, const struct sa_type *t);

/*
 * Safe points: the allocator's spans are consistent outside these. The
 * collector stops a thread only outside (world.c); a stop or a due
 * collection noted inside is acted on by sa_safe_exit(). For the slow
 * paths, which may take locks and make system calls.
 */
void sa_handoff_wait(struct sa_tcache *c);

static inline void sa_safe_enter(struct sa_tcache *c)
{
	c->nosafe++;
	atomic_signal_fence(memory_order_seq_cst);
	/*
	 * After the store: handoff.c says why that order is enough. Acquire:
	 * a taker that was done before left c's lists as this thread reads
	 * them (a plain load on x86).
	 */
	if (sa_unlikely(atomic_load_explicit(&c->taking, memory_order_acquire)))
		sa_handoff_wait(c);
}

void sa_safepoint(struct sa_tcache *c);

static inline void sa_safe_exit(struct sa_tcache *c)
{
	/* release: a taker that reads 0 sees the lists as this path left them */
	__atomic_store_n(&c->nosafe, c->nosafe - 1, __ATOMIC_RELEASE);
	atomic_signal_fence(memory_order_seq_cst);
	/* a slow path in a signal handler that interrupted a fast path waits */
	if (sa_unlikely(c->stop_pending | c->gc_due) && !c->nosafe &&
	    !(c->in_fast & SA_FAST_COUNT))
		sa_safepoint(c);
}

/*
 * One instruction that adds d to *v: a signal arrives before or after it,
 * never between its read and its write, so a handler that counts too
 * leaves the count as it found it. A compiler barrier as well.
 */
static inline void sa_signal_add(volatile int *v, int d)
{
#if defined(__x86_64__) || defined(__i386__)
	__asm__ volatile("addl %1, %0" : "+m"(*v) : "ir"(d) : "memory");
#else
	/* an atomic add is one to a signal handler too, if dearer */
	__atomic_fetch_add(v, d, __ATOMIC_SEQ_CST);
#endif
}

/* sa_signal_add's bitwise forms: one instruction each, as it is. */
static inline void sa_signal_or(volatile int *v, int bits)
{
#if defined(__x86_64__) || defined(__i386__)
	__asm__ volatile("orl %1, %0" : "+m"(*v) : "ir"(bits) : "memory");
#else
	__atomic_fetch_or(v, bits, __ATOMIC_SEQ_CST);
#endif
}

static inline void sa_signal_andnot(volatile int *v, int bits)
{
#if defined(__x86_64__) || defined(__i386__)
	__asm__ volatile("andl %1, %0" : "+m"(*v) : "ir"(~bits) : "memory");
#else
	__atomic_fetch_and(v, ~bits, __ATOMIC_SEQ_CST);
#endif
}

/*
 * The fast paths' safe points: a count raised around the instructions
 * that change a span, which makes the stop handler only note a stop (a
 * count, not the interrupted PC, so that a stop inside a program's own
 * signal handler that interrupted a fast path waits too). The handler
 * notes it twice: in stop_pending, for slow paths, and as SA_FAST_STOP in
 * in_fast itself, so that the subtract that leaves the region is also its
 * test: in_fast is 0 after it unless a stop waits (or this fast path
 * interrupted another, which then ends the region). A fast path that
 * succeeds ends with that (sa_fast_done); one that fails goes to a slow
 * path, whose sa_safe_exit() honours a stop. Cheaper than
 * sa_safe_enter/exit: one instruction in and two out, no due collection to run
 * (only slow paths make one due), and no call on the way, so that the
 * fast path stays a leaf. The slow path's entry runs its cheap part in
 * such a region too (malloc.c: the next bitmap word, a span started over
 * on its frees, a span kept aside taking the used-up one's place), with
 * calls out of line but none that takes a lock or waits (the coarse
 * clock included). A region is left before anything that may take a
 * lock or wait, and whatever it hands to a slow path, the slow path reads
 * again under sa_safe_enter().
 */
static inline void sa_fast_enter(struct sa_tcache *c)
{
	sa_signal_add(&c->in_fast, 1);
}

/*
 * Leaves the region; true when in_fast is not 0 after that, for
 * sa_fast_stop to look at. One subtract and its flags: a signal handler
 * comes before it (and its noted stop makes the result non-zero) or after
 * it (and finds the thread outside, free to stop it there).
 */
static inline bool sa_fast_exit(struct sa_tcache *c)
{
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GCC_ASM_FLAG_OUTPUTS__)
	bool zero;

	__asm__ volatile("subl $1, %0" : "+m"(c->in_fast), "=@ccz"(zero) : : "memory");
	return !zero;
#else
	return __atomic_sub_fetch(&c->in_fast, 1, __ATOMIC_SEQ_CST) != 0;
#endif
}

void *sa_fast_stop(struct sa_tcache *c, void *ret) __attribute__((returns_nonnull));

/* A fast path's return of ret (never NULL): leaves its region, stopping if asked. */
static inline void *sa_fast_done(struct sa_tcache *c, void *ret)
{
	return sa_unlikely(sa_fast_exit(c)) ? sa_fast_stop(c, ret) : ret;
}

/* heap.c: the pool of span records, walked by the collector. */
void *sa_types_table_alloc(uint8_t kind);
static inline struct sa_uspan *sa_uspan_at(uint32_t i)
{
	struct sa_uspan *chunk = atomic_load_explicit(
		&sa_chunks[i / SA_USPANS_PER_CHUNK], memory_order_acquire);

	return &chunk[i % SA_USPANS_PER_CHUNK];
}

static inline uint32_t sa_uspan_count(void)
{
	return atomic_load_explicit(&sa_g.nchunks, memory_order_acquire) *
	       (uint32_t)SA_USPANS_PER_CHUNK;
}

#include "gc.h"

/* Whether s is not swept yet this cycle (Go's sweepgen; sweep.c). */
static inline bool sa_sweep_needed(const struct sa_uspan *s)
{
	return atomic_load_explicit(&s->sweepgen, memory_order_relaxed) !=
	       atomic_load_explicit(&sa_gc.sweepgen, memory_order_relaxed);
}

/*
 * Whether an object of size bytes (end pad included) that is not tiny
 * must be zeroed: when the call promises it, and in a collected heap for
 * a noscan object of the 16-byte class (9 to 16 bytes), which lives in
 * scanned spans (sizeclass.c), so that the collector does not take old
 * words there for pointers. A manual heap scans nothing: malloc(16)
 * there skips the zeroing (11 instructions a pair). The objects of that
 * class handed out before sa_gc_init() switched the mode (by other
 * threads, until it did) may still hold words of freed objects: those
 * can only keep garbage alive for as long as they live, as the marker
 * takes nothing for a pointer that is not one to an allocated object
 * (sa_span_object_at). By size, not by span class: the test then folds into
 * the fast path's branches (by class it cost malloc three instructions
 * more), and the heap's mode is only read for that one size.
 */
static inline bool sa_must_zero(size_t size, bool noscan, bool zero)
{
	return zero || (noscan && size - 9 < 8 && sa_gc_on());
}

#pragma GCC visibility pop

#endif /* SPANALLOC_INTERNAL_H */
