"""glmkit: serve and benchmark GLM models with vLLM in containers."""

__version__ = "0.1.0"
