"""The sandbox: static policy, isolated processes, unit checks, fingerprints."""
