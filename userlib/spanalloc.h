/* SPDX-License-Identifier: MIT */
/*
 * libspanalloc: a Go-style object allocator on spans from spanalloc.ko.
 *
 * The kernel module hands out spans (runs of 8 KiB pages serving one size
 * class) from a heap mapped into this process; this library carves them
 * into objects. Each thread allocates from its own span of each class
 * without locks or system calls; a thread that fills a span gives it back
 * and gets the next one in a single system call.
 *
 * Every function is thread-safe. Memory from sa_alloc() and friends is
 * zeroed (but for sa_malloc() and the aligned calls) and may be freed from
 * any thread. Alignment, exactly: every object of 16 bytes or more is
 * 16-byte aligned (malloc's max_align_t promise), 8 KiB for large objects
 * (over 32 KiB); a smaller sa_alloc() object is 8-byte aligned; a noscan
 * object under 16 bytes (15 in a collected heap, whose objects are a byte
 * longer), but for one of 8 bytes (which takes a class: 8 bytes, or 16
 * with the byte), shares a 16-byte block (the tiny allocator) and is
 * aligned to the largest of 8, 4 and 2 that divides its size rounded up
 * to 2 (the size asked for, whatever the extra byte adds; every type
 * that fits in it is aligned: a type's size is a multiple of its
 * alignment). Freeing a pointer twice or one this library did not return
 * aborts the process with a message, as glibc does for what it can detect.
 *
 * fork(): the child gets a heap of its own, made of its copy of the
 * parent's (SPANALLOC_IOC_ADOPT): it keeps every object it inherited, may
 * free any of them (whichever parent thread allocated it), allocates and
 * gives memory back as any process, and shares nothing with the parent,
 * whose heap is untouched. The library's pthread_atfork() handlers hold
 * its locks across the fork (so no collection runs during it); the caches
 * of the parent's other threads are taken over by the child. A collected
 * heap stays collected in the child, which marks with one thread. If the
 * child cannot adopt (an older module), that is said on stderr and the
 * child allocates only from the spans it inherited.
 *
 * The drop-in (libspanalloc-malloc.so: LD_PRELOAD it, or link
 * libspanalloc-malloc.a) replaces malloc, free, calloc, realloc,
 * reallocarray, the aligned allocators, malloc_usable_size, malloc_trim,
 * mallinfo2, mallopt, the __libc_* names and C++ new and delete with this
 * library: malloc is sa_malloc, calloc zeroes a noscan object. Without a
 * usable /dev/spanalloc it says why once on stderr and uses glibc's
 * allocator, unless SPANALLOC_REQUIRE=1, which makes that fatal.
 */
#ifndef SPANALLOC_H
#define SPANALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Opens /dev/spanalloc (or $SPANALLOC_DEVICE), checks that the module
 * speaks this library's ABI and size class table, and maps the heap. Called
 * by the first allocation anyway; call it to learn early why the heap is
 * not available. Returns 0, or -1 with errno set and sa_strerror() saying
 * what happened and what to do.
 */
int sa_init(void);

/* Why sa_init() (or the implicit one) failed; "" when it did not. */
const char *sa_strerror(void);

/* size bytes for an object that may hold pointers. NULL + errno on error. */
void *sa_alloc(size_t size);

/*
 * size bytes for an object that never holds pointers (numbers, strings,
 * buffers). Objects under 16 bytes but for 8-byte ones share 16-byte
 * blocks (Go's tiny allocator), so they take less memory than sa_alloc()
 * gives them; 8-byte objects take the 8-byte class, which they fill as
 * densely (the 16-byte class in a collected heap, where they are 9).
 */
void *sa_alloc_noscan(size_t size);

/*
 * size bytes, not zeroed, never scanned by the collector: malloc's
 * counterpart, for memory the program frees itself (in a collected heap,
 * what it points to is not kept alive by it). Objects of up to 8 bytes
 * are 8-byte aligned (the 8-byte class; in a collected heap, whose end
 * pad adds a byte, those up to 7), larger ones 16-byte aligned.
 */
void *sa_malloc(size_t size);

/*
 * n objects of size bytes, zeroed and scanned like sa_alloc(); NULL with
 * errno ENOMEM when n * size overflows.
 */
void *sa_calloc(size_t n, size_t size);

/*
 * Resizes p to size bytes, in place when its size class (or, for a large
 * object, its span still over half used) allows, else by moving it: the
 * copy keeps p's kind (scanned and zeroed past the old end, or not).
 * sa_realloc(NULL, n) is sa_malloc(n); sa_realloc(p, 0) frees p and
 * returns NULL, as glibc does. On failure p is untouched and NULL returned.
 */
void *sa_realloc(void *p, size_t size);

/*
 * size bytes at an address aligned to align, any power of two (errno
 * EINVAL otherwise); not zeroed, never scanned. Up to 8 KiB the object
 * comes from the smallest size class whose objects are all so aligned;
 * beyond, from a span of its own that much longer. Freed with sa_free().
 */
void *sa_aligned_alloc(size_t align, size_t size);

/* posix_memalign(): align also a multiple of sizeof(void *); 0 or an errno. */
int sa_posix_memalign(void **out, size_t align, size_t size);

/* malloc_usable_size(): sa_usable_size(). */
size_t sa_malloc_usable_size(void *p);

/* Frees p (NULL is ignored), from any thread. */
void sa_free(void *p);

/* How many bytes from p the caller may use; 0 for NULL. */
size_t sa_usable_size(const void *p);

/*
 * Gives the calling thread's spans back to the kernel now (as thread exit
 * does). The thread may allocate again afterwards.
 */
void sa_thread_flush(void);

/*
 * How many pages' worth of used-up spans of each size class a thread keeps
 * for reuse, so that a thread freeing what it allocated gets its objects
 * back with no system call (default 8; a span class with bigger spans
 * still keeps one). 0 hands every used-up span back at once, as Go does:
 * the least memory held, one system call per span turnover. Takes effect
 * at each thread's next span change. SPANALLOC_HELD_PAGES sets it at
 * start-up. Spans kept aside decay (sa_set_held_decay_ms). Returns the
 * previous value, or -1 with errno EINVAL when pages is over 64.
 */
int sa_set_held_pages(unsigned int pages);

/*
 * How long a span kept aside (sa_set_held_pages), or a span a thread
 * adopted by freeing into it, stays with the thread without being taken
 * again: ms milliseconds (default 100). It then goes back to the kernel
 * at the thread's next span change. In a heap without the collector, a
 * thread that makes none for twice as long (it sleeps, or its frees keep
 * its spans going) has them taken, and its active spans (all but the
 * tiny allocator's) if it made no refill and started no new 64-object
 * word of a span for as long either, by the next thread that changes spans,
 * without being stopped or signalled (membarrier(2); where the kernel
 * refuses it, and in ThreadSanitizer builds, such a thread keeps them
 * until it changes spans, exits, flushes or calls sa_trim()). In a
 * collected heap, a span not taken again across two collections goes
 * back, whether its thread runs or not, and so do the active spans of a
 * thread that made no span change across two. SPANALLOC_HELD_DECAY_MS sets it at start-up.
 * Returns the previous value, or -1 with errno EINVAL when ms is 0 or
 * over a day (86400000).
 */
int sa_set_held_decay_ms(unsigned int ms);

/* Counters since sa_init(), summed over all threads. */
struct sa_stats {
	uint64_t heap_mapped;		/* bytes of address space reserved */
	uint64_t objects_allocated;	/* small and tiny objects */
	uint64_t objects_freed;
	uint64_t tiny_allocated;	/* of objects_allocated: tiny */
	uint64_t large_allocated;	/* large objects */
	uint64_t large_freed;
	uint64_t syscalls;		/* ioctls made on the heap */
	uint64_t spans_got;		/* spans received from the kernel */
	uint64_t spans_returned;	/* spans handed back */
	uint64_t local_sweeps;		/* used-up spans refilled by frees, no syscall */
	uint64_t adopted;		/* full spans taken back by a freer */
	/*
	 * Objects per span class: the first SPANALLOC_NUM_SPANCLASSES (134)
	 * are used; the array keeps its first size, so the layout does not
	 * change with the size class table.
	 */
	uint64_t class_allocated[136];
	uint64_t bytes_allocated;	/* by object size (size class) */
	uint64_t bytes_freed;		/* by sa_free */
};

/*
 * Fills *st. Returns 0, or -1 with errno if the heap is not initialized.
 * The calling thread's own allocations and frees are counted at once;
 * another thread's reach the counts when it next changes spans (at most
 * its current spans' worth late), or when it exits.
 */
int sa_get_stats(struct sa_stats *st);

/*
 * The library's own memory about the heap, in bytes (all but mapped are
 * in use now). Beside the objects, the heap costs total, and span_records
 * / span_bytes is the share of a span its record takes.
 */
struct sa_meta_stats {
	uint64_t span_records;	/* a record per span in use, with its bitmaps */
	uint64_t span_bytes;	/* the spans in use, large ones included */
	uint64_t tiny_masks;	/* the block masks of tiny spans */
	uint64_t type_maps;	/* the pointer maps of spans with typed objects */
	uint64_t page_map;	/* its entries for the pages of spans in use */
	uint64_t thread_caches;	/* a cache per thread that allocated */
	uint64_t total;		/* the five above */
	uint64_t mapped;	/* pools of records and tables, caches: free parts too */
};

/*
 * Fills the first size bytes of *m: a caller built against an older,
 * shorter struct keeps working, and a newer, longer one gets 0 in what
 * this library does not know. 0, or -1 with errno if the heap is not
 * initialized.
 */
int sa_get_meta_stats(struct sa_meta_stats *m, size_t size);

/*
 * The kernel's counters for this heap (struct spanalloc_stats and, when
 * classes is not NULL, SPANALLOC_NUM_SPANCLASSES (134) struct
 * spanalloc_class_stats), for tools and
 * tests; see <linux/spanalloc.h>. Returns 0 or -1 with errno.
 */
struct spanalloc_stats;
struct spanalloc_class_stats;
int sa_kernel_stats(struct spanalloc_stats *st,
		    struct spanalloc_class_stats *classes);

/*
 * Gives every free page of the heap back to the kernel now (malloc_trim's
 * counterpart; the kernel also does it in the background and under memory
 * pressure), after handing back the spans the calling thread kept aside
 * (sa_set_held_pages). Objects in use are untouched. Returns the bytes
 * released, or -1 with errno.
 */
long long sa_trim(void);

/*
 * The heap profile, as Go's runtime.MemProfile and in pprof's format:
 * allocations sampled on average once per rate bytes allocated (Go's
 * MemProfileRate; 0, the default, samples nothing), each with its call
 * stack; for each stack, what it allocated and what of it is still in
 * use, as estimates of every allocation (sampled ones stand for the rate's
 * worth of bytes). Frees and collections are seen when the span's holder
 * takes them in or the collector sweeps, as in Go. SPANALLOC_HEAPPROFILE
 * =path samples from the start (SPANALLOC_PROFILE_RATE=bytes, default
 * 524288, at most 2^40) and writes the profile to path when the program
 * exits; %p in path is the process id (a forked child that inherits a path
 * without one writes path.PID).
 *
 * sa_set_profile_rate() returns the previous rate; a change applies to
 * each thread's next sample. sa_heap_profile_write() writes the profile
 * as it is now to path (read it with `go tool pprof` or `pprof`, which
 * symbolize the addresses from the mapped files); 0, or -1 with errno.
 */
size_t sa_set_profile_rate(size_t bytes);
int sa_heap_profile_write(const char *path);

/*
 * Garbage collection.
 *
 * sa_gc_init() makes the heap collected: from then on every object of the
 * heap (from sa_alloc, sa_alloc_noscan and sa_alloc_typed) lives as long
 * as it is reachable and is reclaimed after that; sa_free() still frees an
 * object at once. Objects allocated before stay until freed or found
 * unreachable, like the others. Returns 0, or -1 with errno (EINVAL: a bad
 * SPANALLOC_GC_SIGNAL; EAGAIN: a thread's stack could not be found).
 *
 * Reachable means pointed to from a root or from a reachable scan object,
 * anywhere inside the object or, with end pointers on (the default), just
 * past its end. The roots are:
 *   - every registered thread's registers and stack, from where it stopped
 *     to the stack's top. Registered are: every thread created with
 *     pthread_create while this library is loaded (it replaces the C
 *     library's, and registers the new thread before its start routine
 *     runs, so the start argument is safe; in a manual heap too, every new
 *     thread gets its cache at once and its creator waits for it to
 *     start; the drop-in libspanalloc-malloc does not replace
 *     pthread_create), every thread that allocates
 *     from the heap, the thread that called sa_gc_init(), and threads that
 *     call sa_gc_register_thread();
 *   - every registered thread's thread-local storage (__thread variables,
 *     also of libraries loaded with dlopen, and every
 *     pthread_setspecific value; glibc on x86-64);
 *   - a thread's alternate signal stack while it runs on it, and the stack
 *     it said it switched to (sa_gc_set_stack);
 *   - ranges added with sa_gc_add_roots();
 *   - the data and bss of the program and its shared libraries, unless
 *     turned off (sa_gc_set_scan_globals, SPANALLOC_GC_GLOBALS=0).
 * Not roots: memory from malloc() (the C library's) or mmap(), the stacks
 * of suspended coroutines and threads that were never registered (made
 * with clone(), or before this library was loaded). Keep pointers to
 * collected objects there only if they are also reachable from a root, or
 * add that memory with sa_gc_add_roots().
 *
 * Collections stop registered threads with a signal (SPANALLOC_GC_SIGNAL,
 * default SIGRTMIN+6) at a point where they are not inside this library,
 * and resume them when marking is done; sweeping happens afterwards,
 * lazily and in a background thread. In a collected heap pthread_sigmask,
 * sigprocmask, sigwait, sigwaitinfo and sigtimedwait leave that signal
 * alone; a thread that blocks it anyway (a raw system call, or a mask set
 * before sa_gc_init) is refused: registering it fails, and so does its
 * allocating, or sa_gc_init. Do not install another handler for it. The
 * signal may interrupt system calls:
 * read, write, wait and others restart (SA_RESTART), but poll, ppoll,
 * select, epoll_wait, nanosleep, clock_nanosleep, sleep, sockets with
 * timeouts (SO_RCVTIMEO, SO_SNDTIMEO) and semop return EINTR, as they do
 * for any signal (signal(7)): retry them.
 *
 * When the kernel refuses memory (the heap's limit, a memory cgroup), a
 * collected heap collects once and retries before an allocation fails.
 *
 * Environment, read by sa_gc_init():
 *   SPANALLOC_GOGC=N|off        as GOGC: collect when the heap grows N%
 *                               over what the last collection left (100)
 *   SPANALLOC_GOMEMLIMIT=N[KiB|MiB|GiB]  as GOMEMLIMIT: collect more often
 *                               to keep the heap's spans under N bytes
 *   SPANALLOC_GCTRACE=1         one line per collection on stderr, in the
 *                               format of Go's GODEBUG=gctrace=1
 *   SPANALLOC_GC_GLOBALS=0      do not scan data and bss
 *   SPANALLOC_GC_PROCS=N        marking threads (default: online CPUs, <= 8)
 *   SPANALLOC_GC_SIGNAL=SIG     the stop signal: SIGRTMIN+n, SIGRTMAX-n,
 *                               SIGPWR, SIGXCPU, SIGUSR1, SIGUSR2, ... or a
 *                               number (default SIGRTMIN+6; SIGSYS in a
 *                               ThreadSanitizer build, which delivers
 *                               other signals late)
 *   SPANALLOC_GC_END_POINTERS=0 a pointer just past an object does not
 *                               keep it (see sa_gc_set_end_pointers)
 */
int sa_gc_init(void);

/* A pointer map for sa_alloc_typed(): bit i of ptrmask[i / 64] is set when
 * word i (8 bytes) of an object of size bytes holds a pointer. Arrays of
 * such objects may be allocated at once (size a multiple of type->size). */
struct sa_type {
	size_t size;
	const uint64_t *ptrmask;
};

/* An object scanned precisely: only the words type says are pointers. */
void *sa_alloc_typed(size_t size, const struct sa_type *type);

/* Registers the calling thread's stack and registers as roots. 0 or -1. */
int sa_gc_register_thread(void);
/* The calling thread stops being scanned (its spans go back first). */
void sa_gc_unregister_thread(void);

/*
 * The calling thread now runs on the stack [lo, hi) (a coroutine's, a
 * user-level thread's, from makecontext or the like); NULL, NULL: back on
 * its own. Call it before switching. While the thread runs on [lo, hi), a
 * collection scans that stack from where the thread stopped and the
 * thread's own stack whole. Other stacks that are not in use are not
 * scanned: allocate them from the heap (sa_alloc: scanned while reachable)
 * or add them with sa_gc_add_roots(). Returns 0, or -1 with errno.
 */
int sa_gc_set_stack(void *lo, void *hi);

/*
 * End pointers: whether a pointer just past the end of an object (an end
 * pointer, a cursor at the end of a buffer) keeps the object. On (the
 * default, as C programs expect and as Boehm GC's default), every object
 * allocated in a collected heap is one byte longer, which moves sizes
 * that fill a size class exactly (16, 32, 64, ...) to the next class; off,
 * only pointers into an object keep it, as in Go. Applies to objects
 * allocated from then on. Returns the previous setting.
 */
int sa_gc_set_end_pointers(int on);

/*
 * The signal collections stop threads with: the one in use after
 * sa_gc_init(), before it the one sa_gc_init() would use. A program that
 * blocks signals must leave this one open in every registered thread.
 * -1 with EINVAL when SPANALLOC_GC_SIGNAL names none the collector can use.
 */
int sa_gc_get_signal(void);

/* [lo, hi) is scanned as roots until removed by the same lo. 0 or -1. */
int sa_gc_add_roots(void *lo, void *hi);
int sa_gc_remove_roots(void *lo);
void sa_gc_set_scan_globals(int on);

/* A full collection now; returns when it is done and swept. */
void sa_gc_collect(void);

/* GOGC: returns the previous value; a negative value turns pacing off. */
int sa_gc_set_percent(int percent);
/* GOMEMLIMIT in bytes; returns the previous one. INT64_MAX: no limit. */
int64_t sa_gc_set_memory_limit(int64_t bytes);
/* Automatic collections off and back on (nests); sa_gc_collect() works. */
void sa_gc_disable(void);
void sa_gc_enable(void);

/* The start of the allocated object p points into, or NULL. */
void *sa_base(const void *p);

#define SA_GC_PAUSE_BUCKETS	32

struct sa_gc_stats {
	uint64_t heap_inuse;		/* bytes of spans the heap holds */
	uint64_t heap_live;		/* marked at the last cycle + since */
	uint64_t live_after_gc;		/* marked at the last cycle */
	uint64_t goal;			/* next collection at this heap_live */
	uint64_t cycles;
	uint64_t pause_total_ns, pause_max_ns;
	uint64_t bytes_allocated, objects_allocated;
	uint64_t bytes_freed, objects_freed;	/* explicit and collected */
	uint64_t collected_objects, collected_bytes;	/* by collections */
	uint64_t mark_overflows;	/* gray stack overflows recovered */
	uint64_t parallel_cycles;	/* marked by more than one thread */
	uint32_t mark_workers;		/* marking threads available */
	/*
	 * Since SPANALLOC_4: what a person tuning GOGC reads in Go's
	 * runtime/metrics and gctrace.
	 */
	int32_t gc_percent;		/* GOGC now; < 0: pacing off */
	int64_t memory_limit;		/* GOMEMLIMIT now; INT64_MAX: none */
	uint64_t gc_cpu_ns;		/* CPU time collections took, all threads */
	double gc_cpu_fraction;		/* of the process's CPU time (gctrace's %) */
	/*
	 * Every pause so far by length: pause_buckets[i] counts those of
	 * [2^i, 2^(i+1)) microseconds, bucket 0 those under 2 us, the last
	 * bucket every longer one. The quantiles are of the last 256.
	 */
	uint64_t pause_buckets[SA_GC_PAUSE_BUCKETS];
	uint64_t pause_p50_ns, pause_p90_ns, pause_p99_ns;
	uint64_t last_gc_unix_ns;	/* when the last cycle ended; 0: none yet */
	uint64_t stack_bytes;		/* stacks the last cycle scanned */
	uint64_t globals_bytes;		/* and data and bss */
	/*
	 * Sweep progress: span records the last cycle's sweep visits, and how
	 * many of them it has (equal once the sweep is over).
	 */
	uint64_t sweep_spans, sweep_spans_done;
};
/*
 * Fills the first size bytes of *st (a newer caller's longer struct gets
 * 0 in what this library does not know); 0, or -1 with errno if the heap
 * is not initialized. sa_gc_get_stats(st) is the call to make: it passes
 * the size. The function of that name (callers built before SPANALLOC_4,
 * and calls through a pointer to it) fills the fields up to mark_workers.
 */
int sa_gc_get_stats_size(struct sa_gc_stats *st, size_t size);
int sa_gc_get_stats(struct sa_gc_stats *st);
#define sa_gc_get_stats(st)	sa_gc_get_stats_size((st), sizeof(*(st)))

/*
 * The most recent pauses (as Go's MemStats.PauseNs): copies up to n of
 * the last 256 collections' stopped times, in nanoseconds, oldest first,
 * and returns how many. A pause is from the collector asking the threads
 * to stop to all of them running again: gctrace's three clock parts. -1
 * with errno EINVAL when ns is NULL and n is not 0.
 */
int sa_gc_get_pauses(uint64_t *ns, unsigned int n);

/* Size class helpers: the class serving size bytes, and its object size. */
unsigned int sa_size_class(size_t size);	/* 0: large */
size_t sa_class_size(unsigned int sizeclass);

#ifdef __cplusplus
}
#endif

#endif /* SPANALLOC_H */
