// SPDX-License-Identifier: GPL-2.0
/*
 * gc_tls_module: loaded by gc_roots_test with dlopen, so its thread-local
 * variable lives in a block the C library allocates when a thread first
 * uses it, not in any thread's stack or static TLS.
 */
void **gc_tls_slot(void);

static __thread void *slot;

void **gc_tls_slot(void)
{
	return &slot;
}
