// SPDX-License-Identifier: MIT
/*
 * override: libspanalloc-malloc, the C library's allocator replaced by
 * spanalloc for a whole program (LD_PRELOAD=libspanalloc-malloc.so, or
 * linked in): the glibc malloc family, its __libc_* aliases and the C++
 * operators new and delete in every form. Only this file is added to
 * libspanalloc to make it; it owns the choice between spanalloc and glibc
 * and the few allocations made before that choice is known.
 *
 * Start-up. The first call initialises the heap, whoever makes it and
 * whenever (the dynamic linker, a constructor, another library's init):
 * nothing here depends on constructors having run. Initialising must not
 * call malloc, but the C library may (pthread_atfork and pthread keys
 * grow tables with it): a call made by the initialising thread from
 * inside the initialisation is served from a small static arena, whose
 * objects are never reused and which free() recognises. Other threads
 * wait for the initialisation to end.
 *
 * Without the module (or with one that does not match), the reason is
 * printed once and every call goes to glibc's allocator, found with
 * dlsym(RTLD_NEXT): a program never fails to start because /dev/spanalloc
 * is missing, unless SPANALLOC_REQUIRE=1 asks for exactly that.
 *
 * Pointers: free() and realloc() of a pointer neither the heap nor the
 * start-up arena handed out never write to it: it is reported once and
 * left alone (glibc would abort or corrupt its heap). A double free inside
 * the heap aborts, as glibc's checks do.
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "fastpath.h"

enum { SA_MODE_UNKNOWN, SA_MODE_SPANALLOC, SA_MODE_GLIBC };

static _Atomic int sa_mode;
static pthread_once_t sa_override_once = PTHREAD_ONCE_INIT;
static __thread int sa_initialising __attribute__((tls_model("initial-exec")));

/* glibc's allocator, when the heap is not available. */
static struct {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void *(*memalign)(size_t, size_t);
	size_t (*usable)(void *);
	int (*trim)(size_t);
} sa_libc;

/* The start-up arena: bump allocation, a 16-byte header holding the size. */
#define SA_BOOT_SIZE	(256 * 1024)
static _Alignas(64) char sa_boot[SA_BOOT_SIZE];
static _Atomic size_t sa_boot_used;

static void sa_say(const char *msg)
{
	if (write(2, msg, strlen(msg)) < 0)
		return;
}

/* NULL (ENOMEM) when the arena cannot hold it: it is for the C library's few needs. */
static void *sa_boot_alloc(size_t size, size_t align)
{
	uintptr_t base = (uintptr_t)sa_boot, at;
	size_t old, need;

	if (align < 16)
		align = 16;
	if (size > SA_BOOT_SIZE || align > SA_BOOT_SIZE / 4)
		goto full;
	old = atomic_load(&sa_boot_used);
	do {
		/* aligned as an address, not as an offset into the arena */
		at = (base + old + 16 + align - 1) & ~(uintptr_t)(align - 1);
		need = at - base + size;
		if (need > SA_BOOT_SIZE)
			goto full;
	} while (!atomic_compare_exchange_weak(&sa_boot_used, &old, need));
	memcpy((void *)(at - sizeof(size_t)), &size, sizeof(size_t));
	return (void *)at;
full:
	errno = ENOMEM;
	return NULL;
}

static bool sa_is_boot(const void *p)
{
	return (const char *)p >= sa_boot && (const char *)p < sa_boot + SA_BOOT_SIZE;
}

static size_t sa_boot_size(const void *p)
{
	size_t size;

	memcpy(&size, (const char *)p - sizeof(size_t), sizeof(size_t));
	return size;
}

static void *sa_next(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);

	if (!f) {
		sa_say("spanalloc: the heap is not available and glibc's allocator cannot be found; aborting\n");
		abort();
	}
	return f;
}

/*
 * Where the heap could not start, every malloc still begins the fast
 * path, which raises and lowers in_fast on the thread's cache before it
 * finds no span there (it reads the span inside that region: handoff.c).
 * On the one shared sa_tc_none, every thread would write the same cache
 * line twice per call: threads served by glibc take one of these
 * instead, by thread id. Never read: no span, no stop, and no tiny block
 * (sa_override_init marks that before it publishes glibc's mode, so that
 * the array stays in .bss).
 */
#define SA_GLIBC_CACHES	16
static struct sa_tcache sa_tc_glibc[SA_GLIBC_CACHES];

static void sa_override_init(void)
{
	const char *req = getenv("SPANALLOC_REQUIRE");
	char msg[400];

	sa_initialising = 1;
	if (sa_init() == 0) {
		atomic_store(&sa_mode, SA_MODE_SPANALLOC);
		sa_initialising = 0;
		return;
	}
	snprintf(msg, sizeof(msg), "%s; %s\n", sa_strerror(),
		 req && !strcmp(req, "1") ? "SPANALLOC_REQUIRE=1: aborting" :
		 "using glibc's malloc instead (SPANALLOC_REQUIRE=1 makes this an error)");
	sa_say(msg);
	if (req && !strcmp(req, "1"))
		abort();
	sa_libc.malloc = sa_next("__libc_malloc");
	sa_libc.free = sa_next("__libc_free");
	sa_libc.calloc = sa_next("__libc_calloc");
	sa_libc.realloc = sa_next("__libc_realloc");
	sa_libc.memalign = sa_next("__libc_memalign");
	sa_libc.usable = sa_next("malloc_usable_size");
	sa_libc.trim = sa_next("malloc_trim");
	for (int i = 0; i < SA_GLIBC_CACHES; i++)
		sa_tc_glibc[i].tiny_off = SA_TINY_SIZE;
	atomic_store(&sa_mode, SA_MODE_GLIBC);
	sa_initialising = 0;
}

/*
 * Which allocator serves this call: SA_MODE_SPANALLOC or SA_MODE_GLIBC,
 * or SA_MODE_UNKNOWN for a call from inside the initialisation.
 */
static __attribute__((noinline, cold)) int sa_mode_slow(void)
{
	if (sa_initialising)
		return SA_MODE_UNKNOWN;
	pthread_once(&sa_override_once, sa_override_init);
	return atomic_load(&sa_mode);
}

static inline int sa_which(void)
{
	int m = atomic_load_explicit(&sa_mode, memory_order_acquire);

	return sa_likely(m) ? m : sa_mode_slow();
}

static void sa_foreign(const void *p, const char *what)
{
	static _Atomic int said;
	int saved = errno;
	char msg[200];

	if (atomic_exchange(&said, 1))
		return;
	snprintf(msg, sizeof(msg),
		 "spanalloc: %s(%p): not a pointer this allocator handed out; left alone (reported once)\n",
		 what, p);
	sa_say(msg);
	errno = saved;
}

static __attribute__((noinline, cold)) void sa_glibc_thread(void)
{
	sa_tc_fast = &sa_tc_glibc[(unsigned int)syscall(SYS_gettid) % SA_GLIBC_CACHES];
}

/*
 * The entry points below are the fast path, which tail-calls one of
 * these when it cannot serve: kept out of line, so that the fast path
 * saves no registers. Each takes what the fast path was given.
 */
static __attribute__((noinline)) void *sa_malloc_other(size_t size, bool noscan, bool zero)
{
	/* what the fast path would have taken: never a tiny object (fastpath.h) */
	size = sa_malloc_size(size, sa_gc.end_pad);

	/* the fast path said no: straight to the slow one */
	if (sa_tc)
		return sa_alloc_slow(size, noscan, zero);
	switch (sa_which()) {
	case SA_MODE_SPANALLOC:
		return sa_alloc_slow(size, noscan, zero);
	case SA_MODE_GLIBC:
		if (sa_tc_fast == &sa_tc_none)
			sa_glibc_thread();
		return zero ? sa_libc.calloc(1, size) : sa_libc.malloc(size);
	}
	/* static memory is zero, and the arena never hands it out twice */
	return sa_boot_alloc(size, 16);
}

void *malloc(size_t size)
{
	return sa_fast_alloc(size, true, false, true, sa_malloc_other);
}

void *calloc(size_t n, size_t size)
{
	size_t bytes;

	if (__builtin_mul_overflow(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	/* noscan and zeroed: Boehm's GC_MALLOC_ATOMIC rule */
	return sa_fast_alloc(bytes, true, true, true, sa_malloc_other);
}

static __attribute__((noinline)) void sa_free_other(void *p)
{
	int saved;

	if (!p)
		return;
	if (sa_likely(sa_span_of(p))) {
		saved = errno;
		sa_free_slow(p);
		errno = saved;
		return;
	}
	if (sa_is_boot(p))
		return;
	saved = errno;
	if (sa_which() == SA_MODE_GLIBC)
		sa_libc.free(p);
	else
		sa_foreign(p, "free");
	errno = saved;
}

void free(void *p)
{
	sa_fast_free(p, sa_free_other);
}

static void *sa_aligned_any(size_t align, size_t size)
{
	switch (sa_tc ? SA_MODE_SPANALLOC : sa_which()) {
	case SA_MODE_SPANALLOC:
		return sa_aligned_alloc(align, size);
	case SA_MODE_GLIBC:
		return sa_libc.memalign(align, size);
	}
	return sa_boot_alloc(size, align);
}

void *realloc(void *p, size_t size)
{
	size_t old;
	void *q;

	if (!p)
		return malloc(size);
	if (sa_likely(sa_span_of(p)))
		return sa_realloc(p, size);
	if (sa_is_boot(p)) {
		old = sa_boot_size(p);
		q = malloc(size);
		if (q)
			memcpy(q, p, old < size ? old : size);
		return q;
	}
	if (sa_which() == SA_MODE_GLIBC)
		return sa_libc.realloc(p, size);
	sa_foreign(p, "realloc");
	errno = EINVAL;
	return NULL;
}

void *reallocarray(void *p, size_t n, size_t size)
{
	size_t bytes;

	if (__builtin_mul_overflow(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, bytes);
}

/* glibc's memalign: an alignment that is not a power of two is rounded up. */
void *memalign(size_t align, size_t size)
{
	if (align & (align - 1)) {
		if (align > SIZE_MAX / 2) {
			errno = EINVAL;
			return NULL;
		}
		align = (size_t)1 << (64 - __builtin_clzll(align));
	}
	return sa_aligned_any(align ? align : 1, size);
}

void *aligned_alloc(size_t align, size_t size)
{
	if (!align || (align & (align - 1))) {
		errno = EINVAL;
		return NULL;
	}
	return sa_aligned_any(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
	int saved = errno;
	void *p;

	if (!align || (align & (align - 1)) || align % sizeof(void *))
		return EINVAL;
	p = sa_aligned_any(align, size);
	errno = saved;
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

void *valloc(size_t size)
{
	return sa_aligned_any((size_t)sysconf(_SC_PAGESIZE), size);
}

void *pvalloc(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	if (size > SIZE_MAX - page) {
		errno = ENOMEM;
		return NULL;
	}
	return sa_aligned_any(page, size ? (size + page - 1) & ~(page - 1) : page);
}

size_t malloc_usable_size(void *p)
{
	if (!p)
		return 0;
	if (sa_span_of(p))
		return sa_usable_size(p);
	if (sa_is_boot(p))
		return sa_boot_size(p);
	if (sa_which() == SA_MODE_GLIBC)
		return sa_libc.usable(p);
	return 0;
}

void free_sized(void *p, size_t size)
{
	(void)size;
	free(p);
}

void free_aligned_sized(void *p, size_t align, size_t size)
{
	(void)align;
	(void)size;
	free(p);
}

/* The heap's free pages go back to the kernel; 1 if any did. */
int malloc_trim(size_t pad)
{
	(void)pad;
	if (sa_which() == SA_MODE_GLIBC)
		return sa_libc.trim(pad);
	return sa_trim() > 0;
}

/*
 * mallinfo2: arena is the memory of the spans the heap holds, uordblks
 * what the program has allocated in them and not freed, fordblks the
 * rest; hblkhd and hblks the large objects (a span each).
 */
struct mallinfo2 mallinfo2(void)
{
	struct mallinfo2 mi;
	struct spanalloc_stats ks;
	struct sa_stats st;

	memset(&mi, 0, sizeof(mi));
	if (sa_which() != SA_MODE_SPANALLOC || sa_get_stats(&st) ||
	    sa_kernel_stats(&ks, NULL))
		return mi;
	mi.arena = (size_t)ks.pages_inuse << SA_PAGE_SHIFT;
	mi.uordblks = st.bytes_allocated > st.bytes_freed ?
		      st.bytes_allocated - st.bytes_freed : 0;
	if (mi.uordblks > mi.arena)
		mi.uordblks = mi.arena;
	mi.fordblks = mi.arena - mi.uordblks;
	mi.hblks = st.large_allocated - st.large_freed;
	mi.ordblks = ks.spans;
	return mi;
}

/* glibc's knobs tune glibc's arenas: accepted for the known ones, no effect. */
int mallopt(int param, int value)
{
	(void)value;
	switch (param) {
	case M_TRIM_THRESHOLD:
	case M_TOP_PAD:
	case M_MMAP_THRESHOLD:
	case M_MMAP_MAX:
	case M_ARENA_TEST:
	case M_ARENA_MAX:
	case M_PERTURB:
	case M_CHECK_ACTION:
	case M_MXFAST:
		return 1;
	}
	return 0;
}

/* The __libc_* names: what some programs and libraries call directly. */
void *__libc_malloc(size_t size) 
	__attribute__((alias("malloc"), copy(malloc)));
void *__libc_calloc(size_t n, size_t size) 
	__attribute__((alias("calloc"), copy(calloc)));
void *__libc_realloc(void *p, size_t size) 
	__attribute__((alias("realloc"), copy(realloc)));
void __libc_free(void *p) 
	__attribute__((alias("free"), copy(free)));
void *__libc_memalign(size_t align, size_t size) 
	__attribute__((alias("memalign"), copy(memalign)));
void *__libc_valloc(size_t size) 
	__attribute__((alias("valloc"), copy(valloc)));
void *__libc_pvalloc(size_t size) 
	__attribute__((alias("pvalloc"), copy(pvalloc)));

/*
 * C++. The operators are defined here under their mangled names so that
 * the library needs no C++ runtime; in a C++ program, the new handler and
 * std::bad_alloc come from its libstdc++ (weak references, resolved only
 * there). A failing throwing new calls the new handler until it gives up,
 * then throws std::bad_alloc; the nothrow forms return NULL instead of
 * throwing. Two gaps of doing this in C: a new handler that throws
 * propagates through the nothrow forms (which are noexcept: the program
 * terminates where the standard says NULL), and under a C++ runtime other
 * than libstdc++ (libc++) a failing throwing new aborts with a message.
 */
typedef void (*sa_new_handler)(void);
sa_new_handler _ZSt15get_new_handlerv(void) __attribute__((weak));
void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

static __attribute__((noinline, cold)) void *sa_new_failed(size_t size, size_t align,
							 bool nothrow)
{
	for (;;) {
		sa_new_handler h = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
		void *p;

		if (!h) {
			if (nothrow)
				return NULL;
			if (_ZSt17__throw_bad_allocv)
				_ZSt17__throw_bad_allocv();
			sa_say("spanalloc: operator new: out of memory and no C++ runtime to throw std::bad_alloc; aborting\n");
			abort();
		}
		h();
		p = align ? aligned_alloc(align, size) : malloc(size);
		if (p)
			return p;
	}
}

static inline void *sa_new(size_t size, size_t align, bool nothrow)
{
	void *p = align ? aligned_alloc(align, size ? size : 1) : malloc(size);

	return sa_likely(p) ? p : sa_new_failed(size, align, nothrow);
}

#define SA_NOTHROW	const void *nt __attribute__((unused))

void *_Znwm(size_t size);
void *_Znam(size_t size);
void *_ZnwmRKSt9nothrow_t(size_t size, SA_NOTHROW);
void *_ZnamRKSt9nothrow_t(size_t size, SA_NOTHROW);
void *_ZnwmSt11align_val_t(size_t size, size_t align);
void *_ZnamSt11align_val_t(size_t size, size_t align);
void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, SA_NOTHROW);
void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, SA_NOTHROW);
void _ZdlPv(void *p);
void _ZdaPv(void *p);
void _ZdlPvm(void *p, size_t size);
void _ZdaPvm(void *p, size_t size);
void _ZdlPvSt11align_val_t(void *p, size_t align);
void _ZdaPvSt11align_val_t(void *p, size_t align);
void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t align);
void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t align);
void _ZdlPvRKSt9nothrow_t(void *p, SA_NOTHROW);
void _ZdaPvRKSt9nothrow_t(void *p, SA_NOTHROW);
void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, SA_NOTHROW);
void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, SA_NOTHROW);

void *_Znwm(size_t size) { return sa_new(size, 0, false); }
void *_Znam(size_t size) { return sa_new(size, 0, false); }
void *_ZnwmRKSt9nothrow_t(size_t size, SA_NOTHROW) { return sa_new(size, 0, true); }
void *_ZnamRKSt9nothrow_t(size_t size, SA_NOTHROW) { return sa_new(size, 0, true); }
void *_ZnwmSt11align_val_t(size_t size, size_t align) { return sa_new(size, align, false); }
void *_ZnamSt11align_val_t(size_t size, size_t align) { return sa_new(size, align, false); }
void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, SA_NOTHROW)
{
	return sa_new(size, align, true);
}

void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, SA_NOTHROW)
{
	return sa_new(size, align, true);
}

void _ZdlPv(void *p) { free(p); }
void _ZdaPv(void *p) { free(p); }
void _ZdlPvm(void *p, size_t size) { (void)size; free(p); }
void _ZdaPvm(void *p, size_t size) { (void)size; free(p); }
void _ZdlPvSt11align_val_t(void *p, size_t align) { (void)align; free(p); }
void _ZdaPvSt11align_val_t(void *p, size_t align) { (void)align; free(p); }
void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t align)
{
	(void)size;
	(void)align;
	free(p);
}

void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t align)
{
	(void)size;
	(void)align;
	free(p);
}

void _ZdlPvRKSt9nothrow_t(void *p, SA_NOTHROW) { free(p); }
void _ZdaPvRKSt9nothrow_t(void *p, SA_NOTHROW) { free(p); }
void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, SA_NOTHROW)
{
	(void)align;
	free(p);
}

void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, SA_NOTHROW)
{
	(void)align;
	free(p);
}
