"""medfuse: CT-MRI image fusion, from training to a lean deployment.

Subpackages: `medfuse.runtime` (the torch-free base: I/O, preprocessing, executor),
`medfuse.train` (model, loss, training), `medfuse.export` (ONNX / TensorRT / Triton),
`medfuse.benchmarks` (latency, parity, quality reports).
"""

__version__ = "0.1.0"
