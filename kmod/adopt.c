// SPDX-License-Identifier: GPL-2.0
/*
 * adopt: a forked child's heap, made of the copy of its parent's heap
 * mapping that fork() gave it (SPANALLOC_IOC_ADOPT; the uapi header says
 * what user space sees).
 *
 * fork() copies the heap's VMA into the child like any private anonymous
 * mapping: the child gets copy-on-write pages and a VMA whose vm_file is
 * still the parent's heap file, while the heap itself stays the parent's
 * (its ioctls refuse the child). A new heap, opened by the child, takes
 * that VMA over:
 *
 *   1. it is set up as if the child had mmap()ed it at the same place, but
 *      not published as mapped: every other call on it fails until step 3
 *      is done, and for good if a step fails (the heap is "adopting"); it
 *      cuts the spans user space lists at their pages, in the states asked
 *      for;
 *   2. under the child's mmap lock held for writing, it checks that the VMA
 *      is still exactly the inherited one and zaps every page of it in no
 *      span: the child's copies of pages it does not use go now, and every
 *      free page of the new heap reads as zero (clean, as a new heap's);
 *   3. vma_set_file() points the VMA at the new heap's file, dropping the
 *      child's last reference to the parent's heap through it, and the heap
 *      is published as mapped. Both files are of the same device node, so
 *      the VMA stays in the right file mapping's tree.
 *
 * The parent's heap is never touched: the VMA's file is only compared with
 * this device's, and its heap's owner with the caller.
 */
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/nospec.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include "spanalloc.h"

/* Descriptors read from user space per copy: bounded stack use. */
#define SA_ADOPT_CHUNK	32

/* The inherited mapping's length: what sa_heap_map() was given. */
static u64 sa_adopt_len(const struct sa_heap *heap)
{
	return (u64)heap->max_pages << SA_PAGE_SHIFT;
}

/* Cuts one listed span and puts it in the state asked for. */
static int sa_adopt_one(struct sa_heap *heap, const struct spanalloc_adopt_span *d,
			u64 *handle)
{
	struct sa_span *s;
	u64 off;
	u16 sc;

	if (d->addr < heap->base || d->addr - heap->base >= sa_adopt_len(heap) ||
	    d->addr % SA_PAGE_SIZE || d->spanclass >= SA_NSPANCLASS)
		return -EINVAL;
	off = d->addr - heap->base;
	/* it indexes the class table, the lists and the per-CPU stacks */
	sc = array_index_nospec(d->spanclass, SA_NSPANCLASS);
	if (sa_spanclass_is_large(sc)) {
		if (d->op != SPANALLOC_ADOPT_OWNED)
			return -EINVAL;
	} else if (!sa_class_pages_ok(sc >> 1, d->npages) ||
		   (d->op != SPANALLOC_ADOPT_OWNED && d->op != SPANALLOC_RET_PARTIAL &&
		    d->op != SPANALLOC_RET_FULL)) {
		return -EINVAL;
	}
	s = sa_mheap_adopt_span(heap, off >> SA_PAGE_SHIFT, d->npages, sc);
	if (IS_ERR(s))
		return PTR_ERR(s);
	*handle = sa_span_handle(s);
	if (d->op == SPANALLOC_ADOPT_OWNED)
		sa_span_publish(s);
	else
		sa_span_return(heap, s, SA_SPAN_HANDING, d->op);
	return 0;
}

static int sa_adopt_spans(struct sa_heap *heap, struct spanalloc_adopt_span __user *u,
			  u32 n)
{
	struct spanalloc_adopt_span d[SA_ADOPT_CHUNK];
	u32 i, k, m;
	int ret;

	for (i = 0; i < n; i += m) {
		m = min_t(u32, n - i, SA_ADOPT_CHUNK);
		if (copy_from_user(d, &u[i], m * sizeof(d[0])))
			return -EFAULT;
		for (k = 0; k < m; k++) {
			ret = sa_adopt_one(heap, &d[k], &d[k].handle);
			if (ret)
				return ret;
		}
		for (k = 0; k < m; k++)
			if (put_user(d[k].handle, &u[i + k].handle))
				return -EFAULT;
		if (fatal_signal_pending(current))
			return -EINTR;
		cond_resched();
	}
	return 0;
}

/*
 * Steps 2 and 3: the inherited VMA becomes the heap's, and the heap is
 * published as mapped. Returns 0 and the bytes zapped, or -EINVAL when
 * the VMA is not the inherited heap mapping as it was (moved, split,
 * resized, mlock()ed since, or of another device node), -EINTR.
 */
static int sa_adopt_vma(struct sa_heap *heap, struct file *file, u64 *released)
{
	struct mm_struct *mm = heap->mm;
	u32 from = 0, start, n;
	struct vm_area_struct *vma;
	struct sa_heap *old;
	int ret = -EINVAL;

	if (mmap_write_lock_killable(mm))
		return -EINTR;
	vma = vma_lookup(mm, heap->base);
	if (!vma || vma->vm_start != heap->base ||
	    vma->vm_end - vma->vm_start != sa_adopt_len(heap) || vma->vm_pgoff ||
	    (vma->vm_flags & (VM_SHARED | VM_MAYSHARE | VM_LOCKED)))
		goto out;
	old = sa_file_heap(vma->vm_file);
	/*
	 * A heap of another process (the one this child was forked from),
	 * through the same device node: the VMA stays in the same file
	 * mapping's tree when its file changes.
	 */
	if (!old || old == heap || old->mm == mm ||
	    vma->vm_file->f_mapping != file->f_mapping)
		goto out;
	*released = 0;
	while (sa_mheap_next_free(heap, &from, &start, &n)) {
		if (n)
			sa_zap(vma, heap->base + ((unsigned long)start << SA_PAGE_SHIFT),
			       (unsigned long)n << SA_PAGE_SHIFT);
		*released += (u64)n << SA_PAGE_SHIFT;
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			goto out;
		}
		cond_resched();
	}
#ifdef SA_HAVE_VMA_START_WRITE
	/* page faults under the per-VMA lock read vm_file */
	vma_start_write(vma);
#endif
	vma_set_file(vma, file);
	mutex_lock(&heap->grow_mutex);
	/* pairs with sa_heap_mapped(): as in sa_mmap() */
	smp_store_release(&heap->mapped, sa_adopt_len(heap));
	mutex_unlock(&heap->grow_mutex);
	ret = 0;
out:
	mmap_write_unlock(mm);
	return ret;
}

/*
 * While it runs, the heap is "adopting": not mapped for any ioctl (they
 * fail with -ENXIO), refused to mmap and to a second ADOPT (-EBUSY). It
 * stays so if any step fails: a half-built heap is never used.
 */
int sa_heap_adopt(struct sa_heap *heap, const struct spanalloc_adopt *ad,
		  u64 *released)
{
	int ret;

	if (ad->addr % SZ_2M || !ad->len || ad->len % SPANALLOC_ARENA_SIZE ||
	    ad->len > heap->max_map || ad->addr > TASK_SIZE - ad->len ||
	    ad->span_count > ad->len >> SA_PAGE_SHIFT ||
	    (ad->span_count && !ad->spans_ptr))
		return -EINVAL;
	mutex_lock(&heap->grow_mutex);
	if (sa_heap_mapped(heap) || heap->adopting) {
		mutex_unlock(&heap->grow_mutex);
		return -EBUSY;
	}
	ret = sa_heap_map(heap, ad->addr, ad->len);
	if (!ret)
		WRITE_ONCE(heap->adopting, true);
	mutex_unlock(&heap->grow_mutex);
	if (ret)
		return ret;
	ret = sa_adopt_spans(heap, u64_to_user_ptr(ad->spans_ptr), ad->span_count);
	if (ret)
		return ret;
	return sa_adopt_vma(heap, heap->file, released);
}
