"""Training: images per second of the notebook's pipeline, and held-out quality after training."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import carla_data
import carla_plots
from grader.dev.training import fit_reference, held_out_confusion
from test_utils import tf  # TensorFlow, imported with its start-up notices hidden


class _EpochTimes(tf.keras.callbacks.Callback):
    """Wall time of each epoch's training steps (the validation pass is left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(self._last - self._started)


def throughput(data_dir: Path, epochs: int) -> dict:
    """Training images per second: the notebook's way against the original course's, same model and batches.

    The notebook's way is the parallel pipeline with prefetch and the precision
    ``precision.fast_policy`` picks; the plain way decodes one pair at a time,
    has no prefetch and trains in float32.  The first epoch includes decoding
    every PNG; later epochs read the cache.
    """
    images = len(carla_data.split_pairs(carla_data.list_pairs(data_dir))[0])
    result = {"images": images, "epochs": epochs}
    for name, plain in (("plain", True), ("notebook", False)):
        timer = _EpochTimes()
        fit_reference(data_dir, epochs, plain=plain, callbacks=[timer], verbose=0)
        result[name] = {"epoch_seconds": timer.seconds, "images_per_second": images * epochs / sum(timer.seconds)}
    result["ratio"] = result["notebook"]["images_per_second"] / result["plain"]["images_per_second"]
    return result


def quality(data_dir: Path, epochs: int, seed: int = 0) -> dict:
    """Held-out pixel accuracy, mean IoU and per-class IoU after ``epochs`` epochs of the notebook's training."""
    started = time.perf_counter()
    model, history, val = fit_reference(data_dir, epochs, seed, verbose=0)
    matrix, _ = held_out_confusion(model, val)
    iou = carla_plots.iou_per_class(matrix)
    return {
        "data": str(data_dir),
        "held_out_images": int(sum(int(masks.shape[0]) for _, masks in val)),
        "pixel_accuracy": float(np.trace(matrix) / np.sum(matrix)),
        "mean_iou": float(np.nanmean(iou)),
        "iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(carla_data.CLASS_NAMES, iou, strict=True)},
        "train_accuracy": float(history["accuracy"][-1]),
        "seconds": time.perf_counter() - started,
    }
