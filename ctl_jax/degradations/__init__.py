"""Degradations with a continuous level (noise, JPEG, blur, bicubic), one file each.

Every module of this package is imported here, so a new file that calls ``register`` is all a new
degradation needs.
"""

import importlib
import pkgutil

from ctl_jax.degradations.base import KINDS, DegradationKind, check_level, get_kind, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from ctl_jax.degradations.bicubic import bicubic_downsample, bicubic_pre_upsampled  # noqa: E402
from ctl_jax.degradations.blur import gaussian_blur  # noqa: E402
from ctl_jax.degradations.jpeg import jpeg_compress  # noqa: E402
from ctl_jax.degradations.noise import add_gaussian_noise  # noqa: E402
