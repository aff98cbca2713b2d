// SPDX-License-Identifier: GPL-2.0
/*
 * sizeclasses: the size class table, defined from the generated header that
 * the library uses too (tools/mksizeclasses.c makes it).
 */
#include "spanalloc.h"

#define SPANALLOC_CLASS_TABLE sa_classes
#include <spanalloc-classtable.h>
