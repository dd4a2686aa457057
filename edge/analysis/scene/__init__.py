"""The scene model: where the camera looks (registration) and what newly appeared and stays."""
