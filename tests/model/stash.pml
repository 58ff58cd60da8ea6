/* stash.pml: exhaustive check of crew::detail::stash (include/crew/detail/stash.hpp).
 *
 * Processes:
 *   owner      stash 0's owner: fills (only through fill_room(), any count from 1 to the room,
 *              job ids 1..JOBS in order) and pops, in any order, then pops until empty;
 *   thief[t]   THIEVES thieves, each owning stash t (1..THIEVES): steal half (rounded up, at
 *              most a limit: any value from 1 to its own fill_room(), as steal_for passes) of
 *              stash 0 into its own stash with its own fill, publish, then pop its own stash
 *              empty; any number of rounds;
 *   collector  (COLLECTOR=1) shutdown's collect(): for each stash in turn, "take all" steals
 *              until one returns 0 without a steal in progress (retrying while busy);
 *   check      waits until every other process has ended, then checks every job was taken.
 *
 * Properties (assertions; spin -a, pan compiled with -DSAFETY, so invalid end states count too):
 *   P1 every job filled is taken exactly once: taken[j] is asserted to be 1 at every take (no
 *      duplicate) and for every j at the end (no loss);
 *   P2 the owner never writes a slot a thief has claimed and not yet moved out
 *      (slot_readers[] == 0 at the owner's write), nor a slot holding a job not yet taken;
 *      every take reads a slot that holds a job;
 *   P3 steal <= real <= tail and tail - steal <= N (mod 256), after every step that changes a
 *      head or a tail;
 *   P4 a steal that sees a job available (and no steal in progress) claims at least one:
 *      n = available - available / 2 (capped at the limit, >= 1) is asserted >= 1;
 *   and the search also rejects deadlocks (a process stuck outside an end state).
 * Indices start at 254, so every run wraps the mod-256 indices.
 *
 *   P5 a successful claim's tail read is still current at its CAS (so a claim is one atomic
 *      step, which park.pml's coarse steal relies on: see stash_ops.inc).
 *
 * Configurations (run.sh: @config lines by default, @mutant lines with --mutants, each of which
 * must FAIL; flags go to spin -a). N=4 needs JOBS >= N + 1 for the owner to come back round to
 * a slot a thief still reads.
 * @config  two-thieves        -DN=2 -DJOBS=4 -DTHIEVES=2 -DCOLLECTOR=0
 * @config  thief-collector    -DN=2 -DJOBS=4 -DTHIEVES=1 -DCOLLECTOR=1
 * @config  n4                 -DN=4 -DJOBS=5 -DTHIEVES=1 -DCOLLECTOR=1
 * @mutant  fill-ignores-steal -DMUT_FILL_IGNORES_STEAL -DN=2 -DJOBS=4 -DTHIEVES=1 -DCOLLECTOR=1
 * @mutant  fill-no-room       -DMUT_FILL_NO_ROOM -DN=2 -DJOBS=4 -DTHIEVES=1 -DCOLLECTOR=1
 * @mutant  fill-any-time      -DMUT_FILL_ANY_TIME -DN=2 -DJOBS=4 -DTHIEVES=1 -DCOLLECTOR=1
 * @mutant  steal-drops-steal  -DMUT_STEAL_DROPS_STEAL -DN=2 -DJOBS=4 -DTHIEVES=1 -DCOLLECTOR=1
 * @mutant  steal-rounds-down  -DMUT_STEAL_ROUNDS_DOWN -DN=2 -DJOBS=4 -DTHIEVES=1 -DCOLLECTOR=1
 * @mutant  steal-no-busy      -DMUT_STEAL_NO_BUSY -DN=2 -DJOBS=4 -DTHIEVES=1 -DCOLLECTOR=1
 * @mutant  pop-keeps-steal    -DMUT_POP_KEEPS_STEAL -DN=2 -DJOBS=4 -DTHIEVES=1 -DCOLLECTOR=1
 *
 * RESULTS_STASH_PLACEHOLDER
 */

#ifndef N
#define N 2
#endif
#ifndef JOBS
#define JOBS 4
#endif
#ifndef THIEVES
#define THIEVES 2
#endif
#ifndef COLLECTOR
#define COLLECTOR 0
#endif

#define NSTASH (1 + THIEVES)
#define START 254
#define ON_PUBLISH(b) skip
#define ON_STEAL skip

byte taken[JOBS + 1];
byte finished;  /* processes that have ended (Promela removes processes only in reverse order of
                   creation, so check cannot wait on _nr_pr) */
#define WORKERS (1 + THIEVES + COLLECTOR)
#define TAKE(j) taken[j]++; assert(taken[j] == 1)

#include "stash_ops.inc"

/* pid 0: the owner of stash 0 */
active proctype owner() {
  byte room, job, filled, k, t;
  STASH_LOCALS;

  do
  :: filled < JOBS ->
     stash_fill_room(0, room);
     if
     :: room > 0 ->
        atomic { t = st_tail[0]; k = 0 }
        do
        :: k < room && filled + k < JOBS -> atomic { PUT(0, t, k, filled + k + 1) }
        :: k > 0 -> break
        od;
        stash_publish(0, t, k, 0);
        atomic { filled = filled + k; k = 0; t = 0 }
     :: else -> skip
     fi;
     room = 0
  :: stash_pop(0, job);
     if
     :: job != 0 -> atomic { TAKE(job); job = 0 }
     :: else -> skip
     fi
  :: filled == JOBS -> break
  od;
  do
  :: stash_pop(0, job);
     if
     :: job != 0 -> atomic { TAKE(job); job = 0 }
     :: else -> break
     fi
  od;
  finished++
}

/* pids 1..THIEVES: thief `_pid` owns stash `_pid` */
active [THIEVES] proctype thief() {
  byte room, limit, job, n, dt, k;
  bit busy;
  STASH_LOCALS;

  do
  :: stash_fill_room(_pid, room);
     if
     :: room > 0 ->
        atomic { limit = room; room = 0 }
        do
        :: limit > 1 -> limit--
        :: break
        od;
        atomic { dt = st_tail[_pid]; k = 0 }
        stash_steal(0, _pid, dt, k, 0, limit, n, busy);
        stash_publish(_pid, dt, k, 0);
        atomic { limit = 0; n = 0; busy = 0; dt = 0; k = 0 }
        do
        :: stash_pop(_pid, job);
           if
           :: job != 0 -> atomic { TAKE(job); job = 0 }
           :: else -> break
           fi
        od
     :: else -> room = 0
     fi
  :: break
  od;
  finished++
}

#if COLLECTOR
active proctype collector() {
  byte s, n, dt, k;
  bit busy;
  STASH_LOCALS;

  do
  :: s < NSTASH ->
     stash_steal(s, NONE, dt, k, 1, 16, n, busy);
     if
     :: n == 0 && !busy -> s++
     :: else -> skip  /* took some, or a thief is copying out: again */
     fi;
     atomic { n = 0; busy = 0 }
  :: else -> break
  od;
  finished++
}
#endif

active proctype check() {
  byte j;
  finished == WORKERS;
  j = 1;
  do
  :: j <= JOBS -> assert(taken[j] == 1); j++
  :: else -> break
  od;
  j = 0;
  do
  :: j < NSTASH -> assert(STASH_OK(j) && st_real[j] == st_tail[j] && st_steal[j] == st_real[j]); j++
  :: else -> break
  od
}
