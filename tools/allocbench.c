// SPDX-License-Identifier: MIT
/*
 * allocbench: the classic allocator benchmarks, written for spanalloc's
 * make bench and run under each allocator with LD_PRELOAD (this program
 * calls only malloc and free). Each does a fixed amount of work, so the
 * wall time of the run is the result; scripts/realbench.sh times them.
 *
 *   allocbench larson THREADS ROUNDS
 *	Larson and Krishnan's server churn: each thread owns an array of
 *	slots and replaces a random one (free, then malloc of a random size
 *	from 16 to 512 B) over and over; every round its array is handed to
 *	a new thread, which frees what the old one allocated, as a server's
 *	worker threads come and go.
 *   allocbench xmalloc THREADS OBJECTS
 *	xmalloc-test's producer/consumer: half the threads allocate batches
 *	of objects (16 to 256 B) and pass them through a queue to the other
 *	half, which free them: every free is from another thread.
 *   allocbench cache-scratch THREADS ITERATIONS
 *	Berger's cache-scratch (Hoard): the main thread allocates one small
 *	object per thread (neighbours in memory), each thread frees its
 *	object and then allocates, writes repeatedly and frees an object of
 *	the same size, over and over: an allocator that hands a thread memory
 *	on the cache line another thread writes (passive false sharing) is
 *	slow.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* --- larson --------------------------------------------------------------- */
#define LARSON_SLOTS	1000
#define LARSON_OPS	200000	/* replacements per thread per round */

struct larson {
	char *slot[LARSON_SLOTS];
	uint64_t seed;
	int rounds;
};

static void *larson_thread(void *arg)
{
	struct larson *l = arg;
	pthread_t next;

	for (int i = 0; i < LARSON_OPS; i++) {
		int k = (int)(rnd(&l->seed) % LARSON_SLOTS);
		size_t n = 16 + rnd(&l->seed) % 497;

		free(l->slot[k]);
		l->slot[k] = malloc(n);
		l->slot[k][0] = (char)n;
		l->slot[k][n - 1] = (char)n;
	}
	/* a new thread takes over the slots, frees and all */
	if (--l->rounds > 0) {
		if (pthread_create(&next, NULL, larson_thread, l))
			abort();
		pthread_join(next, NULL);
	}
	return NULL;
}

static int larson(int threads, int rounds)
{
	struct larson *l = calloc((size_t)threads, sizeof(*l));
	pthread_t *th = calloc((size_t)threads, sizeof(*th));

	for (int t = 0; t < threads; t++) {
		l[t].seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(t + 1);
		l[t].rounds = rounds;
		for (int k = 0; k < LARSON_SLOTS; k++)
			l[t].slot[k] = malloc(16 + rnd(&l[t].seed) % 497);
	}
	for (int t = 0; t < threads; t++)
		pthread_create(&th[t], NULL, larson_thread, &l[t]);
	for (int t = 0; t < threads; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < threads; t++)
		for (int k = 0; k < LARSON_SLOTS; k++)
			free(l[t].slot[k]);
	free(l);
	free(th);
	return 0;
}

/* --- xmalloc -------------------------------------------------------------- */
#define XM_BATCH	64
#define XM_QUEUE	1024

static struct {
	pthread_mutex_t lock;
	pthread_cond_t nonempty, nonfull;
	void **q[XM_QUEUE];
	unsigned int head, tail;
	int producers_left;
} xm = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.nonempty = PTHREAD_COND_INITIALIZER,
	.nonfull = PTHREAD_COND_INITIALIZER,
};

static long xm_objects;

static void *xm_producer(void *arg)
{
	uint64_t seed = (uint64_t)(uintptr_t)arg * 7919 + 1;

	for (long done = 0; done < xm_objects; done += XM_BATCH) {
		void **b = malloc(XM_BATCH * sizeof(void *));

		for (int i = 0; i < XM_BATCH; i++) {
			size_t n = 16 + rnd(&seed) % 241;

			b[i] = malloc(n);
			memset(b[i], 1, 16);
		}
		pthread_mutex_lock(&xm.lock);
		while (xm.tail - xm.head == XM_QUEUE)
			pthread_cond_wait(&xm.nonfull, &xm.lock);
		xm.q[xm.tail++ % XM_QUEUE] = b;
		pthread_cond_signal(&xm.nonempty);
		pthread_mutex_unlock(&xm.lock);
	}
	pthread_mutex_lock(&xm.lock);
	xm.producers_left--;
	pthread_cond_broadcast(&xm.nonempty);
	pthread_mutex_unlock(&xm.lock);
	return NULL;
}

static void *xm_consumer(void *arg)
{
	(void)arg;
	for (;;) {
		void **b;

		pthread_mutex_lock(&xm.lock);
		while (xm.tail == xm.head && xm.producers_left)
			pthread_cond_wait(&xm.nonempty, &xm.lock);
		if (xm.tail == xm.head) {
			pthread_mutex_unlock(&xm.lock);
			return NULL;
		}
		b = xm.q[xm.head++ % XM_QUEUE];
		pthread_cond_signal(&xm.nonfull);
		pthread_mutex_unlock(&xm.lock);
		for (int i = 0; i < XM_BATCH; i++)
			free(b[i]);
		free(b);
	}
}

static int xmalloc_test(int threads, long objects)
{
	int np = threads / 2 > 0 ? threads / 2 : 1, nc = threads - np > 0 ? threads - np : 1;
	pthread_t th[128];

	if (np + nc > 128)
		return 2;
	xm_objects = objects / np;
	xm.producers_left = np;
	for (int i = 0; i < np; i++)
		pthread_create(&th[i], NULL, xm_producer, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < nc; i++)
		pthread_create(&th[np + i], NULL, xm_consumer, NULL);
	for (int i = 0; i < np + nc; i++)
		pthread_join(th[i], NULL);
	return 0;
}

/* --- cache-scratch -------------------------------------------------------- */
#define CS_SIZE		8
#define CS_WRITES	500

struct cs_arg {
	char *first;
	int iterations;
};

static void *cs_thread(void *arg)
{
	struct cs_arg *a = arg;

	free(a->first);
	for (int i = 0; i < a->iterations; i++) {
		volatile char *p = malloc(CS_SIZE);

		for (int w = 0; w < CS_WRITES; w++)
			for (int k = 0; k < CS_SIZE; k++)
				p[k] = (char)(p[k] + 1);
		free((void *)p);
	}
	return NULL;
}

static int cache_scratch(int threads, int iterations)
{
	struct cs_arg a[128];
	pthread_t th[128];

	if (threads > 128)
		return 2;
	for (int t = 0; t < threads; t++) {
		a[t].first = malloc(CS_SIZE);
		a[t].iterations = iterations;
	}
	for (int t = 0; t < threads; t++)
		pthread_create(&th[t], NULL, cs_thread, &a[t]);
	for (int t = 0; t < threads; t++)
		pthread_join(th[t], NULL);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "larson"))
		return larson(atoi(argv[2]), atoi(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "xmalloc"))
		return xmalloc_test(atoi(argv[2]), atol(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "cache-scratch"))
		return cache_scratch(atoi(argv[2]), atoi(argv[3]));
	fprintf(stderr, "usage: allocbench larson|xmalloc|cache-scratch THREADS N\n");
	return 2;
}
