// SPDX-License-Identifier: MIT
/*
 * demo: a multi-threaded workload through libspanalloc, then what happened
 * on both sides of the kernel boundary.
 *
 * Each worker thread, for a number of rounds:
 *  - builds a binary tree of 32-byte scan objects and tears it down
 *    (allocation-heavy, short-lived objects);
 *  - interns words into a string table: tiny noscan strings, 24-200 B
 *    entries, a growing bucket array;
 *  - sends messages (64-1024 B) to the next worker, which frees them:
 *    frees from another thread, spans adopted and handed back;
 *  - fills and drops a few large buffers (40 KiB - 2 MiB).
 * Every object is checked before it is freed.
 *
 *   demo [threads] [rounds]      (defaults: 2 x online CPUs, 40)
 */
#include <errno.h>
#include <linux/spanalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "spanalloc.h"

struct node {
	struct node *left, *right;
	uint64_t depth, check;
};

struct entry {
	struct entry *next;
	char *word;
	uint32_t count, len;
};

struct msg {
	struct msg *next;
	uint32_t len, sum;
	unsigned char data[];
};

struct mailbox {
	pthread_mutex_t lock;
	struct msg *head;
	_Atomic int done;
};

struct worker {
	pthread_t th;
	int id, rounds;
	struct mailbox box;
	struct worker *next, *prev;	/* sends to next, receives from prev */
	uint64_t nodes, words, msgs_sent, msgs_got, large, errors;
};

static void die_oom(void)
{
	fprintf(stderr, "demo: allocation failed: %s %s\n", strerror(errno), sa_strerror());
	exit(1);
}

static void *xalloc(size_t n, int noscan)
{
	void *p = noscan ? sa_alloc_noscan(n) : sa_alloc(n);

	if (!p)
		die_oom();
	return p;
}

static struct node *tree(int depth, uint64_t *count)
{
	struct node *n = xalloc(sizeof(*n), 0);

	(*count)++;
	n->depth = depth;
	n->check = depth * 7 + 1;
	if (depth > 0) {
		n->left = tree(depth - 1, count);
		n->right = tree(depth - 1, count);
	}
	return n;
}

static uint64_t untree(struct node *n, uint64_t *errors)
{
	uint64_t c = 1;

	if (n->check != n->depth * 7 + 1)
		(*errors)++;
	if (n->left) {
		c += untree(n->left, errors);
		c += untree(n->right, errors);
	}
	sa_free(n);
	return c;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void strings(struct worker *w, uint64_t *seed)
{
	size_t nb = 64, n = 0;
	struct entry **b = xalloc(nb * sizeof(*b), 0);

	for (int i = 0; i < 3000; i++) {
		char word[48];
		uint32_t len = 1 + rnd(seed) % (rnd(seed) % 4 ? 12 : 40), h = 2166136261u;
		struct entry *e;

		for (uint32_t k = 0; k < len; k++) {
			word[k] = 'a' + rnd(seed) % 6;
			h = (h ^ (unsigned char)word[k]) * 16777619u;
		}
		word[len] = 0;
		for (e = b[h % nb]; e; e = e->next)
			if (e->len == len && !memcmp(e->word, word, len))
				break;
		if (e) {
			e->count++;
			continue;
		}
		e = xalloc(sizeof(*e) + rnd(seed) % 160, 0);
		e->word = xalloc(len + 1, 1);
		memcpy(e->word, word, len + 1);
		e->len = len;
		e->count = 1;
		e->next = b[h % nb];
		b[h % nb] = e;
		w->words++;
		if (++n > nb * 2) {	/* grow: rehash into a bigger array */
			size_t nnb = nb * 2;
			struct entry **nbk = xalloc(nnb * sizeof(*nbk), 0);

			for (size_t j = 0; j < nb; j++) {
				while (b[j]) {
					struct entry *x = b[j];
					uint32_t hh = 2166136261u;

					b[j] = x->next;
					for (uint32_t k = 0; k < x->len; k++)
						hh = (hh ^ (unsigned char)x->word[k]) * 16777619u;
					x->next = nbk[hh % nnb];
					nbk[hh % nnb] = x;
				}
			}
			sa_free(b);
			b = nbk;
			nb = nnb;
		}
	}
	for (size_t j = 0; j < nb; j++) {
		while (b[j]) {
			struct entry *x = b[j];

			b[j] = x->next;
			if (strlen(x->word) != x->len)
				w->errors++;
			sa_free(x->word);
			sa_free(x);
		}
	}
	sa_free(b);
}

static void send_msgs(struct worker *w, uint64_t *seed)
{
	for (int i = 0; i < 400; i++) {
		uint32_t len = 48 + rnd(seed) % 976, sum = 0;
		struct msg *m = xalloc(sizeof(*m) + len, 1);

		for (uint32_t k = 0; k < len; k++) {
			m->data[k] = (unsigned char)rnd(seed);
			sum += m->data[k];
		}
		m->len = len;
		m->sum = sum;
		pthread_mutex_lock(&w->next->box.lock);
		m->next = w->next->box.head;
		w->next->box.head = m;
		pthread_mutex_unlock(&w->next->box.lock);
		w->msgs_sent++;
	}
}

static void recv_msgs(struct worker *w)
{
	struct msg *m;

	pthread_mutex_lock(&w->box.lock);
	m = w->box.head;
	w->box.head = NULL;
	pthread_mutex_unlock(&w->box.lock);
	while (m) {
		struct msg *next = m->next;
		uint32_t sum = 0;

		for (uint32_t k = 0; k < m->len; k++)
			sum += m->data[k];
		if (sum != m->sum)
			w->errors++;
		sa_free(m);
		w->msgs_got++;
		m = next;
	}
}

static void large_buffers(struct worker *w, uint64_t *seed)
{
	for (int i = 0; i < 2; i++) {
		size_t n = (40 << 10) + rnd(seed) % (2 << 20);
		unsigned char *p = xalloc(n, 1);

		memset(p, 0x5a, n);
		if (p[n - 1] != 0x5a)
			w->errors++;
		sa_free(p);
		w->large++;
	}
}

static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t seed = 0x2545f4914f6cdd1dULL * (w->id + 1);

	for (int r = 0; r < w->rounds; r++) {
		struct node *t = tree(12, &w->nodes);

		untree(t, &w->errors);
		strings(w, &seed);
		send_msgs(w, &seed);
		recv_msgs(w);
		if (r % 4 == 0)
			large_buffers(w, &seed);
	}
	atomic_store(&w->box.done, 1);
	/* drain what the previous worker still sends */
	while (!atomic_load(&w->prev->box.done))
		recv_msgs(w);
	recv_msgs(w);
	return NULL;
}

int main(int argc, char **argv)
{
	int nthreads = argc > 1 ? atoi(argv[1]) : 2 * (int)sysconf(_SC_NPROCESSORS_ONLN);
	int rounds = argc > 2 ? atoi(argv[2]) : 40;
	struct spanalloc_class_stats cs[SPANALLOC_NUM_SPANCLASSES];
	struct spanalloc_stats k;
	struct worker *w;
	struct timespec t0, t1;
	struct sa_stats st;
	uint64_t errors = 0, sent = 0, got = 0, nodes = 0, words = 0;
	double secs;

	if (sa_init()) {
		fprintf(stderr, "demo: %s\n", sa_strerror());
		return 1;
	}
	w = calloc(nthreads, sizeof(*w));
	for (int i = 0; i < nthreads; i++) {
		w[i].id = i;
		w[i].rounds = rounds;
		w[i].next = &w[(i + 1) % nthreads];
		w[i].prev = &w[(i + nthreads - 1) % nthreads];
		pthread_mutex_init(&w[i].box.lock, NULL);
	}
	printf("spanalloc demo: %d threads x %d rounds (trees, strings, messages, buffers), %ld CPUs online\n",
	       nthreads, rounds, sysconf(_SC_NPROCESSORS_ONLN));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < nthreads; i++)
		pthread_create(&w[i].th, NULL, work, &w[i]);
	for (int i = 0; i < nthreads; i++)
		pthread_join(w[i].th, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;

	/* read the kernel's view while the threads' spans are back with it */
	if (sa_get_stats(&st) || sa_kernel_stats(&k, cs)) {
		perror("demo: stats");
		return 1;
	}
	for (int i = 0; i < nthreads; i++) {
		errors += w[i].errors;
		sent += w[i].msgs_sent;
		got += w[i].msgs_got;
		nodes += w[i].nodes;
		words += w[i].words;
	}

	printf("\nWorkload: %.2f s; %llu tree nodes, %llu interned words, %llu messages sent, %llu received and freed on another thread; %llu check errors\n",
	       secs, (unsigned long long)nodes, (unsigned long long)words,
	       (unsigned long long)sent, (unsigned long long)got, (unsigned long long)errors);
	printf("\nLibrary (user space)\n");
	printf("  objects allocated    %12llu  (%llu tiny, %llu large)  %.1f M/s\n",
	       (unsigned long long)(st.objects_allocated + st.large_allocated),
	       (unsigned long long)st.tiny_allocated, (unsigned long long)st.large_allocated,
	       (st.objects_allocated + st.large_allocated) / secs / 1e6);
	printf("  objects freed        %12llu\n",
	       (unsigned long long)(st.objects_freed + st.large_freed));
	printf("  spans got / returned %12llu / %llu\n",
	       (unsigned long long)st.spans_got, (unsigned long long)st.spans_returned);
	printf("  local sweeps         %12llu  (full spans refilled by frees, no system call)\n",
	       (unsigned long long)st.local_sweeps);
	printf("  spans adopted        %12llu  (full spans handed back by a freeing thread)\n",
	       (unsigned long long)st.adopted);
	printf("  system calls         %12llu  = %.1f per million objects, %.2f per span got\n",
	       (unsigned long long)st.syscalls,
	       st.syscalls * 1e6 / (double)(st.objects_allocated + st.large_allocated),
	       st.spans_got ? (double)st.syscalls / st.spans_got : 0.0);

	printf("\nPer span class (objects from the library; spans as the kernel holds them now)\n");
	printf("  %5s %6s %-7s %12s %7s %7s %7s %7s\n", "class", "size", "kind",
	       "objects", "owned", "cached", "partial", "full");
	for (int sc = 2; sc < SPANALLOC_NUM_SPANCLASSES; sc++) {
		uint64_t objs = st.class_allocated[sc];
		struct spanalloc_class_stats *c = &cs[sc];

		if (sc == SPANALLOC_SPANCLASS(2, 1))
			objs = st.tiny_allocated;
		if (!objs && !c->owned && !c->cached && !c->partial && !c->full)
			continue;
		printf("  %5d %6zu %-7s %12llu %7u %7u %7u %7u\n", sc >> 1, sa_class_size(sc >> 1),
		       sc == SPANALLOC_SPANCLASS(2, 1) ? "tiny" : sc & 1 ? "noscan" : "scan",
		       (unsigned long long)objs, c->owned, c->cached, c->partial, c->full);
	}
	printf("\nKernel (this heap)\n");
	printf("  mapped %llu MiB, limit %llu MiB, %llu arenas, %llu pages in spans, %llu free (%llu of them still resident); %llu pages given back to the kernel so far\n",
	       (unsigned long long)(k.mapped >> 20), (unsigned long long)(k.limit >> 20),
	       (unsigned long long)k.arenas, (unsigned long long)k.pages_inuse,
	       (unsigned long long)k.pages_free, (unsigned long long)k.pages_dirty,
	       (unsigned long long)k.pages_released);
	printf("  %llu exchanges, %llu large allocations; spans handed out %llu: per-CPU cache %llu, central lists %llu, page allocator %llu; returned %llu; cache flushes %llu\n",
	       (unsigned long long)k.exchanges, (unsigned long long)k.large_allocs,
	       (unsigned long long)k.spans_got, (unsigned long long)k.pcp_hits,
	       (unsigned long long)k.central_hits, (unsigned long long)k.heap_spans,
	       (unsigned long long)k.spans_returned, (unsigned long long)k.pcp_flushes);
	free(w);
	if (errors || sent != got) {
		fprintf(stderr, "demo: %llu objects corrupted, %llu messages lost\n",
			(unsigned long long)errors, (unsigned long long)(sent - got));
		return 1;
	}
	return 0;
}
