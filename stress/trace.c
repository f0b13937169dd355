/*
 * stress/trace.c - loading CS:APP malloc-lab traces (*.rep) for replay.
 *
 * The traces are read at run time from the shared folder (never copied into
 * the repository): $LFP_TRACES, else ../shared/traces from the current
 * folder (the repository root under make), else the same path relative to
 * the executable's folder. Absent traces are a clean skip (-ENOENT).
 *
 * Format (../shared/traces/malloclab/FORMAT.md): four header integers (the
 * 2002 set: heap size, ids, ops, weight; the Autolab set: weight, ids, ops,
 * ignore-ranges: ids and ops are the 2nd and 3rd either way), then ops
 * "a id size", "r id size", "f id". Id -1 is the NULL pointer (free(NULL)
 * is dropped; realloc(NULL, n) on an unknown id is replayed as malloc).
 */
#include "stress.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_dir(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

const char *st_traces_dir(void)
{
	static char buf[PATH_MAX];
	const char *env = getenv("LFP_TRACES");
	if (env && *env)
		return is_dir(env) ? env : NULL;
	if (is_dir("../shared/traces"))
		return "../shared/traces";
	/* build/<dir>/lfpool-stress -> <repo>/build/<dir>: try a few levels up */
	const char *exe = st_exe_dir();
	const char *ups[] = { "/../shared/traces", "/../../shared/traces", "/../../../shared/traces" };
	for (size_t i = 0; exe && i < sizeof ups / sizeof ups[0]; i++) {
		snprintf(buf, sizeof buf, "%s%s", exe, ups[i]);
		if (is_dir(buf))
			return buf;
	}
	return NULL;
}

static int resolve(const char *name, char *out, size_t n)
{
	if (strchr(name, '/')) {
		snprintf(out, n, "%s", name);
		return access(out, R_OK) == 0 ? 0 : -ENOENT;
	}
	const char *dir = st_traces_dir();
	if (dir == NULL)
		return -ENOENT;
	const char *sub[] = { "malloclab", "malloclab-autolab", "." };
	for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++) {
		snprintf(out, n, "%s/%s/%s", dir, sub[i], name);
		if (access(out, R_OK) == 0)
			return 0;
		snprintf(out, n, "%s/%s/%s.rep", dir, sub[i], name);
		if (access(out, R_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

int st_trace_load(const char *name, struct st_trace *tr, char *err, size_t errlen)
{
	memset(tr, 0, sizeof *tr);
	int rc = resolve(name, tr->path, sizeof tr->path);
	if (rc < 0) {
		snprintf(err, errlen, "trace %s not found (traces folder: %s)", name,
			 st_traces_dir() ? st_traces_dir() : "absent");
		return rc;
	}
	FILE *f = fopen(tr->path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "trace %s: %s", tr->path, strerror(errno));
		return -ENOENT;
	}
	long h[4];
	if (fscanf(f, "%ld %ld %ld %ld", &h[0], &h[1], &h[2], &h[3]) != 4 || h[1] < 0 || h[2] < 0 ||
	    h[1] > (1L << 26) || h[2] > (1L << 26)) {
		snprintf(err, errlen, "trace %s: bad header", tr->path);
		fclose(f);
		return -EINVAL;
	}
	tr->num_ids = (uint32_t)h[1];
	tr->ops = calloc((size_t)h[2] + 1, sizeof *tr->ops);
	if (tr->ops == NULL) {
		fclose(f);
		snprintf(err, errlen, "trace %s: out of memory", tr->path);
		return -ENOMEM;
	}
	uint32_t n = 0;
	for (long i = 0; i < h[2]; i++) {
		char k;
		long id, size = 0;
		if (fscanf(f, " %c %ld", &k, &id) != 2)
			break;
		if (k == 'a' || k == 'r') {
			if (fscanf(f, "%ld", &size) != 1 || size < 0 || size > (1L << 30)) {
				snprintf(err, errlen, "trace %s: op %ld: bad size", tr->path, i);
				goto bad;
			}
		} else if (k != 'f') {
			snprintf(err, errlen, "trace %s: op %ld: unknown kind '%c'", tr->path, i, k);
			goto bad;
		}
		if (id < 0) /* the NULL pointer: free(NULL) is a no-op */
			continue;
		if (id >= (long)tr->num_ids) {
			snprintf(err, errlen, "trace %s: op %ld: id %ld >= %u ids", tr->path, i, id, tr->num_ids);
			goto bad;
		}
		tr->ops[n++] = (struct st_trace_op){ k, (uint32_t)id, (uint32_t)size };
	}
	tr->num_ops = n;
	fclose(f);
	return 0;
bad:
	fclose(f);
	st_trace_free(tr);
	return -EINVAL;
}

void st_trace_free(struct st_trace *tr)
{
	free(tr->ops);
	tr->ops = NULL;
}
