"""Pretrained networks as run folders, so ``tune``, ``sweep`` and ``apply`` take them like trained ones.

:func:`import_run` reads one of the authors' MatConvNet MAT-files (``ctl_jax.nets.matconvnet``) and
writes a run folder holding it at step 0:

* DnCNN-S / CDnCNN / DnCNN-3 -> a **base run** at the task's level A (e.g. DnCNN-S sigma=15 as the
  base of a sigma 15 -> 50 task); any two-stage tuner (FTN, AdaFM, DNI, CFSNet, Dynamic-Net) then
  tunes it to level B.
* FFDNet -> a **conditional run** (``ctl_jax.tuners.condition``) whose control 0..1 spans the
  task's levels A..B, so ``apply --level 30`` sets sigma = 30 and ``--alpha-map`` is FFDNet's own
  spatially variant noise map (black = level A, white = level B).

The folder records where the weights came from (``RunMeta.imported``); it cannot be trained further
(it has no optimiser state): train a new base elsewhere, or tune from it.
"""

from __future__ import annotations

from pathlib import Path

import jax

from ctl_jax.nets.ffdnet import FFDNet
from ctl_jax.nets.matconvnet import load_pretrained, pretrained_spec
from ctl_jax.train.checkpoint import Checkpointer
from ctl_jax.train.lock import workdir_lock
from ctl_jax.train.runs import RunMeta, load_run, run_templates
from ctl_jax.tuners import tuner_to_spec
from ctl_jax.tuners.condition import Conditional

TRAINING_PATCH = 40  # DnCNN-S's training crops; only the recorded input shape (convs take any size)


def import_run(weights, task, workdir):
    """Write the MAT-file ``weights`` as a run folder ``workdir`` for ``task`` -> its ControllableModel.

    ``task``: a restoration task whose level A is the level the network was trained for (a base)
    or whose levels A..B are the range the control spans (FFDNet). Refuses (ValueError) a folder
    that already holds a run.
    """
    module, params = load_pretrained(weights)
    spec = pretrained_spec(module)
    if isinstance(module, FFDNet):
        tuner = Conditional.level_range(task.level_a, task.level_b)
        stage, target, tuner_spec = "tune", "range", tuner_to_spec(tuner)
    else:
        stage, target, tuner_spec = "base", "a", None
    meta = RunMeta(network=spec.to_dict(), tuner=tuner_spec, stage=stage, task=task.to_dict(), target=target,
                   config={}, input_shape=(1, TRAINING_PATCH, TRAINING_PATCH, spec.channels),
                   imported=str(Path(weights).resolve()))
    expected, _ = run_templates(meta)
    if jax.tree.structure(expected["params"]) != jax.tree.structure(params):
        raise ValueError(f"{weights}: the imported parameters do not fit the network {spec} (a bug in the importer)")
    with workdir_lock(workdir), Checkpointer(workdir, read_only=False) as ckpt:
        if ckpt.steps():
            raise ValueError(f"{workdir} already holds a run; import into a new folder")
        ckpt.save(0, {"params": params}, {}, {}, jax.random.key(0), meta.to_dict())
    return load_run(workdir)
