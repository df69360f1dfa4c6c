"""Monitoring a served model: the request log against the run's held-out data (drift), live quality from feedback,
a verdict a cron job can act on, and curation of requests worth labelling."""
