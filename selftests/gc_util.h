/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers of the collector's selftests (gc_test, gc_roots_test): hiding
 * pointers from a conservative collector, wiping the stack, asking whether
 * an object survived, scan nodes with checksums, churning the heap, and
 * the fixture that makes a collected heap. Include after the harness.
 */
#ifndef SPANALLOC_GC_UTIL_H
#define SPANALLOC_GC_UTIL_H

#define KEY	0x5a5a5a5a5a5a5a5aULL
#define hide(p)	((uintptr_t)(p) ^ KEY)
#define show(h)	((void *)((h) ^ KEY))

/* Overwrites the stack below the caller with zeros. */
static __attribute__((noinline)) void wipe_stack(void)
{
	volatile char junk[64 * 1024];

	memset((char *)junk, 0, sizeof(junk));
	__asm__ volatile("" : : "r"(junk) : "memory");
}

/*
 * Runs fn 16 KiB deeper than the caller, so whatever its frames leave
 * behind is below where clean_collect() later wipes.
 */
static __attribute__((noinline)) void deep(void (*fn)(void))
{
	volatile char pad[16384];

	pad[0] = 0;
	fn();
	__asm__ volatile("" : : "r"(pad) : "memory");
}

static uintptr_t alive_h;
static int alive_r;

static void alive_fn(void)
{
	alive_r = sa_base(show(alive_h)) == show(alive_h);
}

/* Whether the hidden object is still allocated, leaving no copy behind. */
static __attribute__((noinline)) int alive(uintptr_t h)
{
	alive_h = h;
	deep(alive_fn);
	return alive_r;
}

static const void *intact_want;
static size_t intact_len;

static void intact_fn(void)
{
	const void *p = show(alive_h);

	alive_r = sa_base(p) != NULL && !memcmp(p, intact_want, intact_len);
}

/* Whether the hidden object is allocated and starts with want[0, len). */
static __attribute__((noinline, unused)) int intact(uintptr_t h, const void *want, size_t len)
{
	alive_h = h;
	intact_want = want;
	intact_len = len;
	deep(intact_fn);
	return alive_r;
}

/* Collects with nothing of the caller's frames left below it. */
static __attribute__((noinline)) void clean_collect(void)
{
	wipe_stack();
	sa_gc_collect();
}

static uint64_t checksum(uint64_t seed, uint64_t i)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + i;

	x ^= x >> 31;
	return x * 0xbf58476d1ce4e5b9ULL;
}

/* A scan node: two pointers and a checked payload. */
struct node {
	struct node *left, *right;
	uint64_t id, sum;
};

static struct node *new_node(uint64_t id, struct node *l, struct node *r)
{
	struct node *n = sa_alloc(sizeof(*n));

	if (!n)
		return NULL;
	n->left = l;
	n->right = r;
	n->id = id;
	n->sum = checksum(7, id);
	return n;
}

static int node_ok(const struct node *n)
{
	return n->sum == checksum(7, n->id);
}

/* Allocates garbage that holds pointers, so the heap churns. */
static __attribute__((noinline, unused)) void churn(size_t bytes)
{
	for (size_t done = 0; done < bytes; done += 64) {
		void **p = sa_alloc(64);

		if (p)
			p[0] = p;
	}
}

FIXTURE(gc) {
	int dummy;
};

FIXTURE_SETUP(gc)
{
	if (access(SA_DEV, F_OK) || sa_init())
		SKIP(return, "libspanalloc cannot start: %s", sa_strerror());
}

FIXTURE_TEARDOWN(gc)
{
}

static void gc_start(struct __test_metadata *_metadata)
{
	ASSERT_EQ(0, sa_gc_init()) TH_LOG("sa_gc_init: %s", strerror(errno));
}

#endif /* SPANALLOC_GC_UTIL_H */
