// SPDX-License-Identifier: MIT
/*
 * world: the threads a collection stops and scans (Boehm's
 * pthread_stop_world.c, with Go's rule that a thread inside the allocator
 * is not at a safe point).
 *
 * Stopping: the collector sends SA_STOP_SIGNAL to every other registered
 * thread and waits until each has acknowledged. The handler spills the
 * thread's registers onto its stack (the kernel already saved the
 * interrupted context in the signal frame, which lies on that stack too),
 * records the stack pointer, acknowledges, and sleeps on a futex until the
 * world's epoch changes. A thread inside the allocator (nosafe != 0) only
 * notes the request and stops itself on the way out (sa_safepoint), so a
 * collection never sees a span half updated. A thread blocked in a system
 * call takes the signal like any other: the call is interrupted, the
 * handler runs, and the call restarts (SA_RESTART) once the world does.
 *
 * Locking: world_lock protects the list of registered threads and is held
 * by the collector from stop to start, so no thread registers or leaves
 * while a collection runs (a thread waiting for it to leave is still
 * registered, and stops like the others).
 */
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"

#define SA_STOP_SIGNAL	SIGPWR

static pthread_mutex_t world_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sa_tcache *world_threads;	/* registered, under world_lock */
static _Atomic uint32_t world_epoch;	/* bumped to restart the world */
static _Atomic uint32_t world_acks;	/* stopped threads this time */

static long sa_futex(_Atomic uint32_t *uaddr, int op, uint32_t val,
		     const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)uaddr, op | FUTEX_PRIVATE_FLAG, val, ts,
		       NULL, 0);
}

/*
 * Stops the calling thread until the world restarts. Called by the signal
 * handler or by sa_safepoint(); async-signal-safe.
 */
static __attribute__((noinline)) void sa_world_park(struct sa_tcache *c)
{
	volatile uintptr_t marker = 0;
	uint32_t epoch;

	/* callee-saved registers go to this frame, below the caller's */
	__builtin_unwind_init();
	c->stop_sp = (uintptr_t)&marker;
	c->stop_pending = 0;
	epoch = atomic_load(&world_epoch);
	atomic_fetch_add(&world_acks, 1);
	sa_futex(&world_acks, FUTEX_WAKE, 1, NULL);
	while (atomic_load(&world_epoch) == epoch)
		sa_futex(&world_epoch, FUTEX_WAIT, epoch, NULL);
	c->stop_sp = 0;
	(void)marker;
}

static void sa_world_on_signal(int sig, siginfo_t *si, void *uc)
{
	struct sa_tcache *c = sa_tc;
	int saved = errno;

	(void)sig;
	(void)si;
	(void)uc;
	if (c && c->registered) {
		if (c->nosafe)
			c->stop_pending = 1;
		else
			sa_world_park(c);
	}
	errno = saved;
}

void sa_safepoint(struct sa_tcache *c)
{
	/* what the call that ends here reports must survive a stop or a cycle */
	int saved = errno;

	if (c->stop_pending)
		sa_world_park(c);
	if (c->gc_due) {
		c->gc_due = 0;
		sa_gc_maybe_collect(c);
	}
	errno = saved;
}

int sa_world_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sa_world_on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	return sigaction(SA_STOP_SIGNAL, &sa, NULL);
}

int sa_world_register(struct sa_tcache *c)
{
	pthread_attr_t attr;
	void *addr;
	size_t size;

	if (c->registered)
		return 0;
	if (pthread_getattr_np(pthread_self(), &attr))
		return -1;
	pthread_attr_getstack(&attr, &addr, &size);
	pthread_attr_destroy(&attr);
	c->stack_lo = (uintptr_t)addr;
	c->stack_hi = (uintptr_t)addr + size;
	c->self = pthread_self();
	c->tid = (pid_t)syscall(SYS_gettid);
	pthread_mutex_lock(&world_lock);
	c->gc_prev = NULL;
	c->gc_next = world_threads;
	if (world_threads)
		world_threads->gc_prev = c;
	world_threads = c;
	c->registered = 1;
	pthread_mutex_unlock(&world_lock);
	return 0;
}

void sa_world_unregister(struct sa_tcache *c)
{
	if (!c->registered)
		return;
	pthread_mutex_lock(&world_lock);
	if (c->gc_prev)
		c->gc_prev->gc_next = c->gc_next;
	else
		world_threads = c->gc_next;
	if (c->gc_next)
		c->gc_next->gc_prev = c->gc_prev;
	c->registered = 0;
	pthread_mutex_unlock(&world_lock);
}

/*
 * fork(): the caller takes world_lock (after cycle_lock, before the
 * others: a cycle takes them in that order), so no thread registers or
 * leaves while the address space is copied. In the child, the threads
 * that were not copied are unregistered by fork.c; the one that forked
 * has a new thread id.
 */
void sa_world_fork(enum sa_fork_phase phase)
{
	sa_fork_mutex(&world_lock, phase);
	if (phase == SA_FORK_CHILD) {
		atomic_store(&world_acks, 0);
		if (sa_tc)
			sa_tc->tid = (pid_t)syscall(SYS_gettid);
	}
}

void sa_world_each(void (*fn)(struct sa_tcache *c, void *arg), void *arg)
{
	for (struct sa_tcache *c = world_threads; c; c = c->gc_next)
		fn(c, arg);
}

/*
 * Stops every registered thread but the caller. Returns how many were
 * stopped. A thread that does not answer within seconds is reported (it
 * blocks SA_STOP_SIGNAL, or it is stuck inside the library) and waited for.
 */
int sa_world_stop(void)
{
	struct sa_tcache *self = sa_tc;
	struct timespec ts = { .tv_sec = 5 };
	uint32_t n = 0, acks;
	int warned = 0;

	pthread_mutex_lock(&world_lock);
	atomic_store(&world_acks, 0);
	for (struct sa_tcache *c = world_threads; c; c = c->gc_next) {
		if (c == self)
			continue;
		if (pthread_kill(c->self, SA_STOP_SIGNAL) == 0)
			n++;
	}
	while ((acks = atomic_load(&world_acks)) < n) {
		if (sa_futex(&world_acks, FUTEX_WAIT, acks, &ts) < 0 &&
		    errno == ETIMEDOUT && !warned++) {
			/* not stdio: a stopped thread may hold stderr's lock */
			char msg[128];
			int len = snprintf(msg, sizeof(msg),
					   "spanalloc: gc: %u of %u threads have not stopped after 5 s (is SIGPWR blocked?)\n",
					   n - acks, n);

			if (write(2, msg, (size_t)len) < 0)
				warned++;
		}
	}
	return (int)n;
}

void sa_world_start(void)
{
	atomic_fetch_add(&world_epoch, 1);
	sa_futex(&world_epoch, FUTEX_WAKE, INT32_MAX, NULL);
	pthread_mutex_unlock(&world_lock);
}
