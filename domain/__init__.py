"""The pure core: tokens, sessions and the expiry policy.

Nothing here performs I/O, reads the clock or draws randomness it was not
handed; everything is a value that can be checked in isolation.
"""
