"""Geometry of an embedding space: intrinsic dimension, isotropy and hubness scores."""
