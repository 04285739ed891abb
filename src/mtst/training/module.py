"""MultiTaskModule: the LightningModule that trains a `MultiTaskNetwork` on its tasks.

It wraps the network it is given (as lightning-hydra-template wraps `net`) and owns what
training needs and inference does not: the tasks' losses and their weighting, the metrics, the
freeze strategy and the optimizer. A training step is the weighting method's (`Weighting.step`,
whatever its level), on a `BatchForward` whose forwards the freeze strategy runs. Metrics are
named `<stage>/<task>/<metric>`; `val/score` is the mean of the main metric of every task that
counts in the score.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torch import nn

from mtst.checkpoints.file_io import check_same_model
from mtst.errors import MtstError, choices_text
from mtst.freezing.strategies import build_freeze_strategy, trainable_names
from mtst.model.network import MultiTaskNetwork
from mtst.reports.delta_m import delta_m
from mtst.tasks import build_tasks
from mtst.tasks.base import Task
from mtst.training.batch_forward import BatchForward
from mtst.training.distributed import any_rank
from mtst.training.loggers import log_task_layout
from mtst.training.optim import build_optimizer
from mtst.training.sharding import clip_sharded_grad_norm
from mtst.weighting import build_weighting, loss_settings
from mtst.weighting.combination import conflict_report

log = logging.getLogger("mtst")
STAGES = ("val", "test")
CHECKPOINT_VERSION = 2  # what `checkpoint["mtst"]` holds; 0.1 checkpoints have no "version"
# state-dict prefixes renamed since: checkpoints written before name the weighting's state `loss_fn.*`
RENAMED_PREFIXES = {"loss_fn.": "weighting."}


class MultiTaskModule(L.LightningModule):
    """Checkpoint keys read `net.encoder.*`, `net.heads.<task>.*` and `weighting.*` (the method's
    state); `checkpoint["mtst"]` holds the network's config and backbone files, so the network
    reloads from the checkpoint alone.

    Hyper-parameters are plain dicts and lists (the network is excluded), so checkpoints load
    with `weights_only=True`; the loggers get the entry point's flat `run_hparams` instead.
    `freeze` and `weighting` are Hydra nodes (`_target_` and settings: conf/freeze/,
    conf/weighting/) the module builds with its tasks; None is `freeze=none`, `weighting=fixed`.
    """

    def __init__(
        self,
        net: MultiTaskNetwork,
        tasks: dict[str, Any],
        loss: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        freeze: dict[str, Any] | None = None,
        weighting: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.net = net
        self.tasks: dict[str, Task] = build_tasks(tasks)
        missing = [t for t in self.tasks if t not in net.label_spaces]
        if missing:
            raise MtstError(f"tasks.{missing[0]}: the network has no such task (it has "
                            f"{choices_text(net.label_spaces)})")
        self.freezer = build_freeze_strategy(freeze, self.tasks)
        token_heads = [h for h in net.heads.values() if h.reads == "token_states"]
        self._pointwise_token_heads = all(getattr(h, "pointwise", False) for h in token_heads)
        self.freezer.prepare(net)
        weights = self.freezer.task_weights({n: t.weight for n, t in self.tasks.items()})
        loss = loss_settings(loss)  # `grad_on` and `monitor_every`
        self.weighting = build_weighting(weighting, [weights[n] for n in self.tasks], loss.get("grad_on"))
        self.monitor_every = int(loss.get("monitor_every") or 0)
        self.metrics = nn.ModuleDict({
            stage: nn.ModuleDict({n: t.new_metrics(net.label_spaces[n]) for n, t in self.tasks.items()})
            for stage in STAGES})
        self.reports: dict[str, dict[str, dict[str, float]]] = {}  # per-type test reports
        # the last training step's loss terms (logged on logging steps, shown by the progress bar,
        # named by the non-finite guard)
        self.step_values: dict[str, torch.Tensor] = {}
        self._epoch_means = EpochMeans()
        self._encoder_files: dict[str, bytes] | None = None
        self.run_config: dict[str, Any] | None = None  # set by training/entry.py

    # ---- forward -------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(input_ids, attention_mask)

    def encode_batch(self, batch: dict[str, torch.Tensor], for_loss: bool = False) -> dict[str, torch.Tensor]:
        """Network outputs for a collated batch, plus `embeddings_b` for its sentence pairs; the
        freeze strategy may serve cached encoder outputs. `for_loss` (a training step's
        losses): with the encoder frozen, token heads run at the sub-tokens some loss reads
        (`Task.token_positions`) only (69% of a padded CoNLL-2003 batch for NER)."""
        return self.freezer.forward(self, batch, self.loss_rows(batch) if for_loss else None)

    def loss_rows(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The flattened positions some token task's loss reads, when the other positions need
        no head output: the encoder is frozen (no gradient flows past the heads) and every token
        head is position-wise. None otherwise: the heads run on the whole batch."""
        if not (self.freezer.encoder_frozen and self._pointwise_token_heads):
            return None
        wanted = [m for t in self.tasks.values() if (m := t.token_positions(batch)) is not None]
        if not wanted:
            return None
        union = wanted[0] if len(wanted) == 1 else torch.stack(wanted).any(0)
        return union.reshape(-1).nonzero().squeeze(1)

    def task_losses(self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each task's loss [N] (an exact 0 where the batch lacks it) and which are present [N]."""
        losses = torch.stack([t.loss(batch, outputs) for t in self.tasks.values()])
        return losses, torch.stack([t.has(batch).any() for t in self.tasks.values()])

    def compute_loss(self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(weighted total, each present task's loss); absent tasks add exactly zero."""
        losses, present = self.task_losses(batch, outputs)
        total = self.weighting(losses, present)
        return total, {n: v.detach() for n, v, p in zip(self.tasks, losses, present, strict=True) if p}

    # ---- Lightning hooks -----------------------------------------------------------------
    def on_fit_start(self) -> None:
        # Hugging Face `from_pretrained` returns eval-mode modules; what trains (and which parts
        # stay in eval mode) is decided at `on_train_start`, once the epoch is known
        self.train()
        if self.trainer.is_global_zero:
            log_task_layout(self.trainer, self.tasks)

    def on_train_start(self) -> None:
        # after Lightning restored the loops: on a resume `current_epoch` is the checkpoint's
        # epoch (at `on_fit_start` it still reads 0), and a run resumed mid-epoch gets no
        # `on_train_epoch_start` for the rest of that epoch
        self.freezer.apply(self, self.current_epoch)
        self._epoch_means.pop()

    def on_train_epoch_start(self) -> None:
        self.freezer.apply(self, self.current_epoch)
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        self.log("train/trainable_params", float(trainable), on_epoch=True, on_step=False)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.monitor_every and self.global_step % self.monitor_every == 0:
            self._monitor_conflict(batch)
        objective = self.weighting.step(BatchForward(self, batch), self.global_step)
        self.step_values = objective.logs()
        self._epoch_means.add(self.step_values, batch["input_ids"].size(0))
        if self._logging_step():
            self.log_dict(self.step_values, on_step=True, on_epoch=False)
        return objective.backward

    def attached_trainer(self) -> L.Trainer | None:
        """The Trainer, or None for a step called outside one (a unit test, a custom loop):
        `self.trainer` raises then."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def _logging_step(self) -> bool:
        """Whether Lightning hands this step's values to the loggers: the optimizer step it is
        about to take is a multiple of `log_every_n_steps` (as Lightning decides, from the same
        count), or a `fast_dev_run`. Logged on the other steps, each value would cost a `self.log`
        call that no logger reads."""
        trainer = self.attached_trainer()
        if trainer is None:
            return False
        every = trainer.log_every_n_steps
        return bool(trainer.fast_dev_run) or (every > 0 and (self.global_step + 1) % every == 0)

    def _monitor_conflict(self, batch: dict[str, torch.Tensor]) -> None:
        """The tasks' gradient cosines and norms, straight to the loggers under this step's
        number: through `self.log` a value logged every N steps would be written again at every
        logging step until the next one, under later step numbers."""
        shared = BatchForward(self, batch).cut()
        if shared is None:
            return
        report = conflict_report(shared, self.weighting.weights)
        trainer = self.attached_trainer()
        if trainer is not None and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({**report, "epoch": self.current_epoch}, step=self.global_step)

    def on_train_batch_end(self, outputs: Any, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # FAMO compares the batch's losses before and after the update (one more forward)
        self.weighting.after_batch(BatchForward(self, batch).losses, self.global_step)

    def on_train_epoch_end(self) -> None:
        self.weighting.end_epoch()  # epoch-level loss histories (dwa)
        for name, value in self._epoch_means.pop().items():
            self.log(f"{name}_epoch", value, on_step=False, on_epoch=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor]) -> None:
        outputs = self.encode_batch(batch)
        total = self.weighting.weighted_sum(*self.task_losses(batch, outputs))  # as train/loss
        self.log(f"{stage}/loss", total, batch_size=batch["input_ids"].size(0), sync_dist=True)
        for name, task in self.tasks.items():
            task.update(self.metrics[stage][name], batch, outputs)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def _log_epoch_metrics(self, stage: str) -> None:
        """Log the metrics of every task seen this stage, `score`, the mean of their main
        metrics (tasks with `in_score: false` are reported but not averaged), and `delta_m` when
        tasks carry a single-task `baseline`: what model selection and Optuna can maximise."""
        metrics: dict[str, torch.Tensor] = {}
        scores, mains = [], {}
        # under DDP a rank may have seen no example of a task: decide on all ranks together,
        # since compute() gathers states from every rank
        seen = any_rank([t.updated(self.metrics[stage][n]) for n, t in self.tasks.items()], self.device)
        for (name, task), was_seen in zip(self.tasks.items(), seen, strict=True):
            states = self.metrics[stage][name]
            if was_seen:
                values = task.compute(states)
                metrics.update({f"{stage}/{name}/{k}": v for k, v in values.items()})
                if task.in_score:
                    scores.append(values[task.main_metric])
                mains[name] = float(values[task.main_metric])
                if stage == "test" and "entities" in states:
                    with states["entities"].sync_context():  # per-type counts of all ranks
                        self.reports[name] = states["entities"].per_type()
            for metric in states.values():
                metric.reset()
        if scores:
            metrics[f"{stage}/score"] = torch.stack([torch.as_tensor(s).float() for s in scores]).mean()
        baselines = {n: t.baseline for n, t in self.tasks.items() if t.baseline is not None and n in mains}
        if baselines:  # Δm% against the single-task figures given (`tasks.<name>.baseline`)
            metrics[f"{stage}/delta_m"] = torch.tensor(delta_m(
                {n: mains[n] for n in baselines}, baselines, {n: self.tasks[n].main_metric for n in baselines}))
        self.log_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in metrics.items()})

    def configure_optimizers(self) -> dict[str, Any]:
        return build_optimizer(self, self.hparams.optimizer or {})

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer,
                                    gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        # under FSDP each rank holds a slice of every gradient: only the wrapped root can clip
        # by the global norm (Lightning's FSDP precision refuses norm clipping otherwise)
        if (gradient_clip_val and gradient_clip_algorithm in (None, "norm")
                and clip_sharded_grad_norm(self.trainer.strategy, gradient_clip_val)):
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ---- checkpoints ---------------------------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Called before the weights load: keys of an older layout are renamed (`loss_fn.*`,
        the weighting's state before it was `weighting.*`), and a resumed run with other tasks
        is one line."""
        if "state_dict" in checkpoint:  # a sharded (FSDP) checkpoint loads its weights apart
            checkpoint["state_dict"] = renamed_keys(checkpoint["state_dict"])
            check_same_model(checkpoint["state_dict"], self.state_dict(), self.trainer.ckpt_path)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._encoder_files is None:
            self._encoder_files = self.net.encoder.to_files()
        checkpoint["mtst"] = {
            "version": CHECKPOINT_VERSION,
            "network": self.net.config(),
            "files": self._encoder_files,
            "config": self.run_config,
            # what trains now: the checkpoint store skips reading the others (a frozen backbone)
            "trained": trainable_names(self),
        }
        self.freezer.on_save_checkpoint(checkpoint)


def renamed_keys(state: dict[str, Any]) -> dict[str, Any]:
    """`state` with the keys of `RENAMED_PREFIXES` under their current names (order kept)."""
    def current(key: str) -> str:
        for old, new in RENAMED_PREFIXES.items():
            if key.startswith(old):
                return new + key[len(old):]
        return key

    return {current(k): v for k, v in state.items()}


class EpochMeans:
    """Batch-size-weighted means of per-step values over an epoch, summed as tensors (no device
    sync per step): what `self.log(..., on_epoch=True, batch_size=n)` would compute, with one
    `self.log` per name and epoch instead of one per step."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.sizes: dict[str, int] = {}

    def add(self, values: dict[str, torch.Tensor], size: int) -> None:
        for name, value in values.items():
            total = self.sums.get(name)
            if total is None:
                self.sums[name] = value.float() * size  # a tensor of its own, added to in place
            else:
                total.add_(value, alpha=size)  # one tensor operation a step
            self.sizes[name] = self.sizes.get(name, 0) + size

    def pop(self) -> dict[str, torch.Tensor]:
        """The means so far; starts over."""
        means = {name: total / self.sizes[name] for name, total in self.sums.items()}
        self.sums, self.sizes = {}, {}
        return means
