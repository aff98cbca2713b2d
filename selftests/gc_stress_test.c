// SPDX-License-Identifier: GPL-2.0
/*
 * gc_stress_test: a collected heap under every kind of use at once, for a
 * bounded time (STRESS_SECONDS, default 8). Worker threads allocate cells
 * of many sizes (small, scan and noscan, and large), each filled with a
 * checksum of its id, and keep them reachable only through
 *   - a table that is itself a heap object, held in a register or on the
 *     worker's stack;
 *   - a list in a __thread variable;
 *   - an end pointer (the cell's base is hidden);
 *   - a global ring, to be freed by another thread (cross-thread frees,
 *     spans adopted when they went back full: half the time no thread
 *     keeps a used-up span aside, so that every one goes back FULL);
 * drop the rest as garbage, free some explicitly, and read the heap's
 * statistics (which take the pool lock). Meanwhile the main
 * thread collects, starts short-lived threads whose only reference to a
 * list is their start argument, and forks: each child checks what its
 * thread holds, collects, and checks again. After every cycle each worker
 * checks every cell it can reach: allocated (sa_base) and intact.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "spanalloc.h"
#include "kselftest_harness.h"
#include "util.h"

#define NWORKERS	4
#define NSLOT		512
#define NTLS		16
#define RING		64
#define NLIST		20

struct cell {
	struct cell *next;
	uint64_t id, words;
	uint64_t sum[];
};

static atomic_long bad, checked;
static atomic_int stop;
/* data: scanned, so what sits here lives until its receiver frees it */
static _Atomic(struct cell *) ring[NWORKERS][RING];

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t mix(uint64_t id, uint64_t i)
{
	uint64_t x = id * 0x9e3779b97f4a7c15ULL + i;

	x ^= x >> 29;
	return x * 0xbf58476d1ce4e5b9ULL;
}

static struct cell *make_cell(uint64_t id, size_t size, struct cell *next)
{
	struct cell *c = sa_alloc(size);

	if (!c)
		return NULL;
	c->next = next;
	c->id = id;
	c->words = (size - sizeof(*c)) / 8;
	for (uint64_t i = 0; i < c->words; i++)
		c->sum[i] = mix(id, i);
	return c;
}

static void fail(const struct cell *c, const char *how)
{
	if (atomic_fetch_add(&bad, 1) < 5)
		fprintf(stderr, "# cell %p (%s): %s\n", (const void *)c, how,
			c && sa_base(c) == c ? "allocated, contents wrong" : "not allocated");
}

/* Whether c is allocated and intact; counts a failure if not. */
static int cell_ok(const struct cell *c, const char *how)
{
	atomic_fetch_add_explicit(&checked, 1, memory_order_relaxed);
	if (!c || sa_base(c) != c)
		goto wrong;
	for (uint64_t i = 0; i < c->words; i++)
		if (c->sum[i] != mix(c->id, i))
			goto wrong;
	return 1;
wrong:
	fail(c, how);
	return 0;
}

static size_t pick_size(uint64_t *s)
{
	uint64_t r = rnd(s) % 100;

	if (r < 60)
		return sizeof(struct cell) + 8 * (rnd(s) % 16);
	if (r < 95)
		return sizeof(struct cell) + 8 * (rnd(s) % 256);
	return 40000 + rnd(s) % 30000;	/* large */
}

static uint64_t cycles(void)
{
	struct sa_gc_stats st;

	return sa_gc_get_stats(&st) ? 0 : st.cycles;
}

static __thread struct cell *tls_list;

static int list_ok(const struct cell *c, int n, const char *how)
{
	int ok = 1;

	for (int i = 0; i < n && ok; i++, c = c->next)
		ok = cell_ok(c, how);
	return ok;
}

struct worker {
	pthread_t th;
	int id;
	double deadline;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t s = 0x9e3779b97f4a7c15ULL * (uint64_t)(w->id + 1), id = (uint64_t)w->id << 48;
	struct cell **table = sa_alloc(NSLOT * sizeof(*table));
	uintptr_t end = 0, hidden = 0;	/* the end pointer, the base hidden */
	size_t end_size = 0;
	uint64_t seen = 0;

	if (!table)
		return NULL;
	while (!atomic_load(&stop) && now() < w->deadline) {
		uint32_t i = (uint32_t)(rnd(&s) % NSLOT), r = (uint32_t)(rnd(&s) % 100);
		struct cell *c = table[i];

		if (c && cell_ok(c, "table")) {
			if (r < 10) {
				sa_free(c);
			} else if (r < 30) {
				int to = (int)(rnd(&s) % NWORKERS);

				for (int k = 0; k < RING; k++) {
					struct cell *none = NULL;

					if (atomic_compare_exchange_strong(&ring[to][k], &none, c))
						break;
				}
			}	/* else: garbage */
		}
		table[i] = make_cell(id++, pick_size(&s), NULL);
		/*
		 * The statistics take the lock a stopped world's sweep takes:
		 * they must not be stopped holding it.
		 */
		if (!(id % 64)) {
			struct sa_meta_stats m;
			struct sa_stats st;

			if (sa_get_meta_stats(&m, sizeof(m)) || sa_get_stats(&st))
				atomic_fetch_add(&bad, 1);
		}
		/* what others sent us to free */
		for (int k = 0; k < RING; k++) {
			struct cell *x = atomic_exchange(&ring[w->id][k], NULL);

			if (x && cell_ok(x, "ring"))
				sa_free(x);
		}
		if (r == 50) {
			struct cell *l = NULL;

			for (int k = 0; k < NTLS; k++)
				l = make_cell(id++, pick_size(&s) % 4096 + sizeof(struct cell), l);
			tls_list = l;
		}
		if (r == 51 || !end) {
			struct cell *e;

			end_size = sizeof(struct cell) + 8 * (rnd(&s) % 32);
			e = make_cell(id++, end_size, NULL);
			end = (uintptr_t)e + end_size;
			hidden = (uintptr_t)e ^ 0x5a5a5a5a5a5a5a5aULL;
			e = NULL;
		}
		/* every cycle: everything reachable is checked */
		if (cycles() != seen) {
			seen = cycles();
			for (int k = 0; k < NSLOT; k++)
				if (table[k])
					cell_ok(table[k], "table after a cycle");
			if (tls_list)
				list_ok(tls_list, NTLS, "__thread list");
			if (end - end_size != (hidden ^ 0x5a5a5a5a5a5a5a5aULL))
				fail(NULL, "end pointer bookkeeping");
			else
				cell_ok((const struct cell *)(end - end_size), "end pointer");
		}
	}
	return NULL;
}

/* A short-lived thread; its start argument is its list's only reference. */
static void *shortlived_main(void *arg)
{
	uint64_t s = (uintptr_t)arg | 1;

	for (int i = 0; i < 200; i++)
		make_cell(1ULL << 62, pick_size(&s) % 512 + sizeof(struct cell), NULL);
	if (rnd(&s) % 4 == 0)
		sa_gc_collect();
	list_ok(arg, NLIST, "start argument");
	return NULL;
}

static __attribute__((noinline)) void start_shortlived(pthread_t *t, uint64_t id)
{
	struct cell *l = NULL;

	for (int k = 0; k < NLIST; k++)
		l = make_cell(id + (uint64_t)k, sizeof(struct cell) + 8 * (uint64_t)k, l);
	if (pthread_create(t, NULL, shortlived_main, l))
		*t = 0;
}

/* The forked child: what the main thread holds, before and after a cycle. */
static int child_checks(struct cell **mine, int n)
{
	for (int k = 0; k < n; k++)
		if (!cell_ok(mine[k], "forked child"))
			return 1;
	sa_gc_collect();
	for (int k = 0; k < n; k++)
		if (!cell_ok(mine[k], "forked child after a cycle"))
			return 2;
	for (int k = 0; k < 1000; k++)
		make_cell(1ULL << 61, sizeof(struct cell) + 64, NULL);
	return atomic_load(&bad) ? 3 : 0;
}

FIXTURE(stress) {
	int dummy;
};

FIXTURE_SETUP(stress)
{
	if (access(SA_DEV, F_OK) || sa_init())
		SKIP(return, "libspanalloc cannot start: %s", sa_strerror());
}

FIXTURE_TEARDOWN(stress)
{
}

TEST_F_TIMEOUT(stress, collected_heap_under_every_kind_of_use, 600)
{
	const char *e = getenv("STRESS_SECONDS");
	double secs = e ? atof(e) : 8, deadline = now() + secs;
	struct worker w[NWORKERS];
	struct cell *mine[64];
	pthread_t shortlived[8] = { 0 };
	int forks = 0, fork_bad = 0, spawned = 0;
	uint64_t id = 1ULL << 60, start;

	ASSERT_EQ(0, sa_gc_init()) TH_LOG("sa_gc_init: %s", strerror(errno));
	for (int k = 0; k < 64; k++)
		mine[k] = make_cell(id++, sizeof(struct cell) + 8 * (uint64_t)k, NULL);
	start = cycles();
	for (int i = 0; i < NWORKERS; i++) {
		w[i].id = i;
		w[i].deadline = deadline;
		ASSERT_EQ(0, pthread_create(&w[i].th, NULL, worker_main, &w[i]));
	}
	/* at least 10 cycles and a fork, however slow (ThreadSanitizer) */
	for (int round = 0; now() < deadline + 120 &&
	     (now() < deadline || cycles() - start < 10 || !forks); round++) {
		pthread_t *t = &shortlived[round % 8];

		if (*t)
			pthread_join(*t, NULL);
		start_shortlived(t, id);
		id += NLIST;
		spawned++;
		if (round % 8 == 0)
			sa_gc_collect();
		/* half the time no used-up span is kept aside: all go back FULL */
		if (round % 50 == 0)
			sa_set_held_pages(round % 100 ? 0 : 8);
		if (round % 40 == 5) {
			pid_t pid = fork();
			int st;

			if (pid == 0)
				_exit(child_checks(mine, 64));
			if (pid > 0 && waitpid(pid, &st, 0) == pid) {
				forks++;
				if (!WIFEXITED(st) || WEXITSTATUS(st))
					fork_bad++;
			}
		}
		for (int k = 0; k < 64; k++)
			cell_ok(mine[k], "main thread");
		usleep(10000);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < NWORKERS; i++)
		pthread_join(w[i].th, NULL);
	for (int i = 0; i < 8; i++)
		if (shortlived[i])
			pthread_join(shortlived[i], NULL);
	sa_gc_collect();
	for (int k = 0; k < 64; k++)
		cell_ok(mine[k], "main thread at the end");
	TH_LOG("%llu cycles, %ld cells checked, %d short-lived threads, %d forks",
	       (unsigned long long)(cycles() - start), atomic_load(&checked), spawned, forks);
	EXPECT_EQ(0, atomic_load(&bad));
	EXPECT_EQ(0, fork_bad);
	EXPECT_GE(cycles() - start, 10);
	EXPECT_GE(forks, 1);
}

TEST_HARNESS_MAIN
