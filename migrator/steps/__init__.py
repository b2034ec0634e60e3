"""Step types, one module per domain (or a package, like postgres/). The contract every step type meets is
`base.py`; `catalogue.py` imports them all and is how the loader and the engine reach them."""
