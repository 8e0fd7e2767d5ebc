# porthole: plain GNU Makefile.
#
#   make                 build portholed, portholectl, porthole-uffd into build/default
#   make asan|tsan|static   the same, sanitized or fully static, into build/<variant>
#                        (static: musl, portholed and portholectl only; static-glibc:
#                        the old fully static glibc build of all three, a fallback)
#   make check           everything CI runs: unit tests under ASan+UBSan, integration
#                        tests (network namespaces, needs root), valgrind run, fuzz smoke
#   make unit            unit tests of the current VARIANT
#   make fuzz            build libFuzzer harnesses (clang); run each FUZZ_SECONDS (20),
#                        the HTTP one FUZZ_SECONDS_HTTP (60)
#   make bench|bench-quick|vmtest|install
#   make deb             the Debian package (debian/, dpkg-buildpackage) into build/deb/
#
# Every variant builds into its own directory ($(O)), so variants never mix
# objects and several builds can run side by side.

VERSION   := 0.1.0
VARIANT   ?= default
O         ?= build/$(VARIANT)
CC        ?= cc
PREFIX    ?= /usr/local
UNITDIR   ?= $(PREFIX)/lib/systemd/system
DESTDIR   ?=
FUZZ_SECONDS ?= 20
FUZZ_SECONDS_HTTP ?= 60

LLHTTP_DIR     ?= /usr/share/llhttp
LLHTTP_INCLUDE ?= /usr/share/include/llhttp

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wno-format-nonliteral -Wvla
CPPFLAGS += -D_GNU_SOURCE -DPH_VERSION=\"$(VERSION)\" -Isrc/lib -Isrc/daemon -Isrc/uffd \
            -Isrc/ctl -I$(LLHTTP_INCLUDE)
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c17 $(WARN) -fno-common -pthread -MMD -MP
LDFLAGS  += -pthread
LDLIBS   +=

ifeq ($(VARIANT),asan)
  CFLAGS  += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(VARIANT),tsan)
  CFLAGS  += -O1 -fsanitize=thread -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=thread
endif
# static: musl-gcc (Debian's musl-tools) links musl's libc statically: a small
# binary that drops into any x86-64 guest. musl's include path holds no kernel
# headers, so the uapi ones sock_diag needs (linux/, asm/, asm-generic/; libc
# independent) are linked into $(O)/musl-include. porthole-uffd needs jansson,
# which Debian ships for glibc only; it runs on the host and is left out here.
ifeq ($(VARIANT),static)
  CC       := musl-gcc
  MUSL_INC := $(O)/musl-include
  CPPFLAGS += -isystem $(MUSL_INC)
  LDFLAGS  += -static
  # optimised for size (the relay's time goes to splice() and epoll, not to
  # our code), one section per function so the linker drops unused ones; no
  # unwind tables (.eh_frame: 25 KB), which C without backtrace() never reads
  SIZE_CFLAGS := -Os -ffunction-sections -fdata-sections -fno-asynchronous-unwind-tables \
		 -fno-unwind-tables
  CFLAGS   += $(SIZE_CFLAGS)
  LDFLAGS  += -Wl,--gc-sections
endif
ifeq ($(VARIANT),static-glibc)
  LDFLAGS += -static
endif
# EVENTS=0: no BPF listen events (a poll-only portholed, which says so at start).
# They need only <linux/bpf.h>; a build without it is poll-only the same way.
ifeq ($(EVENTS),0)
  CPPFLAGS += -DPH_NO_EVENTS
  $(info porthole: EVENTS=0: building a poll-only portholed)
endif

# llhttp is generated C; it is compiled with its own, quieter flags.
LLHTTP_CFLAGS := -O2 -g -std=c99 -w -fno-common -DLLHTTP_STRICT_MODE=1 $(SIZE_CFLAGS)

LIB_SRC    := $(wildcard src/lib/*.c)
DAEMON_SRC := $(filter-out src/daemon/main.c,$(wildcard src/daemon/*.c))
CTL_SRC    := $(filter-out src/ctl/main.c,$(wildcard src/ctl/*.c))
UFFD_SRC   := $(filter-out src/uffd/main.c,$(wildcard src/uffd/*.c))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
HELPER_SRC := $(wildcard tests/helpers/*.c)

obj = $(patsubst %.c,$(O)/obj/%.o,$(1))

LIB        := $(O)/libporthole.a
DAEMON_LIB := $(O)/libportholed.a
CTL_LIB    := $(O)/libportholectl.a
UFFD_LIB   := $(O)/libporthole-uffd.a
LLHTTP_OBJ := $(O)/obj/llhttp/api.o $(O)/obj/llhttp/http.o $(O)/obj/llhttp/llhttp.o

PROGS := $(O)/portholed $(O)/portholectl $(if $(MUSL_INC),,$(O)/porthole-uffd)
UNIT_BINS := $(patsubst tests/unit/%.c,$(O)/tests/%,$(UNIT_SRC))
HELPER_BINS := $(patsubst tests/helpers/%.c,$(O)/helpers/%,$(HELPER_SRC))

.PHONY: all asan tsan static static-glibc check unit integration valgrind fuzz fuzz-build bench \
        bench-quick vmtest install uninstall clean deb

all: $(PROGS) $(HELPER_BINS)

asan tsan static static-glibc:
	$(MAKE) VARIANT=$@ all

ifdef MUSL_INC
KERNEL_INC ?= /usr/include
$(MUSL_INC):
	@mkdir -p $@
	ln -sfn $(KERNEL_INC)/linux $@/linux
	ln -sfn $(KERNEL_INC)/asm-generic $@/asm-generic
	ln -sfn $(KERNEL_INC)/$(shell gcc -print-multiarch)/asm $@/asm
endif

$(O)/obj/%.o: %.c | $(MUSL_INC)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(O)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -I$(LLHTTP_INCLUDE) $(LLHTTP_CFLAGS) $(filter -fsanitize=%,$(CFLAGS)) -c -o $@ $<

$(LIB): $(call obj,$(LIB_SRC))
$(DAEMON_LIB): $(call obj,$(DAEMON_SRC)) $(LLHTTP_OBJ)
$(CTL_LIB): $(call obj,$(CTL_SRC))
$(UFFD_LIB): $(call obj,$(UFFD_SRC))
$(O)/%.a:
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

# static-glibc links jansson statically too; nothing here uses NSS.
$(O)/portholed: $(call obj,src/daemon/main.c) $(DAEMON_LIB) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(O)/portholectl: $(call obj,src/ctl/main.c) $(CTL_LIB) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(O)/porthole-uffd: $(call obj,src/uffd/main.c) $(UFFD_LIB) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ -ljansson $(LDLIBS)

# Unit tests link only the libraries their prefix names, so one area's
# half-finished file never breaks another area's tests:
#   test_http*, test_api*, test_daemon*: daemon; test_ctl*: portholectl;
#   test_uffd*: porthole-uffd; anything else: the port library alone.
$(O)/tests/test_http%: $(O)/obj/tests/unit/test_http%.o $(DAEMON_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -ljansson $(LDLIBS)
$(O)/tests/test_api%: $(O)/obj/tests/unit/test_api%.o $(DAEMON_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -ljansson $(LDLIBS)
$(O)/tests/test_daemon%: $(O)/obj/tests/unit/test_daemon%.o $(DAEMON_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -ljansson $(LDLIBS)
$(O)/tests/test_ctl%: $(O)/obj/tests/unit/test_ctl%.o $(CTL_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -ljansson $(LDLIBS)
$(O)/tests/test_uffd%: $(O)/obj/tests/unit/test_uffd%.o $(UFFD_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -ljansson $(LDLIBS)
$(O)/tests/test_%: $(O)/obj/tests/unit/test_%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

$(O)/helpers/%: $(call obj,tests/helpers/%.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Unit tests print cmocka's summaries; tests/run-unit adds the total line.
unit: $(UNIT_BINS)
	@tests/run-unit $(UNIT_BINS)

integration: all
	@PH_BUILD=$(O) tests/integration/run

valgrind: all
	@PH_BUILD=$(O) tests/integration/run valgrind

fuzz-build:
	$(MAKE) -f fuzz/fuzz.mk O=build/fuzz
fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_SECONDS_http=$(FUZZ_SECONDS_HTTP) fuzz/run build/fuzz

# check: what CI runs, in order; tests/check prints the final summary line.
check:
	@tests/check

# The full run also benchmarks porthole-uffd (issue 6) into the same results directory.
bench: all bench-tools $(O)/helpers/uffd_fc
	@PH_BUILD=$(O) bench/run full
	@PH_BUILD=$(O) bench/uffd/run | tee "$$(ls -td bench/results/*/ | head -1)uffd.txt"
bench-quick: all bench-tools
	@PH_BUILD=$(O) bench/run quick

vmtest:
	$(MAKE) VARIANT=static build/static/portholed build/static/portholectl build/static/helpers/tcpprobe
	@PH_BUILD=build/static tests/vm/run

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8 \
	           $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(UNITDIR) \
	           $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 0755 $(O)/portholed $(DESTDIR)$(PREFIX)/sbin/portholed
	install -m 0755 $(O)/portholectl $(DESTDIR)$(PREFIX)/bin/portholectl
	$(if $(filter %/porthole-uffd,$(PROGS)),install -m 0755 $(O)/porthole-uffd $(DESTDIR)$(PREFIX)/bin/porthole-uffd)
	install -m 0644 man/portholed.8 $(DESTDIR)$(PREFIX)/share/man/man8/portholed.8
	install -m 0644 man/portholectl.1 $(DESTDIR)$(PREFIX)/share/man/man1/portholectl.1
	install -m 0644 man/porthole-uffd.1 $(DESTDIR)$(PREFIX)/share/man/man1/porthole-uffd.1
	install -m 0644 dist/bash-completion/portholectl \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/portholectl
	sed 's|@SBINDIR@|$(PREFIX)/sbin|g' dist/portholed.service > $(DESTDIR)$(UNITDIR)/portholed.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/portholed.service

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/portholed $(DESTDIR)$(PREFIX)/bin/portholectl \
	      $(DESTDIR)$(PREFIX)/bin/porthole-uffd $(DESTDIR)$(PREFIX)/share/man/man8/portholed.8 \
	      $(DESTDIR)$(PREFIX)/share/man/man1/portholectl.1 \
	      $(DESTDIR)$(PREFIX)/share/man/man1/porthole-uffd.1 \
	      $(DESTDIR)$(UNITDIR)/portholed.service \
	      $(DESTDIR)$(PREFIX)/share/bash-completion/completions/portholectl

clean:
	rm -rf build

# deb: the Debian package, built by dpkg-buildpackage (debian/) on a copy of
# the tracked files (uncommitted edits included) in build/deb/, where the
# .deb, the -dbgsym .ddeb and the .buildinfo/.changes land.
DEB_DIR := build/deb
deb:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/porthole-$(VERSION)
	git ls-files -z --cached --others --exclude-standard | \
		xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh | \
		tar --null -T - -cf - | tar -C $(DEB_DIR)/porthole-$(VERSION) -xf -
	@v=$$(dpkg-parsechangelog -l debian/changelog -S Version); [ "$$v" = "$(VERSION)" ] || \
		{ echo "deb: debian/changelog says $$v, Makefile VERSION $(VERSION)" >&2; exit 1; }
	cd $(DEB_DIR)/porthole-$(VERSION) && dpkg-buildpackage -us -uc -b
	@ls -l $(DEB_DIR)/*.deb

include tests/uffd/uffd.mk
include bench/bench.mk

-include $(shell find $(O)/obj -name '*.d' 2>/dev/null)
.SECONDARY:
