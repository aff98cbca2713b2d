// SPDX-License-Identifier: GPL-2.0
/*
 * profile_test: the heap profile, read back by pprof (`go tool pprof`, as
 * a user reads it): what each call stack allocated and still uses, within
 * the sampling's error; collected and freed objects leave the in-use view;
 * SPANALLOC_HEAPPROFILE writes a profile at exit, and under the drop-in
 * the library's own frames are not in it.
 *
 * Needs /dev/spanalloc and Go's pprof; says SKIP when either is missing.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "spanalloc.h"
#include "kselftest_harness.h"
#include "util.h"

#define MIB (1024.0 * 1024.0)
/* small: many samples, so that 25% is several standard deviations */
#define RATE (16 * 1024)

static void *volatile sink;

static __attribute__((noipa)) void **keep_a(size_t total, size_t size)
{
	size_t n = total / size;
	void **v = sa_alloc_noscan(n * sizeof(*v));

	for (size_t i = 0; v && i < n; i++)
		v[i] = sa_alloc_noscan(size);
	return v;
}

static __attribute__((noipa)) void churn_b(size_t total, size_t size)
{
	for (size_t i = 0; i < total / size; i++) {
		void *p = sa_malloc(size);

		sink = p;
		sa_free(p);
	}
}

static __attribute__((noipa)) void **large_c(int n, size_t size)
{
	void **v = sa_alloc_noscan((size_t)n * sizeof(*v));

	for (int i = 0; v && i < n; i++)
		v[i] = sa_alloc_noscan(size);
	return v;
}

/*
 * Two call sites of one size class, called in turn; each keeps its own
 * frame (no tail call), so that it is in the stacks.
 */
static __attribute__((noipa)) void *site_x(void)
{
	void *p = sa_alloc_noscan(48);

	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

static __attribute__((noipa)) void *site_y(void)
{
	void *p = sa_alloc_noscan(48);

	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

static __attribute__((noipa)) void garbage_d(size_t total, size_t size)
{
	for (size_t i = 0; i < total / size; i++)
		sink = sa_alloc(size);
	sink = NULL;
}

/* Frees every object of keep_a's vector, then the vector, on its thread. */
static void *free_all(void *arg)
{
	void **v = arg;

	for (size_t i = 0; i < (16 << 20) / 1024; i++)
		sa_free(v[i]);
	sa_free(v);
	sa_thread_flush();
	return NULL;
}

/* `go tool pprof` with args; its output, or NULL. */
static char *pprof(const char *args)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "HOME=${HOME:-/tmp} go tool pprof %s 2>&1", args);
	return sa_t_run(cmd);
}

/* The profile now, in a new file named from tmpl (mkstemp's); 0 or -1. */
static int profile_to(char *tmpl)
{
	int fd = mkstemp(tmpl);

	if (fd < 0)
		return -1;
	close(fd);
	return sa_heap_profile_write(tmpl);
}

/* pprof's -top -cum of the profile at path for sample index (NULL if it failed). */
static char *top_of(const char *path, const char *index)
{
	char args[512];

	snprintf(args, sizeof(args), "-top -cum -nodecount=500 %s-sample_index=%s %s",
		 strstr(index, "space") ? "-unit=B " : "", index, path);
	return pprof(args);
}

/*
 * A function's value in `pprof -top -cum -unit=B` (or -unit=count) output:
 * the fourth column of its line, or -1 when it has none.
 */
static double cum_of(const char *top, const char *fn)
{
	for (const char *l = top; l && *l; ) {
		const char *e = strchr(l, '\n');
		char line[512], name[256], flat[64], fp[64], sp[64], cum[64];

		snprintf(line, sizeof(line), "%.*s", (int)(e ? e - l : (long)strlen(l)), l);
		if (sscanf(line, "%63s %63s %63s %63s %*s %255s", flat, fp, sp, cum, name) == 5 &&
		    !strcmp(name, fn))
			return strtod(cum, NULL);
		l = e ? e + 1 : NULL;
	}
	return -1;
}

static bool have_pprof(void)
{
	return !system("go tool pprof -h > /dev/null 2>&1");
}

#define SKIP_UNLESS_READY() do { \
	if (access(SA_DEV, F_OK)) \
		SKIP(return, "no " SA_DEV ": load spanalloc.ko (scripts/vm-run does)"); \
	if (!have_pprof()) \
		SKIP(return, "no `go tool pprof` (Debian's golang-go)"); \
} while (0)

TEST(profile_attributes_bytes_to_their_call_sites)
{
	char path[] = "/tmp/sa-profile-XXXXXX";
	double a, b_alloc, b_inuse, c;
	void **kept_a, **kept_c;
	char *top;

	SKIP_UNLESS_READY();
	sa_set_profile_rate(RATE);
	EXPECT_EQ(RATE, sa_set_profile_rate(RATE));
	kept_a = keep_a(16 << 20, 1024);
	churn_b(8 << 20, 64);
	kept_c = large_c(8, 1 << 20);
	ASSERT_NE(NULL, kept_a);
	ASSERT_NE(NULL, kept_c);
	/* the frees reach the profile when the holder takes them in */
	sa_thread_flush();
	ASSERT_EQ(0, profile_to(path));

	top = top_of(path, "inuse_space");
	ASSERT_NE(NULL, top);
	a = cum_of(top, "keep_a");
	b_inuse = cum_of(top, "churn_b");
	c = cum_of(top, "large_c");
	TH_LOG("in use: keep_a %.2f MiB (16), churn_b %.2f MiB (0), large_c %.2f MiB (8)",
	       a / MIB, b_inuse / MIB, c / MIB);
	EXPECT_LT(fabs(a / MIB - 16), 16 * 0.25) TH_LOG("%s", top);
	EXPECT_LT(fabs(c / MIB - 8), 8 * 0.25);
	/* all freed: no line, or nothing left */
	EXPECT_GT(0.5, b_inuse / MIB);
	free(top);

	top = top_of(path, "alloc_space");
	ASSERT_NE(NULL, top);
	b_alloc = cum_of(top, "churn_b");
	TH_LOG("allocated: churn_b %.2f MiB (8)", b_alloc / MIB);
	EXPECT_LT(fabs(b_alloc / MIB - 8), 8 * 0.25) TH_LOG("%s", top);
	free(top);

	/* objects: 16 Ki of 1 KiB in keep_a (its vector besides) */
	top = top_of(path, "inuse_objects");
	ASSERT_NE(NULL, top);
	a = cum_of(top, "keep_a");
	TH_LOG("objects in use: keep_a %.0f (16385)", a);
	EXPECT_LT(fabs(a - 16385), 16385 * 0.25) TH_LOG("%s", top);
	free(top);

	/* freed, on this thread and on another: out of the in-use view */
	for (int i = 0; i < 8; i++)
		sa_free(kept_c[i]);
	{
		pthread_t t;

		ASSERT_EQ(0, pthread_create(&t, NULL, free_all, kept_a));
		ASSERT_EQ(0, pthread_join(t, NULL));
	}
	/* the other thread's frees reach the profile as this one takes them in */
	sa_thread_flush();
	ASSERT_EQ(0, sa_heap_profile_write(path));
	top = top_of(path, "inuse_space");
	ASSERT_NE(NULL, top);
	a = cum_of(top, "keep_a");
	c = cum_of(top, "large_c");
	TH_LOG("in use once freed: keep_a %.2f MiB, large_c %.2f MiB", a / MIB, c / MIB);
	/* the vector keep_a made is still there: 128 KiB */
	EXPECT_GT(0.5, a / MIB) TH_LOG("%s", top);
	EXPECT_GT(0.5, c / MIB);
	free(top);
	unlink(path);
}

/*
 * Samples go to the allocation the sampling point falls in, not to
 * whichever call runs into the slow path next: two sites taking turns in
 * one size class share the samples as they share the bytes.
 */
TEST(call_sites_taking_turns_in_one_class_share_the_samples)
{
	char path[] = "/tmp/sa-profile-XXXXXX";
	enum { N = 1 << 17 };
	static void *keep[2 * N];
	double x, y;
	char *top;

	SKIP_UNLESS_READY();
	sa_set_profile_rate(RATE);
	for (int i = 0; i < N; i++) {
		keep[2 * i] = site_x();
		keep[2 * i + 1] = site_y();
	}
	ASSERT_EQ(0, profile_to(path));
	top = top_of(path, "alloc_space");
	ASSERT_NE(NULL, top);
	x = cum_of(top, "site_x");
	y = cum_of(top, "site_y");
	TH_LOG("site_x %.2f MiB, site_y %.2f MiB (%.2f each)", x / MIB, y / MIB, N * 48 / MIB);
	EXPECT_LT(fabs(x / MIB - N * 48 / MIB), N * 48 / MIB * 0.25) TH_LOG("%s", top);
	EXPECT_LT(fabs(y / MIB - N * 48 / MIB), N * 48 / MIB * 0.25) TH_LOG("%s", top);
	free(top);
	unlink(path);
	sink = keep;
}

TEST(collected_objects_leave_the_inuse_profile)
{
	char path[] = "/tmp/sa-profile-XXXXXX";
	double in, all, want;
	void *one;
	char *top;

	SKIP_UNLESS_READY();
	ASSERT_EQ(0, sa_gc_init());
	sa_set_profile_rate(RATE);
	/* what the heap gives a 128-byte object (a collected heap adds a byte) */
	one = sa_alloc(128);
	ASSERT_NE(NULL, one);
	want = (8 << 20) / 128 * (double)sa_usable_size(one) / MIB;
	sa_free(one);
	garbage_d(8 << 20, 128);
	sa_gc_collect();
	ASSERT_EQ(0, profile_to(path));
	top = top_of(path, "alloc_space");
	ASSERT_NE(NULL, top);
	all = cum_of(top, "garbage_d");
	free(top);
	top = top_of(path, "inuse_space");
	ASSERT_NE(NULL, top);
	in = cum_of(top, "garbage_d");
	free(top);
	TH_LOG("garbage_d: %.2f MiB allocated (%.2f), %.2f MiB in use after a collection",
	       all / MIB, want, in / MIB);
	EXPECT_LT(fabs(all / MIB - want), want * 0.25);
	/* conservative: a stale word may keep an object or two */
	EXPECT_GT(0.5, in / MIB);
	unlink(path);
}

TEST(heapprofile_is_written_at_exit_without_the_drop_ins_frames)
{
	char prog[600], lib[600], cmd[2048], args[256], *top, *raw;
	char base[] = "/tmp/sa-profile-XXXXXX", path[96], pidfile[96];
	struct stat st;
	FILE *f;
	int fd, pid = 0;

	SKIP_UNLESS_READY();
	/* a C program that calls only malloc and free, with its symbols */
	sa_t_build_path(prog, sizeof(prog), "tools/allocbench");
	sa_t_build_path(lib, sizeof(lib), "lib/libspanalloc-malloc.so");
	fd = mkstemp(base);
	ASSERT_LE(0, fd);
	close(fd);
	unlink(base);
	/* %p is the pid of the process that writes it: the shell exec's it */
	snprintf(pidfile, sizeof(pidfile), "%s.pid", base);
	snprintf(cmd, sizeof(cmd),
		 "sh -c 'echo $$ > %s; SPANALLOC_REQUIRE=1 SPANALLOC_HEAPPROFILE=%s.%%p SPANALLOC_PROFILE_RATE=%d LD_PRELOAD=%s exec %s larson 2 20' > /dev/null 2>&1",
		 pidfile, base, RATE, lib, prog);
	ASSERT_EQ(0, system(cmd));
	f = fopen(pidfile, "r");
	ASSERT_NE(NULL, f);
	ASSERT_EQ(1, fscanf(f, "%d", &pid));
	fclose(f);
	unlink(pidfile);
	snprintf(path, sizeof(path), "%s.%d", base, pid);
	ASSERT_EQ(0, stat(path, &st)) TH_LOG("no profile %s written at exit", path);
	EXPECT_LT(0, st.st_size);

	snprintf(args, sizeof(args), "-top -nodecount=500 -unit=B -sample_index=alloc_space %s", path);
	top = pprof(args);
	ASSERT_NE(NULL, top);
	/* the drop-in's frames are cut: nothing of it is where bytes are counted */
	EXPECT_EQ(NULL, strstr(top, " sa_")) TH_LOG("%s", top);
	EXPECT_EQ(NULL, strstr(top, " malloc\n")) TH_LOG("%s", top);
	/* and the program's are there: its threads allocate */
	EXPECT_NE(NULL, strstr(top, " larson_thread\n")) TH_LOG("%s", top);
	free(top);
	snprintf(args, sizeof(args), "-traces %s", path);
	raw = pprof(args);
	ASSERT_NE(NULL, raw);
	EXPECT_NE(NULL, strstr(raw, " larson_thread\n")) TH_LOG("%.4000s", raw);
	free(raw);
	unlink(path);
}

TEST_HARNESS_MAIN
