/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * spanalloc: the interface between spanalloc.ko and user space.
 *
 * Opening /dev/spanalloc creates a heap. The heap's memory is one private
 * mapping of the device (offset 0, a multiple of SPANALLOC_ARENA_SIZE long,
 * never executable), made once by the process that opened the device. The
 * kernel cuts that range into spans (runs of 8 KiB pages serving one span
 * class) and hands them out and takes them back through the ioctls below;
 * user space carves spans into objects. Only the opening process (its mm) may
 * map the heap or call the span ioctls; any other process, including a
 * forked child, gets -EPERM (a child makes a heap of its own of what it
 * inherited: SPANALLOC_IOC_ADOPT).
 *
 * Versioning. Every struct starts with a size field: user space writes
 * sizeof() of the struct as it knows it, so the struct can grow. The kernel
 * accepts any size from the first published one (..._SIZE_VER0) up; bytes
 * beyond what the kernel knows must be zero. The size is the struct's only
 * version: the kernel dispatches on the ioctl's type, number and direction
 * and ignores the size encoded in the command, so a program built against
 * an older copy of this header (whose commands encode the older sizes)
 * keeps working. Flags, reserved fields and every "in" field are checked:
 * an unknown flag or a non-zero reserved field fails the call with -EINVAL
 * and changes nothing. Fields marked "out" are ignored on input, so a
 * struct the kernel just filled can be passed back as it is.
 *
 * The arrays that calls read or write through a pointer (struct
 * spanalloc_ret, struct spanalloc_span, struct spanalloc_class_stats) have
 * no size field and never change layout: a call that needs a different
 * element will be a new ioctl.
 *
 * A span handle is opaque: it names one span during one life of the span
 * and never names another, so a stale handle is refused, not misapplied.
 *
 * Errors every call may return: -ENOTTY (not a spanalloc command), -EPERM
 * (not the heap's owner), -EFAULT (a pointer user space passed cannot be
 * read or written), -EINVAL (a field is wrong), -EINTR (a fatal signal
 * arrived while the call waited). The calls that need the heap's memory
 * (EXCHANGE, ALLOC_LARGE) fail with -ENXIO before it is mapped.
 *
 * The mapping: offset 0, a whole number of arenas, MAP_PRIVATE, never
 * executable, at most max_heap_limit bytes; with MAP_FIXED the address must
 * be 2 MiB aligned (without it the kernel picks an arena-aligned one). It
 * is ordinary anonymous memory: transparent huge pages back it where the
 * system allows, and mlock() locks it (pages locked are never released;
 * note that mlockall(MCL_FUTURE) populates and locks the whole mapping
 * when it is made, as for any mapping: use MCL_ONFAULT, or map the heap
 * first).
 */
#ifndef _UAPI_LINUX_SPANALLOC_H
#define _UAPI_LINUX_SPANALLOC_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include "spanalloc-sizeclasses.h"

#define SPANALLOC_ABI_VERSION	1
#define SPANALLOC_PAGE_SIZE	_BITUL(SPANALLOC_PAGE_SHIFT)
#define SPANALLOC_ARENA_SHIFT	26
#define SPANALLOC_ARENA_SIZE	_BITULL(SPANALLOC_ARENA_SHIFT)

/* span class = size class << 1 | noscan; span classes 0 and 1 are large */
#define SPANALLOC_SPANCLASS(sizeclass, noscan)	(((sizeclass) << 1) | ((noscan) ? 1 : 0))
#define SPANALLOC_SPANCLASS_SIZECLASS(sc)	((sc) >> 1)
#define SPANALLOC_SPANCLASS_NOSCAN(sc)		((sc) & 1)

/* SPANALLOC_IOC_INFO: what this module is and how it is configured. */
struct spanalloc_info {
	__u32 size;		/* in: sizeof(struct spanalloc_info) */
	__u32 abi_version;	/* out: SPANALLOC_ABI_VERSION */
	__u32 page_size;	/* out: bytes per heap page */
	__u32 num_classes;	/* out: size classes, class 0 included */
	__u64 arena_size;	/* out: bytes per arena */
	__u64 class_hash;	/* out: SPANALLOC_CLASS_HASH of the module */
	__u64 heap_limit;	/* out: this heap's byte limit */
	__u64 max_heap_limit;	/* out: the module's limit (heap_limit_mb) */
	__u32 max_batch;	/* out: most spans one exchange moves each way */
	__u32 pcp_depth;	/* out: spans per CPU per span class; 0: off */
	__u32 max_large_pages;	/* out: most pages one large span may have */
	__u32 reserved;		/* out: 0 */
	/*
	 * Module-wide counters, for leak checks: only a caller with
	 * CAP_SYS_ADMIN is told (they say what other users do); everyone
	 * else reads 0.
	 */
	__u64 global_heaps;	/* out: heaps open */
	__u64 global_spans;	/* out: spans alive in all heaps */
	__u64 global_pages;	/* out: heap pages in spans, all heaps */
	__u64 global_arenas;	/* out: arenas set up, all heaps */
	/* since VER1 */
	__u64 heap_id;		/* out: names it in /proc/spanallocinfo and traces */
};

#define SPANALLOC_INFO_SIZE_VER0	96
#define SPANALLOC_INFO_SIZE_VER1	104

/* A span handed out by the kernel. */
struct spanalloc_span {
	__u64 handle;		/* names this span in later calls */
	__u64 addr;		/* user address of its first byte */
	__u32 npages;		/* length in heap pages */
	__u16 spanclass;	/* SPANALLOC_SPANCLASS() */
	__u8 needzero;		/* 1: the memory may hold old data */
	__u8 pad;		/* 0 */
};

/* What a returned span is, from the returning thread's point of view. */
enum spanalloc_ret_op {
	SPANALLOC_RET_PARTIAL = 1,	/* some objects free: reuse it */
	SPANALLOC_RET_FULL = 2,		/* no object free: keep it listed */
	SPANALLOC_RET_EMPTY = 3,	/* every object free: free its pages */
};

struct spanalloc_ret {
	__u64 handle;
	__u32 op;		/* enum spanalloc_ret_op */
	__u32 reserved;		/* 0 */
};

/*
 * SPANALLOC_IOC_EXCHANGE: return ret_count spans, then get up to get_count
 * spans of span class get_spanclass, in one call. Either count may be 0.
 * get_spanclass must be 0 or a small span class (1 < class <
 * SPANALLOC_NUM_SPANCLASSES); with get_count > 0 it must be a small class.
 * Returns are checked as a whole before any is applied: one bad entry
 * (unknown or stale handle, a span that is not in a state that op may
 * leave, the same span twice, a large span returned other than EMPTY)
 * fails the call with -EINVAL and nothing changes. A return may name a span
 * this thread got, or one another thread returned FULL (which is how a
 * thread that frees into a full span hands it back as PARTIAL or EMPTY).
 *
 * Once the returns are applied the kernel writes ret_done = ret_count, at
 * once, before it gets any span; then the spans got are written to
 * get_ptr[0 .. get_done) and get_done is written. So after any error a
 * caller that set ret_done to 0 before the call knows from ret_done
 * whether its returns were applied: 0, nothing was returned (the call
 * failed before); ret_count, all were, whatever failed after (-ENOMEM: the
 * heap limit or memory allowed no span; -EFAULT: get_ptr was not writable,
 * and the spans got were taken back, so get_done is 0). Only if ret_done
 * itself cannot be written (the struct became read-only) is the caller
 * not told; that is -EFAULT too.
 */
struct spanalloc_exchange {
	__u32 size;		/* in: sizeof(struct spanalloc_exchange) */
	__u32 flags;		/* in: 0 */
	__u64 ret_ptr;		/* in: struct spanalloc_ret[ret_count] */
	__u64 get_ptr;		/* in: struct spanalloc_span[get_count] */
	__u32 ret_count;	/* in: <= max_batch */
	__u32 get_count;	/* in: <= max_batch */
	__u32 get_spanclass;	/* in */
	__u32 ret_done;		/* out */
	__u32 get_done;		/* out */
	__u32 reserved;		/* in: 0 */
};

#define SPANALLOC_EXCHANGE_SIZE_VER0	48

/*
 * SPANALLOC_IOC_ALLOC_LARGE: one span of npages pages (1 <= npages <=
 * max_large_pages) for one large object; span class 0, or 1 with
 * SPANALLOC_LARGE_NOSCAN. Freed with an EMPTY return.
 */
#define SPANALLOC_LARGE_NOSCAN	_BITUL(0)

struct spanalloc_large {
	__u32 size;		/* in: sizeof(struct spanalloc_large) */
	__u32 flags;		/* in: SPANALLOC_LARGE_* */
	__u32 npages;		/* in */
	__u32 reserved;		/* in: 0 */
	struct spanalloc_span span;	/* out */
};

#define SPANALLOC_LARGE_SIZE_VER0	40

/* Spans of one span class in each kernel-side state. */
struct spanalloc_class_stats {
	__u32 owned;		/* handed out, not returned */
	__u32 cached;		/* in a per-CPU cache */
	__u32 partial;		/* on the central partial list */
	__u32 full;		/* on the central full list */
};

/*
 * SPANALLOC_IOC_STATS: this heap's counters. If classes_ptr is not 0 it
 * receives classes_count (<= SPANALLOC_NUM_SPANCLASSES) entries of
 * struct spanalloc_class_stats, indexed by span class.
 */
struct spanalloc_stats {
	__u32 size;		/* in: sizeof(struct spanalloc_stats) */
	__u32 classes_count;	/* in */
	__u64 classes_ptr;	/* in */
	__u64 limit;		/* bytes the heap's spans may take */
	__u64 mapped;		/* bytes of the heap's mapping, 0 if none */
	__u64 arenas;		/* arenas set up */
	__u64 pages_inuse;	/* pages in spans */
	__u64 pages_free;	/* free pages in set-up arenas */
	__u64 spans;		/* spans alive */
	__u64 large_spans;	/* of which large */
	__u64 exchanges;	/* exchange calls */
	__u64 large_allocs;	/* alloc_large calls that succeeded */
	__u64 spans_got;	/* spans handed out */
	__u64 spans_returned;	/* spans returned */
	__u64 pcp_hits;		/* spans got from a per-CPU cache */
	__u64 central_hits;	/* spans got from a central partial list */
	__u64 heap_spans;	/* spans got from the page allocator */
	__u64 pcp_flushes;	/* per-CPU cache overflows and CPU drains */
	__u64 enomem;		/* requests refused by the limit */
	/* since VER1 (a VER0 caller is simply not told) */
	__u64 pages_dirty;	/* free pages that may still be resident */
	__u64 pages_released;	/* free pages given back to the kernel */
	/* since VER2 */
	__u64 pages_unreleasable; /* free pages whose release was refused */
};

#define SPANALLOC_STATS_SIZE_VER0	144
#define SPANALLOC_STATS_SIZE_VER1	160
#define SPANALLOC_STATS_SIZE_VER2	168

/* SPANALLOC_IOC_SET_LIMIT: lower this heap's limit (bytes, page multiple). */
struct spanalloc_limit {
	__u32 size;		/* in: sizeof(struct spanalloc_limit) */
	__u32 flags;		/* in: 0 */
	__u64 limit;		/* in: > 0, <= the current limit */
};

#define SPANALLOC_LIMIT_SIZE_VER0	16

/*
 * SPANALLOC_IOC_RELEASE: give every free page of the heap back to the
 * kernel now, as the background scavenger and the shrinker do bit by bit.
 * Released pages read as zero when next touched. Only free pages (in no
 * span) are released: memory in spans user space holds is never touched,
 * and neither are pages where the heap is no longer mapped as it was
 * (unmapped, replaced, moved or split by user space), that are mlock()ed
 * (as MADV_DONTNEED refuses to), or that share a transparent huge page with
 * memory in use (releasing them would split it and free nothing). Those
 * count as unreleasable (pages_unreleasable in the stats): the background
 * scavenger and the shrinker leave them until pages next to them are freed,
 * and every call of this ioctl tries them again. A fatal signal stops the
 * call (-EINTR).
 */
struct spanalloc_release {
	__u32 size;		/* in: sizeof(struct spanalloc_release) */
	__u32 flags;		/* in: 0 */
	__u64 released;		/* out: bytes released by this call */
};

#define SPANALLOC_RELEASE_SIZE_VER0	16

/*
 * SPANALLOC_IOC_ADOPT: after fork(), the child's own heap. The child
 * inherits a copy of its parent's heap mapping, but not the heap: every
 * call on the parent's heap fails in the child with -EPERM. To allocate,
 * free and give memory back, the child opens the device (a new heap, not
 * mapped yet) and calls ADOPT on the new file with the inherited mapping
 * [addr, addr + len) and the spans of it that it still uses. The call
 *   - cuts each listed span in the new heap at the same pages, with a new
 *     handle (written back), in the state op says: held by user space
 *     (SPANALLOC_ADOPT_OWNED), or given back as by EXCHANGE
 *     (SPANALLOC_RET_PARTIAL, SPANALLOC_RET_FULL; small classes only);
 *   - gives every page of the mapping that is in no listed span back to
 *     the kernel (it reads as zero from then on): the child's copy of what
 *     it does not use costs nothing;
 *   - makes the inherited mapping the new heap's: the mapping no longer
 *     refers to the parent's heap at all, and the new heap is used as one
 *     the child mapped itself.
 * The parent's heap is never read or changed. The mapping must be exactly
 * the inherited one (not moved, split, resized or mlock()ed since), the new
 * heap opened through the same device node, and the mapping within this
 * heap's max_heap_limit; spans must lie in it, not overlap, and have their
 * class's length (any length for the large classes 0, 1). Until the call
 * returns, every other call on the new heap fails (-ENXIO; mmap -EBUSY).
 * Errors: -EBUSY (this heap is mapped, or an ADOPT was made on it before),
 * -EINVAL, -ENOMEM (the heap's limit), -EFAULT, -EINTR. After any error
 * but the first -EBUSY the new heap stays unusable: close it. The
 * inherited mapping's spans are untouched by a failure; its free pages may
 * have been dropped already.
 */
enum spanalloc_adopt_op {
	SPANALLOC_ADOPT_OWNED = 0,	/* the child holds the span */
	/* SPANALLOC_RET_PARTIAL, SPANALLOC_RET_FULL as for EXCHANGE */
};

struct spanalloc_adopt_span {
	__u64 addr;		/* in: user address of its first byte */
	__u32 npages;		/* in: length in heap pages */
	__u16 spanclass;	/* in: SPANALLOC_SPANCLASS() */
	__u16 op;		/* in: enum spanalloc_adopt_op or a ret op */
	__u64 handle;		/* out: its handle in the new heap */
};

struct spanalloc_adopt {
	__u32 size;		/* in: sizeof(struct spanalloc_adopt) */
	__u32 flags;		/* in: 0 */
	__u64 addr;		/* in: the inherited mapping's first byte */
	__u64 len;		/* in: its length */
	__u64 spans_ptr;	/* in: struct spanalloc_adopt_span[span_count] */
	__u32 span_count;	/* in: at most len / SPANALLOC_PAGE_SIZE */
	__u32 reserved;		/* 0 */
	__u64 released;		/* out: bytes of the mapping in no span */
};

#define SPANALLOC_ADOPT_SIZE_VER0	48

/*
 * SPANALLOC_IOC_SNAPSHOT: the layout of a heap, for pictures and
 * debuggers: a byte per page of its set-up arenas and every span, in page
 * order. Each window of pages is read at one moment while the heap runs
 * on, so two windows may disagree by the spans that moved in between.
 * heap_id 0 (or the heap's own id) is the heap of this file; another
 * heap's id (SPANALLOC_IOC_INFO, /proc/spanallocinfo) needs CAP_SYS_ADMIN
 * (-EPERM; -ESRCH if there is none). Up to pages_count bytes go to
 * pages_ptr and up to spans_count entries to spans_ptr (either may be 0
 * with its count); on return the counts say how many there are, which may
 * be more than there was room for.
 */
enum spanalloc_page_state {
	SPANALLOC_PAGE_SPAN = 1,	/* in a span */
	SPANALLOC_PAGE_DIRTY,		/* free, may still be resident */
	SPANALLOC_PAGE_RELEASED,	/* free, given back to the kernel */
	SPANALLOC_PAGE_STUCK,		/* free, its release was refused */
};

enum spanalloc_span_state {
	SPANALLOC_SPAN_OWNED = 1,	/* user space has it */
	SPANALLOC_SPAN_CACHED,		/* in a per-CPU cache */
	SPANALLOC_SPAN_PARTIAL,		/* on its class's partial list */
	SPANALLOC_SPAN_FULL,		/* on its class's full list */
	SPANALLOC_SPAN_MOVING,		/* being handed out or returned */
};

struct spanalloc_snapshot_span {
	__u32 start;		/* first page, counted from the heap's base */
	__u32 npages;
	__u16 spanclass;	/* SPANALLOC_SPANCLASS(); 0, 1: large */
	__u8 state;		/* enum spanalloc_span_state */
	__u8 reserved;
};

struct spanalloc_snapshot {
	__u32 size;		/* in: sizeof(struct spanalloc_snapshot) */
	__u32 flags;		/* in: 0 */
	__u64 heap_id;		/* in: 0 for this file's heap */
	__u64 pages_ptr;	/* in: __u8[pages_count] */
	__u64 spans_ptr;	/* in: struct spanalloc_snapshot_span[spans_count] */
	__u32 pages_count;	/* in: room; out: pages of its set-up arenas */
	__u32 spans_count;	/* in: room; out: spans */
	__u64 base;		/* out: user address of page 0 in its owner */
	__u32 arenas;		/* out: arenas set up */
	__u32 reserved;		/* in: 0 */
};

#define SPANALLOC_SNAPSHOT_SIZE_VER0	56

/*
 * SPANALLOC_IOC_SET_SPAN_PAGES: how many pages the heap's spans of each
 * size class have from now on (spans already cut keep theirs). pages[c]
 * is 0 for the table's npages, or from the table's npages up to
 * SPANALLOC_MAX_CLASS_PAGES (or the table's, if larger) with at most
 * SPANALLOC_MAX_NELEMS objects; pages[0] (large objects) is 0. Longer
 * spans for classes with few objects per page mean fewer span changes
 * and less metadata per byte, for more memory held per thread and class.
 * All or nothing: -EINVAL and no change if any entry is out of range.
 */
struct spanalloc_span_pages {
	__u32 size;		/* in: sizeof(struct spanalloc_span_pages) */
	__u32 flags;		/* in: 0 */
	__u8 pages[SPANALLOC_NUM_CLASSES];	/* in: pages per span, by size class */
	__u8 reserved[5];	/* in: 0 */
};

#define SPANALLOC_SPAN_PAGES_SIZE_VER0	80

#define SPANALLOC_IOC_MAGIC	0xb6
#define SPANALLOC_IOC_INFO	_IOWR(SPANALLOC_IOC_MAGIC, 0x00, struct spanalloc_info)
#define SPANALLOC_IOC_EXCHANGE	_IOWR(SPANALLOC_IOC_MAGIC, 0x01, struct spanalloc_exchange)
#define SPANALLOC_IOC_ALLOC_LARGE _IOWR(SPANALLOC_IOC_MAGIC, 0x02, struct spanalloc_large)
#define SPANALLOC_IOC_STATS	_IOWR(SPANALLOC_IOC_MAGIC, 0x03, struct spanalloc_stats)
#define SPANALLOC_IOC_SET_LIMIT	_IOW(SPANALLOC_IOC_MAGIC, 0x04, struct spanalloc_limit)
#define SPANALLOC_IOC_RELEASE	_IOWR(SPANALLOC_IOC_MAGIC, 0x05, struct spanalloc_release)
#define SPANALLOC_IOC_ADOPT	_IOWR(SPANALLOC_IOC_MAGIC, 0x06, struct spanalloc_adopt)
#define SPANALLOC_IOC_SNAPSHOT	_IOWR(SPANALLOC_IOC_MAGIC, 0x07, struct spanalloc_snapshot)
#define SPANALLOC_IOC_SET_SPAN_PAGES _IOW(SPANALLOC_IOC_MAGIC, 0x08, struct spanalloc_span_pages)

#endif /* _UAPI_LINUX_SPANALLOC_H */
