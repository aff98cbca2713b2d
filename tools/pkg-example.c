// SPDX-License-Identifier: MIT
/*
 * pkg-example: the smallest program a user of the packages writes, built by
 * scripts/package.sh with nothing but `pkg-config --cflags --libs
 * spanalloc` against the installed headers and libraries: allocates a
 * list, lets the collector take half of it, and says what it saw.
 */
#include <spanalloc.h>
#include <stdio.h>

struct node {
	struct node *next;
	long value;
};

static struct node *head;

int main(void)
{
	struct sa_gc_stats st;
	long n = 0;

	if (sa_gc_init()) {
		fprintf(stderr, "pkg-example: %s\n", sa_strerror());
		return 1;
	}
	for (long i = 0; i < 100000; i++) {
		struct node *x = sa_alloc(sizeof(*x));

		if (!x)
			return 1;
		x->value = i;
		/* every other node is garbage as soon as it is made */
		if (i % 2 == 0) {
			x->next = head;
			head = x;
		}
	}
	sa_gc_collect();
	for (struct node *x = head; x; x = x->next)
		n++;
	if (sa_gc_get_stats(&st))
		return 1;
	printf("%ld nodes kept, %llu collected in %llu cycles\n", n,
	       (unsigned long long)st.collected_objects, (unsigned long long)st.cycles);
	return n == 50000 && st.collected_objects >= 25000 ? 0 : 1;
}
