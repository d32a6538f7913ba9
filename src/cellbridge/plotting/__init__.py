"""matplotlib figures; each function returns a Figure and draws nothing on screen."""

from cellbridge.plotting.similarity import plot_similarity

__all__ = ["plot_similarity"]
