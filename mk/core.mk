# mk/core.mk - the core builds alone: no liburcu, Criterion or hwloc, no malloc.
#
# test-core-standalone compiles CORE_SRCS with nothing but -Iinclude, links a
# tiny program against them with -lpthread only, runs it, and checks the
# objects' undefined symbols: the core may use libc's mmap/munmap/sysconf,
# errno, the string.h functions and pthread keys, and never an allocator.

STANDALONE := $(BUILD)/standalone
CORE_ALLOWED_SYMS := ^(mmap|munmap|sysconf|__errno_location|mem(set|cpy|move|cmp)|pthread_[a-z_]+|__tls_get_addr|_GLOBAL_OFFSET_TABLE_|__stack_chk_fail)$$

TEST_STEPS += test-core-standalone

test-core-standalone:
	@mkdir -p $(STANDALONE)
	@set -e; objs=""; for s in $(CORE_SRCS); do \
	  o=$(STANDALONE)/$$(basename $$s .c).o; \
	  $(CC) -std=c11 -O2 $(WARN) -pthread -Iinclude -c $$s -o $$o; objs="$$objs $$o"; done; \
	$(CC) -std=c11 -O2 $(WARN) -Iinclude tests/core_standalone.c $$objs -o $(STANDALONE)/smoke -lpthread; \
	$(STANDALONE)/smoke; \
	nm --defined-only $$objs | awk 'NF==3{print $$3}' | sort -u > $(STANDALONE)/defined; \
	ext=$$(nm -u $$objs | awk 'NF==2{print $$2}' | sort -u | comm -23 - $(STANDALONE)/defined); \
	bad=$$(printf '%s\n' $$ext | grep -Ev '$(CORE_ALLOWED_SYMS)' || true); \
	if [ -n "$$bad" ]; then echo "core objects need symbols outside the allowed libc subset: $$bad"; exit 1; fi; \
	echo "core builds standalone; external symbols:" $$ext

# The README example and the docs' tutorials compile (-Werror) and run.
TEST_STEPS += test-docs
test-docs: $(STATIC)
	@tests/docs_examples.sh $(BUILD) $(CFLAGS) -- $(STATIC) $(LDLIBS_LIB) $(LDFLAGS_SAN)
