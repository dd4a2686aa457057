"""Dataset building, training and export."""
