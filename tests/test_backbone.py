"""Backbone loading: the offline error for hub models, package folders, remote code off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtst.errors import MtstError
from mtst.model.backbone import load_backbone, load_tokenizer, resolve_name_or_path

ROOT = Path(__file__).resolve().parents[1]


def test_unreachable_hub_model_names_both_offline_choices(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MtstError) as err:
        load_tokenizer("EleutherAI/gpt-neo-125M")
    message = str(err.value)
    assert "EleutherAI/gpt-neo-125M" in message
    assert "backbone=gpt_neo_tiny" in message and "backbone=minilm" in message
    assert "\n" not in message


def test_train_cli_exits_non_zero_with_one_paragraph_and_no_traceback(tmp_path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MTST_ROOT": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"paths.log_dir={tmp_path}"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "backbone=gpt_neo_tiny" in result.stderr


def test_missing_package_folder_says_how_to_install() -> None:
    with pytest.raises(MtstError, match="not installed"):
        resolve_name_or_path("package:no_such_package_xyz/model")


def test_local_folder_without_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(MtstError, match=str(tmp_path)):
        load_backbone(str(tmp_path))


def test_remote_code_is_off_by_default(tiny_model_dir, monkeypatch) -> None:
    seen = {}
    import transformers

    real = transformers.AutoModel.from_pretrained

    def spy(path, **kwargs):
        seen.update(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    load_backbone(str(tiny_model_dir))
    assert seen["trust_remote_code"] is False
