"""Faces: detection (mediapipe BlazeFace), alignment to the training crop, quality gates, tracking."""
