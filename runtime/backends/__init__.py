"""Inference backends behind one small runner interface (ONNX Runtime, TensorRT)."""
