// SPDX-License-Identifier: GPL-2.0
/*
 * gc_test: the garbage collector of libspanalloc, against the real module.
 *
 * Reachable objects are never reclaimed and keep their contents; objects
 * that nothing reaches are reclaimed. A conservative collector may keep an
 * object alive through a stale word on a stack, so "is reclaimed" checks
 * hide their pointers (XOR with a key) and wipe the stack before
 * collecting. Each test runs in its own process (the harness forks), so
 * each has its own collected heap.
 */
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "spanalloc.h"
#include "kselftest_harness.h"
#include "util.h"
#include "gc_util.h"

static uintptr_t g_hidden;

/* Makes 20000 unreachable scan objects; hides one in g_hidden. */
static void make_garbage(void)
{
	for (int i = 0; i < 20000; i++) {
		struct node *x = new_node((uint64_t)i, NULL, NULL);

		if (i == 10000)
			g_hidden = hide(x);
	}
}

TEST_F(gc, unreachable_objects_are_reclaimed)
{
	struct sa_gc_stats st;

	struct spanalloc_stats k0, k1;

	gc_start(_metadata);
	sa_gc_disable();
	deep(make_garbage);
	ASSERT_TRUE(alive(g_hidden));
	sa_thread_flush();	/* every span is the kernel's: FULL or PARTIAL */
	ASSERT_EQ(0, sa_kernel_stats(&k0, NULL));
	clean_collect();
	ASSERT_EQ(0, sa_gc_get_stats(&st));
	/* a stale stack word may keep a few; not most */
	EXPECT_GE(st.collected_objects, 19000);
	EXPECT_FALSE(alive(g_hidden));
	/* the emptied spans went back to the kernel's free pages */
	ASSERT_EQ(0, sa_kernel_stats(&k1, NULL));
	TH_LOG("pages in spans: %llu before the collection, %llu after",
	       (unsigned long long)k0.pages_inuse, (unsigned long long)k1.pages_inuse);
	EXPECT_LT(k1.pages_inuse * 4, k0.pages_inuse);
	EXPECT_EQ(1, st.cycles);
	TH_LOG("%llu of 20000 collected, pause %.3f ms",
	       (unsigned long long)st.collected_objects, st.pause_max_ns / 1e6);
}

/* Globals are roots (data and bss). */
static struct node *g_list, *g_tree, *g_cycle, *g_dag;

static struct node *build_tree(int depth, uint64_t *id)
{
	struct node *l, *r;

	if (!depth)
		return NULL;
	l = build_tree(depth - 1, id);
	r = build_tree(depth - 1, id);
	return new_node((*id)++, l, r);
}

/* Recurses left only: a spine down the right is a loop, however long. */
static long check_tree(const struct node *n, int *bad)
{
	long count = 0;

	for (; n; n = n->right) {
		if (!node_ok(n))
			(*bad)++;
		count += 1 + check_tree(n->left, bad);
	}
	return count;
}

/* Walks a graph that may share nodes or loop, by ids (ids < 1 << 20). */
static long walk_graph(const struct node *n, unsigned char *seen, int *bad)
{
	long count = 0;

	while (n && !seen[n->id]) {
		seen[n->id] = 1;
		if (!node_ok(n))
			(*bad)++;
		count++;
		count += walk_graph(n->right, seen, bad);
		n = n->left;
	}
	return count;
}

/* Builds the four graphs into globals. */
static void build_graphs(void)
{
	uint64_t id = 0;
	struct node *p, *a, *b;

	for (int i = 0; i < 10000; i++)
		g_list = new_node(id++, g_list, NULL);
	g_tree = build_tree(12, &id);
	/* a ring of 1000 */
	g_cycle = p = new_node(id++, NULL, NULL);
	for (int i = 1; i < 1000; i++)
		p = p->left = new_node(id++, NULL, NULL);
	p->left = g_cycle;
	/* a DAG: each node points at the next two */
	a = new_node(id++, NULL, NULL);
	b = new_node(id++, NULL, NULL);
	for (int i = 0; i < 1000; i++) {
		struct node *c = new_node(id++, a, b);

		b = a;
		a = c;
	}
	g_dag = a;
}

static void drop_graphs(void)
{
	g_hidden = hide(g_cycle->left->left);
	g_list = g_tree = g_cycle = g_dag = NULL;
}

TEST_F(gc, lists_trees_cycles_and_dags_survive_and_then_go)
{
	unsigned char *seen = calloc(1 << 20, 1);
	int bad = 0;

	gc_start(_metadata);
	ASSERT_NE(NULL, seen);
	deep(build_graphs);
	for (int round = 0; round < 3; round++) {
		churn(8 << 20);
		clean_collect();
		memset(seen, 0, 1 << 20);
		EXPECT_EQ(10000, walk_graph(g_list, seen, &bad));
		EXPECT_EQ(4095, check_tree(g_tree, &bad));
		EXPECT_EQ(1000, walk_graph(g_cycle, seen, &bad));
		EXPECT_EQ(1002, walk_graph(g_dag, seen, &bad));
		EXPECT_EQ(0, bad);
	}
	deep(drop_graphs);
	clean_collect();
	EXPECT_FALSE(alive(g_hidden)) TH_LOG("a node of a dropped ring survived");
	free(seen);
}

static char *interior;

static void make_interior(void)
{
	char *o = sa_alloc(1000);

	for (int i = 0; i < 1000; i++)
		o[i] = (char)i;
	interior = o + 517;
	g_hidden = hide(new_node(1, NULL, NULL));
}

TEST_F(gc, interior_pointers_keep_objects)
{
	gc_start(_metadata);
	deep(make_interior);
	churn(4 << 20);
	clean_collect();
	ASSERT_EQ(interior - 517, sa_base(interior));
	for (int i = 0; i < 1000; i++)
		ASSERT_EQ((char)i, interior[i - 517]);
	EXPECT_FALSE(alive(g_hidden));
}

/*
 * A pointer only in a callee-saved register of a thread stopped by the
 * collector: the register's copy in the signal frame must keep it alive.
 */
static atomic_int reg_state;
static uintptr_t reg_hidden;
static uint64_t reg_seen;

static void *reg_thread(void *arg)
{
	uint64_t val;

	(void)arg;
	sa_gc_register_thread();
	__asm__ volatile(
		"mov %[h], %%r12\n\t"
		"xor %[key], %%r12\n\t"		/* the pointer exists only in r12 */
		"movl $1, %[st]\n\t"
		"1: pause\n\t"
		"cmpl $2, %[st]\n\t"
		"jne 1b\n\t"
		"mov (%%r12), %[val]\n\t"	/* first word of the object */
		"xor %%r12, %%r12\n\t"
		: [val] "=&r"(val), [st] "+m"(reg_state)
		: [h] "m"(reg_hidden), [key] "r"((uint64_t)KEY)
		: "r12", "memory");
	reg_seen = val;
	sa_gc_unregister_thread();
	return NULL;
}

static void make_reg_object(void)
{
	uint64_t *o = sa_alloc_noscan(64);

	o[0] = 0x1234567890abcdefULL;
	reg_hidden = hide(o);
}

TEST_F(gc, pointer_only_in_a_register_keeps_object)
{
	pthread_t t;

	gc_start(_metadata);
	deep(make_reg_object);
	ASSERT_EQ(0, pthread_create(&t, NULL, reg_thread, NULL));
	while (atomic_load(&reg_state) != 1)
		usleep(1000);
	churn(4 << 20);
	clean_collect();
	clean_collect();
	/* still allocated, still intact */
	EXPECT_TRUE(intact(reg_hidden, &(uint64_t){ 0x1234567890abcdefULL }, 8));
	churn(4 << 20);	/* reuse any slot that was wrongly freed */
	atomic_store(&reg_state, 2);
	pthread_join(t, NULL);
	EXPECT_EQ(0x1234567890abcdefULL, reg_seen);
	/* control: with the register cleared it goes */
	clean_collect();
	EXPECT_FALSE(alive(reg_hidden));
}

/* Only on another thread's stack, while that thread sits in read(2). */
static int stack_pipe[2];
static atomic_int stack_ready;
static int stack_bad = -1;

static void *stack_thread(void *arg)
{
	volatile uintptr_t keep;
	struct node *n = NULL;
	char c;
	int bad = 0;

	(void)arg;
	for (int i = 0; i < 1000; i++)
		n = new_node((uint64_t)i, n, NULL);
	keep = (uintptr_t)n;
	n = NULL;
	atomic_store(&stack_ready, 1);
	/* blocked in a system call through the collections: it restarts */
	if (read(stack_pipe[0], &c, 1) != 1)
		bad++;
	n = (struct node *)keep;
	for (int i = 999; i >= 0; i--, n = n ? n->left : NULL)
		if (!n || sa_base(n) != n || n->id != (uint64_t)i || !node_ok(n))
			bad++;
	stack_bad = bad;
	return NULL;
}

TEST_F(gc, pointer_only_on_another_threads_stack_in_a_syscall)
{
	pthread_t t;

	gc_start(_metadata);
	ASSERT_EQ(0, pipe(stack_pipe));
	ASSERT_EQ(0, pthread_create(&t, NULL, stack_thread, NULL));
	while (!atomic_load(&stack_ready))
		usleep(1000);
	for (int i = 0; i < 3; i++) {
		churn(4 << 20);
		clean_collect();
	}
	ASSERT_EQ(1, write(stack_pipe[1], "x", 1));
	pthread_join(t, NULL);
	EXPECT_EQ(0, stack_bad);
}

static uintptr_t *put_slot;

static void put_node(void)
{
	*put_slot = (uintptr_t)new_node(42, NULL, NULL);
	g_hidden = hide(*put_slot);
}

TEST_F(gc, registered_range_is_a_root_until_removed)
{
	uintptr_t *area = malloc(4096);	/* malloc memory is not scanned */

	gc_start(_metadata);
	ASSERT_NE(NULL, area);
	memset(area, 0, 4096);
	ASSERT_EQ(0, sa_gc_add_roots(area, area + 512));
	put_slot = &area[100];
	deep(put_node);
	churn(4 << 20);
	clean_collect();
	{
		struct node want = { NULL, NULL, 42, checksum(7, 42) };

		ASSERT_TRUE(intact(g_hidden, &want, sizeof(want)));
	}
	ASSERT_EQ(0, sa_gc_remove_roots(area));
	clean_collect();
	EXPECT_FALSE(alive(g_hidden));
	EXPECT_EQ(-1, sa_gc_remove_roots(area));
	free(area);
}

static struct node *g_only;

TEST_F(gc, globals_are_roots_unless_switched_off)
{
	gc_start(_metadata);
	put_slot = (uintptr_t *)&g_only;
	deep(put_node);
	churn(4 << 20);
	clean_collect();
	{
		struct node want = { NULL, NULL, 42, checksum(7, 42) };

		EXPECT_TRUE(intact(g_hidden, &want, sizeof(want)));
	}
	sa_gc_set_scan_globals(0);
	clean_collect();
	EXPECT_FALSE(alive(g_hidden));
	sa_gc_set_scan_globals(1);
}

static uintptr_t *holder;
static struct node **typed;
static const uint64_t word0[1] = { 1 };	/* word 0 only */
static const struct sa_type two_words = { .size = 16, .ptrmask = word0 };
static uintptr_t h_noscan_target, h_ptr, h_int;

static void make_typed(void)
{
	holder = sa_alloc_noscan(64);
	holder[0] = (uintptr_t)new_node(1, NULL, NULL);
	h_noscan_target = hide(holder[0]);
	/* an array of two typed elements: words 0 and 2 are pointers */
	typed = sa_alloc_typed(32, &two_words);
	typed[2] = new_node(2, NULL, NULL);	/* pointer word */
	typed[1] = new_node(3, NULL, NULL);	/* an integer, by the map */
	h_ptr = hide(typed[2]);
	h_int = hide(typed[1]);
}

TEST_F(gc, noscan_objects_are_not_scanned_typed_objects_precisely)
{
	gc_start(_metadata);
	deep(make_typed);
	churn(4 << 20);
	clean_collect();
	EXPECT_FALSE(alive(h_noscan_target));
	EXPECT_TRUE(alive(h_ptr));
	EXPECT_TRUE(node_ok(typed[2]));
	EXPECT_FALSE(alive(h_int));
	EXPECT_EQ(holder, sa_base(holder));
	EXPECT_EQ(NULL, sa_alloc_typed(24, &two_words));	/* not a multiple */
	EXPECT_EQ(EINVAL, errno);
}

/*
 * Spans full of typed objects: their pointer maps (as long as the span's
 * bitmaps, heap.c: sa_types_table_alloc) are read by marking and cleared
 * by sweeping at every index. 600 typed 64-byte objects (65 B padded: the
 * 80 B class, whose 4-page spans hold 409) hold a node in their pointer
 * word and one in an integer word; half are kept. After a collection a
 * kept one's pointer word keeps its node and its integer word does not,
 * and the dropped ones are gone. Untyped objects allocated next take
 * their slots and are scanned whole: no map is left behind for them.
 */
#define NTYPED	600
static const struct sa_type one_ptr = { .size = 64, .ptrmask = word0 };
static void **typed_kept, **untyped_kept;
static uintptr_t t_obj[NTYPED], t_ptr[NTYPED], t_int[NTYPED];
static uintptr_t u_obj[NTYPED / 2], u_node[NTYPED / 2];

static void make_many_typed(void)
{
	typed_kept = sa_alloc(NTYPED / 2 * sizeof(void *));
	for (int i = 0; typed_kept && i < NTYPED; i++) {
		uintptr_t *o = sa_alloc_typed(64, &one_ptr);

		if (!o)
			return;
		o[0] = (uintptr_t)new_node(i, NULL, NULL);
		o[1] = (uintptr_t)new_node(NTYPED + i, NULL, NULL);
		t_obj[i] = hide(o);
		t_ptr[i] = hide(o[0]);
		t_int[i] = hide(o[1]);
		if (i % 2 == 0)
			typed_kept[i / 2] = o;
	}
}

static void make_untyped(void)
{
	untyped_kept = sa_alloc(NTYPED / 2 * sizeof(void *));
	for (int i = 0; untyped_kept && i < NTYPED / 2; i++) {
		uintptr_t *o = sa_alloc(64);

		if (!o)
			return;
		o[1] = (uintptr_t)new_node(2 * NTYPED + i, NULL, NULL);
		u_obj[i] = hide(o);
		u_node[i] = hide(o[1]);
		untyped_kept[i] = o;
	}
}

TEST_F(gc, spans_full_of_typed_objects_are_marked_and_swept_by_their_maps)
{
	int kept_bad = 0, dropped_bad = 0, lost = 0, reused = 0;

	gc_start(_metadata);
	deep(make_many_typed);
	ASSERT_NE(NULL, typed_kept);
	ASSERT_NE(0, t_int[NTYPED - 1]);
	clean_collect();
	for (int i = 0; i < NTYPED; i++) {
		if (i % 2 == 0)
			kept_bad += !alive(t_obj[i]) || !alive(t_ptr[i]) || alive(t_int[i]) ||
				    !node_ok(((struct node **)show(t_obj[i]))[0]);
		else
			dropped_bad += alive(t_obj[i]) || alive(t_ptr[i]) || alive(t_int[i]);
	}
	EXPECT_EQ(0, kept_bad);
	EXPECT_EQ(0, dropped_bad);
	/* no other objects of the class: the untyped ones take the freed slots */
	deep(make_untyped);
	ASSERT_NE(NULL, untyped_kept);
	ASSERT_NE(0, u_node[NTYPED / 2 - 1]);
	clean_collect();
	for (int i = 0; i < NTYPED / 2; i++) {
		lost += !alive(u_node[i]);
		for (int j = 1; j < NTYPED; j += 2)
			reused += u_obj[i] == t_obj[j];
	}
	/* the active span's slots never used come first, then the freed ones */
	TH_LOG("%d of %d untyped objects in freed typed slots", reused, NTYPED / 2);
	EXPECT_EQ(0, lost);
	EXPECT_LT(0, reused);
	typed_kept = untyped_kept = NULL;
}

/*
 * In a collected heap every object is a byte longer (the end pad), which
 * must not lower a tiny object's alignment: a 4-byte object after a
 * 1-byte one, carved as 6 bytes, once landed 2 bytes into its block. Each
 * object is aligned for the size asked (the largest of 8, 4 and 2 that
 * divides it rounded up to 2), and an 8-byte one, 9 bytes padded, takes
 * the 16-byte class.
 */
TEST_F(gc, the_end_pad_does_not_lower_a_tiny_objects_alignment)
{
	static const size_t first[] = { 1, 4, 7, 8, 2, 6, 8, 3, 12, 5, 0, 14 };
	unsigned char *objs[400];
	size_t sizes[400];
	unsigned int seed = 7;

	gc_start(_metadata);
	sa_gc_set_end_pointers(1);
	sa_gc_disable();	/* only the layout is under test */
	sa_thread_flush();	/* a fresh block */
	for (int i = 0; i < 400; i++) {
		size_t n = i < 12 ? first[i] : (size_t)(rand_r(&seed) % 16);
		uint64_t *q = n == 8 && i % 2 ? sa_malloc(8) : NULL;
		size_t r = (n + 1) & ~(size_t)1, a = r ? r & -r : 2;

		objs[i] = q ? (unsigned char *)q : sa_alloc_noscan(n);
		sizes[i] = n;
		ASSERT_NE(NULL, objs[i]);
		EXPECT_EQ(0, (uintptr_t)objs[i] % a)
			TH_LOG("object %d of %zu bytes at %p", i, n, (void *)objs[i]);
		memset(objs[i], i & 0xff, n);
	}
	/* the pad is on and the tiny allocator in use: 1 + 1 bytes, then 4 at 4 */
	EXPECT_EQ((uintptr_t)objs[0] + 4, (uintptr_t)objs[1]);
	/* 8 bytes asked, 9 padded: the 16-byte class, not a tiny block */
	EXPECT_EQ(0, (uintptr_t)objs[3] % 16);
	EXPECT_LE(15, sa_usable_size(objs[3]));
	for (int i = 0; i < 400; i++) {
		size_t k = 0;

		while (k < sizes[i] && objs[i][k] == (i & 0xff))
			k++;
		EXPECT_EQ(sizes[i], k) TH_LOG("object %d of %zu bytes overwritten", i, sizes[i]);
	}
	for (int i = 0; i < 400; i++)
		sa_free(objs[i]);
	sa_gc_enable();
}

/*
 * malloc's objects are noscan, but those of 9 to 16 bytes (with the end
 * pad) live in the scanned 16-byte spans: in a collected heap they must
 * come zeroed, or the collector would take what an earlier object left in
 * them for pointers. A manual heap skips that zeroing (internal.h:
 * sa_must_zero), so this checks both pad settings once collected. Each
 * object is filled and freed, and its slot handed out again.
 */
TEST_F(gc, malloc_objects_in_scanned_spans_come_back_zeroed)
{
	enum { N = 600 };	/* more than one span of 16-byte objects */
	static const size_t sizes[2][2] = { { 12, 16 }, { 8, 15 } };	/* pad off, on */
	static unsigned char *o[N], *again[N];

	gc_start(_metadata);
	sa_gc_disable();	/* only reuse in place is under test */
	for (int pad = 0; pad < 2; pad++) {
		for (int k = 0; k < 2; k++) {
			size_t size = sizes[pad][k];
			int reused = 0;

			sa_gc_set_end_pointers(pad);
			for (int i = 0; i < N; i++) {
				o[i] = sa_malloc(size);
				ASSERT_NE(NULL, o[i]);
				ASSERT_EQ(16, sa_usable_size(o[i]));	/* the class */
				memset(o[i], 0xa5, size);
			}
			for (int i = N - 1; i >= 0; i--)
				sa_free(o[i]);
			for (int i = 0; i < N; i++) {
				unsigned char *p = sa_malloc(size);

				ASSERT_NE(NULL, p);
				EXPECT_EQ(0, sa_t_nonzero(p, size))
					TH_LOG("%zu bytes, pad %d: object %d (%p) not zeroed",
					       size, pad, i, p);
				for (int j = 0; j < N; j++)
					reused += p == o[j];
				again[i] = p;
			}
			/* the check saw slots with old bytes to miss */
			EXPECT_LT(N / 4, reused) TH_LOG("%zu bytes, pad %d", size, pad);
			for (int i = 0; i < N; i++)
				sa_free(again[i]);
		}
	}
	sa_gc_set_end_pointers(1);
	sa_gc_enable();
}

/*
 * In a collected heap the end pad moves malloc's classes by a byte:
 * 0 to 7 bytes take the 8-byte class, 8 to 15 the 16-byte one, on the
 * fast path (by the size plus the pad) and on the slow path (after a
 * flush; sa_malloc_size), with the pad on and off. Never a tiny block.
 */
TEST_F(gc, small_mallocs_take_the_padded_classes_on_every_path)
{
	gc_start(_metadata);
	sa_gc_disable();	/* only the classes are under test */
	for (int pad = 0; pad < 2; pad++) {
		sa_gc_set_end_pointers(pad);
		for (size_t n = 0; n + pad <= 16; n++) {
			size_t want = n + pad <= 8 ? 8 : 16;

			for (int path = 0; path < 2; path++) {
				unsigned char *p, *q;

				if (path == 0)
					sa_thread_flush();	/* the slow path */
				p = sa_malloc(n);
				q = sa_malloc(n);	/* the fast path */
				ASSERT_NE(NULL, p);
				ASSERT_NE(NULL, q);
				EXPECT_EQ(want, sa_usable_size(p))
					TH_LOG("sa_malloc(%zu), pad %d, path %d", n, pad, path);
				EXPECT_EQ(want, sa_usable_size(q))
					TH_LOG("sa_malloc(%zu), pad %d, path %d", n, pad, path);
				EXPECT_EQ(0, (uintptr_t)p % 8);
				EXPECT_EQ(0, (uintptr_t)q % 8);
				sa_free(p);
				sa_free(q);
			}
		}
	}
	sa_gc_set_end_pointers(1);
	sa_gc_enable();
}

static char *keep;
static int tiny_same_block;

/* Four 4-byte objects in one block; keeps the last, hides the first. */
static void make_tiny(void)
{
	char *objs[4];

	sa_thread_flush();	/* start a fresh block */
	for (int i = 0; i < 4; i++) {
		objs[i] = sa_alloc_noscan(4);
		memset(objs[i], 'a' + i, 4);
	}
	keep = objs[3];
	g_hidden = hide(objs[0]);
	tiny_same_block = ((uintptr_t)objs[0] & ~(uintptr_t)15) ==
			  ((uintptr_t)objs[3] & ~(uintptr_t)15);
	sa_thread_flush();	/* the block is no longer the current one */
}

TEST_F(gc, one_pointer_keeps_a_whole_tiny_block)
{
	gc_start(_metadata);
	/* four 4-byte objects fill a block only without the end byte */
	sa_gc_set_end_pointers(0);
	deep(make_tiny);
	ASSERT_TRUE(tiny_same_block);	/* all four in one block */
	churn(4 << 20);
	clean_collect();
	/* the block (and so objs[0]'s bytes) is alive through keep */
	EXPECT_TRUE(intact(g_hidden, "aaaa", 4));
	EXPECT_TRUE(intact(hide(keep), "dddd", 4));
	keep = NULL;
	clean_collect();
	EXPECT_FALSE(alive(g_hidden));
}

TEST_F(gc, explicit_free_still_works)
{
	struct sa_gc_stats before, after;
	struct node *n[1000];

	gc_start(_metadata);
	for (int i = 0; i < 1000; i++)
		n[i] = new_node((uint64_t)i, NULL, NULL);
	ASSERT_EQ(0, sa_gc_get_stats(&before));
	for (int i = 0; i < 1000; i += 2)
		sa_free(n[i]);
	clean_collect();
	for (int i = 1; i < 1000; i += 2)
		ASSERT_TRUE(node_ok(n[i]));
	ASSERT_EQ(0, sa_gc_get_stats(&after));
	/* freed explicitly: all freed less what collections freed */
	EXPECT_EQ(500, (after.objects_freed - after.collected_objects) -
		       (before.objects_freed - before.collected_objects));
}

/* A 10-million-node list: marking must not recurse. */
struct lnode {
	struct lnode *next;
	uint64_t v;
};

static struct lnode *g_long;

/*
 * In a collected heap, sweeping a span takes in explicit frees as well as
 * the dead: an object freed with sa_free() must come back zeroed from
 * sa_alloc(), as one the collector freed does.
 */
TEST_F(gc, objects_freed_explicitly_come_back_zeroed_after_a_collection)
{
	enum { N = 30, SIZE = 200 };	/* one span of the 208-byte class */
	unsigned char *o[N];

	gc_start(_metadata);
	for (int i = 0; i < N; i++) {
		o[i] = sa_alloc(SIZE);
		ASSERT_NE(NULL, o[i]);
		memset(o[i], 0xa5, SIZE);
	}
	for (int i = 0; i < N; i++)
		sa_free(o[i]);
	clean_collect();
	for (int i = 0; i < N; i++) {
		unsigned char *p = sa_alloc(SIZE);

		ASSERT_NE(NULL, p);
		EXPECT_EQ(0, sa_t_nonzero(p, SIZE)) TH_LOG("object %d (%p) not zeroed", i, p);
	}
}

static void *gc_fork_churn(void *arg)
{
	(void)arg;
	for (int i = 0; i < 200; i++)
		churn(20000 * sizeof(struct node));
	return NULL;
}

/*
 * A child forked while other threads allocate (and collections run)
 * collects on its own: its collector and sweeper start over, the threads
 * it did not inherit are not waited for, and reachable objects survive.
 */
TEST_F_TIMEOUT(gc, forked_child_of_a_collected_heap_collects, 120)
{
	struct sa_gc_stats a, b;
	pthread_t th[2];
	int st;
	pid_t pid;

	gc_start(_metadata);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&th[i], NULL, gc_fork_churn, NULL));
	for (int k = 0; k < 3; k++) {
		pid = fork();
		ASSERT_LE(0, pid);
		if (!pid) {
			struct node *mine = new_node(42, NULL, NULL);

			alarm(60);	/* a collection that waits for dead threads hangs */
			sa_gc_get_stats(&a);
			make_garbage();
			sa_gc_collect();
			make_garbage();
			sa_gc_collect();
			sa_gc_get_stats(&b);
			_exit(b.cycles < a.cycles + 2 ? 1 : mine->id != 42 || !node_ok(mine) ? 2 :
			      b.collected_objects <= a.collected_objects ? 3 : 0);
		}
		ASSERT_EQ(pid, waitpid(pid, &st, 0));
		ASSERT_TRUE(WIFEXITED(st)) TH_LOG("child killed by signal %d",
						   WIFSIGNALED(st) ? WTERMSIG(st) : 0);
		EXPECT_EQ(0, WEXITSTATUS(st));
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
}

TEST_F_TIMEOUT(gc, ten_million_node_list, 600)
{
	struct sa_gc_stats st;
	long n = 0, bad = 0;

	gc_start(_metadata);
	sa_gc_disable();
	for (long i = 0; i < 10000000; i++) {
		struct lnode *x = sa_alloc(sizeof(*x));

		ASSERT_NE(NULL, x);
		x->next = g_long;
		x->v = (uint64_t)i;
		g_long = x;
	}
	clean_collect();
	for (struct lnode *x = g_long; x; x = x->next, n++)
		if (x->v != (uint64_t)(9999999 - n))
			bad++;
	EXPECT_EQ(10000000, n);
	EXPECT_EQ(0, bad);
	ASSERT_EQ(0, sa_gc_get_stats(&st));
	TH_LOG("marked %llu MiB in %.1f ms with %u workers",
	       (unsigned long long)(st.live_after_gc >> 20), st.pause_max_ns / 1e6,
	       st.mark_workers);
	/* a heap this size is marked in parallel when there are CPUs for it */
	if (sysconf(_SC_NPROCESSORS_ONLN) > 1) {
		EXPECT_GT(st.mark_workers, 1);
		EXPECT_GE(st.parallel_cycles, 1);
	}
	g_long = NULL;
	clean_collect();
	ASSERT_EQ(0, sa_gc_get_stats(&st));
	/* what tells a root that kept the list from a sweep left undone */
	EXPECT_GE(st.collected_objects, 9900000)
		TH_LOG("%llu cycles, %llu bytes marked, %llu of %llu span records swept, %llu bytes of stacks, %llu of globals",
		       (unsigned long long)st.cycles, (unsigned long long)st.live_after_gc,
		       (unsigned long long)st.sweep_spans_done, (unsigned long long)st.sweep_spans,
		       (unsigned long long)st.stack_bytes, (unsigned long long)st.globals_bytes);
}

/*
 * A deep tree (a spine of 200,000 nodes, each with a leaf) with the gray
 * stacks limited to 512 entries: marking overflows and must recover.
 */
TEST_F_TIMEOUT(gc, deep_tree_with_tiny_gray_stacks_overflows_and_recovers, 300)
{
	struct sa_gc_stats st;
	struct node *spine = NULL;
	uint64_t id = 0;
	long count;
	int bad = 0;

	/* one marker: helpers would drain the leaves as fast as they come */
	setenv("SPANALLOC_GC_GRAYMAX", "512", 1);
	setenv("SPANALLOC_GC_PROCS", "1", 1);
	gc_start(_metadata);
	sa_gc_disable();
	for (int i = 0; i < 200000; i++) {
		struct node *leaf = new_node(id++, NULL, NULL);

		/* leaves first on the stack, spine last: the stack fills */
		spine = new_node(id++, leaf, spine);
	}
	g_tree = spine;
	spine = NULL;
	churn(1 << 20);
	clean_collect();
	ASSERT_EQ(0, sa_gc_get_stats(&st));
	count = check_tree(g_tree, &bad);
	EXPECT_EQ(400000, count);
	EXPECT_EQ(0, bad);
	EXPECT_GT(st.mark_overflows, 0) TH_LOG("the gray stack never overflowed");
	TH_LOG("%llu overflows recovered", (unsigned long long)st.mark_overflows);
	g_tree = NULL;
}

/*
 * Random graph mutation: N slots in a registered range point into a graph
 * of nodes with up to two out-edges; after every cycle every node reachable
 * from the slots is checked, and the heap stays bounded.
 */
#define MUT_SLOTS 256

TEST_F_TIMEOUT(gc, random_mutation_keeps_every_reachable_node, 300)
{
	uintptr_t *slots = calloc(MUT_SLOTS, sizeof(uintptr_t));
	unsigned char *seen = calloc(1 << 20, 1);
	uint64_t seed = 12345, id = 0, max_inuse = 0, seen_cycles = 0;
	struct sa_gc_stats st;
	int bad = 0, checks = 0;

	ASSERT_NE(NULL, slots);
	ASSERT_NE(NULL, seen);
	gc_start(_metadata);
	/* a small heap: GOGC 25 has the pacer collect between our calls */
	sa_gc_set_percent(25);
	ASSERT_EQ(0, sa_gc_add_roots(slots, slots + MUT_SLOTS));
	for (int step = 0; step < 400000; step++) {
		uint64_t r;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		r = seed >> 33;
		switch (r % 4) {
		case 0: {	/* new node into a slot, pointing at two others */
			struct node *a = (struct node *)slots[(r >> 8) % MUT_SLOTS];
			struct node *b = (struct node *)slots[(r >> 16) % MUT_SLOTS];

			slots[(r >> 24) % MUT_SLOTS] =
				(uintptr_t)new_node(id++, a, b);
			break;
		}
		case 1:		/* drop a slot */
			slots[(r >> 8) % MUT_SLOTS] = 0;
			break;
		case 2: {	/* rewire an edge */
			struct node *a = (struct node *)slots[(r >> 8) % MUT_SLOTS];

			if (a)
				a->right = (struct node *)slots[(r >> 16) % MUT_SLOTS];
			break;
		}
		default:	/* garbage */
			churn(256);
		}
		/* after every cycle, the pacer's included: polled every 256 steps */
		if (step % 256 == 255) {
			ASSERT_EQ(0, sa_gc_get_stats(&st));
			if (st.heap_inuse > max_inuse)
				max_inuse = st.heap_inuse;
			if (st.cycles != seen_cycles) {
				seen_cycles = st.cycles;
				checks++;
				memset(seen, 0, 1 << 20);
				for (int i = 0; i < MUT_SLOTS; i++)
					walk_graph((struct node *)slots[i], seen, &bad);
				ASSERT_EQ(0, bad) TH_LOG("a reachable node lost its contents at step %d", step);
			}
		}
		if (step % 50000 == 49999) {
			clean_collect();
			memset(seen, 0, 1 << 20);
			for (int i = 0; i < MUT_SLOTS; i++)
				walk_graph((struct node *)slots[i], seen, &bad);
			ASSERT_EQ(0, bad) TH_LOG("a reachable node lost its contents at step %d", step);
			ASSERT_EQ(0, sa_gc_get_stats(&st));
			if (st.heap_inuse > max_inuse)
				max_inuse = st.heap_inuse;
		}
	}
	ASSERT_EQ(0, sa_gc_get_stats(&st));
	TH_LOG("%llu cycles (%d checked at once), heap at most %llu KiB",
	       (unsigned long long)st.cycles, checks, (unsigned long long)(max_inuse >> 10));
	EXPECT_GT(st.cycles, 8);	/* the pacer ran too, not only collect calls */
	EXPECT_LT(max_inuse, 64ULL << 20);
	sa_gc_remove_roots(slots);
	free(slots);
	free(seen);
}

/* Threads build and check their own trees while collections run. */
static atomic_int mt_bad, mt_stop;

static void *mt_thread(void *arg)
{
	uint64_t id = (uint64_t)(uintptr_t)arg << 32;
	struct node *keep[8] = { 0 };

	for (int round = 0; !atomic_load(&mt_stop) && round < 400; round++) {
		int bad = 0;
		struct node *t = build_tree(9, &id);

		keep[round % 8] = t;
		churn(64 << 10);
		for (int k = 0; k < 8; k++)
			if (keep[k] && check_tree(keep[k], &bad) != 511)
				bad++;
		if (bad)
			atomic_fetch_add(&mt_bad, bad);
	}
	return NULL;
}

TEST_F_TIMEOUT(gc, threads_allocate_while_collections_run, 300)
{
	int n = 2 * (int)sysconf(_SC_NPROCESSORS_ONLN);
	struct sa_gc_stats st;
	pthread_t t[16];

	if (n > 16)
		n = 16;
	gc_start(_metadata);
	for (int i = 0; i < n; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, mt_thread, (void *)(uintptr_t)(i + 1)));
	for (int i = 0; i < 20; i++) {
		usleep(50000);
		sa_gc_collect();
	}
	atomic_store(&mt_stop, 1);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	ASSERT_EQ(0, sa_gc_get_stats(&st));
	EXPECT_EQ(0, atomic_load(&mt_bad));
	TH_LOG("%d threads, %llu cycles, max pause %.2f ms, %u mark workers", n,
	       (unsigned long long)st.cycles, st.pause_max_ns / 1e6, st.mark_workers);
}

/*
 * A stop that lands inside a fast path waits for its end (world.c,
 * sa_fast_done): threads that do almost nothing but allocate and free get
 * such stops, and every object they hold stays theirs through them.
 *
 * Not in the ThreadSanitizer build: there the stop signal is one TSan
 * delivers at once, inside its own runtime too, and a thread parked there
 * may hold what the collecting thread's instrumented code then waits for.
 * Back-to-back collections against two threads that do nothing else made
 * that happen in one of three TSan runs; the plain build runs the test.
 */
#ifndef __SANITIZE_THREAD__
extern _Atomic uint64_t sa_world_fast_stops;	/* the library's own count */
static atomic_int fp_stop, fp_bad;

static void *fp_thread(void *arg)
{
	uint64_t tag = (uintptr_t)arg << 32;

	while (!atomic_load(&fp_stop)) {
		uint64_t *objs[32];

		for (int i = 0; i < 32; i++) {
			objs[i] = sa_alloc(48);
			if (!objs[i]) {
				atomic_fetch_add(&fp_bad, 1);
				return NULL;
			}
			objs[i][0] = tag | (uint64_t)i;
			objs[i][5] = ~(tag | (uint64_t)i);
		}
		for (int i = 0; i < 32; i++) {
			if (objs[i][0] != (tag | (uint64_t)i) || objs[i][5] != ~(tag | (uint64_t)i))
				atomic_fetch_add(&fp_bad, 1);
			sa_free(objs[i]);
		}
	}
	return NULL;
}

TEST_F_TIMEOUT(gc, a_stop_that_lands_in_a_fast_path_waits_for_its_end, 300)
{
	uint64_t before;
	pthread_t t[2];
	int i;

	gc_start(_metadata);
	before = atomic_load(&sa_world_fast_stops);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, fp_thread, (void *)(uintptr_t)(i + 1)));
	/* under emulation a signal lands only between blocks: it may take a while */
	for (i = 0; i < 5000 && (i < 200 || atomic_load(&sa_world_fast_stops) == before); i++)
		sa_gc_collect();
	atomic_store(&fp_stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	TH_LOG("%d collections, %llu stops waited for the end of a fast path", i,
	       (unsigned long long)(atomic_load(&sa_world_fast_stops) - before));
	EXPECT_LT(before, atomic_load(&sa_world_fast_stops));
	EXPECT_EQ(0, atomic_load(&fp_bad));
}
#endif

/*
 * Pacing: a steady state (a live tree of about 4 MiB, garbage allocated
 * on top) keeps heap_live over the goal by no more than what is allocated
 * between two samples (256 KiB), and the spans held within 25% of the
 * goal plus 2 MiB (fragmentation).
 */
static struct node *g_live;

TEST_F_TIMEOUT(gc, pacing_keeps_the_heap_within_the_goal, 300)
{
	uint64_t id = 0, max_live = 0, max_inuse = 0, goal = 0;
	struct sa_gc_stats st;

	gc_start(_metadata);
	g_live = build_tree(17, &id);	/* 131071 nodes of 32 B: 4 MiB */
	sa_gc_collect();
	for (int i = 0; i < 400; i++) {
		churn(256 << 10);
		ASSERT_EQ(0, sa_gc_get_stats(&st));
		if (st.heap_live > max_live)
			max_live = st.heap_live;
		if (st.heap_inuse > max_inuse)
			max_inuse = st.heap_inuse;
		if (st.goal > goal)
			goal = st.goal;
	}
	{
		int bad = 0;

		EXPECT_EQ(131071, check_tree(g_live, &bad));
		EXPECT_EQ(0, bad);
	}
	ASSERT_EQ(0, sa_gc_get_stats(&st));
	TH_LOG("goal %llu KiB, heap_live max %llu KiB, spans held max %llu KiB, %llu cycles",
	       (unsigned long long)(goal >> 10), (unsigned long long)(max_live >> 10),
	       (unsigned long long)(max_inuse >> 10), (unsigned long long)st.cycles);
	EXPECT_GE(st.cycles, 5);
	EXPECT_LE(max_live, goal + (256 << 10));
	EXPECT_LE(max_inuse, goal + goal / 4 + (2 << 20));
	/* GOGC=100: the goal is twice the live heap */
	EXPECT_LE(goal, 2 * st.live_after_gc + (1 << 20));
	EXPECT_GE(goal, 2 * st.live_after_gc - (1 << 20));
}

/*
 * GOMEMLIMIT: with GOGC off and a 32 MiB limit, 256 MiB of garbage over a
 * 4 MiB live heap never has more than the limit + 10% in spans.
 */
TEST_F_TIMEOUT(gc, memory_limit_is_respected_within_ten_percent, 300)
{
	uint64_t id = 0, max_inuse = 0;
	struct sa_gc_stats st;

	setenv("SPANALLOC_GOGC", "off", 1);
	setenv("SPANALLOC_GOMEMLIMIT", "32MiB", 1);
	gc_start(_metadata);
	g_live = build_tree(17, &id);
	for (int i = 0; i < 1024; i++) {
		churn(256 << 10);
		ASSERT_EQ(0, sa_gc_get_stats(&st));
		if (st.heap_inuse > max_inuse)
			max_inuse = st.heap_inuse;
	}
	TH_LOG("limit 32768 KiB, spans held max %llu KiB, %llu cycles",
	       (unsigned long long)(max_inuse >> 10), (unsigned long long)st.cycles);
	EXPECT_LE(max_inuse, (32ULL << 20) * 11 / 10);
	EXPECT_GE(st.cycles, 3);
	/* and without the limit the heap would have grown: GOGC is off */
	sa_gc_set_memory_limit(INT64_MAX);
	churn(64 << 20);
	ASSERT_EQ(0, sa_gc_get_stats(&st));
	EXPECT_GT(st.heap_inuse, 48ULL << 20);
}

/*
 * Under a limit, a cycle comes when the room between the live heap and the
 * goal is used up, and not sooner: spans that only wait to be swept are
 * not a full heap (they once started a second, useless cycle after each).
 */
TEST_F_TIMEOUT(gc, under_a_memory_limit_a_cycle_comes_when_the_room_is_used, 300)
{
	const uint64_t churned = 256ULL << 20;
	struct sa_gc_stats a, b;
	uint64_t id = 0, room, expect;
	int bad = 0;

	setenv("SPANALLOC_GOGC", "off", 1);
	setenv("SPANALLOC_GOMEMLIMIT", "32MiB", 1);
	gc_start(_metadata);
	sa_gc_set_end_pointers(0);	/* churn's 64 bytes fill 64-byte slots */
	g_live = build_tree(16, &id);
	clean_collect();
	ASSERT_EQ(0, sa_gc_get_stats(&a));
	ASSERT_GT(a.goal, a.live_after_gc + (4ULL << 20));
	room = a.goal - a.live_after_gc;
	churn(churned);
	ASSERT_EQ(0, sa_gc_get_stats(&b));
	expect = churned / room;
	TH_LOG("live %llu KiB, goal %llu KiB: %llu cycles for %llu expected",
	       (unsigned long long)(a.live_after_gc >> 10), (unsigned long long)(a.goal >> 10),
	       (unsigned long long)(b.cycles - a.cycles), (unsigned long long)expect);
	EXPECT_LE(b.cycles - a.cycles, expect + expect / 4 + 2);
	EXPECT_GE(b.cycles - a.cycles, expect / 2);
	EXPECT_EQ(65535, check_tree(g_live, &bad));
	EXPECT_EQ(0, bad);
}

TEST_F(gc, disable_stops_automatic_collections)
{
	struct sa_gc_stats a, b;

	gc_start(_metadata);
	sa_gc_disable();
	ASSERT_EQ(0, sa_gc_get_stats(&a));
	churn(32 << 20);
	ASSERT_EQ(0, sa_gc_get_stats(&b));
	EXPECT_EQ(a.cycles, b.cycles);
	sa_gc_collect();	/* explicit ones still run */
	ASSERT_EQ(0, sa_gc_get_stats(&b));
	EXPECT_EQ(a.cycles + 1, b.cycles);
	sa_gc_enable();
	churn(32 << 20);
	ASSERT_EQ(0, sa_gc_get_stats(&a));
	EXPECT_GT(a.cycles, b.cycles);
	EXPECT_EQ(100, sa_gc_set_percent(50));
	EXPECT_EQ(50, sa_gc_set_percent(100));
}

TEST_F(gc, statistics_add_up)
{
	struct sa_gc_stats st;
	void *keep[100];

	gc_start(_metadata);
	for (int i = 0; i < 100; i++)
		keep[i] = sa_alloc(64);
	churn(16 << 20);
	for (int i = 0; i < 100; i++)
		sa_free(keep[i]);
	sa_gc_collect();
	ASSERT_EQ(0, sa_gc_get_stats(&st));
	EXPECT_GE(st.bytes_allocated, 16 << 20);
	EXPECT_GE(st.objects_allocated, (16 << 20) / 64);
	/* freed: the 100 freed explicitly and what the collection found */
	EXPECT_EQ(st.collected_objects + 100, st.objects_freed);
	EXPECT_GE(st.collected_objects, (8 << 20) / 64);
	EXPECT_GT(st.collected_bytes, 8 << 20);
	EXPECT_GT(st.pause_max_ns, 0);
	EXPECT_LE(st.live_after_gc, st.heap_inuse);
	/* each pause, and they add up to what the statistics say */
	{
		uint64_t ns[256], sum = 0, max = 0;
		int n = sa_gc_get_pauses(ns, 256);

		ASSERT_EQ((int)st.cycles, n);
		for (int i = 0; i < n; i++) {
			sum += ns[i];
			max = ns[i] > max ? ns[i] : max;
		}
		EXPECT_EQ(st.pause_total_ns, sum);
		EXPECT_EQ(st.pause_max_ns, max);
		/* the most recent ones, oldest first */
		if (n >= 2) {
			uint64_t last[2];

			ASSERT_EQ(2, sa_gc_get_pauses(last, 2));
			EXPECT_EQ(ns[n - 2], last[0]);
			EXPECT_EQ(ns[n - 1], last[1]);
		}
		EXPECT_EQ(-1, sa_gc_get_pauses(NULL, 1));
	}
}

/* What a person tuning GOGC reads, as Go's runtime/metrics has it. */
TEST_F(gc, statistics_for_tuning_say_what_the_collector_did)
{
	struct sa_gc_stats st, old;
	uint64_t ns[256], sorted[256], in_buckets = 0, t0, t1;
	struct timespec ts;
	int n;

	gc_start(_metadata);
	sa_gc_set_percent(150);
	sa_gc_set_memory_limit(1LL << 40);
	clock_gettime(CLOCK_REALTIME, &ts);
	t0 = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	churn(32 << 20);
	sa_gc_collect();
	clock_gettime(CLOCK_REALTIME, &ts);
	t1 = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	ASSERT_EQ(0, sa_gc_get_stats(&st));
	ASSERT_LE(2, st.cycles);
	EXPECT_EQ(150, st.gc_percent);
	EXPECT_EQ(1LL << 40, st.memory_limit);
	/* the last cycle ended between the two clock reads */
	EXPECT_LE(t0, st.last_gc_unix_ns);
	EXPECT_GE(t1, st.last_gc_unix_ns);
	EXPECT_LT(0, st.gc_cpu_ns);
	EXPECT_LT(0, st.gc_cpu_fraction);
	EXPECT_GE(1, st.gc_cpu_fraction);
	EXPECT_LT(0, st.stack_bytes);
	/* sa_gc_collect returns swept */
	EXPECT_LT(0, st.sweep_spans);
	EXPECT_EQ(st.sweep_spans, st.sweep_spans_done);

	/* every pause in its bucket, and the quantiles of the same pauses */
	n = sa_gc_get_pauses(ns, 256);
	ASSERT_EQ((int)st.cycles, n);
	for (int b = 0; b < SA_GC_PAUSE_BUCKETS; b++) {
		uint64_t lo = b ? 1000ULL << b : 0, hi = 1000ULL << (b + 1), k = 0;

		for (int i = 0; i < n; i++)
			k += ns[i] >= lo && (ns[i] < hi || b == SA_GC_PAUSE_BUCKETS - 1);
		EXPECT_EQ(k, st.pause_buckets[b]) TH_LOG("bucket %d", b);
		in_buckets += st.pause_buckets[b];
	}
	EXPECT_EQ(st.cycles, in_buckets);
	memcpy(sorted, ns, sizeof(ns[0]) * (size_t)n);
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
			uint64_t t = sorted[j];

			sorted[j] = sorted[j - 1];
			sorted[j - 1] = t;
		}
	EXPECT_EQ(sorted[(n * 50 + 99) / 100 - 1], st.pause_p50_ns);
	EXPECT_EQ(sorted[(n * 90 + 99) / 100 - 1], st.pause_p90_ns);
	EXPECT_EQ(sorted[(n * 99 + 99) / 100 - 1], st.pause_p99_ns);
	EXPECT_LE(st.pause_p99_ns, st.pause_max_ns);

	/* a caller built before these fields: nothing written past its struct */
	memset(&old, 0xee, sizeof(old));
	ASSERT_EQ(0, (sa_gc_get_stats)(&old));
	EXPECT_EQ(st.cycles, old.cycles);
	EXPECT_EQ(0xeeeeeeeeu, (uint32_t)old.gc_percent);
	/* and one built after them: 0 in what this library does not know */
	{
		_Alignas(struct sa_gc_stats) char big[sizeof(st) + 16];

		memset(big, 0xee, sizeof(big));
		ASSERT_EQ(0, sa_gc_get_stats_size((struct sa_gc_stats *)big, sizeof(big)));
		for (size_t i = sizeof(st); i < sizeof(big); i++)
			EXPECT_EQ(0, big[i]);
	}
}

/*
 * SPANALLOC_GCTRACE=1 prints one line per cycle in Go's gctrace format;
 * SPANALLOC_GOGC sets the percent. Checked in a child, from its stderr,
 * where it also prints what sa_gc_get_stats says of pauses: the trace's
 * clock parts are the pause, so they add up to the same total and maximum.
 */
TEST_F(gc, trace_lines_follow_gos_format)
{
	const char *re_s =
		"^gc ([0-9]+) @[0-9]+\\.[0-9]{3}s [0-9]+%: "
		"([0-9.]+)\\+([0-9.]+)\\+([0-9.]+) ms clock, "
		"[0-9.]+\\+[0-9.]+/[0-9.]+/[0-9.]+\\+[0-9.]+ ms cpu, "
		"[0-9]+->[0-9]+->[0-9]+ MB, [0-9]+ MB goal, [0-9]+ MB stacks, "
		"[0-9]+ MB globals, [0-9]+ P$";
	int fds[2], st, lines = 0, last = 0, nstats = 0;
	double total_ms = 0, max_ms = 0, stat_total_ms = 0, stat_max_ms = 0;
	char buf[65536], *line, *save;
	unsigned long long cyc = 0, tot_ns, max_ns;
	regmatch_t m[5];
	ssize_t n, got = 0;
	regex_t re;
	pid_t pid;

	ASSERT_EQ(0, regcomp(&re, re_s, REG_EXTENDED));
	ASSERT_EQ(0, pipe(fds));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		/* a fresh process: a forked child gets no new spans */
		dup2(fds[1], 2);
		setenv("GC_TEST_TRACE_CHILD", "1", 1);
		setenv("SPANALLOC_GCTRACE", "1", 1);
		setenv("SPANALLOC_GOGC", "50", 1);
		execl("/proc/self/exe", "gc_test", (char *)NULL);
		_exit(4);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
		got += n;
	buf[got] = 0;
	waitpid(pid, &st, 0);
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int r;

		if (sscanf(line, "stats: %llu cycles, pauses %llu ns in all, %llu ns at most",
			   &cyc, &tot_ns, &max_ns) == 3) {
			nstats++;
			stat_total_ms = (double)tot_ns / 1e6;
			stat_max_ms = (double)max_ns / 1e6;
			continue;
		}
		r = regexec(&re, line, 5, m, 0);
		EXPECT_EQ(0, r) TH_LOG("not a gctrace line: %s", line);
		lines++;
		if (!r) {
			double pause = atof(line + m[2].rm_so) + atof(line + m[3].rm_so) +
				       atof(line + m[4].rm_so);

			EXPECT_EQ(last + 1, atoi(line + m[1].rm_so));
			last = atoi(line + m[1].rm_so);
			total_ms += pause;
			if (pause > max_ms)
				max_ms = pause;
		}
	}
	EXPECT_GE(lines, 3);
	ASSERT_EQ(1, nstats);
	EXPECT_EQ((unsigned long long)lines, cyc);
	/* each part is printed to the microsecond: 1.5 us of rounding a part */
	EXPECT_LE(fabs(total_ms - stat_total_ms), 0.0045 * lines)
		TH_LOG("trace says %.3f ms stopped, sa_gc_get_stats %.3f ms", total_ms, stat_total_ms);
	EXPECT_LE(fabs(max_ms - stat_max_ms), 0.0045)
		TH_LOG("trace says %.3f ms at most, sa_gc_get_stats %.3f ms", max_ms, stat_max_ms);
	regfree(&re);
}

/* The trace test's child: runs before the harness when asked to. */
static __attribute__((constructor)) void trace_child(void)
{
	if (!getenv("GC_TEST_TRACE_CHILD"))
		return;
	if (sa_gc_init())
		_exit(2);
	churn(32 << 20);
	sa_gc_collect();
	{
		struct sa_gc_stats st;

		if (sa_gc_get_stats(&st))
			_exit(5);
		fprintf(stderr, "stats: %llu cycles, pauses %llu ns in all, %llu ns at most\n",
			(unsigned long long)st.cycles, (unsigned long long)st.pause_total_ns,
			(unsigned long long)st.pause_max_ns);
	}
	_exit(sa_gc_set_percent(100) == 50 ? 0 : 3);
}

TEST_HARNESS_MAIN
