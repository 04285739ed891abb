"""The training forward cut at the shared representation, for gradient-level weighting.

The encoder runs as in `FreezeStrategy.forward` (through `encoder_states`, so the strategy's
modes hold); the heads and pooling run on detached copies of its token states, so a task's loss
reaches the representation (`cuts`) without touching the encoder (`states`).
"""

from __future__ import annotations

import torch


def cut_forward(freezer, module, batch: dict[str, torch.Tensor]
                ) -> tuple[list[torch.Tensor], list[torch.Tensor], dict[str, torch.Tensor]]:
    """(token states, their detached copies, the network outputs on the copies) of one batch:
    one tensor per side (its sentences; the second sentences of its pairs, where it has pairs).
    `freezer` is the module's `FreezeStrategy`."""
    net = module.net
    states, _ = freezer.encoder_states(module, batch["input_ids"], batch["attention_mask"],
                                       batch["example_index"], "")
    all_states = [states]
    cuts = [states.detach().requires_grad_()]
    embeddings = net.encoder.pooling(cuts[0], batch["attention_mask"])
    outputs = net.run_heads(cuts[0], embeddings)
    rows = batch["pair_rows"]
    if rows.numel():
        states_b, _ = freezer.encoder_states(module, batch["input_ids_b"], batch["attention_mask_b"],
                                             batch["example_index"][rows], "/b")
        all_states.append(states_b)
        cuts.append(states_b.detach().requires_grad_())
        outputs["embeddings_b"] = net.encoder.pooling(cuts[1], batch["attention_mask_b"])
    else:
        outputs["embeddings_b"] = embeddings[:0]
    return all_states, cuts, outputs
