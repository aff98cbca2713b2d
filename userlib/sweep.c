// SPDX-License-Identifier: MIT
/*
 * sweep: turning a cycle's marks into allocation state (Go's mgcsweep.go).
 *
 * Sweeping a span: take in the explicit frees recorded in it; the objects
 * that were allocated but are not marked are free now; allocBits becomes
 * allocBits & markBits (Go: allocBits = gcmarkBits) and the mark bits are
 * cleared for the next cycle. A large object's span goes back to the
 * kernel at once when unmarked.
 *
 * Each span is swept once per cycle, before anyone allocates from it,
 * by whoever holds it, as Go's sweepgen protocol guarantees:
 *   - a thread's active, held or adopted span: that thread, before its next
 *     allocation from it or before handing it back (lazily);
 *   - a span returned PARTIAL: whoever wins the sweepgen compare-and-swap
 *     (sg - 2 -> sg - 1): the background sweeper, or the thread the kernel
 *     hands it to, which otherwise waits for the sweeper to finish;
 *   - a span returned FULL (adoptable): whoever claims it (sa_span_claim), as for frees
 *     (internal.h): the sweeper claims it as an adopter would, and hands
 *     it back PARTIAL or EMPTY when sweeping freed anything;
 *   - a large object: the sweepgen compare-and-swap, against sa_free.
 * Allocating threads that need a new span sweep two first (Go's
 * proportional sweep), so the heap does not grow while garbage waits.
 * Whatever is left unswept when the next cycle starts is swept with the
 * world stopped, where nobody else can hold a span.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include "internal.h"

static pthread_mutex_t sweeper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sweeper_cond = PTHREAD_COND_INITIALIZER;
static uint32_t sweeper_gen;	/* cycles the sweeper was told about */
static int sweeper_started;

/*
 * s is swept: say so, then clear its marks for the next cycle. In this
 * order, sa_base() reading "unswept" still finds the marks it must trust
 * (gc.c); and the next cycle cannot start before the marks are clear,
 * since sweepers work inside no-safe-point regions.
 */
static void sa_sweep_publish(struct sa_uspan *s, uint32_t words)
{
	atomic_store_explicit(&s->sweepgen, atomic_load(&sa_gc.sweepgen), memory_order_release);
	/* a reader that sees a mark cleared sees the sweepgen too */
	atomic_thread_fence(memory_order_release);
	for (uint32_t w = 0; w < words; w++)
		atomic_store_explicit(&s->mark_bits[w], 0, memory_order_relaxed);
}

/* The caller holds s (or the world is stopped). */
void sa_sweep_held(struct sa_uspan *s)
{
	uint32_t words = sa_span_words(s), live = 0, dead = 0;

	/* explicit frees first: they need zeroing as much as the dead do */
	sa_span_refresh(s, s->freeindex);
	for (uint32_t w = 0; w < words; w++) {
		uint64_t a = s->alloc_bits[w];
		uint64_t m = atomic_load_explicit(&s->mark_bits[w], memory_order_relaxed);
		uint64_t gone = a & ~m;

		if (gone) {
			dead += sa_popcount64(gone);
			sa_prof_freed(s, w, gone);
			if (s->types)
				for (uint64_t g = gone; g; g &= g - 1)
					s->types[w * 64 + (uint32_t)__builtin_ctzll(g)] = NULL;
		}
		s->alloc_bits[w] = a & m;
		live += sa_popcount64(a & m);
	}
	s->alloc_count = live;
	if (dead) {
		s->needzero = 1;
		atomic_fetch_add_explicit(&sa_gc.gc_freed_objects, dead, memory_order_relaxed);
		atomic_fetch_add_explicit(&sa_gc.gc_freed_bytes, (uint64_t)dead * s->elemsize,
					  memory_order_relaxed);
	}
	sa_span_restart(s);
	sa_sweep_publish(s, words);
}

/*
 * s is about to be used by the caller (taken from the kernel's partial
 * lists, or a large object being freed). Returns true when the caller
 * claimed an unswept span and must sweep it (or free it); false when it
 * is swept, waiting for a sweeper that is at it.
 */
bool sa_sweep_claim_taken(struct sa_uspan *s)
{
	uint32_t sg = atomic_load(&sa_gc.sweepgen);

	for (;;) {
		uint32_t v = atomic_load(&s->sweepgen);

		if (v == sg)
			return false;
		if (v == sg - 2 && atomic_compare_exchange_strong(&s->sweepgen, &v, sg - 1))
			return true;
		if (v == sg - 1)
			sched_yield();
	}
}

/* Frees an unmarked large object: its span goes back to the kernel. */
static void sa_sweep_free_large(struct sa_uspan *s)
{
	uint64_t bytes = s->elemsize;

	sa_large_release(s);
	atomic_fetch_add_explicit(&sa_gc.gc_freed_objects, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&sa_gc.gc_freed_bytes, bytes, memory_order_relaxed);
}

static void sa_sweep_large(struct sa_uspan *s)
{
	if (atomic_load_explicit(&s->mark_bits[0], memory_order_relaxed) & 1) {
		sa_sweep_publish(s, 1);
		return;
	}
	sa_sweep_free_large(s);
}

/* Sweeps span record i if it is claimable; returns true if it swept. */
static bool sa_sweep_one(struct sa_tcache *c, uint32_t i)
{
	struct sa_uspan *s = sa_uspan_at(i);
	uint32_t sg = atomic_load(&sa_gc.sweepgen), v = sg - 2;

	if (atomic_load_explicit(&s->sweepgen, memory_order_relaxed) != sg - 2)
		return false;
	switch (atomic_load_explicit(&s->where, memory_order_acquire)) {
	case SA_WHERE_KPARTIAL:
		if (!atomic_compare_exchange_strong(&s->sweepgen, &v, sg - 1))
			return false;
		sa_sweep_held(s);
		return true;
	case SA_WHERE_KFULL:
		/* hold it as an adopter would; a pending free adopts it instead */
		if (!sa_span_claim(s))
			return false;
		if (sa_sweep_needed(s))
			sa_sweep_held(s);
		sa_tcache_adopt(c, s);
		return true;
	case SA_WHERE_LARGE:
		if (!atomic_compare_exchange_strong(&s->sweepgen, &v, sg - 1))
			return false;
		sa_sweep_large(s);
		return true;
	default:
		return false;	/* a thread's: it sweeps it itself */
	}
}

/*
 * Sweeps up to nspans claimable spans from the shared cursor; the caller
 * is inside the allocator (its adopted spans go back with its next
 * exchange, or here when there are many).
 */
void sa_sweep_help(struct sa_tcache *c, int nspans)
{
	uint32_t total, i;

	if (atomic_load_explicit(&sa_gc.sweep_done, memory_order_relaxed))
		return;
	total = sa_uspan_count();
	while (nspans > 0) {
		i = atomic_fetch_add(&sa_gc.sweep_next, 1);
		if (i >= total) {
			atomic_store(&sa_gc.sweep_done, 1);
			break;
		}
		if (sa_sweep_one(c, i))
			nspans--;
	}
	if (c->nadopted >= SA_MAX_BATCH / 2)
		sa_tcache_return_adopted(c, 0);
}

/*
 * Sweeps every span it can claim, a batch per no-safe-point region so a
 * collection can stop the caller between batches: before a cycle, in
 * sa_gc_collect and in the background sweeper.
 */
void sa_sweep_finish_claimed(struct sa_tcache *c)
{
	while (!atomic_load(&sa_gc.sweep_done)) {
		sa_safe_enter(c);
		sa_sweep_help(c, 16);
		sa_safe_exit(c);
	}
	sa_safe_enter(c);
	sa_tcache_return_adopted(c, 0);
	sa_safe_exit(c);
}

/*
 * The world is stopped: sweep what is left, whoever holds it. Dead large
 * objects go back now; a FULL span stays adoptable (its free objects are
 * found by the next sweep of it, or by a free that adopts it).
 */
void sa_sweep_finish_stopped(void)
{
	uint32_t total = sa_uspan_count();

	for (uint32_t i = 0; i < total; i++) {
		struct sa_uspan *s = sa_uspan_at(i);
		uint8_t where = atomic_load_explicit(&s->where, memory_order_acquire);

		if (where == SA_WHERE_NONE || !sa_sweep_needed(s))
			continue;
		if (where == SA_WHERE_LARGE)
			sa_sweep_large(s);
		else
			sa_sweep_held(s);
	}
}

static void sa_sweep_stop_fast_path(struct sa_tcache *c, void *arg)
{
	(void)arg;
	for (int sc = 0; sc < SA_NSC; sc++)
		if (c->alloc[sc])
			c->alloc[sc]->alloc_cache = 0;
}

/*
 * The world is stopped and the marks are about to be final: make every
 * thread's next allocation from an active span take the slow path, which
 * sweeps the span first.
 */
void sa_sweep_prepare_stopped(void)
{
	sa_world_each(sa_sweep_stop_fast_path, NULL);
}

/* A new cycle's spans are all unswept; called with the world stopped. */
void sa_sweep_reset(void)
{
	atomic_store(&sa_gc.sweep_next, 0);
	atomic_store(&sa_gc.sweep_done, 0);
}

static void *sa_sweeper_main(void *arg)
{
	uint32_t seen = 0;

	(void)arg;
	pthread_setname_np(pthread_self(), "sa-sweeper");
	/* a registered thread: collections stop it between spans */
	if (sa_gc_register_thread())
		return NULL;
	sa_tc->lib_thread = true;
	for (;;) {
		pthread_mutex_lock(&sweeper_lock);
		while (sweeper_gen == seen)
			pthread_cond_wait(&sweeper_cond, &sweeper_lock);
		seen = sweeper_gen;
		pthread_mutex_unlock(&sweeper_lock);
		sa_sweep_finish_claimed(sa_tc);
	}
	return NULL;
}

/*
 * fork(): s in the child, settled (sa_span_settle_forked). Unswept, it is
 * swept now. Being swept by a thread the child does not have, it is half
 * swept: in the words done, allocBits are what was marked and the marks
 * are cleared; in the others, allocBits still hold every marked object.
 * Their union is what may be live: kept, the rest goes at the next cycle.
 */
void sa_sweep_forked(struct sa_uspan *s)
{
	uint32_t sg = atomic_load_explicit(&sa_gc.sweepgen, memory_order_relaxed);
	uint32_t words = sa_span_words(s);

	if (!sa_sweep_needed(s))
		return;
	if (atomic_load_explicit(&s->where, memory_order_relaxed) == SA_WHERE_LARGE) {
		/* unswept, the sweepers take it; half swept, it lives */
		if (atomic_load_explicit(&s->sweepgen, memory_order_relaxed) != sg - 2)
			atomic_store_explicit(&s->sweepgen, sg, memory_order_relaxed);
		return;
	}
	if (atomic_load_explicit(&s->sweepgen, memory_order_relaxed) == sg - 2) {
		sa_sweep_held(s);
		return;
	}
	for (uint32_t w = 0; w < words; w++)
		s->alloc_bits[w] |= atomic_exchange_explicit(&s->mark_bits[w], 0,
							      memory_order_relaxed);
	atomic_store_explicit(&s->sweepgen, sg, memory_order_relaxed);
	sa_span_settle_forked(s);
}

/* fork(): the child has no sweeper thread; the next cycle starts one. */
void sa_sweep_fork(enum sa_fork_phase phase)
{
	sa_fork_mutex(&sweeper_lock, phase);
	if (phase == SA_FORK_CHILD) {
		pthread_cond_init(&sweeper_cond, NULL);
		sweeper_started = 0;
	}
}

/* Wakes the background sweeper (starting it the first time). */
void sa_sweep_start_background(void)
{
	pthread_t t;

	pthread_mutex_lock(&sweeper_lock);
	if (!sweeper_started) {
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (sa_thread_create_raw(&t, &attr, sa_sweeper_main, NULL) == 0)
			sweeper_started = 1;
		pthread_attr_destroy(&attr);
	}
	sweeper_gen++;
	pthread_cond_signal(&sweeper_cond);
	pthread_mutex_unlock(&sweeper_lock);
}
