// SPDX-License-Identifier: GPL-2.0
/*
 * info: /proc/spanallocinfo, every heap of the system in the spirit of
 * /proc/slabinfo, for spantop and for people. Root only (0400): it names
 * processes and their memory. It is in /proc, not debugfs, because tools
 * depend on it and debugfs may be off. The format is versioned; fields
 * are only ever added at the end of a line, and readers must ignore what
 * they do not know:
 *
 *   spanallocinfo - version: 1.0
 *   # heap <id> <pid> <comm> : kib <mapped> <active> <inuse> <free> <dirty>
 *     <released> <unreleasable> <limit> : spans <spans> <large> : events
 *     <exchanges> <spans_got> <spans_returned> <pcp_hits> <central_hits>
 *     <heap_spans> <pcp_flushes> <large_allocs> <enomem> <pages_released>
 *   # class <heap> <spanclass> <objsize> <noscan> <objperspan>
 *     <pagesperspan> : spans <owned> <cached> <partial> <full>
 *
 * (each "#" line is one line in the file). A heap line: its id (as in the
 * tracepoints), the process that opened it (pid in the reader's namespace,
 * 0 when that process is gone or not visible; its command, blanks made
 * '_', "-" when gone), then memory in KiB: the mapping, its set-up arenas,
 * pages in spans, free pages of set-up arenas and, of those, dirty (may be
 * resident), released and unreleasable, and the limit; then its spans and
 * large spans, then counters since it was opened. A class line for every
 * small span class with spans alive follows its heap's line.
 *
 * The position in the file is the id of the next heap to show (0: the
 * header), so a read() that resumes after heaps came or went goes on from
 * where it stopped, neither repeating nor skipping one. Each heap is
 * shown holding a reference to it, not sa_heaps_mutex (which only finding
 * it takes), so a reader holds up no open, close or background walk.
 */
#include <linux/fs.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include "spanalloc.h"

#define SA_INFO_NAME	"spanallocinfo"

static void *sa_info_start(struct seq_file *m, loff_t *pos)
{
	if (!*pos)
		return SEQ_START_TOKEN;
	return sa_heap_get(*pos);
}

static void *sa_info_next(struct seq_file *m, void *v, loff_t *pos)
{
	if (v == SEQ_START_TOKEN) {
		*pos = 1;
	} else {
		struct sa_heap *heap = v;

		*pos = heap->id + 1;
		sa_heap_put(heap);
	}
	return sa_heap_get(*pos);
}

static void sa_info_stop(struct seq_file *m, void *v)
{
	if (v && v != SEQ_START_TOKEN)
		sa_heap_put(v);
}

/* get_task_comm() wants an array it can take the size of */
struct sa_comm {
	char s[TASK_COMM_LEN];
};

/*
 * The opener's pid in the pid namespace of this /proc, and its command,
 * if it lives and is seen there (else 0 and "-").
 */
static pid_t sa_info_opener(struct seq_file *m, struct sa_heap *heap,
			    struct sa_comm *comm)
{
	struct pid_namespace *ns = proc_pid_ns(file_inode(m->file)->i_sb);
	struct task_struct *t;
	unsigned char *c;
	pid_t nr = 0;

	strscpy(comm->s, "-", sizeof(comm->s));
	rcu_read_lock();
	t = pid_task(heap->opener, PIDTYPE_TGID);
	if (t)
		nr = pid_nr_ns(heap->opener, ns);
	if (nr)
		get_task_comm(comm->s, t);
	rcu_read_unlock();
	/* one word per field: blanks and controls become '_' */
	for (c = (unsigned char *)comm->s; *c; c++)
		if (*c <= ' ' || *c == 0x7f)
			*c = '_';
	return nr;
}

static void sa_info_classes(struct seq_file *m, struct sa_heap *heap)
{
	struct spanalloc_class_stats cs;
	u32 alive;
	u16 sc;

	/* span classes 0 and 1, large objects, are counted in the heap line */
	for (sc = 2; sc < SA_NSPANCLASS; sc++) {
		const struct spanalloc_class *k = &sa_classes[sc >> 1];
		/* the length of new spans: older ones may differ (SET_SPAN_PAGES) */
		u32 npages = READ_ONCE(heap->span_pages[sc >> 1]);

		spin_lock(&heap->lock);
		alive = heap->class_spans[sc];
		spin_unlock(&heap->lock);
		if (!alive)
			continue;
		sa_heap_class_stats(heap, sc, &cs);
		seq_printf(m, "class %llu %u %u %u %u %u : spans %u %u %u %u\n",
			   heap->id, sc, k->size, sc & 1,
			   (npages << SA_PAGE_SHIFT) / k->size, npages,
			   cs.owned, cs.cached, cs.partial, cs.full);
	}
}

static int sa_info_show(struct seq_file *m, void *v)
{
	const u64 kib = SA_PAGE_SIZE / SZ_1K;
	struct spanalloc_stats st;
	struct sa_comm comm;
	struct sa_heap *heap;
	u64 released;
	pid_t pid;

	if (v == SEQ_START_TOKEN) {
		seq_puts(m, SA_INFO_NAME " - version: 1.0\n"
			 "# heap <id> <pid> <comm> : kib <mapped> <active> <inuse> <free> <dirty> <released> <unreleasable> <limit> : spans <spans> <large> : events <exchanges> <spans_got> <spans_returned> <pcp_hits> <central_hits> <heap_spans> <pcp_flushes> <large_allocs> <enomem> <pages_released>\n"
			 "# class <heap> <spanclass> <objsize> <noscan> <objperspan> <pagesperspan> : spans <owned> <cached> <partial> <full>\n");
		return 0;
	}
	heap = v;
	pid = sa_info_opener(m, heap, &comm);
	sa_heap_stats(heap, &st);
	released = st.pages_free - st.pages_dirty - st.pages_unreleasable;
	seq_printf(m, "heap %llu %d %s : kib %llu %llu %llu %llu %llu %llu %llu %llu : spans %llu %llu : events %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu\n",
		   heap->id, pid, comm.s, st.mapped / SZ_1K,
		   st.arenas * (SPANALLOC_ARENA_SIZE / SZ_1K),
		   st.pages_inuse * kib, st.pages_free * kib,
		   st.pages_dirty * kib, released * kib,
		   st.pages_unreleasable * kib, st.limit / SZ_1K,
		   st.spans, st.large_spans, st.exchanges, st.spans_got,
		   st.spans_returned, st.pcp_hits, st.central_hits,
		   st.heap_spans, st.pcp_flushes, st.large_allocs, st.enomem,
		   st.pages_released);
	if (st.mapped)
		sa_info_classes(m, heap);
	return 0;
}

static const struct seq_operations sa_info_ops = {
	.start = sa_info_start,
	.next = sa_info_next,
	.stop = sa_info_stop,
	.show = sa_info_show,
};

int sa_info_init(void)
{
	return proc_create_seq(SA_INFO_NAME, 0400, NULL, &sa_info_ops) ? 0 : -ENOMEM;
}

void sa_info_exit(void)
{
	remove_proc_entry(SA_INFO_NAME, NULL);
}
