"""The chain adapters: the live metagraph and on-chain weights (README "On the chain").

``convert`` holds every decision (pure, tested on the SDK's own data objects); ``client`` is the
only module that imports ``bittensor`` (the optional ``chain`` extra), one SDK call per method.
"""
