"""edgeopt: package neural networks for small machines, measure them there, check budgets.

The public API lives in edgeopt.api (package, bench, check, inspect, ...). Nothing heavy is
imported by `import edgeopt`.
"""

__version__ = "0.1.0"
