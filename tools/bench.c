// SPDX-License-Identifier: MIT
/*
 * bench: measurements for make bench, all in one process (so all in one VM
 * boot), each reported as a table and as BENCH lines:
 *
 *   BENCH name=<benchmark> impl=<allocator> threads=<n> <metric>=<value> ...
 *
 * 1. alloc_free_<size>B, alloc_free_malloc_<size>B, alloc_free_tiny<size>B:
 *    small-object allocation and free, one thread and as many as CPUs,
 *    each thread allocating a batch of 100 objects, writing a word in
 *    each, freeing them, and again. Like meets like: zeroed objects
 *    (sa_alloc against glibc's calloc, jemalloc's calloc, mi_zalloc), not
 *    zeroed (sa_malloc, the drop-in's malloc, against malloc, jemalloc's
 *    malloc and mi_malloc), and noscan objects under 16 bytes
 *    (sa_alloc_noscan against the zeroing peers): 4 bytes, which the tiny
 *    allocator packs 4 to a 16-byte block, and 8 bytes, which have a
 *    class of their own (internal.h: sa_tiny_wanted).
 *    jemalloc and mimalloc come from their Debian libraries when
 *    installed, loaded with dlopen so that they do not replace malloc.
 * 2. span_exchange_batch<n>: raw exchange ioctls (return n spans PARTIAL,
 *    get n back; n = 1, as the library does, 4 and 8) at 1, 2 and 4 threads
 *    on one span class, with the per-CPU cache on and off (module
 *    parameter pcp_depth; needs root), and the floor every call pays
 *    before the module does anything (an ioctl it refuses at once, same
 *    threads), so that the module's own share of a call shows.
 * 3. syscalls_<workload>: system calls per object and per span got, as the
 *    library counts them, where they are not one per span by
 *    construction: a heap grown to 32 MiB of 64-byte objects and shrunk
 *    back, three times; and one thread allocating 64-byte objects that
 *    another frees (frees into spans the allocating thread no longer
 *    holds adopt them and hand them back).
 * 4. producer_consumer_64B: objects per second when one thread allocates
 *    (not zeroed) and 1 or 3 others free, every allocator.
 * 5. alloc_free_[malloc_|tiny]<size>B_instructions: instructions per
 *    allocate+free pair (one thread, batches of 100), counted by
 *    valgrind's callgrind (when installed) on this program run in a second
 *    mode. Instruction counts do not vary from run to run, and do not
 *    carry the emulator's cost model (under QEMU TCG, time per
 *    instruction differs widely between kinds of code), so they
 *    complement the timings.
 * 6. metadata_<size>B: the library's own memory (sa_get_meta_stats) per
 *    byte of live objects, with 16 MiB of objects of one size live, and
 *    the share of a span its record takes; also for 4-byte tiny objects,
 *    8-byte noscan ones and typed ones (sa_alloc_typed: pointer maps).
 *
 *   bench [--exchange|--instructions|--metadata] [seconds per run, default 0.5]
 *         [runs per measurement, default 5]
 *         (--exchange: section 2 alone; --instructions: section 5 alone;
 *         --metadata: section 6 alone)
 *   bench --pairs SIZE IMPL N    (N batches of 100 pairs with allocator IMPL)
 *
 * Each number is the median of its runs.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/spanalloc.h>
#include <pthread.h>
#include <sched.h>
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

/*
 * Under TCG one run can be off by a third, and the machine drifts: every
 * measurement is the median of reps runs, and the runs of the things
 * compared are interleaved, so drift falls on all of them alike.
 */
static double secs_per_run = 0.5;
static int reps = 5;
static int exchange_only;	/* --exchange: section 2 alone */
static int instructions_only;	/* --instructions: section 5 alone */
static int metadata_only;	/* --metadata: section 6 alone */
static const size_t sizes[] = { 16, 32, 64, 128, 256 };

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(double), cmp_double);
	return v[n / 2];
}

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

/* sa_alloc() zeroes like calloc(); this peer shows what zeroing costs. */
static void *calloc1(size_t n)
{
	return calloc(1, n);
}

/*
 * The allocators compared, in two families so that like meets like: one
 * that zeroes (sa_alloc against calloc, jemalloc's calloc and mi_zalloc)
 * and one that does not (sa_malloc, the drop-in's malloc, against malloc,
 * jemalloc's malloc and mi_malloc). Index 0 is spanalloc's, 1 glibc's;
 * jemalloc and mimalloc follow when their Debian libraries are installed
 * (loaded with dlopen, so that they do not replace malloc). The tiny
 * family is the zeroing one with sa_alloc_noscan first, at 4 and 8 bytes.
 */
static struct impl zeroing[4], plain[4], tinyfam[4];
static int nimpl;
static void *(*je_calloc)(size_t, size_t);

static void *je_calloc1(size_t n)
{
	return je_calloc(1, n);
}

static void *peer_sym(void *h, const char *sym)
{
	return h ? dlsym(h, sym) : NULL;
}

static void load_impls(void)
{
	void *je = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_LOCAL);
	void *mi = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
	void *(*ma)(size_t), *(*za)(size_t);
	void (*fr)(void *);

	zeroing[0] = (struct impl){ "spanalloc", sa_alloc, sa_free_void };
	zeroing[1] = (struct impl){ "glibc_calloc", calloc1, free };
	plain[0] = (struct impl){ "spanalloc_malloc", sa_malloc, sa_free_void };
	plain[1] = (struct impl){ "glibc", malloc, free };
	nimpl = 2;
	ma = (void *(*)(size_t))peer_sym(je, "malloc");
	fr = (void (*)(void *))peer_sym(je, "free");
	je_calloc = (void *(*)(size_t, size_t))peer_sym(je, "calloc");
	if (ma && fr && je_calloc) {
		plain[nimpl] = (struct impl){ "jemalloc", ma, fr };
		zeroing[nimpl++] = (struct impl){ "jemalloc_calloc", je_calloc1, fr };
	}
	ma = (void *(*)(size_t))peer_sym(mi, "mi_malloc");
	za = (void *(*)(size_t))peer_sym(mi, "mi_zalloc");
	fr = (void (*)(void *))peer_sym(mi, "mi_free");
	if (ma && za && fr) {
		plain[nimpl] = (struct impl){ "mimalloc", ma, fr };
		zeroing[nimpl++] = (struct impl){ "mimalloc_zalloc", za, fr };
	}
	memcpy(tinyfam, zeroing, sizeof(tinyfam));
	tinyfam[0] = (struct impl){ "spanalloc_tiny", sa_alloc_noscan, sa_free_void };
}

/* The allocator named name, in any family, or NULL. */
static const struct impl *impl_named(const char *name)
{
	const struct impl *fams[] = { zeroing, plain, tinyfam };

	for (int f = 0; f < 3; f++)
		for (int i = 0; i < nimpl; i++)
			if (!strcmp(fams[f][i].name, name))
				return &fams[f][i];
	return NULL;
}

/* mimalloc's index in a family, or 0 when it is not installed. */
static int mimalloc_at(const struct impl *fam)
{
	for (int i = 1; i < nimpl; i++)
		if (!strncmp(fam[i].name, "mimalloc", 8))
			return i;
	return 0;
}

/* --- 2. span exchange --------------------------------------------------- */

#define EX_MAX_BATCH 8	/* the per-CPU stack's depth: no flush, no refill */
/*
 * A command of the module's type that it does not have: the module refuses
 * it once it has checked the caller, so its round trip is what every
 * exchange pays before the module does any work (system call, file
 * lookup, security hooks, dispatch).
 */
#define EX_FLOOR_CMD _IO(SPANALLOC_IOC_MAGIC, 0xff)

struct ex_arg {
	int fd;
	unsigned int batch;	/* 0: the floor, an ioctl refused at once */
	pthread_barrier_t *bar;
	uint64_t n;
	double secs;
	int err;
};

/* Holds batch spans; each call returns them all PARTIAL and gets as many. */
/* One call: an exchange of a->batch spans, or (batch 0) the floor. */
static int ex_call(struct ex_arg *a, struct spanalloc_exchange *ex,
		   struct spanalloc_ret *r, const struct spanalloc_span *s)
{
	if (!a->batch)
		return ioctl(a->fd, EX_FLOOR_CMD, NULL) == -1 && errno == ENOTTY ? 0 : EINVAL;
	for (unsigned int k = 0; k < a->batch; k++)
		r[k] = (struct spanalloc_ret){ .handle = s[k].handle,
					       .op = SPANALLOC_RET_PARTIAL };
	ex->ret_done = ex->get_done = 0;
	if (ioctl(a->fd, SPANALLOC_IOC_EXCHANGE, ex) || ex->get_done != a->batch)
		return errno ? errno : ENOMEM;
	return 0;
}

static void *ex_thread(void *p)
{
	struct ex_arg *a = p;
	struct spanalloc_span s[EX_MAX_BATCH];
	struct spanalloc_ret r[EX_MAX_BATCH];
	struct spanalloc_exchange ex = {
		.size = sizeof(ex), .get_ptr = (uintptr_t)s, .get_count = a->batch,
		.get_spanclass = SPANALLOC_SPANCLASS(5, 0),
	};
	uint64_t n = 0;
	double t0, end;

	if (a->batch && (ioctl(a->fd, SPANALLOC_IOC_EXCHANGE, &ex) ||
			 ex.get_done != a->batch)) {
		a->err = errno ? errno : ENOMEM;
		pthread_barrier_wait(a->bar);
		return NULL;
	}
	ex.ret_ptr = (uintptr_t)r;
	ex.ret_count = a->batch;
	pthread_barrier_wait(a->bar);
	t0 = now();
	end = t0 + secs_per_run;
	do {
		for (int i = 0; i < 64; i++) {
			a->err = ex_call(a, &ex, r, s);
			if (a->err)
				return NULL;
		}
		n += 64 * (a->batch ? a->batch : 1);
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

/*
 * Spans turned over per second (batch 0: refused calls per second), or -1
 * if the device is missing.
 */
static double span_exchange(int threads, unsigned int batch)
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
	map = mmap(NULL, info.max_heap_limit, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	pthread_barrier_init(&bar, NULL, threads);
	for (int i = 0; i < threads; i++) {
		a[i] = (struct ex_arg){ .fd = fd, .batch = batch, .bar = &bar };
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

/*
 * Instructions per pair, from two callgrind runs of --pairs mode that
 * differ only in their number of batches (so start-up cancels out).
 * Returns 0 if valgrind cannot be run.
 */
static double instructions_per_pair(size_t size, const char *impl)
{
	const int n1 = 100, n2 = 600;
	unsigned long long c[2] = { 0, 0 };

	for (int k = 0; k < 2; k++) {
		char cmd[512], line[512];
		FILE *f;

		snprintf(cmd, sizeof(cmd),
			 "valgrind --tool=callgrind --callgrind-out-file=/dev/null "
			 "/proc/%d/exe --pairs %zu %s %d 2>&1", (int)getpid(), size, impl,
			 k ? n2 : n1);
		f = popen(cmd, "r");
		if (!f)
			return 0;
		while (fgets(line, sizeof(line), f)) {
			char *p = strstr(line, "Collected : ");

			if (p)
				c[k] = strtoull(p + 12, NULL, 10);
		}
		if (pclose(f) || !c[k])
			return 0;
	}
	return (double)(c[1] - c[0]) / ((double)(n2 - n1) * BATCH);
}

/* A wall-time table's header: its first columns, then one per allocator. */
static void family_header(const struct impl *impls, const char *first, int mi)
{
	printf("%s", first);
	for (int i = 0; i < nimpl; i++)
		printf(" %16s", impls[i].name);
	printf("   vs glibc%s\n", mi ? "  vs mimalloc" : "");
}

/*
 * A wall-time row: the medians of runs[i][0..reps) in millions, with the
 * ratios of the first allocator's to glibc's and mimalloc's, into r.
 */
static void family_row(double r[4], double runs[4][16], int mi)
{
	for (int i = 0; i < nimpl; i++) {
		r[i] = median(runs[i], reps);
		printf(" %14.2f M", r[i] / 1e6);
	}
	printf("   %7.2fx", r[0] / r[1]);
	if (mi)
		printf("  %10.2fx", r[0] / r[mi]);
	printf("\n");
}

/*
 * Section 1: every size in sz, 1 thread and as many as CPUs, every
 * allocator of a family; BENCH names are alloc_free_<prefix><size>B.
 */
static void small_objects(const struct impl *impls, const int *thr,
			  const size_t *sz, unsigned int nsz, const char *title,
			  const char *prefix)
{
	int mi = mimalloc_at(impls);

	printf("== %s: alloc+free pairs per second (batches of %d), median of %d x %.1f s\n",
	       title, BATCH, reps, secs_per_run);
	family_header(impls, "size   threads ", mi);
	for (unsigned int z = 0; z < nsz; z++) {
		for (unsigned int t = 0; t < 2; t++) {
			double r[4] = { 0 }, runs[4][16];
			char name[48];

			if (t == 1 && thr[1] == thr[0])
				continue;
			for (int k = 0; k < reps; k++)
				for (int i = 0; i < nimpl; i++)
					runs[i][k] = alloc_free(&impls[i], sz[z], thr[t]);
			printf("%-6zu %-8d", sz[z], thr[t]);
			family_row(r, runs, mi);
			snprintf(name, sizeof(name), "alloc_free_%s%zuB", prefix, sz[z]);
			for (int i = 0; i < nimpl; i++)
				printf("BENCH name=%s impl=%s threads=%d pairs_per_s=%.0f ratio_vs_glibc=%.3f\n",
				       name, impls[i].name, thr[t], r[i], r[i] / r[1]);
		}
	}
}

/*
 * Section 5: instructions per pair for every allocator of a family at one
 * size, as a table row and BENCH lines alloc_free_<prefix><size>B_instructions.
 */
static void instructions_row(const struct impl *impls, size_t size, const char *label,
			     const char *prefix)
{
	int mi = mimalloc_at(impls);
	double ins[4] = { 0 };
	char name[64];

	printf("%-14s", label);
	for (int i = 0; i < nimpl; i++) {
		ins[i] = instructions_per_pair(size, impls[i].name);
		printf(" %16.1f", ins[i]);
	}
	printf("   %7.2fx", ins[1] / ins[0]);
	if (mi)
		printf("  %10.2fx", ins[mi] / ins[0]);
	printf("\n");
	snprintf(name, sizeof(name), "alloc_free_%s%zuB_instructions", prefix, size);
	for (int i = 0; i < nimpl; i++)
		printf("BENCH name=%s impl=%s threads=1 instructions_per_pair=%.1f ratio_vs_glibc=%.3f\n",
		       name, impls[i].name, ins[i], ins[1] / ins[i]);
}

/* Section 5 for a family: a header, then a row per size. */
static void instructions_table(const struct impl *impls, const char *title, const char *prefix)
{
	printf("%-14s", title);
	for (int i = 0; i < nimpl; i++)
		printf(" %16s", impls[i].name);
	printf("   glibc/sa  mimalloc/sa\n");
	for (unsigned int z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		char label[16];

		snprintf(label, sizeof(label), "%zu", sizes[z]);
		instructions_row(impls, sizes[z], label, prefix);
	}
}

/* --- free from another thread (sections 3 and 4) ----------------------- */

/*
 * One thread allocates 64-byte objects and hands them through one ring per
 * consumer to threads that free them: every free is from another thread.
 * Waits yield, so that the threads share an oversubscribed host fairly.
 */
#define PC_RING	1024
#define PC_MAX	3
struct pc_ring {
	_Alignas(64) _Atomic uint64_t head;
	_Alignas(64) _Atomic uint64_t tail;
	void *slot[PC_RING];
};
static struct pc_ring pc_rings[PC_MAX];

struct pc_arg {
	const struct impl *im;
	struct pc_ring *r;
	uint64_t n;
};

static void *pc_consumer(void *p)
{
	struct pc_arg *a = p;

	for (uint64_t t = 0; t < a->n; t++) {
		void *o;

		while (atomic_load_explicit(&a->r->head, memory_order_acquire) == t)
			sched_yield();
		o = a->r->slot[t % PC_RING];
		atomic_store_explicit(&a->r->tail, t + 1, memory_order_release);
		a->im->free(o);
	}
	return NULL;
}

/* Objects per second through nc consumers, per of them each. */
static double producer_consumer(const struct impl *im, int nc, uint64_t per)
{
	struct pc_arg a[PC_MAX];
	pthread_t th[PC_MAX];
	double t0;

	for (int i = 0; i < nc; i++) {
		atomic_store(&pc_rings[i].head, 0);
		atomic_store(&pc_rings[i].tail, 0);
		a[i] = (struct pc_arg){ .im = im, .r = &pc_rings[i], .n = per };
		pthread_create(&th[i], NULL, pc_consumer, &a[i]);
	}
	t0 = now();
	for (uint64_t h = 0; h < per; h++) {
		for (int i = 0; i < nc; i++) {
			struct pc_ring *r = &pc_rings[i];
			void *o;

			while (h - atomic_load_explicit(&r->tail, memory_order_acquire) >= PC_RING)
				sched_yield();
			o = im->alloc(64);
			*(volatile uint64_t *)o = h;
			r->slot[h % PC_RING] = o;
			atomic_store_explicit(&r->head, h + 1, memory_order_release);
		}
	}
	for (int i = 0; i < nc; i++)
		pthread_join(th[i], NULL);
	return (double)per * nc / (now() - t0);
}

/* --- 3. system calls -------------------------------------------------- */

static void syscalls_report(const char *name, const char *what,
			    const struct sa_stats *a, const struct sa_stats *b, uint64_t objects)
{
	uint64_t calls = b->syscalls - a->syscalls, spans = b->spans_got - a->spans_got;

	printf("%-13s %-52s %9.5f per object %7.3f per span got (%llu calls, %llu spans)\n",
	       name, what, (double)calls / objects, spans ? (double)calls / spans : 0.0,
	       (unsigned long long)calls, (unsigned long long)spans);
	printf("BENCH name=syscalls_%s impl=spanalloc threads=%d syscalls_per_object=%.5f syscalls_per_span=%.3f spans=%llu\n",
	       name, strcmp(name, "cross_thread") ? 1 : 2, (double)calls / objects,
	       spans ? (double)calls / spans : 0.0, (unsigned long long)spans);
}

/* The heap grows to 32 MiB of 64-byte objects and shrinks back, 3 times. */
static void syscalls_grow_shrink(void)
{
	enum { N = (32 << 20) / 64, ROUNDS = 3 };
	void **keep = malloc(N * sizeof(void *));
	struct sa_stats a, b;

	if (!keep)
		return;
	sa_get_stats(&a);
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < N; i++)
			keep[i] = sa_alloc(64);
		for (int i = 0; i < N; i++)
			sa_free(keep[i]);
	}
	sa_get_stats(&b);
	syscalls_report("grow_shrink", "grow to 32 MiB of 64 B objects, free all, x3", &a, &b,
			(uint64_t)N * ROUNDS);
	free(keep);
}

/* One thread allocates 64-byte objects, another frees them (section 4's). */
static void syscalls_cross_thread(void)
{
	enum { N = 1 << 20 };
	struct sa_stats a, b;

	sa_get_stats(&a);
	producer_consumer(&zeroing[0], 1, N);
	sa_get_stats(&b);
	syscalls_report("cross_thread", "1M objects of 64 B allocated by one thread, freed by another",
			&a, &b, N);
}

/* Section 4: every allocator of the plain family, 1 and 3 consumers. */
static void cross_thread_frees(int ncpu)
{
	int mi = mimalloc_at(plain);

	printf("\n== free from another thread: one thread allocates 64 B objects, consumers free them;\n"
	       "   objects per second, median of %d runs\n", reps);
	family_header(plain, "consumers ", mi);
	for (int nc = 1; nc <= PC_MAX && nc < ncpu; nc += 2) {
		double r[4] = { 0 }, runs[4][16];

		for (int k = 0; k < reps; k++)
			for (int i = 0; i < nimpl; i++)
				runs[i][k] = producer_consumer(&plain[i], nc, 200000 / nc);
		printf("%-10d", nc);
		family_row(r, runs, mi);
		for (int i = 0; i < nimpl; i++)
			printf("BENCH name=producer_consumer_64B impl=%s threads=%d objects_per_s=%.0f ratio_vs_glibc=%.3f\n",
			       plain[i].name, nc + 1, r[i], r[i] / r[1]);
	}
}

/* One row of section 6: n objects of size bytes live, from alloc. */
static void metadata_row(const char *label, size_t size, void *(*alloc)(size_t))
{
	size_t n = (16u << 20) / size;
	void **objs = malloc(n * sizeof(*objs));
	struct sa_meta_stats m;
	size_t i;

	if (!objs)
		return;
	sa_thread_flush();
	for (i = 0; i < n; i++)
		if (!(objs[i] = alloc(size)))
			break;
	if (i == n && !sa_get_meta_stats(&m, sizeof(m))) {
		double live = (double)n * size;

		printf("%-10s %10.1f %10.1f %12.1f %12.4f %12.4f %12.4f\n", label, live / (1 << 20),
		       m.span_bytes / (double)(1 << 20), m.total / 1024.0, m.total / live,
		       m.span_records / (double)m.span_bytes,
		       (m.tiny_masks + m.type_maps) / (double)m.span_bytes);
		printf("BENCH name=metadata_%s impl=spanalloc threads=1 meta_per_live_byte=%.4f record_share=%.4f table_share=%.4f\n",
		       label, m.total / live, m.span_records / (double)m.span_bytes,
		       (m.tiny_masks + m.type_maps) / (double)m.span_bytes);
	} else {
		printf("%-10s allocation failed\n", label);
	}
	while (i-- > 0)
		sa_free(objs[i]);
	free(objs);
	sa_thread_flush();
}

/* A typed object of size bytes: an array of one-pointer words (sa_alloc_typed). */
static void *alloc_typed(size_t size)
{
	static const uint64_t one = 1;
	static const struct sa_type words = { 8, &one };

	return sa_alloc_typed(size, &words);
}

static void metadata_report(void)
{
	static const size_t msizes[] = { 8, 16, 64, 256, 1024, 4096, 16384 };
	char label[32];

	printf("\n== library metadata per live byte (sa_get_meta_stats): 16 MiB of live objects of one size\n");
	printf("%-10s %10s %10s %12s %12s %12s %12s\n", "size", "live MiB", "spans MiB",
	       "meta KiB", "per live B", "records", "tables");
	for (size_t k = 0; k < sizeof(msizes) / sizeof(msizes[0]); k++) {
		snprintf(label, sizeof(label), "%zuB", msizes[k]);
		metadata_row(label, msizes[k], sa_alloc);
	}
	metadata_row("tiny4B", 4, sa_alloc_noscan);
	metadata_row("noscan8B", 8, sa_alloc_noscan);
	metadata_row("typed64B", 64, alloc_typed);
	metadata_row("typed1024B", 1024, alloc_typed);
	printf("(meta: records, tiny block masks, pointer maps, page map entries and thread\n"
	       " caches; records and tables: their bytes per byte of the spans in use)\n");
}

int main(int argc, char **argv)
{
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	int thr[] = { 1, ncpu > 16 ? 16 : ncpu };

	load_impls();
	if (argc == 5 && !strcmp(argv[1], "--pairs")) {
		size_t size = strtoul(argv[2], NULL, 10);
		const struct impl *im = impl_named(argv[3]);
		int n = atoi(argv[4]);
		void *objs[BATCH];

		if (!im)
			return 1;
		if (!strncmp(im->name, "spanalloc", 9) && sa_init()) {
			fprintf(stderr, "bench: %s\n", sa_strerror());
			return 1;
		}
		for (int r = 0; r < n; r++) {
			for (int i = 0; i < BATCH; i++) {
				objs[i] = im->alloc(size);
				*(volatile uint64_t *)objs[i] = i;
			}
			for (int i = 0; i < BATCH; i++)
				im->free(objs[i]);
		}
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "--exchange")) {
		exchange_only = 1;
		argc--;
		argv++;
	} else if (argc > 1 && !strcmp(argv[1], "--instructions")) {
		instructions_only = 1;
		argc--;
		argv++;
	} else if (argc > 1 && !strcmp(argv[1], "--metadata")) {
		metadata_only = 1;
		argc--;
		argv++;
	}
	if (argc > 1)
		secs_per_run = atof(argv[1]);
	if (argc > 2)
		reps = atoi(argv[2]) < 1 ? 1 : atoi(argv[2]) > 15 ? 15 : atoi(argv[2]);
	if (sa_init()) {
		fprintf(stderr, "bench: %s\n", sa_strerror());
		return 1;
	}

	if (instructions_only)
		goto instructions;
	if (metadata_only) {
		metadata_report();
		return 0;
	}
	if (!exchange_only) {
		static const size_t tiny_sizes[] = { 4, 8 };

		small_objects(zeroing, thr, sizes, sizeof(sizes) / sizeof(sizes[0]),
			      "small objects, zeroed (sa_alloc against calloc)", "");
		printf("\n");
		small_objects(plain, thr, sizes, sizeof(sizes) / sizeof(sizes[0]),
			      "small objects, not zeroed (sa_malloc against malloc)", "malloc_");
		printf("\n");
		small_objects(tinyfam, thr, tiny_sizes, 2,
			      "noscan objects under 16 B (spanalloc: sa_alloc_noscan, 4 B packed 4 to a 16-byte block, 8 B a class; peers: calloc)",
			      "tiny");
		cross_thread_frees(ncpu);
	}

	printf("\n== span exchange: spans turned over per second (each call returns a batch PARTIAL and gets as many)\n");
	if (set_pcp(8)) {
		printf("   cannot set /sys/module/spanalloc/parameters/pcp_depth (not root, or no module): skipped\n");
	} else {
		printf("%-6s %-8s %16s %16s %10s %12s %12s %12s %10s\n", "batch", "threads",
		       "per-CPU cache", "central only", "ratio", "floor us", "cache us",
		       "central us", "ratio");
		for (unsigned int batch = 1; batch <= EX_MAX_BATCH; batch = batch == 1 ? 4 : batch * 2) {
			for (int t = 1; t <= 4; t *= 2) {
				double on, off, fl, von[16], voff[16], vfl[16], won, woff, wfl;

				for (int k = 0; k < reps; k++) {
					set_pcp(8);
					von[k] = span_exchange(t, batch);
					set_pcp(0);
					voff[k] = span_exchange(t, batch);
					vfl[k] = span_exchange(t, 0);
				}
				set_pcp(8);
				on = median(von, reps);
				off = median(voff, reps);
				fl = median(vfl, reps);
				/*
				 * Microseconds per call on each thread; the module's
				 * own share is what is left above the floor.
				 */
				wfl = 1e6 * t / fl;
				won = 1e6 * t * batch / on - wfl;
				woff = 1e6 * t * batch / off - wfl;
				printf("%-6u %-8d %14.0f/s %14.0f/s %9.2fx %12.2f %12.2f %12.2f %9.2fx\n",
				       batch, t, on, off, on / off, wfl, won, woff, woff / won);
				printf("BENCH name=span_exchange_batch%u impl=spanalloc_pcp threads=%d spans_per_s=%.0f ratio_vs_central=%.3f us_above_floor=%.3f ratio_above_floor=%.3f\n",
				       batch, t, on, on / off, won, woff / won);
				printf("BENCH name=span_exchange_batch%u impl=spanalloc_central threads=%d spans_per_s=%.0f ratio_vs_central=1.000 us_above_floor=%.3f ratio_above_floor=1.000\n",
				       batch, t, off, woff);
				printf("BENCH name=ioctl_floor impl=spanalloc threads=%d calls_per_s=%.0f us_per_call=%.3f\n",
				       t, fl, wfl);
			}
		}
		printf("(us: per call on each thread; floor: an ioctl the module refuses at once;\n"
		       " cache and central: what an exchange takes above the floor)\n");
	}

	if (exchange_only)
		return 0;
	printf("\n== system calls (library's count), per object and per span got\n");
	syscalls_grow_shrink();
	syscalls_cross_thread();

	metadata_report();

instructions:
	printf("\n== instructions per alloc+free pair (callgrind, 1 thread, batches of %d)\n", BATCH);
	if (!instructions_per_pair(64, "glibc")) {
		printf("   valgrind is not installed or cannot run this program: skipped\n");
		return 0;
	}
	instructions_table(zeroing, "zeroed", "");
	instructions_row(tinyfam, 4, "tiny4", "tiny");
	instructions_row(tinyfam, 8, "noscan8", "tiny");
	instructions_table(plain, "not zeroed", "malloc_");
	return 0;
}
