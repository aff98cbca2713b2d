// SPDX-License-Identifier: GPL-2.0
/*
 * gc_roots_test: the collector in ordinary multi-threaded C programs.
 * What is a root (a new thread's start argument, threads from before
 * sa_gc_init, thread-local storage, end pointers, alternate signal stacks,
 * coroutine stacks, root ranges the gray stacks have no room for, and the
 * library's own sweeper thread, which is not one), how the
 * world is stopped (foreign signals, a configurable signal, threads that
 * block it, system calls), the answers the API gives while sweeps run, and
 * running out of memory at the heap's limit. Each test runs in its own
 * process (the harness forks), so each has its own collected heap.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include "spanalloc.h"
#include "kselftest_harness.h"
#include "util.h"
#include "gc_util.h"

#define NLIST	200
#define GARBAGE_ID	(1ULL << 40)

/* Garbage nodes: the class of struct node, reusing any slot freed wrongly. */
static __attribute__((noinline)) void churn_nodes(int n)
{
	for (int i = 0; i < n; i++)
		new_node(GARBAGE_ID + (uint64_t)i, NULL, NULL);
}

/* A list of NLIST nodes, ids NLIST - 1 down to 0 from its head. */
static struct node *make_list(void)
{
	struct node *n = NULL;

	for (int i = 0; i < NLIST; i++)
		n = new_node((uint64_t)i, n, NULL);
	return n;
}

/* Nodes of the list that are freed or overwritten: 0 when it survived. */
static int list_bad(const struct node *n)
{
	int bad = 0;

	for (int i = NLIST - 1; i >= 0; i--, n = n ? n->left : NULL)
		if (!n || sa_base(n) != n || n->id != (uint64_t)i || !node_ok(n))
			bad++;
	return bad;
}

/* Churns and collects with the caller's frames wiped, rounds times. */
static void collect_hard(int rounds)
{
	for (int i = 0; i < rounds; i++) {
		churn_nodes(20000);
		clean_collect();
	}
	churn_nodes(20000);
}

static void wait_for(atomic_int *v, int want)
{
	while (atomic_load(v) != want)
		usleep(1000);
}

/* --- a new thread's start argument ------------------------------------- */

static uintptr_t arg_h;
static atomic_int arg_go;
static int arg_bad = -1;
static pthread_t arg_t;

static void *arg_thread(void *arg)
{
	/* allocates nothing: before, that meant never registered */
	wait_for(&arg_go, 1);
	arg_bad = list_bad(arg);
	return NULL;
}

static void arg_make(void)
{
	arg_h = hide(make_list());
}

static void arg_start(void)
{
	pthread_create(&arg_t, NULL, arg_thread, show(arg_h));
}

TEST_F(gc, a_new_threads_start_argument_is_a_root)
{
	gc_start(_metadata);
	deep(arg_make);
	deep(arg_start);
	collect_hard(3);
	atomic_store(&arg_go, 1);
	pthread_join(arg_t, NULL);
	EXPECT_EQ(0, arg_bad);
}

/* --- threads from before sa_gc_init ------------------------------------ */

static _Atomic uintptr_t handoff[2];
static atomic_int before_go;
static int before_bad[2] = { -1, -1 };

static void *before_thread(void *arg)
{
	int i = (int)(intptr_t)arg;
	volatile uintptr_t keep;

	if (i == 1)
		sa_free(sa_alloc(64));	/* this one allocated before */
	while (!(keep = atomic_exchange(&handoff[i], 0)))
		usleep(1000);
	wait_for(&before_go, 1);
	before_bad[i] = list_bad((const struct node *)keep);
	return NULL;
}

static void before_hand(void)
{
	for (int i = 0; i < 2; i++) {
		atomic_store(&handoff[i], (uintptr_t)make_list());
		while (atomic_load(&handoff[i]))
			usleep(1000);
	}
}

TEST_F(gc, threads_from_before_sa_gc_init_are_registered_by_it)
{
	pthread_t t[2];

	for (int i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, before_thread, (void *)(intptr_t)i));
	usleep(100000);
	gc_start(_metadata);
	deep(before_hand);
	collect_hard(3);
	atomic_store(&before_go, 1);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		EXPECT_EQ(0, before_bad[i]) TH_LOG("thread %d", i);
	}
}

/* --- thread-local storage ---------------------------------------------- */

static __thread struct node *tls_list;
static pthread_key_t tls_key, tls_key_far;	/* far: past the first 32 */
static void **(*module_slot)(void);
static atomic_int tls_state;
static int tls_thread_bad = -1;

static void tls_make_main(void)
{
	tls_list = make_list();
	pthread_setspecific(tls_key, make_list());
	pthread_setspecific(tls_key_far, make_list());
	if (module_slot)
		*module_slot() = make_list();
}

static void *tls_thread(void *arg)
{
	(void)arg;
	tls_list = make_list();
	pthread_setspecific(tls_key, make_list());
	pthread_setspecific(tls_key_far, make_list());
	*module_slot() = make_list();
	atomic_store(&tls_state, 1);
	wait_for(&tls_state, 2);
	tls_thread_bad = list_bad(tls_list) + list_bad(pthread_getspecific(tls_key)) +
			 list_bad(pthread_getspecific(tls_key_far)) + list_bad(*module_slot());
	return NULL;
}

/* A module loaded with dlopen: its TLS is allocated when first used. */
static void *tls_open_module(void)
{
	char path[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);

	if (n <= 0)
		return NULL;
	path[n] = 0;
	slash = strrchr(path, '/');
	strcpy(slash + 1, "gc_tls_module.so");
	return dlopen(path, RTLD_NOW);
}

TEST_F(gc, thread_local_storage_is_a_root)
{
	void *mod = tls_open_module();
	pthread_t t;

	ASSERT_NE(NULL, mod) TH_LOG("dlopen gc_tls_module.so: %s", dlerror());
	module_slot = (void **(*)(void))dlsym(mod, "gc_tls_slot");
	ASSERT_NE(NULL, module_slot);
	ASSERT_EQ(0, pthread_key_create(&tls_key, NULL));
	/* glibc keeps the first 32 keys' values in the thread, others apart */
	do {
		ASSERT_EQ(0, pthread_key_create(&tls_key_far, NULL));
	} while (tls_key_far < 40);
	gc_start(_metadata);
	deep(tls_make_main);
	ASSERT_EQ(0, pthread_create(&t, NULL, tls_thread, NULL));
	wait_for(&tls_state, 1);
	collect_hard(3);
	EXPECT_EQ(0, list_bad(tls_list)) TH_LOG("__thread in the first thread");
	EXPECT_EQ(0, list_bad(pthread_getspecific(tls_key))) TH_LOG("pthread_setspecific");
	EXPECT_EQ(0, list_bad(pthread_getspecific(tls_key_far))) TH_LOG("pthread_setspecific, key %u",
								       tls_key_far);
	EXPECT_EQ(0, list_bad(*module_slot())) TH_LOG("__thread of a dlopen'ed module");
	atomic_store(&tls_state, 2);
	pthread_join(t, NULL);
	EXPECT_EQ(0, tls_thread_bad) TH_LOG("the same in another thread");
}

/* --- end pointers ------------------------------------------------------- */

/* data: a root, holding only an end pointer (volatile: never read back) */
static volatile uintptr_t end_ptr;
static uintptr_t end_h;

static void end_make(void)
{
	unsigned char *p = sa_alloc(64);

	memset(p, 0xe7, 64);
	end_ptr = (uintptr_t)p + 64;
	end_h = hide(p);
}

static int end_intact(void)
{
	const unsigned char *p = show(end_h);

	if (sa_base(p) != p)
		return 0;
	for (int i = 0; i < 64; i++)
		if (p[i] != 0xe7)
			return 0;
	return 1;
}

static __attribute__((noinline)) void churn_64(void)
{
	for (int i = 0; i < 20000; i++)
		memset(sa_alloc(64), 0x11, 64);
}

TEST_F(gc, a_pointer_just_past_an_object_keeps_it_unless_switched_off)
{
	gc_start(_metadata);
	deep(end_make);
	for (int i = 0; i < 3; i++) {
		churn_64();
		clean_collect();
	}
	churn_64();
	EXPECT_TRUE(end_intact());
	/* switched off: only the end pointer is left, and the object goes */
	EXPECT_EQ(1, sa_gc_set_end_pointers(0));
	deep(end_make);
	clean_collect();
	EXPECT_FALSE(alive(end_h));
	end_ptr = 0;
}

/* --- the heap's first address ------------------------------------------ */

static uintptr_t first_h;

static void first_make(void)
{
	struct node *holder = new_node(0, NULL, NULL);	/* the first object */

	holder->left = make_list();
	first_h = hide(holder);
}

/*
 * The first object a collected heap hands out is often the root of a
 * program's first big structure. Its address must not be the heap's base,
 * which the library holds everywhere (binary-trees kept its whole stretch
 * tree alive to the end through such a word).
 */
TEST_F(gc, the_first_object_is_not_kept_by_the_heaps_own_base_address)
{
	uintptr_t base = 0;
	FILE *f;
	char line[512];

	gc_start(_metadata);
	deep(first_make);
	f = fopen("/proc/self/maps", "r");
	ASSERT_NE(NULL, f);
	while (!base && fgets(line, sizeof(line), f))
		if (strstr(line, SA_DEV))
			base = strtoul(line, NULL, 16);
	fclose(f);
	ASSERT_NE(0, base);
	EXPECT_NE(base, (uintptr_t)show(first_h) & ~(uintptr_t)8191) TH_LOG("the first object is at the heap's base");
	for (int i = 0; i < 3; i++)
		clean_collect();
	EXPECT_FALSE(alive(first_h));
}

/* --- an alternate signal stack ----------------------------------------- */

/*
 * In a handler that waits for a collection: ThreadSanitizer runs every
 * handler with all signals blocked, so the stop signal is let through.
 */
static void stop_signal_unblocked(void)
{
#ifdef __SANITIZE_THREAD__
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, sa_gc_get_signal());
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
#endif
}

static atomic_int alt_state;
static int alt_bad = -1;

static void alt_handler(int sig)
{
	volatile uintptr_t keep = (uintptr_t)make_list();

	(void)sig;
	stop_signal_unblocked();
	atomic_store(&alt_state, 1);
	wait_for(&alt_state, 2);
	alt_bad = list_bad((const struct node *)keep);
}

static void *alt_thread(void *arg)
{
	stack_t ss = { .ss_size = 256 * 1024 };
	struct sigaction sa = { .sa_handler = alt_handler, .sa_flags = SA_ONSTACK };

	(void)arg;
	ss.ss_sp = malloc(ss.ss_size);	/* the C library's: not scanned */
	if (!ss.ss_sp || sigaltstack(&ss, NULL) || sigaction(SIGUSR1, &sa, NULL))
		return NULL;
	raise(SIGUSR1);
	return NULL;
}

TEST_F(gc, a_thread_on_its_alternate_signal_stack_is_scanned_there)
{
	pthread_t t;

	gc_start(_metadata);
	ASSERT_EQ(0, pthread_create(&t, NULL, alt_thread, NULL));
	wait_for(&alt_state, 1);
	collect_hard(3);
	atomic_store(&alt_state, 2);
	pthread_join(t, NULL);
	EXPECT_EQ(0, alt_bad);
}

/* --- the library's own sweeper thread ---------------------------------- */

static atomic_int sw_state;
static uintptr_t sw_hidden;
static struct node *volatile sw_root;	/* a global: a root */

/* Runs on the sweeper: holds the object on its stack while it is stopped. */
static void sw_handler(int sig)
{
	volatile uintptr_t keep = (uintptr_t)show(sw_hidden);
	int saved = errno;	/* usleep, in wait_for, may set it */

	(void)sig;
	stop_signal_unblocked();
	atomic_store(&sw_state, 1);
	wait_for(&sw_state, 2);
	(void)keep;
	errno = saved;
}

/* The thread named name ("sa-sweeper"), or 0. */
static pid_t thread_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	pid_t tid = 0;

	while (d && !tid && (e = readdir(d))) {
		char path[300], comm[32] = "";
		FILE *f;

		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "r");
		if (f && fgets(comm, sizeof(comm), f) && !strncmp(comm, name, strlen(name)))
			tid = atoi(e->d_name);
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return tid;
}

static void make_sw_object(void)
{
	sw_root = new_node(7, NULL, NULL);
	sw_hidden = hide(sw_root);
}

/*
 * The background sweeper is stopped with the program's threads, but holds
 * no program pointer: its stack is no root. A word on it that looks like a
 * pointer (here planted by a signal handler it runs while stopped; in
 * gc_test's ten-million-node list, a stale one) keeps nothing alive.
 */
TEST_F(gc, the_sweepers_stack_is_not_a_root)
{
	struct sigaction sa = { .sa_handler = sw_handler };
	pid_t sweeper = 0;

	gc_start(_metadata);
	deep(make_sw_object);
	clean_collect();	/* the first cycle starts the sweeper */
	ASSERT_TRUE(alive(sw_hidden));
	for (int i = 0; i < 1000 && !(sweeper = thread_named("sa-sweeper")); i++)
		usleep(1000);
	ASSERT_NE(0, sweeper);
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	ASSERT_EQ(0, syscall(SYS_tgkill, getpid(), sweeper, SIGUSR1));
	wait_for(&sw_state, 1);
	sw_root = NULL;
	clean_collect();
	EXPECT_FALSE(alive(sw_hidden));
	atomic_store(&sw_state, 2);
}

/* --- a coroutine stack -------------------------------------------------- */

#define CO_STACK	(256 * 1024)
static ucontext_t co_back, co_ctx;
static atomic_int co_state;
static int co_bad_self = -1, co_bad_stopped = -1;

static void co_main(void)
{
	volatile uintptr_t keep = (uintptr_t)make_list();

	/* collected by this thread, running on the coroutine's stack */
	collect_hard(2);
	co_bad_self = list_bad((const struct node *)keep);
	/* and stopped there while another thread collects */
	atomic_store(&co_state, 1);
	wait_for(&co_state, 2);
	co_bad_stopped = list_bad((const struct node *)keep);
}

static void *co_thread(void *arg)
{
	char *stack = malloc(CO_STACK);		/* the C library's: not scanned */

	(void)arg;
	if (!stack || getcontext(&co_ctx))
		return NULL;
	co_ctx.uc_stack.ss_sp = stack;
	co_ctx.uc_stack.ss_size = CO_STACK;
	co_ctx.uc_link = &co_back;
	makecontext(&co_ctx, co_main, 0);
	sa_gc_set_stack(stack, stack + CO_STACK);
	swapcontext(&co_back, &co_ctx);
	sa_gc_set_stack(NULL, NULL);
	free(stack);
	return NULL;
}

TEST_F(gc, a_coroutine_stack_the_program_names_is_scanned)
{
	pthread_t t;

	gc_start(_metadata);
	EXPECT_EQ(-1, sa_gc_set_stack(&t, NULL));
	EXPECT_EQ(EINVAL, errno);
	ASSERT_EQ(0, pthread_create(&t, NULL, co_thread, NULL));
	wait_for(&co_state, 1);
	collect_hard(3);
	atomic_store(&co_state, 2);
	pthread_join(t, NULL);
	EXPECT_EQ(0, co_bad_self);
	EXPECT_EQ(0, co_bad_stopped);
}

/* --- root ranges the gray stacks have no room for ---------------------- */

#define NROOTS	4000

static uintptr_t *roots_area;	/* mmap'ed: scanned only as root ranges */

static void roots_make(void)
{
	for (int i = 0; i < NROOTS; i++) {
		roots_area[i * 2] = (uintptr_t)new_node((uint64_t)i, NULL, NULL);
		roots_area[i * 2 + 1] = 0;
	}
}

/*
 * 4000 registered ranges overflow the collector's gray stack; with the
 * address space limited, it cannot grow, and the ranges that do not fit
 * must still be scanned.
 */
TEST_F(gc, root_ranges_are_scanned_when_the_gray_stack_cannot_grow)
{
	struct rlimit rl;
	int bad = 0, pid, status;

	/* the smallest gray stacks: 512 entries, the pool 2 packets of 256 */
	setenv("SPANALLOC_GC_GRAYMAX", "512", 1);
	gc_start(_metadata);
	sa_gc_collect();	/* the collector's threads and stacks exist now */
	roots_area = mmap(NULL, NROOTS * 16, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, roots_area);
	for (int i = 0; i < NROOTS; i++)
		ASSERT_EQ(0, sa_gc_add_roots(&roots_area[i * 2], &roots_area[i * 2 + 1]));
	deep(roots_make);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		FILE *f = fopen("/proc/self/statm", "r");
		unsigned long pages = 0;

		if (!f || fscanf(f, "%lu", &pages) != 1)
			_exit(2);
		fclose(f);
		/* no new mapping from here on */
		rl.rlim_cur = rl.rlim_max = pages * (unsigned long)getpagesize();
		if (setrlimit(RLIMIT_AS, &rl))
			_exit(3);
		clean_collect();
		churn_nodes(NROOTS * 2);
		for (int i = 0; i < NROOTS; i++) {
			const struct node *n = (const struct node *)roots_area[i * 2];

			if (n->id != (uint64_t)i || !node_ok(n))
				bad++;
		}
		_exit(bad ? 1 : 0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		TH_LOG("child status %#x", status);
}

/* --- foreign signals ---------------------------------------------------- */

static atomic_int foreign_seen[2];
static atomic_int foreign_stop;

static void on_foreign(int sig)
{
	atomic_fetch_add(&foreign_seen[sig == SIGPWR ? 0 : 1], 1);
}

static void *busy_thread(void *arg)
{
	(void)arg;
	while (!atomic_load(&foreign_stop)) {
		churn_nodes(100);
#ifdef __SANITIZE_THREAD__
		/*
		 * ThreadSanitizer delivers the foreign signals (SIGPWR and
		 * the like) only in a call it intercepts.
		 */
		usleep(0);
#endif
	}
	return NULL;
}

static int wait_count(atomic_int *v, int want)
{
	for (int i = 0; i < 10000 && atomic_load(v) < want; i++)
		usleep(1000);
	return atomic_load(v);
}

TEST_F(gc, foreign_signals_reach_the_handler_installed_before)
{
	int rt = sa_gc_get_signal();	/* the default stop signal */
	pthread_t t;

	signal(SIGPWR, on_foreign);
	signal(rt, on_foreign);
	gc_start(_metadata);
	ASSERT_EQ(0, pthread_create(&t, NULL, busy_thread, NULL));
	alarm(120);	/* a parked thread would hang the next cycle */
	for (int i = 1; i <= 20; i++) {
		pthread_kill(t, SIGPWR);
		EXPECT_EQ(i, wait_count(&foreign_seen[0], i));
		pthread_kill(t, rt);
		EXPECT_EQ(i, wait_count(&foreign_seen[1], i));
		if (i % 5 == 0)
			sa_gc_collect();
	}
	atomic_store(&foreign_stop, 1);
	pthread_join(t, NULL);
	alarm(0);
}

TEST_F(gc, the_stop_signal_is_configurable)
{
	struct sigaction sa;
	pthread_t t;

	int dflt = sa_gc_get_signal();

	ASSERT_LT(0, dflt);
	setenv("SPANALLOC_GC_SIGNAL", "SIGKILL", 1);
	errno = 0;
	EXPECT_EQ(-1, sa_gc_get_signal());
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, sa_gc_init());
	EXPECT_EQ(EINVAL, errno);
	setenv("SPANALLOC_GC_SIGNAL", "SIGUSR2", 1);
	EXPECT_EQ(SIGUSR2, sa_gc_get_signal());
	gc_start(_metadata);
	EXPECT_EQ(SIGUSR2, sa_gc_get_signal());
	ASSERT_EQ(0, sigaction(SIGUSR2, NULL, &sa));
	EXPECT_TRUE(sa.sa_flags & SA_SIGINFO);
	ASSERT_EQ(0, sigaction(dflt, NULL, &sa));
	EXPECT_TRUE(sa.sa_handler == SIG_DFL);
#ifdef __SANITIZE_THREAD__
	/*
	 * ThreadSanitizer would hold SIGUSR2 back from the library's own
	 * sweeper, waiting in pthread_cond_wait: why its default is SIGSYS.
	 */
	(void)t;
	return;
#endif
	ASSERT_EQ(0, pthread_create(&t, NULL, busy_thread, NULL));
	alarm(120);
	for (int i = 0; i < 3; i++)
		sa_gc_collect();
	atomic_store(&foreign_stop, 1);
	pthread_join(t, NULL);
	alarm(0);
}

/* --- threads and the stop signal's mask -------------------------------- */

static int blocked_errno;
static void *blocked_ptr = (void *)1;

static void *blocked_thread(void *arg)
{
	(void)arg;
	errno = 0;
	blocked_ptr = sa_alloc(64);
	blocked_errno = errno;
	return NULL;
}

static atomic_int masked_state;
static int masked_bad = -1;

static void *masked_thread(void *arg)
{
	volatile uintptr_t keep = (uintptr_t)make_list();
	sigset_t all;

	(void)arg;
	/* a thread that wants no signals: the stop signal stays open */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	atomic_store(&masked_state, 1);
	wait_for(&masked_state, 2);
	masked_bad = list_bad((const struct node *)keep);
	return NULL;
}

TEST_F(gc, a_thread_that_blocks_the_stop_signal_is_refused_not_hung)
{
	sigset_t set, old;
	pthread_t t;

	gc_start(_metadata);
	/* blocked behind the library's back, inherited by the new thread */
	sigemptyset(&set);
	sigaddset(&set, sa_gc_get_signal());
	ASSERT_EQ(0, syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, &old, _NSIG / 8));
	ASSERT_EQ(0, pthread_create(&t, NULL, blocked_thread, NULL));
	ASSERT_EQ(0, syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, _NSIG / 8));
	pthread_join(t, NULL);
	EXPECT_EQ(NULL, blocked_ptr);
	EXPECT_EQ(EINVAL, blocked_errno);
	/* blocking every signal with pthread_sigmask leaves it open */
	ASSERT_EQ(0, pthread_create(&t, NULL, masked_thread, NULL));
	wait_for(&masked_state, 1);
	alarm(120);
	collect_hard(2);
	alarm(0);
	atomic_store(&masked_state, 2);
	pthread_join(t, NULL);
	EXPECT_EQ(0, masked_bad);
}

static atomic_int waiter_state;
static int waiter_sig;

static void *waiter_thread(void *arg)
{
	sigset_t all;

	(void)arg;
	sa_free(sa_alloc(16));
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	atomic_store(&waiter_state, 1);
	/* the stop signal is not among those it takes */
	sigwait(&all, &waiter_sig);
	return NULL;
}

TEST_F(gc, a_thread_waiting_in_sigwait_for_every_signal_still_stops)
{
	pthread_t t;

	gc_start(_metadata);
	ASSERT_EQ(0, pthread_create(&t, NULL, waiter_thread, NULL));
	wait_for(&waiter_state, 1);
	usleep(100000);
	alarm(120);
	collect_hard(2);
	alarm(0);
	pthread_kill(t, SIGUSR1);
	pthread_join(t, NULL);
	EXPECT_EQ(SIGUSR1, waiter_sig);
}

static atomic_int early_state;

static void *early_blocker(void *arg)
{
	sigset_t set;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, sa_gc_get_signal());
	/* a manual heap: nothing stops it blocking the signal yet */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	atomic_store(&early_state, 1);
	wait_for(&early_state, 2);
	return NULL;
}

TEST_F(gc, sa_gc_init_refuses_a_thread_that_blocks_the_stop_signal)
{
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, early_blocker, NULL));
	wait_for(&early_state, 1);
	EXPECT_EQ(-1, sa_gc_init());
	EXPECT_EQ(EINVAL, errno);
	atomic_store(&early_state, 2);
	pthread_join(t, NULL);
	/* with that thread gone, the heap can be collected */
	gc_start(_metadata);
	sa_gc_collect();
}

/* --- system calls across a stop, without retrying on EINTR ------------- */

static int sys_pipe[2];
static atomic_int sys_ready, sys_poll_done;
static ssize_t sys_read = -2;
static int sys_poll = -2, sys_poll_errno;

static void *read_thread(void *arg)
{
	char c;

	(void)arg;
	sa_free(sa_alloc(16));
	atomic_fetch_add(&sys_ready, 1);
	sys_read = read(sys_pipe[0], &c, 1);
	return NULL;
}

static void *poll_thread(void *arg)
{
	(void)arg;
	sa_free(sa_alloc(16));
	atomic_fetch_add(&sys_ready, 1);
	sys_poll = poll(NULL, 0, 60000);
	sys_poll_errno = errno;
	atomic_store(&sys_poll_done, 1);
	return NULL;
}

/* As the documentation says: read restarts, poll says EINTR. */
TEST_F(gc, a_stop_restarts_read_and_interrupts_poll_as_documented)
{
	pthread_t r, p;

	gc_start(_metadata);
	ASSERT_EQ(0, pipe(sys_pipe));
	ASSERT_EQ(0, pthread_create(&r, NULL, read_thread, NULL));
	ASSERT_EQ(0, pthread_create(&p, NULL, poll_thread, NULL));
	wait_for(&sys_ready, 2);
	/* collect until poll has been interrupted (it waits 60 s otherwise) */
	for (int i = 0; i < 300 && !atomic_load(&sys_poll_done); i++) {
		usleep(100000);
		sa_gc_collect();
	}
	ASSERT_EQ(1, write(sys_pipe[1], "x", 1));
	pthread_join(r, NULL);
	pthread_join(p, NULL);
	EXPECT_EQ(1, sys_read);
	EXPECT_EQ(-1, sys_poll);
	EXPECT_EQ(EINTR, sys_poll_errno);
}

/* --- sa_base while sweeps run ------------------------------------------ */

#define NSTABLE	512
static struct node *stable[NSTABLE];	/* data: roots */
static atomic_int base_stop;
static atomic_long base_calls, base_wrong;

static void *base_reader(void *arg)
{
	long calls = 0, wrong = 0;

	(void)arg;
	while (!atomic_load(&base_stop)) {
		for (int i = 0; i < NSTABLE; i++)
			wrong += sa_base(stable[i]) != stable[i];
		calls += NSTABLE;
	}
	atomic_fetch_add(&base_calls, calls);
	atomic_fetch_add(&base_wrong, wrong);
	return NULL;
}

TEST_F_TIMEOUT(gc, a_live_object_always_resolves_while_its_span_is_swept, 300)
{
	pthread_t t[2];

	gc_start(_metadata);
	/* stable objects spread over spans full of garbage */
	for (int i = 0; i < NSTABLE; i++) {
		stable[i] = new_node((uint64_t)i, NULL, NULL);
		churn_nodes(30);
	}
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, base_reader, NULL));
	for (int cycle = 0; cycle < 60; cycle++) {
		churn_nodes(NSTABLE * 30);
		sa_gc_collect();
	}
	atomic_store(&base_stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	EXPECT_EQ(0, atomic_load(&base_wrong))
		TH_LOG("%ld wrong answers in %ld calls", atomic_load(&base_wrong),
		       atomic_load(&base_calls));
	EXPECT_GT(atomic_load(&base_calls), 100000);
}

/* --- out of memory at the heap's limit --------------------------------- */

/* The library's descriptor of the device: the heap's limit is set on it. */
static int heap_fd(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int fd = -1;

	while (d && (e = readdir(d))) {
		char path[300], target[64];
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		if (n > 0 && (target[n] = 0, !strcmp(target, SA_DEV)))
			fd = atoi(e->d_name);
	}
	if (d)
		closedir(d);
	return fd;
}

TEST_F_TIMEOUT(gc, at_the_heap_limit_a_collection_runs_before_an_allocation_fails, 300)
{
	struct spanalloc_limit lim = { .size = sizeof(lim), .limit = 32 << 20 };
	void *last = NULL;
	int fd, fails = 0;

	gc_start(_metadata);
	fd = heap_fd();
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, sa_t_ioctl(fd, SPANALLOC_IOC_SET_LIMIT, &lim));
	sa_gc_set_percent(-1);	/* no collection but the one running out makes */
	/* 8 times the limit in garbage: small objects, then large ones */
	for (int i = 0; i < (256 << 20) / 1024; i++) {
		void **p = sa_alloc(1024);

		fails += !p;
		if (p)
			p[0] = last;	/* a short chain: the rest is garbage */
		last = i % 64 ? p : NULL;
	}
	EXPECT_EQ(0, fails) TH_LOG("small objects refused");
	fails = 0;
	for (int i = 0; i < 256; i++)
		fails += !sa_alloc_noscan(1 << 20);
	EXPECT_EQ(0, fails) TH_LOG("large objects refused");
	/* and a live heap over the limit still fails */
	fails = 0;
	for (int i = 0; i < 64 && !fails; i++) {
		void **p = sa_alloc(1 << 20);

		if (!p)
			fails = 1;
		else
			p[0] = last, last = p;
	}
	EXPECT_EQ(1, fails);
	EXPECT_EQ(ENOMEM, errno);
}

/* --- an idle thread's spans ---------------------------------------------- */

static atomic_int idle_state;

static void *idle_thread(void *arg)
{
	void *objs[256];

	(void)arg;
	/*
	 * 256 objects of 248 B (256 with the end pad) fill 4 two-page spans
	 * of 64 (sizeclass.c): 3 are kept aside, 6 of the 8 held pages
	 */
	for (int i = 0; i < 256; i++)
		objs[i] = sa_alloc_noscan(248);
	for (int i = 0; i < 256; i++)
		sa_free(objs[i]);
	atomic_store(&idle_state, 1);
	wait_for(&idle_state, 2);	/* idle: never back in the allocator */
	return NULL;
}

/*
 * A thread that keeps spans aside and then idles does not pin them: a
 * collection gives back what was kept across two of them, and the active
 * span of a thread that made no refill across two.
 */
TEST_F(gc, an_idle_threads_spans_go_back_after_two_collections)
{
	unsigned int sc = SPANALLOC_SPANCLASS(sa_size_class(256), 1);
	struct spanalloc_class_stats cs[SPANALLOC_NUM_SPANCLASSES];
	struct spanalloc_stats kst;
	uint32_t before;
	pthread_t t;

	gc_start(_metadata);
	ASSERT_EQ(0, pthread_create(&t, NULL, idle_thread, NULL));
	wait_for(&idle_state, 1);
	ASSERT_EQ(0, sa_kernel_stats(&kst, cs));
	before = cs[sc].owned;
	for (int i = 0; i < 3; i++)
		sa_gc_collect();
	ASSERT_EQ(0, sa_kernel_stats(&kst, cs));
	TH_LOG("spans of 256 B noscan held by threads: %u before, %u after",
	       before, cs[sc].owned);
	EXPECT_EQ(4, before);
	EXPECT_EQ(0, cs[sc].owned);
	atomic_store(&idle_state, 2);
	pthread_join(t, NULL);
}

/* --- threads leaving while collections run ----------------------------- */

static atomic_int leave_stop;

static void *leave_short(void *arg)
{
	void *big = sa_alloc_noscan(256 << 10);	/* dead at once: freed stopped */

	(void)arg;
	(void)big;
	for (int i = 0; i < 200; i++)
		(void)sa_alloc(48);
	return NULL;	/* its cache goes, under the library's lock */
}

static void *leave_spawner(void *arg)
{
	(void)arg;
	while (!atomic_load(&leave_stop)) {
		pthread_t t;

		if (pthread_create(&t, NULL, leave_short, NULL) == 0)
			pthread_join(t, NULL);
	}
	return NULL;
}

/*
 * A collection frees dead large objects and span records with the world
 * stopped, under the lock a leaving thread takes to unlink its cache: a
 * thread stopped holding it would deadlock the collection.
 */
TEST_F_TIMEOUT(gc, threads_leaving_while_collections_run_never_deadlock, 300)
{
#ifdef __SANITIZE_THREAD__
	const int cycles = 40;	/* each thread costs ThreadSanitizer dearly */
#else
	const int cycles = 300;
#endif
	pthread_t sp[4];

	gc_start(_metadata);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(0, pthread_create(&sp[i], NULL, leave_spawner, NULL));
	alarm(240);	/* a deadlock kills the test */
	for (int i = 0; i < cycles; i++)
		sa_gc_collect();
	alarm(0);
	atomic_store(&leave_stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(sp[i], NULL);
}

TEST_HARNESS_MAIN
