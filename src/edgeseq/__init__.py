"""edgeseq: Keras sequence models to small, fast, verified ONNX files, run on edge devices."""

import os

# tf.keras 2 (the tf_keras package) converts to fused ONNX LSTM nodes; Keras 3 converts to a slow Loop.
# This must be set before TensorFlow is first imported, so it is set when edgeseq is.
os.environ["TF_USE_LEGACY_KERAS"] = "1"

__version__ = "0.2.0"
