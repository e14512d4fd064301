"""Export recipes: a Keras model in, a verified ONNX file with its JSON manifest out.

artifacts    what every recipe shares: staging, the manifest, convert-and-stage, file entries
letters      the built-in letter RNN
forecaster   the built-in LSTM forecaster (and `train forecaster`)
keras_file   a user's own Keras file (`export --keras`)
companions   the batched companion beside each file, checked on the task's windows and listed in the manifest
"""

from edgeseq.export.artifacts import ExportResult, file_entry, write_json
from edgeseq.export.forecaster import export_forecaster
from edgeseq.export.keras_file import export_keras
from edgeseq.export.letters import export_letter_rnn

__all__ = ["ExportResult", "export_forecaster", "export_keras", "export_letter_rnn", "file_entry", "write_json"]
