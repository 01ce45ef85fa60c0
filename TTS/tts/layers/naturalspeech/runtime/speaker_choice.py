"""The speaker of a server request: a name or an id, checked against the speakers of the model that synthesizes.

The toolkit's `tts-server` reads the field `speaker_id` (a speaker name, despite the field's name) and a default
from `--speaker_idx`, and ignores both for a single-speaker model. `naturalspeech-server` does the same, and also
takes an integer id, and `speaker` as another spelling of the field. A bad speaker, which the toolkit's server answers
with a 500 (it does so for every synthesis error), is a `ValueError` here, naming the problem and the valid speakers,
before any synthesis: the server answers it with a 400.

The speakers are those of the learned speaker embedding, in id order: the speaker manager's names (the config's
`speakers`), or "0", "1", ... when the model only has `num_speakers`; for ONNX Runtime, the names stored in
`latents.onnx`. A model conditioned on d-vectors has no speaker ids and is not served.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SpeakerChoice:
    """The speakers a server offers, and the default speaker of a request that names none.

    Args:
        names: Speaker names in id order; empty for a single-speaker model.
        default: Speaker id used when a request gives none (`--speaker_idx`); None to require one.
    """

    names: tuple[str, ...] = ()
    default: int | None = None

    @classmethod
    def of_names(cls, names: Sequence[str], default: Any = None) -> "SpeakerChoice":
        """The choice among `names`, with `default` (a name or an id; checked like a request's speaker)."""
        choice = cls(tuple(str(name) for name in names))
        return cls(choice.names, choice.resolve(default, required=False))

    @classmethod
    def of_model(cls, model: Any, default: Any = None) -> "SpeakerChoice":
        """The speakers of a `Naturalspeech` model's learned speaker embedding (none for a single-speaker model).

        Raises:
            ValueError: The model is conditioned on d-vectors (no speaker ids to choose from), or `default` is not
                one of its speakers.
        """
        embedding = getattr(model, "speaker_embedding", None)
        if embedding is None:
            return cls.of_names([], default)
        if embedding.emb_g is None:
            raise ValueError("the model is conditioned on d-vectors, not speaker ids: naturalspeech-server needs ids")
        names = model._speaker_names() or [str(i) for i in range(embedding.num_speakers)]
        return cls.of_names(names, default)

    @property
    def multi_speaker(self) -> bool:
        return bool(self.names)

    def listing(self) -> str:
        """The speakers as "0: anna, 1: ben"."""
        return ", ".join(f"{index}: {name}" for index, name in enumerate(self.names))

    def info(self) -> list[dict[str, Any]]:
        """The speakers as `[{"id": 0, "name": "anna"}, ...]` (`/api/info`)."""
        return [{"id": index, "name": name} for index, name in enumerate(self.names)]

    def resolve(self, value: Any, *, required: bool = True) -> int | None:
        """The speaker id of `value`: a speaker name, an id (an int, or a string of digits) or nothing.

        A string that is a speaker's name is that speaker, even if it is also a number. Nothing (None or "") is the
        default speaker. A single-speaker model ignores the speaker, as the toolkit's server does: None.

        Args:
            value: The request's speaker.
            required: A multi-speaker model without a speaker or a default is an error; False gives None then.

        Raises:
            ValueError: An unknown name, an id out of range, a value of another type, or no speaker at all for a
                multi-speaker model without a default; the message lists the valid speakers.
        """
        if not self.names:
            return None
        if value is None or value == "":
            if self.default is None and required:
                raise ValueError(f"this model has several speakers: choose one by name or id ({self.listing()})")
            return self.default
        if isinstance(value, str):
            if value in self.names:
                return self.names.index(value)
            number = value.strip()
            digits = number.lstrip("+-")
            if not (digits.isascii() and digits.isdigit()):
                raise ValueError(f"speaker {value!r} is not a speaker of this model; its speakers are {self.listing()}")
            value = int(number)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"a speaker is a name or an integer id, got {value!r}; this model has {self.listing()}")
        if not 0 <= value < len(self.names):
            last = len(self.names) - 1
            raise ValueError(f"speaker id {value} is out of range: this model has ids 0 to {last} ({self.listing()})")
        return value
