"""The live stream across server processes (Part E: live/hub)."""
