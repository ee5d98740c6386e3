"""Options that mean the same in every ``uvis`` subcommand: -v/-q, --device, --vocabulary."""

from __future__ import annotations

import argparse
import logging

import pytest

from uvis.cli import _leaf_parsers, build_parser, main


def _leaves() -> dict[str, argparse.ArgumentParser]:
    return {p.prog: p for p in _leaf_parsers(build_parser())}


def test_every_subcommand_takes_verbose_and_quiet_after_its_name():
    leaves = _leaves()
    assert len(leaves) > 25
    for prog, parser in leaves.items():
        options = {s for a in parser._actions for s in a.option_strings}
        assert {"-v", "--verbose", "-q", "--quiet"} <= options, prog


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["synth", "out"], False, False),
        (["-v", "synth", "out"], True, False),
        (["synth", "out", "-v"], True, False),
        (["synth", "-q", "out"], False, True),
    ],
)
def test_log_options_before_or_after_the_subcommand(argv, verbose, quiet):
    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


def test_quiet_logs_warnings_only(tmp_path, monkeypatch, capsys):
    levels = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: levels.append(kw["level"]))
    missing = str(tmp_path / "missing.json")
    assert main(["data", "info", missing, "-q"]) == 2
    assert main(["data", "info", missing, "-v"]) == 2
    assert main(["data", "info", missing]) == 2
    assert levels == [logging.WARNING, logging.DEBUG, logging.INFO]


def test_device_means_the_same_everywhere():
    parser = build_parser()
    commands = [
        ["segment", "v.mp4", "--checkpoint", "c.pth"],
        ["track", "vis", "--checkpoint", "c", "--frames", "f", "--out", "o"],
        ["pretrain", "ssl", "corpus", "out.pth"],
        ["pretrain", "clip", "corpus", "out.pt"],
    ]
    for argv in commands:
        assert parser.parse_args(argv).device == "auto", argv
        assert parser.parse_args([*argv, "--device", "cuda:1"]).device == "cuda:1", argv


def test_a_bad_device_is_refused_naming_the_option(capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["pretrain", "ssl", "c", "o.pth", "--device", "gpu"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--device" in err and "expected auto, cpu, cuda or cuda:N, got 'gpu'" in err


def test_segment_takes_vocabulary_as_the_other_commands_do():
    parser = build_parser()
    base = ["segment", "v.mp4", "--checkpoint", "c.pth"]
    assert parser.parse_args([*base, "--vocabulary", "cat,dog"]).vocab == "cat,dog"
    assert parser.parse_args([*base, "--vocab", "cat,dog"]).vocab == "cat,dog"  # the old name


def test_every_option_and_argument_says_what_it_is():
    missing = [
        f"{parser.prog} {action.option_strings[0] if action.option_strings else action.dest}"
        for parser in _leaf_parsers(build_parser())
        for action in parser._actions
        if action.help is None and action.dest != "help"
    ]
    assert missing == []
