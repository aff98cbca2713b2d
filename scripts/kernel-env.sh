# shellcheck shell=bash
# kernel-env.sh: what the build and the VM tooling need from Debian, found at
# run time. Sourced by scripts/vm-run and the Makefile's helpers.
#
#   sa_need_pkgs PKG...      install missing Debian packages (root), or fail
#   sa_kernel_abi SERIES     6.1 or 6.12 -> the archive's current ABI
#   sa_headers_dir ABI       installs linux-headers-ABI-amd64, prints its dir
#   sa_kernel_image ABI      downloads and unpacks linux-image-ABI-amd64 into
#                            the cache, prints the folder
#   sa_build_module ABI      builds spanalloc.ko for ABI, prints its folder
#   sa_debug_kernel          builds the debug kernel once, prints its tree
#
# The ABI is read from the meta-packages (linux-image-amd64 for 6.1,
# linux-image-6.12-amd64 for 6.12) so that the archive moving on to a new
# ABI never breaks the build.

SA_REPO=${SA_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SA_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/spanalloc
SA_APT_UPDATED=${SA_APT_UPDATED:-0}

sa_log() { echo "spanalloc: $*" >&2; }

sa_apt_update() {
	[ "$SA_APT_UPDATED" = 1 ] && return 0
	sa_log "apt-get update"
	apt-get update -qq >&2 || { sa_log "apt-get update failed"; return 1; }
	SA_APT_UPDATED=1
}

sa_need_pkgs() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		sa_log "missing Debian packages: ${missing[*]}; install them as root (apt-get install ${missing[*]})"
		return 1
	fi
	sa_log "installing ${missing[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
		sa_apt_update || return 1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
			{ sa_log "cannot install ${missing[*]}"; return 1; }
	fi
}

sa_kernel_abi() {
	local series=$1 meta dep
	case "$series" in
	6.1) meta=linux-image-amd64 ;;
	6.12) meta=linux-image-6.12-amd64 ;;
	*) sa_log "unknown kernel series '$series' (6.1 or 6.12)"; return 1 ;;
	esac
	dep=$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: linux-image-\(.*\)-amd64$/\1/p' | head -n 1)
	if [ -z "$dep" ]; then
		sa_apt_update || return 1
		dep=$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: linux-image-\(.*\)-amd64$/\1/p' | head -n 1)
	fi
	case "$dep" in
	"$series".*) echo "$dep" ;;
	*) sa_log "cannot resolve the $series kernel ABI from $meta (got '$dep')"; return 1 ;;
	esac
}

sa_headers_dir() {
	local abi=$1 dir=/usr/src/linux-headers-$1-amd64
	if [ ! -f "$dir/Makefile" ]; then
		sa_need_pkgs "linux-headers-$abi-amd64" || return 1
	fi
	echo "$dir"
}

sa_kernel_image() {
	local abi=$1 dir=$SA_CACHE/kernels/$1 tmp
	if [ ! -f "$dir/boot/vmlinuz-$abi-amd64" ]; then
		sa_need_pkgs dpkg-dev >/dev/null 2>&1 || true
		tmp=$(mktemp -d)
		chmod 755 "$tmp"
		sa_log "downloading linux-image-$abi-amd64"
		(cd "$tmp" && apt-get download "linux-image-$abi-amd64" >&2) ||
			{ sa_apt_update && (cd "$tmp" && apt-get download "linux-image-$abi-amd64" >&2); } ||
			{ sa_log "cannot download linux-image-$abi-amd64"; rm -rf "$tmp"; return 1; }
		rm -rf "$dir.new" && mkdir -p "$dir.new"
		dpkg -x "$tmp"/linux-image-*.deb "$dir.new"
		rm -rf "$tmp" "$dir"
		mv "$dir.new" "$dir"
	fi
	echo "$dir"
}

# Copies what the module is built from (sources only: never objects of an
# in-tree build) into $1, keeping times so that make rebuilds what changed.
sa_copy_module_sources() {
	mkdir -p "$1/kmod/tests" "$1/uapi/linux" "$1/include"
	cp -p "$SA_REPO/Kbuild" "$1/"
	cp -p "$SA_REPO"/kmod/*.[ch] "$1/kmod/"
	cp -p "$SA_REPO"/kmod/tests/*.c "$1/kmod/tests/"
	cp -p "$SA_REPO"/uapi/linux/*.h "$1/uapi/linux/"
	cp -p "$SA_REPO"/include/*.h "$1/include/"
}

# Builds outside the source tree, one folder per ABI, so that builds for two
# kernels never share objects. Copies keep their times: make rebuilds only
# what changed.
sa_build_module() {
	local kdir
	kdir=$(sa_headers_dir "$1") || return 1
	sa_build_module_in "$kdir" "$SA_REPO/build/kmod-$1"
}

# Builds the module against kernel tree $1 in folder $2; prints $2.
sa_build_module_in() {
	local kdir=$1 out=$2
	sa_copy_module_sources "$out"
	make -s -C "$kdir" M="$out" W=1 modules 2>&1 | { grep -v "^Skipping BTF" >&2 || true; }
	[ "${PIPESTATUS[0]}" = 0 ] || { sa_log "module build against $kdir failed"; return 1; }
	echo "$out"
}

# The kselftest harness and checkpatch, from Debian's linux-source-6.1,
# extracted once into the cache. Prints the extracted tree's top folder.
sa_linux_source() {
	local dir=$SA_CACHE/linux-source-6.1 tarball=/usr/src/linux-source-6.1.tar.xz
	local want="tools/testing/selftests/kselftest_harness.h tools/testing/selftests/kselftest.h scripts/checkpatch.pl scripts/spelling.txt scripts/const_structs.checkpatch"
	local f ok=1
	for f in $want; do [ -f "$dir/$f" ] || ok=0; done
	if [ $ok = 0 ]; then
		[ -f "$tarball" ] || sa_need_pkgs linux-source-6.1 || return 1
		sa_log "extracting the kselftest harness and checkpatch from $tarball"
		rm -rf "$dir.new" && mkdir -p "$dir.new"
		# shellcheck disable=SC2046
		tar -C "$dir.new" --strip-components=1 -I 'xz -d -T2' -xf "$tarball" \
			$(for f in $want; do echo "linux-source-6.1/$f"; done) || return 1
		rm -rf "$dir" && mv "$dir.new" "$dir"
	fi
	echo "$dir"
}

# The debug kernel (KASAN, lockdep, kmemleak, KUnit, fault injection): Debian's
# linux-source-6.1, "make tinyconfig" plus scripts/debug-kernel/debug.config,
# built once into the cache and rebuilt only when the fragment, the source
# package or the compiler changes (the key of its folder). ccache keeps a
# rebuild to minutes. Prints the build tree (bzImage and Module.symvers in
# it, usable as KDIR).
sa_debug_kernel() {
	local frag=$SA_REPO/scripts/debug-kernel/debug.config key top dir src
	local srcver gccver jobs missing opt
	sa_need_pkgs linux-source-6.1 ccache flex bison bc libelf-dev libssl-dev || return 1
	srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
	gccver=$(gcc --version | head -n 1)
	key=$( { cat "$frag"; echo "$srcver"; echo "$gccver"; } | sha256sum | cut -c1-16)
	top=$SA_CACHE/debug-kernel
	dir=$top/$key
	mkdir -p "$top"
	if [ ! -f "$dir/done" ]; then
		exec 9>"$top/lock"
		flock 9
		if [ ! -f "$dir/done" ]; then
			jobs=$(nproc)
			sa_log "building the debug kernel (linux-source $srcver, key $key): ~13 min cold, minutes with ccache"
			rm -rf "$dir"
			mkdir -p "$dir"
			src=$dir/src
			mkdir -p "$src"
			tar -C "$src" --strip-components=1 -I "xz -d -T$jobs" -xf /usr/src/linux-source-6.1.tar.xz ||
				{ sa_log "cannot extract linux-source-6.1"; exec 9>&-; return 1; }
			export CCACHE_DIR=$SA_CACHE/ccache CCACHE_MAXSIZE=6G CCACHE_BASEDIR=$dir CCACHE_NOHASHDIR=1
			(
				cd "$src" &&
				make -s ARCH=x86_64 tinyconfig >/dev/null &&
				scripts/kconfig/merge_config.sh -m .config "$frag" >/dev/null &&
				make -s ARCH=x86_64 olddefconfig >/dev/null
			) >&2 || { sa_log "debug kernel configuration failed"; exec 9>&-; return 1; }
			missing=
			while IFS= read -r opt; do
				case "$opt" in
				CONFIG_*) grep -qx "$opt" "$src/.config" || missing="$missing $opt" ;;
				"# CONFIG_"*" is not set")
					opt=${opt#\# }; opt=${opt%% *}
					! grep -q "^$opt=" "$src/.config" || missing="$missing $opt(off)" ;;
				esac
			done < "$frag"
			[ -z "$missing" ] || { sa_log "debug kernel: Kconfig did not take:$missing"; exec 9>&-; return 1; }
			if ! make -C "$src" -s -j"$jobs" ARCH=x86_64 CC="ccache gcc" bzImage modules > "$dir/build.log" 2>&1; then
				tail -n 30 "$dir/build.log" >&2
				sa_log "debug kernel build failed (log: $dir/build.log)"
				exec 9>&-
				return 1
			fi
			touch "$dir/done"
			# Older keys are whole kernel trees: keep only this one.
			find "$top" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
		fi
		exec 9>&-
	fi
	echo "$dir/src"
}
