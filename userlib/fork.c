// SPDX-License-Identifier: MIT
/*
 * fork: the heap across fork(). The child gets a copy of the parent's heap
 * mapping but not the heap (the kernel refuses it every call on the
 * parent's), and only the thread that forked. So, in the child:
 *
 *   1. every span record the parent had is settled as the thread holding
 *      it would settle it: the forking thread keeps its own active and
 *      held spans; every other span (other threads' caches, spans the
 *      kernel held as partial or full, spans adopted) is made exact from
 *      its bitmaps and becomes EMPTY (dropped), PARTIAL or FULL (adoptable
 *      again), as a return would make it;
 *   2. a new heap is opened and adopts the inherited mapping with those
 *      spans (SPANALLOC_IOC_ADOPT): the kernel drops every other page of
 *      the child's copy, and from then on the child allocates, frees and
 *      gives memory back in a heap of its own, sharing nothing with its
 *      parent's;
 *   3. the caches of the threads that were not copied are emptied and
 *      freed, the collector's threads and locks made anew.
 *
 * Around the copy, the parent's library locks are held by the forking
 * thread (the cycle lock first, so no collection runs), so the child's
 * records are not in the middle of a change those locks guard. Threads
 * that were inside the allocator when the copy was made do not exist in
 * the child, and what they left half done is trusted no further than the
 * bitmaps: a span is settled from allocBits as its freeindex implies, less
 * the frees recorded for objects still marked allocated, with the count
 * recomputed (sa_span_settle_forked); a span a dead sweeper was halfway
 * through keeps every object that may be live (sa_sweep_forked). What is
 * lost is at worst a free that was never recorded or an object kept a
 * cycle longer: a leak, never an object handed out twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "internal.h"

/* A lock held across the fork: taken, released, or made anew in the child. */
void sa_fork_mutex(pthread_mutex_t *m, enum sa_fork_phase phase)
{
	switch (phase) {
	case SA_FORK_PREPARE:
		pthread_mutex_lock(m);
		break;
	case SA_FORK_PARENT:
		pthread_mutex_unlock(m);
		break;
	case SA_FORK_CHILD:
		/* its holder, if any, is a thread the child does not have */
		pthread_mutex_init(m, NULL);
		break;
	}
}

/*
 * Every lock of the library, in the order a collection takes them (the
 * cycle lock first: no collection runs across the fork). The parent
 * releases them, the child makes them anew, in the same pass.
 */
static void sa_fork_locks(enum sa_fork_phase phase)
{
	sa_fork_mutex(&sa_gc.cycle_lock, phase);
	sa_world_fork(phase);
	sa_roots_fork(phase);
	sa_sweep_fork(phase);
	sa_orphan_fork(phase);
	sa_fork_mutex(&sa_g.lock, phase);
	sa_prof_fork(phase);
}

static void sa_fork_prepare(void)
{
	sa_fork_locks(SA_FORK_PREPARE);
}

static void sa_fork_parent(void)
{
	sa_fork_locks(SA_FORK_PARENT);
}

/* Not stdio: the child of a multi-threaded parent may find its lock held. */
static void sa_fork_say(const char *what, int err)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg),
			 "spanalloc: pid %d: a forked child cannot have a heap of its own (%s: %s); it allocates only from the spans it inherited\n",
			 (int)getpid(), what, strerrordesc_np(err));

	if (n > 0 && write(2, msg, (size_t)n) < 0)
		return;
}

/*
 * The device again, as a new heap: through the inherited fd's node (the
 * same device node, whatever the working directory or the path was), or
 * by its path where /proc is not mounted.
 */
static int sa_fork_reopen(void)
{
	char path[32];
	int fd;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", sa_g.fd);
	fd = open(path, O_RDWR | O_CLOEXEC);
	return fd >= 0 ? fd : open(sa_g.dev, O_RDWR | O_CLOEXEC);
}

/*
 * Step 1 for one span: settles it, and says what the new heap should make
 * of it (a struct spanalloc_adopt_span op), or -1 when it is empty and
 * goes (its record is freed).
 */
static int sa_fork_settle(struct sa_uspan *s, struct sa_tcache *self)
{
	if (atomic_load_explicit(&s->where, memory_order_relaxed) == SA_WHERE_LARGE) {
		sa_sweep_forked(s);
		return SPANALLOC_ADOPT_OWNED;
	}
	sa_span_settle_forked(s);
	if (sa_gc_on())
		sa_sweep_forked(s);
	/* what the threads gone counted is the forking thread's to report */
	if (self)
		sa_tcache_harvest(self, s);
	if (atomic_load_explicit(&s->owner, memory_order_relaxed) == self && self)
		return SPANALLOC_ADOPT_OWNED;
	sa_span_set_owner(s, NULL);
	if (!s->alloc_count) {
		sa_pagemap_set(s, NULL);
		sa_uspan_release(s);
		return -1;
	}
	if (s->alloc_count == s->nelems) {
		atomic_store_explicit(&s->where, SA_WHERE_KFULL, memory_order_relaxed);
		atomic_store_explicit(&s->adoptable, 1, memory_order_relaxed);
		return SPANALLOC_RET_FULL;
	}
	atomic_store_explicit(&s->where, SA_WHERE_KPARTIAL, memory_order_relaxed);
	return SPANALLOC_RET_PARTIAL;
}

/* The caches of threads the child does not have: emptied, then freed. */
static void sa_fork_drop_caches(struct sa_tcache *self)
{
	struct sa_tcache *c = sa_g.caches, *next;

	for (; c; c = next) {
		next = c->next;
		if (c == self)
			continue;
		sa_world_unregister(c);
		sa_counters_add(&sa_g.dead, &c->st);
		sa_uspan_return_spares(c);
		munmap(c, sizeof(*c));
	}
	sa_g.caches = self;
	if (self)
		self->prev = self->next = NULL;
}

/* What every cache but self holds goes back to the spans' bitmaps. */
static void sa_fork_detach_caches(struct sa_tcache *self)
{
	for (struct sa_tcache *c = sa_g.caches; c; c = c->next) {
		/* adopted spans are owed to the kernel: settled like the rest */
		c->adopted = NULL;
		c->nadopted = 0;
		if (c == self)
			continue;
		sa_tiny_retire(c);
		sa_tcache_harvest_tiny(c);
		memset(c->alloc, 0, sizeof(c->alloc));
		memset(c->held, 0, sizeof(c->held));
		memset(c->held_tail, 0, sizeof(c->held_tail));
		memset(c->nheld_class, 0, sizeof(c->nheld_class));
		c->nheld = 0;
	}
}

static void sa_fork_child(void)
{
	struct sa_tcache *self = sa_tc;
	uint32_t nrec = sa_uspan_count(), n = 0;
	struct spanalloc_adopt_span *d = NULL;
	struct sa_uspan **rec = NULL;
	size_t dlen = (size_t)nrec * sizeof(*d), rlen = (size_t)nrec * sizeof(*rec);
	struct spanalloc_adopt ad;
	int fd;

	sa_fork_locks(SA_FORK_CHILD);
	sa_mark_fork_child();

	if (nrec) {
		d = mmap(NULL, dlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		rec = mmap(NULL, rlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (d == MAP_FAILED || rec == MAP_FAILED) {
			/* the records stay as they were: nothing adopted */
			sa_fork_say("memory for the list of spans", ENOMEM);
			goto out;
		}
	}
	/* no free may adopt a span while records are settled */
	for (uint32_t i = 0; i < nrec; i++) {
		_Atomic uint32_t *a = &sa_uspan_at(i)->adoptable;

		/* only where set: a write to each record would copy them all */
		if (atomic_load_explicit(a, memory_order_relaxed))
			atomic_store_explicit(a, 0, memory_order_relaxed);
	}
	sa_fork_detach_caches(self);
	for (uint32_t i = 0; i < nrec; i++) {
		struct sa_uspan *s = sa_uspan_at(i);
		int op;

		if (atomic_load_explicit(&s->where, memory_order_relaxed) == SA_WHERE_NONE)
			continue;
		op = sa_fork_settle(s, self);
		if (op < 0)
			continue;
		/* a record set up when the copy was made may lack its entries */
		sa_pagemap_set(s, s);
		d[n] = (struct spanalloc_adopt_span){
			.addr = s->base, .npages = s->npages,
			.spanclass = s->spanclass, .op = (uint16_t)op,
		};
		rec[n++] = s;
	}

	fd = sa_fork_reopen();
	if (fd < 0) {
		sa_fork_say(sa_g.dev, errno);
		goto drop;
	}
	memset(&ad, 0, sizeof(ad));
	ad.size = sizeof(ad);
	ad.addr = sa_g.base;
	ad.len = sa_g.maplen;
	ad.spans_ptr = (uintptr_t)d;
	ad.span_count = n;
	if (ioctl(fd, SPANALLOC_IOC_ADOPT, &ad) < 0) {
		sa_fork_say("SPANALLOC_IOC_ADOPT", errno);
		close(fd);
		goto drop;
	}
	for (uint32_t i = 0; i < n; i++)
		rec[i]->handle = d[i].handle;
	sa_heap_set_span_pages(fd);
	close(sa_g.fd);
	sa_g.fd = fd;
drop:
	/* their spans were settled above: nothing points at them any more */
	sa_fork_drop_caches(self);
out:
	if (d && d != MAP_FAILED)
		munmap(d, dlen);
	if (rec && rec != MAP_FAILED)
		munmap(rec, rlen);
}

/* Called once the heap is set up: before that, a child has nothing to adopt. */
void sa_fork_init(void)
{
	pthread_atfork(sa_fork_prepare, sa_fork_parent, sa_fork_child);
}
