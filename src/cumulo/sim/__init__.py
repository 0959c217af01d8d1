"""Trace replay and what-if simulation of autoscaling policies (see ``cumulo.sim.model``)."""
