// SPDX-License-Identifier: MIT
/*
 * mark: tri-color marking (Go's mgcmark.go and mgcwork.go, Boehm's
 * mark.c). White objects have a clear mark bit; gray ones are marked and
 * sit on a gray stack; black ones are marked and scanned. Marking runs
 * with the world stopped, on sa_gc.nworkers threads (the collector and
 * helpers it keeps parked between cycles).
 *
 * Gray stacks are explicit arrays, never recursion. Each worker has one,
 * growing from SA_GRAY_INIT entries up to gray_max; work is shared through
 * a pool of fixed-size packets (bounded too) that idle workers take from.
 * When a worker's stack and the pool are both full, the object about to be
 * pushed is dropped and "overflow" is set, as Boehm does: the object is
 * already marked, so once the stacks drain, the workers rescan every
 * marked object of every scan span (pushing children still white), and
 * repeat until a pass ends without overflow. Memory for marking is thus
 * bounded whatever the heap's shape (a 10-million-node list, a deep tree).
 *
 * Objects larger than SA_OBLET are scanned in pieces (Go's oblets) so one
 * big array spreads over several workers. Roots are sent as ranges flagged
 * SA_GRAY_ROOT: they are scanned conservatively and never dropped.
 *
 * Termination (Go's getfull): a worker with no local work and nothing in
 * the pool counts itself idle; marking ends when every worker is idle and
 * the pool is empty. Only a worker that is not idle can add to the pool.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"

#define SA_GRAY_ROOT	((uintptr_t)1 << 63)	/* a root range: conservative */
#define SA_GRAY_UNTYPED	((uintptr_t)1 << 62)	/* its span has no pointer maps */
#define SA_GRAY_FLAGS	(SA_GRAY_ROOT | SA_GRAY_UNTYPED)
#define SA_OBLET	(128 * 1024)
#define SA_PKT		256		/* entries per pool packet */
#define SA_GRAY_INIT	4096
#define SA_GRAY_MAX	(1 << 18)	/* entries: 4 MiB a worker */
#define SA_MAX_WORKERS	8
#define SA_PARALLEL_MIN	(8 << 20)	/* live bytes worth parallel marking */

struct sa_gray {
	uintptr_t p, n;
};

/*
 * n, cap and live have types that gray entries' fields (unsigned long)
 * cannot alias, so the compiler keeps them in registers across pushes.
 */
struct sa_worker {
	struct sa_gray *stack;
	uint32_t n, cap;
	unsigned long long live;
	double cpu;
	pthread_t thread;
	int id;
} __attribute__((aligned(64)));

enum { SA_PHASE_DRAIN, SA_PHASE_RESCAN, SA_PHASE_EXIT };

static struct {
	struct sa_worker w[SA_MAX_WORKERS];
	int nworkers, started;
	int active;			/* workers marking in this cycle */
	size_t gray_max;

	pthread_mutex_t pool_lock;	/* the packet pool */
	struct sa_gray *pool;		/* pool_max packets of SA_PKT */
	uint32_t *pool_n;		/* entries in each packet */
	uint32_t npool, pool_max;
	_Atomic uint32_t npool_hint;	/* npool, readable without the lock */
	_Atomic int nwait;		/* idle workers in this phase */
	_Atomic int overflow;
	_Atomic uint32_t work_seq;	/* bumped when work is shared or marking ends */
	_Atomic int done;		/* this phase's marking has ended */

	pthread_mutex_t phase_lock;	/* phase, gen, remaining */
	pthread_cond_t phase_cond, done_cond;
	int phase, remaining;
	uint32_t gen;
	_Atomic uint32_t rescan_next;
	double cpu_total;
} mk = {
	.pool_lock = PTHREAD_MUTEX_INITIALIZER,
	.phase_lock = PTHREAD_MUTEX_INITIALIZER,
	.phase_cond = PTHREAD_COND_INITIALIZER,
	.done_cond = PTHREAD_COND_INITIALIZER,
};

static void *sa_mark_mmap(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* Doubles w's stack; beyond gray_max only when force (roots). */
static bool sa_gray_grow(struct sa_worker *w, bool force)
{
	uint32_t cap = w->cap * 2;
	struct sa_gray *n;

	if (cap > mk.gray_max && !force)
		return false;
	n = sa_mark_mmap((size_t)cap * sizeof(*n));
	if (!n)
		return false;
	memcpy(n, w->stack, (size_t)w->n * sizeof(*n));
	munmap(w->stack, (size_t)w->cap * sizeof(*n));
	w->stack = n;
	w->cap = cap;
	return true;
}

static void sa_mark_futex(_Atomic uint32_t *uaddr, int op, uint32_t val)
{
	struct timespec ts = { .tv_nsec = 10 * 1000 * 1000 };

	sa_futex(uaddr, op, val, op == FUTEX_WAIT ? &ts : NULL);
}

/*
 * Moves up to SA_PKT entries, half of w's stack at most, to the pool. For
 * an idle worker they come from the bottom of the stack: marking goes
 * depth first, so the oldest entries are the roots of the largest
 * subgraphs not yet entered (in a tree, the siblings of the nodes near its
 * root), and a tree's stack never holds many entries. A larger stack
 * gives its top, which costs no copy: it has plenty to go round.
 */
static bool sa_gray_share(struct sa_worker *w, bool bottom)
{
	uint32_t k = w->n / 2 < SA_PKT ? w->n / 2 : SA_PKT;
	bool ok = false;

	if (!k)
		return false;
	pthread_mutex_lock(&mk.pool_lock);
	if (mk.npool < mk.pool_max) {
		memcpy(&mk.pool[(size_t)mk.npool * SA_PKT], bottom ? w->stack : &w->stack[w->n - k],
		       k * sizeof(struct sa_gray));
		mk.pool_n[mk.npool] = k;
		mk.npool++;
		atomic_store(&mk.npool_hint, mk.npool);
		ok = true;
	}
	pthread_mutex_unlock(&mk.pool_lock);
	if (ok) {
		w->n -= k;
		if (bottom)
			memmove(w->stack, &w->stack[k], w->n * sizeof(struct sa_gray));
		if (atomic_load_explicit(&mk.nwait, memory_order_relaxed)) {
			atomic_fetch_add(&mk.work_seq, 1);
			sa_mark_futex(&mk.work_seq, FUTEX_WAKE, 1);
		}
	}
	return ok;
}

/* Takes a packet from the pool into w's (empty) stack. */
static bool sa_gray_take(struct sa_worker *w)
{
	bool ok = false;

	if (!atomic_load_explicit(&mk.npool_hint, memory_order_relaxed))
		return false;
	pthread_mutex_lock(&mk.pool_lock);
	if (mk.npool) {
		uint32_t k;

		mk.npool--;
		atomic_store(&mk.npool_hint, mk.npool);
		k = mk.pool_n[mk.npool];
		memcpy(&w->stack[w->n], &mk.pool[(size_t)mk.npool * SA_PKT],
		       k * sizeof(struct sa_gray));
		w->n += k;
		ok = true;
	}
	pthread_mutex_unlock(&mk.pool_lock);
	return ok;
}

static void sa_scan_root_now(struct sa_worker *w, uintptr_t p, uintptr_t n);

static void sa_gray_push(struct sa_worker *w, uintptr_t p, uintptr_t n)
{
	if (sa_unlikely(w->n == w->cap) && !sa_gray_grow(w, n & SA_GRAY_ROOT) &&
	    !sa_gray_share(w, false)) {
		/*
		 * An object is marked already: the rescan after this pass
		 * finds it. A root is not, and nothing would find it again:
		 * it is scanned here and now, its children overflowing the
		 * same way.
		 */
		atomic_store(&mk.overflow, 1);
		if (n & SA_GRAY_ROOT)
			sa_scan_root_now(w, p, n & ~SA_GRAY_FLAGS);
		return;
	}
	w->stack[w->n++] = (struct sa_gray){ p, n };
}

/* The allocated object p points into, for sa_base(): any time, any thread. */
SA_NO_TSAN struct sa_uspan *sa_find_object(uintptr_t p, uint32_t *idx, uintptr_t *base)
{
	struct sa_uspan *s = sa_span_of((void *)p);

	if (!s || atomic_load_explicit(&s->where, memory_order_acquire) == SA_WHERE_NONE ||
	    !sa_span_object_at(s, p, idx, base))
		return NULL;
	return s;
}

/*
 * Shades the object v (an address inside the heap's mapping, at offset off)
 * points into gray, if it is white. The hottest code of a collection:
 * what sa_find_object() checks, without its checks that cannot fail while
 * the world is stopped (a page map entry names an in-use span).
 */
static inline __attribute__((always_inline)) SA_NO_TSAN void
sa_mark_ptr(struct sa_worker *w, _Atomic(struct sa_uspan *) *pagemap, uintptr_t v,
	    uintptr_t off)
{
	struct sa_uspan *s = atomic_load_explicit(&pagemap[off >> SA_PAGE_SHIFT],
						  memory_order_relaxed);
	uintptr_t obj, size;
	uint64_t bit, old;
	uint32_t idx;

	if (!s || !sa_span_object_at(s, v, &idx, &obj))
		return;
	size = s->elemsize;
	bit = 1ULL << (idx % 64);
	old = atomic_load_explicit(&s->mark_bits[idx / 64], memory_order_relaxed);
	if (old & bit)
		return;
	if (sa_likely(mk.active == 1))
		atomic_store_explicit(&s->mark_bits[idx / 64], old | bit, memory_order_relaxed);
	else if (atomic_fetch_or_explicit(&s->mark_bits[idx / 64], bit, memory_order_relaxed) & bit)
		return;
	w->live += size;
	if (s->spanclass & 1)
		return;		/* noscan: black at once */
	if (sa_likely(w->n < w->cap)) {
		w->stack[w->n++] = (struct sa_gray){ obj, size | (s->types ? 0 : SA_GRAY_UNTYPED) };
		return;
	}
	sa_gray_push(w, obj, size | (s->types ? 0 : SA_GRAY_UNTYPED));
}

/* Scans one gray entry: conservatively, or by the object's pointer map. */
static inline __attribute__((always_inline)) SA_NO_TSAN void
sa_scan(struct sa_worker *w, struct sa_gray e)
{
	uintptr_t p = e.p, n = e.n & ~SA_GRAY_FLAGS, lo = sa_g.base, len = sa_g.maplen;
	_Atomic(struct sa_uspan *) *pagemap = sa_g.pagemap;
	const struct sa_type *t = NULL;
	uintptr_t obj = p;

	if (n > SA_OBLET) {
		/* the rest goes back as its own entry: other workers may take it */
		sa_gray_push(w, p + SA_OBLET, (n - SA_OBLET) | (e.n & SA_GRAY_FLAGS));
		n = SA_OBLET;
	}
	if (!(e.n & SA_GRAY_FLAGS)) {
		struct sa_uspan *s = sa_span_of((void *)p);

		if (s && s->types) {
			uint32_t idx = s->spanclass < 2 ? 0 : sa_span_index(s, p);

			t = s->types[idx];
			obj = sa_span_object(s, idx);
		}
	}
	if (t) {
		uintptr_t words = t->size / sizeof(uintptr_t);

		for (uintptr_t q = p; q + sizeof(uintptr_t) <= p + n; q += sizeof(uintptr_t)) {
			uintptr_t k = ((q - obj) / sizeof(uintptr_t)) % words, v;

			if (!(t->ptrmask[k / 64] & (1ULL << (k % 64))))
				continue;
			v = *(const uintptr_t *)q;
			if (v - lo < len)
				sa_mark_ptr(w, pagemap, v, v - lo);
		}
		return;
	}
	for (const uintptr_t *q = (const uintptr_t *)p, *end = (const uintptr_t *)(p + n);
	     q < end; q++) {
		uintptr_t v = *q;

		if (v - lo < len)
			sa_mark_ptr(w, pagemap, v, v - lo);
	}
}

/* A root range the gray stacks have no room for, in oblets: no push. */
static SA_NO_TSAN void sa_scan_root_now(struct sa_worker *w, uintptr_t p, uintptr_t n)
{
	while (n) {
		uintptr_t len = n < SA_OBLET ? n : SA_OBLET;

		sa_scan(w, (struct sa_gray){ p, len | SA_GRAY_ROOT });
		p += len;
		n -= len;
	}
}

/* Drains until every worker is out of work. */
static SA_NO_TSAN void sa_drain(struct sa_worker *w)
{
	for (;;) {
		while (w->n) {
			sa_scan(w, w->stack[--w->n]);
			/* feed idle workers: as soon as there is anything to share */
			if (w->n >= 2 && atomic_load_explicit(&mk.nwait, memory_order_relaxed) &&
			    !atomic_load_explicit(&mk.npool_hint, memory_order_relaxed))
				sa_gray_share(w, w->n <= 4 * SA_PKT);
		}
		if (sa_gray_take(w))
			continue;
		atomic_fetch_add(&mk.nwait, 1);
		for (int spins = 0;; spins++) {
			uint32_t seq = atomic_load(&mk.work_seq);

			if (atomic_load(&mk.done))
				return;
			if (atomic_load(&mk.npool_hint)) {
				atomic_fetch_sub(&mk.nwait, 1);
				if (sa_gray_take(w))
					break;
				atomic_fetch_add(&mk.nwait, 1);
				continue;
			}
			if (atomic_load(&mk.nwait) == mk.active) {
				/* nobody works, nothing is shared: marking is over */
				atomic_store(&mk.done, 1);
				atomic_fetch_add(&mk.work_seq, 1);
				sa_mark_futex(&mk.work_seq, FUTEX_WAKE, INT32_MAX);
				return;
			}
			if (spins < 64)
				__builtin_ia32_pause();
			else
				sa_mark_futex(&mk.work_seq, FUTEX_WAIT, seq);
		}
	}
}

/* After an overflow: scan every marked object of every scan span again. */
static SA_NO_TSAN void sa_rescan(struct sa_worker *w)
{
	uint32_t total = sa_uspan_count(), i;

	while ((i = atomic_fetch_add(&mk.rescan_next, 1)) < total) {
		struct sa_uspan *s = sa_uspan_at(i);

		if (atomic_load_explicit(&s->where, memory_order_acquire) == SA_WHERE_NONE ||
		    (s->spanclass & 1))
			continue;
		for (uint32_t wd = 0, words = sa_span_words(s); wd < words; wd++) {
			uint64_t m = atomic_load_explicit(&s->mark_bits[wd], memory_order_relaxed);

			while (m) {
				uint32_t idx = wd * 64 + (uint32_t)__builtin_ctzll(m);

				m &= m - 1;
				sa_scan(w, (struct sa_gray){ sa_span_object(s, idx),
							    s->elemsize });
				while (w->n)
					sa_scan(w, w->stack[--w->n]);
			}
		}
	}
}

static void sa_worker_phase(struct sa_worker *w, int phase)
{
	double t0 = sa_seconds(CLOCK_THREAD_CPUTIME_ID);

	if (phase == SA_PHASE_RESCAN)
		sa_rescan(w);
	sa_drain(w);
	w->cpu += sa_seconds(CLOCK_THREAD_CPUTIME_ID) - t0;
}

static void *sa_worker_main(void *arg)
{
	struct sa_worker *w = arg;
	uint32_t seen = 0;

	pthread_setname_np(pthread_self(), "sa-mark");
	for (;;) {
		int phase;

		pthread_mutex_lock(&mk.phase_lock);
		while (mk.gen == seen)
			pthread_cond_wait(&mk.phase_cond, &mk.phase_lock);
		seen = mk.gen;
		phase = mk.phase;
		pthread_mutex_unlock(&mk.phase_lock);
		if (phase == SA_PHASE_EXIT)
			return NULL;
		if (w->id >= mk.active)
			continue;
		sa_worker_phase(w, phase);
		pthread_mutex_lock(&mk.phase_lock);
		if (--mk.remaining == 0)
			pthread_cond_signal(&mk.done_cond);
		pthread_mutex_unlock(&mk.phase_lock);
	}
}

static void sa_run_phase(int phase)
{
	atomic_store(&mk.nwait, 0);
	atomic_store(&mk.done, 0);
	pthread_mutex_lock(&mk.phase_lock);
	mk.phase = phase;
	mk.remaining = mk.active - 1;
	if (mk.active > 1) {
		mk.gen++;
		pthread_cond_broadcast(&mk.phase_cond);
	}
	pthread_mutex_unlock(&mk.phase_lock);
	sa_worker_phase(&mk.w[0], phase);
	pthread_mutex_lock(&mk.phase_lock);
	while (mk.remaining)
		pthread_cond_wait(&mk.done_cond, &mk.phase_lock);
	pthread_mutex_unlock(&mk.phase_lock);
}

/*
 * Makes the stacks, the pool and the helper threads; before the world
 * stops (creating threads takes locks a stopped thread may hold). Returns
 * 0, or -1 when there is no memory for marking at all.
 */
int sa_mark_setup(void)
{
	const char *e;

	if (mk.started)
		return 0;
	mk.gray_max = SA_GRAY_MAX;
	e = getenv("SPANALLOC_GC_GRAYMAX");
	if (e && atol(e) >= 2 * SA_PKT)
		mk.gray_max = (size_t)atol(e);
	mk.pool_max = (uint32_t)(mk.gray_max / SA_PKT);
	mk.pool = sa_mark_mmap((size_t)mk.pool_max * SA_PKT * sizeof(struct sa_gray));
	mk.pool_n = sa_mark_mmap((size_t)mk.pool_max * sizeof(uint32_t));
	if (!mk.pool || !mk.pool_n)
		return -1;
	mk.nworkers = atomic_load(&sa_gc.nworkers);
	if (mk.nworkers < 1)
		mk.nworkers = 1;
	if (mk.nworkers > SA_MAX_WORKERS)
		mk.nworkers = SA_MAX_WORKERS;
	for (int i = 0; i < mk.nworkers; i++) {
		struct sa_worker *w = &mk.w[i];

		w->id = i;
		w->cap = (uint32_t)(SA_GRAY_INIT < mk.gray_max ? SA_GRAY_INIT : mk.gray_max);
		w->stack = sa_mark_mmap((size_t)w->cap * sizeof(struct sa_gray));
		if (!w->stack || (i && sa_thread_create_raw(&w->thread, NULL, sa_worker_main, w))) {
			mk.nworkers = i > 0 ? i : 1;
			break;
		}
	}
	atomic_store(&sa_gc.nworkers, mk.nworkers);
	mk.started = 1;
	return 0;
}

/*
 * fork(): no cycle runs (the forking thread holds cycle_lock), but the
 * child has none of the marking threads: its collector marks alone. The
 * locks the workers may have held between cycles are made anew.
 */
void sa_mark_fork_child(void)
{
	pthread_mutex_init(&mk.pool_lock, NULL);
	pthread_mutex_init(&mk.phase_lock, NULL);
	pthread_cond_init(&mk.phase_cond, NULL);
	pthread_cond_init(&mk.done_cond, NULL);
	mk.remaining = 0;
	if (mk.started) {
		mk.nworkers = 1;
		atomic_store(&sa_gc.nworkers, 1);
	}
}

struct sa_mark_sink {
	struct sa_root_sink k;
	struct sa_worker *w;
};

static SA_NO_TSAN void sa_mark_root_range(struct sa_root_sink *k, uintptr_t lo, uintptr_t hi)
{
	struct sa_mark_sink *m = (struct sa_mark_sink *)k;

	if (hi > lo)
		sa_gray_push(m->w, lo, (hi - lo) | SA_GRAY_ROOT);
}

static SA_NO_TSAN void sa_mark_root_object(struct sa_root_sink *k, uintptr_t p)
{
	if (p - sa_g.base < sa_g.maplen)
		sa_mark_ptr(((struct sa_mark_sink *)k)->w, sa_g.pagemap, p, p - sa_g.base);
}

/* Marks everything reachable from the roots. The world is stopped. */
void sa_mark_run(void)
{
	struct sa_mark_sink sink = {
		.k = { .range = sa_mark_root_range, .object = sa_mark_root_object },
		.w = &mk.w[0],
	};

	/*
	 * Helpers cost a wake-up each and atomic mark bits: worth it only
	 * when there is much to mark. The last cycle's live heap (or, the
	 * first time, the heap) says how much there will be.
	 */
	mk.active = 1;
	if (mk.nworkers > 1 &&
	    (sa_gc.live_marked ? sa_gc.live_marked :
	     atomic_load(&sa_gc.heap_live)) >= SA_PARALLEL_MIN) {
		mk.active = mk.nworkers;
		atomic_fetch_add(&sa_gc.parallel_cycles, 1);
	}
	for (int i = 0; i < mk.nworkers; i++) {
		mk.w[i].live = 0;
		mk.w[i].cpu = 0;
	}
	atomic_store(&mk.overflow, 0);
	sa_roots_scan(&sink.k);
	sa_run_phase(SA_PHASE_DRAIN);
	while (atomic_load(&mk.overflow)) {
		atomic_fetch_add(&sa_gc.mark_overflows, 1);
		atomic_store(&mk.overflow, 0);
		atomic_store(&mk.rescan_next, 0);
		sa_run_phase(SA_PHASE_RESCAN);
	}
	/* the helpers' share; the collector counts its own thread's time */
	mk.cpu_total = 0;
	for (int i = 1; i < mk.nworkers; i++)
		mk.cpu_total += mk.w[i].cpu;
}

uint64_t sa_mark_live_bytes(void)
{
	uint64_t live = 0;

	for (int i = 0; i < mk.nworkers; i++)
		live += mk.w[i].live;
	return live;
}

double sa_mark_cpu_s(void)
{
	return mk.cpu_total;
}
