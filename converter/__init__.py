"""nnsplice package (see README)."""
