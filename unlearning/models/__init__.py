"""Loading any image-text-to-text model, choosing what trains, tiny offline models, processor classes."""
