"""asrprune: structured L0 pruning of Conformer-Transducer speech recognisers."""

__version__ = "0.1.0"
