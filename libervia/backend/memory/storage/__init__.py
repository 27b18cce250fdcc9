"""Per-concern stores behind :class:`libervia.backend.memory.sqla.Storage`.

Each module holds one store class (profiles, params, history, private values, files, pubsub
cache). Stores share a :class:`~.base.Database` and get the stores they depend on passed
explicitly; none inherits from another. Plugins never use these classes directly: they call the
``Storage`` methods.
"""
