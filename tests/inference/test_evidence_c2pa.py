"""C2PA evidence on files signed here, offline, with a certificate chain made in the test.

c2pa-rs refuses self-signed leaf certificates: the signer is an end-entity certificate
(digitalSignature key usage, emailProtection extended key usage, not a CA) issued by a test root CA,
and the chain (leaf first) is given to the signer.
"""

from __future__ import annotations

import datetime
import io

import c2pa  # forenx[evidence]; `make setup` installs it, so a missing package fails here
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from forenx.inference.evidence import run_evidence
from forenx.inference.evidence.c2pa import c2pa_evidence, read_manifest_store

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ForenX Test Lab")])


def _key_usage(*, signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=signing, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=not signing,
                         crl_sign=not signing, encipher_only=False, decipher_only=False)


@pytest.fixture(scope="module")
def signer_chain():
    """(certificate chain PEM, private key PEM) of an ES256 signer issued by a test root CA."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = {"not_valid_before": now - datetime.timedelta(days=1), "not_valid_after": now + datetime.timedelta(days=30)}
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(_name("ForenX Test Root CA")).issuer_name(_name("ForenX Test Root CA"))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(signing=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name("ForenX Test Generator")).issuer_name(root.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signing=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    chain = leaf.public_bytes(serialization.Encoding.PEM) + root.public_bytes(serialization.Encoding.PEM)
    key = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return chain, key


def _sign(signer_chain, fmt: str, digital_source_type: str) -> bytes:
    chain, key = signer_chain
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 90, 160)).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    buffer.seek(0)
    manifest = {
        "claim_generator_info": [{"name": "TestDiffusion", "version": "2.1"}],
        "title": f"generated.{fmt.lower()}",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [{
            "action": "c2pa.created", "digitalSourceType": digital_source_type,
            "softwareAgent": {"name": "TestDiffusion XL"}}]}}],
    }
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
    signed = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer, f"image/{fmt.lower()}", buffer, signed)
    return signed.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_ai_generation_assertion_is_read_back(tmp_path, signer_chain, fmt):
    path = tmp_path / f"generated.{fmt.lower()}"
    path.write_bytes(_sign(signer_chain, fmt, TRAINED))
    Image.open(path).load()  # still a valid image after embedding the manifest
    found = {q.name: q for q in c2pa_evidence(path)}
    declared = found["C2PA declares AI generation"]
    assert declared.severity >= 85 and declared.source == "evidence:c2pa"
    assert '"ForenX Test Generator"' in declared.phenomenon  # the signer
    assert '"ForenX Test Lab"' in declared.phenomenon  # the issuer
    assert "TestDiffusion 2.1" in declared.phenomenon  # the claim generator
    assert "trainedAlgorithmicMedia" in declared.phenomenon and "TestDiffusion XL" in declared.phenomenon
    # The test root is on no trust list: reported, with a low severity, not as a forgery.
    assert found["C2PA signer not on a trust list"].severity <= 20
    assert "C2PA validation failed: content changed after signing" not in found


def test_capture_manifest_is_not_an_anomaly(signer_chain):
    found = {q.name: q for q in c2pa_evidence(_sign(signer_chain, "JPEG", CAPTURE))}
    assert "C2PA declares AI generation" not in found
    assert found["C2PA content credentials present"].severity <= 10


def test_pixels_changed_after_signing_fail_validation(signer_chain):
    signed = bytearray(_sign(signer_chain, "PNG", TRAINED))
    store = read_manifest_store(bytes(signed))
    assert store is not None and store["active_manifest"] in store["manifests"]
    # Re-encode the same pixels differently in the IDAT chunk: same picture, different bytes.
    idat = signed.index(b"IDAT")
    signed[idat + 10] ^= 0x01  # inside the compressed pixel data, covered by the data hash
    found = {q.name: q for q in c2pa_evidence(bytes(signed))}
    failed = found["C2PA validation failed: content changed after signing"]
    assert "mismatch" in failed.phenomenon and failed.severity >= 70


def test_file_without_manifest_gives_nothing():
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG")
    assert c2pa_evidence(buffer.getvalue()) == []


def test_registry_reports_c2pa_with_the_other_tools(tmp_path, signer_chain):
    path = tmp_path / "generated.jpg"
    path.write_bytes(_sign(signer_chain, "JPEG", TRAINED))
    result = run_evidence(path)
    assert result.errors == []
    assert {q.source for q in result.quadruples} >= {"evidence:c2pa", "evidence:metadata"}
    assert set(result.maps) == {"ela", "spectrum"}
