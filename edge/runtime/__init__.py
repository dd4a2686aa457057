"""Runtime: the box's supervisor, camera workers, the shared detection service, models and
roll-outs."""
