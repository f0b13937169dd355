/*
 * pool/shm_internal.h - the shared-memory segment's layout and the handle,
 * shared by pool/shm.c (create/attach/detach), pool/shm_ops.c (alloc, free,
 * adopt, thread caches, the participant gate) and pool/shm_recover.c.
 *
 * Segment, at offsets from its start (nothing in it is a pointer):
 *
 *   0          struct lfpi_shm_hdr   immutable part (checksummed) + a few
 *                                    atomic words (init state, recovery lock)
 *   parts_off  struct lfpi_shm_part[max_parts]   128 bytes each
 *   owner_off  lfp_atomic_u32 owner[count]       one word per block
 *   pool_off   the lfpool region (lfp_pool_init), aligned to max(64, align)
 *   total_size (a multiple of the mapping page size)
 *
 * Owner word of block i:
 *   0                      free: on the free stack, or in flight (popped and
 *                          not yet recorded, or recorded free and not yet
 *                          pushed)
 *   tag                    owned by participant tag-1 (tag = slot + 1)
 *   tag | LFPI_OWN_CACHED  in a thread cache of participant tag-1
 *
 * Invariant when no participant is inside the gate (the world is stopped):
 * each block is exactly one of: on the free stack (owner 0), owned or cached
 * by a slot (owner != 0), or an orphan (owner 0, not on the stack) left by a
 * participant that died inside the gate. Orphans exist only while some dead
 * participant's gate count is nonzero (or a recoverer died mid-reclaim).
 * Recovery, run with the world stopped, therefore finds every orphan exactly.
 *
 * Participant gate word: LFPI_GATE_STOP | number of the process's threads
 * inside a shared-stack operation. Participants enter with a CAS that fails
 * if STOP is set (S3) and leave with a release decrement (S4); a recoverer
 * sets STOP with an RMW (S5) and waits for the count to drain. Both sides
 * RMW the same word, so one of them always sees the other (no store-load
 * fence is needed).
 */
#ifndef LFP_POOL_SHM_INTERNAL_H
#define LFP_POOL_SHM_INTERNAL_H

#include "internal.h"

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#define LFPI_SHM_MAGIC UINT64_C(0x31304d485350464c) /* "LFPSHM01" in memory order */
#define LFPI_SHM_VERSION 1u
#define LFPI_SHM_BYTE_ORDER UINT32_C(0x01020304)
#define LFPI_SHM_READY UINT32_C(0x59444552) /* "REDY" */
#define LFPI_SHM_FLAGS_KNOWN (LFP_SHM_HUGEPAGES | LFP_SHM_HUGEPAGES_STRICT | LFP_SHM_NOCACHE)
#define LFPI_SHM_ATTACH_FLAGS (LFP_SHM_OBSERVER | LFP_SHM_NOWAIT | LFP_SHM_NOCACHE)
/* Recorded in hdr->flags by the creator, not asked for: huge pages in use. */
#define LFPI_SHM_GOT_HUGE (1u << 16)
#define LFPI_SHM_SEALED (1u << 17)
#define LFPI_SHM_HDR_FLAGS_OK (LFPI_SHM_FLAGS_KNOWN | LFPI_SHM_GOT_HUGE | LFPI_SHM_SEALED)

#define LFPI_OWN_CACHED UINT32_C(0x80000000)
#define LFPI_OWN_TAG_MASK UINT32_C(0x0000FFFF)

#define LFPI_GATE_STOP UINT32_C(0x80000000)
#define LFPI_GATE_COUNT UINT32_C(0x7FFFFFFF)

/* Participant identity: pid (22 bits: Linux pids are < 2^22) | process start
 * time in clock ticks (41 bits) << 22 | departed (bit 63). 0 = free slot. */
#define LFPI_ID_PID_BITS 22
#define LFPI_ID_PID_MASK ((UINT64_C(1) << LFPI_ID_PID_BITS) - 1)
#define LFPI_ID_START_MASK ((UINT64_C(1) << 41) - 1)
#define LFPI_ID_DEPARTED (UINT64_C(1) << 63)

struct lfpi_shm_hdr {
	/* Immutable after the init state is published (S1); bytes [0,
	 * offsetof(checksum)) are covered by the checksum. */
	uint64_t magic;
	uint32_t version;
	uint32_t hdr_size;    /* sizeof(struct lfpi_shm_hdr) */
	uint32_t byte_order;  /* LFPI_SHM_BYTE_ORDER as written by the creator */
	uint8_t index_bits;   /* 32 */
	uint8_t tag_bits;     /* LFP_TAG_BITS */
	uint8_t ptr_bits;     /* 8 * sizeof(void *) */
	uint8_t atomic_bits;  /* 64: the widest atomic the layout uses */
	uint32_t flags;       /* create flags | LFPI_SHM_GOT_HUGE | LFPI_SHM_SEALED */
	uint32_t max_parts;
	uint32_t part_size;   /* sizeof(struct lfpi_shm_part) */
	uint32_t cache_size;  /* default per-thread cache for attachers */
	uint64_t block_size;
	uint64_t block_count;
	uint64_t block_align; /* as resolved (never 0) */
	uint64_t page_size;   /* mapping granularity the sizes are rounded to */
	uint64_t parts_off;
	uint64_t owner_off;
	uint64_t pool_off;
	uint64_t pool_size;   /* lfp_pool_region_size() */
	uint64_t total_size;
	uint64_t creator_ident;
	uint64_t created_ns;
	uint64_t checksum;    /* FNV-1a 64 of the bytes above */

	/* Written before the layout, read by attachers that wait (relaxed:
	 * diagnostics for the wait loop only, they order nothing). */
	LFP_CACHE_ALIGNED lfp_atomic_u32 init_state; /* 0, then LFPI_SHM_READY (S1) */
	lfp_atomic_u32 init_timeout_ms;
	lfp_atomic_u64 creator; /* creator's identity, for the dead-creator check */

	/* Recovery: the lock holds the recoverer's identity (S7/S8). */
	LFP_CACHE_ALIGNED lfp_atomic_u64 recovery_lock;
	lfp_atomic_u64 recoveries; /* relaxed: statistics */
	lfp_atomic_u64 reclaimed;  /* relaxed: statistics */
};

struct lfpi_shm_part {
	/* Written by the participant on every slow-path operation. */
	LFP_CACHE_ALIGNED lfp_atomic_u32 gate; /* STOP | in-flight count (S3-S6) */
	lfp_atomic_u32 op;                     /* journal: LFP_SHM_OP_* (relaxed, diagnostic) */
	lfp_atomic_u64 reserved;               /* 0 (room for a statistic) */
	/* Written at claim/release, read by attachers and recoverers. */
	LFP_CACHE_ALIGNED lfp_atomic_u64 ident; /* 0 free; pid|start|departed (S9/S10) */
	lfp_atomic_u64 attached_ns;             /* relaxed: diagnostics */
};

_Static_assert(sizeof(struct lfpi_shm_part) == 128, "participant slot is two lines");
_Static_assert(offsetof(struct lfpi_shm_hdr, checksum) % 8 == 0, "checksum aligned");
_Static_assert(offsetof(struct lfpi_shm_hdr, init_state) == 192, "header layout is fixed");

/* A thread's cache for one handle (process memory). The blocks in it are
 * recorded in the segment as tag|LFPI_OWN_CACHED, so a dead process's caches
 * are found from the owner array alone. */
struct lfpi_tcache {
	struct lfp_shm *shm;
	struct lfpi_tcache *next; /* in shm->caches, under shm->mu */
	uint32_t n, cap;
	uint32_t idx[];
};

struct lfp_shm {
	/* Immutable after attach. */
	struct lfpi_shm_hdr hdr; /* validated copy: offsets come from here */
	char *base;              /* the segment in this process */
	char *map;               /* what to munmap */
	size_t map_len;
	int fd;
	struct lfpi_shm_hdr *shdr;    /* the header in the segment */
	struct lfpi_shm_part *parts;
	lfp_atomic_u32 *owner;
	lfp_pool_t *pool;
	uint64_t count;
	int self;          /* slot, or -1 for an observer */
	uint32_t tag;      /* self + 1 */
	uint64_t ident;    /* this process's identity */
	unsigned cache_size;
	unsigned timeout_ms;
	uint64_t uid;      /* process-unique handle number (thread caches) */
	pid_t pid;         /* the process that attached */

	/* Process-local. */
	bool inherited;    /* set in a fork child: the handle is not ours */
	pthread_mutex_t mu; /* guards caches */
	struct lfpi_tcache *caches;
	struct lfp_shm *reg_next; /* registry of live handles (shm_ops.c) */
};

/* ---- shm.c ---- */
/* This process's identity (pid | start << 22); 0 if /proc is unreadable. */
LFPI_HIDDEN uint64_t lfpi_shm_self_ident(void);
/* Is the process behind ident running? Dead: gone, zombie, or pid reused.
 * Unknowable (no /proc access): alive, so nothing is reclaimed wrongly. */
LFPI_HIDDEN bool lfpi_shm_ident_alive(uint64_t ident);
LFPI_HIDDEN uint64_t lfpi_shm_now_ns(void);
LFPI_HIDDEN void lfpi_shm_pause(unsigned *round);
/* Validate a header copy against the file's size. 0 or -EBADMSG + *why. */
LFPI_HIDDEN int lfpi_shm_check_header(const struct lfpi_shm_hdr *h, uint64_t file_size,
				      const char **why);
LFPI_HIDDEN uint64_t lfpi_shm_checksum(const struct lfpi_shm_hdr *h);

/* ---- shm_ops.c ---- */
/* Add a new handle to the process's registry (thread-exit destructors find
 * handles there). Concurrency: any; takes the registry mutex. */
LFPI_HIDDEN void lfpi_shm_register(lfp_shm_t *s);
/* Remove from the registry and free every thread cache, flushing them first
 * if flush. Concurrency: nothing else on s (detach). Progress: blocking. */
LFPI_HIDDEN void lfpi_shm_unregister(lfp_shm_t *s, bool flush);
/* Enter the participant's gate before a shared-stack operation (op is
 * recorded in the journal). 0, or -ETIMEDOUT if a recovery outlasted 4x the
 * handle's timeout. Concurrency: any thread of the participant. Ordering:
 * S3 (acquire): a finished recovery's reclaim happens before what follows.
 * Progress: wait-free unless a recovery runs (then blocking, bounded). */
LFPI_HIDDEN int lfpi_shm_gate_enter(lfp_shm_t *s, uint32_t op);
/* Leave it. Ordering: S4 (release): our writes inside happen before any
 * recovery's scan that waits for us. Progress: wait-free. */
LFPI_HIDDEN void lfpi_shm_gate_exit(lfp_shm_t *s);

/* ---- shm_recover.c ---- */
/* lfp_shm_inspect() for any handle, including one that has not joined yet
 * (attach recovers when the table is full) and a participant waiting at the
 * gate whose recoverer died (it takes the recovery over). Concurrency: any,
 * except from inside the caller's own gate. Ordering: S5-S8. Progress:
 * blocking, O(capacity + slots), bounded by the handle's timeout. */
LFPI_HIDDEN int lfpi_shm_scan(lfp_shm_t *s, unsigned flags, lfp_shm_report_t *rep);

static inline bool lfpi_shm_usable(const lfp_shm_t *s)
{
	return s != NULL && !s->inherited;
}

#endif /* LFP_POOL_SHM_INTERNAL_H */
