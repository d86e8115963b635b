"""Human and CI renderings of edgeopt's documents: rich tables (tables.py), JUnit XML (junit.py)."""
