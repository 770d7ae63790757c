"""summary() on Keras 3 models and comparator()'s messages."""

import pytest
import tensorflow as tf

from test_utils import comparator, summary

L = tf.keras.layers


def small_model():
    x = L.Input((8, 8, 3))
    y = L.Conv2D(4, 3, activation="relu", padding="same", kernel_initializer="he_normal")(x)
    y = L.Dropout(0.25)(y)
    y = L.MaxPooling2D((2, 2))(y)
    y = L.Conv2DTranspose(2, 3, strides=2, padding="same")(y)
    return tf.keras.Model(x, y)


EXPECTED = [
    ["InputLayer", [(None, 8, 8, 3)], 0],
    ["Conv2D", (None, 8, 8, 4), 112, "same", "relu", "HeNormal"],
    ["Dropout", (None, 8, 8, 4), 0, 0.25],
    ["MaxPooling2D", (None, 4, 4, 4), 0, (2, 2)],
    ["Conv2DTranspose", (None, 8, 8, 2), 74],
]


def test_summary_rows_have_the_course_format():
    assert summary(small_model()) == EXPECTED


def test_comparator_prints_success(capsys):
    comparator(summary(small_model()), EXPECTED)
    assert capsys.readouterr().out.strip() == "All tests passed!"


@pytest.mark.parametrize(
    "index, field, value, message",
    [
        (1, 2, 999, "Layer 1 (Conv2D): parameters expected 999, got 112."),
        (1, 3, "valid", "Layer 1 (Conv2D): padding expected 'valid', got 'same'."),
        (1, 4, "linear", "Layer 1 (Conv2D): activation expected 'linear', got 'relu'."),
        (1, 5, "GlorotUniform", "Layer 1 (Conv2D): initializer expected 'GlorotUniform', got 'HeNormal'."),
        (2, 3, 0.5, "Layer 2 (Dropout): rate expected 0.5, got 0.25."),
        (3, 3, (3, 3), "Layer 3 (MaxPooling2D): pool size expected (3, 3), got (2, 2)."),
        (4, 1, (None, 9, 9, 2),
         "Layer 4 (Conv2DTranspose): output shape expected (None, 9, 9, 2), got (None, 8, 8, 2)."),
        (4, 0, "Conv2D", "Layer 4 (Conv2D): layer type expected 'Conv2D', got 'Conv2DTranspose'."),
    ],
)
def test_comparator_names_the_first_wrong_field(index, field, value, message):
    expected = [list(row) for row in EXPECTED]
    expected[index][field] = value
    with pytest.raises(AssertionError) as err:
        comparator(summary(small_model()), expected)
    assert str(err.value) == message


def test_missing_layer_is_reported_as_missing_not_as_a_cascade():
    got = summary(small_model())
    del got[2]  # the model "forgot" its Dropout
    with pytest.raises(AssertionError) as err:
        comparator(got, EXPECTED)
    assert str(err.value) == (
        "Missing layer at index 2: expected ['Dropout', (None, 8, 8, 4), 0, 0.25], "
        "but your model has no such layer there (4 layers instead of 5)."
    )


def test_extra_layer_is_reported_as_extra():
    got = summary(small_model())
    got.insert(3, ["Dropout", (None, 8, 8, 4), 0, 0.1])
    with pytest.raises(AssertionError) as err:
        comparator(got, EXPECTED)
    assert str(err.value).startswith("Extra layer at index 3: got ['Dropout', (None, 8, 8, 4), 0, 0.1]")


def test_trailing_missing_layer_is_not_accepted():
    """A zip() without a length check would let a truncated model pass."""
    with pytest.raises(AssertionError, match="Missing layer at index 4"):
        comparator(summary(small_model())[:4], EXPECTED)


def test_row_with_missing_fields_is_reported():
    got = summary(small_model())
    got[1] = got[1][:3]
    with pytest.raises(AssertionError, match=r"Layer 1 \(Conv2D\): expected 6 fields"):
        comparator(got, EXPECTED)


def test_summary_reads_every_spelling_of_the_same_settings():
    x = L.Input((8, 8, 3))
    he = tf.keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal")
    a = L.Conv2D(4, 3, activation=L.ReLU(), padding="same", kernel_initializer=he)(x)
    b = L.Conv2D(4, (3, 3), activation=tf.nn.relu, padding="SAME",
                 kernel_initializer=tf.keras.initializers.HeNormal())(a)
    c = L.Conv2D(4, 3, activation=L.ReLU(max_value=6.0), padding="same")(b)
    rows = summary(tf.keras.Model(x, c))
    assert rows[1][3:] == ["same", "relu", "HeNormal"] and rows[2][3:] == ["same", "relu", "HeNormal"]
    assert rows[3][3:] == ["same", "ReLU", "GlorotUniform"], "a capped ReLU is not relu"


def test_summary_lists_keras_operations_used_as_layers():
    x, y = L.Input((4, 4, 2)), L.Input((4, 4, 3))
    rows = summary(tf.keras.Model([x, y], tf.keras.ops.concatenate([x, y], axis=3)))
    assert rows[-1] == ["Concatenate", (None, 4, 4, 5), 0]


def test_comparator_takes_float32_rates():
    comparator([["Dropout", (None, 2), 0, 0.30000001192092896]], [["Dropout", (None, 2), 0, 0.3]])
    with pytest.raises(AssertionError, match="rate expected 0.3, got 0.301"):
        comparator([["Dropout", (None, 2), 0, 0.301]], [["Dropout", (None, 2), 0, 0.3]])
