from __future__ import annotations

from glmkit.bench import fit_lengths


def test_lengths_kept_when_they_fit() -> None:
    assert fit_lengths(8000, 1000, 65536) == (8000, 1000, False)


def test_lengths_scaled_to_the_served_context() -> None:
    in_len, out_len, fitted = fit_lengths(8000, 1000, 2048)
    assert fitted
    assert in_len + out_len <= 2048 - 64
    assert 7.5 < in_len / out_len < 8.5
