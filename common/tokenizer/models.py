"""Which tiktoken encoding a model id uses."""

from __future__ import annotations

import re

CL100K = "cl100k_base"
O200K = "o200k_base"
ENCODINGS = (CL100K, O200K)

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
