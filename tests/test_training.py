"""The demo's training report: real training, real figures."""

import numpy as np
import pytest

from grader.training import train_and_plot

pytestmark = pytest.mark.slow


def test_one_epoch_writes_the_three_figures(small_data, tmp_path):
    result = train_and_plot(small_data, epochs=1, out=tmp_path)
    assert [p.name for p in result.figures] == ["training_curves.png", "predictions.png", "iou_per_class.png"]
    for path in result.figures:
        assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5000
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert 0.0 <= result.pixel_accuracy <= 1.0
    assert np.isfinite(result.history["loss"]).all()
