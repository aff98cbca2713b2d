// SPDX-License-Identifier: MIT
/*
 * thread: the threads a program creates, seen from their first
 * instruction (Boehm's GC_pthread_create).
 *
 * The library's pthread_create takes the place of the C library's (it is
 * found first: the program links libspanalloc, which comes before libc).
 * The new thread makes its cache, and so is registered in a collected
 * heap, before it runs the program's start routine; until it has, the
 * creator waits with the start routine's argument on its own stack, which
 * a collection scans. So an object passed only as that argument, or only
 * in the new thread's registers, is never collected. Threads created in a
 * manual heap get their cache too, so sa_gc_init() can register them
 * later (gc.c).
 *
 * In a collected heap, pthread_sigmask and sigprocmask never block the
 * signal collections stop threads with (as Boehm's GC_pthread_sigmask):
 * a thread that blocks every signal, to leave them to one that waits for
 * them with sigwait, is common, and must still stop for collections.
 *
 * The library's own threads (marking helpers, the sweeper) are made with
 * sa_thread_create_raw(): the helpers must not be registered, since they
 * run while the world is stopped.
 */
#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include "internal.h"

/* The C library's function name, found once; NULL if there is none. */
static void *sa_real(_Atomic(void *) *cache, const char *name)
{
	void *f = atomic_load_explicit(cache, memory_order_acquire);

	if (!f) {
		f = dlsym(RTLD_NEXT, name);
		atomic_store_explicit(cache, f, memory_order_release);
	}
	return f;
}

typedef int (*sa_create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
typedef int (*sa_mask_fn)(int, const sigset_t *, sigset_t *);

static sa_create_fn sa_real_create(void)
{
	static _Atomic(void *) real;

	return (sa_create_fn)sa_real(&real, "pthread_create");
}

int sa_thread_create_raw(pthread_t *t, const pthread_attr_t *attr,
			 void *(*fn)(void *), void *arg)
{
	sa_create_fn real = sa_real_create();

	return real ? real(t, attr, fn, arg) : EAGAIN;
}

struct sa_thread_start {
	void *(*fn)(void *);
	void *arg;
	_Atomic uint32_t started;
};

static void *sa_thread_main(void *p)
{
	struct sa_thread_start *st = p;
	void *(*fn)(void *) = st->fn;
	void *arg = st->arg;

	/* failing, allocating fails too in a collected heap: said there */
	sa_tcache_current();
	atomic_store(&st->started, 1);
	sa_futex(&st->started, FUTEX_WAKE, 1, NULL);
	return fn(arg);
}

int pthread_create(pthread_t *t, const pthread_attr_t *attr,
		   void *(*fn)(void *), void *arg)
{
	struct sa_thread_start st = { .fn = fn, .arg = arg };
	int ret;

	/* no heap, nothing to scan: the C library's, untouched */
	if (sa_init())
		return sa_thread_create_raw(t, attr, fn, arg);
	/* the creator itself is scanned while it holds arg */
	sa_tcache_current();
	ret = sa_thread_create_raw(t, attr, sa_thread_main, &st);
	if (ret)
		return ret;
	while (!atomic_load(&st.started))
		sa_futex(&st.started, FUTEX_WAIT, 0, NULL);
	/* arg lives in the new thread from here */
	__asm__ volatile("" : : "r"(&st) : "memory");
	return 0;
}

/* set, less the stop signal when a collected heap would be blocked from it */
static const sigset_t *sa_thread_mask(int how, const sigset_t *set, sigset_t *copy)
{
	int sig = sa_world_signal();

	if (!set || how == SIG_UNBLOCK || !sig || !sa_gc_on() || !sigismember(set, sig))
		return set;
	*copy = *set;
	sigdelset(copy, sig);
	return copy;
}

int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	static _Atomic(void *) real;
	sa_mask_fn f = (sa_mask_fn)sa_real(&real, "pthread_sigmask");
	sigset_t copy;

	if (!f)
		return ENOSYS;
	return f(how, sa_thread_mask(how, set, &copy), old);
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	static _Atomic(void *) real;
	sa_mask_fn f = (sa_mask_fn)sa_real(&real, "sigprocmask");
	sigset_t copy;

	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(how, sa_thread_mask(how, set, &copy), old);
}
