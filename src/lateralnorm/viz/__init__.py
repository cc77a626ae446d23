"""Pictures: LayerNorm geometry animations (geometry_anim), study plots (plots), the explorer page (explorer).

Submodules import matplotlib lazily where they can; import the one you need, e.g.
`from lateralnorm.viz.explorer import write_explorer`.
"""
