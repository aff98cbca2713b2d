// SPDX-License-Identifier: MIT
/* spanallocinfo: see spanallocinfo.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "spanallocinfo.h"

const char *const sai_kib_names[NKIB] = {
	"mapped", "active", "inuse", "free", "dirty", "released", "unreleasable", "limit",
};
const char *const sai_ev_names[NEV] = {
	"exchanges", "spans_got", "spans_returned", "pcp_hits", "central_hits",
	"heap_spans", "pcp_flushes", "large_allocs", "enomem", "pages_released",
};

static double sai_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

void sai_free(struct sai_snap *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->h[i].cls);
	free(s->h);
	s->h = NULL;
	s->n = 0;
}

static void *sai_grow(void *p, int n, size_t size)
{
	/* doubling at powers of two */
	if (n && (n & (n - 1)))
		return p;
	p = realloc(p, (n ? 2 * n : 1) * size);
	if (!p) {
		perror("spanallocinfo");
		exit(1);
	}
	return p;
}

/*
 * Parses the file's text into s. Lines it does not know are skipped, and
 * fields added at the end of a known line are ignored (the format's rule).
 * Returns 0, or -1 if the first line is not a version 1 header.
 */
int sai_parse(struct sai_snap *s, const char *text)
{
	const char *l = text;

	s->h = NULL;
	s->n = 0;
	if (strncmp(l, "spanallocinfo - version: 1.", 27))
		return -1;
	for (; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		if (!strncmp(l, "heap ", 5)) {
			struct sai_heap h = { 0 };

			if (sscanf(l, "heap %llu %d %31s : kib %llu %llu %llu %llu %llu %llu %llu %llu : spans %llu %llu : events %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
				   &h.id, &h.pid, h.comm, &h.kib[0], &h.kib[1], &h.kib[2],
				   &h.kib[3], &h.kib[4], &h.kib[5], &h.kib[6], &h.kib[7],
				   &h.spans, &h.large, &h.ev[0], &h.ev[1], &h.ev[2],
				   &h.ev[3], &h.ev[4], &h.ev[5], &h.ev[6], &h.ev[7],
				   &h.ev[8], &h.ev[9]) != 23)
				continue;
			s->h = sai_grow(s->h, s->n, sizeof(*s->h));
			s->h[s->n++] = h;
		} else if (!strncmp(l, "class ", 6) && s->n) {
			struct sai_heap *h = &s->h[s->n - 1];
			unsigned long long id;
			struct sai_class c;

			if (sscanf(l, "class %llu %u %u %u %u %u : spans %u %u %u %u", &id,
				   &c.sc, &c.size, &c.noscan, &c.objs, &c.pages, &c.owned,
				   &c.cached, &c.partial, &c.full) != 10 || id != h->id)
				continue;
			h->cls = sai_grow(h->cls, h->ncls, sizeof(*h->cls));
			h->cls[h->ncls++] = c;
		}
	}
	return 0;
}

int sai_read(struct sai_snap *s, const char *path, const char *prog)
{
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	FILE *f = fopen(path, "r");
	size_t n;
	int r;

	if (!f || !buf) {
		fprintf(stderr, "%s: %s: %s%s\n", prog, path, strerror(errno),
			errno == EACCES ? " (it is root's)" :
			errno == ENOENT ? " (is spanalloc.ko loaded?)" : "");
		exit(1);
	}
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 4096 && !(buf = realloc(buf, cap *= 2))) {
			perror("spanallocinfo");
			exit(1);
		}
	}
	fclose(f);
	buf[len] = 0;
	s->t = sai_now();
	r = sai_parse(s, buf);
	free(buf);
	if (r)
		fprintf(stderr, "%s: %s: not a version 1 spanallocinfo file\n", prog, path);
	return r;
}

