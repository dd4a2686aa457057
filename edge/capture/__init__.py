"""Capture: video sources (files, RTSP/HTTP streams, devices), frame queues, the stream clock."""
