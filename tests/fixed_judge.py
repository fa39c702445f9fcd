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


class ColourJudge(Judge):
    """A fixed, differentiable judge: the logit of label k is ``sharpness`` times the
    mean of colour channel k (cat: red, dog: green, car: blue). Every pixel has a
    gradient, so a search through it must move to pass a test."""

    def __init__(self, name="colour", sharpness=20.0, labels=LABELS):
        super().__init__(name, labels)
        self.sharpness = sharpness

    def logits(self, images):
        return self.sharpness * images.mean((2, 3))
