"""MultiTaskModule: the LightningModule that trains a `MultiTaskNetwork` on its tasks.

It wraps the network it is given (as lightning-hydra-template wraps `net`) and owns what
training needs and inference does not: the tasks' losses and their weighting, the metrics, the
freeze strategy and the optimizer. Metrics are named `<stage>/<task>/<metric>`; `val/score` is the
mean of the main metric of every task that counts in the score.
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
from mtst.training.clipping import clip_grad_norm, clips_directly
from mtst.training.distributed import any_rank
from mtst.training.lean_loop import LeanHooks
from mtst.training.loggers import log_task_layout
from mtst.training.optim import build_optimizer
from mtst.training.sharding import clip_sharded_grad_norm
from mtst.training.step_logs import EpochMeans, log_step_values, step_logs_needed
from mtst.weighting import GRAD_ON, Weighting, build_weighting
from mtst.weighting.combination import (
    check_batches_mix_tasks,
    combined_loss,
    conflict_report,
    rank_mean_losses,
    shared_parameters,
)

log = logging.getLogger("mtst")
STAGES = ("val", "test")
CHECKPOINT_VERSION = 2  # what `checkpoint["mtst"]` holds; 0.1 checkpoints have no "version"


class MultiTaskModule(LeanHooks, L.LightningModule):
    """Checkpoint keys read `net.encoder.*`, `net.heads.<task>.*`; `checkpoint["mtst"]` holds the
    network's config and backbone files, so the network reloads from the checkpoint alone.

    Hyper-parameters are plain dicts and lists (the network is excluded), so checkpoints load
    with `weights_only=True`; the loggers get the pipeline's flat `run_hparams` instead.
    """

    def __init__(
        self,
        net: MultiTaskNetwork,
        tasks: dict[str, Any],
        loss: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        freeze: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.net = net
        self.tasks: dict[str, Task] = build_tasks(tasks)
        missing = [t for t in self.tasks if t not in net.label_spaces]
        if missing:
            raise MtstError(f"tasks.{missing[0]}: the network has no such task (it has "
                            f"{choices_text(net.label_spaces)})")
        self.freezer = build_freeze_strategy(freeze or {"name": "none"}, self.tasks)
        token_heads = [h for h in net.heads.values() if h.reads == "token_states"]
        self._pointwise_token_heads = all(getattr(h, "pointwise", False) for h in token_heads)
        self.freezer.prepare(net)
        weights = self.freezer.task_weights({n: t.weight for n, t in self.tasks.items()})
        self.loss_fn = build_weighting(loss, [weights[n] for n in self.tasks])
        settings = dict(loss or {})
        self.grad_on = settings.get("grad_on", "representation")
        if self.grad_on not in GRAD_ON:
            raise MtstError(f"model.loss.grad_on={self.grad_on!r}: no such option; choose one of "
                            f"{choices_text(GRAD_ON)}")
        self.monitor_every = int(settings.get("monitor_every") or 0)
        self._losses_before: tuple[torch.Tensor, torch.Tensor, int] | None = None
        self._warned_no_shared = False
        self._mix_checked = False  # whether training batches hold several tasks (gradient methods)
        # a method whose state follows the losses costs one small all-reduce per step under DDP;
        # the others (fixed, uncertainty, rlw) skip it
        self._keeps_loss_state = (type(self.loss_fn).after_step is not Weighting.after_step
                                  or self.loss_fn.needs_losses_after_update
                                  or self.loss_fn.needs_rank_mean_losses)
        self.metrics = nn.ModuleDict({
            stage: nn.ModuleDict({n: t.new_metrics(net.label_spaces[n]) for n, t in self.tasks.items()})
            for stage in STAGES})
        self.reports: dict[str, dict[str, dict[str, float]]] = {}  # per-type test reports
        # the last training step's loss terms (logged on logging steps, shown by the progress bar,
        # named by the non-finite guard)
        self.step_values: dict[str, torch.Tensor] = {}
        self._epoch_means = EpochMeans()
        self._encoder_files: dict[str, bytes] | None = None
        self.run_config: dict[str, Any] | None = None  # set by the training pipeline

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
        total = self.loss_fn(losses, present)
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
        if self.monitor_every and self.global_step % self.monitor_every == 0 and shared_parameters(self):
            self._log_conflict(conflict_report(self, batch))
        self.loss_fn.set_step(self.global_step)  # per-step draws (rlw) are the same on every rank
        objective: dict[str, torch.Tensor] = {}
        if self.loss_fn.level == "gradient" and self._shares_parameters():
            check_batches_mix_tasks(self, batch)
            total, logged, per_task = combined_loss(self, batch)
        else:
            losses, present = self.task_losses(batch, self.encode_batch(batch, for_loss=True))
            if self._keeps_loss_state:  # (dwa, famo) a rank-averaged loss per task, for its state
                mean_losses, seen = rank_mean_losses(losses, present)
            if self.loss_fn.needs_rank_mean_losses:
                total = self.loss_fn(losses, present, reference=(mean_losses, seen))
            else:
                total = self.loss_fn(losses, present)
            per_task = {n: v.detach() for n, v, p in zip(self.tasks, losses, present, strict=True) if p}
            logged = total
            if not self.loss_fn.total_is_weighted_sum:  # comparable across methods
                logged = self.loss_fn.weighted_sum(losses.detach(), present)
                objective = {"train/objective": total.detach()}
            if self._keeps_loss_state:
                self.loss_fn.after_step(mean_losses, seen, self.global_step)
                if self.loss_fn.needs_losses_after_update:
                    self._losses_before = (mean_losses, seen, self.global_step)
        self.step_values = {"train/loss": logged.detach(), **objective,
                            **{f"train/{n}/loss": v for n, v in per_task.items()}}
        self._epoch_means.add(self.step_values, batch["input_ids"].size(0))
        return total

    def _log_conflict(self, report: dict[str, float]) -> None:
        """Straight to the loggers at this step: through `self.log` a value logged every N steps
        is written again at every logging step until the next one, under later step numbers."""
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:
            log_step_values(trainer, report)

    def _shares_parameters(self) -> bool:
        """Whether any encoder parameter trains now: a gradient-level method has nothing to
        combine otherwise (each head is its own task's), and the heads train on the weighted sum."""
        if shared_parameters(self) and not self.freezer.encoder_frozen:
            return True
        if not self._warned_no_shared:
            self._warned_no_shared = True
            log.warning("model.loss.weighting=%s: no encoder parameter trains in this epoch (freeze=%s), "
                        "so there is no shared gradient to combine; the heads train on the weighted "
                        "sum of their losses", self.loss_fn.name, self.freezer.name)
        return False

    def on_train_batch_end(self, outputs: Any, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if self.step_values and step_logs_needed(self.trainer):
            log_step_values(self.trainer, self.step_values)
        # FAMO-like methods compare the batch's losses before and after the update: one extra
        # forward without gradients (after accumulation, only once the optimizer has stepped)
        if self._losses_before is None or self.global_step == self._losses_before[2]:
            return
        before, self._losses_before = self._losses_before, None
        with torch.no_grad():
            losses, present = self.task_losses(batch, self.encode_batch(batch, for_loss=True))
        after, seen = rank_mean_losses(losses, present)
        self.loss_fn.after_update(before[0], after, before[1] & seen)

    def on_train_epoch_end(self) -> None:
        self.loss_fn.end_epoch()  # epoch-level loss histories (dwa)
        for name, value in self._epoch_means.pop().items():
            self.log(f"{name}_epoch", value, on_step=False, on_epoch=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor]) -> None:
        outputs = self.encode_batch(batch)
        total = self.loss_fn.weighted_sum(*self.task_losses(batch, outputs))  # as train/loss
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
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            if clip_sharded_grad_norm(self.trainer.strategy, gradient_clip_val):
                return
            if clips_directly(self.trainer):  # fp32: the same clipping, without Lightning's layers
                clip_grad_norm(optimizer, gradient_clip_val)
                return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ---- checkpoints ---------------------------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Called before the weights load: a resumed run with other tasks is one line."""
        if "state_dict" in checkpoint:  # a sharded (FSDP) checkpoint loads its weights apart
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
