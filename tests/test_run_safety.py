"""How `sagekit run` fails and cleans up: a failing notebook, a killed run, two runs in
one second, an unwritable --out. Uses a two-cell notebook (tests/tiny_study.py) whose
kernel starts in seconds."""

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import tiny_study

from sagekit import report
from sagekit.cli import main
from sagekit.report import ParameterError, StudyFailed, clear_stale_runs, run_study

HERE = Path(__file__).resolve().parent


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tiny_study.register(tmp_path / "nb", monkeypatch)


def _runs(tmp_path):
    return sorted((tmp_path / "tmp").glob("sagekit-run-*"))


def test_a_failing_notebook_reports_its_own_error_and_writes_nothing_to_out(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(StudyFailed) as err:
        run_study(tiny.id, ["fail=True"], out)
    msg = str(err.value)
    assert "ValueError: boom from the notebook" in msg and "in cell" in msg and len(msg.splitlines()) <= 4
    kept = Path(msg.split("kept at ")[1].strip())
    assert kept.is_file() and kept.suffix == ".ipynb" and out not in kept.parents
    assert not out.exists() and not _runs(tmp_path)  # nothing in --out; the run folder is gone
    assert main(["run", tiny.id, "-p", "fail=True", "--out", str(out)]) == 1
    assert "boom from the notebook" in capsys.readouterr().err and not out.exists()


def test_two_runs_in_the_same_second_keep_both_reports(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "_timestamp", lambda: "20260102-030405")  # both start in the same second
    out = tmp_path / "out"
    a, b = run_study(tiny.id, [], out), run_study(tiny.id, [], out)
    assert a["started"] == b["started"] and a["html"] != b["html"]
    for s in (a, b):
        assert (out / s["html"]).stat().st_size > 1000 and (out / s["notebook"]).is_file()
    index = (out / "index.html").read_text()
    assert a["html"] in index and b["html"] in index
    assert not list(out.glob(".*.part")) and not _runs(tmp_path)


def test_an_unwritable_out_is_refused_before_the_run(tiny, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    import papermill

    def never(*args, **kwargs):
        raise AssertionError("the notebook ran")

    monkeypatch.setattr(papermill, "execute_notebook", never)
    with pytest.raises(ParameterError, match="is not a folder"):
        run_study(tiny.id, ["sleep=30"], blocker / "out")
    assert main(["run", tiny.id, "--out", "/proc/sagekit-out"]) == 2
    assert "not writable" in capsys.readouterr().err and not _runs(tmp_path)


def test_a_full_disk_is_refused_before_the_run_or_leaves_nothing_behind(tiny, tmp_path, capsys, monkeypatch):
    import errno
    import shutil

    out = tmp_path / "out"
    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real_usage(p)._replace(free=3 * 2**20))
    assert main(["run", tiny.id, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "only 3.0 MiB free" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    monkeypatch.setattr(shutil, "disk_usage", real_usage)

    # the disk fills up while the study runs: the page is cut short as it is written
    real_write = Path.write_text

    def fills_up(self, data, *args, **kwargs):
        if self.name.endswith(".part") and ".html." in self.name:
            real_write(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fills_up)
    assert main(["run", tiny.id, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "nothing of it was left there" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("sagekit: error")]) == 1
    assert list(out.iterdir()) == [] and not _runs(tmp_path)


def test_stale_run_folders_are_cleared_and_live_ones_kept(tmp_path):
    live, dead = tmp_path / "sagekit-run-live", tmp_path / "sagekit-run-dead"
    for d in (live, dead):
        d.mkdir()
        (d / "kernel.json").write_text("{}")
    holder = open(live / "lock", "w")
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a run in progress holds its lock
    (dead / "lock").write_text("")  # its run was killed: nobody holds the lock
    try:
        assert clear_stale_runs(tmp_path) == [dead]
        assert live.is_dir() and not dead.exists()
    finally:
        holder.close()


def _kernel_alive(connection_file: Path) -> bool:
    for proc in Path("/proc").iterdir():
        try:
            if str(connection_file) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                return True
        except OSError:
            continue
    return False


def test_a_killed_run_leaves_nothing_behind_after_the_next_run(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "HF_HUB_OFFLINE": "1"}
    (tmp_path / "tmp").mkdir()
    cmd = [sys.executable, str(HERE / "tiny_study.py"), str(tmp_path / "nb")]
    proc = subprocess.Popen(cmd + ["-p", "sleep=120", "--out", str(tmp_path / "out")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not list((tmp_path / "tmp").glob("sagekit-run-*/kernel.json")) and time.time() < deadline:
            time.sleep(0.2)
        (connection,) = (tmp_path / "tmp").glob("sagekit-run-*/kernel.json")
        assert _kernel_alive(connection)
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_dir = connection.parent
    assert run_dir.is_dir()  # what a killed run leaves: its folder, with the connection file (HMAC key)
    deadline = time.time() + 20
    while _kernel_alive(connection) and time.time() < deadline:  # the kernel notices its parent is gone
        time.sleep(0.5)
    assert not _kernel_alive(connection)
    done = subprocess.run(cmd + ["--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not run_dir.exists() and not list((tmp_path / "tmp").iterdir())  # the rerun cleared it; it left none
    assert len(list((tmp_path / "out").glob("*.json"))) == 1  # only the finished run wrote a report


def test_ctrl_c_ends_a_run_with_one_line_and_the_next_run_leaves_nothing(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "HF_HUB_OFFLINE": "1"}
    (tmp_path / "tmp").mkdir()
    cmd = [sys.executable, str(HERE / "tiny_study.py"), str(tmp_path / "nb")]
    # as from a terminal: a test suite started in the background (`cmd &`) ignores SIGINT, and
    # its children would inherit that
    proc = subprocess.Popen(cmd + ["-p", "sleep=120", "--out", str(tmp_path / "out")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120  # a bound on a wait for the kernel, not a measured time
    while not (tmp_path / "nb" / "sleeping").exists() and time.time() < deadline:  # the sleep cell runs
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    # sagekit's own part is one line (the kernel, left without its sockets, may log its own error as it goes)
    assert proc.returncode == 130 and "sagekit: interrupted" in err.splitlines(), err
    assert "KeyboardInterrupt" not in err and not (tmp_path / "out").exists()
    done = subprocess.run(cmd + ["--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not list((tmp_path / "tmp").iterdir())  # the run folder (its HMAC key) is gone
