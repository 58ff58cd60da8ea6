/* keyed.pml: exhaustive check of how crew's keyed pool schedules keys
 * (include/crew/detail/key_table.hpp: admit_run, take, remove, close, and its protocol comment
 * K1-K4, "No lost wake-up", "Closing"; include/crew/keyed_pool.hpp: key_ops::push and
 * schedule(), worker_main, hold_key, stop_waiting, begin_shutdown).
 *
 * What is modelled. Each key's state (its entry, if any, and the entry's FIFO of jobs) is
 * guarded by its stripe's mutex. A producer admits a job under the lock: closed -> refused; the
 * key has an entry -> the job goes to the back of the entry's FIFO; else a new entry is created
 * with this job and, after unlocking, pushed on the run queue (schedule()). A worker takes an
 * entry off the run queue and holds it: repeatedly, each time under the lock (take()), an empty
 * FIFO removes the entry (the key is no longer scheduled), a spent budget (key_budget jobs run
 * in this hold) requeues it (pushed to the run queue after unlocking), otherwise a run of the
 * FIFO's oldest jobs (as many as the budget has left, at most max_take and its job stash's room:
 * 16, more than B here) moves into the holder's own job stash; it unlocks, runs them in order,
 * and takes again once the stash is empty. Drain (shutdown(drain), begin_shutdown): close() (the
 * flag, then every stripe's lock taken and released once), phase = draining, wake_all(); then
 * it waits for every worker to exit. A worker leaves when stop_waiting() (draining and
 * executed >= accepted); on the way out it wakes every worker (sched_.wake_all()).
 *
 * Processes:
 *   worker[w] (pids 0..W-1): worker_main's loop: run_next() (an entry off the run queue, then
 *      hold_key), else stop_waiting() (leave), else idle() -> park(): read its wake word,
 *      re-check (stop_waiting(), then "the run queue has work"), sleep until the word changes
 *      (or, see the abstractions, until the run queue has work); leaving: wake_all(), then
 *      counted in `exited` (workers_.exited());
 *   producer[p] (pids W..W+P-1): J submits, each under a key chosen nondeterministically among
 *      the K keys (every pattern of keys; but see the symmetry below), through admit() then,
 *      when it created the entry, schedule(); once one is refused (closed), so is every later
 *      one (the flag stays set, and a refused admit holds its lock for no step of another
 *      process), so they all are in that step;
 *   shutdown: begin_shutdown(draining), then waits for every worker to exit and checks the
 *      drain (report.drained), then waits for the producers and checks every job's fate. It
 *      runs from the start: its steps interleave with the submits anywhere;
 *   monitor: checks K1 and the run queue's invariants in every state (-DNO_MONITOR leaves it
 *      out: the *-nomon mutants show that properties 1-3 alone catch those bugs too).
 *
 * Granularity (Promela interleaves whole statements). Each step below is exact, by Lipton's
 * reduction (lock acquisitions move right, releases and pushes of a free-list id left, and what
 * the lock guards commutes with every other process's steps), or exact up to stuttering:
 *   - admit is two steps: (lock; read `closed`) and (find; append or create; count it as
 *     accepted; unlock). Not one, because close() writes the flag outside the lock: an admit
 *     that read "open" and has not finished is what close()'s lock barrier waits for (the
 *     mutant close-no-barrier needs the gap). The entry free list is popped in the second step
 *     (a right mover: the table has an entry for every key that can be active, so it never
 *     waits; which free id it gets does not matter, by symmetry: the lowest here);
 *   - take() is one step (lock; look at the FIFO; remove / requeue / move a run into the job
 *     stash; unlock): it reads and writes only what the lock guards, the holder's own stash
 *     and the free lists (an entry id pushed: a left mover; the slots given back after it,
 *     likewise); the holder's `aborting` read is left out (no abort, see below);
 *   - the job stash: in a drain only its owner touches it (a shutdown steals from it only
 *     when aborting), so its pops, started() (`handed`, read only for max_per_key) and a job's
 *     start are local steps: the first job's start joins take()'s step, each next one joins
 *     the step in which the previous job ends (the handler returns; executed++, a release
 *     store). A job's end is a step of its own, so "another job of this key starts while one
 *     runs" is reachable;
 *   - schedule() (the creating admit's and the requeue's push) is one step;
 *   - stop_waiting() is one step: it reads phase, then executed, then accepted, all monotone,
 *     and accepted is final once the phase says draining (close() came first): so its answer
 *     is that of one snapshot at some instant between its loads. The loop's stop_waiting() and
 *     park()'s read of the wake word join run_next()'s "nothing" (all loads): taken at the
 *     last of them, a "nothing" that stopped being true makes the worker take the entry
 *     instead of parking and finding it at the re-check; a stop that became true makes it
 *     leave now instead of after the re-check (which sees it: it stays true); a bump of the
 *     word before the read is consumed by the read either way;
 *   - park()'s re-check is stop() (a step), then the run queue's size, which is the sleep's
 *     own statement: a sleeper may return whenever the run queue has work (see the
 *     abstractions), so "seen at the re-check" and "woken at once" are the same behaviour;
 *   - close()'s barrier is one step per stripe (wait until the lock is free: acquire and
 *     release at once); wake_all() is one step per wake word (a seq_cst fetch_add each).
 * Memory model: SC. The C++ orders what matters here with locks (admit / take / close) and
 * with seq_cst or release/acquire pairs: the phase store after close() against
 * stop_waiting()'s seq_cst phase load (a worker that sees "draining" sees every admit close()
 * waited for, through the lock); the leaving worker's executed store (release) then each wake
 * word's seq_cst fetch_add, against the parker's seq_cst read of its word then its re-check's
 * acquire loads: either the futex sees the changed word, or the parker's read of the word
 * reads the bump, synchronises with it, and its re-check sees the count. Both are
 * SC-equivalent handshakes.
 *
 * Abstractions:
 *   - the run queue (detail::scheduler: the ring, the workers' stashes, stealing, parking) is a
 *     bag of entry ids: `inq[e]` counts the pushes of entry e not taken off yet (an id on the
 *     queue twice shows as 2), and any worker may take any queued id at any time. That is an
 *     over-approximation of the scheduler, which is not FIFO across keys (a claim's batch goes
 *     to a stash, steals reorder), relying on what stash.pml and park.pml check: every pushed
 *     job is taken exactly once (their P1), and a pushed job is not left waiting while a worker
 *     sleeps (park.pml's P2 and P3). Hence a sleeping worker here may also return whenever the
 *     run queue has work (push()'s wake_one(), abstracted to "any sleeper may wake": extra
 *     wake-ups only add behaviours). The order in which keys are served (fairness, what
 *     key_budget is for) is not checked here; the budget's requeue path is;
 *   - the wake words are kept, as bits (park.pml's abstraction: `bumped[w]` is "changed since
 *     worker w read it"), because the shutdown's and the drain exit's wake_all() are part of
 *     this protocol; the parked mask and count serve only wake_one() and are left out;
 *     poll_briefly() is left out (its reads change nothing: "the poll saw work" reaches what
 *     "the worker ran run_next() later" reaches); a leaving worker does not bump its own word
 *     (it never reads it again);
 *   - accepted and executed are kept as their difference `owed` (the pool only compares them);
 *     a job is its per-key sequence number, and a key's numbering starts again from 0 whenever
 *     every job it was given has started and ended (nothing of the key is left anywhere, and
 *     only differences are compared): states that differ only in how many jobs went through
 *     merge;
 *   - symmetry: the keys are interchangeable (nothing depends on a key's number but its stripe,
 *     and with one stripe per key or a single stripe, renaming the keys renames the stripes
 *     alike), so the first producer's first job is under key 0: the runs with another key
 *     there are these runs with the keys renamed;
 *   - job slots, capacity and max_per_key (admit's full / key_full, the room gates), latency
 *     stamps, statistics, wait_idle, recycling (a worker never holds a key across a recycle:
 *     it recycles between holds), submit_bulk's admit_run (several appends under one lock,
 *     then at most one schedule()), hash collisions (a key's entry is found by exact key: a
 *     hash only picks the chain and the stripe, which STRIPES models), jobs that submit (a
 *     worker submitting is one more producer, that holds no stripe lock while its job runs),
 *     and the abort / shutdown_for / collect paths: not modelled.
 * Bounds: none but the sizes (P producers of J jobs each, W workers, K keys, STRIPES locks, key
 * k on stripe k % STRIPES, NE entry ids); the search is exhaustive for them.
 *
 * Properties (assertions; pan -DSAFETY, so invalid end states are errors: a worker asleep for
 * ever, or the shutdown waiting for ever, is a deadlock):
 *   1 per-key FIFO: a job's per-key sequence number (given at its admit, under the lock) is one
 *     more than that of the key's previous job to start (so no job of a key starts twice, or
 *     before an earlier one, or after a later one);
 *   2 mutual exclusion: no job of a key starts while another one of that key runs;
 *   3 no lost job, no lost wake-up: the drain ends (no invalid end state: every worker leaves,
 *     the shutdown returns), and then (every producer done too) every key's last job given has
 *     started (with 1: every accepted job ran exactly once), nothing is owed, no entry is left
 *     and the run queue is empty; refused jobs never get a number, so never run;
 *   4 the run queue: an entry id is pushed only when it is neither queued nor held (never twice
 *     on the queue, never both queued and held) and taken off only while it is in the table;
 *     K1 (the monitor, in every state): an entry in the table is exactly one of queued, held by
 *     a worker (from its take off the queue to its removal or its requeue's push), or in the
 *     hands of the producer that created it; an entry without jobs is held; a free entry is
 *     nowhere and holds no job; K2: a key has at most one entry;
 *   5 closing: no admit is accepted after close() returned; a worker leaves the drain only
 *     when every accepted job has run and no admit is in flight (past its closed check).
 *
 * Configurations (run.sh: @config by default, @slow with --slow, @mutant with --mutants, each of
 * which must FAIL; flags go to spin -a). Defaults: P=2 W=2 K=2 J=2 B=1 STRIPES=K NE=K+1.
 * STRIPES=1 (both keys behind one lock) only removes interleavings from STRIPES=K (a close()
 * barrier over one lock passes at an instant where both would): it is @slow, a cross-check.
 * @config  p2-j2-b1          -DP=2 -DJ=2 -DB=1
 * @config  p2-j2-b2          -DP=2 -DJ=2 -DB=2
 * @config  p2-j3-k1-b1       -DP=2 -DJ=3 -DK=1 -DB=1
 * @slow    p2-j2-b1-stripe1  -DP=2 -DJ=2 -DB=1 -DSTRIPES=1
 * @slow    p2-j3-b1          -DP=2 -DJ=3 -DB=1
 * @slow    p2-j3-b2          -DP=2 -DJ=3 -DB=2
 * @slow    p2-j3-k1-b2       -DP=2 -DJ=3 -DK=1 -DB=2
 * @slow    w3-p2-j2-b1       -DW=3 -DP=2 -DJ=2 -DB=1
 * @mutant  always-create       -DMUT_ALWAYS_CREATE -DP=2 -DJ=2 -DB=1
 * @mutant  schedule-on-append  -DMUT_SCHEDULE_ON_APPEND -DP=2 -DJ=2 -DB=1
 * @mutant  check-then-remove   -DMUT_CHECK_THEN_REMOVE -DP=2 -DJ=2 -DB=1
 * @mutant  remove-unlocked     -DMUT_REMOVE_UNLOCKED -DP=2 -DJ=2 -DB=1
 * @mutant  no-requeue          -DMUT_NO_REQUEUE -DP=2 -DJ=2 -DB=1
 * @mutant  exit-when-closed    -DMUT_EXIT_WHEN_CLOSED -DP=2 -DJ=2 -DB=1
 * @mutant  close-no-barrier    -DMUT_CLOSE_NO_BARRIER -DP=2 -DJ=2 -DB=1
 * @mutant  phase-before-close  -DMUT_PHASE_BEFORE_CLOSE -DP=2 -DJ=2 -DB=1
 * @mutant  no-shutdown-wake    -DMUT_NO_SHUTDOWN_WAKE -DP=2 -DJ=2 -DB=1
 * @mutant  no-exit-wake        -DMUT_NO_EXIT_WAKE -DP=2 -DJ=2 -DB=1
 * @mutant  always-create-nomon      -DNO_MONITOR -DMUT_ALWAYS_CREATE -DP=2 -DJ=2 -DB=1
 * @mutant  check-then-remove-nomon  -DNO_MONITOR -DMUT_CHECK_THEN_REMOVE -DP=2 -DJ=2 -DB=1
 * @mutant  remove-unlocked-nomon    -DNO_MONITOR -DMUT_REMOVE_UNLOCKED -DP=2 -DJ=2 -DB=1
 * @mutant  no-requeue-nomon         -DNO_MONITOR -DMUT_NO_REQUEUE -DP=2 -DJ=2 -DB=1
 *
 * The mutants (planted bugs; each must make the search fail):
 *   MUT_ALWAYS_CREATE       admit never looks for the key's entry: every admit creates one and
 *                           schedules it (two entries of one key, two holders)
 *   MUT_SCHEDULE_ON_APPEND  an admit that appends to an existing entry schedules it too
 *   MUT_CHECK_THEN_REMOVE   the holder sees the empty FIFO under the lock, unlocks, then
 *                           removes the entry under the lock again (an admit in between is lost)
 *   MUT_REMOVE_UNLOCKED     the holder's take() ignores the lock (the admit's find and append
 *                           are then separate steps: under the lock they commute, without it
 *                           they do not)
 *   MUT_NO_REQUEUE          a spent budget gives the key up without pushing it back
 *   MUT_EXIT_WHEN_CLOSED    stop_waiting() is "draining", without executed >= accepted
 *   MUT_CLOSE_NO_BARRIER    close() sets the flag without taking every stripe's lock
 *   MUT_PHASE_BEFORE_CLOSE  begin_shutdown() sets "draining" before close()
 *   MUT_NO_SHUTDOWN_WAKE    begin_shutdown() does not wake the workers
 *   MUT_NO_EXIT_WAKE        a worker leaving the drain does not wake the others
 */

#ifndef P
#define P 2          /* producers */
#endif
#ifndef W
#define W 2          /* workers */
#endif
#ifndef K
#define K 2          /* keys */
#endif
#ifndef J
#define J 2          /* jobs per producer */
#endif
#ifndef B
#define B 1          /* key_budget */
#endif
#ifndef STRIPES
#define STRIPES K    /* stripe locks; key k is on stripe k % STRIPES */
#endif
#ifndef NE
#define NE (K + 1)   /* entry ids (correct runs need K: one more lets a duplicate entry show) */
#endif

#if NE > 4
#error "the run queue's take is written for NE <= 4"
#endif
#if K > 3
#error "the key choice is written for K <= 3"
#endif

#define JOBS  (P * J)
#define NONE  255
#define ST(k) ((k) % STRIPES)
#define RUNNING  0
#define DRAINING 1

/* ---- the key table (guarded by the stripe locks, but for `closed` and `owed`) --------------- */
byte lk[STRIPES];                   /* stripe mutex: 0 free, else the owner's pid + 1 */
bit closed;                         /* closed_: written by close() outside the locks */
bit live[NE];                       /* entry e is in the table */
byte ekey[NE];                      /* its key */
chan fifo[NE] = [JOBS] of { byte }; /* its FIFO of jobs (each job: its per-key sequence number) */
byte kentry[K] = NONE;              /* what find() returns for key k: its entry, or NONE */
byte owed;                          /* table_.accepted() - executed_total(): the pool compares
                                       the two counters only, so their difference is all it
                                       uses of them (admit: +1, a job's end: -1) */

/* ---- the run queue and the pool ------------------------------------------------------------- */
byte inq[NE];                       /* pushes of entry e not yet taken off the run queue */
byte rq_len;                        /* sum of inq[] */
bit phase;                          /* phase_: RUNNING, DRAINING */
bit bumped[W];                      /* wake word w changed since worker w read it */

/* ---- instrumentation ------------------------------------------------------------------------- */
byte held[NE];                      /* the holder's pid + 1 (from its take off the queue to its
                                       remove, or to its requeue's push) */
bit topush[NE];                     /* created by an admit whose producer has not pushed it yet */
byte kseq[K];                       /* per key: jobs accepted (the last sequence number given) */
byte kran[K];                       /* per key: the sequence number of the last job started */
bit krunning[K];                    /* per key: a job runs now */
byte inflight;                      /* admits past the closed check, not yet accepted */
bit close_done;                     /* close() has returned */
byte exited;                        /* workers that left worker_main */
byte pdone;                         /* producers done */

#define me _pid

/* remove(): unlinks entry e and frees it (under its lock). With MUT_ALWAYS_CREATE a key may
 * have an older entry still in its chain: find() returns that one from then on. */
#ifdef MUT_ALWAYS_CREATE
#define REFIND(k, x) \
  x = 0; \
  do \
  :: x < NE && !(live[x] && ekey[x] == (k)) -> x++ \
  :: x < NE && live[x] && ekey[x] == (k) -> kentry[k] = x; x = 0; break \
  :: x >= NE -> x = 0; break \
  od
#else
#define REFIND(k, x) skip
#endif
#define REMOVE(e, x) \
  live[e] = 0; held[e] = 0; \
  if \
  :: kentry[ekey[e]] == (e) -> kentry[ekey[e]] = NONE; REFIND(ekey[e], x) \
  :: else -> skip \
  fi; \
  ekey[e] = 0

/* ---- the workers ---------------------------------------------------------------------------- */

#ifndef MUT_EXIT_WHEN_CLOSED
#define STOP (phase == DRAINING && owed == 0)       /* executed >= accepted */
#else
#define STOP (phase == DRAINING)
#endif

/* run_next(): any queued entry (the bag), which must be in the table (property 4) */
#define TAKE_OFF(i) \
  :: atomic { inq[i] != 0 -> assert(live[i]); inq[i]--; rq_len--; held[i] = me + 1; e = i; \
              goto hold }

/* A job of the held entry's key starts (taken from the job stash: started(e), run_job): the
 * checks of properties 1 and 2. Then it ends: executed++ (a release store). */
#define START_JOB \
  mine?x; \
  k = ekey[e]; \
  assert(!krunning[k]);                             /* property 2 */ \
  krunning[k] = 1; \
  assert(x == kran[k] + 1);                         /* property 1 (and 3: each job once) */ \
  kran[k] = x; \
  x = 0
#define END_JOB \
  krunning[k] = 0; \
  owed--; \
  if                                                /* nothing of key k left anywhere: */ \
  :: kran[k] == kseq[k] -> kran[k] = 0; kseq[k] = 0 /* its numbering starts again */ \
  :: else -> skip \
  fi; \
  nran++; \
  k = 0

active [W] proctype worker() {
  byte e = NONE, k, nran, w, x;
  bit requeue;
  chan mine = [B] of { byte };                      /* its job stash (drain: the owner's only) */

top:
  if
  TAKE_OFF(0)
  TAKE_OFF(1)
#if NE > 2
  TAKE_OFF(2)
#endif
#if NE > 3
  TAKE_OFF(3)
#endif
  :: atomic {
       rq_len == 0 ->                               /* run_next() false */
       if
       :: STOP ->                                   /* stop_waiting(): leave (property 5) */
          assert(owed == 0 && inflight == 0);
          goto leave
       :: else -> bumped[me] = 0                    /* idle() -> park(): read the wake word */
       fi
     }
  fi;
  /* (stop_waiting() and the word's read are loads of their own: see the header for why they
     join run_next()'s step.) The re-check: stop(), ... */
  if
  :: atomic { STOP -> goto top }
  :: atomic { else -> skip }
  fi;
  /* ... then the run queue's size, and wait(word, seen): one statement, as a sleeper may
     return whenever the run queue has work (wake_one(), abstracted) */
  atomic { bumped[me] || rq_len != 0 -> goto top };

hold:
  /* hold_key(): take() a run of jobs into the job stash, run them, again, until take() says
     removed or requeue. take() only comes with the stash empty (own.pop() first). */
  do
  :: atomic {
#ifndef MUT_REMOVE_UNLOCKED
       lk[ST(ekey[e])] == 0 ->                      /* lock; ... ; unlock */
#endif
       if
       :: len(fifo[e]) == 0 ->
#ifndef MUT_CHECK_THEN_REMOVE
          REMOVE(e, x);                             /* step::removed */
          e = NONE; nran = 0; goto top
#else
          break                                     /* unlock; remove below */
#endif
       :: len(fifo[e]) != 0 && nran >= B -> requeue = 1; break   /* most == 0: step::requeue */
       :: len(fifo[e]) != 0 && nran < B ->          /* step::run: min(most, count) jobs */
          do
          :: len(fifo[e]) != 0 && len(mine) < B - nran -> fifo[e]?x; mine!x
          :: else -> x = 0; break
          od;
          START_JOB                                 /* own.pop(run): the first one starts */
       fi
     };
     do
     :: atomic {                                    /* the job returns (executed++), then */
          END_JOB;                                  /* own.pop(run): the next one, if any */
          if
          :: len(mine) != 0 -> START_JOB
          :: else -> break
          fi
        }
     od
  od;
  if
  :: requeue ->
#ifndef MUT_NO_REQUEUE
     atomic {                                       /* schedule(e): push to the run queue */
       assert(inq[e] == 0 && held[e] == me + 1);    /* property 4 */
       inq[e]++; rq_len++; held[e] = 0;
       requeue = 0; e = NONE; nran = 0; goto top
     }
#else
     atomic { held[e] = 0; requeue = 0; e = NONE; nran = 0; goto top }
#endif
  :: else ->
#ifdef MUT_CHECK_THEN_REMOVE
     atomic { lk[ST(ekey[e])] == 0 -> REMOVE(e, x); e = NONE; nran = 0; goto top }
#else
     assert(false)
#endif
  fi;

leave:
  /* sched_.wake_all(): every other worker's word, one fetch_add each; then
     workers_.exited(i) (joins the last one: the shutdown only waits for it) */
#ifndef MUT_NO_EXIT_WAKE
  w = (me == 0 -> 1 : 0);
  do
  :: atomic {
       w < W -> bumped[w] = 1; w++;
       if
       :: w == me -> w++
       :: else -> skip
       fi;
       if
       :: w >= W -> w = 0; exited++; break
       :: else -> skip
       fi
     }
  od
#else
  exited++
#endif
}

/* ---- the producers -------------------------------------------------------------------------- */

/* admit() of the next job under key kk: lock; read the closed flag (one step: the acquisition
 * moves right). The key's choice is local: it joins the step.
 * Symmetry: the keys are interchangeable (nothing depends on a key's number but its stripe, and
 * with one stripe per key or a single one, renaming the keys renames the stripes alike), so the
 * first producer's first job is under key 0: the runs with another key there are these runs
 * with the keys renamed. */
#if STRIPES == K || STRIPES == 1
#define FIRST_KEY(kk) ((kk) == 0 || me != W || j != 0)
#else
#define FIRST_KEY(kk) true
#endif
#define ADMIT_LOCK(kk) \
  :: atomic { \
       lk[ST(kk)] == 0 && FIRST_KEY(kk) -> k = kk; \
       if \
       :: closed -> ok = 0                          /* admit_result::closed (unlock) */ \
       :: else -> lk[ST(kk)] = me + 1; ok = 1; inflight++ \
       fi \
     }

active [P] proctype producer() {
  byte j, k, e = NONE;
  bit ok;

  do
  :: j < J ->
     if                                             /* every pattern of keys */
     ADMIT_LOCK(0)
#if K > 1
     ADMIT_LOCK(1)
#endif
#if K > 2
     ADMIT_LOCK(2)
#endif
     fi;
     if
     :: ok ->
#ifdef MUT_REMOVE_UNLOCKED
        atomic { e = kentry[k] };                   /* find() */
#endif
        atomic {
          assert(!close_done);                      /* property 5 */
#ifndef MUT_REMOVE_UNLOCKED
          e = kentry[k];                            /* find() */
#endif
#ifdef MUT_ALWAYS_CREATE
          e = NONE;
#endif
          kseq[k]++;
          if
          :: e != NONE ->                           /* append to the key's entry */
             fifo[e]!kseq[k];
#ifndef MUT_SCHEDULE_ON_APPEND
             e = NONE
#endif
          :: else ->                                /* create it with this job */
             e = 0;
             do
             :: e < NE && live[e] -> e++
             :: else -> break
             od;
             assert(e < NE);                        /* the table never runs out of entries */
             live[e] = 1; ekey[e] = k; kentry[k] = e; topush[e] = 1;
             fifo[e]!kseq[k]
          fi;
          owed++; inflight--;
          lk[ST(k)] = 0; ok = 0; k = 0;             /* unlock */
          if
          :: e == NONE -> j++
          :: else -> skip
          fi
        };
        if
        :: e != NONE ->                             /* schedule(e): push to the run queue */
           atomic {
             assert(inq[e] == 0 && held[e] == 0);   /* property 4 */
             inq[e]++; rq_len++; topush[e] = 0; e = NONE; j++
           }
        :: else -> skip
        fi
     :: else -> k = 0; j = J                        /* refused, and so is every later one (the
                                                       flag stays): one step for them all */
     fi
  :: j == J -> break
  od;
  pdone++
}

/* ---- the shutdown (drain) -------------------------------------------------------------------- */

active proctype shutdown() {
  byte s;

#ifdef MUT_PHASE_BEFORE_CLOSE
  phase = DRAINING;
#endif
  /* table_.close(): the flag (relaxed), then every stripe's lock once */
  closed = 1;
#ifndef MUT_CLOSE_NO_BARRIER
  do
  :: atomic {
       s < STRIPES && lk[s] == 0 -> s++;            /* lock and unlock stripe s */
       if
       :: s == STRIPES -> s = 0; close_done = 1; break
       :: else -> skip
       fi
     }
  od;
#else
  close_done = 1;
#endif
#ifndef MUT_PHASE_BEFORE_CLOSE
  phase = DRAINING;                                 /* the phase CAS */
#endif
#ifndef MUT_NO_SHUTDOWN_WAKE
  do                                                /* sched_.wake_all(): every word */
  :: atomic {
       bumped[s] = 1; s++;
       if
       :: s == W -> s = 0; break
       :: else -> skip
       fi
     }
  od;
#endif
  /* wait_all_exited(), then finish(): report.drained */
  exited == W;
  assert(owed == 0 && inflight == 0);
  /* every producer done: every job's fate (property 3) */
  pdone == P;
  assert(rq_len == 0 && owed == 0);
  do
  :: s < K -> assert(kran[s] == kseq[s] && kentry[s] == NONE); s++
  :: else -> s = 0; break
  od;
  do
  :: s < NE -> assert(!live[s] && len(fifo[s]) == 0); s++
  :: else -> break
  od
}

/* ---- the monitor: K1 and the run queue, in every state --------------------------------------- */
#define PLACES(e) (inq[e] + (held[e] != 0) + topush[e])
#define ENTRY_BAD(e) \
  (inq[e] > 1 || \
   (live[e] && (PLACES(e) != 1 || (len(fifo[e]) == 0 && held[e] == 0))) || \
   (!live[e] && (PLACES(e) != 0 || len(fifo[e]) != 0)))
#if NE == 2
#define ANY_ENTRY_BAD (ENTRY_BAD(0) || ENTRY_BAD(1))
#elif NE == 3
#define ANY_ENTRY_BAD (ENTRY_BAD(0) || ENTRY_BAD(1) || ENTRY_BAD(2))
#else
#define ANY_ENTRY_BAD (ENTRY_BAD(0) || ENTRY_BAD(1) || ENTRY_BAD(2) || ENTRY_BAD(3))
#endif
/* a key with two entries in the table */
#define TWO(a, b) (live[a] && live[b] && ekey[a] == ekey[b])
#if NE == 2
#define DUPLICATE TWO(0, 1)
#elif NE == 3
#define DUPLICATE (TWO(0, 1) || TWO(0, 2) || TWO(1, 2))
#else
#define DUPLICATE (TWO(0, 1) || TWO(0, 2) || TWO(0, 3) || TWO(1, 2) || TWO(1, 3) || TWO(2, 3))
#endif

#ifndef NO_MONITOR
active proctype monitor() {
  byte e;
end:
  do
  :: atomic {
       ANY_ENTRY_BAD || DUPLICATE ->
       do
       :: e < NE ->
          assert(inq[e] <= 1);                            /* never twice on the run queue */
          assert(!live[e] || PLACES(e) == 1);             /* K1: queued, held or being pushed */
          assert(!live[e] || len(fifo[e]) != 0 || held[e] != 0);  /* K1: no idle entry */
          assert(live[e] || (PLACES(e) == 0 && len(fifo[e]) == 0));  /* a free entry: nowhere */
          e++
       :: else -> break
       od;
       assert(!DUPLICATE)                                 /* K2: one entry per key */
     }
  od
}
#endif
