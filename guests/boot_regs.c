/*
 * boot_regs.c - what the boot CPU finds when an ELF is booted with -kernel: x0..x3 and the
 * device tree at the start of RAM.
 *
 * QEMU 7.2 enters an ELF at its entry point with x0..x3 = 0 (no boot protocol for an ELF: only
 * a Linux Image gets the DTB address in x0), and writes its device tree (a 1 MiB blob) at the
 * start of RAM when that much room lies below the image. boot_regs.ld links this guest at
 * RAM + 2 MiB and enters it at boot_regs_entry, which saves x0..x3 before the library's _start.
 * The guest prints the four registers, the DTB header's magic and version, and the memory
 * node's reg (base and size of RAM: 128 MiB with QEMU's default -m, as the lab's default).
 * Built as ET_DYN (toolchain.build(..., pie=True)) it prints the same.
 */
#include "guest.h"

#define FDT_MAGIC       0xd00dfeedu
#define FDT_BEGIN_NODE  1u
#define FDT_END_NODE    2u
#define FDT_PROP        3u
#define FDT_NOP         4u
#define FDT_END         9u

/* Not zero, so in .data (which _start does not clear): the entry stub writes it before _start. */
uint64_t boot_x[4] = {0x5a5a5a5a5a5a5a5aull, 0x5a5a5a5a5a5a5a5aull, 0x5a5a5a5a5a5a5a5aull, 0x5a5a5a5a5a5a5a5aull};

__asm__(
    "    .text\n"
    "    .globl boot_regs_entry\n"
    "    .type boot_regs_entry, %function\n"
    "boot_regs_entry:\n"
    "    adrp x9, boot_x\n"
    "    add x9, x9, :lo12:boot_x\n"
    "    stp x0, x1, [x9]\n"
    "    stp x2, x3, [x9, #16]\n"
    "    b _start\n"
    "    .size boot_regs_entry, . - boot_regs_entry\n");

static uint32_t be32(const volatile uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t be64(const volatile uint8_t *p)
{
    return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

static int starts_with(const volatile char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

/* The reg property of the root's memory@... node: walk the structure block (DTSpec 5.4). */
static void print_memory_node(const volatile uint8_t *fdt)
{
    uint32_t off_struct = be32(fdt + 8), off_strings = be32(fdt + 12), size_struct = be32(fdt + 36);
    const volatile uint8_t *p = fdt + off_struct, *end = p + size_struct;
    int depth = 0, in_memory = 0;

    while (p < end) {
        uint32_t token = be32(p);
        p += 4;
        if (token == FDT_BEGIN_NODE) {
            const volatile char *name = (const volatile char *)p;
            depth++;
            in_memory = depth == 2 && starts_with(name, "memory@");
            while (*p)
                p++;
            p = (const volatile uint8_t *)(((uintptr_t)p + 4) & ~(uintptr_t)3);
        } else if (token == FDT_END_NODE) {
            depth--;
            in_memory = 0;
        } else if (token == FDT_PROP) {
            uint32_t len = be32(p), nameoff = be32(p + 4);
            const volatile uint8_t *value = p + 8;
            if (in_memory && len == 16 && starts_with((const volatile char *)fdt + off_strings + nameoff, "reg\0")) {
                puts("boot_regs: memory node reg: base ");
                put_hex(be64(value));
                puts(" size ");
                put_hex(be64(value + 8));
                puts("\n");
                return;
            }
            p = value + ((len + 3) & ~3u);
        } else if (token == FDT_NOP) {
            continue;
        } else {
            break;
        }
    }
    puts("boot_regs: no memory node\n");
}

int main(void)
{
    for (int i = 0; i < 4; i++) {
        puts("boot_regs: x");
        put_udec(i);
        puts(" at entry = ");
        put_hex64(boot_x[i]);
        puts("\n");
    }
    const volatile uint8_t *ram = (const volatile uint8_t *)RAM_BASE;
    uint32_t magic = be32(ram);
    puts("boot_regs: word at RAM start (big-endian) = ");
    put_hex(magic);
    puts(magic == FDT_MAGIC ? " (a device tree)\n" : " (no device tree)\n");
    if (magic == FDT_MAGIC) {
        puts("boot_regs: DTB version ");
        put_udec(be32(ram + 20));
        puts(", last compatible ");
        put_udec(be32(ram + 24));
        puts("\n");
        print_memory_node(ram);
    }
    if (boot_x[0] != 0 && boot_x[0] != RAM_BASE) {
        puts("boot_regs: x0 points elsewhere; word there = ");
        put_hex(be32((const volatile uint8_t *)boot_x[0]));
        puts("\n");
    }
    return 0;
}
