"""hemoedge: edge-optimisation and benchmarking suite for an on-device fingernail Hb pipeline.

Not a medical device: figures measure the suite on synthetic data, not clinical accuracy.
"""

__version__ = "0.1.0"
