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
	mkdir -p "$1/kmod" "$1/uapi/linux"
	cp -p "$SA_REPO/Kbuild" "$1/"
	cp -p "$SA_REPO"/kmod/*.[ch] "$1/kmod/"
	cp -p "$SA_REPO"/uapi/linux/*.h "$1/uapi/linux/"
}

# Builds outside the source tree, one folder per ABI, so that builds for two
# kernels never share objects. Copies keep their times: make rebuilds only
# what changed.
sa_build_module() {
	local abi=$1 kdir out=$SA_REPO/build/kmod-$1
	kdir=$(sa_headers_dir "$abi") || return 1
	sa_copy_module_sources "$out"
	make -s -C "$kdir" M="$out" W=1 modules 2>&1 | { grep -v "^Skipping BTF" >&2 || true; }
	[ "${PIPESTATUS[0]}" = 0 ] || { sa_log "module build for $abi failed"; return 1; }
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
