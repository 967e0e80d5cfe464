"""Looking at a published set: the HTML preview and the stats tables and plots."""
