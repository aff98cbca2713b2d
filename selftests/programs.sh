#!/bin/sh
# programs.sh: real programs under the drop-in (LD_PRELOAD of
# libspanalloc-malloc.so, SPANALLOC_REQUIRE=1 so that nothing runs on
# glibc's allocator unnoticed), one TAP result each. A program fails its
# check if it exits non-zero, if it or the library reports anything
# (spanalloc prints only on misuse or corruption), or if the module still
# holds any of its heaps, spans or pages after it exited. Run as root where
# /dev/spanalloc exists (scripts/vm-run); the programs come from Debian:
# python3.11 with libpython3.11-testsuite, sqlite3, redis-server and
# redis-tools (make check installs them).
#   programs.sh [python|sqlite|redis|cxx]...    (default: all)
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$repo/build
lib=$build/lib/libspanalloc-malloc.so
tmp=$(mktemp -d /tmp/programs.XXXXXX)
[ $# -gt 0 ] || set -- cxx sqlite redis python
n=0 rc=0
# CPython's own tests that allocate hardest; test_multiprocessing_fork
# forks workers from a threaded parent. Run with PYTHONMALLOC=malloc, so
# every object is spanalloc's, not pymalloc's. PY_IGNORE: test cases that
# fail in the VM whatever the allocator (test_unpickle_module_race writes
# .pyc files into /usr/lib, read-only there).
PY_TESTS=${PY_TESTS:-"test_dict test_list test_set test_unicode test_bytes test_json test_pickle test_threading test_gc test_weakref test_multiprocessing_fork"}
PY_IGNORE=${PY_IGNORE:-test_unpickle_module_race}
# Requests per redis-benchmark test (REDIS_REQUESTS; the one during BGSAVE
# makes a quarter as many): the debug kernel makes fewer, in a tenth of
# the time it would take.
REDIS_REQUESTS=${REDIS_REQUESTS:-20000}
# Test modules run in PY_JOBS worker processes (forked and exec'd under the
# drop-in too): one at a time leaves the guest's other CPUs idle.
PY_JOBS=${PY_JOBS:-2}

echo "TAP version 13"
echo "1..$#"
# the servers listen on loopback, which a bare VM may not have up
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null

under() {
	env LD_PRELOAD="$lib" SPANALLOC_REQUIRE=1 "$@"
}

# result NAME LOG STATUS: one TAP line, the log's tail on failure.
result() {
	name=$1 log=$2 st=$3 why=
	n=$((n + 1))
	[ "$st" = 0 ] || why="exit status $st"
	if [ -z "$why" ] && grep -q '^spanalloc:' "$log"; then
		why="spanalloc reported a problem"
	fi
	if [ -z "$why" ] && ! "$build/selftests/heaps_gone" >> "$log" 2>&1; then
		why="the module still holds memory of the program"
	fi
	if [ -z "$why" ]; then
		echo "ok $n $name"
	else
		echo "not ok $n $name: $why"
		tail -n 30 "$log" | sed 's/^/# /'
		rc=1
	fi
}

run_cxx() {
	under "$build/selftests/cxx_test" > "$tmp/cxx.log" 2>&1
	result "cxx_test: containers, threads, aligned new" "$tmp/cxx.log" $?
}

run_sqlite() {
	db=$tmp/t.db
	cat > "$tmp/t.sql" <<'SQL'
PRAGMA journal_mode=WAL;
CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB, n REAL);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
INSERT INTO t(k, v, n) SELECT printf('key-%08d', x), randomblob(x % 700), x * 0.5 FROM c;
COMMIT;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_n ON t(n, k);
BEGIN;
UPDATE t SET v = randomblob(1000) WHERE id % 7 = 0;
DELETE FROM t WHERE id % 11 = 0;
INSERT INTO t(k, v, n) SELECT k || '-copy', v, n FROM t WHERE id % 13 = 0;
COMMIT;
SELECT 'rows', count(*) = 200000 - 200000 / 11 + 200000 / 13 - 200000 / 143 FROM t;
SELECT k FROM t WHERE k > 'key-00100000' ORDER BY k LIMIT 3;
VACUUM;
PRAGMA integrity_check;
SQL
	under sqlite3 "$db" < "$tmp/t.sql" > "$tmp/sqlite.out" 2> "$tmp/sqlite.log"
	st=$?
	cat "$tmp/sqlite.out" >> "$tmp/sqlite.log"
	# the row count the statements imply, and integrity_check says ok
	if [ $st = 0 ] && { ! grep -qx 'rows|1' "$tmp/sqlite.out" || [ "$(tail -n 1 "$tmp/sqlite.out")" != ok ]; }; then
		echo "sqlite3: unexpected results" >> "$tmp/sqlite.log"
		st=1
	fi
	result "sqlite3: 200k inserts, indexes, a large transaction, integrity_check" "$tmp/sqlite.log" $st
}

redis_up() {
	for _ in $(seq 100); do
		redis-cli -p 6390 ping 2>/dev/null | grep -q PONG && return 0
		sleep 0.2
	done
	return 1
}

# redis_start LOG: a server on port 6390 in $tmp, under the drop-in; its
# pid in $srv. Returns non-zero (and stops it) if it never answers.
redis_start() {
	cd "$tmp" || return 1
	under redis-server --port 6390 --bind 127.0.0.1 --save '' --dir "$tmp" \
		--dbfilename dump.rdb --daemonize no --enable-debug-command local \
		> "$1" 2>&1 &
	srv=$!
	cd "$repo" || return 1
	redis_up && return 0
	kill -9 "$srv" 2>/dev/null
	wait "$srv"
	return 1
}

# redis_stop: shuts the server down; its exit status is the result.
redis_stop() {
	redis-cli -p 6390 shutdown nosave >/dev/null 2>&1
	for _ in $(seq 100); do
		kill -0 "$srv" 2>/dev/null || break
		sleep 0.2
	done
	kill -9 "$srv" 2>/dev/null
	wait "$srv"
}

# fail MESSAGE: a step of the current check failed.
fail() {
	echo "FAILED: $*" >> "$log"
	st=1
}

run_redis() {
	log=$tmp/redis.log
	st=0
	keys=0
	if redis_start "$tmp/server.log"; then
		redis-benchmark -p 6390 -q -n "$REDIS_REQUESTS" -c 20 -d 200 -r 100000 \
			-t set,get,incr,lpush,lpop,sadd,hset,mset >> "$log" 2>&1 ||
			fail "redis-benchmark"
		redis-cli -p 6390 debug populate 100000 key 100 >> "$log" 2>&1 ||
			fail "debug populate"
		keys=$(redis-cli -p 6390 dbsize)
		echo "keys before BGSAVE: $keys" >> "$log"
		redis-cli -p 6390 bgsave >> "$log" 2>&1 || fail "bgsave"
		# the forked child writes the snapshot while the parent serves
		redis-benchmark -p 6390 -q -n $((REDIS_REQUESTS / 4)) -t set -r 100000 >> "$log" 2>&1 ||
			fail "redis-benchmark during BGSAVE"
		for _ in $(seq 300); do
			redis-cli -p 6390 info persistence | grep -q 'rdb_bgsave_in_progress:0' && break
			sleep 0.2
		done
		redis-cli -p 6390 info persistence | grep -q 'rdb_last_bgsave_status:ok' ||
			fail "BGSAVE did not succeed"
		redis_stop || fail "the server's exit status"
	else
		fail "redis-server did not start"
	fi
	# the snapshot loads back, with every key, in a new server
	if [ $st = 0 ]; then
		if redis_start "$tmp/server2.log"; then
			loaded=$(redis-cli -p 6390 dbsize)
			echo "keys after reload: $loaded" >> "$log"
			[ "$loaded" -ge "$keys" ] && [ "$keys" -ge 100000 ] ||
				fail "keys: $keys saved, $loaded loaded"
			[ "$(redis-cli -p 6390 strlen key:4242)" = 100 ] || fail "key:4242"
			redis_stop || fail "the second server's exit status"
		else
			fail "redis-server did not start with the snapshot"
		fi
	fi
	cat "$tmp/server.log" "$tmp/server2.log" "$log" > "$tmp/redis-all.log" 2>/dev/null
	result "redis-server: redis-benchmark, BGSAVE (fork) and reload" "$tmp/redis-all.log" $st
}

run_python() {
	set -- $PY_TESTS
	for t in $PY_IGNORE; do
		set -- "$@" -i "$t"
	done
	(cd "$tmp" && under env PYTHONMALLOC=malloc /usr/bin/python3.11 -m test \
		-q -j "$PY_JOBS" --timeout 1200 "$@") > "$tmp/python.log" 2>&1
	result "python3.11 -m test $PY_TESTS" "$tmp/python.log" $?
}

for p in "$@"; do
	case "$p" in
	cxx) run_cxx ;;
	sqlite) run_sqlite ;;
	redis) run_redis ;;
	python) run_python ;;
	*) n=$((n + 1)); echo "not ok $n $p: no such program check"; rc=1 ;;
	esac
done
rm -rf "$tmp"
exit $rc
