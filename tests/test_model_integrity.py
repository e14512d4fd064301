"""A model and its manifest that agree with each other (issue 27): the manifest must say what the file's own
metadata says, the file must hold all its weights, and `info` answers a malformed file in one line.

Each tampered pair is made as an attacker would: the manifest's sha256 is fixed for the file it lies beside, so
only the check under test can catch it."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq_device.manifest import sha256_of
from tests.conftest import EXPORTED, LETTER_ONNX
from tests.streams import LINES, SENSOR_ONNX, records, write_lines

GEMM_WEIGHTS = "s2_forecast/MatMul/ReadVariableOp:0"  # the forecaster's last layer, [100, 1] float32


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def device_run(*args, cwd: Path | str) -> subprocess.CompletedProcess:
    """`python -m edgeseq_device run ARGS` in a child process started in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "edgeseq_device", "run", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def sample(tmp_path: Path, rows: int = 60) -> Path:
    """The first `rows` data rows of the committed sample: enough for a few windows of 36."""
    return write_lines(tmp_path / "sample.csv", LINES[: rows + 1])


def copy_pair(tmp_path: Path, onnx_file: Path = SENSOR_ONNX) -> Path:
    """The model and the manifest it shares with its variants, copied to `tmp_path`; returns the copy's path."""
    manifest = onnx_file.with_name(onnx_file.name.split(".", 1)[0] + ".json")
    shutil.copy(manifest, tmp_path / manifest.name)
    shutil.copy(onnx_file, tmp_path / onnx_file.name)
    return tmp_path / onnx_file.name


def edit_manifest(model: Path, edit: Callable[[dict], object]) -> Path:
    """Apply `edit` to the manifest beside `model`, and record `model`'s sha256 and size in it as they now are."""
    path = model.with_name(model.name.split(".", 1)[0] + ".json")
    manifest = json.loads(path.read_text())
    edit(manifest)
    content = model.read_bytes()
    manifest["files"][model.name] = {"sha256": sha256_of(content), "size": len(content)}
    path.write_text(json.dumps(manifest, indent=2))
    return model


def swap_first_two_features(manifest: dict) -> None:
    features = manifest["features"]
    features[0], features[1] = features[1], features[0]


# --- 13. The manifest must say what the file's own metadata says ----------------------------------------------


def test_swapped_features_are_refused_by_edgeseq_run(tmp_path: Path):
    model = edit_manifest(copy_pair(tmp_path), swap_first_two_features)
    result = invoke("run", "--stream", sample(tmp_path), "--model", model)
    # Before: exit 0, and the forecast at row 36 was 28.418 instead of 28.618
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"edgeseq: error: manifest {tmp_path / 'sensor_lstm.json'}: features "
        '["RH_2", "T2", "T_out", "RH_out", "Tdewpoint"], but sensor_lstm.onnx\'s metadata records '
        '["T2", "RH_2", "T_out", "RH_out", "Tdewpoint"]\n'
    )


def test_swapped_features_are_refused_by_the_device_runner(tmp_path: Path):
    model = edit_manifest(copy_pair(tmp_path), swap_first_two_features)
    proc = device_run("--stream", sample(tmp_path), "--model", model.name, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == (
        "edgeseq_device: error: manifest sensor_lstm.json: features "
        '["RH_2", "T2", "T_out", "RH_out", "Tdewpoint"], but sensor_lstm.onnx\'s metadata records '
        '["T2", "RH_2", "T_out", "RH_out", "Tdewpoint"]\n'
    )


def test_info_reports_the_disagreement_as_a_failed_manifest_check(tmp_path: Path):
    # `info` shows a failed manifest check instead of refusing (tests/test_cli.py): it is how a user finds out
    model = edit_manifest(copy_pair(tmp_path), swap_first_two_features)
    result = invoke("info", model)
    assert result.exit_code == 0, result.output
    assert f"(FAILED: manifest {tmp_path / 'sensor_lstm.json'}: features [" in result.stdout


def _set(*path_and_value):
    *path, value = path_and_value

    def edit(manifest: dict) -> None:
        for key in path[:-1]:
            manifest = manifest[key]
        manifest[path[-1]] = value

    return edit


# Every field the forecaster's file records in its metadata, changed in the manifest alone: (edit, the message's
# field and the manifest's value, the file's value)
FORECASTER_EDITS = {
    "features": (swap_first_two_features, 'features ["RH_2", "T2",', '["T2", "RH_2",'),
    "target": (_set("target", "RH_2"), 'target "RH_2"', '"T2"'),
    "window": (_set("window", 24), "window 24", "36"),
    "horizon": (_set("horizon", 3), "horizon 3", "6"),
    "time_column": (_set("time_column", None), "time_column null", '"date"'),
    "time_column gone": (lambda m: m.pop("time_column"), "no time_column", '"date"'),
    "input_scale": (_set("scaling", "input_scale", [1.0] * 5), "scaling.input_scale[0] 1.0", "0.9251222298142904"),
    "target_scale": (_set("scaling", "target_scale", 0.5), "scaling.target_scale 0.5", "0.3701668895268832"),
    "in_graph": (_set("scaling", "in_graph", False), "scaling.in_graph false", "true"),
    "output_transform": (_set("output_transform", "units", "T2"), 'output_transform.units "T2"', '"T2, 6 rows'),
    "kind": (_set("kind", "sequence"), 'kind "sequence"', '"forecaster"'),
    "name": (_set("name", "other"), 'name "other"', '"sensor_lstm"'),
    "edgeseq_version": (_set("edgeseq_version", "9.9"), 'edgeseq_version "9.9"', '"0.2.0"'),
    "producers": (_set("producers", "tensorflow", "2.0.0"), 'producers.tensorflow "2.0.0"', '"2.21.0"'),
}


@pytest.mark.parametrize(("edit", "ours", "theirs"), FORECASTER_EDITS.values(), ids=FORECASTER_EDITS.keys())
def test_every_field_the_forecaster_records_must_agree(tmp_path: Path, edit, ours, theirs):
    model = edit_manifest(copy_pair(tmp_path), edit)
    result = invoke("run", "--stream", sample(tmp_path), "--model", model)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
    line = result.stderr
    assert f"sensor_lstm.json: {ours}" in line and f"sensor_lstm.onnx's metadata records {theirs}" in line


@pytest.mark.parametrize("variant", ["dynamic-int8", "static-int8", "fp16"])
def test_a_variant_is_held_to_the_manifest_it_shares(tmp_path: Path, variant):
    model = edit_manifest(copy_pair(tmp_path, EXPORTED / f"sensor_lstm.{variant}.onnx"), swap_first_two_features)
    result = invoke("run", "--stream", sample(tmp_path), "--model", model)
    assert result.exit_code == 2, result.output
    assert f'features ["RH_2", "T2", "T_out", "RH_out", "Tdewpoint"], but sensor_lstm.{variant}.onnx\'s' in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _set("vocabulary", "abced"),
            'letter_rnn.json: vocabulary "abced", but letter_rnn.onnx\'s metadata records "abcde"',
        ),
        (_set("window", 3), "letter_rnn.json: window 3, but letter_rnn.onnx's metadata records 4"),
    ],
    ids=["vocabulary", "window"],
)
def test_the_letter_model_is_held_to_its_vocabulary_and_window(tmp_path: Path, edit, message):
    # Before: a swapped vocabulary answered "abcd -> d"
    model = edit_manifest(copy_pair(tmp_path, LETTER_ONNX), edit)
    result = invoke("letters", "--model", model, "abcd")
    assert result.exit_code == 2, result.output
    assert result.stderr == f"edgeseq: error: manifest {tmp_path / message}\n"


def _changed(value):
    """Another value of the same kind: what a hand edit of the manifest would make of `value`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, value[0] if value else 0]
    if isinstance(value, dict):
        return {**value, "edited": True}
    return "edited"  # None


def _recorded_twice(model: Path) -> list[tuple[str, ...]]:
    """Every fact the file's metadata_props and its manifest both hold, as a path into the manifest."""
    from edgeseq_device.manifest import Manifest, manifest_path_for

    data = Manifest.load(manifest_path_for(model)).data
    paths = []
    for prop in onnx.load(model).metadata_props:
        if prop.key in data:
            paths.append((prop.key,))
        elif prop.key.startswith("producer.") and prop.key.removeprefix("producer.") in data.get("producers", {}):
            paths.append(("producers", prop.key.removeprefix("producer.")))
    return paths


def _assert_each_fact_is_compared(tmp_path: Path, model_file: Path) -> int:
    from edgeseq_device.errors import ManifestError
    from edgeseq_device.model import load_model

    paths = _recorded_twice(model_file)
    for i, path in enumerate(paths):
        folder = tmp_path / str(i)
        folder.mkdir()
        model = copy_pair(folder, model_file)

        def edit(manifest, path=path):
            *parents, last = path
            for key in parents:
                manifest = manifest[key]
            manifest[last] = _changed(manifest[last])

        edit_manifest(model, edit)
        with pytest.raises(ManifestError, match=": " + re.escape(".".join(path)) + r"[ .\[]"):
            load_model(model)
    return len(paths)


@pytest.mark.parametrize("model", sorted(EXPORTED.glob("*.onnx")), ids=lambda p: p.name)
def test_every_fact_a_committed_file_records_is_compared(tmp_path: Path, model: Path):
    # a key that export starts to record in both places is compared at once, without a list to update
    assert _assert_each_fact_is_compared(tmp_path, model) >= 9


@pytest.fixture(scope="module")
def keras_exports(tmp_path_factory) -> dict[str, Path]:
    """Two `edgeseq export --keras` models: a classifier normalised in its graph, with a time column, and a
    stateful regressor (the kinds of metadata a user's model records)."""
    from edgeseq.export import export_keras
    from tests.test_convert_zoo import kerases
    from tests.test_export_keras import MEAN, STD, done_when_model, sensor_csv
    from tests.test_export_stateful import stateful_model, stream_csv

    root = tmp_path_factory.mktemp("keras_exports")
    keras = kerases()["keras3"]
    done_when_model(keras).save(root / "activity.keras")
    export_keras(
        root / "activity.keras", features=("ax", "ay", "az"), out_dir=root, labels=("walk", "run", "sit"),
        mean=MEAN, std=STD, time_column="time", sample=sensor_csv(root / "activity.csv"),
    )  # fmt: skip
    stateful_model(keras, 2).save(root / "streaming.keras")
    export_keras(
        root / "streaming.keras", features=("a", "b"), out_dir=root, targets=("y",), sample=stream_csv(root / "s.csv")
    )
    return {"classifier": root / "activity.onnx", "stateful": root / "streaming.onnx", "sample": root / "activity.csv"}


@pytest.mark.parametrize("kind", ["classifier", "stateful"])
def test_every_fact_a_keras_export_records_is_compared(tmp_path: Path, keras_exports, kind):
    assert _assert_each_fact_is_compared(tmp_path, keras_exports[kind]) >= 13


def test_swapped_labels_of_a_keras_export_are_refused(tmp_path: Path, keras_exports):
    # Before: every record named the wrong activity
    def swap(manifest):
        labels = manifest["task"]["labels"]
        labels[0], labels[1] = labels[1], labels[0]

    model = edit_manifest(copy_pair(tmp_path, keras_exports["classifier"]), swap)
    result = invoke("run", "--stream", keras_exports["sample"], "--model", model)
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"edgeseq: error: manifest {tmp_path / 'activity.json'}: task.labels "
        '["run", "walk", "sit"], but activity.onnx\'s metadata records ["walk", "run", "sit"]\n'
    )


def test_a_file_exported_before_its_metadata_recorded_a_field_still_runs(tmp_path: Path):
    # what the file does not record is not compared: the manifest alone says it, as before
    model = copy_pair(tmp_path)
    proto = onnx.load(model)
    kept = [p for p in proto.metadata_props if p.key not in ("features", "scaling", "output_transform", "horizon")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, model)
    edit_manifest(model, lambda manifest: None)
    old = invoke("run", "--stream", sample(tmp_path), "--model", model)
    new = invoke("run", "--stream", sample(tmp_path), "--model", SENSOR_ONNX)
    assert old.exit_code == 0, old.output
    assert records(old.stdout) == records(new.stdout) and len(records(new.stdout)) == 25


# --- 14. Every weight inside the file its sha256 covers -------------------------------------------------------


def with_external_data(model: Path, location: str, data_file: Path | None = None) -> Path:
    """Move the last layer's weights out of `model` to `location` (relative, as onnx writes it); with `data_file`,
    write the true weights there. The manifest's sha256 is then fixed for the new file."""
    proto = onnx.load(model)
    tensor = next(t for t in proto.graph.initializer if t.name == GEMM_WEIGHTS)
    if data_file is not None:
        data_file.write_bytes(tensor.raw_data)
    length = len(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    model.write_bytes(proto.SerializeToString())
    return edit_manifest(model, lambda manifest: None)


def external_data_refusal(model: Path, location: str) -> str:
    return (
        f"{model}: tensor {GEMM_WEIGHTS!r} is external data ({location!r}); edgeseq loads only self-contained "
        "ONNX files, whose sha256 covers every weight"
    )


def test_external_data_naming_etc_passwd_is_refused_when_run_from_root(tmp_path: Path):
    model = with_external_data(copy_pair(tmp_path), "etc/passwd")
    proc = device_run("--stream", sample(tmp_path), "--model", model, cwd="/")  # systemd's default directory
    # Before: exit 0, /etc/passwd read as the last layer's weights: forecasts of 9.45e+31
    assert proc.returncode == 2, proc.stdout[:300]
    assert proc.stdout == ""
    assert proc.stderr == f"edgeseq_device: error: {external_data_refusal(model, 'etc/passwd')}\n"


def test_external_data_in_a_file_beside_the_model_is_refused_too(tmp_path: Path):
    # the true weights, where onnx itself would write them: the sha256 still does not cover them
    model = with_external_data(copy_pair(tmp_path), "weights.bin", tmp_path / "weights.bin")
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseq", "run", "--stream", sample(tmp_path), "--model", model.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[:300]
    assert proc.stderr == f"edgeseq: error: {external_data_refusal(Path(model.name), 'weights.bin')}\n"


def _external(name: str, location: str | None = "w.bin", flag: bool = True) -> TensorProto:
    tensor = onnx.helper.make_tensor(name, TensorProto.FLOAT, [2], [1.0, 2.0])
    if location is not None:
        tensor.ClearField("float_data")
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", location
    if flag:
        tensor.data_location = TensorProto.EXTERNAL
    return tensor


def _graph(nodes=(), initializer=(), sparse=(), name="g"):
    x = onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    return onnx.helper.make_graph(list(nodes), name, [x], [x], list(initializer), sparse_initializer=list(sparse))


def _model(graph, **fields):
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    for key, value in fields.items():
        getattr(model, key).extend(value)
    return model


def _if(then_graph):
    return onnx.helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=_graph(name="else"))


def _sparse(values: TensorProto) -> onnx.SparseTensorProto:
    indices = onnx.helper.make_tensor("i", TensorProto.INT64, [2], [0, 1])
    return onnx.helper.make_sparse_tensor(values, indices, [4])


# Every place a TensorProto can sit in onnx.proto, with its data moved out
EXTERNAL_PLACES = {
    "initializer": lambda: _model(_graph(initializer=[_external("w")])),
    "sparse initializer": lambda: _model(_graph(sparse=[_sparse(_external("w"))])),
    "Constant's value": lambda: _model(_graph([onnx.helper.make_node("Constant", [], ["y"], value=_external("w"))])),
    "a list of tensors": lambda: _model(
        _graph([onnx.helper.make_node("Custom", [], ["y"], domain="x", tensors=[_external("v"), _external("w")])])
    ),
    "a sparse attribute": lambda: _model(
        _graph([onnx.helper.make_node("Constant", [], ["y"], sparse_value=_sparse(_external("w")))])
    ),
    "If's subgraph": lambda: _model(_graph([_if(_graph(initializer=[_external("w")], name="then"))])),
    "a subgraph's subgraph": lambda: _model(
        _graph([_if(_graph([_if(_graph(initializer=[_external("w")], name="inner"))], name="then"))])
    ),
    "a function": lambda: _model(
        _graph(),
        functions=[
            onnx.helper.make_function(
                "f", "F", [], ["y"], [onnx.helper.make_node("Constant", [], ["y"], value=_external("w"))], []
            )
        ],
    ),
    "training_info": lambda: _model(
        _graph(), training_info=[onnx.TrainingInfoProto(initialization=_graph(initializer=[_external("w")]))]
    ),
    "data_location alone": lambda: _model(_graph(initializer=[_external("w", location=None)])),
    "external_data alone": lambda: _model(_graph(initializer=[_external("w", flag=False)])),
}


@pytest.mark.parametrize("make", EXTERNAL_PLACES.values(), ids=EXTERNAL_PLACES.keys())
def test_external_data_is_found_wherever_a_tensor_can_sit(make):
    from edgeseq_device.external_data import find_external_data

    found = find_external_data(make().SerializeToString())
    assert found is not None and found.name in ("v", "w")


def test_the_location_is_named_and_a_self_contained_model_passes():
    from edgeseq_device.external_data import find_external_data

    assert find_external_data(_model(_graph(initializer=[_external("w", "etc/passwd")])).SerializeToString()) == (
        "w",
        "etc/passwd",
    )
    assert find_external_data(_model(_graph(initializer=[_external("w", location=None)])).SerializeToString()) == (
        "w",
        None,
    )
    for model in EXPORTED.glob("*.onnx"):
        assert find_external_data(model.read_bytes()) is None, model


def _field(number: int, payload: bytes) -> bytes:
    def varint(n: int) -> bytes:
        out = b""
        while n >= 0x80:
            out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
        return out + bytes([n])

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def test_subgraphs_nested_past_protobufs_limit_are_refused_not_a_recursion_error():
    from edgeseq_device.external_data import MalformedModel, find_external_data

    graph = b""
    for _ in range(400):  # graph { node { attribute { g { ... } } } }
        graph = _field(1, _field(5, _field(6, graph)))
    with pytest.raises(MalformedModel, match="nested deeper than"):
        find_external_data(_field(7, graph))


def test_a_truncated_or_mutated_model_is_malformed_or_fine_never_a_crash():
    from edgeseq_device.external_data import MalformedModel, find_external_data

    content = LETTER_ONNX.read_bytes()
    for end in range(len(content)):
        with contextlib.suppress(MalformedModel):
            find_external_data(content[:end])
    for at in range(len(content)):
        for byte in (0x00, 0x80, 0xFF, 0x0A):
            with contextlib.suppress(MalformedModel):
                find_external_data(content[:at] + bytes([byte]) + content[at + 1 :])


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_are_malformed_or_fine_never_a_crash(content):
    from edgeseq_device.external_data import MalformedModel, find_external_data

    with contextlib.suppress(MalformedModel):
        find_external_data(content)


# --- 15. `info` on a file it cannot describe: one line, exit 2 --------------------------------------------------


def test_info_on_a_file_with_external_data_is_one_line_exit_2(tmp_path: Path):
    model = with_external_data(copy_pair(tmp_path), "etc/passwd")
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseq", "info", str(model)], cwd="/", capture_output=True, text=True, timeout=120
    )
    # Before: a traceback ending in onnx.checker.ValidationError, exit 1
    assert proc.returncode == 2, proc.stderr[-500:]
    assert proc.stdout == ""
    assert proc.stderr == f"edgeseq: error: {external_data_refusal(model, 'etc/passwd')}\n"


def _bad_utf8_metadata(model: Path) -> None:
    # a metadata_props entry (ModelProto field 14) whose value is not UTF-8: onnx cannot write one, a hand can
    model.write_bytes(model.read_bytes() + _field(14, _field(1, b"note") + _field(2, b"\xff\xfe")))


MALFORMED = {
    "truncated": (lambda m: m.write_bytes(m.read_bytes()[:1000]), "is not a loadable ONNX model"),
    "garbage": (lambda m: m.write_bytes(bytes(range(256)) * 8), "is not a loadable ONNX model"),
    "empty": (lambda m: m.write_bytes(b""), "is not a loadable ONNX model"),
    "a directory": (lambda m: (m.unlink(), m.mkdir()), "is a directory"),
    "metadata not UTF-8": (_bad_utf8_metadata, "is not a loadable ONNX model: its metadata is not UTF-8 text"),
}


@pytest.mark.parametrize("with_manifest", [True, False], ids=["with manifest", "alone"])
@pytest.mark.parametrize(("spoil", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_info_on_a_malformed_file_is_one_line_exit_2(tmp_path: Path, spoil, message, with_manifest):
    model = copy_pair(tmp_path, LETTER_ONNX)
    if not with_manifest:
        model.with_suffix(".json").unlink()
    spoil(model)
    for args in (["info", model], ["info", "--json", model], ["letters", "--model", model, "abcd"]):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == ""
        assert result.stderr.startswith("edgeseq: error: ") and len(result.stderr.splitlines()) == 1, result.stderr
        # `letters` checks the sha256 first; `info` reports that, then describes the file as it is
        assert message in result.stderr or ("does not match its manifest" in result.stderr and args[0] == "letters")


# --- What must keep working: every committed model, fp32 and its variants -------------------------------------


@pytest.mark.parametrize("model", sorted(EXPORTED.glob("*.onnx")), ids=lambda p: p.name)
def test_every_committed_model_runs_and_info_describes_it(tmp_path: Path, model: Path):
    if model.name.startswith("letter_rnn"):
        result = invoke("letters", "--model", model, "abcd", "bcde", "cdea", "deab", "eabc")
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == ["abcd -> e", "bcde -> a", "cdea -> b", "deab -> c", "eabc -> d"]
    else:
        result = invoke("run", "--stream", sample(tmp_path), "--model", model)
        assert result.exit_code == 0, result.output
        assert len(records(result.stdout)) == 25
    info = invoke("info", model)
    assert info.exit_code == 0, info.output
    assert "(ok: sha256 and signature match)" in info.stdout


def test_the_device_runner_runs_the_committed_forecaster():
    proc = device_run("--stream", "sensor.csv", "--model", "sensor_lstm.onnx", cwd=EXPORTED)
    assert proc.returncode == 0, proc.stderr
    assert '"prediction": 28.618232602707852' in proc.stdout.splitlines()[0]
