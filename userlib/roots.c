// SPDX-License-Identifier: MIT
/*
 * roots: where marking starts (Go's markroot, Boehm's mark_rts.c):
 *   - ranges the program registered (sa_gc_add_roots);
 *   - the data and bss of the program and of every shared library (the
 *     writable PT_LOAD segments dl_iterate_phdr reports), when enabled;
 *   - each registered thread's stacks (but the library's own sweeper,
 *     which holds no program pointer): the one it stopped on, from where
 *     it stopped to its top (the registers it had are on it: see
 *     world.c); its own stack, its alternate signal stack and the stack it
 *     said it switched to (sa_gc_set_stack), whole, when it stopped on
 *     another; and its current tiny block, which it may still be carving;
 *   - each registered thread's thread-local storage: the static block
 *     (with the C library's thread descriptor, which holds the first 32
 *     pthread_setspecific values), the blocks holding the other keys'
 *     values, and the blocks of modules loaded later (dlopen), which the
 *     C library allocates when first used.
 * All are scanned conservatively. The library's own globals are left out:
 * they hold the heap's base address, which would pin the first object.
 *
 * Thread-local storage is found as glibc lays it out on x86-64 (the
 * layout its thread debugging library relies on): the thread pointer is
 * the thread's pthread_t, the static block ends with the descriptor the
 * thread pointer points to, and the descriptor's second word is the
 * dynamic thread vector, whose entry i (16 bytes) points to module i's
 * block. A thread other than the first has its static block on its stack,
 * scanned with it.
 *
 * Segments are listed before the world stops: dl_iterate_phdr takes the
 * loader's lock, which a stopped thread may hold.
 */
#include <errno.h>
#include <link.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "internal.h"

#define SA_MAX_ROOTS	4096
#define SA_MAX_SEGS	512
#define SA_MAX_TLS	512	/* modules with thread-local storage */

struct sa_range {
	uintptr_t lo, hi;
};

static pthread_mutex_t roots_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sa_range roots[SA_MAX_ROOTS];	/* under roots_lock */
static int nroots;

/* Written before the world stops, read while it is stopped. */
static struct sa_range segs[SA_MAX_SEGS];
static int nsegs;
static size_t tls_size[SA_MAX_TLS];	/* by module id; 0: none */
static size_t ntls;
static uint64_t globals_bytes, stack_bytes;

/* glibc's static TLS geometry, found once by sa_roots_init() */
static size_t tls_static_size, tls_tcb_size;
/*
 * Where the descriptor keeps pthread_setspecific's second-level blocks
 * (0: not found). glibc holds the values of the first 32 keys in the
 * descriptor itself (specific_1stblock, 32 entries of 16 bytes) and those
 * of the others in blocks of 32 entries from malloc, pointed to by the
 * array that follows: specific[0] points to specific_1stblock, 512 bytes
 * before itself, which is how sa_roots_init finds it.
 */
static size_t tls_specific_off;
#define SA_KEY_BLOCK	(32 * 2 * sizeof(uintptr_t))

/*
 * The collector takes roots_lock with the world stopped: a registered
 * thread must not be stopped holding it, so it holds it only inside a
 * no-safe-point region.
 */
static struct sa_tcache *sa_roots_lock(void)
{
	struct sa_tcache *c = sa_tc;

	if (c)
		sa_safe_enter(c);
	pthread_mutex_lock(&roots_lock);
	return c;
}

static void sa_roots_unlock(struct sa_tcache *c)
{
	pthread_mutex_unlock(&roots_lock);
	if (c)
		sa_safe_exit(c);
}

void sa_roots_fork(enum sa_fork_phase phase)
{
	sa_fork_mutex(&roots_lock, phase);
}

int sa_gc_add_roots(void *lo, void *hi)
{
	struct sa_tcache *c;
	int ret = -1;

	if ((uintptr_t)lo >= (uintptr_t)hi)
		return -1;
	c = sa_roots_lock();
	if (nroots < SA_MAX_ROOTS) {
		roots[nroots++] = (struct sa_range){ (uintptr_t)lo, (uintptr_t)hi };
		ret = 0;
	}
	sa_roots_unlock(c);
	return ret;
}

int sa_gc_remove_roots(void *lo)
{
	struct sa_tcache *c = sa_roots_lock();
	int ret = -1;

	for (int i = 0; i < nroots; i++) {
		if (roots[i].lo == (uintptr_t)lo) {
			roots[i] = roots[--nroots];
			ret = 0;
			break;
		}
	}
	sa_roots_unlock(c);
	return ret;
}

void sa_gc_set_scan_globals(int on)
{
	sa_gc.scan_globals = on;
}

static int sa_roots_segment(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type == PT_TLS && info->dlpi_tls_modid &&
		    info->dlpi_tls_modid < SA_MAX_TLS) {
			tls_size[info->dlpi_tls_modid] = ph->p_memsz;
			if (info->dlpi_tls_modid >= ntls)
				ntls = info->dlpi_tls_modid + 1;
		}
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W) || !ph->p_memsz ||
		    nsegs == SA_MAX_SEGS)
			continue;
		segs[nsegs].lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)7;
		segs[nsegs].hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
		nsegs++;
	}
	return 0;
}

/* Lists the data segments; called before the world stops. */
void sa_roots_prepare(void)
{
	nsegs = 0;
	globals_bytes = 0;
	memset(tls_size, 0, sizeof(tls_size));
	ntls = 0;
	dl_iterate_phdr(sa_roots_segment, NULL);
	if (!sa_gc.scan_globals)
		nsegs = 0;
	for (int i = 0; i < nsegs; i++)
		globals_bytes += segs[i].hi - segs[i].lo;
}

/* Sends [lo, hi) minus the library's own records. */
static void sa_roots_range_except(struct sa_root_sink *k, uintptr_t lo, uintptr_t hi)
{
	static const struct {
		const void *p;
		size_t n;
	} own[] = {
		{ &sa_g, sizeof(sa_g) },
		{ &sa_gc, sizeof(sa_gc) },
	};

	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
		uintptr_t olo = (uintptr_t)own[i].p, ohi = olo + own[i].n;

		if (olo < hi && ohi > lo) {
			if (olo > lo)
				sa_roots_range_except(k, lo, olo);
			if (ohi < hi)
				sa_roots_range_except(k, ohi, hi);
			return;
		}
	}
	k->range(k, lo, hi);
}

static void *sa_roots_tcb_probe(void *arg)
{
	pthread_attr_t attr;
	void *addr;
	size_t size;

	if (pthread_getattr_np(pthread_self(), &attr) == 0) {
		pthread_attr_getstack(&attr, &addr, &size);
		pthread_attr_destroy(&attr);
		*(uintptr_t *)arg = (uintptr_t)addr + size - (uintptr_t)pthread_self();
	}
	return NULL;
}

/*
 * Finds the size of the static TLS block (the loader tells) and of the
 * thread descriptor at its end: a new thread's descriptor sits at the top
 * of its stack block, rounded down to its 64-byte alignment.
 */
int sa_roots_init(void)
{
#if defined(__GLIBC__) && defined(__x86_64__)
	void (*info)(size_t *size, size_t *align) =
		(void (*)(size_t *, size_t *))dlsym(RTLD_DEFAULT, "_dl_get_tls_static_info");
	uintptr_t tcb = 0;
	size_t align;
	pthread_t t;

	if (tls_static_size)
		return 0;
	if (!info || sa_thread_create_raw(&t, NULL, sa_roots_tcb_probe, &tcb))
		goto unknown;
	pthread_join(t, NULL);
	info(&tls_static_size, &align);
	/*
	 * The descriptor is 64-byte aligned; a module asking for more would
	 * leave slack above it that this measure cannot tell from it.
	 */
	tcb &= ~(uintptr_t)63;
	if (!tcb || tcb > 16384 || tcb >= tls_static_size || align > 64) {
		tls_static_size = 0;
		goto unknown;
	}
	tls_tcb_size = tcb;
	for (size_t off = SA_KEY_BLOCK; off + 32 * sizeof(uintptr_t) <= tcb; off += sizeof(uintptr_t)) {
		uintptr_t self = (uintptr_t)pthread_self();

		if (((const uintptr_t *)self)[off / sizeof(uintptr_t)] == self + off - SA_KEY_BLOCK) {
			tls_specific_off = off;
			break;
		}
	}
	if (!tls_specific_off)
		fprintf(stderr, "spanalloc: gc: cannot find the C library's pthread_setspecific blocks; values of keys past the first 32 are not scanned\n");
	return 0;
unknown:
	fprintf(stderr, "spanalloc: gc: cannot find the C library's thread-local storage; the first thread's is not scanned\n");
#endif
	return 0;
}

/* The mapped top part of [lo, hi): a main thread's stack grows on demand. */
static uintptr_t sa_roots_mapped_lo(uintptr_t lo, uintptr_t hi)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a, b;
	unsigned char v;

	a = (lo + pg - 1) & ~(pg - 1);
	b = hi & ~(pg - 1);
	if (a >= b || mincore((void *)a, pg, &v) == 0)
		return lo;
	/* [b - pg, hi) is mapped (the stack's top); find the lowest mapped page */
	while (b - a > pg) {
		uintptr_t mid = a + ((b - a) / 2 & ~(pg - 1));

		if (mincore((void *)mid, pg, &v) == 0)
			b = mid;
		else
			a = mid;
	}
	return b;
}

static void sa_roots_send(struct sa_root_sink *k, uintptr_t lo, uintptr_t hi)
{
	lo &= ~(uintptr_t)7;
	if (lo < hi) {
		k->range(k, lo, hi);
		stack_bytes += hi - lo;
	}
}

static void sa_roots_tls(struct sa_tcache *c, struct sa_root_sink *k)
{
#if defined(__GLIBC__) && defined(__x86_64__)
	uintptr_t tp = (uintptr_t)c->self, dtv;
	size_t n;

	/* the first thread's static block is not on its stack */
	if (tls_static_size && (tp < c->stack_lo || tp >= c->stack_hi))
		sa_roots_send(k, tp + tls_tcb_size - tls_static_size, tp + tls_tcb_size);
	if (tls_specific_off) {
		const uintptr_t *spec = (const uintptr_t *)(tp + tls_specific_off);

		for (int i = 1; i < 32; i++)
			if (spec[i])
				sa_roots_send(k, spec[i], spec[i] + SA_KEY_BLOCK);
	}
	dtv = ((const uintptr_t *)tp)[1];
	if (!dtv)
		return;
	n = ((const size_t *)dtv)[-2];		/* entry -1: its length */
	for (size_t i = 1; i < ntls && i <= n && i < 1 << 16; i++) {
		uintptr_t block = ((const uintptr_t *)dtv)[2 * i];

		if (tls_size[i] && block && block != (uintptr_t)-1)
			sa_roots_send(k, block, block + tls_size[i]);
	}
#else
	(void)c;
	(void)k;
#endif
}

static void sa_roots_thread(struct sa_tcache *c, void *arg)
{
	struct sa_root_sink *k = arg;
	uintptr_t sp = atomic_load_explicit(&c->stop_sp, memory_order_relaxed);
	struct sa_range st[3] = {
		{ c->stack_lo, c->stack_hi },
		{ atomic_load_explicit(&c->alt_lo, memory_order_relaxed),
		  atomic_load_explicit(&c->alt_hi, memory_order_relaxed) },
		{ atomic_load_explicit(&c->cur_lo, memory_order_relaxed),
		  atomic_load_explicit(&c->cur_hi, memory_order_relaxed) },
	};
	int on = -1;

	if (c->lib_thread)
		return;
	for (int i = 0; i < 3; i++)
		if (sp >= st[i].lo && sp < st[i].hi)
			on = i;
	if (on < 0) {
		static _Atomic int told;

		if (!atomic_exchange(&told, 1))
			fprintf(stderr, "spanalloc: gc: thread %d stopped on a stack the collector was not told about (see sa_gc_set_stack); what only that stack holds may be collected\n",
				(int)c->tid);
	}
	for (int i = 0; i < 3; i++) {
		if (st[i].lo >= st[i].hi)
			continue;
		if (i == on)
			sa_roots_send(k, sp, st[i].hi);
		else if (i == 0)
			sa_roots_send(k, sa_roots_mapped_lo(st[i].lo, st[i].hi), st[i].hi);
		else
			sa_roots_send(k, st[i].lo, st[i].hi);
	}
	sa_roots_tls(c, k);
	if (c->tiny)
		k->object(k, c->tiny);
}

int sa_gc_set_stack(void *lo, void *hi)
{
	struct sa_tcache *c;

	if ((uintptr_t)lo > (uintptr_t)hi || (!lo) != (!hi)) {
		errno = EINVAL;
		return -1;
	}
	c = sa_tcache_current();
	if (!c)
		return -1;
	/* a stop between the stores sees an empty range or the whole one */
	atomic_store_explicit(&c->cur_hi, 0, memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
	atomic_store_explicit(&c->cur_lo, (uintptr_t)lo, memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
	atomic_store_explicit(&c->cur_hi, (uintptr_t)hi, memory_order_relaxed);
	return 0;
}

/* The world is stopped. */
void sa_roots_scan(struct sa_root_sink *k)
{
	stack_bytes = 0;
	for (int i = 0; i < nsegs; i++)
		sa_roots_range_except(k, segs[i].lo, segs[i].hi);
	pthread_mutex_lock(&roots_lock);
	for (int i = 0; i < nroots; i++)
		k->range(k, roots[i].lo & ~(uintptr_t)7, roots[i].hi);
	pthread_mutex_unlock(&roots_lock);
	sa_world_each(sa_roots_thread, k);
}

uint64_t sa_roots_globals_bytes(void)
{
	return globals_bytes;
}

uint64_t sa_roots_stack_bytes(void)
{
	return stack_bytes;
}
