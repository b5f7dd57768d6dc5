"""What the reconciler prints: plan renderers, one module per format (``formats.py`` picks
one), drift and queue reports, and the escaping of every value printed (``escape.py``)."""

from reconciler.outputs.formats import RENDERERS, chunks, render

__all__ = ["RENDERERS", "chunks", "render"]
