"""The one training loop and its run folders: stages of every tuner kind, frozen base, kill/resume,
multi-device, NaN, errors."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from ctl_jax.control import Control
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.tasks import Restoration
from ctl_jax.testing import corrupt_checkpoint
from ctl_jax.train.checkpoint import CheckpointError, Checkpointer, checkpoint_dir
from ctl_jax.train.loop import METRICS_FILE, TrainConfig
from ctl_jax.train.runs import load_run
from ctl_jax.train.supervised import train_base, train_tuner
from ctl_jax.tuners.trees import flatten

HERE = Path(__file__).resolve().parent
SPEC = NetworkSpec("adafm_net", "tiny", channels=3)
DEG = Restoration("noise", 15, 50)


class ToySampler:
    """Stand-in for ``ctl_jax.data.patches.PatchSampler``: ``batch(step)`` is a pure function of (seed, step).

    Crops (batch_size, P, P, 3) float32 from fixed random images. ``delay`` slows each batch
    (to catch a run mid-training); ``nan_at`` poisons the batch of that step.
    """

    def __init__(self, patch_size=16, batch_size=4, seed=0, delay=0.0, nan_at=None):
        self.images = np.random.default_rng(1234).random((3, 32, 32, 3), dtype=np.float32)
        self.patch_size, self.batch_size, self.seed = patch_size, batch_size, seed
        self.delay, self.nan_at = delay, nan_at

    def batch(self, step):
        time.sleep(self.delay)
        rng = np.random.default_rng([self.seed, step])
        p = self.patch_size
        crops = []
        for _ in range(self.batch_size):
            i = rng.integers(len(self.images))
            y, x = rng.integers(0, self.images.shape[1] - p + 1, size=2)
            crops.append(self.images[i, y:y + p, x:x + p])
        out = np.stack(crops)
        if step == self.nan_at:
            out[0, 0, 0, 0] = np.nan
        return out


def config(**overrides):
    base = dict(steps=6, batch_size=4, patch_size=16, lr=1e-3, lr_milestones=[4], lr_gamma=0.5,
                log_every=2, ckpt_every=3, keep=3, seed=0, progress=False)
    return TrainConfig(**{**base, **overrides})


def assert_trees_equal(a, b):
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg="/".join(k))


def all_finite(tree):
    return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(tree))


def snapshot(directory):
    """{relative path: sha256} of every file below ``directory``."""
    root = Path(directory)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_metrics(workdir):
    return [json.loads(line) for line in (Path(workdir) / METRICS_FILE).read_text().splitlines()]


def run_script(tmp_path, body, env=None, **popen):
    """Start ``body`` as a Python script in a subprocess that can import this test module."""
    script = tmp_path / f"script_{abs(hash(body))}.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(HERE)!r})\n" + textwrap.dedent(body))
    full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.Popen([sys.executable, str(script)], env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("stage1")
    params = train_base(SPEC, DEG, ToySampler(), workdir, config())
    assert all_finite(params)
    return workdir


def test_stage1_writes_checkpoints_and_metrics(base_dir):
    with Checkpointer(base_dir) as ckpt:
        assert ckpt.steps() == [3, 6]
        meta = ckpt.read_meta()
    assert meta["network"] == SPEC.to_dict() and meta["tuner"] is None and meta["stage"] == "base"
    assert meta["task"]["level_a"] == [15] and meta["target"] == "a"
    assert meta["step"] == 6 and meta["config"]["steps"] == 6
    records = read_metrics(base_dir)
    assert [r["step"] for r in records] == [2, 4, 6]
    assert [r["lr"] for r in records] == pytest.approx([1e-3, 1e-3, 5e-4], rel=1e-6)  # milestone 4
    for r in records:
        assert {"step", "loss", "lr", "steps_per_s", "images_per_s", "time"} <= r.keys()
        assert np.isfinite(r["loss"]) and r["images_per_s"] > 0


@pytest.mark.parametrize("method", ["ftn-gc4", "adafm", "dni", "cfsnet", "dynamic-net"])
def test_stage2_trains_phi_and_leaves_base_bit_identical(base_dir, tmp_path, method):
    files_before = snapshot(base_dir)
    theta_before = load_run(base_dir).theta0
    phi = train_tuner(method, DEG, ToySampler(seed=1), tmp_path / "tuned", config(), base_workdir=base_dir,
                      spec=SPEC)["params"]
    assert all_finite(phi)
    assert snapshot(base_dir) == files_before  # read-only: nothing written to the stage-1 workdir

    records = read_metrics(tmp_path / "tuned")
    assert [r["step"] for r in records] == [2, 4, 6] and all(np.isfinite(r["loss"]) for r in records)

    shutil.rmtree(base_dir.parent / "moved", ignore_errors=True)
    shutil.copytree(base_dir, base_dir.parent / "moved")  # the tuned run keeps its own copy of the base
    model = load_run(tmp_path / "tuned")
    assert model.meta.stage == "tune" and model.meta.tuner == method and model.meta.target == "b"
    assert model.meta.base["workdir"] == str(base_dir.resolve()) and model.meta.base["step"] == 6
    assert model.meta.spec.adafm_kernel == (5 if method == "adafm" else None)
    assert_trees_equal(model.phi, phi)
    for path, leaf in flatten(model.theta0).items():  # the base inside the tuned model is the stage-1 base
        if not any(str(p).startswith("adafm") for p in path):
            np.testing.assert_array_equal(leaf, flatten(theta_before)[path])
    x = ToySampler().batch(0)
    np.testing.assert_array_equal(model(x, 0.0), load_run(base_dir)(x))  # control 0 is the base
    assert float(np.abs(np.asarray(model(x, 1.0)) - np.asarray(model(x, 0.0))).max()) > 0


def test_tuned_run_stays_loadable_and_resumable_when_its_base_is_gone(base_dir, tmp_path, capsys):
    """Issue 10 item 1: training the base further (its checkpoint rotation drops the step a tuned run
    came from), then deleting it, changes nothing for the tuned run; a resume says the base moved on."""
    base = tmp_path / "base"
    shutil.copytree(base_dir, base)
    train_tuner("ftn-gc16", DEG, ToySampler(seed=1), tmp_path / "ftn", config(steps=3), base_workdir=base, spec=SPEC)
    x = ToySampler().batch(0)
    before = np.asarray(load_run(tmp_path / "ftn")(x, 0.5))
    train_base(SPEC, DEG, ToySampler(), base, config(steps=10, keep=1))  # the base moves on: step 6 is rotated out
    with Checkpointer(base) as ckpt:
        assert ckpt.steps() == [10]
    np.testing.assert_array_equal(load_run(tmp_path / "ftn")(x, 0.5), before)
    capsys.readouterr()
    train_tuner("ftn-gc16", DEG, ToySampler(seed=1), tmp_path / "ftn", config(steps=4), base_workdir=base, spec=SPEC)
    assert "keeps the base it was tuned from (step 6" in capsys.readouterr().err
    shutil.rmtree(base)
    phi = train_tuner("ftn-gc16", DEG, ToySampler(seed=1), tmp_path / "ftn", config(steps=6), base_workdir=base,
                      spec=SPEC)["params"]  # resumes on the base copy kept in the run
    assert all_finite(phi) and load_run(tmp_path / "ftn").step == 6


def test_one_stage_conditional_tuner_trains_over_the_level_range(tmp_path):
    spec = NetworkSpec("ffdnet", "tiny", channels=3)
    train_tuner("conditional", DEG, ToySampler(), tmp_path, config(steps=4), spec=spec)
    model = load_run(tmp_path)
    assert model.meta.target == "range" and model.meta.base is None and model.theta0 == {}
    x = ToySampler().batch(0)
    ramp = Control.per_pixel(np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1)))
    assert model(x, ramp).shape == x.shape
    with pytest.raises(ValueError, match="give the network spec"):
        train_tuner("conditional", DEG, ToySampler(), tmp_path / "nospec", config())


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    steps = 14
    killed = tmp_path / "killed"
    proc = run_script(tmp_path, f"""
        from test_train import DEG, SPEC, ToySampler, config
        from ctl_jax.train.supervised import train_base
        train_base(SPEC, DEG, ToySampler(delay=0.25), {str(killed)!r},
                   config(steps={steps}, ckpt_every=2, log_every=1))
        print("FINISHED")
    """)
    ckpts = checkpoint_dir(killed)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):  # orbax renames when committed
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training finished (or crashed) before it could be killed:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Checkpointer(killed) as ckpt:
        saved = ckpt.steps()
    assert saved and saved[-1] < steps

    cfg = config(steps=steps, ckpt_every=2, log_every=1)
    resumed = train_base(SPEC, DEG, ToySampler(), killed, cfg)
    straight = train_base(SPEC, DEG, ToySampler(), tmp_path / "straight", cfg)
    assert_trees_equal(resumed, straight)
    losses = lambda w: [(r["step"], r["loss"]) for r in read_metrics(w)]
    assert losses(killed) == losses(tmp_path / "straight")  # stale lines of the killed run were dropped


def test_four_devices_match_one_device(tmp_path):
    out = tmp_path / "four.npz"
    proc = run_script(tmp_path, f"""
        import jax, numpy as np
        assert jax.device_count() == 4, jax.devices()
        from test_train import DEG, SPEC, ToySampler, config
        from ctl_jax.train.supervised import train_base, train_tuner
        from ctl_jax.tuners.trees import flatten, path_str
        try:
            train_base(SPEC, DEG, ToySampler(batch_size=6), {str(tmp_path / 'bad')!r}, config(batch_size=6))
        except ValueError as e:
            assert "not divisible by the 4 devices" in str(e), e
        else:
            raise AssertionError("batch 6 on 4 devices was accepted")
        # 2 samples per device, split into 2 micro-batches: chunks cut across all four shards
        cfg = config(steps=3, log_every=1, ckpt_every=3, batch_size=8, micro_batches=2)
        theta = train_base(SPEC, DEG, ToySampler(batch_size=8), {str(tmp_path / 'four_base')!r}, cfg)["params"]
        phi = train_tuner("adafm", DEG, ToySampler(batch_size=8, seed=1), {str(tmp_path / 'four_tune')!r}, cfg,
                          base_workdir={str(tmp_path / 'four_base')!r})["params"]
        assert len(theta["fea_conv"]["kernel"].sharding.device_set) == 4
        arrays = {{"theta/" + path_str(k): np.asarray(v) for k, v in flatten(theta).items()}}
        arrays.update({{"phi/" + path_str(k): np.asarray(v) for k, v in flatten(phi).items()}})
        np.savez({str(out)!r}, **arrays)
    """, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, log

    assert jax.device_count() == 1
    cfg = config(steps=3, log_every=1, ckpt_every=3, batch_size=8, micro_batches=1)
    theta = train_base(SPEC, DEG, ToySampler(batch_size=8), tmp_path / "one_base", cfg)["params"]
    phi = train_tuner("adafm", DEG, ToySampler(batch_size=8, seed=1), tmp_path / "one_tune", cfg,
                      base_workdir=tmp_path / "one_base")["params"]
    four = np.load(out)
    for prefix, tree in (("theta/", theta), ("phi/", phi)):
        for k, v in flatten(tree).items():
            np.testing.assert_allclose(four[prefix + "/".join(k)], v, rtol=1e-5, atol=1e-5)
    for one, many in (("one_base", "four_base"), ("one_tune", "four_tune")):
        l1 = [r["loss"] for r in read_metrics(tmp_path / one)]
        l4 = [r["loss"] for r in read_metrics(tmp_path / many)]
        np.testing.assert_allclose(l4, l1, rtol=1e-5)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = config(steps=10, ckpt_every=2, log_every=100)
    with pytest.raises(FloatingPointError, match=r"at step 6\b.*last good checkpoint is step 4"):
        train_base(SPEC, DEG, ToySampler(nan_at=5), tmp_path, cfg)  # batch 5 is used by update 6
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.steps() == [2, 4]
    model = load_run(tmp_path)
    assert model.step == 4 and all_finite(model.theta0)


def test_huge_learning_rate_stops_with_floating_point_error(tmp_path):
    cfg = config(steps=10, lr=1e6, loss="l2", ckpt_every=1, log_every=1)
    with pytest.raises(FloatingPointError, match="step"):
        train_base(SPEC, DEG, ToySampler(), tmp_path, cfg)
    assert all_finite(load_run(tmp_path).theta0)


def test_refuses_workdir_of_another_network_or_method(base_dir):
    before = snapshot(base_dir)
    with pytest.raises(ValueError, match=r"(?s)network.*found:.*adafm_net.*requested:.*dncnn"):
        train_base(NetworkSpec("dncnn", channels=3), DEG, ToySampler(), base_dir, config())
    with pytest.raises(ValueError, match=r"(?s)found:.*tuner=None.*requested:.*tuner='dni'"):
        train_tuner("dni", DEG, ToySampler(), base_dir, config(), base_workdir=base_dir)
    with pytest.raises(ValueError, match="task"):
        train_base(SPEC, Restoration("noise", 25, 50), ToySampler(), base_dir, config())
    with pytest.raises(ValueError, match="level A"):
        train_tuner("dni", Restoration("noise", 25, 50), ToySampler(), base_dir.parent / "x", config(),
                    base_workdir=base_dir)
    assert snapshot(base_dir) == before


# orbax's async reader reports "Event loop is closed" from a background thread after a failed read.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_or_missing_checkpoint_is_a_clear_error_and_nothing_is_deleted(base_dir, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(base_dir, workdir)
    corrupt_checkpoint(workdir, 6)
    before = snapshot(workdir)
    with pytest.raises(CheckpointError, match=r"step 6 .* corrupt.*Nothing was deleted.*step 3"):
        train_base(SPEC, DEG, ToySampler(), workdir, config(steps=8))
    with pytest.raises(CheckpointError, match="step 6"):
        load_run(workdir)
    assert snapshot(workdir) == before

    (checkpoint_dir(workdir) / "6" / "meta" / "metadata").write_text("{not json")
    with pytest.raises(CheckpointError, match="meta"):
        train_base(SPEC, DEG, ToySampler(), workdir, config(steps=8))
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        load_run(tmp_path / "missing")


def test_jpeg_degradation_runs_in_the_loader(tmp_path):
    params = train_base(SPEC, Restoration("jpeg", 10, 40), ToySampler(), tmp_path, config(steps=2, log_every=1))
    assert all_finite(params)
    assert len(read_metrics(tmp_path)) == 2


def _two_tree_stage(replicated, batch_sharding):
    """A toy stage with two trainable trees, each with its own optimizer (as a GAN's generator and
    discriminator): 'g' fits the batch mean by Adam, 'd' fits the batch max by SGD."""
    import jax.numpy as jnp
    import optax

    from ctl_jax.train.loop import CompiledStage

    optimizers = {"g": optax.adam(0.1), "d": optax.sgd(0.05)}

    def init(key, frozen):
        del key, frozen
        return {"g": {"w": jnp.zeros(())}, "d": {"w": jnp.zeros(())}}

    def opt_init(trainable):
        return {name: optimizers[name].init(tree) for name, tree in trainable.items()}

    def step(trainable, opt_state, frozen, arrays, data_key, index):
        del frozen, data_key, index
        (batch,) = arrays
        targets = {"g": jnp.mean(batch), "d": jnp.max(batch)}
        new, states, total = {}, {}, 0.0
        for name in ("g", "d"):
            loss, grad = jax.value_and_grad(lambda t: (t["w"] - targets[name]) ** 2)(trainable[name])
            updates, states[name] = optimizers[name].update(grad, opt_state[name], trainable[name])
            new[name], total = optax.apply_updates(trainable[name], updates), total + loss
        return new, states, total

    return CompiledStage(init=jax.jit(init), opt_init=jax.jit(opt_init), step=jax.jit(step),
                         opt_state_shape=lambda t: jax.eval_shape(opt_init, t))


def test_loop_trains_several_trees_with_their_own_optimizers_and_resumes_exactly(tmp_path):
    from ctl_jax.train.loop import train_loop

    sampler = ToySampler()
    make_feed = lambda sharding: (lambda i: (jax.device_put(sampler.batch(i), sharding),))
    meta = {"kind": "ctl_jax", "network": {}, "tuner": "toy-gan", "stage": "tune", "task": {}, "target": "b"}
    straight = train_loop(_two_tree_stage, make_feed, {}, meta, tmp_path / "straight", config(steps=6))
    train_loop(_two_tree_stage, make_feed, {}, meta, tmp_path / "resumed", config(steps=3))
    resumed = train_loop(_two_tree_stage, make_feed, {}, meta, tmp_path / "resumed", config(steps=6))
    assert_trees_equal(resumed, straight)
    assert float(straight["g"]["w"]) != float(straight["d"]["w"]) and float(straight["d"]["w"]) > 0
    with Checkpointer(tmp_path / "straight") as ckpt:
        state = ckpt.restore(straight, None, _two_tree_stage(None, None).opt_state_shape(straight))
    assert set(state["opt_state"]) == {"g", "d"}


def test_super_resolution_task_trains_tunes_and_sweeps_with_a_larger_output(tmp_path):
    from ctl_jax.eval.sweep import sweep

    spec = NetworkSpec("adafm_net", "tiny", channels=3, upscale=2)
    task = Restoration("noise", 5, 30, fixed=[("bicubic_lr", 2)])
    train_base(spec, task, ToySampler(), tmp_path / "base", config(steps=2, ckpt_every=2))
    train_tuner("ftn-gc16", task, ToySampler(seed=1), tmp_path / "ftn", config(steps=2, ckpt_every=2),
                base_workdir=tmp_path / "base")
    model = load_run(tmp_path / "ftn")
    low = np.asarray(task.eval_input(ToySampler().images[0], [5]))
    assert low.shape == (16, 16, 3) and model(low[None], 0.5).shape == (1, 32, 32, 3)
    result = sweep(model, [ToySampler().images[0]], [5, 30], [0.0, 1.0], progress=False)
    assert result.psnr.shape == (2, 2) and np.all(np.isfinite(result.psnr)) and result.input_psnr is None


def test_a_run_written_before_a_field_was_added_still_resumes(tmp_path):
    """Stored metas lack the network and task fields added later (here: upscale, fixed); their
    defaults must count as equal, or every earlier run would be refused as 'a different run'."""
    train_base(SPEC, DEG, ToySampler(), tmp_path, config(steps=3, ckpt_every=3))
    meta_file = checkpoint_dir(tmp_path) / "3" / "meta" / "metadata"
    stored = json.loads(meta_file.read_text())
    del stored["network"]["upscale"], stored["task"]["fixed"]
    meta_file.write_text(json.dumps(stored))
    params = train_base(SPEC, DEG, ToySampler(), tmp_path, config(steps=6, ckpt_every=3))["params"]
    assert all_finite(params) and load_run(tmp_path).step == 6
