/*
 * pool/shm_ops.c - alloc, free and adopt on a shared segment; the per-thread
 * caches; the participant gate that lets recovery stop the world.
 *
 * Every block's owner word (in the segment) says who holds it; alloc, free
 * and adopt keep it true:
 *
 *   alloc (shared stack)  gate in; pop i; next[i] = ALLOC; owner[i] = tag;
 *                         gate out
 *   free  (shared stack)  gate in; CAS owner[i] tag -> 0; push i; gate out
 *   refill                gate in; k x (pop i; next[i] = ALLOC;
 *                         owner[i] = tag|CACHED); gate out
 *   flush                 gate in; k x owner[i] = 0; link; push chain;
 *                         gate out
 *   cache hit             owner[i] tag|CACHED -> tag (no gate, no RMW)
 *   free into cache       CAS owner[i] tag -> tag|CACHED (no gate)
 *   adopt                 gate in; CAS owner[i] from -> tag; gate out
 *
 * A SIGKILL between any two of these steps leaves each touched block either
 * recorded (owner says who) or an orphan: owner 0 and not on the stack. The
 * orphan windows all lie inside the gate, so the dead participant's gate
 * count stays nonzero: that count is the in-flight journal. Recovery (pool/
 * shm_recover.c) stops the world, so no live participant is inside the gate,
 * and then every orphan is a dead participant's in-flight block. Cache hits
 * and frees into the cache stay outside the gate: they move a block between
 * tag and tag|CACHED, both of which recovery attributes to the same
 * participant, and recovery never touches a live participant's blocks.
 *
 * Thread caches live in process memory (an array of indices per thread and
 * handle); what they hold is recorded in the segment as tag|CACHED, so a dead
 * process's caches are recovered from the owner array. A thread has caches
 * for at most LFPI_TLS_SLOTS handles at once (others run uncached); caches
 * are flushed on lfp_shm_cache_flush(), on thread exit (a pthread key
 * destructor) and on detach.
 *
 * Labels (docs/memory-order.md):
 *   S3  gate enter CAS, acquire: pairs with S6 (the recoverer's release that
 *       clears STOP), so a recovery's reclaim happens before our next use.
 *   S4  gate exit decrement, release: pairs with S5 (the recoverer's acquire
 *       load that sees the count drain), so our owner/stack writes happen
 *       before its scan.
 *   Owner words are relaxed everywhere: the free stack's R1/A2 order block
 *   contents between processes, the gate orders them against recovery, and
 *   the user's hand-off channel orders them for adopt; the owner word itself
 *   needs only atomicity (one CAS wins).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shm_internal.h"

#include <stdlib.h>
#include <string.h>

#define LFPI_TLS_SLOTS 4

struct tls_ref {
	uint64_t uid; /* handle number, 0 = unused */
	struct lfpi_tcache *tc;
};

static _Thread_local struct tls_ref tls_refs[LFPI_TLS_SLOTS];

/* Registry of this process's live handles: thread-exit destructors look a
 * handle up by uid before touching its cache, so a detached handle's freed
 * memory is never reached. Lock order: reg_mu, then a handle's mu. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static lfp_shm_t *reg_head;   /* under reg_mu */
static uint64_t reg_next_uid; /* under reg_mu */
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static pthread_key_t reg_key;
static bool reg_key_ok;

static void flush_n(lfp_shm_t *s, struct lfpi_tcache *tc, uint32_t k, int *rc);

static lfp_shm_t *reg_find(uint64_t uid)
{
	for (lfp_shm_t *s = reg_head; s != NULL; s = s->reg_next)
		if (s->uid == uid)
			return s;
	return NULL;
}

/* Thread exit: return this thread's cached blocks of every live handle. */
static void tls_destructor(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&reg_mu);
	for (int k = 0; k < LFPI_TLS_SLOTS; k++) {
		struct tls_ref *r = &tls_refs[k];
		lfp_shm_t *s = r->uid ? reg_find(r->uid) : NULL;
		if (s != NULL) {
			pthread_mutex_lock(&s->mu);
			for (struct lfpi_tcache **pp = &s->caches; *pp != NULL; pp = &(*pp)->next)
				if (*pp == r->tc) {
					*pp = r->tc->next;
					break;
				}
			pthread_mutex_unlock(&s->mu);
			int rc = 0;
			/* If this fails (a recovery outlasted the timeout) the
			 * blocks stay recorded as ours: detach or recovery
			 * after our death returns them; nothing is lost. */
			flush_n(s, r->tc, r->tc->n, &rc);
			free(r->tc);
		}
		r->uid = 0;
		r->tc = NULL;
	}
	pthread_mutex_unlock(&reg_mu);
}

static void atfork_prepare(void) { pthread_mutex_lock(&reg_mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&reg_mu); }
/* The child is a new process: it is no participant of its parent's
 * segments. Its copies of the handles may only be detached. */
static void atfork_child(void)
{
	for (lfp_shm_t *s = reg_head; s != NULL; s = s->reg_next)
		s->inherited = true;
	memset(tls_refs, 0, sizeof tls_refs);
	pthread_mutex_unlock(&reg_mu);
}

static void reg_init(void)
{
	reg_key_ok = pthread_key_create(&reg_key, tls_destructor) == 0;
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void lfpi_shm_register(lfp_shm_t *s)
{
	pthread_once(&reg_once, reg_init);
	pthread_mutex_lock(&reg_mu);
	s->uid = ++reg_next_uid;
	s->reg_next = reg_head;
	reg_head = s;
	pthread_mutex_unlock(&reg_mu);
}

void lfpi_shm_unregister(lfp_shm_t *s, bool flush)
{
	pthread_mutex_lock(&reg_mu);
	for (lfp_shm_t **pp = &reg_head; *pp != NULL; pp = &(*pp)->reg_next)
		if (*pp == s) {
			*pp = s->reg_next;
			break;
		}
	pthread_mutex_unlock(&reg_mu);
	for (int k = 0; k < LFPI_TLS_SLOTS; k++)
		if (tls_refs[k].uid == s->uid)
			tls_refs[k] = (struct tls_ref){ 0 };
	/* No thread-exit destructor can reach s now. An inherited handle's
	 * mutex may have been copied locked: its caches are not ours. */
	if (flush)
		pthread_mutex_lock(&s->mu);
	struct lfpi_tcache *tc = s->caches;
	s->caches = NULL;
	if (flush)
		pthread_mutex_unlock(&s->mu);
	while (tc != NULL) {
		struct lfpi_tcache *next = tc->next;
		int rc = 0;
		if (flush)
			flush_n(s, tc, tc->n, &rc);
		free(tc);
		tc = next;
	}
}

/* ---- the gate ----------------------------------------------------------- */

/* STOP is set: a recovery runs. Wait for it; if its recoverer died, take the
 * recovery over (it is idempotent) so nobody waits forever. */
static int gate_wait(lfp_shm_t *s)
{
	struct lfpi_shm_part *pt = &s->parts[s->self];
	uint64_t deadline = lfpi_shm_now_ns() + (uint64_t)s->timeout_ms * 4000000u;
	unsigned round = 0;

	for (;;) {
		uint32_t v = lfp_load32_acquire(&pt->gate); /* S6: pairs with the recoverer's clear */
		if (!(v & LFPI_GATE_STOP))
			return 0;
		/* S8: acquire, pairs with S7/S8 in the recoverer: a holder we
		 * see is current enough to judge. */
		uint64_t holder = lfp_load64_acquire(&s->shdr->recovery_lock);
		if (holder != 0 && holder != s->ident && !lfpi_shm_ident_alive(holder)) {
			lfp_shm_report_t rep = { 0 };
			(void)lfpi_shm_scan(s, LFP_SHM_RECOVER, &rep);
			continue; /* our STOP is clear now, or someone else took over */
		}
		if (lfpi_shm_now_ns() > deadline)
			return -ETIMEDOUT;
		lfpi_shm_pause(&round);
	}
}

int lfpi_shm_gate_enter(lfp_shm_t *s, uint32_t op)
{
	struct lfpi_shm_part *pt = &s->parts[s->self];
	/* Relaxed: only the CAS's first expectation; S3 decides. */
	uint32_t v = lfp_load32_relaxed(&pt->gate);

	for (;;) {
		if (lfpi_unlikely(v & LFPI_GATE_STOP)) {
			int rc = gate_wait(s);
			if (rc < 0)
				return rc;
			v = lfp_load32_relaxed(&pt->gate); /* relaxed: as above */
			continue;
		}
		/* S3: acquire; pairs with S6. The recoverer's S5 RMW on this
		 * same word is ordered against this CAS: either it sees our
		 * count and waits, or we see its STOP and do not enter. */
		if (lfp_cas32_acquire(&pt->gate, &v, v + 1))
			break;
	}
	lfp_store32_relaxed(&pt->op, op); /* relaxed: the journal's op kind is a diagnostic */
	return 0;
}

void lfpi_shm_gate_exit(lfp_shm_t *s)
{
	/* S4: release; pairs with S5 in the recoverer. */
	lfp_fetch_sub32_release(&s->parts[s->self].gate, 1);
}

/* ---- thread caches --------------------------------------------------------- */

static inline struct lfpi_tcache *tcache_get(const lfp_shm_t *s)
{
	for (int k = 0; k < LFPI_TLS_SLOTS; k++)
		if (tls_refs[k].uid == s->uid)
			return tls_refs[k].tc;
	return NULL;
}

/* First use of s by this thread: make its cache. NULL = run uncached. */
static struct lfpi_tcache *tcache_make(lfp_shm_t *s)
{
	struct tls_ref *slot = NULL;

	if (!reg_key_ok)
		return NULL;
	pthread_mutex_lock(&reg_mu);
	for (int k = 0; k < LFPI_TLS_SLOTS && slot == NULL; k++)
		if (tls_refs[k].uid == 0 || reg_find(tls_refs[k].uid) == NULL)
			slot = &tls_refs[k]; /* unused, or its handle was detached */
	pthread_mutex_unlock(&reg_mu);
	if (slot == NULL)
		return NULL;
	struct lfpi_tcache *tc = malloc(sizeof *tc + (size_t)s->cache_size * sizeof(uint32_t));
	if (tc == NULL)
		return NULL;
	tc->shm = s;
	tc->n = 0;
	tc->cap = s->cache_size;
	pthread_mutex_lock(&s->mu);
	tc->next = s->caches;
	s->caches = tc;
	pthread_mutex_unlock(&s->mu);
	pthread_setspecific(reg_key, (void *)1); /* any non-NULL: run the destructor */
	slot->uid = s->uid;
	slot->tc = tc;
	return tc;
}

/* Return the oldest k cached blocks to the shared stack in one push. */
static void flush_n(lfp_shm_t *s, struct lfpi_tcache *tc, uint32_t k, int *rc)
{
	if (k == 0)
		return;
	*rc = lfpi_shm_gate_enter(s, LFP_SHM_OP_FLUSH);
	if (*rc < 0)
		return;
	lfp_atomic_u32 *next = lfpi_next(s->pool);
	for (uint32_t j = 0; j < k; j++) {
		uint32_t i = tc->idx[j];
		/* relaxed: a cached block of ours changes only by our hand;
		 * the push's R1 publishes, the gate orders against recovery */
		lfp_store32_relaxed(&s->owner[i], 0);
		if (j + 1 < k)
			lfp_store32_relaxed(&next[i], tc->idx[j + 1]); /* relaxed: published by R1 */
	}
	lfpi_stack_push_chain(s->pool, tc->idx[0], tc->idx[k - 1]);
	lfpi_shm_gate_exit(s);
	memmove(tc->idx, tc->idx + k, (size_t)(tc->n - k) * sizeof tc->idx[0]);
	tc->n -= k;
}

/* Pop up to half a cache's worth. @return 0, or -ENOMEM / -EUCLEAN /
 * -ETIMEDOUT if nothing could be taken. */
static int refill(lfp_shm_t *s, struct lfpi_tcache *tc)
{
	uint32_t want = tc->cap / 2 ? tc->cap / 2 : 1;
	uint32_t i = LFPI_POP_EMPTY;
	int rc = lfpi_shm_gate_enter(s, LFP_SHM_OP_REFILL);
	if (rc < 0)
		return rc;
	lfp_atomic_u32 *next = lfpi_next(s->pool);
	while (tc->n < want) {
		i = lfpi_stack_pop(s->pool);
		if (i >= LFPI_POP_CORRUPT)
			break;
		lfp_store32_relaxed(&next[i], LFPI_ALLOC); /* relaxed: our block now */
		lfp_store32_relaxed(&s->owner[i], s->tag | LFPI_OWN_CACHED); /* relaxed: see top */
		tc->idx[tc->n++] = i;
	}
	lfpi_shm_gate_exit(s);
	if (tc->n > 0)
		return 0;
	return i == LFPI_POP_EMPTY ? -ENOMEM : -EUCLEAN;
}

/* ---- the public operations --------------------------------------------------- */

static bool can_alloc(const lfp_shm_t *s)
{
	return lfpi_likely(s != NULL && !s->inherited && s->self >= 0);
}

void *lfp_shm_alloc(lfp_shm_t *s)
{
	int rc;

	if (!can_alloc(s)) {
		errno = EINVAL;
		return NULL;
	}
	struct lfpi_tcache *tc = tcache_get(s);
	if (tc == NULL && s->cache_size != 0)
		tc = tcache_make(s);
	if (tc != NULL) {
		if (lfpi_unlikely(tc->n == 0)) {
			rc = refill(s, tc);
			if (rc < 0) {
				errno = -rc;
				return NULL;
			}
		}
		uint32_t i = tc->idx[--tc->n];
		/* relaxed: tag|CACHED -> tag is a change within our own
		 * holdings; nobody else writes a live participant's cached
		 * block. */
		lfp_store32_relaxed(&s->owner[i], s->tag);
		return lfpi_ptr(s->pool, i);
	}
	rc = lfpi_shm_gate_enter(s, LFP_SHM_OP_ALLOC);
	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	uint32_t i = lfpi_stack_pop(s->pool);
	if (lfpi_unlikely(i >= LFPI_POP_CORRUPT)) {
		lfpi_shm_gate_exit(s);
		errno = i == LFPI_POP_EMPTY ? ENOMEM : EUCLEAN;
		return NULL;
	}
	/* A kill here leaves i an orphan: popped, owner still 0. */
	lfp_store32_relaxed(&lfpi_next(s->pool)[i], LFPI_ALLOC); /* relaxed: our block now */
	lfp_store32_relaxed(&s->owner[i], s->tag); /* relaxed: see the top comment */
	lfpi_shm_gate_exit(s);
	return lfpi_ptr(s->pool, i);
}

/* Why a block that is not ours cannot be freed/adopted by us. */
static int not_ours(uint32_t o)
{
	return o == 0 || (o & LFPI_OWN_CACHED) ? -EALREADY : -EPERM;
}

int lfp_shm_free(lfp_shm_t *s, void *ptr)
{
	int rc;

	if (!can_alloc(s))
		return -EINVAL;
	if (ptr == NULL)
		return 0;
	int64_t i = lfpi_index(s->pool, ptr);
	if (lfpi_unlikely(i < 0))
		return -EINVAL;
	lfp_atomic_u32 *own = &s->owner[i];
	uint32_t o = lfp_load32_relaxed(own); /* relaxed: the CAS below decides */
	if (lfpi_unlikely(o != s->tag))
		return not_ours(o);

	struct lfpi_tcache *tc = tcache_get(s);
	if (tc == NULL && s->cache_size != 0)
		tc = tcache_make(s);
	if (tc != NULL) {
		if (lfpi_unlikely(tc->n == tc->cap)) {
			rc = 0;
			flush_n(s, tc, tc->cap / 2 ? tc->cap / 2 : 1, &rc);
			if (rc < 0)
				return rc;
		}
		/* relaxed CAS: only atomicity against a racing adopt */
		if (!lfp_cas32_relaxed(own, &o, s->tag | LFPI_OWN_CACHED))
			return not_ours(o);
		tc->idx[tc->n++] = (uint32_t)i;
		return 0;
	}
	rc = lfpi_shm_gate_enter(s, LFP_SHM_OP_FREE);
	if (rc < 0)
		return rc;
	/* relaxed CAS: atomicity against adopt; R1 in the push publishes */
	if (!lfp_cas32_relaxed(own, &o, 0)) {
		lfpi_shm_gate_exit(s);
		return not_ours(o);
	}
	/* A kill here leaves i an orphan: owner 0, not yet on the stack. */
	lfpi_stack_push(s->pool, (uint32_t)i);
	lfpi_shm_gate_exit(s);
	return 0;
}

int lfp_shm_adopt(lfp_shm_t *s, void *ptr, int from)
{
	if (!can_alloc(s) || ptr == NULL)
		return -EINVAL;
	if (from != LFP_SHM_ANY && (from < 0 || (uint32_t)from >= s->hdr.max_parts))
		return -EINVAL;
	int64_t i = lfpi_index(s->pool, ptr);
	if (i < 0)
		return -EINVAL;
	lfp_atomic_u32 *own = &s->owner[i];
	for (;;) {
		uint32_t o = lfp_load32_relaxed(own); /* relaxed: the CAS below decides */
		if (o == s->tag) /* ours already; from a named sender that is a stale hand-off */
			return from == LFP_SHM_ANY || from == s->self ? 0 : -EPERM;
		if (o == 0 || (o & LFPI_OWN_CACHED))
			return -EALREADY;
		if (from != LFP_SHM_ANY && o != (uint32_t)from + 1)
			return -EPERM;
		/* Inside the gate: a recovery reclaiming a dead sender's
		 * block and this CAS never interleave. */
		int rc = lfpi_shm_gate_enter(s, LFP_SHM_OP_ADOPT);
		if (rc < 0)
			return rc;
		bool ok = lfp_cas32_relaxed(own, &o, s->tag); /* relaxed: atomicity only */
		lfpi_shm_gate_exit(s);
		if (ok)
			return 0;
	}
}

int lfp_shm_cache_flush(lfp_shm_t *s)
{
	if (!can_alloc(s))
		return -EINVAL;
	struct lfpi_tcache *tc = tcache_get(s);
	if (tc == NULL)
		return 0;
	uint32_t n = tc->n;
	int rc = 0;
	flush_n(s, tc, n, &rc);
	return rc < 0 ? rc : (int)n;
}
