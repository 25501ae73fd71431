"""What one student costs on the workshop hub, and how many this machine holds (docs/workshop.md).

Starts ``sdeilab hub`` in a temporary folder (tests/hub_client.py drives it as test_hub.py does) and
measures, on the student's own server through the Jupyter server API:

* memory of an idle lab: the student's server (jupyterhub-singleuser with JupyterLab) with no kernel;
* per notebook (00, 01, 02, 10-33, and 40 unless --skip-linux): a fresh kernel runs it top to bottom;
  the kernel's CPU seconds (user + system, its children included: the guest toolchain) and its
  memory afterwards, kernel left open, as a student leaves it; for 40 (Linux booting on the lab)
  also the kernel's peak resident memory, sampled every 0.2 s;
* the lab that ran every notebook: the server plus every kernel still open (the worst case; the
  server's kernel culler ends kernels idle for 20 minutes, sdeilab/hub.py);
* concurrency: N students (servers already started) open a kernel on notebook 00 at the same time;
  the largest N for which every one finished within 30 s, from opening the kernel to the last cell.

Memory is PSS (proportional set size: shared pages split among the processes sharing them, so
students add up) and RSS, from /proc through psutil. Run as the user the hub runs as (root reads any).

Run: .venv/bin/python benchmarks/hub_sizing.py [--skip-linux] [--max-students N] [--deadline S]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.hub_client import Hub, HubFailure, Kernel, Student  # noqa: E402

MIB = 1024 * 1024
NOTEBOOK_S = 1800  # one notebook, one kernel: a bound, not a target (notebook 40 boots Linux)


def _tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _memory(processes: list[psutil.Process]) -> tuple[float, float]:
    """(PSS, RSS) in MiB summed over ``processes``."""
    pss = rss = 0.0
    for process in processes:
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        pss += getattr(info, "pss", info.rss)
        rss += info.rss
    return pss / MIB, rss / MIB


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def _server(hub: Hub, name: str) -> psutil.Process:
    for process in hub.descendants():
        try:
            command = " ".join(process.cmdline())
            if "jupyterhub.singleuser" in command and process.environ().get("JUPYTERHUB_USER") == name:
                return process
        except psutil.Error:
            continue
    raise HubFailure(f"no server process for {name}")


def _kernel_process(server: psutil.Process, kernel_id: str) -> psutil.Process:
    for process in server.children(recursive=True):
        try:
            if any(kernel_id in part for part in process.cmdline()):
                return process
        except psutil.Error:
            continue
    raise HubFailure(f"no process for kernel {kernel_id}")


def run_open(student: Student, path: str, sample_peak: bool = False) -> tuple[Kernel, psutil.Process, float, float]:
    """Run ``path`` in a new kernel left open; (kernel, its process, wall s, peak RSS MiB or 0)."""
    import nbformat

    notebook: nbformat.NotebookNode = student.read_notebook(path)
    began = time.monotonic()
    kernel = student.open_kernel(path)
    process = _kernel_process(_server(student.hub, student.name), kernel.kernel_id)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], _memory(_tree(process))[1])

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_peak:
        sampler.start()
    deadline = began + NOTEBOOK_S
    try:
        for cell in notebook.cells:
            if cell.cell_type == "code":
                kernel.execute(cell.source, deadline, where=path)
    finally:
        done.set()
    return kernel, process, time.monotonic() - began, peak[0]


def concurrency(hub: Hub, students: list[Student], deadline_s: float) -> float:
    """Every student opens a kernel on notebook 00 at once and runs it; the slowest one's wall seconds."""

    def one(student: Student) -> float:
        kernel, _, wall, _ = run_open(student, "00_tour.ipynb")
        kernel.close()
        return wall

    with ThreadPoolExecutor(len(students)) as pool:
        return max(pool.map(one, students))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-linux", action="store_true", help="leave notebook 40 (Linux boot) out")
    parser.add_argument("--max-students", type=int, default=16)
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds notebook 00 must finish within")
    args = parser.parse_args()
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    if args.skip_linux:
        notebooks = [n for n in notebooks if not n.startswith("40")]
    print(f"machine: {psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB")
    with tempfile.TemporaryDirectory(prefix="sdeilab-hub-sizing-") as folder:
        hub = Hub(Path(folder))
        hub.start()
        try:
            first = Student(hub, "s00")
            first.log_in()
            first.start_server()
            time.sleep(5)  # JupyterLab's start-up work settles
            server = _server(hub, first.name)
            idle = _memory(_tree(server))
            print(f"idle lab (server, no kernel): PSS {idle[0]:.0f} MiB, RSS {idle[1]:.0f} MiB")
            print(f"{'notebook':38} {'wall s':>7} {'CPU s':>7} {'kernel PSS':>11} {'kernel RSS':>11} {'peak RSS':>9}")
            kernels = []
            for name in notebooks:
                kernel, process, wall, peak = run_open(first, name, sample_peak=name.startswith("40"))
                cpu = _cpu_seconds(process)
                pss, rss = _memory(_tree(process))
                kernels.append(kernel)
                peak_text = f"{peak:9.0f}" if peak else f"{'':9}"
                print(f"{name:38} {wall:7.1f} {cpu:7.1f} {pss:11.0f} {rss:11.0f} {peak_text}", flush=True)
            full = _memory(_tree(server))
            print(f"lab that ran every notebook above, every kernel open: PSS {full[0]:.0f} MiB, RSS {full[1]:.0f} MiB")
            for kernel in kernels:
                kernel.close()
            time.sleep(2)
            closed = _memory(_tree(server))
            print(f"same lab, kernels closed: PSS {closed[0]:.0f} MiB, RSS {closed[1]:.0f} MiB")

            students = [first]
            best = 0
            n = 1
            while n <= args.max_students:
                while len(students) < n:
                    students.append(Student(hub, f"s{len(students):02d}"))
                    students[-1].log_in()
                    students[-1].start_server()
                slowest = concurrency(hub, students[:n], args.deadline)
                verdict = "within" if slowest <= args.deadline else "OVER"
                print(f"{n:2d} students at once: slowest notebook 00 in {slowest:5.1f} s "
                      f"({verdict} {args.deadline:.0f} s)", flush=True)
                if slowest > args.deadline:
                    break
                best = n
                n = n + 1 if n < 4 else n + 2
            print(f"students whose notebook 00 completes within {args.deadline:.0f} s at once: {best}")
        except BaseException:
            print(hub.log_text()[-5000:], file=sys.stderr)
            raise
        finally:
            left = hub.stop()
            if left:
                print(f"processes left behind: {left}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
