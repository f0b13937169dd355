/*
 * atomics/lfp_atomic.h - the only place lfpool touches <stdatomic.h>.
 *
 * Every wrapper names its memory order, so a reader of pool/ sees the order at
 * the call site and the comment beside the call says which access it pairs
 * with (see docs/memory-order.md). There is deliberately no seq_cst wrapper:
 * no algorithm in lfpool needs a single total order.
 *
 * The shared words are 32- and 64-bit integers only. Both must be lock-free
 * ("always lock-free", value 2) or the build stops: a shared-memory pool must
 * never depend on an atomic that libatomic emulates with a process-local lock,
 * and a lock would void the progress guarantee. No 16-byte atomics are used;
 * the free-stack head packs {index, tag} into one 64-bit word (lfp_head_*).
 */
#ifndef LFP_ATOMIC_H
#define LFP_ATOMIC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#if ATOMIC_LLONG_LOCK_FREE != 2 || ATOMIC_INT_LOCK_FREE != 2
#error "lfpool needs always-lock-free 32- and 64-bit atomics"
#endif
_Static_assert(sizeof(unsigned long long) == 8, "64-bit long long expected");
_Static_assert(sizeof(uint64_t) == sizeof(unsigned long long), "uint64_t is long long sized");

#define LFP_CACHE_LINE 64
#define LFP_CACHE_ALIGNED _Alignas(LFP_CACHE_LINE)

typedef _Atomic uint32_t lfp_atomic_u32;
typedef _Atomic uint64_t lfp_atomic_u64;

/* Compiler-time check that the fields really are the plain integer size: they
 * live in shared memory mapped by processes that may be built separately. */
_Static_assert(sizeof(lfp_atomic_u32) == 4, "atomic u32 must be 4 bytes");
_Static_assert(sizeof(lfp_atomic_u64) == 8, "atomic u64 must be 8 bytes");

/* ---- 32-bit ------------------------------------------------------------ */
static inline uint32_t lfp_load32_relaxed(const lfp_atomic_u32 *p)
{ return atomic_load_explicit((lfp_atomic_u32 *)(uintptr_t)p, memory_order_relaxed); }
static inline uint32_t lfp_load32_acquire(const lfp_atomic_u32 *p)
{ return atomic_load_explicit((lfp_atomic_u32 *)(uintptr_t)p, memory_order_acquire); }
static inline void lfp_store32_relaxed(lfp_atomic_u32 *p, uint32_t v)
{ atomic_store_explicit(p, v, memory_order_relaxed); }
static inline void lfp_store32_release(lfp_atomic_u32 *p, uint32_t v)
{ atomic_store_explicit(p, v, memory_order_release); }
static inline void lfp_init32(lfp_atomic_u32 *p, uint32_t v) { atomic_init(p, v); }
static inline uint32_t lfp_xchg32_acq_rel(lfp_atomic_u32 *p, uint32_t v)
{ return atomic_exchange_explicit(p, v, memory_order_acq_rel); }
static inline uint32_t lfp_fetch_add32_relaxed(lfp_atomic_u32 *p, uint32_t v)
{ return atomic_fetch_add_explicit(p, v, memory_order_relaxed); }
static inline uint32_t lfp_fetch_sub32_relaxed(lfp_atomic_u32 *p, uint32_t v)
{ return atomic_fetch_sub_explicit(p, v, memory_order_relaxed); }
static inline uint32_t lfp_fetch_add32_release(lfp_atomic_u32 *p, uint32_t v)
{ return atomic_fetch_add_explicit(p, v, memory_order_release); }
/* Used by the shared-memory participant gate (pool/shm_ops.c, S4/S5). */
static inline uint32_t lfp_fetch_sub32_release(lfp_atomic_u32 *p, uint32_t v)
{ return atomic_fetch_sub_explicit(p, v, memory_order_release); }
static inline uint32_t lfp_fetch_or32_acq_rel(lfp_atomic_u32 *p, uint32_t v)
{ return atomic_fetch_or_explicit(p, v, memory_order_acq_rel); }
/* CAS: success order in the name; failure order relaxed (the caller only
 * retries or gives up with the value it got), except for acq_rel, whose
 * failure is acquire (the caller may read through the value it got). */
static inline bool lfp_cas32_relaxed(lfp_atomic_u32 *p, uint32_t *exp, uint32_t des)
{ return atomic_compare_exchange_strong_explicit(p, exp, des, memory_order_relaxed, memory_order_relaxed); }
static inline bool lfp_cas32_acquire(lfp_atomic_u32 *p, uint32_t *exp, uint32_t des)
{ return atomic_compare_exchange_strong_explicit(p, exp, des, memory_order_acquire, memory_order_relaxed); }
static inline bool lfp_cas32_acq_rel(lfp_atomic_u32 *p, uint32_t *exp, uint32_t des)
{ return atomic_compare_exchange_strong_explicit(p, exp, des, memory_order_acq_rel, memory_order_acquire); }

/* ---- 64-bit ------------------------------------------------------------ */
static inline uint64_t lfp_load64_relaxed(const lfp_atomic_u64 *p)
{ return atomic_load_explicit((lfp_atomic_u64 *)(uintptr_t)p, memory_order_relaxed); }
static inline uint64_t lfp_load64_acquire(const lfp_atomic_u64 *p)
{ return atomic_load_explicit((lfp_atomic_u64 *)(uintptr_t)p, memory_order_acquire); }
static inline void lfp_store64_relaxed(lfp_atomic_u64 *p, uint64_t v)
{ atomic_store_explicit(p, v, memory_order_relaxed); }
static inline void lfp_store64_release(lfp_atomic_u64 *p, uint64_t v)
{ atomic_store_explicit(p, v, memory_order_release); }
static inline void lfp_init64(lfp_atomic_u64 *p, uint64_t v) { atomic_init(p, v); }
static inline uint64_t lfp_fetch_add64_relaxed(lfp_atomic_u64 *p, uint64_t v)
{ return atomic_fetch_add_explicit(p, v, memory_order_relaxed); }
static inline uint64_t lfp_fetch_add64_release(lfp_atomic_u64 *p, uint64_t v)
{ return atomic_fetch_add_explicit(p, v, memory_order_release); }
static inline uint64_t lfp_fetch_sub64_relaxed(lfp_atomic_u64 *p, uint64_t v)
{ return atomic_fetch_sub_explicit(p, v, memory_order_relaxed); }
static inline uint64_t lfp_xchg64_acq_rel(lfp_atomic_u64 *p, uint64_t v)
{ return atomic_exchange_explicit(p, v, memory_order_acq_rel); }
static inline bool lfp_cas64_weak_relaxed(lfp_atomic_u64 *p, uint64_t *exp, uint64_t des)
{ return atomic_compare_exchange_weak_explicit(p, exp, des, memory_order_relaxed, memory_order_relaxed); }
/* Success acquire, failure acquire: pop reads next[] of the refreshed head. */
static inline bool lfp_cas64_weak_acquire(lfp_atomic_u64 *p, uint64_t *exp, uint64_t des)
{ return atomic_compare_exchange_weak_explicit(p, exp, des, memory_order_acquire, memory_order_acquire); }
/* Success release, failure relaxed: push re-links and retries. */
static inline bool lfp_cas64_weak_release(lfp_atomic_u64 *p, uint64_t *exp, uint64_t des)
{ return atomic_compare_exchange_weak_explicit(p, exp, des, memory_order_release, memory_order_relaxed); }
static inline bool lfp_cas64_weak_acq_rel(lfp_atomic_u64 *p, uint64_t *exp, uint64_t des)
{ return atomic_compare_exchange_weak_explicit(p, exp, des, memory_order_acq_rel, memory_order_acquire); }
static inline bool lfp_cas64_acq_rel(lfp_atomic_u64 *p, uint64_t *exp, uint64_t des)
{ return atomic_compare_exchange_strong_explicit(p, exp, des, memory_order_acq_rel, memory_order_acquire); }
/* Strong, success acquire, failure relaxed: the cache's slot claim (S1). */
static inline bool lfp_cas64_acquire(lfp_atomic_u64 *p, uint64_t *exp, uint64_t des)
{ return atomic_compare_exchange_strong_explicit(p, exp, des, memory_order_acquire, memory_order_relaxed); }

/* Compiler-only barrier for benchmarks and poisoning; not a memory fence. */
#define lfp_compiler_barrier() atomic_signal_fence(memory_order_acq_rel)

/* ---- the tagged head word ------------------------------------------------
 * head = tag << 32 | index. Index LFP_NIL means empty. Every successful
 * update increments the tag, so a CAS that compares a stale head fails even if
 * the same index came back (ABA). LFP_TAG_BITS may be cut for the negative
 * control build (tests/: a 2-bit tag must make the concurrency test fail).
 */
#ifndef LFP_TAG_BITS
#define LFP_TAG_BITS 32
#endif
#if LFP_TAG_BITS < 1 || LFP_TAG_BITS > 32
#error "LFP_TAG_BITS must be in 1..32"
#endif
#define LFP_NIL UINT32_C(0xFFFFFFFF)
#define LFP_TAG_MASK ((uint32_t)(((uint64_t)1 << LFP_TAG_BITS) - 1))

static inline uint32_t lfp_head_index(uint64_t h) { return (uint32_t)h; }
static inline uint32_t lfp_head_tag(uint64_t h) { return (uint32_t)(h >> 32); }
static inline uint64_t lfp_head_make(uint32_t index, uint32_t tag)
{ return (uint64_t)(tag & LFP_TAG_MASK) << 32 | index; }
static inline uint64_t lfp_head_next(uint64_t old, uint32_t new_index)
{ return lfp_head_make(new_index, lfp_head_tag(old) + 1); }

/* ---- spinning ------------------------------------------------------------ */
static inline void lfp_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	lfp_compiler_barrier();
#endif
}

/* Bounded exponential backoff after a failed CAS. The bound keeps a thread
 * from sleeping through its own turn; lock-free code never waits for another
 * thread, so backoff only thins out retries on a hot line. */
#ifndef LFP_BACKOFF_MAX
#define LFP_BACKOFF_MAX 64u
#endif
static inline void lfp_backoff(unsigned *spins)
{
	for (unsigned i = 0; i < *spins; i++)
		lfp_cpu_relax();
	if (*spins < LFP_BACKOFF_MAX)
		*spins = *spins ? *spins * 2 : 1;
}

#endif /* LFP_ATOMIC_H */
