/* group.pml: exhaustive check of crew::task_group's counting protocol (include/crew/task.hpp,
 * the comment "Counting protocol" above class task_group).
 *
 * The word pending_ = 2 x outstanding tasks + a "someone sleeps" bit; every access to it is an
 * RMW or a load of that one word, and the futex compares the same word in the kernel, so the
 * protocol's correctness depends on the word's modification order alone: Promela's interleaving
 * of whole statements (sequential consistency) is exact for it. (The release/acquire pairs that
 * publish the tasks' effects to wait() are not about the count and are not modelled.)
 *
 * Processes:
 *   init (the producer): run() for TASKS tasks (each adds 2, then "submits": starts a task
 *      process), then starts WAITERS waiters (wait() called after those runs returned).
 *   task[i]: a running task; when NESTED, task 0 runs one more task of the group from inside
 *      (adds 2 before it finishes); then finishes: fetch_sub(2), and wakes the futex when the
 *      value before was 3 (count 1 -> 0 with the bit set).
 *   waiter (WAITERS of them, started after the producer's runs): wait()'s loop: load; while the
 *      count is not 0: set the bit with a CAS from the value seen (a failed CAS re-reads), then
 *      futex-wait on the value with the bit (sleeps only while the word holds it; a wake-up of
 *      the word ends the sleep; SPURIOUS spurious returns are allowed), re-load. On return it
 *      asserts that every task has finished (no early return), then clears the bit with a CAS
 *      from 1 to 0.
 * Properties: the assertion (no early return) and no invalid end state (no waiter asleep for
 * ever when everything else has finished: no lost wake-up).
 *
 * Configurations (run.sh):
 * @config         t2-w1          -DTASKS=2 -DWAITERS=1 -DSPURIOUS=1
 * @config         t2-w2-nested   -DTASKS=2 -DWAITERS=2 -DNESTED -DSPURIOUS=1
 * @config         t3-w2          -DTASKS=3 -DWAITERS=2
 * @mutant         no-bit         -DMUT_NO_BIT -DTASKS=2 -DWAITERS=1
 * @mutant         wake-on-zero   -DMUT_WAKE_ON_ZERO -DTASKS=2 -DWAITERS=1
 * @mutant         child-late     -DMUT_CHILD_LATE -DTASKS=1 -DWAITERS=1 -DNESTED
 */

#ifndef SPURIOUS
#define SPURIOUS 0
#endif

#ifdef NESTED
#define ALL (TASKS + 1)
#else
#define ALL TASKS
#endif

int word = 0;          /* pending_ */
byte finished = 0;     /* tasks that subtracted their 2 */
byte sleepers = 0;     /* waiters inside the futex */
byte woken = 0;        /* futex wake generation */
byte spurious = 0;

inline finish() {
  int before;
  atomic {
    before = word;
    word = word - 2;
    finished++;
  }
#ifdef MUT_WAKE_ON_ZERO
  if
  :: before == 2 -> woken++   /* the mutant forgets the bit: never wakes a sleeper */
  :: else -> skip
  fi
#else
  if
  :: before == 3 -> woken++
  :: else -> skip
  fi
#endif
}

proctype task(byte id) {
#ifdef NESTED
  if
  :: id == 0 ->
#ifdef MUT_CHILD_LATE
     /* the mutant counts the child after the parent counted itself out */
     finish();
     word = word + 2;
     run task(TASKS);
     goto done;
#else
     word = word + 2;
     run task(TASKS);
#endif
  :: else -> skip
  fi
#endif
  finish();
done:
  skip
}

proctype waiter() {
  int v;
  byte gen;
  v = word;
  do
  :: (v / 2) == 0 -> break
  :: else ->
#ifdef MUT_NO_BIT
     skip;
#else
     if
     :: (v % 2) == 0 ->
        atomic {
          if
          :: word == v -> word = v + 1; v = v + 1
          :: else -> v = word; goto again
          fi
        }
     :: else -> skip
     fi;
#endif
     /* futex wait: sleep only while the word holds v; a wake (or a spurious return) ends it */
     atomic {
       if
       :: word == v -> gen = woken; sleepers++
       :: else -> goto reload
       fi
     }
     if
     :: woken != gen -> skip
     :: spurious < SPURIOUS -> spurious++
     fi;
     sleepers--;
reload:
     v = word;
again:
     skip
  od;
  assert(finished == ALL);
  atomic {
    if
    :: word == 1 -> word = 0
    :: else -> skip
    fi
  }
}

init {
  byte i = 0;
  atomic {
    do
    :: i < TASKS -> word = word + 2; run task(i); i++
    :: else -> break
    od;
    i = 0;
    do
    :: i < WAITERS -> run waiter(); i++
    :: else -> break
    od
  }
}
