// SPDX-License-Identifier: GPL-2.0
/*
 * ioctl: the uapi boundary (include/uapi/linux/spanalloc.h). Everything
 * user space passes is copied in once, checked field by field, and only
 * then acted on: sizes (copy_struct_from_user, so structs can grow and
 * unknown trailing bytes must be zero), flags, reserved fields, counts,
 * span classes and handles. Nothing here trusts a value twice.
 *
 * Only the heap's owner (the mm that opened it) may use it: a forked child
 * or a process that received the fd over a socket gets -EPERM, so it can
 * neither read nor change the heap (a child adopts what it inherited into
 * a heap of its own: adopt.c).
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/nospec.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include "spanalloc.h"
#include "spanalloc_trace.h"

/*
 * Copies a size-prefixed struct in; the size user space claims is read once
 * and stored into the copy, so a size changed under us is never seen.
 * Inlined so that the common case, user space built against these headers,
 * copies a size known at compile time (no run-time usercopy check).
 */
static __always_inline int sa_copy_in(void *dst, size_t ksize, size_t minsize,
				      const void __user *uarg)
{
	u32 usize;
	int ret;

	if (get_user(usize, (const u32 __user *)uarg))
		return -EFAULT;
	if (usize == ksize) {
		if (copy_from_user(dst, uarg, ksize))
			return -EFAULT;
	} else {
		if (usize < minsize || usize > PAGE_SIZE)
			return -EINVAL;
		ret = copy_struct_from_user(dst, ksize, uarg, usize);
		if (ret)
			return ret == -E2BIG ? -EINVAL : ret;
	}
	*(u32 *)dst = usize;
	return 0;
}

/* Writes back as much of the struct as user space has room for. */
static int sa_copy_out(void __user *uarg, const void *src, size_t ksize,
		       u32 usize)
{
	return copy_to_user(uarg, src, min_t(size_t, ksize, usize)) ? -EFAULT : 0;
}

static long sa_ioctl_info(struct sa_heap *heap, void __user *uarg)
{
	struct spanalloc_info info;
	int ret;

	ret = sa_copy_in(&info, sizeof(info), SPANALLOC_INFO_SIZE_VER0, uarg);
	if (ret)
		return ret;
	/* Every field but size is output: each is written, whatever came in. */
	info.abi_version = SPANALLOC_ABI_VERSION;
	info.page_size = SA_PAGE_SIZE;
	info.num_classes = SPANALLOC_NUM_CLASSES;
	info.arena_size = SPANALLOC_ARENA_SIZE;
	info.class_hash = SPANALLOC_CLASS_HASH;
	info.heap_limit = (u64)READ_ONCE(heap->limit_pages) << SA_PAGE_SHIFT;
	info.max_heap_limit = heap->max_map;
	info.max_batch = SA_MAX_BATCH;
	info.pcp_depth = heap->pcp_depth;
	/* what the mapping (once there is one) and the limit allow */
	info.max_large_pages = min_t(u64, sa_heap_mapped(heap) ?: heap->max_map,
				     info.heap_limit) >> SA_PAGE_SHIFT;
	info.reserved = 0;
	/* They tell what other users do: for the administrator only. */
	if (capable(CAP_SYS_ADMIN)) {
		info.global_heaps = atomic64_read(&sa_global_heaps);
		info.global_spans = atomic64_read(&sa_global_spans);
		info.global_pages = atomic64_read(&sa_global_pages);
		info.global_arenas = atomic64_read(&sa_global_arenas);
	} else {
		info.global_heaps = 0;
		info.global_spans = 0;
		info.global_pages = 0;
		info.global_arenas = 0;
	}
	info.heap_id = heap->id;
	return sa_copy_out(uarg, &info, sizeof(info), info.size);
}

static void sa_span_desc(struct sa_heap *heap, struct sa_span *s,
			 struct spanalloc_span *d)
{
	d->handle = sa_span_handle(s);
	d->addr = heap->base + ((unsigned long)s->start << SA_PAGE_SHIFT);
	d->npages = s->npages;
	d->spanclass = s->spanclass;
	d->needzero = s->needzero;
	d->pad = 0;
}

/* Claims every span the batch returns; all or none. */
static int sa_claim_batch(struct sa_heap *heap, const struct spanalloc_ret __user *uret,
			  u32 n, struct sa_span **spans, u8 *prev, u8 *ops)
{
	struct spanalloc_ret r;
	u32 i;
	int ret = 0;

	for (i = 0; i < n; i++) {
		int p;

		if (copy_from_user(&r, &uret[i], sizeof(r))) {
			ret = -EFAULT;
			break;
		}
		if (r.reserved) {
			ret = -EINVAL;
			break;
		}
		ret = sa_span_claim(heap, r.handle, r.op, &spans[i], &p);
		if (ret)
			break;
		prev[i] = p;
		ops[i] = r.op;
	}
	if (ret)
		while (i--)
			sa_span_unclaim(spans[i], prev[i]);
	return ret;
}

/*
 * Writes the descriptors of the spans got to user space, then publishes
 * them. While they are HANDING no return can claim them, so if user space
 * made the array unwritable since access_ok() (it cannot learn of these
 * spans), they are simply put back. Returns how many were handed out.
 */
static u32 sa_hand_out(struct sa_heap *heap, struct spanalloc_span __user *uget,
		       struct sa_span **spans, u32 got)
{
	struct spanalloc_span d;
	u32 i;

	for (i = 0; i < got; i++) {
		sa_span_desc(heap, spans[i], &d);
		if (copy_to_user(&uget[i], &d, sizeof(d))) {
			for (i = 0; i < got; i++)
				sa_span_put_ready(heap, spans[i]);
			return 0;
		}
	}
	for (i = 0; i < got; i++)
		sa_span_publish(spans[i]);
	return got;
}

static long sa_ioctl_exchange(struct sa_heap *heap, void __user *uarg)
{
	struct spanalloc_exchange __user *uex = uarg;
	struct spanalloc_span __user *uget;
	struct sa_span *spans[SA_MAX_BATCH];
	u8 prev[SA_MAX_BATCH], ops[SA_MAX_BATCH];
	struct spanalloc_exchange ex;
	int ret, err = 0;
	u32 i, got = 0;
	u16 sc;

	ret = sa_copy_in(&ex, sizeof(ex), SPANALLOC_EXCHANGE_SIZE_VER0, uarg);
	if (ret)
		return ret;
	/* ret_done and get_done are out fields: ignored on input */
	if (ex.flags || ex.reserved ||
	    ex.ret_count > SA_MAX_BATCH || ex.get_count > SA_MAX_BATCH ||
	    (ex.ret_count && !ex.ret_ptr) || (ex.get_count && !ex.get_ptr))
		return -EINVAL;
	if ((ex.get_count || ex.get_spanclass) &&
	    (ex.get_spanclass < 2 || ex.get_spanclass >= SA_NSPANCLASS))
		return -EINVAL;
	/* it indexes the class's lists and per-CPU stacks */
	sc = array_index_nospec(ex.get_spanclass, SA_NSPANCLASS);
	if (!sa_heap_mapped(heap))
		return -ENXIO;
	uget = u64_to_user_ptr(ex.get_ptr);
	/* Check the output array is writable before anything changes. */
	if (ex.get_count && !access_ok(uget, ex.get_count * sizeof(*uget)))
		return -EFAULT;

	sa_count(heap, SA_C_EXCHANGES);
	ret = sa_claim_batch(heap, u64_to_user_ptr(ex.ret_ptr), ex.ret_count,
			     spans, prev, ops);
	if (ret)
		return ret;
	for (i = 0; i < ex.ret_count; i++)
		sa_span_return(heap, spans[i], prev[i], ops[i]);
	/* Applied: say so before anything else can fail. */
	if (put_user(ex.ret_count, &uex->ret_done))
		return -EFAULT;
	if (!ex.get_count)
		return put_user(0, &uex->get_done) ? -EFAULT : 0;

	got = sa_span_get(heap, sc, spans, ex.get_count, &err);
	if (got && !sa_hand_out(heap, uget, spans, got)) {
		got = 0;
		ret = -EFAULT;
	} else if (!got) {
		ret = err ? err : -ENOMEM;
	}
	if (ret == -ENOMEM)
		sa_count(heap, SA_C_ENOMEM);
	if (put_user(got, &uex->get_done))
		return -EFAULT;
	return ret;
}

static long sa_ioctl_alloc_large(struct sa_heap *heap, void __user *uarg)
{
	struct spanalloc_large lg;
	struct sa_span *s;
	int ret;

	ret = sa_copy_in(&lg, sizeof(lg), SPANALLOC_LARGE_SIZE_VER0, uarg);
	if (ret)
		return ret;
	/* span is an out field: ignored on input */
	if (lg.flags & ~SPANALLOC_LARGE_NOSCAN || lg.reserved || !lg.npages)
		return -EINVAL;
	if (!sa_heap_mapped(heap))
		return -ENXIO;
	if (lg.npages > heap->max_pages)
		return -EINVAL;
	s = sa_mheap_alloc_span(heap, SPANALLOC_SPANCLASS(0, lg.flags &
				SPANALLOC_LARGE_NOSCAN), lg.npages);
	if (IS_ERR(s)) {
		sa_count(heap, SA_C_ENOMEM);
		return PTR_ERR(s);
	}
	sa_span_desc(heap, s, &lg.span);
	/* HANDING until user space has the descriptor: nobody else has it */
	if (sa_copy_out(uarg, &lg, sizeof(lg), lg.size)) {
		sa_mheap_free_span(heap, s);
		return -EFAULT;
	}
	trace_spanalloc_large_alloc(heap->id, lg.span.handle, lg.npages,
				    lg.flags & SPANALLOC_LARGE_NOSCAN);
	sa_span_publish(s);
	sa_count(heap, SA_C_LARGE_ALLOCS);
	sa_count(heap, SA_C_SPANS_GOT);
	return 0;
}

static int sa_class_stats_out(struct sa_heap *heap,
			      struct spanalloc_class_stats __user *ucs, u32 n)
{
	struct spanalloc_class_stats cs;
	u32 i;

	if (!sa_heap_mapped(heap))
		return clear_user(ucs, n * sizeof(cs)) ? -EFAULT : 0;
	for (i = 0; i < n; i++) {
		/* n came from user space: no speculation past the table */
		sa_heap_class_stats(heap, array_index_nospec(i, SA_NSPANCLASS), &cs);
		if (copy_to_user(&ucs[i], &cs, sizeof(cs)))
			return -EFAULT;
	}
	return 0;
}

static long sa_ioctl_stats(struct sa_heap *heap, void __user *uarg)
{
	struct spanalloc_stats st;
	int ret;

	ret = sa_copy_in(&st, sizeof(st), SPANALLOC_STATS_SIZE_VER0, uarg);
	if (ret)
		return ret;
	if (st.classes_count > SA_NSPANCLASS ||
	    (st.classes_count && !st.classes_ptr))
		return -EINVAL;
	/* Every field after classes_ptr is output: each is written below. */
	if (st.classes_count) {
		ret = sa_class_stats_out(heap, u64_to_user_ptr(st.classes_ptr),
					 st.classes_count);
		if (ret)
			return ret;
	}

	sa_heap_stats(heap, &st);
	return sa_copy_out(uarg, &st, sizeof(st), st.size);
}

static long sa_ioctl_set_limit(struct sa_heap *heap, void __user *uarg)
{
	struct spanalloc_limit lim;
	int ret;

	ret = sa_copy_in(&lim, sizeof(lim), SPANALLOC_LIMIT_SIZE_VER0, uarg);
	if (ret)
		return ret;
	if (lim.flags)
		return -EINVAL;
	return sa_mheap_set_limit(heap, lim.limit);
}

static long sa_ioctl_release(struct sa_heap *heap, void __user *uarg)
{
	struct spanalloc_release rel;
	u64 pages;
	int ret;

	ret = sa_copy_in(&rel, sizeof(rel), SPANALLOC_RELEASE_SIZE_VER0, uarg);
	if (ret)
		return ret;
	/* released is an out field: ignored on input */
	if (rel.flags)
		return -EINVAL;
	ret = sa_scavenge(heap, U64_MAX, 0, SA_SCAV_WAIT, SA_RELEASE_IOCTL, &pages);
	if (ret)
		return ret;
	rel.released = pages << SA_PAGE_SHIFT;
	return sa_copy_out(uarg, &rel, sizeof(rel), rel.size);
}

static long sa_ioctl_adopt(struct sa_heap *heap, void __user *uarg)
{
	struct spanalloc_adopt ad;
	u64 released = 0;
	int ret;

	ret = sa_copy_in(&ad, sizeof(ad), SPANALLOC_ADOPT_SIZE_VER0, uarg);
	if (ret)
		return ret;
	/* released is an out field: ignored on input */
	if (ad.flags || ad.reserved)
		return -EINVAL;
	ret = sa_heap_adopt(heap, &ad, &released);
	if (ret)
		return ret;
	ad.released = released;
	return sa_copy_out(uarg, &ad, sizeof(ad), ad.size);
}

/* Pages of a snapshot read per hold of the heap's lock. */
#define SA_SNAPSHOT_WINDOW	4096

/* Copies a window's n entries of size bytes to ubuf[at...], within room. */
static int sa_snapshot_out(u64 ubuf, u32 room, u32 at, const void *src, u32 n,
			   size_t size)
{
	if (!ubuf || at >= room)
		return 0;
	n = min(n, room - at);
	return copy_to_user(u64_to_user_ptr(ubuf + (u64)at * size), src, n * size) ?
	       -EFAULT : 0;
}

static long sa_ioctl_snapshot(struct sa_heap *heap, void __user *uarg)
{
	struct spanalloc_snapshot_span *spans = NULL;
	struct spanalloc_snapshot sn;
	struct sa_heap *target = heap;
	u32 p, active, found, nspans = 0, covered = 0;
	u8 *states = NULL;
	int ret;

	ret = sa_copy_in(&sn, sizeof(sn), SPANALLOC_SNAPSHOT_SIZE_VER0, uarg);
	if (ret)
		return ret;
	if (sn.flags || sn.reserved || (sn.pages_count && !sn.pages_ptr) ||
	    (sn.spans_count && !sn.spans_ptr))
		return -EINVAL;
	if (sn.heap_id && sn.heap_id != heap->id) {
		/* another process's memory: the administrator's */
		if (!capable(CAP_SYS_ADMIN))
			return -EPERM;
		target = sa_heap_get(sn.heap_id);
		if (target && target->id != sn.heap_id) {
			sa_heap_put(target);
			target = NULL;
		}
		if (!target)
			return -ESRCH;
	}
	active = sa_heap_mapped(target) ? READ_ONCE(target->active_pages) : 0;
	if (active) {
		/* zeroed: a page past the heap's end (it never shrinks) reads 0 */
		states = kvzalloc(SA_SNAPSHOT_WINDOW, GFP_KERNEL_ACCOUNT);
		spans = kvmalloc_array(SA_SNAPSHOT_WINDOW, sizeof(*spans), GFP_KERNEL_ACCOUNT);
		ret = states && spans ? 0 : -ENOMEM;
	}
	/* the heap may grow meanwhile: the windows stop where it was */
	for (p = 0; !ret && p < active; p += SA_SNAPSHOT_WINDOW) {
		u32 n = min_t(u32, SA_SNAPSHOT_WINDOW, active - p);

		found = sa_mheap_snapshot(target, p, n, states, spans, &covered);
		ret = sa_snapshot_out(sn.pages_ptr, sn.pages_count, p, states, n, 1);
		if (!ret)
			ret = sa_snapshot_out(sn.spans_ptr, sn.spans_count, nspans, spans,
					      found, sizeof(*spans));
		nspans += found;
		if (!ret && fatal_signal_pending(current))
			ret = -EINTR;
		cond_resched();
	}
	kvfree(states);
	kvfree(spans);
	if (!ret) {
		sn.pages_count = active;
		sn.spans_count = nspans;
		sn.base = active ? target->base : 0;
		sn.arenas = active / SA_ARENA_PAGES;
		ret = sa_copy_out(uarg, &sn, sizeof(sn), sn.size);
	}
	if (target != heap)
		sa_heap_put(target);
	return ret;
}

static long sa_ioctl_set_span_pages(struct sa_heap *heap, void __user *uarg)
{
	struct spanalloc_span_pages sp;
	u32 c;
	int ret;

	ret = sa_copy_in(&sp, sizeof(sp), SPANALLOC_SPAN_PAGES_SIZE_VER0, uarg);
	if (ret)
		return ret;
	if (sp.flags || memchr_inv(sp.reserved, 0, sizeof(sp.reserved)) || sp.pages[0])
		return -EINVAL;
	/* all checked before any is stored: all or nothing */
	for (c = 1; c < SPANALLOC_NUM_CLASSES; c++)
		if (sp.pages[c] && !sa_class_pages_ok(c, sp.pages[c]))
			return -EINVAL;
	for (c = 1; c < SPANALLOC_NUM_CLASSES; c++)
		WRITE_ONCE(heap->span_pages[c], sp.pages[c] ?: sa_classes[c].npages);
	return 0;
}

/*
 * Commands are told apart by type, number and direction only: the size
 * field of the command is the size of the struct in the header the caller
 * was built with, and the struct's own size field does the versioning.
 */
static const struct {
	u32 dir;
	long (*fn)(struct sa_heap *heap, void __user *uarg);
} sa_ioctls[] = {
	[_IOC_NR(SPANALLOC_IOC_INFO)] = { _IOC_READ | _IOC_WRITE, sa_ioctl_info },
	[_IOC_NR(SPANALLOC_IOC_EXCHANGE)] = { _IOC_READ | _IOC_WRITE, sa_ioctl_exchange },
	[_IOC_NR(SPANALLOC_IOC_ALLOC_LARGE)] = { _IOC_READ | _IOC_WRITE, sa_ioctl_alloc_large },
	[_IOC_NR(SPANALLOC_IOC_STATS)] = { _IOC_READ | _IOC_WRITE, sa_ioctl_stats },
	[_IOC_NR(SPANALLOC_IOC_SET_LIMIT)] = { _IOC_WRITE, sa_ioctl_set_limit },
	[_IOC_NR(SPANALLOC_IOC_RELEASE)] = { _IOC_READ | _IOC_WRITE, sa_ioctl_release },
	[_IOC_NR(SPANALLOC_IOC_ADOPT)] = { _IOC_READ | _IOC_WRITE, sa_ioctl_adopt },
	[_IOC_NR(SPANALLOC_IOC_SNAPSHOT)] = { _IOC_READ | _IOC_WRITE, sa_ioctl_snapshot },
	[_IOC_NR(SPANALLOC_IOC_SET_SPAN_PAGES)] = { _IOC_WRITE, sa_ioctl_set_span_pages },
};

long sa_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct sa_heap *heap = file->private_data;
	unsigned int nr = _IOC_NR(cmd);

	if (_IOC_TYPE(cmd) != SPANALLOC_IOC_MAGIC || nr >= ARRAY_SIZE(sa_ioctls))
		return -ENOTTY;
	nr = array_index_nospec(nr, ARRAY_SIZE(sa_ioctls));
	if (!sa_ioctls[nr].fn || _IOC_DIR(cmd) != sa_ioctls[nr].dir)
		return -ENOTTY;
	if (current->mm != heap->mm)
		return -EPERM;
	return sa_ioctls[nr].fn(heap, (void __user *)arg);
}
