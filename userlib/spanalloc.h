/* SPDX-License-Identifier: MIT */
/*
 * libspanalloc: a Go-style object allocator on spans from spanalloc.ko.
 *
 * The kernel module hands out spans (runs of 8 KiB pages serving one size
 * class) from a heap mapped into this process; this library carves them
 * into objects. Each thread allocates from its own span of each class
 * without locks or system calls; a thread that fills a span gives it back
 * and gets the next one in a single system call.
 *
 * Every function is thread-safe. Memory from sa_alloc() and friends is
 * zeroed, aligned to 8 bytes (16 from 32 bytes up, the size class's
 * alignment above that, 8 KiB for large objects), and may be freed from
 * any thread. Freeing a pointer twice or one this library did not return
 * aborts the process with a message, as glibc does for what it can detect.
 *
 * After fork() the child keeps a private copy of its parent's objects and
 * may keep allocating from the spans its threads held, but the kernel
 * refuses the child any new span (the heap belongs to the parent): calls
 * that need one fail with errno EPERM.
 */
#ifndef SPANALLOC_H
#define SPANALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Opens /dev/spanalloc (or $SPANALLOC_DEVICE), checks that the module
 * speaks this library's ABI and size class table, and maps the heap. Called
 * by the first allocation anyway; call it to learn early why the heap is
 * not available. Returns 0, or -1 with errno set and sa_strerror() saying
 * what happened and what to do.
 */
int sa_init(void);

/* Why sa_init() (or the implicit one) failed; "" when it did not. */
const char *sa_strerror(void);

/* size bytes for an object that may hold pointers. NULL + errno on error. */
void *sa_alloc(size_t size);

/*
 * size bytes for an object that never holds pointers (numbers, strings,
 * buffers). Objects under 16 bytes share 16-byte blocks (Go's tiny
 * allocator), so they take less memory than sa_alloc() gives them.
 */
void *sa_alloc_noscan(size_t size);

/* Frees p (NULL is ignored), from any thread. */
void sa_free(void *p);

/* How many bytes from p the caller may use; 0 for NULL. */
size_t sa_usable_size(const void *p);

/*
 * Gives the calling thread's spans back to the kernel now (as thread exit
 * does). The thread may allocate again afterwards.
 */
void sa_thread_flush(void);

/* Counters since sa_init(), summed over all threads. */
struct sa_stats {
	uint64_t heap_mapped;		/* bytes of address space reserved */
	uint64_t objects_allocated;	/* small and tiny objects */
	uint64_t objects_freed;
	uint64_t tiny_allocated;	/* of objects_allocated: tiny */
	uint64_t large_allocated;	/* large objects */
	uint64_t large_freed;
	uint64_t syscalls;		/* ioctls made on the heap */
	uint64_t spans_got;		/* spans received from the kernel */
	uint64_t spans_returned;	/* spans handed back */
	uint64_t local_sweeps;		/* full spans refilled by own frees */
	uint64_t adopted;		/* full spans taken back by a freer */
	uint64_t class_allocated[136];	/* objects per span class */
};

/* Fills *st. Returns 0, or -1 with errno if the heap is not initialized. */
int sa_get_stats(struct sa_stats *st);

/*
 * The kernel's counters for this heap (struct spanalloc_stats and, when
 * classes is not NULL, 136 struct spanalloc_class_stats), for tools and
 * tests; see <linux/spanalloc.h>. Returns 0 or -1 with errno.
 */
struct spanalloc_stats;
struct spanalloc_class_stats;
int sa_kernel_stats(struct spanalloc_stats *st,
		    struct spanalloc_class_stats *classes);

/*
 * Gives every free page of the heap back to the kernel now (malloc_trim's
 * counterpart; the kernel also does it in the background and under memory
 * pressure). Objects in use are untouched. Returns the bytes released, or
 * -1 with errno.
 */
long long sa_trim(void);

/* Size class helpers: the class serving size bytes, and its object size. */
unsigned int sa_size_class(size_t size);	/* 0: large */
size_t sa_class_size(unsigned int sizeclass);

#ifdef __cplusplus
}
#endif

#endif /* SPANALLOC_H */
