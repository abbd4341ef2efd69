"""The adversarial stage: GAN losses on hand-computed logits, the discriminator, the two-optimizer
step (base bit-identical, both trees trained), exact kill-and-resume, a missing discriminator."""

import math
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.losses import LOSSES
from ctl_jax.losses.gan import discriminator_loss, generator_loss
from ctl_jax.nets.discriminator import vgg_discriminator
from ctl_jax.train.checkpoint import CheckpointError, Checkpointer, checkpoint_dir
from ctl_jax.train.gan import Adversarial, r1_penalty
from ctl_jax.train.loop import METRICS_FILE
from ctl_jax.train.runs import RunMeta, load_run, normalise_meta, run_templates
from ctl_jax.train.supervised import train_base, train_tuner
from ctl_jax.tuners.trees import flatten
from test_train import DEG, SPEC, ToySampler, assert_trees_equal, config, run_script

GAN = Adversarial("ragan", weight=0.1, discriminator="tiny", lr=1e-3, r1=0.5, instance_noise=0.05)


def softplus(x):
    return math.log1p(math.exp(x))


def test_gan_losses_on_hand_computed_logits():
    real, fake = jnp.array([2.0, 0.0]), jnp.array([1.0, -1.0])  # E C(real) = 1, E C(fake) = 0
    # RaGAN: D_Ra(real) logits real - 0 = (2, 0); D_Ra(fake) logits fake - 1 = (0, -2)
    d = (np.mean([softplus(-2), softplus(0)]) + np.mean([softplus(0), softplus(-2)])) / 2
    g = (np.mean([softplus(2), softplus(0)]) + np.mean([softplus(0), softplus(2)])) / 2
    assert float(discriminator_loss(real, fake)) == pytest.approx(d, rel=1e-6)
    assert float(generator_loss(real, fake)) == pytest.approx(g, rel=1e-6)
    # the standard GAN: BCE(real, 1) + BCE(fake, 0); non-saturating generator BCE(fake, 1)
    d_std = np.mean([softplus(-2), softplus(0)]) + np.mean([softplus(1), softplus(-1)])
    assert float(discriminator_loss(real, fake, "standard")) == pytest.approx(d_std, rel=1e-6)
    assert float(generator_loss(real, fake, "standard")) == pytest.approx(np.mean([softplus(-1), softplus(1)]), rel=1e-6)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        generator_loss(real, fake, "wgan")


def test_r1_penalty_and_the_settings_a_gan_run_stores():
    w = jax.random.normal(jax.random.key(0), (4, 5, 3))
    linear = lambda x: jnp.sum(x * w, axis=(1, 2, 3)) + jnp.sum(x ** 2, axis=(1, 2, 3))  # grad: w + 2 x
    x = jax.random.normal(jax.random.key(1), (2, 4, 5, 3))
    by_hand = np.mean([np.sum(np.square(np.asarray(w + 2 * x[i]))) for i in range(2)])
    assert float(r1_penalty(linear, x)) == pytest.approx(by_hand, rel=1e-5)
    with pytest.raises(ValueError, match="instance noise"):
        Adversarial(instance_noise=-0.1)
    # a run stored before b1, r1 and instance_noise existed compares equal to today's defaults
    old = {"kind": "ctl_jax", "network": SPEC.to_dict(), "stage": "tuner", "task": DEG.to_dict(), "target": "b",
           "adversarial": {"kind": "ragan", "weight": 0.1, "discriminator": "tiny", "lr": 1e-3}}
    assert normalise_meta(old)["adversarial"] == Adversarial("ragan", 0.1, "tiny", 1e-3).to_dict()


def test_discriminator_and_perceptual_term():
    disc = vgg_discriminator("tiny")
    x = jnp.zeros((2, 16, 20, 3))
    assert jax.eval_shape(disc.init, jax.random.key(0), x)["params"]["dense_1"]["kernel"].shape == (100, 1)
    with pytest.raises(ValueError, match="at least 8x8"):
        disc.init(jax.random.key(0), jnp.zeros((1, 6, 16, 3)))
    a = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
    assert float(LOSSES["perceptual"](a, a)) == 0.0
    assert float(LOSSES["perceptual"](a, a[:, ::-1])) > 0.0


@pytest.fixture(scope="module")
def gan_base(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gan_base")
    train_base(SPEC, DEG, ToySampler(), workdir, config(steps=2, ckpt_every=2))
    return workdir


def test_two_optimizer_step_trains_both_trees_and_leaves_the_base_bit_identical(gan_base, tmp_path):
    base = load_run(gan_base)
    cfg = config(steps=3, log_every=1, ckpt_every=3, loss=[("l1", 1.0), ("perceptual", 0.1)])
    out = train_tuner("ftn", DEG, ToySampler(seed=1), tmp_path / "gan", cfg, base_workdir=gan_base, adversarial=GAN)
    assert set(out) == {"params", "discriminator"}
    tuned = load_run(tmp_path / "gan")
    assert_trees_equal(tuned.theta0, base.theta0)  # the frozen base, bit for bit
    assert tuned.meta.adversarial == GAN.to_dict()
    fresh = jax.eval_shape(GAN.network(3).init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    assert jax.tree.map(lambda a: a.shape, out["discriminator"]) == jax.tree.map(lambda a: a.shape, fresh)
    with Checkpointer(tmp_path / "gan") as ckpt:
        first = ckpt.restore(*run_templates(tuned.meta), step=3)
    assert_trees_equal(first["trainable"]["discriminator"], out["discriminator"])
    records = [line for line in (tmp_path / "gan" / METRICS_FILE).read_text().splitlines()]
    assert len(records) == 3 and all(k in records[0] for k in ('"content"', '"adversarial"', '"discriminator"'))
    # a plain (non-GAN) stage into the same folder is another run
    with pytest.raises(ValueError, match="adversarial"):
        train_tuner("ftn", DEG, ToySampler(seed=1), tmp_path / "gan", cfg, base_workdir=gan_base)
    with pytest.raises(ValueError, match="one stage"):
        train_tuner("conditional", DEG, ToySampler(), tmp_path / "one", cfg, spec=SPEC, adversarial=GAN)


def test_gan_kill_and_resume_matches_uninterrupted_run(gan_base, tmp_path):
    steps, killed = 6, tmp_path / "killed"
    proc = run_script(tmp_path, f"""
        from test_train import DEG, ToySampler, config
        from test_gan import GAN
        from ctl_jax.train.supervised import train_tuner
        train_tuner("dni", DEG, ToySampler(delay=0.3), {str(killed)!r}, config(steps={steps}, ckpt_every=2, log_every=1),
                    base_workdir={str(gan_base)!r}, adversarial=GAN)
    """)
    ckpts = checkpoint_dir(killed)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be killed:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cfg = config(steps=steps, ckpt_every=2, log_every=1)
    resumed = train_tuner("dni", DEG, ToySampler(), killed, cfg, base_workdir=gan_base, adversarial=GAN)
    straight = train_tuner("dni", DEG, ToySampler(), tmp_path / "straight", cfg, base_workdir=gan_base, adversarial=GAN)
    assert_trees_equal(resumed, straight)  # generator, discriminator: both exact


def test_a_gan_run_without_its_discriminator_says_so(gan_base, tmp_path):
    cfg = config(steps=2, ckpt_every=2)
    train_tuner("ftn", DEG, ToySampler(), tmp_path / "plain", cfg, base_workdir=gan_base)
    meta = RunMeta.from_dict({**load_run(tmp_path / "plain").meta.to_dict(), "adversarial": GAN.to_dict()})
    with Checkpointer(tmp_path / "plain") as ckpt, pytest.raises(CheckpointError, match="its discriminator is missing"):
        ckpt.restore(*run_templates(meta))


def test_pd_sr_experiment_smoke(tmp_path):
    """experiments/pd_sr.py end to end on the bundled pictures (one method, a few steps)."""
    import importlib.util
    import json
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "pd_sr.py"
    spec = importlib.util.spec_from_file_location("pd_sr", path)
    pd_sr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pd_sr)
    assert pd_sr.main(["--out", str(tmp_path / "pd"), "--preset", "smoke", "--methods", "ftn"]) == 0
    report = tmp_path / "pd" / "report"
    data = json.loads((report / "pd_sr.json").read_text())
    curve = data["results"]["ftn"]["bundled"]
    assert len(curve["psnr_y"]) == len(pd_sr.ALPHAS) == len(curve["niqe"])
    assert all(np.isfinite(curve[k]).all() for k in ("psnr_y", "ssim_y", "niqe", "colour"))
    assert 0 < data["filter_similarity"]["ftn"]["cosine"] <= 1
    assert (report / "strip_ftn.png").is_file() and (report / "pd_map.png").is_file()
    assert "| ftn |" in (report / "pd_sr.md").read_text()


def test_a_gan_stage_from_a_config_through_ctl_jax_run_and_apply(tmp_path):
    """experiments/pd_sr_run.py:smoke with one method: stage 2 trains on the task's loss_b with a
    discriminator, and the tuned network super-resolves the LR file the report leaves."""
    import pathlib

    from PIL import Image

    from ctl_jax.cli import main

    config = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "pd_sr_run.py"
    out = tmp_path / "pd"
    assert main(["run", "--config", f"{config}:smoke", "--out", str(out), "--set", "methods=['ftn']"]) == 0
    tuned = load_run(out / "ftn")
    assert tuned.meta.adversarial == Adversarial("ragan", 5e-3, "tiny", 1e-4).to_dict()
    assert tuned.meta.config["loss"] == [["l1", 0.01], ["perceptual", 1.0]]  # the task's loss_b
    with Checkpointer(out / "ftn") as ckpt:
        assert "discriminator" in ckpt.restore(*run_templates(tuned.meta))["trainable"]
    lr_file = out / "report" / "noisy_input.png"
    h, w = np.asarray(Image.open(lr_file)).shape[:2]
    assert main(["apply", "--model", str(out / "ftn"), "--input", str(lr_file), "--alpha", "0.5",
                 "--output", str(tmp_path / "sr.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "sr.png")).shape == (4 * h, 4 * w, 3)
    assert "border 4" in (out / "report" / "sweep.md").read_text()
