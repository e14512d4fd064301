"""How much a user's model file may make Keras read, checked before Keras opens it: a .keras zip's members
(declared and actual sizes, their sum, how much they inflate), an HDF5 file's datasets (and links to other
files), a SavedModel directory's files and the tensors its checkpoint declares. Nothing is inflated to check."""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from edgeseq.errors import ModelFileError, OversizedModelError, UnsafeModelError
from edgeseq_device.files import MODEL_MAX_BYTES

# The most a model file may unpack to: the largest ONNX file edgeseq can write and the runtime loads (protobuf's
# limit for one message, 2 GiB). Keras keeps weights as float32, as the ONNX file does, so a model whose file
# unpacks to more cannot be exported anyway, unless most of it is an optimizer's state.
MAX_UNPACKED_BYTES = MODEL_MAX_BYTES
# How much a zip member or an HDF5 dataset may inflate. Keras 3 and tf_keras store a .keras file's members
# uncompressed: 1.00 to 1 for every member of 16 real files of 2 KB to 13 MB (the models of tests/zoo.py, an
# LSTM(512) stack, trained, compiled, all-zero weights), and they write HDF5 datasets uncompressed. Real float
# weights recompressed by another tool inflate about 1.1 to 1; deflate's ceiling (zeros) is about 1,032 to 1.
# 100 to 1 leaves room for a recompressed file with zero-filled weights or optimizer slots, and refuses anything
# near deflate's ceiling (Keras 3 guards with the same ratio, but only from 4 GiB up: a 1 GiB bomb passes it).
MAX_INFLATION = 100
# Below this a member or a dataset may inflate at any ratio (a deflated JSON config inflates 5 to 10 to 1, HDF5
# files hold zero padding): the most a file can make Keras hold that way is this much.
INFLATION_FLOOR = 16 << 20
# A .keras holds metadata.json, config.json, model.weights.h5 and perhaps a few asset files (vocabularies).
MAX_MEMBERS = 10_000
# zipfile reads the central directory whole, before anything else can be checked: 10,000 entries with names of
# 200 characters take 2.5 MB.
MAX_CENTRAL_DIRECTORY = 4 << 20
KERAS_STORES = "Keras stores a .keras file's members uncompressed"
KERAS_WRITES = "Keras writes its weights uncompressed"
READS_OTHER_FILES = "edgeseq refuses HDF5 files that read other files when loaded"


def size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"


def _inflation(label: str, what: str, declared: int, stored: int, why_not: str, verb: str = "inflates") -> None:
    if declared > INFLATION_FLOOR and declared > MAX_INFLATION * stored:
        raise OversizedModelError(
            f"{label}: {what} {verb} to {size(declared)} from {size(stored)} stored "
            f"({declared / max(stored, 1):,.0f} to 1), more than {MAX_INFLATION} to 1: edgeseq refuses files that "
            f"inflate like a zip bomb ({why_not})"
        )


def _total(label: str, total: int, verb: str) -> None:
    if total > MAX_UNPACKED_BYTES:
        raise OversizedModelError(
            f"{label} {verb} {size(total)}, more than edgeseq's cap of {size(MAX_UNPACKED_BYTES)}, the largest ONNX "
            "file it can write (an optimizer's state counts: save the model without it)"
        )


def check_archive(path: Path) -> None:
    """Refuse the zip `path` (a .keras file) if it lists too many members, unpacks beyond the cap, has a member
    that inflates like a bomb or whose data is not what it declares, or holds weights that do (HDF5, .npz)."""
    with path.open("rb") as handle:
        _check_zip(handle, str(path))


def _check_zip(handle: BinaryIO, label: str) -> None:
    # zipfile's own reader of the end record, so the directory checked is the one ZipFile will read
    # (private, unchanged since Python 2; tests/test_export_untrusted.py checks it against ZipFile)
    try:
        end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{label}: unreadable zip file ({exc})") from None
    if end is None:
        raise ModelFileError(f"{label}: not a zip file (no end of central directory)")
    entries, directory = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if entries > MAX_MEMBERS or directory > MAX_CENTRAL_DIRECTORY:
        raise OversizedModelError(
            f"{label} lists {entries:,} members in a central directory of {size(directory)}: a .keras file has a "
            f"few (edgeseq reads up to {MAX_MEMBERS:,}, in up to {size(MAX_CENTRAL_DIRECTORY)})"
        )
    handle.seek(0)
    try:
        with zipfile.ZipFile(handle) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:  # the end record's count may lie; the directory itself does not
                raise OversizedModelError(f"{label} has {len(members):,} members (edgeseq reads up to {MAX_MEMBERS:,})")
            declared = sum(member.file_size for member in members)
            _total(label, declared, "unpacks to")
            for member in members:
                _inflation(label, member.filename, member.file_size, member.compress_size, KERAS_STORES)
            stored = sum(member.compress_size for member in members)
            _inflation(label, f"its {len(members)} members", declared, stored, KERAS_STORES, "inflate")
            for member in members:
                _read_through(archive, member, label)
            for member in members:  # what Keras opens inside: weights in HDF5, or in a zip of .npy arrays
                if member.filename.endswith((".h5", ".npz")):
                    with archive.open(member) as inner:
                        if member.filename.endswith(".h5"):
                            check_hdf5(inner, f"{label}: {member.filename}")
                        else:
                            _check_zip(inner, f"{label}: {member.filename}")
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ModelFileError(f"{label}: unreadable zip file ({type(exc).__name__}: {exc})") from None


def _read_through(archive: zipfile.ZipFile, member: zipfile.ZipInfo, label: str) -> None:
    """Inflate `member` a MiB at a time, keeping nothing: its actual data must be the size and CRC it declares.
    zipfile stops at the declared size and checks the CRC, but a deflated member that ends early reads short."""
    actual = 0
    try:
        with archive.open(member) as data:
            while chunk := data.read(1 << 20):
                actual += len(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise ModelFileError(
            f"{label}: {member.filename} is not the {member.file_size:,} bytes it declares "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if actual != member.file_size:
        raise ModelFileError(
            f"{label}: {member.filename} is not the {member.file_size:,} bytes it declares (its data inflates to "
            f"{actual:,} bytes)"
        )


def check_hdf5(source: Path | BinaryIO, label: str) -> None:
    """Refuse an HDF5 file whose datasets read other files (external storage, virtual datasets, external links:
    Keras would read them as weights), declare more than the cap, or inflate like a bomb. Reads metadata only."""
    import h5py

    if isinstance(source, Path):
        _total(label, source.stat().st_size, "is")
    links: list[str] = []
    datasets: list[tuple[str, int, int, list | None, bool]] = []

    def visit_link(name: str, link: object) -> None:
        if isinstance(link, h5py.ExternalLink):
            links.append(f"{name} links to another file ({link.filename}:{link.path})")

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            declared = 0 if item.shape is None else math.prod(item.shape) * item.dtype.itemsize  # () is 1 element
            datasets.append((name, declared, item.id.get_storage_size(), item.external, item.is_virtual))

    try:
        with h5py.File(source, "r") as h5:
            h5.visititems_links(visit_link)
            if not links:  # an external link is not followed, but is not walked either
                h5.visititems(visit)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{label}: unreadable HDF5 file ({exc})") from None
    if links:
        raise UnsafeModelError(f"{label}: {links[0]}: {READS_OTHER_FILES}")
    for name, _, _, external, virtual in datasets:
        if external:
            raise UnsafeModelError(
                f"{label}: dataset {name} keeps its data in another file ({external[0][0]}): {READS_OTHER_FILES}"
            )
        if virtual:
            raise UnsafeModelError(
                f"{label}: dataset {name} is a virtual dataset, made of other files: {READS_OTHER_FILES}"
            )
    _total(label, sum(declared for _, declared, *_ in datasets), "declares datasets of")
    for name, declared, stored, *_ in datasets:
        _inflation(label, f"dataset {name}", declared, stored, KERAS_WRITES)
    _inflation(
        label,
        f"its {len(datasets)} datasets",
        sum(declared for _, declared, *_ in datasets),
        sum(stored for _, _, stored, *_ in datasets),
        KERAS_WRITES,
        "inflate",
    )


def check_directory(path: Path) -> None:
    """Refuse a SavedModel directory holding a symbolic link (TensorFlow would read what it points to, anywhere),
    a file that is not a regular one (a FIFO or a device: endless), or more bytes than the cap."""
    total = 0
    for root, directories, files in os.walk(path):
        for name in (*directories, *files):
            entry = Path(root) / name
            if entry.is_symlink():
                raise UnsafeModelError(
                    f"{path}: {entry.relative_to(path)} is a symbolic link (to {os.readlink(entry)}): edgeseq reads "
                    "a SavedModel's own files only"
                )
        for name in files:
            entry = Path(root) / name
            status = entry.lstat()
            if not stat.S_ISREG(status.st_mode):
                raise ModelFileError(f"{path}: {entry.relative_to(path)} is not a regular file (a FIFO or a device)")
            total += status.st_size
    _total(str(path), total, "holds")


def check_checkpoint(path: Path) -> None:
    """Refuse a SavedModel whose checkpoint declares tensors beyond the cap (TensorFlow allocates each tensor by its
    declared shape before reading it). Reads the checkpoint's index only, with TensorFlow's reader."""
    prefix = path / "variables" / "variables"
    if not prefix.with_name("variables.index").is_file():
        return  # nothing to restore: TensorFlow says what is missing
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(prefix))
        shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    except Exception as exc:  # TensorFlow's reader raises its own untyped errors for a damaged index
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelFileError(f"{path}: unreadable variables/ ({type(exc).__name__}: {first[:300]})") from None
    declared = sum(math.prod(shape) * dtypes[name].size for name, shape in shapes.items() if dtypes[name] != tf.string)
    _total(f"{path}: variables/", declared, "declares tensors of")
