"""The command line: help, and bad input -> message + exit 2 + nothing written."""

import subprocess
import sys

import pytest

from sagekit.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sagekit", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_the_commands():
    res = run_cli("--help")
    assert res.returncode == 0
    for word in ("run", "toy", "list"):
        assert word in res.stdout


def test_list_names_studies_and_models(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy-world" in out and "toy-pixel" in out and "toy-ensemble" in out
    from sagekit.models.families import FAMILIES

    assert all(cls in out for cls in FAMILIES)


@pytest.mark.parametrize("args,message", [
    (["run", "no-such-study"], "unknown study 'no-such-study'"),
    (["run", "toy-world", "-p", "nope=1"], "has no parameter 'nope'"),
    (["run", "toy-world", "-p", "per_label=many"], "parameter 'per_label' takes int"),
    (["run", "toy-world", "-p", "per_label=1.5"], "takes int"),
    (["run", "toy-world", "-p", "per_label"], "key=value"),
    (["toy", "eval", "--per-label", "0"], "must be positive"),
    (["ad", "/no/such/folder"], "not a folder"),
    (["toy", "train", "--seed", "-1"], "--seed must be from 0"),
    (["toy", "train", "--out", "/proc/sagekit-weights"], "not writable"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    if args[0] == "run":
        args = args + ["--out", str(out)]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_unknown_command_exits_2():
    res = run_cli("toy", "nope")
    assert res.returncode == 2 and "invalid choice" in res.stderr
