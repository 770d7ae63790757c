"""The demo's training report: real training, real figures."""

import numpy as np
import pytest

import precision
from grader.dev.training import fit_reference, train_and_plot
from test_utils import tf

pytestmark = pytest.mark.slow


def test_one_epoch_writes_the_three_figures(small_data, tmp_path):
    result = train_and_plot(small_data, epochs=1, out=tmp_path)
    assert [p.name for p in result.figures] == ["training_curves.png", "predictions.png", "iou_per_class.png"]
    for path in result.figures:
        assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5000
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert 0.0 <= result.pixel_accuracy <= 1.0
    assert np.isfinite(result.history["loss"]).all()


@pytest.mark.parametrize("plain, dtype", [(False, "bfloat16"), (True, "float32")])
def test_the_reference_trains_in_the_chosen_precision_and_leaves_the_global_policy(small_data, monkeypatch,
                                                                                  plain, dtype):
    monkeypatch.setenv(precision.POLICY_ENV, "mixed_bfloat16")  # what a bfloat16 CPU would pick
    model, _, _ = fit_reference(small_data, epochs=0, plain=plain, verbose=0)
    assert model.layers[-1].compute_dtype == dtype
    assert tf.keras.mixed_precision.global_policy().name == "float32", "models built later must not change"
