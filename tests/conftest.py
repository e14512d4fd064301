"""Shared paths and helpers for the test suite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.brokers import brokers  # noqa: F401 (the fixture, for every test module: real mosquitto brokers)

REPO = Path(__file__).resolve().parents[1]
EXPORTED = REPO / "exported"
LETTER_ONNX = EXPORTED / "letter_rnn.onnx"
LETTER_KERAS = EXPORTED / "letter_rnn.keras"
LETTER_MANIFEST = EXPORTED / "letter_rnn.json"


@pytest.fixture
def letter_copy(tmp_path: Path) -> Path:
    """A private copy of the committed letter model and its manifest, safe to tamper with."""
    for src in (LETTER_ONNX, LETTER_KERAS, LETTER_MANIFEST):
        shutil.copy(src, tmp_path / src.name)
    return tmp_path / LETTER_ONNX.name


def write_key_pair(folder: Path, name: str, curve_name: str = "secp256r1") -> tuple[Path, Path]:
    """NAME.pem (an elliptic-curve private key, PKCS#8 as `openssl genpkey` writes it) and NAME.pub.pem."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(getattr(ec, curve_name.upper())())
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private_path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Two signing key pairs, (private, public) each, as an owner's and someone else's: P-256 and P-384."""
    folder = tmp_path_factory.mktemp("keys")
    return {"owner": write_key_pair(folder, "owner"), "other": write_key_pair(folder, "other", "secp384r1")}
