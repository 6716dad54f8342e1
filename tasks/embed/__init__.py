"""The embedding engine: model files, ONNX export and its artifact, sessions, tokenising, OOM halving."""
