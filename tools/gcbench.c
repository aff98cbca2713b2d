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
 * A pause is the time the world is stopped: for spanalloc from asking the
 * threads to stop to all running again (sa_gc_get_pauses); for Boehm from
 * GC_EVENT_PRE_STOP_WORLD to GC_EVENT_POST_START_WORLD. Each collector is
 * run as configured by default, and with GCBENCH_VARIANT=exact: Boehm
 * with GC_set_all_interior_pointers(0), spanalloc with end pointers off
 * (neither then adds a byte to every object, so 16-byte objects stay 16).
 *
 * Prints one line:
 *   BENCH name=... impl=... wall_s=... cpu_s=... rss_kb=... gcs=...
 *         max_pause_ms=... stopped_ms=... p50_pause_ms=... p90_pause_ms=...
 *         markers=... (marking threads, the collecting one included)
 * and exits 1 if a tree or the array came out wrong.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Every pause, in ms: up to MAX_PAUSES of them. */
#define MAX_PAUSES	65536
static double pauses[MAX_PAUSES];
static unsigned int npauses;
static double stopped_ms;	/* all pauses, even past MAX_PAUSES */

static int exact(void)
{
	const char *e = getenv("GCBENCH_VARIANT");

	return e && !strcmp(e, "exact");
}

#if defined(GCB_SPANALLOC)
#include "spanalloc.h"
#define IMPL		(exact() ? "spanalloc-exact" : "spanalloc")
#define GC_START()	gcb_sa_start()
#define NEW(sz)		sa_alloc(sz)
#define NEW_ATOMIC(sz)	sa_alloc_noscan(sz)

static void gcb_sa_start(void)
{
	if (exact())
		setenv("SPANALLOC_GC_END_POINTERS", "0", 1);
	if (sa_gc_init()) {
		fprintf(stderr, "gcbench: %s\n", sa_strerror());
		exit(2);
	}
}

static void gcb_counts(uint64_t *gcs, double *max_pause_ms)
{
	static uint64_t ns[256];
	struct sa_gc_stats st;
	int n;

	sa_gc_get_stats(&st);
	*gcs = st.cycles;
	*max_pause_ms = (double)st.pause_max_ns / 1e6;
	stopped_ms = (double)st.pause_total_ns / 1e6;
	/* the library keeps the last 256: the distribution is theirs */
	n = sa_gc_get_pauses(ns, 256);
	for (int i = 0; i < n; i++)
		pauses[npauses++] = (double)ns[i] / 1e6;
	if (getenv("GCBENCH_VERBOSE")) {
		struct sa_stats a;

		sa_get_stats(&a);
		fprintf(stderr, "gcbench: pauses %.1f ms in all, %llu objects collected, %u markers, %llu system calls, %llu spans got\n",
			(double)st.pause_total_ns / 1e6,
			(unsigned long long)st.collected_objects, st.mark_workers,
			(unsigned long long)a.syscalls, (unsigned long long)a.spans_got);
	}
}

static int gcb_markers(void)
{
	struct sa_gc_stats st;

	return sa_gc_get_stats(&st) ? 0 : (int)st.mark_workers;
}
#elif defined(GCB_BOEHM)
#define GC_THREADS	/* parallel markers, and the calls that say how many */
#include <gc/gc.h>
#define IMPL		(exact() ? "boehm-exact" : "boehm")
#define GC_START()	gcb_boehm_start()
#define NEW(sz)		GC_MALLOC(sz)
#define NEW_ATOMIC(sz)	GC_MALLOC_ATOMIC(sz)

static double gcb_now(void);
static double boehm_stop_t, boehm_max_pause;

/* The world is stopped from PRE_STOP_WORLD to POST_START_WORLD. */
static void gcb_boehm_event(GC_EventType ev)
{
	if (ev == GC_EVENT_PRE_STOP_WORLD) {
		boehm_stop_t = gcb_now();
	} else if (ev == GC_EVENT_POST_START_WORLD && boehm_stop_t > 0) {
		double d = (gcb_now() - boehm_stop_t) * 1e3;

		boehm_stop_t = 0;
		stopped_ms += d;
		if (npauses < MAX_PAUSES)
			pauses[npauses++] = d;
		if (d > boehm_max_pause)
			boehm_max_pause = d;
	}
}

static void gcb_boehm_start(void)
{
	if (exact())
		GC_set_all_interior_pointers(0);
	GC_INIT();
	/* a program with one thread gets Boehm's parallel markers only so */
	GC_start_mark_threads();
	GC_set_on_collection_event(gcb_boehm_event);
}

static void gcb_counts(uint64_t *gcs, double *max_pause_ms)
{
	*gcs = GC_get_gc_no();
	*max_pause_ms = boehm_max_pause;
}

static int gcb_markers(void)
{
	return GC_get_parallel() + 1;
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

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The q-quantile of the pauses recorded, 0 if none. */
static double pause_quantile(double q)
{
	if (!npauses)
		return 0;
	qsort(pauses, npauses, sizeof(pauses[0]), cmp_double);
	return pauses[(unsigned int)(q * (npauses - 1) + 0.5)];
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
	printf("BENCH name=%s impl=%s wall_s=%.3f cpu_s=%.3f rss_kb=%ld gcs=%llu max_pause_ms=%.2f stopped_ms=%.1f p50_pause_ms=%.2f p90_pause_ms=%.2f markers=%d%s\n",
	       name, IMPL, wall, cpu, ru.ru_maxrss, (unsigned long long)gcs, max_pause,
	       stopped_ms, pause_quantile(0.5), pause_quantile(0.9), gcb_markers(),
	       failed ? " WRONG" : "");
	return failed;
}
