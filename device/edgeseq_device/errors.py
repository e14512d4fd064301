"""Typed errors of the device runtime; front ends turn them into one-line messages and exit codes."""


class DeviceError(Exception):
    """Base class: something the user can fix (a bad file, a bad input), never a bug."""


class ModelFileError(DeviceError):
    """The model file is missing, unreadable or not a valid ONNX model."""


class ManifestError(DeviceError):
    """The JSON manifest beside a model is missing a field, malformed, or does not fit the model."""


class IntegrityError(DeviceError):
    """The model file's sha256 or size differs from what its manifest records."""


class SignatureError(DeviceError):
    """The model's input/output names, shapes or dtypes differ from what its manifest records."""


class InputError(DeviceError):
    """An input (a letter sequence, a sensor row) cannot be turned into a model input."""


class TrustError(DeviceError):
    """A model or bundle that the keys this box trusts do not vouch for: unsigned, signed by another key, or changed
    since it was signed."""
