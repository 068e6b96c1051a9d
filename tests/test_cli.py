"""The `tapeflow` command on a real embedded library: readable output, --json, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tapeflow.cli import main


@pytest.fixture
def lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    spec = f"embedded:{tmp_path / 'vtl'}"
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    assert (
        main(
            [
                "library",
                "create",
                "--library",
                spec,
                "--drives",
                "2",
                "--slots",
                "6",
                "--mail-slots",
                "1",
            ]
        )
        == 0
    )
    return spec


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inventory_text_and_json(lib: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["library", "inventory", "--library", lib]) == 0
    out = capsys.readouterr().out
    assert "DRIVES" in out and "SLOTS" in out and "TF0001L9" in out
    inv = run_json(capsys, "library", "inventory", "--library", lib)
    assert len(inv["drives"]) == 2 and len(inv["slots"]) == 6


def test_load_unload_status(lib: str, capsys: pytest.CaptureFixture[str]) -> None:
    loaded = run_json(capsys, "library", "load", "1", "--slot", "2", "--library", lib)
    status = run_json(capsys, "library", "status", "--library", lib)
    assert status["drives_loaded"] == 1 and status["drives"] == 2
    inv = run_json(capsys, "library", "inventory", "--library", lib)
    assert inv["drives"][1]["barcode"] == loaded["loaded"]
    assert (
        run_json(capsys, "library", "unload", "1", "--library", lib)["unloaded"] == loaded["loaded"]
    )


def test_offline_online(lib: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_json(capsys, "library", "offline", "1", "--library", lib)
    assert run_json(capsys, "library", "status", "--library", lib)["drives_online"] == 1
    run_json(capsys, "library", "online", "1", "--library", lib)
    assert run_json(capsys, "library", "status", "--library", lib)["drives_online"] == 2


def test_errors_are_one_clear_line(lib: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["library", "load", "0", "--slot", "99", "--library", lib]) == 2
    assert "slot 99 is out of range" in capsys.readouterr().err
    assert main(["library", "load", "0", "--barcode", "NOPE0001", "--library", lib]) == 2
    assert "NOPE0001" in capsys.readouterr().err
    main(["library", "load", "0", "--slot", "1", "--library", lib])
    assert main(["library", "load", "0", "--slot", "2", "--library", lib]) == 2
    assert "already holds" in capsys.readouterr().err


def test_missing_library_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["library", "inventory", "--library", f"embedded:{tmp_path / 'none'}"]) == 2
    assert "tapeflow: error:" in capsys.readouterr().err


def test_create_refuses_existing(lib: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["library", "create", "--library", lib]) == 2
    assert "tapeflow: error:" in capsys.readouterr().err


@pytest.mark.usefixtures("prefect_server")
def test_installed_command_moves_drive_tag_limits(
    lib: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The installed `tapeflow` (flows.cli) runs drive and virtual-library changes as the
    library flows: the Prefect limits follow at once, not only at the next backup."""
    from prefect.exceptions import ObjectNotFound

    from flows.cli import main as flows_main
    from tapeflow.library import LibrarySpec
    from tests.test_flows import tag_limit

    tag = f"tape-drive:{LibrarySpec.parse(lib).tag_name}"

    def run(*argv: str) -> dict:
        capsys.readouterr()
        assert flows_main([*argv, "--library", lib, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    assert run("library", "offline", "1")["limits"] == {tag: 1} and tag_limit(tag) == 1
    assert run("library", "online", "1")["limits"] == {tag: 2} and tag_limit(tag) == 2
    made = run("library", "vlib", "add", "A", "--drives", "0", "--slots", "1-3")
    assert made["limit"] == 1 and tag_limit(made["tag"]) == 1
    # drive 0 offline: A has no online drive (its limit stays at Prefect's minimum of 1; a
    # backup on A refuses to start)
    assert run("library", "offline", "0")["limits"] == {tag: 1, made["tag"]: 0}
    assert tag_limit(made["tag"]) == 1
    run("library", "vlib", "rm", "A")
    with pytest.raises(ObjectNotFound):  # the deleted virtual library's limit is gone
        tag_limit(made["tag"])
    capsys.readouterr()
    bad = ["library", "vlib", "add", "B", "--drives", "7", "--slots", "1", "--library", lib]
    assert flows_main(bad) == 2
    assert "out of range" in capsys.readouterr().err
    with pytest.raises(ObjectNotFound):  # refused: no limit made
        tag_limit(f"{tag}:B")


def test_mail_slots_inventory_import_and_cleaning(
    lib: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """New media in a mail slot are imported by `inventory`; export/import move a cartridge
    out and back; `clean` cleans a drive from the library's cleaning cartridge."""
    from tapeflow.vtl import VirtualLibrary

    VirtualLibrary.open(Path(lib.removeprefix("embedded:"))).insert("NEW001L9", mail_slot=0)
    inv = run_json(capsys, "library", "inventory", "--library", lib)
    assert inv["imported"] == ["NEW001L9"]
    assert "NEW001L9" in {s["barcode"] for s in inv["slots"]}
    out = run_json(capsys, "library", "export", "NEW001L9", "--library", lib)
    assert out["exported"] == "NEW001L9"
    inv = run_json(capsys, "library", "inventory", "--no-import", "--library", lib)
    assert "NEW001L9" not in {s["barcode"] for s in inv["slots"]}
    back = run_json(capsys, "library", "import", str(out["mail_slot"]), "--library", lib)
    assert back == {"imported": "NEW001L9"}
    capsys.readouterr()
    assert main(["library", "clean", "0", "--library", lib]) == 0
    said = capsys.readouterr().out
    assert said.startswith("drive 0 cleaned with CLN") and "uses left" in said
