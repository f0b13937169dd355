# mk/dlopen.mk - the shared library loaded with dlopen().
#
#   test-dlopen   builds the library with SO_TLS=dynamic (in $(BUILD)/dlopen)
#                 and runs tests/dlopen_smoke.c against it; then runs the same
#                 program against the default library, which needs glibc's
#                 static TLS reserve raised (its TLS is initial-exec).
DLOPEN_DIR := $(BUILD)/dlopen

TEST_STEPS += test-dlopen

$(BUILD)/tests/dlopen_smoke: tests/dlopen_smoke.c include/lfpool.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ -ldl -lpthread $(LDFLAGS_SAN)

test-dlopen: $(BUILD)/tests/dlopen_smoke $(SHARED)
	@$(MAKE) --no-print-directory BUILD=$(DLOPEN_DIR) SO_TLS=dynamic $(DLOPEN_DIR)/liblfpool.so.$(VERSION) >/dev/null
	@if readelf -dW $(DLOPEN_DIR)/liblfpool.so | grep -q STATIC_TLS; then \
	  echo "test-dlopen: the SO_TLS=dynamic library still has initial-exec TLS"; exit 1; fi
	$(BUILD)/tests/dlopen_smoke $(DLOPEN_DIR)/liblfpool.so
	GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 $(BUILD)/tests/dlopen_smoke $(BUILD)/liblfpool.so
