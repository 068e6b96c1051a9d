"""A real tape library for tests: tgtd (Linux SCSI target) with a changer and tape drives.

Layout: LUN 0 is tgt's own "controller" LU (cannot be deleted or replaced), tape drives are
LUN 1..N (``--device-type tape --bstype ssc``, created without media, offline), the changer is
LUN N+1 (``--device-type changer`` over a 1 KiB backing file; elements via ``--params``; media
looked up as ``media_home/<barcode>``; barcodes <= 10 chars). Element addresses: picker 1,
drives 0x100+i, import/export 0x300+i, storage 0x400+i. tgtd ignores SIGTERM: it is SIGKILLed
(plus PR_SET_PDEATHSIG so it dies with the test process).

What tgt 1.0.85 does (raw CDBs over IscsiTransport; sense shown as key/ASC/ASCQ):

=============================== ===============================================================
INQUIRY changer / drive         type 08h / 01h, RMB=1, 66 bytes (residual honoured); vendor and
                                product from ``--params vendor_id/product_id``
TEST UNIT READY                 changer GOOD (no power-on UA); empty drive 02/3A/00 NoMedium
READ ELEMENT STATUS             per type OK, 52-byte VOLTAG descriptors, barcode space-padded,
                                SVALID+source after moves; ACCESS/ImpExp/InEnab bits never set.
                                Reply is 8 bytes short (8+n*52, forgets the page header): the
                                last descriptor has 44 of 52 bytes. Type 0 (all) is garbled
                                (pages overwrite each other): query each type separately.
MODE SENSE 1Dh (changer)        correct: picker 1/1, storage, I/E, drives first/count
MOVE MEDIUM slot->drive         GOOD; drive ready at once (TUR GOOD, no UA, LOAD not needed)
  into full element             05/3B/0D DestinationFull
  from empty element            05/3B/0E SourceEmpty
  bad address                   05/24/00 (not 21/01)
  out of drive, no UNLOAD       GOOD; drive then 02/3A/00. After PREVENT (1Eh) on the drive:
                                05/53/02. LOAD/UNLOAD (1Bh) are GOOD no-ops
  image unreadable (chattr +i)  04/15/01 HardwareError, cartridge stays in the source slot
WRITE(6) variable               any size up to at least 8 MiB (READ BLOCK LIMITS says 1 MiB)
WRITE FILEMARKS, REWIND, SPACE  GOOD. SPACE blocks/filemarks past EOD: 00/00/05, no EOM bit,
                                no residue (real drives: 08/00/05 + info). SPACE EOD (code 3) OK
READ(6) variable                exact: GOOD. Short block: 00/00/00 ILI, info=req-actual. Long
                                block: ILI, info negative, req bytes. Filemark: 00/00/01 FM,
                                info=req, tape positioned after the mark. EOD: 08/00/00 + EOM
                                bit, no info (real: 08/00/05). tgt's iSCSI residual is WRONG on
                                these (it reports the bytes read as residual, none at FM/EOD)
                                and it pads Data-In with stale bytes: IscsiTransport corrects
                                data_in from the sense INFORMATION field
READ POSITION short/long        GOOD but all zeros, always: useless, track position yourself
LOCATE(10)/(16)                 05/20/00 invalid opcode: position with REWIND + SPACE
past cartridge size             data IS written, 00/00/00 + EOM bit, no info (EndOfMedium);
                                keeps writing (file grows); never 0Dh VOLUME OVERFLOW
write protect                   no per-cartridge WP (tgtimg has no flag, root ignores chmod;
                                WORM type not enforced). ``readonly=1`` on the *drive* LUN:
                                WRITE -> 07/27/00 WriteProtected, MODE SENSE WP bit set
                                (``set_write_protect``)
RESERVE(6)/RELEASE(6)           05/20/00 on drives and changer; PERSISTENT RESERVE IN too; a
                                second session can use a drive freely (no reservations at all)
dead tgtd                       next command: IscsiConnectionError at once (session poisoned)
=============================== ===============================================================
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
import weakref
from pathlib import Path
from types import TracebackType

from tapeflow.library.spec import LibrarySpec
from tapeflow.scsi.iscsi import IscsiTransport

__all__ = ["TgtError", "TgtLibrary"]

_TGT_SOCKET_DIR = Path("/var/run/tgtd")
_TOOLS = ("tgtd", "tgtadm", "tgtimg")
_START_TIMEOUT = 10.0

# Element addresses (SMC). tgt needs every start address >= 1.
TRANSPORT_ADDRESS = 1
DRIVE_BASE = 0x100
MAIL_BASE = 0x300
SLOT_BASE = 0x400


class TgtError(RuntimeError):
    """tgtd could not be started or configured."""


def _die_with_parent() -> None:
    """Child-side: ask the kernel to SIGKILL tgtd if the Python process dies first."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _stop_process(proc: subprocess.Popen[bytes], control_port: int) -> None:
    """SIGKILL tgtd (it ignores SIGTERM) and remove its control socket files."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for name in (f"socket.{control_port}", f"socket.{control_port}.lock"):
        with contextlib.suppress(FileNotFoundError):
            (_TGT_SOCKET_DIR / name).unlink()


def _control_port_free(port: int) -> bool:
    """True if no running tgtd holds the lock for control port `port`."""
    lock = _TGT_SOCKET_DIR / f"socket.{port}.lock"
    if not lock.exists():
        return True
    with open(lock, "a+b") as fh:
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB, 1)
        except OSError:
            return False
        fcntl.lockf(fh, fcntl.LOCK_UN, 1)
    return True


def _free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TgtLibrary:
    """tgtd child process exporting one target: tape drives at LUN 1..N, the changer after them.

    tgt reserves LUN 0 for its own "controller" device (it cannot be deleted or replaced), so
    the changer is LUN drives+1, as in tgt's README.vtl.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        drives: int = 2,
        slots: int = 8,
        mail_slots: int = 1,
        cartridges: int = 6,
        cartridge_mb: int = 64,
        barcode_prefix: str = "TG",
        disks: tuple[Path, ...] = (),
    ) -> None:
        """Describe the library; nothing starts before ``__enter__``. `disks` are image files
        exported as disk LUNs after the changer (a SAN without a copy manager)."""
        if not 1 <= drives <= 64 or not 1 <= slots <= 512 or not 0 <= mail_slots <= 64:
            raise ValueError("drives 1..64, slots 1..512, mail_slots 0..64")
        if not 0 <= cartridges <= slots:
            raise ValueError("cartridges must fit in the storage slots")
        width = 8 - len(barcode_prefix)
        if width < 3:
            raise ValueError("barcode_prefix too long: tgt barcodes are at most 10 characters")
        self.workdir = Path(workdir)
        self.media_home = self.workdir / "media"
        self.drives = drives
        self.slots = slots
        self.mail_slots = mail_slots
        self.cartridge_mb = cartridge_mb
        self.barcodes = [f"{barcode_prefix}{i + 1:0{width}d}" for i in range(cartridges)]
        self.target_iqn = f"iqn.2024-01.io.tapeflow.test:tgt-{uuid.uuid4().hex[:10]}"
        self.tid = 1
        self.drive_luns = list(range(1, drives + 1))
        self.changer_lun = drives + 1
        self.disks = tuple(Path(d).resolve() for d in disks)
        self.disk_luns = [self.changer_lun + 1 + i for i in range(len(self.disks))]
        self.transport_address = TRANSPORT_ADDRESS
        self.drive_addresses = [DRIVE_BASE + i for i in range(drives)]
        self.slot_addresses = [SLOT_BASE + i for i in range(slots)]
        self.mail_addresses = [MAIL_BASE + i for i in range(mail_slots)]
        self.port = 0
        self.control_port = 0
        self.portal = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._transports: list[IscsiTransport] = []

    # --- availability ----------------------------------------------------------------------------
    @staticmethod
    def available() -> str | None:
        """None if tgtd/tgtadm/tgtimg exist and tgtd can run here, else the reason why not."""
        missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
        if missing:
            return f"tgt tools not installed: {', '.join(missing)} (apt-get install tgt)"
        if os.geteuid() != 0:
            try:
                _TGT_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                return f"tgtd needs {_TGT_SOCKET_DIR} for its control socket: {exc}"
            if not os.access(_TGT_SOCKET_DIR, os.W_OK):
                return f"tgtd needs write access to {_TGT_SOCKET_DIR} (run as root)"
        return None

    # --- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> TgtLibrary:
        """Create cartridges, start tgtd and configure the library; tgtd is killed on failure."""
        reason = self.available()
        if reason is not None:
            raise TgtError(reason)
        self.media_home.mkdir(parents=True, exist_ok=True)
        for barcode in self.barcodes:
            self.make_cartridge(barcode)
        try:
            self._start_daemon()
            self._configure()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the transports we handed out and kill tgtd, whatever happened."""
        self.stop()

    def stop(self) -> None:
        """Close handed-out transports, then kill tgtd and remove its control socket."""
        errors: list[BaseException] = []
        for transport in self._transports:
            try:
                transport.close()
            except Exception as exc:  # collected, re-raised below after tgtd is killed
                errors.append(exc)
        self._transports.clear()
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_process exactly once
            self._finalizer = None
        self._proc = None
        if errors:
            raise TgtError(f"closing transports failed: {errors[0]}") from errors[0]

    def _start_daemon(self) -> None:
        """Start tgtd in the foreground on a free portal and control port (retrying on races)."""
        _TGT_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "tgtd.log"
        last = ""
        for attempt in range(20):
            control = 1000 + (os.getpid() * 7 + attempt * 131 + time.monotonic_ns()) % 30000
            if not _control_port_free(control):
                continue
            port = _free_tcp_port()
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    ["tgtd", "-f", "-C", str(control), "--iscsi", f"portal=127.0.0.1:{port}"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    preexec_fn=_die_with_parent,
                )
            self._proc = proc
            self._finalizer = weakref.finalize(self, _stop_process, proc, control)
            self.port, self.control_port = port, control
            self.portal = f"127.0.0.1:{port}"
            if self._wait_ready(proc):
                return
            last = log_path.read_text(errors="replace")[-2000:]
            self._finalizer()
            self._finalizer = None
            self._proc = None
        raise TgtError(f"tgtd did not start; last log:\n{last}")

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> bool:
        """True once tgtd answers tgtadm and accepts TCP on the portal; False if it exited."""
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            ok = (
                subprocess.run(
                    ["tgtadm", "-C", str(self.control_port), "--op", "show", "--mode", "sys"],
                    capture_output=True,
                ).returncode
                == 0
            )
            if ok:
                with socket.socket() as s:
                    s.settimeout(0.5)
                    if s.connect_ex(("127.0.0.1", self.port)) == 0:
                        return True
            time.sleep(0.05)
        return False

    # --- tgtadm ----------------------------------------------------------------------------------
    def tgtadm(self, *args: str) -> str:
        """Run tgtadm against this tgtd (``--lld iscsi -C <port>`` added); return its stdout."""
        cmd = ["tgtadm", "-C", str(self.control_port), "--lld", "iscsi", *args]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise TgtError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def _lu_update(self, lun: int, params: str) -> None:
        """Send one ``--op update --params`` to a LUN (tgt keeps one element per call)."""
        self.tgtadm(
            "--mode", "logicalunit", "--op", "update", "--tid", str(self.tid),
            "--lun", str(lun), "--params", params,
        )  # fmt: skip

    def _configure(self) -> None:
        """Target, tape drives, changer elements, cartridges in slots, ACL open to all."""
        tid = str(self.tid)
        self.tgtadm("--mode", "target", "--op", "new", "--tid", tid, "-T", self.target_iqn)
        for i, lun in enumerate(self.drive_luns):
            self.tgtadm(
                "--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", str(lun),
                "--device-type", "tape", "--bstype", "ssc",
            )  # fmt: skip
            self._lu_update(
                lun, f"vendor_id=TAPEFLOW,product_id=TGT-TAPE,scsi_sn=TGTDRV{i + 1:04d}"
            )
        smc = self.workdir / "smc"
        smc.write_bytes(bytes(1024))
        self.tgtadm(
            "--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", str(self.changer_lun),
            "--device-type", "changer", "--backing-store", str(smc),
        )  # fmt: skip
        c = self.changer_lun
        self._lu_update(c, "vendor_id=TAPEFLOW,product_id=TGT-CHANGER,scsi_sn=TGTCHG0001")
        self._lu_update(c, f"media_home={self.media_home}")
        self._lu_update(c, f"element_type=1,start_address={TRANSPORT_ADDRESS},quantity=1")
        self._lu_update(c, f"element_type=4,start_address={DRIVE_BASE},quantity={self.drives}")
        for addr, lun in zip(self.drive_addresses, self.drive_luns, strict=True):
            self._lu_update(c, f"element_type=4,address={addr},tid={tid},lun={lun}")
        self._lu_update(c, f"element_type=2,start_address={SLOT_BASE},quantity={self.slots}")
        if self.mail_slots:
            self._lu_update(
                c, f"element_type=3,start_address={MAIL_BASE},quantity={self.mail_slots}"
            )
        for addr, barcode in zip(self.slot_addresses, self.barcodes, strict=False):
            self.place(addr, barcode)
        for i, (lun, image) in enumerate(zip(self.disk_luns, self.disks, strict=True)):
            self.tgtadm(
                "--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", str(lun),
                "--device-type", "disk", "--backing-store", str(image),
            )  # fmt: skip
            self._lu_update(lun, f"vendor_id=TAPEFLOW,product_id=TGT-DISK,scsi_sn=TGTDSK{i:04d}")
        self.tgtadm("--mode", "target", "--op", "bind", "--tid", tid, "-I", "ALL")

    # --- media -----------------------------------------------------------------------------------
    def cartridge_path(self, barcode: str) -> Path:
        """The tgt image file behind a barcode (tgt looks media up by barcode in media_home)."""
        return self.media_home / barcode

    def make_cartridge(self, barcode: str, *, size_mb: int | None = None) -> Path:
        """Create a blank data cartridge image with tgtimg (not yet placed in any slot)."""
        if not 1 <= len(barcode) <= 10:
            raise ValueError("tgt barcodes are 1..10 characters")
        path = self.cartridge_path(barcode)
        if path.exists():
            path.unlink()
        res = subprocess.run(
            [
                "tgtimg", "--op", "new", "--device-type", "tape", "--barcode", barcode,
                "--size", str(size_mb or self.cartridge_mb), "--type", "data",
                "--file", str(path),
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if res.returncode != 0:
            raise TgtError(f"tgtimg failed for {barcode}: {res.stderr.strip() or res.stdout}")
        return path

    def place(self, address: int, barcode: str) -> None:
        """Put cartridge `barcode` into storage or mail slot `address` (operator action)."""
        etype = 3 if address in self.mail_addresses else 2
        self._lu_update(
            self.changer_lun, f"element_type={etype},address={address},barcode={barcode}"
        )

    def clear(self, address: int) -> None:
        """Empty storage or mail slot `address` (operator removes the cartridge)."""
        etype = 3 if address in self.mail_addresses else 2
        self._lu_update(self.changer_lun, f"element_type={etype},address={address},clear_slot=1")

    def set_write_protect(self, drive_lun: int, on: bool = True) -> None:
        """Make a drive refuse writes (DATA PROTECT 07/27/00, MODE SENSE WP bit).

        tgt has no per-cartridge write protection (tgtimg has no such option and root ignores
        file modes), so this is per drive LUN (tgt's ``readonly`` parameter) and stays with
        the drive, not with the cartridge.
        """
        self._lu_update(drive_lun, f"readonly={1 if on else 0}")

    # --- sessions --------------------------------------------------------------------------------
    def transport(
        self, lun: int, *, initiator: str | None = None, timeout: int = 30
    ) -> IscsiTransport:
        """A new iSCSI session to `lun`; closed by the library on exit if still open."""
        if self._proc is None:
            raise TgtError("library is not running (use it as a context manager)")
        t = IscsiTransport(self.portal, self.target_iqn, lun, initiator=initiator, timeout=timeout)
        self._transports.append(t)
        return t

    def spec(self, name: str) -> LibrarySpec:
        """This library as a tapeflow library address named `name` (its drive tag's name)."""
        return LibrarySpec(
            "iscsi",
            portal=self.portal,
            target=self.target_iqn,
            changer_lun=self.changer_lun,
            drive_luns=tuple(self.drive_luns),
            name=name,
        )

    def url(self, lun: int) -> str:
        """``iscsi://`` URL of a LUN, for IscsiTransport.from_url and CLI tools."""
        return f"iscsi://{self.portal}/{self.target_iqn}/{lun}"

    @property
    def pid(self) -> int | None:
        """tgtd's process id while running."""
        return self._proc.pid if self._proc is not None else None

    def kill(self) -> None:
        """Kill tgtd abruptly (simulates a dead target); transports are left as they are."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)

    def log(self) -> str:
        """tgtd's log so far (useful in assertion messages)."""
        path = self.workdir / "tgtd.log"
        return path.read_text(errors="replace") if path.exists() else ""
