"""Build the bundled tiny GPT-Neo backbone: a byte-level BPE tokenizer trained on the sample
corpus, and a small GPTNeoConfig. Weights are not stored: `backbone=gpt_neo_tiny` initialises
them randomly (seeded) from this config.

It also writes `gpt_neo_125m_random/`: GPT-Neo 125M's published architecture (EleutherAI's
config.json) for `backbone=gpt_neo_125m_random`, which costs exactly what the real model costs
and is for measuring that cost, never for quality. The GPT-2 BPE tokenizer GPT-Neo uses cannot
be fetched offline, so the folder carries the tiny tokenizer as a stand-in; its ids (< 2048) are
valid indices into the 50,257-row embedding, so only the tokenisation differs.

    python scripts/build_tiny_backbone.py   # rewrites src/mtst/assets/gpt_neo_tiny/ and
                                            # src/mtst/assets/gpt_neo_125m_random/
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2TokenizerFast, GPTNeoConfig

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "mtst" / "assets" / "gpt_neo_tiny"
EOS = "<|endoftext|>"
VOCAB_SIZE = 2048
OUT_125M = OUT.parent / "gpt_neo_125m_random"
# EleutherAI/gpt-neo-125M config.json: the fields that set the architecture and its cost
GPT_NEO_125M = {"vocab_size": 50257, "max_position_embeddings": 2048, "hidden_size": 768,
                "num_layers": 12, "num_heads": 12, "intermediate_size": None,  # None: 4 x hidden
                "attention_types": [[["global", "local"], 6]], "window_size": 256,
                "activation_function": "gelu_new", "resid_dropout": 0.0, "embed_dropout": 0.0,
                "attention_dropout": 0.0, "layer_norm_epsilon": 1e-5, "initializer_range": 0.02}


def corpus_texts() -> list[str]:
    lines = (ROOT / "data" / "sample" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator(corpus_texts(), vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=[EOS])
    bpe.save(str(OUT / "tokenizer.json"))
    tokenizer = GPT2TokenizerFast(
        tokenizer_file=str(OUT / "tokenizer.json"),
        bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS,
        add_prefix_space=True, model_max_length=256,
    )
    tokenizer.save_pretrained(OUT)
    config = GPTNeoConfig(
        vocab_size=bpe.get_vocab_size(),
        max_position_embeddings=256,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        intermediate_size=256,
        attention_types=[[["global", "local"], 1]],
        window_size=64,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config.save_pretrained(OUT)
    print(f"wrote {OUT} (vocab {bpe.get_vocab_size()})")
    write_125m(tokenizer)


def write_125m(tokenizer: GPT2TokenizerFast) -> None:
    """GPT-Neo 125M's config with the stand-in tokenizer (token ids match the tokenizer's)."""
    OUT_125M.mkdir(parents=True, exist_ok=True)
    tokenizer.model_max_length = GPT_NEO_125M["max_position_embeddings"]
    tokenizer.save_pretrained(OUT_125M)
    config = GPTNeoConfig(**GPT_NEO_125M, bos_token_id=tokenizer.eos_token_id,
                          eos_token_id=tokenizer.eos_token_id)
    config.save_pretrained(OUT_125M)
    print(f"wrote {OUT_125M}")


if __name__ == "__main__":
    main()
