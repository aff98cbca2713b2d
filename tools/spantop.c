// SPDX-License-Identifier: MIT
/*
 * spantop: the spanalloc heaps of the system, live, as slabtop shows the
 * slab caches. It reads /proc/spanallocinfo (root only) every interval and
 * shows each heap (its process, memory in use, free, dirty and released,
 * span exchanges and page releases per second, the per-CPU cache's hit
 * ratio) sorted by a column, then the span classes of the heap on top.
 *
 *   spantop [-d SECONDS] [-s KEY] [-H ID]      live; keys: q quits, and
 *                                              u f d r s e p sort
 *   spantop --once [--json] [-d SECONDS] ...   one snapshot for scripts;
 *                                              rates over -d (none if 0)
 *
 * Sort keys: inuse (default), mapped, free, dirty, released, spans, exch
 * (exchanges/s), rel (pages released/s), pid, id. --file reads another
 * file of the same format (tests, saved snapshots).
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "spanallocinfo.h"

/* Rates of cur's heaps over the time since prev (same heap: same id). */
static void snap_rates(struct sai_snap *cur, const struct sai_snap *prev)
{
	double dt = cur->t - prev->t;

	for (int i = 0; i < cur->n; i++) {
		struct sai_heap *h = &cur->h[i];

		for (int j = 0; j < prev->n; j++) {
			const struct sai_heap *p = &prev->h[j];
			unsigned long long got;

			if (p->id != h->id || dt <= 0)
				continue;
			h->have_rates = true;
			h->exch_s = (h->ev[E_EXCH] - p->ev[E_EXCH]) / dt;
			h->rel_s = (h->ev[E_RELPAGES] - p->ev[E_RELPAGES]) / dt;
			got = h->ev[E_GOT] - p->ev[E_GOT];
			h->hit = got ? (double)(h->ev[E_PCP] - p->ev[E_PCP]) / got : -1;
		}
	}
}

static const char *sort_key = "inuse";

static double sort_val(const struct sai_heap *h)
{
	static const struct { const char *name; int kib; } kibs[] = {
		{ "inuse", K_INUSE }, { "mapped", K_MAPPED }, { "free", K_FREE },
		{ "dirty", K_DIRTY }, { "released", K_RELEASED },
	};

	for (size_t i = 0; i < sizeof(kibs) / sizeof(kibs[0]); i++)
		if (!strcmp(sort_key, kibs[i].name))
			return h->kib[kibs[i].kib];
	if (!strcmp(sort_key, "spans"))
		return h->spans;
	if (!strcmp(sort_key, "exch"))
		return h->exch_s;
	if (!strcmp(sort_key, "rel"))
		return h->rel_s;
	if (!strcmp(sort_key, "pid"))
		return -h->pid;
	return -(double)h->id;
}

static bool sort_key_valid(const char *k)
{
	static const char *const keys[] = {
		"inuse", "mapped", "free", "dirty", "released", "spans", "exch", "rel",
		"pid", "id",
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strcmp(k, keys[i]))
			return true;
	return false;
}

/* Biggest first; ties by id, so the order is stable from one screen to the next. */
static int heap_cmp(const void *a, const void *b)
{
	const struct sai_heap *x = a, *y = b;
	double vx = sort_val(x), vy = sort_val(y);

	if (vx != vy)
		return vx < vy ? 1 : -1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* KiB as a short human size: 512K, 12.5M, 3.0G. */
static const char *human(unsigned long long kib, char *buf)
{
	if (kib < 1024)
		snprintf(buf, 16, "%lluK", kib);
	else if (kib < 1024 * 1024)
		snprintf(buf, 16, "%.1fM", kib / 1024.0);
	else
		snprintf(buf, 16, "%.1fG", kib / (1024.0 * 1024));
	return buf;
}

static void rate(char *buf, bool have, double v)
{
	if (have)
		snprintf(buf, 16, "%.0f", v);
	else
		snprintf(buf, 16, "-");
}

static void print_text(FILE *o, struct sai_snap *s, unsigned long long pick, int rows)
{
	unsigned long long tot[NKIB] = { 0 };
	double exch = 0, rel = 0;
	char b[8][16], stamp[32];
	const struct sai_heap *top = NULL;
	time_t t = time(NULL);
	bool rates = false;

	for (int i = 0; i < s->n; i++) {
		for (int k = 0; k < NKIB; k++)
			tot[k] += s->h[i].kib[k];
		exch += s->h[i].exch_s;
		rel += s->h[i].rel_s;
		rates |= s->h[i].have_rates;
	}
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", localtime(&t));
	fprintf(o, "spantop - %s  heaps: %d  in use: %s  free: %s (dirty %s, released %s)\n",
		stamp, s->n, human(tot[K_INUSE], b[0]), human(tot[K_FREE], b[1]),
		human(tot[K_DIRTY], b[2]), human(tot[K_RELEASED], b[3]));
	rate(b[0], rates, exch);
	rate(b[1], rates, rel);
	fprintf(o, "mapped: %s  set up: %s  exchanges/s: %s  pages released/s: %s  sorted by %s\n\n",
		human(tot[K_MAPPED], b[2]), human(tot[K_ACTIVE], b[3]), b[0], b[1], sort_key);
	fprintf(o, "%6s %7s %-15s %8s %8s %8s %8s %8s %6s %5s %8s %7s %6s\n", "ID", "PID",
		"COMMAND", "IN USE", "FREE", "DIRTY", "RELEASED", "LIMIT", "SPANS", "LARGE",
		"EXCH/S", "REL/S", "PCPHIT");
	for (int i = 0; i < s->n; i++) {
		const struct sai_heap *h = &s->h[i];
		char hit[16];

		if (pick ? h->id == pick : !top)
			top = h;
		if (rows >= 0 && i >= rows)
			continue;
		rate(b[5], h->have_rates, h->exch_s);
		rate(b[6], h->have_rates, h->rel_s);
		if (h->have_rates && h->hit >= 0)
			snprintf(hit, sizeof(hit), "%.0f%%", 100 * h->hit);
		else
			snprintf(hit, sizeof(hit), "-");
		fprintf(o, "%6llu %7d %-15.15s %8s %8s %8s %8s %8s %6llu %5llu %8s %7s %6s\n",
			h->id, h->pid, h->comm, human(h->kib[K_INUSE], b[0]),
			human(h->kib[K_FREE], b[1]), human(h->kib[K_DIRTY], b[2]),
			human(h->kib[K_RELEASED], b[3]), human(h->kib[K_LIMIT], b[4]),
			h->spans, h->large, b[5], b[6], hit);
	}
	if (!top)
		return;
	fprintf(o, "\nspan classes of heap %llu (%s, pid %d):\n", top->id, top->comm, top->pid);
	fprintf(o, "%6s %6s %-6s %8s %5s %7s %7s %7s %7s %9s\n", "CLASS", "SIZE", "KIND",
		"OBJ/SPAN", "PAGES", "OWNED", "CACHED", "PARTIAL", "FULL", "MEMORY");
	for (int i = 0; i < top->ncls; i++) {
		const struct sai_class *c = &top->cls[i];
		unsigned long long spans = (unsigned long long)c->owned + c->cached +
					   c->partial + c->full;

		fprintf(o, "%6u %6u %-6s %8u %5u %7u %7u %7u %7u %9s\n", c->sc, c->size,
			c->noscan ? "noscan" : "scan", c->objs, c->pages, c->owned, c->cached,
			c->partial, c->full, human(spans * c->pages * 8, b[0]));
	}
}

static void json_rate(FILE *o, const char *name, bool have, double v, const char *sep)
{
	if (have && v >= 0)
		fprintf(o, "\"%s\": %.3f%s", name, v, sep);
	else
		fprintf(o, "\"%s\": null%s", name, sep);
}

/* The comm is one word of printable characters: only " and \ need escaping. */
static void json_string(FILE *o, const char *s)
{
	fputc('"', o);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', o);
		fputc(*s, o);
	}
	fputc('"', o);
}

static void print_json(FILE *o, const struct sai_snap *s)
{
	fprintf(o, "{\"version\": \"1.0\", \"heaps\": [");
	for (int i = 0; i < s->n; i++) {
		const struct sai_heap *h = &s->h[i];

		fprintf(o, "%s\n  {\"id\": %llu, \"pid\": %d, \"comm\": ", i ? "," : "", h->id,
			h->pid);
		json_string(o, h->comm);
		for (int k = 0; k < NKIB; k++)
			fprintf(o, ", \"%s_kib\": %llu", sai_kib_names[k], h->kib[k]);
		fprintf(o, ", \"spans\": %llu, \"large_spans\": %llu", h->spans, h->large);
		for (int k = 0; k < NEV; k++)
			fprintf(o, ", \"%s\": %llu", sai_ev_names[k], h->ev[k]);
		fprintf(o, ",\n   \"rates\": {");
		json_rate(o, "exchanges_per_s", h->have_rates, h->exch_s, ", ");
		json_rate(o, "pages_released_per_s", h->have_rates, h->rel_s, ", ");
		json_rate(o, "pcp_hit_ratio", h->have_rates, h->hit, "");
		fprintf(o, "},\n   \"classes\": [");
		for (int j = 0; j < h->ncls; j++) {
			const struct sai_class *c = &h->cls[j];

			fprintf(o, "%s\n    {\"spanclass\": %u, \"size\": %u, \"noscan\": %s, \"objects_per_span\": %u, \"pages_per_span\": %u, \"owned\": %u, \"cached\": %u, \"partial\": %u, \"full\": %u}",
				j ? "," : "", c->sc, c->size, c->noscan ? "true" : "false",
				c->objs, c->pages, c->owned, c->cached, c->partial, c->full);
		}
		fprintf(o, "]}");
	}
	fprintf(o, "\n]}\n");
}

static struct termios saved_tty;
static bool tty_raw;

static void tty_restore(void)
{
	if (tty_raw)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	tty_raw = false;
	fputs("\033[?25h", stdout);
}

static void on_signal(int sig)
{
	tty_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static const char *key_sort(int ch)
{
	switch (ch) {
	case 'u': return "inuse";
	case 'f': return "free";
	case 'd': return "dirty";
	case 'r': return "released";
	case 's': return "spans";
	case 'e': return "exch";
	case 'p': return "pid";
	default: return NULL;
	}
}

static void usage(FILE *o)
{
	fprintf(o, "usage: spantop [--once [--json]] [-d SECONDS] [-s KEY] [-H HEAP_ID] [--file PATH]\n"
		"  live unless --once; keys: q quit, u f d r s e p sort by in use, free, dirty,\n"
		"  released, spans, exchanges/s, pid\n"
		"  KEY: inuse mapped free dirty released spans exch rel pid id\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "once", no_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "delay", required_argument, NULL, 'd' },
		{ "sort", required_argument, NULL, 's' },
		{ "heap", required_argument, NULL, 'H' },
		{ "file", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = SPANALLOCINFO_PATH;
	bool once = false, json = false, delay_set = false;
	unsigned long long pick = 0;
	struct sai_snap prev = { 0 }, cur = { 0 };
	double delay = 1;
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "d:s:H:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': once = true; break;
		case 'j': json = true; break;
		case 'd':
			delay = strtod(optarg, &end);
			if (*end || delay < 0 || delay > 3600) {
				fprintf(stderr, "spantop: -d wants seconds from 0 to 3600\n");
				return 2;
			}
			delay_set = true;
			break;
		case 's':
			if (!sort_key_valid(optarg)) {
				fprintf(stderr, "spantop: no sort key %s\n", optarg);
				usage(stderr);
				return 2;
			}
			sort_key = optarg;
			break;
		case 'H': pick = strtoull(optarg, NULL, 10); break;
		case 'f': path = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc || (json && !once)) {
		usage(stderr);
		return 2;
	}
	if (once) {
		/* rates only when asked for an interval */
		if (delay_set && delay > 0) {
			if (sai_read(&prev, path, "spantop"))
				return 1;
			usleep((useconds_t)(delay * 1e6));
		}
		if (sai_read(&cur, path, "spantop"))
			return 1;
		if (prev.t)
			snap_rates(&cur, &prev);
		qsort(cur.h, cur.n, sizeof(*cur.h), heap_cmp);
		if (json)
			print_json(stdout, &cur);
		else
			print_text(stdout, &cur, pick, -1);
		return 0;
	}

	if (isatty(STDIN_FILENO) && !tcgetattr(STDIN_FILENO, &saved_tty)) {
		struct termios raw = saved_tty;

		raw.c_lflag &= ~(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
		tty_raw = true;
	}
	atexit(tty_restore);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	fputs("\033[?25l", stdout);
	for (;;) {
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		const char *k;
		char ch;

		if (sai_read(&cur, path, "spantop"))
			return 1;
		if (prev.t)
			snap_rates(&cur, &prev);
		qsort(cur.h, cur.n, sizeof(*cur.h), heap_cmp);
		/* home, clear: one screen, redrawn */
		fputs("\033[H\033[2J", stdout);
		print_text(stdout, &cur, pick, 20);
		fflush(stdout);
		sai_free(&prev);
		prev = cur;
		cur = (struct sai_snap){ 0 };
		if (poll(&pfd, tty_raw ? 1 : 0, (int)(delay * 1000)) > 0 &&
		    read(STDIN_FILENO, &ch, 1) == 1) {
			if (ch == 'q')
				break;
			k = key_sort(ch);
			if (k)
				sort_key = k;
		}
	}
	return 0;
}
