// SPDX-License-Identifier: MIT
/*
 * heap: this process's heap as the library sees it: the device and its
 * mapping, the page map (heap page -> struct sa_uspan), the pools that
 * struct sa_uspan and tiny masks come from, and the system calls.
 *
 * Initialising calls no function that may allocate or take a C library
 * lock a malloc caller may hold (no stdio, no strerror(), which takes the
 * locale's lock): it runs inside malloc() in libspanalloc-malloc.
 *
 * sa_init() refuses a module that speaks another ABI or was built from
 * another size class table: objects would be carved at the wrong offsets
 * otherwise. The checks are by number (ABI version, the table's hash), and
 * the messages say which side to rebuild.
 *
 * The page map is one slot per heap page, reserved as untouched anonymous
 * memory, so only the part that covers used pages costs memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "internal.h"

struct sa_uspan *_Atomic sa_chunks[SA_MAX_CHUNKS];

struct sa_global sa_g = {
	.fd = -1,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.held_pages = SA_HELD_PAGES,
	.held_decay_ms = SA_HELD_DECAY_MS,
	.handoff = 1,
};

/* A number from lo to hi in environment variable name into *to, if set. */
static void sa_read_env_u32(const char *name, unsigned long lo, unsigned long hi,
			    _Atomic uint32_t *to)
{
	const char *e = getenv(name);
	int saved = errno, bad;
	char *end;
	unsigned long v;

	if (!e || !*e)
		return;
	errno = 0;
	v = strtoul(e, &end, 10);
	bad = *end || errno;
	errno = saved;	/* the malloc that got here may succeed */
	if (bad || v < lo || v > hi)
		fprintf(stderr, "spanalloc: %s=%s: not a number from %lu to %lu; ignored\n",
			name, e, lo, hi);
	else
		atomic_store(to, (uint32_t)v);
}

static void sa_read_env(void)
{
	sa_read_env_u32("SPANALLOC_HELD_PAGES", 0, SA_HELD_PAGES_MAX, &sa_g.held_pages);
	sa_read_env_u32("SPANALLOC_HELD_DECAY_MS", 1, SA_HELD_DECAY_MS_MAX, &sa_g.held_decay_ms);
	sa_read_env_u32("SPANALLOC_HANDOFF", 0, 1, &sa_g.handoff);
}

static void sa_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sa_g.msg, sizeof(sa_g.msg), fmt, ap);
	va_end(ap);
	sa_g.err = err;
}

static void sa_tcache_exit(void *arg)
{
	sa_tcache_destroy(arg);
}

/*
 * Maps the heap: len bytes of the device, which the module places on an
 * arena boundary. A process whose mappings are placed for it (valgrind
 * maps with MAP_FIXED where it sees fit) gets EINVAL from the module for
 * an unaligned address: then the heap goes into an aligned hole reserved
 * here first. No hole that large is ENOMEM, as for the mapping itself;
 * EINVAL from the mapping into the hole is the module's refusal.
 */
static void *sa_heap_map(int fd, size_t len)
{
	const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_NORESERVE;
	uintptr_t lo, at;
	void *map = mmap(NULL, len, prot, flags, fd, 0), *hole;

	if (map != MAP_FAILED || errno != EINVAL)
		return map;
	hole = mmap(NULL, len + SPANALLOC_ARENA_SIZE, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (hole == MAP_FAILED) {
		errno = ENOMEM;		/* valgrind says EINVAL */
		return hole;
	}
	lo = (uintptr_t)hole;
	at = (lo + SPANALLOC_ARENA_SIZE - 1) & ~((uintptr_t)SPANALLOC_ARENA_SIZE - 1);
	map = mmap((void *)at, len, prot, flags | MAP_FIXED, fd, 0);
	if (map == MAP_FAILED) {
		int e = errno;

		munmap(hole, len + SPANALLOC_ARENA_SIZE);
		errno = e;
		return map;
	}
	if (at > lo)
		munmap(hole, at - lo);
	if (lo + len + SPANALLOC_ARENA_SIZE > at + len)
		munmap((void *)(at + len), lo + len + SPANALLOC_ARENA_SIZE - at - len);
	return map;
}

int sa_heap_init(void)
{
	const char *dev = getenv("SPANALLOC_DEVICE");
	struct spanalloc_info info;
	uint64_t len;
	void *map;
	int fd;

	sa_sizeclass_init();
	sa_read_env();
	sa_prof_init();
	if (!dev || !*dev)
		dev = "/dev/spanalloc";
	/* a forked child opens it again (fork.c) */
	snprintf(sa_g.dev, sizeof(sa_g.dev), "%s", dev);
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		sa_fail(e, "spanalloc: cannot open %s: %s%s", dev, strerrordesc_np(e),
			e == ENOENT ? " (is spanalloc.ko loaded? see README, \"Loading the module\")" :
			e == EACCES ? " (no permission: see README, \"Device permissions\")" : "");
		return -e;
	}
	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	if (ioctl(fd, SPANALLOC_IOC_INFO, &info) < 0) {
		int e = errno;

		sa_fail(e, "spanalloc: %s does not answer the info ioctl (%s): is it spanalloc.ko?",
			dev, strerrordesc_np(e));
		close(fd);
		return -e;
	}
	if (info.abi_version != SPANALLOC_ABI_VERSION ||
	    info.page_size != SPANALLOC_PAGE_SIZE ||
	    info.arena_size != SPANALLOC_ARENA_SIZE) {
		sa_fail(EPROTO, "spanalloc: the module speaks ABI %u (pages %u B), this library ABI %u (pages %u B): rebuild the library and the module from one source tree",
			info.abi_version, info.page_size, SPANALLOC_ABI_VERSION,
			(unsigned int)SPANALLOC_PAGE_SIZE);
		close(fd);
		return -EPROTO;
	}
	if (info.class_hash != SPANALLOC_CLASS_HASH ||
	    info.num_classes != SPANALLOC_NUM_CLASSES) {
		sa_fail(EPROTO, "spanalloc: the module's size class table (hash %#llx) differs from this library's (%#llx): rebuild both from one source tree",
			(unsigned long long)info.class_hash,
			(unsigned long long)SPANALLOC_CLASS_HASH);
		close(fd);
		return -EPROTO;
	}
	/*
	 * The mapping is a reservation: MAP_NORESERVE, so that it is not
	 * charged to the commit limit before it is used. Where the system
	 * charges it all the same (vm.overcommit_memory=2), or has no hole
	 * that large (valgrind's address space), a smaller one.
	 */
	len = info.max_heap_limit;
	while ((map = sa_heap_map(fd, len)) == MAP_FAILED &&
	       errno == ENOMEM && len / 2 >= SPANALLOC_ARENA_SIZE)
		len = len / 2 / SPANALLOC_ARENA_SIZE * SPANALLOC_ARENA_SIZE;
	if (map == MAP_FAILED) {
		int e = errno;

		sa_fail(e, "spanalloc: cannot map the heap (%llu MiB): %s",
			(unsigned long long)(len >> 20), strerrordesc_np(e));
		close(fd);
		return -e;
	}
	info.max_heap_limit = len;
	sa_g.npages = (uint32_t)(info.max_heap_limit >> SA_PAGE_SHIFT);
	sa_g.pagemap = mmap(NULL, sa_g.npages * sizeof(*sa_g.pagemap),
			    PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sa_g.pagemap == MAP_FAILED) {
		int e = errno;

		sa_fail(e, "spanalloc: cannot reserve the page map: %s", strerrordesc_np(e));
		munmap(map, info.max_heap_limit);
		close(fd);
		return -e;
	}
	if (pthread_key_create(&sa_g.key, sa_tcache_exit)) {
		sa_fail(EAGAIN, "spanalloc: out of thread keys");
		munmap(sa_g.pagemap, sa_g.npages * sizeof(*sa_g.pagemap));
		sa_g.pagemap = NULL;
		munmap(map, info.max_heap_limit);
		close(fd);
		return -EAGAIN;
	}
	sa_heap_set_span_pages(fd);
	sa_g.fd = fd;
	sa_g.base = (uintptr_t)map;
	sa_g.maplen = info.max_heap_limit;
	sa_fork_init();
	return 0;
}

/*
 * Asks the heap of fd for the span lengths this library wants
 * (sa_span_pages_wanted). A module without the call (-ENOTTY) keeps the
 * table's, which serve as well: every span says how long it is.
 */
void sa_heap_set_span_pages(int fd)
{
	struct spanalloc_span_pages sp = { .size = sizeof(sp) };
	int saved = errno;

	for (unsigned int c = 1; c < SPANALLOC_NUM_CLASSES; c++) {
		uint32_t p = sa_span_pages_wanted(c);

		sp.pages[c] = (uint8_t)(p == sa_classes[c].npages ? 0 : p);
	}
	(void)ioctl(fd, SPANALLOC_IOC_SET_SPAN_PAGES, &sp);
	errno = saved;
}

/* Memory for the library's own records, never handed to the user. */
static void *sa_meta_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

#define SA_TINY_TABLE	(SPANALLOC_PAGE_SIZE / SA_TINY_SIZE * sizeof(sa_tiny_mask))

/*
 * Tables that come and go with span records (tiny block masks; pointer
 * maps of typed objects) are fixed-size blocks cut from SA_META_CHUNK
 * chunks as they are first needed, so that a chunk's pages are touched
 * only as its blocks are, and chained through their first word while
 * free. Caller holds sa_g.lock.
 */
static void *sa_block_get(struct sa_blocks *bl, size_t each)
{
	void *b = bl->free;

	if (b) {
		memcpy(&bl->free, b, sizeof(void *));
	} else {
		if (bl->fresh == bl->end) {
			char *chunk = sa_meta_alloc(SA_META_CHUNK);

			if (!chunk)
				return NULL;
			sa_g.table_chunks++;
			bl->fresh = chunk;
			bl->end = chunk + SA_META_CHUNK / each * each;
		}
		b = bl->fresh;
		bl->fresh += each;
	}
	memset(b, 0, each);
	return b;
}

static void sa_block_put(struct sa_blocks *bl, void *b)
{
	memcpy(b, &bl->free, sizeof(void *));
	bl->free = b;
}

/*
 * A pointer map per object; made on a span's first typed allocation, as
 * long as the bitmaps of the record's kind (a pointer per object they
 * cover): 512 bytes for spans of at most 64 objects, not the 8 KiB of
 * SPANALLOC_MAX_NELEMS pointers, a quarter of a 4-page span of 1 KiB
 * objects.
 */
static size_t sa_types_table_bytes(uint8_t kind)
{
	return (size_t)sa_bits_cap[kind] * 64 * sizeof(void *);
}

void *sa_types_table_alloc(uint8_t kind)
{
	size_t len = sa_types_table_bytes(kind);
	void *t;

	pthread_mutex_lock(&sa_g.lock);
	t = sa_block_get(&sa_g.type_blocks[kind], len);
	if (t)
		sa_g.type_bytes += len;
	pthread_mutex_unlock(&sa_g.lock);
	return t;
}

/*
 * Span records come from the pool (sa_g.free_uspans, under sa_g.lock)
 * SA_SPARE_BATCH at a time into the calling thread's spare list and go
 * back there first, so that getting a span or handing one back EMPTY takes
 * no lock in steady state (as Go's mheap serves pages from a per-P cache).
 * Pool and spare lists are per kind of bitmaps (internal.h): a record's
 * bitmaps are made with it, so a span takes a record of its kind. Only the
 * tables some spans carry (tiny masks, pointer maps) still come from and
 * go to the pool under the lock. sa_pool_locked counts the times the lock
 * was taken for either (lib_test checks that it is rare).
 */
_Atomic uint64_t sa_pool_locked;

/*
 * Caller holds sa_g.lock: a record of the kind from the pool, or the next
 * one of its kind's newest chunk, or the first of a new chunk (and its
 * bitmaps); NULL if none. A chunk's records are made one by one as they
 * are needed, so that its untouched pages cost nothing: the collector,
 * which walks every chunk, reads an unmade record as zeroes, SA_WHERE_NONE.
 */
static struct sa_uspan *sa_pool_take(uint8_t kind)
{
	size_t ext = SA_BITS_EXT(kind);
	struct sa_uspan *s = sa_g.free_uspans[kind];

	if (s) {
		sa_g.free_uspans[kind] = s->next;
		return s;
	}
	if (sa_g.fresh[kind] == sa_g.fresh_end[kind]) {
		uint32_t n = atomic_load(&sa_g.nchunks);
		struct sa_uspan *chunk;
		char *bits = NULL;

		chunk = n < sizeof(sa_chunks) / sizeof(sa_chunks[0]) ?
			sa_meta_alloc(SA_META_CHUNK) : NULL;
		if (chunk && ext && !(bits = sa_meta_alloc(SA_USPANS_PER_CHUNK * ext))) {
			munmap(chunk, SA_META_CHUNK);
			chunk = NULL;
		}
		if (!chunk)
			return NULL;
		sa_g.meta_mapped += SA_META_CHUNK + SA_USPANS_PER_CHUNK * ext;
		sa_g.fresh[kind] = chunk;
		sa_g.fresh_end[kind] = chunk + SA_USPANS_PER_CHUNK;
		sa_g.fresh_bits[kind] = bits;
		/* published: walkers see zeroes, or records made before a release */
		atomic_store_explicit(&sa_chunks[n], chunk, memory_order_release);
		atomic_store_explicit(&sa_g.nchunks, n + 1, memory_order_release);
	}
	s = sa_g.fresh[kind]++;
	sa_span_bind_bits(s, kind, sa_g.fresh_bits[kind]);
	if (ext)
		sa_g.fresh_bits[kind] += ext;
	return s;
}

/* Caller holds sa_g.lock. */
static void sa_pool_put(struct sa_uspan *s)
{
	s->next = sa_g.free_uspans[s->kind];
	sa_g.free_uspans[s->kind] = s;
}

static void sa_pool_lock(void)
{
	pthread_mutex_lock(&sa_g.lock);
	atomic_fetch_add_explicit(&sa_pool_locked, 1, memory_order_relaxed);
}

/* A record for a span of npages pages of spanclass, its bitmaps that long. */
struct sa_uspan *sa_uspan_alloc(uint16_t spanclass, uint32_t npages)
{
	uint8_t kind = sa_bits_kind(sa_span_nelems(spanclass, npages));
	struct sa_tcache *c = sa_tc;
	struct sa_uspan *s = NULL;
	bool locked = false;

	/* SA_TINY_TABLE covers one page: the library never asks for longer */
	if (spanclass == SA_TINY_SC && npages != 1) {
		fprintf(stderr, "spanalloc: the kernel handed out a tiny span of %u pages; aborting\n",
			npages);
		abort();
	}
	if (c && c->spare[kind]) {
		s = c->spare[kind];
		c->spare[kind] = s->next;
		c->nspare[kind]--;
	} else {
		sa_pool_lock();
		locked = true;
		s = sa_pool_take(kind);
		for (uint32_t i = 1; c && s && i < SA_SPARE_BATCH; i++) {
			struct sa_uspan *x = sa_pool_take(kind);

			if (!x)
				break;
			x->next = c->spare[kind];
			c->spare[kind] = x;
			c->nspare[kind]++;
		}
		if (!s)
			goto out;
	}
	s->tiny = NULL;
	if (spanclass == SA_TINY_SC) {
		if (!locked) {
			sa_pool_lock();
			locked = true;
		}
		s->tiny = sa_block_get(&sa_g.tiny_blocks, SA_TINY_TABLE);
		sa_g.tiny_tables += s->tiny != NULL;
		if (!s->tiny) {
			sa_pool_put(s);
			s = NULL;
		}
	}
out:
	if (locked)
		pthread_mutex_unlock(&sa_g.lock);
	return s;
}

void sa_uspan_release(struct sa_uspan *s)
{
	struct sa_tcache *c = sa_tc;
	uint8_t k = s->kind;

	atomic_store_explicit(&s->where, SA_WHERE_NONE, memory_order_release);
	sa_gc_note_inuse(-(int64_t)((uint64_t)s->npages << SA_PAGE_SHIFT));
	atomic_fetch_sub_explicit(&sa_g.meta_inuse, sizeof(*s) + SA_BITS_EXT(k),
				  memory_order_relaxed);
	if (s->types || s->tiny || !c || c->nspare[k] >= SA_SPARE_MAX) {
		sa_pool_lock();
		if (s->types) {
			sa_block_put(&sa_g.type_blocks[k], s->types);
			sa_g.type_bytes -= sa_types_table_bytes(k);
			s->types = NULL;
		}
		if (s->tiny) {
			sa_block_put(&sa_g.tiny_blocks, (void *)s->tiny);
			sa_g.tiny_tables--;
			s->tiny = NULL;
		}
		/* a full spare list goes back to half, with this record */
		while (c && c->nspare[k] > SA_SPARE_MAX / 2) {
			struct sa_uspan *x = c->spare[k];

			c->spare[k] = x->next;
			c->nspare[k]--;
			sa_pool_put(x);
		}
		if (!c || c->nspare[k] >= SA_SPARE_MAX) {
			sa_pool_put(s);
			s = NULL;
		}
		pthread_mutex_unlock(&sa_g.lock);
		if (!s)
			return;
	}
	s->next = c->spare[k];
	c->spare[k] = s;
	c->nspare[k]++;
}

/* c's spare records back to the pool (its thread leaves). Caller holds sa_g.lock. */
void sa_uspan_return_spares(struct sa_tcache *c)
{
	for (uint8_t k = 0; k < SA_BITS_KINDS; k++) {
		while (c->spare[k]) {
			struct sa_uspan *s = c->spare[k];

			c->spare[k] = s->next;
			sa_pool_put(s);
		}
		c->nspare[k] = 0;
	}
}

void sa_pagemap_set(struct sa_uspan *s, struct sa_uspan *val)
{
	uint32_t first = (uint32_t)((s->base - sa_g.base) >> SA_PAGE_SHIFT);

	for (uint32_t p = first; p < first + s->npages; p++)
		atomic_store_explicit(&sa_g.pagemap[p], val, memory_order_release);
}

/*
 * Pages handed back to the kernel may come back to another thread in a new
 * span; the kernel orders that, but ThreadSanitizer cannot see it. Before
 * threads kept spare records, the pool's lock happened to say it; now a release
 * before every return and an acquire after every span got do, in a
 * ThreadSanitizer build only.
 */
#ifdef SA_TSAN
static _Atomic uint64_t sa_kernel_handoff;
static void sa_kernel_order_release(void)
{
	atomic_fetch_add_explicit(&sa_kernel_handoff, 1, memory_order_release);
}

static void sa_kernel_order_acquire(void)
{
	(void)atomic_load_explicit(&sa_kernel_handoff, memory_order_acquire);
}
#else
static void sa_kernel_order_release(void)
{
}

static void sa_kernel_order_acquire(void)
{
}
#endif

static void sa_count_syscall(void)
{
	if (sa_tc)
		SA_STAT_ADD(sa_tc->st.syscalls, 1);
}

/*
 * One exchange: returns nret spans, gets up to nget of spanclass into got[]
 * (*ngot says how many). Returns 0 or -errno; *applied says whether the
 * returns took effect (they do on success and on -ENOMEM).
 */
int sa_kernel_exchange(struct spanalloc_ret *rets, uint32_t nret,
		       uint16_t spanclass, struct spanalloc_span *got,
		       uint32_t nget, uint32_t *ngot, bool *applied)
{
	struct spanalloc_exchange ex = {
		.size = sizeof(ex),
		.ret_ptr = (uintptr_t)rets,
		.ret_count = nret,
		.get_ptr = (uintptr_t)got,
		.get_count = nget,
		.get_spanclass = nget ? spanclass : 0,
	};
	int r;

	sa_count_syscall();
	if (nret)
		sa_kernel_order_release();
	r = ioctl(sa_g.fd, SPANALLOC_IOC_EXCHANGE, &ex);
	*ngot = r == 0 ? ex.get_done : 0;
	if (*ngot)
		sa_kernel_order_acquire();
	*applied = r == 0 || ex.ret_done == nret;
	return r < 0 ? -errno : 0;
}

/* Hands the span handle names back EMPTY; nothing may use its pages after. */
void sa_kernel_return_empty(uint64_t handle)
{
	struct spanalloc_ret r = { .handle = handle, .op = SPANALLOC_RET_EMPTY };
	uint32_t ngot;
	bool applied;

	sa_kernel_exchange(&r, 1, 0, NULL, 0, &ngot, &applied);
}

/*
 * A large object's span is done with: out of the page map, its record
 * back to the pool, its pages back to the kernel.
 */
void sa_large_release(struct sa_uspan *s)
{
	uint64_t handle = s->handle;

	sa_prof_freed(s, 0, 1);
	sa_pagemap_set(s, NULL);
	sa_uspan_release(s);
	sa_kernel_return_empty(handle);
}

int sa_kernel_large(uint32_t npages, bool noscan, struct spanalloc_span *d)
{
	struct spanalloc_large lg = {
		.size = sizeof(lg),
		.flags = noscan ? SPANALLOC_LARGE_NOSCAN : 0,
		.npages = npages,
	};

	sa_count_syscall();
	if (ioctl(sa_g.fd, SPANALLOC_IOC_ALLOC_LARGE, &lg) < 0)
		return -errno;
	sa_kernel_order_acquire();
	*d = lg.span;
	return 0;
}

/*
 * A collected heap: takes the heap's first page, if it is still free, and
 * keeps it, so that no object starts at the heap's base address. That
 * value is everywhere (every page map lookup holds it in a register, and
 * registers end up in the stack slots a conservative scan reads), and the
 * first object of a program is often the root of its first big structure:
 * binary-trees kept its 24 MiB stretch tree alive to the end that way.
 * The page is the kernel's large span without a record here: no pointer
 * resolves to it.
 */
void sa_heap_take_base(void)
{
	struct spanalloc_span d;

	if (sa_kernel_large(1, true, &d) || d.addr == sa_g.base)
		return;
	sa_kernel_return_empty(d.handle);
}

long long sa_trim(void)
{
	struct spanalloc_release rel = { .size = sizeof(rel) };

	if (sa_init())
		return -1;
	/* the caller's spans kept aside hold free pages too */
	if (sa_tc) {
		sa_safe_enter(sa_tc);
		sa_tcache_return_held(sa_tc);
		sa_safe_exit(sa_tc);
	}
	sa_count_syscall();
	if (ioctl(sa_g.fd, SPANALLOC_IOC_RELEASE, &rel) < 0)
		return -1;
	return (long long)rel.released;
}

int sa_kernel_stats(struct spanalloc_stats *st,
		    struct spanalloc_class_stats *classes)
{
	if (sa_init())
		return -1;
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	if (classes) {
		st->classes_ptr = (uintptr_t)classes;
		st->classes_count = SA_NSC;
	}
	return ioctl(sa_g.fd, SPANALLOC_IOC_STATS, st) < 0 ? -1 : 0;
}

int sa_get_meta_stats(struct sa_meta_stats *m, size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct sa_meta_stats st = { 0 };
	struct sa_tcache *self = sa_tc;
	uint64_t caches = 0;

	if (sa_init())
		return -1;
	st.span_records = atomic_load_explicit(&sa_g.meta_inuse, memory_order_relaxed);
	st.span_bytes = atomic_load_explicit(&sa_gc.heap_inuse, memory_order_relaxed);
	st.page_map = st.span_bytes / SA_PAGE_SIZE * sizeof(*sa_g.pagemap);
	/* a collection must not stop us holding the lock its sweep takes */
	if (self)
		sa_safe_enter(self);
	pthread_mutex_lock(&sa_g.lock);
	st.tiny_masks = sa_g.tiny_tables * SA_TINY_TABLE;
	st.type_maps = sa_g.type_bytes;
	for (struct sa_tcache *c = sa_g.caches; c; c = c->next)
		caches++;
	st.mapped = sa_g.meta_mapped + sa_g.table_chunks * SA_META_CHUNK;
	pthread_mutex_unlock(&sa_g.lock);
	if (self)
		sa_safe_exit(self);
	/* each cache is a mapping of its own */
	st.thread_caches = caches * ((sizeof(struct sa_tcache) + page - 1) / page * page);
	st.mapped += st.thread_caches;
	st.total = st.span_records + st.tiny_masks + st.type_maps + st.page_map +
		   st.thread_caches;
	if (size) {
		/* a newer caller's longer struct: what this library lacks is 0 */
		memcpy(m, &st, size < sizeof(st) ? size : sizeof(st));
		if (size > sizeof(st))
			memset((char *)m + sizeof(st), 0, size - sizeof(st));
	}
	return 0;
}
