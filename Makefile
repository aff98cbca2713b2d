# spanalloc: top-level build. See README.md for the two commands that matter:
#   make demo    build everything and show the allocator at work (in a VM
#                when this machine cannot load modules)
#   make check   every test: native unit tests, then the kselftests in VMs
#                booting Debian's 6.1 and 6.12 kernels
#
# Other targets: all modules lib selftests bench install modules_install
# sizeclasses lint clean. Variables: KDIR (kernel build tree), KSERIES (6.1
# or 6.12, when KDIR is not given and the host cannot build modules),
# PREFIX, DESTDIR.

PREFIX	?= /usr/local
LIBDIR	?= $(PREFIX)/lib
INCDIR	?= $(PREFIX)/include
MANDIR	?= $(PREFIX)/share/man
KSERIES	?= 6.1
# The running kernel's build tree when there is one; else Debian's headers
# for KSERIES, installed on demand (the VM tooling uses the same ones).
KDIR	?= $(shell if [ -d /lib/modules/$$(uname -r)/build ]; then \
		echo /lib/modules/$$(uname -r)/build; else \
		bash -c '. scripts/kernel-env.sh && sa_headers_dir $$(sa_kernel_abi $(KSERIES))'; fi)

# one version for everything: DKMS's (dkms.conf)
VERSION	:= $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
B	:= build
CC	?= cc
CFLAGS	?= -O2 -g
SA_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread \
	     -Iuapi -Iinclude -Iuserlib $(CFLAGS)
# override.c is the drop-in's alone (libspanalloc-malloc)
LIB_SRC	:= $(filter-out userlib/override.c,$(wildcard userlib/*.c))
LIB_HDR	:= $(wildcard userlib/*.h) uapi/linux/spanalloc.h uapi/linux/spanalloc-sizeclasses.h \
	   include/spanalloc-classtable.h
LIB_OBJ	:= $(patsubst userlib/%.c,$(B)/lib/%.o,$(LIB_SRC))

.PHONY: all modules lib selftests tsan check demo bench install modules_install \
	sizeclasses lint clean dkms-source dkms-install dkms-remove

all: modules lib selftests

modules:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

modules_install:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules_install

# --- DKMS: the module rebuilt for every kernel installed (root) ----------------
# What the module builds from, as DKMS gets it in /usr/src/spanalloc-VERSION.
DKMS_SRC := Kbuild dkms.conf $(wildcard kmod/*.c kmod/*.h) kmod/tests/spanalloc_kunit.c \
	    uapi/linux/spanalloc.h uapi/linux/spanalloc-sizeclasses.h \
	    include/spanalloc-classtable.h
DKMS_DIR = $(DESTDIR)/usr/src/spanalloc-$(VERSION)

dkms-source:
	rm -rf $(DKMS_DIR)
	for f in $(DKMS_SRC); do install -D -m 644 $$f $(DKMS_DIR)/$$f || exit 1; done

# DKMS_FLAGS: more dkms options (-k KERNEL, --kernelsourcedir, private
# trees with --dkmstree/--sourcetree/--installtree, as scripts/package.sh
# uses them); by default the running kernel and the system's trees.
dkms-install: dkms-source
	dkms add spanalloc/$(VERSION) $(DKMS_FLAGS)
	dkms build spanalloc/$(VERSION) $(DKMS_FLAGS)
	dkms install spanalloc/$(VERSION) $(DKMS_FLAGS)

dkms-remove:
	dkms remove spanalloc/$(VERSION) $(or $(DKMS_FLAGS),--all)
	rm -rf $(DKMS_DIR)

# --- libspanalloc ----------------------------------------------------------
lib: $(B)/lib/libspanalloc.so $(B)/lib/libspanalloc.a $(B)/lib/spanalloc.pc \
     $(B)/lib/libspanalloc-malloc.so $(B)/lib/libspanalloc-malloc.a

$(B)/lib/%.o: userlib/%.c $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(SA_CFLAGS) -fPIC -c $< -o $@

$(B)/lib/libspanalloc.so: $(LIB_OBJ) userlib/libspanalloc.map
	$(CC) $(SA_CFLAGS) -shared -Wl,-soname,libspanalloc.so.0 \
		-Wl,--version-script=userlib/libspanalloc.map -o $@.0 $(LIB_OBJ)
	ln -sf libspanalloc.so.0 $@

# Made afresh: an archive updated in place keeps members of removed files.
$(B)/lib/libspanalloc.a: $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

# The drop-in: the library plus the malloc family (override.c). Its own
# calls bind inside it (-Bsymbolic-functions); malloc and friends are
# unversioned, so that they interpose on glibc's versioned ones.
$(B)/lib/libspanalloc-malloc.so: $(LIB_OBJ) $(B)/lib/override.o userlib/libspanalloc-malloc.map
	$(CC) $(SA_CFLAGS) -shared -Wl,-soname,libspanalloc-malloc.so \
		-Wl,-Bsymbolic-functions -Wl,--version-script=userlib/libspanalloc-malloc.map \
		-o $@ $(LIB_OBJ) $(B)/lib/override.o -ldl

$(B)/lib/libspanalloc-malloc.a: $(LIB_OBJ) $(B)/lib/override.o
	rm -f $@
	$(AR) rcs $@ $^

# Written on every run: PREFIX may differ between make lib and make install.
PC_SED := sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCDIR@|$(INCDIR)|; s|@VERSION@|$(VERSION)|'
.PHONY: $(B)/lib/spanalloc.pc
$(B)/lib/spanalloc.pc: userlib/spanalloc.pc.in
	@mkdir -p $(@D)
	$(PC_SED) $< > $@

# --- size classes ----------------------------------------------------------
$(B)/mksizeclasses: tools/mksizeclasses.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -o $@ $<

sizeclasses: $(B)/mksizeclasses
	$(B)/mksizeclasses > uapi/linux/spanalloc-sizeclasses.h
	$(B)/mksizeclasses table > include/spanalloc-classtable.h

# --- tests, demo, benchmarks -----------------------------------------------
HARNESS = $(shell bash -c '. scripts/kernel-env.sh && sa_linux_source')/tools/testing/selftests
ST_CFLAGS = $(SA_CFLAGS) -isystem $(HARNESS) -Wno-unused-parameter
SELFTESTS := $(B)/selftests/spanalloc_test $(B)/selftests/lib_test \
	     $(B)/selftests/stress_test $(B)/selftests/reclaim_test \
	     $(B)/selftests/fault_test $(B)/selftests/gc_test \
	     $(B)/selftests/gc_roots_test $(B)/selftests/gc_tls_module.so \
	     $(B)/selftests/gc_stress_test \
	     $(B)/selftests/dropin_test $(B)/selftests/cxx_test \
	     $(B)/selftests/heaps_gone $(B)/selftests/observe_test \
	     $(B)/selftests/profile_test
TOOLS	:= $(B)/tools/demo $(B)/tools/bench $(B)/tools/fuzz $(B)/tools/gcbench-spanalloc \
	   $(B)/tools/allocbench $(B)/tools/spantop $(B)/tools/spanview

selftests: $(SELFTESTS) $(TOOLS)

$(B)/selftests/heaps_gone: selftests/heaps_gone.c selftests/util.h $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(ST_CFLAGS) -o $@ $<

$(B)/selftests/spanalloc_test: selftests/spanalloc_test.c selftests/util.h selftests/heap_fixture.h $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(ST_CFLAGS) -o $@ $< -lpthread

$(B)/selftests/observe_test: selftests/observe_test.c selftests/util.h selftests/heap_fixture.h $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(ST_CFLAGS) -o $@ $< -lpthread

# Linked with the drop-in: every malloc in the program is spanalloc's.
$(B)/selftests/dropin_test: selftests/dropin_test.c selftests/child.h $(B)/lib/libspanalloc-malloc.a
	@mkdir -p $(@D)
	$(CC) $(ST_CFLAGS) -o $@ $< $(B)/lib/libspanalloc-malloc.a -ldl -lpthread

# A C++ program of ours, run under LD_PRELOAD of the drop-in (programs.sh).
$(B)/selftests/cxx_test: selftests/cxx_test.cc
	@mkdir -p $(@D)
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -Werror -pthread -o $@ $< -ldl

# A library gc_roots_test loads with dlopen: thread-local storage made late.
$(B)/selftests/gc_tls_module.so $(B)/tsan/gc_tls_module.so: selftests/gc_tls_module.c
	@mkdir -p $(@D)
	$(CC) $(SA_CFLAGS) -shared -fPIC -o $@ $<

$(B)/selftests/%: selftests/%.c selftests/util.h selftests/gc_util.h selftests/child.h $(B)/lib/libspanalloc.a
	@mkdir -p $(@D)
	$(CC) $(ST_CFLAGS) -o $@ $< $(B)/lib/libspanalloc.a -lpthread

# ThreadSanitizer builds of the library, of the collector's tests and of
# the stress test (frees on other threads, adoption),
# which run.sh --tsan runs (make check, on 6.1): any report fails the test
# it happens in. Such a build stops threads with SIGSYS, a signal TSan
# delivers at once (world.c, README "ThreadSanitizer").
TSAN_OBJ := $(patsubst userlib/%.c,$(B)/tsan/%.o,$(LIB_SRC))
TSAN_TESTS := $(B)/tsan/gc_test $(B)/tsan/gc_roots_test $(B)/tsan/gc_stress_test \
	      $(B)/tsan/stress_test \
	      $(B)/tsan/gc_tls_module.so

tsan: $(TSAN_TESTS)

$(B)/tsan/%.o: userlib/%.c $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(SA_CFLAGS) -O1 -fsanitize=thread -fPIC -c $< -o $@

$(B)/tsan/libspanalloc.a: $(TSAN_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(B)/tsan/%: selftests/%.c selftests/util.h selftests/gc_util.h selftests/child.h $(B)/tsan/libspanalloc.a
	$(CC) $(ST_CFLAGS) -O1 -fsanitize=thread -o $@ $< $(B)/tsan/libspanalloc.a -lpthread

# The GC benchmarks, once per collector (Boehm's needs libgc-dev: make bench
# installs it).
$(B)/tools/gcbench-spanalloc: tools/gcbench.c $(B)/lib/libspanalloc.a
	@mkdir -p $(@D)
	$(CC) $(SA_CFLAGS) -O2 -DGCB_SPANALLOC -o $@ $< $(B)/lib/libspanalloc.a -lpthread

$(B)/tools/gcbench-boehm: tools/gcbench.c
	@mkdir -p $(@D)
	$(CC) $(SA_CFLAGS) -O2 -DGCB_BOEHM -o $@ $< -lgc -lpthread

# Go's own runtime on binary-trees, the collectors' reference (golang-go:
# make bench installs it); its build cache stays out of the clone.
$(B)/tools/binarytrees-go: tools/binarytrees.go
	@mkdir -p $(@D)
	GOCACHE=$${XDG_CACHE_HOME:-$$HOME/.cache}/spanalloc/go-build GO111MODULE=off \
		go build -o $@ $<

# Plain malloc: the allocator under test comes with LD_PRELOAD.
$(B)/tools/allocbench: tools/allocbench.c
	@mkdir -p $(@D)
	$(CC) $(SA_CFLAGS) -O2 -o $@ $< -lpthread

# Read /proc/spanallocinfo (and the snapshot ioctl): no library.
$(B)/tools/spantop $(B)/tools/spanview: $(B)/tools/%: tools/%.c tools/spanallocinfo.c \
		tools/spanallocinfo.h uapi/linux/spanalloc.h
	@mkdir -p $(@D)
	$(CC) $(SA_CFLAGS) -O2 -o $@ $< tools/spanallocinfo.c
$(B)/tools/spanview: include/spanalloc-classtable.h

$(B)/tools/%: tools/%.c $(B)/lib/libspanalloc.a
	@mkdir -p $(@D)
	$(CC) $(SA_CFLAGS) -O2 -o $@ $< $(B)/lib/libspanalloc.a -lpthread

# Native unit tests of the parts that need no device, under ASan and UBSan.
UNIT_SRC := userlib/sizeclass.c userlib/mbitmap.c userlib/handoff.c
$(B)/native/unit_test: selftests/unit_test.c $(UNIT_SRC) $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(ST_CFLAGS) -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer -o $@ $< $(UNIT_SRC)

check: all tsan $(B)/native/unit_test $(B)/mksizeclasses
	bash scripts/check.sh

demo: all
	bash scripts/demo.sh

bench: all
	bash scripts/bench.sh

lint:
	bash scripts/lint.sh

# --- install ---------------------------------------------------------------
install: lib $(B)/tools/spantop $(B)/tools/spanview
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR)/linux \
		$(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man7
	install -m 755 $(B)/tools/spantop $(B)/tools/spanview $(DESTDIR)$(PREFIX)/bin/
	install -m 644 docs/man/spantop.1 docs/man/spanview.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 docs/man/spanalloc.3 $(DESTDIR)$(MANDIR)/man3/
	install -m 644 docs/man/spanalloc.7 $(DESTDIR)$(MANDIR)/man7/
	install -m 644 $(B)/lib/libspanalloc.a $(B)/lib/libspanalloc-malloc.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(B)/lib/libspanalloc-malloc.so $(DESTDIR)$(LIBDIR)/
	install -m 755 $(B)/lib/libspanalloc.so.0 $(DESTDIR)$(LIBDIR)/
	ln -sf libspanalloc.so.0 $(DESTDIR)$(LIBDIR)/libspanalloc.so
	install -m 644 userlib/spanalloc.h $(DESTDIR)$(INCDIR)/
	install -m 644 uapi/linux/spanalloc.h uapi/linux/spanalloc-sizeclasses.h \
		$(DESTDIR)$(INCDIR)/linux/
	install -m 644 $(B)/lib/spanalloc.pc $(DESTDIR)$(LIBDIR)/pkgconfig/

clean:
	rm -rf $(B)
	rm -f kmod/*.o kmod/.*.cmd kmod/tests/*.o kmod/tests/.*.cmd *.o .*.cmd *.ko *.mod *.mod.c \
		Module.symvers modules.order
