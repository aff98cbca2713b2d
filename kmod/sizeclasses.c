// SPDX-License-Identifier: GPL-2.0
/*
 * sizeclasses: the size class table, expanded from the generated header
 * that the library uses too (tools/mksizeclasses.c makes it).
 */
#include "spanalloc.h"

#define SA_CLASS(cls, sz, np, nel, magic) \
	[cls] = { .size = (sz), .npages = (np), .nelems = (nel) },

const struct sa_class sa_classes[SPANALLOC_NUM_CLASSES] = {
	SPANALLOC_SIZE_CLASSES(SA_CLASS)
};
