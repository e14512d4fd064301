"""Signed models (issue 25): `edgeseq sign` writes an OpenSSF Model Signing signature with model_signing, and a box
given trusted keys runs a model only as its owner signed it.

Each tampered model is made as an attacker without the private key would make it: files changed, swapped, added or
removed (with the manifest's sha256 fixed up where that would fool the manifest check), or the signature replaced.
The box's verifier (edgeseq_device.trust) is held to the reference, model_signing's own verifier, both ways."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq.sign import sign_model
from edgeseq_device.errors import TrustError
from edgeseq_device.manifest import sha256_of
from edgeseq_device.model import load_model
from edgeseq_device.trust import Trust, pae, verify_model
from tests.conftest import EXPORTED
from tests.streams import LINES, SENSOR_ONNX, records, write_lines

LETTER_FILES = sorted(p for p in EXPORTED.glob("letter_rnn.*") if p.suffix in {".onnx", ".json", ".keras"})


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def copy_letter_model(folder: Path) -> Path:
    """The committed letter model with all its variants and companions (and its .keras, which is not signed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in LETTER_FILES:
        shutil.copy(path, folder / path.name)
    return folder / "letter_rnn.onnx"


@pytest.fixture
def signed(tmp_path: Path, keys) -> Path:
    """A copy of the letter model signed by the owner's key; returns its fp32 ONNX file."""
    model = copy_letter_model(tmp_path / "models")
    sign_model(model, keys["owner"][0])
    return model


def trust_of(keys, *names: str) -> Trust:
    return Trust.load([keys[name][1] for name in names])


def flip_byte(path: Path) -> None:
    """One bit of the middle byte: in the forecaster, a weight, so the file still loads and forecasts otherwise."""
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))


def fix_up_manifest(model: Path) -> None:
    """Record `model`'s sha256 and size in its manifest as they now are: what fools the manifest check."""
    manifest_path = model.with_name("letter_rnn.json")
    manifest = json.loads(manifest_path.read_text())
    content = model.read_bytes()
    manifest["files"][model.name] = {"sha256": sha256_of(content), "size": len(content)}
    manifest_path.write_text(json.dumps(manifest, indent=2))


def read_bundle(sig: Path) -> tuple[dict, dict]:
    bundle = json.loads(sig.read_text())
    return bundle, json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def write_signed_statement(sig: Path, statement: dict, private_key: Path, hint_of: Path | None = None) -> None:
    """Replace the payload of the bundle at `sig` by `statement`, signed (DSSE PAE, ECDSA) by `private_key`, with
    the key hint of `hint_of` (default: the signing key's), as a forger holding that key would."""
    bundle, _ = read_bundle(sig)
    key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    payload = json.dumps(statement).encode()
    digest = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]
    signature = key.sign(pae("application/vnd.in-toto+json", payload), ec.ECDSA(digest))
    public = (
        hint_of.read_bytes()
        if hint_of is not None
        else key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    bundle["verificationMaterial"]["publicKey"]["hint"] = hashlib.sha256(public).hexdigest()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(signature).decode()
    sig.write_text(json.dumps(bundle))


def reference_verifies(folder: Path, sig: Path, public_key: Path) -> bool:
    """Whether model_signing's own verifier accepts the model in `folder` with signature `sig` and `public_key`."""
    from model_signing import verifying

    try:
        verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(folder, sig)
    except Exception:  # ValueError, cryptography's InvalidSignature, a KeyError for a malformed statement...
        return False
    return True


# --- The tamper matrix: each refused with one line saying what -----------------------------------------------


def _flip_onnx(model: Path, keys) -> Path:
    flip_byte(model)
    return model


def _manifest_fixed_up(model: Path, keys) -> Path:
    flip_byte(model)
    fix_up_manifest(model)
    return model


def _swapped_variant(model: Path, keys) -> Path:
    variant = model.with_name("letter_rnn.dynamic-int8.onnx")
    shutil.copy(model.with_name("letter_rnn.static-int8.onnx"), variant)
    return variant


def _swapped_companion(model: Path, keys) -> Path:
    shutil.copy(model.with_name("letter_rnn.fp16.batched.onnx"), model.with_name("letter_rnn.batched.onnx"))
    return model


def _added_file(model: Path, keys) -> Path:
    shutil.copy(model, model.with_name("letter_rnn.extra.onnx"))
    return model


def _removed_file(model: Path, keys) -> Path:
    model.with_name("letter_rnn.fp16.batched.onnx").unlink()
    return model


def _unsigned(model: Path, keys) -> Path:
    model.with_name("letter_rnn.sig").unlink()
    return model


def _other_key(model: Path, keys) -> Path:
    sign_model(model, keys["other"][0])
    return model


def _other_key_named_as_the_owner(model: Path, keys) -> Path:
    sig = model.with_name("letter_rnn.sig")
    write_signed_statement(sig, read_bundle(sig)[1], keys["other"][0], hint_of=keys["owner"][1])
    return model


def _statement_edited(model: Path, keys) -> Path:
    """The file changed and the signed statement edited to its new digest, the signature kept."""
    flip_byte(model)
    sig = model.with_name("letter_rnn.sig")
    bundle, statement = read_bundle(sig)
    for resource in statement["predicate"]["resources"]:
        if resource["name"] == model.name:
            resource["digest"] = sha256_of(model.read_bytes())
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(bundle))
    return model


def _truncated(model: Path, keys) -> Path:
    sig = model.with_name("letter_rnn.sig")
    sig.write_bytes(sig.read_bytes()[: len(sig.read_bytes()) // 2])
    return model


def _garbage(model: Path, keys) -> Path:
    model.with_name("letter_rnn.sig").write_bytes(bytes(range(256)) * 4)
    return model


def _for_another_model(model: Path, keys) -> Path:
    """The owner's genuine signature of another model (the sensor forecaster), put beside this one."""
    other = model.parent.parent / "sensor"
    other.mkdir()
    for name in ("sensor_lstm.onnx", "sensor_lstm.json"):
        shutil.copy(EXPORTED / name, other / name)
    sign_model(other / "sensor_lstm.onnx", keys["owner"][0])
    shutil.copy(other / "sensor_lstm.sig", model.with_name("letter_rnn.sig"))
    return model


TAMPERS: dict[str, tuple[Callable[[Path, dict], Path], str]] = {
    "flipped byte in the ONNX file": (_flip_onnx, r"'letter_rnn.onnx' was changed after signing: sha256 \w+…"),
    "manifest changed, its sha256 fixed up": (_manifest_fixed_up, "'letter_rnn.json' was changed after signing"),
    "swapped variant": (_swapped_variant, "'letter_rnn.dynamic-int8.onnx' was changed after signing"),
    "swapped batched companion": (_swapped_companion, "'letter_rnn.batched.onnx' was changed after signing"),
    "added file": (_added_file, "'letter_rnn.extra.onnx' was added after signing"),
    "removed file": (_removed_file, "'letter_rnn.fp16.batched.onnx' was removed after signing"),
    "unsigned": (_unsigned, "is not signed .no letter_rnn.sig beside it., and only signed models run here"),
    "signature from another key": (_other_key, "is signed by key [0-9a-f]{16}…, which this box does not trust"),
    "another key, named as the owner's": (_other_key_named_as_the_owner, "the signature does not verify with key"),
    "statement edited, signature kept": (_statement_edited, "the signature does not verify with key"),
    "truncated signature": (_truncated, r"is not an OMS signature: not JSON \(truncated or damaged\?\)"),
    "garbage signature": (_garbage, r"is not an OMS signature: not JSON \(truncated or damaged\?\)"),
    "signature for another model": (_for_another_model, "does not sign letter_rnn.onnx: it is the signature of"),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_each_tampered_model_is_refused_with_one_line(signed: Path, keys, tamper: str):
    make, message = TAMPERS[tamper]
    model = make(signed, keys)
    with pytest.raises(TrustError, match=message) as raised:
        load_model(model, trust=trust_of(keys, "owner"))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("tamper", ["added file", "unsigned", "signature from another key", "garbage signature"])
def test_without_trust_the_signature_is_not_looked_at(signed: Path, keys, tamper: str):
    make, _ = TAMPERS[tamper]
    assert load_model(make(signed, keys)).signed is None


def test_the_signed_model_loads_with_each_file_verified(signed: Path, keys):
    model = load_model(signed.with_name("letter_rnn.dynamic-int8.onnx"), trust=trust_of(keys, "owner"))
    assert model.signed is not None and model.signed.key.path == keys["owner"][1]
    assert set(model.signed.digests) == {p.name for p in LETTER_FILES if p.suffix != ".keras"}


def test_rotation_two_trusted_keys_accept_either_signature(signed: Path, keys, tmp_path: Path):
    both = trust_of(keys, "other", "owner")
    assert load_model(signed, trust=both).signed.key.path == keys["owner"][1]
    sign_model(signed, keys["other"][0])
    assert load_model(signed, trust=both).signed.key.path == keys["other"][1]
    folder = tmp_path / "trusted"
    folder.mkdir()
    for name in ("owner", "other"):
        shutil.copy(keys[name][1], folder / f"{name}.pem")
    assert load_model(signed, trust=Trust.load([folder])).signed.key.path == folder / "other.pem"


def test_re_signing_after_a_re_export_is_accepted(signed: Path, keys):
    """A re-export changes the files; the old signature refuses them, a new one vouches for them."""
    variant = signed.with_name("letter_rnn.dynamic-int8.onnx")
    shutil.copy(signed.with_name("letter_rnn.static-int8.onnx"), variant)  # a new export of the variant
    fix_up_manifest(variant)
    with pytest.raises(TrustError, match="was changed after signing"):
        load_model(variant, trust=trust_of(keys, "owner"))
    sign_model(signed, keys["owner"][0])
    load_model(variant, trust=trust_of(keys, "owner"), use_manifest=False)


def test_a_trusted_key_that_cannot_be_used_is_refused(keys, tmp_path: Path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (tmp_path / "rsa.pem").write_bytes(
        rsa_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "empty").mkdir()
    cases = {
        keys["owner"][0]: "is a private key: give its public half",
        tmp_path / "rsa.pem": "is a RSAPublicKey key; OMS signatures use P-256, P-384 or P-521 keys",
        tmp_path / "empty": "holds no public key",
        tmp_path / "absent.pem": "absent.pem",
    }
    for path, message in cases.items():
        with pytest.raises(TrustError, match=message) as raised:
            Trust.load([path])
        assert "PRIVATE KEY" not in str(raised.value) and "BEGIN" not in str(raised.value)


# --- Both ways with the reference, model_signing ---------------------------------------------------------------


def test_edgeseq_signatures_verify_with_model_signing(tmp_path: Path, keys):
    """In the folder as signed, which holds two models signed one after the other: each signature names the
    folder's other files (the .keras, the other model, their signatures) as ignored."""
    model = copy_letter_model(tmp_path / "models")
    for name in ("sensor_lstm.onnx", "sensor_lstm.json"):
        shutil.copy(EXPORTED / name, model.parent / name)
    sign_model(model, keys["owner"][0])
    sign_model(model.with_name("sensor_lstm.onnx"), keys["other"][0])
    assert reference_verifies(model.parent, model.with_name("letter_rnn.sig"), keys["owner"][1])
    assert reference_verifies(model.parent, model.with_name("sensor_lstm.sig"), keys["other"][1])
    assert not reference_verifies(model.parent, model.with_name("letter_rnn.sig"), keys["other"][1])


def test_model_signing_signatures_verify_with_edgeseq(tmp_path: Path, keys):
    """Signed by model_signing's own command, as a user of the reference signs a folder (with an ignored file)."""
    model = copy_letter_model(tmp_path / "models")
    sig = model.with_name("letter_rnn.sig")
    made = subprocess.run(
        [sys.executable, "-m", "model_signing", "sign", "key", model.parent, "--signature", sig,
         "--private_key", keys["other"][0], "--ignore-paths", model.with_name("letter_rnn.keras")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert reference_verifies(model.parent, sig, keys["other"][1])
    assert verify_model(model, trust_of(keys, "other")).key.path == keys["other"][1]
    flip_byte(model)
    assert not reference_verifies(model.parent, sig, keys["other"][1])
    with pytest.raises(TrustError, match=r"'letter_rnn\.onnx' was changed after signing"):
        verify_model(model, trust_of(keys, "other"))


def _root_digest_wrong(model: Path, keys) -> Path:
    """Validly signed by the owner's key, but the subject's digest is not that of the files listed: the
    reference's "Manifest is inconsistent"."""
    sig = model.with_name("letter_rnn.sig")
    _, statement = read_bundle(sig)
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    write_signed_statement(sig, statement, keys["owner"][0])
    return model


def _wrong_payload_type(model: Path, keys) -> Path:
    sig = model.with_name("letter_rnn.sig")
    bundle, _ = read_bundle(sig)
    bundle["dsseEnvelope"]["payloadType"] = "application/json"
    sig.write_text(json.dumps(bundle))
    return model


REJECTED_BY_THE_REFERENCE = {
    **{name: TAMPERS[name] for name in ("flipped byte in the ONNX file", "added file", "removed file",
                                        "signature from another key", "another key, named as the owner's",
                                        "statement edited, signature kept", "truncated signature",
                                        "signature for another model")},
    "root digest not that of the files": (_root_digest_wrong, "its subject's digest is not the digest of the files"),
    "payload type changed": (_wrong_payload_type, "the signature does not verify"),
}  # fmt: skip


@pytest.mark.parametrize("tamper", list(REJECTED_BY_THE_REFERENCE))
def test_what_model_signing_rejects_edgeseq_rejects(signed: Path, keys, tamper: str):
    make, message = REJECTED_BY_THE_REFERENCE[tamper]
    model = make(signed, keys)
    assert not reference_verifies(model.parent, model.with_name("letter_rnn.sig"), keys["owner"][1])
    with pytest.raises(TrustError, match=message):
        verify_model(model, trust_of(keys, "owner"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_signature_is_refused_with_a_trust_error_and_nothing_else(signed: Path, keys, data):
    """Any value anywhere in the bundle or its statement replaced: TrustError, never another exception."""
    sig = signed.with_name("letter_rnn.sig")
    original = sig.read_text()
    bundle, statement = read_bundle(sig)
    junk = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=2))
    target = data.draw(st.sampled_from(["bundle", "statement"]))
    document = bundle if target == "bundle" else statement
    node, key = _pick(document, data)
    node[key] = data.draw(junk)
    if target == "statement":
        bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(bundle))
    try:
        verify_model(signed, trust_of(keys, "owner"))
    except TrustError as exc:
        assert "\n" not in str(exc)
    finally:
        sig.write_text(original)


def _pick(document, data):
    """A (container, key) somewhere in `document`, drawn by hypothesis."""
    node, key = {"root": document}, "root"
    while isinstance(node[key], (dict, list)) and node[key] and data.draw(st.booleans()):
        child = node[key]
        node, key = child, data.draw(st.sampled_from(list(child) if isinstance(child, dict) else range(len(child))))
    return node, key


# --- The commands --------------------------------------------------------------------------------------------


def test_edgeseq_sign_names_the_files_and_the_key_never_its_bytes(tmp_path: Path, keys):
    model = copy_letter_model(tmp_path / "models")
    result = invoke("sign", "--key", keys["owner"][0], model.with_name("letter_rnn.fp16.onnx"))
    assert result.exit_code == 0, result.output
    fingerprint = hashlib.sha256(keys["owner"][1].read_bytes()).hexdigest()
    assert f"by key {fingerprint[:16]}… (P-256)" in result.output and "9 files signed" in result.output
    sig = model.with_name("letter_rnn.sig")
    assert keys["owner"][0].read_text().splitlines()[1] not in sig.read_text() + result.output
    assert sorted(p.name for p in model.parent.iterdir()) == sorted([*(p.name for p in LETTER_FILES), sig.name])


def test_edgeseq_sign_refuses_what_it_cannot_sign_with_one_line(tmp_path: Path, keys):
    model = copy_letter_model(tmp_path / "models")
    (tmp_path / "rsa.pem").write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(model, lonely)
    cases = [
        (keys["owner"][1], model, "is a public key: sign with its private half"),
        (tmp_path / "rsa.pem", model, "is a RSAPrivateKey key; OMS signs with P-256, P-384 or P-521 keys"),
        (keys["owner"][0], lonely, "no manifest beside"),
        (tmp_path / "absent.pem", model, "absent.pem"),
    ]
    for key, path, message in cases:
        result = invoke("sign", "--key", key, path)
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and "BEGIN" not in result.output
    assert not model.with_name("letter_rnn.sig").exists()


@pytest.fixture
def signed_sensor(tmp_path: Path, keys) -> tuple[Path, Path]:
    folder = tmp_path / "sensor"
    folder.mkdir()
    for name in ("sensor_lstm.onnx", "sensor_lstm.json"):
        shutil.copy(EXPORTED / name, folder / name)
    sign_model(folder / SENSOR_ONNX.name, keys["owner"][0])
    return folder / SENSOR_ONNX.name, write_lines(tmp_path / "sample.csv", LINES[:61])


def test_edgeseq_run_with_trust_runs_the_signed_model_and_refuses_it_changed(signed_sensor, keys):
    model, stream = signed_sensor
    trusting = ("--trust", keys["other"][1], "--trust", keys["owner"][1])
    before = invoke("run", "--stream", stream, "--model", model, *trusting)
    assert before.exit_code == 0 and len(records(before.stdout)) == 25, before.output
    flip_byte(model)
    manifest = json.loads(model.with_name("sensor_lstm.json").read_text())
    manifest["files"][model.name]["sha256"] = sha256_of(model.read_bytes())
    model.with_name("sensor_lstm.json").write_text(json.dumps(manifest))
    after = invoke("run", "--stream", stream, "--model", model, "--trust", keys["owner"][1])
    assert after.exit_code == 2 and after.stdout == "", after.output
    assert after.stderr.strip().splitlines() == [
        f"edgeseq: error: 'sensor_lstm.json' was changed after signing: sha256 "
        f"{sha256_of(model.with_name('sensor_lstm.json').read_bytes())[:12]}…, {model.with_name('sensor_lstm.sig')} "
        f"signs {read_bundle(model.with_name('sensor_lstm.sig'))[1]['predicate']['resources'][0]['digest'][:12]}…"
    ]
    unchecked = invoke("run", "--stream", stream, "--model", model)  # no trust: as before, and fooled
    assert unchecked.exit_code == 0 and records(unchecked.stdout) != records(before.stdout)


def test_python_m_edgeseq_device_run_refuses_an_untrusted_signature(signed_sensor, keys):
    model, stream = signed_sensor
    args = [sys.executable, "-m", "edgeseq_device", "run", "--stream", stream, "--model", model, "--trust"]
    ok = subprocess.run([*map(str, args), str(keys["owner"][1])], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and len(records(ok.stdout)) == 25, ok.stderr
    refused = subprocess.run([*map(str, args), str(keys["other"][1])], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1 and "which this box does not trust" in refused.stderr


def test_edgeseq_info_says_unsigned_or_by_which_key(signed: Path, keys):
    fingerprint = hashlib.sha256(keys["owner"][1].read_bytes()).hexdigest()
    said = invoke("info", signed).output
    assert f"signed      {signed.with_name('letter_rnn.sig')}, by key {fingerprint}  (not checked here" in said
    checked = invoke("info", signed, "--trust", keys["owner"][1]).output
    assert "(ok: signed by trusted key" in checked
    untrusted = invoke("info", signed, "--json", "--trust", keys["other"][1])
    assert json.loads(untrusted.output)["signed"]["check"].startswith("FAILED: ")
    signed.with_name("letter_rnn.sig").unlink()
    assert "signed      no (no signature beside it" in invoke("info", signed).output


def test_a_run_without_trust_never_imports_cryptography():
    """The trust extra stays optional: a box without `cryptography` runs unsigned models as before."""
    from tests.test_imports import SENSOR_HEAD, imported_modules

    args = ("-m", "edgeseq_device", "run", "--stream", str(SENSOR_HEAD), "--model", str(SENSOR_ONNX))
    assert "cryptography" not in imported_modules(*args)


def test_export_sign_key_signs_last_and_refuses_a_bad_key_before_any_work(tmp_path: Path, keys):
    from tests.test_convert_zoo import kerases

    keras = kerases()["keras3"]
    network = keras.Sequential([keras.Input((None, 2)), keras.layers.GRU(4), keras.layers.Dense(2)], name="two")
    network.save(tmp_path / "two.keras")
    out = tmp_path / "out"
    args = ("export", "--keras", tmp_path / "two.keras", "--features", "a,b", "--window", 4, "--target", "t,h",
            "--out", out, "--quantize", "fp16", "--sign-key")  # fmt: skip
    refused = invoke(*args, keys["owner"][1])
    assert refused.exit_code == 2 and "is a public key: sign with its private half" in refused.stderr
    assert not out.exists() or not list(out.glob("*.onnx"))
    exported = invoke(*args, keys["owner"][0])
    assert exported.exit_code == 0, exported.output
    files = sorted(p.name for p in out.iterdir() if p.suffix in {".onnx", ".json"} and p.name != "quantization.json")
    assert f"{out / 'two.sig'}: {len(files)} files signed" in exported.stdout
    assert files == ["two.batched.onnx", "two.fp16.batched.onnx", "two.fp16.onnx", "two.json", "two.onnx"]
    for name in files:
        if name.endswith(".onnx"):
            load_model(out / name, trust=trust_of(keys, "owner"))
    assert reference_verifies(out, out / "two.sig", keys["owner"][1])


def test_quantize_sign_key_signs_the_model_with_its_new_variant(signed: Path, keys):
    """A new variant invalidates the signature (an added file); --sign-key signs the model again, variant and all."""
    for path in signed.parent.glob("letter_rnn.fp16*"):
        path.unlink()
    sign_model(signed, keys["owner"][0])
    result = invoke("quantize", "--model", signed, "--mode", "fp16", "--sign-key", keys["owner"][0])
    assert result.exit_code == 0, result.output
    assert "9 files signed" in result.stdout
    assert "letter_rnn.fp16.onnx" in load_model(signed, trust=trust_of(keys, "owner")).signed.digests


def test_trust_without_cryptography_says_which_extra_to_install(signed: Path, keys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(TrustError, match=r"pip install 'edgeseq-device\[trust\]' on a box"):
        load_model(signed, trust=Trust.load([keys["owner"][1]]))
