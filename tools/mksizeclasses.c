// SPDX-License-Identifier: GPL-2.0
/*
 * mksizeclasses: generates the size class table shared by spanalloc.ko and
 * libspanalloc: its constants and layout, part of the uapi
 * (uapi/linux/spanalloc-sizeclasses.h), and the table itself, which is not
 * (include/spanalloc-classtable.h: a uapi header defines no data).
 *
 * The rules are Go's (runtime/mksizeclasses.go), re-derived here, but for
 * one: Go aligns objects under 32 B to 8 bytes (its 24-byte class), while C
 * programs count on malloc's max_align_t guarantee (16 bytes on x86-64, as
 * glibc and jemalloc give), so there is no 24-byte class:
 *  - objects are 8-byte aligned; from 16 B on 16-byte aligned, from 128 B on
 *    aligned to size/8, from 2 KiB on 256-byte aligned (the alignment is
 *    bumped each time the size reaches a power of two), aiming at 12.5%
 *    rounding waste from 128 B on (the merge step below lets a few classes
 *    reach 15.8%, exactly as in Go's table);
 *  - a class's span is the smallest number of 8 KiB pages whose tail (the
 *    bytes left over after the last whole object) is at most 1/8 of the span;
 *  - a size that would give the same span length and object count as the
 *    previous class replaces it instead of adding a class;
 *  - finally each class grows to the largest multiple of 128 B that still
 *    fits the same object count in the same span.
 * That yields 66 small classes plus class 0 (large objects, whole pages).
 *
 * For each class it also emits divmagic = ceil(2^32 / size): for every
 * offset n inside a span, (n * divmagic) >> 32 == n / size, also in the
 * longer spans a heap may give the class (up to the longest class's).
 * The generator checks that claim for every offset, so consumers may
 * divide by multiplication (Go's divMul) without checking it again.
 *
 * The table hash (FNV-1a over every emitted number) lets the library refuse
 * a module built from another table.
 *
 * Usage: mksizeclasses > uapi/linux/spanalloc-sizeclasses.h
 *        mksizeclasses table > include/spanalloc-classtable.h
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#define PAGE_SHIFT	13
#define PAGE_SIZE	(1u << PAGE_SHIFT)
#define MIN_ALIGN	8u
#define MAX_SMALL	32768u
#define LARGE_DIV	128u
#define NUM_CLASSES	67

struct class {
	uint32_t size;
	uint32_t npages;
};

static int is_pow2(uint32_t x)
{
	return x && !(x & (x - 1));
}

static void die(const char *msg)
{
	fprintf(stderr, "mksizeclasses: %s\n", msg);
	exit(1);
}

static uint64_t fnv1a(uint64_t h, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		h ^= (v >> (8 * i)) & 0xff;
		h *= 0x100000001b3ull;
	}
	return h;
}

int main(int argc, char **argv)
{
	int table = argc == 2 && !strcmp(argv[1], "table");
	struct class c[NUM_CLASSES + 1] = { { 0, 0 } };
	uint32_t divmagic[NUM_CLASSES] = { 0 };
	uint32_t align = MIN_ALIGN;
	uint32_t max_round = 0;
	int n = 1;

	for (uint32_t size = align; size <= MAX_SMALL; size += align) {
		if (is_pow2(size)) {
			if (size >= 2048)
				align = 256;
			else if (size >= 128)
				align = size / 8;
			else if (size >= 16)
				align = 16;	/* Go: from 32 on */
		}
		if (!is_pow2(align))
			die("alignment is not a power of two");

		uint32_t alloc = PAGE_SIZE;

		while (alloc % size > alloc / 8)
			alloc += PAGE_SIZE;

		uint32_t npages = alloc / PAGE_SIZE;

		if (n > 1 && npages == c[n - 1].npages &&
		    alloc / size == alloc / c[n - 1].size) {
			c[n - 1].size = size;
			continue;
		}
		if (n > NUM_CLASSES)
			die("more size classes than expected");
		c[n].size = size;
		c[n].npages = npages;
		n++;
	}
	if (n != NUM_CLASSES)
		die("number of size classes changed");

	for (int i = 1; i < n; i++) {
		uint32_t span = c[i].npages * PAGE_SIZE;
		uint32_t grown = (span / (span / c[i].size)) & ~(LARGE_DIV - 1);

		if (grown > c[i].size)
			c[i].size = grown;
	}

	uint64_t hash = 0xcbf29ce484222325ull;
	/*
	 * A heap may give a class spans up to SPANALLOC_MAX_CLASS_PAGES
	 * pages (SPANALLOC_IOC_SET_SPAN_PAGES): divmagic must hold that far.
	 */
	uint32_t longest = 0;

	for (int i = 1; i < n; i++)
		if (c[i].npages * PAGE_SIZE > longest)
			longest = c[i].npages * PAGE_SIZE;
	for (int i = 1; i < n; i++) {
		uint32_t size = c[i].size, span = c[i].npages * PAGE_SIZE;

		if (c[i].size <= c[i - 1].size)
			die("classes are not increasing");
		/*
		 * The bounds this table keeps. The alignment rule aims at 12.5%
		 * rounding waste; merging classes of the same span shape lets a
		 * few exceed it (worst: 15.8% at 4864 B, as in Go's table), so
		 * the check is 1/6. Below 128 B the 8 and 16 byte alignment
		 * floor dominates (32 B serves 17 B requests).
		 */
		if (size >= 16 && size % 16)
			die("a class from 16 B on is not 16-byte aligned");
		if (c[i - 1].size >= 128 && (size - c[i - 1].size - 1) * 6 > size)
			die("rounding waste over 1/6");
		if (c[i - 1].size >= 128) {
			uint32_t w = (size - c[i - 1].size - 1) * 10000 / size;

			if (w > max_round)
				max_round = w;
		}
		if ((span % size) * 8 > span)
			die("tail waste over 1/8");
		divmagic[i] = (uint32_t)(0xffffffffu / size + 1);
		for (uint32_t off = 0; off <= longest; off++)
			if ((uint32_t)(((uint64_t)off * divmagic[i]) >> 32) != off / size)
				die("divmagic is not exact");
	}
	for (int i = 0; i < n; i++) {
		hash = fnv1a(hash, c[i].size);
		hash = fnv1a(hash, c[i].npages);
		hash = fnv1a(hash, divmagic[i]);
	}

	if (table) {
		printf("/* SPDX-License-Identifier: GPL-2.0 OR MIT */\n");
		printf("/*\n * Generated by tools/mksizeclasses.c; do not edit.\n");
		printf(" * Regenerate with: make sizeclasses\n *\n");
		printf(" * The size class table that <linux/spanalloc-sizeclasses.h> describes:\n");
		printf(" * shared by the module and the library, not part of the uapi. Defined by\n");
		printf(" * the one file of a program that sets SPANALLOC_CLASS_TABLE to the name\n");
		printf(" * it wants for it before including this header.\n */\n");
		printf("#include <linux/spanalloc-sizeclasses.h>\n\n");
		printf("#if defined(SPANALLOC_CLASS_TABLE) && !defined(_SPANALLOC_CLASS_TABLE_DEFINED)\n");
		printf("#define _SPANALLOC_CLASS_TABLE_DEFINED\n");
		printf("const struct spanalloc_class SPANALLOC_CLASS_TABLE[SPANALLOC_NUM_CLASSES] = {\n");
		for (int i = 0; i < n; i++) {
			uint32_t nel = c[i].size ? c[i].npages * PAGE_SIZE / c[i].size : 0;

			printf("\t{ .size = %u, .npages = %u, .nelems = %u, .divmagic = %u },\t/* %d */\n",
			       c[i].size, c[i].npages, nel, divmagic[i], i);
		}
		printf("};\n#endif\n");
		return 0;
	}
	printf("/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */\n");
	printf("/*\n * Generated by tools/mksizeclasses.c; do not edit.\n");
	printf(" * Regenerate with: make sizeclasses\n *\n");
	printf(" * Worst rounding waste from 128 B on: %u.%02u%%; tail waste <= 1/8.\n",
	       max_round / 100, max_round % 100);
	printf(" */\n#ifndef _UAPI_LINUX_SPANALLOC_SIZECLASSES_H\n");
	printf("#define _UAPI_LINUX_SPANALLOC_SIZECLASSES_H\n\n");
	printf("#include <linux/types.h>\n\n");
	printf("#define SPANALLOC_PAGE_SHIFT\t\t%d\n", PAGE_SHIFT);
	printf("#define SPANALLOC_NUM_CLASSES\t\t%d\n", NUM_CLASSES);
	printf("#define SPANALLOC_NUM_SPANCLASSES\t%d\n", NUM_CLASSES * 2);
	printf("#define SPANALLOC_MAX_SMALL_SIZE\t%u\n", MAX_SMALL);
	{
		uint32_t maxp = 0, maxe = 0;

		for (int i = 1; i < n; i++) {
			uint32_t e = c[i].npages * PAGE_SIZE / c[i].size;

			if (c[i].npages > maxp)
				maxp = c[i].npages;
			if (e > maxe)
				maxe = e;
		}
		printf("#define SPANALLOC_MAX_CLASS_PAGES\t%u\n", maxp);
		printf("#define SPANALLOC_MAX_NELEMS\t\t%u\n", maxe);
	}
	printf("#define SPANALLOC_CLASS_HASH\t\t0x%016llxULL\n\n",
	       (unsigned long long)hash);
	printf("struct spanalloc_class {\n");
	printf("\t__u32 size;\t\t/* object bytes; 0 for class 0 (large) */\n");
	printf("\t__u32 npages;\t\t/* pages per span */\n");
	printf("\t__u32 nelems;\t\t/* objects per span */\n");
	printf("\t__u32 divmagic;\t\t/* (off * divmagic) >> 32 == off / size */\n");
	printf("};\n\n#endif /* _UAPI_LINUX_SPANALLOC_SIZECLASSES_H */\n");
	return 0;
}
