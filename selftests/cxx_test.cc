// SPDX-License-Identifier: GPL-2.0
/*
 * cxx_test: an ordinary C++ program, run with LD_PRELOAD of the drop-in
 * (selftests/programs.sh): standard containers filled and emptied by
 * several threads, objects handed between threads, over-aligned types
 * through aligned new, new[] and delete[], sized delete, nothrow new and
 * std::bad_alloc. It checks its own results, and that its memory came
 * from spanalloc (sa_base, found only when the drop-in is loaded).
 * Exit status 0 when all is well. With --any-allocator (make bench runs it
 * under other allocators too) it does not ask whose memory it has.
 */
#include <dlfcn.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
#include <deque>
#include <condition_variable>

static void *(*sa_base_fn)(const void *);
static bool any_allocator;
static int failures;

#define CHECK(cond) do { if (!(cond)) { \
	std::fprintf(stderr, "cxx_test: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
	failures++; } } while (0)

static bool ours(const void *p)
{
	return any_allocator || (sa_base_fn && sa_base_fn(p) != nullptr);
}

struct alignas(256) Wide {
	unsigned char bytes[300];
};

struct Node {
	std::string name;
	std::vector<int> values;
};

static void worker(int id, std::map<int, std::string> &out)
{
	std::unordered_map<std::string, std::vector<int>> index;
	std::vector<std::unique_ptr<Node>> nodes;

	for (int i = 0; i < 20000; i++) {
		auto n = std::make_unique<Node>();

		n->name = "node-" + std::to_string(id) + "-" + std::to_string(i);
		n->values.assign(static_cast<size_t>(i % 50), i);
		index[n->name].push_back(i);
		nodes.push_back(std::move(n));
		if (i % 3 == 0)
			nodes.erase(nodes.begin() + static_cast<long>(nodes.size() / 2));
	}
	CHECK(index.size() == 20000);
	out[id] = nodes.back()->name;
}

/* A queue of strings from producers to a consumer: frees on other threads. */
static void handoff()
{
	std::deque<std::unique_ptr<std::string>> q;
	std::mutex m;
	std::condition_variable cv;
	bool done = false;
	size_t total = 0;

	std::thread consumer([&] {
		for (;;) {
			std::unique_lock<std::mutex> lk(m);
			cv.wait(lk, [&] { return done || !q.empty(); });
			if (q.empty() && done)
				return;
			auto s = std::move(q.front());
			q.pop_front();
			lk.unlock();
			total += s->size();
		}
	});
	std::vector<std::thread> producers;
	for (int p = 0; p < 3; p++)
		producers.emplace_back([&, p] {
			for (int i = 0; i < 10000; i++) {
				auto s = std::make_unique<std::string>(static_cast<size_t>(i % 300 + p), 'x');
				std::lock_guard<std::mutex> lk(m);
				q.push_back(std::move(s));
				cv.notify_one();
			}
		});
	for (auto &t : producers)
		t.join();
	{
		std::lock_guard<std::mutex> lk(m);
		done = true;
	}
	cv.notify_all();
	consumer.join();
	size_t want = 0;
	for (int p = 0; p < 3; p++)
		for (int i = 0; i < 10000; i++)
			want += static_cast<size_t>(i % 300 + p);
	CHECK(total == want);
}

int main(int argc, char **argv)
{
	any_allocator = argc > 1 && std::string(argv[1]) == "--any-allocator";
	sa_base_fn = reinterpret_cast<void *(*)(const void *)>(dlsym(RTLD_DEFAULT, "sa_base"));
	CHECK(any_allocator || sa_base_fn != nullptr);

	int *one = new int(7);
	CHECK(ours(one));
	delete one;

	/* aligned new, single and array, and their deletes */
	Wide *w = new Wide;
	CHECK(reinterpret_cast<uintptr_t>(w) % alignof(Wide) == 0);
	CHECK(ours(w));
	delete w;
	Wide *wa = new Wide[7];
	CHECK(reinterpret_cast<uintptr_t>(wa) % alignof(Wide) == 0);
	delete[] wa;
	auto *nt = new (std::nothrow) Wide[3];
	CHECK(nt && reinterpret_cast<uintptr_t>(nt) % alignof(Wide) == 0);
	delete[] nt;

	/* a request no heap can meet: bad_alloc, or NULL from nothrow */
	bool threw = false;
	try {
		size_t huge = SIZE_MAX / 4;
		char *p = new char[huge];
		delete[] p;
	} catch (const std::bad_alloc &) {
		threw = true;
	}
	CHECK(threw);
	CHECK(new (std::nothrow) char[SIZE_MAX / 4] == nullptr);

	std::map<int, std::string> results;
	std::mutex rm;
	std::vector<std::thread> threads;
	for (int t = 0; t < 4; t++)
		threads.emplace_back([t, &results, &rm] {
			std::map<int, std::string> mine;
			worker(t, mine);
			std::lock_guard<std::mutex> lk(rm);
			results.insert(mine.begin(), mine.end());
		});
	for (auto &t : threads)
		t.join();
	CHECK(results.size() == 4);
	for (auto &r : results)
		CHECK(r.second == "node-" + std::to_string(r.first) + "-19999");
	handoff();

	std::vector<std::string> big(100000, std::string(40, 'y'));
	CHECK(ours(big.data()));
	big.clear();
	big.shrink_to_fit();

	if (failures)
		std::fprintf(stderr, "cxx_test: %d failures\n", failures);
	else
		std::printf("cxx_test: all checks passed\n");
	return failures ? 1 : 0;
}
