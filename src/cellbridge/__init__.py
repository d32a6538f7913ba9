"""cellbridge: carry single-cell foundation-model representations to bulk and drug data.

The public names are re-exported from their subpackages; this module holds no logic.
"""

from cellbridge._version import __version__
from cellbridge.errors import CellbridgeError, InputError

__all__ = ["CellbridgeError", "InputError", "__version__"]
