"""Clean-up of the text given to synthesis, before the toolkit's tokenizer and phonemizer see it.

espeak-ng receives the text as a C string, so everything after a NUL character is dropped without a word: "Hello\\0
world" is spoken as "Hello". Other control characters (escape sequences, form feeds, bells pasted from a terminal or a
PDF) are not speech either. `strip_control_characters` removes them with a logged warning, so a pasted text is still
spoken whole instead of failing or being cut short.
"""

import logging
import re

logger = logging.getLogger(__name__)

# C0 controls except tab, newline and carriage return (ordinary whitespace), DEL, and C1 controls
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SHOWN = 5


def strip_control_characters(text: str) -> str:
    """`text` without control characters; those Python counts as whitespace (form feed, separators) become spaces.

    Tab, newline and carriage return are kept. A warning names the removed characters and their positions.
    """
    found = [(match.start(), match.group()) for match in _CONTROL_CHARACTERS.finditer(text)]
    if not found:
        return text
    shown = ", ".join(f"U+{ord(char):04X} at position {position}" for position, char in found[:_SHOWN])
    logger.warning(
        "Removed %d control character(s) from the text to synthesize (%s%s): espeak-ng would stop reading at a NUL.",
        len(found),
        shown,
        ", ..." if len(found) > _SHOWN else "",
    )
    return _CONTROL_CHARACTERS.sub(lambda match: " " if match.group().isspace() else "", text)
