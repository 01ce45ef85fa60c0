"""Training half of the learning benchmark (`benchmarks/learning/`): budgets, resume, synthesis from text.

Tiny models on 6 real LJSpeech clips, budgets of a few CPU-seconds; training runs in subprocesses as in the
benchmark (the Trainer ends its process after the interrupt that stops a run).
"""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

LEARNING_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "learning"
sys.path.insert(0, str(LEARNING_DIR))

import models  # noqa: E402
import synthesize  # noqa: E402
import train_budget  # noqa: E402

TRAIN_IDS = ("LJ001-0002", "LJ001-0005", "LJ001-0008", "LJ001-0010", "LJ001-0012", "LJ001-0014")
HELDOUT_IDS = ("LJ001-0016", "LJ001-0020")  # renamed LJ050-*: the corpus' held-out ids
TINY = {"size": "tiny", "batch_size": 2, "threads": 1, "warmup_steps": 2, "timeout": 600}


def write_split(split_dir: Path, source: Path, ids: dict[str, str], texts: dict[str, str]) -> None:
    (split_dir / "wavs").mkdir(parents=True)
    lines = []
    for new_id, old_id in ids.items():
        os.symlink(source / "wavs" / f"{old_id}.wav", split_dir / "wavs" / f"{new_id}.wav")
        lines.append(f"{new_id}|{texts[old_id]}|{texts[old_id]}")
    (split_dir / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory, ljspeech_dir) -> Path:
    """The benchmark corpus layout with 6 training and 2 held-out real clips."""
    root = tmp_path_factory.mktemp("corpus")
    texts = {}
    for line in (ljspeech_dir / "metadata.csv").read_text(encoding="utf-8").splitlines():
        clip_id, _, text = line.split("|")
        texts[clip_id] = text
    write_split(root / "train", ljspeech_dir, {i: i for i in TRAIN_IDS}, texts)
    write_split(root / "heldout", ljspeech_dir, {i.replace("LJ001", "LJ050"): i for i in HELDOUT_IDS}, texts)
    (root / "COMPLETE").write_text("", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench")


def test_bad_input_gives_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown run 'nope'.*naturalspeech, vits"):
        train_budget.train_budget("nope", 1.0, corpus_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"No complete benchmark corpus.*COMPLETE marker"):
        train_budget.train_budget("vits", 1.0, corpus_dir=tmp_path)
    with pytest.raises(ValueError, match="needs pretrained_encoder_path"):
        models.make_config("ns-pretrained-encoder", tmp_path, tmp_path)
    with pytest.raises(ValueError, match="must be positive"):
        train_budget.wanted_marks(0)


def test_marks_up_to_the_budget(tmp_path):
    assert train_budget.wanted_marks(60) == [15, 30, 60]
    assert train_budget.wanted_marks(45, [15, 30, 60]) == [15, 30, 45]
    (tmp_path / "budgets.jsonl").write_text(json.dumps({"budget_minutes": 15.0}) + "\n", encoding="utf-8")
    assert train_budget.pending_marks(tmp_path, 60) == [30, 60]


def test_budget_clock_divides_cpu_time_by_threads():
    clock = train_budget.BudgetClock(threads=2, cpu_seconds=10.0, wall_seconds=5.0)
    assert clock.cpu_seconds == 10.0  # not counting before the first step
    before = train_budget.process_cpu_seconds()
    clock.start()
    while train_budget.process_cpu_seconds() - before < 0.3:  # burn CPU in this one thread
        pass
    after = train_budget.process_cpu_seconds()
    elapsed = clock.cpu_seconds - 10.0
    assert 0.5 * (after - before) - 0.02 <= elapsed <= 0.5 * (train_budget.process_cpu_seconds() - before) + 0.02
    assert clock.wall_seconds > 5.0


def test_matched_sizes_and_tokenizer(tmp_path):
    """NaturalSpeech and VITS of the benchmark size: inference parameters within 10%, the same tokens."""
    ns_config, vits_config = (models.make_config(run, tmp_path, tmp_path) for run in ("naturalspeech", "vits"))
    for config in (ns_config, vits_config):
        config.model_args.init_discriminator = False  # not counted; faster to build
    ns, vits = models.build_model(ns_config), models.build_model(vits_config)
    ns_params, vits_params = models.parameter_counts(ns), models.parameter_counts(vits)
    assert 3e6 <= ns_params["inference_params"] <= 3.5e6  # "medium": the README's 3.22M
    assert abs(ns_params["inference_params"] / vits_params["inference_params"] - 1) <= 0.10
    text = "Printing, in the only sense with which we are at present concerned."
    assert ns.tokenizer.text_to_ids(text) == vits.tokenizer.text_to_ids(text)
    assert ns.config.batch_size == vits.config.batch_size and ns.config.lr_gen == vits.config.lr_gen
    assert ns.args.spec_segment_size == vits.args.spec_segment_size


def test_budget_stops_training_then_a_larger_budget_resumes(tiny_corpus, bench):
    run_dir = train_budget.run_dir_of("naturalspeech", bench)
    log = bench / "naturalspeech.log"
    first = train_budget.train_budget(
        "naturalspeech", 0.03, marks=[0.01], corpus_dir=tiny_corpus, bench_dir=bench, log_path=log, **TINY
    )
    assert [r["budget_minutes"] for r in first] == [0.01, 0.03]
    for record in first:
        assert record["cpu_minutes"] >= record["budget_minutes"]
        assert record["step"] >= 1 and record["run"] == "naturalspeech" and record["git_commit"]
        assert (run_dir / record["checkpoint"]).is_file()
    state = json.loads((run_dir / "state.json").read_text())
    assert state["step"] == first[-1]["step"]  # stopped at the step that reached the budget
    assert state["cpu_seconds"] >= 0.03 * 60
    mark_file = run_dir / "budget_0.01min.pth"
    mark_bytes = mark_file.read_bytes()

    second = train_budget.train_budget(
        "naturalspeech", 0.12, marks=[0.01], corpus_dir=tiny_corpus, bench_dir=bench, log_path=log, **TINY
    )
    assert [r["budget_minutes"] for r in second] == [0.01, 0.03, 0.12]
    assert second[-1]["step"] > first[-1]["step"]
    assert second[-1]["cpu_minutes"] >= 0.12 > first[-1]["cpu_minutes"]
    assert second[-1]["wall_minutes"] > first[-1]["wall_minutes"]
    assert mark_file.read_bytes() == mark_bytes  # earlier marks are kept as they were
    early, late = (torch.load(run_dir / f"budget_{m}min.pth", weights_only=True) for m in ("0.01", "0.12"))
    assert not any(k.startswith("disc.") for k in late["model"])  # weights only, no discriminator
    assert late["budget"]["step"] == second[-1]["step"]
    changed = [k for k, v in late["model"].items() if v.is_floating_point() and not torch.equal(v, early["model"][k])]
    assert len(changed) > len(late["model"]) // 2  # training went on from the first session's weights
    assert "Continuing naturalspeech from step" in log.read_text()
    state = json.loads((run_dir / "state.json").read_text())
    assert state["sessions"] == 2 and state["cpu_seconds"] >= 0.12 * 60
    (trainer_dir,) = [p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("naturalspeech-")]
    assert len(list(trainer_dir.glob("checkpoint_*.pth"))) <= 2
    assert "loss_mel" in (trainer_dir / "trainer_0_log.txt").read_text()  # the training losses are logged

    # the same budget again trains nothing
    again = train_budget.train_budget(
        "naturalspeech", 0.12, corpus_dir=tiny_corpus, bench_dir=bench, log_path=log, **TINY
    )
    assert again == second


def untrained_budget_checkpoint(run: str, corpus_dir: Path, bench: Path, minutes: float) -> None:
    """A budget file and config.json as `train_budget` writes them, of an untrained model (saves a training run)."""
    run_dir = train_budget.run_dir_of(run, bench)
    run_dir.mkdir(parents=True)
    config = models.make_config(run, corpus_dir, run_dir, size="tiny", batch_size=2)
    model = models.build_model(config)
    checkpoint = train_budget.budget_checkpoint_path(run_dir, minutes)
    record = {"run": run, "budget_minutes": minutes, "cpu_minutes": minutes, "wall_minutes": minutes, "step": 0}
    record.update(epoch=0, threads=1, checkpoint=checkpoint.name, git_commit="untrained", time="")
    train_budget.save_budget_checkpoint(model, config, checkpoint, record)
    train_budget.inference_config(config).save_json(str(run_dir / train_budget.CONFIG_FILE))
    with (run_dir / train_budget.BUDGETS_FILE).open("a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")


@pytest.mark.parametrize("run", ["naturalspeech", "vits"])
def test_synthesis_from_text_durations_match_the_waveform(run, tiny_corpus, bench):
    run_dir = train_budget.run_dir_of(run, bench)
    minutes = 0.01
    if not (run_dir / "budget_0.01min.pth").is_file():  # the naturalspeech run exists if the test above ran
        untrained_budget_checkpoint(run, tiny_corpus, bench, minutes)
    sentences = synthesize.heldout_sentences(tiny_corpus)
    assert [clip_id for clip_id, _ in sentences] == ["LJ050-0016", "LJ050-0020"]
    spoken = synthesize.synthesize_budget(run_dir, minutes, sentences)
    for sentence, (clip_id, _) in zip(spoken, sentences, strict=True):
        assert sentence.id == clip_id and sentence.sample_rate == 22050 and sentence.hop_length == 256
        assert sentence.waveform.dtype.name == "float32" and sentence.waveform.ndim == 1
        assert len(sentence.durations) == len(sentence.tokens) > 10
        assert all(d >= 0 for d in sentence.durations)
        assert sum(sentence.durations) * sentence.hop_length == len(sentence.waveform)
        # add_blank: blanks interleave the phonemes
        assert all(sentence.is_blank[0::2]) and not any(sentence.is_blank[1::2])
    again = synthesize.synthesize_budget(run_dir, minutes, sentences[:1])[0]
    assert (again.waveform == spoken[0].waveform).all()  # fixed seed


def test_run_plan_and_stages(tmp_path):
    import run as learning_run

    args = learning_run.parser().parse_args(["--minutes", "30", "15", "--ablation-minutes", "20", "--bench-dir", "b"])
    assert learning_run.training_plan(args) == [("naturalspeech", [15.0, 30.0]), ("vits", [15.0, 30.0])]
    ablation_args, plan = learning_run.ablation_phase(args)
    # the ablations have a baseline of their own settings, in their own folders
    assert plan[0] == ("naturalspeech", [20.0]) and ("ns-no-soft-dtw", [20.0]) in plan
    assert ablation_args.warmup_steps == models.ABLATION_WARMUP_STEPS != args.warmup_steps
    assert ablation_args.bench_dir == Path("b", "ablations") and ablation_args.out_dir == args.out_dir / "ablations"
    assert "ns-pretrained-encoder" not in dict(plan)  # no encoder checkpoint and no pre-training asked for
    # VITS2's options are measured at the same budget, each with its switch on
    vits2 = {"ns-duration-discriminator": "use_duration_discriminator", "ns-transformer-flow": "use_transformer_flow"}
    for run, switch in vits2.items():
        assert (run, [20.0]) in plan and getattr(models.make_config(run, tmp_path, tmp_path).model_args, switch)
    assert ("ns-mas-noise", [20.0]) in plan
    assert models.make_config("ns-mas-noise", tmp_path, tmp_path).model_args.mas_noise_scale > 0
    args = learning_run.parser().parse_args(["--ablation-minutes", "20", "--pretrain-minutes", "30"])
    assert "ns-pretrained-encoder" in dict(learning_run.ablation_phase(args)[1])

    models.make_config("naturalspeech", tmp_path, tmp_path, warmup_steps=10).save_json(str(tmp_path / "config.json"))
    assert [learning_run.training_stage(tmp_path, step) for step in (9, 10)] == ["warmup", "main"]


def test_pretraining_budget_file_initialises_the_pretrained_encoder_run(tmp_path):
    """A `pretrain-encoder` budget file (as `train_budget` saves it) is what `ns-pretrained-encoder` starts from."""
    from TTS.tts.layers.naturalspeech.pretraining.corpus import prepare_pretraining_data
    from TTS.tts.layers.naturalspeech.pretraining.model import MixedPhonemePretraining

    config = models.make_pretraining_config(
        tmp_path, size="tiny", max_sentences=24, num_eval_sentences=2, num_phonemize_workers=1
    )
    assert "LJ050-" in config.excluded_id_prefixes  # never pre-trained on the held-out chapter
    data = prepare_pretraining_data(config)
    pretraining = MixedPhonemePretraining(config, data.sup_phonemes, pad_id=data.tokenizer.pad_id)
    with torch.no_grad():
        for parameter in pretraining.encoder.parameters():
            parameter.add_(1.0)  # unlike any fresh initialisation
    path = train_budget.budget_checkpoint_path(tmp_path, 1.0)
    train_budget.save_budget_checkpoint(pretraining, config, path, {"step": 1})

    run = models.PRETRAINED_ENCODER_RUN
    tts_config = models.make_config(run, tmp_path, tmp_path, size="tiny", pretrained_encoder_path=path)
    model = models.build_model(tts_config)
    model.load_pretrained_encoder()  # what the Trainer's `on_init_start` does when the run starts
    encoder = model.phoneme_encoder.state_dict()
    pretrained = pretraining.encoder.state_dict()
    assert pretrained.keys() == encoder.keys()
    assert all(torch.equal(encoder[k], v) for k, v in pretrained.items())


def test_text_structure_measures_how_much_the_encoder_tells_tokens_apart(tiny_corpus, bench):
    import text_structure

    assert text_structure.token_variation(torch.ones(1, 4, 9)) == 0.0  # the same vector for every token
    varied = torch.randn(1, 4, 9, generator=torch.Generator().manual_seed(0))
    assert text_structure.token_variation(varied) > 0.5
    with pytest.raises(ValueError, match="<run>:<minutes>"):
        text_structure.parse_checkpoints(["naturalspeech"])
    assert text_structure.parse_checkpoints(["vits:15,30"]) == [("vits", [15.0, 30.0])]
    sentences = [text for _, text in synthesize.heldout_sentences(tiny_corpus)]
    for run in ("naturalspeech", "vits"):
        run_dir = train_budget.run_dir_of(run, bench)
        if not (run_dir / "budget_0.01min.pth").is_file():
            untrained_budget_checkpoint(run, tiny_corpus, bench, 0.01)
        measured = text_structure.measure(run_dir, 0.01, sentences)
        assert set(measured) == {"encoder_token_variation", "prior_token_variation"}
        assert all(0.0 < value < 10.0 for value in measured.values()), measured
        # the alignment-search durations of the training clips, and NaturalSpeech's predictor against them
        train_dir = tiny_corpus / "train"
        clips = [(i, text, train_dir / "wavs" / f"{i}.wav") for i, text in synthesize.read_metadata(train_dir)]
        durations = text_structure.duration_structure(run_dir, 0.01, clips)
        expected = {"token_lookup_r2", "predictor_r2"} if run == "naturalspeech" else {"token_lookup_r2"}
        assert set(durations) == expected
        assert 0.0 < durations["token_lookup_r2"] <= 1.0  # a lookup fitted in-sample explains some of the variance
        assert durations.get("predictor_r2", 0.0) <= 1.0
    target = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert text_structure.explained_share(target, target) == 1.0
    assert text_structure.explained_share(target, torch.full_like(target, 1.5)) == 0.0  # the mean explains nothing
