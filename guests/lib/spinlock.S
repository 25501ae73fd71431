/*
 * spinlock.S - a test-and-test-and-set spinlock on exclusive accesses.
 *
 * spin_lock: wait until the lock word reads 0 with plain loads (these do not disturb the
 * holder), then LDAXR it; if still 0, try to store 1 with STXR.  The store-exclusive fails
 * (status 1) if another CPU wrote the word after our LDAXR marked it in the exclusive
 * monitor (Arm ARM, "Synchronization and semaphores"), and we start over.
 * LDAXR's acquire keeps the critical section's accesses after the lock is taken, and
 * STLR in spin_unlock keeps them before it is released (Arm ARM, "Load-Acquire, Store-Release"); the store that
 * takes the lock needs no release of its own (the spin-lock example in the Arm ARM's "Barrier Litmus Tests" appendix).
 *
 * No WFE/SEV: the wait is a pure spin, so it needs no event-register support and behaves
 * the same on a scheduler that runs one vCPU at a time.
 */
#include "guest.h"

    .text
    .globl spin_lock
    .type spin_lock, %function
spin_lock:                          /* x0 = &lock->locked (32-bit word) */
    mov w2, #1
1:  ldr w1, [x0]                    /* test: wait until it looks free */
    cbnz w1, 1b
    ldaxr w1, [x0]                  /* test again, exclusively, with acquire */
    cbnz w1, 1b
    stxr w3, w2, [x0]               /* and set; w3 = 0 on success */
    cbnz w3, 1b
    ret
    .size spin_lock, . - spin_lock

    .globl spin_unlock
    .type spin_unlock, %function
spin_unlock:
    stlr wzr, [x0]                  /* release: all earlier accesses are visible first */
    ret
    .size spin_unlock, . - spin_unlock
