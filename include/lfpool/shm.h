/*
 * lfpool/shm.h - named pools in shared memory (included by lfpool.h; do not
 * include directly).
 *
 * A segment is one POSIX shared-memory object (or a memfd) holding a header,
 * a participant table, one owner word per block and an ordinary lfpool region.
 * It stores offsets and indices only, so every process may map it at a
 * different address. Each attached process is a participant: it holds a slot
 * identified by pid + process start time, and every block records which
 * participant owns it. When a process dies - SIGKILL at any instruction - any
 * survivor calls lfp_shm_recover(), which returns the dead process's blocks,
 * the blocks in its thread caches and the blocks it had in flight, exactly.
 * See docs/shared-memory.md for the layout, the crash model and a tutorial.
 *
 * Error rule: as lfpool.h. Constructors (create/attach) return NULL and set
 * errno; control functions return 0 (or a count) or a negative errno;
 * lfp_shm_alloc returns NULL and sets errno. lfp_shm_last_error() gives a
 * short human-readable reason for the calling thread's last create/attach
 * failure (for example which header field was refused).
 *
 * Which calls may run concurrently on one segment:
 *
 *   | call                          | concurrent with                          |
 *   |-------------------------------|------------------------------------------|
 *   | lfp_shm_alloc/_free/_adopt    | each other (any thread, any process),    |
 *   |                               | queries, inspect and recover anywhere    |
 *   | lfp_shm_cache_flush           | as alloc; flushes the calling thread only|
 *   | lfp_shm_owner/_index/_ptr/... | anything but detach of the same handle   |
 *   | lfp_shm_inspect, _recover     | everything except detach of that handle; |
 *   |                               | exact/recover briefly stop every         |
 *   |                               | participant's slow path (see below)      |
 *   | lfp_shm_attach/_create        | anything (other handles)                 |
 *   | lfp_shm_detach                | nothing on that handle (other handles and|
 *   |                               | other processes go on)                   |
 *
 * Progress: alloc/free are lock-free, except while a recovery (or an exact
 * inspect) runs: recovery stops the world, so participants entering the
 * shared free stack wait for it (it is O(capacity) and rare). Thread-cache
 * hits and frees into a non-full thread cache never wait.
 *
 * A handle belongs to the process that made it. After fork() the child must
 * not use an inherited handle (every call on it fails with EINVAL, except
 * detach, which then only unmaps); the child attaches for itself.
 */
#ifndef LFPOOL_SHM_H
#define LFPOOL_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Most participants a segment can have (slots in its table). */
#define LFP_SHM_MAX_PARTICIPANTS 1024u
/** Slots when the config says 0. */
#define LFP_SHM_DEFAULT_PARTICIPANTS 16u
/** Per-thread cache size (blocks) when the config says 0. */
#define LFP_SHM_DEFAULT_CACHE 32u
/** Largest per-thread cache. */
#define LFP_SHM_MAX_CACHE 1024u
/** How long attach waits for a creator that is still initialising, and how
 * long recovery waits for a live participant to leave its operation, when
 * nothing else is configured (milliseconds). */
#define LFP_SHM_DEFAULT_TIMEOUT_MS 2000u
/** lfp_shm_adopt(): accept the block from any participant. */
#define LFP_SHM_ANY (-1)

/** Flags. Create flags are recorded in the segment; attach flags are per
 * handle. */
enum {
	/** create: back the segment with huge pages. memfd segments use
	 * MFD_HUGETLB and fall back to normal pages if none are reserved
	 * (lfp_shm_info().hugepages says which); named segments can only ask
	 * for transparent huge pages (madvise), best effort. */
	LFP_SHM_HUGEPAGES = 1u << 0,
	/** create: with LFP_SHM_HUGEPAGES, fail (ENOMEM / ENOTSUP) rather
	 * than fall back to normal pages. */
	LFP_SHM_HUGEPAGES_STRICT = 1u << 1,
	/** create: attachers default to no thread cache; attach: this handle
	 * uses no thread cache. */
	LFP_SHM_NOCACHE = 1u << 2,
	/** attach: join without a participant slot. The handle can inspect
	 * and recover but not allocate (lfpool-stat uses this). */
	LFP_SHM_OBSERVER = 1u << 8,
	/** attach: do not wait for a creator still initialising: EAGAIN. */
	LFP_SHM_NOWAIT = 1u << 9,
};

/** lfp_shm_inspect() flags. */
enum {
	/** Stop every participant's slow path while counting, so the
	 * figures are exact (otherwise a snapshot of a running segment). */
	LFP_SHM_EXACT = 1u << 0,
	/** Reclaim what dead and departed participants hold (implies
	 * LFP_SHM_EXACT). lfp_shm_recover() is inspect with this flag. */
	LFP_SHM_RECOVER = 1u << 1,
};

/** What a segment is made of. Zero-initialise, then set what you need. */
typedef struct lfp_shm_config {
	size_t block_size;         /**< bytes per block, >= 1 */
	size_t block_count;        /**< blocks, 1 .. LFP_POOL_MAX_BLOCKS */
	size_t block_align;        /**< power of two; 0 = alignof(max_align_t) */
	unsigned max_participants; /**< slots; 0 = LFP_SHM_DEFAULT_PARTICIPANTS */
	unsigned cache_size;       /**< per-thread cache; 0 = LFP_SHM_DEFAULT_CACHE */
	unsigned init_timeout_ms;  /**< attachers' wait for init; 0 = default */
	unsigned flags;            /**< LFP_SHM_HUGEPAGES, _STRICT, _NOCACHE */
} lfp_shm_config_t;

/** Attach options for lfp_shm_attach_ex(). Zero-initialise. */
typedef struct lfp_shm_attach_opts {
	unsigned flags;      /**< LFP_SHM_OBSERVER, LFP_SHM_NOWAIT, LFP_SHM_NOCACHE */
	unsigned timeout_ms; /**< 0 = what the creator recorded, else the default */
	unsigned cache_size; /**< 0 = the segment's default */
} lfp_shm_attach_opts_t;

/** Opaque handle: one process's attachment to one segment. */
typedef struct lfp_shm lfp_shm_t;

/** Participant slot states (lfp_shm_part_info_t.state). */
enum {
	LFP_SHM_PART_FREE = 0,     /**< slot unused */
	LFP_SHM_PART_LIVE = 1,     /**< attached process that is running */
	LFP_SHM_PART_DEAD = 2,     /**< its process is gone (or the pid was reused) */
	LFP_SHM_PART_DEPARTED = 3, /**< detached while still owning blocks */
};

/** Operations named by the in-flight journal (lfp_shm_part_info_t.last_op). */
enum {
	LFP_SHM_OP_NONE = 0,
	LFP_SHM_OP_ALLOC = 1,
	LFP_SHM_OP_FREE = 2,
	LFP_SHM_OP_REFILL = 3,
	LFP_SHM_OP_FLUSH = 4,
	LFP_SHM_OP_ADOPT = 5,
	LFP_SHM_OP_DETACH = 6,
};

/** One participant, as lfp_shm_inspect() found it. */
typedef struct lfp_shm_part_info {
	uint32_t id;          /**< slot number (what lfp_shm_self() returns) */
	uint32_t state;       /**< LFP_SHM_PART_* */
	int64_t pid;          /**< process id */
	uint64_t start_time;  /**< process start, clock ticks after boot */
	uint64_t owned;       /**< blocks it owns (allocated, not cached) */
	uint64_t cached;      /**< blocks in its thread caches */
	uint64_t orphans;     /**< in-flight blocks attributed to it (dead only) */
	uint32_t in_flight;   /**< operations it was inside (journal) */
	uint32_t last_op;     /**< LFP_SHM_OP_* of its latest slow-path operation */
	bool reclaimed;       /**< its holdings went back to the free stack */
} lfp_shm_part_info_t;

/** What lfp_shm_inspect()/lfp_shm_recover() found. Set parts/parts_cap (or
 * leave them 0) before the call; the rest is output. */
typedef struct lfp_shm_report {
	lfp_shm_part_info_t *parts; /**< caller's array, may be NULL */
	size_t parts_cap;           /**< its length */
	size_t parts_len;           /**< slots in use (entries written: min of both) */
	uint64_t capacity;          /**< block count */
	uint64_t free;              /**< on the free stack (after any reclaim) */
	uint64_t owned;             /**< owned by live participants */
	uint64_t cached;            /**< in live participants' caches */
	uint64_t dead_owned;        /**< found owned by dead/departed participants */
	uint64_t dead_cached;       /**< found in their caches */
	uint64_t orphans;           /**< in flight: neither free nor owned */
	uint64_t unexplained;       /**< orphans no dead participant accounts for */
	uint64_t reclaimed;         /**< returned to the free stack by this call */
	uint32_t live, dead, departed;
	bool exact;                 /**< counted with the world stopped */
	int validate;               /**< lfp_pool_validate() of the region (exact only) */
	const char *error;          /**< NULL when consistent, else why not */
} lfp_shm_report_t;

/** Static facts about an attached segment. */
typedef struct lfp_shm_info {
	uint32_t version;         /**< segment layout version */
	uint32_t flags;           /**< create flags */
	uint64_t block_size;      /**< usable bytes per block (stride) */
	uint64_t block_count;
	uint64_t block_align;
	uint32_t max_participants;
	uint32_t cache_size;      /**< this handle's per-thread cache (0 = none) */
	uint64_t total_size;      /**< bytes the segment uses */
	uint64_t map_size;        /**< bytes this process mapped */
	uint64_t parts_off, owner_off, pool_off, pool_size; /**< layout */
	int64_t creator_pid;
	uint64_t creator_start;   /**< creator's start time (ticks after boot) */
	uint64_t created_ns;      /**< CLOCK_REALTIME at creation */
	uint64_t recoveries;      /**< recoveries run on the segment */
	uint64_t reclaimed;       /**< blocks they returned */
	void *base;               /**< where this process mapped it */
	int self;                 /**< participant id, or -1 for an observer */
	bool hugepages;           /**< backed by (or advised) huge pages */
	bool sealed;              /**< memfd sealed against shrink/grow */
} lfp_shm_info_t;

/**
 * Create a named segment and join it as its first participant.
 * @param name  POSIX shm name: "/x" or "x", 1..255 bytes, no other '/'
 * @param cfg   layout; see lfp_shm_config_t
 * @param mode  permission bits (<= 0777); 0 means 0600. Set exactly (the
 *              umask does not apply).
 * @return the handle, or NULL with errno EINVAL (bad name, config, flags or
 *         mode), EOVERFLOW (too big), EEXIST (the name exists: segments are
 *         never reused silently; unlink a stale one), EACCES, ENOMEM (mapping
 *         failed), ENOTSUP (strict huge pages on a named segment), or another
 *         errno of shm_open/ftruncate/mmap. On failure the name is removed.
 * Concurrency: any. Ordering: attachers that succeed see the whole layout
 * (S1/S2). Progress: blocking (system calls, O(capacity) layout).
 */
LFP_API lfp_shm_t *lfp_shm_create(const char *name, const lfp_shm_config_t *cfg,
				  mode_t mode) LFP_WARN_UNUSED;

/**
 * Create a segment in an empty file the caller opened (a memfd, a file on
 * tmpfs or hugetlbfs) and join it. fd stays the caller's; the handle keeps a
 * duplicate (lfp_shm_fd()). @return as lfp_shm_create; EEXIST if the file is
 * not empty; EBADF for a bad fd.
 * Concurrency: nobody else may size or write the file meanwhile. Ordering,
 * Progress: as lfp_shm_create.
 */
LFP_API lfp_shm_t *lfp_shm_create_fd(int fd, const lfp_shm_config_t *cfg) LFP_WARN_UNUSED;

/**
 * Create an anonymous segment in a new memfd (sealed against shrinking and
 * growing) and join it. Pass lfp_shm_fd() to other processes over a UNIX
 * socket (SCM_RIGHTS) or by fork; they call lfp_shm_attach_fd().
 * @param label  memfd name shown in /proc (NULL: "lfpool")
 * @return as lfp_shm_create.
 * Concurrency: any. Ordering, Progress: as lfp_shm_create.
 */
LFP_API lfp_shm_t *lfp_shm_create_memfd(const char *label,
					const lfp_shm_config_t *cfg) LFP_WARN_UNUSED;

/**
 * Attach to a named segment and join it (a new participant slot).
 * @return the handle, or NULL with errno
 *   EINVAL      bad name or options;
 *   ENOENT, EACCES  from shm_open (EACCES: the mode keeps us out);
 *   EBADMSG     not a valid segment: truncated, wrong magic, unsupported
 *               version or ABI (index/tag width, pointer size, byte order),
 *               bad checksum, sizes or offsets that do not match the layout
 *               or the file's real size (lfp_shm_last_error() says which);
 *   ETIMEDOUT   the creator did not finish initialising in time;
 *   EOWNERDEAD  the creator died before finishing initialising;
 *   EAGAIN      still initialising and LFP_SHM_NOWAIT was given;
 *   EUSERS      every participant slot is taken by a live process;
 *   ENOMEM      the mapping or the handle could not be made.
 * Concurrency: any. Progress: blocking (waits for initialisation at most the
 * timeout).
 */
LFP_API lfp_shm_t *lfp_shm_attach(const char *name) LFP_WARN_UNUSED;
/** Attach through a file descriptor (memfd received over a socket); fd stays
 * the caller's. Errors as lfp_shm_attach, plus EBADF.
 * Concurrency, Ordering, Progress: as lfp_shm_attach. */
LFP_API lfp_shm_t *lfp_shm_attach_fd(int fd) LFP_WARN_UNUSED;
/** Attach by name (fd < 0) or by fd (name NULL) with options (may be NULL).
 * EINVAL if both or neither are given, for unknown flags or a cache size
 * above LFP_SHM_MAX_CACHE; otherwise as lfp_shm_attach / _attach_fd.
 * Concurrency, Ordering, Progress: as lfp_shm_attach. */
LFP_API lfp_shm_t *lfp_shm_attach_ex(const char *name, int fd,
				     const lfp_shm_attach_opts_t *opts) LFP_WARN_UNUSED;

/**
 * Leave the segment: flush every thread cache of this handle, free the slot
 * (or mark it departed if blocks are still owned: they stay owned until a
 * receiver adopts them or recovery reclaims them), unmap, free the handle.
 * @return the number of blocks still owned (0 normally); -EINVAL for NULL.
 * Concurrency: no other call on this handle may run or follow; other
 * handles and processes go on. Ordering: our writes to the blocks we freed
 * are published as by free. Progress: blocking (waits like free if a
 * recovery runs; O(capacity) to count what is left).
 */
LFP_API int lfp_shm_detach(lfp_shm_t *shm);

/** Remove a segment's name (attached processes keep their mappings).
 * @return 0; -EINVAL bad name; -ENOENT, -EACCES from shm_unlink.
 * Concurrency: any. Ordering: none. Progress: one system call. */
LFP_API int lfp_shm_unlink(const char *name);

/**
 * Take a block, owned by this participant from now on.
 * @return the block, or NULL with errno ENOMEM (pool empty), EINVAL (bad,
 *         observer or inherited handle), EUCLEAN (free stack corrupt),
 *         ETIMEDOUT (waited past the timeout for a recovery to finish).
 * Concurrency: any thread of any participant. Ordering: writes made to the
 * block before its last free (in any process) are visible. Progress:
 * wait-free on a cache hit, lock-free on the shared stack except while a
 * recovery runs.
 */
LFP_API void *lfp_shm_alloc(lfp_shm_t *shm) LFP_MALLOC_LIKE LFP_WARN_UNUSED;

/**
 * Give back a block this participant owns. free(shm, NULL) returns 0.
 * @return 0; -EINVAL not a block of this segment (or bad handle); -EALREADY
 *         already free (double free); -EPERM owned by another participant
 *         (adopt it first); -ETIMEDOUT as alloc.
 * Concurrency, Ordering, Progress: as alloc; writes before free are visible
 * to the next allocator.
 */
LFP_API int lfp_shm_free(lfp_shm_t *shm, void *ptr);

/**
 * Take over ownership of a block another participant handed to us (through
 * a queue, a socket, ...). Until adopted, a block belongs to its sender; if
 * the sender dies first, recovery reclaims it and adopt then fails.
 * @param from  the sender's participant id, or LFP_SHM_ANY. Name the sender
 *              when you can: a hand-off from a sender that died, whose block
 *              was reclaimed and then allocated by us, is caught only then.
 * @return 0 (also if we own it already and from is LFP_SHM_ANY or our own
 *         id); -EINVAL bad pointer/handle, or from neither LFP_SHM_ANY nor
 *         a slot number below max_participants; -EALREADY the block is free (its
 *         sender died and it was reclaimed, or it was freed); -EPERM owned by
 *         a participant other than from (us included: a stale hand-off);
 *         -ETIMEDOUT as alloc.
 * Concurrency: any. Ordering: none beyond the hand-off channel's own, which
 * must order the sender's writes before our reads. Progress: lock-free
 * except while a recovery runs.
 */
LFP_API int lfp_shm_adopt(lfp_shm_t *shm, void *ptr, int from);

/** Return the calling thread's cached blocks of this handle to the shared
 * stack. @return blocks flushed, or -EINVAL, or -ETIMEDOUT as alloc.
 * Concurrency: as alloc. Ordering: as free, for each block. Progress:
 * lock-free (one push) except while a recovery runs. */
LFP_API int lfp_shm_cache_flush(lfp_shm_t *shm);

/* Queries below: Concurrency: anything but detach of the handle. Ordering:
 * none (snapshots). Progress: wait-free. */

/** This handle's participant id (>= 0), or -EINVAL (observer, bad handle). */
LFP_API int lfp_shm_self(const lfp_shm_t *shm);
/** Owner of the block at ptr: a participant id, or -ENOENT if the block is
 * free or in a cache, or -EINVAL for a bad pointer. A snapshot. */
LFP_API int lfp_shm_owner(const lfp_shm_t *shm, const void *ptr);
/** Block index of ptr (a block start), or -EINVAL. Indices are the same in
 * every process: send indices, not pointers. */
LFP_API int64_t lfp_shm_index(const lfp_shm_t *shm, const void *ptr);
/** Address of block index in this process, or NULL if out of range. */
LFP_API void *lfp_shm_ptr(const lfp_shm_t *shm, uint64_t index);
/** The pool region, for read-only queries (lfp_pool_capacity, _contains,
 * _block_size). Never call lfp_pool_alloc/_free on it: that bypasses the
 * ownership ledger. NULL for a bad handle. */
LFP_API const lfp_pool_t *lfp_shm_pool(const lfp_shm_t *shm);
/** The handle's file descriptor (owned by the handle; dup it to keep it). */
LFP_API int lfp_shm_fd(const lfp_shm_t *shm);
/** Fill *out. @return 0 or -EINVAL. */
LFP_API int lfp_shm_info(const lfp_shm_t *shm, lfp_shm_info_t *out);

/**
 * Count the segment: free, owned and cached per participant, dead and
 * departed participants and their holdings, blocks in flight; with
 * LFP_SHM_RECOVER also reclaim. With LFP_SHM_EXACT (or RECOVER) it takes the
 * segment's recovery lock, stops every participant before its next
 * shared-stack operation, waits (up to the timeout) for those inside one to
 * leave, counts, and lets them go.
 * @return 0 consistent; -EINVAL bad handle/report; -EBUSY another live
 *         process holds the recovery lock; -ETIMEDOUT a live participant
 *         stayed inside an operation past the timeout (nothing changed);
 *         -EUCLEAN the segment is corrupt (rep->error says how; with RECOVER
 *         nothing was reclaimed); -ENOMEM no memory for the scan.
 * Concurrency: see the table above. Progress: blocking, O(capacity).
 */
LFP_API int lfp_shm_inspect(lfp_shm_t *shm, unsigned flags, lfp_shm_report_t *rep);

/**
 * Detect dead participants (pid + start time, so a reused pid is caught)
 * and departed ones, and return to the free stack their owned blocks, their
 * cached blocks and the blocks caught in flight, then free their slots. Any
 * survivor (or an observer) may call it at any time; participants keep
 * running and only wait if they need the shared stack meanwhile.
 * Afterwards free + owned by live participants = capacity, no block counted
 * twice. rep may be NULL. @return as lfp_shm_inspect.
 */
LFP_API int lfp_shm_recover(lfp_shm_t *shm, lfp_shm_report_t *rep);

/** Why the calling thread's last lfp_shm_create/attach failed (a static
 * string), or NULL if it did not. */
LFP_API const char *lfp_shm_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* LFPOOL_SHM_H */
