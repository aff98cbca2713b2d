// SPDX-License-Identifier: MIT
/*
 * gc: the collection cycle and its pacing (Go's mgc.go and mgcpacer.go),
 * the collector's public API, statistics and tracing. gc.h says how a
 * cycle goes and which file does what.
 *
 * Pacing, as GOGC: after a cycle that found L bytes live, the next one
 * starts when heap_live (bytes marked plus bytes of the free slots of the
 * spans taken since, which bounds what was allocated: Go counts the same
 * way) reaches goal = L * (1 + percent/100), and not below 4 MiB *
 * percent/100 (Go's heapMinimum). A memory limit (GOMEMLIMIT) caps the
 * goal at limit - limit/16, the sixteenth left for fragmentation, and
 * also triggers a cycle when the bytes of spans held reach that, once the
 * shared sweep of the last cycle's garbage is over (sweep.c); it never
 * asks for a goal under L + 1 MiB, so a live heap over the limit makes
 * collections frequent, not continuous.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"

#define SA_MIB		(1ULL << 20)
#define SA_HEAP_MIN	(4 * SA_MIB)

struct sa_gc_state sa_gc = {
	.cycle_lock = PTHREAD_MUTEX_INITIALIZER,
	.percent = 100,
	.mem_limit = INT64_MAX,
	.goal = UINT64_MAX,
	.scan_globals = 1,
	.end_pointers = 1,
};

/* Set with the goal: a cycle when the spans held reach it. */
static _Atomic uint64_t inuse_trigger = UINT64_MAX;

/*
 * Set while this thread holds cycle_lock: an allocation that fails then
 * must not collect (sa_alloc_after_gc), it would wait for itself.
 */
__thread int sa_gc_cycle_held __attribute__((tls_model("initial-exec")));

static void sa_gc_lock_cycle(void)
{
	pthread_mutex_lock(&sa_gc.cycle_lock);
	sa_gc_cycle_held = 1;
}

static int sa_gc_trylock_cycle(void)
{
	if (pthread_mutex_trylock(&sa_gc.cycle_lock))
		return -1;
	sa_gc_cycle_held = 1;
	return 0;
}

static void sa_gc_unlock_cycle(void)
{
	sa_gc_cycle_held = 0;
	pthread_mutex_unlock(&sa_gc.cycle_lock);
}

/* The last SA_PAUSES pauses, as Go's MemStats.PauseNs; under cycle_lock. */
#define SA_PAUSES	256
static uint64_t pause_ring[SA_PAUSES];
/* every pause by length (sa_gc_stats.pause_buckets); under cycle_lock */
static uint64_t pause_hist[SA_GC_PAUSE_BUCKETS];
static uint64_t last_gc_unix_ns;	/* under cycle_lock */

static unsigned int sa_pause_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned int b = us < 2 ? 0 : 63 - (unsigned int)__builtin_clzll(us);

	return b < SA_GC_PAUSE_BUCKETS ? b : SA_GC_PAUSE_BUCKETS - 1;
}

double sa_gc_now(void)
{
	return sa_seconds(CLOCK_MONOTONIC);
}

static void sa_gc_update_goal(uint64_t live)
{
	int percent = atomic_load(&sa_gc.percent);
	int64_t limit = atomic_load(&sa_gc.mem_limit);
	uint64_t goal = UINT64_MAX, cap = UINT64_MAX;

	if (percent >= 0) {
		goal = live + live / 100 * (uint64_t)percent + live % 100 * (uint64_t)percent / 100;
		if (goal < SA_HEAP_MIN * (uint64_t)percent / 100)
			goal = SA_HEAP_MIN * (uint64_t)percent / 100;
	}
	if (limit != INT64_MAX) {
		cap = (uint64_t)limit - (uint64_t)limit / 16;
		if (cap < live + SA_MIB)
			cap = live + SA_MIB;
		if (goal > cap)
			goal = cap;
	}
	atomic_store(&sa_gc.goal, goal);
	atomic_store(&inuse_trigger, cap);
}

/*
 * Whether the heap has reached its goal, or the spans held the limit's.
 * Spans held count only once the shared sweep of the last cycle is over:
 * until then they include the garbage it found, and right after a cycle
 * they would start another that finds nothing. (Spans threads hold are
 * swept by them lazily and may still hold some.)
 */
static bool sa_gc_due(void)
{
	return atomic_load_explicit(&sa_gc.heap_live, memory_order_relaxed) >=
	       atomic_load_explicit(&sa_gc.goal, memory_order_relaxed) ||
	       (atomic_load_explicit(&sa_gc.sweep_done, memory_order_relaxed) &&
		atomic_load_explicit(&sa_gc.heap_inuse, memory_order_relaxed) >=
		atomic_load_explicit(&inuse_trigger, memory_order_relaxed));
}

void sa_gc_note_alloc(struct sa_tcache *c, uint64_t bytes)
{
	atomic_fetch_add_explicit(&sa_gc.heap_live, bytes, memory_order_relaxed);
	if (sa_gc_on() && !atomic_load_explicit(&sa_gc.disabled, memory_order_relaxed) &&
	    sa_gc_due())
		c->gc_due = 1;
}

static void sa_gc_trace(uint64_t n, double t_start, double t_stop, double t_mark,
			double t_end, double cpu_stop, double cpu_mark, double cpu_term,
			uint64_t before, uint64_t live)
{
	double proc = sa_seconds(CLOCK_PROCESS_CPUTIME_ID);
	int share = proc > 0 ? (int)(100.0 * sa_gc.cpu_s / proc + 0.5) : 0;

	fprintf(stderr,
		"gc %llu @%.3fs %d%%: %.3f+%.3f+%.3f ms clock, %.3f+0/%.3f/0+%.3f ms cpu, %llu->%llu->%llu MB, %llu MB goal, %llu MB stacks, %llu MB globals, %d P\n",
		(unsigned long long)n, t_start - sa_gc.start_s, share,
		(t_stop - t_start) * 1e3, (t_mark - t_stop) * 1e3, (t_end - t_mark) * 1e3,
		cpu_stop * 1e3, cpu_mark * 1e3, cpu_term * 1e3,
		(unsigned long long)(before / SA_MIB), (unsigned long long)(before / SA_MIB),
		(unsigned long long)(live / SA_MIB),
		(unsigned long long)(atomic_load(&sa_gc.goal) / SA_MIB),
		(unsigned long long)(sa_roots_stack_bytes() / SA_MIB),
		(unsigned long long)(sa_roots_globals_bytes() / SA_MIB), atomic_load(&sa_gc.nworkers));
}

/*
 * One cycle; the caller holds cycle_lock and is a registered thread
 * outside the allocator. noinline: the registers it saves on entry hold
 * what the caller's frames keep in registers, and they must be on the
 * stack we scan.
 */
static __attribute__((noinline)) void sa_gc_cycle(struct sa_tcache *c)
{
	volatile uintptr_t marker = 0;
	double t1, t2, t3, t4, cpu0, cpu1, cpu2, cpu3, cpu4, helpers;
	uint64_t before, live, pause;

	__builtin_unwind_init();
	cpu0 = sa_seconds(CLOCK_THREAD_CPUTIME_ID);
	sa_sweep_finish_claimed(c);
	if (sa_mark_setup()) {
		fprintf(stderr, "spanalloc: gc: no memory for marking; collection skipped\n");
		return;
	}
	sa_roots_prepare();
	sa_world_note_stack(c, (uintptr_t)&marker);

	/*
	 * The pause is t1 (stop requested) to t4 (world restarted), on one
	 * clock; gctrace prints its three parts, sa_gc_get_stats their sum.
	 */
	t1 = sa_gc_now();
	cpu1 = sa_seconds(CLOCK_THREAD_CPUTIME_ID);
	sa_world_stop();
	sa_sweep_finish_stopped();
	/* idle threads' stale held spans become ours (mcache.c) */
	sa_world_each(sa_tcache_decay_stopped, c);
	sa_sweep_prepare_stopped();
	before = atomic_load(&sa_gc.heap_live);
	t2 = sa_gc_now();
	cpu2 = sa_seconds(CLOCK_THREAD_CPUTIME_ID);
	sa_mark_run();
	t3 = sa_gc_now();
	cpu3 = sa_seconds(CLOCK_THREAD_CPUTIME_ID);
	helpers = sa_mark_cpu_s();
	live = sa_mark_live_bytes();
	sa_gc.live_marked = live;
	atomic_store(&sa_gc.heap_live, live);
	sa_gc_update_goal(live);
	atomic_fetch_add(&sa_gc.sweepgen, 2);
	sa_sweep_reset();
	sa_world_start();
	t4 = sa_gc_now();
	cpu4 = sa_seconds(CLOCK_THREAD_CPUTIME_ID);
	atomic_store_explicit(&c->stop_sp, 0, memory_order_relaxed);

	pause = (uint64_t)((t4 - t1) * 1e9);
	pause_ring[atomic_load(&sa_gc.cycles) % SA_PAUSES] = pause;
	pause_hist[sa_pause_bucket(pause)]++;
	last_gc_unix_ns = (uint64_t)(sa_seconds(CLOCK_REALTIME) * 1e9);
	atomic_fetch_add(&sa_gc.pause_total_ns, pause);
	if (pause > atomic_load(&sa_gc.pause_max_ns))
		atomic_store(&sa_gc.pause_max_ns, pause);
	sa_gc.cpu_s += cpu4 - cpu0 + helpers;
	atomic_fetch_add(&sa_gc.cycles, 1);
	if (sa_gc.trace)
		sa_gc_trace(atomic_load(&sa_gc.cycles), t1, t2, t3, t4,
			    cpu2 - cpu1, cpu3 - cpu2 + helpers, cpu4 - cpu3, before, live);
	sa_sweep_start_background();
	/* what sa_tcache_decay_stopped took from idle threads, world running */
	sa_safe_enter(c);
	sa_tcache_return_decayed(c);
	sa_safe_exit(c);
	(void)marker;
}

void sa_gc_maybe_collect(struct sa_tcache *c)
{
	if (!sa_gc_on() || atomic_load(&sa_gc.disabled))
		return;
	/* someone else is collecting: they stop us, we need not wait */
	if (sa_gc_trylock_cycle())
		return;
	if (sa_gc_due())	/* not if a cycle just ran */
		sa_gc_cycle(c);
	sa_gc_unlock_cycle();
}

static struct sa_tcache *sa_gc_thread(void)
{
	struct sa_tcache *c;

	if (sa_init())
		return NULL;
	c = sa_tcache_current();	/* registers a new one in a collected heap */
	return c;
}

void sa_gc_collect(void)
{
	struct sa_tcache *c;

	if (!sa_gc_on())
		return;
	c = sa_gc_thread();
	if (!c)
		return;
	/* waiting here, we are outside the allocator: a cycle can stop us */
	sa_gc_lock_cycle();
	sa_gc_cycle(c);
	sa_sweep_finish_claimed(c);
	sa_gc_unlock_cycle();
	/* our own spans are swept lazily; sweep them now */
	sa_safe_enter(c);
	for (int sc = 0; sc < SA_NSC; sc++)
		if (c->alloc[sc] && sa_sweep_needed(c->alloc[sc]))
			sa_sweep_held(c->alloc[sc]);
	sa_safe_exit(c);
}

static int64_t sa_parse_bytes(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v < 0)
		return -1;
	if (!strcmp(end, "") || !strcmp(end, "B"))
		return (int64_t)v;
	if (!strcmp(end, "KiB"))
		return (int64_t)(v * 1024);
	if (!strcmp(end, "MiB"))
		return (int64_t)(v * 1024 * 1024);
	if (!strcmp(end, "GiB"))
		return (int64_t)(v * 1024 * 1024 * 1024);
	if (!strcmp(end, "TiB"))
		return (int64_t)(v * 1024 * 1024 * 1024 * 1024);
	return -1;
}

static void sa_gc_read_env(void)
{
	const char *e;

	e = getenv("SPANALLOC_GOGC");
	if (e && *e)
		atomic_store(&sa_gc.percent, !strcmp(e, "off") ? -1 : atoi(e));
	e = getenv("SPANALLOC_GOMEMLIMIT");
	if (e && *e && strcmp(e, "off")) {
		int64_t v = sa_parse_bytes(e);

		if (v >= 0)
			atomic_store(&sa_gc.mem_limit, v);
		else
			fprintf(stderr, "spanalloc: SPANALLOC_GOMEMLIMIT=%s: not a size (e.g. 512MiB); ignored\n",
				e);
	}
	e = getenv("SPANALLOC_GCTRACE");
	sa_gc.trace = e && atoi(e) > 0;
	e = getenv("SPANALLOC_GC_GLOBALS");
	if (e && *e)
		sa_gc.scan_globals = atoi(e) != 0;
	e = getenv("SPANALLOC_GC_END_POINTERS");
	if (e && *e)
		sa_gc.end_pointers = atoi(e) != 0;
	e = getenv("SPANALLOC_GC_PROCS");
	atomic_store(&sa_gc.nworkers, e && atoi(e) > 0 ? atoi(e) : (int)sysconf(_SC_NPROCESSORS_ONLN));
}

int sa_gc_init(void)
{
	int ret = 0;

	if (sa_init())
		return -1;
	sa_gc_lock_cycle();
	if (sa_gc_on())
		goto out;
	sa_gc_read_env();
	if (sa_world_init() || sa_roots_init()) {
		ret = -1;
		goto out;
	}
	sa_heap_take_base();
	sa_gc.start_s = sa_gc_now();
	atomic_store(&sa_gc.heap_live, atomic_load(&sa_gc.heap_inuse));
	sa_gc_update_goal(0);
	/* caches made from now on register themselves (sa_tcache_create) */
	pthread_mutex_lock(&sa_g.lock);
	sa_gc.end_pad = sa_gc.end_pointers ? 1 : 0;
	atomic_store(&sa_gc.mode, 1);
	pthread_mutex_unlock(&sa_g.lock);
	/* and those made before, of threads that allocated or were created */
	if (sa_world_register_others()) {
		sa_gc.end_pad = 0;
		atomic_store(&sa_gc.mode, 0);
		ret = -1;
	}
out:
	sa_gc_unlock_cycle();
	if (!ret && !sa_tc && !sa_gc_thread())
		ret = -1;
	return ret;
}

int sa_gc_register_thread(void)
{
	struct sa_tcache *c;

	if (!sa_gc_on()) {
		errno = EINVAL;
		return -1;
	}
	c = sa_gc_thread();
	if (!c)
		return -1;
	return sa_world_register(c);
}

void sa_gc_unregister_thread(void)
{
	struct sa_tcache *c = sa_tc;

	if (!c)
		return;
	sa_thread_flush();
	sa_world_unregister(c);
}

int sa_gc_set_percent(int percent)
{
	int old = atomic_exchange(&sa_gc.percent, percent < 0 ? -1 : percent);

	sa_gc_update_goal(sa_gc.live_marked);
	return old;
}

int64_t sa_gc_set_memory_limit(int64_t bytes)
{
	int64_t old = atomic_exchange(&sa_gc.mem_limit, bytes < 0 ? INT64_MAX : bytes);

	sa_gc_update_goal(sa_gc.live_marked);
	return old;
}

int sa_gc_set_end_pointers(int on)
{
	int old = sa_gc.end_pointers;

	/* objects allocated before keep the size they have */
	sa_gc.end_pointers = on != 0;
	if (sa_gc_on())
		sa_gc.end_pad = on ? 1 : 0;
	return old;
}

void sa_gc_disable(void)
{
	atomic_fetch_add(&sa_gc.disabled, 1);
}

void sa_gc_enable(void)
{
	int old = atomic_load(&sa_gc.disabled);

	while (old > 0 && !atomic_compare_exchange_weak(&sa_gc.disabled, &old, old - 1))
		;
}

/*
 * Lock-free against a sweep of the object's span: a sweep publishes the
 * span's sweepgen before it clears the marks (sweep.c), so "unswept and
 * unmarked" read with the sweepgen unchanged across means dead; with the
 * sweepgen changed, the answer is read again from the swept span.
 */
SA_NO_TSAN void *sa_base(const void *p)
{
	struct sa_uspan *s;
	uintptr_t base;
	uint32_t idx, g;

	if (sa_init())
		return NULL;
	for (;;) {
		s = sa_span_of(p);
		if (!s)
			return NULL;
		/* first: allocBits read after it are at least that sweep's */
		g = atomic_load_explicit(&s->sweepgen, memory_order_acquire);
		if (sa_find_object((uintptr_t)p, &idx, &base) != s)
			return NULL;
		if (g == atomic_load(&sa_gc.sweepgen) ||
		    (atomic_load(&s->mark_bits[idx / 64]) & (1ULL << (idx % 64))))
			break;
		if (atomic_load(&s->sweepgen) == g)
			return NULL;	/* unswept and unmarked: dead */
	}
	if (s->spanclass >= 2 && (atomic_load(&s->free_bits[idx / 64]) |
				  s->local_free[idx / 64]) & (1ULL << (idx % 64)))
		return NULL;
	return (void *)base;
}

int sa_gc_get_signal(void)
{
	int sig = sa_world_pick_signal();

	if (sig < 0)
		errno = EINVAL;
	return sig;
}

int sa_gc_get_pauses(uint64_t *ns, unsigned int n)
{
	uint64_t cycles;
	unsigned int k;

	if (!ns && n) {
		errno = EINVAL;
		return -1;
	}
	pthread_mutex_lock(&sa_gc.cycle_lock);
	cycles = atomic_load(&sa_gc.cycles);
	k = cycles < SA_PAUSES ? (unsigned int)cycles : SA_PAUSES;
	if (k > n)
		k = n;
	for (unsigned int i = 0; i < k; i++)
		ns[i] = pause_ring[(cycles - k + i) % SA_PAUSES];
	pthread_mutex_unlock(&sa_gc.cycle_lock);
	return (int)k;
}

/*
 * Sorts the last pauses in place. Not qsort: it may allocate, and a thread
 * stopped inside the C library's malloc holds its lock while a collection
 * runs (under ThreadSanitizer a worker calling this in a loop hung one).
 */
static void sa_u64_sort(uint64_t *v, int n)
{
	for (int i = 1; i < n; i++) {
		uint64_t x = v[i];
		int j = i;

		for (; j > 0 && v[j - 1] > x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

/* What only the collecting thread writes, read under cycle_lock. */
static void sa_gc_get_cycle_stats(struct sa_gc_stats *st)
{
	uint64_t last[SA_PAUSES];
	double proc = sa_seconds(CLOCK_PROCESS_CPUTIME_ID);
	int k;

	pthread_mutex_lock(&sa_gc.cycle_lock);
	memcpy(st->pause_buckets, pause_hist, sizeof(pause_hist));
	st->last_gc_unix_ns = last_gc_unix_ns;
	st->gc_cpu_ns = (uint64_t)(sa_gc.cpu_s * 1e9);
	st->gc_cpu_fraction = proc > 0 ? sa_gc.cpu_s / proc : 0;
	st->stack_bytes = sa_roots_stack_bytes();
	st->globals_bytes = sa_roots_globals_bytes();
	pthread_mutex_unlock(&sa_gc.cycle_lock);
	k = sa_gc_get_pauses(last, SA_PAUSES);
	if (k > 0) {
		sa_u64_sort(last, k);
		/* the nearest rank: the smallest pause q of them do not pass */
		st->pause_p50_ns = last[(k * 50 + 99) / 100 - 1];
		st->pause_p90_ns = last[(k * 90 + 99) / 100 - 1];
		st->pause_p99_ns = last[(k * 99 + 99) / 100 - 1];
	}
}

int sa_gc_get_stats_size(struct sa_gc_stats *out, size_t size)
{
	struct sa_gc_stats full = { 0 }, *st = &full;
	uint32_t next;
	struct sa_stats a;

	if (sa_get_stats(&a))
		return -1;
	st->heap_inuse = atomic_load(&sa_gc.heap_inuse);
	st->heap_live = atomic_load(&sa_gc.heap_live);
	st->live_after_gc = sa_gc.live_marked;
	st->goal = atomic_load(&sa_gc.goal);
	st->cycles = atomic_load(&sa_gc.cycles);
	st->pause_total_ns = atomic_load(&sa_gc.pause_total_ns);
	st->pause_max_ns = atomic_load(&sa_gc.pause_max_ns);
	st->objects_allocated = a.objects_allocated + a.large_allocated;
	st->bytes_allocated = a.bytes_allocated;
	st->collected_objects = atomic_load(&sa_gc.gc_freed_objects);
	st->collected_bytes = atomic_load(&sa_gc.gc_freed_bytes);
	st->objects_freed = a.objects_freed + a.large_freed + st->collected_objects;
	st->bytes_freed = a.bytes_freed + st->collected_bytes;
	st->mark_overflows = atomic_load(&sa_gc.mark_overflows);
	st->mark_workers = (uint32_t)atomic_load(&sa_gc.nworkers);
	st->parallel_cycles = atomic_load(&sa_gc.parallel_cycles);
	st->gc_percent = atomic_load(&sa_gc.percent);
	st->memory_limit = atomic_load(&sa_gc.mem_limit);
	sa_gc_get_cycle_stats(st);
	st->sweep_spans = sa_uspan_count();
	next = atomic_load(&sa_gc.sweep_next);
	st->sweep_spans_done = atomic_load(&sa_gc.sweep_done) || next > st->sweep_spans ?
			       st->sweep_spans : next;
	if (size) {
		/* a newer caller's longer struct: what this library lacks is 0 */
		memset(out, 0, size);
		memcpy(out, st, size < sizeof(*st) ? size : sizeof(*st));
	}
	return 0;
}

/* Callers built before SPANALLOC_4: their struct ends with mark_workers. */
int (sa_gc_get_stats)(struct sa_gc_stats *st)
{
	return sa_gc_get_stats_size(st, offsetof(struct sa_gc_stats, gc_percent));
}
