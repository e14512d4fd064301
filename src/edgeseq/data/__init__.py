"""Training data: the tutorial's letters, and sensor files read as series by the device runtime's rules.

`letters` (the letter RNN's patterns) · `table` (CSV files and their lines) · `split` (train, validation and
test by time) · `series` (each part read as the runner reads a stream, and the windows it makes).
"""

from edgeseq.data.letters import letter_arrays, letter_patterns
from edgeseq.data.table import (
    AIRPORT_WEATHER,
    DEFAULT_SENSOR_DATA,
    SensorTable,
    load_sensor_csv,
    read_all,
    read_lines,
)

__all__ = [
    "AIRPORT_WEATHER",
    "DEFAULT_SENSOR_DATA",
    "SensorTable",
    "letter_arrays",
    "letter_patterns",
    "load_sensor_csv",
    "read_all",
    "read_lines",
]
