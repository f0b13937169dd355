# lfpool - top-level Makefile.
#
#   make            static + shared library (and the dependency-free core)
#   make test       every test that fits in a few minutes (installs deps)
#   make stress     the stress harness, default profile, all cores
#   make asan|tsan|ubsan|model|bench|docs|install|uninstall|clean
#
# Each capability adds itself through a fragment in mk/*.mk: sources to
# LIB_SRCS, pkg-config names to LIB_PKGS, test steps to TEST_STEPS.

.DEFAULT_GOAL := all
SHELL := /bin/bash

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
SAN     ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include

SOVERSION := 0
# One source of truth: the version macros of the public header.
VERSION   := $(shell awk '/^.define LFP_VERSION_(MAJOR|MINOR|PATCH) /{v = v (v == "" ? "" : ".") $$3} END {print v}' include/lfpool.h)

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
        -Wmissing-prototypes -Wcast-qual -Wcast-align -Wwrite-strings \
        -Wundef -Wformat=2
ifeq ($(CI),true)
WARN += -Werror
endif
ifneq ($(WERROR),)
WARN += -Werror
endif

OPT ?= -O2 -g
CFLAGS_BASE := -std=c11 $(OPT) $(WARN) -fPIC -fvisibility=hidden -pthread \
               -D_GNU_SOURCE -Iinclude $(EXTRA_CFLAGS)

ifeq ($(SAN),asan)
CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS_SAN := -fsanitize=address,undefined
endif
ifeq ($(SAN),tsan)
CFLAGS_BASE += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS_SAN := -fsanitize=thread
endif
ifeq ($(SAN),ubsan)
CFLAGS_BASE += -fsanitize=undefined -fno-sanitize-recover=all
LDFLAGS_SAN := -fsanitize=undefined
endif

# The core: atomics/ and the pool stack. No dependency beyond libc.
CORE_SRCS := pool/layout.c pool/stack.c pool/pool.c pool/validate.c
LIB_SRCS  := $(CORE_SRCS)
LIB_PKGS  :=
TEST_STEPS :=
BINS :=

# Output paths, defined before the fragments so their prerequisites see them.
OBJ       := $(BUILD)/obj
STATIC    := $(BUILD)/liblfpool.a
CORE_LIB  := $(BUILD)/liblfpool-core.a
SHARED    := $(BUILD)/liblfpool.so.$(VERSION)

-include mk/*.mk

pc_cflags = $(if $(strip $(1)),$(shell pkg-config --cflags $(1) 2>/dev/null))
pc_libs   = $(if $(strip $(1)),$(shell pkg-config --libs $(1) 2>/dev/null))

CFLAGS  := $(CFLAGS_BASE) $(call pc_cflags,$(LIB_PKGS))
LDLIBS_LIB := $(call pc_libs,$(LIB_PKGS)) -lpthread

LIB_OBJS  := $(patsubst %.c,$(OBJ)/%.o,$(LIB_SRCS))
CORE_OBJS := $(patsubst %.c,$(OBJ)/%.o,$(CORE_SRCS))

.PHONY: all lib core deps-build deps-test test check clean install uninstall \
        asan tsan ubsan docs $(TEST_STEPS)

all: lib core lfpool-stat
lib: $(STATIC) $(SHARED)
core: $(CORE_LIB)

$(OBJ)/%.o: %.c $(wildcard include/*.h include/lfpool/*.h pool/*.h atomics/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(STATIC): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CORE_LIB): $(CORE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# -z nodelete: dlclose() must not unmap the library while thread-exit
# destructors of its pthread keys are still due in live threads.
$(SHARED): $(LIB_OBJS)
	$(CC) -shared -Wl,-soname,liblfpool.so.$(SOVERSION) -Wl,-z,nodelete $(LDFLAGS_SAN) -o $@ $^ $(LDLIBS_LIB)
	ln -sf liblfpool.so.$(VERSION) $(BUILD)/liblfpool.so.$(SOVERSION)
	ln -sf liblfpool.so.$(SOVERSION) $(BUILD)/liblfpool.so

deps-build:
	@tools/ensure-deps build
deps-test:
	@tools/ensure-deps build test

# make test: every step in TEST_STEPS, each run even if an earlier one failed;
# the runner prints one "N passed, N failed" line and fails if any step did.
test: deps-test
	@tools/run-tests $(TEST_STEPS)
check: test

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=asan test-unit test-conc
tsan:
	@$(MAKE) --no-print-directory BUILD=build/tsan SAN=tsan test-conc
ubsan:
	@$(MAKE) --no-print-directory BUILD=build/ubsan SAN=ubsan test-unit test-conc

# Written on every install (FORCE): it holds PREFIX, LIBDIR and INCDIR, which
# a file rule keyed on the Makefile alone kept from an earlier install.
PCFILE := $(BUILD)/lfpool.pc
$(PCFILE): FORCE
	@mkdir -p $(@D)
	@printf 'prefix=%s\nlibdir=%s\nincludedir=%s\n\nName: lfpool\nDescription: lock-free fixed-size pool allocators\nVersion: %s\nCflags: -I$${includedir}\nLibs: -L$${libdir} -llfpool\nLibs.private: %s\n' \
	  '$(PREFIX)' '$(LIBDIR)' '$(INCDIR)' '$(VERSION)' '$(LDLIBS_LIB)' > $@
FORCE:
.PHONY: FORCE

install: lib lfpool-stat $(PCFILE)
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -d $(DESTDIR)$(INCDIR)/lfpool
	install -m 644 include/lfpool.h $(DESTDIR)$(INCDIR)/
	install -m 644 include/lfpool/*.h $(DESTDIR)$(INCDIR)/lfpool/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf liblfpool.so.$(VERSION) $(DESTDIR)$(LIBDIR)/liblfpool.so.$(SOVERSION)
	ln -sf liblfpool.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/liblfpool.so
	install -m 644 $(PCFILE) $(DESTDIR)$(LIBDIR)/pkgconfig/
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/lfpool-stat $(DESTDIR)$(PREFIX)/bin/

uninstall:
	rm -rf $(DESTDIR)$(INCDIR)/lfpool
	rm -f $(DESTDIR)$(INCDIR)/lfpool.h $(DESTDIR)$(LIBDIR)/liblfpool.a \
	  $(DESTDIR)$(LIBDIR)/liblfpool.so $(DESTDIR)$(LIBDIR)/liblfpool.so.$(SOVERSION) \
	  $(DESTDIR)$(LIBDIR)/liblfpool.so.$(VERSION) $(DESTDIR)$(LIBDIR)/pkgconfig/lfpool.pc \
	  $(DESTDIR)$(PREFIX)/bin/lfpool-stat

# docs/api.md is generated from the public headers (the reference).
docs:
	tools/gen-api-doc docs/api.md

clean:
	rm -rf build lfpool.pc
