"""The state model every stage writes through: states, errors and the retry policy."""
