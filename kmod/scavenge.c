// SPDX-License-Identifier: GPL-2.0
/*
 * scavenge: giving the pages of free spans back to the kernel (Go's
 * mgcscavenge.go). A page that was in a span and is free now is "dirty"
 * (mheap.c): it may be resident in the owner's mapping. Releasing it zaps
 * it from the mapping, as MADV_DONTNEED would: its memory goes back to the
 * page allocator at once (and is uncharged from the owner's memory cgroup),
 * the next touch faults in a zero page, and the page is clean again, so a
 * span later cut from it needs no zeroing.
 *
 * Three callers release pages, all through sa_scavenge():
 *  - the release ioctl: every free page of the heap, now;
 *  - the background scavenger below, paced like Go's: it keeps the heap's
 *    recent peak use plus a margin of 1/8 resident and releases the rest,
 *    spending at most scavenge_percent of one CPU (1% by default) on it;
 *  - the shrinker (shrinker.c), under memory pressure, without sleeping on
 *    any lock.
 *
 * Locking. heap->scav_mutex serializes releases of one heap; a release
 * holds one run of pages as used (sa_mheap_scav_take()) while it zaps
 * them, so no span can be cut from a run that is being zapped. The zap
 * needs the owner's mmap lock for reading, taken after scav_mutex and
 * before the run is taken; the owner's mm is pinned with mmget_not_zero()
 * meanwhile, and an owner that is exiting has nothing left to release.
 * The background scavenger and the shrinker only trylock both. The address
 * range is only zapped where it still is this heap's mapping at the offset
 * the heap expects: user space may have unmapped, split or moved parts of
 * it.
 */
#include <linux/debugfs.h>
#include <linux/ktime.h>
#include <linux/sizes.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/workqueue.h>
#include "spanalloc.h"
#include "spanalloc_trace.h"

#define SA_SCAV_PERIOD		(HZ / 10)
/* Always keep this much resident, so a tiny heap is never churned. */
#define SA_SCAV_MIN_RETAIN	(1U << (20 - SA_PAGE_SHIFT))

static unsigned int sa_scavenge_percent = 1;
module_param_named(scavenge_percent, sa_scavenge_percent, uint, 0644);
MODULE_PARM_DESC(scavenge_percent,
		 "CPU share of one CPU the background scavenger may spend releasing free pages (0 turns it off, at most 100; default 1)");

/* Drops the pages of [addr, addr + len): they read as zero next time. */
void sa_zap(struct vm_area_struct *vma, unsigned long addr, unsigned long len)
{
#ifdef SA_HAVE_ZAP_PAGE_RANGE
	zap_page_range(vma, addr, len);
#else
	zap_page_range_single(vma, addr, len, NULL);
#endif
}

/*
 * Whether the 2 MiB block at addr is mapped by one huge page. Zapping part
 * of it would only split it and free nothing (the huge page stays until
 * the rest goes), and khugepaged would collapse it again: such a run is
 * refused, and released with the rest of its block once that is free
 * (sa_mheap_scav_take() takes the two together). A lockless look under the
 * mmap lock: a split or collapse may race with it, which only makes one
 * release refuse or split what it need not have.
 */
static bool sa_block_is_huge(struct mm_struct *mm, unsigned long addr)
{
	pgd_t *pgd = pgd_offset(mm, addr);
	p4d_t *p4d;
	pud_t *pud;

	if (pgd_none(*pgd) || pgd_bad(*pgd))
		return false;
	p4d = p4d_offset(pgd, addr);
	if (p4d_none(*p4d) || p4d_bad(*p4d))
		return false;
	pud = pud_offset(p4d, addr);
	if (pud_none(*pud) || pud_bad(*pud))
		return false;
	return pmd_trans_huge(READ_ONCE(*pmd_offset(pud, addr)));
}

/*
 * Pins the owner's mm and takes its mmap lock for reading, before a run is
 * taken (so a lock that cannot be had leaves the heap as it was). *mmp is
 * NULL when there is no mm to zap from (KUnit heaps, an owner that is
 * exiting): nothing can be released then. Returns 0, -EAGAIN (SA_SCAV_TRY
 * and the lock is busy) or -EINTR (a fatal signal while waiting).
 */
static int sa_scav_lock_mm(struct sa_heap *heap, enum sa_scav_mode mode,
			   struct mm_struct **mmp)
{
	struct mm_struct *mm = heap->mm;
	int ret = 0;

	*mmp = NULL;
	if (!mm || !mmget_not_zero(mm))
		return 0;
	if (mode == SA_SCAV_TRY)
		ret = mmap_read_trylock(mm) ? 0 : -EAGAIN;
	else
		ret = mmap_read_lock_killable(mm);
	if (ret) {
		mmput_async(mm);
		return ret;
	}
	*mmp = mm;
	return 0;
}

static void sa_scav_unlock_mm(struct mm_struct *mm)
{
	if (!mm)
		return;
	mmap_read_unlock(mm);
	/*
	 * The last reference may be ours if the owner exits meanwhile: never
	 * tear an mm down here, in reclaim or under sa_heaps_mutex.
	 */
	mmput_async(mm);
}

/*
 * Zaps a run from the owner's mapping, whose mmap lock the caller holds.
 * Returns whether it did: a run is zapped whole or not at all. Not where
 * part of it is not (or no longer) the heap's mapping at the heap's
 * offset, not where part of it is mlock()ed (as MADV_DONTNEED refuses),
 * not as part of a huge page in use.
 */
static bool sa_scav_zap(struct sa_heap *heap, struct mm_struct *mm,
			const struct sa_scav_run *run)
{
	unsigned long addr = heap->base + ((unsigned long)run->start << SA_PAGE_SHIFT);
	unsigned long end = addr + ((unsigned long)run->n << SA_PAGE_SHIFT);
	struct vm_area_struct *vma;
	unsigned long a, e;

	if (!mm)
		return false;
	for (a = addr; a < end; a = e) {
		vma = find_vma(mm, a);
		if (!vma || vma->vm_start > a)
			return false;
		e = min(end, vma->vm_end);
		/* the heap's own mapping, at the heap's own offset */
		if (!sa_file_is_heap(vma->vm_file, heap) ||
		    vma->vm_start - (vma->vm_pgoff << PAGE_SHIFT) != heap->base ||
		    (vma->vm_flags & VM_LOCKED))
			return false;
	}
	/* runs lie in one 2 MiB block, and the heap is 2 MiB aligned */
	if (run->n < SA_SCAV_ALIGN && sa_block_is_huge(mm, ALIGN_DOWN(addr, SZ_2M)))
		return false;
	for (a = addr; a < end; a = e) {
		vma = find_vma(mm, a);
		e = min(end, vma->vm_end);
		sa_zap(vma, a, e - a);
	}
	return true;
}

/*
 * Releases about max_pages dirty free pages of heap (a 2 MiB block more at
 * most), lowest first, for at most about budget_ns (0: no limit);
 * *released says how many it did. Returns 0, or -EINTR if a fatal signal
 * stopped a SA_SCAV_WAIT release. Pages whose release is refused where
 * they are mapped become stuck (mheap.c); a SA_SCAV_WAIT release, which
 * user space asked for, tries those again first.
 */
int sa_scavenge(struct sa_heap *heap, u64 max_pages, u64 budget_ns,
		enum sa_scav_mode mode, enum sa_release_why why, u64 *released)
{
	u64 t0 = ktime_get_ns();
	struct sa_scav_run run;
	struct mm_struct *mm;
	u32 from = 0;
	int ret = 0;

	*released = 0;
	if (!sa_heap_mapped(heap))
		return 0;
	if (mode == SA_SCAV_TRY) {
		if (!mutex_trylock(&heap->scav_mutex))
			return 0;
	} else {
		if (mutex_lock_killable(&heap->scav_mutex))
			return -EINTR;
		sa_mheap_unstick(heap);
	}
	while (*released < max_pages && from < READ_ONCE(heap->active_pages)) {
		ret = sa_scav_lock_mm(heap, mode, &mm);
		if (ret) {
			if (ret == -EAGAIN)
				ret = 0;
			break;
		}
		if (sa_mheap_scav_take(heap, &from, &run))
			*released += sa_mheap_scav_done(heap, &run,
							sa_scav_zap(heap, mm, &run));
		sa_scav_unlock_mm(mm);
		if (budget_ns && ktime_get_ns() - t0 > budget_ns)
			break;
		if (mode == SA_SCAV_WAIT && fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		cond_resched();
	}
	mutex_unlock(&heap->scav_mutex);
	sa_count_add(heap, SA_C_RELEASED, *released);
	trace_spanalloc_release(heap->id, why, *released, ktime_get_ns() - t0, ret);
	return ret;
}
EXPORT_SYMBOL_IF_KUNIT(sa_scavenge);

/*
 * The background scavenger: one delayed work for all heaps, every 100 ms
 * while some heap has work for it, asleep otherwise. For each heap it
 * tracks the recent peak of pages in use (the exact peak since the last
 * period, recorded by the page allocator, and a memory of earlier ones
 * that decays by 1/8 a period), so a heap that shrinks has its free pages
 * released over a couple of seconds, while one that just freed a burst it
 * will need again soon keeps them. It keeps that peak plus 1/8 (Go keeps
 * 10% over its heap goal) and releases what is above, within a time budget
 * of scavenge_percent of the period.
 *
 * It holds sa_heaps_mutex while it works, so it only trylocks what a user
 * process can hold (a heap's scav_mutex, its owner's mmap lock): a heap
 * that is busy is skipped this period, and an open or close elsewhere
 * waits at most for the bounded work of one period.
 */
static void sa_scavenger_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(sa_scav_work, sa_scavenger_fn);
/* Periods run, for tests that check an idle module stays asleep. */
static u64 sa_scav_runs;

static unsigned int sa_scav_pct(void)
{
	return min(READ_ONCE(sa_scavenge_percent), 100U);
}

/*
 * Whether the heap has pages the scavenger will release once its peak has
 * decayed to what is in use now: more dirty free pages than the margin it
 * always keeps. Pages that cannot be released (stuck) are not counted.
 */
bool sa_scav_has_work(struct sa_heap *heap)
{
	u32 inuse = READ_ONCE(heap->pages_inuse);

	return READ_ONCE(heap->free_dirty) > inuse / 8 + SA_SCAV_MIN_RETAIN;
}
EXPORT_SYMBOL_IF_KUNIT(sa_scav_has_work);

static void sa_scavenger_fn(struct work_struct *work)
{
	unsigned int pct = sa_scav_pct();
	u64 budget = div_u64((u64)jiffies_to_nsecs(SA_SCAV_PERIOD) * pct, 100);
	u64 t0 = ktime_get_ns(), spent, done;
	struct sa_heap *heap;
	bool again = false;

	WRITE_ONCE(sa_scav_runs, sa_scav_runs + 1);
	mutex_lock(&sa_heaps_mutex);
	list_for_each_entry(heap, &sa_heaps, node) {
		u32 peak, recent, goal, retained;

		spin_lock(&heap->lock);
		peak = heap->peak_inuse;
		heap->peak_inuse = heap->pages_inuse;
		retained = heap->pages_inuse + heap->free_dirty;
		spin_unlock(&heap->lock);
		recent = max(peak, heap->scav_recent - heap->scav_recent / 8);
		heap->scav_recent = recent;
		goal = recent + recent / 8 + SA_SCAV_MIN_RETAIN;
		spent = ktime_get_ns() - t0;
		if (pct && retained > goal && spent < budget)
			sa_scavenge(heap, retained - goal, budget - spent,
				    SA_SCAV_TRY, SA_RELEASE_SCAVENGER, &done);
		again |= sa_scav_has_work(heap);
	}
	mutex_unlock(&sa_heaps_mutex);
	if (again && pct)
		queue_delayed_work(system_unbound_wq, &sa_scav_work,
				   SA_SCAV_PERIOD);
}

/*
 * Called when heap has freed pages: wakes the scavenger if that gave it
 * work. Cheap when it is already queued or there is nothing to do.
 */
void sa_scavenger_note(struct sa_heap *heap)
{
	if (sa_scav_pct() && sa_scav_has_work(heap) &&
	    !delayed_work_pending(&sa_scav_work))
		queue_delayed_work(system_unbound_wq, &sa_scav_work,
				   SA_SCAV_PERIOD);
}

static struct dentry *sa_debugfs;

int sa_scavenger_init(void)
{
	/* debugfs is not ABI and may be off: nothing depends on it but tests */
	sa_debugfs = debugfs_create_dir("spanalloc", NULL);
	debugfs_create_u64("scavenger_runs", 0400, sa_debugfs, &sa_scav_runs);
	return 0;
}

void sa_scavenger_exit(void)
{
	debugfs_remove_recursive(sa_debugfs);
	cancel_delayed_work_sync(&sa_scav_work);
}
