// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz: drives /dev/spanalloc the way a hostile or broken program would,
 * to find kernel bugs (the kernel's own checkers do the finding: run it on
 * the debug kernel, scripts/vm-run --kernel debug, where KASAN, lockdep,
 * kmemleak, DEBUG_VM and DEBUG_LIST watch every step).
 *
 *   fuzz [--seconds N] [--threads T] [--seed S] [--verbose]
 *
 * Rounds run until the time is up. Each round forks a victim process that
 * opens one to three heaps (most mapped) and runs T threads of random
 * operations on them:
 *  - every ioctl, with fields drawn from random and boundary values (sizes
 *    around each struct's, counts around the batch limit, every span class
 *    and a few past the end, flags and reserved fields set, NULL, unmapped
 *    and read-only pointers), unknown ioctl numbers;
 *  - handles of spans in every state: owned, cached, partial, full, freed
 *    (stale), large, of another heap, and made up;
 *  - mmap, munmap, mremap, mprotect, madvise and MAP_FIXED mappings on and
 *    around the heap's arenas, and writes into span memory (a fault there
 *    is expected once the layout is broken and is caught and counted);
 *  - fork while the heap is in use (the child may use none of it);
 *  - close racing with ioctls on other threads, then a new heap in the slot.
 * The parent kills some victims at a random moment, so heaps die in every
 * state, mid-call included. Requests the fuzzer made invalid on purpose
 * (reserved fields, flags, sizes, counts, classes) must fail with EINVAL,
 * and any errno outside the documented ones is reported, as is any span
 * descriptor outside its heap. After the last round, with every heap
 * closed, the module's counters must be back to zero.
 *
 * Prints "fuzz: N iterations, ..." and exits 0 when nothing was found.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/spanalloc.h>
#define SPANALLOC_CLASS_TABLE fz_classes
#include <spanalloc-classtable.h>

#define NHEAPS		3
#define POOL		64
#define PAGE		SPANALLOC_PAGE_SIZE

/*
 * A slot's mapping changes only under its lock held for writing (op_reopen);
 * whoever touches the memory at base, or changes its layout, holds it for
 * reading, so it never works on an address range that is no longer the
 * heap's (it may since have become this process's own memory). The ioctls
 * themselves take no lock: racing close with them is the point.
 */
struct fz_heap {
	pthread_rwlock_t lock;
	_Atomic int fd;			/* -1: slot empty */
	_Atomic unsigned int gen;	/* bumped when the slot gets a new heap */
	_Atomic uintptr_t base;		/* 0: not mapped */
	_Atomic size_t len;
};

/* Shared by the victim's threads; racy on purpose, never trusted. */
static struct fz_heap heaps[NHEAPS];
static _Atomic uint64_t handles[POOL];	/* spans seen, any state */
static _Atomic uint64_t *stats_shm;	/* [0] iterations [1] findings [2] faults */
static int verbose;
static uint32_t max_batch;		/* from the info ioctl */
static char *ro_page;			/* a read-only page for bad pointers */

static __thread uint64_t rng;
static __thread sigjmp_buf fault_jmp;
static __thread volatile int fault_armed;
static __thread int cur_op = -1;	/* for the report of an unexpected fault */

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static void finding(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void finding(const char *fmt, ...)
{
	va_list ap;

	char line[256];
	int n;

	/* the first few in full; all of them are counted */
	if (atomic_fetch_add(&stats_shm[1], 1) >= 20)
		return;
	n = snprintf(line, sizeof(line), "fuzz: FINDING: ");
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* one write: lines of threads and processes do not interleave */
	if (write(2, line, n) < 0)
		return;
}

/*
 * The command for a struct of usize bytes: mostly the header's own, now and
 * then the one a program built against a header with that struct size
 * would use. The kernel must treat both alike (the size field versions).
 */
static unsigned long fz_cmd(unsigned long cmd, uint32_t usize)
{
	if (below(4) || usize > _IOC_SIZEMASK)
		return cmd;
	return _IOC(_IOC_DIR(cmd), _IOC_TYPE(cmd), _IOC_NR(cmd), usize);
}

/*
 * A size field: the struct's own, or a boundary around it, or anything.
 * *bad when the kernel must refuse it: below min, the first published size
 * (every size from there up to the struct's is a valid older caller), or
 * above a page. (A size up to a page reads past the struct: whether that
 * is refused depends on what follows it, so it is not predicted.)
 */
static uint32_t fz_size(uint32_t real, uint32_t min, bool *bad)
{
	static const uint32_t small[] = { 0, 1, 4, 7, 8, 15 };
	static const uint32_t big[] = { 4097, 65536, UINT32_MAX };

	switch (below(10)) {
	case 0:
		*bad = true;
		return min - 1 - below(4);
	case 1:
		return min + 8 * below((real - min) / 8 + 4);
	case 2:
		*bad = true;
		return small[below(sizeof(small) / sizeof(small[0]))];
	case 3:
		*bad = true;
		return big[below(sizeof(big) / sizeof(big[0]))];
	case 4:
		return 4096;
	default:
		return real;
	}
}

/* A pointer argument: usually good, sometimes NULL, unmapped or read-only. */
static uint64_t fz_ptr(void *good)
{
	switch (below(12)) {
	case 0:
		return 0;
	case 1:
		return 8;
	case 2:
		return (uintptr_t)ro_page;
	case 3:
		return rnd();
	default:
		return (uintptr_t)good;
	}
}

static uint64_t fz_handle(void)
{
	switch (below(8)) {
	case 0:
		return rnd();
	case 1:
		return rnd() & 0xffffffffULL;
	case 2: {
		uint64_t h = atomic_load(&handles[below(POOL)]);

		return h + (below(2) ? 1 : (1ULL << 32));	/* near miss */
	}
	default:
		return atomic_load(&handles[below(POOL)]);
	}
}

static void remember(uint64_t h)
{
	atomic_store(&handles[below(POOL)], h);
}

static __thread unsigned int op_gen;	/* per call: the slot's gen when the call began */

static int heap_fd(int *slot)
{
	*slot = below(NHEAPS);
	op_gen = atomic_load(&heaps[*slot].gen);
	return atomic_load(&heaps[*slot].fd);
}

/* errno values the device documents; anything else is a finding. */
static void check_errno(const char *what, int r, bool must_fail)
{
	if (r == 0) {
		if (must_fail)
			finding("%s: an invalid request was accepted", what);
		return;
	}
	switch (errno) {
	case EINVAL: case EFAULT: case ENOMEM: case EPERM: case ENXIO:
	case EBADF: case ENOTTY: case EBUSY: case ESRCH:
		/* EBADF, ENOTTY: another thread closed the fd, maybe reused it */
		if (must_fail && errno != EINVAL && errno != EFAULT &&
		    errno != EBADF && errno != ENOTTY)
			finding("%s: invalid request failed with %s, not EINVAL",
				what, strerror(errno));
		return;
	default:
		finding("%s: unexpected error %s", what, strerror(errno));
	}
}

/* Whether a heap may give span class sc spans of npages pages (SET_SPAN_PAGES). */
static bool fz_pages_ok(unsigned int sc, uint32_t npages)
{
	const struct spanalloc_class *k = &fz_classes[sc >> 1];
	uint32_t most = k->npages > SPANALLOC_MAX_CLASS_PAGES ? k->npages :
			SPANALLOC_MAX_CLASS_PAGES;

	return npages >= k->npages && npages <= most &&
	       (uint64_t)npages * PAGE / k->size <= SPANALLOC_MAX_NELEMS;
}

static void check_span(int slot, const struct spanalloc_span *s, int want_sc)
{
	uintptr_t base = atomic_load(&heaps[slot].base);
	size_t len = atomic_load(&heaps[slot].len);

	remember(s->handle);
	if (want_sc >= 0 && s->spanclass != want_sc)
		finding("span of class %u for a request of %d", s->spanclass, want_sc);
	if (s->spanclass >= 2 && s->spanclass < SPANALLOC_NUM_SPANCLASSES &&
	    !fz_pages_ok(s->spanclass, s->npages))
		finding("span of class %u has %u pages", s->spanclass, s->npages);
	if (s->addr % PAGE || s->pad)
		finding("span at %#llx misaligned or padded", (unsigned long long)s->addr);
	/* only if the slot still holds the heap the call was made on */
	if (base && len && atomic_load(&heaps[slot].gen) == op_gen &&
	    (s->addr < base || s->addr + (uint64_t)s->npages * PAGE > base + len))
		finding("span at %#llx outside heap [%#lx, +%zu)",
			(unsigned long long)s->addr, (unsigned long)base, len);
}

/* Writes to span memory; the layout may be broken on purpose: catch it. */
static void touch(uint64_t addr, size_t len)
{
	fault_armed = 1;
	if (!sigsetjmp(fault_jmp, 1))
		memset((void *)(uintptr_t)addr, (int)below(256), len);
	else
		atomic_fetch_add(&stats_shm[2], 1);
	fault_armed = 0;
}

/* touch() of a span the call on slot handed out, if it is still that heap's. */
static void touch_span(int slot, uint64_t addr, size_t len)
{
	struct fz_heap *h = &heaps[slot];

	pthread_rwlock_rdlock(&h->lock);
	if (atomic_load(&h->gen) == op_gen && atomic_load(&h->base) &&
	    addr >= atomic_load(&h->base) &&
	    addr + len <= atomic_load(&h->base) + atomic_load(&h->len))
		touch(addr, len);
	pthread_rwlock_unlock(&h->lock);
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (fault_armed)
		siglongjmp(fault_jmp, 1);
	{
		char msg[160], maps[8192];
		int n = snprintf(msg, sizeof(msg),
				 "fuzz: victim: signal %d at %p in op %d, not in a span write; its mappings:\n",
				 sig, si->si_addr, cur_op);
		int fd = open("/proc/self/maps", O_RDONLY);
		ssize_t m = fd >= 0 ? read(fd, maps, sizeof(maps)) : 0;

		if (write(2, msg, n) < 0 || (m > 0 && write(2, maps, m) < 0))
			n = 0;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void op_info(void)
{
	struct spanalloc_info info;
	bool bad = false;
	int slot, fd = heap_fd(&slot);

	memset(&info, 0, sizeof(info));
	info.size = fz_size(sizeof(info), SPANALLOC_INFO_SIZE_VER0, &bad);
	if (!below(4))
		info.heap_limit = rnd();	/* outputs are ignored on input */
	check_errno("info", ioctl(fd, fz_cmd(SPANALLOC_IOC_INFO, info.size), &info),
		    bad && fd >= 0);
}

static void op_exchange(void)
{
	struct spanalloc_ret ret[40];
	struct spanalloc_span got[40];
	struct spanalloc_exchange ex;
	bool bad = false;
	int slot, fd = heap_fd(&slot), r, sc;
	uint32_t nret = below(3) ? below(5) : below(40);
	uint32_t nget = below(3) ? below(5) : below(40);

	memset(&ex, 0, sizeof(ex));
	for (uint32_t i = 0; i < nret; i++) {
		ret[i].handle = fz_handle();
		ret[i].op = below(10) ? 1 + below(3) : below(6);
		ret[i].reserved = below(40) ? 0 : 1;
	}
	sc = (int)(below(10) ? 2 + below(SPANALLOC_NUM_SPANCLASSES - 2) : below(150));
	ex.size = fz_size(sizeof(ex), SPANALLOC_EXCHANGE_SIZE_VER0, &bad);
	ex.flags = below(30) ? 0 : 1u << below(32);
	ex.ret_count = nret;
	ex.get_count = nget;
	ex.get_spanclass = nget ? sc : (below(20) ? 0 : sc);
	ex.ret_ptr = nret ? fz_ptr(ret) : 0;
	ex.get_ptr = nget ? fz_ptr(got) : 0;
	if (!below(30)) {
		ex.reserved = 1;
		bad = true;
	}
	if (!below(10)) {
		ex.ret_done = (uint32_t)rnd();	/* outputs are ignored on input */
		ex.get_done = (uint32_t)rnd();
	}
	bad |= ex.flags || nret > max_batch || nget > max_batch ||
	       ((nget || ex.get_spanclass) &&
		(ex.get_spanclass < 2 || ex.get_spanclass >= SPANALLOC_NUM_SPANCLASSES));
	r = ioctl(fd, fz_cmd(SPANALLOC_IOC_EXCHANGE, ex.size), &ex);
	check_errno("exchange", r, bad && fd >= 0);
	if (!r && ex.get_ptr == (uintptr_t)got) {
		for (uint32_t i = 0; i < ex.get_done && i < nget; i++) {
			check_span(slot, &got[i], sc);
			if (below(2))
				touch_span(slot, got[i].addr,
					   below(2) ? 64 : (size_t)got[i].npages * PAGE);
		}
	}
}

static void op_large(void)
{
	struct spanalloc_large lg;
	bool bad = false;
	int slot, fd = heap_fd(&slot), r;
	static const uint32_t np[] = { 0, 1, 2, 3, 17, 8191, 8192, 8193, 131072, UINT32_MAX };

	memset(&lg, 0, sizeof(lg));
	lg.size = fz_size(sizeof(lg), SPANALLOC_LARGE_SIZE_VER0, &bad);
	lg.flags = below(8) ? below(2) : (uint32_t)rnd();
	lg.npages = below(4) ? 1 + below(64) : np[below(sizeof(np) / sizeof(np[0]))];
	if (!below(30)) {
		lg.reserved = 1;
		bad = true;
	}
	if (!below(30))
		lg.span.addr = 1;	/* an output field: ignored on input */
	bad |= (lg.flags & ~1u) || !lg.npages;
	r = ioctl(fd, fz_cmd(SPANALLOC_IOC_ALLOC_LARGE, lg.size), &lg);
	check_errno("alloc_large", r, bad && fd >= 0);
	if (!r) {
		check_span(slot, &lg.span, -1);
		if (below(2))
			touch_span(slot, lg.span.addr, (size_t)lg.span.npages * PAGE);
	}
}

static void op_stats(void)
{
	static struct spanalloc_class_stats cs[SPANALLOC_NUM_SPANCLASSES + 8];
	struct spanalloc_stats st;
	bool bad = false;
	int slot, fd = heap_fd(&slot);

	memset(&st, 0, sizeof(st));
	st.size = fz_size(sizeof(st), SPANALLOC_STATS_SIZE_VER0, &bad);
	st.classes_count = below(4) ? below(SPANALLOC_NUM_SPANCLASSES + 4) : (uint32_t)rnd();
	st.classes_ptr = st.classes_count ? fz_ptr(cs) : 0;
	bad |= st.classes_count > SPANALLOC_NUM_SPANCLASSES;
	if (!below(10))
		st.limit = rnd();	/* an output field: ignored on input */
	check_errno("stats", ioctl(fd, fz_cmd(SPANALLOC_IOC_STATS, st.size), &st),
		    bad && fd >= 0);
}

/* A snapshot of this heap or another (by a guessed id), into bad buffers too. */
static void op_snapshot(void)
{
	static uint8_t pages[4 * 8192];
	static struct spanalloc_snapshot_span spans[512];
	struct spanalloc_snapshot sn;
	bool bad = false;
	int slot, fd = heap_fd(&slot);

	memset(&sn, 0, sizeof(sn));
	sn.size = fz_size(sizeof(sn), SPANALLOC_SNAPSHOT_SIZE_VER0, &bad);
	sn.flags = below(20) ? 0 : 1u << below(32);
	sn.reserved = below(20) ? 0 : (uint32_t)rnd();
	sn.heap_id = below(3) ? 0 : below(2) ? below(64) : rnd();
	sn.pages_count = below(4) ? below(sizeof(pages) + 1) : (uint32_t)rnd();
	sn.pages_ptr = sn.pages_count || below(2) ? fz_ptr(pages) : 0;
	sn.spans_count = below(4) ? below(513) : (uint32_t)rnd();
	sn.spans_ptr = sn.spans_count || below(2) ? fz_ptr(spans) : 0;
	bad |= sn.flags || sn.reserved || (sn.pages_count && !sn.pages_ptr) ||
	       (sn.spans_count && !sn.spans_ptr);
	check_errno("snapshot", ioctl(fd, fz_cmd(SPANALLOC_IOC_SNAPSHOT, sn.size), &sn),
		    bad && fd >= 0);
}

/* Span lengths per class: mostly ones a heap may give, some not. */
static void op_span_pages(void)
{
	struct spanalloc_span_pages sp;
	bool bad = false;
	int slot, fd = heap_fd(&slot);

	memset(&sp, 0, sizeof(sp));
	sp.size = fz_size(sizeof(sp), SPANALLOC_SPAN_PAGES_SIZE_VER0, &bad);
	sp.flags = below(20) ? 0 : 1u << below(32);
	if (!below(20))
		sp.reserved[below(sizeof(sp.reserved))] = (uint8_t)(1 + below(255));
	if (!below(20))
		sp.pages[0] = (uint8_t)(1 + below(255));
	for (unsigned int c = 1; c < SPANALLOC_NUM_CLASSES; c++) {
		if (below(2))
			continue;
		sp.pages[c] = (uint8_t)(below(16) ? fz_classes[c].npages + below(4) :
					rnd());
		bad |= sp.pages[c] && !fz_pages_ok(c << 1, sp.pages[c]);
	}
	for (unsigned int i = 0; i < sizeof(sp.reserved); i++)
		bad |= sp.reserved[i] != 0;
	bad |= sp.flags || sp.pages[0];
	check_errno("set_span_pages",
		    ioctl(fd, fz_cmd(SPANALLOC_IOC_SET_SPAN_PAGES, sp.size), &sp),
		    bad && fd >= 0);
}

static void op_limit_release(void)
{
	int slot, fd = heap_fd(&slot);
	bool bad = false;

	if (below(2)) {
		struct spanalloc_limit lim = { .size = fz_size(sizeof(lim), SPANALLOC_LIMIT_SIZE_VER0, &bad) };

		lim.flags = below(20) ? 0 : 1;
		lim.limit = below(2) ? (uint64_t)(64 + below(1024)) << 20 : rnd();
		bad |= lim.flags || !lim.limit;
		check_errno("set_limit", ioctl(fd, SPANALLOC_IOC_SET_LIMIT, &lim), bad && fd >= 0);
	} else {
		struct spanalloc_release rel = { .size = fz_size(sizeof(rel), SPANALLOC_RELEASE_SIZE_VER0, &bad) };

		rel.flags = below(20) ? 0 : 1;
		bad |= rel.flags;
		check_errno("release", ioctl(fd, SPANALLOC_IOC_RELEASE, &rel), bad && fd >= 0);
	}
}

static void op_bad_cmd(void)
{
	char buf[256] = "";
	int slot, fd = heap_fd(&slot);
	unsigned long cmd;

	switch (below(4)) {
	case 0:
		cmd = _IOC(below(4), SPANALLOC_IOC_MAGIC, 6 + below(250), below(256));
		break;
	case 1:	/* a known number with the wrong size or direction */
		cmd = _IOC(below(4), SPANALLOC_IOC_MAGIC, below(6), below(512));
		break;
	default: {
		/* other drivers' magics; not 'T', 'f' or 0x94, which the VFS serves */
		static const unsigned char magic[] = { 0x01, 0xb5, 0xb7, 0xff };

		cmd = _IOC(below(4), magic[below(4)], below(256), below(256));
	}
	}
	check_errno("unknown ioctl", ioctl(fd, cmd, buf), false);
}

/*
 * Mapping calls on and around a heap's arenas. Calls that take memory away
 * or replace it stay inside the heap: past its ends live this process's
 * own stacks and libraries.
 */
static void op_layout_locked(struct fz_heap *h);

static void op_layout(void)
{
	struct fz_heap *h = &heaps[below(NHEAPS)];

	pthread_rwlock_rdlock(&h->lock);
	op_layout_locked(h);
	pthread_rwlock_unlock(&h->lock);
}

static void op_layout_locked(struct fz_heap *h)
{
	uintptr_t base = atomic_load(&h->base);
	size_t len = atomic_load(&h->len);
	uintptr_t a;
	size_t n;
	void *p;

	if (!base)
		return;
	a = base + below(len / PAGE) * PAGE;
	n = (1 + below(below(4) ? 16 : 4096)) * PAGE;
	if (n > base + len - a)
		n = base + len - a;
	switch (below(7)) {
	case 0:
		/* around: a page on either side too, but never destructive */
		if (!below(4))
			madvise((void *)(a == base ? a - PAGE : a), n + PAGE,
				below(2) ? MADV_WILLNEED : MADV_COLD);
		else
			madvise((void *)a, n, below(2) ? MADV_DONTNEED : MADV_FREE);
		break;
	case 1:
		mprotect((void *)a, n, below(3) ? PROT_READ : (below(2) ? PROT_NONE :
			 PROT_READ | PROT_WRITE | PROT_EXEC));
		break;
	case 2:
		mprotect((void *)a, n, PROT_READ | PROT_WRITE);
		break;
	case 3:
		if (!below(4))
			munmap((void *)a, n);
		break;
	case 4:
		p = mremap((void *)a, n, below(2) ? n / 2 + PAGE : n * 2,
			   below(2) ? MREMAP_MAYMOVE : 0);
		(void)p;
		break;
	case 5:
		if (!below(4))
			mmap((void *)a, n, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		break;
	default:
		madvise((void *)a, n, below(2) ? MADV_WILLNEED : MADV_HUGEPAGE);
		touch(a, PAGE);
	}
}

/*
 * In a forked child: a new heap adopts the inherited mapping, with spans
 * that are partly sensible (class lengths, in the mapping) and partly
 * not. Whatever the kernel accepts, the parent's heap must stay as it was
 * (the parent goes on using it) and the child may use its new heap.
 */
static void fz_adopt(uintptr_t base, size_t len)
{
	struct spanalloc_adopt_span d[16];
	struct spanalloc_adopt ad;
	struct spanalloc_exchange ex;
	struct spanalloc_span got;
	bool bad = false;
	int fd = open("/dev/spanalloc", O_RDWR | O_CLOEXEC), r;
	uint32_t n = (uint32_t)below(17);

	if (fd < 0)
		return;
	for (uint32_t i = 0; i < n; i++) {
		uint16_t sc = (uint16_t)below(SPANALLOC_NUM_SPANCLASSES + 2);
		uint32_t np = sc >= 2 && sc < SPANALLOC_NUM_SPANCLASSES && below(4) ?
			      fz_classes[sc >> 1].npages : (uint32_t)below(40);

		d[i] = (struct spanalloc_adopt_span){
			.addr = below(8) ? base + below(len / PAGE) * PAGE : rnd(),
			.npages = np, .spanclass = sc, .op = (uint16_t)below(4),
			.handle = rnd(),
		};
	}
	memset(&ad, 0, sizeof(ad));
	ad.size = fz_size(sizeof(ad), SPANALLOC_ADOPT_SIZE_VER0, &bad);
	ad.addr = below(8) ? base : rnd();
	ad.len = below(8) ? len : rnd();
	ad.spans_ptr = below(8) ? (uintptr_t)d : fz_ptr(d);
	ad.span_count = below(8) ? n : (uint32_t)rnd();
	ad.flags = below(16) ? 0 : (uint32_t)rnd();
	r = ioctl(fd, fz_cmd(SPANALLOC_IOC_ADOPT, ad.size), &ad);
	if (r == 0) {
		/* the new heap works: a span of the smallest class */
		memset(&ex, 0, sizeof(ex));
		ex.size = sizeof(ex);
		ex.get_ptr = (uintptr_t)&got;
		ex.get_count = 1;
		ex.get_spanclass = SPANALLOC_SPANCLASS(1, 0);
		if (ioctl(fd, SPANALLOC_IOC_EXCHANGE, &ex) == 0 && ex.get_done == 1)
			touch(got.addr, PAGE);
	}
	close(fd);
}

static void op_fork(void)
{
	int slot, fd = heap_fd(&slot), st;
	pid_t pid;

	if (below(8))
		return;
	/* the child gets a copy of a consistent slot */
	pthread_rwlock_rdlock(&heaps[slot].lock);
	pid = fork();
	if (pid > 0)
		pthread_rwlock_unlock(&heaps[slot].lock);
	if (pid == 0) {
		struct spanalloc_info info = { .size = sizeof(info) };
		uintptr_t base = atomic_load(&heaps[slot].base);

		/* a victim killed now must not leave us holding its heaps */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(0);

		if (fd >= 0 && ioctl(fd, SPANALLOC_IOC_INFO, &info) == 0)
			_exit(3);
		if (fd >= 0 && mmap(NULL, SPANALLOC_ARENA_SIZE, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE, fd, 0) != MAP_FAILED)
			_exit(4);
		if (base)
			touch(base, PAGE);	/* its own copy */
		if (base && below(2))
			fz_adopt(base, atomic_load(&heaps[slot].len));
		_exit(0);
	}
	if (pid > 0) {
		waitpid(pid, &st, 0);
		if (WIFEXITED(st) && WEXITSTATUS(st) >= 3)
			finding("a forked child could use its parent's heap (%d)",
				WEXITSTATUS(st));
	}
}

static void heap_open(int slot)
{
	struct fz_heap *h = &heaps[slot];
	int fd = open("/dev/spanalloc", O_RDWR | O_CLOEXEC);
	size_t len = (size_t)(1 + below(4)) * SPANALLOC_ARENA_SIZE;
	void *p = MAP_FAILED;

	if (fd < 0)
		return;
	if (below(6))
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	atomic_fetch_add(&h->gen, 1);
	atomic_store(&h->len, len);
	atomic_store(&h->base, p == MAP_FAILED ? 0 : (uintptr_t)p);
	atomic_store(&h->fd, fd);
}

/* Closes a heap under the other threads' feet and opens a new one. */
static void op_reopen(void)
{
	int slot = below(NHEAPS);
	struct fz_heap *h = &heaps[slot];
	int fd;

	if (below(16))
		return;
	pthread_rwlock_wrlock(&h->lock);
	atomic_fetch_add(&h->gen, 1);
	fd = atomic_exchange(&h->fd, -1);
	if (fd >= 0)
		close(fd);
	if (below(2)) {
		uintptr_t base = atomic_exchange(&h->base, 0);

		if (base)
			munmap((void *)base, atomic_load(&h->len));
	}
	heap_open(slot);
	pthread_rwlock_unlock(&h->lock);
}

static void (*const ops[])(void) = {
	op_info, op_exchange, op_exchange, op_exchange, op_exchange, op_large,
	op_large, op_stats, op_limit_release, op_bad_cmd, op_layout, op_layout,
	op_fork, op_reopen, op_snapshot, op_span_pages,
};

struct worker {
	pthread_t tid;
	uint64_t seed;
	double until;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Workers start together, once every thread exists: a thread stack mapped
 * while others already unmap parts of a heap could land in such a hole,
 * where the next layout call on that heap would destroy it.
 */
static pthread_barrier_t start_line;

static void *worker(void *arg)
{
	struct worker *w = arg;

	rng = w->seed | 1;
	pthread_barrier_wait(&start_line);
	w->until += now();
	while (now() < w->until) {
		for (int i = 0; i < 64; i++) {
			cur_op = (int)below(sizeof(ops) / sizeof(ops[0]));
			ops[cur_op]();
		}
		atomic_fetch_add(&stats_shm[0], 64);
	}
	return NULL;
}

static void victim(uint64_t seed, int nthreads, double seconds)
{
	struct worker w[64];
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	rng = seed | 1;
	for (int i = 0; i < NHEAPS; i++) {
		pthread_rwlock_init(&heaps[i].lock, NULL);
		atomic_store(&heaps[i].fd, -1);
		if (below(4))
			heap_open(i);
	}
	pthread_barrier_init(&start_line, NULL, nthreads);
	for (int i = 0; i < nthreads; i++) {
		w[i].seed = seed * 7919 + i + 1;
		w[i].until = seconds;
		pthread_create(&w[i].tid, NULL, worker, &w[i]);
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(w[i].tid, NULL);
	/* half of the victims exit with their heaps still open */
	if (below(2))
		for (int i = 0; i < NHEAPS; i++)
			if (atomic_load(&heaps[i].fd) >= 0)
				close(atomic_load(&heaps[i].fd));
	_exit(0);
}

/*
 * A heap is freed when the last reference to its file goes, and that can
 * come after the victim is reaped: a victim killed mid-fork leaves its child
 * (which shares the fd table) to be reparented and to exit on its own, and a
 * mm pinned by the scavenger is put from a workqueue, which defers the fput.
 * So the counters get a few seconds to settle; a real leak never does.
 */
#define LEAK_SETTLE_S 10.0

static int leak_check(void)
{
	struct spanalloc_info info;
	double start = now(), waited;
	int fd, bad;

	for (;;) {
		memset(&info, 0, sizeof(info));
		info.size = sizeof(info);
		fd = open("/dev/spanalloc", O_RDWR | O_CLOEXEC);
		if (fd < 0 || ioctl(fd, SPANALLOC_IOC_INFO, &info)) {
			perror("fuzz: /dev/spanalloc");
			return 1;
		}
		close(fd);
		/* this probe itself is the one heap still open */
		bad = info.global_heaps != 1 || info.global_spans || info.global_pages ||
		      info.global_arenas;
		waited = now() - start;
		if (!bad || waited > LEAK_SETTLE_S)
			break;
		usleep(50 * 1000);
	}
	printf("fuzz: module counters after the run (%.2f s to settle): heaps %llu (this probe) spans %llu pages %llu arenas %llu%s\n",
	       waited, (unsigned long long)info.global_heaps,
	       (unsigned long long)info.global_spans, (unsigned long long)info.global_pages,
	       (unsigned long long)info.global_arenas, bad ? ": LEAK" : "");
	return bad;
}

int main(int argc, char **argv)
{
	double seconds = 30, end;
	int threads = 4, rounds = 0, killed = 0, crashed = 0;
	uint64_t seed = (uint64_t)time(NULL);

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--verbose"))
			verbose = 1;
		else {
			fprintf(stderr, "usage: fuzz [--seconds N] [--threads T] [--seed S] [--verbose]\n");
			return 2;
		}
	}
	if (threads < 1 || threads > 64)
		threads = 4;
	{
		struct spanalloc_info info = { .size = sizeof(info) };
		int fd = open("/dev/spanalloc", O_RDWR | O_CLOEXEC);

		if (fd < 0 || ioctl(fd, SPANALLOC_IOC_INFO, &info)) {
			fprintf(stderr, "fuzz: no usable /dev/spanalloc: load spanalloc.ko (scripts/vm-run does)\n");
			return 2;
		}
		max_batch = info.max_batch;
		close(fd);
	}
	stats_shm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ro_page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (stats_shm == MAP_FAILED || ro_page == MAP_FAILED)
		return 2;
	printf("fuzz: seed %llu, %d threads, %.0f s\n", (unsigned long long)seed, threads, seconds);
	fflush(stdout);
	rng = seed | 1;
	end = now() + seconds;
	while (now() < end) {
		double left = end - now(), run = 0.2 + (double)below(2000) / 1000;
		uint64_t vseed = rnd();
		pid_t pid;
		int st;

		if (run > left)
			run = left;
		pid = fork();
		if (pid < 0)
			break;
		if (!pid)
			victim(vseed, threads, run);
		rounds++;
		if (below(3) == 0) {
			/* die at a random point, mid-call included */
			usleep(below((uint64_t)(run * 1e6)));
			kill(pid, SIGKILL);
			killed++;
		}
		waitpid(pid, &st, 0);
		if (WIFSIGNALED(st) && WTERMSIG(st) != SIGKILL) {
			crashed++;
			finding("victim (seed %llu) died of signal %d", (unsigned long long)vseed,
				WTERMSIG(st));
		}
		if (verbose)
			printf("fuzz: round %d seed %llu: %s\n", rounds, (unsigned long long)vseed,
			       WIFSIGNALED(st) ? "killed" : "exited");
	}
	int leaked = leak_check();

	printf("fuzz: %llu iterations in %d rounds (%d victims killed mid-run), %llu faults caught on broken layouts, %llu findings\n",
	       (unsigned long long)stats_shm[0], rounds, killed,
	       (unsigned long long)stats_shm[2], (unsigned long long)stats_shm[1]);
	return stats_shm[1] || leaked || crashed ? 1 : 0;
}
