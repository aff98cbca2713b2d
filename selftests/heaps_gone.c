// SPDX-License-Identifier: GPL-2.0
/*
 * heaps_gone: exits 0 once the module holds no heap but its own, and no
 * span, page or arena (waiting up to 10 s for exiting processes to close
 * theirs); else prints the counters and exits 1. For programs.sh, which
 * runs it after each real program. Needs CAP_SYS_ADMIN (the counters are
 * the administrator's).
 */
#include <time.h>
#include "util.h"

int main(void)
{
	struct spanalloc_info info;
	int fd = open(SA_DEV, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		perror("heaps_gone: " SA_DEV);
		return 2;
	}
	for (int i = 0; i < 100; i++) {
		if (sa_t_info(fd, &info))
			return 2;
		if (info.global_heaps == 1 && !info.global_spans && !info.global_pages &&
		    !info.global_arenas)
			return 0;
		nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
	}
	printf("heaps_gone: the module still holds %llu heaps (this one included), %llu spans, %llu pages, %llu arenas\n",
	       (unsigned long long)info.global_heaps, (unsigned long long)info.global_spans,
	       (unsigned long long)info.global_pages, (unsigned long long)info.global_arenas);
	return 1;
}
