"""Who answered each firmware call, how many exits that took, and what it would cost on hardware.

Pure functions over facts. The lab does not charge these costs to virtual time (the same guest
must give the same trace on every profile, instruction for instruction); they are a model, for
comparing where a service should live. Defaults are published measurements (docs/profiles.md
gives each source); override any of them with ``dataclasses.replace``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import LayerExit, SdeiDispatch, SmcccCall


@dataclass(frozen=True)
class TransitionCosts:
    """Round-trip costs in ns (sources: docs/profiles.md, "Modelled costs")."""

    guest_kvm_ns: int = 306  # HVC to KVM and back: kvm-unit-tests micro-bench `hvc`, Ampere Altra, 2024
    kvm_vmm_ns: int = 1377  # the extra of an exit to the VMM and back: micro-bench mmio_read_user 1683 - hvc 306
    guest_el3_ns: int = 300  # SMC to TF-A and back: 140-260 ns inside EL3 on N1SDP, plus trap and ERET (estimate)
    vmm_kick_ns: int = 1926  # a VMM delivering an event must kick the vCPU out first: micro-bench `ipi`, Altra

    def call_ns(self, layer: str) -> int:
        return {"kvm": self.guest_kvm_ns, "vmm": self.guest_kvm_ns + self.kvm_vmm_ns,
                "el3": self.guest_el3_ns}.get(layer, 0)


@dataclass(frozen=True)
class LayerSummary:
    calls: Mapping[str, int]  # layer -> calls it answered
    exits: int  # kernel -> VMM exits (KVM_EXIT_HYPERCALL)
    dispatches: int  # SDEI handler entries
    modelled_ns: int
    by_name: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (call name, layer) -> count

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def call_layers(trace: TraceLog, entry: Mapping[str, str]) -> list[tuple[SmcccCall, str]]:
    """Each call with the layer that answered it: where its conduit traps (``entry``: "hvc" ->
    "kvm"), or the VMM when a LayerExit follows it. Calls that never return (CPU_OFF, COMPLETE)
    count too, which is why this reads calls and exits rather than returns."""
    exited = {(e.cpu, e.vtime, e.fid) for e in trace.of_kind(LayerExit)}
    out = []
    for call in trace.of_kind(SmcccCall):
        layer = "vmm" if (call.cpu, call.vtime, call.fid) in exited else entry.get(call.conduit, "undefined")
        out.append((call, layer))
    return out


def layer_summary(trace: TraceLog, entry: Mapping[str, str], sdei_layer: str | None,
                  costs: TransitionCosts | None = None) -> LayerSummary:
    """Calls per layer, exits, SDEI dispatches and their modelled cost for one run."""
    costs = costs or TransitionCosts()
    layers = call_layers(trace, entry)
    calls = Counter(layer for _, layer in layers)
    by_name = Counter((call.name, layer) for call, layer in layers)
    dispatches = trace.count(SdeiDispatch)
    kick = costs.vmm_kick_ns if sdei_layer == "vmm" else 0  # KVM or EL3 enter the handler on their way back
    modelled = sum(costs.call_ns(layer) * n for layer, n in calls.items()) + kick * dispatches
    return LayerSummary(dict(calls), trace.count(LayerExit), dispatches, modelled, dict(by_name))
