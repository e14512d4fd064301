"""`export --keras` against files that inflate far beyond their size on disk or read other files when loaded
(issue 27): a .keras zip bomb, members whose data is not what they declare, HDF5 datasets with nothing stored
or kept in other files, SavedModel directories with links, FIFOs or more than the cap. Each is refused in one
line, exit 2, before Keras opens the file, and without inflating anything."""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeseq.convert.file_caps import size
from tests.test_convert_zoo import kerases
from tests.test_export_keras import FEATURES, invoke
from tests.test_export_untrusted import export_in_a_process, one_line, refused

MIB = 1 << 20


@pytest.fixture(scope="module")
def lstm_saved_model(tmp_path_factory) -> Path:
    from tests.zoo import build

    path = tmp_path_factory.mktemp("sm") / "lstm"
    build(kerases()["tf_keras"], "lstm").save(path, save_format="tf")
    return path


# --- archives that inflate ---------------------------------------------------------------------------------


def small_keras3_file(path: Path) -> Path:
    keras = kerases()["keras3"]
    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((12, 3)), keras.layers.GRU(2)]).save(path)
    return path


def write_inflating_member(archive: zipfile.ZipFile, name: str, head: bytes, size: int) -> None:
    """`name`: `head`, then zeros up to `size` bytes, deflated as it is written (never held in memory)."""
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    zeros = bytes(MIB)
    with archive.open(info, "w", force_zip64=True) as member:
        member.write(head)
        left = size - len(head)
        while left > 0:
            member.write(zeros[: min(left, MIB)])
            left -= MIB


@pytest.fixture(scope="module")
def keras_bomb(tmp_path_factory) -> Path:
    """A real Keras 3 .keras whose model.weights.h5 is the real weights followed by zeros up to 1 GiB: a file
    of about 1 MB that inflates to 1 GiB (Keras 3 reads that member into memory whole)."""
    root = tmp_path_factory.mktemp("bomb")
    real = zipfile.ZipFile(small_keras3_file(root / "real.keras"))
    path = root / "bomb.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("metadata.json", "config.json"):
            archive.writestr(name, real.read(name))
        write_inflating_member(archive, "model.weights.h5", real.read("model.weights.h5"), 1 << 30)
    assert path.stat().st_size < 2 * MIB
    return path


def test_a_keras_zip_bomb_is_refused_at_once_without_inflating_it(keras_bomb, tmp_path):
    stored = zipfile.ZipFile(keras_bomb).getinfo("model.weights.h5").compress_size
    run = export_in_a_process(keras_bomb, tmp_path / "o")
    one_line(
        run,
        keras_bomb,
        f"{keras_bomb}: model.weights.h5 inflates to 1.0 GiB from {size(stored)} stored ({(1 << 30) / stored:,.0f} "
        "to 1), more than 100 to 1: edgeseq refuses files that inflate like a zip bomb (Keras stores a .keras file's "
        "members uncompressed)",
    )
    # measured: 69 MiB and 0.5 to 0.8 s for the refusal; before, exit 0 after 15 to 22 s at a peak of 2,673 MiB
    assert run.peak_rss_mib < 400, f"peak RSS {run.peak_rss_mib:.0f} MiB"
    assert run.seconds < 30, f"{run.seconds:.1f} s"


# --- archives: declared and actual sizes, counts, totals ---------------------------------------------------


def keras_zip(path: Path, members: dict[str, bytes], deflated: bool = False) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def declare_size(path: Path, name: str, declared: int) -> None:
    """Rewrite the uncompressed size the central directory declares for `name` (its data stays as it is)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    while data[at + 46 : at + 46 + len(name)] != name.encode():
        at = data.index(b"PK\x01\x02", at + 4)
    data[at + 24 : at + 28] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("declared", [1000, 3000])
def test_a_member_whose_data_is_not_its_declared_size_is_refused(tmp_path, declared):
    from edgeseq.convert.file_caps import check_archive
    from edgeseq.errors import ModelFileError

    path = keras_zip(tmp_path / "m.keras", {"metadata.json": b"{}", "config.json": b"x" * 2000}, deflated=True)
    declare_size(path, "config.json", declared)
    with pytest.raises(ModelFileError, match=rf"m.keras: config.json is not the {declared:,} bytes it declares"):
        check_archive(path)


def test_an_archive_listing_too_many_members_is_refused_from_its_end_record(tmp_path):
    from edgeseq.convert.file_caps import MAX_MEMBERS, check_archive
    from edgeseq.errors import OversizedModelError

    path = keras_zip(tmp_path / "m.keras", {f"assets/{i}": b"" for i in range(MAX_MEMBERS + 1)})
    with pytest.raises(OversizedModelError, match=r"lists 10,001 members in a central directory of 5\d\d\.\d KiB"):
        check_archive(path)


def test_members_that_inflate_together_or_beyond_the_cap_are_refused(tmp_path, monkeypatch):
    from edgeseq.convert import file_caps
    from edgeseq.errors import OversizedModelError

    monkeypatch.setattr(file_caps, "INFLATION_FLOOR", 100_000)
    zeros = {f"assets/{i}": bytes(60_000) for i in range(4)}  # each under the floor, 240 KB together
    path = keras_zip(tmp_path / "m.keras", zeros, deflated=True)
    with pytest.raises(OversizedModelError, match=r"its 4 members inflate to 234.4 KiB from .* stored \(\d+ to 1\)"):
        file_caps.check_archive(path)
    monkeypatch.setattr(file_caps, "MAX_UNPACKED_BYTES", 200_000)
    with pytest.raises(
        OversizedModelError, match=r"s.keras unpacks to 234.4 KiB, more than edgeseq's cap of 195.3 KiB"
    ):
        file_caps.check_archive(keras_zip(tmp_path / "s.keras", zeros))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_given_as_a_zip_are_read_or_refused_in_one_line(data):
    from edgeseq.convert.file_caps import _check_zip
    from edgeseq.errors import ModelFileError

    with contextlib.suppress(ModelFileError):
        _check_zip(io.BytesIO(b"PK\x03\x04" + data + b"PK\x05\x06" + data[-18:]), "x.keras")


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(st.text("abc/", min_size=1, max_size=8), st.binary(max_size=50), max_size=8), st.binary(max_size=30)
)
def test_the_end_record_read_is_the_directory_zipfile_reads(members, comment):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.comment = comment
    end = zipfile._EndRecData(buffer)
    assert end[zipfile._ECD_ENTRIES_TOTAL] == len(zipfile.ZipFile(buffer).infolist()) == len(members)


# --- HDF5: weights kept in other files, datasets that inflate; SavedModel directories -----------------------


def tf_keras_h5(path: Path) -> Path:
    tf_keras = kerases()["tf_keras"]
    tf_keras.utils.set_random_seed(0)
    layers = [tf_keras.layers.LSTM(2, name="lstm"), tf_keras.layers.Dense(4, name="dense")]
    tf_keras.Sequential([tf_keras.Input((12, 3)), *layers]).save(path)
    return path


def replace_dataset(path: Path, name: str, **create) -> None:
    import h5py

    with h5py.File(path, "r+") as h5:
        shape, dtype = h5[name].shape, h5[name].dtype
        del h5[name]
        h5.create_dataset(name, **{"shape": shape, "dtype": dtype, **create})


def test_an_h5_weight_kept_in_another_file_is_refused_and_never_read(tmp_path):
    secret = tmp_path / "id_key"
    secret.write_bytes(b"api-key 0123456789abcdef SECRET!")  # 32 bytes: the Dense kernel, 2 x 4 float32
    path = tf_keras_h5(tmp_path / "m.h5")
    replace_dataset(path, "model_weights/dense/dense/kernel:0", external=[(str(secret), 0, 32)])
    result = invoke("export", "--keras", path, "--features", FEATURES, "--out", tmp_path / "o")
    refused(
        result,
        path,
        f"{path}: dataset model_weights/dense/dense/kernel:0 keeps its data in another file ({secret}): edgeseq "
        "refuses HDF5 files that read other files when loaded",
    )
    assert not (tmp_path / "o").exists()


def test_an_h5_weight_linked_to_another_file_is_refused(tmp_path):
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["data"] = np.ones((2, 4), np.float32)  # any HDF5 file on the machine that loads the model
    path = tf_keras_h5(tmp_path / "m.h5")
    with h5py.File(path, "r+") as h5:
        del h5["model_weights/dense/dense/kernel:0"]
        h5["model_weights/dense/dense/kernel:0"] = h5py.ExternalLink(str(other), "/data")
    result = invoke("export", "--keras", path, "--features", FEATURES, "--out", tmp_path / "o")
    refused(
        result,
        path,
        f"{path}: model_weights/dense/dense/kernel:0 links to another file ({other}:/data): edgeseq refuses HDF5 "
        "files that read other files when loaded",
    )


@pytest.mark.parametrize(
    "dataset",
    [
        {"shape": (1 << 28,), "chunks": (1 << 20,), "compression": "gzip"},  # 1 GiB in chunks never written
        {"shape": (), "dtype": np.dtype(("<f4", (1 << 28,)))},  # one element of a 1 GiB type, never written
    ],
    ids=["chunks", "scalar"],
)
def test_an_h5_dataset_with_no_data_behind_it_is_refused_without_allocating_it(tmp_path, dataset):
    path = tf_keras_h5(tmp_path / "m.h5")
    name = "model_weights/lstm/lstm/lstm_cell/kernel:0"
    replace_dataset(path, name, **dataset)
    assert path.stat().st_size < MIB
    run = export_in_a_process(path, tmp_path / "o")
    one_line(
        run,
        path,
        f"{path}: dataset {name} inflates to 1.0 GiB from 0 bytes stored (1,073,741,824 to 1), more than 100 to 1: "
        "edgeseq refuses files that inflate like a zip bomb (Keras writes its weights uncompressed)",
    )
    assert run.peak_rss_mib < 400, f"peak RSS {run.peak_rss_mib:.0f} MiB"


def test_a_savedmodel_with_a_symbolic_link_is_refused_as_tensorflow_would_read_its_target(lstm_saved_model, tmp_path):
    import shutil

    path = tmp_path / "model"
    shutil.copytree(lstm_saved_model, path)
    data = path / "variables" / "variables.data-00000-of-00001"
    elsewhere = tmp_path / "elsewhere.data"
    data.rename(elsewhere)
    data.symlink_to(elsewhere)
    result = invoke("export", "--keras", path, "--features", FEATURES, "--out", tmp_path / "o")
    refused(
        result,
        path,
        f"{path}: variables/variables.data-00000-of-00001 is a symbolic link (to {elsewhere}): edgeseq reads a "
        "SavedModel's own files only",
    )


def test_a_savedmodel_with_a_fifo_or_beyond_the_cap_is_refused(lstm_saved_model, tmp_path, monkeypatch):
    import shutil

    from edgeseq.convert import file_caps
    from edgeseq.errors import ModelFileError, OversizedModelError

    path = tmp_path / "model"
    shutil.copytree(lstm_saved_model, path)
    os.mkfifo(path / "assets" / "endless")
    with pytest.raises(ModelFileError, match=r"model: assets/endless is not a regular file \(a FIFO or a device\)"):
        file_caps.check_directory(path)
    (path / "assets" / "endless").unlink()
    monkeypatch.setattr(file_caps, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(OversizedModelError, match=r"model holds .* KiB, more than edgeseq's cap of 1,000 bytes"):
        file_caps.check_directory(path)
    with pytest.raises(OversizedModelError, match=r"model: variables/ declares tensors of 1.\d KiB, more than"):
        file_caps.check_checkpoint(path)
