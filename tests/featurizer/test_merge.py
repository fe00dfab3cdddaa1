"""Bipartite soft matching (ToMe) reduces N tokens to exactly k size-weighted means."""

from __future__ import annotations

import pytest
import torch

from featurizer.merge import merge_tokens, merge_tokens_with_sizes


def _tokens(n: int, d: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("n", "k"), [(577, 48), (100, 99), (64, 1), (2000, 48), (7, 3)])
def test_merges_to_exactly_k(n: int, k: int) -> None:
    out = merge_tokens(_tokens(n), k)

    assert out.shape == (k, 64)
    assert out.dtype == torch.float32


def test_outputs_are_size_weighted_means_of_inputs() -> None:
    tokens = _tokens(577, d=32)

    out, sizes = merge_tokens_with_sizes(tokens, 48)

    assert sizes.dtype == torch.int64 and (sizes >= 1).all()
    assert int(sizes.sum()) == 577
    mass = (sizes[:, None].float() * out).sum(0)
    torch.testing.assert_close(mass, tokens.sum(0), rtol=1e-4, atol=1e-3)


def test_identical_tokens_merge_first() -> None:
    tokens = _tokens(40)
    tokens[17] = tokens[18]  # an adjacent pair: one lands in A, the other in B

    out, sizes = merge_tokens_with_sizes(tokens, 39)

    assert sizes.tolist() == [1] * 17 + [2] + [1] * 21
    torch.testing.assert_close(out[17], tokens[17])
    torch.testing.assert_close(
        torch.cat([out[:17], out[18:]]), torch.cat([tokens[:17], tokens[19:]])
    )


def test_output_keeps_the_order_of_first_members() -> None:
    # four contiguous segments of 8 near-identical tokens along orthogonal directions
    directions = torch.eye(16)[[3, 0, 9, 5]] * 10
    noise = 0.01 * _tokens(32, d=16)
    tokens = directions.repeat_interleave(8, dim=0) + noise

    out, sizes = merge_tokens_with_sizes(tokens, 4)

    assert sizes.tolist() == [8, 8, 8, 8]
    torch.testing.assert_close(out, tokens.view(4, 8, 16).mean(1), rtol=1e-5, atol=1e-5)


def test_n_equal_k_is_identity() -> None:
    tokens = _tokens(48).half()

    out, sizes = merge_tokens_with_sizes(tokens, 48)

    assert torch.equal(out, tokens.float())
    assert sizes.tolist() == [1] * 48


def test_fewer_tokens_than_k_raises() -> None:
    with pytest.raises(ValueError, match="cannot merge 10 tokens up to k=48"):
        merge_tokens(_tokens(10), 48)


def test_deterministic() -> None:
    tokens = _tokens(600, d=96, seed=3)

    first, first_sizes = merge_tokens_with_sizes(tokens, 48)
    second, second_sizes = merge_tokens_with_sizes(tokens.clone(), 48)

    assert torch.equal(first, second) and torch.equal(first_sizes, second_sizes)
