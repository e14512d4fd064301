"""The two Kerases edgeseq reads, tf.keras 2 (tf_keras) and Keras 3, and where they differ for conversion.

Every Keras-2-versus-3 difference the writers depend on is named here, so a reader finds them in one place:
- which Keras a layer object belongs to (its class's module: `tf_keras.` or `keras.`);
- `hard_sigmoid`: tf.keras 2 computes clip(0.2 x + 0.5, 0, 1), Keras 3 computes relu6(x + 3) / 6, that is
  clip(x / 6 + 0.5, 0, 1). Mixing them up costs up to 6.4e-2 on an LSTM's gates;
- weight layouts do not differ: both store kernel [F, G*H], recurrent kernel [H, G*H] and bias [G*H] (or
  [2, 3H] for a GRU with reset_after), with the same gate order (LSTM i,f,c,o; GRU z,r,h).
"""

from __future__ import annotations

from typing import Any

KERAS2, KERAS3 = "tf.keras 2", "Keras 3"

# Keras activation -> (ONNX recurrent activation, activation_alpha, activation_beta), per Keras.
_COMMON: dict[str, tuple[str, float | None, float | None]] = {
    "tanh": ("Tanh", None, None),
    "relu": ("Relu", None, None),
    "sigmoid": ("Sigmoid", None, None),
    "linear": ("Affine", 1.0, 0.0),
    "softsign": ("Softsign", None, None),
    "elu": ("Elu", 1.0, None),
}
# Activations ONNX recurrent ops name but edgeseq does not map, and why (the refusal says so).
NOT_MAPPED = {
    "softplus": "onnxruntime's recurrent Softplus computes log(1 + exp(x)) and becomes inf above x = 88, where "
    "Keras stays finite",
}
ACTIVATIONS = {
    KERAS2: {**_COMMON, "hard_sigmoid": ("HardSigmoid", 0.2, 0.5)},
    KERAS3: {**_COMMON, "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5)},
}


def flavour_of(layer: Any) -> str:
    """KERAS2 or KERAS3, from the Keras classes the layer is built on (a user's subclass counts as its base)."""
    for cls in type(layer).__mro__:
        module = cls.__module__
        if module == "tf_keras" or module.startswith("tf_keras."):
            return KERAS2
        if module == "keras" or module.startswith("keras."):
            return KERAS3
    raise ValueError(f"{getattr(layer, 'name', layer)!r} is not a Keras layer")


def activation_name(function: Any) -> str:
    return str(getattr(function, "__name__", type(function).__name__))


def onnx_activation(function: Any, flavour: str) -> tuple[str, float | None, float | None] | None:
    """The ONNX recurrent-op activation computing `function` as `flavour` defines it; None if there is none."""
    return ACTIVATIONS[flavour].get(activation_name(function))


def supported_activations(flavour: str) -> str:
    return ", ".join(ACTIVATIONS[flavour])
