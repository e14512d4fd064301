"""Signed models: the OpenSSF Model Signing (OMS) signature beside a model, checked against the keys a box trusts.

A model's signature is `<stem>.sig` beside its manifest: a Sigstore bundle (v0.3, JSON) holding a DSSE envelope
over an in-toto statement whose OMS predicate lists every signed file with its sha256, as `model_signing` (the
reference, sigstore/model-transparency) writes it when it signs with an elliptic-curve key. The model's files are
its manifest and every `<stem>.*onnx` beside it: the fp32 file, its variants and their batched companions. With
trust configured, a model loads only when

- its signature is there and parses as an OMS bundle (mediaType, DSSE, in-toto Statement v1, OMS predicate v1.0,
  `files` serialization with sha256, a root digest that matches its resources);
- it is by a trusted key (the bundle's key hint is the sha256 of the key's PEM, as model_signing writes it), and
  the DSSE signature over the statement verifies with that key (ECDSA with the curve's hash, by `cryptography`:
  the `trust` extra, imported only when trust is configured, so a box without it runs as before);
- it signs the file being loaded, every file it lists is there with its digest, and no file of the model is
  there that it does not list.

The OMS verification procedure checks a whole folder; a model here shares its folder with others (exported/
holds two, and their samples and plots). So the model's own files are held to the signature strictly (one more
`<stem>.*onnx` is refused, as OMS refuses an unlisted file), and the folder's other files are left alone, as
model_signing's `--ignore_unsigned_files` leaves them. Only `files` serialization with sha256 (what
model_signing writes by default) is read; shards, other hashes and certificate or Sigstore signatures are
refused, saying so.

A model with a signature and no trust configured runs as before; `edgeseq info` says who signed it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edgeseq_device.errors import TrustError
from edgeseq_device.files import MODEL_MAX_BYTES, read_regular_file
from edgeseq_device.messages import shown

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
INTOTO_STATEMENT = "https://in-toto.io/Statement/v1"
OMS_PREDICATE = "https://model_signing/signature/v1.0"
SIGNATURE_SUFFIX = ".sig"
SIGNATURE_MAX_BYTES = 16 << 20  # a signature lists a few files; 16 MiB is far past any model folder's
KEY_MAX_BYTES = 64 << 10
KEY_SUFFIX = ".pem"


# The curves OMS signs with, each with the hash its signers pair with it (model_signing's sign_ec_key.py)
CURVE_HASHES = {"secp256r1": "SHA256", "secp384r1": "SHA384", "secp521r1": "SHA512"}
CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
NEEDS_CRYPTOGRAPHY = (
    "checking signatures needs the 'cryptography' package: pip install 'edgeseq-device[trust]' on a box, "
    "'edgeseq[trust]' with the toolkit"
)


@dataclass(frozen=True)
class TrustedKey:
    """A public key the box trusts, where it was read from, and its fingerprint (the sha256 of its PEM, which is
    what an OMS signature names its key by, and what `sha256sum key.pem` prints for a key written by openssl or
    edgeseq)."""

    path: Path
    key: Any  # cryptography's EllipticCurvePublicKey
    fingerprint: str

    @property
    def curve(self) -> str:
        return CURVE_NAMES[self.key.curve.name]

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether `signature` (DER, as OpenSSL and `cryptography` write it) is this key's over `message`."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            self.key.verify(signature, message, ec.ECDSA(getattr(hashes, CURVE_HASHES[self.key.curve.name])()))
        except (InvalidSignature, ValueError):
            return False
        return True

    def __str__(self) -> str:
        return f"{self.path} ({self.curve}, {short(self.fingerprint)})"


def load_public_key(content: bytes, path: Path) -> TrustedKey:
    """A PEM elliptic-curve public key on a curve OMS signs with; TrustError otherwise (never the key's text)."""
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise TrustError(NEEDS_CRYPTOGRAPHY) from None
    where = f"trusted key {path}"
    try:
        key = serialization.load_pem_public_key(content)
    except (ValueError, TypeError):
        private = b"PRIVATE KEY-----" in content
        raise TrustError(
            f"{where} is a private key: give its public half (openssl pkey -in KEY -pubout)"
            if private
            else f"{where} is not a PEM public key"
        ) from None
    kind = unusable_kind(key)
    if kind is not None:
        raise TrustError(f"{where} is a {kind} key; OMS signatures use P-256, P-384 or P-521 keys")
    return TrustedKey(path, key, fingerprint_of(key))


def unusable_kind(key: Any) -> str | None:
    """None when `key` (a `cryptography` key, public or private) is an elliptic-curve key on a curve OMS signs
    with; else what it is (an RSA key, another curve), for a message."""
    from cryptography.hazmat.primitives.asymmetric import ec

    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return None if key.curve.name in CURVE_HASHES else key.curve.name
    return type(key).__name__


def fingerprint_of(key: Any) -> str:
    """The sha256 of the PEM of `key`'s public half: how an OMS signature names the key that made it."""
    from cryptography.hazmat.primitives import serialization

    public = key.public_key() if hasattr(key, "public_key") else key
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def short(fingerprint: str) -> str:
    return f"{fingerprint[:16]}…"


@dataclass(frozen=True)
class Trust:
    """The keys a run trusts: each --trust is a PEM public key, or a folder of them (`*.pem`)."""

    keys: tuple[TrustedKey, ...]

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> Trust:
        try:  # first: without it no key can be used, whatever the paths hold
            import cryptography  # noqa: F401
        except ImportError:
            raise TrustError(NEEDS_CRYPTOGRAPHY) from None
        keys: list[TrustedKey] = []
        for given in map(Path, paths):
            if given.is_dir():
                found = sorted(p for p in given.iterdir() if p.name.endswith(KEY_SUFFIX) and not p.name.startswith("."))
                if not found:
                    raise TrustError(f"trust folder {given} holds no public key (*{KEY_SUFFIX})")
                keys += [_trusted_key(path) for path in found]
            else:
                keys.append(_trusted_key(given))
        if not keys:
            raise TrustError("no trusted key given")
        return cls(tuple(keys))

    def find(self, fingerprint: str) -> TrustedKey | None:
        return next((key for key in self.keys if key.fingerprint == fingerprint), None)


def _trusted_key(path: Path) -> TrustedKey:
    return load_public_key(read_regular_file(path, KEY_MAX_BYTES, "trusted key", TrustError), path)


def signature_path_for(model_path: Path) -> Path:
    """`exported/sensor_lstm.onnx`, its variants and companions share `sensor_lstm.sig`, as they share its manifest."""
    return model_path.with_name(f"{model_path.name.split('.', 1)[0]}{SIGNATURE_SUFFIX}")


def is_model_file(name: str, stem: str) -> bool:
    """Whether `name` is one of the files of model `stem`: its manifest, or any of its ONNX files."""
    return name == f"{stem}.json" or (name.startswith(f"{stem}.") and name.endswith(".onnx"))


def model_files(folder: Path, stem: str) -> list[str]:
    """The names in `folder` of model `stem`'s files, sorted: what its signature must cover."""
    return sorted(name for name in os.listdir(folder) if is_model_file(name, stem))


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature signs (DSSE protocol v1)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    """An OMS signature file as read, before anything in it is believed."""

    path: Path
    key_hint: str | None
    payload_type: str
    payload: bytes
    signature: bytes


def read_signature(path: Path) -> Envelope:
    """The OMS bundle at `path`, parsed but not verified; TrustError saying what is wrong with it."""
    content = read_regular_file(path, SIGNATURE_MAX_BYTES, "signature", TrustError)
    bad = f"signature {path} is not an OMS signature"
    try:
        bundle = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TrustError(f"{bad}: not JSON (truncated or damaged?)") from None
    if not isinstance(bundle, dict):
        raise TrustError(f"{bad}: not a JSON object")
    if bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise TrustError(f"{bad}: mediaType {_shown_json(bundle.get('mediaType'))}, expected {BUNDLE_MEDIA_TYPE}")
    material = bundle.get("verificationMaterial")
    envelope = bundle.get("dsseEnvelope")
    if not isinstance(material, dict) or not isinstance(envelope, dict):
        raise TrustError(f"{bad}: it lacks verificationMaterial or dsseEnvelope")
    public_key = material.get("publicKey")
    if not isinstance(public_key, dict):
        what = "a certificate" if "x509CertificateChain" in material or "certificate" in material else "no public key"
        raise TrustError(f"signature {path} names {what}; edgeseq trusts signatures made with a key pair")
    hint = public_key.get("hint")
    if hint is not None and not (isinstance(hint, str) and len(hint) == 64 and _is_hex(hint)):
        raise TrustError(f"{bad}: its key hint is not a sha256")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures or not isinstance(signatures[0], dict):
        raise TrustError(f"{bad}: its envelope holds no signature")
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str):
        raise TrustError(f"{bad}: its envelope has no payloadType")
    try:
        payload = base64.b64decode(_text(envelope.get("payload")), validate=True)
        signature = base64.b64decode(_text(signatures[0].get("sig")), validate=True)
    except (binascii.Error, ValueError):
        raise TrustError(f"{bad}: its payload or signature is not base64") from None
    return Envelope(path, hint, payload_type, payload, signature)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("not text")
    return value


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _shown_json(value: Any) -> str:
    """A value read from a signature, for a message: a string as `shown` quotes it, anything else as JSON."""
    return shown(value if isinstance(value, str) else json.dumps(value))


@dataclass(frozen=True)
class SignedModel:
    """A model whose signature verified: the signature, the key that made it and the digest of each file it signs."""

    signature: Path
    key: TrustedKey
    digests: Mapping[str, str]  # resource name (relative to the model's folder) -> sha256 hex

    def check(self, name: str, sha256: str) -> None:
        """TrustError unless `sha256` is the digest signed for `name`: the bytes a loader is about to use are the
        bytes that were verified, even if the file was replaced in between."""
        if self.digests.get(name) != sha256:
            raise TrustError(f"{shown(name)} changed after its signature {self.signature} was checked")


def verify_model(model_path: Path, trust: Trust) -> SignedModel:
    """Check the signature of the model `model_path` belongs to (any of its ONNX files, or its manifest) against
    `trust`, and every file of the model against the signature. TrustError, one line, for each way it can fail."""
    model_path = Path(model_path)
    sig_path = signature_path_for(model_path)
    if not os.path.lexists(sig_path):
        raise TrustError(f"{model_path} is not signed (no {sig_path.name} beside it), and only signed models run here")
    envelope = read_signature(sig_path)
    key = _signer(envelope, trust)
    statement = _statement(envelope)
    digests = _resources(statement, sig_path)
    folder = model_path.parent
    stem = model_path.name.split(".", 1)[0]
    if model_path.name not in digests:
        others = ", ".join(shown(name) for name in list(digests)[:3])
        raise TrustError(
            f"{sig_path} does not sign {model_path.name}: it is the signature of other files ({others}"
            f"{', …' if len(digests) > 3 else ''})"
        )
    for name, digest in digests.items():
        actual = _file_sha256(folder, name)
        if actual is None:
            raise TrustError(f"{shown(name)} was removed after signing: {sig_path} signs it")
        if actual != digest:
            raise TrustError(
                f"{shown(name)} was changed after signing: sha256 {actual[:12]}…, {sig_path} signs {digest[:12]}…"
            )
    for name in model_files(folder, stem):
        if name not in digests:
            raise TrustError(f"{shown(name)} was added after signing: {sig_path} does not sign it")
    return SignedModel(sig_path, key, digests)


def _signer(envelope: Envelope, trust: Trust) -> TrustedKey:
    """The trusted key whose signature `envelope` carries; TrustError when none is."""
    if envelope.key_hint is not None:
        key = trust.find(envelope.key_hint)
        if key is None:
            raise TrustError(
                f"{envelope.path} is signed by key {short(envelope.key_hint)}, which this box does not trust "
                f"(trusted: {', '.join(short(k.fingerprint) for k in trust.keys)})"
            )
        candidates: Sequence[TrustedKey] = (key,)
    else:  # bundles of model_signing before 1.1 name no key: any trusted key may have made it
        candidates = trust.keys
    message = pae(envelope.payload_type, envelope.payload)
    for key in candidates:
        if key.verify(envelope.signature, message):
            return key
    said = f"key {short(envelope.key_hint)}" if envelope.key_hint else "any trusted key"
    raise TrustError(f"{envelope.path}: the signature does not verify with {said} (forged, or changed after signing)")


def _statement(envelope: Envelope) -> dict[str, Any]:
    bad = f"{envelope.path} is not an OMS model signature"
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise TrustError(f"{bad}: payload type {shown(envelope.payload_type)}")
    try:
        statement = json.loads(envelope.payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TrustError(f"{bad}: its statement is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != INTOTO_STATEMENT:
        raise TrustError(f"{bad}: not an in-toto Statement v1")
    if statement.get("predicateType") != OMS_PREDICATE:
        raise TrustError(f"{bad}: predicate {_shown_json(statement.get('predicateType'))}, expected {OMS_PREDICATE}")
    return statement


def _resources(statement: dict[str, Any], sig_path: Path) -> dict[str, str]:
    """name -> sha256 of each file the statement signs, after checking its predicate and root digest."""
    bad = f"{sig_path} is not an OMS model signature"
    predicate = statement.get("predicate")
    subjects = statement.get("subject")
    if not isinstance(predicate, dict) or not isinstance(subjects, list) or len(subjects) != 1:
        raise TrustError(f"{bad}: it needs one subject and a predicate")
    serialization = predicate.get("serialization")
    if not isinstance(serialization, dict):
        raise TrustError(f"{bad}: its predicate has no serialization")
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        raise TrustError(
            f"{sig_path} hashes the model by {_shown_json(serialization.get('method'))} with "
            f"{_shown_json(serialization.get('hash_type'))}; edgeseq verifies files hashed with sha256 (OMS's default)"
        )
    resources = predicate.get("resources")
    if not isinstance(resources, list) or not resources:
        raise TrustError(f"{bad}: it lists no file")
    digests: dict[str, str] = {}
    root = hashlib.sha256()
    for resource in resources:
        if not isinstance(resource, dict):
            raise TrustError(f"{bad}: a resource is not an object")
        name, algorithm, digest = resource.get("name"), resource.get("algorithm"), resource.get("digest")
        if algorithm != "sha256" or not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
            raise TrustError(f"{bad}: resource {_shown_json(name)} has no sha256 digest")
        if not _plain_relative(name) or name in digests:
            raise TrustError(f"{bad}: resource name {_shown_json(name)} is not a file of the model's folder")
        digests[name] = digest
        root.update(bytes.fromhex(digest))
    subject = subjects[0]
    expected = subject.get("digest", {}).get("sha256") if isinstance(subject, dict) else None
    if expected != root.hexdigest():
        raise TrustError(f"{bad}: its subject's digest is not the digest of the files it lists")
    return digests


def _plain_relative(name: Any) -> bool:
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and path.as_posix() == name and not {".", ".."} & set(name.split("/"))


def _file_sha256(folder: Path, name: str) -> str | None:
    """The sha256 of regular file `name` under `folder`, or None when there is none; a link or a device is never
    followed (OMS signatures here say allow_symlinks false)."""
    path = folder.joinpath(*name.split("/"))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TrustError(f"cannot read {path}: {exc.strerror or exc} (a link, or unreadable)") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MODEL_MAX_BYTES:
            raise TrustError(f"{path} is not a regular file of a model")
        digest = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(model_path: Path) -> dict[str, Any] | None:
    """What `edgeseq info` says of a model's signature without trust configured: None when unsigned, else its file
    and the key it names (unverified: only a run with --trust checks it)."""
    sig_path = signature_path_for(Path(model_path))
    if not os.path.lexists(sig_path):
        return None
    try:
        envelope = read_signature(sig_path)
    except TrustError as exc:
        return {"file": str(sig_path), "error": str(exc)}
    return {"file": str(sig_path), "key": envelope.key_hint}
