/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The heap fixture of the device's tests: a heap opened and mapped whole,
 * its info read; SKIP when the device is missing. A test file that needs
 * more of every test defines SA_HEAP_FIXTURE_CHECK (a statement run last
 * in the set-up) before including this, after kselftest_harness.h.
 */
#ifndef SPANALLOC_SELFTEST_HEAP_FIXTURE_H
#define SPANALLOC_SELFTEST_HEAP_FIXTURE_H

#include "util.h"

#ifndef SA_HEAP_FIXTURE_CHECK
#define SA_HEAP_FIXTURE_CHECK
#endif

FIXTURE(heap) {
	int fd;
	void *map;
	size_t len;
	struct spanalloc_info info;
};

FIXTURE_SETUP(heap)
{
	self->fd = sa_t_open_mapped(&self->map, &self->len);
	if (self->fd == -ENOENT)
		SKIP(return, "no " SA_DEV ": load spanalloc.ko (scripts/vm-run does)");
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, sa_t_info(self->fd, &self->info));
	SA_HEAP_FIXTURE_CHECK
}

FIXTURE_TEARDOWN(heap)
{
	if (self->fd >= 0) {
		munmap(self->map, self->len);
		close(self->fd);
	}
}

#endif
