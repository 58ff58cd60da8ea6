/* elastic.pml: exhaustive check of an elastic pool's growth and expiry accounting
 * (include/crew/detail/worker_set.hpp "Growth" and "Expiry", include/crew/detail/pool_runtime.hpp
 * after_accept / grow_for / went_busy / expire, and the chain start in run_worker).
 *
 * Abstractions: the ring is a count of queued jobs (a push and a claim are single RMWs); parking
 * is perfect (an idle worker waits for "queued > 0", or times out at any moment: idle_timeout is
 * arbitrary); the wake-up handshake itself is park.pml's subject. Every job, once claimed, keeps
 * its worker busy for ever (the gate jobs of tests/fuzz/keyed_fuzz.cpp): the worst case for
 * growth, since no worker ever comes back for the next job. Slots are abstracted to the live
 * count (raise_live and the retire compare-exchange are the bound). Every statement touches one
 * shared variable: Promela's interleaving is sequential consistency, as the seq_cst operations
 * of the code.
 *
 * Processes: P producers push J jobs in all; after each push, if live < L, the producer reads
 * the waiting count and then grow_for(waiting): no start if free >= waiting, else take the
 * start flag (a start in flight at most), raise live if below L, start a worker. A worker
 * started by growth first clears the flag, then reads waiting and grows for waiting - 1 (the
 * ramp). A worker claims a job if one is queued; leaving an idle period it counts itself busy
 * and, if live < L, grows for the jobs still waiting (the fix for the fuzzer's find). Finding
 * nothing it counts itself free, then either wakes for work or times out: it stops counting as
 * free, retires (live-- unless at the floor F), re-checks the queue, and resumes (raise live) if
 * it sees a job, or else exits.
 *
 * Properties: live <= L always; at quiescence (nothing can move) no job is queued (J <= L, so
 * every job must have found a worker): no job waits while the pool could grow.
 *
 * Configurations (run.sh):
 * @config         l2-f0-j2-p1     -DL=2 -DF=0 -DJ=2 -DP=1
 * @config         l2-f1-j2-p2     -DL=2 -DF=1 -DJ=2 -DP=2
 * @config         l3-f0-j3-p1     -DL=3 -DF=0 -DJ=3 -DP=1
 * @config         l3-f1-j3-p1     -DL=3 -DF=1 -DJ=3 -DP=1
 * @slow           l3-f1-j3-p2     -DL=3 -DF=1 -DJ=3 -DP=2
 * @mutant         no-busy-check   -DMUT_NO_BUSY_CHECK -DL=3 -DF=1 -DJ=3 -DP=2
 * @mutant         no-chain        -DMUT_NO_CHAIN -DL=3 -DF=0 -DJ=3 -DP=1
 * @mutant         no-recheck      -DMUT_NO_RECHECK -DL=3 -DF=1 -DJ=3 -DP=2
 * @mutant         no-retry        -DMUT_NO_RETRY -DL=3 -DF=1 -DJ=3 -DP=2
 */

byte queued = 0;
byte live = F;
byte free = 0;
bool flag = 0;
byte producers_done = 0;


/* grow_for(w): w is the waiting count the caller read. A caller that took the start flag and
 * gave it back (live was at L) looks again: a start skipped meanwhile because of the flag would
 * be lost otherwise (without the retry, config l3-f1-j3-p2 fails: mutant no-retry). */
inline grow_for(w, ok) {
  do
  :: free >= w -> break
  :: else ->
     atomic { if :: flag == 0 -> flag = 1; ok = 1 :: else -> ok = 0 fi }
     if
     :: !ok -> break           /* a start in flight: its new worker re-checks */
     :: else -> skip
     fi;
     atomic { if :: live < L -> live++; ok = 1 :: else -> ok = 0 fi }
     assert(live <= L);
     if
     :: ok -> run worker(1); break
     :: else ->
        flag = 0;
#ifdef MUT_NO_RETRY
        break
#else
        if
        :: live >= L -> break
        :: else -> w = queued
        fi
#endif
     fi
  od
}

proctype worker(bool grown) {
  byte w;
  bool ok;
  bool idle = 0;
  if
  :: grown ->
     flag = 0;
#ifndef MUT_NO_CHAIN
     w = queued;
     if
     :: w > 1 -> w = w - 1; grow_for(w, ok)
     :: else -> skip
     fi
#endif
  :: else -> skip
  fi;
look:
  atomic { if :: queued > 0 -> queued--; ok = 1 :: else -> ok = 0 fi }
  if
  :: ok ->
     if
     :: idle ->
        idle = 0;
        free--;
#ifndef MUT_NO_BUSY_CHECK
        if
        :: live < L -> w = queued; grow_for(w, ok)
        :: else -> skip
        fi
#endif
     :: else -> skip
     fi;
     goto busy_for_ever
  :: else -> skip
  fi;
  if
  :: !idle -> idle = 1; free++
  :: else -> skip
  fi;
  if
  :: queued > 0 -> goto look   /* woken */
  :: true ->                   /* timed out: expire */
     free--;
     atomic { if :: live > F -> live--; ok = 1 :: else -> ok = 0 fi }
     if
     :: !ok ->                 /* at the floor: stays, waits without a timeout */
        free++;
        (queued > 0);
        goto look
     :: else -> skip
     fi;
#ifndef MUT_NO_RECHECK
     if
     :: queued > 0 ->
        atomic { if :: live < L -> live++; ok = 1 :: else -> ok = 0 fi }
        assert(live <= L);
        if
        :: ok -> free++; goto look
        :: else -> skip          /* someone grew: its worker takes the job */
        fi
     :: else -> skip
     fi;
#endif
     idle = 0;
     goto gone
  fi;
busy_for_ever:
  skip;
gone:
  skip
}

proctype producer(byte n) {
  byte k = 0;
  byte w;
  bool ok;
  do
  :: k < n ->
     queued++;
     if
     :: live < L -> w = queued; grow_for(w, ok)
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
  timeout -> assert(producers_done == P && queued == 0)
}
