"""The hemoedge error tree. The CLI maps HemoedgeError to one line on stderr and exit code 2."""


class HemoedgeError(Exception):
    """Base class: bad input or usage. The message says what was expected and what was found."""


class DataError(HemoedgeError):
    """A data set, CSV, photo or video that does not match the expected layout."""


class CheckpointError(HemoedgeError):
    """A missing, corrupt or unrecognised model checkpoint."""


class ExportError(HemoedgeError):
    """ONNX export, simplification or validation failed."""


class QuantizeError(HemoedgeError):
    """Quantisation could not produce a valid variant."""


class BenchError(HemoedgeError):
    """A benchmark could not run (missing browser, hung page, bad model)."""


class ResultsError(HemoedgeError):
    """A results.json, budgets or baseline file that does not match the schema."""
