"""A GDB remote serial protocol server on a debugger :class:`~sdeilab.lab.session.Session`.

``sdeilab run GUEST --gdb PORT`` (or ``Session.serve_gdb(port)``) waits on 127.0.0.1 for gdb's
``target remote :PORT`` (Debian's ``gdb-multiarch``); docs/debugging.md shows a session. What gdb
sees, in the protocol's terms (GDB manual, appendix E "GDB Remote Serial Protocol"):

* **Threads are vCPUs**: thread ``n + 1`` is CPU ``n`` (thread ids start at 1); every CPU is
  listed, a powered-off one with "off" in ``info threads`` (``qThreadExtraInfo``).
* **Registers** by the target description this server sends (``qXfer:features:read``): the
  ``org.gnu.gdb.aarch64.core`` feature (x0-x30, sp, pc, cpsr), ``org.gnu.gdb.aarch64.fpu`` (v0-v31,
  fpsr, fpcr; read-only here) and the EL1 system registers the lab's views show, by their ARM ARM
  names. A register gdb may not write is refused with an error reply.
* **Memory** is virtual as the selected thread's CPU sees it now (through its MMU when on); a
  partial read returns the bytes that could be read. Physical memory is read with ``monitor phys``.
* **Execution**: ``c``/``s``/``vCont`` (a step of one thread lets the others run as the scheduler
  has them meanwhile: there is no scheduler locking), Ctrl-C (read between chunks of a run, so a
  run never stops inside a firmware call), software and hardware breakpoints (both are the
  session's address breakpoints), watchpoints (``watch``, ``rwatch``, ``awatch``) and **reverse
  execution** (``bs``, ``bc``: ``reverse-stepi`` and ``reverse-continue``, by snapshots and
  deterministic replay, the session's ``step_back`` and ``reverse_continue``).
* **Firmware events** through ``monitor`` (``qRcmd``): ``monitor break sdei-dispatch`` or any SMCCC
  function name makes the next ``continue`` stop after that event; ``monitor trace last 20``,
  ``monitor profile``, ``monitor help`` for the rest.

A client that sends malformed packets, asks for a register or an address that does not exist, or
goes away in the middle of a run gets an error reply or is let go; the session stays usable and
the server never listens anywhere but on the loopback address. Packets are bounded
(:data:`PACKET_SIZE`), so a client that never ends one cannot make the server hold more.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace

from sdeilab.lab.session import SYSREGS, Session, SessionBusy, StopInfo
from sdeilab.machine.outcome import StopReason
from sdeilab.trace import PowerState

HOST = "127.0.0.1"  # only ever the loopback address: a debugger server executes whatever it is sent
PACKET_SIZE = 0x4000  # the largest packet this server takes (qSupported's PacketSize)
_MAX_BUFFER = 2 * PACKET_SIZE + 16  # bytes held waiting for a packet's end, at most
_POLL_S = 0.0  # a run polls the socket for Ctrl-C without waiting

SIGINT, SIGTRAP, SIGSEGV = 2, 5, 11  # the signal numbers gdb's stop replies carry (GDB's own numbering)
_FINAL = {StopReason.SYSTEM_OFF.value, StopReason.SYSTEM_RESET.value, StopReason.DEADLOCK.value,
          StopReason.FAULT.value}  # stops the guest cannot run on from

# gdb's names for the lab's register views, and their sizes in bytes, in the target description's order.
_CORE = [(f"x{n}", f"x{n}", 8) for n in range(31)] + [("sp", "SP", 8), ("pc", "PC", 8), ("cpsr", "PSTATE", 4)]
_VECTOR = 32  # v0-v31 follow the core registers, then fpsr and fpcr
_SYSTEM = [(name.lower(), name, 8) for name in SYSREGS]
_FIRST_VECTOR = len(_CORE)
_FPSR = _FIRST_VECTOR + _VECTOR
_FPCR = _FPSR + 1
_FIRST_SYSTEM = _FPCR + 1
REGISTER_COUNT = _FIRST_SYSTEM + len(_SYSTEM)

# Event names gdb users type, as the session names them (SMCCC function names are taken as they are).
EVENT_ALIASES = {"sdei-dispatch": "SdeiDispatch", "sdei-complete": "SDEI_EVENT_COMPLETE",
                 "cpu-on": "CPU_ON", "cpu-off": "CPU_OFF", "power": "PowerTransition", "smccc": "SmcccCall"}


def target_xml() -> str:
    """The target description (GDB manual, "Target Descriptions"): AArch64 core and FP/SIMD
    features by the names gdb's AArch64 architecture looks for, and the lab's system registers."""
    core = "".join(f'<reg name="x{n}" bitsize="64" type="int" regnum="{n}"/>' for n in range(31))
    core += ('<reg name="sp" bitsize="64" type="data_ptr"/><reg name="pc" bitsize="64" type="code_ptr"/>'
             '<reg name="cpsr" bitsize="32" type="int"/>')
    vector_type = ('<vector id="v2d" type="ieee_double" count="2"/><vector id="v2u" type="uint64" count="2"/>'
                   '<vector id="v4f" type="ieee_single" count="4"/><vector id="v4u" type="uint32" count="4"/>'
                   '<vector id="v8u" type="uint16" count="8"/><vector id="v16u" type="uint8" count="16"/>'
                   '<union id="vnd"><field name="d" type="v2d"/><field name="u" type="v2u"/></union>'
                   '<union id="vns"><field name="f" type="v4f"/><field name="u" type="v4u"/></union>'
                   '<union id="aarch64v"><field name="d" type="vnd"/><field name="s" type="vns"/>'
                   '<field name="h" type="v8u"/><field name="b" type="v16u"/><field name="q" type="uint128"/></union>')
    vectors = "".join(f'<reg name="v{n}" bitsize="128" type="aarch64v"/>' for n in range(_VECTOR))
    vectors += '<reg name="fpsr" bitsize="32" type="int"/><reg name="fpcr" bitsize="32" type="int"/>'
    system = "".join(f'<reg name="{name}" bitsize="64" type="int" group="system"/>' for name, _, _ in _SYSTEM)
    return ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0">'
            "<architecture>aarch64</architecture>"
            f'<feature name="org.gnu.gdb.aarch64.core">{core}</feature>'
            f'<feature name="org.gnu.gdb.aarch64.fpu">{vector_type}{vectors}</feature>'
            f'<feature name="org.sdeilab.aarch64.system">{system}</feature></target>')


class ProtocolError(ValueError):
    """A packet this server cannot take: the client gets an error reply."""


class _Disconnected(Exception):
    """The client went away."""


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def frame(payload: bytes) -> bytes:
    """``$payload#cs``."""
    return b"$" + payload + b"#" + b"%02x" % checksum(payload)


def escape_binary(data: bytes) -> bytes:
    """Binary data in a reply: ``}`` then the byte XOR 0x20 for each of ``#$}*`` (GDB manual E.1)."""
    out = bytearray()
    for byte in data:
        if byte in b"#$}*":
            out += bytes((0x7D, byte ^ 0x20))
        else:
            out.append(byte)
    return bytes(out)


def unescape_binary(data: bytes) -> bytes:
    out = bytearray()
    escaped = False
    for byte in data:
        if escaped:
            out.append(byte ^ 0x20)
            escaped = False
        elif byte == 0x7D:
            escaped = True
        else:
            out.append(byte)
    if escaped:
        raise ProtocolError("binary data ends with an escape")
    return bytes(out)


def _hex_int(text: bytes | str) -> int:
    text = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    if not text or len(text) > 16 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ProtocolError(f"not a hexadecimal number: {text[:40]!r}")
    return int(text, 16)


def _hex_bytes(text: bytes) -> bytes:
    try:
        return bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ProtocolError(f"not hexadecimal bytes: {text[:40]!r}") from error


def _thread_id(text: bytes) -> int:
    """A thread id as gdb writes it: hex, -1 for all, 0 for any."""
    if text == b"-1":
        return -1
    return _hex_int(text)


@dataclass
class _Conn:
    """One client: its socket, the bytes read and not yet parsed, and whether acks are sent."""

    sock: socket.socket
    buffer: bytearray
    ack: bool = True
    interrupted: bool = False  # a Ctrl-C (0x03) came outside a packet

    def send(self, payload: bytes) -> None:
        try:
            self.sock.sendall(frame(payload))
        except OSError as error:
            raise _Disconnected from error

    def fill(self, timeout: float | None) -> bool:
        """Read what the client sent (waiting at most ``timeout`` s); False if nothing came."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        try:
            data = self.sock.recv(4096)
        except OSError as error:
            raise _Disconnected from error
        if not data:
            raise _Disconnected
        self.buffer += data
        return True

    def next_packet(self) -> bytes | None:
        """The next whole packet in the buffer (acknowledged), or None. Acks, Ctrl-C and noise
        between packets are consumed; a packet longer than the limit is dropped with a NAK."""
        buffer = self.buffer
        while buffer:
            first = buffer[0]
            if first == 0x03:
                self.interrupted = True
                del buffer[0]
                continue
            if first != ord("$"):
                del buffer[0]  # '+', '-', or garbage before a packet
                continue
            end = buffer.find(b"#")
            if end < 0:
                if len(buffer) > _MAX_BUFFER:
                    buffer.clear()
                    self._nak()
                return None
            if len(buffer) < end + 3:
                return None
            payload = bytes(buffer[1:end])
            sent = bytes(buffer[end + 1:end + 3])
            del buffer[:end + 3]
            try:
                good = int(sent, 16) == checksum(payload)
            except ValueError:
                good = False
            if not good or len(payload) > PACKET_SIZE:
                self._nak()
                continue
            if self.ack:
                self._raw(b"+")
            return payload
        return None

    def _nak(self) -> None:
        if self.ack:
            self._raw(b"-")

    def _raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise _Disconnected from error


class GdbServer:
    """Serves ``session`` to gdb clients on 127.0.0.1:``port`` (0: any free port, see ``port``).

    ``serve()`` answers clients one after another until ``close()`` (or, with ``once``, until the
    first client detaches, kills or goes away). ``start()`` does that in a background thread, as
    the dashboard's button and ``Session.serve_gdb`` do; the session is then driven by the
    client, and another caller's control method gets SessionBusy while a run goes on.
    """

    def __init__(self, session: Session, port: int = 0, *, once: bool = False) -> None:
        self.session = session
        self.once = once
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((HOST, port))
        except OSError:
            self._listener.close()
            raise
        self._listener.listen(1)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: _Conn | None = None
        self._general = -1  # Hg: the thread registers and memory are read from (-1: the focus CPU)
        self._resume = -1  # Hc: the thread s and c apply to
        self.clients = 0  # clients served so far
        self.on_output: Callable[[], None] | None = None  # called after each stop and between chunks of a run
        self.on_stop: Callable[[], None] | None = None  # called after each stop gdb caused (a view's refresh)
        self.last_error: str | None = None  # the last packet refused, for the curious

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> GdbServer:
        self._thread = threading.Thread(target=self.serve, name=f"gdb-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving: a run going on is paused, the client let go, the port closed."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        if self._conn is not None:
            self.session.pause()
            with contextlib.suppress(OSError):
                self._conn.sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def __enter__(self) -> GdbServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def serve(self) -> None:
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.2)
            except (OSError, ValueError):  # the listener was closed
                return
            if not ready:
                continue
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.clients += 1
            self._conn = _Conn(sock, bytearray())
            self._general = self._resume = -1
            try:
                self._serve_client(self._conn)
            except _Disconnected:
                pass
            finally:
                self._conn = None
                with contextlib.suppress(OSError):
                    sock.close()
            if self.once:
                return

    def _serve_client(self, conn: _Conn) -> None:
        while not self._closed.is_set():
            packet = conn.next_packet()
            if packet is None:
                conn.interrupted = False  # a Ctrl-C while stopped: nothing runs to stop
                conn.fill(0.2)
                continue
            try:
                reply = self._dispatch(packet)
            except (ProtocolError, ValueError, TypeError, KeyError, IndexError, OverflowError) as error:
                self.last_error = f"{packet[:40]!r}: {error}"
                reply = b"E01"
            except SessionBusy as error:
                self.last_error = str(error)
                reply = b"E02"
            except Exception as error:  # a bug below must not end the connection: gdb gets an error
                self.last_error = f"{packet[:40]!r}: {type(error).__name__}: {error}"
                reply = b"E03"
            if reply is None:  # D, k: the client is done
                return
            conn.send(reply)
            if self.on_stop is not None and reply[:1] in (b"T", b"W"):
                with contextlib.suppress(Exception):  # a view that fails must not end the connection
                    self.on_stop()
            if packet == b"QStartNoAckMode":
                conn.ack = False

    # --- packets -------------------------------------------------------------------------
    def _dispatch(self, packet: bytes) -> bytes | None:
        kind, body = packet[:1], packet[1:]
        if packet.startswith(b"q") or packet.startswith(b"Q"):
            return self._query(packet)
        if packet.startswith(b"v"):
            return self._v_packet(packet)
        if packet in (b"bs", b"bc"):
            return self._stop_reply(self._reverse(packet == b"bc"))
        handlers: dict[bytes, Callable[[bytes], bytes | None]] = {
            b"?": lambda _: self._stop_reply(self.session.last_stop, resumed=False),
            b"g": lambda _: self._read_all_registers(),
            b"G": self._write_all_registers,
            b"p": self._read_register,
            b"P": self._write_register,
            b"m": self._read_memory,
            b"M": self._write_memory,
            b"X": self._write_memory_binary,
            b"Z": lambda b: self._point(b, insert=True),
            b"z": lambda b: self._point(b, insert=False),
            b"c": lambda _: self._stop_reply(self._continue()),
            b"C": lambda _: self._stop_reply(self._continue()),
            b"s": lambda _: self._stop_reply(self._step(self._resume)),
            b"S": lambda _: self._stop_reply(self._step(self._resume)),
            b"H": self._select_thread,
            b"T": self._thread_alive,
            b"D": lambda _: self._detach(),
            b"k": lambda _: None,
        }
        handler = handlers.get(kind)
        if handler is None:
            return b""  # not supported: the empty reply (GDB manual E.1)
        return handler(body)

    def _detach(self) -> bytes | None:
        assert self._conn is not None
        self._conn.send(b"OK")
        return None

    def _query(self, packet: bytes) -> bytes:
        name, _, rest = packet.partition(b":")
        if name == b"qSupported":
            return (b"PacketSize=%x;qXfer:features:read+;QStartNoAckMode+;ReverseStep+;ReverseContinue+;"
                    b"vContSupported+" % PACKET_SIZE)
        if packet == b"QStartNoAckMode":
            return b"OK"  # acks stop after this reply (``_serve_client``)
        if packet == b"qAttached":
            return b"1"
        if packet == b"qC":
            return b"QC%x" % (self._current_cpu(self._general) + 1)
        if packet == b"qfThreadInfo":
            return b"m" + b",".join(b"%x" % (cpu + 1) for cpu in range(self.session.cpus))
        if packet == b"qsThreadInfo":
            return b"l"
        if name.startswith(b"qThreadExtraInfo"):
            cpu = self._cpu_of_thread(_thread_id(packet.split(b",", 1)[1]))
            return self._thread_text(cpu).encode().hex().encode()
        if name == b"qXfer" and rest.startswith(b"features:read:target.xml:"):
            offset, _, length = rest.removeprefix(b"features:read:target.xml:").partition(b",")
            return self._chunk(target_xml().encode(), _hex_int(offset), _hex_int(length))
        if name == b"qXfer":
            return b"E00"  # an object this server does not offer
        if packet.startswith(b"qRcmd,"):
            return self._monitor(_hex_bytes(packet[6:]).decode("utf-8", "replace"))
        if packet.startswith(b"qSymbol"):
            return b"OK"
        return b""

    @staticmethod
    def _chunk(data: bytes, offset: int, length: int) -> bytes:
        part = data[offset:offset + length]
        return (b"m" if offset + length < len(data) else b"l") + escape_binary(part)

    def _v_packet(self, packet: bytes) -> bytes:
        if packet == b"vCont?":
            return b"vCont;c;C;s;S"
        if packet.startswith(b"vCont;"):
            return self._stop_reply(self._v_cont(packet[6:]))
        if packet in (b"vKill", b"vMustReplyEmpty") or packet.startswith(b"vKill;"):
            return b"OK" if packet.startswith(b"vKill") else b""
        return b""

    def _v_cont(self, actions: bytes) -> StopInfo:
        """``vCont``: a step of one thread (the others run as the scheduler has them, a step of one
        CPU's worth), else a continue. An empty or unknown action is refused."""
        step_thread: int | None = None
        for action in actions.split(b";"):
            verb, _, thread = action.partition(b":")
            if verb[:1] not in (b"c", b"C", b"s", b"S", b"t") or (verb[:1] in b"CS" and len(verb) < 2):
                raise ProtocolError(f"vCont action {action[:20]!r}")
            if verb[:1] in (b"s", b"S"):
                if step_thread is None:
                    step_thread = _thread_id(thread) if thread else -1
            elif thread and verb[:1] in (b"c", b"C"):
                self._cpu_of_thread(_thread_id(thread))  # refuses a thread that does not exist
        if step_thread is not None:
            return self._step(step_thread)
        return self._continue()

    def _select_thread(self, body: bytes) -> bytes:
        which, thread = body[:1], _thread_id(body[1:])
        if thread > 0:
            self._cpu_of_thread(thread)
        if which == b"g":
            self._general = thread
        elif which == b"c":
            self._resume = thread
        else:
            raise ProtocolError(f"H{which!r}")
        return b"OK"

    def _thread_alive(self, body: bytes) -> bytes:
        self._cpu_of_thread(_thread_id(body))
        return b"OK"

    def _cpu_of_thread(self, thread: int) -> int:
        if thread in (-1, 0):
            return self._current_cpu(-1)
        if not 1 <= thread <= self.session.cpus:
            raise ProtocolError(f"no thread {thread}: the machine has threads 1 to {self.session.cpus}")
        return thread - 1

    def _current_cpu(self, thread: int) -> int:
        if thread > 0:
            return self._cpu_of_thread(thread)
        return self.session.focus_cpu()

    def _thread_text(self, cpu: int) -> str:
        state = self.session.cpu_states()[cpu]
        return f"CPU {cpu} powered off" if state == PowerState.OFF else f"CPU {cpu} {state}"

    # --- registers -----------------------------------------------------------------------
    def _register_bytes(self, cpu: int, number: int) -> bytes:
        if not 0 <= number < REGISTER_COUNT:
            raise ProtocolError(f"no register {number}")
        if _FIRST_VECTOR <= number <= _FPCR:
            vectors, fpsr, fpcr = self.session.vector_registers(cpu)
            if number < _FPSR:
                return vectors[number - _FIRST_VECTOR].to_bytes(16, "little")
            return (fpsr if number == _FPSR else fpcr).to_bytes(4, "little")
        _, name, size = _CORE[number] if number < _FIRST_VECTOR else _SYSTEM[number - _FIRST_SYSTEM]
        value = self.session.registers(cpu)[name]
        return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def _read_all_registers(self) -> bytes:
        cpu = self._current_cpu(self._general)
        return b"".join(self._register_bytes(cpu, n) for n in range(REGISTER_COUNT)).hex().encode()

    def _read_register(self, body: bytes) -> bytes:
        return self._register_bytes(self._current_cpu(self._general), _hex_int(body)).hex().encode()

    def _write_register(self, body: bytes) -> bytes:
        number_text, _, value_text = body.partition(b"=")
        number = _hex_int(number_text)
        self._set_register(self._current_cpu(self._general), number, _hex_bytes(value_text))
        return b"OK"

    def _set_register(self, cpu: int, number: int, value: bytes) -> None:
        if not 0 <= number < REGISTER_COUNT:
            raise ProtocolError(f"no register {number}")
        if _FIRST_VECTOR <= number <= _FPCR:
            if value != self._register_bytes(cpu, number):
                raise ProtocolError("the FP/SIMD registers are read-only here")
            return
        _, name, size = _CORE[number] if number < _FIRST_VECTOR else _SYSTEM[number - _FIRST_SYSTEM]
        if len(value) != size:
            raise ProtocolError(f"register {number} takes {size} bytes, not {len(value)}")
        new = int.from_bytes(value, "little")
        if name == "PSTATE":
            new |= self.session.registers(cpu)[name] & ~0xFFFF_FFFF  # cpsr is PSTATE's low 32 bits
        if new != self.session.registers(cpu)[name]:
            self.session.write_register(cpu, name, new)

    def _write_all_registers(self, body: bytes) -> bytes:
        cpu = self._current_cpu(self._general)
        data = _hex_bytes(body)
        sizes = [self._size(n) for n in range(REGISTER_COUNT)]
        if len(data) != sum(sizes):
            raise ProtocolError(f"G carries {len(data)} bytes, the registers take {sum(sizes)}")
        at = 0
        for number, size in enumerate(sizes):
            self._set_register(cpu, number, data[at:at + size])
            at += size
        return b"OK"

    @staticmethod
    def _size(number: int) -> int:
        if number < _FIRST_VECTOR:
            return _CORE[number][2]
        if number < _FPSR:
            return 16
        if number <= _FPCR:
            return 4
        return _SYSTEM[number - _FIRST_SYSTEM][2]

    # --- memory --------------------------------------------------------------------------
    def _address_length(self, text: bytes) -> tuple[int, int]:
        address_text, _, length_text = text.partition(b",")
        address, length = _hex_int(address_text), _hex_int(length_text)
        if length > PACKET_SIZE:
            raise ProtocolError(f"{length} bytes at once: at most {PACKET_SIZE}")
        return address, length

    def _read_memory(self, body: bytes) -> bytes:
        address, length = self._address_length(body)
        # The reply spells each byte in two characters: at most half a packet's worth at once.
        data = self.session.read_memory(address, min(length, PACKET_SIZE // 2), self._current_cpu(self._general))
        if length and not data:
            return b"E14"  # EFAULT: nothing there
        return data.hex().encode()

    def _write_memory(self, body: bytes) -> bytes:
        """``M addr,length:hex``."""
        return self._write_memory_as(body, b"M", _hex_bytes)

    def _write_memory_binary(self, body: bytes) -> bytes:
        """``X addr,length:binary`` (escaped, GDB manual E.1)."""
        return self._write_memory_as(body, b"X", unescape_binary)

    def _write_memory_as(self, body: bytes, packet: bytes, decode: Callable[[bytes], bytes]) -> bytes:
        where, _, data = body.partition(b":")
        address, length = self._address_length(where)
        payload = decode(data)
        if len(payload) != length:
            raise ProtocolError(f"{packet.decode()} says {length} bytes and carries {len(payload)}")
        if length:
            self.session.write_memory(address, payload, self._current_cpu(self._general))
        return b"OK"

    # --- breakpoints and watchpoints -------------------------------------------------------
    def _point(self, body: bytes, *, insert: bool) -> bytes:
        parts = body.split(b";", 1)[0].split(b",")
        if len(parts) != 3:
            raise ProtocolError("Z/z takes type,address,kind")
        kind, address, size = _hex_int(parts[0]), _hex_int(parts[1]), _hex_int(parts[2])
        session = self.session
        if kind in (0, 1):  # software and hardware breakpoints are both the session's address breakpoints
            if insert:
                session.add_breakpoint(address)
            else:
                session.remove_breakpoint(address)
            return b"OK"
        if kind in (2, 3, 4):
            access = {2: "write", 3: "read", 4: "access"}[kind]
            if not 1 <= size <= PACKET_SIZE:
                raise ProtocolError(f"a watchpoint of {size} bytes")
            if insert:
                session.add_watchpoint(address, size, access)
            else:
                session.remove_watchpoint(address, size, access)
            return b"OK"
        return b""

    # --- execution -----------------------------------------------------------------------
    def _continue(self) -> StopInfo:
        return self.session.run(progress=self._poll)

    def _step(self, thread: int) -> StopInfo:
        return self.session.step(1, cpu=self._current_cpu(thread if thread > 0 else self._resume))

    def _reverse(self, to_stop: bool) -> StopInfo:
        session = self.session
        if not to_stop:
            cpu = self._current_cpu(self._resume)
            # Firmware may have changed this CPU without an instruction of its own: an SDEI
            # dispatch enters the handler between two instructions (DEN0054 "Event dispatch"). Going
            # back over that comes first, to the interrupted instruction; only if nothing happened
            # to the CPU since its last instruction does the step go back over an instruction.
            before = session.registers(cpu)
            info = session.step_back(0, cpu=cpu)
            if session.registers(cpu) != before:
                return info
            return session.step_back(1, cpu=cpu)
        info = session.reverse_continue()
        if info.reason == "watchpoint" and info.cpu is not None:
            # The session lands before the access, where a forward run stopped. gdb treats an
            # AArch64 watchpoint as one that traps before the access and steps over it itself, in
            # the direction of travel: going backward it steps back over the accessing
            # instruction. So it is told of the hit just after that instruction, and lands before it.
            address, access = info.address, info.access
            session.step(1, cpu=info.cpu)
            info = replace(session.last_stop, reason="watchpoint", address=address, access=access)
        return info

    def _poll(self, _done: int, _total: int | None) -> None:
        """Between chunks of a run: a Ctrl-C (or a client gone) pauses it."""
        if self.on_output is not None:
            self.on_output()
        conn = self._conn
        if conn is None or self._closed.is_set():
            self.session.pause()
            return
        try:
            while conn.fill(_POLL_S):
                pass
        except _Disconnected:
            self.session.pause()
            return
        if b"\x03" in conn.buffer or conn.interrupted:
            conn.interrupted = False
            conn.buffer[:] = conn.buffer.replace(b"\x03", b"")
            self.session.pause()

    def _stop_reply(self, info: StopInfo, *, resumed: bool = True) -> bytes:
        """T packet for a stop (GDB manual E.3 "Stop Reply Packets")."""
        if self.on_output is not None:
            self.on_output()
        session = self.session
        reason = info.reason
        if reason in _FINAL and resumed and self._conn is not None:
            # The guest's end is a stop, not an exit ("W"): gdb forgets a process that exited, and
            # going back from the end (reverse-continue, reverse-stepi) is the point of a
            # deterministic machine. What ended it is said on gdb's console (an "O" packet, which
            # may come only before the stop reply of a resumption, not in answer to "?").
            text = f"sdeilab: {info.detail} ({reason}); reverse-continue or reverse-stepi go back, kill ends\n"
            self._conn.send(b"O" + text.encode().hex().encode())
        cpu = info.cpu if info.cpu is not None else session.focus_cpu()
        self._general = self._resume = -1
        signal = {StopReason.PAUSED.value: SIGINT, StopReason.FAULT.value: SIGSEGV}.get(reason, SIGTRAP)
        extra = b""
        address = getattr(info, "address", None)
        if reason == "watchpoint" and address is not None:
            access = getattr(info, "access", "write")
            kind = {"write": b"watch", "read": b"rwatch"}.get(access, b"awatch")
            extra = kind + b":%x;" % address
        elif reason in ("history-start", "history-begin"):
            extra = b"replaylog:begin;"
        return b"T%02xthread:%x;%s" % (signal, cpu + 1, extra)

    # --- monitor -------------------------------------------------------------------------
    def _monitor(self, command: str) -> bytes:
        words = command.split()
        try:
            text = self._monitor_text(words)
        except (ValueError, TypeError, KeyError) as error:
            text = f"error: {error}\n"
        assert self._conn is not None
        for start in range(0, len(text), 512):
            self._conn.send(b"O" + text[start:start + 512].encode().hex().encode())
        return b"OK"

    def _monitor_text(self, words: list[str]) -> str:
        session = self.session
        if not words or words[0] == "help":
            return MONITOR_HELP
        verb, args = words[0], words[1:]
        if verb == "break" and args:
            cpu = int(args[2]) if len(args) >= 3 and args[1] == "cpu" else None
            point = session.break_on(EVENT_ALIASES.get(args[0], args[0]), cpu)
            return f"the next run stops after {point.name}{'' if cpu is None else f' on CPU {cpu}'}\n"
        if verb == "delete" and args:
            if args[0] == "all":
                for point in session.event_breaks:
                    session.remove_event_break(point)
                return "no firmware-event breaks left\n"
            name = EVENT_ALIASES.get(args[0], args[0])
            for point in session.event_breaks:
                if point.name == name:
                    session.remove_event_break(point)
            return f"deleted {name}\n"
        if verb == "breaks":
            lines = [f"{p.name}{'' if p.cpu is None else f' on CPU {p.cpu}'}" for p in session.event_breaks]
            return "\n".join(lines or ["no firmware-event breaks"]) + "\n"
        if verb == "trace":
            count = int(args[1]) if len(args) >= 2 and args[0] == "last" else int(args[0]) if args else 20
            if not 0 < count <= 10_000:
                raise ValueError("trace last N takes 1 to 10000")
            trace = session.trace
            return "".join(describe_fact(trace[i]) + "\n" for i in range(max(0, len(trace) - count), len(trace)))
        if verb == "profile":
            profile = session.profile
            conduits = ", ".join(f"{k} -> {v}" for k, v in profile.conduits.items())
            services = ", ".join(f"{k} in {v}" for k, v in profile.services.items())
            return f"profile {profile.name}: conduits {conduits}; services {services}\n"
        if verb == "phys" and args:
            address = int(args[0], 0)
            length = int(args[1], 0) if len(args) > 1 else 64
            if not 0 < length <= 4096:
                raise ValueError("phys ADDRESS [LENGTH] takes 1 to 4096 bytes")
            data = session.read_memory(address, length, physical=True)
            if not data:
                return f"0x{address:x}: not RAM\n"
            return "".join(f"0x{address + at:016x}: {data[at:at + 16].hex(' ')}\n" for at in range(0, len(data), 16))
        if verb == "phys-write" and len(args) == 2:
            address, data = int(args[0], 0), bytes.fromhex(args[1])
            if not 0 < len(data) <= 4096:
                raise ValueError("phys-write ADDRESS HEXBYTES takes 1 to 4096 bytes")
            session.write_memory(address, data, physical=True)
            return f"wrote {len(data)} bytes at physical 0x{address:x}\n"
        if verb == "checkpoints":
            return "".join(f"{retired:>15,} instructions, {length:,} facts\n"
                           for retired, length in session.checkpoints)
        if verb == "where":
            stop = session.last_stop
            return f"{stop.reason}: {stop.detail} at {stop.retired:,} instructions\n"
        if verb == "raise" and len(args) == 2:
            session.raise_event(int(args[0], 0), int(args[1], 0))
            return f"event {args[0]} raised on CPU {args[1]}\n"
        raise ValueError(f"unknown monitor command {' '.join(words)!r} (monitor help lists them)")


MONITOR_HELP = """sdeilab monitor commands:
  break EVENT [cpu N]   stop after a firmware event: sdei-dispatch, sdei-complete, cpu-on, cpu-off,
                        an SMCCC function (SDEI_EVENT_COMPLETE, CPU_ON, ...) or a fact kind
  delete EVENT|all      remove firmware-event breaks;  breaks: list them
  trace last N          the last N facts of the trace
  profile               who answers which firmware call, on which conduit
  phys ADDRESS [LEN]    physical memory (gdb's x reads virtual memory as the thread's CPU sees it)
  phys-write ADDRESS HEXBYTES   write physical memory (e.g. phys-write 0x40100000 1f2003d5)
  raise EVENT CPU       raise an SDEI event on a CPU, as a hypervisor would
  checkpoints, where    the snapshots reverse execution starts from; where the run stands
"""


def describe_fact(fact: object) -> str:
    """One fact on one line: sequence number, CPU, virtual time, kind and its own fields."""
    own = {f.name: getattr(fact, f.name) for f in fields(fact)  # type: ignore[arg-type]
           if f.name not in ("seq", "cpu", "vtime")}
    text = " ".join(f"{k}={_short(v)}" for k, v in own.items())
    return (f"#{getattr(fact, 'seq', '?')} CPU {getattr(fact, 'cpu', '?')} vtime {getattr(fact, 'vtime', '?'):,} "
            f"{type(fact).__name__} {text}")


def _short(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"0x{value:x}" if value > 9 else str(value)
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_short(v) for v in value) + ")"
    return str(value)


@contextlib.contextmanager
def serving(session: Session, port: int = 0) -> Iterator[GdbServer]:
    """A server in a background thread for the ``with`` block."""
    server = GdbServer(session, port).start()
    try:
        yield server
    finally:
        server.close()
