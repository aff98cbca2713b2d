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
 * signal collections stop threads with (as Boehm's GC_pthread_sigmask),
 * and sigwait, sigwaitinfo and sigtimedwait never take it: a thread that
 * blocks every signal, to leave them to one that waits for them, is
 * common, and both must still stop for collections. The C library's
 * functions are found when the library is loaded, not on first use,
 * which may be in a signal handler.
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
typedef int (*sa_wait_fn)(const sigset_t *, int *);
typedef int (*sa_waitinfo_fn)(const sigset_t *, siginfo_t *);
typedef int (*sa_timedwait_fn)(const sigset_t *, siginfo_t *, const struct timespec *);

static _Atomic(void *) real_create, real_pmask, real_pmask2, real_wait, real_waitinfo,
	real_timedwait;

static sa_create_fn sa_real_create(void)
{
	return (sa_create_fn)sa_real(&real_create, "pthread_create");
}

static __attribute__((constructor)) void sa_thread_resolve(void)
{
	sa_real(&real_create, "pthread_create");
	sa_real(&real_pmask, "pthread_sigmask");
	sa_real(&real_pmask2, "sigprocmask");
	sa_real(&real_wait, "sigwait");
	sa_real(&real_waitinfo, "sigwaitinfo");
	sa_real(&real_timedwait, "sigtimedwait");
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

/* set, less the stop signal in a collected heap */
static const sigset_t *sa_thread_mask(const sigset_t *set, sigset_t *copy)
{
	int sig = sa_world_signal();

	if (!set || !sig || !sa_gc_on() || !sigismember(set, sig))
		return set;
	*copy = *set;
	sigdelset(copy, sig);
	return copy;
}

int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	sa_mask_fn f = (sa_mask_fn)sa_real(&real_pmask, "pthread_sigmask");
	sigset_t copy;

	if (!f)
		return ENOSYS;
	return f(how, how == SIG_UNBLOCK ? set : sa_thread_mask(set, &copy), old);
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	sa_mask_fn f = (sa_mask_fn)sa_real(&real_pmask2, "sigprocmask");
	sigset_t copy;

	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(how, how == SIG_UNBLOCK ? set : sa_thread_mask(set, &copy), old);
}

int sigwait(const sigset_t *set, int *sig)
{
	sa_wait_fn f = (sa_wait_fn)sa_real(&real_wait, "sigwait");
	sigset_t copy;

	return f ? f(sa_thread_mask(set, &copy), sig) : ENOSYS;
}

int sigwaitinfo(const sigset_t *set, siginfo_t *info)
{
	sa_waitinfo_fn f = (sa_waitinfo_fn)sa_real(&real_waitinfo, "sigwaitinfo");
	sigset_t copy;

	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(sa_thread_mask(set, &copy), info);
}

int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *timeout)
{
	sa_timedwait_fn f = (sa_timedwait_fn)sa_real(&real_timedwait, "sigtimedwait");
	sigset_t copy;

	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(sa_thread_mask(set, &copy), info, timeout);
}
