"""A judge that returns given probabilities, to test ensemble rules and goals exactly."""

import torch

from sagekit.models.judges import Judge

LABELS = ("cat", "dog", "car")


class FixedJudge(Judge):
    def __init__(self, name, probs, labels=LABELS):
        super().__init__(name, labels)
        self.register_buffer("p", torch.tensor(probs))

    def logits(self, images):
        return self.p.log()
