// SPDX-License-Identifier: GPL-2.0
/*
 * span: the span life cycle (see spanalloc.h), the only code that moves a
 * span from one state to another on user space's behalf.
 *
 * Getting walks down the cache hierarchy, as Go's mallocgc does: this CPU's
 * mcache stack, then the class's mcentral partial list, then the page
 * allocator for a fresh span. Returning is split in two so that a batch is
 * applied all or nothing: first every span is claimed (OWNED or FULL ->
 * RETURNING, by cmpxchg, so racing returns of one span and a span named
 * twice in one batch lose cleanly), and only when every claim succeeded are
 * they applied; on any failure the claims are undone.
 */
#include <linux/err.h>
#include "spanalloc.h"
#include "spanalloc_trace.h"

/*
 * Gets up to n spans of span class sc (a small class) into out[], each in
 * state HANDING. Returns how many; if that is less than n, *err says why
 * (else it is 0).
 */
u32 sa_span_get(struct sa_heap *heap, u16 sc, struct sa_span **out, u32 n,
		int *err)
{
	u32 npages = READ_ONCE(heap->span_pages[sc >> 1]);
	u32 got, i, pcp = 0, central;

	if (heap->pcp_depth) {
		got = sa_mcache_get(heap, sc, out, n, &pcp);
	} else {
		got = sa_mcentral_take(&heap->central[sc], out, n,
				       SA_SPAN_HANDING);
		sa_count_add(heap, SA_C_CENTRAL_HITS, got);
	}
	central = got - pcp;
	*err = 0;
	for (i = got; i < n; i++) {
		struct sa_span *s = sa_mheap_alloc_span(heap, sc, npages);

		if (IS_ERR(s)) {
			*err = PTR_ERR(s);
			break;
		}
		out[got++] = s;
		sa_count(heap, SA_C_HEAP_SPANS);
	}
	sa_count_add(heap, SA_C_SPANS_GOT, got);
	trace_spanalloc_span_get(heap->id, sc, n, got, pcp, central, *err);
	return got;
}
EXPORT_SYMBOL_IF_KUNIT(sa_span_get);

/*
 * Claims the span handle names for a return with op. On success *sp is the
 * span, now RETURNING, and *prev the state it had.
 */
int sa_span_claim(struct sa_heap *heap, u64 handle, u32 op,
		  struct sa_span **sp, int *prev)
{
	struct sa_span *s;
	int old, ret = -EINVAL;

	if (op < SPANALLOC_RET_PARTIAL || op > SPANALLOC_RET_EMPTY)
		return -EINVAL;
	rcu_read_lock();
	s = sa_mheap_lookup(heap, handle);
	if (!s)
		goto out;
	/* Large spans hold one object: they are only ever given back. */
	if (sa_spanclass_is_large(s->spanclass) && op != SPANALLOC_RET_EMPTY)
		goto out;
	old = atomic_read(&s->state);
	if (old != SA_SPAN_OWNED && old != SA_SPAN_FULL)
		goto out;
	if (old == SA_SPAN_FULL && op == SPANALLOC_RET_FULL)
		goto out;
	if (atomic_cmpxchg(&s->state, old, SA_SPAN_RETURNING) != old)
		goto out;
	*sp = s;
	*prev = old;
	ret = 0;
out:
	rcu_read_unlock();
	return ret;
}
EXPORT_SYMBOL_IF_KUNIT(sa_span_claim);

void sa_span_unclaim(struct sa_span *s, int prev)
{
	atomic_set(&s->state, prev);
}
EXPORT_SYMBOL_IF_KUNIT(sa_span_unclaim);

/*
 * The getter has read all it needs of s: user space may return it from
 * now on, and the getter must not touch it again.
 */
void sa_span_publish(struct sa_span *s)
{
	atomic_set_release(&s->state, SA_SPAN_OWNED);
}
EXPORT_SYMBOL_IF_KUNIT(sa_span_publish);

/*
 * Puts back a span the getter could not hand out (user space cannot be
 * told of it). It is still HANDING, so nobody else can have it: no claim is
 * needed, and its pages are as they were, so needzero stays as it is.
 */
void sa_span_put_ready(struct sa_heap *heap, struct sa_span *s)
{
	if (heap->pcp_depth)
		sa_mcache_put(heap, s);
	else
		sa_mcentral_put_partial(&heap->central[s->spanclass], &s, 1);
}
EXPORT_SYMBOL_IF_KUNIT(sa_span_put_ready);

/* Applies a claimed return. */
void sa_span_return(struct sa_heap *heap, struct sa_span *s, int prev, u32 op)
{
	struct sa_central *c = &heap->central[s->spanclass];

	if (prev == SA_SPAN_FULL)
		sa_mcentral_remove_full(c, s);
	/* Its objects were handed out: whoever gets it next must zero them. */
	s->needzero = 1;
	sa_count(heap, SA_C_SPANS_RETURNED);
	/* before the switch: an EMPTY span is freed there */
	trace_spanalloc_span_return(heap->id, sa_span_handle(s), s->spanclass,
				    s->npages, op, prev == SA_SPAN_FULL);

	switch (op) {
	case SPANALLOC_RET_PARTIAL:
		sa_span_put_ready(heap, s);
		break;
	case SPANALLOC_RET_FULL:
		sa_mcentral_put_full(c, s);
		break;
	case SPANALLOC_RET_EMPTY:
		sa_mheap_free_span(heap, s);
		break;
	}
}
EXPORT_SYMBOL_IF_KUNIT(sa_span_return);
