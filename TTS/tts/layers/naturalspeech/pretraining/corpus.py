"""Corpus and sup-phonemes of mixed-phoneme pre-training (paper, Section 3.1; Mixed-Phoneme BERT).

The phoneme encoder is pre-trained on a text corpus phonemized exactly as NaturalSpeech phonemizes its training
text: the toolkit's `TTSTokenizer` built from the same text settings (cleaner, espeak phonemizer, language, phoneme
set, blank tokens). This module

1. reads a corpus (one sentence per line, or LJSpeech `id|text[|normalized]` lines),
2. phonemizes it into the encoder's token ids, in worker processes, and caches the ids on disk keyed by a hash of
   the sentences and the tokenizer settings, so a second run never phonemizes again,
3. learns sup-phonemes: BPE merges (Hugging Face `tokenizers`) over the phoneme sequences, each phoneme one unit,
4. aligns every encoder token to a sup-phoneme span and collates padded batches for the masked-LM model.

Blanks: with `add_blank=True` the tokenizer puts a blank id before, between and after the phonemes. A blank between
two phonemes of the same sup-phoneme belongs to that sup-phoneme's span, so spans stay contiguous in the encoder's
sequence. Every other blank (and BOS/EOS) forms a span of its own with the sup-phoneme id `[BLNK]`; such spans are
never masked. Spaces and punctuation are sup-phonemes of their own: BPE never merges across them.
"""

import hashlib
import json
import logging
import multiprocessing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
from torch.utils.data import Dataset
from tqdm import tqdm

from TTS.tts.layers.naturalspeech.pretraining.config import MixedPhonemePretrainingConfig
from TTS.tts.utils.text.tokenizer import TTSTokenizer

logger = logging.getLogger(__name__)

SUP_PAD, SUP_MASK, SUP_BLANK = "[PAD]", "[MASK]", "[BLNK]"
SUP_SPECIAL_TOKENS = [SUP_PAD, SUP_MASK, SUP_BLANK]  # sup-phoneme ids 0, 1, 2
_PHONEME_CHAR_BASE = 0xE000  # phoneme id i is the private-use character chr(0xE000 + i) inside the BPE model


def read_corpus(
    path: str | Path, excluded_id_prefixes: Sequence[str] = ("LJ050-",), corpus_format: str = "auto"
) -> list[str]:
    """Read the sentences of a corpus file.

    Args:
        path: UTF-8 text file.
        excluded_id_prefixes: LJSpeech ids starting with one of these are skipped (LJ050 is the test set).
        corpus_format: "text" (one sentence per line), "ljspeech" (`id|text[|normalized]`, the last column is
            used) or "auto" (LJSpeech when a line holds a `|`).

    Returns:
        The non-empty sentences, in file order.
    """
    sentences = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        is_ljspeech = corpus_format == "ljspeech" or (corpus_format == "auto" and "|" in line)
        if is_ljspeech:
            clip_id, *columns = line.split("|")
            if not columns or clip_id.startswith(tuple(excluded_id_prefixes)):
                continue
            line = columns[-1]
        if line.strip():
            sentences.append(line.strip())
    logger.info("Read %d sentences from %s.", len(sentences), path)
    return sentences


def tokenizer_settings(tokenizer: TTSTokenizer) -> dict:
    """Everything about `tokenizer` that changes its output: the cache key of a phonemized corpus."""
    phonemizer = tokenizer.phonemizer
    return {
        "vocabulary": list(tokenizer.characters.vocab),
        "cleaner": getattr(tokenizer.text_cleaner, "__name__", str(tokenizer.text_cleaner)),
        "phonemizer": phonemizer.name() if phonemizer else None,
        "language": getattr(phonemizer, "language", None),
        "backend": getattr(phonemizer, "backend", None),
        "backend_version": getattr(phonemizer, "backend_version", None),
        "add_blank": tokenizer.add_blank,
        "use_eos_bos": tokenizer.use_eos_bos,
    }


def special_phoneme_ids(tokenizer: TTSTokenizer) -> set[int]:
    """Ids of the vocabulary entries that are not phonemes: pad, blank, BOS and EOS (those the vocabulary has)."""
    chars = tokenizer.characters
    symbols = [chars.pad, chars.blank, chars.bos, chars.eos]
    return {chars.char_to_id(s) for s in symbols if s and s in chars.vocab}


_worker_tokenizer: TTSTokenizer | None = None


def _init_worker(tokenizer: TTSTokenizer) -> None:
    global _worker_tokenizer  # one tokenizer per worker process
    _worker_tokenizer = tokenizer


def _tokenize(sentence: str) -> list[int]:
    return _worker_tokenizer.text_to_ids(sentence)


def phonemize_sentences(sentences: Sequence[str], tokenizer: TTSTokenizer, num_workers: int = 1) -> list[list[int]]:
    """Token ids of each sentence, from `tokenizer.text_to_ids` (espeak runs once per clause, so in parallel).

    Args:
        sentences: Raw sentences.
        tokenizer: The NaturalSpeech tokenizer.
        num_workers: Worker processes; 1 phonemizes in this process.
    """
    progress = {"total": len(sentences), "desc": "phonemizing", "unit": "sent", "mininterval": 5}
    if num_workers <= 1:
        return [tokenizer.text_to_ids(s) for s in tqdm(sentences, **progress)]
    with multiprocessing.get_context("spawn").Pool(num_workers, _init_worker, (tokenizer,)) as pool:
        return list(tqdm(pool.imap(_tokenize, sentences, chunksize=16), **progress))


def prepare_phoneme_corpus(
    sentences: Sequence[str], tokenizer: TTSTokenizer, cache_dir: str | Path, num_workers: int = 1
) -> list[list[int]]:
    """Phonemize `sentences` into token ids, or read them from the cache of an earlier run.

    The cache file `phonemes-<key>.jsonl` (one JSON list of ids per line) is keyed by a SHA-256 of the sentences
    and `tokenizer_settings(tokenizer)`, so any change of text, phoneme set, cleaner or phonemizer misses it.
    """
    payload = json.dumps({"sentences": list(sentences), "tokenizer": tokenizer_settings(tokenizer)}, sort_keys=True)
    key = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]
    path = Path(cache_dir) / f"phonemes-{key}.jsonl"
    if path.is_file():
        logger.info("Loading %d phonemized sentences from the cache %s.", len(sentences), path)
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    logger.info("Phonemizing %d sentences with %d worker(s).", len(sentences), num_workers)
    sequences = phonemize_sentences(sentences, tokenizer, num_workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text("".join(json.dumps(ids) + "\n" for ids in sequences), encoding="utf-8")
    partial.replace(path)  # atomic: an interrupted run never leaves a truncated cache
    logger.info("Cached the phonemized corpus at %s.", path)
    return sequences


class SupPhonemeAlignment(NamedTuple):
    """Sup-phoneme view of one encoder token sequence of length `T_text` with `S` spans.

    Attributes:
        sup_ids: Sup-phoneme id of each token, `[T_text]`.
        span_index: Index of the span holding each token, `[T_text]`; spans are contiguous and in order.
        span_maskable: Whether each span is a real sup-phoneme (not a blank/BOS/EOS span), `[S]`.
    """

    sup_ids: list[int]
    span_index: list[int]
    span_maskable: list[bool]


class SupPhonemeTokenizer:
    """Byte-pair merges over phoneme sequences: the sup-phonemes of mixed-phoneme pre-training.

    Args:
        bpe: A trained Hugging Face BPE tokenizer over phoneme characters (see `train`).
        vocabulary: The phoneme vocabulary (`TTSTokenizer.characters.vocab`); ids are indices.
        special_ids: Ids of the vocabulary's pad, blank, BOS and EOS symbols (see `special_phoneme_ids`).
    """

    def __init__(self, bpe: Tokenizer, vocabulary: Sequence[str], special_ids: Iterable[int]):
        self.bpe = bpe
        self.vocabulary = list(vocabulary)
        self.special_phoneme_ids = set(special_ids)
        self.blank_sup_id = bpe.token_to_id(SUP_BLANK)
        self.pad_sup_id = bpe.token_to_id(SUP_PAD)
        self.mask_sup_id = bpe.token_to_id(SUP_MASK)

    @property
    def num_sup_phonemes(self) -> int:
        return self.bpe.get_vocab_size()

    @classmethod
    def train(
        cls,
        sequences: Iterable[Sequence[int]],
        vocabulary: Sequence[str],
        special_ids: Iterable[int],
        vocab_size: int,
        boundary_symbols: str,
        min_frequency: int = 2,
    ) -> "SupPhonemeTokenizer":
        """Learn BPE merges from phoneme id sequences.

        Args:
            sequences: Encoder token ids (blanks and BOS/EOS are dropped before training).
            vocabulary: The phoneme vocabulary.
            special_ids: Ids of the pad, blank, BOS and EOS symbols; they are not phonemes.
            vocab_size: Size of the sup-phoneme vocabulary, including the 3 special tokens and all phonemes.
            boundary_symbols: Symbols that are never merged with a neighbour (space, punctuation).
            min_frequency: Least count of a pair to be merged.
        """
        vocabulary, specials = list(vocabulary), set(special_ids)
        phoneme_chars = [chr(_PHONEME_CHAR_BASE + i) for i in range(len(vocabulary)) if i not in specials]
        boundary_chars = "".join(
            chr(_PHONEME_CHAR_BASE + vocabulary.index(s)) for s in boundary_symbols if s in vocabulary
        )
        bpe = Tokenizer(models.BPE())
        if boundary_chars:
            bpe.pre_tokenizer = pre_tokenizers.Split(Regex(f"[{boundary_chars}]"), behavior="isolated")
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SUP_SPECIAL_TOKENS,
            initial_alphabet=phoneme_chars,  # every phoneme is a base unit: no sequence is ever unknown
            show_progress=False,
        )
        strings = ("".join(chr(_PHONEME_CHAR_BASE + t) for t in seq if t not in specials) for seq in sequences)
        bpe.train_from_iterator(strings, trainer=trainer)
        logger.info("Learned %d sup-phonemes (asked for %d).", bpe.get_vocab_size(), vocab_size)
        return cls(bpe, vocabulary, specials)

    def to_json(self) -> str:
        """The BPE model and the phoneme vocabulary as one JSON document."""
        data = {
            "vocabulary": self.vocabulary,
            "special_ids": sorted(self.special_phoneme_ids),
            "bpe": json.loads(self.bpe.to_str()),
        }
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "SupPhonemeTokenizer":
        """The tokenizer of a `to_json` document."""
        data = json.loads(text)
        return cls(Tokenizer.from_str(json.dumps(data["bpe"])), data["vocabulary"], data["special_ids"])

    def to_tensor(self) -> torch.Tensor:
        """`to_json` as UTF-8 bytes in a uint8 tensor: a buffer, so every checkpoint of the model carries it."""
        return torch.frombuffer(bytearray(self.to_json().encode("utf-8")), dtype=torch.uint8)

    @classmethod
    def from_tensor(cls, data: torch.Tensor) -> "SupPhonemeTokenizer":
        """The tokenizer of a `to_tensor` buffer."""
        return cls.from_json(data.detach().cpu().numpy().tobytes().decode("utf-8"))

    def save(self, path: str | Path) -> None:
        """Write the BPE model and the phoneme vocabulary as one JSON file."""
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "SupPhonemeTokenizer":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def segment(self, phoneme_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """Split a blank-free phoneme sequence into sup-phonemes.

        Returns:
            The sup-phoneme ids and the number of phonemes each covers; the lengths sum to `len(phoneme_ids)`.
        """
        encoding = self.bpe.encode("".join(chr(_PHONEME_CHAR_BASE + t) for t in phoneme_ids))
        lengths = [len(token) for token in encoding.tokens]
        if sum(lengths) != len(phoneme_ids):
            msg = f"BPE segmentation covers {sum(lengths)} of {len(phoneme_ids)} phonemes: unknown phoneme ids."
            raise ValueError(msg)
        return list(encoding.ids), lengths

    def decode(self, sup_ids: Sequence[int]) -> list[int]:
        """The phoneme ids spelled by a sequence of sup-phoneme ids (the inverse of `segment`)."""
        return [ord(c) - _PHONEME_CHAR_BASE for sup_id in sup_ids for c in self.bpe.id_to_token(sup_id)]

    def align(self, token_ids: Sequence[int]) -> SupPhonemeAlignment:
        """Assign every encoder token (phonemes and blanks) to a contiguous sup-phoneme span; see the module notes."""
        phoneme_pos = [i for i, t in enumerate(token_ids) if t not in self.special_phoneme_ids]
        sup_ids, lengths = self.segment([token_ids[i] for i in phoneme_pos])
        owner: list[int | None] = [None] * len(token_ids)  # index into `sup_ids` of the span holding each token
        start = 0
        for j, length in enumerate(lengths):
            first, last = phoneme_pos[start], phoneme_pos[start + length - 1]
            owner[first : last + 1] = [j] * (last - first + 1)
            start += length
        token_sup, span_index, span_maskable = [], [], []
        for i, j in enumerate(owner):
            if i == 0 or j is None or j != owner[i - 1]:
                span_maskable.append(j is not None)
            span_index.append(len(span_maskable) - 1)
            token_sup.append(self.blank_sup_id if j is None else sup_ids[j])
        return SupPhonemeAlignment(token_sup, span_index, span_maskable)


class PhonemeMLMDataset(Dataset):
    """Encoder token sequences with their sup-phoneme alignment; `collate` pads a batch.

    Args:
        sequences: Encoder token ids of each sentence (from `prepare_phoneme_corpus`).
        sup_phonemes: The sup-phoneme tokenizer.
        pad_id: Phoneme id used for padding.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], sup_phonemes: SupPhonemeTokenizer, pad_id: int):
        self.sequences = [list(s) for s in sequences if len(s) > 0]
        self.alignments = [sup_phonemes.align(s) for s in self.sequences]
        self.pad_id = pad_id
        self.pad_sup_id = sup_phonemes.pad_sup_id

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[list[int], SupPhonemeAlignment]:
        return self.sequences[index], self.alignments[index]

    def collate(self, items: list[tuple[list[int], SupPhonemeAlignment]]) -> dict[str, torch.Tensor]:
        """Pad a batch.

        Shapes:
            - tokens, sup_ids, span_index: :math:`[B, T_text]` (padding: pad id, `[PAD]`, -1)
            - token_lengths: :math:`[B]`
            - span_maskable: :math:`[B, S]` (False on padding)
        """
        max_len = max(len(tokens) for tokens, _ in items)
        max_spans = max(len(a.span_maskable) for _, a in items)
        tokens = torch.full((len(items), max_len), self.pad_id, dtype=torch.long)
        sup_ids = torch.full((len(items), max_len), self.pad_sup_id, dtype=torch.long)
        span_index = torch.full((len(items), max_len), -1, dtype=torch.long)
        span_maskable = torch.zeros((len(items), max_spans), dtype=torch.bool)
        for b, (ids, alignment) in enumerate(items):
            tokens[b, : len(ids)] = torch.tensor(ids)
            sup_ids[b, : len(ids)] = torch.tensor(alignment.sup_ids)
            span_index[b, : len(ids)] = torch.tensor(alignment.span_index)
            span_maskable[b, : len(alignment.span_maskable)] = torch.tensor(alignment.span_maskable)
        lengths = torch.tensor([len(ids) for ids, _ in items], dtype=torch.long)
        return {
            "tokens": tokens,
            "token_lengths": lengths,
            "sup_ids": sup_ids,
            "span_index": span_index,
            "span_maskable": span_maskable,
        }


class PretrainingData(NamedTuple):
    """What a pre-training run needs: the NaturalSpeech tokenizer, the sup-phonemes and the token id samples."""

    tokenizer: TTSTokenizer
    sup_phonemes: SupPhonemeTokenizer
    train_samples: list[list[int]]
    eval_samples: list[list[int]]


def prepare_pretraining_data(config: MixedPhonemePretrainingConfig) -> PretrainingData:
    """Read, phonemize (cached) and split the corpus of `config`, and learn (or load) its sup-phonemes.

    Also stores the phoneme vocabulary in `config.phoneme_vocabulary`, which every checkpoint then carries.
    """
    tokenizer, _ = TTSTokenizer.init_from_config(config.tokenizer_config())
    config.phoneme_vocabulary = list(tokenizer.characters.vocab)
    sentences = read_corpus(config.corpus_path, config.excluded_id_prefixes, config.corpus_format)
    sentences = sentences[: config.max_sentences] if config.max_sentences else sentences
    sequences = prepare_phoneme_corpus(sentences, tokenizer, config.phoneme_cache_path, config.num_phonemize_workers)
    num_eval = min(config.num_eval_sentences, len(sequences) // 10)
    train_samples, eval_samples = sequences[: len(sequences) - num_eval], sequences[len(sequences) - num_eval :]
    sup_phonemes = _cached_sup_phonemes(config, tokenizer, train_samples)
    return PretrainingData(tokenizer, sup_phonemes, train_samples, eval_samples)


def _cached_sup_phonemes(
    config: MixedPhonemePretrainingConfig,
    tokenizer: TTSTokenizer,
    train_samples: list[list[int]],
) -> SupPhonemeTokenizer:
    boundary = tokenizer.characters.punctuations + " "
    payload = json.dumps([train_samples, config.phoneme_vocabulary, boundary, config.sup_phoneme_vocab_size,
                          config.sup_phoneme_min_frequency])  # fmt: skip
    path = Path(config.phoneme_cache_path) / f"sup_phonemes-{hashlib.sha256(payload.encode()).hexdigest()[:20]}.json"
    if path.is_file():
        logger.info("Loading sup-phonemes from %s.", path)
        return SupPhonemeTokenizer.load(path)
    sup_phonemes = SupPhonemeTokenizer.train(
        train_samples,
        config.phoneme_vocabulary,
        special_phoneme_ids(tokenizer),
        config.sup_phoneme_vocab_size,
        boundary_symbols=boundary,
        min_frequency=config.sup_phoneme_min_frequency,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sup_phonemes.save(path)
    return sup_phonemes
