"""Outputs under stress: permissions follow the umask, unwritable destinations and full disks
are one-line errors, SIGTERM and SIGKILL leave no temporary files, a training stopped by
SIGTERM resumes to the weights of an uninterrupted run, and two trainings never share a folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from test_train_loop import smoke, toy_set, weights
from uvis import interrupt
from uvis.checkpoints import save_checkpoint
from uvis.cli import main
from uvis.engine.run_folder import RunFolder
from uvis.errors import DataError
from uvis.io import atomic_path, atomic_write_json, exclusive_lock, remove_stale_temporaries
from uvis.train import train_vis

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# ---------------------------------------------------------------------------------------------
# Permissions and destinations


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        save_checkpoint(tmp_path / "c.pth", {"format": "demo", "w": torch.zeros(2)})
    finally:
        os.umask(old)
    for name in ("a.json", "c.pth"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_unwritable_destinations_are_one_line_errors(tmp_path: Path, capsys: Any) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(DataError, match=r"folder: is a folder; give the path of a file to write"):
        atomic_write_json(folder, {})
    afile = tmp_path / "file"
    afile.write_text("x")
    target = afile / "sub" / "out.json"
    with pytest.raises(DataError) as info:
        atomic_write_json(target, {})
    assert str(info.value) == f"{target}: cannot write: {afile} is a file, not a folder"
    # Through the CLI: one line, exit status 2, for an --out that is a folder.
    gt = tmp_path / "gt.json"
    gt.write_text('{"videos": [], "categories": [], "annotations": []}')
    res = tmp_path / "res.json"
    res.write_text("[]")
    assert main(["eval", "ytvis", str(gt), str(res), "--out", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {folder}: is a folder; give the path of a file to write"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 64 KiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    # Lazy: a file object torch left open until garbage collection must not keep it mounted.
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_is_a_one_line_error_and_leaves_nothing(small_disk: Path) -> None:
    big = {"format": "demo", "w": torch.zeros(100_000)}
    with pytest.raises(DataError) as info:
        save_checkpoint(small_disk / "model.pth", big)
    assert str(info.value).startswith(f"{small_disk / 'model.pth'}: cannot write: ")
    assert "full" in str(info.value)
    with pytest.raises(DataError, match=r"cannot write: No space left on device \(the disk"):
        atomic_write_json(small_disk / "big.json", ["x" * 100] * 2000)
    assert sorted(os.listdir(small_disk)) == []


def test_read_only_disk_is_a_one_line_error(small_disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(DataError, match=r"out\.json: cannot write: Read-only file system"):
        atomic_write_json(small_disk / "out.json", {})


# ---------------------------------------------------------------------------------------------
# Signals


def _python(code: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigterm_during_a_write_removes_the_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    proc = _python(
        f"""
        import sys, time
        from uvis import interrupt
        from uvis.io import atomic_path
        interrupt.install()
        try:
            with atomic_path({str(dest)!r}) as tmp:
                tmp.write_bytes(b"half")
                print("writing", flush=True)
                time.sleep(60)
        except interrupt.Terminated:
            sys.exit(interrupt.EXIT_STATUS)
        """
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == interrupt.EXIT_STATUS
    assert os.listdir(tmp_path) == []


def test_sigkill_leftovers_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    proc = _python(
        f"""
        import time
        from uvis.io import atomic_path
        with atomic_path({str(dest)!r}) as tmp:
            tmp.write_bytes(b"half")
            print("writing", flush=True)
            time.sleep(60)
        """
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"writing"
    assert len(_temporaries(tmp_path)) == 1
    # While the writer lives, its temporary is left alone.
    assert remove_stale_temporaries(tmp_path) == []
    proc.kill()
    proc.wait(timeout=30)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"whole")
    assert os.listdir(tmp_path) == ["out.bin"] and dest.read_bytes() == b"whole"


def test_training_stopped_by_sigterm_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, sigterm_at_step: Any
) -> None:
    data = toy_set(tmp_path, empty=True)
    cfg = smoke(iterations=6, checkpoint_period=4, keep_checkpoints=3)
    full = train_vis(data, cfg, tmp_path / "full", progress=False)

    from uvis.train import loop

    with sigterm_at_step(loop, 3), pytest.raises(interrupt.Terminated, match="after iteration 3"):
        train_vis(data, cfg, tmp_path / "part", progress=False)
    part = tmp_path / "part"
    # Stopped at iteration 3 (no checkpoint was due): its own checkpoint, nothing half-written.
    assert [it for it, _ in RunFolder(part).checkpoints()] == [3]
    assert _temporaries(part) == [] and not (part / "model_final.pth").exists()
    resumed = train_vis(data, cfg, part, progress=False)
    assert resumed.start_iteration == 3 and resumed.iteration == 6
    a, b = weights(full.model), weights(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    final_a = torch.load(full.final, weights_only=True)["model"]
    final_b = torch.load(resumed.final, weights_only=True)["model"]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    assert full.final is not None and resumed.final is not None
    assert full.final.read_bytes() == resumed.final.read_bytes()  # byte for byte


def test_two_trainings_never_share_an_output_folder(tmp_path: Path) -> None:
    data = toy_set(tmp_path)
    out = tmp_path / "run"
    with exclusive_lock(out, "a test"):
        with pytest.raises(DataError) as info:
            train_vis(data, smoke(iterations=2), out, progress=False)
    message = str(info.value)
    assert message.startswith(f"{out}: ") and f"pid {os.getpid()} is already running" in message
    assert RunFolder(out).checkpoints() == []
    # Released: the same training now runs, and leaves no lock file behind.
    assert train_vis(data, smoke(iterations=2), out, progress=False).final is not None
    assert not (out / ".lock").exists()


def test_a_closed_pipe_is_no_traceback() -> None:
    """`uvis schemas | head`: the reader is gone before uvis writes (here: never was there)."""
    env = {**os.environ, "PYTHONPATH": SRC}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "uvis", "schemas"],
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr


def test_extraction_under_a_file_is_a_one_line_error(
    tmp_path: Path, make_video: Any, capsys: Any
) -> None:
    videos = tmp_path / "videos"
    make_video(videos / "a.mp4", frames=2)
    blocker = tmp_path / "frames"
    blocker.write_text("a file where the frames folder should go")
    argv = ["data", "extract", str(videos), str(blocker / "x"), "--vocabulary", "cat"]
    code = main([*argv, "--index-out", str(tmp_path / "i.parquet")])
    assert code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(blocker) in errors[0] and "Not a directory" in errors[0]
    assert "Traceback" not in err


def test_every_torch_file_written_to_a_full_disk_is_a_one_line_error(small_disk: Path) -> None:
    # The stand-in trainers write their weights with torch.save inside atomic_path.
    with pytest.raises(DataError) as info:
        with atomic_path(small_disk / "state.pth") as tmp:
            torch.save({"w": torch.zeros(100_000)}, tmp)
    assert str(info.value) == (
        f"{small_disk / 'state.pth'}: cannot write: the file was cut short "
        "(is the disk or quota full?)"
    )
    assert os.listdir(small_disk) == []


def test_temporary_folders_follow_the_umask(tmp_path: Path) -> None:
    from uvis.io import temporary_dir

    old = os.umask(0o002)
    try:
        folder = temporary_dir(tmp_path / "out" / "strips")
    finally:
        os.umask(old)
    assert folder.parent == tmp_path / "out" and folder.name.startswith(".strips.")
    assert folder.stat().st_mode & 0o777 == 0o775
