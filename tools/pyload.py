# SPDX-License-Identifier: MIT
# pyload: a Python workload for make bench (scripts/realbench.sh): three
# threads each build and drop small objects (dicts of strings, lists,
# tuples, bytes), keeping a share alive, as an ordinary program's data
# structures come and go. Run with PYTHONMALLOC=malloc, so that the
# allocator under test serves every object.
import sys
import threading

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200000


def work(seed):
    keep = []
    for i in range(N):
        rec = {"id": i, "name": "item-%d-%d" % (seed, i), "tags": [seed, i, i % 7],
               "blob": bytes(i % 61), "pair": (i, str(i))}
        if i % 3 == 0:
            keep.append(rec)
        if len(keep) > 20000:
            del keep[: len(keep) // 2]
    return len(keep)


threads = [threading.Thread(target=work, args=(s,)) for s in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
