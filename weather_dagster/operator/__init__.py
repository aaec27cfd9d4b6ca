"""The operator's commands: explain a miner or a round, act on one, and reach the demo's instance."""
