"""tawin: RL training of LLM generative recommenders with Windowed Partial AUC (TAWin)."""

__version__ = "0.1.0"
