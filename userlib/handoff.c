// SPDX-License-Identifier: MIT
/*
 * handoff: taking what an idle thread holds (its held and adopted spans,
 * and its active spans once it made no refill for twice the decay time:
 * mcache.c) without stopping it, in a heap no collection stops threads in.
 *
 * A thread looks at what it keeps aside only at its own refills (its
 * fast paths' span changes leave that to them: mcache.c), and a
 * collection looks at every thread's with the world stopped. In a manual
 * heap a thread that makes no refill (it sleeps, or its frees keep its
 * active spans going) would keep its spans until it exits: a pool of
 * idle workers, a span of every class each had used. So, once per
 * decay time at most (and SA_HANDOFF_MIN_MS apart at least), a thread
 * refilling (the taker) looks at every other cache whose thread has not
 * looked at what it keeps, or refilled, for twice the decay time, and
 * takes the spans it kept too long, and its active ones if it made no
 * refill for that long, under sa_g.lock (so that no cache goes away, and
 * no fork or mode switch comes, meanwhile):
 *
 *  1. The taker sets c->taking, then makes every running thread execute
 *     a memory barrier (membarrier(2), as liburcu's asymmetric fences);
 *     then c's thread must be outside the slow paths (nosafe 0) and,
 *     after a wait if need be, outside its fast paths (in_fast's count
 *     0), or the taker leaves c alone. A slow path stores nosafe, then
 *     reads taking (sa_safe_enter): the barrier falls before the read,
 *     which then sees taking set and waits (sa_handoff_wait), or after
 *     the store, which the taker then sees. The fast paths' next word
 *     and span change (sa_alloc_next_word, sa_tcache_change_span), which
 *     read alloc[] twice and move c's lists, do the same with in_fast:
 *     they read taking inside their region and leave the work to the
 *     slow path if it is set. From here c's lists are the taker's, until
 *     it clears taking.
 *  2. The taker becomes the owner of each stale held span, and of each
 *     active span it takes, which it also clears from c->alloc[] (kept on
 *     c->yielded), then barriers again, then waits for in_fast's count to
 *     be 0. A fast free into such a span reads its owner inside its region
 *     (fastpath.h), and a fast allocation reads c->alloc[] there: one that
 *     read c or the span did so before the barrier, with in_fast already
 *     stored, and has ended once the count is 0; one that reads later sees
 *     the taker, or no span, and goes to the slow path, which waits. If
 *     the count stays up (c's thread is descheduled, or stuck in a signal
 *     handler that interrupted a fast path), the owners and the active
 *     spans go back to c and the taker leaves c alone: nothing else
 *     changed.
 *  3. A third barrier, so that the last such free's stores are seen on
 *     weakly ordered CPUs too; the taker unlinks the spans and clears
 *     taking.
 *
 * The spans then go back to the kernel from the taker, as a collection's
 * decayed ones do. Three barriers per pass, however many caches it takes
 * from. Without membarrier (kernels before 4.14, some sandboxes, valgrind)
 * idle threads keep their spans, as before; SPANALLOC_HANDOFF=0 asks for
 * that, for a seccomp filter that kills on a system call it does not
 * know. ThreadSanitizer cannot see the order the barriers give, so its
 * builds leave this out.
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "gc.h"
#include "internal.h"

/* caches taken from per pass at most: the rest wait for the next one */
#define SA_HANDOFF_MAX		64
/*
 * yields a taker waits for a fast path to end before it leaves the cache;
 * and a waiting victim's, before it sleeps instead
 */
#define SA_HANDOFF_YIELDS	64
/*
 * Passes start this far apart at least, whatever the decay time: each
 * interrupts every CPU running the process three times.
 */
#define SA_HANDOFF_MIN_MS	10

#ifdef SA_TSAN
#define SA_HANDOFF_OFF		1
#else
#define SA_HANDOFF_OFF		0
#endif

/* when a pass last started, sa_coarse_ms() */
static _Atomic uint32_t sa_handoff_ms;
/* 1: registered for expedited barriers, -1: none to be had; under sa_g.lock */
static int sa_membarrier_state;

static long sa_membarrier_cmd(int cmd)
{
	return syscall(SYS_membarrier, cmd, 0, 0);
}

/*
 * Every thread of the process executes a full memory barrier (or is not
 * running, which is one) before this returns true; false if the kernel
 * cannot make them. Under sa_g.lock.
 */
static bool sa_membarrier(void)
{
	if (!sa_membarrier_state) {
		long mask = sa_membarrier_cmd(MEMBARRIER_CMD_QUERY);

		sa_membarrier_state = mask > 0 && (mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
				      !sa_membarrier_cmd(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) ?
				      1 : -1;
	}
	if (sa_membarrier_state < 0)
		return false;
	if (!sa_membarrier_cmd(MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		return true;
	/* a forked child's address space may not be registered */
	if (errno == EPERM && !sa_membarrier_cmd(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) &&
	    !sa_membarrier_cmd(MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		return true;
	sa_membarrier_state = -1;
	return false;
}

/*
 * A sleep inside malloc(): errno stays, and it is no cancellation point
 * (nanosleep() is one; a cancelled thread would unwind out of the
 * allocator).
 */
static void sa_nap(const struct timespec *t)
{
	int saved = errno;

	syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, t, NULL);
	errno = saved;
}

static void sa_handoff_release(struct sa_tcache *c)
{
	atomic_store_explicit(&c->taking, 0, memory_order_release);
}

/*
 * Whether c's thread is out of its fast path, waiting a little for it.
 * Acquire: what the region changed (a span change in it moves c's lists)
 * is seen once its end is.
 */
static bool sa_handoff_quiet(const struct sa_tcache *c)
{
	for (int i = 0; i < SA_HANDOFF_YIELDS &&
			(__atomic_load_n(&c->in_fast, __ATOMIC_ACQUIRE) & SA_FAST_COUNT); i++)
		sched_yield();
	return !(__atomic_load_n(&c->in_fast, __ATOMIC_ACQUIRE) & SA_FAST_COUNT);
}

/*
 * Steps 1 to 3 above for the n caches in c[], whose taking is set;
 * clears it. Returns whether self took anything.
 */
static bool sa_handoff_take(struct sa_tcache *self, struct sa_tcache **c, uint32_t n,
			    const struct sa_stale *st)
{
	bool ok = sa_membarrier(), took = false;
	uint32_t i, k = 0;

	for (i = 0; i < n; i++) {
		/*
		 * Pairs with sa_safe_exit's release: its lists are as it left
		 * them; and with the end of a fast path's span change
		 * (sa_tcache_change_span), which moves them too.
		 */
		if (ok && !__atomic_load_n(&c[i]->nosafe, __ATOMIC_ACQUIRE) &&
		    sa_handoff_quiet(c[i]))
			c[k++] = c[i];
		else
			sa_handoff_release(c[i]);
	}
	n = k;
	if (!n)
		return false;
	for (i = 0; i < n; i++)
		sa_tcache_own_stale(c[i], self, st);
	ok = sa_membarrier();
	for (i = 0, k = 0; i < n; i++) {
		if (ok && sa_handoff_quiet(c[i])) {
			c[k++] = c[i];
		} else {
			sa_tcache_own_stale(c[i], c[i], st);
			sa_handoff_release(c[i]);
		}
	}
	n = k;
	ok = n && sa_membarrier();
	for (i = 0; i < n; i++) {
		if (!ok) {
			sa_tcache_own_stale(c[i], c[i], st);
		} else {
			sa_tcache_take_stale(c[i], self, st);
			took = true;
			/* looked at now; 0 when it keeps nothing, as it would set it */
			atomic_store_explicit(&c[i]->decay_ms,
					      c[i]->nheld || c[i]->nadopted ? sa_ms_stamp(st->now) : 0,
					      memory_order_relaxed);
		}
		sa_handoff_release(c[i]);
	}
	return took;
}

/*
 * The pass itself, once self won the right to run it (sa_handoff_idle).
 * Apart, so that the refill's usual early return saves no registers and
 * reserves no room for candidates.
 */
static __attribute__((noinline)) void sa_handoff_pass(struct sa_tcache *self,
						       struct sa_stale st)
{
	struct sa_tcache *cand[SA_HANDOFF_MAX];
	bool took = false;
	uint32_t n = 0;
	int saved;

	saved = errno;
	pthread_mutex_lock(&sa_g.lock);
	/* after the wait for the lock: no stamp read below is later than now */
	st.now = sa_coarse_ms();
	/* the mode switches under the lock; a collected heap's collections decay */
	for (struct sa_tcache *c = sa_g.caches; c && n < SA_HANDOFF_MAX && !sa_gc_on();
	     c = c->next) {
		uint32_t seen = atomic_load_explicit(&c->decay_ms, memory_order_relaxed);
		uint32_t used = atomic_load_explicit(&c->active_ms, memory_order_relaxed);
		uint32_t words = atomic_load_explicit(&c->words, memory_order_relaxed);

		/*
		 * It allocated since the last pass, if without a refill: busy
		 * now, as far as the pass can tell (so an idle thread's active
		 * spans go after two to three times the decay, not two).
		 */
		if (words != c->words_seen) {
			c->words_seen = words;
			if (used) {
				used = sa_ms_stamp(st.now);
				atomic_store_explicit(&c->active_ms, used, memory_order_relaxed);
			}
		}
		if (c == self || ((!seen || !sa_ms_since(st.now, seen, 2 * st.decay)) &&
				  (!used || !sa_ms_since(st.now, used, 2 * st.decay))))
			continue;
		atomic_store_explicit(&c->taking, 1, memory_order_relaxed);
		cand[n++] = c;
	}
	if (n)
		took = sa_handoff_take(self, cand, n, &st);
	pthread_mutex_unlock(&sa_g.lock);
	if (took)
		sa_tcache_return_decayed(self);
	errno = saved;
}

/* Whether a pass is due at now, the last having started at last. */
static bool sa_handoff_due(uint32_t now, uint32_t last, uint32_t decay)
{
	return !SA_HANDOFF_OFF && atomic_load_explicit(&sa_g.handoff, memory_order_relaxed) &&
	       !sa_gc_on() &&
	       sa_ms_since(now, last, decay > SA_HANDOFF_MIN_MS ? decay : SA_HANDOFF_MIN_MS);
}

/*
 * From self's refill, inside its no-stop region: a pass over the other
 * caches if none ran for the decay time.
 */
void sa_handoff_idle(struct sa_tcache *self, uint32_t now)
{
	uint32_t last = atomic_load_explicit(&sa_handoff_ms, memory_order_relaxed);
	struct sa_stale st = { .decay = sa_held_decay_ms() };

	if (!sa_handoff_due(now, last, st.decay) ||
	    !atomic_compare_exchange_strong_explicit(&sa_handoff_ms, &last, now,
						     memory_order_relaxed, memory_order_relaxed))
		return;
	sa_handoff_pass(self, st);
}

/* Whether sa_handoff_idle() at now would start a pass (a fast path asks). */
bool sa_handoff_would_run(uint32_t now, uint32_t decay)
{
	return sa_handoff_due(now, atomic_load_explicit(&sa_handoff_ms, memory_order_relaxed),
			      decay);
}

/*
 * c's own thread, entering a slow path (sa_safe_enter), found a taker at
 * work: it waits outside the allocator until the taker is done. Nested
 * entries (a signal handler's) wait too: the one they interrupted may
 * have raised nosafe after the taker looked at it, and not yet read
 * taking, so the taker may be at c's lists. Waiting is safe whatever the
 * outer entry did: a taker never waits for nosafe, and one that saw it
 * raised leaves c alone and clears taking at once. The pass is short,
 * but a real-time thread's sched_yield() never lets a lower-priority
 * taker on its CPU run: after a few yields, it sleeps.
 */
void sa_handoff_wait(struct sa_tcache *c)
{
	const struct timespec nap = { .tv_nsec = 100 * 1000 };

	do {
		int waits = 0;

		atomic_signal_fence(memory_order_seq_cst);
		c->nosafe--;
		atomic_signal_fence(memory_order_seq_cst);
		while (atomic_load_explicit(&c->taking, memory_order_acquire)) {
			if (waits++ < SA_HANDOFF_YIELDS)
				sched_yield();
			else
				sa_nap(&nap);
		}
		c->nosafe++;
		atomic_signal_fence(memory_order_seq_cst);
	} while (atomic_load_explicit(&c->taking, memory_order_relaxed));
}
