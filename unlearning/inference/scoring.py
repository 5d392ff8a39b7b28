"""Answer-token likelihoods from one forward pass: the quantity every loss and likelihood metric is built on.

Position t's logits predict token t+1, so labels are shifted by one; only label positions (the scored span
and its EOS) are kept, which keeps the (tokens x vocab) tensor small even for long image-token prompts.
The loss primitives (token-mean NLL, KL to a reference) live here too: methods compose them per stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearning.data.collator import IGNORE_INDEX


@dataclass
class AnswerLogits:
    """Logits at the positions that predict scored tokens, flattened over the batch.

    ``row_weights`` holds each row's example weight, or None when every example weighs 1. ``full`` holds every
    position's logits (B, T, V), kept only for losses over all positions (the originals' KL).
    """

    logits: torch.Tensor  # (N, V), float32
    targets: torch.Tensor  # (N,)
    rows: torch.Tensor  # (N,) batch row of each token
    n_rows: int
    row_weights: torch.Tensor | None = None  # (B,)
    full: torch.Tensor | None = None  # (B, T, V)

    def token_logprobs(self) -> torch.Tensor:
        """log p(target) per scored token, (N,)."""
        return -F.cross_entropy(self.logits, self.targets, reduction="none")

    def vocabulary_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of log p(v) under p itself, per scored token (Min-K++'s calibration).

        mu_t = sum_v p_v log p_v,  sigma_t^2 = sum_v p_v (log p_v - mu_t)^2.
        """
        log_p = F.log_softmax(self.logits, dim=-1)
        p = log_p.exp()
        mu = (p * log_p).sum(-1)
        variance = (p * (log_p - mu.unsqueeze(-1)).square()).sum(-1)  # not E[x^2] - mu^2: that cancels in float32
        return mu, variance.sqrt()

    def per_row(self, values: torch.Tensor) -> torch.Tensor:
        """Sum token values into their batch rows, (B,)."""
        return torch.zeros(self.n_rows, dtype=values.dtype, device=values.device).index_add(0, self.rows, values)

    def sequence_logprobs(self) -> torch.Tensor:
        """log p(span) per row: the sum of its token log-probabilities, (B,)."""
        return self.per_row(self.token_logprobs())

    def token_counts(self) -> torch.Tensor:
        """Scored tokens per row, (B,)."""
        return self.per_row(torch.ones_like(self.targets, dtype=torch.float32))

    def rows_between(self, start: int, end: int) -> AnswerLogits:
        """The rows ``start <= row < end`` (one stream of a batch) as their own AnswerLogits, rows renumbered."""
        keep = (self.rows >= start) & (self.rows < end)
        weights = None if self.row_weights is None else self.row_weights[start:end]
        full = None if self.full is None else self.full[start:end]
        return AnswerLogits(self.logits[keep], self.targets[keep], self.rows[keep] - start, end - start, weights, full)


def answer_logits(logits: torch.Tensor, labels: torch.Tensor, row_weights: torch.Tensor | None = None,
                  keep_full: bool = False) -> AnswerLogits:
    shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    rows = mask.nonzero()[:, 0]
    if row_weights is not None:
        row_weights = row_weights.to(device=logits.device, dtype=torch.float32)
    return AnswerLogits(shift_logits[mask].float(), shift_labels[mask], rows, labels.shape[0], row_weights,
                        logits if keep_full else None)


def mean_nll(answer: AnswerLogits) -> torch.Tensor:
    """Token-mean negative log-likelihood (HF's ``outputs.loss`` convention); with example weights, each token's
    NLL is multiplied by its example's weight before the mean."""
    token_nll = -answer.token_logprobs()
    if answer.row_weights is not None:
        token_nll = token_nll * answer.row_weights[answer.rows]
    if token_nll.numel() == 0:
        raise ValueError("no scored tokens")
    return token_nll.mean()


def sequence_mean_nll(answer: AnswerLogits) -> torch.Tensor:
    """Mean over rows of (example weight x the row's token-mean NLL): each example counts once, whatever its
    length (EFUF's per-sample loss)."""
    if answer.n_rows == 0:
        raise ValueError("no rows to score")
    per_row = -answer.sequence_logprobs() / answer.token_counts().clamp_min(1.0)
    if answer.row_weights is not None:
        per_row = per_row * answer.row_weights
    return per_row.mean()


def kl_ref_to_policy(policy: AnswerLogits, reference: AnswerLogits) -> torch.Tensor:
    """Mean over the scored tokens of KL(p_ref || p_theta) over the vocabulary."""
    log_p = F.log_softmax(policy.logits, dim=-1)
    log_ref = F.log_softmax(reference.logits, dim=-1)
    return F.kl_div(log_p, log_ref, reduction="batchmean", log_target=True)


KL_PER = ("position", "row")


def kl_all_positions(policy: AnswerLogits, reference: AnswerLogits, per: str = "position") -> torch.Tensor:
    """KL(p_ref || p_theta) summed over the vocabulary at *every* position of every row (prompt, image and padding
    positions too), divided by the number of positions B*T (``per="position"``: FIUBench's and SafeEraser's
    ``kl_div(view(-1, V), ..., "batchmean")``) or by the rows B (``per="row"``: MLLMU-Bench's 3-D ``batchmean``)."""
    if policy.full is None or reference.full is None:
        raise ValueError("KL over every position needs every position's logits (keep_full=True)")
    if per not in KL_PER:
        raise ValueError(f"per must be one of {KL_PER}, got {per!r}")
    log_p = F.log_softmax(policy.full.float(), dim=-1)
    log_ref = F.log_softmax(reference.full.float(), dim=-1)
    total = (log_ref.exp() * (log_ref - log_p)).sum()
    batch, length = policy.full.shape[:2]
    return total / (batch * length if per == "position" else batch)


def prepare_inputs(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model inputs on the model's device, floating ones (pixel values) in its dtype (bf16 checkpoints)."""
    reference = next(p for p in model.parameters() if p.is_floating_point())
    device, dtype = reference.device, reference.dtype
    return {key: value.to(device, dtype) if value.is_floating_point() else value.to(device)
            for key, value in inputs.items()}


def forward_answer_logits(model: torch.nn.Module, batch: dict, keep_full: bool = False) -> AnswerLogits:
    """Run the model on a collated batch and keep the scored positions (and every position's logits when asked)."""
    outputs = model(**prepare_inputs(model, batch["inputs"]), use_cache=False)
    return answer_logits(outputs.logits, batch["labels"].to(outputs.logits.device), batch.get("weights"), keep_full)
