/*
 * linux_client.h - the layout shared by linux_client.c and entry.S: Linux's struct pt_regs and
 * struct sdei_registered_event (include/linux/arm_sdei.h), and the per-CPU SDEI stacks.
 *
 * Linux gets these offsets from asm-offsets.c (SDEI_EVENT_INTREGS, SDEI_EVENT_PRIORITY, S_LR,
 * S_PC); here they are written out, and linux_client.c checks them with _Static_assert.
 */
#ifndef LINUX_CLIENT_H
#define LINUX_CLIENT_H

/* struct pt_regs: x0..x30, sp, pc, pstate (arch/arm64/include/asm/ptrace.h, the part used here) */
#define S_X(n)                      ((n) * 8)
#define S_LR                        (30 * 8)
#define S_SP                        (31 * 8)
#define S_PC                        (32 * 8)
#define S_PSTATE                    (33 * 8)
#define PT_REGS_SIZE                (34 * 8)

/* struct sdei_registered_event: the interrupted registers first, then the callback */
#define SDEI_EVENT_INTREGS          0
#define SDEI_EVENT_CALLBACK         (PT_REGS_SIZE + 0)
#define SDEI_EVENT_CALLBACK_ARG     (PT_REGS_SIZE + 8)
#define SDEI_EVENT_NUM              (PT_REGS_SIZE + 16)
#define SDEI_EVENT_PRIORITY         (PT_REGS_SIZE + 20)     /* u8: 0 normal, 1 critical */
#define SDEI_REGISTERED_EVENT_SIZE  (PT_REGS_SIZE + 24)

/* Linux: SDEI_STACK_SIZE = IRQ_STACK_SIZE, one normal and one critical stack per CPU */
#define SDEI_STACK_SIZE             0x1000

#endif /* LINUX_CLIENT_H */
