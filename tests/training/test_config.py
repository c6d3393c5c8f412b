import pytest

from pestid.training.config import ConfigError, resolve_config


def test_defaults_then_yaml_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\nmodel: {name: test_resnet, image_size: 64}\n")
    config = resolve_config(path, ["model.image_size=32", "optim.lr=0.01"], out="runs/x")
    assert (config.epochs, config.model.name, config.model.image_size) == (5, "test_resnet", 32)
    assert config.optim.lr == 0.01 and config.out == "runs/x"
    assert config.data.batch_size == 32  # untouched default


def test_unknown_key_suggests_the_near_miss():
    with pytest.raises(ConfigError, match=r"Did you mean 'optim\.lr'"):
        resolve_config(None, ["optim.lrr=0.1"])


def test_unknown_key_in_the_yaml_is_an_error_too(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epoch: 5\n")
    with pytest.raises(ConfigError, match=r"Did you mean 'epochs'"):
        resolve_config(path)


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match=r"data.balance"):
        resolve_config(None, ["data.balance=sometimes"])


def test_shipped_configs_resolve():
    for name in ("default", "probe", "smoke"):
        config = resolve_config(f"training/configs/{name}.yaml")
        assert config.epochs >= 1
