// SPDX-License-Identifier: MIT
//
// binarytrees: the benchmarks game's binary-trees, as tools/gcbench.c runs
// it (a stretch tree of depth N + 1, a long-lived tree of depth N, and
// 2^(N - d + 4) trees of each depth d = 4, 6, ..., N, each checked), on
// Go's own runtime: the reference gcbench.sh puts beside libspanalloc's
// collector and Boehm GC in the same boot. Nodes are two pointers, as
// gcbench.c's; GOGC and GOMAXPROCS as the environment says.
//
// Prints the line gcbench.c prints:
//   BENCH name=binarytrees impl=go wall_s=... cpu_s=... rss_kb=... gcs=...
//         max_pause_ms=... stopped_ms=... p50_pause_ms=... p90_pause_ms=...
//         markers=...
// where a pause is a stop-the-world pause of the runtime (MemStats.PauseNs,
// the last 256) and markers is GOMAXPROCS.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"syscall"
	"time"
)

type node struct {
	left, right *node
}

func bottomUp(depth int) *node {
	n := &node{}
	if depth > 0 {
		n.left = bottomUp(depth - 1)
		n.right = bottomUp(depth - 1)
	}
	return n
}

func (n *node) check() int {
	if n.left == nil {
		return 1
	}
	return 1 + n.left.check() + n.right.check()
}

func treeSize(d int) int {
	return 1<<(d+1) - 1
}

func main() {
	depth := 18
	if len(os.Args) > 2 {
		if d, err := strconv.Atoi(os.Args[2]); err == nil {
			depth = d
		}
	}
	if depth < 6 {
		depth = 6
	}
	wrong := ""
	t0 := time.Now()
	if bottomUp(depth+1).check() != treeSize(depth+1) {
		wrong = " WRONG"
	}
	longLived := bottomUp(depth)
	for d := 4; d <= depth; d += 2 {
		iters := 1 << (depth - d + 4)
		sum := 0
		for i := 0; i < iters; i++ {
			sum += bottomUp(d).check()
		}
		if sum != iters*treeSize(d) {
			wrong = " WRONG"
		}
	}
	if longLived.check() != treeSize(depth) {
		wrong = " WRONG"
	}
	wall := time.Since(t0).Seconds()

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)*1e-6

	n := int(ms.NumGC)
	if n > len(ms.PauseNs) {
		n = len(ms.PauseNs)
	}
	pauses := make([]float64, 0, n)
	max := 0.0
	for i := 0; i < n; i++ {
		p := float64(ms.PauseNs[(int(ms.NumGC)-1-i+len(ms.PauseNs))%len(ms.PauseNs)]) / 1e6
		pauses = append(pauses, p)
		if p > max {
			max = p
		}
	}
	sort.Float64s(pauses)
	q := func(f float64) float64 {
		if len(pauses) == 0 {
			return 0
		}
		return pauses[int(f*float64(len(pauses)-1)+0.5)]
	}
	fmt.Printf("BENCH name=binarytrees impl=go wall_s=%.3f cpu_s=%.3f rss_kb=%d gcs=%d max_pause_ms=%.2f stopped_ms=%.1f p50_pause_ms=%.2f p90_pause_ms=%.2f markers=%d%s\n",
		wall, cpu, ru.Maxrss, ms.NumGC, max, float64(ms.PauseTotalNs)/1e6, q(0.5), q(0.9),
		runtime.GOMAXPROCS(0), wrong)
	if wrong != "" {
		os.Exit(1)
	}
}
