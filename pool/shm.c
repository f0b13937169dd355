/*
 * pool/shm.c - creating, validating, attaching and leaving shared-memory
 * segments; participant identity and liveness.
 *
 * Create: shm_open(O_CREAT|O_EXCL) (or an empty fd), fchmod to the exact
 * mode, ftruncate once to the final size, map, record the creator's identity
 * (so waiters can tell a dead creator), lay out the participant table, the
 * owner array and the pool, write the immutable header and its checksum, and
 * only then publish the init state READY with release (S1). A half-made
 * segment is never taken for a segment: attachers acquire READY (S2) before
 * reading anything else, and give up after a timeout (ETIMEDOUT) or as soon
 * as they see the creator dead (EOWNERDEAD).
 *
 * Attach: fstat first; the header is read only if the file holds one. The
 * header is copied into the handle and every field is checked against a
 * layout recomputed from the block size, count, alignment and slot count,
 * and against the file's real size; the embedded pool header is checked the
 * same way. Only the copy is used afterwards, so a later scribble on the
 * segment header cannot move our offsets. Then a participant slot is
 * claimed with a CAS on its identity word (S9).
 *
 * Identity: pid | start time (ticks after boot, /proc/<pid>/stat field 22)
 * << 22. A process is dead if /proc says so, if it is a zombie, or if the
 * pid now belongs to a process with another start time (pid reuse). When
 * /proc cannot tell, the process counts as alive: recovery never reclaims
 * from a process that might be running.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shm_internal.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HUGE_PAGE_DEFAULT (UINT64_C(2) << 20)

static _Thread_local const char *last_error;

const char *lfp_shm_last_error(void)
{
	return last_error;
}

static void *fail_null(int err, const char *why)
{
	last_error = why;
	errno = err;
	return NULL;
}

/* ---- time, pauses, identity ---------------------------------------------- */

uint64_t lfpi_shm_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A waiting loop's pause: yield first, then sleep 10 us doubling to 1 ms. The
 * waits are bounded by a deadline; this only keeps them off the CPU. */
void lfpi_shm_pause(unsigned *round)
{
	if (*round < 8) {
		sched_yield();
	} else {
		unsigned shift = *round - 8 < 7 ? *round - 8 : 7;
		struct timespec ts = { 0, (long)(10000L << shift) };
		nanosleep(&ts, NULL);
	}
	(*round)++;
}

/* Read state and start time of pid from /proc/<pid>/stat.
 * @return 0; -ESRCH if there is no such process; another -errno if /proc
 * could not tell. */
static int proc_stat(pid_t pid, char *state, uint64_t *start)
{
	char path[64], buf[1024];
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return n == 0 ? -ESRCH : -errno;
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields restart after the
	 * last ')'. Field 3 is the state, field 22 the start time. */
	char *p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ')
		return -EPROTO;
	p += 2;
	*state = *p;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (p == NULL)
			return -EPROTO;
		p++;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p, &end, 10);
	if (errno != 0 || end == p)
		return -EPROTO;
	*start = (uint64_t)v;
	return 0;
}

static uint64_t make_ident(pid_t pid, uint64_t start)
{
	return (uint64_t)pid | (start & LFPI_ID_START_MASK) << LFPI_ID_PID_BITS;
}

uint64_t lfpi_shm_self_ident(void)
{
	pid_t pid = getpid();
	uint64_t start;
	char state;
	if ((uint64_t)pid > LFPI_ID_PID_MASK || proc_stat(pid, &state, &start) < 0)
		return 0;
	return make_ident(pid, start);
}

bool lfpi_shm_ident_alive(uint64_t ident)
{
	pid_t pid = (pid_t)(ident & LFPI_ID_PID_MASK);
	uint64_t start;
	char state;
	int rc;

	if (pid <= 0)
		return false; /* not an identity any process could have */
	rc = proc_stat(pid, &state, &start);
	if (rc == -ESRCH)
		return false;
	if (rc < 0) /* /proc hidden or odd: ask the kernel the short way */
		return !(kill(pid, 0) < 0 && errno == ESRCH);
	if (state == 'Z' || state == 'X')
		return false; /* killed, not yet reaped: it runs no more code */
	return (start & LFPI_ID_START_MASK) == ((ident >> LFPI_ID_PID_BITS) & LFPI_ID_START_MASK);
}

/* ---- header: checksum, layout, validation -------------------------------- */

uint64_t lfpi_shm_checksum(const struct lfpi_shm_hdr *h)
{
	const unsigned char *b = (const unsigned char *)h;
	uint64_t x = UINT64_C(0xcbf29ce484222325);
	for (size_t i = 0; i < offsetof(struct lfpi_shm_hdr, checksum); i++) {
		x ^= b[i];
		x *= UINT64_C(0x100000001b3);
	}
	return x;
}

static bool is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

static bool round_up(uint64_t v, uint64_t align, uint64_t *out)
{
	if (__builtin_add_overflow(v, align - 1, out))
		return false;
	*out &= ~(align - 1);
	return true;
}

struct seg_layout {
	uint64_t align; /* resolved block alignment */
	uint64_t parts_off, owner_off, pool_off, pool_size, total_size;
};

#define HDR_SPAN ((sizeof(struct lfpi_shm_hdr) + 63u) & ~(size_t)63u)

/* The whole segment layout from its parameters. 0, or -EINVAL (bad
 * parameters) / -EOVERFLOW (does not fit) with *why set. */
static int seg_layout(uint64_t block_size, uint64_t count, uint64_t align, uint64_t max_parts,
		      uint64_t page, struct seg_layout *out, const char **why)
{
	struct lfpi_layout lay;
	uint64_t v, ralign;
	int rc;

	if (block_size > SIZE_MAX || count > SIZE_MAX || align > SIZE_MAX) {
		*why = "block size, count or alignment too large";
		return -EOVERFLOW;
	}
	if (max_parts == 0 || max_parts > LFP_SHM_MAX_PARTICIPANTS) {
		*why = "participant count out of range";
		return -EINVAL;
	}
	if (!is_pow2(page) || page < 4096 || page > (UINT64_C(1) << 30)) {
		*why = "page size not a power of two in 4 KiB .. 1 GiB";
		return -EINVAL;
	}
	lfp_pool_config_t pc = { .block_size = (size_t)block_size, .block_count = (size_t)count,
				 .block_align = (size_t)align, .flags = LFP_POOL_NO_CACHE };
	rc = lfpi_layout(&pc, &lay);
	if (rc < 0) {
		*why = rc == -EINVAL ? "bad block size, count or alignment" : "pool size overflows";
		return rc;
	}
	ralign = lay.align > LFP_REGION_ALIGN ? lay.align : LFP_REGION_ALIGN;
	out->align = lay.align;
	out->parts_off = HDR_SPAN;
	out->owner_off = out->parts_off + max_parts * sizeof(struct lfpi_shm_part);
	if (__builtin_mul_overflow(count, (uint64_t)sizeof(lfp_atomic_u32), &v) ||
	    __builtin_add_overflow(v, out->owner_off, &v) || !round_up(v, ralign, &out->pool_off) ||
	    __builtin_add_overflow(out->pool_off, lay.region_size, &v) ||
	    !round_up(v, page, &out->total_size) || out->total_size > SIZE_MAX ||
	    out->total_size > (uint64_t)INT64_MAX) {
		*why = "segment size overflows";
		return -EOVERFLOW;
	}
	out->pool_size = lay.region_size;
	return 0;
}

/* Every header field against a layout recomputed from its parameters and
 * against the file's size. Fields are checked in an order that gives the
 * most specific reason. */
int lfpi_shm_check_header(const struct lfpi_shm_hdr *h, uint64_t file_size, const char **why)
{
	struct seg_layout sl;

#define REFUSE(msg)                                                                            \
	do {                                                                                   \
		*why = (msg);                                                                  \
		return -EBADMSG;                                                               \
	} while (0)
	if (h->magic != LFPI_SHM_MAGIC)
		REFUSE("bad magic: not an lfpool segment");
	if (h->byte_order != LFPI_SHM_BYTE_ORDER)
		REFUSE("made on a machine of another byte order");
	if (h->version != LFPI_SHM_VERSION)
		REFUSE("unsupported segment layout version");
	if (h->hdr_size != sizeof(struct lfpi_shm_hdr))
		REFUSE("header size differs (another build or version)");
	if (h->index_bits != 32 || h->tag_bits != LFP_TAG_BITS ||
	    h->ptr_bits != 8 * sizeof(void *) || h->atomic_bits != 64)
		REFUSE("ABI mismatch: index, tag, pointer or atomic width differs");
	if (h->checksum != lfpi_shm_checksum(h))
		REFUSE("header checksum mismatch (corrupt header)");
	if (h->flags & ~LFPI_SHM_HDR_FLAGS_OK)
		REFUSE("unknown header flags");
	if (h->part_size != sizeof(struct lfpi_shm_part))
		REFUSE("participant slot size differs");
	if (h->cache_size > LFP_SHM_MAX_CACHE)
		REFUSE("cache size out of range");
	if (h->block_align == 0)
		REFUSE("block alignment is zero");
	if (seg_layout(h->block_size, h->block_count, h->block_align, h->max_parts, h->page_size,
		       &sl, why) < 0)
		return -EBADMSG; /* *why says which */
	if (sl.align != h->block_align)
		REFUSE("block alignment not as resolved");
	if (h->parts_off != sl.parts_off || h->owner_off != sl.owner_off ||
	    h->pool_off != sl.pool_off || h->pool_size != sl.pool_size)
		REFUSE("offsets do not match the layout");
	if (h->total_size != sl.total_size)
		REFUSE("total size does not match the layout");
	if (h->total_size > file_size)
		REFUSE("truncated: the segment is smaller than its header says");
	if ((h->creator_ident & LFPI_ID_PID_MASK) == 0)
		REFUSE("no creator identity");
#undef REFUSE
	return 0;
}

/* The pool header inside the segment, against the layout (immutable after
 * lfp_pool_init, published by S1). */
static int check_pool(const lfp_pool_t *p, const struct lfpi_shm_hdr *h, const char **why)
{
	struct lfpi_layout lay;
	lfp_pool_config_t pc = { .block_size = (size_t)h->block_size,
				 .block_count = (size_t)h->block_count,
				 .block_align = (size_t)h->block_align,
				 .flags = LFP_POOL_NO_CACHE };
	if (lfpi_layout(&pc, &lay) < 0) {
		*why = "pool layout";
		return -EBADMSG;
	}
	/* The core's own thread cache is off in a segment (shm_ops.c has its
	 * own, recoverable one), so every cache field must be 0: the core's
	 * validate would otherwise follow them. */
	if (p->magic != LFPI_POOL_MAGIC || p->version != LFPI_LAYOUT_VERSION ||
	    (p->flags & ~(uint32_t)(LFP_POOL_CHECKED | LFP_POOL_STATS | LFP_POOL_NO_CACHE)) != 0 ||
	    p->cache_off != 0 || p->mag_next_off != 0 ||
	    p->mags_off != 0 || p->cache_slots != 0 || p->cache_size != 0 || p->n_mags != 0 ||
	    p->mag_stride != 0 ||
	    p->block_size != h->block_size || p->count != h->block_count ||
	    p->stride != lay.stride || p->align != lay.align || p->next_off != lay.next_off ||
	    p->blocks_off != lay.blocks_off || p->region_size != lay.region_size ||
	    p->region_size > h->pool_size || p->stride_shift != lay.stride_shift ||
	    p->map_lead != 0 || p->map_size != 0) {
		*why = "pool header does not match the segment header";
		return -EBADMSG;
	}
	return 0;
}

/* ---- names, config -------------------------------------------------------- */

/* "/x" or "x" -> "/x" in out; -EINVAL if not a valid POSIX shm name. */
static int norm_name(const char *name, char out[NAME_MAX + 2])
{
	if (name == NULL)
		return -EINVAL;
	const char *p = name[0] == '/' ? name + 1 : name;
	size_t n = strnlen(p, NAME_MAX + 1);
	if (n == 0 || n > NAME_MAX || strchr(p, '/') != NULL || strcmp(p, ".") == 0 ||
	    strcmp(p, "..") == 0)
		return -EINVAL;
	out[0] = '/';
	memcpy(out + 1, p, n + 1);
	return 0;
}

static uint64_t sys_page(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	return pg > 0 ? (uint64_t)pg : 4096u;
}

/* Fill the immutable header from cfg. 0 or -EINVAL/-EOVERFLOW. */
static int header_from_cfg(const lfp_shm_config_t *cfg, uint64_t page, struct lfpi_shm_hdr *h,
			   const char **why)
{
	struct seg_layout sl;
	int rc;

	if (cfg == NULL) {
		*why = "no config";
		return -EINVAL;
	}
	if (cfg->flags & ~(unsigned)LFPI_SHM_FLAGS_KNOWN) {
		*why = "unknown config flags";
		return -EINVAL;
	}
	if (cfg->cache_size > LFP_SHM_MAX_CACHE) {
		*why = "cache size above LFP_SHM_MAX_CACHE";
		return -EINVAL;
	}
	unsigned parts = cfg->max_participants ? cfg->max_participants : LFP_SHM_DEFAULT_PARTICIPANTS;
	rc = seg_layout(cfg->block_size, cfg->block_count, cfg->block_align, parts, page, &sl, why);
	if (rc < 0)
		return rc;
	memset(h, 0, sizeof *h);
	h->magic = LFPI_SHM_MAGIC;
	h->version = LFPI_SHM_VERSION;
	h->hdr_size = sizeof *h;
	h->byte_order = LFPI_SHM_BYTE_ORDER;
	h->index_bits = 32;
	h->tag_bits = LFP_TAG_BITS;
	h->ptr_bits = 8 * sizeof(void *);
	h->atomic_bits = 64;
	h->flags = cfg->flags;
	h->max_parts = parts;
	h->part_size = sizeof(struct lfpi_shm_part);
	h->cache_size = (cfg->flags & LFP_SHM_NOCACHE) ? 0
			: cfg->cache_size      ? cfg->cache_size
					       : LFP_SHM_DEFAULT_CACHE;
	h->block_size = cfg->block_size;
	h->block_count = cfg->block_count;
	h->block_align = sl.align;
	h->page_size = page;
	h->parts_off = sl.parts_off;
	h->owner_off = sl.owner_off;
	h->pool_off = sl.pool_off;
	h->pool_size = sl.pool_size;
	h->total_size = sl.total_size;
	return 0;
}

/* ---- mapping --------------------------------------------------------------- */

/* Map len bytes of fd at an address aligned to align (a power of two). For
 * alignments above the page size, reserve room and place the mapping inside
 * it with MAP_FIXED. */
static char *map_aligned(int fd, size_t len, uint64_t align, char **map, size_t *map_len)
{
	char *p;
	if (align <= sys_page()) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			return NULL;
		*map = p;
		*map_len = len;
		return (uintptr_t)p % align ? NULL : p; /* mmap is page aligned */
	}
	size_t room = len + (size_t)align;
	char *res = mmap(NULL, room, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		return NULL;
	char *at = (char *)(((uintptr_t)res + align - 1) & ~(uintptr_t)(align - 1));
	p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		munmap(res, room);
		return NULL;
	}
	if (at > res)
		munmap(res, (size_t)(at - res));
	if (res + room > at + len)
		munmap(at + len, (size_t)(res + room - (at + len)));
	*map = p;
	*map_len = len;
	return p;
}

static uint64_t map_align_of(const struct lfpi_shm_hdr *h)
{
	uint64_t a = h->block_align > LFP_REGION_ALIGN ? h->block_align : LFP_REGION_ALIGN;
	return a > h->page_size ? a : h->page_size;
}

/* ---- handles --------------------------------------------------------------- */

static lfp_shm_t *handle_new(int fd)
{
	lfp_shm_t *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->fd = fd;
	s->self = -1;
	s->pid = getpid();
	pthread_mutex_init(&s->mu, NULL);
	return s;
}

static void handle_free(lfp_shm_t *s)
{
	if (s->map != NULL)
		munmap(s->map, s->map_len);
	if (s->fd >= 0)
		close(s->fd);
	if (!s->inherited) /* a fork child's copy may have been taken locked */
		pthread_mutex_destroy(&s->mu);
	free(s);
}

/* Point the handle's views into the mapping (from the validated copy). */
static void handle_views(lfp_shm_t *s)
{
	s->shdr = (struct lfpi_shm_hdr *)(void *)s->base;
	s->parts = (struct lfpi_shm_part *)(void *)(s->base + s->hdr.parts_off);
	s->owner = (lfp_atomic_u32 *)(void *)(s->base + s->hdr.owner_off);
	s->pool = (lfp_pool_t *)(void *)(s->base + s->hdr.pool_off);
	s->count = s->hdr.block_count;
}

/* Claim a free participant slot for s->ident. 0 or -EUSERS. */
static int claim_slot(lfp_shm_t *s)
{
	for (uint32_t i = 0; i < s->hdr.max_parts; i++) {
		struct lfpi_shm_part *pt = &s->parts[i];
		uint64_t cur = lfp_load64_relaxed(&pt->ident); /* relaxed: only a hint for the CAS */
		/* S9: acq_rel. Acquire pairs with S10 (the release that freed
		 * the slot), so the previous holder's and the recoverer's
		 * writes to this slot come before ours; release publishes our
		 * identity before any of our blocks carry our tag. */
		if (cur == 0 && lfp_cas64_acq_rel(&pt->ident, &cur, s->ident)) {
			lfp_store32_relaxed(&pt->op, LFP_SHM_OP_NONE); /* relaxed: diagnostic */
			lfp_store64_relaxed(&pt->attached_ns, realtime_ns()); /* relaxed: diagnostic */
			s->self = (int)i;
			s->tag = i + 1;
			return 0;
		}
	}
	return -EUSERS;
}

static int join(lfp_shm_t *s, const char **why)
{
	int rc = claim_slot(s);
	if (rc == -EUSERS) {
		/* Full: dead or departed participants may be holding slots.
		 * Recover as an observer (we have no slot yet) and retry. */
		lfp_shm_report_t rep = { 0 };
		if (lfpi_shm_scan(s, LFP_SHM_RECOVER, &rep) == 0 &&
		    rep.dead + rep.departed > 0)
			rc = claim_slot(s);
	}
	if (rc < 0)
		*why = "every participant slot is taken by a live process";
	return rc;
}

/* Lay out a new segment in the empty file fd (which s now owns) and join. */
static lfp_shm_t *create_on_fd(int fd, const lfp_shm_config_t *cfg, bool hugetlb, bool sealable,
			       int *err, const char **why)
{
	struct stat st;
	struct lfpi_shm_hdr h;
	lfp_shm_t *s;
	int rc;
	uint64_t page = hugetlb ? HUGE_PAGE_DEFAULT : sys_page();

	*err = EINVAL;
	rc = header_from_cfg(cfg, page, &h, why);
	if (rc < 0) {
		*err = -rc;
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		*err = errno;
		*why = "fstat failed";
		return NULL;
	}
	if (st.st_size != 0) {
		*err = EEXIST;
		*why = "the file is not empty";
		return NULL;
	}
	if ((cfg->flags & (LFP_SHM_HUGEPAGES | LFP_SHM_HUGEPAGES_STRICT)) ==
		    (LFP_SHM_HUGEPAGES | LFP_SHM_HUGEPAGES_STRICT) &&
	    !hugetlb) {
		*err = ENOTSUP;
		*why = "strict huge pages need a hugetlb file (use lfp_shm_create_memfd)";
		return NULL;
	}
	h.creator_ident = lfpi_shm_self_ident();
	if (h.creator_ident == 0) {
		*err = ENOTSUP;
		*why = "cannot read this process's start time from /proc";
		return NULL;
	}
	if (ftruncate(fd, (off_t)h.total_size) < 0) {
		*err = errno;
		*why = "ftruncate failed";
		return NULL;
	}
	if (sealable && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
		h.flags |= LFPI_SHM_SEALED;
	s = handle_new(fd);
	if (s == NULL) {
		*err = ENOMEM;
		*why = "out of memory";
		return NULL;
	}
	s->base = map_aligned(fd, (size_t)h.total_size, map_align_of(&h), &s->map, &s->map_len);
	if (s->base == NULL) {
		s->fd = -1; /* the caller closes or retries with fd */
		handle_free(s);
		*err = ENOMEM;
		*why = "mmap failed";
		return NULL;
	}
	if (hugetlb)
		h.flags |= LFPI_SHM_GOT_HUGE;
	else if ((cfg->flags & LFP_SHM_HUGEPAGES) &&
		 madvise(s->base, (size_t)h.total_size, MADV_HUGEPAGE) == 0)
		h.flags |= LFPI_SHM_GOT_HUGE; /* advised; the kernel decides */
	h.created_ns = realtime_ns();

	/* Our identity first, so a waiter can tell if we die from here on. */
	struct lfpi_shm_hdr *sh = (struct lfpi_shm_hdr *)(void *)s->base;
	/* relaxed: attachers may already poll it; READY comes with S1 */
	lfp_store32_relaxed(&sh->init_state, 0);
	lfp_store32_relaxed(&sh->init_timeout_ms, cfg->init_timeout_ms); /* relaxed: read by waiters, diagnostic */
	lfp_store64_relaxed(&sh->creator, h.creator_ident); /* relaxed: diagnostic, see S1 */

	s->hdr = h;
	handle_views(s);
	/* atomic_init (plain stores): nobody reads these before S1 publishes
	 * them (attachers read only init_state and creator until READY). */
	for (uint32_t i = 0; i < h.max_parts; i++) {
		lfp_init32(&s->parts[i].gate, 0);
		lfp_init32(&s->parts[i].op, 0);
		lfp_init64(&s->parts[i].reserved, 0);
		lfp_init64(&s->parts[i].ident, 0);
		lfp_init64(&s->parts[i].attached_ns, 0);
	}
	for (uint64_t i = 0; i < h.block_count; i++)
		lfp_init32(&s->owner[i], 0);
	lfp_init64(&sh->recovery_lock, 0);
	lfp_init64(&sh->recoveries, 0);
	lfp_init64(&sh->reclaimed, 0);
	lfp_pool_config_t pc = { .block_size = (size_t)h.block_size,
				 .block_count = (size_t)h.block_count,
				 .block_align = (size_t)h.block_align,
				 .flags = LFP_POOL_NO_CACHE };
	lfp_pool_t *pool;
	rc = lfp_pool_init(s->pool, (size_t)h.pool_size, &pc, &pool);
	if (rc < 0) {
		s->fd = -1;
		handle_free(s);
		*err = -rc;
		*why = "pool layout failed";
		return NULL;
	}
	h.checksum = lfpi_shm_checksum(&h);
	s->hdr = h;
	memcpy(sh, &h, offsetof(struct lfpi_shm_hdr, init_state));
	/* S1: release. Everything above (header, table, owner array, pool)
	 * happens before an attacher's S2 acquire that reads READY. */
	lfp_store32_release(&sh->init_state, LFPI_SHM_READY);

	s->ident = h.creator_ident;
	s->cache_size = h.cache_size;
	s->timeout_ms = cfg->init_timeout_ms ? cfg->init_timeout_ms : LFP_SHM_DEFAULT_TIMEOUT_MS;
	rc = claim_slot(s); /* a fresh table: only fails if attachers took it all */
	if (rc < 0) {
		s->fd = -1;
		handle_free(s);
		*err = -rc;
		*why = "every participant slot was taken before the creator joined";
		return NULL;
	}
	lfpi_shm_register(s);
	return s;
}

lfp_shm_t *lfp_shm_create(const char *name, const lfp_shm_config_t *cfg, mode_t mode)
{
	char nm[NAME_MAX + 2];
	const char *why = NULL;
	int err, fd;

	last_error = NULL;
	if (norm_name(name, nm) < 0)
		return fail_null(EINVAL, "bad segment name");
	if (mode & ~(mode_t)0777)
		return fail_null(EINVAL, "mode has bits beyond 0777");
	if (mode == 0)
		mode = 0600;
	fd = shm_open(nm, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return fail_null(errno, errno == EEXIST ? "a segment of that name exists (attach to it, or "
							   "remove it: lfpool-stat --unlink NAME)"
							 : "shm_open failed");
	if (fchmod(fd, mode) < 0) { /* exactly mode, whatever the umask */
		err = errno;
		close(fd);
		shm_unlink(nm);
		return fail_null(err, "fchmod failed");
	}
	lfp_shm_t *s = create_on_fd(fd, cfg, false, false, &err, &why);
	if (s == NULL) {
		close(fd);
		shm_unlink(nm);
		return fail_null(err, why);
	}
	return s;
}

lfp_shm_t *lfp_shm_create_fd(int fd, const lfp_shm_config_t *cfg)
{
	const char *why = NULL;
	int err;

	last_error = NULL;
	if (fd < 0)
		return fail_null(EBADF, "bad file descriptor");
	int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (own < 0)
		return fail_null(errno, "cannot duplicate the file descriptor");
	lfp_shm_t *s = create_on_fd(own, cfg, false, false, &err, &why);
	if (s == NULL) {
		close(own);
		return fail_null(err, why);
	}
	return s;
}

lfp_shm_t *lfp_shm_create_memfd(const char *label, const lfp_shm_config_t *cfg)
{
	const char *why = NULL;
	int err = EINVAL, fd;
	lfp_shm_t *s = NULL;

	last_error = NULL;
	if (cfg == NULL)
		return fail_null(EINVAL, "no config");
	if (label == NULL)
		label = "lfpool";
	if (cfg->flags & LFP_SHM_HUGEPAGES) {
		fd = memfd_create(label, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB);
		if (fd >= 0) {
			s = create_on_fd(fd, cfg, true, true, &err, &why);
			if (s == NULL)
				close(fd); /* most often: no huge pages reserved */
		} else {
			err = errno;
			why = "memfd_create(MFD_HUGETLB) failed";
		}
		if (s != NULL)
			return s;
		if (cfg->flags & LFP_SHM_HUGEPAGES_STRICT)
			return fail_null(err == EINVAL ? ENOMEM : err, why);
	}
	fd = memfd_create(label, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return fail_null(errno, "memfd_create failed");
	lfp_shm_config_t c = *cfg;
	c.flags &= ~(unsigned)(LFP_SHM_HUGEPAGES | LFP_SHM_HUGEPAGES_STRICT);
	s = create_on_fd(fd, &c, false, true, &err, &why);
	if (s == NULL) {
		close(fd);
		return fail_null(err, why);
	}
	return s;
}

/* ---- attach ------------------------------------------------------------------ */

static lfp_shm_t *attach_own_fd(int fd, const lfp_shm_attach_opts_t *o, int *err,
				const char **why)
{
	struct stat st;
	lfp_shm_t *s;
	unsigned round = 0;
	unsigned timeout = o->timeout_ms;
	uint64_t deadline;
	int rc;

	*err = EBADMSG;
	/* Phase 1: the file must hold at least a header. Size 0 is a creator
	 * that has not sized it yet; anything else short is truncated. */
	deadline = lfpi_shm_now_ns() +
		   (uint64_t)(timeout ? timeout : LFP_SHM_DEFAULT_TIMEOUT_MS) * 1000000u;
	for (;;) {
		if (fstat(fd, &st) < 0) {
			*err = errno;
			*why = "fstat failed";
			return NULL;
		}
		if (st.st_size != 0)
			break;
		if (o->flags & LFP_SHM_NOWAIT) {
			*err = EAGAIN;
			*why = "the segment is still being created";
			return NULL;
		}
		if (lfpi_shm_now_ns() > deadline) {
			*err = ETIMEDOUT;
			*why = "timed out: the creator never sized the segment";
			return NULL;
		}
		lfpi_shm_pause(&round);
	}
	if ((uint64_t)st.st_size < sizeof(struct lfpi_shm_hdr)) {
		*why = "truncated: smaller than a segment header";
		return NULL;
	}
	if ((uint64_t)st.st_size > SIZE_MAX) {
		*why = "file too large to map";
		return NULL;
	}
	s = handle_new(fd);
	if (s == NULL) {
		*err = ENOMEM;
		*why = "out of memory";
		return NULL;
	}
	s->base = map_aligned(fd, (size_t)st.st_size, sys_page(), &s->map, &s->map_len);
	if (s->base == NULL) {
		s->fd = -1;
		handle_free(s);
		*err = ENOMEM;
		*why = "mmap failed";
		return NULL;
	}
	struct lfpi_shm_hdr *sh = (struct lfpi_shm_hdr *)(void *)s->base;

	/* Phase 2: wait for READY. */
	if (timeout == 0) {
		/* relaxed: a hint from the creator, bounded below */
		unsigned t = lfp_load32_relaxed(&sh->init_timeout_ms);
		timeout = t != 0 && t <= 600000u ? t : LFP_SHM_DEFAULT_TIMEOUT_MS;
		deadline = lfpi_shm_now_ns() + (uint64_t)timeout * 1000000u;
	}
	round = 0;
	for (;;) {
		/* S2: acquire, pairs with S1: after READY every immutable
		 * field and the whole initial layout are visible. */
		uint32_t state = lfp_load32_acquire(&sh->init_state);
		if (state == LFPI_SHM_READY)
			break;
		*err = EBADMSG;
		*why = "bad init state word";
		if (state != 0)
			goto fail;
		if (o->flags & LFP_SHM_NOWAIT) {
			*err = EAGAIN;
			*why = "the segment is still being initialised";
			goto fail;
		}
		uint64_t creator = lfp_load64_relaxed(&sh->creator); /* relaxed: diagnostic */
		if (creator != 0 && !lfpi_shm_ident_alive(creator)) {
			*err = EOWNERDEAD;
			*why = "the creator died before finishing initialisation";
			goto fail;
		}
		if (lfpi_shm_now_ns() > deadline) {
			*err = ETIMEDOUT;
			*why = "timed out waiting for the creator to finish initialisation";
			goto fail;
		}
		lfpi_shm_pause(&round);
	}

	/* Phase 3: validate a private copy, then only trust the copy. */
	memcpy(&s->hdr, sh, offsetof(struct lfpi_shm_hdr, init_state));
	*err = EBADMSG;
	rc = lfpi_shm_check_header(&s->hdr, (uint64_t)st.st_size, why);
	if (rc < 0)
		goto fail;
	handle_views(s);
	if (check_pool(s->pool, &s->hdr, why) < 0)
		goto fail;
	if ((uintptr_t)s->base % map_align_of(&s->hdr) != 0) {
		/* Blocks aligned above the page size: map again, aligned. */
		char *old = s->map;
		size_t old_len = s->map_len;
		s->base = map_aligned(fd, (size_t)s->hdr.total_size, map_align_of(&s->hdr), &s->map,
				      &s->map_len);
		munmap(old, old_len);
		if (s->base == NULL) {
			s->map = NULL;
			*err = ENOMEM;
			*why = "aligned mmap failed";
			goto fail;
		}
		handle_views(s);
	}
	s->ident = lfpi_shm_self_ident();
	if (s->ident == 0) {
		*err = ENOTSUP;
		*why = "cannot read this process's start time from /proc";
		goto fail;
	}
	s->timeout_ms = timeout;
	s->cache_size = (o->flags & LFP_SHM_NOCACHE) ? 0
			: o->cache_size              ? o->cache_size
						     : s->hdr.cache_size;
	if (!(o->flags & LFP_SHM_OBSERVER)) {
		rc = join(s, why);
		if (rc < 0) {
			*err = -rc;
			goto fail;
		}
	} else {
		s->cache_size = 0;
	}
	lfpi_shm_register(s);
	return s;
fail:
	s->fd = -1; /* the caller closes its fd */
	handle_free(s);
	return NULL;
}

lfp_shm_t *lfp_shm_attach_ex(const char *name, int fd, const lfp_shm_attach_opts_t *opts)
{
	lfp_shm_attach_opts_t o = { 0 };
	char nm[NAME_MAX + 2];
	const char *why = NULL;
	int err, own;

	last_error = NULL;
	if (opts != NULL)
		o = *opts;
	if ((name == NULL) == (fd < 0))
		return fail_null(EINVAL, "give a name or a file descriptor, not both");
	if (o.flags & ~(unsigned)LFPI_SHM_ATTACH_FLAGS)
		return fail_null(EINVAL, "unknown attach flags");
	if (o.cache_size > LFP_SHM_MAX_CACHE)
		return fail_null(EINVAL, "cache size above LFP_SHM_MAX_CACHE");
	if (name != NULL) {
		if (norm_name(name, nm) < 0)
			return fail_null(EINVAL, "bad segment name");
		own = shm_open(nm, O_RDWR | O_CLOEXEC, 0);
		if (own < 0)
			return fail_null(errno, errno == ENOENT ? "no segment of that name (not created yet, "
								  "or unlinked)"
								: "shm_open failed");
	} else {
		own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (own < 0)
			return fail_null(errno == EINVAL ? EBADF : errno, "bad file descriptor");
	}
	lfp_shm_t *s = attach_own_fd(own, &o, &err, &why);
	if (s == NULL) {
		close(own);
		return fail_null(err, why);
	}
	return s;
}

lfp_shm_t *lfp_shm_attach(const char *name)
{
	if (name == NULL)
		return fail_null(EINVAL, "no name");
	return lfp_shm_attach_ex(name, -1, NULL);
}

lfp_shm_t *lfp_shm_attach_fd(int fd)
{
	if (fd < 0)
		return fail_null(EBADF, "bad file descriptor");
	return lfp_shm_attach_ex(NULL, fd, NULL);
}

/* ---- detach, unlink ------------------------------------------------------------ */

int lfp_shm_detach(lfp_shm_t *s)
{
	int held = 0;

	if (s == NULL)
		return -EINVAL;
	if (s->inherited) { /* a fork child's copy: the slot is the parent's */
		lfpi_shm_unregister(s, false);
		handle_free(s);
		return 0;
	}
	lfpi_shm_unregister(s, true); /* flushes every thread cache */
	if (s->self >= 0) {
		struct lfpi_shm_part *pt = &s->parts[s->self];
		for (uint64_t i = 0; i < s->count; i++) {
			/* relaxed: only our own threads give us blocks, and the
			 * caller has stopped them */
			uint32_t o = lfp_load32_relaxed(&s->owner[i]);
			held += (o & LFPI_OWN_TAG_MASK) == s->tag && held < INT_MAX;
		}
		/* Outside the gate on purpose: a death between a gate entry
		 * and exit must never leave a count on a slot that looks
		 * free. A recovery running now has counted us live with
		 * these holdings; the next one sees the new state. */
		uint64_t cur = s->ident;
		/* S10: release, pairs with S9 in the next claimer and with the
		 * recoverer's acquire: our last writes to the owner array
		 * come before the slot looks free (or departed). */
		lfp_cas64_acq_rel(&pt->ident, &cur, held ? s->ident | LFPI_ID_DEPARTED : 0);
	}
	handle_free(s);
	return held;
}

int lfp_shm_unlink(const char *name)
{
	char nm[NAME_MAX + 2];
	if (norm_name(name, nm) < 0)
		return -EINVAL;
	return shm_unlink(nm) < 0 ? -errno : 0;
}

/* ---- queries ------------------------------------------------------------------------ */

int lfp_shm_self(const lfp_shm_t *s)
{
	return lfpi_shm_usable(s) && s->self >= 0 ? s->self : -EINVAL;
}

int64_t lfp_shm_index(const lfp_shm_t *s, const void *ptr)
{
	if (!lfpi_shm_usable(s) || ptr == NULL)
		return -EINVAL;
	return lfpi_index(s->pool, ptr);
}

void *lfp_shm_ptr(const lfp_shm_t *s, uint64_t index)
{
	if (!lfpi_shm_usable(s) || index >= s->count)
		return NULL;
	return lfpi_ptr(s->pool, (uint32_t)index);
}

int lfp_shm_owner(const lfp_shm_t *s, const void *ptr)
{
	int64_t i = lfp_shm_index(s, ptr);
	if (i < 0)
		return -EINVAL;
	uint32_t o = lfp_load32_relaxed(&s->owner[i]); /* relaxed: a snapshot */
	if (o == 0 || (o & LFPI_OWN_CACHED))
		return -ENOENT;
	return (int)(o & LFPI_OWN_TAG_MASK) - 1;
}

const lfp_pool_t *lfp_shm_pool(const lfp_shm_t *s)
{
	return lfpi_shm_usable(s) ? s->pool : NULL;
}

int lfp_shm_fd(const lfp_shm_t *s)
{
	return lfpi_shm_usable(s) ? s->fd : -EINVAL;
}

int lfp_shm_info(const lfp_shm_t *s, lfp_shm_info_t *out)
{
	if (!lfpi_shm_usable(s) || out == NULL)
		return -EINVAL;
	const struct lfpi_shm_hdr *h = &s->hdr;
	*out = (lfp_shm_info_t){
		.version = h->version,
		.flags = h->flags & LFPI_SHM_FLAGS_KNOWN,
		.block_size = s->pool->stride,
		.block_count = h->block_count,
		.block_align = h->block_align,
		.max_participants = h->max_parts,
		.cache_size = s->cache_size,
		.total_size = h->total_size,
		.map_size = s->map_len,
		.parts_off = h->parts_off,
		.owner_off = h->owner_off,
		.pool_off = h->pool_off,
		.pool_size = h->pool_size,
		.creator_pid = (int64_t)(h->creator_ident & LFPI_ID_PID_MASK),
		.creator_start = (h->creator_ident >> LFPI_ID_PID_BITS) & LFPI_ID_START_MASK,
		.created_ns = h->created_ns,
		.recoveries = lfp_load64_relaxed(&s->shdr->recoveries), /* relaxed: statistics */
		.reclaimed = lfp_load64_relaxed(&s->shdr->reclaimed),   /* relaxed: statistics */
		.base = s->base,
		.self = s->self,
		.hugepages = (h->flags & LFPI_SHM_GOT_HUGE) != 0,
		.sealed = (h->flags & LFPI_SHM_SEALED) != 0,
	};
	return 0;
}
