"""The library behind the scripts: espcn.py is the network; these modules are everything around it."""
