"""Tests of mixed-phoneme pre-training: corpus cache, sup-phoneme BPE, span masking, learning, Trainer checkpoint."""

import dataclasses
import importlib.util
import itertools
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests import REPO_ROOT, SHARED_DATA, make_tiny_config
from TTS.config.shared_configs import BaseTrainingConfig
from TTS.tts.layers.naturalspeech.phoneme_encoder import PhonemeEncoder
from TTS.tts.layers.naturalspeech.pretraining import corpus as corpus_module
from TTS.tts.layers.naturalspeech.pretraining.config import MixedPhonemePretrainingConfig
from TTS.tts.layers.naturalspeech.pretraining.corpus import (
    PhonemeMLMDataset,
    SupPhonemeTokenizer,
    prepare_phoneme_corpus,
    read_corpus,
    special_phoneme_ids,
)
from TTS.tts.layers.naturalspeech.pretraining.model import (
    MixedPhonemePretraining,
    SupPhonemeSpanMasker,
    load_pretrained_encoder,
)
from TTS.tts.utils.text.tokenizer import TTSTokenizer

TRANSCRIPTS = SHARED_DATA / "ljspeech_transcripts.txt"
NUM_SENTENCES = 400
TINY_ENCODER = {
    "hidden_channels": 64,
    "hidden_channels_ffn_phoneme_encoder": 128,
    "num_heads_phoneme_encoder": 2,
    "num_layers_phoneme_encoder": 2,
    "dropout_p_phoneme_encoder": 0.0,
}


def _tokenizer() -> TTSTokenizer:
    return TTSTokenizer.init_from_config(MixedPhonemePretrainingConfig().tokenizer_config())[0]


@pytest.fixture(scope="module")
def tokenizer() -> TTSTokenizer:
    return _tokenizer()


@pytest.fixture(scope="module")
def transcripts() -> Path:
    if not TRANSCRIPTS.is_file():
        pytest.skip(f"LJSpeech transcripts not found at {TRANSCRIPTS}")
    return TRANSCRIPTS


@pytest.fixture(scope="module")
def corpus(transcripts, tokenizer, tmp_path_factory) -> list[list[int]]:
    """Token ids of the first few hundred LJSpeech sentences (phonemized once per test session)."""
    sentences = read_corpus(transcripts)[:NUM_SENTENCES]
    return prepare_phoneme_corpus(sentences, tokenizer, tmp_path_factory.mktemp("cache"), num_workers=2)


@pytest.fixture(scope="module")
def sup_phonemes(corpus, tokenizer) -> SupPhonemeTokenizer:
    boundary = tokenizer.characters.punctuations + " "
    vocab = tokenizer.characters.vocab
    return SupPhonemeTokenizer.train(
        corpus[:350], vocab, special_phoneme_ids(tokenizer), 300, boundary_symbols=boundary
    )


def test_config_mirrors_the_naturalspeech_text_settings(tmp_path):
    tts_config = make_tiny_config(use_phonemes=True, phoneme_language="en-us", phonemizer="espeak")
    tts_config.text_cleaner = "english_cleaners"
    config = MixedPhonemePretrainingConfig.from_naturalspeech_config(tts_config, epochs=3)
    assert config.num_layers_phoneme_encoder == tts_config.model_args.num_layers_phoneme_encoder == 1
    assert config.hidden_channels == 16 and config.epochs == 3
    ours, _ = TTSTokenizer.init_from_config(config.tokenizer_config())
    theirs, _ = TTSTokenizer.init_from_config(tts_config)
    assert ours.characters.vocab == theirs.characters.vocab
    assert (ours.add_blank, ours.phonemizer.name(), ours.text_cleaner) == (True, "espeak", theirs.text_cleaner)
    # the Args docstring documents every field, and a saved config loads back equal
    fields = {f.name for f in dataclasses.fields(MixedPhonemePretrainingConfig)}
    own = fields - {f.name for f in dataclasses.fields(BaseTrainingConfig)}
    documented = {line.split(" (")[0].strip() for line in MixedPhonemePretrainingConfig.__doc__.splitlines()}
    assert own <= documented, own - documented
    config.save_json(str(tmp_path / "config.json"))
    loaded = MixedPhonemePretrainingConfig()
    loaded.load_json(str(tmp_path / "config.json"))
    assert loaded == config


def test_read_corpus_excludes_the_test_chapter(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text("LJ001-0001|Raw one|Norm one\nLJ050-0001|Held out.\nLJ002-0002|Two.\n\n", encoding="utf-8")
    assert read_corpus(path) == ["Norm one", "Two."]
    text = tmp_path / "plain.txt"
    text.write_text("First sentence.\n\nSecond one.\n", encoding="utf-8")
    assert read_corpus(text) == ["First sentence.", "Second one."]


def test_second_preparation_reads_the_cache(tokenizer, tmp_path, monkeypatch):
    sentences = ["Printing, in the only sense.", "With which we are at present concerned."]
    calls = []
    original = corpus_module.phonemize_sentences

    def spy(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(corpus_module, "phonemize_sentences", spy)
    first = prepare_phoneme_corpus(sentences, tokenizer, tmp_path, num_workers=1)
    assert len(calls) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the phonemizer ran again")

    monkeypatch.setattr(tokenizer.phonemizer, "phonemize", fail)
    second = prepare_phoneme_corpus(sentences, tokenizer, tmp_path, num_workers=1)
    assert len(calls) == 1 and second == first
    assert first[0] == _tokenizer().text_to_ids(sentences[0])
    # another corpus misses the cache
    monkeypatch.undo()
    monkeypatch.setattr(corpus_module, "phonemize_sentences", spy)
    prepare_phoneme_corpus(sentences[:1], tokenizer, tmp_path, num_workers=1)
    assert len(calls) == 2


def test_sup_phonemes_partition_every_sequence(corpus, sup_phonemes, tokenizer):
    specials = special_phoneme_ids(tokenizer)
    space = tokenizer.characters.char_to_id(" ")
    merged = 0
    for tokens in corpus:
        phonemes = [t for t in tokens if t not in specials]
        sup_ids, lengths = sup_phonemes.segment(phonemes)
        assert sum(lengths) == len(phonemes) and all(n >= 1 for n in lengths)
        assert sup_phonemes.decode(sup_ids) == phonemes
        merged += sum(n > 1 for n in lengths)
        alignment = sup_phonemes.align(tokens)
        spans = alignment.span_index
        assert spans[0] == 0 and all(b - a in (0, 1) for a, b in itertools.pairwise(spans))
        assert len(alignment.span_maskable) == spans[-1] + 1
        for s, maskable in enumerate(alignment.span_maskable):
            members = [i for i, x in enumerate(spans) if x == s]
            span_tokens = [tokens[i] for i in members]
            span_sups = {alignment.sup_ids[i] for i in members}
            assert len(span_sups) == 1
            if maskable:  # a real sup-phoneme: it spells exactly the phonemes of its tokens
                assert sup_phonemes.decode(list(span_sups)) == [t for t in span_tokens if t not in specials]
                assert span_tokens[0] not in specials and span_tokens[-1] not in specials
            else:
                assert span_tokens == [tokenizer.blank_id] and span_sups == {sup_phonemes.blank_sup_id}
        for i, t in enumerate(tokens):  # every space is a sup-phoneme of its own
            if t == space:
                assert sup_phonemes.decode([alignment.sup_ids[i]]) == [space]
    assert merged > len(corpus)  # BPE did merge phonemes
    saved = SupPhonemeTokenizer.load(_save(sup_phonemes))
    assert saved.align(corpus[0]) == sup_phonemes.align(corpus[0])


def _save(sup_phonemes: SupPhonemeTokenizer) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "sup.json"
    sup_phonemes.save(path)
    return path


def _synthetic_batch(tokenizer: TTSTokenizer, num_items: int = 1500) -> tuple[dict, SupPhonemeTokenizer]:
    """Blank-interspersed sequences of random 'words' over the real phoneme ids, of very different lengths."""
    rng = random.Random(0)
    specials = special_phoneme_ids(tokenizer)
    phonemes = [i for i in range(len(tokenizer.characters.vocab)) if i not in specials]
    space = tokenizer.characters.char_to_id(" ")
    words = [[rng.choice(phonemes) for _ in range(rng.randint(1, 6))] for _ in range(60)]
    sequences = []
    for _ in range(num_items):
        ids = []
        for _ in range(rng.randint(1, 20)):
            ids += [*rng.choice(words), space]
        sequences.append(tokenizer.intersperse_blank_char(ids[:-1]))
    sup = SupPhonemeTokenizer.train(sequences, tokenizer.characters.vocab, specials, 200, boundary_symbols=" ")
    dataset = PhonemeMLMDataset(sequences, sup, tokenizer.pad_id)
    return dataset.collate([dataset[i] for i in range(len(dataset))]), sup


def test_masking_selects_15_percent_of_whole_spans_and_never_padding(tokenizer):
    batch, sup = _synthetic_batch(tokenizer)
    masker = SupPhonemeSpanMasker(0.15, 1.0, 0.0, tokenizer.pad_id, sup.mask_sup_id, [4, 5], sup.num_sup_phonemes)
    masked = masker(batch, torch.Generator().manual_seed(0))
    maskable = batch["span_maskable"]
    fraction = masked.selected_spans[maskable].float().mean().item()
    assert abs(fraction - 0.15) <= 0.02, fraction
    assert not masked.selected_spans[~maskable].any()  # blank and padding spans are never selected
    padding = batch["span_index"] < 0
    assert padding.any() and not masked.selected[padding].any()
    assert torch.equal(masked.tokens[padding], batch["tokens"][padding])
    # a span is masked entirely or not at all
    per_token = masked.selected_spans.gather(1, batch["span_index"].clamp(min=0)) & ~padding
    assert torch.equal(per_token, masked.selected)
    assert (masked.tokens[masked.selected] == tokenizer.pad_id).all()
    assert (masked.sup_ids[masked.selected] == sup.mask_sup_id).all()
    assert torch.equal(masked.tokens[~masked.selected], batch["tokens"][~masked.selected])
    assert torch.equal(masked.sup_ids[~masked.selected], batch["sup_ids"][~masked.selected])
    # the BERT rule: of the selected spans about 10% are left unchanged
    bert = SupPhonemeSpanMasker(0.15, 0.8, 0.1, tokenizer.pad_id, sup.mask_sup_id, [4, 5], sup.num_sup_phonemes)
    masked = bert(batch, torch.Generator().manual_seed(1))
    first = batch["span_index"].clamp(min=0)
    kept = (masked.sup_ids == batch["sup_ids"]) & masked.selected
    kept_spans = torch.zeros_like(masked.selected_spans).scatter_(1, first, kept) & masked.selected_spans
    assert abs(kept_spans.sum().item() / masked.selected_spans.sum().item() - 0.1) < 0.03


def _tiny_config(**overrides) -> MixedPhonemePretrainingConfig:
    values = TINY_ENCODER | {"lr": 2e-3, "lr_scheduler": None, "mask_token_prob": 1.0, "random_token_prob": 0.0}
    return MixedPhonemePretrainingConfig(**(values | overrides))


@pytest.fixture
def one_thread():
    """Two threads on 2 cores shared with other jobs run ~7x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pretraining_beats_the_majority_baseline(corpus, sup_phonemes, tokenizer, one_thread):
    torch.manual_seed(0)
    train, held_out = corpus[:350], corpus[350:]  # the sup-phonemes were learned on `train` only
    config = _tiny_config(batch_size=8, eval_batch_size=len(held_out), lr=3e-3)
    model = MixedPhonemePretraining(config, sup_phonemes, pad_id=tokenizer.pad_id)
    criterion, optimizer = model.get_criterion(), model.get_optimizer()
    eval_batch = next(iter(model.get_data_loader(config, is_eval=True, samples=held_out)))

    def accuracy() -> float:
        model.eval()
        _, losses = model.eval_step(eval_batch, criterion)
        model.train()
        return losses["acc_phoneme"].item()

    before = accuracy()
    loader = model.get_data_loader(config, samples=train)
    step = 0
    while step < 200:
        for batch in itertools.islice(loader, 200 - step):
            _, losses = model.train_step(batch, criterion)
            optimizer.zero_grad()
            losses["loss"].backward()
            optimizer.step()
            step += 1
    after = accuracy()
    phonemes = [t for seq in held_out for t in seq if t not in special_phoneme_ids(tokenizer)]
    baseline = Counter(phonemes).most_common(1)[0][1] / len(phonemes)
    print(f"masked phoneme accuracy: {before:.3f} -> {after:.3f}; majority baseline {baseline:.3f}")
    assert after >= baseline + 0.15


def _load_recipe():
    path = REPO_ROOT / "recipes/ljspeech/naturalspeech/pretrain_phoneme_encoder.py"
    spec = importlib.util.spec_from_file_location("pretrain_phoneme_encoder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pretraining_run(transcripts, tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A short pre-training run of the recipe through the Trainer: its newest checkpoint and the trained encoder."""
    root = tmp_path_factory.mktemp("pretraining")
    corpus_path = root / "metadata.csv"
    corpus_path.write_text("\n".join(transcripts.read_text(encoding="utf-8").splitlines()[:40]), encoding="utf-8")
    recipe = _load_recipe()
    config = recipe.make_config(root / "run", corpus_path, epochs=1, batch_size=8, eval_batch_size=8, **TINY_ENCODER)
    config.num_phonemize_workers = 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see `one_thread`
    try:
        model = recipe.run(config)
    finally:
        torch.set_num_threads(threads)
    checkpoints = sorted((root / "run").rglob("*.pth"))
    assert checkpoints, "the Trainer wrote no checkpoint"
    checkpoint = max(checkpoints, key=lambda p: p.stat().st_mtime)
    return checkpoint, {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}


def test_recipe_trainer_run_writes_a_loadable_encoder(pretraining_run):
    checkpoint, expected = pretraining_run
    vocabulary = _tokenizer().characters.vocab
    encoder = PhonemeEncoder(len(vocabulary), 64, 128, 2, 2, 3, 0.0)
    load_pretrained_encoder(encoder, str(checkpoint), vocabulary)
    assert encoder.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in encoder.state_dict().items())

    swapped = list(vocabulary)
    swapped[10], swapped[11] = swapped[11], swapped[10]
    with pytest.raises(ValueError, match=r"reordered: 'i' \(id 11 in the checkpoint, 10 in the model\), 'h' \(id 10"):
        load_pretrained_encoder(encoder, str(checkpoint), swapped)
    with pytest.raises(
        ValueError, match=r"missing from the checkpoint: \['ж'\].*not in the model's vocabulary: \['ʑ'\]"
    ):
        load_pretrained_encoder(encoder, str(checkpoint), [("ж" if s == "ʑ" else s) for s in vocabulary])

    # the NaturalSpeech model starts from the checkpoint through its one config field
    from TTS.tts.models.naturalspeech import Naturalspeech

    naturalspeech = Naturalspeech(_tts_config(checkpoint))
    naturalspeech.load_pretrained_encoder()
    loaded = naturalspeech.phoneme_encoder.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.items())
    tts_config = make_tiny_config(
        model_args={**TINY_ENCODER, "pretrained_encoder_path": str(checkpoint)}, use_phonemes=False
    )
    with pytest.raises(ValueError, match="missing from the checkpoint"):
        Naturalspeech(tts_config).load_pretrained_encoder()


##########################
# the pre-trained encoder in NaturalSpeech training runs
##########################


def _tts_config(pretrained: Path, output_path: Path | None = None):
    config = make_tiny_config(
        model_args={**TINY_ENCODER, "pretrained_encoder_path": str(pretrained)},
        use_phonemes=True,
        phoneme_language="en-us",
        phonemizer="espeak",
        text_cleaner="english_cleaners",
    )
    if output_path is not None:
        config.output_path = str(output_path)
    return config


def _trainer(config, **trainer_args):
    from trainer import Trainer, TrainerArgs

    from TTS.tts.models.naturalspeech import Naturalspeech

    model = Naturalspeech(config)
    args = TrainerArgs(**trainer_args)
    return Trainer(args, config, config.output_path, model=model, parse_command_line_args=False, gpu=None), model


def _encoder(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.phoneme_encoder.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


def _trained_run(pretraining_run, tmp_path) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """A NaturalSpeech run started from a copy of the pre-trained encoder, with a checkpoint of "trained" weights.

    Returns the run folder, the copy of the pre-training checkpoint and the encoder weights in the checkpoint.
    """
    pretrained = tmp_path / "pretrained_encoder.pth"
    shutil.copy(pretraining_run[0], pretrained)
    trainer, model = _trainer(_tts_config(pretrained, tmp_path / "runs"))
    with torch.no_grad():  # what training does: the encoder moves away from its initialisation
        for parameter in model.phoneme_encoder.parameters():
            parameter.add_(0.5)
    trainer.save_checkpoint()
    return trainer.output_path, pretrained, _encoder(model)


def test_training_from_scratch_starts_from_the_pretrained_encoder(pretraining_run, tmp_path):
    from TTS.tts.models.naturalspeech import Naturalspeech

    checkpoint, expected = pretraining_run
    config = _tts_config(checkpoint, tmp_path)
    assert not _equal(_encoder(Naturalspeech(config)), expected)  # building the model does not read the file
    trainer, model = _trainer(config)
    assert _equal(_encoder(model), expected)
    # loaded in place: the optimizer updates the very parameters that hold the pre-trained weights
    optimized = {id(p) for group in trainer.optimizer[1].param_groups for p in group["params"]}
    assert all(id(p) in optimized for p in model.phoneme_encoder.parameters())


@pytest.mark.parametrize("how", ["continue_path", "restore_path"])
def test_resumed_or_restored_run_keeps_its_trained_encoder(pretraining_run, tmp_path, how):
    run_dir, pretrained, trained = _trained_run(pretraining_run, tmp_path)
    assert not _equal(trained, pretraining_run[1])
    pretrained.unlink()  # the pre-training file is not read again: it may be gone
    if how == "continue_path":
        _, model = _trainer(_tts_config(pretrained, tmp_path / "unused"), continue_path=str(run_dir))
    else:
        restore_path = str(run_dir / "checkpoint_0.pth")
        _, model = _trainer(_tts_config(pretrained, tmp_path / "finetune"), restore_path=restore_path)
    assert _equal(_encoder(model), trained)


def test_trained_run_synthesizes_without_the_pretraining_file(pretraining_run, tmp_path):
    from TTS.config import load_config
    from TTS.tts.models import setup_model

    run_dir, pretrained, trained = _trained_run(pretraining_run, tmp_path)
    pretrained.unlink()  # a published run: config.json still names the pre-training checkpoint
    config = load_config(str(run_dir / "config.json"))
    assert config.model_args.pretrained_encoder_path == str(pretrained)
    model = setup_model(config)
    model.load_checkpoint(config, str(run_dir / "checkpoint_0.pth"), eval=True)
    assert _equal(_encoder(model), trained)
    wav = model.synthesize("Be a voice, not an echo.")["wav"]
    assert wav.ndim == 1 and wav.size > 0
