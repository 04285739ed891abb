"""The one word-splitting rule for raw text (text-only records and prediction).

Runs of letters/digits with internal apostrophes, hyphens or dots stay one word
("O'Brien", "state-of-the-art", "U.S"); every other non-space character is its own word.
The same rule is used by the sample-corpus converter, so NER tags line up with these words.
"""

from __future__ import annotations

import re

WORD_PATTERN = r"\w+(?:['’\-.]\w+)*|[^\w\s]"
WORD_RE = re.compile(WORD_PATTERN)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Split ``text`` into ``(word, start, end)`` with ``text[start:end] == word``."""
    return [(m.group(), m.start(), m.end()) for m in WORD_RE.finditer(text)]
