"""densemarks: train and run dense facial landmark models on data in the
"Thousand Facial Landmarks" competition layout."""

__version__ = "0.1.0"
