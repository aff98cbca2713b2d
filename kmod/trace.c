// SPDX-License-Identifier: GPL-2.0
/*
 * trace: where the module's tracepoints (spanalloc_trace.h) are defined;
 * every other file only includes the header to call them.
 */
#include "spanalloc.h"

#define CREATE_TRACE_POINTS
#include "spanalloc_trace.h"
