"""VQA judges: a vision-language model asked a yes/no question about an image.

:class:`VQAModel` gives P(answer) — by default P("yes") — of a transformers
vision-language model for one question per image, as the model's own ``generate`` would
score the first answer token, but differentiable with respect to the image (the pixels
are resized and normalised in torch, as the model's image processor does, instead of in
PIL). Two shapes of model are read:

- BLIP question answering (``BlipForQuestionAnswering``): vision encoder, question
  encoder over the image, answer decoder started from its ``[DEC]`` token;
- chat models (``AutoModelForImageTextToText`` with a chat template: SmolVLM / Idefics3,
  LLaVA, ...): the question in a user turn after the image, the answer the next token
  after the assistant's turn begins.

:class:`VQAJudge` turns one into a :class:`~sagekit.models.judges.Judge` over labels
(``P(label) ∝ P("yes" | "Is there a {label} in the image?")``), so that it can sit in an
``ensemble:`` spec or verify a search, and answers any question (:meth:`VQAJudge.yes`):
what prompt-level goals ask (VQAScore: "Does this figure show '{prompt}'?").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .facts import Fact
from .judges import Judge, _prepare
from .weights import quiet_loading

LABEL_QUESTION = "Is there a {label} in the image?"
PROMPT_QUESTION = "Does this figure show \"{prompt}\"? Please answer yes or no."  # VQAScore's


class VQAModel(nn.Module):
    """P(``answer``) of a vision-language model for questions about images.

    :meth:`probability` ``(images (B, 3, H, W) in [0, 1], Q questions, index (Q,))`` ->
    ``(Q,)`` in [0, 1]: question ``q`` asked of image ``index[q]`` (default: one question
    per image). Questions of one token length go through the model together, unpadded, so
    that no answer depends on what else is in its batch; ``chunk`` bounds a batch."""

    def __init__(self, model: nn.Module, processor, answer: str, chunk: int = 256):
        super().__init__()
        self.model, self.processor, self.answer, self.chunk = model, processor, answer, chunk
        image = processor.image_processor
        self.mean, self.std = list(image.image_mean), list(image.image_std)

    def probability(self, images: torch.Tensor, questions: Sequence[str],
                    index: torch.Tensor | None = None) -> torch.Tensor:
        questions = list(questions)
        index = torch.arange(len(images)) if index is None else torch.as_tensor(index)
        if len(index) != len(questions) or (len(index) and not 0 <= int(index.min()) <= int(index.max()) < len(images)):
            raise ValueError(f"{len(questions)} questions about {len(images)} images: give one image index per question")
        seen = self.see(images.to(self.device))
        tokens = [self.tokens(q, images.shape[-2:]) for q in questions]
        order, parts = [], []
        for n in sorted({len(t) for t in tokens}):
            rows = [r for r, t in enumerate(tokens) if len(t) == n]
            for i in range(0, len(rows), self.chunk):
                part = rows[i:i + self.chunk]
                logits = self.answer_logits(seen, [questions[r] for r in part], torch.tensor([tokens[r] for r in part]),
                                            index[part])
                parts.append(logits.float().softmax(-1)[:, self.answer_id])
                order += part
        out = torch.cat(parts) if parts else torch.zeros(0, device=self.device)
        return out[torch.argsort(torch.tensor(order, device=out.device))]

    def see(self, images: torch.Tensor):
        """What the model keeps of each image, computed once per call."""
        raise NotImplementedError

    def tokens(self, question: str, size) -> list[int]:
        """The token ids the model reads for ``question`` about an image of ``size``."""
        raise NotImplementedError

    def answer_logits(self, seen, questions: list[str], ids: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The logits ``(Q, V)`` of the first answer token; ``ids`` ``(Q, n)``, one length."""
        raise NotImplementedError

    def pixels(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return _prepare(images, size, self.mean, self.std).to(self.model.dtype)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


class BlipVQA(VQAModel):
    """``BlipForQuestionAnswering``: the image encoded once, the question read over it,
    the answer's first token after the decoder's start token (as its ``generate`` does)."""

    def __init__(self, model, processor, answer: str = "yes"):
        super().__init__(model, processor, answer)
        size = processor.image_processor.size
        self.size = (size["height"], size["width"])
        ids = processor.tokenizer(answer, add_special_tokens=False).input_ids
        if not ids:
            raise ValueError(f"the answer {answer!r} has no token in this model's vocabulary")
        self.answer_id = ids[0]

    def see(self, images):
        return self.model.vision_model(pixel_values=self.pixels(images, self.size)).last_hidden_state

    def tokens(self, question, size):
        return self.processor.tokenizer(question).input_ids

    def answer_logits(self, seen, questions, ids, index):
        m = self.model
        seen = seen[index.to(seen.device)]
        asked = m.text_encoder(input_ids=ids.to(self.device), encoder_hidden_states=seen,
                               encoder_attention_mask=torch.ones(seen.shape[:-1], dtype=torch.long,
                                                                 device=self.device)).last_hidden_state
        # unpadded (one length per call): the decoder's cross-attention would not mask a
        # padded question's padding (transformers 5.18), and the answer would change
        start = torch.full((len(ids), 1), m.decoder_start_token_id, device=self.device)
        return m.text_decoder(input_ids=start, encoder_hidden_states=asked).logits[:, -1]


class ChatVQA(VQAModel):
    """An ``AutoModelForImageTextToText`` model whose processor has a chat template and
    turns an image into one normalised, resized picture (SmolVLM / Idefics3 without image
    splitting, LLaVA): the user's turn is the image then the question; the answer is the
    next token after the assistant's turn begins."""

    def __init__(self, model, processor, answer: str = "Yes"):
        super().__init__(model, processor, answer)
        if not getattr(processor, "chat_template", None):
            raise ValueError("this vision-language model's processor has no chat template")
        self._layouts: dict[tuple[str, int, int], dict] = {}
        self.answer_id = self._answer_token()

    def prompt(self, question: str) -> str:
        turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(turn, add_generation_prompt=True)

    def _answer_token(self) -> int:
        """The answer's first token as the model writes it after its prompt (a leading
        space may belong to it)."""
        tok, probe = self.processor.tokenizer, self.prompt("?")
        before = tok(probe, add_special_tokens=False).input_ids
        after = tok(probe + " " + self.answer, add_special_tokens=False).input_ids
        if after[:len(before)] != before or len(after) == len(before):
            raise ValueError(f"cannot find the answer {self.answer!r}'s token after this model's prompt")
        return after[len(before)]

    def layout(self, question: str, size) -> dict:
        """What the processor makes of the question and an image of ``size`` (h, w): token
        ids, masks, the shape of its pixels (cached; the pixels themselves are ours)."""
        h, w = int(size[0]), int(size[1])
        if (question, h, w) not in self._layouts:
            from PIL import Image

            made = self.processor(images=[[Image.new("RGB", (w, h))]], text=[self.prompt(question)],
                                  return_tensors="pt")
            self._layouts[(question, h, w)] = dict(made)
        return self._layouts[(question, h, w)]

    def see(self, images):
        shape = self.layout("?", images.shape[-2:])["pixel_values"].shape  # (1, [n,] 3, H', W')
        return self.pixels(images, tuple(shape[-2:])).view(len(images), *shape[1:])

    def tokens(self, question, size):
        return self.layout(question, size)["input_ids"][0].tolist()

    def answer_logits(self, seen, questions, ids, index):
        size = seen.shape[-2:]
        layouts = [self.layout(q, size) for q in questions]
        extra = {k: torch.cat([l[k] for l in layouts]).to(self.device) for k in layouts[0]
                 if k not in ("input_ids", "attention_mask", "pixel_values")}  # e.g. pixel_attention_mask
        out = self.model(input_ids=ids.to(self.device), attention_mask=torch.ones_like(ids).to(self.device),
                         pixel_values=seen[index.to(seen.device)], **extra, logits_to_keep=1)
        return out.logits[:, -1]


def load_vqa_model(path: Path, answer: str | None = None) -> VQAModel:
    """The :class:`VQAModel` of a checked transformers folder (safetensors only, no remote code)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, BlipForQuestionAnswering

    config = json.loads((Path(path) / "config.json").read_text())
    with quiet_loading():
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        if config.get("model_type") == "blip":
            model = BlipForQuestionAnswering.from_pretrained(path, use_safetensors=True, local_files_only=True)
            return BlipVQA(model.eval(), processor, *([answer] if answer else []))
        model = AutoModelForImageTextToText.from_pretrained(path, use_safetensors=True, local_files_only=True)
    return ChatVQA(model.eval(), processor, *([answer] if answer else []))


class VQAJudge(Judge):
    """A judge over ``labels`` by one question per label: ``P(label) = P(yes | q(label)) /
    Σ_l P(yes | q(l))`` with ``q = question.format(label=...)`` (each image is seen once,
    then asked every question); :meth:`yes` asks any questions."""

    def __init__(self, name: str, vqa: VQAModel, labels: Sequence[str], question: str = LABEL_QUESTION):
        super().__init__(name, labels)
        self.vqa, self.question = vqa, question

    def yes(self, images: torch.Tensor, questions: Sequence[str], index: torch.Tensor | None = None) -> torch.Tensor:
        """P(answer) ``(Q,)`` of question ``q`` about image ``index[q]`` (default: one per image)."""
        return self.vqa.probability(images, questions, index)

    def forward(self, images):
        b, k = len(images), len(self.labels)
        questions = [self.question.format(label=label) for label in self.labels] * b
        p = self.yes(images, questions, torch.arange(b).repeat_interleave(k)).view(b, k)
        return p / p.sum(-1, keepdim=True).clamp_min(1e-12)

    def logits(self, images):
        return self(images).clamp_min(1e-12).log()


def prompt_facts(judge: str, prompt: str, questions: Sequence[tuple[str, str]] = (),
                 template: str = PROMPT_QUESTION) -> list[Fact]:
    """The facts VQA judge ``judge`` checks of ``prompt``: one per ``(category, question)``
    given (TIFA / DSG style, e.g. from a GenEval-style list), else one question of the
    whole prompt, ``template`` filled with it (VQAScore; category "prompt")."""
    if questions:
        return [Fact(category, judge, question, question=question) for category, question in questions]
    question = template.format(prompt=prompt)
    return [Fact("prompt", judge, question, question=question)]
