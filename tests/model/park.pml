/* park.pml: exhaustive check of how crew's workers find work and park
 * (include/crew/detail/scheduler.hpp, parking.hpp, stash.hpp; worker_main in worker_pool.hpp).
 *
 * Memory model. Promela interleaves whole statements: sequential consistency. That is what the
 * C++ gives this handshake, because every access the handshake consists of is seq_cst: the
 * producer's tail claim (a seq_cst RMW) and the stash fill's tail store followed by a seq_cst
 * fence, then the waker's parked_ load, mask fetch_and and wake-word fetch_add; on the parker's
 * side the wake-word load, the mask fetch_or, the parked_ fetch_add and the re-check loads
 * (ring.size_approx(), stash::idle()), all seq_cst, and the futex's own check of the word. Those
 * seq_cst operations (and the fence, which orders the release store before the parked_ load as
 * a seq_cst store would be) are exactly what justify modelling the handshake as SC: no SC
 * execution loses a wake-up  <=>  the Dekker pairs hold. The stash's acquire/release pairs
 * (tail, steal head) order slot contents, which stash.pml checks with the same operations.
 *
 * Processes:
 *   worker[i] (pids 0..W-1) runs worker_main's loop: run_next() =
 *      1. pop its own stash;
 *      2. ring claim: room = fill_room(); try_pop_batch(min(room + 1, N)); the first job runs,
 *         the rest are moved into its own stash (each move releases its ring slot), then the
 *         fill is published, then (fence) wake_one();
 *      3. steal_for(): room = fill_room() (0: give up); for each other stash in order
 *         (i+1, i+2, .. mod W), skip it if size_approx() is 0, else steal half (at most room)
 *         into its own stash; if n > 1, wake_one(); then pop its own stash (run it, or give up);
 *      otherwise idle(): park: read its wake word, set its mask bit, parked++, re-check (ring
 *      size_approx() != 0, then stash::idle() for every stash), sleep iff nothing found and the
 *      word is unchanged, parked--, clear its bit.
 *      poll_briefly() is left out: its reads change nothing, so "poll saw work, back to the
 *      top" reaches only states that "the worker looked later" reaches too.
 *   producer pushes JOBS jobs (ids 1..JOBS) one by one: claim a ticket (the seq_cst tail RMW:
 *      from here size_approx() counts it), publish the slot, wake_one(). A full ring blocks the
 *      producer until the slot it needs is released (worker_pool's room wait, not modelled
 *      here, is assumed to retry then).
 *   monitor checks the properties below.
 * Not modelled: shutdown (close, stop(), wake_all, collect: collect is in stash.pml), recycling,
 * wait_idle, the producers' room handshake, push_bulk, holes.
 *
 * The ring: tickets rhead (consumers' head) <= rpub (published; one producer publishes in
 * order) <= rtail (claimed). try_pop_batch(max) is one step: it linearizes at its head CAS (the
 * slots it read stay published while the head is unchanged, and tickets never repeat).
 *
 * Properties:
 *   P1 every job runs exactly once (ran[j] asserted 1 at every run; at the end, for all j);
 *   P2 no lost wake-up, as a deadlock check: when nothing can move (`timeout`: the producer is
 *      done and every worker sleeps) every job has run. Sleeping is the only end state;
 *   P3 work conservation, checked in every state: it is never the case that a job waits (in
 *      the ring, or in a stash) while some worker sleeps, every other worker is running a job
 *      (and may run it for ever), and no waker is between publishing work and the end of its
 *      wake_one() (`pending`). A worker "sleeps" when it is blocked on its wake word with the
 *      word unchanged (a bumped word means it is already woken). P3 implies "never all workers
 *      asleep with work available" (and catches an owner that skips its wake_one after a fill,
 *      which P2 cannot: the owner runs the stashed job itself later);
 *   P4 the stash properties of stash.pml (slot writes never under a thief's read, indices
 *      consistent) hold here too, with thieves that are workers.
 *
 * Configurations (run.sh runs each `@config` line; -D flags passed to spin):
 * @config w2:    -DW=2 -DN=2 -DJOBS=3 -DRC=2
 * @config w3:    -DW=3 -DN=2 -DJOBS=3 -DRC=2
 *
 * Planted bugs (verified by hand: run.sh --mutants re-runs them, each must FAIL):
 *   RESULTS_PARK_PLACEHOLDER
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

#define NSTASH W
#define START 254
#define TAKE(j) assert(false)  /* no collector here */
#define ON_PUBLISH(b) pending = pending + (b)

/* ---- the ring (bounded_queue) -------------------------------------------------------------- */
byte rhead, rpub, rtail;
bit rfreed[JOBS];          /* the ticket's slot was released by its consumer */

/* ---- worker_parking ------------------------------------------------------------------------- */
byte parked;               /* parked_ */
byte pmask;                /* masks_[0]: bit i: worker i parked and unclaimed */
byte wake[W];              /* wake_[i].word */

/* ---- instrumentation -------------------------------------------------------------------------- */
byte seen[W];              /* the wake word worker i read before announcing itself */
bit sleeping[W];           /* worker i is in wait(wake[i], seen[i]) */
bit running[W];            /* worker i runs a job */
byte pending;              /* wakers between publishing work and the end of their wake_one() */
byte ran[JOBS + 1];
bit producer_done;

#include "stash_ops.inc"

/* wake_one(): claim the lowest unclaimed bit with fetch_and, bump that worker's word. The
 * caller's `pending` ends with it. Locals: w_m, w_b, w_i. */
#define LOWEST(m, i) i = 0; do :: ((m) & (1 << i)) == 0 -> i++ :: else -> break od

inline wake_one() {
  if
  :: parked == 0 -> skip                                    /* parked(): seq_cst load */
  :: else ->
     atomic { w_m = pmask; if :: w_m != 0 -> LOWEST(w_m, w_i) :: else -> skip fi }  /* hint */
     do
     :: w_m == 0 -> break
     :: else ->
        atomic { w_b = pmask; pmask = pmask & ~(1 << w_i) } /* fetch_and, seq_cst */
        if
        :: (w_b & (1 << w_i)) != 0 -> wake[w_i]++; break    /* notify(): fetch_add, seq_cst */
        :: else ->
           atomic { w_m = w_b & ~(1 << w_i); if :: w_m != 0 -> LOWEST(w_m, w_i) :: else -> skip fi }
        fi
     od
  fi;
  atomic { w_m = 0; w_b = 0; w_i = 0; pending-- }
}

#define me _pid

active [W] proctype worker() {
  byte room, mx, n, first, job, dt, k, kk, v, hd, s;
  bit busy, work, idle;
  byte w_m, w_b, w_i;
  STASH_LOCALS;

top:
  /* ---- run_next() 1: own stash ---- */
  stash_pop(me, job);
  if
  :: job != 0 -> goto run_job
  :: else -> skip
  fi;

  /* ---- run_next() 2: claim_from_ring() ---- */
  stash_fill_room(me, room);
  atomic {
    mx = (room + 1 > N -> N : room + 1);   /* stash_size == N, as in the C++ */
    room = 0;
    /* try_pop_batch(mx) */
    n = rpub - rhead;
    if
    :: n > mx -> n = mx
    :: else -> skip
    fi;
    first = rhead;
    rhead = rhead + n;
    mx = 0
  };
  if
  :: n > 0 ->
     atomic { job = first + 1; rfreed[first] = 1 }  /* T first(batch.pop()) */
     if
     :: n > 1 ->
        atomic { dt = st_tail[me]; k = 0 }            /* own.fill(): the rest of the batch */
        do
        :: k < n - 1 -> atomic { rfreed[first + 1 + k] = 1; PUT(me, dt, k, first + 2 + k) }
        :: else -> break
        od;
#ifndef MUT_NO_WAKE_AFTER_FILL
        stash_publish(me, dt, k, 1);                  /* release store; then the fence */
        wake_one();                                   /* announce_stashed() */
#else
        stash_publish(me, dt, k, 0);
#endif
        atomic { dt = 0; k = 0 }
     :: else -> skip
     fi;
     atomic { n = 0; first = 0 };
     goto run_job
  :: else -> first = 0
  fi;

  /* ---- run_next() 3: steal_for() ---- */
  stash_fill_room(me, room);
  if
  :: room == 0 -> goto park
  :: else -> kk = 1
  fi;
  do
  :: kk < W ->
     v = (me + kk) % W;
     if
     :: st_tail[v] == st_real[v] -> kk++             /* size_approx() == 0: a relaxed hint */
     :: else ->
        atomic { dt = st_tail[me]; k = 0 }            /* own.fill([&] { victim.steal(..) }) */
        stash_steal(v, me, dt, k, 0, room, n, busy);
#ifndef MUT_NO_WAKE_AFTER_STEAL
        stash_publish(me, dt, k, n > 1);
#else
        stash_publish(me, dt, k, 0);
#endif
        if
        :: n == 0 -> atomic { kk++; busy = 0; dt = 0; k = 0 }
        :: else ->
#ifndef MUT_NO_WAKE_AFTER_STEAL
           if
           :: n > 1 -> wake_one()                     /* announce_stashed() */
           :: else -> skip
           fi;
#endif
           atomic { room = 0; kk = 0; v = 0; n = 0; busy = 0; dt = 0; k = 0 }
           stash_pop(me, job);                        /* return own.pop(run) */
           if
           :: job != 0 -> goto run_job
           :: else -> goto park
           fi
        fi
     fi
  :: else -> break
  od;

park:
  /* ---- idle(): worker_parking::park(me, has_work) ---- */
  atomic { room = 0; kk = 0; v = 0; seen[me] = wake[me] }  /* the wake word, before announcing */
  pmask = pmask | (1 << me);                          /* fetch_or, seq_cst */
  parked++;                                           /* fetch_add, seq_cst */
  /* has_work(): ring_.size_approx() != 0 || !stashes_idle() */
  hd = rhead;
  atomic { work = (rtail != hd); hd = 0 };
#ifndef MUT_RECHECK_NO_STASHES
  do
  :: !work && s < W -> stash_idle(s, idle); atomic { work = !idle; idle = 0; s++ }
  :: else -> break
  od;
#endif
#ifdef MUT_RECHECK_NOTHING
  work = 0;
#endif
  atomic { s = 0; sleeping[me] = !work };
  if
  :: !work ->
end_sleep:
     atomic { wake[me] != seen[me] -> sleeping[me] = 0 }  /* wait(word, seen) */
  :: else -> skip
  fi;
  atomic { work = 0; parked-- };                      /* fetch_sub, seq_cst */
  atomic { pmask = pmask & ~(1 << me); seen[me] = 0 } /* fetch_and, seq_cst */
  goto top;

run_job:
  atomic { running[me] = 1; ran[job]++; assert(ran[job] == 1) };
  atomic { running[me] = 0; job = 0 };
  goto top
}

active proctype producer() {
  byte j;
  byte w_m, w_b, w_i;
  do
  :: j < JOBS ->
     /* try_emplace(): the tail CAS (seq_cst) once the ticket's slot is free; from here
        size_approx() counts the job, and the wake-up it owes is pending */
     atomic { (rtail < RC || rfreed[rtail - RC]) -> rtail++; pending++ };
     rpub++;                                          /* the slot's turn: published */
     wake_one();
     j++
  :: else -> break
  od;
  producer_done = 1
}

/* ---- the monitor ---------------------------------------------------------------------------- */
#define ASLEEP(w)  (sleeping[w] && wake[w] == seen[w])
#define HELD(w)    (ASLEEP(w) || running[w])
#define STASHED(s) (st_real[s] != st_tail[s])
#if W == 2
#define ALL_HELD    (HELD(0) && HELD(1))
#define ANY_ASLEEP  (ASLEEP(0) || ASLEEP(1))
#define ANY_STASHED (STASHED(0) || STASHED(1))
#elif W == 3
#define ALL_HELD    (HELD(0) && HELD(1) && HELD(2))
#define ANY_ASLEEP  (ASLEEP(0) || ASLEEP(1) || ASLEEP(2))
#define ANY_STASHED (STASHED(0) || STASHED(1) || STASHED(2))
#else
#error "the monitor is written for W = 2 or 3"
#endif
#define WAITING     (rtail != rhead || ANY_STASHED)
#define STRANDED    (pending == 0 && ALL_HELD && ANY_ASLEEP && WAITING)

active proctype monitor() {
  byte j;
end:
  do
  :: atomic { STRANDED -> assert(!STRANDED) }        /* P3, in every state */
  :: timeout -> break                                 /* nothing can move */
  od;
  /* P2: nothing can move, so every worker sleeps: every job must have run */
  assert(producer_done);
  j = 1;
  do
  :: j <= JOBS -> assert(ran[j] == 1); j++
  :: else -> break
  od
}
