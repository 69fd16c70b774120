"""Bottom layer: errors, atomic files, the geometric convention, shape maths, registries and
torchrun process groups. Knows nothing of landmark datasets or models."""
