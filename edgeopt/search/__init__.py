"""edgeopt optimize: the search space, samplers, the trial runner and the study storage (Optuna, the `search`
extra)."""


def require_optuna() -> None:
    """Optuna is the `search` extra: without it a study was an ImportError's traceback, not one line."""
    from ..errors import BadInput
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise BadInput("edgeopt optimize and studies need Optuna: pip install 'edgeopt[search]'") from None
