"""provisioner: right-sized, cost-aware machines for Jenkins jobs, and what they cost."""

__version__ = "0.1.0"
