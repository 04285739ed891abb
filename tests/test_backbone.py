"""Backbone loading: the offline advice only when the hub cannot be asked and the model is not
cached, the real cause otherwise; package folders; remote code off.

Every hub test runs against an empty cache in tmp_path with offline mode on, in-process (the
constants huggingface_hub read at import) and in subprocesses (the environment), so the result
does not depend on what this machine has downloaded or whether it is online.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import transformers.utils.hub
from huggingface_hub.errors import GatedRepoError, RevisionNotFoundError
from huggingface_hub.utils import httpx

from mtst.errors import MtstError
from mtst.model.backbone import load_backbone, load_tokenizer, resolve_name_or_path

ROOT = Path(__file__).resolve().parents[1]
# '.invalid' is reserved for names that must not resolve (RFC 2606); Hugging Face user and
# organisation names have no dots, so no such repository can be published
NO_SUCH_REPO = "mtst.invalid/no-such-model"
TINY = "package:mtst/assets/gpt_neo_tiny"
OFFLINE_HINT = "the Hugging Face hub is unreachable and the model is not in the local cache"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, offline, for this process and the subprocesses it starts."""
    home = tmp_path / "hf"
    cache = home / "hub"
    cache.mkdir(parents=True)
    for key, value in {"HF_HOME": home, "HF_HUB_CACHE": cache, "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1"}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def cache_repo(cache: Path, repo: str, files: dict[str, bytes]) -> None:
    """Put files into the hub cache layout, as a download of `repo` would have."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)


@pytest.mark.parametrize("name", [NO_SUCH_REPO, "EleutherAI/gpt-neo-125M"])
def test_offline_and_not_cached_names_both_offline_choices(hub_cache, name) -> None:
    for load in (load_tokenizer, load_backbone):
        with pytest.raises(MtstError) as err:
            load(name)
        message = str(err.value)
        assert name in message and OFFLINE_HINT in message
        assert "backbone=gpt_neo_tiny" in message and "backbone=minilm" in message
        assert "\n" not in message


def tiny_config() -> bytes:
    return (Path(resolve_name_or_path(TINY)) / "config.json").read_bytes()


# files in the cache -> what the message must say instead of the offline advice
CACHED_FAILURES = {
    "unknown_architecture": ({"config.json": json.dumps({"model_type": "no_such_arch"}).encode()},
                             "does not recognize this architecture"),
    "corrupt_config": ({"config.json": b'{"model_type": '}, "is not a valid JSON file"),
    "truncated_weights": ({"config.json": tiny_config(), "model.safetensors": b"\x10\0\0\0\0\0\0\0{"},
                          "deserializing header"),
}


@pytest.mark.parametrize("case", sorted(CACHED_FAILURES))
def test_a_cached_model_that_fails_to_load_says_why_not_offline(hub_cache, case) -> None:
    files, cause = CACHED_FAILURES[case]
    cache_repo(hub_cache, NO_SUCH_REPO, files)
    with pytest.raises(MtstError) as err:
        load_backbone(NO_SUCH_REPO)
    message = str(err.value)
    assert message.startswith(f"Could not load backbone '{NO_SUCH_REPO}': ")
    assert cause in message and "unreachable" not in message and "offline" not in message
    assert "\n" not in message


def hub_answer(status: int, error: type[Exception], message: str):
    """What `hf_hub_download` raises when the hub answers `status` (tests never reach it)."""
    def download(repo_id, *args, **kwargs):
        request = httpx.Request("GET", f"https://huggingface.co/{repo_id}/resolve/main/config.json")
        raise error(message, response=httpx.Response(status, request=request))

    return download


@pytest.mark.parametrize(("status", "error", "cause"), [
    (401, GatedRepoError, "gated repo"),
    (404, RevisionNotFoundError, "is not a valid git identifier"),
])
def test_gated_repository_and_wrong_revision_say_so(hub_cache, monkeypatch, status, error, cause) -> None:
    monkeypatch.setattr(transformers.utils.hub, "hf_hub_download",
                        hub_answer(status, error, f"{status} Client Error"))
    with pytest.raises(MtstError) as err:
        load_backbone(NO_SUCH_REPO, pretrained=False, revision="v9")
    message = str(err.value)
    assert cause in message and "unreachable" not in message and "\n" not in message


def test_an_invalid_repository_id_is_named_not_blamed_on_the_network(hub_cache) -> None:
    with pytest.raises(MtstError, match=r"Could not load backbone 'bad--name': Cannot have -- or \.\. in repo_id"):
        load_tokenizer("bad--name")


def test_train_cli_exits_2_with_one_paragraph_and_no_traceback(hub_cache, tmp_path) -> None:
    env = {**os.environ, "MTST_ROOT": str(ROOT)}  # with the fixture's HF_HOME and offline mode
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"paths.log_dir={tmp_path / 'logs'}",
         f"backbone.name_or_path={NO_SUCH_REPO}"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert NO_SUCH_REPO in result.stderr and OFFLINE_HINT in result.stderr
    assert "backbone=gpt_neo_tiny" in result.stderr


def test_missing_package_folder_says_how_to_install() -> None:
    with pytest.raises(MtstError, match="not installed"):
        resolve_name_or_path("package:no_such_package_xyz/model")


def test_local_folder_without_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(MtstError, match=f"local folder '{tmp_path}'"):
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


@pytest.mark.parametrize("name", ["/no/such/model", "./models/none", "~/no-such-model-dir",
                                  "runs/x/encoder"])
def test_a_missing_folder_is_named_as_a_folder_not_a_hub_id(name, tmp_path) -> None:
    with pytest.raises(MtstError) as caught:
        load_tokenizer(name)
    assert str(caught.value).startswith(f"Backbone folder '{name}' does not exist")


def test_hub_ids_are_not_taken_for_folders() -> None:
    assert resolve_name_or_path("EleutherAI/gpt-neo-125M") == "EleutherAI/gpt-neo-125M"
    assert resolve_name_or_path("gpt2") == "gpt2"
