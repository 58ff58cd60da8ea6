/* elastic.pml: exhaustive check of an elastic pool's growth and expiry accounting
 * (include/crew/detail/worker_set.hpp "Growth" and "Expiry", include/crew/detail/pool_runtime.hpp
 * after_accept / after_stash / grow_for / went_busy / expire, the chain start in run_worker,
 * and the claim and steal paths of include/crew/detail/scheduler.hpp).
 *
 * Abstractions: the ring is a count of queued jobs (a push is a single RMW); the workers' stashes
 * are one count of stashed jobs (stealable, and seen by the waiting count and the retiree's
 * re-check). A claim takes one queued job, or two: the first runs and the second goes to the
 * claimer's stash, and between the claim and the fill's publish that job is in neither place
 * (the window scheduler.hpp's claim and steal paths have; a steal in the model takes one job,
 * which it runs, so it has no window of its own). Parking is perfect (an idle worker waits for
 * work, or times out at any moment: idle_timeout is arbitrary); the wake-up handshake itself is
 * park.pml's subject. Every job, once claimed, keeps its worker busy for ever (the gate jobs of
 * tests/fuzz/keyed_fuzz.cpp): the worst case for growth, since no worker ever comes back for the
 * next job. Slots are abstracted to the live count (raise_live and the retire compare-exchange
 * are the bound). Every statement touches one shared variable, or is a local step folded into
 * one that does: Promela's interleaving is sequential consistency, as the seq_cst operations of
 * the code (the filler's publish, then its seq_cst fence, then its loads).
 *
 * Processes: P producers push J jobs in all; after each push, if live < L, the producer reads
 * the waiting count (queued + stashed) and then grow_for(waiting): no start if free >= waiting,
 * else take the start flag (a start in flight at most), raise live if below L, start a worker. A
 * worker started by growth first clears the flag, then reads waiting and grows for waiting - 1
 * (the ramp). A worker claims (one or two) or steals; after a claim that stashed a job it does
 * the producer's check itself (after_stash: the fix for the second fuzzer find); leaving an idle
 * period it counts itself busy and, if live < L, grows for the jobs still waiting (went_busy: the
 * fix for the first). Finding nothing it counts itself free, then either wakes for work or times
 * out: it stops counting as free, retires (live-- unless at the floor F), re-checks for work, and
 * resumes (raise live) if it sees some, or else exits.
 *
 * Properties: live <= L always; at quiescence (nothing can move) no job is queued or stashed
 * (J <= L, so every job must have found a worker): no job waits while the pool could grow.
 *
 * Configurations (run.sh). NO_BATCH: claims of one job only (no stash), the cheap model of
 * growth and expiry alone; batch claims multiply the states (l3-f1-j3-p1: 0.4 M states without,
 * over 169 M with: stopped at 10 GB), so the L = 3 batch configurations are the slow ones.
 * @config         l2-f0-j2-p1     -DL=2 -DF=0 -DJ=2 -DP=1
 * @config         l2-f1-j2-p1     -DL=2 -DF=1 -DJ=2 -DP=1
 * @config         l2-f1-j2-p2     -DL=2 -DF=1 -DJ=2 -DP=2
 * @config         l3-f0-j3-p1-nb  -DNO_BATCH -DL=3 -DF=0 -DJ=3 -DP=1
 * @config         l3-f1-j3-p1-nb  -DNO_BATCH -DL=3 -DF=1 -DJ=3 -DP=1
 * @config         l3-f1-j3-p2-nb  -DNO_BATCH -DL=3 -DF=1 -DJ=3 -DP=2
 * @slow           l3-f0-j3-p1     -DL=3 -DF=0 -DJ=3 -DP=1
 * @mutant         no-busy-check   -DMUT_NO_BUSY_CHECK -DNO_BATCH -DL=3 -DF=1 -DJ=3 -DP=2
 * @mutant         no-chain        -DMUT_NO_CHAIN -DNO_BATCH -DL=3 -DF=0 -DJ=3 -DP=1
 * @mutant         no-recheck      -DMUT_NO_RECHECK -DNO_BATCH -DL=3 -DF=1 -DJ=3 -DP=2
 * @mutant         no-retry        -DMUT_NO_RETRY -DNO_BATCH -DL=3 -DF=1 -DJ=3 -DP=2
 * @mutant         no-stash-check  -DMUT_NO_STASH_CHECK -DL=2 -DF=0 -DJ=2 -DP=1
 */

byte queued = 0;    /* jobs in the ring */
byte stashed = 0;   /* jobs in workers' stashes: stealable, and seen by waiting() and has_work() */
byte live = F;
byte free = 0;
bool flag = 0;
byte producers_done = 0;

/* grow_for(w): w is the waiting count the caller read (a local, reset to 0 when done: fewer
 * states). A caller that took the start flag and gave it back (live was at L) looks again: a
 * start skipped meanwhile because of the flag would be lost otherwise (without the retry,
 * config l3-f1-j3-p2 fails: mutant no-retry). */
inline grow_for(w) {
  do
  :: atomic { free >= w -> w = 0 }; break
  :: else ->
     atomic {
       if
       :: flag -> w = 0; break   /* a start in flight: its new worker re-checks */
       :: else -> flag = 1
       fi
     }
     atomic {
       if
       :: live < L -> live++; run worker(1); w = 0; break
       :: else -> skip
       fi
     }
     assert(live <= L);
     flag = 0;
#ifdef MUT_NO_RETRY
     w = 0; break
#else
     atomic {
       if
       :: live >= L -> w = 0; break
       :: else -> w = queued + stashed
       fi
     }
#endif
  od
}

proctype worker(bool grown) {
  byte w = 0;
  bool idle = 0;
  if
  :: grown ->
     flag = 0;
#ifndef MUT_NO_CHAIN
     atomic { w = queued + stashed; if :: w > 1 -> w = w - 1 :: else -> w = 0 fi }
     if
     :: w > 0 -> grow_for(w)
     :: else -> skip
     fi
#endif
  :: else -> skip
  fi;
look:
  /* run_next(): a ring claim of one job, or of two (the first runs, the second goes to this
   * worker's stash), or a steal of one stashed job. Between the claim and the stash's publish
   * the second job is in neither place: a retiring worker's re-check cannot see it. */
  atomic {
    if
#ifndef NO_BATCH
    :: queued >= 2 -> queued = queued - 2; goto fill
#endif
    :: queued >= 1 -> queued--; goto took
    :: stashed > 0 -> stashed--; goto took
    :: else -> skip
    fi
  }
  /* nothing found */
  atomic { if :: !idle -> idle = 1; free++ :: else -> skip fi }
  if
  :: queued > 0 || stashed > 0 -> goto look   /* woken */
  :: true -> atomic { free--; idle = 0 }      /* timed out: expire */
  fi;
  atomic {
    if
    :: live > F -> live--
    :: else -> goto floor
    fi
  }
#ifndef MUT_NO_RECHECK
  if
  :: queued > 0 || stashed > 0 ->
     atomic {
       if
       :: live < L -> live++; goto resumed
       :: else -> skip          /* someone grew: its worker takes the job */
       fi
     }
  :: else -> skip
  fi;
#endif
  goto gone;
floor:                          /* at the floor: stays, waits without a timeout */
  atomic { free++; idle = 1 }
  (queued > 0 || stashed > 0);
  goto look;
resumed:
  assert(live <= L);
  atomic { free++; idle = 1 }
  goto look;
fill:
  stashed++;                    /* the fill's publish (then the fence) */
#ifndef MUT_NO_STASH_CHECK
  /* after_stash: the filler's half of the expiry handshake */
  atomic { if :: live < L -> w = queued + stashed :: else -> w = 0 fi }
  if
  :: w > 0 -> grow_for(w)
  :: else -> skip
  fi;
#endif
took:
  if
  :: idle ->
     atomic { idle = 0; free-- }
#ifndef MUT_NO_BUSY_CHECK
     atomic { if :: live < L -> w = queued + stashed :: else -> w = 0 fi }
     if
     :: w > 0 -> grow_for(w)
     :: else -> skip
     fi
#endif
  :: else -> skip
  fi;
  /* busy for ever */
gone:
  skip
}

proctype producer(byte n) {
  byte k = 0;
  byte w = 0;
  do
  :: k < n ->
     queued++;
     atomic { if :: live < L -> w = queued + stashed :: else -> w = 0 fi }
     if
     :: w > 0 -> grow_for(w)
     :: else -> skip
     fi;
     k++
  :: else -> break
  od;
  producers_done++
}

init {
  byte i;
  atomic {
    i = 0;
    do
    :: i < F -> run worker(0); i++
    :: else -> break
    od;
    i = 0;
    do
    :: i < P -> run producer(J / P + (i < J % P -> 1 : 0)); i++
    :: else -> break
    od
  }
  timeout -> assert(producers_done == P && queued == 0 && stashed == 0)
}
