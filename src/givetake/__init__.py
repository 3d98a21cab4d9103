"""givetake: tells what a social-media post does (pitch, ask, helpful_share, conversation_starter,
customer_service_reply), post by post and feed by feed.

The Python API::

    import givetake

    clf = givetake.load("givetake:latest")        # a BentoML store tag or a models/<run> directory
    clf.predict(["Our new course opens Monday, sign up now!"])
    clf.predict_frame(df, text_column="text")     # pandas in, pandas out: the columns of `givetake score`

Subpackages: ``givetake.labels`` (the schema and the shipped corpus), ``givetake.core`` (what
training and serving share), ``givetake.training``, ``givetake.serving`` and ``givetake.cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from givetake.errors import GivetakeError

if TYPE_CHECKING:
    from givetake.core.classifier import Classifier

__version__ = "0.1.0"
__all__ = ["GivetakeError", "load", "__version__"]


def load(model: str | Path = "givetake:latest", engine: str | None = None, batch_size: int = 32) -> Classifier:
    """Load a model for prediction: ``model`` is a BentoML store tag or a ``models/<run>`` directory.

    ``engine``: ``auto`` (default: int8 ONNX when exported and checked), ``torch``, ``onnx`` or
    ``onnx-int8``. Raises :class:`GivetakeError` subclasses with a readable message.
    """
    # Imported here on purpose: `import givetake` (and with it every subpackage, such as
    # givetake.labels) stays free of numpy, onnxruntime and the model code until a model is loaded.
    from givetake.core.classifier import Classifier

    return Classifier(model, engine=engine, batch_size=batch_size)
