"""Forecast T2 from the last rows of a CSV with the exported ONNX file alone: onnxruntime + numpy, no edgeseq.

Usage: python forecast.py MODEL.onnx FILE.csv
"""

import csv
import json
import sys
from collections import deque

import numpy as np
import onnxruntime as ort

model_path, csv_path = sys.argv[1:3]
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map  # the model file carries its manifest's "features" and "window"
features, window = json.loads(meta["features"]), int(meta["window"])

with open(csv_path, newline="") as f:
    last = deque(csv.DictReader(f), maxlen=window)  # columns found by name in the header; extra columns ignored
if len(last) < window:
    sys.exit(f"{csv_path} has {len(last)} rows; the model needs {window}")

x = np.array([[[float(row[name]) for name in features] for row in last]])  # [1, window, features], raw, oldest first
(forecast,) = session.run(["forecast"], {"window": x})  # float64 [1, 1]: T2 in deg C, horizon rows ahead
print(float(forecast[0, 0]))
