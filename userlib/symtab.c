// SPDX-License-Identifier: MIT
/*
 * symtab: the names of the functions at code addresses of this process,
 * from the ELF symbol tables of the objects it has loaded (as Go's
 * runtime/pprof names its frames itself), so that a heap profile reads the
 * same wherever it is opened and whatever symbolizer is there. Each
 * object's file is mapped read-only while the table lives; its .symtab is
 * used when it has one (static functions and compiler clones included),
 * else its .dynsym. Nothing is allocated from the heap: a writer may run
 * inside the drop-in's malloc.
 */
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "internal.h"

struct sa_sym {
	uintptr_t lo, hi;		/* [lo, hi) in the object's own addresses */
	const char *name;
};

struct sa_symobj {
	uintptr_t bias;			/* the object's load address */
	uintptr_t lo, hi;		/* its executable segments, in memory */
	const void *file;		/* mapped file */
	size_t file_len;
	struct sa_sym *syms;		/* sorted by lo */
	size_t nsyms, cap;
};

#define SA_SYMOBJS	256

struct sa_symtab {
	struct sa_symobj obj[SA_SYMOBJS];
	int n;
};

static void *sa_sym_map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* Heapsort by lo: in place, no allocation (qsort may allocate). */
static void sa_sym_sift(struct sa_sym *v, size_t i, size_t n)
{
	for (;;) {
		size_t big = i, l = 2 * i + 1, r = l + 1;
		struct sa_sym t;

		if (l < n && v[l].lo > v[big].lo)
			big = l;
		if (r < n && v[r].lo > v[big].lo)
			big = r;
		if (big == i)
			return;
		t = v[i];
		v[i] = v[big];
		v[big] = t;
		i = big;
	}
}

static void sa_sym_sort(struct sa_sym *v, size_t n)
{
	for (size_t i = n / 2; i-- > 0; )
		sa_sym_sift(v, i, n);
	for (size_t end = n; end-- > 1; ) {
		struct sa_sym t = v[0];

		v[0] = v[end];
		v[end] = t;
		sa_sym_sift(v, 0, end);
	}
}

/* The functions in o's file's first section of type that has any. */
static size_t sa_sym_read(struct sa_symobj *o, uint32_t type)
{
	const ElfW(Ehdr) *eh = o->file;
	const ElfW(Shdr) *sh;
	size_t n = 0;

	if (o->file_len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 || !eh->e_shoff ||
	    eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(*sh) > o->file_len)
		return 0;
	sh = (const ElfW(Shdr) *)((const char *)o->file + eh->e_shoff);
	for (int i = 0; i < eh->e_shnum; i++) {
		const ElfW(Shdr) *st = &sh[i], *str;
		const ElfW(Sym) *sym;
		size_t count;

		if (st->sh_type != type || st->sh_link >= eh->e_shnum ||
		    st->sh_offset + st->sh_size > o->file_len || !st->sh_entsize)
			continue;
		str = &sh[st->sh_link];
		if (str->sh_offset + str->sh_size > o->file_len)
			continue;
		sym = (const ElfW(Sym) *)((const char *)o->file + st->sh_offset);
		count = st->sh_size / st->sh_entsize;
		o->cap = count + 1;
		o->syms = sa_sym_map(o->cap * sizeof(*o->syms));
		if (!o->syms)
			return 0;
		for (size_t k = 0; k < count; k++) {
			uint32_t type = ELF64_ST_TYPE(sym[k].st_info);

			if ((type != STT_FUNC && type != STT_GNU_IFUNC) || !sym[k].st_value ||
			    sym[k].st_shndx == SHN_UNDEF || sym[k].st_name >= str->sh_size)
				continue;
			o->syms[n++] = (struct sa_sym){
				.lo = sym[k].st_value,
				.hi = sym[k].st_value + (sym[k].st_size ? sym[k].st_size : 1),
				.name = (const char *)o->file + str->sh_offset + sym[k].st_name,
			};
		}
		if (!n) {
			munmap(o->syms, o->cap * sizeof(*o->syms));
			o->syms = NULL;
			continue;
		}
		sa_sym_sort(o->syms, n);
		return n;
	}
	return 0;
}

static int sa_sym_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct sa_symtab *t = arg;
	struct sa_symobj *o = &t->obj[t->n];
	char exe[4096];
	const char *path = info->dlpi_name;
	struct stat st;
	int fd;

	(void)size;
	if (t->n == SA_SYMOBJS)
		return 1;
	if (!path || !*path) {
		ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

		if (len <= 0)
			return 0;
		exe[len] = 0;
		path = exe;
	}
	memset(o, 0, sizeof(*o));
	o->bias = info->dlpi_addr;
	o->lo = UINTPTR_MAX;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		if (info->dlpi_addr + ph->p_vaddr < o->lo)
			o->lo = info->dlpi_addr + ph->p_vaddr;
		if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > o->hi)
			o->hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
	}
	/* the vDSO has no file; objects whose file is gone are not named */
	fd = path[0] == '/' ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (o->lo >= o->hi || fd < 0 || fstat(fd, &st) || !st.st_size) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	o->file_len = (size_t)st.st_size;
	o->file = mmap(NULL, o->file_len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (o->file == MAP_FAILED)
		return 0;
	o->nsyms = sa_sym_read(o, SHT_SYMTAB);
	if (!o->nsyms)
		o->nsyms = sa_sym_read(o, SHT_DYNSYM);
	if (!o->nsyms) {
		munmap((void *)o->file, o->file_len);
		return 0;
	}
	t->n++;
	return 0;
}

/* Every object loaded now, with its functions; NULL if there is no memory. */
struct sa_symtab *sa_symtab_load(void)
{
	struct sa_symtab *t = sa_sym_map(sizeof(*t));

	if (t)
		dl_iterate_phdr(sa_sym_object, t);
	return t;
}

/* The function at addr, or NULL when no object's symbols name it. */
const char *sa_symtab_lookup(const struct sa_symtab *t, uintptr_t addr)
{
	for (int i = 0; t && i < t->n; i++) {
		const struct sa_symobj *o = &t->obj[i];
		uintptr_t a = addr - o->bias;
		size_t lo = 0, hi = o->nsyms;

		if (addr < o->lo || addr >= o->hi)
			continue;
		/* the last symbol starting at or below a */
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;

			if (o->syms[mid].lo <= a)
				lo = mid + 1;
			else
				hi = mid;
		}
		/* the nearest that covers a: symbols may nest or overlap */
		for (size_t k = lo; k > 0 && lo - k < 64; k--)
			if (o->syms[k - 1].hi > a)
				return o->syms[k - 1].name;
		return NULL;
	}
	return NULL;
}

void sa_symtab_free(struct sa_symtab *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->n; i++) {
		munmap((void *)t->obj[i].file, t->obj[i].file_len);
		munmap(t->obj[i].syms, t->obj[i].cap * sizeof(*t->obj[i].syms));
	}
	munmap(t, sizeof(*t));
}
