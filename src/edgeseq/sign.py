"""Sign an exported model with an OpenSSF Model Signing (OMS) signature, made by `model_signing` (the reference).

The signature is `<stem>.sig` beside the model's manifest and covers the model's files: its manifest and every
`<stem>.*onnx` (the fp32 file, its variants, their batched companions), each with its sha256. The other files of
the folder (another model, a sample, a plot) are recorded as ignored paths, so `model_signing verify` given the
folder checks exactly the model's files, as the box does (edgeseq_device.trust).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseq.errors import BadInputError, MissingExtraError
from edgeseq_device.files import read_regular_file
from edgeseq_device.manifest import manifest_path_for
from edgeseq_device.trust import (
    CURVE_NAMES,
    KEY_MAX_BYTES,
    SIGNATURE_SUFFIX,
    fingerprint_of,
    model_files,
    short,
    signature_path_for,
    unusable_kind,
)


@dataclass(frozen=True)
class Signed:
    """What `sign_model` wrote: the signature, the files it covers and the signing key's fingerprint."""

    signature: Path
    files: tuple[str, ...]
    fingerprint: str
    curve: str  # P-256, P-384 or P-521

    def __str__(self) -> str:
        return (
            f"{self.signature}: {len(self.files)} files signed ({', '.join(self.files)}) "
            f"by key {short(self.fingerprint)} ({self.curve})"
        )


def load_private_key(key: Path) -> Any:
    """The elliptic-curve private key at `key` (a `cryptography` key); BadInputError saying what is wrong, never
    showing the key's bytes."""
    from cryptography.hazmat.primitives import serialization

    content = read_regular_file(key, KEY_MAX_BYTES, "signing key", BadInputError)
    try:
        private = serialization.load_pem_private_key(content, password=None)
    except TypeError:
        raise BadInputError(
            f"signing key {key} is encrypted; sign with an unencrypted copy on the machine that signs"
        ) from None
    except ValueError:
        public = b"PUBLIC KEY-----" in content
        raise BadInputError(
            f"signing key {key} is a public key: sign with its private half"
            if public
            else f"signing key {key} is not a PEM private key"
        ) from None
    kind = unusable_kind(private)
    if kind is not None:
        raise BadInputError(f"signing key {key} is a {kind} key; OMS signs with P-256, P-384 or P-521 keys")
    return private


def check_private_key(key: Path) -> tuple[str, str]:
    """The fingerprint (sha256 of the public key's PEM, as OMS signatures name it) and curve (P-256...) of the
    private key at `key`."""
    private = load_private_key(key)
    return fingerprint_of(private), CURVE_NAMES[private.curve.name]


def require_model_signing() -> None:
    """MissingExtraError, with the pip command, unless model_signing can be imported."""
    try:
        import model_signing  # noqa: F401
    except ImportError:
        from edgeseq.frameworks import install_command

        raise MissingExtraError(f"signing needs model_signing: {install_command('sign')}") from None


def ready_to_sign(key: str | Path) -> None:
    """MissingExtraError or BadInputError now, rather than after an export, when `key` cannot sign."""
    require_model_signing()
    check_private_key(Path(key))


def sign_model(model: str | Path, key: str | Path) -> Signed:
    """Sign the model `model` belongs to (any of its ONNX files, or its manifest) with the private key `key`, and
    write its OMS signature beside it (replacing an older one at once, never leaving half of one)."""
    model, key = Path(model), Path(key)
    require_model_signing()
    from model_signing import hashing, signing

    if not model.is_file():
        raise BadInputError(f"no model {model}")
    manifest = manifest_path_for(model)
    if not manifest.is_file():
        raise BadInputError(f"no manifest beside {model} (expected {manifest}): sign an exported model")
    fingerprint, curve = check_private_key(key)
    folder = model.parent
    files = model_files(folder, model.name.split(".", 1)[0])
    signature = signature_path_for(model)
    # Named as ignored: the folder's other files, this signature (as model_signing's own `sign` does), and the
    # signature every other model of the folder has or will have, so signing one model does not break another's.
    names = set(os.listdir(folder))
    signatures = {f"{name.split('.', 1)[0]}{SIGNATURE_SUFFIX}" for name in names if name.endswith(".json")}
    others = sorted((names | signatures | {signature.name}) - set(files))
    config = (
        signing.Config()
        .use_elliptic_key_signer(private_key=key)
        .set_hashing_config(
            hashing.Config()
            .use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)
            .set_ignored_paths(paths=others, ignore_git_paths=False)
        )
    )
    # written after the folder was hashed, so neither hashed nor named as ignored
    temporary = folder / f".{signature.name}.{os.getpid()}.tmp"
    try:
        try:
            config.sign(folder, temporary)
        except ValueError as exc:  # a link among the model's files, a file gone while hashing
            raise BadInputError(f"cannot sign {model}: {exc}") from None
        os.chmod(temporary, 0o644)
        os.replace(temporary, signature)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return Signed(signature, tuple(files), fingerprint, curve)


def sign_detached(path: str | Path, key: str | Path) -> Path:
    """`<path>.sig`: the ECDSA signature (DER, with SHA-256) of `path`'s bytes by `key`, as `openssl dgst -sha256
    -sign KEY` writes it, so a box checks it with `openssl dgst -sha256 -verify PUBLIC.pem -signature ...` and
    nothing of edgeseq's (a bundle's SHA256SUMS, a bundle's tarball)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path, key = Path(path), Path(key)
    check_private_key(key)
    private = serialization.load_pem_private_key(
        read_regular_file(key, KEY_MAX_BYTES, "signing key", BadInputError), None
    )
    signature = private.sign(path.read_bytes(), ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr, call-arg]
    target = path.with_name(f"{path.name}{SIGNATURE_SUFFIX}")
    target.write_bytes(signature)
    return target
