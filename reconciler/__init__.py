"""reconciler: catch CDN billing surprises before the invoice does."""

__version__ = "0.1.0"
