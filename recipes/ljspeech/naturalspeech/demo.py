"""Main job of the README's `make demo`: a smoke run of the add-on in the installed toolkit.

Checks that the toolkit finds NaturalSpeech by name: saves a config and loads it back with `load_config`.
"""

import tempfile
from pathlib import Path

from TTS.config import load_config
from TTS.tts.configs.naturalspeech_config import NaturalspeechConfig


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        NaturalspeechConfig().save_json(str(path))
        config = load_config(str(path))
    print(f"load_config found {type(config).__name__} for model '{config.model}'.")


if __name__ == "__main__":
    main()
