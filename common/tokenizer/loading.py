"""Configuration (mode, cache directory) and lazy, once-per-process loading of tiktoken encodings."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from common.tokenizer.files import unpack_encoding
from common.tokenizer.models import encoding_name_for

# The package's logger name, kept from before the split (tests and log config refer to it).
log = logging.getLogger("common.tokenizer")

PRECISE = "precise"
HEURISTIC = "heuristic"
MODES = (PRECISE, HEURISTIC)

# Module state, guarded by _lock. threading.RLock becomes gevent-aware when gevent has patched
# threading before this module is imported (the gunicorn gevent worker does that); loading does no
# cooperative I/O, so a greenlet never yields while holding it.
_lock = threading.RLock()
_configured = False
_mode_setting = PRECISE
_cache_dir = ""
_encodings: dict[str, Any] = {}
_failed: dict[str, str] = {}


def default_cache_dir() -> str:
    """Return the default tiktoken cache directory (absolute path).

    ``$TIKTOKEN_CACHE_DIR`` if set and non-empty, else ``<$DATA_DIR or ./data>/tiktoken``.
    """
    env = os.environ.get("TIKTOKEN_CACHE_DIR", "").strip()
    if env:
        return os.path.abspath(env)
    data_dir = os.environ.get("DATA_DIR", "").strip() or "./data"
    return os.path.abspath(os.path.join(data_dir, "tiktoken"))


def configure(mode: str | None = None, cache_dir: str | None = None) -> None:
    """Set the tokenizer mode and the tiktoken cache directory; nothing is loaded here.

    ``mode`` is ``"precise"`` (tiktoken, with heuristic fallback on load failure) or ``"heuristic"``
    (estimates only); ``None`` (the default) means ``$TOKENIZER_MODE``, else ``"precise"``.
    ``cache_dir`` defaults to :func:`default_cache_dir`. Reconfiguring forgets earlier load failures,
    so a fixed setup is retried; encodings already loaded stay cached (they do not depend on the
    directory they were read from).
    Raises ``ValueError`` for an unknown mode.
    """
    global _configured, _mode_setting, _cache_dir
    if mode is None:
        mode = _mode_from_env()
    mode = mode.strip().lower()
    if mode not in MODES:
        raise ValueError(f"tokenizer mode must be one of {MODES}, got {mode!r}")
    with _lock:
        _mode_setting = mode
        _cache_dir = os.path.abspath(cache_dir) if cache_dir else default_cache_dir()
        _failed.clear()
        _configured = True


def _mode_from_env() -> str:
    raw = os.environ.get("TOKENIZER_MODE", "").strip().lower()
    if not raw:
        return PRECISE
    if raw not in MODES:
        log.warning("TOKENIZER_MODE=%r is not one of %s; using %r", raw, MODES, PRECISE)
        return PRECISE
    return raw


def _ensure_configured() -> None:
    if not _configured:
        with _lock:
            if not _configured:
                configure(None, None)


def cache_dir() -> str:
    """Return the tiktoken cache directory in use (configuring from the environment if needed)."""
    _ensure_configured()
    return _cache_dir


def mode(model: str | None = None) -> str:
    """Tell whether token counts are ``"precise"`` or ``"heuristic"`` right now.

    Without ``model``: ``"heuristic"`` if heuristic mode is configured or any encoding has failed to
    load in this process, else ``"precise"`` (nothing is loaded to answer). With ``model``: the
    answer for that model's encoding, loading it if needed (which may cost 40-70 MB the first time).
    """
    _ensure_configured()
    if _mode_setting == HEURISTIC:
        return HEURISTIC
    if model is not None:
        return PRECISE if _get_encoding(encoding_name_for(model)) is not None else HEURISTIC
    return HEURISTIC if _failed else PRECISE


def _reset_for_tests() -> None:
    """Forget configuration, loaded encodings and failures (tests only)."""
    global _configured, _mode_setting, _cache_dir
    with _lock:
        _configured = False
        _mode_setting = PRECISE
        _cache_dir = ""
        _encodings.clear()
        _failed.clear()


def _get_encoding(encoding_name: str) -> Any | None:
    """The loaded tiktoken Encoding, or None (heuristic mode, or loading failed: warned once)."""
    _ensure_configured()
    if _mode_setting == HEURISTIC:
        return None
    enc = _encodings.get(encoding_name)
    if enc is not None:
        return enc
    if encoding_name in _failed:
        return None
    with _lock:
        enc = _encodings.get(encoding_name)
        if enc is not None:
            return enc
        if encoding_name in _failed:
            return None
        started = time.perf_counter()
        try:
            unpack_encoding(encoding_name, _cache_dir)
            os.environ["TIKTOKEN_CACHE_DIR"] = _cache_dir
            import tiktoken

            enc = tiktoken.get_encoding(encoding_name)
        except Exception as exc:  # any failure degrades to the heuristic
            _failed[encoding_name] = f"{type(exc).__name__}: {exc}"
            log.warning(
                "tokenizer: cannot load %s from %s (%s); token counts for it are estimates",
                encoding_name,
                _cache_dir,
                _failed[encoding_name],
            )
            return None
        _encodings[encoding_name] = enc
        log.info("tokenizer: loaded %s in %.2fs", encoding_name, time.perf_counter() - started)
        return enc


def preload(models: Iterable[str] = ("",)) -> str:
    """Load the encodings for ``models`` now (e.g. at worker start) instead of on first use.

    Returns :func:`mode` afterwards.
    """
    for model in models:
        _get_encoding(encoding_name_for(model))
    return mode()
