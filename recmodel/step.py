"""One optimizer step on one worker's share of a global batch: which items it encodes with
gradients, in which micro-batches, and its loss.

    plan(x, y)                      before the epoch starts, so the reader can fetch ahead
      items   the step's gradient-carrying items: exact negatives -> every negative too;
              cached negatives -> the batch's histories and targets only
      micro   those items in micro-batches of at most `micro_batch` (the memory plan's)
    step(plan, reader, n)           forward, backward; returns this worker's loss sum
      one micro-batch   one forward with a graph, as a one-shot step
      several           gradient caching (encoding.GradCache): the same gradients in bounded
                        memory; the features of pass 1 are kept for pass 2 when the step
                        buffer holds them, else read again (the reader was told so at plan time)

Losses are sums; the caller divides by the global batch's number of targets, so several
workers' gradients add up to one batch's mean.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from recmodel.config import TrainConfig
from recmodel.data import PAD
from recmodel.encoding import GradCache, encode_block
from recmodel.features import ItemFeatureBank
from recmodel.losses import alignment_loss, full_softmax_loss, sampled_softmax_loss, uniformity_loss
from recmodel.model import LinkedOutModel
from recmodel.negatives import ItemVectorCache
from recmodel.prefetch import Block, Prefetcher


@dataclass
class StepPlan:
    x: np.ndarray  # (b, T) inputs, PAD-padded
    y: np.ndarray  # (b, T) targets
    negatives: np.ndarray | None  # (S,) sampled negatives; None: full softmax
    items: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # (U,) sorted
    micro: list[np.ndarray] = field(default_factory=list)  # micro-batches of `items`
    keep: bool = True  # pass 1's features are kept for pass 2

    def requests(self) -> list[np.ndarray]:
        """What the reader delivers for this step, in order."""
        again = [] if self.keep or len(self.micro) < 2 else self.micro
        return [*self.micro, *again]


class Step:
    def __init__(
        self,
        model: LinkedOutModel,
        bank: ItemFeatureBank | None,
        train: TrainConfig,
        full_softmax: bool,
        proposal: np.ndarray,
        sample_rng: np.random.Generator,
        cache: ItemVectorCache | None,
        micro_batch: int,
        step_bytes: int,
        device: torch.device,
        bf16: bool = False,
    ) -> None:
        self.model, self.bank, self.train = model, bank, train
        self.full_softmax, self.cache = full_softmax, cache
        self.proposal, self.sample_rng = proposal, sample_rng
        self.micro_batch, self.step_bytes = max(1, micro_batch), step_bytes
        self.device, self.bf16 = device, bf16
        self.gradcache = GradCache(model, device, bf16)
        # log(S q(i)); 0 where q(i) = 0: such an item is never a target nor a negative
        expected = train.n_negatives * proposal
        log_q = np.log(np.where(expected > 0, expected, 1.0))
        self.log_q = torch.from_numpy(log_q).float().to(device)
        self.n_items = len(proposal)
        self.pool = np.flatnonzero(proposal > 0)  # every negative of the full softmax, sorted
        self.pool_t = torch.from_numpy(self.pool).to(device)

    def plan(self, x: np.ndarray, y: np.ndarray) -> StepPlan:
        negatives = None
        if not self.full_softmax:
            # drawn on every worker and every step, so the generators advance identically
            # whether or not this worker's share is empty
            negatives = self.sample_rng.choice(
                self.n_items, self.train.n_negatives, p=self.proposal
            )
        plan = StepPlan(x, y, negatives)
        if len(x) == 0:
            return plan
        if self.cache is None and negatives is None:
            items = self.pool  # every seen item; holds every x and y
        elif self.cache is None:
            items = np.unique(np.concatenate([x[x != PAD], y[y != PAD], negatives]))
        else:
            items = np.unique(np.concatenate([x[x != PAD], y[y != PAD]]))
        plan.items = items
        plan.micro = [
            items[s : s + self.micro_batch] for s in range(0, len(items), self.micro_batch)
        ]
        if self.bank is not None:
            plan.keep = self.bank.nbytes(items) <= self.step_bytes
        return plan

    def __call__(self, plan: StepPlan, reader: Prefetcher | None, global_targets: int) -> float:
        if len(plan.x) == 0:  # more workers than sequences in the last batch: zero gradients
            for p in self.model.parameters():
                p.grad = torch.zeros_like(p)
            return 0.0
        if len(plan.micro) == 1:
            block = self._take(plan.items, reader)
            out = encode_block(self.model, plan.items, block, self.device, self.bf16)
            vectors = out.vectors.float()
            loss = self._loss(plan, vectors)
            (loss / global_targets).backward()
        else:
            # blocks are taken one micro-batch at a time, so the reader fetches the next one
            # while this one computes; kept ones count against its bound until released
            kept: list[Block | None] = []

            def first_pass() -> Iterator[Block | None]:
                for items in plan.micro:
                    block = self._take(items, reader, hold=plan.keep)
                    if plan.keep:
                        kept.append(block)
                    yield block

            vectors = self.gradcache.forward(plan.micro, first_pass())
            loss = self._loss(plan, vectors)
            (loss / global_targets).backward()
            second = kept if plan.keep else (self._take(m, reader) for m in plan.micro)
            assert vectors.grad is not None
            self.gradcache.backward(vectors.grad, plan.micro, second)
            if reader is not None:
                reader.release(sum(b.nbytes for b in kept if b is not None))
        if self.cache is not None and self.cache.vectors is not None:
            # the step's fresh vectors replace their cached ones (negatives.py: cross-batch)
            items = torch.from_numpy(plan.items).to(self.device)
            self.cache.vectors[items] = vectors.detach()
        return float(loss.detach())

    def _take(
        self, items: np.ndarray, reader: Prefetcher | None, hold: bool = False
    ) -> Block | None:
        if reader is None:
            return None
        block = reader.take(hold)
        if len(block.items) != len(items):
            raise RuntimeError("feature reader out of step with the training plan")
        return block

    def _loss(self, plan: StepPlan, vectors: torch.Tensor) -> torch.Tensor:
        """vectors: (U, d) of plan.items -> this worker's loss sum."""
        device = self.device

        def rows(a: np.ndarray) -> torch.Tensor:  # catalog indices -> rows of `vectors`
            return torch.from_numpy(np.searchsorted(plan.items, a)).to(device)

        x, y = plan.x, plan.y
        history = vectors[rows(np.where(x == PAD, plan.items[0], x))]  # (b, T, d)
        states = self.model.ranker(history, torch.from_numpy(x != PAD).to(device))  # (b, T, d)
        users = states[torch.from_numpy(y != PAD).to(device)]  # (m, d)
        target = y[y != PAD]  # (m,)
        positives = vectors[rows(target)]  # (m, d)
        if plan.negatives is None and self.cache is None:
            loss = full_softmax_loss(users, vectors, rows(target))
        elif plan.negatives is None:
            # the cached vectors of every seen item, with this step's fresh ones in place
            assert self.cache is not None and self.cache.vectors is not None
            in_pool = torch.from_numpy(np.searchsorted(self.pool, plan.items)).to(device)
            matrix = self.cache.vectors[self.pool_t].index_copy(0, in_pool, vectors)
            target_in_pool = torch.from_numpy(np.searchsorted(self.pool, target)).to(device)
            loss = full_softmax_loss(users, matrix, target_in_pool)
        else:
            negatives = plan.negatives
            if self.cache is None:
                negative_vectors = vectors[rows(negatives)]
            else:
                assert self.cache.vectors is not None
                negative_vectors = self.cache.vectors[torch.from_numpy(negatives).to(device)]
            t, n = torch.from_numpy(target).to(device), torch.from_numpy(negatives).to(device)
            loss = sampled_softmax_loss(
                users,
                positives,
                negative_vectors,
                self.log_q[t],
                self.log_q[n],
                t[:, None] == n[None, :],
            )
        m = len(target)
        if self.train.align_weight:
            loss = loss + self.train.align_weight * alignment_loss(users, positives)
        if self.train.uniform_weight:
            # a mean-type term, weighted by this worker's share of the batch's targets
            uniform = (uniformity_loss(users) + uniformity_loss(vectors)) / 2
            loss = loss + self.train.uniform_weight * m * uniform
        return loss
