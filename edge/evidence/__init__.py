"""Evidence: snapshots and clips, redacted before they are written, and the frame histories."""
