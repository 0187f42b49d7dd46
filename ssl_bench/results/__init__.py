"""Run results: where a results directory keeps what (``layout``), where a run's numbers come from
(``provenance``), the record schema (``record``) and how records are stored and read back (``store``).

Each name is imported from the module that defines it; this package re-exports nothing.
"""
