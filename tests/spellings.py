"""Ways of writing the three exercises, right and wrong, for the "same network, full points" rule.

Each ``Spelling`` rewrites one piece (a *slot*) of one exercise's reference
code.  Most are equivalent spellings seen in students' work on this
assignment or allowed by Keras (keyword or positional arguments, ``(3, 3)``
for ``3``, ``MaxPool2D``, ``HeNormal()``, ``max_pooling=None`` ...); some are
real mistakes.  ``same`` is what the author expects of the built network; the
tests do not trust it, they check it against ``tests.network_oracle``.
Spellings of different slots combine freely: one submission may hold any
choice per slot.

``WHOLE`` holds complete rewrites of an exercise, which do not combine with
that exercise's slots.
"""

from __future__ import annotations

from dataclasses import dataclass

from grader.dev.examples import Bug

CONV1 = 'Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(inputs)'
CONV2 = 'Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(conv)'
UP_CONV = 'Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(merge)'
POOL = "next_layer = MaxPooling2D((2, 2))(conv) if max_pooling else conv"
TRANSPOSE = 'Conv2DTranspose(n_filters, 3, strides=2, padding="same")(expansive_input)'
MERGE = "concatenate([up, contractive_input], axis=3)"
BLOCK1 = "conv_block(inputs, n_filters)"
BLOCK2 = "conv_block(cblock1[0], n_filters * 2)"
BLOCK3 = "conv_block(cblock2[0], n_filters * 4)"
BLOCK4 = "conv_block(cblock3[0], n_filters * 8, dropout_prob=0.3)"
BLOCK5 = "conv_block(cblock4[0], n_filters * 16, dropout_prob=0.3, max_pooling=False)"
UP6 = "upsampling_block(cblock5[0], cblock4[1], n_filters * 8)"
HEAD3 = 'Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(ublock9)'
HEAD1 = 'Conv2D(n_classes, 1, padding="same")(conv9)'
MODEL = "tf.keras.Model(inputs=inputs, outputs=conv10)"


@dataclass(frozen=True)
class Spelling:
    """``old`` (the slot) becomes ``new`` in ``exercise``'s reference code."""

    name: str
    exercise: str
    old: str
    new: str
    same: bool | None  # expected: same network; None when it depends on the student's conv_block

    def bug(self) -> Bug:
        return Bug(self.exercise, self.old, self.new, self.name)


def _s(name: str, exercise: str, old: str, new: str, same: bool | None = True) -> Spelling:
    return Spelling(name, exercise, old, new, same)


SLOTS: list[Spelling] = [
    # -- conv_block ---------------------------------------------------------
    _s("conv_kernel_tuple", "conv_block", CONV1, CONV1.replace(", 3,", ", (3, 3),")),
    _s("conv_keywords_module_prefix", "conv_block", CONV1,
       "tf.keras.layers.Conv2D(filters=n_filters, kernel_size=3, activation=tf.nn.relu, padding=\"SAME\", "
       "kernel_initializer=tf.keras.initializers.HeNormal())(inputs)"),
    _s("conv_he_normal_function", "conv_block", CONV1,
       "Conv2D(n_filters, 3, activation=tf.keras.activations.relu, padding=\"same\", "
       "kernel_initializer=tf.keras.initializers.he_normal(seed=7))(inputs)"),
    _s("conv_relu_layer_variance_scaling", "conv_block", CONV1,
       "Conv2D(n_filters, 3, activation=tf.keras.layers.ReLU(), padding=\"same\", "
       "kernel_initializer=tf.keras.initializers.VarianceScaling(2.0, \"fan_in\", \"truncated_normal\"))(inputs)"),
    _s("conv_no_initializer", "conv_block", CONV1, 'Conv2D(n_filters, 3, activation="relu", padding="same")(inputs)',
       False),
    _s("conv_kernel_5", "conv_block", CONV1, CONV1.replace(", 3,", ", 5,"), False),
    _s("conv_valid_padding", "conv_block", CONV1, CONV1.replace('"same"', '"valid"'), False),
    _s("conv2_parenthesised_filters_string_initializer", "conv_block", CONV2,
       'Conv2D((n_filters), kernel_size=(3, 3), activation="relu", padding="same", '
       'kernel_initializer="HeNormal")(conv)'),
    _s("conv2_sigmoid", "conv_block", CONV2, CONV2.replace('"relu"', '"sigmoid"'), False),
    _s("dropout_if_truthy", "conv_block", "if dropout_prob > 0:", "if dropout_prob:"),
    _s("dropout_if_not_zero", "conv_block", "if dropout_prob > 0:", "if dropout_prob != 0:"),
    _s("dropout_if_not_none", "conv_block", "if dropout_prob > 0:",
       "if dropout_prob is not None and dropout_prob > 0:"),
    _s("dropout_if_parenthesised", "conv_block", "if dropout_prob > 0:", "if(dropout_prob>0):"),
    _s("dropout_if_at_least_zero", "conv_block", "if dropout_prob > 0:", "if dropout_prob >= 0:", False),
    _s("dropout_rate_keyword", "conv_block", "Dropout(dropout_prob)(conv)", "Dropout(rate=dropout_prob)(conv)"),
    _s("dropout_input_shape", "conv_block", "Dropout(dropout_prob)(conv)",
       "tf.keras.layers.Dropout(dropout_prob, input_shape=(n_filters,))(conv)"),
    _s("dropout_spatial", "conv_block", "Dropout(dropout_prob)(conv)",
       "tf.keras.layers.SpatialDropout2D(dropout_prob)(conv)", False),
    _s("pool_size_keyword", "conv_block", POOL, POOL.replace("((2, 2))", "(pool_size=(2, 2))")),
    _s("pool_size_2_strides_2", "conv_block", POOL, POOL.replace("((2, 2))", "(2, strides=2)")),
    _s("pool_default", "conv_block", POOL, POOL.replace("((2, 2))", "()")),
    _s("pool_maxpool2d_valid", "conv_block", POOL,
       POOL.replace("MaxPooling2D((2, 2))",
                    'tf.keras.layers.MaxPool2D(pool_size=(2, 2), strides=(2, 2), padding="valid")')),
    _s("pool_same_padding", "conv_block", POOL, POOL.replace("((2, 2))", '(2, padding="same")')),
    _s("pool_if_statement", "conv_block", POOL,
       "if max_pooling:\n        next_layer = MaxPooling2D(pool_size=2)(conv)\n    else:\n        next_layer = conv"),
    _s("pool_if_is_true", "conv_block", POOL,
       "next_layer = conv\n    if max_pooling is True:\n        next_layer = MaxPooling2D((2, 2))(conv)"),
    _s("pool_3x3", "conv_block", POOL, POOL.replace("((2, 2))", "((3, 3))"), False),
    _s("pool_always", "conv_block", POOL, "next_layer = MaxPooling2D((2, 2))(conv)", False),
    _s("skip_after_pooling", "conv_block", "skip_connection = conv", "skip_connection = next_layer", False),
    # -- conv_block: settings and call arguments that change, or do not change, what it computes --
    _s("conv_explicit_defaults", "conv_block", CONV1,
       'Conv2D(n_filters, 3, strides=1, dilation_rate=(1, 1), use_bias=True, activation="relu", padding="same", '
       'kernel_initializer="he_normal", bias_initializer="zeros")(inputs)'),
    _s("conv_keyword_order_named", "conv_block", CONV1,
       'Conv2D(kernel_initializer="he_normal", padding="same", activation="relu", kernel_size=3, '
       'filters=n_filters, name=f"encoder_a_{n_filters}")(inputs)'),
    _s("conv_dilation", "conv_block", CONV1, CONV1.replace('padding="same",', 'padding="same", dilation_rate=2,'),
       False),
    _s("conv2_dilation", "conv_block", CONV2, CONV2.replace('padding="same",', 'padding="same", dilation_rate=(2, 2),'),
       False),
    _s("dropout_seed", "conv_block", "Dropout(dropout_prob)(conv)", "Dropout(rate=dropout_prob, seed=42)(conv)"),
    # Keras 3 passes the model's own training flag to every layer, overriding training=False.
    _s("dropout_training_false", "conv_block", "Dropout(dropout_prob)(conv)",
       "Dropout(dropout_prob)(conv, training=False)"),
    _s("dropout_training_none", "conv_block", "Dropout(dropout_prob)(conv)",
       "Dropout(dropout_prob)(conv, training=None)"),
    _s("dropout_training_true", "conv_block", "Dropout(dropout_prob)(conv)",
       "Dropout(dropout_prob)(conv, training=True)", False),
    _s("dropout_noise_shape", "conv_block", "Dropout(dropout_prob)(conv)",
       "Dropout(dropout_prob, noise_shape=(None, 1, 1, n_filters))(conv)", False),
    _s("dropout_lambda_after", "conv_block", "Dropout(dropout_prob)(conv)",
       "tf.keras.layers.Lambda(lambda t: t * 2.0)(Dropout(dropout_prob)(conv))", False),
    # -- upsampling_block -----------------------------------------------------
    _s("transpose_tuples", "upsampling_block", TRANSPOSE,
       'Conv2DTranspose(n_filters, (3, 3), strides=(2, 2), padding="same")(expansive_input)'),
    _s("transpose_keywords_module_prefix", "upsampling_block", TRANSPOSE,
       'tf.keras.layers.Conv2DTranspose(filters=n_filters, kernel_size=3, strides=(2, 2), '
       'padding="SAME")(expansive_input)'),
    _s("transpose_kernel_2", "upsampling_block", TRANSPOSE, TRANSPOSE.replace(", 3,", ", 2,"), False),
    _s("transpose_no_strides", "upsampling_block", TRANSPOSE, TRANSPOSE.replace("strides=2, ", ""), False),
    _s("merge_axis_minus_1", "upsampling_block", MERGE, "concatenate([up, contractive_input], axis=-1)"),
    _s("merge_layer_class", "upsampling_block", MERGE, "tf.keras.layers.Concatenate(axis=3)([up, contractive_input])"),
    _s("merge_layer_default_axis", "upsampling_block", MERGE, "tf.keras.layers.Concatenate()([up, contractive_input])"),
    _s("merge_keras_ops", "upsampling_block", MERGE, "tf.keras.ops.concatenate([up, contractive_input], axis=3)"),
    # tf.concat cannot take Keras 3's symbolic tensors: it fails in the student's own notebook.
    _s("merge_tf_concat", "upsampling_block", MERGE, "tf.concat([up, contractive_input], axis=3)", False),
    _s("merge_swapped", "upsampling_block", MERGE, "concatenate([contractive_input, up], axis=3)", False),
    _s("up_conv_tuple_kernel", "upsampling_block", UP_CONV, UP_CONV.replace(", 3,", ", (3, 3),")),
    _s("up_conv_no_initializer", "upsampling_block", UP_CONV,
       'Conv2D(n_filters, 3, activation="relu", padding="same")(merge)', False),
    # -- upsampling_block: settings and extra operations --
    _s("transpose_linear_he_normal", "upsampling_block", TRANSPOSE,
       'Conv2DTranspose(n_filters, 3, strides=2, padding="same", activation="linear", '
       'kernel_initializer="he_normal")(expansive_input)'),
    _s("transpose_activation_none_seeded", "upsampling_block", TRANSPOSE,
       'Conv2DTranspose(n_filters, 3, activation=None, strides=(2, 2), padding="same", '
       'kernel_initializer=tf.keras.initializers.GlorotUniform(seed=3))(expansive_input)'),
    _s("transpose_relu", "upsampling_block", TRANSPOSE,
       'Conv2DTranspose(n_filters, 3, strides=2, padding="same", activation="relu")(expansive_input)', False),
    _s("transpose_no_bias", "upsampling_block", TRANSPOSE,
       'Conv2DTranspose(n_filters, 3, strides=2, padding="same", use_bias=False)(expansive_input)', False),
    _s("up_conv_dilation", "upsampling_block", UP_CONV,
       UP_CONV.replace('padding="same",', 'padding="same", dilation_rate=2,'), False),
    _s("merge_scaled_skip", "upsampling_block", MERGE, "concatenate([up, contractive_input * 2.0], axis=3)", False),
    _s("merge_relu_on_up", "upsampling_block", MERGE,
       "concatenate([tf.keras.layers.ReLU()(up), contractive_input], axis=3)", False),
    # -- unet_model -----------------------------------------------------------
    _s("block1_all_keywords", "unet_model", BLOCK1,
       "conv_block(inputs=inputs, n_filters=n_filters, dropout_prob=0, max_pooling=True)"),
    _s("block1_positional", "unet_model", BLOCK1, "conv_block(inputs, n_filters * 1, 0, True)"),
    _s("block1_float_zero", "unet_model", BLOCK1, "conv_block(inputs, n_filters, dropout_prob=0.0)"),
    _s("block1_false_and_one", "unet_model", BLOCK1,
       "conv_block(inputs, n_filters, dropout_prob=False, max_pooling=1)", None),
    _s("block1_dropout_none", "unet_model", BLOCK1, "conv_block(inputs, n_filters, dropout_prob=None)", None),
    _s("block1_hard_coded_32", "unet_model", BLOCK1, "conv_block(inputs, 32)", False),
    _s("block2_factor_first", "unet_model", BLOCK2, "conv_block(cblock1[0], 2 * n_filters)"),
    _s("block2_numpy_true", "unet_model", BLOCK2, "conv_block(cblock1[0], n_filters * 2, max_pooling=np.True_)", None),
    _s("block2_takes_skip", "unet_model", BLOCK2, "conv_block(cblock1[1], n_filters * 2)", False),
    _s("block3_power_dropout_none", "unet_model", BLOCK3,
       "conv_block(cblock2[0], n_filters * 2**2, dropout_prob=None)", None),
    _s("block3_int_keywords", "unet_model", BLOCK3, "conv_block(inputs=cblock2[0], n_filters=int(4 * n_filters))"),
    _s("block3_extra_dropout", "unet_model", BLOCK3, "conv_block(cblock2[0], n_filters * 4, dropout_prob=0.3)",
       False),
    _s("block4_float32", "unet_model", BLOCK4, "conv_block(cblock3[0], n_filters * 8, dropout_prob=np.float32(0.3))",
       None),
    _s("block4_fraction", "unet_model", BLOCK4, "conv_block(cblock3[0], 8 * n_filters, dropout_prob = 3 / 10)"),
    _s("block4_positional", "unet_model", BLOCK4, "conv_block(cblock3[0], n_filters * 8, .3, True)"),
    _s("block4_no_dropout", "unet_model", BLOCK4, "conv_block(cblock3[0], n_filters * 8)", False),
    _s("block4_dropout_half", "unet_model", BLOCK4, "conv_block(cblock3[0], n_filters * 8, dropout_prob=0.5)", False),
    _s("block5_pooling_none", "unet_model", BLOCK5,
       "conv_block(cblock4[0], n_filters * 16, dropout_prob=0.3, max_pooling=None)", None),
    _s("block5_pooling_zero", "unet_model", BLOCK5,
       "conv_block(cblock4[0], n_filters * 16, dropout_prob=0.3, max_pooling=0)", None),
    _s("block5_numpy_false", "unet_model", BLOCK5,
       "conv_block(cblock4[0], 16 * n_filters, dropout_prob=0.3, max_pooling=np.False_)", None),
    _s("block5_positional", "unet_model", BLOCK5, "conv_block(cblock4[0], n_filters * 16, 0.3, False)"),
    _s("block5_power", "unet_model", BLOCK5,
       "conv_block(cblock4[0], n_filters * 2**4, dropout_prob=0.3, max_pooling=False)"),
    _s("block5_pools", "unet_model", BLOCK5, "conv_block(cblock4[0], n_filters * 16, dropout_prob=0.3)", False),
    _s("block5_pooling_string", "unet_model", BLOCK5,
       'conv_block(cblock4[0], n_filters * 16, dropout_prob=0.3, max_pooling="False")', False),
    _s("block5_no_dropout", "unet_model", BLOCK5, "conv_block(cblock4[0], n_filters * 16, max_pooling=False)", False),
    _s("up6_bottleneck_skip", "unet_model", UP6, "upsampling_block(cblock5[1], cblock4[1], n_filters * 8)"),
    _s("up6_keywords", "unet_model", UP6,
       "upsampling_block(expansive_input=cblock5[0], contractive_input=cblock4[1], n_filters=n_filters * 8)"),
    _s("up6_wrong_skip", "unet_model", UP6, "upsampling_block(cblock5[0], cblock4[0], n_filters * 8)", False),
    _s("up6_hard_coded_filters", "unet_model", UP6, "upsampling_block(cblock5[0], cblock4[1], 256)", False),
    _s("head3_tuple_he_normal_object", "unet_model", HEAD3,
       'Conv2D(n_filters, (3, 3), activation="relu", padding="same", '
       'kernel_initializer=tf.keras.initializers.HeNormal())(ublock9)'),
    _s("head3_hard_coded_32", "unet_model", HEAD3, HEAD3.replace("n_filters, 3", "32, 3"), False),
    _s("head1_no_activation", "unet_model", HEAD1, "Conv2D(n_classes, kernel_size=(1, 1), activation=None)(conv9)"),
    _s("head1_linear_float32", "unet_model", HEAD1,
       'Conv2D(n_classes, 1, activation="linear", padding="same", dtype="float32")(conv9)'),
    _s("head1_softmax", "unet_model", HEAD1, 'Conv2D(n_classes, 1, padding="same", activation="softmax")(conv9)',
       False),
    _s("head1_hard_coded_23", "unet_model", HEAD1, 'Conv2D(23, 1, padding="same")(conv9)', False),
    # -- unet_model: the head's settings, an extra operation --
    _s("head3_explicit_defaults", "unet_model", HEAD3,
       'Conv2D(n_filters, 3, strides=(1, 1), dilation_rate=1, use_bias=True, activation="relu", padding="same", '
       'kernel_initializer="he_normal", name="head")(ublock9)'),
    _s("head3_dilation", "unet_model", HEAD3, HEAD3.replace('padding="same",', 'padding="same", dilation_rate=2,'),
       False),
    _s("head3_no_bias", "unet_model", HEAD3, HEAD3.replace('padding="same",', 'padding="same", use_bias=False,'),
       False),
    _s("head1_no_bias", "unet_model", HEAD1, 'Conv2D(n_classes, 1, padding="same", use_bias=False)(conv9)', False),
    _s("head1_valid_padding_named", "unet_model", HEAD1, 'Conv2D(n_classes, 1, padding="valid", name="logits")(conv9)'),
    _s("input_rescaled", "unet_model", BLOCK1, "conv_block(tf.keras.layers.Rescaling(1 / 255)(inputs), n_filters)",
       False),
    _s("model_positional", "unet_model", MODEL, "tf.keras.Model(inputs, conv10)"),
]

UNPACKED_UNET = '''def unet_model(input_size=(96, 128, 3), n_filters=32, n_classes=23):
    """A U-Net written with tuple unpacking and a loop over the decoder."""
    inputs = tf.keras.layers.Input(shape=input_size)
    filters = n_filters
    x, skip1 = conv_block(inputs, filters)
    x, skip2 = conv_block(x, 2 * filters)
    x, skip3 = conv_block(x, 4 * filters)
    x, skip4 = conv_block(x, 8 * filters, 0.3)
    x, _ = conv_block(x, 16 * filters, 0.3, max_pooling=None)
    for skip, factor in zip([skip4, skip3, skip2, skip1], [8, 4, 2, 1]):
        x = upsampling_block(x, skip, factor * filters)
    x = tf.keras.layers.Conv2D(filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(x)
    outputs = tf.keras.layers.Conv2D(n_classes, 1)(x)
    return tf.keras.Model(inputs=inputs, outputs=outputs)
'''

LOOPED_CONV = '''def conv_block(inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
    """An encoder block whose two convolutions come from a loop."""
    x = inputs
    for _ in range(2):
        x = tf.keras.layers.Conv2D(n_filters, kernel_size=(3, 3), padding="same", activation="relu",
                                   kernel_initializer="he_normal")(x)
    if dropout_prob:
        x = tf.keras.layers.Dropout(rate=dropout_prob)(x)
    skip_connection = x
    if max_pooling:
        x = tf.keras.layers.MaxPool2D()(x)
    return x, skip_connection
'''

WHOLE: list[Spelling] = [
    _s("unet_unpacked_loop", "unet_model", "", UNPACKED_UNET),
    _s("conv_block_loop", "conv_block", "", LOOPED_CONV),
]


def apply(spellings: list[Spelling], code: dict[str, str]) -> dict[str, str]:
    """``code`` (by exercise) with every spelling put in; at most one per slot, whole rewrites first."""
    for spelling in sorted(spellings, key=lambda s: s.old != ""):
        if spelling.old == "":
            code = {**code, spelling.exercise: spelling.new}
        else:
            code = spelling.bug().apply(code)
    return code


def slots() -> dict[tuple[str, str], list[Spelling]]:
    """The alternatives of each slot, keyed by (exercise, the reference text they replace)."""
    grouped: dict[tuple[str, str], list[Spelling]] = {}
    for spelling in SLOTS:
        grouped.setdefault((spelling.exercise, spelling.old), []).append(spelling)
    return grouped

# Submissions for the end-to-end batch: each combines equivalent spellings and must score 100.
SUBMISSIONS: dict[str, list[str]] = {
    "bottleneck_pooling_none": ["block5_pooling_none"],
    "no_dropout_spelled_none_or_false": ["dropout_if_truthy", "block1_false_and_one", "block3_power_dropout_none"],
    "numpy_scalars": ["block2_numpy_true", "block4_float32", "block5_numpy_false"],
    "pooling_zero_positional": ["block1_positional", "block4_positional", "block5_pooling_zero"],
    "conv_keras_forms": ["conv_keywords_module_prefix", "conv2_parenthesised_filters_string_initializer",
                         "dropout_input_shape", "pool_maxpool2d_valid"],
    "conv_keras_forms_2": ["conv_relu_layer_variance_scaling", "dropout_if_not_none", "dropout_rate_keyword",
                           "pool_default"],
    "upsampling_forms": ["transpose_tuples", "merge_layer_class", "up_conv_tuple_kernel"],
    "upsampling_forms_2": ["transpose_keywords_module_prefix", "merge_keras_ops", "pool_size_2_strides_2"],
    "merge_default_axis": ["merge_layer_default_axis", "pool_same_padding", "dropout_if_parenthesised"],
    "unet_keywords": ["block1_all_keywords", "block2_factor_first", "block3_int_keywords", "block4_fraction",
                      "block5_power", "up6_keywords", "head3_tuple_he_normal_object", "head1_no_activation",
                      "model_positional"],
    "unpacked_and_looped": ["unet_unpacked_loop", "conv_block_loop"],
    "if_statements": ["pool_if_statement", "conv_he_normal_function", "merge_axis_minus_1", "up6_bottleneck_skip",
                      "head1_linear_float32", "block5_positional"],
}
BY_NAME = {spelling.name: spelling for spelling in SLOTS + WHOLE}


def submission_code(name: str, reference: dict[str, str]) -> dict[str, str]:
    """The code of the end-to-end submission ``name``, by exercise."""
    return apply([BY_NAME[s] for s in SUBMISSIONS[name]], reference)
