"""The benchmark scripts run (tiny settings; the numbers themselves are not asserted)."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script,args,expect", [
    ("cost_table.py", ["--net", "cfsnet", "--variant", "tiny", "--size", "32", "--rounds", "1"], "overhead"),
    ("train_step.py", ["--blocks", "1", "--features", "8", "--batch", "2", "--patch", "16", "--repeats", "1"],
     "stage 2 / stage 1 step time"),
    ("hyper_gamma.py", ["--variant", "tiny", "--batch", "2", "--size", "16", "--repeats", "1"], "per sample, vmap"),
    ("switch_time.py", ["--sizes", "32x24", "--repeats", "1"], "full / switch"),
    ("sweep_strategies.py", ["--variants", "tiny", "--size", "32", "--alphas", "3", "--levels", "2", "--chunks", "2",
                             "--rounds", "1"], "fastest: "),
    ("compile_time.py", ["--size", "tiny", "--batch", "4", "--patch", "16", "--stages", "1", "--micro-batches", "1",
                         "--repeats", "1", "--cpu-devices", "1", "2"], "2 dev"),
    ("metrics_dmpix.py", ["--batch", "2", "--size", "32", "--repeats", "1"], "dm-pix / ours"),
])
def test_benchmark_script_runs(script, args, expect):
    done = run(script, args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expect in done.stdout


def run(script, args, cwd=ROOT):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.parametrize("args,says", [
    (["--data", "{tmp}/no_such_folder"], "pass --data FOLDER"),
    (["--data", "{tmp}", "--weights", "{tmp}/no_such.pth"], "pass --weights FILE.pth"),
    ([], "pass --data FOLDER"),  # the defaults point into ../shared, absent seen from tmp
])
def test_missing_shared_data_ends_with_one_line_saying_what_to_pass(tmp_path, args, says):
    done = run("dncnn_bsd68.py", [a.format(tmp=tmp_path) for a in args], cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("args,says", [
    (["--weights", "{tmp}/no_such_folder", "--data", "{tmp}"], "pass --weights DIR"),
    (["--weights", "{tmp}", "--data", "{tmp}/no_such_folder"], "pass --data DIR"),
    (["--weights", "{tmp}", "--data", "{tmp}", "--only", "ffdnet-gray"], "pass --weights DIR holding ffdnet/FFDNet_gray.mat"),
    (["--weights", "{tmp}/w", "--data", "{tmp}", "--only", "dncnn3-jpeg"], "pass --data DIR holding live1/"),
    ([], "pass --weights DIR"),  # the defaults point into ../shared, absent seen from tmp
])
def test_pretrained_denoisers_missing_input_is_one_line(tmp_path, args, says):
    (tmp_path / "w" / "dncnn_matconvnet").mkdir(parents=True)
    (tmp_path / "w" / "dncnn_matconvnet" / "DnCNN3.mat").write_bytes(b"")  # only checked for existence
    done = run("pretrained_denoisers.py", [a.format(tmp=tmp_path) for a in args], cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr, done.stderr[-2000:]


@pytest.mark.skipif(not (SHARED / "weights" / "dncnn_25.pth").is_file() or not (SHARED / "test" / "bsd68").is_dir(),
                    reason="../shared/data (BSD68 and the KAIR DnCNN weights) is not in this checkout")
def test_dncnn_bsd68_runs_on_two_small_crops(tmp_path):
    from PIL import Image

    for path in sorted((SHARED / "test" / "bsd68").glob("*.png"))[:2]:
        with Image.open(path) as im:
            im.crop((0, 0, 40, 32)).save(tmp_path / path.name)
    done = run("dncnn_bsd68.py", ["--data", str(tmp_path), "--weights", str(SHARED / "weights" / "dncnn_25.pth")])
    assert done.returncode == 0, done.stderr[-2000:]
    mean = float(done.stdout.split("mean PSNR:")[1].split()[0])
    assert "images: 2" in done.stdout and 25 < mean < 40
