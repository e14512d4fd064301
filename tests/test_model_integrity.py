"""A model and its manifest that agree with each other (issue 27): the manifest must say what the file's own
metadata says.

Each tampered pair is made as an attacker would: the manifest's sha256 is fixed for the file it lies beside, so
only the check under test can catch it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq_device.manifest import sha256_of
from tests.conftest import EXPORTED, LETTER_ONNX
from tests.streams import LINES, SENSOR_ONNX, records, write_lines


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
    "edgeseq_version": (_set("edgeseq_version", "9.9"), 'edgeseq_version "9.9"', '"0.1.0"'),
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
