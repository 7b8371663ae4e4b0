"""The dashboard's stylesheets, installed as the `dtmon.styles` package so `pip install .` ships them."""
