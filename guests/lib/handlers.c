/*
 * handlers.c - default exception handlers, called from vectors.S.
 *
 * All are weak: a guest overrides one by defining a function of the same name.
 * An unexpected exception prints a report and powers the machine off, so a broken
 * guest ends (with its report on the UART) instead of looping in the vectors.
 */
#include "guest.h"

__attribute__((weak)) void handle_sync(uint64_t esr, uint64_t elr, uint64_t far)
{
    puts("FAULT esr=");
    put_hex64(esr);
    puts(" elr=");
    put_hex64(elr);
    puts(" far=");
    put_hex64(far);
    putc('\n');
    psci_system_off();
}

static void unexpected(const char *what)
{
    puts("UNHANDLED ");
    puts(what);
    putc('\n');
    psci_system_off();
}

__attribute__((weak)) void handle_irq(void) { unexpected("IRQ"); }
__attribute__((weak)) void handle_fiq(void) { unexpected("FIQ"); }
__attribute__((weak)) void handle_serror(void) { unexpected("SERROR"); }
