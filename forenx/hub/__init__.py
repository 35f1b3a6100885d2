"""Releasing ForenX models and data sets to the Hugging Face Hub.

- :func:`~forenx.hub.release.release`: checkpoint -> release folder (merge or adapter, model card,
  optional bundled code), reload-tested, optionally pushed (``forenx release``);
- :func:`~forenx.hub.dataset.push_dataset`: a record folder -> Hub dataset repo (``forenx data push``);
- :mod:`~forenx.hub.card`, :mod:`~forenx.hub.merge`, :mod:`~forenx.hub.remote_code`,
  :mod:`~forenx.hub.push`: the parts.

Heavy libraries (torch, transformers, peft) are imported inside the functions.
"""

from forenx.hub.errors import ReleaseError

__all__ = ["ReleaseError"]
