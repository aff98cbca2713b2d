// SPDX-License-Identifier: MIT
/*
 * world: the threads a collection stops and scans (Boehm's
 * pthread_stop_world.c, with Go's rule that a thread inside the allocator
 * is not at a safe point).
 *
 * Stopping: the collector queues the stop signal (SPANALLOC_GC_SIGNAL;
 * unless set SIGRTMIN+6, which the usual neighbours leave alone: Boehm GC,
 * Mono and the JVM use SIGPWR, SIGXCPU and SIGUSR2; SIGSYS in a
 * ThreadSanitizer build, see sa_world_pick_signal) to every other
 * registered thread with the stop's epoch as its value, and waits until
 * each has acknowledged. The handler parks a
 * thread only for a stop the collector requested: a signal sent by this
 * process with sigqueue, naming the epoch in progress. Anything else is
 * someone else's signal and goes to the handler installed before ours (or
 * has its default effect). A parked thread spills its registers onto its
 * stack (the kernel already saved the interrupted context in the signal
 * frame, which lies on the stack in use too), records its stack pointer,
 * acknowledges, and sleeps on a futex until the world's epoch changes. A
 * thread inside the allocator's slow paths (nosafe != 0) only notes the
 * request and stops itself on the way out (sa_safepoint), as does one in
 * a fast path (in_fast, whose SA_FAST_STOP bit the subtract that leaves
 * it sees: sa_fast_done, sa_fast_stop): a collection never sees a span
 * half updated.
 *
 * System calls: the handler is installed with SA_RESTART, so read, write,
 * wait and the like restart after a stop. Calls the kernel never restarts
 * after any handler (poll, ppoll, select, epoll_wait, nanosleep,
 * clock_nanosleep, sleep, sockets with a receive or send timeout, semop
 * and friends, see signal(7)) return EINTR when a collection stops the
 * thread during them; the program must retry them, as it must for any
 * signal.
 *
 * Locking: world_lock protects the list of registered threads and is held
 * by the collector from stop to start, so no thread registers or leaves
 * while a collection runs (a thread waiting for it to leave is still
 * registered, and stops like the others).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"

static pthread_mutex_t world_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sa_tcache *world_threads;	/* registered, under world_lock */
static _Atomic uint32_t world_epoch;	/* bumped to restart the world */
static _Atomic uint32_t world_acks;	/* stopped threads this time */
/* stops that found a thread in a fast path (gc_test reads it) */
_Atomic uint64_t sa_world_fast_stops;
/* the epoch a stop in progress parks threads for; 0: no stop */
static _Atomic uint32_t world_stopping;
static int world_signal;		/* set once by sa_world_init */
static struct sigaction world_old;	/* what was installed before */

long sa_futex(_Atomic uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)uaddr, op | FUTEX_PRIVATE_FLAG, val, ts,
		       NULL, 0);
}

/*
 * Records where c's thread runs: sp, and the alternate signal stack when
 * it runs on one. Called by the thread itself; async-signal-safe.
 */
void sa_world_note_stack(struct sa_tcache *c, uintptr_t sp)
{
	stack_t ss;
	uintptr_t lo = 0, hi = 0;

	if (sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK)) {
		lo = (uintptr_t)ss.ss_sp;
		hi = lo + ss.ss_size;
	}
	atomic_store_explicit(&c->alt_lo, lo, memory_order_relaxed);
	atomic_store_explicit(&c->alt_hi, hi, memory_order_relaxed);
	atomic_store_explicit(&c->stop_sp, sp, memory_order_relaxed);
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
	sa_world_note_stack(c, (uintptr_t)&marker);
	c->stop_pending = 0;
	sa_signal_andnot(&c->in_fast, SA_FAST_STOP);
	epoch = atomic_load(&world_epoch);
	atomic_fetch_add(&world_acks, 1);
	sa_futex(&world_acks, FUTEX_WAKE, 1, NULL);
	while (atomic_load(&world_epoch) == epoch)
		sa_futex(&world_epoch, FUTEX_WAIT, epoch, NULL);
	atomic_store_explicit(&c->stop_sp, 0, memory_order_relaxed);
	(void)marker;
}

/* A signal that is not a stop: what would have happened without us. */
static void sa_world_chain(int sig, siginfo_t *si, void *uc)
{
	if (world_old.sa_flags & SA_SIGINFO) {
		world_old.sa_sigaction(sig, si, uc);
	} else if (world_old.sa_handler == SIG_DFL) {
		/* every signal we accept terminates by default: so does this one */
		signal(sig, SIG_DFL);
		raise(sig);
	} else if (world_old.sa_handler != SIG_IGN) {
		world_old.sa_handler(sig);
	}
}

static void sa_world_on_signal(int sig, siginfo_t *si, void *uc)
{
	struct sa_tcache *c = sa_tc;
	uint32_t stopping = atomic_load(&world_stopping);
	int saved = errno;

	if (!stopping || si->si_code != SI_QUEUE || si->si_pid != getpid() ||
	    (uint32_t)si->si_value.sival_int != stopping || !c ||
	    !atomic_load_explicit(&c->registered, memory_order_relaxed)) {
		errno = saved;
		sa_world_chain(sig, si, uc);
		return;
	}
	if (c->nosafe || (c->in_fast & SA_FAST_COUNT)) {
		c->stop_pending = 1;
		if (c->in_fast & SA_FAST_COUNT)
			sa_signal_or(&c->in_fast, SA_FAST_STOP);
		if (!c->nosafe)
			atomic_fetch_add_explicit(&sa_world_fast_stops, 1, memory_order_relaxed);
	} else {
		sa_world_park(c);
	}
	errno = saved;
}

/*
 * A fast path's region ended with in_fast not 0 (sa_fast_done): a stop
 * noted in it is honoured here, unless this fast path is in a handler
 * that interrupted another fast path or a slow path, which honours it.
 */
__attribute__((noinline, cold)) void *sa_fast_stop(struct sa_tcache *c, void *ret)
{
	int saved = errno;

	if (!(c->in_fast & SA_FAST_COUNT) && !c->nosafe) {
		if (c->stop_pending)
			sa_world_park(c);
		else	/* its stop was honoured on another way out */
			sa_signal_andnot(&c->in_fast, SA_FAST_STOP);
	}
	errno = saved;
	return ret;
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

/* "SIGRTMIN+6", "RTMAX-2", "SIGPWR", "USR2", "38": a signal, or -1. */
static int sa_world_parse_signal(const char *e)
{
	static const struct {
		const char *name;
		int sig;
	} names[] = {
		{ "PWR", SIGPWR }, { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ },
		{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "HUP", SIGHUP },
		{ "VTALRM", SIGVTALRM }, { "PROF", SIGPROF }, { "SYS", SIGSYS },
	};
	char *end;
	long n;

	if (!strncmp(e, "SIG", 3))
		e += 3;
	if (!strncmp(e, "RTMIN", 5) || !strncmp(e, "RTMAX", 5)) {
		int base = e[4] == 'N' ? SIGRTMIN : SIGRTMAX;

		if (!e[5])
			return base;
		n = strtol(e + 5, &end, 10);
		if (*end || base + n < SIGRTMIN || base + n > SIGRTMAX)
			return -1;
		return (int)(base + n);
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(e, names[i].name))
			return names[i].sig;
	n = strtol(e, &end, 10);
	if (end == e || *end)
		return -1;
	/* real-time signals, and the classic ones that terminate by default */
	if (n >= SIGRTMIN && n <= SIGRTMAX)
		return (int)n;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (n == names[i].sig)
			return (int)n;
	return -1;
}

int sa_world_signal(void)
{
	return world_signal;
}

/*
 * The stop signal in use, or the one sa_world_init would install: -1 when
 * SPANALLOC_GC_SIGNAL names none the collector can use.
 *
 * ThreadSanitizer holds an asynchronous signal back until the thread next
 * enters a function it intercepts, which a thread computing in its own
 * code, or waiting in a call TSan does not treat as blocking, may never
 * do: a collection would wait for it forever. Signals it deems synchronous
 * it delivers at once, and SIGSYS (seccomp's, which no program sends
 * itself) is one of them, so a ThreadSanitizer build stops with that.
 */
int sa_world_pick_signal(void)
{
	const char *e = getenv("SPANALLOC_GC_SIGNAL");

	if (world_signal)
		return world_signal;
	if (e && *e)
		return sa_world_parse_signal(e);
#ifdef SA_TSAN
	return SIGSYS;
#else
	return SIGRTMIN + 6;
#endif
}

/* Installs the stop handler; once, from sa_gc_init. */
int sa_world_init(void)
{
	struct sigaction sa;
	int sig;

	if (world_signal)
		return 0;	/* installed by an sa_gc_init that failed later */
	sig = sa_world_pick_signal();
	if (sig < 0) {
		fprintf(stderr, "spanalloc: gc: SPANALLOC_GC_SIGNAL=%s: not a signal the collector can use (SIGRTMIN+n, SIGRTMAX-n, PWR, XCPU, XFSZ, USR1, USR2, HUP, VTALRM, PROF, SYS or a number)\n",
			getenv("SPANALLOC_GC_SIGNAL"));
		errno = EINVAL;
		return -1;
	}
	world_signal = sig;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sa_world_on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	if (sigaction(world_signal, &sa, &world_old)) {
		world_signal = 0;
		return -1;
	}
	return 0;
}

static _Atomic int sa_world_told_blocked, sa_world_told_stack;

/* Whether the calling thread blocks the stop signal (said once). */
static bool sa_world_blocked(void)
{
	sigset_t cur;

	if (pthread_sigmask(SIG_BLOCK, NULL, &cur) || !sigismember(&cur, world_signal))
		return false;
	if (!atomic_exchange(&sa_world_told_blocked, 1))
		fprintf(stderr, "spanalloc: gc: thread %d blocks signal %d, which collections stop threads with (SPANALLOC_GC_SIGNAL); it cannot be registered, and allocating from it fails\n",
		(int)syscall(SYS_gettid), world_signal);
	return true;
}

/*
 * Whether thread tid blocks the stop signal, as /proc says (another
 * thread's mask cannot be asked for otherwise); false when /proc cannot
 * tell.
 */
static bool sa_world_blocked_by(pid_t tid)
{
	char path[64], line[128];
	bool blocked = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long mask;

		if (sscanf(line, "SigBlk: %llx", &mask) == 1) {
			blocked = (mask >> (world_signal - 1)) & 1;
			break;
		}
	}
	fclose(f);
	return blocked;
}

/* Links c in; world_lock held. */
static void sa_world_link(struct sa_tcache *c)
{
	c->gc_prev = NULL;
	c->gc_next = world_threads;
	if (world_threads)
		world_threads->gc_prev = c;
	world_threads = c;
	atomic_store_explicit(&c->registered, 1, memory_order_relaxed);
}

/* Where c's thread's stack is; any thread may ask. */
static int sa_world_stack_of(struct sa_tcache *c)
{
	pthread_attr_t attr;
	void *addr;
	size_t size;

	if (pthread_getattr_np(c->self, &attr))
		return -1;
	pthread_attr_getstack(&attr, &addr, &size);
	pthread_attr_destroy(&attr);
	c->stack_lo = (uintptr_t)addr;
	c->stack_hi = (uintptr_t)addr + size;
	return 0;
}

/*
 * Registers the calling thread's cache. Returns 0, or -1 with errno set and
 * the reason told on stderr: such a thread must not allocate unseen.
 */
int sa_world_register(struct sa_tcache *c)
{
	if (atomic_load_explicit(&c->registered, memory_order_relaxed))
		return 0;
	if (sa_world_blocked()) {
		errno = EINVAL;
		return -1;
	}
	if (sa_world_stack_of(c)) {
		int e = errno;

		if (!atomic_exchange(&sa_world_told_stack, 1))
			fprintf(stderr, "spanalloc: gc: cannot find thread %d's stack (pthread_getattr_np: %s; is /proc mounted, are file descriptors left?); it cannot be registered, and allocating from it fails\n",
			(int)c->tid, strerrordesc_np(e));
		errno = e ? e : EAGAIN;
		return -1;
	}
	pthread_mutex_lock(&world_lock);
	sa_world_link(c);
	pthread_mutex_unlock(&world_lock);
	return 0;
}

/*
 * sa_gc_init: registers every thread that has a cache but is not
 * registered (it allocated, or was created, before the heap was
 * collected). The caller holds cycle_lock, so no cycle runs. A cache
 * cannot go away under us: a thread leaving unlinks its cache from
 * sa_g.caches first, then takes world_lock (sa_world_unregister) before
 * freeing it. Returns 0, or -1 with errno when a thread blocks the stop
 * signal (EINVAL) or its stack cannot be found (EAGAIN).
 */
int sa_world_register_others(void)
{
	int ret = 0;

	pthread_mutex_lock(&world_lock);
	for (;;) {
		struct sa_tcache *todo = NULL;

		pthread_mutex_lock(&sa_g.lock);
		for (struct sa_tcache *c = sa_g.caches; c && !todo; c = c->next)
			if (!atomic_load_explicit(&c->registered, memory_order_relaxed))
				todo = c;
		pthread_mutex_unlock(&sa_g.lock);
		if (!todo)
			break;
		if (sa_world_blocked_by(todo->tid)) {
			fprintf(stderr, "spanalloc: gc: thread %d blocks signal %d, which collections stop threads with (SPANALLOC_GC_SIGNAL); the heap stays manual\n",
				(int)todo->tid, world_signal);
			errno = EINVAL;
			ret = -1;
			break;
		}
		if (sa_world_stack_of(todo)) {
			fprintf(stderr, "spanalloc: gc: cannot find thread %d's stack (pthread_getattr_np: %s)\n",
				(int)todo->tid, strerrordesc_np(errno));
			errno = EAGAIN;
			ret = -1;
			break;
		}
		sa_world_link(todo);
	}
	pthread_mutex_unlock(&world_lock);
	return ret;
}

void sa_world_unregister(struct sa_tcache *c)
{
	/* always locked: sa_world_register_others may be registering c */
	pthread_mutex_lock(&world_lock);
	if (!atomic_load_explicit(&c->registered, memory_order_relaxed)) {
		pthread_mutex_unlock(&world_lock);
		return;
	}
	if (c->gc_prev)
		c->gc_prev->gc_next = c->gc_next;
	else
		world_threads = c->gc_next;
	if (c->gc_next)
		c->gc_next->gc_prev = c->gc_prev;
	atomic_store_explicit(&c->registered, 0, memory_order_relaxed);
	pthread_mutex_unlock(&world_lock);
}

/*
 * fork(): the caller takes world_lock (after cycle_lock, before the
 * others: a cycle takes them in that order), so no thread registers or
 * leaves while the address space is copied. In the child only the thread
 * that forked is left registered, with its new thread id: every other
 * cache is unregistered here, those fork.c frees and also a leaving
 * thread's, which was already out of sa_g.caches but still registered.
 */
void sa_world_fork(enum sa_fork_phase phase)
{
	sa_fork_mutex(&world_lock, phase);
	if (phase == SA_FORK_CHILD) {
		struct sa_tcache *self = sa_tc;
		bool kept = self && atomic_load_explicit(&self->registered, memory_order_relaxed);

		for (struct sa_tcache *c = world_threads; c; c = c->gc_next)
			if (c != self)
				atomic_store_explicit(&c->registered, 0, memory_order_relaxed);
		world_threads = kept ? self : NULL;
		if (kept)
			self->gc_prev = self->gc_next = NULL;
		atomic_store(&world_acks, 0);
		if (self)
			self->tid = (pid_t)syscall(SYS_gettid);
	}
}

void sa_world_each(void (*fn)(struct sa_tcache *c, void *arg), void *arg)
{
	for (struct sa_tcache *c = world_threads; c; c = c->gc_next)
		fn(c, arg);
}

/*
 * Queues the stop for epoch to c's thread. Returns false if the thread is
 * gone (past touching the heap).
 */
static bool sa_world_send_stop(struct sa_tcache *c, uint32_t epoch)
{
	int err;

	/*
	 * A queued signal can be refused for want of room (RLIMIT_SIGPENDING):
	 * try again, since a thread left running would change the heap while
	 * it is marked.
	 */
	while ((err = pthread_sigqueue(c->self, world_signal,
				       (union sigval){ .sival_int = (int)epoch })) == EAGAIN)
		sched_yield();
	if (err == ESRCH)
		return false;
	if (err) {
		char msg[128];
		int len = snprintf(msg, sizeof(msg),
				   "spanalloc: gc: cannot stop thread %d (%s); aborting\n",
				   (int)c->tid, strerrordesc_np(err));

		if (write(2, msg, (size_t)len) < 0)
			abort();
		abort();
	}
	return true;
}

/*
 * After the 5 s warning: each thread that has not stopped, what it was
 * doing as far as the library knows, and where /proc says it is (the
 * system call it waits in, with its stack pointer and PC, or "running").
 * Not stdio, nor malloc: a stopped thread may hold their locks; raw
 * system calls, which are no cancellation points (a cancelled collector
 * would leave the world stopped). A thread still waking from the last
 * stop (stop_sp set) is not listed, one the stop found gone may be.
 */
static void sa_world_tell_late(const struct sa_tcache *self)
{
	for (struct sa_tcache *c = world_threads; c; c = c->gc_next) {
		char path[64], where[160] = "?", msg[320];
		long len = 0, fd;
		int n;

		if (c == self || atomic_load_explicit(&c->stop_sp, memory_order_relaxed))
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)c->tid);
		fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			len = syscall(SYS_read, fd, where, sizeof(where) - 1);
			syscall(SYS_close, fd);
		}
		if (len > 0) {
			where[len] = 0;
			where[strcspn(where, "\n")] = 0;
		}
		n = snprintf(msg, sizeof(msg),
			     "spanalloc: gc: thread %d: nosafe %d, in_fast %d%s, stop_pending %d, taking %d; /proc syscall: %s\n",
			     (int)c->tid, __atomic_load_n(&c->nosafe, __ATOMIC_RELAXED),
			     __atomic_load_n(&c->in_fast, __ATOMIC_RELAXED) & SA_FAST_COUNT,
			     (__atomic_load_n(&c->in_fast, __ATOMIC_RELAXED) & SA_FAST_STOP) ?
			     " (stop noted)" : "",
			     __atomic_load_n(&c->stop_pending, __ATOMIC_RELAXED),
			     atomic_load_explicit(&c->taking, memory_order_relaxed), where);
		if (n > 0 && syscall(SYS_write, 2, msg,
				     (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1) < 0)
			return;
	}
}

/*
 * Stops every registered thread but the caller. Returns how many were
 * stopped. A thread that does not answer within seconds is reported (it
 * blocks the stop signal, or it is stuck inside the library) and waited for.
 */
int sa_world_stop(void)
{
	struct sa_tcache *self = sa_tc;
	struct timespec ts = { .tv_sec = 5 };
	uint32_t n = 0, acks, epoch;
	int warned = 0;

	pthread_mutex_lock(&world_lock);
	atomic_store(&world_acks, 0);
	/* never 0, which means "no stop" to the handler */
	epoch = (atomic_load(&world_epoch) & 0x7fffffff) | 0x80000000;
	atomic_store(&world_stopping, epoch);
	for (struct sa_tcache *c = world_threads; c; c = c->gc_next)
		if (c != self && sa_world_send_stop(c, epoch))
			n++;
	while ((acks = atomic_load(&world_acks)) < n) {
		if (sa_futex(&world_acks, FUTEX_WAIT, acks, &ts) < 0 &&
		    errno == ETIMEDOUT && !warned++) {
			/* not stdio: a stopped thread may hold stderr's lock */
			char msg[128];
			int len = snprintf(msg, sizeof(msg),
					   "spanalloc: gc: %u of %u threads have not stopped after 5 s (does one block signal %d, or handle it itself?)\n",
					   n - acks, n, world_signal);

			if (syscall(SYS_write, 2, msg, (size_t)len) >= 0)
				sa_world_tell_late(self);
		}
	}
	return (int)n;
}

void sa_world_start(void)
{
	atomic_store(&world_stopping, 0);
	atomic_fetch_add(&world_epoch, 1);
	sa_futex(&world_epoch, FUTEX_WAKE, INT32_MAX, NULL);
	pthread_mutex_unlock(&world_lock);
}
