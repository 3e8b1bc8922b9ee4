"""Fine-tuning: metric learning that adapts the pretrained CNN to rosette patterns.

:func:`fine_tune` trains a timm backbone plus a linear projection head (timm's classifier layer with
``num_classes=embedding_size``) with sub-center ArcFace or batch-hard triplet loss, validates each epoch on
held-out *individuals* (leave-one-out top-1/mAP of the global embedding, via :func:`leopard_reid.evaluate`),
keeps the best weights, stops early, and writes a checkpoint folder::

    out/model.safetensors     best weights (backbone + projection head), loadable by
                              Embedder(checkpoint=out), create_backbone(checkpoint=out), the CLI's --checkpoint
    out/config.json           backbone, num_classes, preprocessing, training config, val metrics, versions
    out/history.csv           per-epoch loss, val metrics, seconds
    out/training_curve.png    loss and val metrics per epoch
    out/last.safetensors      the last epoch's weights  } for resume=True: an interrupted run goes on from its
    out/last_state.safetensors  optimizer + loss head   } last finished epoch (no pickle anywhere on disk)
    out/last_state.json       epoch, step, history, best

Labels are identity + side when sides are known (a left flank is a different pattern from the right one).
Augmentations never flip images: a mirrored left flank is not a right flank.

Heavy libraries (torch, timm, torchvision, matplotlib) are imported inside functions, so importing this module
(and ``leopard-reid --help``) stays cheap.

The package's modules: :mod:`~leopard_reid.train.config` (:class:`TrainConfig`, file names),
:mod:`~leopard_reid.train.model` (backbone + head, augmentation), :mod:`~leopard_reid.train.losses`,
:mod:`~leopard_reid.train.data` (labels, batches, held-out individuals), :mod:`~leopard_reid.train.checkpoint`
(what a run writes) and :mod:`~leopard_reid.train.loop` (:func:`fine_tune`). The ``train`` command is in
:mod:`leopard_reid.cli.train`.
"""

from __future__ import annotations

from .config import TrainConfig
from .loop import fine_tune, synthetic_pretrain
from .model import create_model, train_transform

__all__ = ["TrainConfig", "create_model", "fine_tune", "synthetic_pretrain", "train_transform"]
