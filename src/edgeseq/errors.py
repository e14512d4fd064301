"""Typed errors of the training/export side; the CLI turns them into one-line messages."""


class EdgeseqError(Exception):
    """Base class for errors a user can act on."""


class ConversionError(EdgeseqError):
    """tf2onnx failed, or produced a graph that is not what edgeseq promises (names, shapes, ops)."""


class ParityError(EdgeseqError):
    """onnxruntime and Keras disagree beyond tolerance, or conversion changed the Keras model."""


class TrainingError(EdgeseqError):
    """Training finished but the model misses its bar."""


class BadInputError(EdgeseqError):
    """The user's input (a path, a name, an option value) cannot be used; the CLI exits 2."""


class DataError(BadInputError):
    """A data file cannot be used for training: unreadable, a missing column, a bad row, too short."""


class MissingExtraError(EdgeseqError):
    """A command needs an optional extra that is not installed; the message gives the pip command. Exit 2."""


class ModelFileError(BadInputError):
    """A model file edgeseq cannot read: what it is, and what is supported."""


class UnsafeModelError(ModelFileError):
    """A model file that could act when loaded: a SavedModel op that is not pure math (file I/O, a Python call),
    or data an HDF5 file or a SavedModel keeps in other files. Refused before Keras or TensorFlow opens it."""


class OversizedModelError(ModelFileError):
    """A model file that would make Keras read far more than it holds on disk (a zip bomb), or more than edgeseq's
    cap. Refused before Keras opens it."""
