// SPDX-License-Identifier: GPL-2.0
/*
 * dev: the /dev/spanalloc misc device and the life of a heap: open creates
 * one, mmap gives it its memory, release frees all of it.
 *
 * Memory design (docs/design.md has the trade-offs). The heap's memory is a
 * private mapping of the device that the mmap handler turns into ordinary
 * anonymous memory (vma_set_anonymous(), as /dev/zero does). The core mm
 * then provides zero-filled pages on first touch, copy-on-write across
 * fork, swap, THP and memory cgroup charging of the owner; the module only
 * decides layout: which pages form which span. It never reads or writes
 * those pages and keeps every piece of span state in kernel memory, so
 * nothing user space writes can mislead it.
 *
 * Mapping rules: offset 0, a length that is a whole number of arenas and at
 * most the module's heap limit, an address on a 2 MiB boundary (the
 * module places a mapping on an arena boundary itself unless MAP_FIXED
 * says otherwise), MAP_PRIVATE, never PROT_EXEC (VM_MAYEXEC is
 * cleared so mprotect cannot add it later), one mapping per heap, made by
 * the heap's owner. The mapping is an ordinary VMA otherwise (no
 * VM_SPECIAL flag): mlock() and mlockall() lock it like any memory, and
 * mremap() may move or grow it, though only the range mapped first is the
 * heap.
 *
 * Owner: the mm of the process that opened the device. A forked child
 * inherits the fd and a copy-on-write copy of the memory, but every ioctl
 * and mmap from it fails with -EPERM, so it cannot change the parent's
 * heap; the child opens the device again for a heap of its own, and may
 * make the memory it inherited that heap's (adopt.c). The heap
 * lives until the last reference to the file goes: the fd and the mapping
 * (which holds the file) both count, so a process that exits, or closes the
 * fd and unmaps, frees everything, whatever state its spans were in.
 */
#include <linux/mman.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include "spanalloc.h"

/*
 * The mapping is address space: its memory is spent only as spans use
 * it, and the kernel's own tables for it grow with the arenas in use, so
 * the default leaves room for any program this machine can run.
 */
static unsigned int sa_heap_limit_mb = 65536;
module_param_named(heap_limit_mb, sa_heap_limit_mb, uint, 0644);
MODULE_PARM_DESC(heap_limit_mb,
		 "Largest heap in MiB, for heaps opened from now on (default 65536)");

static unsigned int sa_pcp_depth = SA_PCP_MAX_DEPTH;
module_param_named(pcp_depth, sa_pcp_depth, uint, 0644);
MODULE_PARM_DESC(pcp_depth,
		 "Spans per CPU per span class in the per-CPU cache, 0 turns it off (0-8, default 8); for heaps opened from now on");

static int sa_open(struct inode *inode, struct file *file)
{
	struct sa_heap *heap;

	if (!current->mm)
		return -EINVAL;
	heap = sa_heap_create(current->mm,
			      (u64)clamp(READ_ONCE(sa_heap_limit_mb), 64U,
					 SA_MAX_HEAP_MB) << 20,
			      READ_ONCE(sa_pcp_depth));
	if (IS_ERR(heap))
		return PTR_ERR(heap);
	heap->file = file;
	file->private_data = heap;
	return 0;
}

static int sa_release(struct inode *inode, struct file *file)
{
	sa_heap_put(file->private_data);
	return 0;
}

static void sa_vma_set_flags(struct vm_area_struct *vma)
{
#ifdef SA_HAVE_VM_FLAGS_SET
	vm_flags_clear(vma, VM_MAYEXEC);
#else
	vma->vm_flags &= ~VM_MAYEXEC;
#endif
}

/*
 * The mapping rules that do not depend on protection. Checked first in
 * get_unmapped_area, which do_mmap() calls before it unmaps anything a
 * MAP_FIXED mapping would replace, so a refused mmap of the heap leaves
 * every existing mapping, the heap's own included, as it was. Checked
 * again in mmap, where the mapping is made. Both run under the owner's
 * mmap lock held for writing, and only the owner may map: no two mmaps
 * of one heap can interleave.
 */
static int sa_map_check(struct sa_heap *heap, unsigned long addr, u64 len,
			unsigned long pgoff, bool shared)
{
	if (current->mm != heap->mm)
		return -EPERM;
	/* 2 MiB aligned: the scavenger's 2 MiB blocks are the huge pages */
	if (pgoff || !len || len % SPANALLOC_ARENA_SIZE || len > heap->max_map ||
	    addr % SZ_2M || shared)
		return -EINVAL;
	/* pairs with the release below: one mapping per heap */
	if (sa_heap_mapped(heap) || READ_ONCE(heap->adopting))
		return -EBUSY;
	return 0;
}

/*
 * Places the heap on an arena boundary, so that THP can back whole arenas
 * and an arena's pages never straddle a huge page of another mapping.
 * (First fit does not align spans within the heap.) Asks the mm for len
 * plus one arena of room (as an anonymous area: file NULL) and aligns
 * inside it.
 */
static unsigned long sa_get_unmapped_area(struct file *file, unsigned long addr,
					  unsigned long len, unsigned long pgoff,
					  unsigned long flags)
{
	unsigned long base, want = len + SPANALLOC_ARENA_SIZE;
	int ret;

	/*
	 * mmap always says MAP_PRIVATE or MAP_SHARED; mremap moving the heap's
	 * mapping says neither, and is not a new mapping of the heap.
	 */
	if (flags & MAP_TYPE) {
		ret = sa_map_check(file->private_data, flags & MAP_FIXED ? addr : 0,
				   len, pgoff, (flags & MAP_TYPE) != MAP_PRIVATE);
		if (ret)
			return ret;
	}
	if (flags & MAP_FIXED)
		return addr;
	if (len > TASK_SIZE || want > TASK_SIZE)
		return -ENOMEM;
#ifdef SA_HAVE_MM_GET_UNMAPPED_AREA
	base = mm_get_unmapped_area(current->mm, NULL, 0, want, 0, flags);
#else
	base = get_unmapped_area(NULL, 0, want, 0, flags);
#endif
	if (IS_ERR_VALUE(base))
		return base;
	return ALIGN(base, SPANALLOC_ARENA_SIZE);
}

static int sa_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct sa_heap *heap = file->private_data;
	u64 len = vma->vm_end - vma->vm_start;
	int ret;

	if (vma->vm_mm != heap->mm)
		return -EPERM;
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;
	mutex_lock(&heap->grow_mutex);
	ret = sa_map_check(heap, vma->vm_start, len, vma->vm_pgoff,
			   vma->vm_flags & VM_MAYSHARE);
	if (ret)
		goto out;
	ret = sa_heap_map(heap, vma->vm_start, len);
	if (ret)
		goto out;
	sa_vma_set_flags(vma);
	vma_set_anonymous(vma);
	/* publishes base and the page allocator to lockless readers */
	smp_store_release(&heap->mapped, len);
out:
	mutex_unlock(&heap->grow_mutex);
	return ret;
}

static const struct file_operations sa_fops = {
	.owner = THIS_MODULE,
	.open = sa_open,
	.release = sa_release,
	.mmap = sa_mmap,
	.get_unmapped_area = sa_get_unmapped_area,
	.unlocked_ioctl = sa_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/* Whether file is an open file of this device that holds heap. */
bool sa_file_is_heap(struct file *file, struct sa_heap *heap)
{
	return file && file->f_op == &sa_fops && file->private_data == heap;
}

/* The heap of file if it is an open file of this device, else NULL. */
struct sa_heap *sa_file_heap(struct file *file)
{
	return file && file->f_op == &sa_fops ? file->private_data : NULL;
}

static struct miscdevice sa_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "spanalloc",
	.fops = &sa_fops,
	.mode = 0666,
};

static int __init sa_init(void)
{
	int ret;

	/* The published first sizes of the uapi structs never change. */
	BUILD_BUG_ON(offsetof(struct spanalloc_info, heap_id) != SPANALLOC_INFO_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_info) != SPANALLOC_INFO_SIZE_VER1);
	BUILD_BUG_ON(sizeof(struct spanalloc_exchange) != SPANALLOC_EXCHANGE_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_large) != SPANALLOC_LARGE_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_stats) != SPANALLOC_STATS_SIZE_VER2);
	BUILD_BUG_ON(sizeof(struct spanalloc_limit) != SPANALLOC_LIMIT_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_release) != SPANALLOC_RELEASE_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_adopt) != SPANALLOC_ADOPT_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_snapshot) != SPANALLOC_SNAPSHOT_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_span_pages) != SPANALLOC_SPAN_PAGES_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_snapshot_span) != 12);
	BUILD_BUG_ON(sizeof(struct spanalloc_adopt_span) != 24);
	BUILD_BUG_ON(sizeof(struct spanalloc_span) != 24);
	BUILD_BUG_ON(sizeof(struct spanalloc_ret) != 16);

	BUILD_BUG_ON(SA_MAX_HEAP_MB > (U32_MAX >> 1));
	/* a release zaps whole kernel pages: one must never span two heap pages */
	BUILD_BUG_ON(PAGE_SIZE > SA_PAGE_SIZE);

	ret = sa_mheap_cache_init();
	if (ret)
		return ret;
	ret = sa_mcache_hotplug_init();
	if (ret)
		goto err_cache;
	ret = sa_shrinker_init();
	if (ret)
		goto err_hp;
	ret = sa_scavenger_init();
	if (ret)
		goto err_shrinker;
	ret = sa_info_init();
	if (ret)
		goto err_scav;
	ret = misc_register(&sa_misc);
	if (ret)
		goto err_info;
	return 0;

err_info:
	sa_info_exit();
err_scav:
	sa_scavenger_exit();
err_shrinker:
	sa_shrinker_exit();
err_hp:
	sa_mcache_hotplug_exit();
err_cache:
	sa_mheap_cache_exit();
	return ret;
}

static void __exit sa_exit(void)
{
	misc_deregister(&sa_misc);
	sa_info_exit();
	sa_scavenger_exit();
	sa_shrinker_exit();
	sa_mcache_hotplug_exit();
	sa_heaps_warn_leftover();
	sa_mheap_cache_exit();
}

module_init(sa_init);
module_exit(sa_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spanalloc: Go-style span heap for user space allocators");
MODULE_AUTHOR("spanalloc developers");
