"""Models: backbones (torchvision/timm), heads (each one module: codec, network, loss), losses,
optimizers, schedules and freezing."""
