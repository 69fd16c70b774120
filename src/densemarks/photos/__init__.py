"""Photos: face detectors (`detect`, light to import), the Predictor (`predictor`: detect, frame,
predict), evaluation on annotated photos (`evaluate`)."""
