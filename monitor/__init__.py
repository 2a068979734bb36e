"""Live deepfake monitor: watches live video and flags manipulated faces."""

__version__ = "0.1.0"
