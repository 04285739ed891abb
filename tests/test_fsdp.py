"""`trainer=fsdp` and `backbone=gpt_neo_1_3b`: the configs compose and build, the shard units are
the backbone's blocks, and on CPU (gloo, 2 processes) a sharded run trains, writes sharded
checkpoints, resumes from one, and a consolidated checkpoint loads in mtst.

What CPU cannot show: bf16 mixed precision over NCCL, the memory saved on a GPU and the speed;
scripts/device_check.sh runs a random-weight GPT-Neo 1.3B for a few FSDP steps on a GPU.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from mtst.errors import MtstError
from mtst.model.encoder import SentenceEncoder
from mtst.training.entry import trainer_arguments
from mtst.training.sharding import (
    HydraFSDPStrategy,
    model_block_classes,
    recompute_in_backward,
    resolve_resume_path,
)
from tests.conftest import TINY, compose_config
from tests.reliability.helpers import CLI_TINY, run_cli, run_python


def test_gpt_neo_1_3b_composes_as_a_hub_backbone(tmp_path) -> None:
    cfg = compose_config(tmp_path, ["backbone=gpt_neo_1_3b", "trainer=fsdp"])
    assert cfg.backbone.name_or_path == "EleutherAI/gpt-neo-1.3B"
    assert cfg.backbone.pretrained is True and cfg.model.net.pooling == "weighted_mean"


def test_trainer_fsdp_builds_the_sharded_bf16_strategy(tmp_path) -> None:
    cfg = compose_config(tmp_path, ["trainer=fsdp", "backbone=gpt_neo_tiny"])
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, HydraFSDPStrategy)
    assert strategy._state_dict_type == "sharded" and strategy.checkpoint_activations
    assert strategy.sharding_strategy.name == "FULL_SHARD" and strategy.block_classes == "auto"


def test_trainer_fsdp_cpu_builds_a_two_process_trainer(tmp_path) -> None:
    cfg = compose_config(tmp_path, ["trainer=fsdp_cpu", "backbone=gpt_neo_tiny"])
    trainer = instantiate(trainer_arguments(cfg), logger=False, enable_checkpointing=False)
    assert isinstance(trainer.strategy, HydraFSDPStrategy)
    assert trainer.num_devices == 2 and trainer.strategy.process_group_backend == "gloo"


def test_a_wrap_policy_key_is_refused_in_favour_of_block_classes() -> None:
    with pytest.raises(MtstError, match="block_classes"):
        HydraFSDPStrategy(auto_wrap_policy={nn.Linear})


def tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=32))


def test_block_classes_are_found_from_the_backbone() -> None:
    from transformers.models.bert.modeling_bert import BertLayer
    from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoBlock

    encoder = SentenceEncoder.from_pretrained(TINY, pretrained=False)
    holder = nn.ModuleDict({"encoder": encoder, "head": nn.Linear(4, 2)})
    assert model_block_classes(holder) == (GPTNeoBlock,)
    assert model_block_classes(nn.ModuleDict({"bert": tiny_bert()})) == (BertLayer,)
    path = "transformers.models.bert.modeling_bert.BertLayer"
    assert model_block_classes(holder, [path]) == (BertLayer,)


def test_block_classes_errors_are_one_line() -> None:
    with pytest.raises(MtstError, match="no Hugging Face backbone") as err:
        model_block_classes(nn.Sequential(nn.Linear(2, 2)))
    assert "\n" not in str(err.value)
    with pytest.raises(MtstError, match="block_classes") as err:
        model_block_classes(nn.Linear(2, 2), ["transformers.NoSuchBlock"])
    assert "\n" not in str(err.value)


def test_resume_path_takes_sharded_folders_only(tmp_path) -> None:
    folder = tmp_path / "last.ckpt"
    folder.mkdir()
    with pytest.raises(MtstError, match="meta.pt"):
        resolve_resume_path(str(folder), tmp_path)
    torch.save({"global_step": 2}, folder / "meta.pt")
    assert resolve_resume_path(str(folder), tmp_path) == str(folder)
    assert resolve_resume_path(None, tmp_path) is None


def test_a_sharded_checkpoint_with_the_old_weighting_keys_is_one_line(tmp_path) -> None:
    import warnings

    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "last.ckpt"
    torch.save({"global_step": 2}, tmp_path / "meta.pt")
    with warnings.catch_warnings():  # single-process save: torch says it assumes so
        warnings.simplefilter("ignore")
        dcp.save({"model": {"net.x": torch.ones(2), "weighting.log_vars": torch.zeros(2)}},
                 checkpoint_id=folder)
    (tmp_path / "meta.pt").rename(folder / "meta.pt")
    assert resolve_resume_path(str(folder), tmp_path) == str(folder)
    dcp_old = tmp_path / "old.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": {"net.x": torch.ones(2), "loss_fn.log_vars": torch.zeros(2)}},
                 checkpoint_id=dcp_old)
    torch.save({"global_step": 2}, dcp_old / "meta.pt")
    with pytest.raises(MtstError, match=r"older mtst \(it names the loss weighting's state "
                                        r"'loss_fn.log_vars', now 'weighting.\*'\)") as err:
        resolve_resume_path(str(dcp_old), tmp_path)
    assert "\n" not in str(err.value)


def test_an_encoder_never_builds_a_key_value_cache() -> None:
    """A recomputed GPT-Neo block (activation checkpointing) would append to a cache twice."""
    encoder = SentenceEncoder.from_pretrained(TINY, pretrained=False)
    assert encoder._backbone_kwargs == {"use_cache": False}
    captured = {}
    handle = encoder.backbone.register_forward_hook(
        lambda m, args, out: captured.update(cache=out.past_key_values))
    encoder(torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long))
    handle.remove()
    assert captured["cache"] is None


def test_recomputed_blocks_keep_their_keys_and_results_and_run_again_in_backward() -> None:
    from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoBlock

    plain = SentenceEncoder.from_pretrained(TINY, pretrained=False).train()
    for dropout in (m for m in plain.modules() if isinstance(m, nn.Dropout)):
        dropout.p = 0.2  # the recomputation must draw the forward's masks again
    recomputing = copy.deepcopy(plain)
    blocks = [m for m in recomputing.modules() if isinstance(m, GPTNeoBlock)]
    assert recompute_in_backward(recomputing, (GPTNeoBlock,)) == len(blocks) > 0
    assert recompute_in_backward(recomputing, (GPTNeoBlock,)) == len(blocks)  # not wrapped twice
    assert list(recomputing.state_dict()) == list(plain.state_dict())  # checkpoints unchanged
    calls: dict[str, int] = {}
    for model, name in ((plain, "plain"), (recomputing, "recomputing")):
        for block in (m for m in model.modules() if isinstance(m, GPTNeoBlock)):
            block.attn.register_forward_pre_hook(lambda *_, n=name: calls.update({n: calls.get(n, 0) + 1}))
    ids, mask = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    results = {}
    for model, name in ((plain, "plain"), (recomputing, "recomputing")):
        torch.manual_seed(0)
        states, embeddings = model(ids, mask)
        (states.square().mean() + embeddings.sum()).backward()
        results[name] = (states.detach(), [p.grad for p in model.parameters()])
    # each block's inside ran once in the forward, and once more in the backward
    assert calls == {"plain": len(blocks), "recomputing": 2 * len(blocks)}
    torch.testing.assert_close(results["recomputing"][0], results["plain"][0], rtol=0, atol=0)
    for got, expected in zip(results["recomputing"][1], results["plain"][1], strict=True):
        torch.testing.assert_close(got, expected)
    with torch.no_grad():  # evaluation: no recomputation to prepare
        calls.clear()
        recomputing(ids, mask)
    assert calls == {"recomputing": len(blocks)}


FSDP_RUN = ["trainer=fsdp_cpu", *CLI_TINY, "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]


def meta(folder: Path) -> dict:
    return torch.load(folder / "meta.pt", weights_only=False)


@pytest.mark.slow
def test_two_cpu_processes_train_save_sharded_and_resume(tmp_path) -> None:
    log = tmp_path / "logs"
    first = run_cli("train.py", [*FSDP_RUN, "trainer.max_epochs=1", f"paths.log_dir={log}"], 600)
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = list((log / "runs").iterdir())
    last = run / "checkpoints" / "last.ckpt"
    # one shard file per rank, plus the metadata (loops, mtst's network description)
    assert sorted(p.name for p in last.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert meta(last)["global_step"] == 2 and "mtst" in meta(last)
    assert (run / "metrics.json").is_file()  # the test stage read the sharded best.ckpt
    resumed = run_cli("train.py", [*FSDP_RUN, "trainer.max_epochs=2", f"paths.log_dir={log}",
                                   "ckpt_path=last"], 600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all states" in resumed.stdout + resumed.stderr
    assert [p.name for p in (log / "runs").iterdir()] == [run.name]  # same run folder
    assert meta(last)["global_step"] == 4 and meta(last)["epoch"] == 1
    done = run_python(["-m", "lightning.pytorch.utilities.consolidate_checkpoint", str(last)])
    assert done.returncode == 0, done.stderr[-2000:]
    from mtst.inference.loading import load_checkpoint_network

    net = load_checkpoint_network(run / "checkpoints" / "last.ckpt.consolidated")
    assert set(net.label_spaces) == {"topic", "ner"}
    weights = net.encoder.backbone.wte.weight
    assert weights.shape[1] == 64 and bool(torch.isfinite(weights).all())


class FakeSharded:
    """The part of a ShardedTensor the checkpoint guard reads: this rank's shards."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.shards = [SimpleNamespace(tensor=t) for t in tensors]

    def local_shards(self) -> list:
        return self.shards


def test_the_checkpoint_guard_reads_each_ranks_local_shards() -> None:
    from mtst.training.callbacks import NonFiniteGuard, NonFiniteLossError

    guard, trainer = NonFiniteGuard(), SimpleNamespace(global_step=3)
    module = SimpleNamespace(device=torch.device("cpu"))
    fine = {"state_dict": {"w": FakeSharded(torch.ones(2), torch.zeros(2))}}
    guard.on_save_checkpoint(trainer, module, fine)
    broken = {"state_dict": {"w": FakeSharded(torch.ones(2), torch.tensor([float("nan")]))}}
    with pytest.raises(NonFiniteLossError, match=r"step 3: non-finite weights in 1 tensors \(first: w\)"):
        guard.on_save_checkpoint(trainer, module, broken)
