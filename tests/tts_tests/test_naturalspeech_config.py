import dataclasses
import json
import re

import pytest

from tests import make_tiny_config
from TTS.config import load_config
from TTS.tts.configs.naturalspeech_config import NaturalspeechArgs, NaturalspeechConfig
from TTS.tts.configs.shared_configs import BaseTTSConfig


def test_defaults_follow_the_paper_and_vits_audio():
    config = NaturalspeechConfig()
    assert config.model == "naturalspeech"
    assert isinstance(config.model_args, NaturalspeechArgs)
    assert (config.audio.sample_rate, config.audio.fft_size, config.audio.hop_length, config.audio.num_mels) == (
        22050,
        1024,
        256,
        80,
    )
    args = config.model_args
    assert args.hidden_channels == 192 and args.num_layers_phoneme_encoder == 6
    assert args.num_flows == 4 and args.memory_bank_size == 1000
    assert args.soft_dtw_gamma == 0.01 and args.soft_dtw_warp == 0.07
    assert args.upsample_rates_decoder == [8, 8, 2, 2] and args.upsample_initial_channel_decoder == 512
    assert config.lr_gen == 2e-4 and config.lr_scheduler_gen_params["gamma"] == 0.999875
    hop = 1
    for rate in args.upsample_rates_decoder:
        hop *= rate
    assert hop == config.audio.hop_length


def test_save_and_load_config_round_trip(tmp_path):
    config = make_tiny_config(model_args={"use_memory_bank": False, "soft_dtw_bandwidth": 40}, warmup_steps=7)
    path = tmp_path / "config.json"
    config.save_json(str(path))
    loaded = load_config(str(path))
    assert type(loaded) is NaturalspeechConfig
    assert loaded == config
    assert loaded.model_args.soft_dtw_bandwidth == 40 and loaded.warmup_steps == 7


def test_model_args_are_not_copied_over_top_level_fields():
    # VitsConfig.__post_init__ copies same-named model_args over config fields; ours must keep both as given.
    config = NaturalspeechConfig(model_args=NaturalspeechArgs(length_scale=1.5))
    assert config.model_args.length_scale == 1.5
    # neither the class nor its renamed-fields mixin adds a __post_init__ to the toolkit's base config
    assert NaturalspeechConfig.__post_init__ is BaseTTSConfig.__post_init__


def _write(tmp_path, data):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("edit", "field_name"),
    [
        (lambda d: d.update(warmup_stepz=3), "warmup_stepz"),
        (lambda d: d["model_args"].update(memory_bank_sise=10), "model_args.memory_bank_sise"),
        (lambda d: d["audio"].update(sample_rte=16000), "audio.sample_rte"),
    ],
)
def test_unknown_field_is_named(tmp_path, edit, field_name):
    data = NaturalspeechConfig().to_dict()
    edit(data)
    with pytest.raises(ValueError, match=re.escape(f"'{field_name}'")):
        load_config(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("edit", "field_name"),
    [
        (lambda d: d["model_args"].update(hidden_channels="abc"), "model_args.hidden_channels"),
        (lambda d: d["model_args"].update(use_memory_bank="yes"), "model_args.use_memory_bank"),
        (lambda d: d.update(lr_gen="fast"), "lr_gen"),
        (lambda d: d["model_args"].update(upsample_rates_decoder=8), "model_args.upsample_rates_decoder"),
    ],
)
def test_wrong_type_is_named(tmp_path, edit, field_name):
    data = NaturalspeechConfig().to_dict()
    edit(data)
    with pytest.raises(ValueError, match=re.escape(f"'{field_name}'")):
        load_config(_write(tmp_path, data))


def test_ints_are_accepted_for_float_fields_and_null_for_optional_ones(tmp_path):
    data = NaturalspeechConfig().to_dict()
    data["model_args"]["length_scale"] = 2
    data["model_args"]["pretrained_encoder_path"] = None
    loaded = load_config(_write(tmp_path, data))
    assert loaded.model_args.length_scale == 2


def test_args_docstring_documents_every_field():
    for cls in (NaturalspeechArgs, NaturalspeechConfig):
        documented = set(re.findall(r"^ {8}(\w+) \(", cls.__doc__, flags=re.MULTILINE))
        own_fields = {f.name for f in dataclasses.fields(cls)}
        if cls is NaturalspeechConfig:
            inherited = {f.name for f in dataclasses.fields(BaseTTSConfig)}
            own_fields = {name for name in own_fields if name not in inherited or name in cls.__annotations__}
        assert own_fields - documented == set(), f"undocumented fields of {cls.__name__}"
        assert documented - own_fields == set(), f"documented fields that do not exist in {cls.__name__}"


def test_keys_the_trainer_adds_on_resume_are_accepted(tmp_path):
    # trainer/io.py copy_model_files writes these into the run folder's config.json of a continued run
    data = NaturalspeechConfig().to_dict()
    data.update(restore_path="/runs/x/checkpoint_10.pth", github_branch="main")
    loaded = load_config(_write(tmp_path, data))
    assert type(loaded) is NaturalspeechConfig
    data["model_args"]["restore_path"] = "x"  # only at the top level, where the Trainer puts them
    with pytest.raises(ValueError, match=r"'model_args\.restore_path'"):
        load_config(_write(tmp_path, data))


##########################
# renamed fields
##########################

RENAMED_IN_MODEL_ARGS = [
    ("use_soft_dtw", "use_predicted_durations", False),
    ("hidden_channels_ffn_text_encoder", "hidden_channels_ffn_phoneme_encoder", 512),
    ("num_heads_text_encoder", "num_heads_phoneme_encoder", 4),
    ("num_layers_text_encoder", "num_layers_phoneme_encoder", 3),
    ("kernel_size_text_encoder", "kernel_size_phoneme_encoder", 5),
    ("dropout_p_text_encoder", "dropout_p_phoneme_encoder", 0.2),
]
RENAMED_AT_TOP_LEVEL = [("dur_loss_alpha", "duration_loss_alpha", 2.5)]


@pytest.mark.parametrize(("old", "new", "value"), RENAMED_IN_MODEL_ARGS, ids=lambda x: str(x))
def test_old_model_args_key_names_its_new_name(tmp_path, old, new, value):
    data = NaturalspeechConfig().to_dict()
    data["model_args"][old] = data["model_args"].pop(new)
    with pytest.raises(ValueError, match=re.escape(f"'model_args.{old}' is now 'model_args.{new}'")):
        load_config(_write(tmp_path, data))


@pytest.mark.parametrize(("old", "new", "value"), RENAMED_AT_TOP_LEVEL, ids=lambda x: str(x))
def test_old_top_level_key_names_its_new_name(tmp_path, old, new, value):
    data = NaturalspeechConfig().to_dict()
    data[old] = data.pop(new)
    assert old not in data["model_args"]
    with pytest.raises(ValueError, match=re.escape(f"'{old}' is now '{new}'")):
        load_config(_write(tmp_path, data))


def test_every_old_key_is_named_in_one_error(tmp_path):
    data = NaturalspeechConfig().to_dict()
    data["model_args"].update(use_soft_dtw=False, num_layers_text_encoder=2)  # old keys beside the new ones
    data["dur_loss_alpha"] = 1.0
    with pytest.raises(ValueError) as error:
        load_config(_write(tmp_path, data))
    for old, new in [
        ("model_args.use_soft_dtw", "model_args.use_predicted_durations"),
        ("model_args.num_layers_text_encoder", "model_args.num_layers_phoneme_encoder"),
        ("dur_loss_alpha", "duration_loss_alpha"),
    ]:
        assert f"'{old}' is now '{new}'" in str(error.value)


def test_old_keys_are_rejected_by_every_deserialisation():
    config_data = NaturalspeechConfig().to_dict()
    config_data["model_args"]["use_soft_dtw"] = False
    args_data = NaturalspeechArgs().to_dict() | {"num_heads_text_encoder": 2}
    attempts = [
        lambda: NaturalspeechConfig().from_dict(config_data),
        lambda: NaturalspeechConfig().deserialize(config_data),
        lambda: NaturalspeechConfig.new_from_dict(config_data),  # coqpit's nested path: deserialize_immutable
        lambda: NaturalspeechArgs().from_dict(args_data),
        lambda: NaturalspeechArgs.new_from_dict(args_data),
    ]
    for attempt in attempts:
        with pytest.raises(ValueError, match="is now"):
            attempt()


def test_setting_an_old_name_on_a_config_object_is_an_error():
    # a script doing `config.model_args.use_soft_dtw = False` would otherwise add an attribute nothing reads
    config = NaturalspeechConfig()
    with pytest.raises(AttributeError, match="use_predicted_durations"):
        config.model_args.use_soft_dtw = False
    with pytest.raises(AttributeError, match="duration_loss_alpha"):
        config.dur_loss_alpha = 1.0


def test_new_keys_round_trip_through_to_dict_and_from_dict(tmp_path):
    values = {new: value for _, new, value in RENAMED_IN_MODEL_ARGS}
    config = NaturalspeechConfig(model_args=NaturalspeechArgs(**values), duration_loss_alpha=2.5)
    data = config.to_dict()
    assert {k: data["model_args"][k] for k in values} == values and data["duration_loss_alpha"] == 2.5
    assert not {old for old, _, _ in RENAMED_IN_MODEL_ARGS} & set(data["model_args"])
    assert "dur_loss_alpha" not in data
    restored = NaturalspeechConfig()
    restored.from_dict(data)
    assert restored == config
    assert load_config(_write(tmp_path, data)) == config


def test_old_encoder_keys_of_the_pretraining_config_name_their_new_names(tmp_path):
    from TTS.tts.layers.naturalspeech.pretraining.config import ENCODER_FIELDS, MixedPhonemePretrainingConfig

    assert set(ENCODER_FIELDS) <= {f.name for f in dataclasses.fields(NaturalspeechArgs)}
    path = tmp_path / "pretraining.json"
    MixedPhonemePretrainingConfig(num_layers_phoneme_encoder=3).save_json(str(path))
    loaded = MixedPhonemePretrainingConfig()
    loaded.load_json(str(path))
    assert loaded.num_layers_phoneme_encoder == 3
    data = json.loads(path.read_text(encoding="utf-8"))
    for old, new, _ in RENAMED_IN_MODEL_ARGS[1:]:  # the encoder fields; use_soft_dtw was never a pre-training key
        data[old] = data.pop(new)
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError) as error:
        MixedPhonemePretrainingConfig().load_json(str(path))
    for old, new, _ in RENAMED_IN_MODEL_ARGS[1:]:
        assert f"'{old}' is now '{new}'" in str(error.value)
