"""The ``titans`` entry point: every sub-command is registered and ``titans models`` prints."""

from __future__ import annotations

import pytest

from titans.cli.main import COMMANDS, build_parser, main


def test_every_command_is_registered():
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([name, "--help"])
        assert e.value.code == 0


def test_models_lists_presets_with_counts(capsys):
    assert main(["models", "--sizes", "tiny", "--vocab", "256"]) == 0
    out = capsys.readouterr().out
    for variant in ("mac", "mag", "mal", "lmm", "transformer"):
        assert f"tiny-{variant}" in out
    assert "0.19M" in out  # tiny-mac at vocabulary 256


def test_unknown_command_fails():
    with pytest.raises(SystemExit) as e:
        main(["nope"])
    assert e.value.code == 2
