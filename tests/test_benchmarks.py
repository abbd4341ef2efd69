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
    ("metrics_dmpix.py", ["--batch", "2", "--size", "32", "--repeats", "1"], "dm-pix / ours"),
])
def test_benchmark_script_runs(script, args, expect):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expect in done.stdout
