"""Inference: checkpoints (the one module that reads and writes them), prediction on test folders,
test-time augmentation, the inference graph and its ONNX export, ensembles, the submission."""
