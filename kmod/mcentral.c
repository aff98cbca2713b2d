// SPDX-License-Identifier: GPL-2.0
/*
 * mcentral: per span class, the spans that wait in the kernel between two
 * users. partial holds spans with free objects, ready to be handed out;
 * full holds spans user space returned with every object in use, so that
 * they stay accounted to their class until a thread that frees into one
 * hands it back as PARTIAL or EMPTY.
 *
 * Each list pair has its own spinlock, so classes never contend with each
 * other. The mcache (mcache.c) moves spans in and out in batches, so with
 * the per-CPU layer on, this lock is taken once per several spans.
 * Callers hold the span they pass (it is on no list, or claimed).
 */
#include "spanalloc.h"

void sa_mcentral_init(struct sa_central *c)
{
	spin_lock_init(&c->lock);
	INIT_LIST_HEAD(&c->partial);
	INIT_LIST_HEAD(&c->full);
}

/* Takes up to n partial spans, most recently returned first, into state. */
u32 sa_mcentral_take(struct sa_central *c, struct sa_span **out, u32 n,
		     enum sa_span_state state)
{
	u32 got = 0;

	spin_lock(&c->lock);
	while (got < n && !list_empty(&c->partial)) {
		struct sa_span *s = list_first_entry(&c->partial,
						     struct sa_span, list);

		list_del_init(&s->list);
		c->npartial--;
		atomic_set(&s->state, state);
		out[got++] = s;
	}
	spin_unlock(&c->lock);
	return got;
}
EXPORT_SYMBOL_IF_KUNIT(sa_mcentral_take);

/* Puts n spans on the partial list under one lock hold. */
void sa_mcentral_put_partial(struct sa_central *c, struct sa_span **spans,
			     u32 n)
{
	u32 i;

	spin_lock(&c->lock);
	for (i = 0; i < n; i++) {
		list_add(&spans[i]->list, &c->partial);
		atomic_set(&spans[i]->state, SA_SPAN_PARTIAL);
	}
	c->npartial += n;
	spin_unlock(&c->lock);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mcentral_put_partial);

void sa_mcentral_put_full(struct sa_central *c, struct sa_span *s)
{
	spin_lock(&c->lock);
	list_add(&s->list, &c->full);
	c->nfull++;
	atomic_set(&s->state, SA_SPAN_FULL);
	spin_unlock(&c->lock);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mcentral_put_full);

/* s was FULL and has been claimed: take it off the full list. */
void sa_mcentral_remove_full(struct sa_central *c, struct sa_span *s)
{
	spin_lock(&c->lock);
	list_del_init(&s->list);
	c->nfull--;
	spin_unlock(&c->lock);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mcentral_remove_full);
