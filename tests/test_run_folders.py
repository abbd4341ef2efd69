"""Run folders under stress: one writer per folder, no hangs on failed writes or Ctrl-C, resumes
that change training settings, and one-line CLI errors."""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctl_jax.cli import main
from ctl_jax.testing import corrupt_checkpoint
from ctl_jax.train.checkpoint import Checkpointer, checkpoint_dir
from ctl_jax.train.lock import LOCK_FILE, WorkdirError, holds_lock, read_holder, workdir_lock
from ctl_jax.train.runs import load_run
from ctl_jax.train.supervised import train_base
from test_train import DEG, SPEC, ToySampler, config, snapshot

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "experiments" / "demo.py") + ":smoke"


def cli(*args, timeout=120, max_file_size=None):
    """Run ``ctl-jax args`` in a fresh interpreter; (return code, stderr lines, seconds).

    ``max_file_size``: bytes any one file may grow to (RLIMIT_FSIZE), like a full disk for writes past it."""
    limit = (f"import resource\nresource.setrlimit(resource.RLIMIT_FSIZE, ({max_file_size}, {max_file_size}))\n"
             if max_file_size else "")
    code = f"import sys\n{limit}from ctl_jax.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    return proc.returncode, proc.stderr.splitlines(), time.monotonic() - start


def error_lines(lines):
    """stderr without the progress bar's lines."""
    return [line for line in lines if line.strip() and "%|" not in line]


def hold_lock_in_subprocess(folder):
    """A process holding ``folder``'s lock until killed; returns once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from ctl_jax.train.lock import workdir_lock\n"
        f"with workdir_lock({str(folder)!r}):\n"
        "    print('LOCKED', flush=True)\n"
        "    time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "LOCKED"
    return proc


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A finished `ctl-jax train` run of the smoke preset (4 steps, checkpoints at 2 and 4)."""
    workdir = tmp_path_factory.mktemp("smoke") / "run"
    assert main(["train", "--config", SMOKE, "--workdir", str(workdir)]) == 0
    return workdir


# -- one writer per folder -------------------------------------------------------------------------

def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
    folder = tmp_path / "run"
    holder = hold_lock_in_subprocess(folder)
    try:
        start = time.monotonic()
        with pytest.raises(WorkdirError, match=rf"in use by pid {holder.pid} on host .*, started .*kill {holder.pid}"
                                               rf".*delete .*{LOCK_FILE}"):
            with workdir_lock(folder):
                pass
        with pytest.raises(WorkdirError, match=f"pid {holder.pid}"):  # the train loop takes the same lock
            train_base(SPEC, DEG, ToySampler(), folder, config(steps=2))
        assert time.monotonic() - start < 5
        assert not checkpoint_dir(folder).exists()
        code, lines, _ = cli("sweep", "--model", tmp_path / "missing", "--out", folder)
        assert code == 2 and len(lines) == 1 and f"in use by pid {holder.pid}" in lines[0], lines
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL leaves the holder's lock file behind, but the kernel released the lock with the process
    assert read_holder(folder)["pid"] == holder.pid
    with workdir_lock(folder):
        assert read_holder(folder)["pid"] == os.getpid()
    assert not (folder / LOCK_FILE).exists()


def test_lock_file_of_a_dead_process_does_not_block(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 2 ** 22 + 1, "host": "gone", "started": "yesterday"}))
    with workdir_lock(tmp_path):
        assert read_holder(tmp_path)["pid"] == os.getpid()
    params = train_base(SPEC, DEG, ToySampler(), tmp_path, config(steps=2, ckpt_every=2))
    assert params and not (tmp_path / LOCK_FILE).exists()


def test_lock_is_reentrant_in_one_process_and_excludes_other_descriptions(tmp_path):
    outer, inner = tmp_path / "experiment", tmp_path / "experiment" / "base"
    with workdir_lock(outer):
        with workdir_lock(inner), workdir_lock(outer):  # nested: other folder, and the same one again
            assert holds_lock(outer) and holds_lock(inner)
        assert holds_lock(outer) and not holds_lock(inner)
        # flock locks belong to open file descriptions: a second one (as another process would open) is refused
        fd = os.open(outer / LOCK_FILE, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert not holds_lock(outer) and not (outer / LOCK_FILE).exists()
    fresh = tmp_path / "never-used"
    with pytest.raises(RuntimeError, match="boom"):
        with workdir_lock(fresh):
            raise RuntimeError("boom")
    assert not fresh.exists()  # a folder the lock created and nothing filled is removed again


# -- failures and Ctrl-C end the process promptly --------------------------------------------------

def test_checkpoints_path_that_is_a_file_fails_at_once(tmp_path):
    (tmp_path / "checkpoints").write_text("not a folder")
    code, lines, seconds = cli("train", "--config", SMOKE, "--workdir", tmp_path, timeout=120)
    assert code == 2 and error_lines(lines) == [
        f"ctl-jax: error: {tmp_path / 'checkpoints'} is not a directory; move it aside or use another workdir"], lines
    assert (tmp_path / "checkpoints").read_text() == "not a folder" and seconds < 60


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_workdir_fails_at_once(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    tmp_path.chmod(0o555)
    (tmp_path / "checkpoints").chmod(0o555)
    try:
        code, lines, _ = cli("train", "--config", SMOKE, "--workdir", tmp_path, timeout=120)
    finally:
        (tmp_path / "checkpoints").chmod(0o755)
        tmp_path.chmod(0o755)
    assert code == 2 and len(error_lines(lines)) == 1 and "cannot write in" in lines[-1], lines


def test_failed_checkpoint_write_ends_with_one_line(tmp_path):
    # the array files of the first checkpoint are larger than 8000 bytes: their writes fail as on a full disk
    code, lines, seconds = cli("train", "--config", SMOKE, "--workdir", tmp_path, timeout=120, max_file_size=8000)
    assert code == 2 and len(error_lines(lines)) == 1, lines
    assert lines[-1].startswith(f"ctl-jax: error: saving step 2 in {checkpoint_dir(tmp_path)} failed"), lines
    assert "no earlier checkpoint exists" in lines[-1] and seconds < 100
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.steps() == []  # the failed write left no step behind


def test_ctrl_c_ends_training_promptly_and_keeps_the_last_checkpoint(tmp_path):
    workdir, log = tmp_path / "run", tmp_path / "stderr.txt"
    with open(log, "w") as stderr:  # a file, not a pipe: a full pipe would stall the progress bar
        proc = subprocess.Popen([sys.executable, "-m", "ctl_jax.cli", "train", "--config", SMOKE, "--workdir",
                                 str(workdir), "--set", "stage1.steps=5000", "--set", "stage1.ckpt_every=3",
                                 "--set", "stage1.log_every=3"],
                                env={**os.environ, "JAX_PLATFORMS": "cpu"}, stderr=stderr)
    ckpts = checkpoint_dir(workdir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, log.read_text()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the process was still alive 20 s after Ctrl-C")
    err = log.read_text()
    lines = error_lines(err.splitlines())
    assert proc.returncode == 130 and len(lines) == 1 and "Traceback" not in err, err
    model = load_run(workdir)
    assert lines[0].startswith("ctl-jax: training interrupted after step ")
    assert f"the last checkpoint is step {model.step} in {ckpts}" in lines[0] and 0 < model.step < 5000
    assert not (workdir / LOCK_FILE).exists()


# -- a resume keeps the run's settings unless told otherwise ---------------------------------------

def test_resume_with_changed_settings_is_refused_naming_each_difference(tmp_path):
    train_base(SPEC, DEG, ToySampler(), tmp_path, config(steps=3, ckpt_every=3))
    before = snapshot(tmp_path)
    changed = config(steps=6, ckpt_every=3, lr=1e-2, seed=1, patch_size=24)
    with pytest.raises(ValueError, match=r"up to step 3, trained with other settings: patch_size 16 -> 24, "
                                         r"lr 0.001 -> 0.01, seed 0 -> 1; .*allow-changed-settings"):
        train_base(SPEC, DEG, ToySampler(patch_size=24), tmp_path, changed)
    assert snapshot(tmp_path) == before


def test_allowed_changes_are_recorded_and_free_settings_need_no_permission(tmp_path):
    train_base(SPEC, DEG, ToySampler(), tmp_path, config(steps=3, ckpt_every=3))
    # more steps and other log/checkpoint frequencies change nothing already computed
    train_base(SPEC, DEG, ToySampler(), tmp_path, config(steps=4, ckpt_every=1, log_every=1, keep=2))
    assert load_run(tmp_path).meta.history == []
    train_base(SPEC, DEG, ToySampler(seed=1), tmp_path, config(steps=6, ckpt_every=3, lr=1e-2, seed=1,
                                                                allow_changes=True))
    entry = {"step": 4, "changes": {"lr": [0.001, 0.01], "seed": [0, 1]}}
    model = load_run(tmp_path)
    assert model.step == 6 and model.meta.history == [entry]
    assert model.meta.config["lr"] == 0.01 and "allow_changes" not in model.meta.config
    train_base(SPEC, DEG, ToySampler(seed=1), tmp_path, config(steps=7, ckpt_every=7, lr=1e-2, seed=1))
    assert load_run(tmp_path).meta.history == [entry]  # resuming with the new settings adds nothing


def test_cli_refuses_changed_settings_unless_allowed(smoke_run, tmp_path, capsys):
    workdir = tmp_path / "run"
    shutil.copytree(smoke_run, workdir)
    args = ["train", "--config", SMOKE, "--workdir", str(workdir), "--set", "stage1.steps=6",
            "--set", "stage1.lr=0.001"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"ctl-jax: error: {workdir} holds this run up to step 4, trained with other settings: lr 0.0005 -> 0.001; "
        "resume with the run's settings, use another workdir, or accept the change (TrainConfig(allow_changes=True); "
        "ctl-jax --allow-changed-settings), which the run's history records")
    assert main(args + ["--allow-changed-settings"]) == 0
    model = load_run(workdir)
    assert model.step == 6 and model.meta.history == [{"step": 4, "changes": {"lr": [0.0005, 0.001]}}]


# -- one-line errors -------------------------------------------------------------------------------

def test_huge_learning_rate_is_a_one_line_cli_error(tmp_path, capsys):
    assert main(["train", "--config", SMOKE, "--workdir", str(tmp_path), "--set", "stage1.lr=1e9"]) == 2
    err = [line for line in error_lines(capsys.readouterr().err.splitlines())]
    assert len(err) == 1 and err[0].startswith("ctl-jax: error: non-finite") and "step" in err[0], err


def test_corrupt_checkpoint_prints_only_the_one_line_error(smoke_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(smoke_run, workdir)
    corrupt_checkpoint(workdir, 4)
    script = tmp_path / "three_tries.py"  # the stray tracebacks come and go: try three times in one process
    script.write_text("import sys\nfrom ctl_jax.cli import main\n"
                      f"codes = [main(['train', '--config', {SMOKE!r}, '--workdir', {str(workdir)!r}, "
                      "'--set', 'stage1.steps=6']) for _ in range(3)]\n"
                      "sys.exit(max(codes))\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    lines = error_lines(proc.stderr.splitlines())
    assert proc.returncode == 2 and len(lines) == 3, proc.stderr
    assert all(line.startswith(f"ctl-jax: error: checkpoint step 4 in {checkpoint_dir(workdir)} is corrupt")
               for line in lines), lines
