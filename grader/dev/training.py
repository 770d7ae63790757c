"""Train the reference U-Net as the notebook does and draw what a reader needs to judge it.

    python -m grader.dev.training [--epochs N] [--out reports]

Writes training_curves.png, predictions.png and iou_per_class.png.  Used by
`make demo`; the notebook's own cells draw the same figures for students.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

import carla_data  # noqa: E402
import carla_plots  # noqa: E402
import precision  # noqa: E402
from grader.course import ROOT, reference_namespace  # noqa: E402
from test_utils import tf  # noqa: E402 - TensorFlow, imported with its start-up notices hidden

DEFAULT_EPOCHS = 5


@dataclass
class Result:
    history: dict[str, list[float]]
    iou: np.ndarray
    pixel_accuracy: float
    figures: list[Path]


def batches(pairs, plain: bool = False, seed: int = 0):
    """Training batches as the notebook makes them, or (``plain``) as the original course did.

    Plain: decoding one pair at a time, cache, shuffle and batch, no prefetch.
    """
    if plain:
        dataset = carla_data.make_dataset(pairs, parallel=False)
        return dataset.cache().shuffle(carla_data.BUFFER_SIZE, seed=seed).batch(carla_data.BATCH_SIZE)
    return carla_data.training_batches(carla_data.make_dataset(pairs), seed=seed)


def fit_reference(data_dir: Path, epochs: int, seed: int = 0, plain: bool = False, callbacks=(), verbose=2):
    """Train the reference U-Net on ``data_dir``'s training split as the notebook does.

    The notebook trains in the precision ``precision.fast_policy`` picks for
    this machine; ``plain`` trains in float32 on the plain pipeline, as the
    original course did.  Returns the model, its history and the held-out
    (validation) batches.
    """
    tf.keras.utils.set_random_seed(seed)
    train_pairs, val_pairs = carla_data.split_pairs(carla_data.list_pairs(data_dir))
    val = carla_data.make_dataset(val_pairs).cache().batch(carla_data.BATCH_SIZE)
    before = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("float32" if plain else precision.fast_policy())
    try:
        model = reference_namespace()["unet_model"]()
    finally:
        # Only this model is built in that precision; models built later are not.
        tf.keras.mixed_precision.set_global_policy(before)
    model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(batches(train_pairs, plain, seed), validation_data=val, epochs=epochs, shuffle=False,
                        verbose=verbose, callbacks=list(callbacks)).history
    return model, history, val


def held_out_confusion(model, val, keep: int = 0) -> tuple[np.ndarray, list]:
    """Confusion matrix of ``model`` on ``val``, and the first ``keep`` (image, mask, predicted) rows."""
    matrix = 0
    rows = []
    for images, masks in val:
        predicted = tf.argmax(model.predict(images, verbose=0), axis=-1)[..., tf.newaxis]
        matrix = matrix + carla_plots.confusion(masks, predicted)
        if len(rows) < keep:
            rows += [[i, m, p] for i, m, p in zip(images, masks, predicted, strict=True)][: keep - len(rows)]
    return matrix, rows


def train_and_plot(data_dir: Path, epochs: int, out: Path, seed: int = 0) -> Result:
    """Train the reference model on ``data_dir`` and write the three figures to ``out``."""
    model, history, val = fit_reference(data_dir, epochs, seed)
    matrix, rows = held_out_confusion(model, val, keep=3)
    iou = carla_plots.iou_per_class(matrix)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "training_curves.png": carla_plots.plot_history(history),
        "predictions.png": carla_plots.show_rows(rows, ["input image", "true mask", "predicted mask"],
                                                 [False, True, True]),
        "iou_per_class.png": carla_plots.plot_iou(iou),
    }
    paths = []
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=100, bbox_inches="tight")
        paths.append(out / name)
    accuracy = float(np.trace(matrix) / np.sum(matrix))
    return Result(history, iou, accuracy, paths)


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("UNET_EPOCHS", DEFAULT_EPOCHS)))
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args(argv)
    result = train_and_plot(carla_data.find_data_dir(ROOT), args.epochs, args.out)
    print(f"Held-out pixel accuracy {result.pixel_accuracy:.3f}, mean IoU {np.nanmean(result.iou):.3f} "
          f"after {args.epochs} epochs.")
    for path in result.figures:
        print(f"  {path}")
    return result


if __name__ == "__main__":
    main()
