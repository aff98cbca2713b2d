// SPDX-License-Identifier: MIT
/*
 * mcache: the per-thread cache (Go's mcache): one active span per span
 * class, the spans a thread adopted by freeing into them, and the one
 * system call that moves spans between the thread and the kernel.
 *
 * When the active span of a class runs out, the thread first looks at what
 * was freed into it meanwhile, then at the used-up spans it kept aside
 * (held: up to SA_HELD_PAGES pages' worth per class), each a local sweep
 * with no system call. Only if nothing was freed does it get the next
 * span, keeping the used-up one aside (handing the oldest held span back
 * when there is no room), together with any adopted spans it owes the
 * kernel, in one exchange: at most one system call per span turnover, and
 * none at all for a thread whose frees keep up with its allocations.
 *
 * Held spans stay owned by the thread, so its own frees into them are
 * plain stores, as into its active spans; frees from other threads set
 * freeBits as for any span. They decay: a span not taken again for
 * sa_held_decay_ms() goes back with the thread's next span change. A
 * thread that makes none has them taken: in a collected heap by a
 * collection, which takes the spans not taken again across
 * SA_HELD_DECAY_GCS collections from every thread while the world is
 * stopped and gives them back once it runs again; in a manual heap by
 * another thread's refill, without stopping it (handoff.c). This is mimalloc's design (a thread keeps its full pages and
 * their frees come back to it), where Go instead hands a used-up span to
 * mcentral at once.
 *
 * A FULL span is not the kernel's to reuse: its objects are in use. When a
 * thread frees into one, it adopts the span (internal.h says how that is
 * decided without a race) and hands it back as PARTIAL, or EMPTY if every
 * object is free by then, with its next exchange. A thread that only
 * frees sends its adopted spans once it holds SA_MAX_BATCH / 2 of them,
 * but for up to SA_ADOPTED_BUSY still being freed into.
 */
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include "internal.h"

__thread struct sa_tcache *sa_tc __attribute__((tls_model("initial-exec")));
struct sa_tcache sa_tc_none = { .tiny_off = SA_TINY_SIZE };
__thread struct sa_tcache *sa_tc_fast __attribute__((tls_model("initial-exec"))) = &sa_tc_none;
__thread int sa_tc_gone __attribute__((tls_model("initial-exec")));

/* Returns queued for one exchange. */
struct sa_retbatch {
	uint32_t n;
	struct spanalloc_ret r[SA_MAX_BATCH];
	struct sa_uspan *s[SA_MAX_BATCH];	/* NULL for EMPTY returns */
};

/*
 * A batch is made empty by setting n alone: "= { .n = 0 }" zeroed all 780
 * bytes, a hundred instructions in every refill, where only the first n
 * entries are ever read.
 */

/*
 * Moves what s counted (objects handed out, objects freed into it by its
 * owner) into c's counters: allocation and local free count nothing per
 * object. Tiny blocks are not objects: the tiny allocator counts its own.
 */
void sa_tcache_harvest(struct sa_tcache *c, struct sa_uspan *s)
{
	if (s->spanclass != SA_TINY_SC) {
		SA_STAT_ADD(c->st.allocated[s->spanclass], s->taken);
		SA_STAT_ADD(c->st.freed, s->freed_local);
		SA_STAT_ADD(c->st.freed_bytes, (uint64_t)s->freed_local * s->elemsize);
	}
	s->taken = 0;
	s->freed_local = 0;
}

/* Adds c's pending tiny counts to *to (its own counters, or a sum). */
static void sa_tiny_counts_add(struct sa_counters *to, const struct sa_tcache *c)
{
	SA_STAT_ADD(to->tiny, c->tiny_n);
	SA_STAT_ADD(to->tiny_bytes, c->tiny_bytes);
	SA_STAT_ADD(to->freed, c->tiny_freed);
	SA_STAT_ADD(to->freed_bytes, c->tiny_freed_bytes);
}

/*
 * The fast paths count tiny objects in plain per-thread fields (one add
 * each); they reach the counters others read here, at refills, flushes,
 * and frees that empty a block.
 */
void sa_tcache_harvest_tiny(struct sa_tcache *c)
{
	/* most refills are of threads with no tiny object since the last */
	if (!(c->tiny_n | c->tiny_freed))
		return;
	sa_tiny_counts_add(&c->st, c);
	c->tiny_n = 0;
	c->tiny_bytes = 0;
	c->tiny_freed = 0;
	c->tiny_freed_bytes = 0;
}

/* What s counted and its holder has not harvested, added to *taken, *freed. */
static void sa_span_pending(const struct sa_uspan *s, uint64_t *taken, uint64_t *freed)
{
	*taken += s->taken;
	*freed += s->freed_local + sa_span_local_frees(s);
}

/*
 * What c's spans counted and have not harvested: added to sum by
 * sa_get_stats on c's own thread, so that a thread sees its own
 * allocations and frees at once.
 */
static void sa_tcache_pending(struct sa_tcache *c, struct sa_counters *sum)
{
	sa_tiny_counts_add(sum, c);
	for (uint16_t sc = 2; sc < SA_NSC; sc++) {
		uint64_t taken = 0, freed = 0;

		if (sc == SA_TINY_SC)
			continue;
		if (c->alloc[sc]) {
			taken += sa_span_taken_since(c->alloc[sc]);
			sa_span_pending(c->alloc[sc], &taken, &freed);
		}
		for (struct sa_uspan *s = c->held[sc]; s; s = s->next)
			sa_span_pending(s, &taken, &freed);
		sum->allocated[sc] += taken;
		sum->freed += freed;
		sum->freed_bytes += freed * sa_classes[sc >> 1].size;
	}
}

/*
 * Queues a span the thread holds and is done with. An EMPTY span leaves the
 * page map now, before the kernel can hand its pages to anyone else.
 */
static void sa_batch_add(struct sa_tcache *c, struct sa_retbatch *b, struct sa_uspan *s,
			 uint32_t op)
{
	sa_tcache_harvest(c, s);
	b->r[b->n] = (struct spanalloc_ret){ .handle = s->handle, .op = op };
	b->s[b->n] = s;
	/* before the kernel has it: it may hand it out at once */
	atomic_store_explicit(&s->where, op == SPANALLOC_RET_FULL ? SA_WHERE_KFULL :
			      SA_WHERE_KPARTIAL, memory_order_release);
	if (op == SPANALLOC_RET_EMPTY) {
		sa_pagemap_set(s, NULL);
		sa_uspan_release(s);
		b->s[b->n] = NULL;
	}
	b->n++;
}

/* Queues a settled span with the op its object count calls for. */
static void sa_batch_add_settled(struct sa_tcache *c, struct sa_retbatch *b,
				 struct sa_uspan *s)
{
	if (!s->alloc_count)
		sa_batch_add(c, b, s, SPANALLOC_RET_EMPTY);
	else if (s->alloc_count == s->nelems)
		sa_batch_add(c, b, s, SPANALLOC_RET_FULL);
	else
		sa_batch_add(c, b, s, SPANALLOC_RET_PARTIAL);
}

/*
 * Whether c may keep one more span like s aside (SA_HELD_*), once gone of
 * the spans it keeps of s's class have left.
 */
static bool sa_held_room(const struct sa_tcache *c, const struct sa_uspan *s, uint32_t gone)
{
	uint32_t n = c->nheld_class[s->spanclass] - gone;
	uint32_t pages = atomic_load_explicit(&sa_g.held_pages, memory_order_relaxed);

	return pages && c->nheld - gone < SA_HELD_MAX && (!n || (n + 1) * s->npages <= pages);
}

int sa_set_held_pages(unsigned int pages)
{
	if (sa_init())
		return -1;
	if (pages > SA_HELD_PAGES_MAX) {
		errno = EINVAL;
		return -1;
	}
	return (int)atomic_exchange(&sa_g.held_pages, pages);
}

int sa_set_held_decay_ms(unsigned int ms)
{
	if (sa_init())
		return -1;
	if (!ms || ms > SA_HELD_DECAY_MS_MAX) {
		errno = EINVAL;
		return -1;
	}
	return (int)atomic_exchange(&sa_g.held_decay_ms, ms);
}

static uint32_t sa_held_gcs(void)
{
	return (uint32_t)atomic_load_explicit(&sa_gc.cycles, memory_order_relaxed);
}

/*
 * c keeps a span aside: a thread taking an idle one's spans looks at c
 * from now on (decay_ms is 0 while c keeps none).
 */
static void sa_keep_note(struct sa_tcache *c)
{
	if (!atomic_load_explicit(&c->decay_ms, memory_order_relaxed))
		atomic_store_explicit(&c->decay_ms, sa_ms_stamp(sa_coarse_ms()),
				      memory_order_relaxed);
}

/* Keeps s, which c owns, for the frees to come, from now (sa_coarse_ms). */
static void sa_held_push(struct sa_tcache *c, struct sa_uspan *s, uint32_t now)
{
	uint16_t sc = s->spanclass;

	s->held_gc = sa_held_gcs();
	s->held_ms = now;
	s->prev = NULL;
	s->next = c->held[sc];
	if (s->next)
		s->next->prev = s;
	else
		c->held_tail[sc] = s;
	c->held[sc] = s;
	c->nheld_class[sc]++;
	c->nheld++;
	sa_keep_note(c);
}

static void sa_held_unlink(struct sa_tcache *c, struct sa_uspan *s)
{
	uint16_t sc = s->spanclass;

	if (s->prev)
		s->prev->next = s->next;
	else
		c->held[sc] = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		c->held_tail[sc] = s->prev;
	s->next = s->prev = NULL;
	c->nheld_class[sc]--;
	c->nheld--;
}

/*
 * A held span of class sc that has free objects again, taken off the held
 * list and ready to allocate from; NULL if none has.
 */
static struct sa_uspan *sa_held_take(struct sa_tcache *c, uint16_t sc)
{
	for (struct sa_uspan *s = c->held[sc]; s; s = s->next) {
		if (sa_sweep_needed(s))
			sa_sweep_held(s);
		else if (sa_span_known_full(s))
			continue;	/* most often the one kept at the last change */
		if (sa_span_settle(s)) {
			sa_held_unlink(c, s);
			return s;
		}
	}
	return NULL;
}

/* Queues s, which c owns, with the op its object count calls for. */
static void sa_batch_give_back(struct sa_tcache *c, struct sa_retbatch *b,
			       struct sa_uspan *s)
{
	sa_span_set_owner(s, NULL);
	if (sa_sweep_needed(s))
		sa_sweep_held(s);
	sa_span_settle(s);
	sa_batch_add_settled(c, b, s);
}

/* Whether c kept s aside too long without taking it again. */
static bool sa_held_stale(const struct sa_uspan *s, const struct sa_stale *st)
{
	return st->by_gcs ? sa_held_gcs() - s->held_gc >= SA_HELD_DECAY_GCS :
			    sa_ms_since(st->now, s->held_ms, st->decay);
}

/* Whether c adopted nothing for too long: its adopted spans may go. */
static bool sa_adopted_stale(const struct sa_tcache *c, const struct sa_stale *st)
{
	return st->by_gcs ? sa_held_gcs() - c->adopt_gc >= SA_HELD_DECAY_GCS :
			    sa_ms_since(st->now, c->adopt_ms, st->decay);
}

/*
 * Whether c made no refill for as long as a held span may be kept, its
 * active spans still there: they may go too. Twice the decay time, as
 * for a taker's look at c (handoff.c).
 */
static bool sa_active_stale(const struct sa_tcache *c, const struct sa_stale *st)
{
	uint32_t seen = atomic_load_explicit(&c->active_ms, memory_order_relaxed);

	if (!seen)
		return false;
	return st->by_gcs ? sa_held_gcs() - c->active_gc >= SA_HELD_DECAY_GCS :
			    sa_ms_since(st->now, seen, 2 * st->decay);
}

/*
 * c's active spans, if stale, leave c->alloc[] for c->yielded, owned by
 * to; to == c puts them back. Atomic stores: c's fast paths read alloc[]
 * meanwhile (inside their regions, which the taker then waits out). The
 * tiny class's span stays: the tiny fast path reads it before its region
 * (fastpath.h), and the thread's current block is carved from it.
 */
static void sa_tcache_yield_active(struct sa_tcache *c, struct sa_tcache *to,
				   const struct sa_stale *st)
{
	struct sa_uspan *s;

	if (to == c) {
		while ((s = c->yielded)) {
			c->yielded = s->next;
			s->next = NULL;
			sa_span_set_owner(s, c);
			__atomic_store_n(&c->alloc[s->spanclass], s, __ATOMIC_RELAXED);
		}
		return;
	}
	if (!sa_active_stale(c, st))
		return;
	for (uint16_t sc = 2; sc < SA_NSC; sc++) {
		s = c->alloc[sc];
		if (!s || sc == SA_TINY_SC)
			continue;
		__atomic_store_n(&c->alloc[sc], NULL, __ATOMIC_RELAXED);
		sa_span_set_owner(s, to);
		s->next = c->yielded;
		c->yielded = s;
	}
}

/*
 * Makes to the owner of every span c kept aside too long (a class's
 * oldest is its tail), leaving c's held lists as they are, and of its
 * active spans if it made no refill for as long, which leave c->alloc[]
 * for c->yielded (an active span is read inside a fast path's region:
 * fastpath.h). to == c undoes it. Returns how many held spans.
 */
uint32_t sa_tcache_own_stale(struct sa_tcache *c, struct sa_tcache *to,
			     const struct sa_stale *st)
{
	uint32_t n = 0;

	sa_tcache_yield_active(c, to, st);
	for (uint16_t sc = 0; sc < SA_NSC && c->nheld; sc++) {
		for (struct sa_uspan *s = c->held_tail[sc]; s && sa_held_stale(s, st); s = s->prev) {
			sa_span_set_owner(s, to);
			n++;
		}
	}
	return n;
}

/*
 * Moves the spans sa_tcache_own_stale() gave self (the same st) from c's
 * held lists and c->yielded to self's decayed list, and c's adopted
 * spans, if c adopted none for too long, to self's adopted list: self
 * gives them all back (sa_tcache_return_decayed), with no system call
 * made meanwhile.
 */
void sa_tcache_take_stale(struct sa_tcache *c, struct sa_tcache *self,
			  const struct sa_stale *st)
{
	struct sa_uspan *s;

	while ((s = c->yielded)) {
		c->yielded = s->next;
		s->next = self->decayed;
		self->decayed = s;
	}
	/*
	 * Nothing left to take until its next refill stamps it again, even
	 * if there was nothing (a flushed thread, or the tiny class's span
	 * only): no pass picks it again meanwhile.
	 */
	if (c != self && sa_active_stale(c, st))
		atomic_store_explicit(&c->active_ms, 0, memory_order_relaxed);
	if (c != self && c->nadopted && sa_adopted_stale(c, st)) {
		while (c->adopted) {
			struct sa_uspan *s = c->adopted;

			c->adopted = s->next;
			c->nadopted--;
			s->next = self->adopted;
			self->adopted = s;
			self->nadopted++;
		}
	}
	for (uint16_t sc = 0; sc < SA_NSC && c->nheld; sc++) {
		while ((s = c->held_tail[sc]) && sa_held_stale(s, st)) {
			sa_held_unlink(c, s);
			s->next = self->decayed;
			self->decayed = s;
		}
	}
}

/*
 * The world is stopped (a collection): c's thread may be idle, and then
 * nobody else would give back what it keeps aside. Its stale held spans,
 * and its active spans if it made no refill across as many collections,
 * become self's, the collecting thread's, which gives them back once the
 * world runs again (sa_tcache_return_decayed): no system call, and no
 * lock a stopped thread may hold, while the world is stopped.
 */
void sa_tcache_decay_stopped(struct sa_tcache *c, void *arg)
{
	const struct sa_stale st = { .by_gcs = true };

	sa_tcache_own_stale(c, arg, &st);
	sa_tcache_take_stale(c, arg, &st);
}

/*
 * Queues the spans c has kept aside for sa_held_decay_ms() or more
 * without taking them again, oldest first, up to half a batch: a thread
 * that moved on to other size classes does not pin the memory of those
 * it left (mimalloc's page retirement after a delay). Looked at four
 * times per decay time at most, from every refill, so that a thread
 * whose frees keep its active spans going (no span change) decays too.
 */
static void sa_batch_add_adopted(struct sa_tcache *c, struct sa_retbatch *b, uint32_t busy);

/* Whether c's held and adopted spans are due a look at now (sa_held_decay). */
static bool sa_held_decay_due(const struct sa_tcache *c, uint32_t now, uint32_t decay)
{
	return sa_ms_since(now, atomic_load_explicit(&c->decay_ms, memory_order_relaxed),
			   decay / 4);
}

static void sa_held_decay(struct sa_tcache *c, uint32_t now, struct sa_retbatch *b)
{
	const struct sa_stale st = { .now = now, .decay = sa_held_decay_ms() };

	if (!c->nheld && !c->nadopted) {
		if (atomic_load_explicit(&c->decay_ms, memory_order_relaxed))
			atomic_store_explicit(&c->decay_ms, 0, memory_order_relaxed);
		return;
	}
	if (!sa_held_decay_due(c, st.now, st.decay))
		return;
	atomic_store_explicit(&c->decay_ms, sa_ms_stamp(st.now), memory_order_relaxed);
	for (uint16_t sc = 0; sc < SA_NSC && c->nheld; sc++) {
		struct sa_uspan *s;

		while ((s = c->held_tail[sc]) && sa_held_stale(s, &st) && b->n < SA_MAX_BATCH / 2) {
			sa_held_unlink(c, s);
			sa_batch_give_back(c, b, s);
		}
	}
	/* the ones kept while freed into (sa_batch_add_adopted), once no more come */
	if (c->nadopted && sa_adopted_stale(c, &st))
		sa_batch_add_adopted(c, b, 0);
}

/*
 * c is done allocating from s, which is used up: keep it aside, making
 * room by handing the class's oldest held span back if need be, or queue
 * it FULL when there is no room (fewer held pages, or SA_HELD_MAX).
 */
static void sa_held_retire(struct sa_tcache *c, struct sa_uspan *s,
			   struct sa_retbatch *b, uint32_t now)
{
	struct sa_uspan *old = c->held_tail[s->spanclass];

	if (!sa_held_room(c, s, 0) && old) {
		sa_held_unlink(c, old);
		sa_batch_give_back(c, b, old);
	}
	if (sa_held_room(c, s, 0)) {
		sa_held_push(c, s, now);
		return;
	}
	/*
	 * Settled as any span given back: sa_span_reuse_freed left allocBits
	 * unfilled, and whoever takes the span next may trust them (a free
	 * since makes it PARTIAL).
	 */
	sa_batch_give_back(c, b, s);
}

/*
 * c now holds s, a span returned FULL that has free objects again. The
 * kernel still lists it as full, so it can only go back (PARTIAL or
 * EMPTY), never be allocated from or kept as a held span.
 */
void sa_tcache_adopt(struct sa_tcache *c, struct sa_uspan *s)
{
	c->adopt_ms = sa_coarse_ms();
	c->adopt_gc = sa_held_gcs();
	atomic_store_explicit(&s->where, SA_WHERE_THREAD, memory_order_relaxed);
	s->next = c->adopted;
	c->adopted = s;
	c->nadopted++;
	SA_STAT_ADD(c->st.adopted, 1);
	sa_keep_note(c);
}

/*
 * Queues the spans the thread adopted. The kernel holds them as FULL. Up
 * to busy of them that were freed into since they were last looked at
 * stay adopted: more frees are likely on the way (a thread freeing what
 * another allocated goes through a span object by object), and returned
 * PARTIAL now, a span whose every object is freed after would sit on the
 * kernel's partial lists, all free, until some thread allocates from it.
 * A span still full (the sweeper adopts without a free) is made adoptable
 * again, or kept if a free came meanwhile (sa_span_publish_full).
 */
static void sa_batch_add_adopted(struct sa_tcache *c, struct sa_retbatch *b, uint32_t busy)
{
	struct sa_uspan *keep = NULL, **tail;
	uint32_t left = c->nadopted;

	while (left-- && b->n < SA_MAX_BATCH) {
		struct sa_uspan *s = c->adopted;
		uint32_t before = s->alloc_count;

		c->adopted = s->next;
		c->nadopted--;
		if (sa_sweep_needed(s))
			sa_sweep_held(s);
		sa_span_settle(s);
		if (s->alloc_count && s->alloc_count < before && busy) {
			busy--;
		} else if (s->alloc_count < s->nelems) {
			sa_batch_add_settled(c, b, s);
			continue;
		} else {
			atomic_store_explicit(&s->where, SA_WHERE_KFULL, memory_order_release);
			if (!sa_span_publish_full(s))
				continue;
			atomic_store_explicit(&s->where, SA_WHERE_THREAD, memory_order_relaxed);
		}
		s->next = keep;
		keep = s;
	}
	/* behind the ones not looked at, so that the next call starts with those */
	for (tail = &c->adopted; *tail; tail = &(*tail)->next)
		;
	*tail = keep;
	for (; keep; keep = keep->next)
		c->nadopted++;
}

/* The returns were applied: FULL spans become adoptable. */
static void sa_batch_publish(struct sa_tcache *c, struct sa_retbatch *b)
{
	for (uint32_t i = 0; i < b->n; i++) {
		struct sa_uspan *s = b->s[i];

		if (!s || b->r[i].op != SPANALLOC_RET_FULL)
			continue;
		/* Frees that came meanwhile left it to us: see internal.h. */
		if (sa_span_publish_full(s))
			sa_tcache_adopt(c, s);
	}
}

/*
 * Sends the queued returns and asks for nget spans of class sc. Returns 0
 * or -errno. A refused return means the library's records and the kernel's
 * disagree, which no caller can repair: that aborts, except in a forked
 * child, whose every call is refused with EPERM by design.
 */
static int sa_batch_send(struct sa_tcache *c, struct sa_retbatch *b,
			 uint16_t sc, uint32_t nget, struct spanalloc_span *got,
			 uint32_t *ngot)
{
	bool applied;
	int err;

	err = sa_kernel_exchange(b->r, b->n, sc, got, nget, ngot, &applied);
	if (applied) {
		SA_STAT_ADD(c->st.spans_returned, b->n);
		sa_batch_publish(c, b);
	} else if (b->n && err != -EPERM) {
		fprintf(stderr, "spanalloc: the kernel refused %u span returns: %s; aborting\n",
			b->n, strerror(-err));
		for (uint32_t i = 0; i < b->n; i++)
			fprintf(stderr, "spanalloc:   span %#llx op %u\n",
				(unsigned long long)b->r[i].handle, b->r[i].op);
		abort();
	}
	SA_STAT_ADD(c->st.spans_got, *ngot);
	b->n = 0;
	return err;
}

/* Queues s, which c gives back, sending the batch whenever it is full. */
static void sa_batch_give_back_sending(struct sa_tcache *c, struct sa_retbatch *b,
				       struct sa_uspan *s)
{
	uint32_t ngot;

	sa_batch_give_back(c, b, s);
	if (b->n == SA_MAX_BATCH)
		sa_batch_send(c, b, 0, 0, NULL, &ngot);
}

/* Sends whatever is queued. */
static void sa_batch_flush(struct sa_tcache *c, struct sa_retbatch *b)
{
	uint32_t ngot;

	if (b->n)
		sa_batch_send(c, b, 0, 0, NULL, &ngot);
}

/*
 * Hands back what c adopted, but up to busy spans still being freed into
 * (sa_batch_add_adopted): 0 when c is done (it exits, flushes, trims).
 */
void sa_tcache_return_adopted(struct sa_tcache *c, uint32_t busy)
{
	struct sa_retbatch b;
	uint32_t ngot;

	b.n = 0;
	while (c->nadopted > busy) {
		sa_batch_add_adopted(c, &b, busy);
		if (b.n && sa_batch_send(c, &b, 0, 0, NULL, &ngot))
			break;
	}
}

/* Gives back the spans a collection took from idle threads for c. */
void sa_tcache_return_decayed(struct sa_tcache *c)
{
	struct sa_retbatch b;

	b.n = 0;
	while (c->decayed) {
		struct sa_uspan *s = c->decayed;

		c->decayed = s->next;
		sa_batch_give_back_sending(c, &b, s);
	}
	sa_batch_flush(c, &b);
	sa_tcache_return_adopted(c, 0);
}

/* Takes a span the kernel just handed this thread, as c's active span. */
static struct sa_uspan *sa_tcache_take(struct sa_tcache *c,
				       const struct spanalloc_span *d)
{
	uint32_t page = (uint32_t)((d->addr - sa_g.base) >> SA_PAGE_SHIFT);
	struct sa_uspan *s;

	if (d->addr < sa_g.base || d->addr - sa_g.base >= sa_g.maplen) {
		fprintf(stderr, "spanalloc: the kernel handed out a span outside the heap; aborting\n");
		abort();
	}
	s = atomic_load_explicit(&sa_g.pagemap[page], memory_order_acquire);
	if (s && s->handle == d->handle) {
		/*
		 * Back from the partial lists: it keeps its objects. The kernel
		 * ordered the hand-over; this acquire, paired with the release
		 * that handed it back (sa_batch_add), says so to
		 * ThreadSanitizer, and costs nothing on x86.
		 */
		(void)atomic_load_explicit(&s->where, memory_order_acquire);
		if (sa_sweep_claim_taken(s))
			sa_sweep_held(s);
		atomic_store_explicit(&s->where, SA_WHERE_THREAD, memory_order_relaxed);
		sa_span_take(s);
		sa_span_set_owner(s, c);
		sa_gc_note_alloc(c, (uint64_t)(s->nelems - s->alloc_count) * s->elemsize);
		return s;
	}
	s = sa_uspan_alloc(d->spanclass, d->npages);
	if (!s)
		return NULL;
	sa_span_setup(s, d->addr, d->handle, d->npages, d->spanclass, d->needzero);
	sa_span_set_owner(s, c);
	atomic_store_explicit(&s->where, SA_WHERE_THREAD, memory_order_release);
	sa_pagemap_set(s, s);
	sa_gc_note_alloc(c, (uint64_t)s->nelems * s->elemsize);
	return s;
}

/*
 * c's active span s, used up, started over on n objects freed into it
 * (sa_span_reuse_known): counted either way, its first free object or 0.
 */
static uintptr_t sa_tcache_restarted(struct sa_tcache *c, struct sa_uspan *s, uint32_t n)
{
	sa_tcache_harvest(c, s);
	if (!n)
		return 0;
	SA_STAT_ADD(c->st.local_sweeps, 1);
	return sa_span_object(s, sa_span_next_free(s));
}

/*
 * c's active span s is used up: it starts over on what was freed into it
 * meanwhile (a local sweep, no system call); its first free object, or 0
 * if nothing was. Counted either way: a span in use for ever counts too.
 */
uintptr_t sa_tcache_reuse_freed(struct sa_tcache *c, struct sa_uspan *s)
{
	return sa_tcache_restarted(c, s, sa_span_reuse_freed(s));
}

/*
 * The active span s (if any) has nothing in its cache: the next free
 * object further in it, or among what was freed into it meanwhile (a
 * local sweep, no system call); 0 if it is used up.
 */
static uintptr_t sa_refill_from_active(struct sa_tcache *c, struct sa_uspan *s)
{
	uint32_t idx;

	if (sa_sweep_needed(s))
		sa_sweep_held(s);	/* lazily: before any allocation from it */
	/* dry at a heap profile sample: it is the next object (prof.c) */
	if (sa_unlikely(s->prof_rest))
		return sa_prof_resume(s);
	idx = sa_span_next_free(s);
	if (idx < s->nelems)
		return sa_span_object(s, idx);
	return sa_tcache_reuse_freed(c, s);
}

/*
 * The next span of class sc from the kernel, made active, with b's returns
 * in the same exchange; its first free object, or 0 with errno set.
 */
static uintptr_t sa_refill_from_kernel(struct sa_tcache *c, uint16_t sc, struct sa_retbatch *b)
{
	struct spanalloc_span d;
	struct sa_uspan *s;
	uint32_t idx, ngot;
	int err;

	if (sa_gc_on())
		sa_sweep_help(c, 2);	/* sweep before growing, as Go does */
	sa_batch_add_adopted(c, b, 0);
	err = sa_batch_send(c, b, sc, 1, &d, &ngot);
	if (!ngot) {
		errno = err ? -err : ENOMEM;
		return 0;
	}
	s = sa_tcache_take(c, &d);
	if (!s) {
		sa_kernel_return_empty(d.handle);
		errno = ENOMEM;
		return 0;
	}
	c->alloc[sc] = s;
	idx = sa_span_next_free(s);
	if (idx >= s->nelems) {
		fprintf(stderr, "spanalloc: the kernel handed out a span with no free object; aborting\n");
		abort();
	}
	return sa_span_object(s, idx);
}

/*
 * h, a held span taken off its list with free objects (settled), becomes
 * c's active span of its class: its first free object. Its free slots
 * count as live, as a span's from the kernel do.
 */
static uintptr_t sa_held_activate(struct sa_tcache *c, struct sa_uspan *h)
{
	c->alloc[h->spanclass] = h;
	sa_gc_note_alloc(c, (uint64_t)(h->nelems - h->alloc_count) * h->elemsize);
	SA_STAT_ADD(c->st.local_sweeps, 1);
	return sa_span_object(h, sa_span_next_free(h));
}

/*
 * The span change of a fast path's region (malloc.c), when c keeps spans
 * aside: c's active span s is used up; it starts over on what was freed
 * into it (sa_tcache_reuse_freed), or, in a manual heap, it is kept aside
 * and the newest held span of its class with free objects takes its
 * place, as in sa_tcache_refill_in(). Only when that needs nothing a
 * region may not do: no housekeeping due (the held spans' decay, a
 * hand-off pass), a span to take that needs no sweep and holds no
 * profile sample, room to keep s once that one has left, and no taker at
 * c's lists (handoff.c: taking is read inside the region, after in_fast
 * was raised). What it would take is found before the clock is read, so
 * that a thread whose heap grows (nothing kept has room) pays little
 * before its slow path. Returns the active span's next object, or 0 for
 * the slow path, having changed nothing a refill would not do the same
 * way.
 */
uintptr_t sa_tcache_change_span(struct sa_tcache *c, struct sa_uspan *s)
{
	struct sa_uspan *h;
	uint32_t now, decay;
	uintptr_t p;

	/* acquire: a taker that is done left c's lists as they are read below */
	if (atomic_load_explicit(&c->taking, memory_order_acquire))
		return 0;
	/*
	 * Starting over in s touches no list and waits for no housekeeping:
	 * the caller leaves every SA_REUSE_HOUSEKEEPING-th change to the slow
	 * path, which does it (malloc.c: sa_reuse_in_place), so the clock is
	 * not read for it, as for a thread that keeps nothing aside.
	 */
	if (sa_span_freed_into(s))
		return sa_tcache_restarted(c, s, sa_span_reuse_known(s, true));
	if (sa_gc_on())
		return 0;
	for (h = c->held[s->spanclass]; h && sa_span_known_full(h); h = h->next)
		;
	/* room for s once h has left, as sa_held_retire() finds it */
	if (!h || !sa_held_room(c, s, 1) || sa_sweep_needed(h) ||
	    atomic_load_explicit(&h->nsampled, memory_order_relaxed))
		return 0;
	/* the vDSO's; a system call without one, which does not wait either */
	now = sa_coarse_ms();
	decay = sa_held_decay_ms();
	if (sa_held_decay_due(c, now, decay) || sa_handoff_would_run(now, decay))
		return 0;
	/* a free into s that came since waits for its next refresh */
	p = sa_tcache_restarted(c, s, sa_span_reuse_known(s, false));
	if (p || !sa_span_settle(h))
		return p;
	sa_held_unlink(c, h);
	sa_held_push(c, s, now);
	return sa_held_activate(c, h);
}

/*
 * The active span of class sc has no free object in its cache: find one
 * further in it, in what was freed into it, in a span kept aside, or in
 * the next span from the kernel. Returns an object of what is
 * c->alloc[sc] on return (not zeroed: the caller zeroes it if it must and
 * the span says needzero), or 0 with errno set.
 */
static uintptr_t sa_tcache_refill_in(struct sa_tcache *c, uint16_t sc)
{
	struct sa_uspan *s = c->alloc[sc], *h;
	struct sa_retbatch b;
	uint32_t ngot, now = sa_coarse_ms();
	uintptr_t p;

	b.n = 0;
	atomic_store_explicit(&c->active_ms, sa_ms_stamp(now), memory_order_relaxed);
	c->active_gc = sa_held_gcs();
	sa_tcache_harvest_tiny(c);
	sa_handoff_idle(c, now);
	sa_held_decay(c, now, &b);
	sa_batch_flush(c, &b);
	if (s && (p = sa_refill_from_active(c, s)))
		return p;
	/*
	 * A span kept aside that was freed into since: no system call. The
	 * used-up one is kept aside in its place, as mimalloc keeps full
	 * pages, so that the frees to come find their way back here too.
	 */
	h = sa_held_take(c, sc);
	if (s) {
		c->alloc[sc] = NULL;
		sa_held_retire(c, s, &b, now);
	}
	if (!h)
		return sa_refill_from_kernel(c, sc, &b);
	if (b.n) {	/* fewer held pages asked for, or spans kept too long */
		sa_batch_add_adopted(c, &b, 0);
		sa_batch_send(c, &b, 0, 0, NULL, &ngot);
	}
	return sa_held_activate(c, h);
}

uintptr_t sa_tcache_refill(struct sa_tcache *c, uint16_t sc)
{
	uintptr_t p = sa_tcache_refill_in(c, sc);

	if (p)
		sa_prof_charge(c, c->alloc[sc], c->alloc[sc]->elemsize);
	return p;
}

struct sa_tcache *sa_tcache_create(void)
{
	struct sa_tcache *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool collected;

	if (c == MAP_FAILED)
		return NULL;
	c->tiny_off = SA_TINY_SIZE;	/* no tiny block yet */
	c->self = pthread_self();
	c->tid = (pid_t)syscall(SYS_gettid);
	/*
	 * The mode is read under the lock sa_gc_init switches it under: a
	 * cache linked before the switch is registered by sa_gc_init, one
	 * linked after registers itself.
	 */
	pthread_mutex_lock(&sa_g.lock);
	c->next = sa_g.caches;
	if (c->next)
		c->next->prev = c;
	sa_g.caches = c;
	collected = sa_gc_on();
	pthread_mutex_unlock(&sa_g.lock);
	/* first: glibc may allocate for a key, and that must find c */
	sa_tc = c;
	sa_tc_fast = c;
	sa_tc_gone = 0;
	pthread_setspecific(sa_g.key, c);
	/* in a collected heap, a thread that allocates unseen loses objects */
	if (collected && sa_world_register(c)) {
		int e = errno;

		pthread_setspecific(sa_g.key, NULL);
		sa_tcache_destroy(c);
		errno = e;
		return NULL;
	}
	return c;
}

/* Gives back everything the thread holds. */
void sa_tcache_flush(struct sa_tcache *c)
{
	struct sa_retbatch b;

	b.n = 0;
	sa_tiny_retire(c);
	sa_tcache_harvest_tiny(c);
	for (uint16_t sc = 0; sc < SA_NSC; sc++) {
		struct sa_uspan *s = c->alloc[sc];

		if (!s)
			continue;
		c->alloc[sc] = NULL;
		sa_batch_give_back_sending(c, &b, s);
	}
	sa_batch_flush(c, &b);
	/* no active span left to take (handoff.c) */
	atomic_store_explicit(&c->active_ms, 0, memory_order_relaxed);
	sa_tcache_return_decayed(c);
	sa_tcache_return_held(c);
}

/* Gives back every span c kept aside, and every span it adopted. */
void sa_tcache_return_held(struct sa_tcache *c)
{
	struct sa_retbatch b;

	b.n = 0;
	for (uint16_t sc = 0; sc < SA_NSC && c->nheld; sc++) {
		while (c->held[sc]) {
			struct sa_uspan *s = c->held[sc];

			sa_held_unlink(c, s);
			sa_batch_give_back_sending(c, &b, s);
		}
	}
	sa_batch_flush(c, &b);
	/* Publishing FULL spans may have adopted some back: loop. */
	sa_tcache_return_adopted(c, 0);
}

void sa_counters_add(struct sa_counters *to, struct sa_counters *from)
{
	SA_STAT_ADD(to->freed, from->freed);
	SA_STAT_ADD(to->tiny, from->tiny);
	SA_STAT_ADD(to->large, from->large);
	SA_STAT_ADD(to->large_freed, from->large_freed);
	SA_STAT_ADD(to->syscalls, from->syscalls);
	SA_STAT_ADD(to->spans_got, from->spans_got);
	SA_STAT_ADD(to->spans_returned, from->spans_returned);
	SA_STAT_ADD(to->local_sweeps, from->local_sweeps);
	SA_STAT_ADD(to->adopted, from->adopted);
	SA_STAT_ADD(to->tiny_bytes, from->tiny_bytes);
	SA_STAT_ADD(to->large_bytes, from->large_bytes);
	SA_STAT_ADD(to->freed_bytes, from->freed_bytes);
	for (int i = 0; i < SA_NSC; i++)
		SA_STAT_ADD(to->allocated[i], from->allocated[i]);
}

void sa_tcache_destroy(struct sa_tcache *c)
{
	/* first: a signal handler's free must not start a fast path on c */
	if (sa_tc_fast == c) {
		sa_tc_fast = &sa_tc_none;
		atomic_signal_fence(memory_order_seq_cst);
	}
	/*
	 * Still stoppable until it leaves the list, but not while it holds
	 * sa_g.lock: a collection takes that lock with the world stopped
	 * (releasing span records), so it is only ever held inside a
	 * no-safe-point region.
	 */
	sa_safe_enter(c);
	sa_tcache_flush(c);
	c->gc_due = 0;
	/* out of the list first: sa_gc_init must not register it from there */
	pthread_mutex_lock(&sa_g.lock);
	sa_counters_add(&sa_g.dead, &c->st);
	sa_uspan_return_spares(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		sa_g.caches = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&sa_g.lock);
	sa_safe_exit(c);
	sa_world_unregister(c);
	if (sa_tc == c) {
		sa_tc = NULL;
		sa_tc_gone = 1;
	}
	munmap(c, sizeof(*c));
}

int sa_get_stats(struct sa_stats *st)
{
	struct sa_tcache *self = sa_tc;
	struct sa_counters sum;

	if (sa_init())
		return -1;
	memset(&sum, 0, sizeof(sum));
	memset(st, 0, sizeof(*st));
	/* a collection must not stop us holding the lock its sweep takes */
	if (self)
		sa_safe_enter(self);
	pthread_mutex_lock(&sa_g.lock);
	sa_counters_add(&sum, &sa_g.dead);
	for (struct sa_tcache *c = sa_g.caches; c; c = c->next)
		sa_counters_add(&sum, &c->st);
	pthread_mutex_unlock(&sa_g.lock);
	if (self) {
		sa_tcache_pending(self, &sum);
		sa_safe_exit(self);
	}

	_Static_assert(sizeof(st->class_allocated) / sizeof(st->class_allocated[0]) >= SA_NSC,
		       "struct sa_stats has a counter for every span class");
	st->heap_mapped = sa_g.maplen;
	for (int i = 0; i < SA_NSC; i++) {
		st->class_allocated[i] = sum.allocated[i];
		if (i >= 2) {
			st->objects_allocated += sum.allocated[i];
			st->bytes_allocated += sum.allocated[i] * sa_classes[i >> 1].size;
		}
	}
	st->bytes_allocated += sum.tiny_bytes + sum.large_bytes;
	st->bytes_freed = sum.freed_bytes;
	st->tiny_allocated = sum.tiny;
	st->objects_allocated += sum.tiny;
	st->objects_freed = sum.freed;
	st->large_allocated = sum.large;
	st->large_freed = sum.large_freed;
	st->syscalls = sum.syscalls;
	st->spans_got = sum.spans_got;
	st->spans_returned = sum.spans_returned;
	st->local_sweeps = sum.local_sweeps;
	st->adopted = sum.adopted;
	return 0;
}
