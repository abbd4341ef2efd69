"""A local image folder as a TensorFlow Datasets dataset, prepared and read without TensorFlow.

Layout of the folder (the builder's ``manual_dir``): either subfolders ``train/`` and/or
``test/`` holding images (each becomes a split), or images directly in the folder (one split,
"train"). Images are read with ``read_image(path, 3)``, so every stored image is 8-bit RGB PNG
(grey replicated, alpha composited over white, 16-bit grey reduced to 8 bits); unreadable files
are skipped with a warning. The dataset is written as ``array_record`` files and read back with
``as_data_source``, a random-access sequence of numpy dicts that needs no ``tf.data``.

TFDS encodes numpy images with TensorFlow, so the examples carry PNG bytes encoded by Pillow.
``tensorflow-datasets`` and ``array-record`` are an optional extra: ``pip install 'ctl_jax[data]'``.
``ImageFolderBuilder`` is created on first access, so importing this module needs neither.
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ctl_jax.data.images import SUFFIXES, check_channels, convert_pil, iter_folder

NAME = "ctl_image_folder"
SPLIT_FOLDERS = ("train", "test")
_INSTALL_HINT = (
    "the TFDS image-folder dataset needs tensorflow-datasets, array-record and importlib-resources: "
    "pip install 'ctl_jax[data]'"
)


def _import_tfds():
    try:
        import array_record  # noqa: F401  (the array_record file format reads and writes with it)
        # TFDS 4.9.10 needs importlib_resources on every Python but declares it only for < 3.9
        # (tensorflow/datasets#11212); without it preparing fails deep inside TFDS.
        import importlib_resources  # noqa: F401
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    return tfds


def split_folders(root: str | os.PathLike) -> dict[str, Path]:
    """The split name -> folder map of ``root``: its ``train/``/``test/`` subfolders, else root as "train".

    Raises FileNotFoundError if ``root`` is missing, and ValueError if it holds both split
    subfolders and image files of its own (ambiguous).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    splits = {name: root / name for name in SPLIT_FOLDERS if (root / name).is_dir()}
    if not splits:
        return {"train": root}
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES]
    if loose:
        raise ValueError(
            f"{root} has split subfolders {sorted(splits)} and also images of its own "
            f"(e.g. {loose[0]}); move the images into train/ or test/"
        )
    return splits


def _png_bytes(image: np.ndarray) -> bytes:
    pixels = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@functools.cache
def _builder_class():
    tfds = _import_tfds()

    class ImageFolderBuilder(tfds.core.GeneratorBasedBuilder):
        """TFDS builder for a local folder of images; features {"image": uint8 (H, W, 3), "name": text}."""

        name = NAME
        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "Images of a local folder as 8-bit RGB PNG, with their file names."}
        MANUAL_DOWNLOAD_INSTRUCTIONS = (
            "Pass the image folder as manual_dir: a folder with train/ and/or test/ subfolders of "
            "images, or a flat folder of images (split 'train'). Use ctl_jax.data.tfds_folder.prepare_folder."
        )

        def _info(self):
            # Built here rather than with dataset_info_from_configs, which looks for metadata
            # files next to this module.
            return tfds.core.DatasetInfo(
                builder=self,
                description="Local image folder for ctl_jax (continuous-level image restoration).",
                features=tfds.features.FeaturesDict(
                    {"image": tfds.features.Image(shape=(None, None, 3)), "name": tfds.features.Text()}
                ),
                disable_shuffling=True,  # keep examples in sorted file-name order
            )

        def _split_generators(self, dl_manager):
            folders = split_folders(os.fspath(dl_manager.manual_dir))
            return {split: self._generate_examples(folder) for split, folder in folders.items()}

        def _generate_examples(self, folder):
            count = 0
            for path, image in iter_folder(folder, channels=3):
                count += 1
                yield path.name, {"image": _png_bytes(image), "name": path.name}
            if count == 0:
                raise ValueError(f"no readable image in {folder}")

    ImageFolderBuilder.__qualname__ = "ImageFolderBuilder"  # as reached through the module attribute
    return ImageFolderBuilder


def __getattr__(name):
    if name == "ImageFolderBuilder":
        return _builder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def prepare_folder(folder: str | os.PathLike, data_dir: str | os.PathLike, *, rebuild: bool = False):
    """Prepare the TFDS dataset of ``folder`` under ``data_dir``; returns the ``ImageFolderBuilder``.

    The files go to ``data_dir/ctl_image_folder/1.0.0/``. If that dataset is already prepared it
    is reused as is (TFDS does not notice changes to ``folder``), unless ``rebuild`` is True.
    """
    tfds = _import_tfds()
    split_folders(folder)  # fail early, with our message, on a missing or ambiguous folder
    builder = _builder_class()(data_dir=os.fspath(data_dir), file_format="array_record")
    mode = tfds.download.GenerateMode
    config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(folder),
        download_mode=mode.REUSE_CACHE_IF_EXISTS if rebuild else mode.REUSE_DATASET_IF_EXISTS,
    )
    builder.download_and_prepare(download_config=config)
    return builder


def load_prepared(data_dir: str | os.PathLike, split: str, channels: int) -> list[np.ndarray]:
    """Read ``split`` of the dataset prepared under ``data_dir``: float32 (H, W, channels) arrays in [0, 1].

    Images come in the order they were written (sorted file names). channels=1 converts with
    Pillow's ITU-R 601 luma, as ``read_image`` does. Raises FileNotFoundError if nothing is
    prepared there, and ValueError naming the available splits if ``split`` is not one of them.
    """
    check_channels(channels)
    _import_tfds()
    builder = _builder_class()(data_dir=os.fspath(data_dir), file_format="array_record")
    if not (Path(os.fspath(builder.data_dir)) / "dataset_info.json").is_file():
        raise FileNotFoundError(
            f"no prepared {NAME} dataset under {data_dir}; run prepare_folder(folder, data_dir) first"
        )
    available = sorted(builder.info.splits.keys())
    if split not in available:
        raise ValueError(f"split {split!r} is not in the dataset under {data_dir}; available: {available}")
    source = builder.as_data_source(split)
    return [convert_pil(Image.fromarray(source[i]["image"]), channels) for i in range(len(source))]
