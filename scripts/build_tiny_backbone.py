"""Build the bundled tiny GPT-Neo backbone: a byte-level BPE tokenizer trained on the sample
corpus, and a small GPTNeoConfig. Weights are not stored: `backbone=gpt_neo_tiny` initialises
them randomly (seeded) from this config.

    python scripts/build_tiny_backbone.py   # rewrites src/mtst/assets/gpt_neo_tiny/
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


if __name__ == "__main__":
    main()
