/*
 * uart.c - polled output on the PL011 UART0 (PrimeCell UART (PL011) TRM, 3.3).
 *
 * No initialisation: QEMU's PL011 (and the lab's) transmits without programming the
 * baud rate or UARTCR.  Each byte waits for room in the transmit FIFO (UARTFR.TXFF)
 * and is written to UARTDR.  '\n' is sent as is, without a carriage return.
 */
#include "guest.h"

void putc(char c)
{
    while (mmio_read32(UART0_BASE + UART_FR) & UART_FR_TXFF)
        ;
    mmio_write32(UART0_BASE + UART_DR, (uint8_t)c);
}

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

static void put_hex_digits(uint64_t v, int digits)
{
    puts("0x");
    for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4)
        putc("0123456789abcdef"[(v >> shift) & 0xf]);
}

void put_hex64(uint64_t v)
{
    put_hex_digits(v, 16);
}

void put_hex(uint64_t v)
{
    int digits = 1;
    while (digits < 16 && (v >> (digits * 4)) != 0)
        digits++;
    put_hex_digits(v, digits);
}

void put_udec(uint64_t v)
{
    char buf[21];
    int i = sizeof(buf) - 1;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    puts(&buf[i]);
}

void put_dec(int64_t v)
{
    if (v < 0) {
        putc('-');
        put_udec(-(uint64_t)v);
    } else {
        put_udec((uint64_t)v);
    }
}
