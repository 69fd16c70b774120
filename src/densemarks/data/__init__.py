"""Formats and data: the competition CSVs, the landmark scheme, images, augmentation, datasets
and loaders, the preprocessed store, synthetic faces, and how faces sit in the crops."""
