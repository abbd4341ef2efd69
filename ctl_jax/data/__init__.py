"""Data: image sources, bundled photos, patches, operator-pair caches."""

from ctl_jax.data.bundled import bundled_images
from ctl_jax.data.images import (UnreadableImageError, iter_folder, list_images, load_folder, read_image,
                                 write_image)
from ctl_jax.data.patches import PatchSampler
