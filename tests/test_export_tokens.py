"""Token inputs (issue 26, item 5): `Input((T,))` integer ids -> Embedding -> (Bidirectional) LSTM exports fused, at
parity on ids drawn across the whole vocabulary, and `edgeseq run` reads the id column as integers: a value that is
not an id 0 to N-1 is a bad row, in the row path and the bulk path alike."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq.convert import op_type_counts
from edgeseq.convert.audit import fused_nodes
from edgeseq.export.keras_file import parity_windows
from edgeseq_device.bulk import PlainReader
from edgeseq_device.rows import BadRowError, RowParser
from edgeseq_device.sequence import SequenceSpec
from tests.streams import records
from tests.test_convert_zoo import kerases

T, VOCABULARY = 10, 50


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def imdb_style(keras, bidirectional=True):
    """Input((T,)) ids -> Embedding(50, 8) -> Bidirectional(LSTM(6)) -> Dense(1, sigmoid), the IMDB-style model."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((T,), name="ids")
    x = keras.layers.Embedding(VOCABULARY, 8)(inputs)
    lstm = keras.layers.LSTM(6)
    x = keras.layers.Bidirectional(lstm)(x) if bidirectional else lstm(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x), name="reviews")


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_an_embedding_over_ids_exports_fused_at_parity_on_every_id(flavour, tmp_path):
    model = imdb_style(kerases()[flavour])
    path = tmp_path / ("reviews.keras" if flavour == "keras3" else "reviews.h5")
    model.save(path)
    exported = invoke("export", "--keras", path, "--features", "token", "--labels", "neg,pos", "--out", tmp_path / "o")
    assert exported.exit_code == 0, exported.output
    manifest = json.loads((tmp_path / "o" / "reviews.json").read_text())
    assert manifest["tokens"]["vocabulary"] == VOCABULARY and manifest["inputs"][0]["shape"] == [1, T]
    graph = onnx.load(tmp_path / "o" / "reviews.onnx").graph
    assert dict(fused_nodes(graph)) == {"LSTM (bidirectional)": 1}
    assert op_type_counts(graph)["Loop"] == 0 and op_type_counts(graph)["Scan"] == 0
    parity = manifest["parity"]["windows"]
    assert "token ids, uniform over 0 to 49" in parity["compared"] and parity["max_abs_diff"] <= 1e-5
    assert "none" not in manifest["batched"]["reviews.onnx"]


def test_the_parity_windows_hold_every_id_of_the_vocabulary():
    # N(0, 1) windows, as before, made ids -3 to 3 of a table of any size: most of its rows were never checked
    windows = parity_windows(SequenceSpec(("token",), T, ("neg", "pos"), binary=True, vocabulary=VOCABULARY), None)
    ids = np.unique(windows.file)
    assert ids.tolist() == list(range(VOCABULARY)) and windows.file.shape == (500, T)


def test_edgeseq_run_reads_ids_and_a_value_that_is_not_one_is_a_bad_row(tmp_path):
    model = imdb_style(kerases()["keras3"], bidirectional=False)
    model.save(tmp_path / "reviews.keras")
    exported = invoke(
        "export", "--keras", tmp_path / "reviews.keras", "--features", "token", "--labels", "neg,pos",
        "--out", tmp_path,
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    ids = np.random.default_rng(1).integers(0, VOCABULARY, 40)
    ids[:2] = 0, VOCABULARY - 1
    segments = [ids[:12], ids[12:20], ids[20:30], ids[30:]]  # a bad row after each but the last
    lines = [str(i) for i in segments[0]]
    for bad, segment in zip((str(VOCABULARY), "2.5", "-1"), segments[1:], strict=True):
        lines += [bad, *map(str, segment)]
    csv = tmp_path / "tokens.csv"
    csv.write_text("token\n" + "\n".join(lines) + "\n")
    streamed = invoke("run", "--model", tmp_path / "reviews.onnx", "--stream", csv)
    assert streamed.exit_code == 0, streamed.output
    for bad in (str(VOCABULARY), "2.5", "-1"):
        assert f"not an id: column 'token' is '{bad}': token ids are 0 to 49" in streamed.stderr, streamed.stderr
    assert "3 rows skipped (not an id 3)" in streamed.stderr
    # a bad row ends a window as a gap does: windows lie within each run of good rows (the second is too short)
    x = np.stack([s[i - T + 1 : i + 1] for s in segments for i in range(T - 1, len(s))]).astype(np.float32)
    want = np.asarray(model(x, training=False))[:, 0]
    got = records(streamed.stdout)
    assert len(got) == len(want) == 3 + 0 + 1 + 1
    assert [r["label"] for r in got] == ["pos" if p >= 0.5 else "neg" for p in want]
    probability = np.where(want >= 0.5, want, 1 - want)
    assert np.abs(np.array([r["probability"] for r in got]) - probability).max() <= 1e-5
    many = csv.with_name("many.csv")  # whole blocks of good ids: the bulk path
    many.write_text("token\n" + "\n".join(str(i % VOCABULARY) for i in range(5000)) + "\n")
    streamed = invoke("run", "--model", tmp_path / "reviews.onnx", "--stream", many)
    assert streamed.exit_code == 0 and len(records(streamed.stdout)) == 5000 - T + 1, streamed.output


def test_the_bulk_path_leaves_a_block_with_a_bad_id_to_the_row_path():
    parser = RowParser(["token"], ["token"])
    parser.integers = {0: VOCABULARY}
    reader = PlainReader(parser, None)
    assert reader.read(["1", "49", "0"]).values.tolist() == [[1.0], [49.0], [0.0]]
    for bad in ("50", "2.5", "-1"):
        assert reader.read(["1", bad, "0"]) is None
        with pytest.raises(BadRowError, match=r"token ids are 0 to 49"):
            parser.parse([bad], np.zeros(1))


def test_a_model_over_ids_refuses_normalisation_and_a_sample_with_a_value_that_is_not_an_id(tmp_path):
    model = imdb_style(kerases()["keras3"], bidirectional=False)
    model.save(tmp_path / "reviews.keras")
    base = ("export", "--keras", tmp_path / "reviews.keras", "--features", "token", "--labels", "neg,pos")
    scaled = invoke(*base, "--mean", "1", "--std", "2", "--out", tmp_path)
    assert scaled.exit_code == 2 and "a model over token ids reads one column of ids, not normalised" in scaled.stderr
    sample = tmp_path / "s.csv"
    sample.write_text("token\n" + "\n".join(["3"] * 12 + ["7.5"]) + "\n")
    refused = invoke(*base, "--sample", sample, "--out", tmp_path)
    assert refused.exit_code == 2 and "token ids are integers 0 to 49" in refused.stderr, refused.output


def test_a_model_over_ids_quantizes_to_dynamic_int8_and_refuses_fp16_before_writing(tmp_path):
    model = imdb_style(kerases()["keras3"])
    model.save(tmp_path / "reviews.keras")
    base = ("export", "--keras", tmp_path / "reviews.keras", "--features", "token", "--labels", "neg,pos")
    fp16 = invoke(*base, "--out", tmp_path / "a", "--quantize", "fp16")
    assert fp16.exit_code == 2 and "reads token ids: its fp16 variant would not load" in fp16.stderr
    assert not (tmp_path / "a" / "reviews.onnx").exists()
    int8 = invoke(*base, "--out", tmp_path / "b", "--quantize", "dynamic-int8")
    assert int8.exit_code == 0, int8.output
    manifest = json.loads((tmp_path / "b" / "reviews.json").read_text())
    assert "reviews.dynamic-int8.onnx" in manifest["batched"]
    again = invoke("quantize", "--model", tmp_path / "b" / "reviews.onnx", "--mode", "fp16")
    assert again.exit_code == 2 and "reads token ids: its fp16 variant would not load" in again.stderr
