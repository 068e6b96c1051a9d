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
