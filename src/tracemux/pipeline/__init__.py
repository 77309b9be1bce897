"""The export pipeline: caller -> queue -> the one export thread -> destination lanes."""
