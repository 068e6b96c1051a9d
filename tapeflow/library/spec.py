"""How to reach a library: embedded directory, iSCSI target, or Linux /dev/sg nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from tapeflow.library.errors import BadLibrarySpec, InvalidName
from tapeflow.library.statefile import check_name
from tapeflow.scsi.transport import Transport

Backend = Literal["embedded", "iscsi", "sg"]
VLIB_NAME_MAX = 16
# joins a library's name and a virtual library's in its drive tag; not "/": Prefect bans "/"
# in concurrency limit names, and a tag's limit is the global limit "tag:<tag>"
VLIB_TAG_SEPARATOR = ":"


def vlib_tag(tag: str, vlib: str) -> str:
    """The drive tag of virtual library `vlib` of the library whose tag is `tag`."""
    return f"{tag}{VLIB_TAG_SEPARATOR}{vlib}"


def _vlib(text: str, query: str) -> str | None:
    """The `vlib=NAME` parameter of an address's query (a virtual library), validated."""
    values = parse_qs(query, keep_blank_values=True).get("vlib")
    if not values:
        return None
    try:
        return check_name("virtual library", values[-1], VLIB_NAME_MAX)
    except InvalidName as exc:
        raise BadLibrarySpec(f"{text!r}: {exc}") from exc


def default_home() -> Path:
    """Where tapeflow keeps its embedded library and state: $TAPEFLOW_HOME or ~/.tapeflow."""
    return Path(os.environ.get("TAPEFLOW_HOME", Path.home() / ".tapeflow"))


@dataclass(frozen=True)
class LibrarySpec:
    """Address of one library: its changer and its drives, in changer drive-element order."""

    backend: Backend
    path: Path | None = None  # embedded: library directory
    portal: str | None = None  # iscsi: host:port
    target: str | None = None  # iscsi: target IQN
    changer_lun: int = 0
    drive_luns: tuple[int, ...] = ()  # iscsi: empty = 1..N from the changer's drive count
    changer_device: str | None = None  # sg
    drive_devices: tuple[str, ...] = ()  # sg
    initiator: str | None = None
    name: str = field(default="default")
    vlib: str | None = None  # a virtual library (partition) of this physical library

    @property
    def tag_name(self) -> str:
        """`name`, or `name:vlib` for a virtual library (the drive tag is tape-drive:<this>)."""
        return vlib_tag(self.name, self.vlib) if self.vlib else self.name

    def with_vlib(self, vlib: str | None) -> LibrarySpec:
        """The same library limited to virtual library `vlib` (None: the physical library)."""
        return replace(self, vlib=vlib)

    @classmethod
    def parse(cls, text: str) -> LibrarySpec:
        """Parse `embedded:/dir` (or a bare path), `iscsi://host:port/iqn/lun?drives=1,2`,
        `sg:/dev/sgN?drives=/dev/sgA,/dev/sgB`; any of them may add `vlib=NAME` to the query
        (`embedded:/dir?vlib=NAME`) to address one virtual library of that library."""
        text = text.strip()
        if not text:
            raise BadLibrarySpec("empty library address")
        if text.startswith("iscsi://"):
            url = urlsplit(text)
            parts = [p for p in url.path.split("/") if p]
            if not url.hostname or not parts:
                raise BadLibrarySpec(f"{text!r}: expected iscsi://host[:port]/<target-iqn>[/lun]")
            query = parse_qs(url.query)
            try:
                lun = int(parts[1]) if len(parts) > 1 else 0
                drives = tuple(int(x) for x in ",".join(query.get("drives", [])).split(",") if x)
            except ValueError as exc:
                raise BadLibrarySpec(f"{text!r}: LUNs must be integers") from exc
            port = url.port or 3260
            return cls(
                "iscsi",
                portal=f"{url.hostname}:{port}",
                target=parts[0],
                changer_lun=lun,
                drive_luns=drives,
                initiator=(query.get("initiator") or [None])[0],
                name=(query.get("name") or [parts[0].rsplit(":", 1)[-1]])[0],
                vlib=_vlib(text, url.query),
            )
        if text.startswith("sg:"):
            url = urlsplit(text)
            drives = tuple(
                x for x in ",".join(parse_qs(url.query).get("drives", [])).split(",") if x
            )
            if not url.path or not drives:
                raise BadLibrarySpec(f"{text!r}: expected sg:/dev/sgN?drives=/dev/sgA,/dev/sgB")
            return cls(
                "sg",
                changer_device=url.path,
                drive_devices=drives,
                name=Path(url.path).name,
                vlib=_vlib(text, url.query),
            )
        raw, _, query = text.removeprefix("embedded:").partition("?")
        if set(parse_qs(query, keep_blank_values=True)) - {"vlib"}:
            raise BadLibrarySpec(f"{text!r}: an embedded address only takes ?vlib=NAME")
        path = Path(raw).expanduser()
        return cls("embedded", path=path, name=path.name or "embedded", vlib=_vlib(text, query))

    def __str__(self) -> str:
        query: list[str] = []
        if self.backend == "iscsi":
            base = f"iscsi://{self.portal}/{self.target}/{self.changer_lun}"
            if self.drive_luns:
                query.append(f"drives={','.join(map(str, self.drive_luns))}")
            if self.initiator:
                query.append(f"initiator={self.initiator}")
            if self.target and self.name != self.target.rsplit(":", 1)[-1]:
                query.append(f"name={self.name}")  # the name keys the host-side state dir
        elif self.backend == "sg":
            base = f"sg:{self.changer_device}"
            query.append(f"drives={','.join(self.drive_devices)}")
        else:
            base = f"embedded:{self.path}"
        if self.vlib:
            query.append(f"vlib={self.vlib}")
        return base + (f"?{'&'.join(query)}" if query else "")

    def state_dir(self) -> Path:
        """Where tapeflow keeps this library's host-side state (drive online flags, locks);
        shared by the physical library and all its virtual libraries."""
        if self.backend == "embedded" and self.path is not None:
            return self.path / "tapeflow-state"
        return default_home() / "libraries" / self.name

    # --- transports --------------------------------------------------------------------------
    def open_changer(self) -> Transport:
        """A new handle to the changer."""
        if self.backend == "embedded":
            return self._embedded().changer()
        if self.backend == "iscsi":
            return self._iscsi(self.changer_lun)
        from tapeflow.scsi.sg import SgTransport

        assert self.changer_device is not None
        return SgTransport(self.changer_device)

    def open_drive(self, index: int, drive_count: int) -> Transport:
        """A new handle to drive `index` (0-based, changer drive-element order)."""
        if self.backend == "embedded":
            return self._embedded().drive(index)
        if self.backend == "iscsi":
            luns = self.drive_luns or tuple(range(1, drive_count + 1))
            return self._iscsi(luns[index])
        from tapeflow.scsi.sg import SgTransport

        return SgTransport(self.drive_devices[index])

    def open_disk(self, name: str) -> Transport:
        """A new handle to a SAN disk: an embedded disk by name, an iSCSI LUN by number, or
        an sg node by path."""
        if self.backend == "embedded":
            return self._embedded().disk(name)
        if self.backend == "iscsi":
            if not name.isdigit():
                raise BadLibrarySpec(f"iSCSI disks are named by LUN number, not {name!r}")
            return self._iscsi(int(name))
        from tapeflow.scsi.sg import SgTransport

        return SgTransport(name)

    def open_copy_manager(self) -> Transport | None:
        """The SAN's copy manager, or None when the host must copy (tgt and sg have none)."""
        if self.backend == "embedded":
            return self._embedded().copy_manager()
        return None

    def _embedded(self):  # noqa: ANN202 - VirtualLibrary, imported lazily
        from tapeflow.vtl import VirtualLibrary

        assert self.path is not None
        return VirtualLibrary.open(self.path)

    def _iscsi(self, lun: int) -> Transport:
        from tapeflow.scsi.iscsi import IscsiTransport

        assert self.portal and self.target
        return IscsiTransport(self.portal, self.target, lun, initiator=self.initiator)
