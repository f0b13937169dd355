/*
 * stress/backend.c - which allocators this build and this process can run.
 *
 * lfpool runs in-process through the public API. The peers (glibc,
 * jemalloc, mimalloc, tcmalloc) all run as "malloc": the driver re-executes
 * this program with the peer's Debian library in LD_PRELOAD, and the child
 * asks the dynamic linker which object really provides malloc, so a preload
 * that silently failed is caught and reported instead of measuring glibc
 * under another name.
 */
#include "stress.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

const char *const st_backend_names[BE_COUNT] = { "lfpool", "lfpool-cached", "malloc" };

bool st_backend_available(enum st_backend b, const char **why)
{
	*why = NULL;
	if (b == BE_CACHED) {
#ifdef ST_HAVE_CACHE
		return true;
#else
		*why = "the per-thread cache is not in include/lfpool.h yet";
		return false;
#endif
	}
	return true;
}

const char *st_malloc_identity(void)
{
	static char name[128];
	Dl_info info;
	/* The definition the dynamic linker binds malloc to in this process. */
	void *sym = dlsym(RTLD_DEFAULT, "malloc");
	if (sym == NULL || dladdr(sym, &info) == 0 || info.dli_fname == NULL)
		return "unknown";
	const char *base = strrchr(info.dli_fname, '/');
	base = base ? base + 1 : info.dli_fname;
	static const char *const known[] = { "jemalloc", "mimalloc", "tcmalloc" };
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strstr(base, known[i]))
			return known[i];
	if (strncmp(base, "libc.so", 7) == 0 || strncmp(base, "libc-", 5) == 0)
		return "glibc";
	snprintf(name, sizeof name, "%s", base);
	return name;
}
