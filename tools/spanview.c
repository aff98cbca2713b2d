// SPDX-License-Identifier: MIT
/*
 * spanview: a picture of one spanalloc heap, as SVG. Each arena is a grid
 * of its 8192 pages (128 to a row); each span is drawn over its pages,
 * coloured by size class (a hue per class, blue-grey for large objects)
 * and shaded by its state (owned by the process, in a per-CPU cache, on a
 * partial or a full list); free pages show whether they may be resident
 * (dirty), were given back (released) or could not be (stuck). Hovering
 * over a span names it. The layout comes from SPANALLOC_IOC_SNAPSHOT, one
 * window of pages at a time, so a heap that runs meanwhile may show a
 * span that moved as it was between two windows.
 *
 *   spanview --pid PID | --heap ID [-o FILE] [--arenas N]
 *
 * Another process's heap is root's to look at (as /proc/spanallocinfo,
 * which --pid reads to find the heap of that process). Without -o the SVG
 * goes to standard output.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/spanalloc.h>
#include "spanallocinfo.h"
#define SPANALLOC_CLASS_TABLE sv_classes
#include <spanalloc-classtable.h>

#define COLS		128			/* pages per row of an arena */
#define CELL		5			/* pixels per page */
#define ARENA_PAGES	(SPANALLOC_ARENA_SIZE >> SPANALLOC_PAGE_SHIFT)
#define ROWS		(ARENA_PAGES / COLS)
#define MARGIN		20
#define TITLE		18

static const char *const page_fill[] = {
	[SPANALLOC_PAGE_SPAN] = "#ffffff",
	[SPANALLOC_PAGE_DIRTY] = "#f3c98b",
	[SPANALLOC_PAGE_RELEASED] = "#e6e6e6",
	[SPANALLOC_PAGE_STUCK] = "#d9534f",
};
static const char *const page_name[] = {
	[SPANALLOC_PAGE_SPAN] = "in a span",
	[SPANALLOC_PAGE_DIRTY] = "free, dirty",
	[SPANALLOC_PAGE_RELEASED] = "free, released",
	[SPANALLOC_PAGE_STUCK] = "free, stuck",
};
static const char *const span_state[] = {
	[SPANALLOC_SPAN_OWNED] = "owned", [SPANALLOC_SPAN_CACHED] = "cached",
	[SPANALLOC_SPAN_PARTIAL] = "partial", [SPANALLOC_SPAN_FULL] = "full",
	[SPANALLOC_SPAN_MOVING] = "moving",
};

/* A span's colour: hue by class, lightness by state. */
static void span_colour(const struct spanalloc_snapshot_span *s, char *out, size_t n)
{
	static const int light[] = {
		[SPANALLOC_SPAN_OWNED] = 50, [SPANALLOC_SPAN_CACHED] = 78,
		[SPANALLOC_SPAN_PARTIAL] = 68, [SPANALLOC_SPAN_FULL] = 32,
		[SPANALLOC_SPAN_MOVING] = 60,
	};
	unsigned int cls = s->spanclass >> 1, st = s->state <= SPANALLOC_SPAN_MOVING ? s->state : 0;

	if (cls == 0)
		snprintf(out, n, "hsl(215,30%%,%d%%)", light[st] ? light[st] : 50);
	else
		/* neighbouring classes far apart on the wheel: the golden angle */
		snprintf(out, n, "hsl(%u,%d%%,%d%%)", (cls * 137u) % 360,
			 st == SPANALLOC_SPAN_MOVING ? 0 : 70, light[st] ? light[st] : 50);
}

static void rect(FILE *o, double x, double y, double w, double h, const char *fill,
		 const char *cls)
{
	fprintf(o, "<rect%s%s%s x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"%s\"/>\n",
		cls ? " class=\"" : "", cls ? cls : "", cls ? "\"" : "", x, y, w, h, fill);
}

/* The heap of pid, from /proc/spanallocinfo (its first, if it has more). */
static unsigned long long heap_of_pid(int pid)
{
	struct sai_snap s;
	unsigned long long id = 0;

	if (sai_read(&s, SPANALLOCINFO_PATH, "spanview"))
		exit(1);
	for (int i = 0; i < s.n && !id; i++)
		if (s.h[i].pid == pid)
			id = s.h[i].id;
	sai_free(&s);
	if (!id) {
		fprintf(stderr, "spanview: process %d has no spanalloc heap\n", pid);
		exit(1);
	}
	return id;
}

static void usage(FILE *o)
{
	fprintf(o, "usage: spanview --pid PID | --heap ID [-o FILE] [--arenas N]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "heap", required_argument, NULL, 'H' },
		{ "output", required_argument, NULL, 'o' },
		{ "arenas", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct spanalloc_snapshot_span *spans = NULL;
	struct spanalloc_snapshot sn;
	unsigned long long id = 0;
	unsigned int max_arenas = 16, arenas;
	uint64_t count[SPANALLOC_PAGE_STUCK + 1] = { 0 };
	const char *out = NULL;
	uint8_t *pages = NULL;
	double width, height;
	FILE *o = stdout;
	int c, fd, pid = 0;

	while ((c = getopt_long(argc, argv, "p:H:o:a:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': pid = atoi(optarg); break;
		case 'H': id = strtoull(optarg, NULL, 10); break;
		case 'o': out = optarg; break;
		case 'a': max_arenas = (unsigned int)atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc || (!pid && !id) || (pid && id) || !max_arenas) {
		usage(stderr);
		return 2;
	}
	if (pid)
		id = heap_of_pid(pid);
	/* a file of our own to ask through; its heap is never mapped */
	fd = open("/dev/spanalloc", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "spanview: /dev/spanalloc: %s\n", strerror(errno));
		return 1;
	}
	/* the counts, then the layout; again if it grew in between */
	for (int tries = 0; ; tries++) {
		uint32_t np, ns;

		sn = (struct spanalloc_snapshot){
			.size = sizeof(sn), .heap_id = id,
			.pages_ptr = (uintptr_t)pages, .spans_ptr = (uintptr_t)spans,
			.pages_count = pages ? sn.pages_count : 0,
			.spans_count = spans ? sn.spans_count : 0,
		};
		np = sn.pages_count;
		ns = sn.spans_count;
		if (ioctl(fd, SPANALLOC_IOC_SNAPSHOT, &sn)) {
			fprintf(stderr, "spanview: heap %llu: %s%s\n", id, strerror(errno),
				errno == EPERM ? " (another process's heap is root's to look at)" :
				errno == ESRCH ? " (no such heap)" : "");
			return 1;
		}
		if (pages && sn.pages_count <= np && sn.spans_count <= ns)
			break;
		if (tries > 8) {
			fprintf(stderr, "spanview: heap %llu changes too fast to be drawn\n", id);
			return 1;
		}
		free(pages);
		free(spans);
		/* room for growth while we ask again */
		sn.pages_count += ARENA_PAGES;
		sn.spans_count += sn.spans_count / 4 + 64;
		pages = calloc(sn.pages_count, 1);
		spans = calloc(sn.spans_count, sizeof(*spans));
		if (!pages || !spans) {
			perror("spanview");
			return 1;
		}
	}
	close(fd);
	for (uint32_t p = 0; p < sn.pages_count; p++)
		if (pages[p] <= SPANALLOC_PAGE_STUCK)
			count[pages[p]]++;

	if (out && !(o = fopen(out, "w"))) {
		fprintf(stderr, "spanview: %s: %s\n", out, strerror(errno));
		return 1;
	}
	arenas = sn.arenas < max_arenas ? sn.arenas : max_arenas;
	width = 2 * MARGIN + COLS * CELL;
	height = 2 * MARGIN + 2 * TITLE + arenas * (ROWS * CELL + TITLE) + 90;
	fprintf(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
		"font-family=\"sans-serif\" font-size=\"11\">\n", width, height);
	fprintf(o, "<title>spanalloc heap %llu</title>\n", id);
	rect(o, 0, 0, width, height, "#ffffff", NULL);
	fprintf(o, "<text x=\"%d\" y=\"%d\" font-size=\"13\">heap %llu: %u arenas, %u spans%s</text>\n",
		MARGIN, MARGIN - 2, id, sn.arenas, sn.spans_count,
		arenas < sn.arenas ? " (the first arenas drawn)" : "");
	fprintf(o, "<text x=\"%d\" y=\"%d\">pages in spans %llu, free %llu (dirty %llu, released %llu, stuck %llu)</text>\n",
		MARGIN, MARGIN + 14, (unsigned long long)count[SPANALLOC_PAGE_SPAN],
		(unsigned long long)(count[SPANALLOC_PAGE_DIRTY] + count[SPANALLOC_PAGE_RELEASED] +
				     count[SPANALLOC_PAGE_STUCK]),
		(unsigned long long)count[SPANALLOC_PAGE_DIRTY],
		(unsigned long long)count[SPANALLOC_PAGE_RELEASED],
		(unsigned long long)count[SPANALLOC_PAGE_STUCK]);

	for (unsigned int a = 0; a < arenas; a++) {
		double top = MARGIN + 2 * TITLE + a * (ROWS * CELL + TITLE);

		fprintf(o, "<text x=\"%d\" y=\"%g\">arena %u</text>\n", MARGIN, top - 4, a);
		/* free pages, a run of one state per rect */
		for (uint32_t r = 0; r < ROWS; r++) {
			uint32_t row = a * ARENA_PAGES + r * COLS;

			for (uint32_t x = 0; x < COLS; ) {
				uint8_t st = pages[row + x];
				uint32_t e = x;

				while (e < COLS && pages[row + e] == st)
					e++;
				if (st != SPANALLOC_PAGE_SPAN && st <= SPANALLOC_PAGE_STUCK && st)
					rect(o, MARGIN + x * CELL, top + r * CELL, (e - x) * CELL, CELL,
					     page_fill[st], NULL);
				x = e;
			}
		}
		/* spans over their pages, a rect per row they cross */
		for (uint32_t i = 0; i < sn.spans_count; i++) {
			const struct spanalloc_snapshot_span *s = &spans[i];
			unsigned int cls = s->spanclass >> 1;
			char fill[48], what[48];

			if (s->start / ARENA_PAGES != a)
				continue;
			span_colour(s, fill, sizeof(fill));
			if (cls)
				snprintf(what, sizeof(what), "class %u B %s", sv_classes[cls].size,
					 s->spanclass & 1 ? "noscan" : "scan");
			else
				snprintf(what, sizeof(what), "large object");
			fprintf(o, "<g class=\"span\"><title>%s, %u page%s at %u, %s</title>\n",
				what, s->npages, s->npages == 1 ? "" : "s", s->start,
				s->state <= SPANALLOC_SPAN_MOVING && s->state ? span_state[s->state] : "?");
			for (uint32_t p = s->start; p < s->start + s->npages; ) {
				uint32_t in = p % ARENA_PAGES, x = in % COLS, r = in / COLS;
				uint32_t n = COLS - x < s->start + s->npages - p ?
					     COLS - x : s->start + s->npages - p;

				if (p / ARENA_PAGES != a)
					break;
				rect(o, MARGIN + x * CELL + 0.5, top + r * CELL + 0.5, n * CELL - 1,
				     CELL - 1, fill, NULL);
				p += n;
			}
			fprintf(o, "</g>\n");
		}
	}

	/* the legend */
	{
		double y = height - 80;
		int k = 0;

		for (int st = SPANALLOC_PAGE_DIRTY; st <= SPANALLOC_PAGE_STUCK; st++, k++) {
			rect(o, MARGIN + k * 130, y, 10, 10, page_fill[st], NULL);
			fprintf(o, "<text x=\"%d\" y=\"%g\">%s</text>\n", MARGIN + k * 130 + 14,
				y + 9, page_name[st]);
		}
		y += 22;
		for (int st = SPANALLOC_SPAN_OWNED; st <= SPANALLOC_SPAN_FULL; st++) {
			struct spanalloc_snapshot_span ex = { .spanclass = 2 * 5, .state = (uint8_t)st };
			char fill[48];

			span_colour(&ex, fill, sizeof(fill));
			rect(o, MARGIN + (st - 1) * 130, y, 10, 10, fill, NULL);
			fprintf(o, "<text x=\"%d\" y=\"%g\">span %s</text>\n",
				MARGIN + (st - 1) * 130 + 14, y + 9, span_state[st]);
		}
		y += 22;
		fprintf(o, "<text x=\"%d\" y=\"%g\">hue: size class (hover over a span for it); blue-grey: large objects</text>\n",
			MARGIN, y + 9);
	}
	fprintf(o, "</svg>\n");
	if (o != stdout && fclose(o)) {
		fprintf(stderr, "spanview: %s: %s\n", out, strerror(errno));
		return 1;
	}
	free(pages);
	free(spans);
	return 0;
}
