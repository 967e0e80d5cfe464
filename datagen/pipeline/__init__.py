"""The build pipeline: shards rolled out, verified and written as rows; progress and summary."""
