"""Monitoring: the sampler (every node, job worker and replica, every 10 s), its store
(store/metrics.py), Prometheus exposition, and the reads behind `cumulo monitor` and
`cumulo job|deployment|node metrics`."""
