"""Slurm: each launch is one batch job driven through Slurm's own commands (sbatch, squeue, scancel)."""

from cumulo.runtimes.slurm.runtime import SlurmRuntime

__all__ = ["SlurmRuntime"]
