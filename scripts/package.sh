#!/usr/bin/env bash
# package.sh: the Debian packages and DKMS, built and checked as a user of
# them would use them. Everything lands in build/pkg/.
#   scripts/package.sh build     dpkg-buildpackage -b of a copy of this tree:
#                                spanalloc-dkms, libspanalloc0, libspanalloc-dev,
#                                spanalloc-tools
#   scripts/package.sh check     unpacks them into a scratch root; checks what
#                                each ships (libraries, headers, pkg-config,
#                                man pages that render cleanly, udev rule, DKMS
#                                source and maintainer scripts); builds the
#                                module with dkms from the packaged source
#                                against Debian's 6.1 and 6.12 headers (private
#                                DKMS trees: nothing on this machine changes);
#                                compiles an example with pkg-config against
#                                the unpacked -dev files
#   scripts/package.sh vm-test   (inside a VM booted with --no-module, as root)
#                                loads the DKMS-built module of the running
#                                kernel, runs the example and a program under
#                                the packaged drop-in, unloads the module
# Each prints what it checked; any failure exits non-zero.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo" || exit 1
pkg=$repo/build/pkg
version=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
root=$pkg/root
fail=0
say() { echo "package: $*"; }
bad() { echo "package: FAIL: $*"; fail=1; }
need() { [ -e "$root/$1" ] && say "ships /$1" || bad "/$1 is not in the packages"; }

build() {
	local src=$pkg/spanalloc-$version f
	. "$here/kernel-env.sh"
	sa_need_pkgs debhelper dh-dkms dkms dpkg-dev || return 1
	rm -rf "$pkg"
	mkdir -p "$src"
	# the tree as committed or about to be: tracked and new files, no build output
	git ls-files -co --exclude-standard | while read -r f; do
		[ -e "$f" ] && install -D -m "$(stat -c %a "$f")" "$f" "$src/$f"
	done
	(cd "$src" && dpkg-buildpackage -us -uc -b) > "$pkg/build.log" 2>&1 ||
		{ tail -n 40 "$pkg/build.log"; bad "dpkg-buildpackage"; return 1; }
	ls "$pkg"/*.deb
}

check() {
	local d abi hdr series t ko magic flags
	. "$here/kernel-env.sh"
	sa_need_pkgs dkms pkgconf || return 1
	rm -rf "$root"
	mkdir -p "$root"
	for d in spanalloc-dkms_"$version"_all libspanalloc0_"$version"_amd64 \
		libspanalloc-dev_"$version"_amd64 spanalloc-tools_"$version"_amd64; do
		[ -f "$pkg/$d.deb" ] || { bad "$d.deb was not built"; continue; }
		dpkg-deb -x "$pkg/$d.deb" "$root" && say "unpacked $d.deb"
	done
	[ "$(dpkg-parsechangelog -l debian/changelog -S Version)" = "$version" ] &&
		say "debian/changelog and dkms.conf agree on $version" ||
		bad "debian/changelog's version is not dkms.conf's $version"
	need "usr/lib/$arch/libspanalloc.so.0"
	need "usr/lib/$arch/libspanalloc-malloc.so"
	need "usr/lib/$arch/libspanalloc.so"
	need "usr/lib/$arch/libspanalloc.a"
	need "usr/lib/$arch/libspanalloc-malloc.a"
	need "usr/lib/$arch/pkgconfig/spanalloc.pc"
	need usr/include/spanalloc.h
	need usr/include/linux/spanalloc.h
	need usr/bin/spantop
	need usr/bin/spanview
	need "usr/src/spanalloc-$version/dkms.conf"
	need "usr/src/spanalloc-$version/Kbuild"
	need usr/lib/modules-load.d/spanalloc.conf
	# the library package holds libraries only (Debian Policy 8.2)
	if t=$(dpkg-deb -c "$pkg/libspanalloc0_${version}_amd64.deb") &&
		t=$(echo "$t" | awk '{print $6}' | grep -v -e '/$' -e '^./usr/lib/' -e '^./usr/share/doc/'; true) &&
		[ -z "$t" ]; then
		say "libspanalloc0 ships only libraries"
	else
		bad "libspanalloc0 also ships ${t:-(no package)}"
	fi
	grep -q '^Depends: adduser' <(dpkg-deb -f "$pkg/spanalloc-dkms_${version}_all.deb" Depends | sed 's/^/Depends: /') &&
		say "spanalloc-dkms depends on adduser (its postinst adds a group)" ||
		bad "spanalloc-dkms does not depend on adduser"
	for d in man1/spantop.1 man1/spanview.1 man3/spanalloc.3 man7/spanalloc.7; do
		need "usr/share/man/$d.gz"
		t=$(zcat "$root/usr/share/man/$d.gz" | groff -man -ww -z 2>&1)
		[ -z "$t" ] && say "$d renders without a warning" || bad "$d: $t"
	done
	t=$(find "$root" -name '*spanalloc*.rules')
	if [ -n "$t" ] && grep -q 'KERNEL=="spanalloc".*GROUP="spanalloc".*MODE="0660"' "$t"; then
		say "udev rule ${t#"$root"} gives /dev/spanalloc to the group spanalloc, 0660"
	else
		bad "no udev rule for /dev/spanalloc"
	fi
	rm -rf "$pkg/ctl" && mkdir -p "$pkg/ctl" && dpkg-deb -e "$pkg/spanalloc-dkms_${version}_all.deb" "$pkg/ctl"
	grep -q 'dkms' "$pkg/ctl/postinst" && grep -q 'addgroup --quiet --system spanalloc' "$pkg/ctl/postinst" &&
		grep -q 'dkms' "$pkg/ctl/prerm" && say "spanalloc-dkms's scripts add the group and run dkms" ||
		bad "spanalloc-dkms's maintainer scripts"

	# DKMS from the packaged source, as the package's postinst would run it
	for series in 6.1 6.12; do
		abi=$(sa_kernel_abi "$series") && hdr=$(sa_headers_dir "$abi") || { bad "headers for $series"; continue; }
		t=$pkg/dkms-$series
		rm -rf "$t" && mkdir -p "$t/tree" "$t/inst" "$t/src"
		cp -a "$root/usr/src/spanalloc-$version" "$t/src/"
		if dkms add "spanalloc/$version" --dkmstree "$t/tree" --sourcetree "$t/src" \
			--installtree "$t/inst" > "$t/log" 2>&1 &&
			dkms build "spanalloc/$version" -k "$abi-amd64" --kernelsourcedir "$hdr" \
			--dkmstree "$t/tree" --sourcetree "$t/src" --installtree "$t/inst" >> "$t/log" 2>&1; then
			ko=$(find "$t/tree" -path "*/$abi-amd64/*" -name 'spanalloc.ko*' | head -n 1)
			magic=$(modinfo -F vermagic "$ko" 2>/dev/null)
			case "$magic" in
			"$abi-amd64 "*) say "dkms build against $abi-amd64: ${ko#"$pkg"/}, vermagic $magic" ;;
			*) bad "dkms build against $abi-amd64 made no module for it ($ko: $magic)" ;;
			esac
		else
			tail -n 30 "$t/log"
			bad "dkms build against $abi-amd64"
		fi
		# and make's own targets, from this tree, into private trees
		t=$pkg/make-dkms-$series
		rm -rf "$t" && mkdir -p "$t/tree" "$t/inst/$abi-amd64"
		flags="-k $abi-amd64 --kernelsourcedir $hdr --dkmstree $t/tree --sourcetree $t/usr/src --installtree $t/inst"
		if make -s dkms-install DESTDIR="$t" DKMS_FLAGS="$flags" > "$t.log" 2>&1 &&
			ls "$t/inst/$abi-amd64"/updates/dkms/spanalloc.ko* > /dev/null 2>&1; then
			say "make dkms-install for $abi-amd64 installs the module"
		else
			tail -n 30 "$t.log"
			bad "make dkms-install for $abi-amd64"
		fi
		if make -s dkms-remove DESTDIR="$t" DKMS_FLAGS="$flags" >> "$t.log" 2>&1 &&
			! ls "$t/inst/$abi-amd64"/updates/dkms/spanalloc.ko* > /dev/null 2>&1 &&
			[ ! -e "$t/usr/src/spanalloc-$version" ] && [ ! -e "$t/tree/spanalloc" ]; then
			say "make dkms-remove for $abi-amd64 takes it all away"
		else
			tail -n 30 "$t.log"
			bad "make dkms-remove for $abi-amd64"
		fi
	done

	# a program built against the unpacked -dev files, as its users build one
	t=$(PKG_CONFIG_SYSROOT_DIR=$root PKG_CONFIG_LIBDIR=$root/usr/lib/$arch/pkgconfig \
		pkg-config --cflags --libs spanalloc) || bad "pkg-config spanalloc"
	# shellcheck disable=SC2086
	if cc -std=c11 -Wall -Wextra -Werror -o "$pkg/example" tools/pkg-example.c $t \
		-Wl,-rpath,"$root/usr/lib/$arch"; then
		say "tools/pkg-example.c builds with pkg-config spanalloc ($t)"
	else
		bad "tools/pkg-example.c does not build against the packages"
	fi
	[ "$fail" = 0 ]
}

# In the VM: the module DKMS built for this kernel, from the packages.
vm_test() {
	local ko kver t
	kver=$(uname -r)
	ko=$(find "$pkg" -path "*/$kver/*" -name 'spanalloc.ko*' | head -n 1)
	[ -n "$ko" ] || { bad "no DKMS-built module for $kver"; return 1; }
	insmod "$ko" || { bad "insmod $ko"; return 1; }
	say "loaded the DKMS-built ${ko#"$pkg"/}"
	if t=$("$pkg/example" 2>&1); then
		say "the example built against the packages runs: $t"
	else
		bad "the example: $t"
	fi
	if t=$(SPANALLOC_REQUIRE=1 LD_PRELOAD=$root/usr/lib/$arch/libspanalloc-malloc.so \
		sqlite3 :memory: "create table t(x); insert into t select value from generate_series(1, 20000); select count(*), sum(x) from t;" 2>&1) &&
		[ "$t" = "20000|200010000" ]; then
		say "sqlite3 runs under the packaged drop-in: $t"
	else
		bad "sqlite3 under the packaged drop-in: $t"
	fi
	rmmod spanalloc || bad "rmmod spanalloc"
	[ "$fail" = 0 ]
}

case "${1:-}" in
build) build ;;
check) check ;;
vm-test) vm_test ;;
*) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 2 ;;
esac
