"""Matching stage (pure): text forms, topic queries and rules, same-story dedupe, and the
story decision the pipeline and `watcher test` share."""
