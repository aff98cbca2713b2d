// SPDX-License-Identifier: GPL-2.0
/*
 * mcache: a heap's per-CPU cache of ready spans, one small LIFO stack per
 * span class (the kernel-side counterpart of Go's mcache, which caches one
 * span per class per P).
 *
 * A thread that returns a partial span and gets the next one in the same
 * exchange stays on one CPU and touches only that CPU's stack, under a
 * local_lock (preemption off on !PREEMPT_RT): no shared cache line, no
 * spinlock. Only when a stack runs dry (refill) or over (flush) does the
 * CPU take the class's mcentral lock, and then it moves half a stack at
 * once, so the lock is taken once per depth/2 spans at most.
 *
 * Stacks are bounded by pcp_depth (a module parameter read when the heap is
 * opened; 0 turns this layer off so its value can be measured) spans of the
 * size class table's length: a class whose heap asked for longer spans
 * (SPANALLOC_IOC_SET_SPAN_PAGES) keeps as many fewer, so that a CPU parks
 * no more of its pages, which other CPUs' threads cannot reuse. A CPU that
 * goes offline has its stacks drained to mcentral by a CPU hotplug callback
 * that runs after the CPU is dead, so no span is stranded on a CPU that
 * will never run the heap's code again.
 */
#include <linux/cpuhotplug.h>
#include <linux/percpu.h>
#include <linux/workqueue.h>
#include "spanalloc.h"
#include "spanalloc_trace.h"

static enum cpuhp_state sa_mcache_hp_state;

/* At mmap: a heap with the layer off (pcp_depth 0) has none. */
int sa_mcache_init(struct sa_heap *heap)
{
	int cpu;

	if (!heap->pcp_depth)
		return 0;
	heap->mcache = alloc_percpu_gfp(struct sa_mcache, GFP_KERNEL_ACCOUNT);
	if (!heap->mcache)
		return -ENOMEM;
	for_each_possible_cpu(cpu)
		local_lock_init(&per_cpu_ptr(heap->mcache, cpu)->lock);
	return 0;
}

void sa_mcache_destroy(struct sa_heap *heap)
{
	free_percpu(heap->mcache);
	heap->mcache = NULL;
}

/*
 * How many spans of class sc a stack holds: pcp_depth of the table's
 * length in pages, at least one. span_pages may change meanwhile (a
 * stack over its bound spills at its next put).
 */
static u32 sa_mcache_depth(const struct sa_heap *heap, u16 sc)
{
	u32 cls = sc >> 1, pages = READ_ONCE(heap->span_pages[cls]);

	if (!pages)
		return heap->pcp_depth;
	return max(heap->pcp_depth * sa_classes[cls].npages / pages, 1U);
}

/*
 * Moves the k oldest spans of a stack to mcentral: half of a full one, or
 * all of it when a CPU's stacks are drained (cpu: whose, -1 for this one).
 */
static void sa_mcache_spill(struct sa_heap *heap, struct sa_mcache_stack *st,
			    u16 sc, u32 k, int cpu, bool drain)
{
	sa_mcentral_put_partial(&heap->central[sc], st->spans, k);
	memmove(st->spans, st->spans + k, (st->n - k) * sizeof(st->spans[0]));
	st->n -= k;
	sa_count(heap, SA_C_PCP_FLUSHES);
	trace_spanalloc_pcp_drain(heap->id, cpu, sc, k, drain);
}

/*
 * Hands out up to n ready spans of class sc from this CPU's stack,
 * refilling it from mcentral when it runs dry. Returns how many; fewer
 * than n when mcentral has no partial span left either. *hits_out: how many
 * of them were on the stack before (the rest came through a refill).
 */
u32 sa_mcache_get(struct sa_heap *heap, u16 sc, struct sa_span **out, u32 n,
		  u32 *hits_out)
{
	u32 refill = max(sa_mcache_depth(heap, sc) / 2, 1U);
	struct sa_mcache_stack *st;
	u32 got = 0, hits = 0, moved = 0;

	local_lock(&heap->mcache->lock);
	st = this_cpu_ptr(&heap->mcache->stacks[sc]);
	while (got < n) {
		if (!st->n) {
			st->n = sa_mcentral_take(&heap->central[sc], st->spans,
						 refill, SA_SPAN_CACHED);
			if (!st->n)
				break;
			moved += st->n;
		} else if (!moved) {
			hits++;
		}
		out[got] = st->spans[--st->n];
		atomic_set(&out[got]->state, SA_SPAN_HANDING);
		got++;
	}
	local_unlock(&heap->mcache->lock);
	sa_count_add(heap, SA_C_PCP_HITS, hits);
	sa_count_add(heap, SA_C_CENTRAL_HITS, moved);
	*hits_out = hits;
	return got;
}
EXPORT_SYMBOL_IF_KUNIT(sa_mcache_get);

/* Takes back a span with free objects (the caller has claimed it). */
void sa_mcache_put(struct sa_heap *heap, struct sa_span *s)
{
	u32 depth = sa_mcache_depth(heap, s->spanclass), half = max(depth / 2, 1U);
	struct sa_mcache_stack *st;

	local_lock(&heap->mcache->lock);
	st = this_cpu_ptr(&heap->mcache->stacks[s->spanclass]);
	/* the oldest half of a full stack; of one over it (span_pages grew), more */
	if (st->n >= depth)
		sa_mcache_spill(heap, st, s->spanclass, st->n - (depth - half), -1, false);
	st->spans[st->n++] = s;
	atomic_set(&s->state, SA_SPAN_CACHED);
	local_unlock(&heap->mcache->lock);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mcache_put);

static void sa_mcache_drain_stacks(struct sa_heap *heap, struct sa_mcache *mc,
				   int cpu)
{
	u16 sc;

	for (sc = 0; sc < SA_NSPANCLASS; sc++)
		if (mc->stacks[sc].n)
			sa_mcache_spill(heap, &mc->stacks[sc], sc,
					mc->stacks[sc].n, cpu, true);
}

/* cpu is dead: nobody touches its stacks any more. Moves them to mcentral. */
void sa_mcache_drain_cpu(struct sa_heap *heap, unsigned int cpu)
{
	sa_mcache_drain_stacks(heap, per_cpu_ptr(heap->mcache, cpu), cpu);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mcache_drain_cpu);

/*
 * Moves this CPU's spans to mcentral. The stacks are found under the
 * local_lock, not from a CPU number read before: a task may move between.
 */
void sa_mcache_drain_local(struct sa_heap *heap)
{
	local_lock(&heap->mcache->lock);
	sa_mcache_drain_stacks(heap, this_cpu_ptr(heap->mcache), -1);
	local_unlock(&heap->mcache->lock);
}
EXPORT_SYMBOL_IF_KUNIT(sa_mcache_drain_local);

/* Drains the stacks of every heap: a dead CPU's, or (cpu < 0) this CPU's. */
static void sa_mcache_drain_heaps(int cpu)
{
	struct sa_heap *heap;

	mutex_lock(&sa_heaps_mutex);
	list_for_each_entry(heap, &sa_heaps, node) {
		if (!sa_heap_mapped(heap) || !heap->mcache)
			continue;
		if (cpu < 0)
			sa_mcache_drain_local(heap);
		else
			sa_mcache_drain_cpu(heap, cpu);
	}
	mutex_unlock(&sa_heaps_mutex);
}

static void sa_mcache_drain_fn(struct work_struct *work)
{
	/*
	 * Queued on one CPU, it runs there unless that CPU went offline
	 * (then its stacks are drained by the hotplug callback): either way,
	 * drain the CPU it runs on.
	 */
	sa_mcache_drain_heaps(-1);
}

static DEFINE_PER_CPU(struct work_struct, sa_mcache_drain_work);

/*
 * Asks every online CPU to drain its stacks of every heap, soon (memory
 * is short: spans parked on one CPU should serve all). At most once a
 * second, since the drains take sa_heaps_mutex.
 */
void sa_mcache_drain_all_cpus(void)
{
	static unsigned long last;
	unsigned long now = jiffies;
	int cpu;

	if (time_before(now, READ_ONCE(last) + HZ))
		return;
	WRITE_ONCE(last, now);
	for_each_online_cpu(cpu)
		queue_work_on(cpu, system_wq, per_cpu_ptr(&sa_mcache_drain_work, cpu));
}

/* Spans of class sc in all CPUs' stacks; a snapshot, for statistics. */
u32 sa_mcache_count(struct sa_heap *heap, u16 sc)
{
	u32 n = 0;
	int cpu;

	if (!heap->mcache)
		return 0;
	for_each_possible_cpu(cpu)
		n += READ_ONCE(per_cpu_ptr(heap->mcache, cpu)->stacks[sc].n);
	return n;
}
EXPORT_SYMBOL_IF_KUNIT(sa_mcache_count);

static int sa_mcache_cpu_dead(unsigned int cpu)
{
	sa_mcache_drain_heaps(cpu);
	return 0;
}

int sa_mcache_hotplug_init(void)
{
	int ret, cpu;

	for_each_possible_cpu(cpu)
		INIT_WORK(per_cpu_ptr(&sa_mcache_drain_work, cpu), sa_mcache_drain_fn);
	ret = cpuhp_setup_state_nocalls(CPUHP_BP_PREPARE_DYN, "spanalloc:dead",
					NULL, sa_mcache_cpu_dead);
	if (ret < 0)
		return ret;
	sa_mcache_hp_state = ret;
	return 0;
}

void sa_mcache_hotplug_exit(void)
{
	int cpu;

	cpuhp_remove_state_nocalls(sa_mcache_hp_state);
	for_each_possible_cpu(cpu)
		flush_work(per_cpu_ptr(&sa_mcache_drain_work, cpu));
}
