"""Rollups over rounds: miner statistics, ranks, the subnet snapshot and the weight vector."""
