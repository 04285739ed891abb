"""Inference: mtst.load, prediction with character offsets, export, embedding and evaluation pictures."""
