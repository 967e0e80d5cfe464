"""A build run as people watch it: the live progress bar and the run summary page."""
