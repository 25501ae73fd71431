/*
 * rtc.c - the PL031 real-time clock of the virt board (0x09010000, SPI 2), through the GICv3.
 *
 * The PL031 (Arm DDI 0224) counts seconds in RTCDR and raises its interrupt when the count
 * equals RTCMR and RTCIMSC unmasks it; RTCLR sets the count, RTCICR clears the raw status.
 * The time of day differs between runs on QEMU (the host's clock) and is fixed on the lab,
 * so only comparisons are printed, never a time: the count is plausible (after 2020), it
 * follows a load, a match equal to the count fires at once, a match one second ahead fires
 * once the second has passed (the CPU sleeps in WFI meanwhile), and a match behind the count
 * does not fire.  A second boundary may fall between reading the count and writing a register
 * that depends on it, so each such step is retried until the count did not move.
 */
#include "guest.h"

#define RTC_BASE    0x09010000      /* PL031, as QEMU virt maps it */
#define RTC_INTID   34              /* SPI 2 */

#define RTCDR       0x00
#define RTCMR       0x04
#define RTCLR       0x08
#define RTCCR       0x0c
#define RTCIMSC     0x10
#define RTCRIS      0x14
#define RTCMIS      0x18
#define RTCICR      0x1c
#define Y2020       1577836800u     /* 2020-01-01T00:00:00Z in seconds since 1970 */
#define LOADED      0x20000000u

static volatile uint32_t *const rtc = (volatile uint32_t *)RTC_BASE;

static uint32_t reg(unsigned offset) { return rtc[offset / 4]; }
static void set(unsigned offset, uint32_t value) { rtc[offset / 4] = value; }

static void yes_no(const char *what, int ok)
{
    puts(what);
    puts(ok ? ": yes\n" : ": no\n");
}

/* Writes ``offset`` = count + ``ahead``, retried until no second boundary fell in between;
 * returns the value written. */
static uint32_t set_relative(unsigned offset, uint32_t ahead)
{
    uint32_t before, after;
    do {
        before = reg(RTCDR);
        set(offset, before + ahead);
        after = reg(RTCDR);
    } while (after != before);
    return before + ahead;
}

int main(void)
{
    puts("rtc: PL031 at 0x09010000, SPI 2\n");
    puts("peripheral id ");
    for (unsigned off = 0xfe0; off < 0x1000; off += 4) {
        put_hex(reg(off));
        putc(off == 0xffc ? '\n' : ' ');
    }
    puts("RTCCR ");
    put_hex(reg(RTCCR));
    putc('\n');
    yes_no("the count is after 2020", reg(RTCDR) >= Y2020);

    set(RTCLR, LOADED);
    uint32_t now = reg(RTCDR);
    yes_no("after loading 0x20000000 the count is 0x20000000 or one more", now - LOADED <= 1);
    yes_no("RTCLR reads back the value loaded", reg(RTCLR) == LOADED);

    set(RTCIMSC, 0xffffffff);
    puts("RTCIMSC after writing all ones ");
    put_hex(reg(RTCIMSC));
    putc('\n');
    set(RTCIMSC, 0);

    set_relative(RTCMR, 0);
    puts("match = count: RIS ");
    put_hex(reg(RTCRIS));
    puts(", MIS (masked) ");
    put_hex(reg(RTCMIS));
    set(RTCICR, 1);
    puts(", RIS after RTCICR ");
    put_hex(reg(RTCRIS));
    putc('\n');

    set_relative(RTCMR, (uint32_t)-5);
    yes_no("a match five seconds behind the count leaves RIS clear", reg(RTCRIS) == 0);

    gic_dist_init();
    gic_redist_init();
    gic_cpu_init();
    gic_enable_spi(RTC_INTID, 0x80, read_sysreg(mpidr_el1));
    set(RTCIMSC, 1);
    uint32_t match = set_relative(RTCMR, 1);
    yes_no("right after arming a match one second ahead, RIS is clear", reg(RTCRIS) == 0);
    uint32_t intid = GIC_SPURIOUS_INTID;
    while (intid == GIC_SPURIOUS_INTID) {   /* IRQs stay masked: WFI wakes on a pending one */
        wfi();
        intid = gic_iar();
    }
    puts("the alarm: INTID ");
    put_dec(intid);
    puts(", RIS ");
    put_hex(reg(RTCRIS));
    puts(", MIS ");
    put_hex(reg(RTCMIS));
    set(RTCICR, 1);
    puts(", after RTCICR RIS ");
    put_hex(reg(RTCRIS));
    putc('\n');
    yes_no("the count at the alarm is the match", reg(RTCDR) == match);
    gic_eoir(intid);
    set(RTCIMSC, 0);
    gic_disable(RTC_INTID);
    puts("rtc: done\n");
    psci_system_off();
    return 0;
}
