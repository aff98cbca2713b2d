/* SPDX-License-Identifier: GPL-2.0 */
/*
 * spanalloc.ko internals: every type of the module and the rules that
 * govern them. Read docs/design.md for the why; this is the what.
 *
 * A heap (one per open file of /dev/spanalloc) owns:
 *   mheap    the page allocator over the heap's arenas: a bitmap of 8 KiB
 *            pages searched first fit from the lowest address, so freed
 *            runs coalesce by construction; and the span table, mapping
 *            each span's first page (what a handle names) to its struct
 *            sa_span (mheap.c).
 *   mcentral per span class, the spans that live in the kernel between
 *            users: a partial list (spans with free objects, ready to hand
 *            out) and a full list (spans whose objects are all in use)
 *            (mcentral.c).
 *   mcache   per CPU, per span class, a small stack of ready spans taken
 *            and refilled without any shared lock (mcache.c).
 *
 *   scavenge  gives the pages of free spans back to the kernel: a release
 *            ioctl, a paced background worker (scavenge.c) and a memcg
 *            aware shrinker (shrinker.c).
 *
 * Lock order (outer first):
 *   sa_heaps_mutex			(heap.c: the list of heaps; CPU
 *					 drains and the background scavenger
 *					 take it, the shrinker trylocks it)
 *     heap->scav_mutex			(scavenge.c: one release at a time;
 *					 trylocked under sa_heaps_mutex)
 *       owner's mmap_lock		(read, to zap released pages; trylocked
 *					 by background and reclaim paths; mmap
 *					 runs under it for writing)
 *         heap->grow_mutex		(mapping and arena set-up; may sleep)
 *           heap->mcache->lock		(local_lock: this CPU's stacks)
 *             heap->central[sc].lock	(spinlock)
 *           heap->lock			(spinlock: page bitmaps, span table;
 *					 never nested with a central lock)
 * Background and reclaim paths (scavenger, shrinker, CPU drains) never
 * sleep on a lock a user process can hold: under sa_heaps_mutex they only
 * trylock scav_mutex and the mmap lock. No lock is held across
 * copy_{to,from}_user. An allocation that waits for a release (mheap.c)
 * waits for scav_mutex holding nothing, killably.
 *
 * Span life cycle (enum sa_span_state). A span exists from the moment the
 * page allocator cuts it until its pages are freed; in between it is in
 * exactly one state, and only these transitions exist:
 *
 *   (pages) --get--> HANDING --published--> OWNED
 *   OWNED   --return PARTIAL--> CACHED or PARTIAL
 *           --return FULL-----> FULL
 *           --return EMPTY----> (pages)
 *   CACHED  <--refill/flush--> PARTIAL           (kernel-internal moves)
 *   CACHED, PARTIAL --get--> HANDING --published--> OWNED
 *   FULL    --return PARTIAL--> CACHED or PARTIAL
 *           --return EMPTY----> (pages)
 *
 * User space may only ask for the "return" transitions, and only of spans in
 * OWNED or FULL. A return first claims the span by moving its state to
 * RETURNING with cmpxchg (span.c); whoever wins the claim owns the span
 * until it stores the next state, so two racing returns of one span cannot
 * both succeed, and a span that is CACHED or PARTIAL can never be returned.
 * Handles are guessable, so a span being handed out is HANDING, which no
 * return can claim, until user space has its descriptor; if that cannot be
 * written, the getter still holds the span and puts it back. After it
 * publishes OWNED the getter never touches the span again.
 */
#ifndef _SPANALLOC_INTERNAL_H
#define _SPANALLOC_INTERNAL_H

#include <linux/atomic.h>
#include <linux/list.h>
#include <linux/local_lock.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/sizes.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/spanalloc.h>

#define SA_PAGE_SHIFT		SPANALLOC_PAGE_SHIFT
#define SA_PAGE_SIZE		BIT(SA_PAGE_SHIFT)
#define SA_ARENA_PAGES		(SPANALLOC_ARENA_SIZE >> SA_PAGE_SHIFT)
#define SA_NSPANCLASS		SPANALLOC_NUM_SPANCLASSES
#define SA_PCP_MAX_DEPTH	8
#define SA_MAX_BATCH		32
/* Pages of a 2 MiB huge page: the scavenger releases no run across one. */
#define SA_SCAV_ALIGN		(SZ_2M >> SA_PAGE_SHIFT)
/* Bits a search of a page bitmap covers per hold of heap->lock. */
#define SA_FIND_WINDOW		SA_ARENA_PAGES

/*
 * A handle is gen << SA_HANDLE_PAGE_BITS | first page: the largest heap
 * (heap_limit_mb's 1 TiB) has 2^27 pages, the generation has the rest.
 */
#define SA_HANDLE_PAGE_BITS	27
#define SA_HANDLE_PAGE_MASK	(BIT_ULL(SA_HANDLE_PAGE_BITS) - 1)
#define SA_GEN_MASK		(BIT_ULL(64 - SA_HANDLE_PAGE_BITS) - 1)
#define SA_MAX_HEAP_MB		(1U << (SA_HANDLE_PAGE_BITS + SA_PAGE_SHIFT - 20))

extern const struct spanalloc_class sa_classes[SPANALLOC_NUM_CLASSES];
bool sa_class_pages_ok(u32 sizeclass, u32 npages);

/*
 * Internals the KUnit suites (kmod/tests/) call are exported, in the
 * EXPORTED_FOR_KUNIT_TESTING namespace, only by kernels built with KUnit
 * (the debug kernel). 6.1 has no <kunit/visibility.h> yet: same macro here.
 */
#ifdef SA_HAVE_KUNIT_VISIBILITY
#include <kunit/visibility.h>
#elif IS_ENABLED(CONFIG_KUNIT)
#define EXPORT_SYMBOL_IF_KUNIT(sym)	EXPORT_SYMBOL_NS(sym, EXPORTED_FOR_KUNIT_TESTING)
#else
#define EXPORT_SYMBOL_IF_KUNIT(sym)
#endif

enum sa_span_state {
	SA_SPAN_HANDING = 1,	/* being handed out; only the getter touches it */
	SA_SPAN_OWNED,		/* user space has it; on no list */
	SA_SPAN_CACHED,		/* in one CPU's mcache stack */
	SA_SPAN_PARTIAL,	/* on central[sc].partial */
	SA_SPAN_FULL,		/* on central[sc].full; user space holds objects */
	SA_SPAN_RETURNING,	/* claimed by one return in progress */
};

struct sa_span {
	/*
	 * On central[spanclass].partial or .full while PARTIAL or FULL, under
	 * that central lock; unused otherwise.
	 */
	struct list_head list;
	struct rcu_head rcu;	/* freed after lookups under RCU are done */
	u64 gen;		/* with start, makes the handle; never 0 */
	u32 start;		/* first page, counted from the heap's base */
	u32 npages;
	u16 spanclass;
	/*
	 * 1 once the pages may hold data: written by whoever holds the span
	 * (the getter, or the returner that claimed it).
	 */
	u8 needzero;
	atomic_t state;		/* enum sa_span_state; see the life cycle */
};

/* One CPU's ready spans of one span class: a LIFO, hottest on top. */
struct sa_mcache_stack {
	u32 n;
	struct sa_span *spans[SA_PCP_MAX_DEPTH];
};

/*
 * A heap's per-CPU cache. lock is a local_lock: it keeps the task on this
 * CPU while it touches stacks[]. Only the CPU that owns the struct touches
 * it, except that a dead CPU's stacks are drained by the hotplug callback
 * and the whole thing is freed at heap release, when no CPU can run code on
 * the heap.
 */
struct sa_mcache {
	local_lock_t lock;
	struct sa_mcache_stack stacks[SA_NSPANCLASS];
};

/* Per-CPU event counters; summed when read, so the fast path shares none. */
enum sa_counter {
	SA_C_EXCHANGES,
	SA_C_LARGE_ALLOCS,
	SA_C_SPANS_GOT,
	SA_C_SPANS_RETURNED,
	SA_C_PCP_HITS,
	SA_C_CENTRAL_HITS,
	SA_C_HEAP_SPANS,
	SA_C_PCP_FLUSHES,
	SA_C_ENOMEM,
	SA_C_RELEASED,
	SA_NR_COUNTERS,
};

struct sa_heap_counters {
	u64 c[SA_NR_COUNTERS];
};

struct sa_central {
	spinlock_t lock;		/* protects everything below */
	struct list_head partial;	/* SA_SPAN_PARTIAL spans */
	struct list_head full;		/* SA_SPAN_FULL spans */
	u32 npartial;
	u32 nfull;
} ____cacheline_aligned_in_smp;

struct sa_arena {
	/*
	 * The span table of this arena's pages: spans[i] is the span that
	 * starts at page i, or NULL (a span's other pages have no entry).
	 * Written under heap->lock; read under RCU.
	 */
	struct sa_span __rcu *spans[SA_ARENA_PAGES];
};

/*
 * A heap. Small until it is mapped: the central lists, the per-CPU caches,
 * the bitmaps and the arena table are allocated by mmap (sa_heap_map()),
 * so an open that never maps costs one small allocation.
 */
struct sa_heap {
	struct mm_struct *mm;		/* owner, mmgrab()ed; NULL: KUnit heap */
	struct file *file;		/* the open file that is this heap */
	/*
	 * Names it in /proc/spanallocinfo and in traces; fixed, never 0.
	 * Given under sa_heaps_mutex as the heap joins the list, so the list
	 * is in id order.
	 */
	u64 id;
	struct pid *opener;		/* the thread group that opened it */
	/*
	 * The open file's reference, and one per sa_heap_get() (a reader of
	 * the heap that is not its owner); the last put destroys it.
	 */
	refcount_t ref;
	struct list_head node;		/* on sa_heaps, under sa_heaps_mutex */
	u32 pcp_depth;			/* mcache depth; 0: mcache off; fixed */
	u64 max_map;			/* longest mapping allowed; fixed */
	/*
	 * Pages of a new span, by size class (SPANALLOC_IOC_SET_SPAN_PAGES;
	 * the table's until then). Stored and loaded with WRITE_ONCE() and
	 * READ_ONCE() and no lock: every value ever stored passed
	 * sa_class_pages_ok(), and a span records its own length, so a span
	 * cut with the old value or the new one is as good.
	 */
	u8 span_pages[SPANALLOC_NUM_CLASSES];

	/*
	 * Set once under grow_mutex by mmap, published by 'mapped'; nobody
	 * reads them before they see mapped != 0 (smp_load_acquire).
	 */
	struct mutex grow_mutex;	/* serializes mmap and arena set-up */
	unsigned long base;		/* user address of page 0 */
	u64 mapped;			/* mapping length; 0: not mapped yet */
	/*
	 * Set under grow_mutex by SPANALLOC_IOC_ADOPT before it sets the heap
	 * up: from then on mmap and ADOPT are refused, and the heap is only
	 * used once ADOPT publishes 'mapped' (adopt.c).
	 */
	bool adopting;
	u32 max_pages;			/* mapped >> SA_PAGE_SHIFT */
	u32 max_arenas;
	struct sa_central *central;	/* [SA_NSPANCLASS] */
	struct sa_mcache __percpu *mcache; /* NULL when pcp_depth is 0 */
	/*
	 * arenas[i] is set once, under grow_mutex and heap->lock, and never
	 * changes until release; readers load it with smp_load_acquire().
	 */
	struct sa_arena **arenas;

	spinlock_t lock;		/* protects the page allocator below */
	/*
	 * The bitmaps hold map_pages bits (at least active_pages); they are
	 * replaced by bigger ones under grow_mutex and heap->lock.
	 */
	u32 map_pages;
	unsigned long *used;		/* bit per page: in a span */
	unsigned long *dirty;		/* bit per page: free, may be resident */
	/* bit per page: free, may be resident, its release was refused */
	unsigned long *stuck;
	u32 active_pages;		/* pages in set-up arenas */
	u32 search_hint;		/* every page below it is used */
	u32 pages_inuse;
	u32 limit_pages;		/* pages_inuse never passes it */
	u32 nspans;
	u32 nlarge;
	u32 class_spans[SA_NSPANCLASS];	/* spans alive per span class */
	u32 free_dirty;			/* free pages with their dirty bit */
	u32 free_stuck;			/* free pages with their stuck bit */
	u64 next_gen;			/* the next span's generation */
	u64 gens_left;			/* spans the heap may still cut */
	u32 peak_inuse;			/* most pages_inuse since the scavenger looked */
	u32 scav_busy;			/* pages a release holds as used */
	u32 scav_seq;			/* runs given back by releases */

	/*
	 * One release of free pages at a time (scavenge.c). The release ioctl
	 * takes it with nothing else held, before the owner's mmap lock; the
	 * scavenger and the shrinker only trylock it, under sa_heaps_mutex.
	 */
	struct mutex scav_mutex;
	/* allocations waiting for a run a release holds; see scav_seq */
	wait_queue_head_t scav_wait;
	u32 scav_recent;		/* decayed peak; the scavenger's, under sa_heaps_mutex */
	struct sa_heap_lru *lru;	/* this heap on sa_shrinker's list_lru */

	struct sa_heap_counters __percpu *counters;
};

/*
 * The mapping's length, 0 before mmap. Pairs with the release in sa_mmap():
 * once it is seen, base, the page allocator, the central lists and the
 * per-CPU caches are set up.
 */
static inline u64 sa_heap_mapped(struct sa_heap *heap)
{
	/* pairs with the smp_store_release() in sa_mmap() */
	return smp_load_acquire(&heap->mapped);
}

/* Span classes 0 and 1 are large objects: one object, a span of its own. */
static inline bool sa_spanclass_is_large(u16 spanclass)
{
	return spanclass < 2;
}

static inline void sa_count_add(struct sa_heap *heap, enum sa_counter i, u64 n)
{
	this_cpu_add(heap->counters->c[i], n);
}

static inline void sa_count(struct sa_heap *heap, enum sa_counter i)
{
	this_cpu_inc(heap->counters->c[i]);
}

/* Module-wide counters: leak checks read them through the info ioctl. */
extern atomic64_t sa_global_heaps;
extern atomic64_t sa_global_spans;
extern atomic64_t sa_global_pages;
extern atomic64_t sa_global_arenas;

/* heap.c */
extern struct mutex sa_heaps_mutex;
extern struct list_head sa_heaps;
struct sa_heap *sa_heap_create(struct mm_struct *mm, u64 limit, u32 pcp_depth);
int sa_heap_map(struct sa_heap *heap, unsigned long base, u64 len);
void sa_heap_destroy(struct sa_heap *heap);
void sa_heaps_warn_leftover(void);
void sa_heap_stats(struct sa_heap *heap, struct spanalloc_stats *st);
struct sa_heap *sa_heap_get(u64 from);
void sa_heap_put(struct sa_heap *heap);
void sa_heap_class_stats(struct sa_heap *heap, u16 sc,
			 struct spanalloc_class_stats *cs);

/* info.c */
int sa_info_init(void);
void sa_info_exit(void);

/* mheap.c */
void sa_mheap_init(struct sa_heap *heap);
int sa_mheap_cache_init(void);
void sa_mheap_cache_exit(void);
int sa_mheap_map(struct sa_heap *heap, unsigned long base, u64 len);
void sa_mheap_destroy(struct sa_heap *heap);
struct sa_span *sa_mheap_alloc_span(struct sa_heap *heap, u16 spanclass,
				    u32 npages);
void sa_mheap_free_span(struct sa_heap *heap, struct sa_span *s);
struct sa_span *sa_mheap_adopt_span(struct sa_heap *heap, u32 p, u32 npages,
				    u16 spanclass);
bool sa_mheap_next_free(struct sa_heap *heap, u32 *from, u32 *start, u32 *n);
struct sa_span *sa_mheap_lookup(struct sa_heap *heap, u64 handle);
int sa_mheap_set_limit(struct sa_heap *heap, u64 limit);
/* A run of free pages a release holds: within one 2 MiB block. */
struct sa_scav_run {
	u32 start;
	u32 n;
	DECLARE_BITMAP(data, SA_SCAV_ALIGN);	/* pages that may hold data */
};

u32 sa_mheap_snapshot(struct sa_heap *heap, u32 from, u32 n, u8 *states,
		      struct spanalloc_snapshot_span *spans, u32 *covered);
u32 sa_mheap_scav_take(struct sa_heap *heap, u32 *from, struct sa_scav_run *run);
u32 sa_mheap_scav_done(struct sa_heap *heap, struct sa_scav_run *run, bool released);
void sa_mheap_unstick(struct sa_heap *heap);

static inline u64 sa_span_handle(const struct sa_span *s)
{
	return s->gen << SA_HANDLE_PAGE_BITS | s->start;
}

/* mcentral.c */
void sa_mcentral_init(struct sa_central *c);
u32 sa_mcentral_take(struct sa_central *c, struct sa_span **out, u32 n,
		     enum sa_span_state state);
void sa_mcentral_put_partial(struct sa_central *c, struct sa_span **spans,
			     u32 n);
void sa_mcentral_put_full(struct sa_central *c, struct sa_span *s);
void sa_mcentral_remove_full(struct sa_central *c, struct sa_span *s);

/* mcache.c */
int sa_mcache_init(struct sa_heap *heap);
void sa_mcache_destroy(struct sa_heap *heap);
u32 sa_mcache_get(struct sa_heap *heap, u16 sc, struct sa_span **out, u32 n,
		  u32 *hits);
void sa_mcache_put(struct sa_heap *heap, struct sa_span *s);
void sa_mcache_drain_cpu(struct sa_heap *heap, unsigned int cpu);
void sa_mcache_drain_local(struct sa_heap *heap);
void sa_mcache_drain_all_cpus(void);
u32 sa_mcache_count(struct sa_heap *heap, u16 sc);
int sa_mcache_hotplug_init(void);
void sa_mcache_hotplug_exit(void);

/* span.c */
u32 sa_span_get(struct sa_heap *heap, u16 sc, struct sa_span **out, u32 n,
		int *err);
int sa_span_claim(struct sa_heap *heap, u64 handle, u32 op,
		  struct sa_span **sp, int *prev);
void sa_span_unclaim(struct sa_span *s, int prev);
void sa_span_publish(struct sa_span *s);
void sa_span_put_ready(struct sa_heap *heap, struct sa_span *s);
void sa_span_return(struct sa_heap *heap, struct sa_span *s, int prev, u32 op);

/* scavenge.c */
/* Who asked for a release (the spanalloc_release tracepoint says). */
enum sa_release_why {
	SA_RELEASE_IOCTL,
	SA_RELEASE_SCAVENGER,
	SA_RELEASE_SHRINKER,
};

enum sa_scav_mode {
	SA_SCAV_WAIT,		/* may sleep on the owner's mmap lock */
	SA_SCAV_TRY,		/* reclaim: trylocks only, never sleeps on a lock */
};

struct vm_area_struct;
void sa_zap(struct vm_area_struct *vma, unsigned long addr, unsigned long len);
int sa_scavenge(struct sa_heap *heap, u64 max_pages, u64 budget_ns,
		enum sa_scav_mode mode, enum sa_release_why why, u64 *released);
void sa_scavenger_note(struct sa_heap *heap);
int sa_scavenger_init(void);
void sa_scavenger_exit(void);
bool sa_scav_has_work(struct sa_heap *heap);

/* shrinker.c */
struct sa_heap_lru;
int sa_shrinker_init(void);
void sa_shrinker_exit(void);
int sa_shrinker_add_heap(struct sa_heap *heap);
void sa_shrinker_del_heap(struct sa_heap *heap);
struct shrinker;
struct shrink_control;
unsigned long sa_shrink_count(struct shrinker *s, struct shrink_control *sc);
unsigned long sa_shrink_scan(struct shrinker *s, struct shrink_control *sc);

/* dev.c */
bool sa_file_is_heap(struct file *file, struct sa_heap *heap);
struct sa_heap *sa_file_heap(struct file *file);

/* adopt.c */
int sa_heap_adopt(struct sa_heap *heap, const struct spanalloc_adopt *ad,
		  u64 *released);

/* ioctl.c */
long sa_ioctl(struct file *file, unsigned int cmd, unsigned long arg);

#endif /* _SPANALLOC_INTERNAL_H */
