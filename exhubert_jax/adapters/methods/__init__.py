"""The built-in adapter methods; each module registers one method (adapters.registry.register) on import."""
