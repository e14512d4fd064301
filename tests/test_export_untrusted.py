"""`export --keras` against model files that act when they are loaded (issue 27): a SavedModel whose graph writes
or reads a file, prints or calls Python is refused in one line, exit 2, from its protos, before TensorFlow traces
or runs anything of it; every real SavedModel still passes. Files that inflate: test_export_untrusted_files.py."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_convert_zoo import kerases
from tests.test_export_keras import FEATURES, invoke

NOT_PURE_MATH = (
    "that is not pure math: edgeseq refuses SavedModels that can act when loaded (file I/O, Python calls, ...)"
)


def refused(result, path: Path, message: str) -> None:
    """Exit 2 and stderr exactly the progress line and the one-line error."""
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"• loading {path}", f"edgeseq: error: {message}"], result.stderr


@dataclass(frozen=True)
class Exported:
    code: int
    stderr: str
    seconds: float
    peak_rss_mib: float


# `python -m edgeseq` that writes its peak RSS (VmHWM, the high-water mark of the memory of this program, which
# exec starts afresh) to the file in EDGESEQ_TEST_PEAK as it exits. getrusage and wait4 would count the image of
# the test process the child was forked from, which holds TensorFlow.
PEAK_RSS = """
import atexit, os, re, runpy, sys

def peak():
    with open("/proc/self/status") as status:
        kib = re.search(r"VmHWM:\\s+(\\d+) kB", status.read())[1]
    with open(os.environ["EDGESEQ_TEST_PEAK"], "w") as out:
        out.write(kib)

atexit.register(peak)
sys.argv[0] = "edgeseq"
runpy.run_module("edgeseq", run_name="__main__")
"""


def export_in_a_process(path: Path, out: Path) -> Exported:
    """`python -m edgeseq export --keras path` in a process of its own: exit code, stderr, time and peak RSS."""
    peak = out.parent / "peak_kib.txt"
    command = ["export", "--keras", str(path), "--features", FEATURES, "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *command],
        capture_output=True,
        text=True,
        env={**os.environ, "EDGESEQ_TEST_PEAK": str(peak)},
    )
    seconds = time.perf_counter() - started
    return Exported(done.returncode, done.stderr, seconds, int(peak.read_text()) / 1024 if peak.exists() else math.inf)


def one_line(run: Exported, path: Path, message: str) -> None:
    assert run.code == 2, run.stderr
    assert run.stderr.splitlines() == [f"• loading {path}", f"edgeseq: error: {message}"], run.stderr


# --- SavedModels whose graph acts when it runs -------------------------------------------------------------


def saved_model_with(tmp_path: Path, layer) -> Path:
    """A tf.keras 2 SavedModel: Input -> `layer` -> LSTM, as model.save(..., save_format="tf") writes it."""
    tf_keras = kerases()["tf_keras"]
    model = tf_keras.Sequential([tf_keras.Input((12, 3)), layer, tf_keras.layers.LSTM(2)])
    path = tmp_path / "model"
    model.save(path, save_format="tf")
    return path


def acting_layer(kind: str, marker: Path):
    """A custom layer whose call does `kind` (to `marker`) and passes its input through."""
    import tensorflow as tf

    tf_keras = kerases()["tf_keras"]

    class Acting(tf_keras.layers.Layer):
        def call(self, x):
            if kind == "write_file":
                tf.io.write_file(str(marker), "written by a model file")
            elif kind == "save_v2":
                tf.raw_ops.SaveV2(prefix=str(marker), tensor_names=["x"], shape_and_slices=[""], tensors=[x])
            elif kind == "read_file":
                x = x + 0.0 * tf.cast(tf.strings.length(tf.io.read_file(str(marker))), tf.float32)
            elif kind == "print":
                tf.print("a model file printing", x)
            return x

    return Acting(name="evil_layer")


@pytest.mark.parametrize(
    ("kind", "ops"),
    [
        ("write_file", "an op WriteFile"),
        ("save_v2", "an op SaveV2"),
        ("read_file", "ops ReadFile, StringLength"),
        ("print", "ops PrintV2, StringFormat"),
    ],
)
def test_a_savedmodel_layer_with_file_io_or_a_print_is_refused_before_anything_runs(tmp_path, kind, ops):
    marker = tmp_path / "written"
    if kind == "read_file":
        marker.write_text("a secret")
    path = saved_model_with(tmp_path, acting_layer(kind, marker))
    if kind != "read_file":
        for written in tmp_path.glob("written*"):  # saving traced the call; it must not have run it, but be sure
            written.unlink()
    result = invoke("export", "--keras", path, "--features", FEATURES, "--out", tmp_path / "o")
    refused(result, path, f"{path} has {ops} (layer 'evil_layer') {NOT_PURE_MATH}")
    if kind != "read_file":
        assert not list(tmp_path.glob("written*"))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("function", "op"), [("py_function", "EagerPyFunc"), ("numpy_function", "PyFunc")])
def test_a_python_function_in_a_savedmodel_is_one_line_and_exit_2(tmp_path, function, op):
    import tensorflow as tf

    tf_keras = kerases()["tf_keras"]

    class CallsPython(tf_keras.layers.Layer):
        def call(self, x):
            y = getattr(tf, function)(lambda t: t, [x], tf.float32)
            y.set_shape(x.shape)
            return y

    path = saved_model_with(tmp_path, CallsPython(name="py_layer"))
    run = export_in_a_process(path, tmp_path / "o")  # a process of its own: no Python callback registered there
    one_line(run, path, f"{path} has an op {op} (layer 'py_layer') {NOT_PURE_MATH}")


def test_a_keras_3_tfsmlayer_naming_a_savedmodel_elsewhere_is_refused_and_that_savedmodel_never_runs(tmp_path):
    # the other way a user's file could make TensorFlow run a graph: Keras 3's safe mode (which edgeseq keeps
    # on) refuses the layer before it loads the SavedModel its config names
    import tensorflow as tf

    keras = kerases()["keras3"]
    marker = tmp_path / "written"

    class Serving(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 12, 3], tf.float32)])
        def serve(self, x):
            tf.io.write_file(str(marker), "written by a SavedModel a .keras file names")
            return x[:, -1, :]

    module = Serving()
    tf.saved_model.save(module, tmp_path / "elsewhere", signatures={"serving_default": module.serve})
    inputs = keras.Input((12, 3))
    outputs = keras.layers.TFSMLayer(str(tmp_path / "elsewhere"), call_endpoint="serving_default")(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "m.keras")
    marker.unlink(missing_ok=True)
    result = invoke("export", "--keras", tmp_path / "m.keras", "--features", FEATURES, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "Requested the deserialization of a `TFSMLayer`" in result.stderr
    assert len(result.stderr.splitlines()) == 2 and not marker.exists()


# --- what is allowed: every real model, and the checkpoint functions only where TensorFlow's saver put them ---


def beyond_the_zoo(k):
    """Layers and TF ops beyond tests/zoo.py, as a tf.keras 2 user might combine them (the allow-list's source)."""
    import tensorflow as tf

    inputs = k.Input((12, 3))
    x = k.layers.GaussianNoise(0.1)(k.layers.Normalization(mean=[0.0, 1.0, 2.0], variance=[1.0, 2.0, 3.0])(inputs))
    x = k.layers.Rescaling(2.0, 1.0)(k.layers.AlphaDropout(0.1)(k.layers.GaussianDropout(0.1)(x)))
    x = tf.clip_by_value((x - tf.reduce_mean(x, axis=1, keepdims=True)) * 2.0, -3.0, 3.0)
    x = tf.concat([x, tf.abs(x), tf.math.log1p(tf.abs(x)), tf.math.cumsum(x, axis=1), tf.sign(x)], axis=-1)
    x = k.layers.Conv1D(8, 3, padding="same", activation="gelu", dilation_rate=2)(x)
    x = k.layers.SeparableConv1D(8, 3, padding="same", activation="swish")(x)
    x = k.layers.DepthwiseConv1D(3, padding="same", activation="selu")(x)
    x = k.layers.Conv1DTranspose(8, 3, padding="same")(k.layers.UpSampling1D(2)(k.layers.MaxPooling1D(2)(x)))
    x = k.layers.AveragePooling1D(1)(k.layers.Cropping1D(1)(k.layers.ZeroPadding1D(1)(x)))
    a = k.layers.MultiHeadAttention(2, 4)(x, x, use_causal_mask=True)
    b = k.layers.Attention()([x, x], use_causal_mask=True)
    x = k.layers.Concatenate()([a, b, k.layers.AdditiveAttention()([x, x])])
    x = k.layers.PReLU()(k.layers.LeakyReLU()(k.layers.BatchNormalization()(k.layers.LayerNormalization()(x))))
    for activation in ("elu", "relu6", "softplus", "softsign", "exponential", "hard_sigmoid", "mish", "tanh"):
        x = k.layers.Activation(activation)(x)
    x = k.layers.Masking()(k.layers.Permute((2, 1))(k.layers.Permute((2, 1))(k.layers.Softmax()(x))))
    x = k.layers.GRU(4, return_sequences=True, unroll=True, reset_after=False)(x)
    x = k.layers.Bidirectional(k.layers.LSTM(3, unroll=True, return_sequences=True))(x)
    x = k.layers.SimpleRNN(3, go_backwards=True, dropout=0.1, recurrent_dropout=0.1)(x)
    y = k.layers.GlobalAveragePooling1D()(k.layers.RepeatVector(3)(x))
    z = k.layers.GlobalMaxPooling1D()(k.layers.RepeatVector(3)(x))
    x = k.layers.Dot(axes=1)([k.layers.Multiply()([y, z]), k.layers.Add()([y, z])])
    x = k.layers.Dense(3, activation="sigmoid", kernel_regularizer="l2", activity_regularizer="l1")(x)
    return k.Model(inputs, tf.nn.softmax(x) + tf.one_hot(tf.argmax(x, -1), 3), name="beyond")


def embedding(k):
    inputs = k.Input((12, 1))
    x = k.layers.Embedding(10, 4, mask_zero=True)(k.layers.Reshape((12,))(inputs))
    return k.Model(inputs, k.layers.GRU(3)(k.layers.LSTM(3, return_sequences=True)(x)), name="embedding")


def trained(k):
    import numpy as np

    from tests.test_export_keras import done_when_model

    model = done_when_model(k, name="trained")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.zeros((8, 12, 3)), np.zeros(8), epochs=1, verbose=0)
    return model


def mixed_precision(k):
    k.mixed_precision.set_global_policy("mixed_float16")
    try:
        return k.Sequential(
            [k.Input((12, 3)), k.layers.Conv1D(4, 3), k.layers.LSTM(4), k.layers.Dense(1, dtype="float32")]
        )
    finally:
        k.mixed_precision.set_global_policy("float32")


def real_models():
    from tests.test_export_keras import done_when_model
    from tests.test_export_stateful import stateful_model
    from tests.zoo import ZOO, build

    return {
        **{name: (lambda k, name=name: build(k, name)) for name in ZOO},
        "done_when": done_when_model,
        "stateful": stateful_model,
        "stateful_4_rows": lambda k: stateful_model(k, 4),
        "beyond_the_zoo": beyond_the_zoo,
        "embedding": embedding,
        "trained": trained,
        "mixed_precision": mixed_precision,
    }


@pytest.mark.parametrize("name", list(real_models()))
def test_every_real_savedmodel_passes_the_checks(name, tmp_path):
    from edgeseq.convert.file_caps import check_checkpoint, check_directory
    from edgeseq.convert.graph_ops import check_saved_model

    real_models()[name](kerases()["tf_keras"]).save(tmp_path / name, save_format="tf")
    check_directory(tmp_path / name)
    check_saved_model(tmp_path / name)
    check_checkpoint(tmp_path / name)


@pytest.fixture(scope="module")
def lstm_saved_model(tmp_path_factory) -> Path:
    from tests.zoo import build

    path = tmp_path_factory.mktemp("sm") / "lstm"
    build(kerases()["tf_keras"], "lstm").save(path, save_format="tf")
    return path


def edited(path: Path, tmp_path: Path, edit) -> Path:
    """A copy of the SavedModel `path` whose saved_model.pb `edit(proto)` changed."""
    import shutil

    from edgeseq.convert.graph_ops import read_saved_model

    copy = tmp_path / path.name
    shutil.copytree(path, copy)
    proto = read_saved_model(copy)
    edit(proto)
    (copy / "saved_model.pb").write_bytes(proto.SerializeToString())
    return copy


def functions(proto, prefix: str):
    return [f for f in proto.meta_graphs[0].graph_def.library.function if f.signature.name.startswith(prefix)]


def test_the_checkpoint_ops_pass_only_in_the_functions_of_tensorflows_saver(lstm_saved_model, tmp_path):
    from edgeseq.convert.graph_ops import check_saved_model, checkpoint_functions, read_saved_model
    from edgeseq.errors import UnsafeModelError

    proto = read_saved_model(lstm_saved_model)
    saver = sorted(checkpoint_functions(proto.meta_graphs[0]))
    assert [re.sub(r"\d+$", "N", name) for name in saver] == [
        "__inference__traced_restore_N",
        "__inference__traced_save_N",
    ]

    def swappable(proto):  # TensorFlow may swap in a function that implements the same API as another
        functions(proto, "__inference__traced_save_")[0].attr["api_implements"].s = b"lstm_abc"

    ops = r"has ops MergeV2Checkpoints, SaveV2, ShardedFilename, StaticRegexFullMatch, StringJoin"
    with pytest.raises(UnsafeModelError, match=ops + r" \(in function __inference__traced_save_\d+\) that is not"):
        check_saved_model(edited(lstm_saved_model, tmp_path / "a", swappable))

    def called_by_a_layer(proto):  # a layer's function that calls the save function
        layer = functions(proto, "__inference_lstm_layer_call_fn_")[0]
        call = layer.node_def.add(name="save", op="StatefulPartitionedCall")
        call.attr["f"].func.name = functions(proto, "__inference__traced_save_")[0].signature.name

    with pytest.raises(UnsafeModelError, match=r"has ops MergeV2Checkpoints, SaveV2, .*that is not pure math"):
        check_saved_model(edited(lstm_saved_model, tmp_path / "b", called_by_a_layer))

    def named_by_the_object_graph(proto):  # the loader restores it as a callable, and may run it (an initialiser)
        name = functions(proto, "__inference__traced_save_")[0].signature.name
        proto.meta_graphs[0].object_graph_def.concrete_functions[name].SetInParent()

    with pytest.raises(UnsafeModelError, match=r"has ops MergeV2Checkpoints, SaveV2, .*that is not pure math"):
        check_saved_model(edited(lstm_saved_model, tmp_path / "c", named_by_the_object_graph))


def test_a_call_of_an_op_by_name_is_checked_as_that_op(lstm_saved_model, tmp_path):
    # TensorFlow runs PartitionedCall(f="WriteFile") as the op WriteFile when no function has that name
    from edgeseq.convert.graph_ops import check_saved_model
    from edgeseq.errors import UnsafeModelError

    def call_an_op(proto):
        call = functions(proto, "__inference_lstm_layer_call_fn_")[0].node_def.add(name="x", op="PartitionedCall")
        call.attr["f"].func.name = "WriteFile"

    with pytest.raises(UnsafeModelError, match=r"has an op WriteFile \(layer 'lstm'\)"):
        check_saved_model(edited(lstm_saved_model, tmp_path, call_an_op))


def test_a_tensorflow_1_savedmodel_is_refused_as_its_loader_runs_the_graphs_init_ops(lstm_saved_model, tmp_path):
    from edgeseq.convert.graph_ops import check_saved_model
    from edgeseq.errors import ModelFileError

    path = edited(lstm_saved_model, tmp_path, lambda proto: proto.meta_graphs[0].ClearField("object_graph_def"))
    with pytest.raises(ModelFileError, match=r"is a TensorFlow 1 SavedModel \(1 meta graphs, no object graph\)"):
        check_saved_model(path)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_a_tf_keras_h5_or_keras_file_holds_no_graph_and_its_custom_layer_never_runs(tmp_path, suffix):
    # the config names a class Keras does not know: it fails to load, and its call is never run
    tf_keras = kerases()["tf_keras"]
    marker = tmp_path / "written"
    model = tf_keras.Sequential([tf_keras.Input((12, 3)), acting_layer("write_file", marker), tf_keras.layers.LSTM(2)])
    model.save(tmp_path / f"m{suffix}")
    marker.unlink(missing_ok=True)
    result = invoke("export", "--keras", tmp_path / f"m{suffix}", "--features", FEATURES, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "could not be loaded" in result.stderr and "Acting" in result.stderr
    assert not marker.exists()


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_as_saved_model_pb_are_refused_in_one_line_or_parsed(tmp_path_factory, data):
    from edgeseq.convert.graph_ops import check_saved_model
    from edgeseq.errors import ModelFileError

    path = tmp_path_factory.mktemp("pb")
    (path / "saved_model.pb").write_bytes(data)
    with pytest.raises(ModelFileError) as refused_:
        check_saved_model(path)
    assert "\n" not in str(refused_.value)
