"""One small checkpointed search of the toy world, in its own process, that
tests/test_search_resume.py kills with SIGKILL and runs again.

Usage: python search_worker.py KIND CHECKPOINTS OUT
KIND: "prompt" (the prompt search), "distorted" (the shared distorted-latent search) or
"token" (the adversarial-token learning). The result is written to OUT (safetensors:
tensors; its metadata: the table as JSON) when the search ends."""

import json
import sys

import torch
from safetensors.torch import save_file

from sagekit.models.registry import load_caption_lm, load_ensemble, load_generator
from sagekit.search import DistortedGoal, RobustGoal, TargetGoal
from sagekit.studies import adversarial_tokens as at
from sagekit.studies import latent_search as ls
from sagekit.studies import prompt_failures as ps

ITERATIONS = 8  # long enough that the test kills it mid-search, short enough for the fast set


def run(kind: str, checkpoints: str) -> tuple[dict, dict]:
    torch.set_num_threads(1)  # the interrupted and the whole run must do the same arithmetic
    gen, judges = load_generator("toy"), load_ensemble("toy-ensemble")
    if kind == "prompt":
        lm, tok = load_caption_lm("toy")
        cfg = ps.PromptSearchConfig(iterations=ITERATIONS, max_words=1, top_k=3, train_seeds=1, eval_seeds=2,
                                    steps=4, search_steps=3, guidance=1.0)
        result = ps.search_prompts(gen, RobustGoal(judges), lm, tok, ["red circle"], cfg, progress=False,
                                   checkpoints=checkpoints)
        return {"images": result.images}, {"table": result.table.astype(str).to_dict("records")}
    if kind == "distorted":
        cfg = ls.LatentSearchConfig(iterations=ITERATIONS, steps=4)
        labels = ["red circle", "blue square"]
        result = ls.search_shared_latents(gen, DistortedGoal(judges), [f"a photo of a {l}" for l in labels],
                                          [judges.label_index(l) for l in labels], [0], cfg, progress=False,
                                          checkpoints=checkpoints)
        return {"z": result.z}, {"table": result.table.astype(str).to_dict("records")}
    if kind == "token":
        cfg = at.TokenConfig(iterations=ITERATIONS, batch=2, steps=4, search_steps=3)
        emb = at.learn_adversarial_token(gen, TargetGoal(judges), "green heart",
                                         ["a photo of a red circle", "a photo of a blue square"], cfg, progress=False,
                                         checkpoints=checkpoints)
        return {"embedding": emb}, {}
    raise SystemExit(f"unknown search {kind!r}")


if __name__ == "__main__":
    tensors, table = run(sys.argv[1], sys.argv[2])
    save_file({k: v.contiguous() for k, v in tensors.items()}, sys.argv[3], metadata={"table": json.dumps(table)})
