"""Inputs refused with one-line errors where they enter the library: float images on the 0..255
scale, and a base parameter tree (theta0) passed where a tuner's phi belongs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.tasks import Restoration
from ctl_jax.train.runs import ControllableModel
from ctl_jax.tuners import TUNERS, HyperTuner

SPEC = NetworkSpec(name="adafm_net", variant="tiny", channels=3)


@pytest.fixture(scope="module")
def base():
    model = SPEC.build()
    x = jnp.zeros((1, 16, 16, 3))
    return model, model.init(jax.random.key(0), x)["params"], x


def test_a_model_refuses_inputs_on_the_0_255_scale(base):
    _, theta0, _ = base
    task = Restoration("noise", 20, 80)
    model = ControllableModel.in_memory(SPEC, task, theta0, input_size=16)
    image = np.random.default_rng(0).random((1, 16, 16, 3), dtype=np.float32)
    assert model(image).shape == (1, 16, 16, 3)
    assert model(image + 0.5 * np.random.default_rng(1).standard_normal(image.shape)).shape == image.shape
    with pytest.raises(ValueError, match=r"the model input: .*\[0, 1\] scale; found values in \[.*, 25.\..*\]; "
                                         "for 0..255 images divide by 255"):
        model(image * 255)
    with pytest.raises(ValueError, match="divide by 255"):
        model((image * 255).astype(np.uint8))
    assert jax.jit(lambda v: model(v))(image).shape == image.shape  # traced inputs pass through


@pytest.mark.parametrize("name", ["ftn", "ftn-gc16", "ftn-spatial", "adafm", "cfsnet", "dynamic-net"])
def test_theta0_passed_as_phi_is_named(base, name):
    network, theta0, x = base
    tuner = TUNERS[name]
    if name == "adafm":
        network = tuner.tuned_spec(SPEC).build()
        theta0 = network.init(jax.random.key(0), x)["params"]
    phi = tuner.init(jax.random.key(1), theta0, network, x)
    assert tuner.apply(network, theta0, phi, x, 0.5).shape == x.shape
    with pytest.raises(ValueError, match=f"^{name}: phi looks like a base parameter tree .theta0; it has "):
        tuner.apply(network, theta0, theta0, x, 0.5)
    if hasattr(tuner, "endpoint"):
        with pytest.raises(ValueError, match="phi looks like a base parameter tree"):
            tuner.endpoint(theta0, theta0)


def test_theta0_passed_as_psi_of_a_hypernetwork_is_named():
    network = NetworkSpec(name="decouple_net", variant="tiny", channels=3).build()
    x = jnp.zeros((1, 16, 16, 3))
    tuner = HyperTuner()
    psi = tuner.init(jax.random.key(0), {}, network, x)
    assert tuner.apply(network, {}, psi, x, 0.5).shape == x.shape
    with pytest.raises(ValueError, match="hyper: phi looks like a base parameter tree"):
        tuner.apply(network, {}, network.init(jax.random.key(0), x)["params"], x, 0.5)
