"""C2PA content credentials: who signed the file, what it declares, and whether it still checks out.

Uses the ``c2pa-python`` package (``pip install forenx[evidence]``). Reading is offline: OCSP and
remote-manifest fetching are turned off, so a signer that is not on a trust list is reported as
untrusted rather than looked up.

A manifest is provenance, not an anomaly; it becomes a quadruple because it says what pixels
cannot: a declared AI source (``c2pa.actions`` with ``digitalSourceType`` trainedAlgorithmicMedia)
is strong evidence, a failed hash means the pixels changed after signing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from forenx.inference.evidence.metadata import DIGITAL_SOURCE_TYPES, read_source_bytes
from forenx.schema import Quadruple

__all__ = ["c2pa_evidence", "read_manifest_store"]

SOURCE = "evidence:c2pa"

_MIME = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
         "GIF": "image/gif", "TIFF": "image/tiff", "AVIF": "image/avif", "HEIF": "image/heif"}

#: Failure codes that mean the content or the claim no longer matches what was signed.
_TAMPER_PREFIXES = ("assertion.dataHash.mismatch", "assertion.boxesHash.mismatch", "assertion.bmffHash.mismatch",
                    "assertion.hashedURI.mismatch", "claimSignature.mismatch", "assertion.collectionHash.mismatch")


def _offline_context() -> Any:
    import c2pa

    settings = c2pa.Settings.from_dict({"verify": {"ocsp_fetch": False, "remote_manifest_fetch": False}})
    return c2pa.Context(settings)


def read_manifest_store(data: bytes) -> dict[str, Any] | None:
    """The C2PA manifest store of a file as a dict (the SDK's JSON), or None when it has none.

    Raises ImportError naming the extra to install, and c2pa.C2paError for unreadable manifests.
    """
    try:
        import c2pa
    except ImportError as exc:
        raise ImportError("C2PA evidence needs the c2pa-python package: pip install 'forenx[evidence]'") from exc
    try:
        with Image.open(io.BytesIO(data)) as opened:
            mime = _MIME.get(opened.format or "")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        mime = None  # the SDK detects the container itself
    reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, _offline_context())
    if reader is None:
        return None
    with reader:
        return json.loads(reader.json())


def _walk_actions(manifest: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for assertion in manifest.get("assertions") or []:
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions") or []:
                if isinstance(action, dict):
                    yield action


def _agent_name(action: dict[str, Any]) -> str:
    agent = action.get("softwareAgent")
    if isinstance(agent, dict):
        return str(agent.get("name") or "")
    return str(agent or "")


def _generator_name(manifest: dict[str, Any]) -> str:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        version = info[0].get("version")
        return str(info[0].get("name", "")) + (f" {version}" if version else "")
    return str(manifest.get("claim_generator") or "unknown")


def c2pa_evidence(source: str | Path | bytes, image: Image.Image | None = None) -> list[Quadruple]:
    """Quadruples from the file's C2PA manifest store; an empty list when there is none."""
    _, data = read_source_bytes(source)
    store = read_manifest_store(data)
    if store is None:
        return []
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest")) or {}
    signature = active.get("signature_info") or {}
    signer = signature.get("common_name") or "an unnamed signer"
    issuer = signature.get("issuer") or "an unnamed issuer"
    generator = _generator_name(active)
    found: list[Quadruple] = []

    declared: list[tuple[int, str, str]] = []
    for label, manifest in manifests.items():
        for action in _walk_actions(manifest):
            term = str(action.get("digitalSourceType") or "").rstrip("/").rsplit("/", 1)[-1]
            if term.lower() in DIGITAL_SOURCE_TYPES:
                severity, meaning = DIGITAL_SOURCE_TYPES[term.lower()]
                agent = _agent_name(action)
                declared.append((severity, f"{action.get('action', 'an action')} with digitalSourceType "
                                 f"\"{term}\" ({meaning})" + (f" by {agent}" if agent else ""),
                                 "the active manifest" if label == store.get("active_manifest") else "an ingredient"))
    credential = f"signed by \"{signer}\" (issuer \"{issuer}\"), claim generator \"{generator}\""
    if declared:
        severity, what, where = max(declared)
        found.append(Quadruple(
            name="C2PA declares AI generation",
            phenomenon=f"Content credentials {credential}; {where} records {what}.",
            reasoning="The producing software signed a statement that generative AI made this content; "
                      "content credentials are the provenance standard generators use to label output.",
            severity=severity, source=SOURCE))
    else:
        found.append(Quadruple(
            name="C2PA content credentials present",
            phenomenon=f"Content credentials {credential}; no AI-generation action is declared.",
            reasoning="A manifest records the file's provenance; without an AI declaration it is not "
                      "evidence of fakery (its validity is checked separately).",
            severity=5, source=SOURCE))

    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = results.get("failure") if results else store.get("validation_status")
    codes = [str(f.get("code", "")) for f in failures or [] if isinstance(f, dict)]
    tampered = sorted({c for c in codes if c.startswith(_TAMPER_PREFIXES)})
    untrusted = [c for c in codes if c.startswith("signingCredential.untrusted")]
    other = sorted({c for c in codes if c not in tampered and c not in untrusted})
    if tampered:
        found.append(Quadruple(
            name="C2PA validation failed: content changed after signing",
            phenomenon=f"the manifest's checks fail: {', '.join(tampered)}.",
            reasoning="The hashes signed in the manifest no longer match the file, so the pixels or the "
                      "claim were altered after the credentials were issued.",
            severity=75, source=SOURCE))
    if other:
        found.append(Quadruple(
            name="C2PA validation problems",
            phenomenon=f"the manifest reports: {', '.join(other)}.",
            reasoning="The credentials are malformed, expired or revoked, so what they state cannot be "
                      "relied on.", severity=40, source=SOURCE))
    if untrusted:
        found.append(Quadruple(
            name="C2PA signer not on a trust list",
            phenomenon=f"the signing certificate of \"{signer}\" (issuer \"{issuer}\") is not trusted offline.",
            reasoning="Anyone can sign a manifest with their own certificate; an untrusted signer makes the "
                      "provenance claim unverified, not false.", severity=15, source=SOURCE))
    return found
