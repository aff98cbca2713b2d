// SPDX-License-Identifier: GPL-2.0
/*
 * observe_test: the module's windows for people and tools, checked
 * against what the ioctls say: /proc/spanallocinfo (one line per heap and
 * per live span class, root only) and the spanalloc tracepoints (each
 * event, its fields, in tracefs and perf's list).
 *
 * Needs /dev/spanalloc and root (run it through scripts/vm-run); says
 * SKIP when either is missing.
 */
#include <pthread.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "kselftest_harness.h"

#define INFO "/proc/spanallocinfo"
/* every test here reads root's files */
#define SA_HEAP_FIXTURE_CHECK \
	if (geteuid() != 0) \
		SKIP(return, "needs root: " INFO " and tracefs are root's");
#include "heap_fixture.h"


/* One heap line of /proc/spanallocinfo, as its format comment names them. */
struct info_heap {
	unsigned long long id;
	int pid;
	char comm[32];
	unsigned long long kib[8];	/* mapped active inuse free dirty released unreleasable limit */
	unsigned long long spans, large;
	unsigned long long ev[10];
};

struct info_class {
	unsigned int sc, size, noscan, objs, pages;
	struct spanalloc_class_stats cs;
};

/*
 * The line of heap id in text, and up to max of its class lines; returns
 * how many class lines, or -1 if the heap is not there.
 */
static int info_find(const char *text, unsigned long long id, struct info_heap *h,
		     struct info_class *cl, int max)
{
	const char *l = text;
	int n = -1;

	for (; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		unsigned long long hid;

		if (!strncmp(l, "heap ", 5)) {
			if (n >= 0)
				break;
			if (sscanf(l, "heap %llu %d %31s : kib %llu %llu %llu %llu %llu %llu %llu %llu : spans %llu %llu : events %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
				   &h->id, &h->pid, h->comm, &h->kib[0], &h->kib[1],
				   &h->kib[2], &h->kib[3], &h->kib[4], &h->kib[5],
				   &h->kib[6], &h->kib[7], &h->spans, &h->large,
				   &h->ev[0], &h->ev[1], &h->ev[2], &h->ev[3], &h->ev[4],
				   &h->ev[5], &h->ev[6], &h->ev[7], &h->ev[8],
				   &h->ev[9]) == 23 && h->id == id)
				n = 0;
		} else if (n >= 0 && !strncmp(l, "class ", 6) && n < max) {
			struct info_class *c = &cl[n];

			if (sscanf(l, "class %llu %u %u %u %u %u : spans %u %u %u %u",
				   &hid, &c->sc, &c->size, &c->noscan, &c->objs,
				   &c->pages, &c->cs.owned, &c->cs.cached,
				   &c->cs.partial, &c->cs.full) == 10 && hid == id)
				n++;
		}
	}
	return n;
}

TEST_F(heap, info_shows_the_heap_as_its_stats_say)
{
	unsigned int sc = SPANALLOC_SPANCLASS(7, 1), sc2 = SPANALLOC_SPANCLASS(30, 0), got;
	struct spanalloc_class_stats cs[SPANALLOC_NUM_SPANCLASSES];
	struct spanalloc_span s[6], lg;
	struct info_class cl[SPANALLOC_NUM_SPANCLASSES];
	struct spanalloc_stats st;
	struct info_heap h;
	char comm[32] = "", *text;
	int n, seen = 0;
	FILE *f;

	ASSERT_EQ(0, sa_t_get(self->fd, sc, s, 4, &got));
	ASSERT_EQ(4, got);
	ASSERT_EQ(0, sa_t_get(self->fd, sc2, s + 4, 2, &got));
	ASSERT_EQ(2, got);
	ASSERT_EQ(0, sa_t_ret(self->fd, s[0].handle, SPANALLOC_RET_PARTIAL));
	ASSERT_EQ(0, sa_t_ret(self->fd, s[1].handle, SPANALLOC_RET_FULL));
	ASSERT_EQ(0, sa_t_ret(self->fd, s[4].handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_large(self->fd, 3, 0, &lg));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, cs));

	text = sa_t_slurp(INFO);
	ASSERT_NE(NULL, text);
	EXPECT_EQ(0, strncmp(text, "spanallocinfo - version: 1.", 27));
	n = info_find(text, self->info.heap_id, &h, cl, SPANALLOC_NUM_SPANCLASSES);
	ASSERT_EQ(2, n) TH_LOG("%s", text);
	EXPECT_EQ(getpid(), h.pid);
	f = fopen("/proc/self/comm", "r");
	ASSERT_NE(NULL, f);
	ASSERT_EQ(1, fscanf(f, "%31s", comm));
	fclose(f);
	EXPECT_STREQ(comm, h.comm);
	EXPECT_EQ(self->len / 1024, h.kib[0]);
	EXPECT_EQ(st.arenas * (SPANALLOC_ARENA_SIZE / 1024), h.kib[1]);
	EXPECT_EQ(st.pages_inuse * 8, h.kib[2]);
	EXPECT_EQ(st.pages_free * 8, h.kib[3]);
	EXPECT_EQ(st.pages_dirty * 8, h.kib[4]);
	EXPECT_EQ((st.pages_free - st.pages_dirty - st.pages_unreleasable) * 8, h.kib[5]);
	EXPECT_EQ(st.pages_unreleasable * 8, h.kib[6]);
	EXPECT_EQ(st.limit / 1024, h.kib[7]);
	EXPECT_EQ(st.spans, h.spans);
	EXPECT_EQ(1, h.large);
	EXPECT_EQ(st.exchanges, h.ev[0]);
	EXPECT_EQ(st.spans_got, h.ev[1]);
	EXPECT_EQ(st.spans_returned, h.ev[2]);
	EXPECT_EQ(st.pcp_hits, h.ev[3]);
	EXPECT_EQ(st.central_hits, h.ev[4]);
	EXPECT_EQ(st.heap_spans, h.ev[5]);
	EXPECT_EQ(st.pcp_flushes, h.ev[6]);
	EXPECT_EQ(1, h.ev[7]);
	EXPECT_EQ(st.enomem, h.ev[8]);
	EXPECT_EQ(st.pages_released, h.ev[9]);
	/* a line for each class with spans alive, as the stats count them */
	for (int i = 0; i < n; i++) {
		unsigned int k = cl[i].sc;

		EXPECT_TRUE(k == sc || k == sc2);
		seen |= k == sc ? 1 : 2;
		EXPECT_EQ(sa_t_classes[k >> 1].size, cl[i].size);
		EXPECT_EQ(k & 1, cl[i].noscan);
		EXPECT_EQ(sa_t_classes[k >> 1].nelems, cl[i].objs);
		EXPECT_EQ(sa_t_classes[k >> 1].npages, cl[i].pages);
		EXPECT_EQ(0, memcmp(&cs[k], &cl[i].cs, sizeof(cs[k])));
	}
	EXPECT_EQ(3, seen);
	EXPECT_EQ(2, cs[sc].owned);
	EXPECT_EQ(1, cs[sc].full);
	EXPECT_EQ(1, cs[sc].cached + cs[sc].partial);
	free(text);

	/* closed, it is gone */
	munmap(self->map, self->len);
	close(self->fd);
	self->fd = -1;
	text = sa_t_slurp(INFO);
	ASSERT_NE(NULL, text);
	EXPECT_EQ(-1, info_find(text, self->info.heap_id, &h, cl, 0));
	free(text);
}

TEST_F(heap, info_is_for_root_only)
{
	int status;
	pid_t pid;

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(2);
		_exit(open(INFO, O_RDONLY) < 0 && errno == EACCES ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

static int snapshot(int fd, uint64_t id, uint8_t *pages, uint32_t npages,
		    struct spanalloc_snapshot_span *spans, uint32_t nspans,
		    struct spanalloc_snapshot *out)
{
	*out = (struct spanalloc_snapshot){
		.size = sizeof(*out), .heap_id = id,
		.pages_ptr = (uintptr_t)pages, .pages_count = npages,
		.spans_ptr = (uintptr_t)spans, .spans_count = nspans,
	};
	return sa_t_ioctl(fd, SPANALLOC_IOC_SNAPSHOT, out);
}

static const struct spanalloc_snapshot_span *
find_span(const struct spanalloc_snapshot_span *v, uint32_t n, uint32_t start)
{
	for (uint32_t i = 0; i < n; i++)
		if (v[i].start == start)
			return &v[i];
	return NULL;
}

TEST_F(heap, snapshot_shows_every_span_and_page_as_the_stats_count_them)
{
	unsigned int sc = SPANALLOC_SPANCLASS(6, 0), sc2 = SPANALLOC_SPANCLASS(40, 1), got;
	struct spanalloc_release rel = { .size = sizeof(rel) };
	struct spanalloc_snapshot_span *spans, one[2];
	struct spanalloc_span s[3], t[2], lg;
	struct spanalloc_snapshot sn;
	struct spanalloc_stats st;
	uint32_t count[5] = { 0 };
	const struct spanalloc_snapshot_span *x;
	uint8_t *pages, guard[2];

	ASSERT_EQ(0, sa_t_get(self->fd, sc, s, 3, &got));
	ASSERT_EQ(3, got);
	ASSERT_EQ(0, sa_t_get(self->fd, sc2, t, 2, &got));
	ASSERT_EQ(2, got);
	ASSERT_EQ(0, sa_t_large(self->fd, 3, 0, &lg));
	ASSERT_EQ(0, sa_t_ret(self->fd, s[0].handle, SPANALLOC_RET_PARTIAL));
	ASSERT_EQ(0, sa_t_ret(self->fd, s[1].handle, SPANALLOC_RET_FULL));
	ASSERT_EQ(0, sa_t_ret(self->fd, t[1].handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_RELEASE, &rel));
	ASSERT_EQ(0, sa_t_ret(self->fd, t[0].handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));

	/* the counts alone first, then with room for everything */
	ASSERT_EQ(0, snapshot(self->fd, 0, NULL, 0, NULL, 0, &sn));
	EXPECT_EQ(st.arenas * (SPANALLOC_ARENA_SIZE >> SPANALLOC_PAGE_SHIFT), sn.pages_count);
	EXPECT_EQ(st.spans, sn.spans_count);
	EXPECT_EQ((uintptr_t)self->map, sn.base);
	EXPECT_EQ(st.arenas, sn.arenas);
	pages = calloc(sn.pages_count, 1);
	spans = calloc(sn.spans_count, sizeof(*spans));
	ASSERT_NE(NULL, pages);
	ASSERT_NE(NULL, spans);
	ASSERT_EQ(0, snapshot(self->fd, self->info.heap_id, pages, sn.pages_count, spans,
			      sn.spans_count, &sn));
	for (uint32_t p = 0; p < sn.pages_count; p++) {
		ASSERT_LE(SPANALLOC_PAGE_SPAN, pages[p]);
		ASSERT_GE(SPANALLOC_PAGE_STUCK, pages[p]);
		count[pages[p]]++;
	}
	EXPECT_EQ(st.pages_inuse, count[SPANALLOC_PAGE_SPAN]);
	EXPECT_EQ(st.pages_dirty, count[SPANALLOC_PAGE_DIRTY]);
	EXPECT_EQ(st.pages_unreleasable, count[SPANALLOC_PAGE_STUCK]);
	EXPECT_EQ(st.pages_free - st.pages_dirty - st.pages_unreleasable,
		  count[SPANALLOC_PAGE_RELEASED]);
	/* in page order, and each of ours where it is, as it is */
	for (uint32_t i = 1; i < sn.spans_count; i++)
		EXPECT_LT(spans[i - 1].start + spans[i - 1].npages - 1, spans[i].start);
#define START(sp) ((uint32_t)(((sp).addr - (uintptr_t)self->map) >> SPANALLOC_PAGE_SHIFT))
	x = find_span(spans, sn.spans_count, START(s[0]));
	ASSERT_NE(NULL, x);
	EXPECT_EQ(sc, x->spanclass);
	EXPECT_EQ(sa_t_class_pages(sc), x->npages);
	EXPECT_EQ(self->info.pcp_depth ? SPANALLOC_SPAN_CACHED : SPANALLOC_SPAN_PARTIAL, x->state);
	x = find_span(spans, sn.spans_count, START(s[1]));
	ASSERT_NE(NULL, x);
	EXPECT_EQ(SPANALLOC_SPAN_FULL, x->state);
	x = find_span(spans, sn.spans_count, START(s[2]));
	ASSERT_NE(NULL, x);
	EXPECT_EQ(SPANALLOC_SPAN_OWNED, x->state);
	x = find_span(spans, sn.spans_count, START(lg));
	ASSERT_NE(NULL, x);
	EXPECT_EQ(0, x->spanclass);
	EXPECT_EQ(3, x->npages);
	EXPECT_EQ(SPANALLOC_SPAN_OWNED, x->state);
	for (uint32_t p = 0; p < 3; p++)
		EXPECT_EQ(SPANALLOC_PAGE_SPAN, pages[START(lg) + p]);
	EXPECT_EQ(NULL, find_span(spans, sn.spans_count, START(t[0])));
	EXPECT_EQ(SPANALLOC_PAGE_DIRTY, pages[START(t[0])]);
	EXPECT_EQ(SPANALLOC_PAGE_RELEASED, pages[START(t[1])]);
#undef START

	/* too little room: only what fits is written, the counts say all */
	memset(guard, 0xee, sizeof(guard));
	memset(one, 0xee, sizeof(one));
	ASSERT_EQ(0, snapshot(self->fd, 0, guard, 1, one, 1, &sn));
	EXPECT_EQ(0xee, guard[1]);
	EXPECT_EQ(0xee, one[1].reserved);
	EXPECT_EQ(spans[0].start, one[0].start);
	EXPECT_EQ(st.spans, sn.spans_count);
	EXPECT_EQ(-EINVAL, snapshot(self->fd, 0, NULL, 1, NULL, 0, &sn));
	free(pages);
	free(spans);
}

/* Another process's heap: root may look at it by its id, nobody else. */
TEST_F(heap, snapshot_of_another_heap_is_for_root_only)
{
	struct spanalloc_snapshot_span v[4];
	struct spanalloc_snapshot sn;
	int go[2], ready[2], status;
	uint64_t id;
	pid_t pid, nobody;

	ASSERT_EQ(0, pipe(go));
	ASSERT_EQ(0, pipe(ready));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct spanalloc_info info;
		struct spanalloc_span s;
		void *map;
		size_t len;
		int fd = sa_t_open_mapped(&map, &len);
		char c;

		if (fd < 0 || sa_t_info(fd, &info) || sa_t_get1(fd, SPANALLOC_SPANCLASS(9, 1), &s))
			_exit(2);
		if (write(ready[1], &info.heap_id, sizeof(info.heap_id)) != sizeof(info.heap_id))
			_exit(3);
		/* until the parent has looked */
		_exit(read(go[0], &c, 1) == 1 ? 0 : 4);
	}
	ASSERT_EQ(sizeof(id), read(ready[0], &id, sizeof(id)));
	ASSERT_EQ(0, snapshot(self->fd, id, NULL, 0, v, 4, &sn));
	EXPECT_EQ(1, sn.spans_count);
	EXPECT_EQ(SPANALLOC_SPANCLASS(9, 1), v[0].spanclass);
	EXPECT_EQ(SPANALLOC_SPAN_OWNED, v[0].state);
	nobody = fork();
	ASSERT_LE(0, nobody);
	if (nobody == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(2);
		_exit(snapshot(self->fd, id, NULL, 0, NULL, 0, &sn) == -EPERM ? 0 : 1);
	}
	ASSERT_EQ(nobody, waitpid(nobody, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(1, write(go[1], "x", 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
	/* gone with its process */
	EXPECT_EQ(-ESRCH, snapshot(self->fd, id, NULL, 0, NULL, 0, &sn));
}

static volatile int churn_stop;

/* Exchanges on the heap, so that spantop has a rate to measure. */
static void *churn(void *arg)
{
	int fd = *(int *)arg;
	struct spanalloc_span s;

	while (!churn_stop) {
		if (sa_t_get1(fd, SPANALLOC_SPANCLASS(3, 1), &s) ||
		    sa_t_ret(fd, s.handle, SPANALLOC_RET_PARTIAL))
			break;
	}
	return NULL;
}

TEST_F(heap, spantop_shows_this_heap_its_classes_and_rates)
{
	unsigned int sc = SPANALLOC_SPANCLASS(21, 0);
	char tool[600], cmd[800], want[128], *out, *at, *end;
	struct spanalloc_span s[2];
	pthread_t th;
	double rate;
	FILE *check;

	sa_t_build_path(tool, sizeof(tool), "tools/spantop");
	ASSERT_EQ(0, access(tool, X_OK)) TH_LOG("%s: build it (make selftests)", tool);
	ASSERT_EQ(0, sa_t_get(self->fd, sc, s, 2, NULL));
	churn_stop = 0;
	ASSERT_EQ(0, pthread_create(&th, NULL, churn, &self->fd));
	snprintf(cmd, sizeof(cmd), "%s --once --json -d 0.5", tool);
	out = sa_t_run(cmd);
	churn_stop = 1;
	pthread_join(th, NULL);
	ASSERT_NE(NULL, out);

	/* well-formed JSON, as a JSON reader sees it */
	check = popen("python3 -m json.tool > /dev/null", "w");
	ASSERT_NE(NULL, check);
	fputs(out, check);
	EXPECT_EQ(0, pclose(check)) TH_LOG("%s", out);

	snprintf(want, sizeof(want), "{\"id\": %llu, \"pid\": %d, ",
		 (unsigned long long)self->info.heap_id, getpid());
	at = strstr(out, want);
	ASSERT_NE(NULL, at) TH_LOG("%s", out);
	at = strstr(at, "\"exchanges_per_s\": ");
	ASSERT_NE(NULL, at);
	rate = strtod(at + strlen("\"exchanges_per_s\": "), &end);
	EXPECT_LT(0, rate) TH_LOG("%.40s", at);
	/* the classes of this heap follow it, before the next heap */
	end = strstr(at, "\n  {\"id\"");
	snprintf(want, sizeof(want), "{\"spanclass\": %u, \"size\": %u, \"noscan\": false",
		 sc, sa_t_classes[sc >> 1].size);
	at = strstr(at, want);
	EXPECT_TRUE(at && (!end || at < end)) TH_LOG("%s", out);
	free(out);

	/* the screen: this heap's classes when it is picked */
	snprintf(cmd, sizeof(cmd), "%s --once -H %llu", tool,
		 (unsigned long long)self->info.heap_id);
	out = sa_t_run(cmd);
	ASSERT_NE(NULL, out);
	snprintf(want, sizeof(want), "span classes of heap %llu ",
		 (unsigned long long)self->info.heap_id);
	EXPECT_NE(NULL, strstr(out, want)) TH_LOG("%s", out);
	snprintf(want, sizeof(want), "%6u %6u %-6s", sc, sa_t_classes[sc >> 1].size, "scan");
	EXPECT_NE(NULL, strstr(out, want)) TH_LOG("%s", out);
	free(out);
}

/* Occurrences of needle in s. */
static int occurrences(const char *s, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

TEST_F(heap, spanview_draws_every_span_of_the_heap)
{
	unsigned int sc = SPANALLOC_SPANCLASS(12, 0), got;
	char tool[600], cmd[800], want[256], *svg;
	struct spanalloc_span s[5], lg;
	struct spanalloc_snapshot sn;
	struct spanalloc_stats st;
	FILE *check;

	sa_t_build_path(tool, sizeof(tool), "tools/spanview");
	ASSERT_EQ(0, access(tool, X_OK)) TH_LOG("%s: build it (make selftests)", tool);
	ASSERT_EQ(0, sa_t_get(self->fd, sc, s, 5, &got));
	ASSERT_EQ(5, got);
	ASSERT_EQ(0, sa_t_large(self->fd, 20, SPANALLOC_LARGE_NOSCAN, &lg));
	ASSERT_EQ(0, sa_t_ret(self->fd, s[1].handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_ret(self->fd, s[2].handle, SPANALLOC_RET_FULL));
	ASSERT_EQ(0, snapshot(self->fd, 0, NULL, 0, NULL, 0, &sn));
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));

	/* by pid, as a person would ask; and by the heap's id */
	snprintf(cmd, sizeof(cmd), "%s --pid %d", tool, getpid());
	svg = sa_t_run(cmd);
	ASSERT_NE(NULL, svg);
	check = popen("python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.stdin)'", "w");
	ASSERT_NE(NULL, check);
	fputs(svg, check);
	EXPECT_EQ(0, pclose(check)) TH_LOG("not well-formed XML");
	EXPECT_EQ((int)sn.spans_count, occurrences(svg, "<g class=\"span\">"));
	snprintf(want, sizeof(want), ">heap %llu: %llu arenas, %u spans<",
		 (unsigned long long)self->info.heap_id, (unsigned long long)st.arenas,
		 sn.spans_count);
	EXPECT_NE(NULL, strstr(svg, want)) TH_LOG("%.600s", svg);
	snprintf(want, sizeof(want), ">pages in spans %llu, free %llu (dirty %llu, released %llu, stuck %llu)<",
		 (unsigned long long)st.pages_inuse, (unsigned long long)st.pages_free,
		 (unsigned long long)st.pages_dirty,
		 (unsigned long long)(st.pages_free - st.pages_dirty - st.pages_unreleasable),
		 (unsigned long long)st.pages_unreleasable);
	EXPECT_NE(NULL, strstr(svg, want)) TH_LOG("%.600s", svg);
	snprintf(want, sizeof(want), "<title>large object, 20 pages at %llu, owned</title>",
		 (unsigned long long)((lg.addr - (uintptr_t)self->map) >> SPANALLOC_PAGE_SHIFT));
	EXPECT_NE(NULL, strstr(svg, want));
	snprintf(want, sizeof(want), "<title>class %u B scan, %u page%s at %llu, full</title>",
		 sa_t_classes[sc >> 1].size, sa_t_class_pages(sc),
		 sa_t_class_pages(sc) == 1 ? "" : "s",
		 (unsigned long long)((s[2].addr - (uintptr_t)self->map) >> SPANALLOC_PAGE_SHIFT));
	EXPECT_NE(NULL, strstr(svg, want)) TH_LOG("%s", want);
	free(svg);
	snprintf(cmd, sizeof(cmd), "%s --heap %llu", tool, (unsigned long long)self->info.heap_id);
	svg = sa_t_run(cmd);
	ASSERT_NE(NULL, svg);
	EXPECT_EQ((int)sn.spans_count, occurrences(svg, "<g class=\"span\">"));
	free(svg);
}

/* tracefs, mounted if it is not yet (a bare VM has no mount of it) */
static const char *tracefs(void)
{
	static const char *const dirs[] = { "/sys/kernel/tracing", "/sys/kernel/debug/tracing" };

	for (int i = 0; i < 2; i++) {
		char p[128];

		snprintf(p, sizeof(p), "%s/trace", dirs[i]);
		if (!access(p, F_OK))
			return dirs[i];
	}
	if (!mount("nodev", dirs[0], "tracefs", 0, NULL))
		return dirs[0];
	return NULL;
}

static int trace_write(const char *dir, const char *file, const char *val)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	return sa_t_write_file(p, val);
}

/* Empties the trace buffer: an open for writing with O_TRUNC does. */
static int trace_clear(const char *dir)
{
	char p[256];
	int fd;

	snprintf(p, sizeof(p), "%s/trace", dir);
	fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

static char *trace_read(const char *dir, const char *file)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	return sa_t_slurp(p);
}

/* How many lines of text have every one of the words (NULL-ended). */
static int count_lines(const char *text, const char *const *words)
{
	int n = 0;

	for (const char *l = text; l && *l; ) {
		const char *e = strchr(l, '\n');
		size_t len = e ? (size_t)(e - l) : strlen(l);
		char line[512];
		int all = 1;

		snprintf(line, sizeof(line), "%.*s", (int)len, l);
		for (int i = 0; words[i]; i++)
			all &= strstr(line, words[i]) != NULL;
		n += all;
		l = e ? e + 1 : NULL;
	}
	return n;
}

#define COUNT(text, ...) count_lines(text, (const char *const[]){ __VA_ARGS__, NULL })

TEST_F(heap, perf_lists_every_tracepoint)
{
	static const char *const events[] = {
		"spanalloc_span_get", "spanalloc_span_return", "spanalloc_large_alloc",
		"spanalloc_heap_grow", "spanalloc_release", "spanalloc_pcp_drain",
		"spanalloc_limit",
	};
	char *out;

	if (system("perf --version > /dev/null 2>&1"))
		SKIP(return, "no perf (Debian's linux-perf)");
	if (!tracefs())
		SKIP(return, "no tracefs");
	out = sa_t_run("perf list 'spanalloc:*' 2>&1");
	ASSERT_NE(NULL, out);
	for (unsigned int i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		char want[96];

		snprintf(want, sizeof(want), "spanalloc:%s ", events[i]);
		EXPECT_NE(NULL, strstr(out, want)) TH_LOG("%s", out);
	}
	free(out);
}

TEST_F(heap, tracepoints_report_every_kind_of_event_with_its_fields)
{
	static const char *const events[] = {
		"spanalloc_span_get", "spanalloc_span_return", "spanalloc_large_alloc",
		"spanalloc_heap_grow", "spanalloc_release", "spanalloc_pcp_drain",
		"spanalloc_limit",
	};
	unsigned int sc = SPANALLOC_SPANCLASS(9, 0), sc2 = SPANALLOC_SPANCLASS(11, 1), got;
	unsigned int depth = self->info.pcp_depth, spill = depth / 2 ? depth / 2 : 1;
	struct spanalloc_release rel = { .size = sizeof(rel) };
	struct spanalloc_span s[3], t, many[65], lg, refused;
	struct spanalloc_limit lim = { .size = sizeof(lim) };
	struct spanalloc_stats st;
	char heap[64], w[1][128], *text;
	const char *dir = tracefs();

	if (!dir)
		SKIP(return, "no tracefs");
	text = trace_read(dir, "available_events");
	ASSERT_NE(NULL, text);
	for (unsigned int i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		char want[96], *fmt;

		snprintf(want, sizeof(want), "spanalloc:%s\n", events[i]);
		EXPECT_NE(NULL, strstr(text, want)) TH_LOG("%s not in available_events", events[i]);
		snprintf(want, sizeof(want), "events/spanalloc/%s/format", events[i]);
		fmt = trace_read(dir, want);
		ASSERT_NE(NULL, fmt);
		EXPECT_NE(NULL, strstr(fmt, "field:u64 heap;")) TH_LOG("%s", fmt);
		free(fmt);
	}
	free(text);

	/* a fresh heap (the fixture's grew already) whose every event is seen */
	munmap(self->map, self->len);
	close(self->fd);
	ASSERT_EQ(0, trace_write(dir, "tracing_on", "1"));
	ASSERT_EQ(0, trace_clear(dir));
	ASSERT_EQ(0, trace_write(dir, "events/spanalloc/enable", "1"));
	self->fd = sa_t_open_mapped(&self->map, &self->len);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, sa_t_info(self->fd, &self->info));
	ASSERT_EQ(0, sa_t_pin(0));

	ASSERT_EQ(0, sa_t_get(self->fd, sc, s, 3, &got));
	ASSERT_EQ(3, got);
	ASSERT_EQ(0, sa_t_ret(self->fd, s[0].handle, SPANALLOC_RET_PARTIAL));
	ASSERT_EQ(0, sa_t_get1(self->fd, sc, &t));
	ASSERT_EQ(0, sa_t_ret(self->fd, s[1].handle, SPANALLOC_RET_FULL));
	ASSERT_EQ(0, sa_t_ret(self->fd, s[1].handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_large(self->fd, 5, SPANALLOC_LARGE_NOSCAN, &lg));
	ASSERT_EQ(0, sa_t_ret(self->fd, lg.handle, SPANALLOC_RET_EMPTY));
	/* one more than a stack holds, given back on one CPU: a spill */
	if (depth) {
		ASSERT_GT(65, depth);
		ASSERT_EQ(0, sa_t_get(self->fd, sc2, many, depth + 1, &got));
		ASSERT_EQ(depth + 1, got);
		for (unsigned int i = 0; i <= depth; i++)
			ASSERT_EQ(0, sa_t_ret(self->fd, many[i].handle, SPANALLOC_RET_PARTIAL));
	}
	ASSERT_EQ(0, sa_t_stats(self->fd, &st, NULL));
	lim.limit = (st.pages_inuse + 1) << SPANALLOC_PAGE_SHIFT;
	ASSERT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_SET_LIMIT, &lim));
	EXPECT_EQ(-ENOMEM, sa_t_large(self->fd, 4, 0, &refused));
	/* pages the spans above did not take again, for the release */
	ASSERT_EQ(0, sa_t_ret(self->fd, s[2].handle, SPANALLOC_RET_EMPTY));
	ASSERT_EQ(0, sa_t_ioctl(self->fd, SPANALLOC_IOC_RELEASE, &rel));
	sa_t_unpin();
	ASSERT_EQ(0, trace_write(dir, "events/spanalloc/enable", "0"));

	text = trace_read(dir, "trace");
	ASSERT_NE(NULL, text);
	snprintf(heap, sizeof(heap), "heap=%llu ", (unsigned long long)self->info.heap_id);
	snprintf(w[0], sizeof(w[0]), "spanclass=%u want=3 got=3 pcp=0 central=0 fresh=3 err=0", sc);
	EXPECT_EQ(1, COUNT(text, "spanalloc_span_get:", heap, w[0])) TH_LOG("%s", text);
	snprintf(w[0], sizeof(w[0]), "spanclass=%u want=1 got=1 pcp=%u central=%u fresh=0 err=0",
		 sc, depth ? 1 : 0, depth ? 0 : 1);
	EXPECT_EQ(1, COUNT(text, "spanalloc_span_get:", heap, w[0]));
	snprintf(w[0], sizeof(w[0]), "handle=%#llx spanclass=%u npages=%u op=partial from=owned",
		 (unsigned long long)s[0].handle, sc, sa_t_class_pages(sc));
	EXPECT_EQ(1, COUNT(text, "spanalloc_span_return:", heap, w[0]));
	snprintf(w[0], sizeof(w[0]), "handle=%#llx spanclass=%u npages=%u op=full from=owned",
		 (unsigned long long)s[1].handle, sc, sa_t_class_pages(sc));
	EXPECT_EQ(1, COUNT(text, "spanalloc_span_return:", heap, w[0]));
	snprintf(w[0], sizeof(w[0]), "handle=%#llx spanclass=%u npages=%u op=empty from=full",
		 (unsigned long long)s[1].handle, sc, sa_t_class_pages(sc));
	EXPECT_EQ(1, COUNT(text, "spanalloc_span_return:", heap, w[0]));
	snprintf(w[0], sizeof(w[0]), "handle=%#llx npages=5 noscan=1", (unsigned long long)lg.handle);
	EXPECT_EQ(1, COUNT(text, "spanalloc_large_alloc:", heap, w[0]));
	snprintf(w[0], sizeof(w[0]), "handle=%#llx spanclass=1 npages=5 op=empty from=owned",
		 (unsigned long long)lg.handle);
	EXPECT_EQ(1, COUNT(text, "spanalloc_span_return:", heap, w[0]));
	snprintf(w[0], sizeof(w[0]), "arena=0 active_pages=%u",
		 (unsigned int)(SPANALLOC_ARENA_SIZE >> SPANALLOC_PAGE_SHIFT));
	EXPECT_EQ(1, COUNT(text, "spanalloc_heap_grow:", heap, w[0]));
	snprintf(w[0], sizeof(w[0]), "npages=4 inuse=%llu limit=%llu",
		 (unsigned long long)st.pages_inuse, (unsigned long long)st.pages_inuse + 1);
	EXPECT_EQ(1, COUNT(text, "spanalloc_limit:", heap, w[0]));
	snprintf(w[0], sizeof(w[0]), "why=ioctl pages=%llu ",
		 (unsigned long long)(rel.released >> SPANALLOC_PAGE_SHIFT));
	EXPECT_EQ(1, COUNT(text, "spanalloc_release:", heap, w[0], "ret=0"));
	EXPECT_LT(0, rel.released);
	if (depth) {
		snprintf(w[0], sizeof(w[0]), "spanclass=%u spans=%u spill", sc2, spill);
		EXPECT_EQ(1, COUNT(text, "spanalloc_pcp_drain:", heap, w[0]));
	}
	/*
	 * Every event of the heap is one of those: 11, and with the per-CPU
	 * layer the spill's get, depth + 1 returns and the spill itself.
	 */
	EXPECT_EQ(depth ? 14 + depth : 11, COUNT(text, "spanalloc_", heap));
	free(text);
}

TEST_HARNESS_MAIN
