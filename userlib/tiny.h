/* SPDX-License-Identifier: MIT */
/*
 * tiny: bookkeeping for the tiny allocator's 16-byte blocks (Go's tiny
 * allocator, made to support explicit free).
 *
 * Go packs several small noscan objects into one 16-byte block and frees
 * the block only when the collector finds no pointer into it. Here objects
 * can also be freed one by one, so each block has a 16-bit mask over its
 * eight 2-byte units (tiny objects are rounded up to 2 bytes, so that a
 * span's masks take 1 KiB, 1/8 of it, not 2):
 *   bit u      (0-7)   an object (live) starts at unit u (byte 2u)
 *   bit 8 + u  (8-15)  an object ends in unit u (its last byte)
 * While a thread is still carving the block, the part not handed out yet
 * is a pseudo-object from the fill offset to the block's end, so the
 * block cannot become empty under the carving thread. The block (one
 * 16-byte object of its span) is freed when the mask becomes 0: by the
 * last object's free, or by the thread retiring the block, whichever
 * comes last. Offsets and sizes below are in bytes, and even.
 *
 * The carving thread and freeing threads may touch one block at once:
 * a carve is one atomic add (sa_tiny_carve says why that is exact), a
 * free one compare-and-swap. All inline: the fast paths
 * (fastpath.h) carve and release without a call.
 */
#ifndef SPANALLOC_TINY_H
#define SPANALLOC_TINY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef uint16_t sa_tiny_mask;

/* An object starts at byte o; an object's last byte is byte o. */
#define SA_TINY_START(o)	((sa_tiny_mask)(1U << ((o) / 2)))
#define SA_TINY_END(o)	((sa_tiny_mask)(1U << (8 + (o) / 2)))

/*
 * The carve's and the free's bits as loads, not shifts (each shift by a
 * variable count took three instructions; sa_tiny_alignment's table is
 * beside them): start[o] is START(o) for an
 * even offset o in the block, 0 for an odd one or 16; tail[e], for an
 * object ending at the even offset e, is its last unit's end mark and
 * the start of the rest after it (END(15), the rest's end, is set already
 * and stays: 0 at 16).
 */
#define SA_TINY_BIT(o)	((o) < 16 && !((o) & 1) ? SA_TINY_START(o) : 0)
#define SA_TINY_TAIL(e)	((e) < 16 ? SA_TINY_END((e) - 1) | SA_TINY_START(e) : 0)
#define SA_TINY_R2(q)		((((q) ? (q) : 1) + 1) & ~1)
#define SA_TINY_ALIGNMENT(q)	(SA_TINY_R2(q) & -SA_TINY_R2(q))	/* sa_tiny_alignment */
#define SA_TINY_16(F)	F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), F(8), \
			F(9), F(10), F(11), F(12), F(13), F(14), F(15)
/* in one struct, so that one address reaches all three */
static const struct {
	sa_tiny_mask start[17], tail[17];
	uint8_t align[16];
} sa_tiny_bits = {
	{ SA_TINY_16(SA_TINY_BIT), 0 },
	{ SA_TINY_16(SA_TINY_TAIL), 0 },
	{ SA_TINY_16(SA_TINY_ALIGNMENT) },
};

/* A tiny object's size as carved: size (1 to 15) rounded up to 2 bytes. */
static inline uint32_t sa_tiny_round(uint32_t size)
{
	return (size + 1) & ~1U;
}

/*
 * The alignment of a tiny object asked for as req bytes (0 to 15, before
 * the collector's end pad, which must not lower it): as Go aligns, the
 * largest of 8, 4 and 2 dividing req rounded up to 2 (its lowest set
 * bit; 16 for 15, which only fits an empty block). Every type that fits
 * is aligned: a type's size is a multiple of its alignment. A table of
 * the formula (sa_tiny_bits.align): one load where the arithmetic took
 * seven instructions.
 */
static inline uint32_t sa_tiny_alignment(uint32_t req)
{
	return sa_tiny_bits.align[req & 15];
}

/* Where an object aligned to a (a power of 2) starts in a block filled up to fill. */
static inline uint32_t sa_tiny_align(uint32_t fill, uint32_t a)
{
	return (fill + a - 1) & ~(a - 1);
}

/* A new block: all of it is the pseudo-object [0, 16). */
static inline sa_tiny_mask sa_tiny_fresh(void)
{
	return SA_TINY_START(0) | SA_TINY_END(15);
}

/* A new block with its first object, [0, size), carved. */
static inline sa_tiny_mask sa_tiny_carved(uint32_t size)
{
	return SA_TINY_START(0) | sa_tiny_bits.tail[size] | SA_TINY_END(15);
}

/*
 * Carves [off, off + size) out of the pseudo-object that starts at fill
 * (fill <= off, off + size <= 16). Bytes [fill, off) are alignment padding.
 * Returns -1 if the pseudo-object is gone (a stray free named it).
 *
 * One atomic add: with the pseudo-object in place, every bit the carve
 * sets is clear (nothing else lies in [fill, 16)) and the one it clears,
 * the pseudo-object's start, is set, so adding the difference is the
 * change, whatever frees below fill do meanwhile. An object ending at 16
 * takes over the pseudo-object's end, which is already set. Without the
 * pseudo-object the add is undone, and the caller reports the stray free
 * and aborts (sa_alloc_tiny): the stray free took the rest's start and
 * end, so the bits the add sets were clear too and nothing carried, and
 * a free racing with the undo sees only bits of its own object change.
 */
static inline int sa_tiny_carve(_Atomic(sa_tiny_mask) *m, uint32_t fill, uint32_t off,
				uint32_t size)
{
	sa_tiny_mask from = sa_tiny_bits.start[fill];
	sa_tiny_mask d = (sa_tiny_mask)(sa_tiny_bits.start[off] - from +
					sa_tiny_bits.tail[off + size]);

	if (__builtin_expect(!!(atomic_fetch_add(m, d) & from), 1))
		return 0;
	atomic_fetch_sub(m, d);
	return -1;
}

/* The size of the object starting at off in mask m (which must start one). */
static inline uint32_t sa_tiny_size(sa_tiny_mask m, uint32_t off)
{
	return 2 * (1 + (uint32_t)__builtin_ctz((uint32_t)m >> (8 + off / 2)));
}

/* Whether an object starts at off in m: an even offset in the block, marked. */
static inline bool sa_tiny_starts(sa_tiny_mask m, uint32_t off)
{
	return off < 16 && (m & sa_tiny_bits.start[off]);
}

/*
 * Frees the object (or pseudo-object) starting at off: true, with its
 * size in *size and *freed set when that was the last thing in the block;
 * false, having changed nothing, if nothing starts at off.
 */
static inline bool sa_tiny_take(_Atomic(sa_tiny_mask) *m, uint32_t off, uint32_t *size,
				uint32_t *freed)
{
	sa_tiny_mask old = atomic_load_explicit(m, memory_order_relaxed), new;
	uint32_t start, end;

	if (off >= 16)
		return false;
	start = sa_tiny_bits.start[off];	/* 0 for an odd off: nothing starts there */
	do {
		if (!(old & start))
			return false;
		/*
		 * Objects do not overlap: the first end mark from its unit on
		 * is its own. Those marks are bits 8 + off / 2 to 15, all
		 * that -(start << 8) sets of the mask's 16.
		 */
		end = old & -(start << 8);
		end &= -end;
		new = (sa_tiny_mask)(old & ~(start | end));
	} while (!atomic_compare_exchange_weak(m, &old, new));
	*freed = new == 0;
	/* 2 bytes a unit, from off's (off / 2) to the end's (ctz - 8): off is even */
	*size = 2 * (uint32_t)__builtin_ctz(end) - 14 - off;
	return true;
}

/* sa_tiny_take's size, or 0 when nothing starts at off. */
static inline uint32_t sa_tiny_release(_Atomic(sa_tiny_mask) *m, uint32_t off, uint32_t *freed)
{
	uint32_t size;

	return sa_tiny_take(m, off, &size, freed) ? size : 0;
}

/* Usable bytes of the object at off, or 0 when no object starts there. */
static inline uint32_t sa_tiny_usable(sa_tiny_mask m, uint32_t off)
{
	return sa_tiny_starts(m, off) ? sa_tiny_size(m, off) : 0;
}

#endif /* SPANALLOC_TINY_H */
