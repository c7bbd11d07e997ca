"""The Gradio demo (wiring only; the logic lives in ssm_signal.streaming). Run: ``ssm-signal demo``."""
