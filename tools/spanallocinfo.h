/* SPDX-License-Identifier: MIT */
/*
 * spanallocinfo: reading /proc/spanallocinfo (kmod/info.c has the format)
 * for the tools that show it, spantop and spanview. Lines it does not
 * know are skipped and fields added at the end of a known line ignored,
 * as the format asks of readers.
 */
#ifndef SPANALLOCINFO_H
#define SPANALLOCINFO_H

#include <stdbool.h>

#define SPANALLOCINFO_PATH "/proc/spanallocinfo"

/* the heap line's memory fields (KiB) and counters, in the file's order */
enum { K_MAPPED, K_ACTIVE, K_INUSE, K_FREE, K_DIRTY, K_RELEASED, K_STUCK, K_LIMIT, NKIB };
enum { E_EXCH, E_GOT, E_RET, E_PCP, E_CENTRAL, E_FRESH, E_FLUSH, E_LARGE, E_ENOMEM, E_RELPAGES, NEV };

extern const char *const sai_kib_names[NKIB];
extern const char *const sai_ev_names[NEV];

struct sai_class {
	unsigned int sc, size, noscan, objs, pages;
	unsigned int owned, cached, partial, full;
};

struct sai_heap {
	unsigned long long id;
	int pid;
	char comm[32];
	unsigned long long kib[NKIB], spans, large, ev[NEV];
	/* spantop's: per second over its interval, if it had a sample before */
	bool have_rates;
	double exch_s, rel_s, hit;
	struct sai_class *cls;
	int ncls;
};

struct sai_snap {
	struct sai_heap *h;
	int n;
	double t;		/* CLOCK_MONOTONIC seconds when read */
};

/*
 * Reads path (SPANALLOCINFO_PATH) into s; 0, or -1 after saying why on
 * stderr (as prog) if it cannot be read or is not version 1.
 */
int sai_read(struct sai_snap *s, const char *path, const char *prog);
/* Parses text; -1 if its first line is not a version 1 header. */
int sai_parse(struct sai_snap *s, const char *text);
void sai_free(struct sai_snap *s);

#endif
