"""MultiTaskModel: the shared SentenceEncoder, a topic head and an NER head, trained jointly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from mtst.data.alignment import word_predictions
from mtst.data.labels import LabelSpace
from mtst.errors import MtstError
from mtst.model.encoder import SentenceEncoder
from mtst.model.heads import ClassificationHead, TokenClassificationHead
from mtst.model.loss import MultiTaskLoss, masked_cross_entropy
from mtst.training.distributed import any_rank
from mtst.training.freezing import build_freeze_strategy
from mtst.training.metrics import EntityF1
from mtst.training.optim import build_optimizer

STAGES = ("val", "test")


class MultiTaskModel(L.LightningModule):
    """Checkpoint keys read `encoder.backbone.*`, `cls_head.*`, `ner_head.*`.

    Hyper-parameters are plain dicts and lists only (no modules), so `hparams.yaml` stays readable
    and checkpoints load with `weights_only=True`.
    """

    def __init__(
        self,
        backbone: dict[str, Any],
        labels: dict[str, list[str]],
        pooling: str = "mean",
        normalize: bool = False,
        max_length: int = 128,
        dropout: float = 0.1,
        loss: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        freeze: dict[str, Any] | None = None,
        encoder: SentenceEncoder | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        self.label_space = LabelSpace.from_dict(labels)
        settings = {"pooling": pooling, "normalize": normalize, "max_length": max_length}
        self.encoder = encoder or SentenceEncoder.from_pretrained(**backbone, **settings)
        hidden = self.encoder.hidden_size
        self.cls_head = ClassificationHead(hidden, len(self.label_space.classes), dropout)
        self.ner_head = TokenClassificationHead(hidden, len(self.label_space.tags), dropout)
        self.freezer = build_freeze_strategy(freeze or {"name": "none"})
        self.loss_fn = MultiTaskLoss(**self.freezer.loss_settings(loss or {}))
        self._encoder_files: dict[str, bytes] | None = None
        self.run_config: dict[str, Any] | None = None  # set by the training pipeline
        n_classes = len(self.label_space.classes)
        for stage in STAGES:
            setattr(self, f"{stage}_cls_acc", MulticlassAccuracy(n_classes, average="micro"))
            setattr(self, f"{stage}_cls_f1", MulticlassF1Score(n_classes, average="macro"))
            setattr(self, f"{stage}_ner", EntityF1(self.label_space.tags))

    # ---- forward -------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        token_states, embeddings = self.encoder(input_ids, attention_mask)
        return self.heads(token_states, embeddings)

    def heads(self, token_states: torch.Tensor, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "embeddings": embeddings,
            "cls_logits": self.cls_head(embeddings),
            "ner_logits": self.ner_head(token_states),
        }

    def encode_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Forward one collated batch; the freeze strategy may serve cached encoder outputs."""
        return self.freezer.forward(self, batch)

    def compute_loss(
        self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        loss_cls = masked_cross_entropy(outputs["cls_logits"], batch["cls_labels"])
        loss_ner = masked_cross_entropy(outputs["ner_logits"], batch["ner_labels"])
        present = torch.stack([batch["has_cls"].any(), batch["has_ner"].any()])
        total = self.loss_fn(loss_cls, loss_ner, present)
        return {"loss": total, "loss_cls": loss_cls.detach(), "loss_ner": loss_ner.detach()}

    # ---- Lightning hooks -----------------------------------------------------------------
    def on_fit_start(self) -> None:
        # Hugging Face `from_pretrained` returns eval-mode modules; what trains (and which parts
        # stay in eval mode) is decided at `on_train_start`, once the epoch is known
        self.train()

    def on_train_start(self) -> None:
        # after Lightning restored the loops: on a resume `current_epoch` is the checkpoint's
        # epoch (at `on_fit_start` it still reads 0), and a run resumed mid-epoch gets no
        # `on_train_epoch_start` for the rest of that epoch
        self.freezer.apply(self, self.current_epoch)

    def on_train_epoch_start(self) -> None:
        self.freezer.apply(self, self.current_epoch)
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        self.log("train/trainable_params", float(trainable), on_epoch=True, on_step=False)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.compute_loss(batch, self.encode_batch(batch))
        size = batch["input_ids"].size(0)
        for name, value in losses.items():  # `train/loss` per step, `train/loss_epoch` per epoch
            self.log(f"train/{name}", value, on_step=True, on_epoch=False, batch_size=size,
                     prog_bar=name == "loss")
            self.log(f"train/{name}_epoch", value, on_step=False, on_epoch=True, batch_size=size)
        return losses["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor]) -> None:
        outputs = self.encode_batch(batch)
        losses = self.compute_loss(batch, outputs)
        self.log(f"{stage}/loss", losses["loss"], batch_size=batch["input_ids"].size(0), sync_dist=True)
        has_cls = batch["has_cls"]
        if has_cls.any():
            preds = outputs["cls_logits"][has_cls].argmax(-1)
            getattr(self, f"{stage}_cls_acc").update(preds, batch["cls_labels"][has_cls])
            getattr(self, f"{stage}_cls_f1").update(preds, batch["cls_labels"][has_cls])
        if batch["has_ner"].any():
            pred_words, gold_words = self.word_level(batch, outputs["ner_logits"])
            getattr(self, f"{stage}_ner").update(pred_words, gold_words)

    @staticmethod
    def word_level(
        batch: dict[str, torch.Tensor], ner_logits: torch.Tensor
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Word-level predicted and gold tag ids for the examples that carry NER labels."""
        rows = batch["has_ner"].nonzero().flatten().tolist()
        preds = word_predictions(
            ner_logits.argmax(-1)[rows], batch["word_ids"][rows], batch["num_words"][rows]
        )
        golds = [
            batch["word_labels"][r, : int(batch["num_words"][r])].tolist() for r in rows
        ]
        return preds, golds

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def _log_epoch_metrics(self, stage: str) -> None:
        """Log the task metrics seen this epoch and `score`, the mean of the tasks present."""
        scores, metrics = [], {}
        acc, f1 = getattr(self, f"{stage}_cls_acc"), getattr(self, f"{stage}_cls_f1")
        ner = getattr(self, f"{stage}_ner")
        # under DDP a rank may have seen no example of a task: decide on all ranks together,
        # since compute() gathers states from every rank
        cls_seen, ner_seen = any_rank([acc.update_called, ner.update_called], self.device)
        if cls_seen:
            metrics[f"{stage}/cls_acc"], metrics[f"{stage}/cls_f1"] = acc.compute(), f1.compute()
            scores.append(metrics[f"{stage}/cls_f1"])
        if ner_seen:
            for key, value in ner.compute().items():
                metrics[f"{stage}/ner_{key}"] = value.float()
            scores.append(metrics[f"{stage}/ner_f1"])
            if stage == "test":
                with ner.sync_context():  # per-type counts of all ranks
                    self.ner_report = ner.per_type()
        if scores:
            metrics[f"{stage}/score"] = torch.stack([torch.as_tensor(s).float() for s in scores]).mean()
        self.log_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in metrics.items()})
        for metric in (acc, f1, ner):
            metric.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        return build_optimizer(self, self.hparams.optimizer or {})

    # ---- inference -----------------------------------------------------------------------
    def encode(self, sentences: str | list[str], **kwargs: Any) -> Any:
        """Sentence embeddings from the trained encoder (`SentenceEncoder.encode` options)."""
        return self.encoder.encode(sentences, **kwargs)

    def predict(self, texts: str | list[str], batch_size: int = 32) -> list[dict[str, Any]]:
        """Topic and entity spans per text (format in `mtst.inference.predict`)."""
        from mtst.inference.predict import predict

        return predict(self, texts, batch_size=batch_size)

    # ---- checkpoints ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._encoder_files is None:
            self._encoder_files = self.encoder.to_files()
        checkpoint["mtst"] = {
            "encoder_files": self._encoder_files,
            "labels": self.label_space.to_dict(),
            "config": self.run_config,
        }
        self.freezer.on_save_checkpoint(checkpoint)

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> MultiTaskModel:
        """Load for inference from the checkpoint alone: no hub, no Hydra, no original folder."""
        from mtst.training.checkpoints import load_checkpoint

        checkpoint = load_checkpoint(path, map_location)
        entries = ("state_dict", "hyper_parameters", "mtst")
        if not isinstance(checkpoint, dict) or not all(k in checkpoint for k in entries):
            found = (f"no {' / '.join(repr(k) for k in entries if k not in checkpoint)} entry"
                     if isinstance(checkpoint, dict) else f"it holds a {type(checkpoint).__name__}")
            raise MtstError(f"{path}: not an mtst checkpoint ({found})")
        hparams = dict(checkpoint["hyper_parameters"])
        settings = {k: hparams.get(k) for k in ("pooling", "normalize", "max_length")}
        encoder = SentenceEncoder.from_files(checkpoint["mtst"]["encoder_files"], **settings)
        hparams["freeze"] = {"name": "none"}
        model = cls(**hparams, encoder=encoder)
        try:
            model.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as err:  # torch lists every mismatched key over many lines
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            detail = lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__
            raise MtstError(f"{path}: not an mtst checkpoint (its weights do not fit its "
                            f"config: {detail[:200]})") from None
        model.run_config = checkpoint["mtst"].get("config")  # the model card shows it
        return model.eval()
