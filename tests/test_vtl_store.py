"""Cartridge storage format: construct/struct agreement, tape semantics against a model, and
recovery from torn writes (property-based)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tapeflow.vtl.state import DRIVE_STATE_SIZE, DriveStateLayout
from tapeflow.vtl.store import (
    KIND_BLOCK,
    KIND_FILEMARK,
    RECORD_SIZE,
    Cartridge,
    CartridgeMeta,
    IndexRecord,
    pack_record,
    record_is_valid,
    unpack_record,
)

Model = list[bytes | None]  # None = filemark


@given(
    offset=st.integers(0, 2**64 - 1),
    length=st.integers(0, 2**32 - 1),
    file_number=st.integers(0, 2**32 - 1),
    kind=st.sampled_from([KIND_BLOCK, KIND_FILEMARK]),
)
def test_record_matches_construct(offset: int, length: int, file_number: int, kind: int) -> None:
    raw = pack_record(offset, length, file_number, kind)
    assert len(raw) == RECORD_SIZE == IndexRecord.sizeof()
    parsed = IndexRecord.parse(raw)
    assert (parsed.offset, parsed.length, parsed.file_number, parsed.kind) == (
        offset,
        length,
        file_number,
        kind,
    )
    assert unpack_record(raw) == (offset, length, file_number, kind)
    assert record_is_valid(raw)
    assert not record_is_valid(raw[:-1] + bytes([raw[-1] ^ 1]))


def test_drive_state_layout_size() -> None:
    assert DriveStateLayout.sizeof() == DRIVE_STATE_SIZE == 80


def new_cartridge(root: Path) -> Cartridge:
    Cartridge.create(root / "c", CartridgeMeta("TST001L9", 1 << 30, 0))
    return Cartridge(root / "c")


def apply(cart: Cartridge, model: Model, pos: int, op: tuple[str, int]) -> int:
    """Perform one operation on both the cartridge and the model; return the new position."""
    kind, arg = op
    count = cart.count()
    if kind == "locate":
        return min(arg, count)
    tail = cart.tail(pos, count)
    del model[pos:]
    if kind == "block":
        payload = bytes([len(model) % 251]) * arg
        cart.write_blocks(pos, count, tail, memoryview(payload), arg, 1)
        model.append(payload)
        return pos + 1
    cart.write_filemarks(pos, count, tail, arg)
    model.extend([None] * arg)
    return pos + arg


def check(cart: Cartridge, model: Model) -> None:
    assert cart.count() == len(model)
    files = 0
    for n, expected in enumerate(model):
        obj = cart.object(n)
        assert obj.file_number == files
        if expected is None:
            assert obj.is_filemark
            files += 1
        else:
            assert not obj.is_filemark and cart.read(obj.offset, obj.length) == expected
    assert cart.file_number(len(model), len(model)) == files
    for target in range(files + 1):
        first = cart.first_file_at_least(target, 0, len(model))
        assert first == next(
            (i for i in range(len(model)) if cart.object(i).file_number >= target), len(model)
        )


ops = st.lists(
    st.one_of(
        st.tuples(st.just("block"), st.integers(1, 300)),
        st.tuples(st.just("filemark"), st.integers(1, 3)),
        st.tuples(st.just("locate"), st.integers(0, 40)),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ops=ops)
def test_tape_semantics_match_model(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cart = new_cartridge(Path(tmp))
        model: Model = []
        pos = 0
        for op in ops:
            pos = apply(cart, model, pos, op)
        check(cart, model)
        cart.close()


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 200), min_size=1, max_size=12),
    index_cut=st.integers(0, 2**16),
    garbage=st.binary(max_size=500),
)
def test_recovery_keeps_complete_prefix(sizes: list[int], index_cut: int, garbage: bytes) -> None:
    """Whatever a kill -9 leaves (torn index record, payload without its record), recover()
    yields exactly the blocks whose record was complete."""
    with tempfile.TemporaryDirectory() as tmp:
        cart = new_cartridge(Path(tmp))
        model: Model = []
        pos = 0
        for size in sizes:
            pos = apply(cart, model, pos, ("block", size))
        cart.close()
        index = Path(tmp) / "c" / "index"
        cut = index_cut % (len(sizes) * RECORD_SIZE + 1)
        os.truncate(index, cut)
        with open(Path(tmp) / "c" / "data", "ab") as data:
            data.write(garbage)
        cart = Cartridge(Path(tmp) / "c")
        cart.recover()
        kept = model[: cut // RECORD_SIZE]
        check(cart, kept)
        assert os.path.getsize(Path(tmp) / "c" / "data") == sum(len(b or b"") for b in kept)
        cart.close()
