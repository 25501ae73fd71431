"""The GDB server (sdeilab.lab.gdb_server): Debian's gdb-multiarch drives it in batch mode on
the lab's own guests, and a raw client throws malformed and random packets at it."""

from __future__ import annotations

import random
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdeilab.lab.gdb_server import (
    PACKET_SIZE,
    REGISTER_COUNT,
    GdbServer,
    checksum,
    escape_binary,
    frame,
    target_xml,
    unescape_binary,
)
from sdeilab.lab.session import Session
from sdeilab.toolchain import guests_dir

GDB = shutil.which("gdb-multiarch")
SMP = guests_dir() / "smp_boot.elf"  # CPU 0 starts CPUs 1..3 one at a time with PSCI CPU_ON
needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed: run scripts/setup-debian.sh")


def _symbol(name: str) -> int:
    session = Session(SMP, cpus=1)
    return session.address_of(name)


def gdb(port: int, *commands: str, elf: Path = SMP, timeout: float = 120) -> str:
    """gdb-multiarch in batch mode against 127.0.0.1:``port``; its stdout and stderr together."""
    assert GDB is not None
    args = [GDB, "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        args += ["-ex", command]
    done = subprocess.run([*args, str(elf)], capture_output=True, text=True, timeout=timeout, check=False)
    return done.stdout + done.stderr


@pytest.fixture
def served() -> Iterator[tuple[Session, GdbServer]]:
    session = Session(SMP, cpus=4)
    server = session.serve_gdb(0)
    try:
        yield session, server
    finally:
        server.close()


# --- gdb itself ----------------------------------------------------------------------------
@pytest.mark.gdb
@needs_gdb
def test_threads_are_the_four_cpus_and_powered_off_ones_say_so(served: tuple[Session, GdbServer]) -> None:
    _, server = served
    out = gdb(server.port, "info threads", "break secondary_main", "continue", "info threads")
    first, _, later = out.partition("Breakpoint 1 at")
    assert re.search(r"\* 1 +Thread 1 \(CPU 0 on\) +_start", first), out
    for cpu in (1, 2, 3):
        assert f"Thread {cpu + 1} (CPU {cpu} powered off)" in first, out
    # CPU 0 started CPU 1 (PSCI CPU_ON), which stopped at the breakpoint; CPUs 2 and 3 are still off.
    assert re.search(r"Thread 2 hit Breakpoint 1, .*secondary_main", later), out
    assert re.search(r"\* 2 +Thread 2 \(CPU 1 on\) +secondary_main", later), out
    assert "Thread 3 (CPU 2 powered off)" in later and "Thread 4 (CPU 3 powered off)" in later, out


@pytest.mark.gdb
@needs_gdb
def test_breakpoint_registers_memory_and_a_step(served: tuple[Session, GdbServer]) -> None:
    session, server = served
    out = gdb(server.port, "break cpu_mpidr", "continue", "p/x $pc", "p/x $x30", "stepi", "p/x $pc",
              "x/1wx $pc", "p/x $vbar_el1", "p $v0.q", "info registers cpsr")
    address = session.address_of("cpu_mpidr")
    pcs = re.findall(r"\$\d+ = (0x[0-9a-f]+)", out)
    assert pcs[0] == f"0x{address:x}", out
    assert pcs[2] == f"0x{address + 4:x}", out  # one instruction on
    word = int.from_bytes(session.read_memory(address + 4, 4), "little")
    assert re.search(rf"0x{address + 4:x} <cpu_mpidr\+4>:\s+0x{word:08x}", out), out
    assert int(pcs[3], 16) == session.registers(0)["VBAR_EL1"] != 0, out
    assert re.search(r"cpsr +0x[0-9a-f]?0*3c5 ", out), out  # EL1h, DAIF masked (the guest's start masks them)


@pytest.mark.gdb
@needs_gdb
def test_register_and_memory_writes_change_the_guest(served: tuple[Session, GdbServer]) -> None:
    session, server = served
    counter = session.address_of("cpu_mpidr")
    out = gdb(server.port, "break cpu_mpidr", "continue", "set $x5 = 0x1234abcd", "p/x $x5",
              "set {int}($sp - 16) = 0x5de1", "x/1wx $sp - 16")
    assert "0x1234abcd" in out and "0x00005de1" in out, out
    assert session.registers(0)["x5"] == 0x1234ABCD
    assert session.pc(0) == counter


@pytest.mark.gdb
@needs_gdb
def test_per_thread_step(served: tuple[Session, GdbServer]) -> None:
    session, server = served
    # CPU 1 runs secondary_main once started; stop there, switch to its thread and step it.
    out = gdb(server.port, "break secondary_main", "continue", "info threads", "thread 2", "stepi", "p/x $pc")
    start = session.address_of("secondary_main")
    assert re.search(r"Thread 2 hit Breakpoint 1, .*secondary_main", out), out
    assert re.search(rf"\$1 = 0x{start + 4:x}\n", out), out
    assert session.pc(1) == start + 4


@pytest.mark.gdb
@needs_gdb
def test_monitor_commands_and_firmware_event_stops(served: tuple[Session, GdbServer]) -> None:
    session, server = served
    out = gdb(server.port, "monitor help", "monitor profile", "monitor break cpu-on", "continue",
              "monitor where", "monitor trace last 2", "monitor phys 0x40080000 16",
              "monitor phys-write 0x41000000 5de1c0de", "monitor phys 0x41000000 4", "monitor nonsense")
    assert "break EVENT" in out and "profile virt: conduits hvc -> kvm" in out, out
    assert "the next run stops after CPU_ON" in out, out
    assert re.search(r"break: CPU_ON64 on CPU 0", out), out
    assert "SmcccReturn fid=0xc4000003 name=CPU_ON64 results=(0)" in out, out
    first = session.read_memory(0x4008_0000, 16, physical=True)
    assert f"0x0000000040080000: {first.hex(' ')}" in out, out
    assert "0x0000000041000000: 5d e1 c0 de" in out, out
    assert session.read_memory(0x4100_0000, 4, physical=True) == bytes.fromhex("5de1c0de")
    assert "unknown monitor command 'nonsense'" in out, out


@pytest.mark.gdb
@needs_gdb
def test_the_guest_end_is_a_stop_gdb_can_go_back_from(served: tuple[Session, GdbServer]) -> None:
    session, server = served
    out = gdb(server.port, "continue", "reverse-stepi", "p/x $pc", "reverse-continue", "p/x $pc")
    assert "sdeilab: PSCI SYSTEM_OFF from CPU 0 (system-off); reverse-continue or reverse-stepi go back" in out, out
    assert "No more reverse-execution history." in out, out
    assert session.last_stop.reason == "history-start" and session.retired == 0
    assert f"$2 = 0x{session.address_of('_start'):x}\n" in out, out


@pytest.mark.gdb
@needs_gdb
def test_reverse_continue_and_reverse_stepi_land_where_the_forward_run_was(
        served: tuple[Session, GdbServer]) -> None:
    session, server = served
    out = gdb(server.port, "break cpu_mpidr", "continue", "info registers x0 x19 x30 sp pc", "continue",
              "reverse-continue", "info registers x0 x19 x30 sp pc", "reverse-stepi", "p/x $pc", "info symbol $pc")
    table = re.findall(r"^(x0|x19|x30|sp|pc) +(0x[0-9a-f]+)", out, re.M)
    first, again = table[:5], table[5:10]
    assert len(first) == len(again) == 5 and first == again, out  # the same stop, registers and all
    caller = session.pc(0)
    assert dict(first)["x30"] == f"0x{caller + 4:x}", out  # back on the bl that called cpu_mpidr
    assert f"$1 = 0x{caller:x}\nmain + {caller - session.address_of('main')} in section .text" in out, out


@pytest.mark.gdb
@needs_gdb
def test_watchpoints_forward_and_backward(served: tuple[Session, GdbServer]) -> None:
    session, server = served
    slot2 = session.address_of("secondary_main")  # the value CPU 0 stores in slot 2 of secondary_fn
    out = gdb(server.port, "watch *(long *)((char *)&secondary_fn + 16)", "continue", "p/x $pc", "continue",
              "reverse-continue", "p/x $pc", "rwatch *(long *)((char *)&secondary_fn + 16)", "delete 1", "continue",
              "info threads")
    assert re.search(r"Thread 1 hit Hardware watchpoint 1: .*\n\nOld value = 0\nNew value = "
                     rf"{slot2}\n", out), out
    after, before = (int(pc, 16) for pc in re.findall(r"\$\d+ = (0x[0-9a-f]+)", out)[:2])
    # Forward, gdb reports the store done (it steps over it: AArch64 watchpoints stop before the
    # access); backward, it reports the state before the store, the same instruction.
    assert after == before + 4, out
    assert session.read_memory(before, 4) == (0xC89FFC01).to_bytes(4, "little"), out  # stlr x1, [x0]
    # CPU 2 reads its slot with LDAR (guests/lib/start.S): a read watchpoint stops it there.
    assert re.search(r"Thread 3 hit Hardware read watchpoint 2: .*\n\nValue = " + str(slot2), out), out


@pytest.mark.gdb
@needs_gdb
def test_command_line_serves_one_client(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "sdeilab.cli", "run", str(SMP), "--cpus", "4", "--gdb", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line)[1])  # type: ignore[index]
        out = gdb(port, "break cpu_mpidr", "continue", "delete", "continue", "kill")
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert "PSCI SYSTEM_OFF from CPU 0" in out, out
    assert process.returncode == 0, stderr
    assert "CPU 3 up: MPIDR_EL1=0x80000003" in stdout
    assert "gdb is gone" in stderr


def test_command_line_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "sdeilab.cli", "run", str(SMP), "--gdb", str(port)],
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


# --- the protocol, without gdb ---------------------------------------------------------------
class Client:
    """A bare remote-protocol client: packets out, replies in (acks checked)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ask(self, payload: bytes, timeout: float = 30) -> bytes:
        self.raw(frame(payload))
        return self.reply(timeout)

    def reply(self, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(rb"\$([^#]*)#([0-9a-f]{2})", self.buffer)
            if match:
                self.buffer = self.buffer[match.end():]
                assert int(match[2], 16) == checksum(match[1])
                self.raw(b"+")
                return match[1]
            left = deadline - time.monotonic()
            assert left > 0, f"no reply within {timeout} s (had {self.buffer[-200:]!r})"
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                data = self.sock.recv(65536)
                assert data, "the server closed the connection"
                self.buffer += data


def test_packets_framing_and_binary_escapes() -> None:
    assert frame(b"OK") == b"$OK#9a"
    data = bytes(range(256))
    assert unescape_binary(escape_binary(data)) == data
    assert b"$" not in escape_binary(data) and b"#" not in escape_binary(data)
    assert target_xml().count("<reg ") == REGISTER_COUNT


def test_registers_memory_and_errors_over_the_wire(served: tuple[Session, GdbServer]) -> None:
    session, server = served
    client = Client(server.port)
    try:
        assert b"PacketSize=4000" in client.ask(b"qSupported:multiprocess+;swbreak+")
        registers = bytes.fromhex(client.ask(b"g").decode())
        assert int.from_bytes(registers[32 * 8:33 * 8], "little") == session.pc(0)
        assert client.ask(b"p20") == session.pc(0).to_bytes(8, "little").hex().encode()
        assert client.ask(b"m40080000,8") == session.read_memory(0x4008_0000, 8).hex().encode()
        assert client.ask(b"m0,8") == b"E14"  # no RAM at 0 (flash is not RAM here)
        assert client.ask(b"pfff") == b"E01"  # no such register
        assert client.ask(b"Hg9") == b"E01"  # no thread 9
        assert client.ask(b"mzz,1") == b"E01"
        assert client.ask(b"M40080000,2:00") == b"E01"  # says 2 bytes, carries 1
        assert client.ask(b"vCont;x") == b"E01"
        assert client.ask(b"Z9,0,4") == b""  # an unknown point kind: not supported
        assert client.ask(b"qUnknownThing") == b""
        xml = b""
        while True:
            part = client.ask(b"qXfer:features:read:target.xml:%x,200" % len(xml))
            xml += unescape_binary(part[1:])
            if part[:1] == b"l":
                break
        assert xml.decode() == target_xml()
        assert client.ask(b"s").startswith(b"T05thread:1;")
        assert session.retired == 1
        # At the guest's end: a resumption says why on gdb's console first ("O"), "?" only answers.
        reply = client.ask(b"c")
        assert reply.startswith(b"O") and b"PSCI SYSTEM_OFF" in bytes.fromhex(reply[1:].decode()), reply
        assert client.reply().startswith(b"T05thread:1;")
        assert client.ask(b"?").startswith(b"T05thread:1;")
    finally:
        client.close()


def test_ctrl_c_pauses_a_run_and_a_vanished_client_leaves_the_session_usable() -> None:
    session = Session(SMP, cpus=4)
    spin = 0x4100_0000  # RAM past the guest's image: CPU 0 is sent to a `b .` there, a run without end
    server = session.serve_gdb(0)
    try:
        client = Client(server.port)
        session.write_memory(spin, (0x1400_0000).to_bytes(4, "little"), physical=True)
        session.write_register(0, "PC", spin)
        client.raw(frame(b"c"))
        time.sleep(0.5)
        client.raw(b"\x03")
        assert client.reply(timeout=30).startswith(b"T02thread:")
        assert session.last_stop.reason == "paused"
        client.raw(frame(b"c"))
        time.sleep(0.3)
        client.close()  # gone in the middle of a run: the run is paused, the session stays whole
        deadline = time.monotonic() + 30
        while session.running and time.monotonic() < deadline:
            time.sleep(0.05)
        second = Client(server.port)
        assert second.ask(b"?").startswith(b"T02")
        assert second.ask(b"p20") == session.pc(session.focus_cpu()).to_bytes(8, "little").hex().encode()
        second.close()
    finally:
        server.close()


@pytest.mark.hostile
def test_random_and_malformed_packets_neither_crash_nor_hang(served: tuple[Session, GdbServer]) -> None:
    session, server = served
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    verbs = [b"g", b"G", b"p", b"P", b"m", b"M", b"X", b"Z0,", b"z0,", b"Z2,", b"H", b"T", b"q", b"Q", b"v",
             b"vCont;", b"qXfer:features:read:target.xml:", b"qRcmd,", b"qThreadExtraInfo,", b"?", b"s"]
    for round_ in range(40):
        client = Client(server.port)
        try:
            # Whole frames around random or half-valid content first, each answered...
            for _ in range(rng.randrange(1, 12)):
                body = rng.choice(verbs) + bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
                body = body.replace(b"$", b"").replace(b"#", b"")
                client.raw(frame(body))
                reply = client.reply(timeout=60)
                assert len(reply) <= 2 * PACKET_SIZE + 1, (seed, body)
            # ... then garbage: bad checksums, stray acks and interrupts, a packet that never ends.
            for _ in range(rng.randrange(1, 6)):
                choice = rng.random()
                if choice < 0.5:
                    client.raw(bytes(rng.randrange(256) for _ in range(rng.randrange(200))))
                elif choice < 0.8:
                    client.raw(b"$" + b"A" * rng.randrange(PACKET_SIZE * 3))
                else:
                    client.raw(b"$g#00")
        finally:
            client.close()
        if round_ % 10 == 9:  # the server still answers properly, and the session is whole
            check = Client(server.port)
            try:
                assert check.ask(b"qC").startswith(b"QC"), seed
                assert len(bytes.fromhex(check.ask(b"g").decode())) > 33 * 8, seed
            finally:
                check.close()
    assert not session.running, seed


def test_dashboard_button_serves_gdb_and_the_views_follow() -> None:
    from sdeilab.widgets import Lab

    lab = Lab(SMP, cpus=4, plots_enabled=False)
    try:
        lab.gdb_button.value = True  # the button, as a click sets it
        server = lab.gdb_server
        assert server is not None and f"target remote :{server.port}" in lab.gdb_label.value
        client = Client(server.port)
        try:
            assert client.ask(b"s").startswith(b"T05thread:1;")
            deadline = time.monotonic() + 10
            while "1 instruction" not in lab.status.value and time.monotonic() < deadline:
                time.sleep(0.05)  # the view is refreshed by the server's thread after the reply
            assert lab.session.retired == 1
            assert "1 instruction" in lab.status.value, lab.status.value
        finally:
            client.close()
        lab.gdb_button.value = False
        assert lab.gdb_server is None and lab.gdb_label.value == ""
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    finally:
        lab.close()
