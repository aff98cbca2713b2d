/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Running a function in a forked child and reading back what it wrote to
 * stderr: for the tests that check a message and how the child ended.
 */
#ifndef SPANALLOC_SELFTEST_CHILD_H
#define SPANALLOC_SELFTEST_CHILD_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Forks a child whose stderr goes to err (NUL-terminated, up to errlen - 1
 * bytes kept); in it, fn(arg) runs and the child exits 0 if fn returns.
 * Returns the child's wait status, or -1.
 */
static inline int sa_t_in_child(void (*fn)(const char *), const char *arg, char *err,
				size_t errlen)
{
	int fds[2], st;
	ssize_t n, got = 0;
	pid_t pid;

	if (pipe(fds))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		dup2(fds[1], 2);
		fn(arg);
		_exit(0);
	}
	close(fds[1]);
	while ((size_t)got < errlen - 1 &&
	       (n = read(fds[0], err + got, errlen - 1 - (size_t)got)) > 0)
		got += n;
	err[got] = 0;
	close(fds[0]);
	waitpid(pid, &st, 0);
	return st;
}

#endif /* SPANALLOC_SELFTEST_CHILD_H */
