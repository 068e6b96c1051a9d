"""Media pools and rotation on the embedded library: expiry, recycling expired cartridges, never
overwriting unexpired ones, scratch takeover, GFS mapping, and bad input that changes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tapeflow.backup.master import (
    JobOutcome,
    finish_job,
    largest_first,
    prepare_job,
    record_slave,
)
from tapeflow.backup.model import KnownTape, MediaPlan, Pool, SlaveResult, SlaveSpec, Source
from tapeflow.backup.pools import (
    InvalidPool,
    PoolError,
    UnknownPool,
    assign_pool,
    define_pool,
    media_expiry,
    note_write,
    plan_media,
)
from tapeflow.backup.rotation import GfsPolicy, RotationError, parse_rotation, rotate
from tapeflow.backup.slave import NoWritableCartridge, SlaveFailed, run_slave
from tapeflow.catalog import Catalog, CatalogError, NotFound, expiring_media
from tapeflow.library import Library
from tapeflow.reports import job_report, media_report
from tapeflow.sample import make_sample_tree
from tapeflow.tapefmt import read_label, write_label
from tapeflow.tapefmt.label import PROBE_LENGTH
from tapeflow.tapefmt.reader import goto_session
from tapeflow.tapefmt.session import global_info
from tapeflow.vtl import VirtualLibrary

A, B, C, D = "TF0001L9", "TF0002L9", "TF0003L9", "TF0004L9"


@dataclass
class Env:
    library: str
    catalog: Path
    source: Source


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """A one-drive embedded library with five blank cartridges, a catalog path, a source."""
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    VirtualLibrary.create(
        tmp_path / "lib",
        drives=1,
        slots=8,
        mail_slots=1,
        cartridges=5,
        capacity=64 * 1024 * 1024,
        early_warning=4 * 1024 * 1024,
        cleaning_cartridges=0,
    )
    make_sample_tree(tmp_path / "src", files=8)
    return Env(
        f"embedded:{tmp_path / 'lib'}",
        tmp_path / "catalog" / "catalog.duckdb",
        Source("src", str(tmp_path / "src")),
    )


def run_job(
    env: Env, pool: Pool, job_id: str
) -> tuple[JobOutcome, list[SlaveResult], list[SlaveFailed]]:
    """One master job without Prefect: plan, run each slave, record, finish."""
    specs, skipped = prepare_job(
        env.catalog, job_id, sources=[env.source], pool=pool, level="full", library=env.library
    )
    results, failures = [], []
    for spec in specs:
        result, failure = run_spec(spec)
        if failure is not None:
            failures.append(failure)
        record_slave(env.catalog, job_id, pool, result)
        results.append(result)
    return finish_job(env.catalog, job_id, results, skipped), results, failures


def run_spec(spec: SlaveSpec) -> tuple[SlaveResult, SlaveFailed | None]:
    try:
        return run_slave(spec), None
    except SlaveFailed as exc:
        return exc.result, exc


def on_tape(env: Env, barcode: str) -> tuple[str, datetime, int, str | None]:
    """(label pool, label time, tape files, session id of the last file) of a cartridge."""
    with Library(env.library) as lib:
        lib.load(0, barcode=barcode)
        handle = lib.open_drive(0)
        try:
            label = read_label(handle)
            handle.end_of_data()
            files = handle.position().file
            assert files is not None
            last = None
            if files > 1:
                goto_session(handle, files - 1)
                info = global_info(handle.read(PROBE_LENGTH))
                last = info.session_id if info else None
        finally:
            handle.close()
            lib.unload(0)
    return label.pool, label.created, files, last


def label_tape(env: Env, barcode: str, pool: str, *, data: bool = False) -> None:
    """Write a volume label for `pool` on a blank cartridge (what `library label` does); with
    `data`, a tape file of something else after it."""
    with Library(env.library) as lib:
        lib.load(0, barcode=barcode)
        handle = lib.open_drive(0)
        try:
            write_label(handle, barcode, barcode, pool)
            if data:
                handle.write(b"not a session".ljust(4096, b"."))
                handle.write_filemarks(1)
        finally:
            handle.close()
            lib.unload(0)


def snapshot(env: Env) -> dict[str, list[tuple]]:
    """Every catalog table that a refused request must leave alone."""
    with Catalog(env.catalog) as cat:
        return {
            table: cat.execute(f"SELECT * FROM {table} ORDER BY ALL")
            for table in ("pools", "media", "media_sessions", "sessions", "jobs", "events")
        }


def tape_files(env: Env, barcode: str) -> list[tuple[int, str]]:
    with Catalog(env.catalog) as cat:
        return cat.execute(
            "SELECT tape_file, session_id FROM media_sessions WHERE barcode = ? ORDER BY 1",
            [barcode],
        )


# -- expiry and reuse ------------------------------------------------------------------------


def test_expiry_is_last_write_plus_retention_and_appending_extends_it(env: Env) -> None:
    pool = Pool("keep", barcodes=(A,), retention_days=30)
    first, _, _ = run_job(env, pool, "j1")
    second, results, _ = run_job(env, pool, "j2")
    assert first.state == second.state == "complete"
    assert results[0].labelled == []  # appended, not relabelled
    assert [f for f, _ in tape_files(env, A)] == [1, 2]
    with Catalog(env.catalog) as cat:
        medium = cat.medium(A)
        assert medium["sessions"] == 2
        expiry = medium["last_write"] + timedelta(days=30)
        assert medium["expiry"] == expiry == media_expiry(cat, A)
        assert note_write(cat, A, 1) == expiry  # a shorter retention never moves it earlier
        assert note_write(cat, A, 60) == medium["last_write"] + timedelta(days=60)
        assert [r["barcode"] for r in expiring_media(cat, expiry).to_pylist()] == []
        later = medium["last_write"] + timedelta(days=61)
        assert expiring_media(cat, later).column("barcode").to_pylist() == [A]
        plan = plan_media(cat, pool)
        assert plan.appendable == (A,) and A in plan.protected and not plan.reusable
        assert plan_media(cat, pool, later).reusable == {A: KnownTape(3, tape_files(env, A)[1][1])}
        cat.add_media("NEVER1L9", "keep")
        with pytest.raises(CatalogError, match="NEVER1L9 has no write"):
            note_write(cat, "NEVER1L9", 30)  # no write to count a retention from
        with pytest.raises(NotFound):
            note_write(cat, "NOSUCH", 30)
        with pytest.raises(InvalidPool):
            note_write(cat, A, -1)


def test_expired_cartridge_is_recycled_and_its_old_sessions_pruned(env: Env) -> None:
    pool = Pool("rot", barcodes=(A,), retention_days=0, append=False)  # expires at once
    run_job(env, pool, "j1")
    (old,) = [sid for _, sid in tape_files(env, A)]
    with Catalog(env.catalog) as cat:
        old_rows = cat.rows_path(old)
    assert old_rows.exists()
    outcome, results, _ = run_job(env, pool, "j2")
    assert outcome.state == "complete"
    assert results[0].labelled == [A] and results[0].tapes[0].tape_file == 1
    (new,) = [sid for _, sid in tape_files(env, A)]
    assert new != old
    assert on_tape(env, A)[0::2] == ("rot", 2)  # label + the new session only
    assert on_tape(env, A)[3] == new
    with Catalog(env.catalog) as cat:
        gone = cat.session(old)
        assert gone["media_erased"] is not None and gone["rows_state"] == "pruned"
        assert cat.medium(A)["sessions"] == 1
        assert any("recycled, 1 expired session(s) dropped" in e["message"] for e in cat.events())
    assert not old_rows.exists()


def test_a_job_never_overwrites_an_unexpired_cartridge(env: Env) -> None:
    pool = Pool("keep", barcodes=(A, B), retention_days=30, append=False)
    run_job(env, pool, "j1")
    run_job(env, pool, "j2")
    tapes_before = {b: on_tape(env, b) for b in (A, B)}
    media_before = snapshot(env)["media"]
    outcome, results, failures = run_job(env, pool, "j3")
    assert outcome.state == "failed" and results[0].tapes == []
    (failure,) = failures
    error = failure.__cause__
    assert isinstance(error, NoWritableCartridge)
    text = str(error)
    assert "pool 'keep': no free, writable cartridge left" in text
    with Catalog(env.catalog) as cat:
        for barcode in (A, B):
            until = cat.medium(barcode)["expiry"].astimezone(UTC).isoformat(timespec="seconds")
            assert f"{barcode}: holds a session kept until {until}" in text
    assert set(error.reasons) == {A, B} and error.pool == "keep"
    assert "Insert blank cartridges" in text
    assert {b: on_tape(env, b) for b in (A, B)} == tapes_before
    assert snapshot(env)["media"] == media_before


def test_recycling_refuses_a_cartridge_changed_since_the_plan(env: Env) -> None:
    pool = Pool("rot", barcodes=(A,), retention_days=0, append=False)
    run_job(env, pool, "j1")
    (old,) = [sid for _, sid in tape_files(env, A)]
    (late,), _ = prepare_job(
        env.catalog, "late", sources=[env.source], pool=pool, level="full", library=env.library
    )
    assert late.media.reusable == {A: KnownTape(2, old)}
    run_job(env, pool, "j2")  # recycles A before `late` gets to it
    (new,) = [sid for _, sid in tape_files(env, A)]
    written = on_tape(env, A)
    result, failure = run_spec(late)
    assert failure is not None and isinstance(failure.__cause__, NoWritableCartridge)
    assert f"its last tape file holds {new}, not {old}" in failure.__cause__.reasons[A]
    assert result.labelled == [] and on_tape(env, A) == written
    # a plan that counts fewer tape files than the cartridge holds is refused as well
    fewer = replace(late, media=replace(late.media, reusable={A: KnownTape(1, None)}))
    _, failure = run_spec(fewer)
    assert failure is not None
    assert "it holds 2 tape files, not the 1 the catalog knows" in str(failure)
    # a cartridge listed as protected is never relabelled, whatever else the plan says
    tampered = replace(late, media=replace(late.media, protected={A: "2099-01-01T00:00:00"}))
    _, failure = run_spec(tampered)
    assert failure is not None and "holds 1 session(s)" in str(failure)
    assert on_tape(env, A) == written


# -- scratch pool ----------------------------------------------------------------------------


def test_a_pool_takes_a_scratch_cartridge_when_it_has_none_free(env: Env) -> None:
    pool = Pool("keep", barcodes=(A,), retention_days=30, append=False)
    run_job(env, pool, "j1")
    label_tape(env, C, "scratch")
    label_tape(env, D, "scratch")
    with Catalog(env.catalog) as cat:
        assert assign_pool(cat, [C, D], "scratch", create=True) == [C, D]
        assert plan_media(cat, pool).scratch == (C, D)
    outcome, results, _ = run_job(env, pool, "j2")
    assert outcome.state == "complete"
    assert results[0].labelled == [C] and results[0].tapes[0].barcode == C
    assert on_tape(env, C)[0::2] == ("keep", 2)
    with Catalog(env.catalog) as cat:
        medium = cat.medium(C)
        assert medium["pool"] == "keep" and medium["sessions"] == 1
        assert medium["expiry"] == medium["last_write"] + timedelta(days=30)
        assert any(
            f"{C} relabelled for pool keep: taken from pool scratch" in e["message"]
            for e in cat.events()
        )
        assert [r["pool"] for r in media_report(cat, barcode=D)] == ["scratch"]
    # a pool that may not take scratch cartridges fails, and D stays scratch and untouched
    closed = replace(pool, scratch=None)
    outcome, _, failures = run_job(env, closed, "j3")
    assert outcome.state == "failed" and "no free, writable cartridge" in str(failures[0])
    assert on_tape(env, D)[0::2] == ("scratch", 1)


def test_a_scratch_labelled_cartridge_holding_data_is_not_taken(env: Env) -> None:
    label_tape(env, C, "scratch", data=True)  # labelled scratch, yet something follows
    with Catalog(env.catalog) as cat:
        assign_pool(cat, [C], "scratch", create=True)
    pool = Pool("keep", barcodes=(A,), retention_days=30, append=False)
    run_job(env, pool, "j1")
    before = on_tape(env, C)
    outcome, results, failures = run_job(env, pool, "j2")
    assert outcome.state == "failed" and results[0].labelled == []
    reasons = failures[0].__cause__.reasons  # type: ignore[union-attr]
    assert reasons[C] == "labelled for pool 'scratch' and holds 1 session(s)"
    assert on_tape(env, C) == before and before[0::2] == ("scratch", 2)


# -- GFS -------------------------------------------------------------------------------------


def test_gfs_maps_days_to_tiers_pools_retention_and_levels() -> None:
    gfs = GfsPolicy()
    # 2026-03-01 is the first Sunday of March, 2026-03-08 the second, 2026-03-09 a Monday
    assert gfs.tier_name(date(2026, 3, 1)) == "monthly"
    assert gfs.tier_name(date(2026, 3, 8)) == "weekly"
    assert gfs.tier_name(date(2026, 3, 9)) == "daily"
    assert gfs.tier_name(date(2026, 3, 29)) == "weekly"
    base = Pool("base", slots=(1, 4), append=False)
    turn = rotate("gfs", date(2026, 3, 1), base)
    assert (turn.tier, turn.pool.name, turn.pool.retention_days, turn.level) == (
        "monthly",
        "gfs-monthly",
        365,
        "full",
    )
    assert turn.pool.slots == (1, 4) and turn.pool.append is False  # the rest is the base's
    daily = rotate("gfs", date(2026, 3, 10), None)
    assert (daily.pool.name, daily.pool.retention_days, daily.level) == (
        "gfs-daily",
        7,
        "incremental",
    )
    assert rotate("gfs", date(2026, 3, 15), None).pool.retention_days == 35
    # configurable: Saturday, last of the month, own names, a time zone
    custom = parse_rotation(
        {
            "kind": "gfs",
            "weekday": "saturday",
            "monthly_week": "last",
            "timezone": "America/New_York",
            "monthly": {"pool": "archive", "retention_days": 3650},
            "daily": {"level": "differential"},
        }
    )
    assert custom.tier_name(date(2026, 3, 28)) == "monthly"  # last Saturday of March
    assert custom.tier_name(date(2026, 3, 21)) == "weekly"
    assert custom.tier(date(2026, 3, 28)).pool == "archive"
    assert custom.tier(date(2026, 3, 27)).level == "differential"
    # 01:00 UTC on Sunday the 29th is still Saturday the 28th in New York
    assert custom.tier_name(datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == "monthly"
    assert GfsPolicy().tier_name(datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == "weekly"


@pytest.mark.parametrize(
    ("rotation", "message"),
    [
        ("hanoi", "unknown rotation 'hanoi'"),
        ({"kind": "towers"}, "unknown rotation kind"),
        ({"daily": {"retention_days": -1}}, "retention_days must be >= 0"),
        ({"weekday": "someday"}, "weekday 'someday'"),
        ({"weekday": 7}, "weekday must be 0"),
        ({"monthly_week": "second"}, "monthly_week"),
        ({"weekly": {"pool": "gfs-daily"}}, "three different pools"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"daily": {"level": "sometimes"}}, "unknown level"),
        ({"hourly": {}}, "unknown GFS setting"),
    ],
)
def test_gfs_bad_configuration_is_refused(rotation: object, message: str) -> None:
    with pytest.raises(RotationError, match=message):
        parse_rotation(rotation)  # type: ignore[arg-type]
    assert issubclass(RotationError, ValueError)


# -- bad input, spec round trip -------------------------------------------------------------


def test_bad_input_is_refused_and_changes_nothing(env: Env) -> None:
    pool = Pool("keep", barcodes=(A,), retention_days=30)
    run_job(env, pool, "j1")
    before = snapshot(env)
    with Catalog(env.catalog) as cat:
        with pytest.raises(NotFound, match="unknown barcode.s. TF0002L9, NOPE01L9: not in"):
            assign_pool(cat, [A, B, "NOPE01L9"], "scratch")
        with pytest.raises(UnknownPool, match="no pool 'nosuch' in the catalog"):
            assign_pool(cat, [B], "nosuch", create=True)
        with pytest.raises(PoolError, match=f"{A} holds 1 session"):
            assign_pool(cat, [A], "scratch")
        with pytest.raises(InvalidPool, match="retention_days must be >= 0"):
            define_pool(cat, "keep", -1)
        with pytest.raises(InvalidPool, match="retention_days must be >= 0"):
            define_pool(cat, "scratch", -3)
        with pytest.raises(NotFound, match="no cartridge 'NOPE01L9'"):
            media_expiry(cat, "NOPE01L9")
        with pytest.raises(UnknownPool, match="known: keep"):
            media_report(cat, pool="nosuch")
        with pytest.raises(NotFound, match="no job 'nope'"):
            job_report(cat, job_id="nope")
    assert snapshot(env) == before
    with pytest.raises(ValueError, match="retention_days must be >= 0"):
        Pool("keep", retention_days=-1)
    with pytest.raises(ValueError, match="retention_days must be >= 0"):
        Pool.from_dict({"name": "x", "retention_days": -5})
    with pytest.raises(ValueError, match="is a scratch pool"):
        Pool("scratch")
    with pytest.raises(ValueError, match="slot range"):
        Pool("x", slots=(5, 2))
    with pytest.raises(ValueError, match="1-32 characters"):
        Pool("x" * 33)


def test_slave_spec_with_its_media_plan_survives_json() -> None:
    plan = MediaPlan(
        appendable=("A1",),
        reusable={"B1": KnownTape(3, "s-1")},
        scratch=("C1",),
        protected={"A1": "2030-01-01T00:00:00+00:00"},
        unusable={"D1": "full"},
    )
    spec = SlaveSpec(
        job_id="j",
        session_id="s",
        subjob=1,
        source=Source("a", "/tmp"),
        level="full",
        pool=Pool("p", barcodes=("A1",), slots=(1, 3), scratch=None, group="g1"),
        library="embedded:/tmp/x",
        files_dir="/tmp/f",
        media=plan,
    )
    again = SlaveSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


def test_largest_first_puts_unknown_sizes_first_and_keeps_ties_in_order() -> None:
    """Volumes (size unknown until the slave looks) first, then largest first, stable."""

    def spec(subjob: int, size: int | None) -> SlaveSpec:
        return SlaveSpec(
            job_id="j",
            session_id=f"s{subjob}",
            subjob=subjob,
            source=Source(f"src{subjob}", "/x"),
            level="full",
            pool=Pool(),
            library="embedded:/x",
            files_dir="/x",
            expected_bytes=size,
        )

    order = largest_first([spec(1, 10), spec(2, None), spec(3, 500), spec(4, 10), spec(5, None)])
    assert [s.subjob for s in order] == [2, 5, 3, 1, 4]
    assert SlaveSpec.from_dict(spec(3, 500).to_dict()).expected_bytes == 500


def test_cli_label_and_erase_tell_the_catalog_as_the_flows_do(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tapeflow library label/erase` must not leave the catalog pointing at sessions that are
    no longer on tape, nor forget which pool a freshly labelled cartridge belongs to."""
    from tapeflow.cli import main as cli_main

    outcome, _, _ = run_job(env, Pool(), "job1")
    assert outcome.state == "complete"
    at = ["--library", env.library, "--catalog", str(env.catalog)]
    with Catalog(env.catalog, read_only=True) as cat:
        assert cat.medium(A)["sessions"] == 1
    assert cli_main(["library", "label", "--barcode", B, "--pool", "weekly", *at]) == 0
    assert cli_main(["library", "erase", "--barcode", A, "--force", *at]) == 0
    out = capsys.readouterr().out
    assert f"catalog: sessions on {A} are gone with their tapes" in out
    with Catalog(env.catalog, read_only=True) as cat:
        assert cat.medium(B)["pool"] == "weekly" and cat.medium(B)["labelled"]
        assert cat.medium(A)["sessions"] == 0 and cat.medium(A)["bytes_used"] == 0
        assert all(s["media_erased"] is not None for s in cat.sessions())
