from __future__ import annotations

from glmkit.bench import BenchConfig, Target, bench_argv, fit_lengths


def test_lengths_kept_when_they_fit() -> None:
    assert fit_lengths(8000, 1000, 65536) == (8000, 1000, False)


def test_lengths_scaled_to_the_served_context() -> None:
    in_len, out_len, fitted = fit_lengths(8000, 1000, 2048)
    assert fitted
    assert in_len + out_len <= 2048 - 64
    assert 7.5 < in_len / out_len < 8.5


def test_bench_argv_uses_the_served_name_and_tokenizer() -> None:
    target = Target(container="c", served_model="glmkit/glm-tiny", model_ref="/models/glm-tiny",
                    max_model_len=2048, vendor="cpu", image="img", serve_args=())
    argv = bench_argv(target, BenchConfig(), "r.json")
    assert argv[:3] == ["vllm", "bench", "serve"]
    assert argv[argv.index("--model") + 1] == "glmkit/glm-tiny"
    assert argv[argv.index("--tokenizer") + 1] == "/models/glm-tiny"
    assert argv[argv.index("--random-input-len") + 1] == "8000"
    assert argv[argv.index("--request-rate") + 1] == "10000"
    assert "--ignore-eos" in argv
