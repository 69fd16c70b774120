"""Training: the loop, its setup (data, model, optimisation, resume), EMA, logging and plots,
k-fold. Nothing below this layer imports it."""
