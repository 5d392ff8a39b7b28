"""The collator that turns examples into model inputs for training, teacher-forced scoring and generation.

Prompts always go through the processor's chat template (never hand-written "USER: <image>" strings),
and only the answer tokens plus the end-of-turn/EOS token are scored: image, system and question
positions carry the label -100.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from unlearning.data.examples import DataError, Example, ImageSource
from unlearning.data.images import image_key, open_image
from unlearning.data.pixel_cache import CachedImageProcessor

log = logging.getLogger(__name__)
IGNORE_INDEX = -100
LABEL_SCOPES = ("answer", "sequence")
GENERATION_PROMPTS = ("rendered", "decoded")


@functools.cache
def _say_cut(uid: str, length: int, limit: int) -> None:
    """Once per example: an original prompt's conversation cut to its ``max_length`` (compat) is never silent."""
    log.warning("example %r: its conversation is %d text tokens, cut to the original's max_length of %d (the end of "
                "its answer is not trained or scored), as the original cut it", uid, length, limit)


def stop_token_ids(tokenizer: Any, generation_config: Any | None) -> list[int]:
    """Ids that end an answer: the model's generation EOS ids plus the tokenizer's EOS."""
    ids: set[int] = set()
    configured = getattr(generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


@dataclass(frozen=True)
class OriginalPrompt:
    """An original code's hand-written prompt and label rule (FIUBench's model_config.yaml tags; compat).

    The conversation is ``system_tag + question_start_tag + "<image>\\n" + question + answer_tag + answer`` with no
    EOS (``chat_template=True``: the processor's chat template, as the original did for Llama-3.2). Labels start at
    token ``len(tokenize(instruction + answer_tag)) - 1``, ``instruction`` being the conversation before
    ``answer_tag`` with spaces stripped: FIUBench's ``preprocess_v1`` masks position 0 and the next
    ``len(...) - 2`` tokens. Depending on the tokenizer this is the answer's first token, its second, or the tag's
    last (LLaVA-Phi-3's ``<|assistant|>``). ``max_length``: the conversation cut at that many text tokens (image
    placeholders unexpanded, as the original's tokenizer call with ``truncation=True`` counted them; SafeEraser's
    512), so a long answer loses its end.

    ``generation_prompt``: ``rendered`` generates after the prompt above; ``decoded`` after the prompt an original
    rebuilt from the scored conversation (FIUBench's ``run_generation``): the conversation's tokens decoded as
    text (special tokens kept), cut before ``answer_tag`` with its newlines removed, spaces stripped, that tag
    appended, and the text encoded again with the tokenizer's special tokens added, so a BOS already in the text is
    doubled.
    """

    system_tag: str = ""
    question_start_tag: str = ""
    answer_tag: str = ""
    chat_template: bool = False
    max_length: int | None = None
    generation_prompt: str = "rendered"

    def __post_init__(self) -> None:
        if not self.answer_tag:
            raise ValueError("an original prompt needs its answer_tag (where the labels start)")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"an original prompt's max_length must be at least 2, got {self.max_length}")
        if self.generation_prompt not in GENERATION_PROMPTS:
            raise ValueError(f"an original prompt's generation_prompt must be one of {GENERATION_PROMPTS}, got "
                             f"{self.generation_prompt!r}")


PROMPTS_KEPT = 64  # processed prompts a collator remembers (a 336-px image's pixel values: 1.3 MB)
TEXTS_KEPT = 4096  # tokenized texts a collator remembers


class ChatCollator:
    """Builds batches for training, teacher-forced scoring and generation from :class:`Example` lists.

    The answer target is whatever the chat template puts after the generation prompt for the assistant
    turn (the answer and the template's end-of-turn marker), with the tokenizer's EOS appended when that
    target does not already end in a stop token, so the model learns to stop.

    ``example_transform``, when set (on a copy: ``unlearning.evaluation.attacks``), is how the inference entry points
    (``unlearning.inference.answers``) see every example: an evaluation under an input attack.
    """

    example_transform: Callable[[Example], Example] | None = None

    def __init__(
        self, processor: Any, stop_ids: Sequence[int], system_prompt: str | None = None, label_scope: str = "answer",
        original: OriginalPrompt | None = None, pixel_cache: CachedImageProcessor | None = None,
        append_eos: bool = True,
    ) -> None:
        if label_scope not in LABEL_SCOPES:
            raise ValueError(f"label_scope must be one of {LABEL_SCOPES}, got {label_scope!r}")
        self.original = original
        # image -> (the tokens its processing adds beyond the text's, the source: a decoded image's key is its id,
        # which the entry keeps from being reused by another object)
        self._expansions: dict[Any, tuple[int, ImageSource]] = {}
        self._prompts: OrderedDict[Any, tuple[dict[str, torch.Tensor], list[ImageSource]]] = OrderedDict()
        self._encoded: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        # each example's images processed once (``pixel_cache``: one shared with other collators, or budget 0: off)
        self._pixels = CachedImageProcessor() if pixel_cache is None else pixel_cache
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.stop_ids = set(stop_ids)
        self.system_prompt = system_prompt
        self.label_scope = label_scope  # sequence: every non-padding token (MLLMU-Bench's original training)
        # False: no EOS after a template whose turn ends without one (MLLMU-Bench's LLaVA text had none)
        self.append_eos = append_eos

    # ------------------------------------------------------------------ text

    def messages(self, example: Example, with_answer: bool) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        turns = (*example.shots, example)
        for index, turn in enumerate(turns):
            user: list[dict[str, str]] = [{"type": "image"}] if turn.image is not None else []
            user.append({"type": "text", "text": turn.question})
            messages.append({"role": "user", "content": user})
            if with_answer or index < len(turns) - 1:
                text = turn.context + turn.answer
                messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
        return messages

    def prompt_text(self, example: Example) -> str:
        if self.original is not None and not self.original.chat_template:
            if example.shots or example.context:
                raise DataError(f"example {example.uid!r}: the original prompt has no demonstrations or context")
            o, image = self.original, getattr(self.processor, "image_token", "<image>")
            return (o.system_tag + o.question_start_tag + (f"{image}\n" if example.image is not None else "")
                    + example.question + o.answer_tag)
        return self.processor.apply_chat_template(
            self.messages(example, with_answer=False), add_generation_prompt=True, tokenize=False
        )

    @property
    def decodes_generation_prompt(self) -> bool:
        """Generation prompts rebuilt from decoded tokens (``OriginalPrompt.generation_prompt``), not the prompt
        the scored conversation starts with."""
        return self.original is not None and self.original.generation_prompt == "decoded"

    def generation_text(self, example: Example) -> str:
        """The text generation continues: the prompt, or the original's decoded prompt (``OriginalPrompt``),
        written so that ``encode_text`` gives the ids the original's encoding gave (the special tokens the tokenizer
        adds are written out in front)."""
        if not self.decodes_generation_prompt:
            return self.prompt_text(example)
        conversation, _ = self.original_target(example)
        decoded = self.tokenizer.decode(self.encode_text(conversation))
        tag = self.original.answer_tag.replace("\n", "")
        if not tag or tag not in decoded:
            raise DataError(f"example {example.uid!r}: the answer tag {tag!r} is not in the decoded conversation "
                            f"{decoded[-200:]!r}")
        text = decoded.split(tag)[0].strip(" ") + tag
        added = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        plain = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if added[len(added) - len(plain):] != plain:
            raise DataError(f"example {example.uid!r}: the tokenizer adds special tokens other than a prefix")
        prefix = self.tokenizer.decode(added[:len(added) - len(plain)])
        ids = list(added)
        text = prefix + text
        if self.encode_text(text) != ids:
            raise DataError(f"example {example.uid!r}: the decoded generation prompt does not encode again to the "
                            "ids the original's encoding gives")
        return text

    def original_target(self, example: Example) -> tuple[str, list[int]]:
        """The original's conversation and its label tokens (``OriginalPrompt``)."""
        o = self.original
        if o.chat_template:
            conversation = self.processor.apply_chat_template(self.messages(example, with_answer=True),
                                                              tokenize=False)
        else:
            conversation = self.prompt_text(example) + example.answer
        if o.answer_tag not in conversation:
            raise DataError(f"example {example.uid!r}: the answer tag {o.answer_tag!r} is not in the conversation")
        instruction = conversation.split(o.answer_tag)[0].strip(" ")
        start = len(self.encode_text(instruction + o.answer_tag)) - 1
        full_ids = self.encode_text(conversation)
        if o.max_length is not None and len(full_ids) > o.max_length:
            _say_cut(example.uid, len(full_ids), o.max_length)
            conversation = self._cut(conversation, o.max_length)
            full_ids = self.encode_text(conversation)
        if start >= len(full_ids):
            raise DataError(f"example {example.uid!r}: the original label rule leaves no label token")
        return conversation, full_ids[start:]

    def _cut(self, text: str, max_tokens: int) -> str:
        """``text`` up to where its token ``max_tokens`` starts (offsets of the fast tokenizer), shortened further
        in the rare case re-tokenizing the cut text gives more tokens."""
        encoded = self.tokenizer(text, add_special_tokens=self._add_special_tokens(text), return_offsets_mapping=True)
        end = encoded["offset_mapping"][max_tokens][0]
        while end > 0 and len(self.encode_text(text[:end])) > max_tokens:
            end -= 1
        return text[:end]

    def encode_text(self, text: str) -> list[int]:
        """The text's token ids as the processor tokenizes it, image placeholders unexpanded; the last
        ``TEXTS_KEPT`` texts are remembered (a question's prompt is encoded for each of its candidate answers, and a
        scored conversation again when it runs on a shared prefix)."""
        ids = self._encoded.get(text)
        if ids is None:
            ids = tuple(self.tokenizer(text, add_special_tokens=self._add_special_tokens(text))["input_ids"])
            self._encoded[text] = ids
            if len(self._encoded) > TEXTS_KEPT:
                self._encoded.popitem(last=False)
        else:
            with contextlib.suppress(KeyError):  # another collating thread may have just let it go
                self._encoded.move_to_end(text)
        return list(ids)

    def _add_special_tokens(self, text: str) -> bool:
        """Templates that already write BOS must not get a second one from the tokenizer."""
        bos = self.tokenizer.bos_token
        return not (bos and text.startswith(bos))

    def target_text(self, example: Example) -> tuple[str, list[int]]:
        """Return the rendered conversation up to the end of the scored span, and the span's token ids.

        Without a context the span is everything the template renders after the generation prompt (the
        answer and the end-of-turn marker), plus EOS when that does not already end in a stop token; an empty
        answer (a release's empty model answer) is allowed here and its span is that ending alone, so it trains
        (or, ascended, untrains) stopping at once. With a
        context, the span's tokens are those that differ from the tokenized conversation up to the context,
        so a token straddling the boundary is scored with the span.
        """
        if self.original is not None:
            return self.original_target(example)
        prompt = self.prompt_text(example)
        full = self.processor.apply_chat_template(self.messages(example, with_answer=True), tokenize=False)
        if not full.startswith(prompt):
            raise DataError(
                f"example {example.uid!r}: the chat template does not render the answer as a continuation of "
                "the generation prompt, so answer tokens cannot be located"
            )
        empty_answer = not example.answer.strip()  # data in some releases: it trains the end of the turn alone
        if empty_answer and (example.context or not example.final):
            raise DataError(f"example {example.uid!r}: empty answer")
        continuation = full[len(prompt):]
        if example.context or not example.final:
            at = continuation.find(example.context + example.answer)
            if at < 0:
                raise DataError(f"example {example.uid!r}: the chat template changes the response text, so the "
                                "scored span cannot be located")
            conditioning = prompt + continuation[:at + len(example.context)]
            target = continuation[at + len(example.context):]
            if not example.final:
                target = target[:len(example.answer)]
        else:
            conditioning, target = prompt, continuation
        target = target.rstrip() if example.final else target
        if not target.strip() and not empty_answer:
            raise DataError(f"example {example.uid!r}: empty answer")
        prompt_ids = self.encode_text(prompt)
        full_ids = self.encode_text(conditioning + target)
        if example.final and full_ids[-1] not in self.stop_ids and (self.append_eos or not target.strip()):
            target += self.tokenizer.eos_token
            full_ids = self.encode_text(conditioning + target)
        if full_ids[: len(prompt_ids)] != prompt_ids:
            raise DataError(
                f"example {example.uid!r}: tokenizing prompt and answer together changes the prompt tokens"
            )
        start = len(prompt_ids)
        if conditioning != prompt:
            context_ids = self.encode_text(conditioning)
            start = next((i for i, (a, b) in enumerate(zip(context_ids, full_ids, strict=False)) if a != b),
                         min(len(context_ids), len(full_ids)))
            start = max(start, len(prompt_ids))
        if start >= len(full_ids):
            raise DataError(f"example {example.uid!r}: the scored span has no tokens")
        return conditioning + target, full_ids[start:]

    # ------------------------------------------------------------------ batches

    def _process(self, texts: list[str], examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        # One list of images per example: the batched layout every processor accepts (Mllama requires it).
        sources = [ex.images() for ex in examples]
        images = [[open_image(source) for source in own] for own in sources]
        if not any(images):
            images = []
        keys = [[image_key(source) for source in own] for own in sources]
        with self._pixels.serving(self.processor, keys, pinned=sources):
            return dict(
                self.processor(
                    text=texts,
                    images=images or None,
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=self._add_special_tokens(texts[0]),
                )
            )

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        """A training/scoring batch: ``inputs`` for the model and ``labels``, -100 outside the answer targets
        (with ``label_scope="sequence"``: -100 on padding only, every other token a label)."""
        rendered = [self.target_text(example) for example in examples]
        batch = self._process([text for text, _ in rendered], examples)
        batch.pop("labels", None)  # some processors (PaliGemma) make their own; ours mask more
        input_ids, attention = batch["input_ids"], batch["attention_mask"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for row, (example, (_, target_ids)) in enumerate(zip(examples, rendered, strict=True)):
            positions = attention[row].nonzero().squeeze(-1)[-len(target_ids):]
            if input_ids[row, positions].tolist() != target_ids:
                raise DataError(f"example {example.uid!r}: answer tokens moved during image processing")
            labels[row, positions] = input_ids[row, positions]
        if self.label_scope == "sequence":
            labels = torch.where(attention.bool(), input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        out = {"inputs": batch, "labels": labels}
        if any(example.weight != 1.0 for example in examples):
            out["weights"] = torch.tensor([float(example.weight) for example in examples])
        return out

    def prompt_length(self, example: Example) -> int:
        """Tokens of the generation prompt, image tokens included, without preprocessing the images again: the
        prompt's text tokens plus, per image, how many tokens the processor expands it into (measured once per
        image and remembered), the number ``generation_batch`` gives."""
        length = len(self.encode_text(self.generation_text(example)))
        return length + sum(self._image_expansion(source) for source in example.images())

    def _image_expansion(self, source: ImageSource) -> int:
        key = image_key(source)
        if key not in self._expansions:
            probe = Example("?", "?", source, uid="probe")
            text = self.prompt_text(probe)
            processed = self._process([text], [probe])["input_ids"].shape[1]
            self._expansions[key] = int(processed) - len(self.encode_text(text)), source
        return self._expansions[key][0]

    def generation_batch(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        """Left-padded prompts ending with the generation prompt, ready for ``model.generate``."""
        return self._prompt_batch([self.generation_text(example) for example in examples], examples)

    def _prompt_batch(self, texts: list[str], examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        with self._padding_side("left"):
            batch = self._process(texts, examples)
        batch.pop("labels", None)
        return batch

    def prompt_inputs(self, example: Example) -> dict[str, torch.Tensor]:
        """One prompt's processed inputs (no padding), remembered for the last ``PROMPTS_KEPT`` prompts: the
        shared prefixes of a split's generation and scoring passes process each image once between them."""
        key = (self.prompt_text(example), tuple(image_key(source) for source in example.images()))
        if key in self._prompts:
            self._prompts.move_to_end(key)
        else:
            self._prompts[key] = self._prompt_batch([key[0]], [example]), example.images()  # images pin their ids
            while len(self._prompts) > PROMPTS_KEPT:
                self._prompts.popitem(last=False)
        return dict(self._prompts[key][0])

    @contextlib.contextmanager
    def _padding_side(self, side: str) -> Iterator[None]:
        previous = self.tokenizer.padding_side
        self.tokenizer.padding_side = side
        try:
            yield
        finally:
            self.tokenizer.padding_side = previous
