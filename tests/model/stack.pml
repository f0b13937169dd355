/*
 * tests/model/stack.pml - Spin model of the free-index stack (pool/stack.c)
 * and the alloc/free marks around it (pool/pool.c), step for step.
 *
 * What is modelled (one Promela statement = one atomic step of the C code):
 *   head      one int {tag, index} read, compared and swapped as ONE word,
 *             like the 64-bit head (tag in the high part, index in the low).
 *   next[]    the link array outside the blocks: an index, NIL, or ALLOC.
 *   pop       A1 load head; if index is NIL -> empty; load next[index];
 *             if that link is ALLOC (the block left meanwhile) A3: a no-op
 *             CAS head old -> old: success -> the C code reports a corrupt
 *             link (asserted impossible here), failure refreshes the head
 *             and retries; else CAS head {i,t} -> {n,t+1};
 *             a failed CAS refreshes the expected head (C11 semantics) and
 *             retries; a weak CAS may also fail spuriously.
 *             After success, a separate step stores next[i] = ALLOC.
 *   free      the state check next[i] == ALLOC (pool.c), then push.
 *   push      load head; store next[i] = head.index; CAS head {h,t} ->
 *             {i,t+1}; on failure re-link with the refreshed head and retry.
 *
 * Each worker makes OPS calls, each an alloc (while it holds fewer than HOLD
 * blocks) or a free of a block it holds, then frees everything it still
 * holds. Ghost state (owner[], updates) is updated in the same atomic step as
 * the CAS that moves ownership and is not part of the algorithm.
 *
 * Checked:
 *   - ownership: a pop's CAS never hands out a block that has an owner
 *     (owned = popped and not yet pushed back), so no block has two owners;
 *   - in every reachable state (check_invariant runs inside each step that
 *     writes head, next[] or owner[]) the free list ends in NIL within NB
 *     steps (no cycle, no index twice), every link is a block index, no
 *     listed block is owned, and listed + owned == NB (no lost block);
 *   - at the end (all workers done, all blocks freed) the list holds all NB;
 *   - free's ALLOC check never fails for a block the caller owns, and pop's
 *     "corrupt link" branch is never taken.
 *
 * Tag width: the model's tag has TAGBITS bits (default 8, 256 values). A run
 * makes at most NP*(OPS+HOLD) successful head updates (3*(3+2) = 15 with the
 * defaults), so the tag cannot wrap: the model stands for the real 32-bit
 * tag, whose wrap needs 2^32 updates during one sleep (docs/design.md).
 * An assertion checks the bound. -DNOTAG removes the tag (TAGBITS 0) and
 * must give an ABA counterexample. Variants for tests/model/run.sh:
 * -DCORRUPT_RETURNS lets pop's "corrupt" answer fail the alloc as the C code
 * does instead of asserting (to reach the double-owner ABA trail);
 * -DTAGBITS=2 -DTAG_MAY_WRAP drops the wrap assertion for a small tag.
 *
 * Memory order is not modelled: Spin explores sequentially consistent
 * interleavings. The orders are argued in docs/memory-order.md and checked
 * by the TSan build.
 *
 *   spin -a [-DNOTAG] stack.pml && cc -DSAFETY -DCOLLAPSE -o pan pan.c && ./pan
 */

#ifndef NP
#define NP 3            /* worker processes */
#endif
#ifndef NB
#define NB 3            /* blocks (at most 4 with the pick below) */
#endif
#ifndef OPS
#define OPS 3           /* alloc-or-free calls per worker before the drain */
#endif
#ifndef HOLD
#define HOLD 2          /* most blocks one worker holds at once */
#endif

#ifdef NOTAG
#define TAGMOD 1        /* tag removed: every head update keeps tag 0 */
#else
#ifndef TAGBITS
#define TAGBITS 8
#endif
#define TAGMOD (1 << TAGBITS)
#endif

#define NIL   255       /* LFP_NIL: bottom of the stack / empty */
#define ALLOC 254       /* LFPI_ALLOC: the block is allocated */

#define IDX(h)        ((h) % 256)
#define TAG(h)        ((h) / 256)
#define MKNEXT(h, i)  ((((TAG(h) + 1) % TAGMOD) * 256) + (i))

int  head = 0;          /* {tag 0, index 0} */
byte next[NB];
byte owner[NB];         /* ghost: 0 free, p+1 owned by worker p */
byte updates = 0;       /* ghost: successful head CASes */
byte finished = 0;      /* ghost: workers done */

init {
	byte k = 0, c2 = 0;
	atomic {
		do
		:: k < NB - 1 -> next[k] = k + 1; k++
		:: else -> break
		od;
		next[NB - 1] = NIL;
		k = 0;
		run worker(1); run worker(2);
#if NP > 2
		run worker(3);
#endif
#if NP > 3
		run worker(4);
#endif
	}
	finished == NP;                                 /* all workers done */
	d_step {
		k = IDX(head);
		do
		:: k == NIL -> break
		:: else -> assert(k < NB); c2++; assert(c2 <= NB); k = next[k]
		od;
		assert(c2 == NB)                        /* every block back */
	}
}

/* The invariant over the shared state (head, next[], owner[]). Every step
 * that writes one of those runs it in the same atomic step, so it holds in
 * every reachable state (cheaper than a monitor process, which would double
 * the state space). Uses the caller's scratch k, c, owned, j. */
inline check_invariant() {
	k = IDX(head);
	c = 0;
	do
	:: k == NIL -> break
	:: else ->
		assert(k < NB);                         /* a link is a block index */
		assert(owner[k] == 0);                  /* listed => not owned */
		c++;
		assert(c <= NB);                        /* no cycle, no repeat */
		k = next[k]
	od;
	owned = 0; j = 0;
	do
	:: j < NB -> if :: owner[j] != 0 -> owned++ :: else fi; j++
	:: else -> break
	od;
	assert(c + owned == NB);                        /* no lost block */
	k = 0; c = 0; owned = 0; j = 0
}

/* One successful head update; the tag must not have wrapped. */
#if defined(NOTAG) || defined(TAG_MAY_WRAP)
#define COUNT_UPDATE  updates++
#else
#define COUNT_UPDATE  updates++; assert(updates < TAGMOD)
#endif

/* pop (lfpi_stack_pop + the ALLOC mark of lfp_pool_alloc). Leaves the
 * popped index in i, or NIL when the stack was empty. */
inline pop(i) {
	old = head;                                 /* A1 */
	do
	:: i = IDX(old);
	   if
	   :: i == NIL -> break                     /* empty */
	   :: else
	   fi;
	   assert(i < NB);                          /* LFPI_POP_CORRUPT */
	   atomic {
		n = next[i];                        /* relaxed */
		printf("P%d pop:  read head {i=%d,t=%d}, next[%d]=%d\n", me, i, TAG(old), i, n)
	   };
	   if
	   :: n != NIL && n >= NB ->
		atomic {                            /* A3: no-op CAS old -> old */
			if
			:: head == old -> corrupt = true
			:: else -> old = head       /* failed: refreshed, retry */
			fi
		};
		n = 0;
#ifndef CORRUPT_RETURNS
		assert(!corrupt);                   /* never a false "corrupt" */
#endif
		if
		:: corrupt ->                       /* LFPI_POP_CORRUPT: alloc */
			i = NIL; corrupt = false;   /* fails with EUCLEAN */
			break
		:: else
		fi
	   :: else ->
		atomic {                            /* A2: weak CAS */
			if
			:: head == old ->
				head = MKNEXT(old, n);
				assert(owner[i] == 0);      /* one owner */
				owner[i] = me;
				printf("P%d pop:  CAS ok, owns block %d, head {i=%d,t=%d}\n", me, i, IDX(head), TAG(head));
				COUNT_UPDATE;
				check_invariant();
				ok = true
			:: head == old -> ok = false       /* spurious */
			:: else -> old = head; ok = false
			fi
		};
		if
		:: ok -> break
		:: else -> n = 0
		fi
	   fi
	od;
	if
	:: i != NIL ->
		atomic { next[i] = ALLOC; check_invariant() };
		mine = mine | (1 << i); held++
	:: else
	fi;
	old = 0; n = 0; ok = false
}

/* free (the state check of lfp_pool_free + lfpi_stack_push) of block b. */
inline free(b) {
	assert(next[b] == ALLOC);                   /* else -EALREADY */
	mine = mine & ~(1 << b); held--;
	old = head;                                 /* relaxed */
	do
	:: atomic {                                 /* relaxed, published by R1 */
		next[b] = IDX(old); check_invariant()
	   };
	   atomic {                                 /* R1: weak CAS */
		if
		:: head == old ->
			head = MKNEXT(old, b);
			owner[b] = 0;
			printf("P%d push: CAS ok, freed block %d, head {i=%d,t=%d}\n", me, b, IDX(head), TAG(head));
			COUNT_UPDATE;
			check_invariant();
			ok = true
		:: head == old -> ok = false            /* spurious */
		:: else -> old = head; ok = false
		fi
	   };
	   if
	   :: ok -> break
	   :: else
	   fi
	od;
	old = 0; ok = false; b = 0
}

/* Choose a held block b (the caller knows its own blocks). */
inline pick(b) {
	if
	:: mine & 1 -> b = 0
	:: mine & 2 -> b = 1
	:: mine & 4 -> b = 2
#if NB > 3
	:: mine & 8 -> b = 3
#endif
	fi
}

proctype worker(byte me) {
	int old;
	byte i, n, b, mine, held, op;
	byte k, c, owned, j;                        /* check_invariant scratch */
	bool ok, corrupt;

	do
	:: op < OPS ->
		op++;
		if
		:: held < HOLD -> pop(i); i = 0
		:: held > 0 -> pick(b); free(b)
		fi
	:: else -> break
	od;
	do                                          /* drain */
	:: held > 0 -> pick(b); free(b)
	:: else -> break
	od;
	finished++
}
