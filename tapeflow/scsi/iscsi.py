"""iSCSI transport: one libiscsi session per instance, via cython-iscsi plus a small ctypes adapter.

cython-iscsi 1.0 only exposes ``Task.status``: no sense bytes, no residual, and it never frees
the libiscsi task. This module reads the C ``struct scsi_task`` (scsi-lowlevel.h) directly with
ctypes to get status, residual and raw sense, frees the task with ``scsi_free_scsi_task`` and
nulls the pointer held by the Cython object. The pointer offset is checked on every command
(the struct's CDB must equal the CDB we passed), so a layout change fails loudly, not silently.

Caveats (cython-iscsi 1.0): ``Context.command`` holds the GIL for the whole command, so two
sessions driven from threads of one process do not overlap their I/O; use processes for
parallel drives. A command whose connection died mid-flight leaves libiscsi holding pointers
to that command, so the session is then *poisoned*: it raises ``IscsiConnectionError`` for
every later call and is never touched again (its memory is leaked on purpose, not freed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import threading
import uuid
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import iscsi

from tapeflow.scsi.sense import BLANK_CHECK, parse_sense
from tapeflow.scsi.transport import CommandResult

__all__ = [
    "IscsiConnectionError",
    "IscsiError",
    "IscsiTimeout",
    "IscsiTransport",
]

# --- libiscsi ABI (libiscsi 1.19, x86-64; offsets verified against scsi-lowlevel.h) -----------
_SCSI_CDB_MAX_SIZE = 16
_XFER_NONE, _XFER_READ, _XFER_WRITE = 0, 1, 2
_RESIDUAL_UNDERFLOW = 1
_RESIDUAL_OVERFLOW = 2
_STATUS_CANCELLED = 0x0F000000
_STATUS_ERROR = 0x0F000001
_STATUS_TIMEOUT = 0x0F000002
# Written into task->status before a command; if it is still there afterwards, libiscsi never
# completed the task (the event loop gave up): the connection is gone.
_STATUS_PENDING = 0x0F0000EE
_SESSION_NORMAL = 1
_HEADER_DIGEST_NONE = 0


class _ScsiSense(ctypes.Structure):
    """struct scsi_sense (libiscsi's decoded sense; we use the raw bytes instead)."""

    _fields_ = [
        ("error_type", ctypes.c_ubyte),
        ("key", ctypes.c_int),
        ("ascq", ctypes.c_int),
        ("bitfields", ctypes.c_ubyte),  # sense_specific:1, ill_param_in_cdb:1, ... (gcc packs)
        ("bit_pointer", ctypes.c_ubyte),
        ("field_pointer", ctypes.c_uint16),
    ]


class _ScsiData(ctypes.Structure):
    """struct scsi_data: on CHECK CONDITION, data[0:2] is the sense length, the sense follows."""

    _fields_ = [("size", ctypes.c_int), ("data", ctypes.POINTER(ctypes.c_ubyte))]


class _ScsiIovector(ctypes.Structure):
    """struct scsi_iovector (only here to size struct scsi_task)."""

    _fields_ = [
        ("iov", ctypes.c_void_p),
        ("niov", ctypes.c_int),
        ("nalloc", ctypes.c_int),
        ("offset", ctypes.c_size_t),
        ("consumed", ctypes.c_int),
    ]


class _ScsiTask(ctypes.Structure):
    """struct scsi_task from /usr/include/iscsi/scsi-lowlevel.h."""

    _fields_ = [
        ("status", ctypes.c_int),
        ("cdb_size", ctypes.c_int),
        ("xfer_dir", ctypes.c_int),
        ("expxferlen", ctypes.c_int),
        ("cdb", ctypes.c_ubyte * _SCSI_CDB_MAX_SIZE),
        ("residual_status", ctypes.c_int),
        ("residual", ctypes.c_size_t),
        ("sense", _ScsiSense),
        ("datain", _ScsiData),
        ("mem", ctypes.c_void_p),
        ("ptr", ctypes.c_void_p),
        ("itt", ctypes.c_uint32),
        ("cmdsn", ctypes.c_uint32),
        ("lun", ctypes.c_uint32),
        ("iovector_in", _ScsiIovector),
        ("iovector_out", _ScsiIovector),
    ]


# Offsets measured with offsetof() against the installed header (libiscsi 1.19, LP64).
_EXPECTED_LAYOUT = {"residual_status": 32, "residual": 40, "sense": 48, "datain": 64}
_EXPECTED_TASK_SIZE = 176


def _check_layout() -> None:
    """Refuse to run if our ctypes mirror of struct scsi_task does not match the C layout."""
    got = {name: getattr(_ScsiTask, name).offset for name in _EXPECTED_LAYOUT}
    if ctypes.sizeof(ctypes.c_void_p) == 8 and (
        got != _EXPECTED_LAYOUT or ctypes.sizeof(_ScsiTask) != _EXPECTED_TASK_SIZE
    ):
        raise ImportError(
            f"struct scsi_task mirror mismatch: {got}, size {ctypes.sizeof(_ScsiTask)}"
        )


_check_layout()


def _load_libiscsi() -> ctypes.CDLL:
    """Load libiscsi (the same shared library the cython-iscsi extension links against)."""
    name = ctypes.util.find_library("iscsi")
    if name is None:
        raise ImportError("libiscsi shared library not found (install libiscsi7)")
    lib = ctypes.CDLL(name)
    lib.scsi_free_scsi_task.argtypes = [ctypes.c_void_p]
    lib.scsi_free_scsi_task.restype = None
    lib.iscsi_get_error.argtypes = [ctypes.c_void_p]
    lib.iscsi_get_error.restype = ctypes.c_char_p
    lib.iscsi_get_fd.argtypes = [ctypes.c_void_p]
    lib.iscsi_get_fd.restype = ctypes.c_int
    lib.iscsi_is_logged_in.argtypes = [ctypes.c_void_p]
    lib.iscsi_is_logged_in.restype = ctypes.c_int
    lib.iscsi_logout_sync.argtypes = [ctypes.c_void_p]
    lib.iscsi_logout_sync.restype = ctypes.c_int
    lib.iscsi_destroy_context.argtypes = [ctypes.c_void_p]
    lib.iscsi_destroy_context.restype = ctypes.c_int
    for fn in ("iscsi_set_timeout", "iscsi_set_noautoreconnect"):
        if hasattr(lib, fn):
            getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_int]
            getattr(lib, fn).restype = ctypes.c_int
    if hasattr(lib, "iscsi_set_tcp_user_timeout"):
        lib.iscsi_set_tcp_user_timeout.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.iscsi_set_tcp_user_timeout.restype = None
    return lib


_lib = _load_libiscsi()
_PTR_SIZE = ctypes.sizeof(ctypes.c_void_p)


class IscsiError(Exception):
    """An iSCSI-level failure (login, connection, timeout), as opposed to a SCSI CHECK CONDITION."""


class IscsiConnectionError(IscsiError):
    """The session is gone (target died, connection dropped); this transport cannot be reused."""


class IscsiTimeout(IscsiConnectionError):
    """A command got no answer within the timeout; the session is abandoned."""


def _pointer_slot(obj: object, what: str) -> ctypes.c_void_p:
    """The C pointer stored right after the PyObject header of a one-field Cython object."""
    cls = type(obj)
    if cls.__basicsize__ != object.__basicsize__ + _PTR_SIZE:
        raise IscsiError(
            f"unexpected cython-iscsi {what} layout (basicsize {cls.__basicsize__}); "
            "this adapter supports cython-iscsi 1.0 only"
        )
    return ctypes.c_void_p.from_address(id(obj) + cls.__basicsize__ - _PTR_SIZE)


def _new_initiator_name() -> str:
    """A unique IQN per session, so SCSI reservations can tell two handles apart."""
    host = "".join(c if c.isalnum() else "-" for c in socket.gethostname().lower()) or "host"
    return f"iqn.2024-01.io.tapeflow:{host}.{uuid.uuid4().hex[:12]}"


class IscsiTransport:
    """Transport over one iSCSI session to one LUN (cython-iscsi + ctypes for status/sense)."""

    def __init__(
        self,
        portal: str,
        target_iqn: str,
        lun: int,
        *,
        initiator: str | None = None,
        timeout: int = 60,
    ) -> None:
        """Log in to `target_iqn` at `portal` ("host:port"); `timeout` (s) bounds every PDU."""
        self.portal = portal
        self.target_iqn = target_iqn
        self.lun = lun
        self.initiator = initiator or _new_initiator_name()
        self.timeout = timeout
        self._lock = threading.Lock()
        self._closed = False
        self._broken: str | None = None
        # Objects libiscsi may still point at after a failed command: kept alive forever.
        self._graveyard: list[Any] = []
        self._ctx = iscsi.Context(self.initiator)
        self._ctx_slot = _pointer_slot(self._ctx, "Context")
        ptr = self._ctx_slot.value
        if not ptr or _lib.iscsi_get_fd(ptr) != -1 or _lib.iscsi_is_logged_in(ptr) != 0:
            raise IscsiError("cython-iscsi Context does not hold a fresh iscsi_context pointer")
        self._ctx_ptr: int = ptr
        self._configure_context()
        try:
            self._ctx.set_targetname(target_iqn)
            self._ctx.set_session_type(iscsi.iscsi_session_type.ISCSI_SESSION_NORMAL)
            self._ctx.set_header_digest(iscsi.iscsi_header_digest.ISCSI_HEADER_DIGEST_NONE)
            self._ctx.connect(portal, lun)
        except (RuntimeError, ValueError) as exc:
            detail = self._last_error()
            self._destroy_context()
            raise IscsiConnectionError(
                f"iSCSI login to {target_iqn} lun {lun} at {portal} failed: {detail or exc}"
            ) from exc
        if _lib.iscsi_is_logged_in(self._ctx_ptr) != 1 or _lib.iscsi_get_fd(self._ctx_ptr) < 0:
            self._destroy_context()
            raise IscsiError(
                "connected, but the context pointer does not report a logged-in session"
            )

    @classmethod
    def from_url(
        cls, url: str, *, initiator: str | None = None, timeout: int = 60
    ) -> IscsiTransport:
        """Open ``iscsi://host[:port]/<target-iqn>/<lun>`` (port defaults to 3260)."""
        parts = urlsplit(url)
        if parts.scheme != "iscsi" or not parts.hostname:
            raise ValueError(f"not an iscsi:// URL: {url!r}")
        if parts.username or parts.password:
            raise ValueError("CHAP credentials in the URL are not supported")
        segments = [unquote(s) for s in parts.path.split("/") if s]
        if len(segments) != 2 or not segments[1].isdigit():
            raise ValueError(f"expected iscsi://host[:port]/<target-iqn>/<lun>, got {url!r}")
        host = parts.hostname
        if ":" in host:
            host = f"[{host}]"
        portal = f"{host}:{parts.port or 3260}"
        return cls(portal, segments[0], int(segments[1]), initiator=initiator, timeout=timeout)

    # --- context setup / teardown ---------------------------------------------------------------
    def _configure_context(self) -> None:
        """No silent reconnects (a replayed tape WRITE duplicates data) and bounded waits."""
        if hasattr(_lib, "iscsi_set_noautoreconnect"):
            _lib.iscsi_set_noautoreconnect(self._ctx_ptr, 1)
        if self.timeout > 0:
            if hasattr(_lib, "iscsi_set_timeout"):
                _lib.iscsi_set_timeout(self._ctx_ptr, int(self.timeout))
            if hasattr(_lib, "iscsi_set_tcp_user_timeout"):
                _lib.iscsi_set_tcp_user_timeout(self._ctx_ptr, int(self.timeout) * 1000)

    def _last_error(self) -> str:
        """libiscsi's last error text for this context."""
        raw = _lib.iscsi_get_error(self._ctx_ptr) if self._ctx_ptr else None
        return raw.decode("utf-8", "replace") if raw else ""

    def _destroy_context(self) -> None:
        """Free the libiscsi context and null the Cython object's pointer to it."""
        if self._ctx_ptr:
            _lib.iscsi_destroy_context(self._ctx_ptr)
            self._ctx_slot.value = None
            self._ctx_ptr = 0

    # --- the Transport protocol -------------------------------------------------------------------
    def execute(
        self, cdb: bytes, data_out: bytes | memoryview | None = None, data_in_len: int = 0
    ) -> CommandResult:
        """Run `cdb`; data_in is exactly the bytes the target sent (allocation minus residual)."""
        cdb = bytes(cdb)
        if not 1 <= len(cdb) <= _SCSI_CDB_MAX_SIZE:
            raise ValueError(f"CDB must be 1..16 bytes, got {len(cdb)}")
        out = _as_bytearray(data_out)
        if out and data_in_len:
            raise ValueError("bidirectional commands are not supported")
        if data_in_len < 0:
            raise ValueError("data_in_len must be >= 0")
        if out:
            direction, xferlen = iscsi.scsi_xfer_dir.SCSI_XFER_WRITE, len(out)
        elif data_in_len:
            direction, xferlen = iscsi.scsi_xfer_dir.SCSI_XFER_READ, data_in_len
        else:
            direction, xferlen = iscsi.scsi_xfer_dir.SCSI_XFER_NONE, 0
        buf_in = bytearray(data_in_len)
        with self._lock:
            self._check_usable()
            task = iscsi.Task(cdb, direction, xferlen)
            slot = _pointer_slot(task, "Task")
            ptr = slot.value
            if not ptr:
                raise IscsiError("libiscsi could not allocate a task")
            st = _ScsiTask.from_address(ptr)
            if st.cdb_size != len(cdb) or bytes(st.cdb[: len(cdb)]) != cdb:
                # Wrong offset: do not free what may not be a task. Leak it and stop.
                self._graveyard.append(task)
                raise IscsiError(
                    "cython-iscsi Task layout not recognised (struct scsi_task CDB mismatch); "
                    "this adapter supports cython-iscsi 1.0 only"
                )
            st.status = _STATUS_PENDING
            self._ctx.command(self.lun, task, out, buf_in)
            status = st.status
            if status == _STATUS_PENDING:
                # libiscsi still references this task, its buffers and a dead stack frame.
                self._graveyard.extend((task, out, buf_in))
                self._broken = f"connection lost: {self._last_error() or 'no reply'}"
                raise IscsiConnectionError(
                    f"{self._describe()}: command {cdb[0]:#04x} not completed ({self._broken})"
                )
            try:
                if status in (_STATUS_CANCELLED, _STATUS_ERROR, _STATUS_TIMEOUT):
                    self._broken = {
                        _STATUS_CANCELLED: "command cancelled",
                        _STATUS_ERROR: "transport error",
                        _STATUS_TIMEOUT: f"no reply within {self.timeout}s",
                    }[status]
                    detail = self._last_error()
                    msg = f"{self._describe()}: command {cdb[0]:#04x}: {self._broken}"
                    msg += f" ({detail})" if detail else ""
                    if status == _STATUS_TIMEOUT:
                        raise IscsiTimeout(msg)
                    raise IscsiConnectionError(msg)
                transferred = data_in_len
                if st.residual_status == _RESIDUAL_UNDERFLOW:
                    transferred = max(0, data_in_len - int(st.residual))
                sense = b""
                if st.datain.size >= 2 and st.datain.data:
                    raw = ctypes.string_at(st.datain.data, st.datain.size)
                    sense_len = int.from_bytes(raw[:2], "big")
                    sense = raw[2 : 2 + sense_len]
                if status == 0x02 and sense:
                    transferred = _variable_read_actual(cdb, sense, transferred, data_in_len)
                data = bytes(memoryview(buf_in)[:transferred]) if transferred else b""
                return CommandResult(status=status, data_in=data, sense=sense)
            finally:
                _lib.scsi_free_scsi_task(ptr)
                slot.value = None

    def close(self) -> None:
        """Log out and free the session (a poisoned session is only abandoned)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._broken is not None or not self._ctx_ptr:
                return  # libiscsi may still reference in-flight state: touch nothing
            try:
                if _lib.iscsi_is_logged_in(self._ctx_ptr):
                    _lib.iscsi_logout_sync(self._ctx_ptr)  # best effort: the target may be gone
                self._ctx.disconnect()
            except RuntimeError as exc:
                raise IscsiConnectionError(f"{self._describe()}: disconnect failed") from exc
            finally:
                self._destroy_context()

    # --- helpers ---------------------------------------------------------------------------------
    def _check_usable(self) -> None:
        """Raise if closed or poisoned."""
        if self._closed:
            raise IscsiError(f"{self._describe()}: transport is closed")
        if self._broken is not None:
            raise IscsiConnectionError(f"{self._describe()}: session unusable ({self._broken})")

    def _describe(self) -> str:
        return f"iSCSI {self.target_iqn} lun {self.lun} at {self.portal}"

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("broken" if self._broken else "open")
        return f"<IscsiTransport {self.portal} {self.target_iqn} lun={self.lun} {state}>"

    def __enter__(self) -> IscsiTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _variable_read_actual(cdb: bytes, sense: bytes, transferred: int, alloc: int) -> int:
    """Bytes really read by a variable-block SSC READ(6) that ended in CHECK CONDITION.

    tgt 1.0.85 reports a wrong iSCSI residual here (residual = bytes read instead of bytes not
    read; none at all at a filemark or end of data) and pads the Data-In with stale buffer
    bytes. SSC defines the truth in the sense data: for ILI/FM/EOM the INFORMATION field is
    requested length - actual block length (negative when the block was longer: the
    requested length was transferred), and BLANK CHECK transfers nothing. For a compliant
    device this agrees with the residual, so it is applied to every target.
    """
    if len(cdb) != 6 or cdb[0] != 0x08 or cdb[1] & 0x01:  # not READ(6) variable
        return transferred
    parsed = parse_sense(sense)
    requested = int.from_bytes(cdb[2:5], "big")
    if parsed.key == BLANK_CHECK and parsed.information is None:
        return 0
    if parsed.information is not None and (parsed.ili or parsed.filemark or parsed.eom):
        actual = requested - parsed.information
        return max(0, min(actual, requested, alloc))
    return transferred


def _as_bytearray(data: bytes | bytearray | memoryview | None) -> bytearray:
    """cython-iscsi's command() accepts only bytearray; avoid a copy when we already have one."""
    if data is None:
        return bytearray()
    if type(data) is bytearray:
        return data
    return bytearray(data)
