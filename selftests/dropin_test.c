// SPDX-License-Identifier: GPL-2.0
/*
 * dropin_test: libspanalloc-malloc, the malloc family replaced. This
 * program is linked with libspanalloc-malloc.a, so every malloc in it
 * (the harness's, stdio's, strdup's) is spanalloc's: each test checks
 * what glibc's malloc promises, and that the memory really comes from
 * the heap. The start without a module (glibc's allocator takes over,
 * or SPANALLOC_REQUIRE=1 refuses to start) runs this program again with
 * SPANALLOC_DEVICE pointing nowhere.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "child.h"
#include "kselftest_harness.h"
#include "spanalloc.h"

#define SA_DEV "/dev/spanalloc"

/* Sizes and pointers the compiler must not see through: misuse on purpose. */
static volatile size_t v_huge = SIZE_MAX / 2;

static void *launder(void *p)
{
	void *volatile v = p;

	return v;
}

/* Whether p is an object spanalloc handed out (and where it starts). */
static int ours(const void *p)
{
	return p && sa_base(launder((void *)p)) != NULL;
}

#define NEED_HEAP() do { if (access(SA_DEV, F_OK)) \
	SKIP(return, "no " SA_DEV ": load spanalloc.ko (scripts/vm-run does)"); } while (0)

TEST(malloc_gives_aligned_usable_heap_memory_of_every_size)
{
	NEED_HEAP();
	for (size_t n = 0; n <= 70000; n += n < 256 ? 1 : n < 4096 ? 61 : 4999) {
		unsigned char *p = malloc(n);

		ASSERT_NE(NULL, p);
		ASSERT_TRUE(ours(p)) TH_LOG("malloc(%zu) is not spanalloc's", n);
		/* max_align_t from 16 bytes; 8 below (anything that fits) */
		EXPECT_EQ(0, (uintptr_t)p % (n >= 16 ? 16 : 8)) TH_LOG("malloc(%zu) = %p", n, p);
		EXPECT_LE(n, malloc_usable_size(p));
		memset(p, 0xa5, malloc_usable_size(p));
		free(p);
	}
}

/*
 * malloc never makes a tiny object: under 17 bytes it takes the 8-byte
 * class or the 16-byte one, the fast path by the size as asked and the
 * slow path (here after a flush, which leaves the thread no span) by the
 * size sa_malloc_size() gives it. A slow path asking for the size as
 * asked would pack 1 to 15 bytes into tiny blocks (usable 2 to 14).
 */
TEST(small_mallocs_take_the_8_and_16_byte_classes_on_every_path)
{
	NEED_HEAP();
	for (size_t n = 0; n <= 16; n++) {
		size_t want = n <= 8 ? 8 : 16;

		for (int path = 0; path < 2; path++) {
			unsigned char *p, *q;

			if (path == 0)
				sa_thread_flush();	/* the slow path */
			p = malloc(n);
			q = malloc(n);	/* the fast path, from p's span */
			ASSERT_NE(NULL, p);
			ASSERT_NE(NULL, q);
			EXPECT_EQ(want, malloc_usable_size(p)) TH_LOG("malloc(%zu), path %d", n, path);
			EXPECT_EQ(want, malloc_usable_size(q)) TH_LOG("malloc(%zu), path %d", n, path);
			EXPECT_EQ(0, (uintptr_t)p % 8);
			EXPECT_EQ(0, (uintptr_t)q % 8);
			free(p);
			free(q);
		}
	}
}

TEST(calloc_zeroes_reused_memory_and_checks_overflow)
{
	NEED_HEAP();
	for (int round = 0; round < 3; round++) {
		void *dirty[512];

		for (int i = 0; i < 512; i++) {
			dirty[i] = malloc((size_t)i * 7 + 1);
			memset(dirty[i], 0xff, (size_t)i * 7 + 1);
		}
		for (int i = 0; i < 512; i++)
			free(dirty[i]);
		for (int i = 0; i < 512; i++) {
			size_t n = (size_t)i * 7 + 1;
			unsigned char *p = calloc(1, n);

			ASSERT_NE(NULL, p);
			for (size_t k = 0; k < n; k++)
				ASSERT_EQ(0, p[k]) TH_LOG("calloc(1, %zu) not zeroed", n);
			dirty[i] = p;
		}
		for (int i = 0; i < 512; i++)
			free(dirty[i]);
	}
	errno = 0;
	EXPECT_EQ(NULL, calloc(v_huge, 3));
	EXPECT_EQ(ENOMEM, errno);
}

TEST(realloc_keeps_contents_and_reallocarray_checks_overflow)
{
	size_t prev = 0;
	char *p = NULL;

	NEED_HEAP();
	for (size_t n = 1; n < 300000; n = n * 3 / 2 + 1) {
		p = realloc(p, n);
		ASSERT_NE(NULL, p);
		ASSERT_TRUE(ours(p));
		for (size_t k = 0; k < prev; k++)
			ASSERT_EQ((char)k, p[k]) TH_LOG("realloc to %zu lost a byte", n);
		for (size_t k = prev; k < n; k++)
			p[k] = (char)k;
		prev = n;
	}
	p = realloc(p, 10);
	ASSERT_NE(NULL, p);
	EXPECT_EQ(9, p[9]);
	errno = 0;
	EXPECT_EQ(NULL, reallocarray(launder(p), v_huge, 4));
	EXPECT_EQ(ENOMEM, errno);
	p = reallocarray(p, 100, 4);
	ASSERT_NE(NULL, p);
	EXPECT_EQ(9, p[9]);
	free(p);
}

TEST(every_aligned_allocator_aligns)
{
	NEED_HEAP();
	for (size_t a = 1; a <= (4 << 20); a *= 2) {
		size_t sizes[] = { 1, a / 2 + 1, a, 3 * a + 5, 70000 };

		for (unsigned int i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			size_t n = sizes[i];
			void *p = memalign(a, n), *q = aligned_alloc(a, n), *r = NULL;

			ASSERT_NE(NULL, p);
			ASSERT_NE(NULL, q);
			EXPECT_EQ(0, (uintptr_t)p % a);
			EXPECT_EQ(0, (uintptr_t)q % a);
			EXPECT_LE(n, malloc_usable_size(p));
			if (a >= sizeof(void *)) {
				ASSERT_EQ(0, posix_memalign(&r, a, n));
				EXPECT_EQ(0, (uintptr_t)r % a);
				EXPECT_TRUE(ours(r));
			}
			memset(p, 1, n);
			memset(q, 2, n);
			free(p);
			free(q);
			free(r);
		}
	}
	{
		size_t page = (size_t)sysconf(_SC_PAGESIZE);
		void *v = valloc(100), *pv = pvalloc(page + 1), *r = (void *)1;

		EXPECT_EQ(0, (uintptr_t)v % page);
		EXPECT_EQ(0, (uintptr_t)pv % page);
		EXPECT_LE(2 * page, malloc_usable_size(pv));
		free(v);
		free(pv);
		/* glibc's memalign rounds a non-power-of-two alignment up */
		v = memalign(24, 100);
		EXPECT_EQ(0, (uintptr_t)v % 32);
		free(v);
		errno = 1234;
		EXPECT_EQ(EINVAL, posix_memalign(&r, 24, 10));
		EXPECT_EQ(EINVAL, posix_memalign(&r, 4, 10));
		EXPECT_EQ((void *)1, r);
		EXPECT_EQ(1234, errno);
		EXPECT_EQ(NULL, aligned_alloc(3, 10));
		EXPECT_EQ(EINVAL, errno);
	}
}

TEST(errno_malloc_sets_and_free_keeps)
{
	void *p;

	NEED_HEAP();
	errno = 0;
	EXPECT_EQ(NULL, malloc(v_huge * 2 - 4096));
	EXPECT_EQ(ENOMEM, errno);
	p = malloc(1 << 20);	/* a large object: free makes a system call */
	errno = 4321;
	free(p);
	EXPECT_EQ(4321, errno);
	errno = 4321;
	free(NULL);
	EXPECT_EQ(4321, errno);
}

TEST(the_c_library_allocates_through_it)
{
	char *d, *a = NULL, *line = NULL;
	size_t cap = 0;
	FILE *f;

	NEED_HEAP();
	d = strdup("spanalloc");
	EXPECT_TRUE(ours(d));
	EXPECT_LT(0, asprintf(&a, "%s %d", d, 42));
	EXPECT_TRUE(ours(a));
	f = fmemopen("one line\n", 9, "r");
	ASSERT_NE(NULL, f);
	EXPECT_EQ(9, getline(&line, &cap, f));
	EXPECT_TRUE(ours(line));
	fclose(f);
	free(d);
	free(a);
	free(line);
}

TEST(trim_mallinfo2_and_mallopt_answer)
{
	struct mallinfo2 a, b;
	void *big;

	NEED_HEAP();
	a = mallinfo2();
	big = malloc(8 << 20);
	memset(big, 1, 8 << 20);
	b = mallinfo2();
	EXPECT_LE(a.uordblks + (8 << 20), b.uordblks);
	EXPECT_LE(b.uordblks, b.arena);
	free(big);
	EXPECT_EQ(1, malloc_trim(0));
	EXPECT_EQ(1, mallopt(M_ARENA_MAX, 1));
	EXPECT_EQ(0, mallopt(12345, 1));
}

/* Frees from threads that exit, and TSD destructors that free. */
static pthread_key_t tsd;

static void tsd_free(void *p)
{
	free(p);
}

static void *thread_churn(void *arg)
{
	void *keep[1000];

	(void)arg;
	pthread_setspecific(tsd, malloc(100));
	for (int i = 0; i < 1000; i++)
		keep[i] = malloc((size_t)i + 1);
	for (int i = 0; i < 1000; i += 2)
		free(keep[i]);
	/* the odd ones are freed by the main thread */
	return malloc(sizeof(keep)) ? memcpy(malloc(sizeof(keep)), keep, sizeof(keep)) : NULL;
}

TEST(threads_that_exit_and_their_destructors_free)
{
	NEED_HEAP();
	ASSERT_EQ(0, pthread_key_create(&tsd, tsd_free));
	for (int round = 0; round < 20; round++) {
		pthread_t th[4];
		void **left[4];

		for (int t = 0; t < 4; t++)
			ASSERT_EQ(0, pthread_create(&th[t], NULL, thread_churn, NULL));
		for (int t = 0; t < 4; t++) {
			ASSERT_EQ(0, pthread_join(th[t], (void **)&left[t]));
			for (int i = 1; i < 1000; i += 2)
				free(left[t][i]);
			free(left[t]);
		}
	}
}

static char not_ours[64] = "untouched";

static void free_foreign(const char *unused)
{
	(void)unused;
	free(launder(not_ours + 16));
	free(launder(not_ours + 32));
	if (realloc(launder(not_ours + 16), 10) || strcmp(not_ours, "untouched"))
		_exit(1);
	_exit(0);
}

TEST(a_pointer_it_did_not_hand_out_is_reported_once_and_left_alone)
{
	char err[4096];
	int st;

	NEED_HEAP();
	st = sa_t_in_child(free_foreign, NULL, err, sizeof(err));
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
	EXPECT_NE(NULL, strstr(err, "not a pointer this allocator handed out"));
	/* once: one line for three bad calls */
	EXPECT_EQ(strchr(err, '\n'), strrchr(err, '\n')) TH_LOG("%s", err);
}

static void fork_and_allocate(const char *unused)
{
	char *p = strdup("parent");
	pid_t pid = fork();
	int st;

	(void)unused;
	if (!pid) {
		char *q = malloc(3 << 20);

		_exit(!q || strcmp(p, "parent") || !ours(q) ? 1 : 0);
	}
	waitpid(pid, &st, 0);
	/* fork + exec: the new program gets a heap of its own */
	_exit(WIFEXITED(st) && !WEXITSTATUS(st) && system("exit 0") == 0 ? 0 : 1);
}

TEST(fork_and_system_work)
{
	char err[4096];
	int st;

	NEED_HEAP();
	st = sa_t_in_child(fork_and_allocate, NULL, err, sizeof(err));
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st)) TH_LOG("%s", err);
	EXPECT_EQ(0, strlen(err)) TH_LOG("%s", err);
}

/* Without the module: the same program, told to use a device that is not there. */
static void exec_without_module(const char *require)
{
	setenv("SPANALLOC_DEVICE", "/nonexistent/spanalloc", 1);
	if (require)
		setenv("SPANALLOC_REQUIRE", require, 1);
	execl("/proc/self/exe", "dropin_test", "--without-module", (char *)NULL);
	_exit(99);
}

/* The child's side: glibc serves everything, and it works. */
static int without_module(void)
{
	char *p = malloc(100), *q = calloc(10, 10), *r;
	void *a = NULL;

	if (!p || !q || ours(p) || q[99])
		return 2;
	strcpy(p, "glibc");
	r = realloc(p, 100000);
	if (!r || strcmp(r, "glibc") || malloc_usable_size(r) < 100000)
		return 3;
	if (posix_memalign(&a, 4096, 10) || (uintptr_t)a % 4096)
		return 4;
	free(r);
	free(q);
	free(a);
	free(strdup("x"));
	/*
	 * This thread's cache is now one of glibc's (override.c): the
	 * library's own calls find no tiny block in it, and no heap.
	 */
	if (sa_alloc_noscan(4) || sa_alloc(4))
		return 5;
	return 0;
}

TEST(without_the_module_glibc_takes_over_and_says_why_once)
{
	char err[4096];
	int st = sa_t_in_child(exec_without_module, NULL, err, sizeof(err));

	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
	EXPECT_NE(NULL, strstr(err, "cannot open /nonexistent/spanalloc"));
	EXPECT_NE(NULL, strstr(err, "using glibc's malloc"));
	EXPECT_EQ(strchr(err, '\n'), strrchr(err, '\n')) TH_LOG("%s", err);
}

TEST(spanalloc_require_makes_a_missing_module_fatal)
{
	char err[4096];
	int st = sa_t_in_child(exec_without_module, "1", err, sizeof(err));

	EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	EXPECT_NE(NULL, strstr(err, "SPANALLOC_REQUIRE=1"));
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--without-module"))
		return without_module();
	return test_harness_run(argc, argv);
}
