"""Tiny local stand-ins for the hub: a random-init HF causal LM with tokenizer and chat template,
preference data in standard and conversational format, an SFT set, and a 2-question MT-Bench subset."""

from __future__ import annotations

import json
import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIALS = ["<pad>", "<eos>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
WORDS = ("the a cat dog sat ran on mat park good bad answer question yes no is was red blue green big small "
         "write poem about sun math two plus equals four five because").split()


def _corpus(n: int = 200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def build_model(folder: Path, seed: int = 0) -> Path:
    """A byte-level BPE tokenizer (trained here) with a chat template, and a 2-layer random Llama."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<|end|>",
                                        additional_special_tokens=SPECIALS[2:])
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _pairs(n: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = rng.choice(["cat", "dog", "sun", "math"])
        rows.append((f"question about the {topic}", f"good answer the {topic} is big",
                     f"bad answer no {rng.choice(WORDS)} {rng.choice(WORDS)}"))
    return rows


def build_preferences(folder: Path, conversational: bool = False, n_train: int = 16, n_test: int = 8) -> Path:
    """train.jsonl/test.jsonl of prompt/chosen/rejected, as strings or as message lists."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        with (folder / f"{split}.jsonl").open("w") as f:
            for prompt, chosen, rejected in _pairs(n, seed):
                if conversational:
                    row = {"prompt": [{"role": "user", "content": prompt}],
                           "chosen": [{"role": "assistant", "content": chosen}],
                           "rejected": [{"role": "assistant", "content": rejected}]}
                else:
                    row = {"prompt": prompt, "chosen": " " + chosen, "rejected": " " + rejected}
                f.write(json.dumps(row) + "\n")
    return folder


def build_sft(folder: Path, n: int = 16) -> Path:
    """train.jsonl/test.jsonl of conversational `messages` for the SFT stage."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, seed in (("train", 0), ("test", 1)):
        with (folder / f"{split}.jsonl").open("w") as f:
            for prompt, chosen, _ in _pairs(n, seed):
                f.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                                 {"role": "assistant", "content": chosen}]}) + "\n")
    return folder


JUDGE_PROMPTS = {
    "single-v1": "[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]",
    "single-math-v1": ("[Question]\n{question}\n\n[The Start of Reference Answer]\n{ref_answer_1}\n"
                       "[The End of Reference Answer]\n\n[The Start of Assistant's Answer]\n{answer}\n"
                       "[The End of Assistant's Answer]"),
    "single-v1-multi-turn": "### User:\n{question_1}\n### Assistant A:\n{answer_1}\n### User:\n{question_2}\n"
                            "### Assistant A:\n{answer_2}",
    "single-math-v1-multi-turn": "### User:\n{question_1}\n### Reference answer:\n{ref_answer_1}\n### User:\n"
                                 "{question_2}\n### Reference answer:\n{ref_answer_2}\n### Assistant A:\n"
                                 "{answer_1}\n### Assistant A:\n{answer_2}",
}


def build_mtbench(folder: Path, fastchat_layout: bool = False) -> Path:
    """Two questions (writing, math) with judge prompts and a reference answer, in MT-Bench's file format."""
    questions = [
        {"question_id": 81, "category": "writing", "turns": ["Write a poem about the sun.", "Make it shorter."]},
        {"question_id": 111, "category": "math", "turns": ["What is two plus two?", "And two plus three?"]},
    ]
    prompts = [{"name": k, "type": "single", "system_prompt": f"You are a judge ({k}). Rate with [[rating]].",
                "prompt_template": v, "description": "", "category": "general", "output_format": "[[rating]]"}
               for k, v in JUDGE_PROMPTS.items()]
    references = [{"question_id": 111, "model_id": "gpt-4", "choices": [{"index": 0, "turns": ["four", "five"]}]}]
    paths = {"question.jsonl": questions, "judge_prompts.jsonl": prompts, "reference_answer_gpt-4.jsonl": references}
    if fastchat_layout:
        paths = {"mt_bench/question.jsonl": questions, "judge_prompts.jsonl": prompts,
                 "mt_bench/reference_answer/gpt-4.jsonl": references}
    for rel, rows in paths.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
