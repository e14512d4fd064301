"""Keras (tf.keras 2 or Keras 3) to ONNX, one path for every model: recurrent layers written by edgeseq as
fused ONNX ops, the layers around them by tf2onnx, and the checks on the result.

The modules, in the order a model goes through them:
    loading     which Keras wrote a file, and loading it with that Keras
    flavours    where tf.keras 2 and Keras 3 differ (activations such as hard_sigmoid)
    plan        which layers are written here, which go to tf2onnx, what is refused and why
    recurrent   the table of recurrent writers: lstm, gru, simple_rnn (sharing gates), Bidirectional
    masks       a masked recurrent call: the unmasked steps compacted, sequence_lens, outputs put back
    cuts        the model traced with each fused recurrent call cut out, the rest converted by tf2onnx
    converter   convert(): plan, trace, fill each cut with its fused node, check signature and onnx.checker, audit
    audit       the fusion audit, counted on the graph
    pre_post    the task's pre/post-processing as ONNX ops around the network (raw window in)
    parity      Keras against onnxruntime, and Keras unchanged by conversion
    batched     a single-window file's batched companion (dynamic batch axis), checked window by window
"""

from edgeseq.convert.audit import op_type_counts, require_fused
from edgeseq.convert.converter import DEFAULT_OPSET, Converted, convert, producer_versions
from edgeseq.convert.parity import PARITY_ATOL, keras_unchanged, parity_figures

__all__ = [
    "DEFAULT_OPSET",
    "PARITY_ATOL",
    "Converted",
    "convert",
    "keras_unchanged",
    "op_type_counts",
    "parity_figures",
    "producer_versions",
    "require_fused",
]
