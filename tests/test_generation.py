"""Digit generation (Dynamic-Net's DCGAN experiment): the IDX reader, the generator and the
generation task, a GAN base stage, the digit classifier."""

import gzip

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.data import PatchSampler
from ctl_jax.data.mnist import load_mnist, read_idx
from ctl_jax.eval.digits import train_digit_classifier
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.tasks import make_task
from ctl_jax.tasks.generation import Generation
from ctl_jax.train.gan import Adversarial
from ctl_jax.train.loop import TrainConfig
from ctl_jax.train.runs import load_run
from ctl_jax.train.supervised import train_base
from ctl_jax.tuners import apply_tuned, make_tuner
from ctl_jax.testing import perturb


def write_idx(path, array: np.ndarray, compress=True):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


def test_idx_reader_and_mnist_folder(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 8, 3]), compress=False)
    x, y = load_mnist(tmp_path)
    assert x.shape == (3, 28, 28, 1) and x.dtype == np.float32 and x.max() == 1.0
    np.testing.assert_array_equal(x[1, :, :, 0] * 255, images[1])
    np.testing.assert_array_equal(y, [3, 8, 3])
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", images, compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_mnist(tmp_path / "nowhere")


def test_generator_task_and_dynamic_net_start_at_the_base():
    spec = NetworkSpec("dcgan", "tiny", channels=1)
    model, task = spec.build(), make_task({"kind": "generation", "latent": 8})
    assert task == Generation(8) and task.input_shape(28, 1) == (1, 1, 1, 8)
    real = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    batch = task.device_batch(jax.random.key(0), (real, task.step_levels(0, 0, 4, "b")), "b")
    assert batch.input.shape == (4, 1, 1, 8) and float(batch.control[0, 0]) == 1.0
    theta0 = model.init(jax.random.key(1), batch.input)["params"]
    y = model.apply({"params": theta0}, batch.input)
    assert y.shape == (4, 28, 28, 1) and float(y.min()) >= 0 and float(y.max()) <= 1
    tuner = make_tuner("dynamic-net")  # tuning blocks after block_0 and block_1
    phi = perturb(tuner.init(jax.random.key(2), theta0, model, batch.input), scale=0.1)
    assert len(phi["points"]) == 2
    np.testing.assert_array_equal(apply_tuned(model, tuner, theta0, phi, batch.input, 0.0), y)
    assert float(jnp.abs(apply_tuned(model, tuner, theta0, phi, batch.input, 1.0) - y).max()) > 1e-4
    with pytest.raises(ValueError, match="noise"):
        model.apply({"params": theta0}, jnp.zeros((1, 2, 2, 8)))


def test_a_gan_base_stage_trains_both_trees_and_loads(tmp_path):
    digits = [np.random.default_rng(i).random((28, 28, 1)).astype(np.float32) for i in range(4)]
    gan = Adversarial("standard", 1.0, "tiny", 2e-4)
    out = train_base(NetworkSpec("dcgan", "tiny", channels=1), Generation(8), PatchSampler(digits, 28, 4, 0, augment=False),
                     tmp_path / "g", TrainConfig(steps=2, batch_size=4, patch_size=28, progress=False), adversarial=gan)
    assert set(out) == {"params", "discriminator"}
    run = load_run(tmp_path / "g")
    assert run.meta.adversarial == gan.to_dict() and run(jnp.zeros((2, 1, 1, 8))).shape == (2, 28, 28, 1)


def test_digit_classifier_learns_two_separable_classes():
    rng = np.random.default_rng(0)
    images = np.zeros((200, 28, 28, 1), np.float32)
    labels = np.where(np.arange(200) % 2 == 0, 3, 8)
    images[labels == 3, :14] = 1.0   # "3": top half bright; "8": bottom half bright
    images[labels == 8, 14:] = 1.0
    images += rng.normal(0, 0.2, images.shape).astype(np.float32)
    classifier = train_digit_classifier(images, labels, steps=60, batch=32)
    assert classifier.accuracy > 0.95
