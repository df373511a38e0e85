"""Models where they are deployed: ONNX export and the ONNX Runtime backend."""
