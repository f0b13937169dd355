# mk/dlopen.mk - the shared library loaded with dlopen().
#
#   test-dlopen   dlopen()s $(SHARED) and uses it (tests/dlopen_smoke.c).
#
# glibc keeps only a few hundred bytes of static TLS for libraries loaded
# with dlopen(), and a library with initial-exec TLS must fit all of its TLS
# in them. The library's per-thread state therefore lives in memory of its
# own behind small initial-exec pointers (tc in pool/frontend.c, tls in
# pool/cache.c). The step also fails if the library's TLS segment outgrows
# DLOPEN_TLS_MAX bytes, well before glibc would refuse it.
DLOPEN_TLS_MAX := 256

TEST_STEPS += test-dlopen

$(BUILD)/tests/dlopen_smoke: tests/dlopen_smoke.c include/lfpool.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ -ldl -lpthread $(LDFLAGS_SAN)

test-dlopen: $(BUILD)/tests/dlopen_smoke $(SHARED)
	@command -v readelf >/dev/null || { echo "test-dlopen: readelf (binutils) is missing"; exit 1; }
	@tls=$$(readelf -lW $(BUILD)/liblfpool.so | awk '$$1 == "TLS" { print $$6 }'); \
	tls=$$(( $${tls:-0} )); \
	echo "liblfpool.so TLS segment: $$tls bytes (at most $(DLOPEN_TLS_MAX))"; \
	if [ "$$tls" -gt $(DLOPEN_TLS_MAX) ]; then \
	  echo "test-dlopen: the library's TLS outgrew $(DLOPEN_TLS_MAX) bytes"; exit 1; fi
	@readelf -dW $(BUILD)/liblfpool.so | grep -q NODELETE || { echo "test-dlopen: the library is not linked -z nodelete"; exit 1; }
	$(BUILD)/tests/dlopen_smoke $(BUILD)/liblfpool.so
