/* SPDX-License-Identifier: GPL-2.0 */
/*
 * spanalloc_trace: the module's tracepoints (TRACE_SYSTEM spanalloc), for
 * perf and tracefs. Each names its heap by the id /proc/spanallocinfo
 * shows, so a trace and a snapshot of that file can be joined. They sit
 * where the module already counts the same event (a disabled tracepoint
 * is a patched-out branch), never inside a loop over pages.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM spanalloc

#if !defined(_SPANALLOC_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _SPANALLOC_TRACE_H

#include <linux/tracepoint.h>
#include "spanalloc.h"

/* enum values the formats name: tools that read them get the numbers */
TRACE_DEFINE_ENUM(SPANALLOC_RET_PARTIAL);
TRACE_DEFINE_ENUM(SPANALLOC_RET_FULL);
TRACE_DEFINE_ENUM(SPANALLOC_RET_EMPTY);
TRACE_DEFINE_ENUM(SA_RELEASE_IOCTL);
TRACE_DEFINE_ENUM(SA_RELEASE_SCAVENGER);
TRACE_DEFINE_ENUM(SA_RELEASE_SHRINKER);

/*
 * One get of an exchange: want spans of spanclass asked for, got handed
 * out, pcp of them from this CPU's stack as it was, central through a
 * refill of that stack from the class's partial list (or straight from the
 * list when the per-CPU layer is off), fresh cut by the page allocator.
 * err is why fewer than want came (0 if none failed).
 */
TRACE_EVENT(spanalloc_span_get,
	    TP_PROTO(u64 heap, u16 spanclass, u32 want, u32 got, u32 pcp,
		     u32 central, int err),
	    TP_ARGS(heap, spanclass, want, got, pcp, central, err),
	    TP_STRUCT__entry(__field(u64, heap)
			     __field(u16, spanclass)
			     __field(u32, want)
			     __field(u32, got)
			     __field(u32, pcp)
			     __field(u32, central)
			     __field(u32, fresh)
			     __field(int, err)),
	    TP_fast_assign(__entry->heap = heap;
			   __entry->spanclass = spanclass;
			   __entry->want = want;
			   __entry->got = got;
			   __entry->pcp = pcp;
			   __entry->central = central;
			   __entry->fresh = got - pcp - central;
			   __entry->err = err;),
	    TP_printk("heap=%llu spanclass=%u want=%u got=%u pcp=%u central=%u fresh=%u err=%d",
		      __entry->heap, __entry->spanclass, __entry->want,
		      __entry->got, __entry->pcp, __entry->central,
		      __entry->fresh, __entry->err)
);

/* A span user space gave back (op), and whether it was on the full list. */
TRACE_EVENT(spanalloc_span_return,
	    TP_PROTO(u64 heap, u64 handle, u16 spanclass, u32 npages, u32 op,
		     bool was_full),
	    TP_ARGS(heap, handle, spanclass, npages, op, was_full),
	    TP_STRUCT__entry(__field(u64, heap)
			     __field(u64, handle)
			     __field(u16, spanclass)
			     __field(u32, npages)
			     __field(u32, op)
			     __field(bool, was_full)),
	    TP_fast_assign(__entry->heap = heap;
			   __entry->handle = handle;
			   __entry->spanclass = spanclass;
			   __entry->npages = npages;
			   __entry->op = op;
			   __entry->was_full = was_full;),
	    TP_printk("heap=%llu handle=%#llx spanclass=%u npages=%u op=%s from=%s",
		      __entry->heap, __entry->handle, __entry->spanclass,
		      __entry->npages,
		      __print_symbolic(__entry->op,
				       { SPANALLOC_RET_PARTIAL, "partial" },
				       { SPANALLOC_RET_FULL, "full" },
				       { SPANALLOC_RET_EMPTY, "empty" }),
		      __entry->was_full ? "full" : "owned")
);

/* A large object's span (span class 0 or 1) handed out. */
TRACE_EVENT(spanalloc_large_alloc,
	    TP_PROTO(u64 heap, u64 handle, u32 npages, bool noscan),
	    TP_ARGS(heap, handle, npages, noscan),
	    TP_STRUCT__entry(__field(u64, heap)
			     __field(u64, handle)
			     __field(u32, npages)
			     __field(bool, noscan)),
	    TP_fast_assign(__entry->heap = heap;
			   __entry->handle = handle;
			   __entry->npages = npages;
			   __entry->noscan = noscan;),
	    TP_printk("heap=%llu handle=%#llx npages=%u noscan=%d",
		      __entry->heap, __entry->handle, __entry->npages,
		      __entry->noscan)
);

/* The heap set up arena number arena: it now has active_pages pages. */
TRACE_EVENT(spanalloc_heap_grow,
	    TP_PROTO(u64 heap, u32 arena, u32 active_pages),
	    TP_ARGS(heap, arena, active_pages),
	    TP_STRUCT__entry(__field(u64, heap)
			     __field(u32, arena)
			     __field(u32, active_pages)),
	    TP_fast_assign(__entry->heap = heap;
			   __entry->arena = arena;
			   __entry->active_pages = active_pages;),
	    TP_printk("heap=%llu arena=%u active_pages=%u",
		      __entry->heap, __entry->arena, __entry->active_pages)
);

/*
 * One release of free pages (sa_scavenge()) that ran: pages given back to
 * the kernel, in ns nanoseconds from the call (a wait for another release
 * included), for why; ret as sa_scavenge() returns it. A release that did
 * not start (the heap not mapped, busy for a background one, or a fatal
 * signal while waiting) is not traced.
 */
TRACE_EVENT(spanalloc_release,
	    TP_PROTO(u64 heap, u32 why, u64 pages, u64 ns, int ret),
	    TP_ARGS(heap, why, pages, ns, ret),
	    TP_STRUCT__entry(__field(u64, heap)
			     __field(u32, why)
			     __field(u64, pages)
			     __field(u64, ns)
			     __field(int, ret)),
	    TP_fast_assign(__entry->heap = heap;
			   __entry->why = why;
			   __entry->pages = pages;
			   __entry->ns = ns;
			   __entry->ret = ret;),
	    TP_printk("heap=%llu why=%s pages=%llu ns=%llu ret=%d",
		      __entry->heap,
		      __print_symbolic(__entry->why,
				       { SA_RELEASE_IOCTL, "ioctl" },
				       { SA_RELEASE_SCAVENGER, "scavenger" },
				       { SA_RELEASE_SHRINKER, "shrinker" }),
		      __entry->pages, __entry->ns, __entry->ret)
);

/*
 * Spans moved from a CPU's stack to the central lists: a stack that ran
 * over (spill), or all of a CPU's stacks (drain: the CPU went offline or
 * memory is short; cpu is -1 for "the CPU this ran on").
 */
TRACE_EVENT(spanalloc_pcp_drain,
	    TP_PROTO(u64 heap, int cpu, u16 spanclass, u32 spans, bool drain),
	    TP_ARGS(heap, cpu, spanclass, spans, drain),
	    TP_STRUCT__entry(__field(u64, heap)
			     __field(int, cpu)
			     __field(u16, spanclass)
			     __field(u32, spans)
			     __field(bool, drain)),
	    TP_fast_assign(__entry->heap = heap;
			   __entry->cpu = cpu;
			   __entry->spanclass = spanclass;
			   __entry->spans = spans;
			   __entry->drain = drain;),
	    TP_printk("heap=%llu cpu=%d spanclass=%u spans=%u %s",
		      __entry->heap, __entry->cpu, __entry->spanclass,
		      __entry->spans, __entry->drain ? "drain" : "spill")
);

/* A span of npages refused: pages in use would pass the heap's limit. */
TRACE_EVENT(spanalloc_limit,
	    TP_PROTO(u64 heap, u32 npages, u32 inuse, u32 limit),
	    TP_ARGS(heap, npages, inuse, limit),
	    TP_STRUCT__entry(__field(u64, heap)
			     __field(u32, npages)
			     __field(u32, inuse)
			     __field(u32, limit)),
	    TP_fast_assign(__entry->heap = heap;
			   __entry->npages = npages;
			   __entry->inuse = inuse;
			   __entry->limit = limit;),
	    TP_printk("heap=%llu npages=%u inuse=%u limit=%u",
		      __entry->heap, __entry->npages, __entry->inuse,
		      __entry->limit)
);

#endif /* _SPANALLOC_TRACE_H */

/* out of tree: define_trace.h finds this file through -I$(src)/kmod */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE spanalloc_trace
#include <trace/define_trace.h>
