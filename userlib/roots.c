// SPDX-License-Identifier: MIT
/*
 * roots: where marking starts (Go's markroot, Boehm's mark_rts.c):
 *   - ranges the program registered (sa_gc_add_roots);
 *   - the data and bss of the program and of every shared library (the
 *     writable PT_LOAD segments dl_iterate_phdr reports), when enabled;
 *   - each registered thread's stack from where it stopped to its top (the
 *     registers it had are on it: see world.c), and its current tiny block,
 *     which the thread may still be carving.
 * All are scanned conservatively. The library's own globals are left out:
 * they hold the heap's base address, which would pin the first object.
 *
 * Segments are listed before the world stops: dl_iterate_phdr takes the
 * loader's lock, which a stopped thread may hold.
 */
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define SA_MAX_ROOTS	4096
#define SA_MAX_SEGS	512

struct sa_range {
	uintptr_t lo, hi;
};

static pthread_mutex_t roots_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sa_range roots[SA_MAX_ROOTS];	/* under roots_lock */
static int nroots;

/* Written before the world stops, read while it is stopped. */
static struct sa_range segs[SA_MAX_SEGS];
static int nsegs;
static uint64_t globals_bytes, stack_bytes;

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
	for (int i = 0; i < info->dlpi_phnum && nsegs < SA_MAX_SEGS; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W) || !ph->p_memsz)
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
	if (sa_gc.scan_globals)
		dl_iterate_phdr(sa_roots_segment, NULL);
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

static void sa_roots_thread(struct sa_tcache *c, void *arg)
{
	struct sa_root_sink *k = arg;
	uintptr_t sp = c->stop_sp;

	if (sp < c->stack_lo || sp >= c->stack_hi)
		sp = c->stack_lo;	/* not stopped where we thought: all of it */
	sp &= ~(uintptr_t)7;
	k->range(k, sp, c->stack_hi);
	stack_bytes += c->stack_hi - sp;
	if (c->tiny)
		k->object(k, c->tiny);
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
