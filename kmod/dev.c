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
 * most the module's heap limit, an address on an 8 KiB boundary (the
 * module places a mapping on an arena boundary itself unless MAP_FIXED
 * says otherwise), MAP_PRIVATE, never PROT_EXEC (VM_MAYEXEC is
 * cleared so mprotect cannot add it later), one mapping per heap, made by
 * the heap's owner. VM_DONTEXPAND stops mremap from growing it.
 *
 * Owner: the mm of the process that opened the device. A forked child
 * inherits the fd and a copy-on-write copy of the memory, but every ioctl
 * and mmap from it fails with -EPERM, so it cannot change the parent's
 * heap; the child opens the device again for a heap of its own. The heap
 * lives until the last reference to the file goes: the fd and the mapping
 * (which holds the file) both count, so a process that exits, or closes the
 * fd and unmaps, frees everything, whatever state its spans were in.
 */
#include <linux/mman.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include "spanalloc.h"

unsigned int sa_heap_limit_mb = 1024;
module_param_named(heap_limit_mb, sa_heap_limit_mb, uint, 0644);
MODULE_PARM_DESC(heap_limit_mb,
		 "Largest heap in MiB, for heaps opened from now on (default 1024)");

static unsigned int sa_pcp_depth = SA_PCP_MAX_DEPTH;
module_param_named(pcp_depth, sa_pcp_depth, uint, 0644);
MODULE_PARM_DESC(pcp_depth,
		 "Spans per CPU per span class in the per-CPU cache, 0 turns it off (0-8, default 8); for heaps opened from now on");

atomic64_t sa_global_heaps = ATOMIC64_INIT(0);
atomic64_t sa_global_spans = ATOMIC64_INIT(0);
EXPORT_SYMBOL_IF_KUNIT(sa_global_spans);
atomic64_t sa_global_pages = ATOMIC64_INIT(0);
EXPORT_SYMBOL_IF_KUNIT(sa_global_pages);
atomic64_t sa_global_arenas = ATOMIC64_INIT(0);
EXPORT_SYMBOL_IF_KUNIT(sa_global_arenas);

/*
 * All open heaps, for the CPU hotplug callback, the scavenger and the
 * shrinker. A heap on the list is alive for as long as the mutex is held:
 * release takes it off the list before it frees anything.
 */
DEFINE_MUTEX(sa_heaps_mutex);
LIST_HEAD(sa_heaps);

/* cpu is dead: move its cached spans of every heap to mcentral. */
void sa_drain_cpu_all_heaps(unsigned int cpu)
{
	struct sa_heap *heap;

	mutex_lock(&sa_heaps_mutex);
	list_for_each_entry(heap, &sa_heaps, node)
		sa_mcache_drain_cpu(heap, cpu);
	mutex_unlock(&sa_heaps_mutex);
}

/*
 * A new heap owned by mm (NULL only for the KUnit suites, which have no
 * user mapping: nothing is ever released from such a heap).
 */
struct sa_heap *sa_heap_create(struct mm_struct *mm)
{
	u64 limit = (u64)clamp(READ_ONCE(sa_heap_limit_mb), 64U, 1U << 20) << 20;
	struct sa_heap *heap;
	int sc;

	heap = kzalloc(sizeof(*heap), GFP_KERNEL_ACCOUNT);
	if (!heap)
		return ERR_PTR(-ENOMEM);
	heap->counters = alloc_percpu_gfp(struct sa_heap_counters,
					  GFP_KERNEL_ACCOUNT);
	if (!heap->counters || sa_mcache_init(heap))
		goto err;
	if (sa_shrinker_add_heap(heap)) {
		sa_mcache_destroy(heap);
		goto err;
	}
	heap->pcp_depth = min(READ_ONCE(sa_pcp_depth), (unsigned int)SA_PCP_MAX_DEPTH);
	heap->max_map = round_up(limit, SPANALLOC_ARENA_SIZE);
	heap->limit_pages = min_t(u64, limit >> SA_PAGE_SHIFT, U32_MAX);
	mutex_init(&heap->grow_mutex);
	mutex_init(&heap->scav_mutex);
	spin_lock_init(&heap->lock);
	for (sc = 0; sc < SA_NSPANCLASS; sc++)
		sa_mcentral_init(&heap->central[sc]);
	heap->mm = mm;
	if (mm)
		mmgrab(mm);

	mutex_lock(&sa_heaps_mutex);
	list_add(&heap->node, &sa_heaps);
	mutex_unlock(&sa_heaps_mutex);
	atomic64_inc(&sa_global_heaps);
	return heap;

err:
	free_percpu(heap->counters);
	kfree(heap);
	return ERR_PTR(-ENOMEM);
}
EXPORT_SYMBOL_IF_KUNIT(sa_heap_create);

/* Frees a heap and everything in it; nothing else may use it any more. */
void sa_heap_destroy(struct sa_heap *heap)
{
	mutex_lock(&sa_heaps_mutex);
	list_del(&heap->node);
	sa_shrinker_del_heap(heap);
	mutex_unlock(&sa_heaps_mutex);

	/* Spans in every state are in the span table: freeing it frees all. */
	sa_mheap_destroy(heap);
	sa_mcache_destroy(heap);
	free_percpu(heap->counters);
	if (heap->mm)
		mmdrop(heap->mm);
	kfree(heap);
	atomic64_dec(&sa_global_heaps);
}
EXPORT_SYMBOL_IF_KUNIT(sa_heap_destroy);

static int sa_open(struct inode *inode, struct file *file)
{
	struct sa_heap *heap;

	if (!current->mm)
		return -EINVAL;
	heap = sa_heap_create(current->mm);
	if (IS_ERR(heap))
		return PTR_ERR(heap);
	file->private_data = heap;
	return 0;
}

static int sa_release(struct inode *inode, struct file *file)
{
	sa_heap_destroy(file->private_data);
	return 0;
}

static void sa_vma_set_flags(struct vm_area_struct *vma)
{
#ifdef SA_HAVE_VM_FLAGS_SET
	vm_flags_clear(vma, VM_MAYEXEC);
	vm_flags_set(vma, VM_DONTEXPAND);
#else
	vma->vm_flags &= ~VM_MAYEXEC;
	vma->vm_flags |= VM_DONTEXPAND;
#endif
}

/*
 * Places the heap on an arena boundary: spans are then aligned to their
 * size's natural boundaries up to 64 MiB, large objects get whole aligned
 * pages and THP can back whole arenas. Asks the mm for len plus one arena
 * of room (as an anonymous area: file NULL) and aligns inside it.
 */
static unsigned long sa_get_unmapped_area(struct file *file, unsigned long addr,
					  unsigned long len, unsigned long pgoff,
					  unsigned long flags)
{
	unsigned long base, want = len + SPANALLOC_ARENA_SIZE;

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
	if (vma->vm_pgoff || !len || len % SPANALLOC_ARENA_SIZE ||
	    len > heap->max_map || vma->vm_start % SA_PAGE_SIZE)
		return -EINVAL;
	if (vma->vm_flags & VM_MAYSHARE)
		return -EINVAL;
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;

	mutex_lock(&heap->grow_mutex);
	if (heap->mapped) {
		ret = -EBUSY;
		goto out;
	}
	ret = sa_mheap_map(heap, vma->vm_start, len);
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
	BUILD_BUG_ON(sizeof(struct spanalloc_info) != SPANALLOC_INFO_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_exchange) != SPANALLOC_EXCHANGE_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_large) != SPANALLOC_LARGE_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_stats) != SPANALLOC_STATS_SIZE_VER1);
	BUILD_BUG_ON(sizeof(struct spanalloc_limit) != SPANALLOC_LIMIT_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_release) != SPANALLOC_RELEASE_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct spanalloc_span) != 24);
	BUILD_BUG_ON(sizeof(struct spanalloc_ret) != 16);

	ret = sa_mheap_cache_init();
	if (ret)
		return ret;
	ret = sa_mcache_hotplug_init();
	if (ret)
		goto err_cache;
	ret = sa_shrinker_init();
	if (ret)
		goto err_hp;
	ret = misc_register(&sa_misc);
	if (ret)
		goto err_shrinker;
	return 0;

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
	sa_scavenger_exit();
	sa_shrinker_exit();
	sa_mcache_hotplug_exit();
	sa_mheap_cache_exit();
}

module_init(sa_init);
module_exit(sa_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("spanalloc: Go-style span heap for user space allocators");
MODULE_AUTHOR("spanalloc developers");
