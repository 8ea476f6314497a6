"""Export: ONNX (fp32, fp16, int8), TensorRT engine, Triton repository."""
