"""Base for our CDBs: a pyscsi SCSICommand whose CDB is encoded per instance.

pyscsi's SCSICommand.__init__ keeps the CDB layout in class attributes shared by every command,
so two threads building commands at once can mix layouts. We keep pyscsi's model (opcodes,
`_cdb_bits` notation, `encode_dict`, cdb/datain/dataout attributes) but encode into the
instance only.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pyscsi.pyscsi.scsi_command import SCSICommand
from pyscsi.pyscsi.scsi_enum_command import OpCode, sbc, smc, spc, ssc
from pyscsi.utils.converter import CheckDict, encode_dict

__all__ = ["Command", "OpCode", "sbc", "smc", "spc", "ssc"]


def cdb_length(opcode: int) -> int:
    """CDB size from the opcode's group code (SPC-4 4.2.5.1)."""
    group = opcode >> 5
    return {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}.get(group, 10)


class Command(SCSICommand):
    """One SCSI command: CDB bytes, optional data-out, expected data-in length.

    pyscsi's metaclass builds each class twice, which breaks zero-argument super(): subclasses
    call `Command.__init__(self, ...)` explicitly.
    """

    _cdb_bits: ClassVar[CheckDict] = {"opcode": [0xFF, 0]}
    timeout: float = 60.0

    def __init__(
        self,
        opcode: OpCode,
        *,
        data_out: bytes = b"",
        data_in_len: int = 0,
        **fields: Any,
    ) -> None:
        # Deliberately not calling SCSICommand.__init__ (class-level CDB state, see module doc).
        self._opcode = opcode
        self._page_code = None
        self._result = {}
        self._sense = None
        self._dataout = data_out
        self._datain = bytearray()
        self.data_in_len = data_in_len
        cdb = bytearray(cdb_length(opcode.value))
        encode_dict({"opcode": opcode.value, **fields}, self._cdb_bits, cdb)
        self._cdb = bytes(cdb)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._cdb.hex(' ')})"
