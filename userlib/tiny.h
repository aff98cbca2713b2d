/* SPDX-License-Identifier: MIT */
/*
 * tiny: bookkeeping for the tiny allocator's 16-byte blocks (Go's tiny
 * allocator, made to support explicit free).
 *
 * Go packs several small noscan objects into one 16-byte block and frees
 * the block only when the collector finds no pointer into it. Here objects
 * can also be freed one by one, so each block has a 32-bit mask:
 *   bit o      (0-15)  an object (live) starts at byte o
 *   bit 16 + o (16-31) an object ends at byte o (its last byte)
 * While a thread is still carving the block, the part not handed out yet
 * is a pseudo-object from the fill offset to byte 15, so the block cannot
 * become empty under the carving thread. The block (one 16-byte object of
 * its span) is freed when the mask becomes 0: by the last object's free,
 * or by the thread retiring the block, whichever comes last.
 *
 * The masks are updated with compare-and-swap: the carving thread and
 * freeing threads may touch one block at once. All inline: the fast paths
 * (fastpath.h) carve and release without a call.
 */
#ifndef SPANALLOC_TINY_H
#define SPANALLOC_TINY_H

#include <stdatomic.h>
#include <stdint.h>

#define SA_TINY_START(o)	(1U << (o))
#define SA_TINY_END(o)	(1U << (16 + (o)))

/*
 * Where an object of size bytes (1 to 15) starts in a block filled up to
 * fill: aligned as Go does, to the largest of 8, 4 and 2 dividing the size
 * (its lowest set bit, at most 8 below 16).
 */
static inline uint32_t sa_tiny_align(uint32_t fill, uint32_t size)
{
	uint32_t a = size & -size;

	return (fill + a - 1) & ~(a - 1);
}

/* A new block: all of it is the pseudo-object [0, 16). */
static inline uint32_t sa_tiny_fresh(void)
{
	return SA_TINY_START(0) | SA_TINY_END(15);
}

/* A new block with its first object, [0, size), carved. */
static inline uint32_t sa_tiny_carved(uint32_t size)
{
	return SA_TINY_START(0) | SA_TINY_END(size - 1) | SA_TINY_START(size) | SA_TINY_END(15);
}

/*
 * Carves [off, off + size) out of the pseudo-object that starts at fill
 * (fill <= off, off + size <= 16). Bytes [fill, off) are alignment padding.
 * Returns -1 if the pseudo-object is gone (a stray free named it).
 */
static inline int sa_tiny_carve(_Atomic(uint32_t) *m, uint32_t fill, uint32_t off,
				uint32_t size)
{
	uint32_t old = atomic_load_explicit(m, memory_order_relaxed), new;

	do {
		if (!(old & SA_TINY_START(fill)))
			return -1;
		new = (old & ~SA_TINY_START(fill)) | SA_TINY_START(off) | SA_TINY_END(off + size - 1);
		if (off + size < 16)
			new |= SA_TINY_START(off + size);
	} while (!atomic_compare_exchange_weak(m, &old, new));
	return 0;
}

/* The end byte of the object starting at off in mask m. */
static inline uint32_t sa_tiny_end(uint32_t m, uint32_t off)
{
	return off + (uint32_t)__builtin_ctz(m >> (16 + off));
}

/*
 * Frees the object (or pseudo-object) starting at off. *freed is set when
 * that was the last thing in the block. Returns its size, or 0 (having
 * changed nothing) if nothing starts at off.
 */
static inline uint32_t sa_tiny_release(_Atomic(uint32_t) *m, uint32_t off, uint32_t *freed)
{
	uint32_t old = atomic_load_explicit(m, memory_order_relaxed), new, end;

	do {
		if (off >= 16 || !(old & SA_TINY_START(off)))
			return 0;
		end = sa_tiny_end(old, off);
		new = old & ~(SA_TINY_START(off) | SA_TINY_END(end));
	} while (!atomic_compare_exchange_weak(m, &old, new));
	*freed = new == 0;
	return end - off + 1;
}

/* Usable bytes of the object at off, or 0 when no object starts there. */
static inline uint32_t sa_tiny_usable(uint32_t m, uint32_t off)
{
	if (off >= 16 || !(m & SA_TINY_START(off)))
		return 0;
	return sa_tiny_end(m, off) - off + 1;
}

#endif /* SPANALLOC_TINY_H */
