"""Round orchestration as plain functions: when a round opens, what work is due, how a round's
status follows its miners, and which partitions retire. The Dagster schedule and sensors in
``dagster_defs/automation.py`` are thin wrappers over these."""
