"""The companion lab's experiment: one encoder-decoder, trained with and without skip connections.

The lab notebook (notebooks/unet_lab/skip_connections.ipynb), the benchmark
(``python -m bench --only lab``) and the tests run the same code from here, so
the figure the notebook quotes is measured on exactly what students run.

The blocks are the student's own: ``load_blocks`` takes ``conv_block`` and
``upsampling_block`` from their assignment notebook, so the lab never carries
a copy of the graded solutions.
"""

from __future__ import annotations

import ast
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import carla_data
import carla_plots
import precision
from test_utils import tf  # TensorFlow, imported with its start-up notices hidden

# The lab trains several models in one kernel, and TensorFlow then warns, on every one after the
# fifth, that its training function was traced again: expected here, and alarming in a notebook.
tf.get_logger().setLevel("ERROR")

ASSIGNMENT_ENV = "UNET_ASSIGNMENT_NOTEBOOK"
ASSIGNMENT_PATH = Path("unet_segmentation") / "unet.ipynb"
BLOCKS = ("conv_block", "upsampling_block")
# Thin or small objects: a few pixels wide at 96x128, where pooling loses them first.
THIN_CLASSES = ("Pedestrian", "Pole", "RoadLine", "TrafficSign")
EPOCHS_ENV = "LAB_EPOCHS"
DEFAULT_EPOCHS = 4
N_FILTERS = 16
DEPTH = 3


class LabError(RuntimeError):
    """The lab cannot go on; the message says what to do."""


def find_assignment(start: str | os.PathLike | None = None) -> Path:
    """The assignment notebook: ``$UNET_ASSIGNMENT_NOTEBOOK``, else ``unet_segmentation/unet.ipynb``
    beside the lab's folder or in any folder above it."""
    explicit = os.environ.get(ASSIGNMENT_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise LabError(f"${ASSIGNMENT_ENV} is {explicit!r}, which is not a file.")
        return path
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ASSIGNMENT_PATH).is_file():
            return folder / ASSIGNMENT_PATH
    raise LabError(
        f"No {ASSIGNMENT_PATH.as_posix()} found beside {here} or above it. Put the lab's folder next to "
        f"your assignment folder, or set ${ASSIGNMENT_ENV} to your unet.ipynb."
    )


def _definitions(source: str) -> list[ast.stmt]:
    """The top-level imports and function definitions of one cell (nothing that trains or plots)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # IPython magics or half-written code in a cell the lab does not need
    return [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef)]


def load_blocks(notebook: Path) -> dict[str, Callable]:
    """``conv_block`` and ``upsampling_block`` (with any helper functions) from the assignment notebook.

    Only imports and function definitions are run, each import on its own: an
    import the lab's folder cannot satisfy (the graded checks) is skipped.
    """
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise LabError(f"{notebook} cannot be read as a notebook ({err}).") from err
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in _definitions(cell.source):
            code = compile(ast.Module(body=[node], type_ignores=[]), str(notebook), "exec")
            try:
                exec(code, namespace)
            except ImportError:
                continue
    missing = [name for name in BLOCKS if not callable(namespace.get(name))]
    if missing:
        raise LabError(f"{notebook} defines no {' or '.join(missing)}: the lab builds its networks from them.")
    _try_blocks(namespace, notebook)
    return {name: namespace[name] for name in BLOCKS}


def _try_blocks(namespace: dict, notebook: Path) -> None:
    """Build one small block of each kind, so that an unfinished exercise stops here with advice."""
    inputs = tf.keras.Input((8, 8, 3))
    try:
        next_layer, skip = namespace["conv_block"](inputs, 4)
        up = namespace["upsampling_block"](next_layer, skip, 4)
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        if isinstance(err, NotImplementedError) and _raised_by(err, notebook):
            raise LabError(f"Your blocks in {notebook} are not written yet: finish Exercises 1 and 2 first.") from err
        raise LabError(f"Your blocks in {notebook} fail on a small example ({type(err).__name__}: {err}); "
                       "run that notebook's graded cells to find out why.") from err
    sizes = {"conv_block": (tuple(next_layer.shape[1:3]), (4, 4)), "upsampling_block": (tuple(up.shape[1:3]), (8, 8))}
    for name, (got, expected) in sizes.items():
        if got != expected:
            raise LabError(f"Your {name} in {notebook} gives {got[0]}x{got[1]} where the U-Net needs "
                           f"{expected[0]}x{expected[1]} (from an 8x8 input); run that notebook's graded cells.")


def _raised_by(err: BaseException, notebook: Path) -> bool:
    """Whether ``err`` was raised by the notebook's own code (its stub), not by a library it called."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename == str(notebook)


def encoder_decoder(conv_block: Callable, upsampling_block: Callable, skips: bool,
                    input_size: tuple[int, int, int] = (*carla_data.MODEL_SIZE, 3), n_filters: int = N_FILTERS,
                    n_classes: int = carla_data.N_CLASSES, depth: int = DEPTH) -> tf.keras.Model:
    """A small U-Net from the student's blocks; with ``skips=False`` the decoder sees only the bottleneck.

    Without skips, each decoder block gets zeros where the encoder's tensor
    would be: both networks then have the same layers and parameters, and
    differ only in what reaches the decoder.
    """
    inputs = tf.keras.Input(input_size)
    x, saved = inputs, []
    for level in range(depth):
        x, skip = conv_block(x, n_filters * 2**level)
        saved.append(skip)
    x, _ = conv_block(x, n_filters * 2**depth, max_pooling=False)  # the bottleneck
    for level in reversed(range(depth)):
        across = saved[level] if skips else tf.keras.ops.zeros_like(saved[level])
        x = upsampling_block(x, across, n_filters * 2**level)
    outputs = tf.keras.layers.Conv2D(n_classes, 1)(x)
    return tf.keras.Model(inputs, outputs, name="with_skips" if skips else "without_skips")


@dataclass
class Run:
    """One trained network: its loss per epoch and what it does on the held-out images."""

    model: tf.keras.Model
    history: dict[str, list[float]]
    iou: np.ndarray
    seconds: float
    examples: list = field(default_factory=list)

    def thin_iou(self) -> float:
        """Mean IoU over the thin classes that occur in the held-out masks or the predictions."""
        return _mean_present(self.iou[[carla_data.CLASS_ID[name] for name in THIN_CLASSES]])

    def mean_iou(self) -> float:
        """Mean IoU over all classes that occur in the held-out masks or the predictions."""
        return _mean_present(self.iou)


def _mean_present(values: np.ndarray) -> float:
    """The mean of the values that are not NaN; NaN, without numpy's warning, when there are none."""
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


def held_out(data_dir: Path) -> tuple[list, list]:
    """(training pairs, held-out pairs), split as the assignment splits them."""
    return carla_data.split_pairs(carla_data.list_pairs(data_dir))


def train(blocks: dict[str, Callable], skips: bool, train_pairs, val_pairs, epochs: int, seed: int = 0,
          keep: int = 3) -> Run:
    """Build and train one network on ``train_pairs``, seeded, and judge it on ``val_pairs``.

    Both networks of the lab call this with the same pairs, epochs and seed, so
    they see the same batches in the same order and start from the same weights
    wherever their layers match.
    """
    tf.keras.utils.set_random_seed(seed)
    before = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(precision.fast_policy())
    try:
        model = encoder_decoder(blocks["conv_block"], blocks["upsampling_block"], skips)
    finally:
        # Only this model is built in that precision; the lab's other models are not.
        tf.keras.mixed_precision.set_global_policy(before)
    model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = carla_data.training_batches(carla_data.make_dataset(train_pairs), seed=seed)
    val = carla_data.make_dataset(val_pairs).cache().batch(carla_data.BATCH_SIZE)
    started = time.perf_counter()
    history = model.fit(batches, validation_data=val, epochs=epochs, shuffle=False, verbose=0).history
    seconds = time.perf_counter() - started
    matrix = np.zeros((carla_data.N_CLASSES, carla_data.N_CLASSES), np.int64)
    examples: list[list] = []
    for images, masks in val:
        predicted = tf.argmax(model.predict(images, verbose=0), axis=-1)[..., tf.newaxis]
        matrix = matrix + carla_plots.confusion(masks, predicted)
        examples += [[i, m, p] for i, m, p in zip(images, masks, predicted, strict=True)][: keep - len(examples)]
    return Run(model, history, carla_plots.iou_per_class(matrix), seconds, examples)


def compare(blocks: dict[str, Callable], data_dir: Path, epochs: int, seed: int = 0) -> dict[bool, Run]:
    """Train the network with skips and the one without on the same data, epochs and seed."""
    train_pairs, val_pairs = held_out(data_dir)
    return {skips: train(blocks, skips, train_pairs, val_pairs, epochs, seed) for skips in (True, False)}


def epochs_from_env() -> int:
    """``$LAB_EPOCHS`` (the tests use fewer), else the lab's default."""
    return int(os.environ.get(EPOCHS_ENV, DEFAULT_EPOCHS))
