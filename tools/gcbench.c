// SPDX-License-Identifier: MIT
/*
 * gcbench: two classic garbage collector benchmarks, built twice: against
 * libspanalloc's collector (-DGCB_SPANALLOC) and against Boehm GC
 * (-DGCB_BOEHM, Debian's libgc-dev). Same code, same allocation sizes;
 * only the four macros below differ.
 *
 *   gcbench      Ellis, Kovac and Boehm's GCBench: a stretch tree of
 *                depth 18, a long-lived tree of depth 16 and an array of
 *                500,000 doubles, then short-lived trees of depth 4 to 16
 *                built top-down (Populate) and bottom-up (MakeTree).
 *   binarytrees  the benchmarks game's binary-trees at depth N: a stretch
 *                tree of N + 1, a long-lived tree of N, and 2^(N - d + 4)
 *                trees of each depth d = 4, 6, ..., N, each checked.
 *
 * Prints one line:
 *   BENCH name=... impl=... wall_s=... cpu_s=... rss_kb=... gcs=... max_pause_ms=...
 * and exits 1 if a tree or the array came out wrong.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#if defined(GCB_SPANALLOC)
#include "spanalloc.h"
#define IMPL		"spanalloc"
#define GC_START()	gcb_sa_start()
#define NEW(sz)		sa_alloc(sz)
#define NEW_ATOMIC(sz)	sa_alloc_noscan(sz)

static void gcb_sa_start(void)
{
	if (sa_gc_init()) {
		fprintf(stderr, "gcbench: %s\n", sa_strerror());
		exit(2);
	}
}

static void gcb_counts(uint64_t *gcs, double *max_pause_ms)
{
	struct sa_gc_stats st;

	sa_gc_get_stats(&st);
	*gcs = st.cycles;
	*max_pause_ms = (double)st.pause_max_ns / 1e6;
	if (getenv("GCBENCH_VERBOSE")) {
		struct sa_stats a;

		sa_get_stats(&a);
		fprintf(stderr, "gcbench: pauses %.1f ms in all, %llu objects collected, %u markers, %llu system calls, %llu spans got\n",
			(double)st.pause_total_ns / 1e6,
			(unsigned long long)st.collected_objects, st.mark_workers,
			(unsigned long long)a.syscalls, (unsigned long long)a.spans_got);
	}
}
#elif defined(GCB_BOEHM)
#include <gc/gc.h>
#define IMPL		"boehm"
#define GC_START()	gcb_boehm_start()
#define NEW(sz)		GC_MALLOC(sz)
#define NEW_ATOMIC(sz)	GC_MALLOC_ATOMIC(sz)

static double gcb_now(void);
static double boehm_start_t, boehm_max_pause;

/* Boehm reports a collection's start and end; the world is stopped between. */
static void gcb_boehm_event(GC_EventType ev)
{
	if (ev == GC_EVENT_START) {
		boehm_start_t = gcb_now();
	} else if (ev == GC_EVENT_END) {
		double d = gcb_now() - boehm_start_t;

		if (d > boehm_max_pause)
			boehm_max_pause = d;
	}
}

static void gcb_boehm_start(void)
{
	GC_INIT();
	GC_set_on_collection_event(gcb_boehm_event);
}

static void gcb_counts(uint64_t *gcs, double *max_pause_ms)
{
	*gcs = GC_get_gc_no();
	*max_pause_ms = boehm_max_pause * 1e3;
}
#else
#error "build with -DGCB_SPANALLOC or -DGCB_BOEHM"
#endif

static double gcb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int failed;

/* --- GCBench ------------------------------------------------------------ */

struct gnode {
	struct gnode *left, *right;
	int i, j;
};

enum { STRETCH = 18, LONG_LIVED = 16, ARRAY_SIZE = 500000, MIN_TREE = 4, MAX_TREE = 16 };

static struct gnode *gnew(struct gnode *l, struct gnode *r)
{
	struct gnode *n = NEW(sizeof(*n));

	if (!n) {
		fprintf(stderr, "gcbench: out of memory\n");
		exit(2);
	}
	n->left = l;
	n->right = r;
	return n;
}

static int tree_size(int i)
{
	return (1 << (i + 1)) - 1;
}

static int num_iters(int i)
{
	return 2 * tree_size(STRETCH) / tree_size(i);
}

/* Builds the tree top-down: children are attached before they are filled. */
static void populate(int depth, struct gnode *n)
{
	if (depth-- <= 0)
		return;
	n->left = gnew(NULL, NULL);
	n->right = gnew(NULL, NULL);
	populate(depth, n->left);
	populate(depth, n->right);
}

/* Builds the tree bottom-up. */
static struct gnode *make_tree(int depth)
{
	if (depth <= 0)
		return gnew(NULL, NULL);
	return gnew(make_tree(depth - 1), make_tree(depth - 1));
}

static long count_gnodes(const struct gnode *n)
{
	return n ? 1 + count_gnodes(n->left) + count_gnodes(n->right) : 0;
}

static void time_construction(int depth)
{
	int iters = num_iters(depth);

	for (int i = 0; i < iters; i++) {
		struct gnode *t = gnew(NULL, NULL);

		populate(depth, t);
		if (i == 0 && count_gnodes(t) != tree_size(depth))
			failed = 1;
	}
	for (int i = 0; i < iters; i++) {
		struct gnode *t = make_tree(depth);

		if (i == 0 && count_gnodes(t) != tree_size(depth))
			failed = 1;
	}
}

static void gcbench(void)
{
	struct gnode *long_lived;
	double *array;

	make_tree(STRETCH);	/* stretch the heap, then drop it */
	long_lived = gnew(NULL, NULL);
	populate(LONG_LIVED, long_lived);
	array = NEW_ATOMIC(sizeof(double) * ARRAY_SIZE);
	for (int i = 0; i < ARRAY_SIZE / 2; i++) {
		array[i] = 1.0 / i;
		array[ARRAY_SIZE - 1 - i] = 1.0 / i;
	}
	for (int d = MIN_TREE; d <= MAX_TREE; d += 2)
		time_construction(d);
	if (array[1000] != 1.0 / 1000 || count_gnodes(long_lived) != tree_size(LONG_LIVED))
		failed = 1;
}

/* --- binary-trees ------------------------------------------------------- */

struct bnode {
	struct bnode *left, *right;
};

static struct bnode *bottom_up(int depth)
{
	struct bnode *n = NEW(sizeof(*n));

	if (!n) {
		fprintf(stderr, "gcbench: out of memory\n");
		exit(2);
	}
	if (depth > 0) {
		n->left = bottom_up(depth - 1);
		n->right = bottom_up(depth - 1);
	} else {
		n->left = n->right = NULL;
	}
	return n;
}

static long check(const struct bnode *n)
{
	return n->left ? 1 + check(n->left) + check(n->right) : 1;
}

static void binarytrees(int max_depth, int quiet)
{
	struct bnode *long_lived;
	long c;

	c = check(bottom_up(max_depth + 1));
	if (c != tree_size(max_depth + 1))
		failed = 1;
	if (!quiet)
		printf("stretch tree of depth %d\t check: %ld\n", max_depth + 1, c);
	long_lived = bottom_up(max_depth);
	for (int d = 4; d <= max_depth; d += 2) {
		long iters = 1L << (max_depth - d + 4), sum = 0;

		for (long i = 0; i < iters; i++)
			sum += check(bottom_up(d));
		if (sum != iters * tree_size(d))
			failed = 1;
		if (!quiet)
			printf("%ld\t trees of depth %d\t check: %ld\n", iters, d, sum);
	}
	c = check(long_lived);
	if (c != tree_size(max_depth))
		failed = 1;
	if (!quiet)
		printf("long lived tree of depth %d\t check: %ld\n", max_depth, c);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "gcbench";
	int depth = argc > 2 ? atoi(argv[2]) : 16;
	double t0, wall, cpu, max_pause;
	struct rusage ru;
	uint64_t gcs;

	if (strcmp(name, "gcbench") && strcmp(name, "binarytrees")) {
		fprintf(stderr, "usage: %s gcbench | binarytrees [depth]\n", argv[0]);
		return 2;
	}
	GC_START();
	t0 = gcb_now();
	if (!strcmp(name, "gcbench"))
		gcbench();
	else
		binarytrees(depth < 6 ? 6 : depth, 1);
	wall = gcb_now() - t0;
	getrusage(RUSAGE_SELF, &ru);
	cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
	      (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
	gcb_counts(&gcs, &max_pause);
	printf("BENCH name=%s impl=%s wall_s=%.3f cpu_s=%.3f rss_kb=%ld gcs=%llu max_pause_ms=%.2f%s\n",
	       name, IMPL, wall, cpu, ru.ru_maxrss, (unsigned long long)gcs, max_pause,
	       failed ? " WRONG" : "");
	return failed;
}
