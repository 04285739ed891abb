"""Data pipeline: readers, validation, label spaces, sub-token alignment, batching, DataModule.

Submodules are imported directly (``from mtst.data.labels import LabelSpace``) so that light
users such as the corpus scripts do not pay for importing torch and Lightning.
"""
