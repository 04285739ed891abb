"""Every private attribute of Lightning or torch that src/ uses, pinned: each test checks that the
attribute is still there and does what the use relies on, so an upgrade that changes it fails
here, naming the use, instead of somewhere in a run. docs/private_api.md lists the uses, why no
public route does the same, and the test of each; a use removed from src/ takes its row and
its test with it.

Some tests also pin why a public route is not taken (e.g. `Trainer.save_checkpoint` ends with a
barrier): when one fails, the public route may have become usable."""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from torch.utils.data import DataLoader

from mtst.training.distributed import HydraDDPStrategy, _HydraJobLauncher
from mtst.training.sharding import HydraFSDPStrategy

STEPS = 3


def pin(ok: bool, attribute: str, use: str, relied_on: str) -> None:
    """Fail with a message naming the private attribute, its use in src/ and what it relies on."""
    assert ok, (f"{attribute} (used by {use}) no longer {relied_on}; see docs/private_api.md "
                "for why it is used and what a replacement must keep")


class Recorder(L.Callback):
    """What the fit loop's private state reads at the points the uses in src/ read it."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def on_train_end(self, trainer, pl_module) -> None:
        self.seen["checkpoint"] = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)


class Boring(BoringModel):
    def train_dataloader(self):
        return DataLoader(RandomDataset(32, 8), batch_size=2)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Boring, Recorder]:
    recorder, model = Recorder(), Boring()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=STEPS, limit_val_batches=0,
                        log_every_n_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[recorder], default_root_dir=tmp_path_factory.mktemp("fit"))
    trainer.fit(model)
    return model, recorder


# --- callbacks.py ----------------------------------------------------------------------------

def test_checkpoint_connector_dump_checkpoint_builds_the_whole_checkpoint(fitted) -> None:
    _, recorder = fitted
    checkpoint = recorder.seen["checkpoint"]
    pin({"state_dict", "loops", "callbacks", "optimizer_states", "global_step"} <= set(checkpoint),
        "Trainer._checkpoint_connector.dump_checkpoint", "mtst.training.callbacks.SaveOnSigterm",
        "returns a full checkpoint (weights, loops, callbacks, optimizers)")
    pin(checkpoint["global_step"] == STEPS, "Trainer._checkpoint_connector.dump_checkpoint",
        "mtst.training.callbacks.SaveOnSigterm", "records the step reached")
    # why not the public route: Trainer.save_checkpoint waits for every rank
    pin("barrier" in inspect.getsource(L.Trainer.save_checkpoint),
        "Trainer.save_checkpoint's barrier", "mtst.training.callbacks.SaveOnSigterm",
        "is there: SaveOnSigterm could use Trainer.save_checkpoint")


# --- distributed.py and sharding.py ----------------------------------------------------------

def test_script_launcher_is_what_the_ddp_and_fsdp_strategies_configure() -> None:
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    use = "mtst.training.distributed._HydraJobLauncher"
    params = list(inspect.signature(_SubprocessScriptLauncher).parameters)
    pin(params == ["cluster_environment", "num_processes", "num_nodes"],
        "lightning.pytorch.strategies.launchers._SubprocessScriptLauncher", use,
        "takes (cluster_environment, num_processes, num_nodes)")
    for strategy in (HydraDDPStrategy, HydraFSDPStrategy):
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy=strategy(), logger=False,
                            enable_checkpointing=False, enable_progress_bar=False)
        launcher = trainer.strategy.launcher
        pin(isinstance(launcher, _HydraJobLauncher) and launcher.num_processes == 2,
            "_SubprocessScriptLauncher", f"{use} ({strategy.__name__}.launcher)",
            "is the launcher Lightning configures for a 2-process strategy")


class ChildrenStarted(Exception):
    """Raised in place of starting the other ranks."""


class LightningsLauncherUsed(Exception):
    """Raised if Lightning's own launcher, not the Hydra job launcher, would start them."""


def test_launch_starts_the_children_through_call_children_scripts(monkeypatch, tmp_path) -> None:
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)

    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    def refuse(self) -> None:
        raise ChildrenStarted

    def wrong(self) -> None:
        raise LightningsLauncherUsed

    monkeypatch.setattr(_SubprocessScriptLauncher, "_call_children_scripts", wrong)
    monkeypatch.setattr(_HydraJobLauncher, "_call_children_scripts", refuse)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy=HydraDDPStrategy(), logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        default_root_dir=tmp_path)
    with pytest.raises(ChildrenStarted):
        trainer.fit(BoringModel())
    # reaching here means: the Trainer launched through `strategy.launcher` (the public property
    # HydraJobLaunch overrides) and `launch` started the children with `_call_children_scripts`


def test_fsdp_setup_wraps_the_model_through_setup_model() -> None:
    from lightning.pytorch.strategies import FSDPStrategy

    use = "mtst.training.sharding.HydraFSDPStrategy._setup_model"
    pin("self._setup_model(self.model)" in inspect.getsource(FSDPStrategy.setup),
        "FSDPStrategy._setup_model", use, "is the step of FSDPStrategy.setup that wraps the model")
    pin(list(inspect.signature(FSDPStrategy._setup_model).parameters) == ["self", "model"],
        "FSDPStrategy._setup_model", use, "takes (self, model)")


# --- loggers.py ------------------------------------------------------------------------------

def test_wandb_init_holds_what_wandb_init_gets() -> None:
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    use = "mtst.training.loggers.RunWandbLogger"
    logger = WandbLogger(project="p", offline=True)
    pin(isinstance(logger._wandb_init, dict) and "anonymous" in logger._wandb_init
        and logger._wandb_init["anonymous"] is None, "WandbLogger._wandb_init", use,
        "holds wandb.init's arguments, anonymous=None among them")
    pin("wandb.init(**self._wandb_init)" in inspect.getsource(WandbLogger.experiment.fget),
        "WandbLogger._wandb_init", use, "is what WandbLogger.experiment hands wandb.init")
