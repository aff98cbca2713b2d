// SPDX-License-Identifier: MIT
/*
 * bench: measurements for make bench, all in one process (so all in one VM
 * boot), each reported as a table and as BENCH lines:
 *
 *   BENCH name=<benchmark> impl=<allocator> threads=<n> <metric>=<value> ...
 *
 * 1. alloc_free_<size>B: small-object allocation and free through
 *    libspanalloc and through its peers: glibc malloc (always), jemalloc
 *    and mimalloc (when their Debian libraries are installed; loaded with
 *    dlopen so that they do not replace malloc). Each thread allocates a
 *    batch of 100 objects, writes a word in each, frees them, and repeats.
 * 2. span_exchange: raw exchange ioctls (return one span PARTIAL, get one
 *    back) at 1, 2 and 4 threads on one span class, with the per-CPU cache
 *    on and off (module parameter pcp_depth; needs root).
 * 3. syscalls_per_span: system calls per span turnover as the library
 *    counts them while allocating.
 *
 *   bench [seconds per measurement, default 1.0]
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/spanalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "spanalloc.h"

struct impl {
	const char *name;
	void *(*alloc)(size_t);
	void (*free)(void *);
};

static double secs_per_run = 1.0;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- 1. allocation ------------------------------------------------------ */

struct af_arg {
	const struct impl *im;
	size_t size;
	pthread_barrier_t *bar;
	uint64_t pairs;
	double secs;
};

#define BATCH 100

static void *af_thread(void *p)
{
	struct af_arg *a = p;
	void *objs[BATCH];
	uint64_t pairs = 0;
	double t0, end;

	pthread_barrier_wait(a->bar);
	t0 = now();
	end = t0 + secs_per_run;
	do {
		for (int r = 0; r < 100; r++) {
			for (int i = 0; i < BATCH; i++) {
				objs[i] = a->im->alloc(a->size);
				*(volatile uint64_t *)objs[i] = i;
			}
			for (int i = 0; i < BATCH; i++)
				a->im->free(objs[i]);
		}
		pairs += 100 * BATCH;
	} while (now() < end);
	a->secs = now() - t0;
	a->pairs = pairs;
	return NULL;
}

static double alloc_free(const struct impl *im, size_t size, int threads)
{
	struct af_arg a[16];
	pthread_t th[16];
	pthread_barrier_t bar;
	double rate = 0;

	pthread_barrier_init(&bar, NULL, threads);
	for (int i = 0; i < threads; i++) {
		a[i] = (struct af_arg){ .im = im, .size = size, .bar = &bar };
		pthread_create(&th[i], NULL, af_thread, &a[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		rate += a[i].pairs / a[i].secs;
	}
	pthread_barrier_destroy(&bar);
	return rate;
}

static void sa_free_void(void *p)
{
	sa_free(p);
}

static int load_peer(struct impl *im, const char *name, const char *lib,
		     const char *fa, const char *ff)
{
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);

	if (!h)
		return 0;
	im->name = name;
	im->alloc = (void *(*)(size_t))dlsym(h, fa);
	im->free = (void (*)(void *))dlsym(h, ff);
	return im->alloc && im->free;
}

/* --- 2. span exchange --------------------------------------------------- */

struct ex_arg {
	int fd;
	pthread_barrier_t *bar;
	uint64_t n;
	double secs;
	int err;
};

static void *ex_thread(void *p)
{
	struct ex_arg *a = p;
	struct spanalloc_span s;
	struct spanalloc_ret r = { .op = SPANALLOC_RET_PARTIAL };
	struct spanalloc_exchange ex = {
		.size = sizeof(ex), .get_ptr = (uintptr_t)&s, .get_count = 1,
		.get_spanclass = SPANALLOC_SPANCLASS(5, 0),
	};
	uint64_t n = 0;
	double t0, end;

	if (ioctl(a->fd, SPANALLOC_IOC_EXCHANGE, &ex)) {
		a->err = errno;
		pthread_barrier_wait(a->bar);
		return NULL;
	}
	ex.ret_ptr = (uintptr_t)&r;
	ex.ret_count = 1;
	pthread_barrier_wait(a->bar);
	t0 = now();
	end = t0 + secs_per_run;
	do {
		for (int i = 0; i < 256; i++) {
			r.handle = s.handle;
			ex.ret_done = ex.get_done = 0;
			if (ioctl(a->fd, SPANALLOC_IOC_EXCHANGE, &ex)) {
				a->err = errno;
				return NULL;
			}
		}
		n += 256;
	} while (now() < end);
	a->secs = now() - t0;
	a->n = n;
	return NULL;
}

static int set_pcp(int depth)
{
	char buf[8];
	int fd = open("/sys/module/spanalloc/parameters/pcp_depth", O_WRONLY), ok;

	if (fd < 0)
		return -1;
	snprintf(buf, sizeof(buf), "%d", depth);
	ok = write(fd, buf, strlen(buf)) > 0;
	close(fd);
	return ok ? 0 : -1;
}

/* Spans turned over per second, or -1 (errno) if the device is missing. */
static double span_exchange(int threads)
{
	struct spanalloc_info info = { .size = sizeof(info) };
	struct ex_arg a[16];
	pthread_t th[16];
	pthread_barrier_t bar;
	double rate = 0;
	void *map;
	int fd = open("/dev/spanalloc", O_RDWR | O_CLOEXEC);

	if (fd < 0 || ioctl(fd, SPANALLOC_IOC_INFO, &info))
		return -1;
	map = mmap(NULL, info.max_heap_limit, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	pthread_barrier_init(&bar, NULL, threads);
	for (int i = 0; i < threads; i++) {
		a[i] = (struct ex_arg){ .fd = fd, .bar = &bar };
		pthread_create(&th[i], NULL, ex_thread, &a[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		if (a[i].err)
			rate = -1;
		else if (rate >= 0)
			rate += a[i].n / a[i].secs;
	}
	pthread_barrier_destroy(&bar);
	munmap(map, info.max_heap_limit);
	close(fd);
	return rate;
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 16, 32, 64, 128, 256 };
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN), nimpl = 2;
	int thr[] = { 1, ncpu > 16 ? 16 : ncpu };
	struct impl impls[4] = {
		{ "spanalloc", sa_alloc, sa_free_void },
		{ "glibc", malloc, free },
	};
	struct sa_stats s0, s1;

	if (argc > 1)
		secs_per_run = atof(argv[1]);
	if (sa_init()) {
		fprintf(stderr, "bench: %s\n", sa_strerror());
		return 1;
	}
	if (load_peer(&impls[nimpl], "jemalloc", "libjemalloc.so.2", "malloc", "free"))
		nimpl++;
	if (load_peer(&impls[nimpl], "mimalloc", "libmimalloc.so.2", "mi_malloc", "mi_free"))
		nimpl++;

	printf("== small objects: alloc+free pairs per second (batches of %d), %.1f s each\n",
	       BATCH, secs_per_run);
	printf("%-6s %-8s", "size", "threads");
	for (int i = 0; i < nimpl; i++)
		printf(" %14s", impls[i].name);
	printf("   spanalloc/glibc\n");
	for (unsigned int z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		for (unsigned int t = 0; t < 2; t++) {
			double r[4];
			char name[32];

			if (t == 1 && thr[1] == thr[0])
				continue;
			printf("%-6zu %-8d", sizes[z], thr[t]);
			for (int i = 0; i < nimpl; i++) {
				r[i] = alloc_free(&impls[i], sizes[z], thr[t]);
				printf(" %12.1f M", r[i] / 1e6);
			}
			printf("   %.2fx\n", r[0] / r[1]);
			snprintf(name, sizeof(name), "alloc_free_%zuB", sizes[z]);
			for (int i = 0; i < nimpl; i++)
				printf("BENCH name=%s impl=%s threads=%d pairs_per_s=%.0f ratio_vs_glibc=%.3f\n",
				       name, impls[i].name, thr[t], r[i], r[i] / r[1]);
		}
	}

	printf("\n== span exchange: spans turned over per second (return PARTIAL + get, one ioctl)\n");
	if (set_pcp(8)) {
		printf("   cannot set /sys/module/spanalloc/parameters/pcp_depth (not root, or no module): skipped\n");
	} else {
		printf("%-8s %16s %16s %10s\n", "threads", "per-CPU cache", "central only", "ratio");
		for (int t = 1; t <= 4; t *= 2) {
			double on, off;

			set_pcp(8);
			on = span_exchange(t);
			set_pcp(0);
			off = span_exchange(t);
			set_pcp(8);
			printf("%-8d %14.0f/s %14.0f/s %9.2fx\n", t, on, off, on / off);
			printf("BENCH name=span_exchange impl=spanalloc_pcp threads=%d spans_per_s=%.0f ratio_vs_central=%.3f\n",
			       t, on, on / off);
			printf("BENCH name=span_exchange impl=spanalloc_central threads=%d spans_per_s=%.0f ratio_vs_central=1.000\n",
			       t, off);
		}
	}

	printf("\n== system calls per span turnover (library, 1M objects of 64 B kept alive)\n");
	{
		enum { N = 1000000 };
		void **keep = malloc(N * sizeof(void *));

		sa_get_stats(&s0);
		for (int i = 0; i < N; i++)
			keep[i] = sa_alloc(64);
		sa_get_stats(&s1);
		printf("spans got %llu, system calls %llu: %.3f per span\n",
		       (unsigned long long)(s1.spans_got - s0.spans_got),
		       (unsigned long long)(s1.syscalls - s0.syscalls),
		       (double)(s1.syscalls - s0.syscalls) / (s1.spans_got - s0.spans_got));
		printf("BENCH name=syscalls_per_span impl=spanalloc threads=1 syscalls_per_span=%.3f spans=%llu\n",
		       (double)(s1.syscalls - s0.syscalls) / (s1.spans_got - s0.spans_got),
		       (unsigned long long)(s1.spans_got - s0.spans_got));
		for (int i = 0; i < N; i++)
			sa_free(keep[i]);
		free(keep);
	}
	return 0;
}
