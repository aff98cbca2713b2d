// SPDX-License-Identifier: MIT
/*
 * prof: the heap profile (Go's mprof.go and runtime/pprof's writer).
 *
 * Sampling. Every thread counts down the bytes it allocates, from a
 * distance drawn from an exponential distribution of mean sa_prof_rate
 * (Go's MemProfileRate), so that the points where samples fall form a
 * Poisson process over the bytes allocated; the allocation a point falls
 * in is a sample, standing for sa_prof_rate bytes: an estimate of the
 * bytes each call stack allocated that is unbiased whatever the sizes and
 * the order of the calls, as Go's is. Go counts down in every malloc; the
 * fast paths here count nothing. Instead, each time the slow path hands a
 * thread a span's next cache of free objects (sa_prof_charge), the cache
 * is charged to the countdown ahead of time, and if the next point falls
 * inside it, the cache is cut just before the object it falls in: the
 * fast path runs dry there, and the slow path puts the rest back and
 * hands out exactly that object as the sample (sa_prof_resume). Large
 * objects are charged as they are made. A cache dropped before it is used
 * up (a collection, a thread's exit) was charged for objects never
 * handed out: that moves the next point earlier, it favours no caller.
 *
 * A sample records its call stack (the unwinder, outside any no-stop
 * region: it may take the dynamic linker's lock) in a bucket per stack,
 * with what that stack allocated and freed, and the object in a table of
 * live samples. Its span counts its live samples (nsampled): a span that
 * has some reports the objects it sees freed (frees taken in by the
 * holder, and the collector's sweep) here, where they are found in the
 * table and counted freed in their bucket. So no fast path changes, as
 * in Go, where the sweeper frees profiled objects.
 *
 * Every table is behind prof_lock, taken only in no-stop regions (a
 * collection stops no thread inside it, and its sweep with the world
 * stopped takes it); their memory comes from mmap, never from the heap
 * being profiled. sa_heap_profile_write() writes pprof's protobuf format
 * (profile.proto, uncompressed: pprof reads both), with the process's
 * executable mappings so that pprof symbolizes the addresses itself.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <unwind.h>
#include "internal.h"

#define SA_PROF_DEPTH		32
#define SA_PROF_DEFAULT_RATE	(512 * 1024)
/* Rates past this are taken as it: the countdown's arithmetic stays in range. */
#define SA_PROF_MAX_RATE	(1ULL << 40)

_Atomic uint64_t sa_prof_rate;
/* SPANALLOC_HEAPPROFILE, written at exit; %p in it is the pid */
static char prof_path[4096];
static pid_t prof_pid;		/* the process that read it */
static pthread_mutex_t prof_lock = PTHREAD_MUTEX_INITIALIZER;

struct sa_prof_bucket {
	uint64_t hash;
	uint32_t nframes;
	uintptr_t frames[SA_PROF_DEPTH];
	double alloc_objects, free_objects;
	uint64_t alloc_bytes, free_bytes;
};

/* A live sampled object: key is its span object's address (the block of a tiny one). */
struct sa_prof_live {
	uintptr_t key;			/* 0: empty slot */
	uint32_t bucket;
	uint64_t bytes;
	double objects;
};

/* Under prof_lock. Open addressing: index[i] is bucket + 1, or 0. */
static struct sa_prof_bucket *buckets;
static uint32_t nbuckets, bucket_cap, *bucket_index, index_cap;
static struct sa_prof_live *live;
static uint32_t nlive, live_cap;

static void *sa_prof_map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* fork(): held across it, as the library's other locks are (fork.c). */
void sa_prof_fork(enum sa_fork_phase phase)
{
	sa_fork_mutex(&prof_lock, phase);
}

/* path with each %p made pid (as core_pattern's), into out. */
static void sa_prof_expand(char *out, size_t size, const char *path, pid_t pid)
{
	size_t n = 0;

	for (const char *p = path; *p && n + 1 < size; p++) {
		if (p[0] == '%' && p[1] == 'p') {
			n += (size_t)snprintf(out + n, size - n, "%d", (int)pid);
			if (n >= size)
				n = size - 1;
			p++;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = 0;
}

void sa_prof_init(void)
{
	const char *path = getenv("SPANALLOC_HEAPPROFILE");
	const char *rate = getenv("SPANALLOC_PROFILE_RATE");
	uint64_t r = SA_PROF_DEFAULT_RATE;
	bool rate_set = false;

	if (rate && *rate) {
		char *end;
		unsigned long long v = strtoull(rate, &end, 10);

		rate_set = !*end && *rate != '-' && v <= SA_PROF_MAX_RATE;
		if (rate_set)
			r = v;
		else
			fprintf(stderr, "spanalloc: SPANALLOC_PROFILE_RATE=%s: not a number of bytes up to 2^40; ignored\n",
				rate);
	}
	if (path && *path) {
		snprintf(prof_path, sizeof(prof_path), "%s", path);
		prof_pid = getpid();
	}
	if ((path && *path) || rate_set)
		atomic_store(&sa_prof_rate, r);
}

size_t sa_set_profile_rate(size_t bytes)
{
	return (size_t)atomic_exchange(&sa_prof_rate,
				       bytes > SA_PROF_MAX_RATE ? SA_PROF_MAX_RATE : (uint64_t)bytes);
}

/*
 * -ln(u) for u in (0, 1], to about 0.1%: log2 from the exponent and a
 * polynomial of the mantissa (no libm for the library's users to link).
 */
static double sa_neg_ln(double u)
{
	union { double d; uint64_t b; } x = { .d = u };
	int e = (int)((x.b >> 52) & 0x7ff) - 1023;
	double m, t, l2;

	x.b = (x.b & ~(0x7ffULL << 52)) | (1023ULL << 52);	/* mantissa in [1, 2) */
	m = x.d;
	t = (m - 1) / (m + 1);
	/* log2(m) = 2/ln2 * atanh(t), t <= 1/3 */
	l2 = 2.8853900817779268 * t * (1 + t * t * (1.0 / 3 + t * t * (1.0 / 5 + t * t / 7)));
	return -(e + l2) * 0.6931471805599453;
}

/* The next distance to a sample, exponential of mean rate. */
static int64_t sa_prof_next(struct sa_tcache *c, uint64_t rate)
{
	uint64_t x = c->prof_rng ? c->prof_rng : (uintptr_t)c | 1;
	double u;

	/* xorshift64* */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	c->prof_rng = x;
	u = ((x * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
	return (int64_t)(sa_neg_ln(u > 0 ? u : 1.0 / 9007199254740992.0) * (double)rate) + 1;
}

/*
 * c allocated bytes more: the points that fell in them are bytes' worth of
 * samples pending for the allocation just made. A new rate (or a thread's
 * first allocation) starts from a fresh distance.
 */
static void sa_prof_count(struct sa_tcache *c, uint64_t rate, uint64_t bytes)
{
	if (c->prof_drawn != rate) {
		c->prof_drawn = rate;
		c->prof_left = sa_prof_next(c, rate);
	}
	c->prof_left -= (int64_t)bytes;
	while (c->prof_left < 0) {
		/* far behind (a large object, a tiny rate): many points at once */
		if (-c->prof_left > 64 * (int64_t)rate) {
			uint64_t k = (uint64_t)-c->prof_left / rate;

			c->prof_pending += k * rate;
			c->prof_left += (int64_t)(k * rate);
			continue;
		}
		c->prof_pending += rate;
		c->prof_left += sa_prof_next(c, rate);
	}
}

/*
 * The slow path returns an object of bytes from s (NULL: a large one), the
 * span whose cache the fast path uses next: charge the object, then the
 * cache, cut before the object the next point falls in (see the top).
 */
void sa_prof_charge_slow(struct sa_tcache *c, struct sa_uspan *s, uint64_t bytes)
{
	uint64_t rate = atomic_load_explicit(&sa_prof_rate, memory_order_relaxed);
	uint64_t cache, kept = 0;
	uint32_t m, j;

	if (!rate)
		return;
	sa_prof_count(c, rate, bytes);
	if (!s || s->prof_rest)
		return;
	cache = s->alloc_cache;
	m = sa_popcount64(cache);
	/* the objects wholly before the next point; it falls in object j */
	j = (uint64_t)c->prof_left / s->elemsize < m ?
	    (uint32_t)((uint64_t)c->prof_left / s->elemsize) : m;
	c->prof_left -= (int64_t)j * s->elemsize;
	if (j == m)
		return;
	for (uint32_t i = 0; i < j; i++) {
		uint64_t low = cache & -cache;

		kept |= low;
		cache ^= low;
	}
	s->alloc_cache = kept;
	s->prof_rest = cache;
	s->prof_cut_at = s->freeindex;
}

/*
 * The fast path ran dry at a cut: the rest of the cache back, and its
 * first object, the one the point fell in, handed out (the caller charges
 * it, which makes it a sample).
 */
uintptr_t sa_prof_resume(struct sa_uspan *s)
{
	/* the cache moves one bit per object the fast path passed since */
	s->alloc_cache = s->prof_rest >> (s->freeindex - s->prof_cut_at);
	s->prof_rest = 0;
	return sa_span_next_fast(s);
}

/* --- stacks ------------------------------------------------------------ */

struct sa_bt {
	uintptr_t *pcs;
	int n;
};

static _Unwind_Reason_Code sa_bt_step(struct _Unwind_Context *ctx, void *arg)
{
	struct sa_bt *bt = arg;
	int before = 0;
	uintptr_t ip = _Unwind_GetIPInfo(ctx, &before);

	if (!ip)
		return _URC_END_OF_STACK;
	/* a return address: the call is the instruction before it */
	bt->pcs[bt->n++] = before ? ip : ip - 1;
	return bt->n < SA_PROF_DEPTH ? _URC_NO_REASON : _URC_END_OF_STACK;
}

/* The library's own text, when it is a module of its own (else 0, 0). */
static uintptr_t self_lo, self_hi;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;

static int sa_self_phdr(struct dl_phdr_info *info, size_t size, void *arg)
{
	uintptr_t me = (uintptr_t)arg;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || me < lo ||
		    me >= lo + ph->p_memsz)
			continue;
		/* linked into the program: its frames are the program's too */
		if (info->dlpi_name && *info->dlpi_name) {
			self_lo = lo;
			self_hi = lo + ph->p_memsz;
		}
		return 1;
	}
	return 0;
}

static void sa_self_find(void)
{
	dl_iterate_phdr(sa_self_phdr, (void *)(uintptr_t)sa_self_find);
}

/*
 * The caller's stack, without the library's own frames on top: the first
 * two are always its own (sa_prof_sample, which this is inlined into, and
 * the slow path that calls it), and when the library is a module of its
 * own, every frame in it. Linked into the program, the public function
 * that called the slow path, if it made a frame, stays.
 */
static inline __attribute__((always_inline)) int sa_prof_backtrace(uintptr_t *pcs)
{
	struct sa_bt bt = { .pcs = pcs, .n = 0 };
	int skip = 2;

	pthread_once(&self_once, sa_self_find);
	_Unwind_Backtrace(sa_bt_step, &bt);
	if (skip > bt.n)
		skip = bt.n;
	while (skip < bt.n && pcs[skip] >= self_lo && pcs[skip] < self_hi)
		skip++;
	memmove(pcs, pcs + skip, (size_t)(bt.n - skip) * sizeof(pcs[0]));
	return bt.n - skip;
}

/* --- tables (prof_lock) ------------------------------------------------ */

static uint64_t sa_prof_hash(const uintptr_t *pcs, int n)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;

	for (int i = 0; i < n; i++) {
		h ^= pcs[i];
		h *= 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	return h ? h : 1;
}

static bool sa_prof_grow_buckets(void)
{
	uint32_t cap = bucket_cap ? 2 * bucket_cap : 256, icap = 2 * cap;
	struct sa_prof_bucket *nb = sa_prof_map(cap * sizeof(*nb));
	uint32_t *ni = sa_prof_map(icap * sizeof(*ni));

	if (!nb || !ni) {
		if (nb)
			munmap(nb, cap * sizeof(*nb));
		if (ni)
			munmap(ni, icap * sizeof(*ni));
		return false;
	}
	if (buckets) {
		memcpy(nb, buckets, nbuckets * sizeof(*nb));
		munmap(buckets, bucket_cap * sizeof(*buckets));
		munmap(bucket_index, index_cap * sizeof(*bucket_index));
	}
	for (uint32_t b = 0; b < nbuckets; b++) {
		uint32_t i = (uint32_t)nb[b].hash & (icap - 1);

		while (ni[i])
			i = (i + 1) & (icap - 1);
		ni[i] = b + 1;
	}
	buckets = nb;
	bucket_index = ni;
	bucket_cap = cap;
	index_cap = icap;
	return true;
}

/* The bucket of stack pcs, made if new; UINT32_MAX if no memory. */
static uint32_t sa_prof_bucket(const uintptr_t *pcs, int n)
{
	uint64_t h = sa_prof_hash(pcs, n);
	struct sa_prof_bucket *b;
	uint32_t i;

	if (nbuckets == bucket_cap && !sa_prof_grow_buckets())
		return UINT32_MAX;
	for (i = (uint32_t)h & (index_cap - 1); bucket_index[i]; i = (i + 1) & (index_cap - 1)) {
		b = &buckets[bucket_index[i] - 1];
		if (b->hash == h && b->nframes == (uint32_t)n &&
		    !memcmp(b->frames, pcs, (size_t)n * sizeof(pcs[0])))
			return bucket_index[i] - 1;
	}
	b = &buckets[nbuckets];
	memset(b, 0, sizeof(*b));
	b->hash = h;
	b->nframes = (uint32_t)n;
	memcpy(b->frames, pcs, (size_t)n * sizeof(pcs[0]));
	bucket_index[i] = ++nbuckets;
	return nbuckets - 1;
}

static uint32_t sa_live_slot(uintptr_t key, uint32_t cap)
{
	return (uint32_t)((key >> 4) * 0x9e3779b97f4a7c15ULL >> 32) & (cap - 1);
}

static bool sa_prof_grow_live(void)
{
	uint32_t cap = live_cap ? 2 * live_cap : 1024;
	struct sa_prof_live *nl = sa_prof_map(cap * sizeof(*nl));

	if (!nl)
		return false;
	for (uint32_t j = 0; j < live_cap; j++) {
		uint32_t i;

		if (!live[j].key)
			continue;
		for (i = sa_live_slot(live[j].key, cap); nl[i].key; i = (i + 1) & (cap - 1))
			;
		nl[i] = live[j];
	}
	if (live)
		munmap(live, live_cap * sizeof(*live));
	live = nl;
	live_cap = cap;
	return true;
}

/* Removes slot i, moving back what its probe sequence needs (no tombstones). */
static void sa_live_delete(uint32_t i)
{
	uint32_t mask = live_cap - 1, j = i;

	for (;;) {
		uint32_t home;

		live[i].key = 0;
		do {
			j = (j + 1) & mask;
			if (!live[j].key)
				return;
			home = sa_live_slot(live[j].key, live_cap);
			/* j may move to i if its home is not in (i, j] */
		} while (i <= j ? (i < home && home <= j) : (i < home || home <= j));
		live[i] = live[j];
		i = j;
	}
}

/* Every live sample of the object at key is freed. */
static void sa_prof_free_key(uintptr_t key)
{
	uint32_t i = sa_live_slot(key, live_cap);

	while (live[i].key) {
		if (live[i].key != key) {
			i = (i + 1) & (live_cap - 1);
			continue;
		}
		buckets[live[i].bucket].free_bytes += live[i].bytes;
		buckets[live[i].bucket].free_objects += live[i].objects;
		nlive--;
		/* the slot now holds what followed it, if anything: look again */
		sa_live_delete(i);
	}
}

/* --- sampling and frees ---------------------------------------------- */

/*
 * The slow path that took c's pending sample points returned p: sample
 * it. Called outside any no-stop region, with no lock held; a frame of its
 * own, called by the slow path itself (sa_prof_backtrace counts on it).
 */
__attribute__((noinline)) void sa_prof_sample(struct sa_tcache *c, void *p)
{
	uint64_t bytes = c->prof_pending;
	struct sa_uspan *s = sa_span_of(p);
	uintptr_t pcs[SA_PROF_DEPTH], key;
	size_t size = sa_usable_size(p);
	uint32_t b, i;
	int n;

	c->prof_pending = 0;
	/* the unwinder may allocate (registered frames): no sample of that */
	if (c->prof_busy || !s || !size)
		return;
	c->prof_busy = 1;
	n = sa_prof_backtrace(pcs);
	c->prof_busy = 0;
	if (s->spanclass < 2)
		key = s->base;
	else
		key = sa_span_object(s, sa_span_index(s, (uintptr_t)p));
	sa_safe_enter(c);
	pthread_mutex_lock(&prof_lock);
	b = sa_prof_bucket(pcs, n);
	if (b != UINT32_MAX && (2 * (nlive + 1) <= live_cap || sa_prof_grow_live())) {
		buckets[b].alloc_bytes += bytes;
		buckets[b].alloc_objects += (double)bytes / (double)size;
		for (i = sa_live_slot(key, live_cap); live[i].key; i = (i + 1) & (live_cap - 1))
			;
		live[i] = (struct sa_prof_live){
			.key = key, .bucket = b, .bytes = bytes,
			.objects = (double)bytes / (double)size,
		};
		nlive++;
		atomic_fetch_add_explicit(&s->nsampled, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&prof_lock);
	sa_safe_exit(c);
}

/*
 * Objects bits of word w of s (a span with live samples) are freed: their
 * samples are. The caller holds s, or the world is stopped, and is in a
 * no-stop region.
 */
void sa_prof_freed_slow(struct sa_uspan *s, uint32_t w, uint64_t bits)
{
	pthread_mutex_lock(&prof_lock);
	for (; bits && atomic_load_explicit(&s->nsampled, memory_order_relaxed); bits &= bits - 1) {
		uint32_t before = nlive;

		sa_prof_free_key(sa_span_object(s, w * 64 + (uint32_t)__builtin_ctzll(bits)));
		atomic_fetch_sub_explicit(&s->nsampled, before - nlive, memory_order_relaxed);
	}
	pthread_mutex_unlock(&prof_lock);
}

/* --- pprof's format ---------------------------------------------------- */

/* A growable byte buffer in mmap'd memory. */
struct sa_pb {
	uint8_t *p;
	size_t n, cap;
	bool failed;
};

static void sa_pb_room(struct sa_pb *b, size_t more)
{
	size_t cap;
	uint8_t *np;

	if (b->n + more <= b->cap || b->failed)
		return;
	cap = b->cap ? b->cap : 65536;
	while (cap < b->n + more)
		cap *= 2;
	np = sa_prof_map(cap);
	if (!np) {
		b->failed = true;
		return;
	}
	if (b->p) {
		memcpy(np, b->p, b->n);
		munmap(b->p, b->cap);
	}
	b->p = np;
	b->cap = cap;
}

static void sa_pb_bytes(struct sa_pb *b, const void *d, size_t n)
{
	if (!n)
		return;
	sa_pb_room(b, n);
	if (b->failed)
		return;
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void sa_pb_varint(struct sa_pb *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;

	do {
		t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	sa_pb_bytes(b, t, n);
}

static void sa_pb_uint(struct sa_pb *b, uint32_t field, uint64_t v)
{
	sa_pb_varint(b, (uint64_t)field << 3);
	sa_pb_varint(b, v);
}

/* A length-delimited field: bytes, a string or a message made in m. */
static void sa_pb_msg(struct sa_pb *b, uint32_t field, const void *d, size_t n)
{
	sa_pb_varint(b, (uint64_t)field << 3 | 2);
	sa_pb_varint(b, n);
	sa_pb_bytes(b, d, n);
}

static void sa_pb_free(struct sa_pb *b)
{
	if (b->p)
		munmap(b->p, b->cap);
	*b = (struct sa_pb){ 0 };
}

/* The string table: index 0 is "" (profile.proto); strings are appended. */
struct sa_strtab {
	struct sa_pb out;	/* field 6 entries, written as made */
	uint64_t n;
};

static uint64_t sa_str(struct sa_strtab *t, const char *s)
{
	sa_pb_msg(&t->out, 6, s, strlen(s));
	return t->n++;
}

/* A ValueType {type, unit} message as field f. */
static void sa_pb_value_type(struct sa_pb *b, uint32_t f, uint64_t type, uint64_t unit)
{
	struct sa_pb m = { 0 };

	sa_pb_uint(&m, 1, type);
	sa_pb_uint(&m, 2, unit);
	sa_pb_msg(b, f, m.p, m.n);
	b->failed |= m.failed;
	sa_pb_free(&m);
}

#define SA_PROF_MAPS	4096	/* executable mappings named at most */

struct sa_mapping {
	uintptr_t lo, hi, off;
	uint64_t file;		/* string index */
};

/* The executable mappings of files, from /proc/self/maps. */
static uint32_t sa_prof_mappings(struct sa_mapping *m, uint32_t max, struct sa_strtab *t)
{
	struct sa_pb text = { 0 };
	char buf[4096];
	uint32_t n = 0;
	ssize_t r;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		sa_pb_bytes(&text, buf, (size_t)r);
	close(fd);
	sa_pb_bytes(&text, "", 1);
	for (char *l = (char *)text.p; !text.failed && l && *l && n < max; ) {
		char *nl = strchr(l, '\n'), perms[8], path[4096];
		unsigned long lo, hi, off;

		if (nl)
			*nl = 0;
		path[0] = 0;
		if (sscanf(l, "%lx-%lx %7s %lx %*s %*s %4095[^\n]", &lo, &hi, perms, &off, path) >= 4 &&
		    perms[2] == 'x' && path[0] == '/')
			m[n++] = (struct sa_mapping){ lo, hi, off, sa_str(t, path) };
		l = nl ? nl + 1 : NULL;
	}
	sa_pb_free(&text);
	return n;
}

/* The protobuf of a snapshot of the buckets. */
static int sa_prof_encode(struct sa_pb *out, const struct sa_prof_bucket *bk, uint32_t nb,
			  uint64_t rate)
{
	struct sa_strtab t = { 0 };
	struct sa_mapping *maps;
	struct sa_pb m = { 0 }, fn = { 0 };
	struct sa_symtab *syms;
	const char **fnames;
	uint64_t *addrs = NULL;
	uint32_t nmaps, acap = 0;
	uint64_t sv[4], st[4];
	struct timespec now;

	sa_str(&t, "");
	sv[0] = sa_str(&t, "alloc_objects");
	sv[1] = sa_str(&t, "alloc_space");
	sv[2] = sa_str(&t, "inuse_objects");
	sv[3] = sa_str(&t, "inuse_space");
	st[0] = sa_str(&t, "count");
	st[1] = sa_str(&t, "bytes");
	st[2] = sa_str(&t, "space");
	for (int i = 0; i < 4; i++)
		sa_pb_value_type(out, 1, sv[i], i % 2 ? st[1] : st[0]);

	/* locations: one per distinct address, ids from 1 in order seen */
	for (uint32_t i = 0; i < nb; i++)
		acap += bk[i].nframes;
	acap = acap * 2 + 16;
	addrs = sa_prof_map(acap * sizeof(*addrs));
	maps = sa_prof_map(SA_PROF_MAPS * sizeof(*maps));
	if (!addrs || !maps) {
		if (addrs)
			munmap(addrs, acap * sizeof(*addrs));
		if (maps)
			munmap(maps, SA_PROF_MAPS * sizeof(*maps));
		sa_pb_free(&t.out);
		return -1;
	}
	for (uint32_t i = 0; i < nb; i++) {
		const struct sa_prof_bucket *b = &bk[i];
		int64_t v[4];

		v[0] = (int64_t)(b->alloc_objects + 0.5);
		v[1] = (int64_t)b->alloc_bytes;
		v[2] = (int64_t)(b->alloc_objects - b->free_objects + 0.5);
		v[3] = (int64_t)(b->alloc_bytes - b->free_bytes);
		if (!v[0] && !v[1])
			continue;
		m.n = 0;
		/* location_id, packed: the index of each address in addrs + 1 */
		{
			struct sa_pb ids = { 0 }, vals = { 0 };

			for (uint32_t f = 0; f < b->nframes; f++) {
				uint64_t a = b->frames[f];
				uint32_t k = (uint32_t)(a % acap);

				/* addresses have the top bit set here: 0 is an empty slot */
				while (addrs[k] && addrs[k] != (a | 1ULL << 63))
					k = (k + 1) % acap;
				if (!addrs[k])
					addrs[k] = a | 1ULL << 63;
				sa_pb_varint(&ids, k + 1);
			}
			for (int j = 0; j < 4; j++)
				sa_pb_varint(&vals, (uint64_t)v[j]);
			sa_pb_msg(&m, 1, ids.p, ids.n);
			sa_pb_msg(&m, 2, vals.p, vals.n);
			m.failed |= ids.failed || vals.failed;
			sa_pb_free(&ids);
			sa_pb_free(&vals);
		}
		sa_pb_msg(out, 2, m.p, m.n);
	}

	nmaps = sa_prof_mappings(maps, SA_PROF_MAPS, &t);
	for (uint32_t i = 0; i < nmaps; i++) {
		m.n = 0;
		sa_pb_uint(&m, 1, i + 1);
		sa_pb_uint(&m, 2, maps[i].lo);
		sa_pb_uint(&m, 3, maps[i].hi);
		sa_pb_uint(&m, 4, maps[i].off);
		sa_pb_uint(&m, 5, maps[i].file);
		/*
		 * has_functions: the names come with the locations. pprof then
		 * leaves the mapping alone: no line numbers, but no names lost
		 * either (Go 1.19's pprof with llvm-symbolizer 14 finds lines
		 * and no names, and would put those in their place).
		 */
		sa_pb_uint(&m, 7, 1);
		sa_pb_msg(out, 3, m.p, m.n);
	}
	/*
	 * Locations, each with its function's name when the symbol tables
	 * have it: functions get ids in the order first seen, and a name is
	 * one pointer into a mapped symbol table, so equal pointers are one
	 * function.
	 */
	syms = sa_symtab_load();
	fnames = sa_prof_map(acap * sizeof(*fnames));
	for (uint32_t k = 0; fnames && k < acap; k++) {
		uint64_t a = addrs[k] & ~(1ULL << 63);
		const char *name;
		uint64_t fid = 0;

		if (!addrs[k])
			continue;
		m.n = 0;
		sa_pb_uint(&m, 1, k + 1);
		for (uint32_t i = 0; i < nmaps; i++)
			if (a >= maps[i].lo && a < maps[i].hi) {
				sa_pb_uint(&m, 2, i + 1);
				break;
			}
		sa_pb_uint(&m, 3, a);
		name = sa_symtab_lookup(syms, a);
		if (name) {
			struct sa_pb line = { 0 };
			uint32_t f = (uint32_t)(((uintptr_t)name >> 3) % acap);

			while (fnames[f] && fnames[f] != name)
				f = (f + 1) % acap;
			if (!fnames[f]) {
				fnames[f] = name;
				sa_pb_uint(&fn, 1, f + 1);
				sa_pb_uint(&fn, 2, sa_str(&t, name));
				sa_pb_msg(out, 5, fn.p, fn.n);
				fn.n = 0;
			}
			fid = f + 1;
			sa_pb_uint(&line, 1, fid);
			sa_pb_msg(&m, 4, line.p, line.n);
			m.failed |= line.failed;
			sa_pb_free(&line);
		}
		sa_pb_msg(out, 4, m.p, m.n);
	}
	out->failed |= !fnames || fn.failed;
	if (fnames)
		munmap(fnames, acap * sizeof(*fnames));
	sa_pb_free(&fn);
	sa_symtab_free(syms);
	munmap(addrs, acap * sizeof(*addrs));
	munmap(maps, SA_PROF_MAPS * sizeof(*maps));
	sa_pb_bytes(out, t.out.p, t.out.n);
	clock_gettime(CLOCK_REALTIME, &now);
	sa_pb_uint(out, 9, (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
	sa_pb_value_type(out, 11, st[2], st[1]);
	sa_pb_uint(out, 12, rate);
	sa_pb_uint(out, 14, sv[3]);	/* pprof shows inuse_space first, as for Go's */
	out->failed |= m.failed || t.out.failed;
	sa_pb_free(&m);
	sa_pb_free(&t.out);
	return out->failed ? -1 : 0;
}

int sa_heap_profile_write(const char *path)
{
	struct sa_tcache *self = sa_tc;
	struct sa_prof_bucket *snap = NULL;
	struct sa_pb out = { 0 };
	char tmp[4200];
	uint32_t nb;
	size_t done = 0;
	int fd, err = 0;

	if (!path) {
		errno = EINVAL;
		return -1;
	}
	/* the tables, copied in a no-stop region (the sweep takes the lock) */
	if (self)
		sa_safe_enter(self);
	pthread_mutex_lock(&prof_lock);
	nb = nbuckets;
	if (nb && (snap = sa_prof_map(nb * sizeof(*snap))))
		memcpy(snap, buckets, nb * sizeof(*snap));
	pthread_mutex_unlock(&prof_lock);
	if (self)
		sa_safe_exit(self);
	if (nb && !snap) {
		errno = ENOMEM;
		return -1;
	}
	if (sa_prof_encode(&out, snap, nb, atomic_load(&sa_prof_rate)))
		err = ENOMEM;
	if (snap)
		munmap(snap, nb * sizeof(*snap));
	/* whole or not at all: a reader never sees half a profile */
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
	fd = err ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (!err && fd < 0)
		err = errno;
	while (!err && done < out.n) {
		ssize_t w = write(fd, out.p + done, out.n - done);

		if (w < 0 && errno != EINTR)
			err = errno;
		else if (w > 0)
			done += (size_t)w;
	}
	if (fd >= 0 && close(fd) && !err)
		err = errno;
	if (fd >= 0 && !err && rename(tmp, path))
		err = errno;
	if (fd >= 0 && err)
		unlink(tmp);
	sa_pb_free(&out);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

/*
 * SPANALLOC_HEAPPROFILE: at exit, after the program's own destructors. A
 * forked child inherits the samples and the path: without a %p in it, it
 * writes path.PID, so that it does not overwrite its parent's.
 */
static __attribute__((destructor)) void sa_prof_at_exit(void)
{
	char path[4200];
	size_t n;

	if (!prof_path[0])
		return;
	sa_prof_expand(path, sizeof(path), prof_path, getpid());
	n = strlen(path);
	if (getpid() != prof_pid && !strstr(prof_path, "%p"))
		snprintf(path + n, sizeof(path) - n, ".%d", (int)getpid());
	if (sa_heap_profile_write(path))
		fprintf(stderr, "spanalloc: SPANALLOC_HEAPPROFILE=%s: %s\n", path, strerror(errno));
}
