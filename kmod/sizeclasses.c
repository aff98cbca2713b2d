// SPDX-License-Identifier: GPL-2.0
/*
 * sizeclasses: the size class table, defined from the generated header that
 * the library uses too (tools/mksizeclasses.c makes it), and the span
 * lengths a heap may give each class.
 */
#include "spanalloc.h"

#define SPANALLOC_CLASS_TABLE sa_classes
#include <spanalloc-classtable.h>

/*
 * Whether spans of npages pages may serve small size class sizeclass
 * (1 or more): at least the table's length, so that a span holds at
 * least the table's objects; at most SPANALLOC_MAX_CLASS_PAGES (or the
 * table's, if longer), within which the generator checked the class's
 * divmagic; and no more objects than SPANALLOC_MAX_NELEMS, which user
 * space's bitmaps are sized for. The tail a length leaves is user
 * space's choice (libspanalloc keeps it within 1/8, as the table does).
 */
bool sa_class_pages_ok(u32 sizeclass, u32 npages)
{
	const struct spanalloc_class *k;

	if (!sizeclass || sizeclass >= SPANALLOC_NUM_CLASSES)
		return false;
	k = &sa_classes[sizeclass];
	/* bounded first: the byte count below fits 32 bits */
	return npages >= k->npages &&
	       npages <= max_t(u32, k->npages, SPANALLOC_MAX_CLASS_PAGES) &&
	       (npages << SA_PAGE_SHIFT) / k->size <= SPANALLOC_MAX_NELEMS;
}
EXPORT_SYMBOL_IF_KUNIT(sa_class_pages_ok);
