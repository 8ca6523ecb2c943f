"""glmkit: serve and benchmark GLM models with vLLM in containers."""

__version__ = "0.1.0"
# The embedded default: a tiny GLM-4 MoE model made on this machine (`invoke tiny-model`).
DEFAULT_MODEL = "glmkit/glm-tiny"
