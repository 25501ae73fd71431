// SPDX-License-Identifier: GPL-2.0
/*
 * sdei_watchdog: the NMI-watchdog story told with the real client, Linux's SDEI driver.
 *
 * A hypervisor that sees a vCPU stuck with interrupts masked cannot reach it with an IRQ; it can
 * with an SDEI event, which the dispatcher delivers whatever PSTATE.I says (TF-A's dispatch
 * conditions, shared/reference/sdei-psci-smccc.md 2.4: an event waits only for PE_MASK, for a
 * disabled event, or for a running handler it may not pre-empt).
 * This module registers and enables a hypervisor-originated event through Linux's SDEI driver
 * (drivers/firmware/arm_sdei.c: the cross-calls that REGISTER and ENABLE the private event on every
 * CPU, arch/arm64/kernel/entry.S __sdei_asm_handler, the per-CPU SDEI stacks), counts the handler's
 * calls and records the context it interrupted. Writing a CPU number to the `spin` parameter makes
 * that CPU spin with IRQs masked in sdei_wd_spin() until the lab's event arrives: the lab raises it
 * from outside (sdeilab Sdei.raise_event), as a hypervisor's watchdog would.
 *
 * Interface (module parameters under /sys/module/sdei_watchdog/parameters/):
 *   event        (load time) the event number, 5000 by default: the lab's normal-priority
 *                hypervisor event (sdeilab/firmware/sdei/service.py, SdeiPlatform.hypervisor_events)
 *   hits         (read) handler calls since load
 *   masked_hits  (read) of those, calls that interrupted a context with PSTATE.I set
 *   last         (read) "cpu PC PSTATE symbol" of the last interrupted context
 *   spin_events  (read/write) how many events a spin waits for (1)
 *   spin_loops   (read/write) the loop bound, so that a spin without events ends (20000000)
 *   spin         (write) a CPU number: spin there with IRQs masked; (read) what the last spin caught
 * and printk lines prefixed "sdei_watchdog:" that the lab's test reads from the UART.
 *
 * Debian's 6.1 kernel does not export sdei_event_register() and friends (upstream arm_sdei.c has no
 * EXPORT_SYMBOL for them: their only users, GHES and the arm64 code, are built in), and
 * kallsyms_lookup_name() has been unexported since 5.7. So the module resolves the four SDEI
 * functions through kallsyms_lookup_name(), whose address it learns from a kprobe that it registers
 * disabled (KPROBE_FLAG_DISABLED: register_kprobe() resolves the symbol but arms nothing, so no
 * kernel text is patched) and removes at once.
 */
#include <linux/arm_sdei.h>
#include <linux/atomic.h>
#include <linux/cpumask.h>
#include <linux/irqflags.h>
#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/ptrace.h>
#include <linux/smp.h>

#define PFX "sdei_watchdog: "

static uint event = 5000;
module_param(event, uint, 0444);
MODULE_PARM_DESC(event, "the SDEI event to register: a hypervisor-originated event of the platform");

static uint spin_events = 1;
module_param(spin_events, uint, 0644);
MODULE_PARM_DESC(spin_events, "how many handler calls a spin waits for");

static ulong spin_loops = 20000000;
module_param(spin_loops, ulong, 0644);
MODULE_PARM_DESC(spin_loops, "the spin's loop bound, so that it ends if no event comes");

/* What the handler saw; `hits` is incremented last, so whoever reads it also sees the rest. */
static atomic_t hits = ATOMIC_INIT(0);
static atomic_t masked_hits = ATOMIC_INIT(0);
static unsigned long last_pc;
static u64 last_pstate;
static int last_cpu = -1;

/* The driver's API, resolved at load (see the header comment). typeof keeps the header's types. */
static typeof(&sdei_event_register) p_register;
static typeof(&sdei_event_unregister) p_unregister;
static typeof(&sdei_event_enable) p_enable;
static typeof(&sdei_event_disable) p_disable;

/*
 * The handler, called by sdei_event_handler() from __sdei_handler() in NMI context on the SDEI
 * stack (arch/arm64/kernel/sdei.c): regs is the interrupted context, regs->pc the PC the
 * dispatcher passed in x2 (handler entry, reference 2.4: x2 is the interrupted PC, x3 its PSTATE).
 * The context was kernel code with IRQs masked, so Linux ends the handler with plain COMPLETE
 * (reference 2.6), and the lab's SdeiComplete resumes at exactly that PC.
 * No printk here: the spinner reports once it sees the count move.
 */
static int sdei_wd_handler(u32 num, struct pt_regs *regs, void *arg)
{
	WRITE_ONCE(last_pc, regs->pc);
	WRITE_ONCE(last_pstate, regs->pstate);
	WRITE_ONCE(last_cpu, smp_processor_id());
	if (regs->pstate & PSR_I_BIT)
		atomic_inc(&masked_hits);
	smp_wmb(); /* the context above before the count that announces it */
	atomic_inc(&hits);
	return 0;
}

struct spin_request {
	unsigned int want;
	unsigned long loops;  /* in: the bound; out: the loops left */
	int caught;
	bool irqs_were_masked;
};

static struct spin_request last_spin = { .caught = -1 };

/*
 * The stuck CPU: a loop with IRQs masked that only an SDEI event can interrupt. Its own function,
 * never inlined, so that "%pS" of the interrupted PC names it and gives its size: the lab checks
 * that the PC it interrupted lies inside.
 */
static noinline void sdei_wd_spin(struct spin_request *req)
{
	int start = atomic_read(&hits);
	unsigned long loops = req->loops;

	req->irqs_were_masked = irqs_disabled();
	while (atomic_read(&hits) - start < (int)req->want && loops) {
		loops--;
		cpu_relax();
	}
	req->loops = loops;
	req->caught = atomic_read(&hits) - start;
}

/* Runs on the chosen CPU from smp_call_function_single(): IRQs are masked there already (an IPI
 * handler, or local_irq_save() when the chosen CPU is the caller's); masking again says so here. */
static void sdei_wd_spin_on_cpu(void *info)
{
	unsigned long flags;

	local_irq_save(flags);
	sdei_wd_spin(info);
	local_irq_restore(flags);
}

static int spin_set(const char *val, const struct kernel_param *kp)
{
	struct spin_request req = { .want = READ_ONCE(spin_events), .loops = READ_ONCE(spin_loops) };
	unsigned long bound = req.loops;
	unsigned int cpu;
	int ret;

	ret = kstrtouint(val, 0, &cpu);
	if (ret)
		return ret;
	if (cpu >= nr_cpu_ids || !cpu_online(cpu))
		return -EINVAL;
	pr_info(PFX "cpu%u spins with IRQs masked in %pS, waiting for %u event(s)\n", cpu, sdei_wd_spin, req.want);
	ret = smp_call_function_single(cpu, sdei_wd_spin_on_cpu, &req, 1);
	if (ret)
		return ret;
	smp_rmb(); /* pairs with the handler's smp_wmb() */
	last_spin = req;
	pr_info(PFX "cpu%u spun %lu loops with IRQs %s: caught %d event(s); hits %d masked_hits %d; "
		"last cpu%d pc %px (%pS) pstate 0x%llx\n",
		cpu, bound - req.loops, req.irqs_were_masked ? "masked" : "UNMASKED", req.caught,
		atomic_read(&hits), atomic_read(&masked_hits), READ_ONCE(last_cpu), (void *)READ_ONCE(last_pc),
		(void *)READ_ONCE(last_pc), READ_ONCE(last_pstate));
	return 0;
}

static int spin_get(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%d\n", last_spin.caught);
}

static const struct kernel_param_ops spin_ops = { .set = spin_set, .get = spin_get };
module_param_cb(spin, &spin_ops, NULL, 0644);
MODULE_PARM_DESC(spin, "write a CPU number to spin there with IRQs masked; read: events the last spin caught");

static int hits_get(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%d\n", atomic_read(kp->arg));
}

static const struct kernel_param_ops counter_ops = { .get = hits_get };
module_param_cb(hits, &counter_ops, &hits, 0444);
MODULE_PARM_DESC(hits, "handler calls since load");
module_param_cb(masked_hits, &counter_ops, &masked_hits, 0444);
MODULE_PARM_DESC(masked_hits, "handler calls that interrupted a context with PSTATE.I set");

static int last_get(char *buf, const struct kernel_param *kp)
{
	unsigned long pc;

	smp_rmb();
	pc = READ_ONCE(last_pc);
	return scnprintf(buf, PAGE_SIZE, "cpu%d 0x%lx 0x%llx %pS\n", READ_ONCE(last_cpu), pc,
			 READ_ONCE(last_pstate), (void *)pc);
}

static const struct kernel_param_ops last_ops = { .get = last_get };
module_param_cb(last, &last_ops, NULL, 0444);
MODULE_PARM_DESC(last, "the last interrupted context: cpu, PC, PSTATE, symbol");

/* kallsyms_lookup_name() through a disabled kprobe (header comment); 0 if it cannot be found. */
static unsigned long lookup_kallsyms_lookup_name(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name", .flags = KPROBE_FLAG_DISABLED };
	unsigned long addr;

	/* register_kprobe() sets kp.addr as soon as the symbol resolves, before its later checks. */
	if (register_kprobe(&kp) == 0)
		unregister_kprobe(&kp);
	addr = (unsigned long)kp.addr;
	return IS_ERR_OR_NULL(kp.addr) ? 0 : addr;
}

static int resolve(void)
{
	typeof(&kallsyms_lookup_name) lookup = (void *)lookup_kallsyms_lookup_name();

	if (!lookup) {
		pr_err(PFX "kallsyms_lookup_name not found\n");
		return -ENOENT;
	}
	p_register = (void *)lookup("sdei_event_register");
	p_unregister = (void *)lookup("sdei_event_unregister");
	p_enable = (void *)lookup("sdei_event_enable");
	p_disable = (void *)lookup("sdei_event_disable");
	if (!p_register || !p_unregister || !p_enable || !p_disable) {
		pr_err(PFX "the SDEI driver's functions were not found (CONFIG_ARM_SDE_INTERFACE?)\n");
		return -ENOENT;
	}
	return 0;
}

static int __init sdei_wd_init(void)
{
	int ret = resolve();

	if (ret)
		return ret;
	ret = p_register(event, sdei_wd_handler, NULL);
	if (ret) {
		pr_err(PFX "sdei_event_register(%u) failed: %d\n", event, ret);
		return ret;
	}
	ret = p_enable(event);
	if (ret) {
		pr_err(PFX "sdei_event_enable(%u) failed: %d\n", event, ret);
		p_unregister(event);
		return ret;
	}
	pr_info(PFX "event %u registered and enabled; spinner %px %pS\n", event, sdei_wd_spin, sdei_wd_spin);
	return 0;
}

static void __exit sdei_wd_exit(void)
{
	int disabled = p_disable(event);
	int unregistered = p_unregister(event);

	pr_info(PFX "event %u disabled (%d) and unregistered (%d) after %d handler call(s)\n", event, disabled,
		unregistered, atomic_read(&hits));
}

module_init(sdei_wd_init);
module_exit(sdei_wd_exit);
MODULE_DESCRIPTION("Count an SDEI event caught while a CPU spins with IRQs masked (sdeilab)");
MODULE_LICENSE("GPL"); /* register_kprobe() is EXPORT_SYMBOL_GPL */
