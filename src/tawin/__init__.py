"""tawin: RL training of LLM generative recommenders with Windowed Partial AUC (TAWin).

``tawin.Recommender`` (:class:`tawin.run.recommend.Recommender`) ranks the next items for purchase
histories from a trained checkpoint: ``Recommender.from_checkpoint(path).recommend(histories, k)``.
"""

__version__ = "0.1.0"
__all__ = ["Recommender", "__version__"]


def __getattr__(name: str):
    # PEP 562 lazy export: `import tawin.errors` (which every stage does) must not pull in torch
    # and the model stack, so the facade resolves `tawin.Recommender` on first use only. Nothing
    # inside the package goes through it; modules import tawin.run.recommend directly.
    if name == "Recommender":
        import importlib

        return importlib.import_module("tawin.run.recommend").Recommender
    raise AttributeError(f"module 'tawin' has no attribute {name!r}")
