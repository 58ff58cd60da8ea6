/* park.pml: exhaustive check of how crew's workers find work and park
 * (include/crew/detail/scheduler.hpp, parking.hpp, stash.hpp; worker_main in worker_pool.hpp).
 *
 * Memory model. Promela interleaves whole statements: sequential consistency (SC). That is what
 * the C++ guarantees for this handshake, because every access it consists of is seq_cst: on the
 * waker's side the producer's tail claim (a seq_cst RMW), or the stash fill's tail store followed
 * by a seq_cst fence, then parked_.load, the mask's fetch_and and the wake word's fetch_add; on
 * the parker's side the wake word's load, the mask's fetch_or, parked_.fetch_add and the
 * re-check's loads (ring.size_approx(), stash::idle()), then the futex's own check of the word.
 * Those seq_cst operations (and the fence, which makes the release store before it act as a
 * seq_cst store towards the parked_ load after it) are exactly what justify modelling the
 * handshake as SC: the Dekker pairs (publish; read parked_) vs (announce; re-check) hold in
 * every SC execution iff they hold in the C++. The acquire/release pairs that order slot
 * contents (stash tail and steal head, ring turns) are checked by stash.pml (the stash) or
 * abstracted (the ring: a claim sees published slots only).
 *
 * Processes:
 *   worker[i] (pids 0..W-1), worker_main's loop. run_next():
 *      1. own.pop();
 *      2. claim_from_ring(): room = own.fill_room(); try_pop_batch(min(room + 1, N)) (N plays
 *         stash_size, which equals the stash capacity in the C++ too); the first job runs, the
 *         others are moved into its own stash (each move frees its ring slot), the fill is
 *         published, then (fence) wake_one();
 *      3. steal_for(): room = own.fill_room() (0: give up); victims i+1, i+2, .. (mod W): skip
 *         one whose size_approx() is 0, else steal half (rounded up, at most room) of it into
 *         its own stash, publish, wake_one() if n > 1 (for what it left in its own stash), one
 *         more if left != 0 (for what the steal left in the victim's: without it, with three
 *         workers, a parked worker sleeps beside a job waiting behind the victim's running
 *         job, the mutant no-wake-leftovers), then own.pop() (run it, or give up);
 *      then idle(): worker_parking::park(): read the wake word, fetch_or its mask bit,
 *      parked_++, re-check (ring.size_approx() != 0, then stash::idle() for every stash, in
 *      order), sleep iff nothing was found and the word is unchanged, parked_--, clear its bit.
 *      poll_briefly() is left out: its reads change nothing, so "the poll saw work: back to
 *      run_next()" reaches only states that "the worker ran run_next() later" reaches too;
 *      `stop()` is false (no shutdown).
 *   producer: pushes JOBS jobs (ids 1..JOBS), each: claim a ticket (the tail CAS: from here
 *      size_approx() counts it), publish the slot, wake_one(). When the ring is full it waits
 *      until the slot it needs is freed (worker_pool's room wait, not modelled, retries then).
 *   monitor: checks P2 and P3 in every state, and P1/P2 when nothing can move.
 * Spurious wake-ups: wait_until() returns when FUTEX_WAIT returns 0 even if the word did not
 * change (a late FUTEX_WAKE from a stale bump, or the kernel's own); -DSPURIOUS=k lets sleeping
 * workers return that way up to k times per run (the @config lines with it).
 * Not modelled: shutdown (close, stop(), wake_all; collect() is in stash.pml), recycling,
 * wait_idle, the producers' room handshake, push_bulk / wake(n), holes.
 *
 * Abstractions (each exact: every behaviour of the C++ protocol at this granularity is one of
 * the model, and the reverse):
 *   - the ring: tickets rhead (consumers' head) <= rpub (published; one producer publishes in
 *     ticket order) <= rtail (claimed). try_pop_batch() is one step: it linearizes at its head
 *     CAS (the slots it found published stay so while the head is unchanged);
 *   - a wake word is a bit, bumped[i]: "the word changed since worker i read it". Only worker i
 *     reads its word, and only to compare it with what it read before (a u32 does not wrap
 *     around in one park), so the bit carries all the word's information;
 *   - the stash operations are the coarse ones of stash_ops.inc (it says why they are
 *     equivalent, relying on what stash.pml checks), and an empty stash's indices are moved
 *     back to START (CANONICAL_INDICES, see stash_pop_coarse);
 *   - size_approx() and idle() are one step each (their two loads answer what a snapshot at
 *     some instant between them answers); the re-check as a whole is NOT one step: a job moving
 *     between stashes can be missed by it, and the model keeps that;
 *   - local computations and instrumentation join the step of the access they follow; so does
 *     a woken worker's parked_-- (the bump it saw stays visible until it clears it itself, so
 *     that read commutes with every other step).
 * One bound (an under-approximation, the only one): at most STEALS steal claims per run. A job
 * can bounce between two stashes for ever (steal_for publishes a single stolen job before it
 * pops it, and the victim may steal it back), so without a bound the indices grow for ever;
 * once the budget is spent a worker treats every victim as empty (its re-check still sees the
 * job, so it spins rather than sleeps: this can hide a bug, never invent one).
 *
 * Properties (assertions; pan -DSAFETY, so invalid end states are errors too):
 *   P1 every job runs exactly once: ran[j] is asserted to be 1 when j runs and, when nothing
 *      can move any more, for every j;
 *   P2 no lost wake-up: (a) in every state, it is never the case that every worker sleeps while
 *      a job waits in the ring or in a stash and no wake-up is on its way (`pending`: a process
 *      between publishing work and the end of its wake_one()); (b) when nothing can move
 *      (`timeout`: the producer is done and every worker sleeps, sleeping being a worker's only
 *      end state) every job has run;
 *   P3 work conservation: in every state, it is never the case that a job waits (ring or stash)
 *      while some worker sleeps, every other worker runs a job (for as long as it likes), and
 *      no wake-up is on its way. A worker "sleeps" when it waits on its word and the word has
 *      not been bumped. P3 implies P2(a), and is what catches the stash's wake-up bugs: a
 *      stashed job always has an awake owner that will run it later, so "every worker asleep"
 *      never happens there (see the planted bugs);
 *   P4 inside the stash operations: STASH_OK after every index update, no PUT over a job not
 *      yet taken, ceil(available / 2) >= 1.
 *
 * Configurations (run.sh: @config lines by default, @slow with --slow, @mutant with --mutants
 * (each must FAIL); flags go to spin -a):
 * @config         w2-full-ring     -DW=2 -DN=2 -DJOBS=3 -DRC=2 -DSTEALS=4 -DSPURIOUS=2
 * @config         w2-n4            -DW=2 -DN=4 -DJOBS=4 -DRC=4 -DSTEALS=4
 * @config         w3               -DW=3 -DN=2 -DJOBS=2 -DRC=2 -DSTEALS=0
 * @slow           w3-steal         -DW=3 -DN=2 -DJOBS=2 -DRC=2 -DSTEALS=1
 * @mutant         no-wake-after-fill        -DMUT_NO_WAKE_AFTER_FILL -DW=2 -DN=2 -DJOBS=3 -DRC=2
 * @mutant         no-wake-after-steal       -DMUT_NO_WAKE_AFTER_STEAL -DW=2 -DN=4 -DJOBS=4 -DRC=4
 * @mutant         no-wake-leftovers         -DMUT_NO_WAKE_LEFTOVERS -DW=3 -DN=4 -DJOBS=3 -DRC=3 -DSTEALS=1
 * @mutant         recheck-no-stashes        -DMUT_RECHECK_NO_STASHES -DW=2 -DN=2 -DJOBS=3 -DRC=2
 * @mutant         recheck-nothing           -DMUT_RECHECK_NOTHING -DW=2 -DN=2 -DJOBS=3 -DRC=2
 * @mutant         read-word-after-announce  -DMUT_READ_WORD_AFTER_ANNOUNCE -DW=2 -DN=2 -DJOBS=3 -DRC=2
 * @mutant         producer-wakes-first      -DMUT_PRODUCER_WAKES_FIRST -DW=2 -DN=2 -DJOBS=3 -DRC=2
 * @mutant         steal-rounds-down         -DMUT_STEAL_ROUNDS_DOWN -DW=2 -DN=2 -DJOBS=3 -DRC=2
 * The configuration that found the stranded job (no-wake-leftovers' parameters, W=3 N=4 JOBS=3
 * RC=3 STEALS=1) passes with the wake-up for the leftovers, but takes 1.5e8 states, about 11
 * minutes and more than run.sh's default 4 GB (it passed with PAN_MEMLIM=12000): no @ line.
 * No w3 configuration with STEALS >= 1 is fast enough for the defaults (w3-steal, the smallest
 * one with a steal: 2.4e7 states, about 80 s).
 *
 * Measured on the 2-vCPU CI machine (pan -DSAFETY -DCOLLAPSE, full search), 2026-12-02:
 * w2-full-ring 2,778,293 states 4.8 s; w2-n4 5,719,573 states 9.8 s; w3 7,833,471 states 24.5 s;
 * w3-steal (@slow) 2.35e7 states 71-79 s; every @mutant fails (no-wake-leftovers on P3).
 */

#ifndef W
#define W 2
#endif
#ifndef N
#define N 2
#endif
#ifndef JOBS
#define JOBS 3
#endif
#ifndef RC
#define RC 2
#endif
#ifndef STEALS
#define STEALS 4
#endif

#define NSTASH W
#define START 254
#define CANONICAL_INDICES   /* see stash_pop_coarse */
#define TAKE(j) assert(false)  /* no collector here */
#define ON_PUBLISH(b) pending = pending + (b)
#define ON_STEAL steals++

/* ---- the ring (bounded_queue) -------------------------------------------------------------- */
byte rhead, rpub, rtail;
#if RC < JOBS
bit rfreed[JOBS];          /* the ticket's slot was released by its consumer */
#define FREE_SLOT(t) rfreed[t] = 1
#define ROOM         (rtail < RC || rfreed[rtail - RC])
#else
#define FREE_SLOT(t) skip  /* the ring never fills: slot releases cannot matter */
#define ROOM         true
#endif

/* ---- worker_parking ------------------------------------------------------------------------- */
byte parked;               /* parked_ */
byte pmask;                /* masks_[0]: bit i: worker i parked and unclaimed */
bit bumped[W];             /* wake_[i].word, abstracted: whether it changed since worker i
                              last read it (see below) */

/* ---- instrumentation -------------------------------------------------------------------------- */
bit sleeping[W];           /* worker i is in wait(wake[i], seen[i]) */
bit running[W];            /* worker i runs a job */
byte pending;              /* wakers between publishing work and the end of their wake_one() */
byte ran[JOBS + 1];
bit producer_done;
byte steals;               /* successful steal claims so far (the steal budget, see STEALS) */
#ifdef SPURIOUS
byte spurious;             /* spurious returns from wait() so far (at most SPURIOUS) */
#endif

#include "stash_ops.inc"

/* wake_one(): if parked() != 0, claim the lowest unclaimed bit with fetch_and, then bump that
 * worker's word (notify). One step per seq_cst access of the C++ (local computations join the
 * access they follow); the caller's `pending` (instrumentation) ends in the step that ends the
 * call. Locals: w_m, w_b, w_i. */
#define LOWEST(m, i) i = 0; do :: ((m) & (1 << i)) == 0 -> i++ :: else -> break od

inline wake_one() {
  if
  :: atomic { parked == 0 -> pending-- }                   /* parked(): seq_cst load */
  :: else ->
     atomic {                                              /* the hint: a relaxed load */
       w_m = pmask;
       if
       :: w_m != 0 -> LOWEST(w_m, w_i)
       :: else -> pending--
       fi
     };
     do
     :: atomic { w_m != 0 -> w_b = pmask; pmask = pmask & ~(1 << w_i) }  /* fetch_and */
        if
        :: atomic { (w_b & (1 << w_i)) != 0 ->            /* ours: notify(), fetch_add */
             bumped[w_i] = 1; pending--; w_m = 0; w_b = 0; w_i = 0; break }
        :: atomic { else ->                               /* claimed by another: the others */
             w_m = w_b & ~(1 << w_i); w_b = 0;
             if
             :: w_m != 0 -> LOWEST(w_m, w_i)
             :: else -> pending--; w_i = 0; break
             fi }
        fi
     :: atomic { w_m == 0 -> w_i = 0; break }
     od
  fi
}

#define me _pid

/* Running a job: instrumentation only (the job's own work is not modelled; the worker may stay
 * here for ever as far as the other processes are concerned: P3). Ends a step. */
#define RUN_JOB running[me] = 1; ran[job]++; assert(ran[job] == 1); job = 0; goto top

/* The stash operations here are the coarse ones (stash_ops.inc says why they are equivalent to
 * the fine-grained ones stash.pml checks); the ring and the parking handshake keep one step per
 * atomic access of the C++, except where noted. Local computations and instrumentation join
 * the step of the access they follow. */
active [W] proctype worker() {
  byte room, n, first, job, dt, k, kk, v, s;
  byte left;                                          /* steal(): what it left in the victim */
  bit busy, work;
  byte w_m, w_b, w_i;
  STASH_LOCALS;

top:
  /* ---- run_next() 1: own.pop(run) ---- */
  atomic {
    running[me] = 0;                                  /* the previous job, if any, is over */
    stash_pop_coarse(me, job);
    if
    :: job != 0 -> RUN_JOB
    :: else -> skip
    fi
  };

  /* ---- run_next() 2: claim_from_ring() ---- */
  stash_fill_room(me, room);
  atomic {
    /* try_pop_batch(min(room + 1, stash_size)); stash_size == N, as in the C++ */
    n = rpub - rhead;
    if
    :: n > room + 1 -> n = room + 1
    :: else -> skip
    fi;
    if
    :: n > N -> n = N
    :: else -> skip
    fi;
    room = 0;
    first = rhead;
    rhead = rhead + n;
    if
    :: n == 0 -> first = 0; goto steal
    :: else -> skip
    fi
  };
  atomic {                                            /* T first(batch.pop()): slot released */
    job = first + 1;
    FREE_SLOT(first);
    if
    :: n == 1 -> n = 0; first = 0; RUN_JOB
    :: else -> dt = st_tail[me]; k = 0                /* own.fill(): the rest of the batch */
    fi
  };
  do
  :: atomic { k < n - 1 -> FREE_SLOT(first + 1 + k); PUT(me, dt, k, first + 2 + k) }
  :: else -> break
  od;
#ifndef MUT_NO_WAKE_AFTER_FILL
  stash_publish(me, dt, k, 1);                        /* release store; then the fence and */
  wake_one();                                         /* wake_one(): announce_stashed() */
#else
  stash_publish(me, dt, k, 0);
#endif
  atomic { dt = 0; k = 0; n = 0; first = 0; RUN_JOB };

steal:
  /* ---- run_next() 3: steal_for() ---- */
  atomic {
    stash_fill_room(me, room);
    if
    :: room == 0 -> goto park                         /* a thief still copies out of ours */
    :: else -> kk = 1
    fi
  };
  do
  :: atomic {
       n == 0 && kk < W ->                            /* the next victim */
       v = (me + kk) % W;
       if
       :: st_tail[v] == st_real[v] || steals >= STEALS -> skip  /* size_approx() == 0: a hint */
       :: else ->
          dt = st_tail[me];                           /* own.fill(): our tail */
          k = 0;
#if !defined(MUT_NO_WAKE_LEFTOVERS) && !defined(MUT_NO_WAKE_AFTER_STEAL)
          left = IDX(st_tail[v] - st_real[v]);        /* available, as the claim sees it */
#endif
          stash_steal_coarse(v, me, dt, k, room, n, busy)   /* victim.steal(put, .., room, left) */
#if !defined(MUT_NO_WAKE_LEFTOVERS) && !defined(MUT_NO_WAKE_AFTER_STEAL)
          ; left = (n > 0 && left > n -> 1 : 0)        /* left = available - n, != 0 */
#endif
       fi;
       if
       :: n == 0 -> kk++; busy = 0; dt = 0; k = 0; v = 0
       :: else -> skip
       fi
     }
  :: atomic { n == 0 && kk >= W -> kk = 0; room = 0; goto park }
  :: atomic { n != 0 -> stash_release_coarse(v); break }    /* the steal head catches up */
  od;
  /* own.fill() publishes; then one announce_stashed() (the fence and wake_one()) for what is
     left in our own stash (n > 1), and one for what the steal left in the victim's (left: 0
     under both MUT_NO_WAKE_LEFTOVERS, the C++ before the fix, and MUT_NO_WAKE_AFTER_STEAL, no
     wake-up after a steal at all). With W <= 3 the first adds nothing to the second (an
     argument, not a check: hence no mutant drops the first alone): n > 1 means
     ceil(available / 2) > 1, so left = available - n >= 1, and the victim cannot sleep beside
     its own stashed jobs (its re-check sees them), so at most one other worker sleeps and one
     wake-up reaches it. From W = 4 on, two may sleep beside two stashes holding jobs. */
#ifndef MUT_NO_WAKE_AFTER_STEAL
#define WAKE_OWN (n > 1)
#else
#define WAKE_OWN 0
#endif
  stash_publish(me, dt, k, WAKE_OWN + left);
  if
  :: WAKE_OWN -> wake_one()
  :: else -> skip
  fi;
  if
  :: left -> wake_one()
  :: else -> skip
  fi;
  left = 0;
  atomic {
    room = 0; kk = 0; v = 0; n = 0; busy = 0; dt = 0; k = 0;
    stash_pop_coarse(me, job);                        /* return own.pop(run) */
    if
    :: job != 0 -> RUN_JOB
    :: else -> skip                                   /* taken meanwhile: run_next() false */
    fi
  };

park:
  /* ---- idle(): worker_parking::park(me, has_work) (poll_briefly() left out, see top) ---- */
#if defined(MUT_COUNT_BEFORE_BIT)
  bumped[me] = 0;
  parked++;
  pmask = pmask | (1 << me);
#elif defined(MUT_READ_WORD_AFTER_ANNOUNCE)
  pmask = pmask | (1 << me);
  parked++;
  bumped[me] = 0;
#else
  bumped[me] = 0;                                     /* seen = the wake word (seq_cst) */
  pmask = pmask | (1 << me);                          /* fetch_or, seq_cst */
  parked++;                                           /* fetch_add, seq_cst */
#endif
  /* has_work(): ring_.size_approx() != 0 || !stashes_idle(), seq_cst loads. Each of
     size_approx() and idle() is one step: as for stash_idle_coarse, its two loads answer what
     a snapshot at some instant between them answers. */
  work = (rtail != rhead);
#ifndef MUT_RECHECK_NO_STASHES
  do
  :: atomic { !work && s < W -> stash_idle_coarse(s, busy); work = !busy; busy = 0; s++ }
  :: atomic { else -> s = 0; break }
  od;
#endif
#ifdef MUT_RECHECK_NOTHING
  work = 0;
#endif
  if
  :: atomic { !work -> sleeping[me] = 1;              /* wait(word, seen): blocks while */
end_sleep:                                            /* the word is unchanged */
#ifndef SPURIOUS
       bumped[me] -> sleeping[me] = 0; parked-- }     /* woken; then fetch_sub (below) */
#else
       if
       :: bumped[me]
       :: spurious < SPURIOUS -> spurious++           /* FUTEX_WAIT returned 0 unbumped */
       fi;
       sleeping[me] = 0; parked-- }
#endif
  :: atomic { work -> work = 0; parked-- }            /* fetch_sub, seq_cst */
  fi;
  /* (The woken worker's fetch_sub joins the step that sees the bump: the bump stays visible
     until this worker clears it, so that read commutes with every other process's steps.) */
  atomic { pmask = pmask & ~(1 << me); goto top }    /* fetch_and, seq_cst */
}

active proctype producer() {
  byte w_m, w_b, w_i;
  do
#ifndef MUT_PRODUCER_WAKES_FIRST
  :: atomic {
       /* try_emplace(): the tail CAS (seq_cst), once the ticket's slot is free. From here
          size_approx() counts the job, and the wake-up it owes is pending. */
       rtail < JOBS && ROOM -> rtail++; pending++
     };
     rpub++;                                          /* the slot's turn: published */
     wake_one()
#else
  :: atomic { rtail < JOBS && ROOM -> pending++ };   /* wake_one() before the push */
     wake_one();
     rtail++;
     rpub++
#endif
  :: atomic { rtail == JOBS -> producer_done = 1; break }
  od
}

/* ---- the monitor ---------------------------------------------------------------------------- */
#define ASLEEP(w)  (sleeping[w] && !bumped[w])
#define HELD(w)    (ASLEEP(w) || running[w])
#define STASHED(s) (st_real[s] != st_tail[s])
#if W == 2
#define ALL_ASLEEP  (ASLEEP(0) && ASLEEP(1))
#define ALL_HELD    (HELD(0) && HELD(1))
#define ANY_ASLEEP  (ASLEEP(0) || ASLEEP(1))
#define ANY_STASHED (STASHED(0) || STASHED(1))
#elif W == 3
#define ALL_ASLEEP  (ASLEEP(0) && ASLEEP(1) && ASLEEP(2))
#define ALL_HELD    (HELD(0) && HELD(1) && HELD(2))
#define ANY_ASLEEP  (ASLEEP(0) || ASLEEP(1) || ASLEEP(2))
#define ANY_STASHED (STASHED(0) || STASHED(1) || STASHED(2))
#else
#error "the monitor is written for W = 2 or 3"
#endif
#define WAITING     (rtail != rhead || ANY_STASHED)
/* P2: every worker asleep, a job waiting, and no wake-up on its way */
#define LOST        (pending == 0 && ALL_ASLEEP && WAITING)
/* P3: some worker asleep, every other one running a job, a job waiting, no wake-up on its way */
#ifndef NO_P3
#define STRANDED    (pending == 0 && ALL_HELD && ANY_ASLEEP && WAITING)
#else
#define STRANDED    false
#endif

active proctype monitor() {
  byte j;
end:
  do
  :: atomic { LOST -> assert(!LOST) }                 /* P2, in every state */
  :: atomic { STRANDED -> assert(!STRANDED) }         /* P3, in every state */
  :: timeout -> break                                 /* nothing can move */
  od;
  /* P2 again, at the end: nothing can move, so the producer is done and every worker sleeps
     (the only blocking statement of a worker): every job must have run (P1: exactly once) */
  assert(producer_done);
  j = 1;
  do
  :: j <= JOBS -> assert(ran[j] == 1); j++
  :: else -> break
  od
}
