/* SPDX-License-Identifier: MIT */
/*
 * The collector's shared state and the interfaces between its parts:
 *   gc.c     the cycle: pacing, triggering, statistics, tracing, the API
 *   world.c  the registered threads: safe points and stopping the world
 *   roots.c  what marking starts from: ranges, stacks, data and bss
 *   mark.c   tri-color marking with bounded gray stacks, in parallel
 *   sweep.c  turning marks into allocation bits, lazily and in background
 *
 * The heap is either manual (the default: objects live until sa_free) or
 * collected (after sa_gc_init: every object lives while reachable, and
 * sa_free still works). Everything here is idle in a manual heap.
 *
 * A cycle, like Go's with the concurrent mark made stop-the-world:
 *   1. finish sweeping the previous cycle (sweep.c, claims spans);
 *   2. stop every registered thread at a safe point (world.c);
 *   3. sweep what the sweepers could not claim, and make each thread's
 *      active spans' allocBits exact (sweep.c);
 *   4. mark from the roots (roots.c, mark.c);
 *   5. sweepgen += 2: every span is now unswept; restart the world;
 *   6. spans are swept by whoever holds them next (lazily: before any
 *      allocation from them), by allocating threads that need a new span,
 *      and by the background sweeper.
 */
#ifndef SPANALLOC_GC_H
#define SPANALLOC_GC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct sa_uspan;
struct sa_tcache;

struct sa_gc_state {
	_Atomic int mode;		/* 0 manual, 1 collected */
	_Atomic uint32_t sweepgen;	/* see struct sa_uspan */
	pthread_mutex_t cycle_lock;	/* one cycle at a time */

	/* Pacing; bytes. Written under cycle_lock, read anywhere. */
	_Atomic int percent;		/* GOGC; < 0: off */
	_Atomic int64_t mem_limit;	/* GOMEMLIMIT; INT64_MAX: none */
	_Atomic int disabled;		/* sa_gc_disable() depth */
	_Atomic uint64_t heap_live;	/* Go's heapLive: marked + taken since */
	_Atomic uint64_t heap_inuse;	/* bytes of spans the library holds */
	_Atomic uint64_t goal;
	uint64_t live_marked;		/* marked at the last cycle */

	/* Statistics. */
	_Atomic uint64_t cycles, pause_total_ns, pause_max_ns;
	_Atomic uint64_t gc_freed_objects, gc_freed_bytes;	/* by sweeping */
	_Atomic uint64_t mark_overflows, parallel_cycles;
	double start_s;			/* monotonic time at sa_gc_init */
	double cpu_s;			/* collector CPU time, all cycles */
	int trace;			/* SPANALLOC_GCTRACE */
	int scan_globals;		/* data and bss of loaded objects */
	_Atomic int nworkers;		/* marking threads, collector included */
	/*
	 * 1 when a pointer just past an object must keep it: every object of
	 * a collected heap is allocated a byte longer (Boehm's
	 * ALL_INTERIOR_POINTERS), so that pointer lies inside it. 0 in a
	 * manual heap.
	 */
	uint32_t end_pad;
	int end_pointers;		/* the setting; on by default */

	/* Sweeping: a shared cursor over all span records. */
	_Atomic uint32_t sweep_next;
	_Atomic int sweep_done;
};

extern struct sa_gc_state sa_gc;

static inline bool sa_gc_on(void)
{
	return atomic_load_explicit(&sa_gc.mode, memory_order_relaxed) != 0;
}

/* gc.c */
extern __thread int sa_gc_cycle_held __attribute__((tls_model("initial-exec")));
void sa_gc_note_alloc(struct sa_tcache *c, uint64_t bytes);
static inline void sa_gc_note_inuse(int64_t bytes)
{
	atomic_fetch_add_explicit(&sa_gc.heap_inuse, (uint64_t)bytes, memory_order_relaxed);
}
void sa_gc_maybe_collect(struct sa_tcache *c);
double sa_gc_now(void);

enum sa_fork_phase;	/* internal.h */

/* world.c */
struct timespec;
long sa_futex(_Atomic uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts);
void sa_world_fork(enum sa_fork_phase phase);
int sa_world_register(struct sa_tcache *c);
int sa_world_register_others(void);
void sa_world_note_stack(struct sa_tcache *c, uintptr_t sp);
int sa_world_signal(void);
extern _Atomic uint64_t sa_world_fast_stops;	/* stops noted in a fast path */
int sa_world_pick_signal(void);
void sa_world_unregister(struct sa_tcache *c);
int sa_world_stop(void);
void sa_world_start(void);
int sa_world_init(void);
/* Calls fn on every registered thread; the world must be stopped. */
void sa_world_each(void (*fn)(struct sa_tcache *c, void *arg), void *arg);

/* roots.c */
void sa_roots_fork(enum sa_fork_phase phase);
struct sa_root_sink {
	void (*range)(struct sa_root_sink *k, uintptr_t lo, uintptr_t hi);
	void (*object)(struct sa_root_sink *k, uintptr_t p);
};
int sa_roots_init(void);
void sa_roots_prepare(void);
void sa_roots_scan(struct sa_root_sink *k);
uint64_t sa_roots_globals_bytes(void);
uint64_t sa_roots_stack_bytes(void);

/* mark.c */
void sa_mark_fork_child(void);
int sa_mark_setup(void);
void sa_mark_run(void);
uint64_t sa_mark_live_bytes(void);
double sa_mark_cpu_s(void);
struct sa_uspan *sa_find_object(uintptr_t p, uint32_t *idx, uintptr_t *base);

/* sweep.c */
void sa_sweep_fork(enum sa_fork_phase phase);
void sa_sweep_forked(struct sa_uspan *s);
void sa_sweep_held(struct sa_uspan *s);
bool sa_sweep_claim_taken(struct sa_uspan *s);
void sa_sweep_finish_claimed(struct sa_tcache *c);
void sa_sweep_finish_stopped(void);
void sa_sweep_prepare_stopped(void);
void sa_sweep_reset(void);
void sa_sweep_start_background(void);
void sa_sweep_help(struct sa_tcache *c, int nspans);

#endif /* SPANALLOC_GC_H */
