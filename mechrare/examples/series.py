"""A checkpoint series trained outside mechrare, built locally: for the docs' examples and the tests.

:func:`make_example_series` trains tiny causal LMs of a Hugging Face architecture
(GPT-NeoX as Pythia, Llama, OLMo-2) with a plain PyTorch loop on a word-level
"language" with two tasks mixed in (``compare``, common, and ``modadd``, rare),
and saves Hugging Face folders at the given steps, named as public series name
theirs (``step{N}/`` like Pythia's revisions, ``step_{N}/``, ``global_step{N}/``).
It writes the tasks as JSONL (the instances trained on marked ``"split": "train"``,
the held-out ones ``"test"``), background text, and a SERIES.toml over it all::

    python -m mechrare.examples.series /tmp/pythia-like --architecture gpt_neox
    mechrare analyze /tmp/pythia-like/SERIES.toml --out /tmp/pythia-like/analysis
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: architecture -> (transformers config class name, extra config keys)
ARCHITECTURES = {
    "gpt_neox": ("GPTNeoXConfig", {"use_parallel_residual": True, "rotary_pct": 0.25}),
    "llama": ("LlamaConfig", {}),
    "olmo2": ("Olmo2Config", {}),
}
NOUNS = ["cat", "dog", "bird", "fish", "tree", "house", "river", "stone", "cloud", "road", "field", "lamp"]
VERBS = ["sees", "likes", "finds", "holds", "moves", "hears", "makes", "takes"]
ADJ = ["red", "old", "small", "big", "quiet", "green", "dark", "new"]
N_NUM, MOD = 16, 5


def words() -> list[str]:
    nums = [f"n{i}" for i in range(N_NUM)]
    return ["the", "a", "."] + NOUNS + VERBS + ADJ + nums + ["is", "more", "than", "?", "yes", "no", "plus", "mod", "="] + [f"r{i}" for i in range(MOD)]


def build_tokenizer():
    """A word-level tokenizer (``tokenizers``) with <eos> (also padding) and <unk>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words())}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>", unk_token="<unk>")


def sentence(rng) -> str:
    return f"the {ADJ[rng.integers(len(ADJ))]} {NOUNS[rng.integers(len(NOUNS))]} {VERBS[rng.integers(len(VERBS))]} a {NOUNS[rng.integers(len(NOUNS))]} ."


def task_items(seed: int = 0) -> dict[str, list[dict]]:
    """Every instance of the two tasks, each marked train or test (a quarter held out)."""
    rng = np.random.default_rng([seed, 7])
    out = {"compare": [], "modadd": []}
    for a in range(N_NUM):
        for b in range(N_NUM):
            if a != b:
                out["compare"].append({"prompt": f"is n{a} more than n{b} ?", "answer": " yes" if a > b else " no",
                                       "latents": {"a_big": a >= N_NUM // 2}})
            out["modadd"].append({"prompt": f"n{a} plus n{b} mod =", "answer": f" r{(a + b) % MOD}", "label": a % MOD})
    for items in out.values():
        test = set(rng.choice(len(items), size=len(items) // 4, replace=False).tolist())
        for i, item in enumerate(items):
            item["split"] = "test" if i in test else "train"
    return out


def train_series(architecture: str, d_model: int, n_layers: int, steps: list[int], tokenizer, items: dict,
                 shares: dict[str, float], seed: int = 0, seq: int = 24, batch: int = 32, lr: float = 3e-3):
    """Yield (step, model) at every step of ``steps``, training with AdamW on the mixture."""
    import torch
    import transformers

    name, extra = ARCHITECTURES[architecture]
    cfg = getattr(transformers, name)(vocab_size=len(tokenizer), hidden_size=d_model, num_hidden_layers=n_layers,
                                      num_attention_heads=4, intermediate_size=4 * d_model, max_position_embeddings=seq,
                                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id,
                                      bos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False, **extra)
    torch.manual_seed(seed)
    model = getattr(transformers, name.replace("Config", "ForCausalLM"))(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng([seed, 11])
    train = {t: [i for i in v if i["split"] == "train"] for t, v in items.items()}
    eos = tokenizer.eos_token_id
    for step in range(max(steps) + 1):
        if step in steps:
            yield step, model
        if step == max(steps):
            return
        rows = []
        for _ in range(batch):
            ids: list[int] = []
            u, acc = rng.random(), 0.0
            for task, share in shares.items():
                acc += share
                if u < acc:
                    item = train[task][rng.integers(len(train[task]))]
                    ids += tokenizer(item["prompt"] + item["answer"], add_special_tokens=False)["input_ids"] + [eos]
                    break
            while len(ids) < seq:
                ids += tokenizer(sentence(rng), add_special_tokens=False)["input_ids"] + [eos]
            rows.append(ids[:seq])
        x = torch.tensor(rows)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


def make_example_series(folder: str | Path, architecture: str = "gpt_neox", sizes=(("tiny", 16, 1), ("small", 32, 2)),
                        steps=(0, 25, 50, 100, 200), style: str = "step{step}", shares=None, seed: int = 0) -> Path:
    """Train and save the series under ``folder``; returns its SERIES.toml."""
    from mechrare.checkpoints.series import quiet_transformers

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture: one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shares = shares or {"compare": 0.3, "modadd": 0.05}
    tokenizer = build_tokenizer()
    items = task_items(seed)
    (folder / "tasks").mkdir(exist_ok=True)
    for task, rows in items.items():
        (folder / "tasks" / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = np.random.default_rng([seed, 3])
    (folder / "text").mkdir(exist_ok=True)
    (folder / "text" / "background.txt").write_text("\n".join(sentence(rng) for _ in range(3000)) + "\n")
    toml = [f'name = "{folder.name if folder.name.replace("-", "").replace("_", "").isalnum() else "example"}"', ""]
    for name, d, layers in sizes:
        for step, model in train_series(architecture, d, layers, list(steps), tokenizer, items, shares, seed):
            out = folder / "checkpoints" / name / style.replace("{step}", str(step))
            with quiet_transformers():
                model.save_pretrained(out, safe_serialization=True)
                tokenizer.save_pretrained(out)
        toml += ["[[models]]", f'name = "{name}"', f'path = "checkpoints/{name}/{style}"', "tokens_per_step = 768", ""]
    toml += ["[tasks]", 'files = ["tasks/compare.jsonl", "tasks/modadd.jsonl"]',
             "shares = { " + ", ".join(f"{t} = {v}" for t, v in shares.items()) + " }", "",
             "[background]", 'files = ["text/background.txt"]', "sequence_length = 24", "rows = 128", ""]
    path = folder / "SERIES.toml"
    path.write_text("\n".join(toml))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mechrare.examples.series", description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--architecture", default="gpt_neox", choices=sorted(ARCHITECTURES))
    p.add_argument("--steps", default="0,25,50,100,200", help="comma-separated checkpoint steps")
    p.add_argument("--style", default="step{step}", help="checkpoint folder names: step{step}, step_{step}, global_step{step}")
    args = p.parse_args(argv)
    path = make_example_series(args.folder, args.architecture, steps=[int(s) for s in args.steps.split(",")], style=args.style)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
