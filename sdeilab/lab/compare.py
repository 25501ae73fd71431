"""The same guest on several profiles, side by side: who answered what, exits, modelled time, verdicts.

``compare(guest, ["kvm", "kvm-vmm-sdei", ...])`` runs the guest unmodified once per profile
and returns one row per profile. ``before_run`` lets a notebook arm host-side sources (raise a
hypervisor event at some vtime) identically on every profile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdeilab.firmware.profiles import Profile, profile_named
from sdeilab.lab.platform import Platform, make_platform
from sdeilab.machine.outcome import RunOutcome, StopReason
from sdeilab.trace import TraceLog
from sdeilab.trace.costs import LayerSummary, TransitionCosts, layer_summary

LAYERS = ("kvm", "vmm", "el3")
DEFAULT_COSTS = TransitionCosts()


@dataclass
class ProfileRun:
    profile: Profile
    platform: Platform
    trace: TraceLog
    outcome: RunOutcome
    summary: LayerSummary

    @property
    def output(self) -> str:
        return bytes(self.platform.machine.uart_output).decode(errors="replace")

    @property
    def verdict(self) -> str:
        """The guest's last line that says PASS or FAIL, else how the run ended."""
        for line in reversed(self.output.splitlines()):
            if ": PASS" in line or ": FAIL" in line:
                return "PASS" if ": PASS" in line else "FAIL"
        return self.outcome.reason.value


@dataclass
class Comparison:
    runs: list[ProfileRun]
    costs: TransitionCosts

    def rows(self) -> list[dict[str, object]]:
        """One row per profile, for a table or a DataFrame."""
        out = []
        for run in self.runs:
            s = run.summary
            row: dict[str, object] = {"profile": run.profile.name}
            row.update({f"calls {layer}": s.calls.get(layer, 0) for layer in LAYERS})
            row.update({"exits to VMM": s.exits, "SDEI dispatches": s.dispatches,
                        "modelled µs": round(s.modelled_ns / 1000, 1), "verdict": run.verdict,
                        "ended": run.outcome.reason.value})
            out.append(row)
        return out

    def table(self) -> str:
        """The rows as fixed-width text (what ``print`` shows in a notebook or a terminal)."""
        rows = self.rows()
        if not rows:
            return ""
        heads = list(rows[0])
        widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in heads]
        lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(str(r[h]).ljust(w) for h, w in zip(heads, widths, strict=True)) for r in rows]
        return "\n".join(lines)

    def __getitem__(self, profile: str) -> ProfileRun:
        return next(run for run in self.runs if run.profile.name == profile)


def run_on(guest: Path, profile: str | Profile, cpus: int = 4, max_instructions: int = 2_000_000_000,
           before_run: Callable[[Platform], None] | None = None,
           costs: TransitionCosts = DEFAULT_COSTS) -> ProfileRun:
    prof = profile_named(profile) if isinstance(profile, str) else profile
    trace = TraceLog()
    platform = make_platform(cpus, prof, trace=trace)
    platform.load(guest)
    if before_run is not None:
        before_run(platform)
    outcome = platform.run(max_instructions)
    summary = layer_summary(trace, prof.conduits, prof.services.get("sdei"), costs)
    return ProfileRun(prof, platform, trace, outcome, summary)


def compare(guest: Path | Callable[[Profile], Path], profiles: Sequence[str | Profile], cpus: int = 4,
            max_instructions: int = 2_000_000_000, before_run: Callable[[Platform], None] | None = None,
            costs: TransitionCosts = DEFAULT_COSTS) -> Comparison:
    """Run ``guest`` on each profile. ``guest`` may pick the build per profile (an SMC build for
    ``firmware``): pass a function of the profile."""
    runs = []
    for profile in profiles:
        prof = profile_named(profile) if isinstance(profile, str) else profile
        elf = guest(prof) if callable(guest) else guest
        runs.append(run_on(elf, prof, cpus, max_instructions, before_run, costs))
    return Comparison(runs, costs)


def passed(run: ProfileRun) -> bool:
    return run.outcome.reason is StopReason.SYSTEM_OFF and run.verdict == "PASS"
