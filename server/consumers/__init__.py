"""What the server consumes from the broker, and the broker sessions it manages (Part E)."""
