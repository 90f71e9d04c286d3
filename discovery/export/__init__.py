"""Export a discovered loss: a standalone module for TRL (imports only torch; trl inside its adapter) or JSON."""
