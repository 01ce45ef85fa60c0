"""The toolkit's espeak-ng phonemizer, calling libespeak-ng in-process instead of starting `espeak-ng` per text.

The toolkit's `ESpeak` writes the text to a file and runs `espeak-ng -q -b 1 -v <lang> --ipa=1 -f <file>` for every
`phonemize` call: about 11 ms per sentence here, mostly process start-up, where the library itself needs under 1 ms.
`InProcessESpeak` is that class with one change: the low-level call asks libespeak-ng (through `ctypes`) for the same
phonemes the program prints, and then applies the toolkit's own line handling to them. Everything else (punctuation,
the `phonemize` wrapper, names, versions) is the toolkit's, so the output, and therefore the token ids, are the same.

What the program does, and how the library call mirrors it (espeak-ng 1.51, `src/espeak-ng.c`):

- It synthesizes the text (`espeak_Synth`, flags UTF-8 | `[[...]]` phoneme input | end pause) with a phoneme trace in
  IPA (`espeakPHONEMES_IPA`, bit 1) with `_` between phonemes (bits 8-23) for `--ipa=1`, and prints one line per
  clause. Here the same synthesis runs with the same mode and flags, and the phoneme callback (called with the line
  the program prints) collects the clauses.
- `espeak_TextToPhonemes` alone is not enough: it skips the intonation pass that gives a clause without a primary
  stress one (`when` alone is `wˌɛn` there, `wˈɛn` from the program). It only counts the clauses here, so that the
  synthesis can stop as soon as the last clause is phonemized instead of making all its audio.
- `-v <name>` falls back to choosing the voice by language when no voice has that name; so does this module.
- `tie=True` (the toolkit's `--tie` argument) and the old `espeak` keep the subprocess.

libespeak-ng keeps its state (voice, translator, text decoder) in globals, so every call runs under one lock per
library, and the voice is set again only when a call asks for another one. When the library cannot be loaded, the
toolkit's subprocess is used instead (logged once).
"""

import ctypes
import ctypes.util
import functools
import logging
import os
import re
import threading

from TTS.tts.utils.text.phonemizers.espeak_wrapper import ESpeak
from TTS.tts.utils.text.phonemizers.multi_phonemizer import MultiPhonemizer
from TTS.tts.utils.text.punctuation import Punctuation

logger = logging.getLogger(__name__)

# espeak-ng's speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # no audio device, no background thread: calls return when done
_ESPEAK_INITIALIZE_DONT_EXIT = 0x8000  # report a missing data directory instead of exiting the process
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_PHONEMES_IPA = 0x02
_EE_OK = 0
_POS_CHARACTER = 1
_BUFFER_MS = 10
# the program's flags for `-b 1` text: UTF-8, `[[...]]` phoneme input, a pause at the end
_SYNTH_FLAGS = _ESPEAK_CHARS_UTF8 | 0x100 | 0x1000
_IPA_1 = _ESPEAK_PHONEMES_IPA | (ord("_") << 8)  # `--ipa=1`: IPA, `_` between the phonemes of a word


class _Voice(ctypes.Structure):
    """`espeak_VOICE`, to choose a voice by language as the program does when no voice has the given name."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
_PhonemeCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p)


class EspeakLibrary:
    """libespeak-ng loaded and initialised once per process, for phonemes only (the audio is dropped).

    Args:
        path: The shared library to load (a path or a name `ctypes.CDLL` resolves).

    Raises:
        OSError: The library cannot be loaded or initialised.
    """

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        libc = ctypes.CDLL(None)
        libc.fopen.argtypes, libc.fopen.restype = [ctypes.c_char_p, ctypes.c_char_p], ctypes.c_void_p
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_Voice)]
        lib.espeak_SetVoiceByProperties.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_SetPhonemeTrace.argtypes = [ctypes.c_int, ctypes.c_void_p]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetPhonemeCallback.argtypes = [_PhonemeCallback]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        # the sample rate on success; the default data directory, as the program's (ESPEAK_DATA_PATH applies to both);
        # short audio buffers, so little audio is made before a call stops (`_on_audio`)
        if lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, None, _ESPEAK_INITIALIZE_DONT_EXIT) <= 0:
            msg = f"espeak_Initialize failed for {path} (is its espeak-ng-data installed?)"
            raise OSError(msg)
        self._trace = libc.fopen(b"/dev/null", b"w")  # the phoneme trace the program prints; read by callback here
        if not self._trace:
            msg = "cannot open /dev/null for espeak-ng's phoneme trace"
            raise OSError(msg)
        self._on_audio_c = _SynthCallback(self._on_audio)  # kept referenced: the library holds only the pointer
        self._on_phonemes_c = _PhonemeCallback(self._on_phonemes)
        lib.espeak_SetSynthCallback(self._on_audio_c)
        lib.espeak_SetPhonemeCallback(self._on_phonemes_c)
        self.path = path
        self.lock = threading.Lock()
        self._lib = lib
        self._voice: str | None = None
        self._mode: int | None = None
        self._clauses: list[str] = []
        self._expected = 0

    def clauses(self, text: str, voice: str, mode: int = _IPA_1) -> list[str] | None:
        """The phonemes of each clause of `text`, as `espeak-ng -q -b 1 -v <voice> --ipa=...` prints them.

        Returns:
            One string per clause, or None if no voice matches `voice`.
        """
        # A Python string ends at the first NUL for the library, as the program's file input does.
        data = text.encode("utf8")
        with self.lock:
            if voice != self._voice:
                if not self._set_voice(voice):
                    return None
                self._voice = voice
            if mode != self._mode:
                self._lib.espeak_SetPhonemeTrace(mode, self._trace)
                self._mode = mode
            # `[[...]]` is phoneme input for the synthesis only: no clause count for it, the audio is made to the end
            self._expected = len(data) + 1 if "[[" in text else self._count_clauses(data, mode)
            self._clauses = []
            self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _SYNTH_FLAGS, None, None)
            return self._clauses

    def _count_clauses(self, data: bytes, mode: int) -> int:
        # `espeak_TextToPhonemes` reads one clause per call (fast, but without the synthesis' stress changes)
        buffer = ctypes.create_string_buffer(data)
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        count = 0
        while pointer.value is not None:  # the library sets it to NULL after the last clause
            self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _ESPEAK_CHARS_UTF8, mode)
            count += 1
        return count

    def _on_phonemes(self, phonemes: bytes | None) -> int:
        self._clauses.append((phonemes or b"").decode("utf8"))
        return 0

    def _on_audio(self, wav, num_samples, events) -> int:
        # 1 stops the synthesis: once every clause is phonemized, its audio is not needed
        return 1 if len(self._clauses) >= self._expected else 0

    def _set_voice(self, voice: str) -> bool:
        name = voice.encode("utf8")
        if self._lib.espeak_SetVoiceByName(name) == _EE_OK:
            return True
        self._voice = None  # a failed attempt may have left the library with another voice
        return self._lib.espeak_SetVoiceByProperties(ctypes.byref(_Voice(languages=name))) == _EE_OK


_LIBRARIES: dict[str, EspeakLibrary | None] = {}
_LIBRARIES_LOCK = threading.Lock()


@functools.cache  # `find_library` runs `ldconfig -p`: once per process, not per text
def default_library_path() -> str | None:
    """Where the dynamic loader finds libespeak-ng (Debian's `libespeak-ng1`, a dependency of `espeak-ng`)."""
    return ctypes.util.find_library("espeak-ng")


def load_library(path: str | None = None) -> EspeakLibrary | None:
    """The process's libespeak-ng at `path` (default: `default_library_path()`), or None if it cannot be loaded.

    A library that fails to load is logged once and not tried again.
    """
    path = path or default_library_path()
    if path is None:
        path = "libespeak-ng.so.1"
    with _LIBRARIES_LOCK:
        if path not in _LIBRARIES:
            try:
                _LIBRARIES[path] = EspeakLibrary(path)
            except (OSError, AttributeError, TypeError) as error:  # a library without espeak's API, no libc
                logger.warning("libespeak-ng not usable (%s); phonemizing through the espeak-ng program", error)
                _LIBRARIES[path] = None
        return _LIBRARIES[path]


def _new_locks_after_fork() -> None:
    # a lock held by another thread at fork time would never be released in the child
    for library in _LIBRARIES.values():
        if library is not None:
            library.lock = threading.Lock()


os.register_at_fork(after_in_child=_new_locks_after_fork)


class InProcessESpeak(ESpeak):
    """The toolkit's `ESpeak` (espeak-ng backend) calling libespeak-ng in-process; same phonemes, no subprocess.

    Args:
        language: espeak-ng voice or language code, as for `ESpeak`.
        punctuations: Characters treated as punctuation, as for `ESpeak`.
        backend: As for `ESpeak`; only `espeak-ng` runs in-process (`espeak` keeps the subprocess).
        keep_puncs: As for `ESpeak`.
        library: The libespeak-ng to load; default `default_library_path()`. If it cannot be loaded, the
            subprocess is used.

    Example:
        >>> phonemizer = InProcessESpeak("en-us")
        >>> phonemizer.phonemize("Hello, world.", separator="")
        'həlˈoʊ, wˈɜːld.'
    """

    def __init__(
        self,
        language: str,
        punctuations: str = Punctuation.default_puncs(),
        *,
        backend: str | None = None,
        keep_puncs: bool = True,
        library: str | None = None,
    ) -> None:
        super().__init__(language, punctuations, backend=backend, keep_puncs=keep_puncs)
        self.library_path = library

    @property
    def in_process(self) -> bool:
        """Whether `phonemize` runs in-process (espeak-ng backend and a loadable library)."""
        return self.backend == "espeak-ng" and load_library(self.library_path) is not None

    def phonemize_espeak(self, text: str, separator: str = "|", *, tie: bool = False) -> str:
        """`ESpeak.phonemize_espeak` through libespeak-ng; the subprocess for what the library cannot mirror."""
        library = load_library(self.library_path) if self.backend == "espeak-ng" and not tie else None
        clauses = None if library is None else library.clauses(text, self._language)
        if clauses is None:  # includes an unknown voice: the program then raises the toolkit's usual error
            return super().phonemize_espeak(text, separator, tie=tie)
        # the program's output, then the toolkit's handling of it (`_espeak_exe`, `phonemize_espeak`)
        stdout = "".join(f"{clause}\n" for clause in clauses)
        lines = [line.strip() for line in stdout.strip().split("\n") if line.strip() != ""]
        phonemes = "".join(re.sub(r"\(.+?\)", "", line).strip() for line in lines)  # drops language switch flags
        return phonemes.replace("_", separator)


def use_inprocess_espeak(tokenizer) -> None:
    """Let a toolkit `TTSTokenizer` phonemize in-process where it would start `espeak-ng` per text.

    Only phonemizers that are exactly the toolkit's `ESpeak` with the espeak-ng backend are replaced (also inside a
    `MultiPhonemizer`), by an `InProcessESpeak` with the same settings; the config is left as it is, so checkpoints
    and their ids do not change. Nothing is replaced when libespeak-ng cannot be loaded.
    """
    if tokenizer is None or load_library() is None:
        return
    phonemizer = getattr(tokenizer, "phonemizer", None)
    if isinstance(phonemizer, MultiPhonemizer):
        for language, inner in phonemizer.lang_to_phonemizer.items():
            phonemizer.lang_to_phonemizer[language] = _in_process(inner)
    elif phonemizer is not None:
        tokenizer.phonemizer = _in_process(phonemizer)


def _in_process(phonemizer):
    if type(phonemizer) is not ESpeak or phonemizer.backend != "espeak-ng":
        return phonemizer
    replacement = InProcessESpeak.__new__(InProcessESpeak)
    replacement.__dict__.update(phonemizer.__dict__)  # language, punctuation, backend and version as they were
    replacement.library_path = None
    return replacement
